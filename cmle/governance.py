"""The data-usage-label gate: no data science on data labelled C9, PSPD or RHD.

Adobe's advice for the CMLE workflow is that the credentials used for data science must
not reach data labelled C9 (no data science), PSPD (permitted sensitive personal data) or
RHD (regulated health data), and that labels be re-applied on derived datasets. So:

* ``featurize`` copies the labels of the source datasets onto the feature sets it derives
  (:func:`propagate_labels`), and
* ``export`` refuses to send a dataset carrying a forbidden label out of the platform
  (:func:`check_export_allowed`), with a :class:`~cmle.errors.GovernanceError` that names
  the label and what to do.
"""

from __future__ import annotations

import logging
from typing import Iterable

from cmle.errors import GovernanceError
from cmle.platform.base import FORBIDDEN_LABELS, Dataset, Platform

log = logging.getLogger(__name__)


def forbidden(labels: Iterable[str]) -> dict[str, str]:
    """The forbidden labels among ``labels`` (case-insensitive), label -> what it means."""
    found = {str(label).strip().upper() for label in labels}
    return {label: FORBIDDEN_LABELS[label] for label in sorted(found) if label in FORBIDDEN_LABELS}


def check_export_allowed(platform: Platform, dataset: Dataset) -> set[str]:
    """The dataset's labels if none forbids export; GovernanceError otherwise."""
    labels = platform.get_labels(dataset.id)
    bad = forbidden(labels)
    if bad:
        named = ", ".join(f"{label} ({meaning})" for label, meaning in bad.items())
        raise GovernanceError(
            f"dataset {dataset.name} ({dataset.id}) carries the data usage label(s) {named}: it may not be exported "
            "for data science. Nothing was exported. If the label is right, leave this data out: remove the "
            "labelled source from the feature SQL or use a dataset without it, then run featurize again. If the "
            "label was applied by mistake, have your data steward remove it in AEP Data Governance "
            "(labels of the source datasets are copied onto the feature sets).")
    log.info("data usage labels of %s: %s (export allowed)", dataset.name, sorted(labels) or "none")
    return labels


def propagate_labels(platform: Platform, sources: Iterable[Dataset], target: Dataset) -> set[str]:
    """Add the labels of every source dataset to ``target`` (a derived dataset); returns them all."""
    inherited: set[str] = set()
    for src in sources:
        inherited |= platform.get_labels(src.id)
    current = platform.get_labels(target.id)
    combined = current | inherited
    if combined != current:
        log.info("copying data usage labels %s onto %s", sorted(inherited - current), target.name)
        platform.set_labels(target.id, combined)
    return combined


__all__ = ["FORBIDDEN_LABELS", "check_export_allowed", "forbidden", "propagate_labels"]
