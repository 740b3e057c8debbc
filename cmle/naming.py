"""Deterministic names of every platform resource this package creates.

Get-or-create finds resources by these names, so every name lives here and nowhere else.

Names are injective per owner: every name ends with the owner's *token*, a readable slug of
the owner followed by a fixed-length hash of the exact owner string
(:func:`owner_token`). ``team-a`` and ``team_a``, ``Alice`` and ``alice``, ``cmle`` and
``cmle_cmle`` or two non-ASCII owners that fold to the same slug therefore never share a
name, and no name of one owner is a suffix-variant of another's. Which resources an owner
may delete is not decided from names alone: the platforms record the owner on what they
create (:attr:`cmle.platform.base.Resource.owner`) and ``cleanup`` follows that record.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

TITLE_MARK = "[CMLE]"
TABLE_PREFIX = "cmle_"
OWNER_HASH_CHARS = 8
_SLUG_CHARS = 24


def table_name(name: str) -> str:
    """The query table name AEP derives from a dataset name (lower case, ``_`` for the rest)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def owner_hash(owner: str) -> str:
    """A short hash of the exact owner string (case, punctuation and non-ASCII kept)."""
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()[:OWNER_HASH_CHARS]


def owner_slug(owner: str) -> str:
    """A readable ASCII slug of the owner (not unique on its own)."""
    ascii_owner = unicodedata.normalize("NFKD", owner).encode("ascii", "ignore").decode()
    return table_name(ascii_owner)[:_SLUG_CHARS].strip("_") or "owner"


def owner_token(owner: str) -> str:
    """``{slug}_{hash}``: unique per exact owner string, usable in table and folder names."""
    return f"{owner_slug(owner)}_{owner_hash(owner)}"


def _title(what: str, owner: str) -> str:
    return f"{TITLE_MARK} {what} ({owner} {owner_hash(owner)})"


def _table(what: str, owner: str) -> str:
    return f"{TABLE_PREFIX}{table_name(what)}_{owner_token(owner)}"


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


def profile_union_dataset(owner: str, key: str) -> str:
    """The dataset holding the profile union of one set of fields and merge policy (``key``:
    :func:`cmle.platform.union.union_key`), so that specs reading other fields never share one."""
    return _title(f"Profile union {key}", owner)


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


# Data Distiller challenger (stage `train`, distiller = ...; AEP only)
def holdout_field_group(owner: str) -> str:
    return _title("Holdout profile fields of the Data Distiller comparison", owner)


def holdout_schema(owner: str) -> str:
    return _title("Holdout profile schema of the Data Distiller comparison", owner)


def holdout_dataset(owner: str) -> str:
    # short: Query Service names the table after it
    return _title("Distiller holdout profiles", owner)


def distiller_model(owner: str) -> str:
    """The model alias of Data Distiller's challenger (``CREATE OR REPLACE MODEL``)."""
    return _table("distiller_model", owner)


# Audiences (stage `audience`)
def audience(rule_name: str, owner: str) -> str:
    return _title(f"Audience {rule_name}", owner)


SQL_AUDIENCE_PREFIX = f"{TABLE_PREFIX}audience_"


def sql_audience(rule_name: str, owner: str) -> str:
    """A Data Distiller SQL audience (``audience --via sql``): it names a table, so it is one."""
    return _table(f"audience_{rule_name}", owner)


def is_sql_audience(name: str) -> bool:
    """Whether a dataset (table) name is one of :func:`sql_audience`'s."""
    return name.startswith(SQL_AUDIENCE_PREFIX)


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
    """True when ``name`` is one of the names above for exactly this owner (its token ends it)."""
    if name.startswith(TITLE_MARK):
        return name.endswith(f" ({owner} {owner_hash(owner)})")
    return name.startswith(TABLE_PREFIX) and name.endswith(f"_{owner_token(owner)}")
