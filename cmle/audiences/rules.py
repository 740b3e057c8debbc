"""Audience rules over the score attributes: parsing, PQL rendering, evaluation, reach.

Pure: no platform, no MLflow. Three kinds of rule, each with a name:

==========  ==================================  ==============================================
kind        syntax                              PQL (tenant ``cmle``)
==========  ==================================  ==============================================
band        ``NAME:band:LOWER:UPPER``           ``_cmle.propensity >= 0.2 and _cmle.propensity <= 0.93``
            (either bound may be empty)         ``_cmle.propensity >= 0.5`` for ``NAME:band:0.5:``
top         ``NAME:top:PERCENT``                ``_cmle.percentile >= 91`` for ``top:10``
bucket      ``NAME:bucket:B[,B...]``            ``_cmle.bucket = "high"`` (``or`` for several)
==========  ==================================  ==============================================

Any rule can also ask for influential factors (``score``'s ``factors``): ``:factor=F[,F...]``
at its end keeps the profiles with one of the features ``F`` among their top factors, e.g.
``engaged_high:bucket:high:factor=count_directMarketing_emailOpened`` renders as
``(_cmle.bucket = "high") and (exists F from _cmle.factors where F.feature =
"count_directMarketing_emailOpened")`` (PQL's logical quantifier over the factors array).

Rules are separated by ``;`` or new lines; names are letters, digits, ``_`` and ``-``. The
default set mirrors the CMLE notebooks' 0.2–0.93 band plus Customer AI's usual cuts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Union

import numpy as np
import pandas as pd

from cmle.errors import ParameterError
from cmle.scoring.schema import BUCKETS

DEFAULT_RULES = "moderate_to_high:band:0.2:0.93;top10:top:10;high_bucket:bucket:high"
SYNTAX = ("NAME:band:LOWER:UPPER (propensity between the bounds, 0-1, either may be empty) | "
          "NAME:top:PERCENT (top PERCENT % by percentile, 1-100) | "
          "NAME:bucket:low|medium|high[,...]; any of them may end with :factor=FEATURE[,FEATURE...] (one of "
          "these features among the profile's top factors); rules separated by ';'")
FACTOR_PREFIX = "factor="
_FEATURE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def _num(x: float) -> str:
    """A number as PQL writes it: plain decimal, no exponent, no trailing zeros."""
    text = f"{x:.10f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


@dataclass(frozen=True)
class BandRule:
    """Propensity within ``[lower, upper]`` (inclusive; a missing bound is open)."""

    name: str
    lower: float | None
    upper: float | None
    kind = "band"

    def pql(self, tenant_id: str) -> str:
        return self.bounds(f"_{tenant_id}.propensity", "and")

    def bounds(self, attr: str, conjunction: str) -> str:
        """``attr >= lower <conjunction> attr <= upper`` (the bounds given), in PQL or SQL."""
        parts = []
        if self.lower is not None:
            parts.append(f"{attr} >= {_num(self.lower)}")
        if self.upper is not None:
            parts.append(f"{attr} <= {_num(self.upper)}")
        return f" {conjunction} ".join(parts)

    def mask(self, scores: pd.DataFrame) -> pd.Series:
        p = pd.to_numeric(scores["propensity"], errors="coerce")
        m = p.notna()
        if self.lower is not None:
            m &= p >= self.lower
        if self.upper is not None:
            m &= p <= self.upper
        return m.fillna(False).astype(bool)

    def spec(self) -> str:
        lo = "" if self.lower is None else _num(self.lower)
        hi = "" if self.upper is None else _num(self.upper)
        return f"{self.name}:band:{lo}:{hi}"

    def describe(self) -> str:
        lo = "0" if self.lower is None else _num(self.lower)
        hi = "1" if self.upper is None else _num(self.upper)
        return f"Profiles with a propensity to convert between {lo} and {hi}"


@dataclass(frozen=True)
class TopPercentRule:
    """The top ``percent`` % of profiles by percentile (percentile >= 101 - percent)."""

    name: str
    percent: int
    kind = "top"

    @property
    def min_percentile(self) -> int:
        return 101 - self.percent

    def pql(self, tenant_id: str) -> str:
        return f"_{tenant_id}.percentile >= {self.min_percentile}"

    def mask(self, scores: pd.DataFrame) -> pd.Series:
        pct = pd.to_numeric(scores["percentile"], errors="coerce")
        return (pct >= self.min_percentile).fillna(False).astype(bool)

    def spec(self) -> str:
        return f"{self.name}:top:{self.percent}"

    def describe(self) -> str:
        return f"The top {self.percent} % of profiles by propensity percentile"


@dataclass(frozen=True)
class BucketRule:
    """Profiles in one of the score ``buckets`` (low, medium, high)."""

    name: str
    buckets: tuple[str, ...]
    kind = "bucket"

    def pql(self, tenant_id: str) -> str:
        return " or ".join(f'_{tenant_id}.bucket = "{b}"' for b in self.buckets)

    def mask(self, scores: pd.DataFrame) -> pd.Series:
        return scores["bucket"].isin(self.buckets).fillna(False).astype(bool)

    def spec(self) -> str:
        return f"{self.name}:bucket:{','.join(self.buckets)}"

    def describe(self) -> str:
        return f"Profiles in the {' or '.join(self.buckets)} score bucket" + ("s" if len(self.buckets) > 1 else "")


def has_factor(factors, features: tuple[str, ...]) -> bool:
    """Whether one of ``features`` is among a profile's ``factors`` (a list of {feature, ...})."""
    if factors is None or (isinstance(factors, float) and np.isnan(factors)):
        return False
    return any((f.get("feature") if isinstance(f, dict) else None) in features for f in factors)


@dataclass(frozen=True)
class FactorRule:
    """A rule restricted to profiles with one of ``features`` among their top factors."""

    rule: Union[BandRule, TopPercentRule, BucketRule]
    features: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def kind(self) -> str:
        return f"{self.rule.kind}+factor"

    def pql(self, tenant_id: str) -> str:
        names = " or ".join(f'F.feature = "{f}"' for f in self.features)
        return f"({self.rule.pql(tenant_id)}) and (exists F from _{tenant_id}.factors where {names})"

    def mask(self, scores: pd.DataFrame) -> pd.Series:
        if "factors" not in scores.columns:
            return pd.Series(False, index=scores.index)
        factor = scores["factors"].map(lambda fs: has_factor(fs, self.features)).astype(bool)
        return self.rule.mask(scores) & factor

    def spec(self) -> str:
        return f"{self.rule.spec()}:{FACTOR_PREFIX}{','.join(self.features)}"

    def describe(self) -> str:
        return f"{self.rule.describe()}, with {' or '.join(self.features)} among their top influential factors"


Rule = Union[BandRule, TopPercentRule, BucketRule, FactorRule]


def uses_factors(rules: Iterable[Rule]) -> bool:
    return any(isinstance(r, FactorRule) for r in rules)


def _bad(text: str, why: str) -> ParameterError:
    return ParameterError(f"audience rule {text!r}: {why}. Syntax: {SYNTAX}")


def _bound(text: str, raw: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _bad(text, f"{raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise _bad(text, f"propensity bound {raw} is outside 0-1")
    return value


def parse_rule(text: str) -> Rule:
    """One rule from its ``NAME:KIND:ARGS[:factor=F,...]`` text; ParameterError saying what is wrong."""
    parts = [p.strip() for p in text.strip().split(":")]
    if len(parts) > 3 and parts[-1].lower().startswith(FACTOR_PREFIX):
        features = tuple(dict.fromkeys(f.strip() for f in parts[-1][len(FACTOR_PREFIX):].split(",") if f.strip()))
        bad = [f for f in features if not _FEATURE.match(f)]
        if not features or bad:
            raise _bad(text, "factor= takes feature column names (letters, digits, _), comma-separated")
        return FactorRule(_parse_plain(text, parts[:-1]), features)
    return _parse_plain(text, parts)


def _parse_plain(text: str, parts: list[str]) -> Rule:
    if len(parts) < 3:
        raise _bad(text, "expected NAME:KIND:ARGS")
    name, kind, args = parts[0], parts[1].lower(), parts[2:]
    if not _NAME.match(name):
        raise _bad(text, f"name {name!r} must start with a letter and hold only letters, digits, _ and -")
    if kind == "band":
        if len(args) != 2:
            raise _bad(text, "a band takes LOWER:UPPER")
        lower, upper = _bound(text, args[0]), _bound(text, args[1])
        if lower is None and upper is None:
            raise _bad(text, "a band needs at least one bound")
        if lower is not None and upper is not None and lower > upper:
            raise _bad(text, f"lower bound {lower} is above upper bound {upper}")
        return BandRule(name, lower, upper)
    if kind == "top":
        if len(args) != 1 or not re.fullmatch(r"\d+", args[0]) or not 1 <= int(args[0]) <= 100:
            raise _bad(text, "top takes a whole PERCENT from 1 to 100")
        return TopPercentRule(name, int(args[0]))
    if kind == "bucket":
        if len(args) != 1:
            raise _bad(text, "bucket takes a comma-separated list of buckets")
        buckets = tuple(dict.fromkeys(b.strip().lower() for b in args[0].split(",") if b.strip()))
        unknown = [b for b in buckets if b not in BUCKETS]
        if not buckets or unknown:
            raise _bad(text, f"buckets must be among {', '.join(BUCKETS)}")
        return BucketRule(name, buckets)
    raise _bad(text, f"unknown kind {kind!r} (band, top or bucket)")


def parse_rules(text: str) -> list[Rule]:
    """Every rule of a ``;``- or newline-separated list; at least one, names unique."""
    items = [t for t in re.split(r"[;\n]", text or "") if t.strip()]
    if not items:
        raise ParameterError(f"rules = {text!r} holds no rule. Syntax: {SYNTAX}. Default: {DEFAULT_RULES}")
    rules = [parse_rule(t) for t in items]
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ParameterError(f"rules = {text!r}: rule names must be unique, {dupes} repeat")
    return rules


def format_rules(rules: Iterable[Rule]) -> str:
    """The parameter string for ``rules`` (``parse_rules(format_rules(r)) == r``)."""
    return ";".join(r.spec() for r in rules)


def evaluate(rules: Iterable[Rule], scores: pd.DataFrame) -> dict[str, int]:
    """Rule name -> number of rows of ``scores`` (columns propensity, percentile, bucket) it selects."""
    return {r.name: int(r.mask(scores).sum()) for r in rules}


def reach_curve(propensity, thresholds=None) -> pd.DataFrame:
    """Profiles reached by ``propensity >= threshold`` for each threshold (default 0, 0.01, ..., 1).

    Columns: ``threshold``, ``reached`` (count), ``share`` (of profiles with a propensity).
    """
    p = np.sort(pd.to_numeric(pd.Series(propensity), errors="coerce").dropna().to_numpy(dtype="float64"))
    t = np.round(np.linspace(0.0, 1.0, 101), 2) if thresholds is None else np.asarray(thresholds, dtype="float64")
    reached = p.size - np.searchsorted(p, t, side="left")
    return pd.DataFrame({"threshold": t, "reached": reached.astype("int64"),
                         "share": reached / p.size if p.size else np.zeros(len(t))})
