"""Deterministic names of every platform resource this package creates.

Get-or-create finds resources by these names, and ``cleanup`` deletes exactly the
resources they match, so every name lives here and nowhere else.
"""

from __future__ import annotations

import re

TITLE_MARK = "[CMLE]"
TABLE_PREFIX = "cmle_"


def _title(what: str, owner: str) -> str:
    return f"{TITLE_MARK} {what} ({owner})"


def table_name(name: str) -> str:
    """The query table name AEP derives from a dataset name (lower case, ``_`` for the rest)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _table(what: str, owner: str) -> str:
    return table_name(f"{TABLE_PREFIX}{what}_{owner}")


# Synthetic data (stage `synthetic`)
def event_field_group(owner: str) -> str:
    return _title("Experience event fields for subscription propensity", owner)


def profile_field_group(owner: str) -> str:
    return _title("Profile fields for subscription propensity", owner)


def event_schema(owner: str) -> str:
    return _title("Synthetic experience event schema", owner)


def profile_schema(owner: str) -> str:
    return _title("Synthetic profile schema", owner)


def events_dataset(owner: str) -> str:
    return _title("Synthetic experience events", owner)


def profiles_dataset(owner: str) -> str:
    return _title("Synthetic profiles", owner)


# Featurization (stage `featurize`): CTAS datasets are named like tables.
def training_set(owner: str, framing: str = "pit") -> str:
    return _table("training_set" if framing == "pit" else f"training_set_{framing}", owner)


def scoring_set(owner: str) -> str:
    return _table("scoring_set", owner)


def candidate(feature_set: str) -> str:
    """Where a feature set (a name above) is built and checked before it replaces ``feature_set``."""
    return TABLE_PREFIX + "candidate_" + feature_set.removeprefix(TABLE_PREFIX)


# Scores (stage `ingest`)
def score_field_group(owner: str) -> str:
    return _title("Propensity score fields", owner)


def score_schema(owner: str) -> str:
    return _title("Propensity score profile schema", owner)


def scores_dataset(owner: str) -> str:
    return _title("Propensity scores", owner)


def scores_folder(owner: str) -> str:
    """Folder name of score files under the import path."""
    return _table("scores", owner)


# Audiences (stage `audience`)
def audience(rule_name: str, owner: str) -> str:
    return _title(f"Audience {rule_name}", owner)


# Dataset export (AEP backend: Flow Service connections and dataflows)
def export_connection(destination: str, owner: str) -> str:
    return _title(f"Export base connection {destination}", owner)


def export_target(destination: str, path: str, data_format: str, compression: str, owner: str) -> str:
    return _title(f"Export target {destination} {path} {data_format} {compression}", owner)


def export_source(dataset_name: str, owner: str) -> str:
    return _title(f"Export source {dataset_name}", owner)


def export_flow(dataset_name: str, owner: str) -> str:
    return _title(f"Export {dataset_name}", owner)


def is_ours(name: str, owner: str) -> bool:
    """True when ``name`` is one of the names above for this owner."""
    if name.startswith(TITLE_MARK) and name.endswith(f"({owner})"):
        return True
    return name.startswith(TABLE_PREFIX) and name.endswith(f"_{table_name(owner)}")
