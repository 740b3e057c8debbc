"""Realised evidence: what really happened to the profiles a model version scored.

The holdout says how a model ranks profiles it never saw at training time; realised
outcomes say how its scores did in production: the profiles one scoring run of a version
scored, each with the propensity it gave and whether the goal then occurred within the
outcome window. When both challenger and champion have realised outcomes for the same
window (the champion scored in production, the challenger in shadow), the gate compares
them there as well, a backtest on what really happened, and records that it did.

cmle computes no realised outcomes itself here: they come from a *provider*. The monitoring
stage is built in (:func:`cmle.monitoring.history.evidence_provider`: the realised cells each
``monitor`` run records per score run); others can be added. A provider is any object
with an ``outcomes(model_name, version)`` method returning :class:`RealisedOutcomes` (one per
window whose outcome window has passed; none when there are none). Other providers are found:

- in-process, registered with :func:`register` (a factory taking the stage's
  :class:`~cmle.context.Context`);
- as installed plug-ins: the entry point group ``cmle.realised_evidence``, each entry point
  naming such a factory, e.g. in a package's ``pyproject.toml``::

      [project.entry-points."cmle.realised_evidence"]
      monitor = "cmle.stages.monitor:realised_evidence"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Protocol

import numpy as np

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cmle.realised_evidence"


@dataclass(frozen=True)
class RealisedOutcomes:
    """One version's scores on one window and what happened: ``y`` (0/1) per scored profile."""

    version: str
    window: str  # an identifier both versions share for the same window, e.g. "2024-05-01/2024-05-29"
    y: np.ndarray
    propensity: np.ndarray
    source: str = ""  # where these come from (e.g. the monitor run), for the record

    @property
    def rows(self) -> int:
        return int(len(self.y))

    @property
    def positives(self) -> int:
        return int(np.asarray(self.y).sum())

    def as_record(self) -> dict:
        return {"version": self.version, "window": self.window, "rows": self.rows, "positives": self.positives,
                "source": self.source}


class EvidenceProvider(Protocol):
    def outcomes(self, model_name: str, version: str) -> list[RealisedOutcomes]:
        """Every window with realised outcomes for ``version`` of ``model_name``, oldest first."""
        ...


ProviderFactory = Callable[[object], EvidenceProvider | None]
_registered: list[ProviderFactory] = []


def register(factory: ProviderFactory) -> None:
    """Make ``factory(ctx)`` a provider for this process (``unregister`` undoes it)."""
    if factory not in _registered:
        _registered.append(factory)


def unregister(factory: ProviderFactory) -> None:
    if factory in _registered:
        _registered.remove(factory)


def providers(ctx) -> list[EvidenceProvider]:
    """The providers registered in-process and installed as plug-ins; a plug-in that fails to
    load is logged and skipped (evidence is optional, the holdout comparison still runs)."""
    from cmle.monitoring.history import evidence_provider  # built in: the monitor stage's realised outcomes

    factories: list[tuple[str, ProviderFactory]] = [("monitoring", evidence_provider)]
    factories += [(getattr(f, "__name__", repr(f)), f) for f in _registered]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factories.append((ep.name, ep.load()))
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not stop promotion
            log.warning("realised evidence plug-in %s could not be loaded: %s", ep.name, exc)
    out = []
    for name, factory in factories:
        try:
            provider = factory(ctx)
        except Exception as exc:  # noqa: BLE001
            log.warning("realised evidence provider %s failed to start: %s", name, exc)
            continue
        if provider is not None:
            out.append(provider)
    return out


@dataclass(frozen=True)
class RealisedPair:
    """Challenger and champion outcomes on the same (latest common) window."""

    window: str
    challenger: RealisedOutcomes
    champion: RealisedOutcomes


def latest_common_window(model_name: str, challenger: str, champion: str,
                         found: list[EvidenceProvider]) -> RealisedPair | None:
    """The newest window for which some provider has outcomes of both versions."""
    best: RealisedPair | None = None
    for provider in found:
        try:
            mine = {o.window: o for o in provider.outcomes(model_name, str(challenger))}
            theirs = {o.window: o for o in provider.outcomes(model_name, str(champion))}
        except Exception as exc:  # noqa: BLE001
            log.warning("realised evidence provider %r failed: %s", provider, exc)
            continue
        common = sorted(set(mine) & set(theirs))
        if common and (best is None or common[-1] > best.window):
            best = RealisedPair(common[-1], mine[common[-1]], theirs[common[-1]])
    return best
