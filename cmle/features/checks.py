"""Data checks a feature set must pass before it is accepted.

The statistics come from one aggregate query run where the data is (the platform's query
engine), so nothing is downloaded: row count, distinct and NULL profile ids, label counts,
and the non-NULL count of every feature. :func:`evaluate` turns them into check results;
:func:`failures_message` says what was found and what to do.

Checks of a training set: at least one row; no NULL and no duplicate profile id; every
label 0 or 1; at least ``min_positives`` positives and ``min_negatives`` negatives
(Customer AI requires 500 and 500); no feature whose NULL rate reaches ``max_null_rate``
(by default: no feature that is NULL in every row). A scoring set gets the same checks
without the label ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from cmle.columns import ID_COLUMN, LABEL_COLUMN
from cmle.features.render import quote_table

DEFAULT_MAX_NULL_RATE = 1.0


@dataclass(frozen=True)
class SetStats:
    """Counts over one feature set."""

    rows: int
    ids: int  # non-NULL profile ids
    distinct_ids: int
    positives: int = 0
    negatives: int = 0
    labels: int = 0  # non-NULL labels
    non_null: dict[str, int] = field(default_factory=dict)  # feature -> non-NULL values

    @property
    def null_ids(self) -> int:
        return self.rows - self.ids

    @property
    def duplicate_ids(self) -> int:
        """Rows beyond the first of each profile id."""
        return self.ids - self.distinct_ids

    @property
    def bad_labels(self) -> int:
        """Rows whose label is NULL or not 0/1."""
        return self.rows - self.positives - self.negatives

    def null_rates(self) -> dict[str, float]:
        if not self.rows:
            return {c: 0.0 for c in self.non_null}
        return {c: 1.0 - n / self.rows for c, n in self.non_null.items()}


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    observed: Any
    expected: str
    message: str = ""  # what was found and what to do, when it failed

    def as_row(self) -> dict:
        row = asdict(self)
        row["observed"] = str(self.observed)
        return row


def stats_sql(table: str, features: Sequence[str], labelled: bool) -> str:
    """Spark SQL computing :class:`SetStats` in one pass (feature counts aliased by position)."""
    parts = ["COUNT(*) AS n_rows", f"COUNT({ID_COLUMN}) AS n_ids", f"COUNT(DISTINCT {ID_COLUMN}) AS n_distinct_ids"]
    if labelled:
        parts += [f"COUNT(CASE WHEN {LABEL_COLUMN} = 1 THEN 1 END) AS n_positives",
                  f"COUNT(CASE WHEN {LABEL_COLUMN} = 0 THEN 1 END) AS n_negatives",
                  f"COUNT({LABEL_COLUMN}) AS n_labels"]
    parts += [f"COUNT(`{c}`) AS nn_{i}" for i, c in enumerate(features)]
    return f"SELECT {', '.join(parts)} FROM {quote_table(table)}"


def parse_stats(row: dict, features: Sequence[str], labelled: bool) -> SetStats:
    """:class:`SetStats` from the single row of :func:`stats_sql`."""
    def get(key: str) -> int:
        value = row[key]
        return 0 if value is None else int(value)

    return SetStats(
        rows=get("n_rows"), ids=get("n_ids"), distinct_ids=get("n_distinct_ids"),
        positives=get("n_positives") if labelled else 0, negatives=get("n_negatives") if labelled else 0,
        labels=get("n_labels") if labelled else 0,
        non_null={c: get(f"nn_{i}") for i, c in enumerate(features)},
    )


def collect_stats(platform, table: str, features: Sequence[str], labelled: bool,
                  timeout_s: float = 600.0) -> SetStats:
    """Run :func:`stats_sql` on the platform's query engine."""
    df = platform.query(stats_sql(table, features, labelled), timeout_s=timeout_s, max_rows=1)
    return parse_stats(df.iloc[0].to_dict(), features, labelled)


def evaluate(stats: SetStats, labelled: bool, min_positives: int = 0, min_negatives: int = 0,
             max_null_rate: float = DEFAULT_MAX_NULL_RATE, check_nulls: bool = True) -> list[CheckResult]:
    """Every check, passed or not, in a fixed order (label checks when ``labelled``, the
    feature NULL-rate check when ``check_nulls``)."""
    if not 0.0 < max_null_rate <= 1.0:
        raise ValueError(f"max_null_rate must be in (0, 1], not {max_null_rate}")
    results = [
        CheckResult("rows", stats.rows > 0, stats.rows, "> 0",
                    "the set is empty: no profile is eligible; check that the events and profiles datasets hold "
                    "data before the snapshot"),
        CheckResult("null_ids", stats.null_ids == 0, stats.null_ids, "0",
                    f"{stats.null_ids} rows have no profile id ({ID_COLUMN}); every event and profile must carry "
                    "the identity"),
        CheckResult("duplicate_ids", stats.duplicate_ids == 0, stats.duplicate_ids, "0",
                    f"{stats.duplicate_ids} rows repeat a profile id already present: a feature set must hold one "
                    "row per profile; check the feature SQL and the source datasets"),
    ]
    if labelled:
        results += [
            CheckResult("labels", stats.bad_labels == 0, stats.bad_labels, "0 rows with a label other than 0/1",
                        f"{stats.bad_labels} rows have a NULL label or one other than 0/1"),
            CheckResult("positives", stats.positives >= min_positives, stats.positives, f">= {min_positives}",
                        f"only {stats.positives} positives (profiles that converted in the outcome window), fewer "
                        f"than min_positives={min_positives}: use more profiles or a longer outcome window "
                        "(outcome_days), or lower min_positives"),
            CheckResult("negatives", stats.negatives >= min_negatives, stats.negatives, f">= {min_negatives}",
                        f"only {stats.negatives} negatives, fewer than min_negatives={min_negatives}: use more "
                        "profiles, or lower min_negatives"),
        ]
    if check_nulls and stats.rows:
        rates = stats.null_rates()
        too_null = sorted(c for c, r in rates.items() if r >= max_null_rate)
        what = "NULL in every row" if max_null_rate >= 1.0 else f"NULL in at least {max_null_rate:.0%} of rows"
        results.append(CheckResult(
            "null_features", not too_null, ", ".join(too_null) or "none", f"no feature {what}",
            f"{len(too_null)} features are {what}: {', '.join(too_null)}. The event types behind them do not occur "
            "in the look-back window: check the events dataset, widen lookback_days, or raise max_null_rate"))
    return results


def failed(results: Sequence[CheckResult]) -> list[CheckResult]:
    return [r for r in results if not r.passed]


def failures_message(what: str, results: Sequence[CheckResult]) -> str:
    """One message naming every failed check of ``what`` (empty when all passed)."""
    bad = failed(results)
    if not bad:
        return ""
    return f"{what} failed {len(bad)} data check(s): " + "; ".join(f"[{r.name}] {r.message}" for r in bad)


__all__ = ["CheckResult", "DEFAULT_MAX_NULL_RATE", "SetStats", "collect_stats", "evaluate", "failed",
           "failures_message", "parse_stats", "stats_sql"]
