"""The model registry as the stages use it: versions, aliases, tags, stages, promotion history.

Aliases (``challenger``, ``champion``) are the primary mechanism; they work on every
registry. Stages exist only on the workspace / OSS registries (sqlite, file, http, the
Databricks workspace registry) and are deprecated there; Unity Catalog (``databricks-uc``,
and OSS Unity Catalog ``uc``) has none and refuses every stage call. Whether the registry
has stages is decided here, once, from the registry URI (:func:`registry_has_stages`);
nothing else calls a stage API.

Every promotion decision, approval, rejection and rollback is written onto the version it
concerns as a tag ``cmle.promotion.<UTC time>`` (a JSON record with its ``action``) and as a
line of its description, so :meth:`Registry.promotion_history` can read the history back —
MLflow keeps no history of alias moves.

The registered model itself keeps the salt of the stable holdout split
(:meth:`Registry.split_salt`), so every version holds out the same profiles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from cmle.errors import RegistryError

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PRODUCTION = "Production"
LATEST = "latest"
# Registry URI schemes without stages: Databricks Unity Catalog and OSS Unity Catalog.
STAGELESS_SCHEMES = ("databricks-uc", "uc")
TAG_PREFIX = "cmle."
PROMOTION_TAG_PREFIX = "cmle.promotion."
PROMOTION_STATUS_TAG = "cmle.promotion_status"
SPLIT_SALT_TAG = "cmle.split_salt"
# MLflow's limit on a model version tag value.
MAX_TAG_VALUE = 5000


def registry_has_stages(registry_uri: str) -> bool:
    """False for Unity Catalog registries (``databricks-uc[://profile]``, ``uc:...``), True otherwise."""
    uri = (registry_uri or "").strip()
    scheme = urllib.parse.urlparse(uri).scheme
    return not (scheme in STAGELESS_SCHEMES or uri in STAGELESS_SCHEMES)


def utc_stamp(when: datetime | None = None) -> str:
    """A sortable UTC time usable in a tag key (letters, digits only): 20240301T120000123456Z."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return when.strftime("%Y%m%dT%H%M%S%fZ")


@dataclass
class Registry:
    """The registry at ``uri`` through ``client``; stage support derives from ``uri`` alone."""

    client: MlflowClient
    uri: str

    @classmethod
    def current(cls) -> "Registry":
        """The registry MLflow is configured for (``mlflow.get_registry_uri()``)."""
        uri = mlflow.get_registry_uri()
        return cls(client=MlflowClient(registry_uri=uri), uri=uri)

    @classmethod
    def configured(cls, settings) -> "Registry":
        """The registry ``settings`` name, for commands that are not MLflow runs (approve,
        history, webhook): MLflow is pointed at the configured stores first."""
        from cmle import tracking

        tracking.setup(settings)
        return cls.current()

    @property
    def has_stages(self) -> bool:
        return registry_has_stages(self.uri)

    # --- reading ----------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, str]:
        """``alias -> version`` of a registered model; RegistryError if the model does not exist."""
        try:
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            raise RegistryError(f"registered model {name!r} does not exist in the registry {self.uri}; "
                                f"run the train stage first ({_short(exc)})") from None
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first ([] when the model does not exist)."""
        try:
            found = self.client.search_model_versions(f"name='{name}'")
        except MlflowException:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def version(self, name: str, version: str | int) -> ModelVersion:
        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise RegistryError(f"model {name!r} has no version {version} ({_short(exc)})") from None

    def by_alias(self, name: str, alias: str, required: bool = True) -> ModelVersion | None:
        """The version ``alias`` points at; None (or RegistryError when ``required``) if unset."""
        aliases = self.aliases(name)
        if alias not in aliases:
            if not required:
                return None
            known = ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "none"
            todo = "run the train stage to register a challenger" if alias == CHALLENGER else "set it first"
            raise RegistryError(f"model {name!r} has no alias {alias!r} (aliases: {known}); {todo}")
        return self.version(name, aliases[alias])

    def resolve(self, name: str, ref: str | int = CHAMPION) -> ModelVersion:
        """One concrete version from an alias, a version number or ``latest``."""
        ref = str(ref).strip()
        if ref.isdigit():
            self.aliases(name)  # a clear error when the model itself is missing
            return self.version(name, ref)
        if ref.lower() == LATEST:
            found = self.versions(name)
            if not found:
                raise RegistryError(f"model {name!r} has no versions; run the train stage first")
            return found[-1]
        return self.by_alias(name, ref)

    def model_tags(self, name: str) -> dict[str, str]:
        """The registered model's own tags ({} when the model does not exist)."""
        try:
            return dict(self.client.get_registered_model(name).tags or {})
        except MlflowException:
            return {}

    def split_salt(self, name: str) -> str:
        """The salt of the model's stable holdout split: read from the registered model, or set
        on it the first time (derived from the name, so a registry rebuilt from scratch holds
        out the same profiles; change the tag to draw another holdout). Call it under the
        registry lock."""
        salt = self.model_tags(name).get(SPLIT_SALT_TAG)
        if salt:
            return salt
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")) + str(exc) \
                    and "already exists" not in str(exc):
                raise RegistryError(f"could not create the registered model {name!r} in {self.uri}: "
                                    f"{_short(exc)}") from None
        salt = self.model_tags(name).get(SPLIT_SALT_TAG)  # another run may have set it meanwhile
        if not salt:
            salt = hashlib.sha256(f"cmle-holdout:{name}".encode()).hexdigest()[:16]
            self.client.set_registered_model_tag(name, SPLIT_SALT_TAG, salt)
        return salt

    def find_by_tag(self, name: str, key: str, value: str) -> ModelVersion | None:
        """The newest version tagged ``key = value`` (filtered here: Unity Catalog cannot filter tags)."""
        matches = [v for v in self.versions(name) if (v.tags or {}).get(key) == value]
        return matches[-1] if matches else None

    # --- writing ----------------------------------------------------------------------
    def create_version(self, name: str, model_uri: str, tags: dict[str, Any]) -> str:
        """Register ``model_uri`` as a new version of ``name`` with ``tags`` set in the same call."""
        import mlflow

        clean = {k: str(v)[:MAX_TAG_VALUE] for k, v in tags.items()}
        try:
            mv = mlflow.register_model(model_uri, name, tags=clean)
        except MlflowException as exc:
            raise RegistryError(f"could not register model {name!r} in {self.uri}: {_short(exc)}") from None
        return str(mv.version)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException:
            pass  # not set: nothing to delete

    def delete_tag(self, name: str, version: str | int, key: str) -> None:
        try:
            self.client.delete_model_version_tag(name, str(version), key)
        except MlflowException:
            pass

    def set_tags(self, name: str, version: str | int, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, str(value)[:MAX_TAG_VALUE])

    def append_description(self, name: str, version: str | int, line: str) -> None:
        current = self.version(name, version).description or ""
        text = f"{current.rstrip()}\n{line}".strip()
        self.client.update_model_version(name, str(version), description=text)

    def transition_to(self, name: str, version: str | int, stage: str = PRODUCTION) -> bool:
        """Move a version to ``stage``, archiving the versions there; False (no call) without stages."""
        if not self.has_stages:
            log.info("registry %s has no stages (Unity Catalog): alias only, no stage transition", self.uri)
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still honoured here
            self.client.transition_model_version_stage(name, str(version), stage, archive_existing_versions=True)
        return True

    # --- promotion history --------------------------------------------------------------
    def record_promotion(self, name: str, version: str | int, record: dict[str, Any], key: str | None = None) -> str:
        """Write one decision onto the version (tag; and a description line once its ``state``
        is ``done``); returns the tag key. With ``key``, that record is rewritten (its state moves
        from ``pending`` to ``done`` or ``interrupted``)."""
        key = key or f"{PROMOTION_TAG_PREFIX}{utc_stamp(_parse_time(record.get('time')))}"
        payload = json.dumps(record, sort_keys=True, default=str)
        if len(payload) > MAX_TAG_VALUE:
            raise ValueError(f"promotion record is {len(payload)} characters, above MLflow's {MAX_TAG_VALUE}")
        tags = {key: payload}
        if record.get("action", "promotion") == "promotion":
            tags[PROMOTION_STATUS_TAG] = record.get("status", "")
        self.set_tags(name, version, tags)
        if record.get("state", "done") == "done":
            self.append_description(name, version, describe_promotion(record))
        return key

    def settle_pending(self, name: str) -> list[dict[str, Any]]:
        """Close decisions a killed promotion left ``pending``: ``done`` when the champion alias
        points at that version (the move happened), ``interrupted`` otherwise. Returns them."""
        champion = self.aliases(name).get(CHAMPION) if self.versions(name) else None
        settled = []
        for record in self.promotion_history(name):
            if record.get("state") != "pending":
                continue
            key = record.pop("tag")
            moved = str(record.get("version")) == str(champion)
            record["state"] = "done" if moved else "interrupted"
            if not moved:
                record["promoted"] = False
            log.warning("promotion record %s of %s v%s was left pending by an interrupted run: now %s", key, name,
                        record.get("version"), record["state"])
            self.record_promotion(name, record["version"], record, key=key)
            settled.append(record)
        return settled

    def promotion_history(self, name: str) -> list[dict[str, Any]]:
        """Every recorded decision on every version of ``name``, oldest first."""
        history = []
        for v in self.versions(name):
            for key, value in (v.tags or {}).items():
                if not key.startswith(PROMOTION_TAG_PREFIX):
                    continue
                try:
                    record = json.loads(value)
                except json.JSONDecodeError:
                    log.warning("model %s v%s: unreadable promotion tag %s", name, v.version, key)
                    continue
                record.setdefault("version", str(v.version))
                record["tag"] = key
                history.append(record)
        return sorted(history, key=lambda r: (r["tag"][len(PROMOTION_TAG_PREFIX):], str(r.get("version"))))


def describe_promotion(record: dict[str, Any]) -> str:
    """One human-readable line for a model version's description."""
    when, action = record.get("time", ""), record.get("action", "promotion")
    if action == "approval":
        return (f"[{when}] {str(record.get('decision', '')).upper()} by {record.get('by', '?')} "
                f"({record.get('via', '')}): {record.get('reason', '')}")
    if action == "rollback":
        return (f"[{when}] ROLLBACK: champion moved back from v{record.get('rolled_back')} to v{record.get('version')}"
                f" by {record.get('by', '?')}: {record.get('reason', '')}")
    champ = record.get("previous_champion")
    vs = f"champion v{champ} {_num(record.get('champion_auc'))}" if champ else "no champion"
    return (f"[{when}] promotion {record.get('mode', '')}: "
            f"{str(record.get('status', '')).upper()}: challenger ROC-AUC {_num(record.get('challenger_auc'))} "
            f"(floor {record.get('min_auc')}, {vs}, tolerance {record.get('tolerance')}); {record.get('reason', '')}")


def _num(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if number != number else f"{number:.4f}"


def _parse_time(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _short(exc: Exception) -> str:
    return str(getattr(exc, "message", exc)).splitlines()[0][:200]
