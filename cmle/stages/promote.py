"""Stage ``promote``: gate the challenger against the champion and move alias ``champion``.

Both models are scored on the challenger's stored holdout rows (the same data): the
challenger must reach ``min_auc`` and be no worse than the champion by more than
``tolerance`` (ROC-AUC). A first model (no champion) only needs the floor. ``mode``:
``enabled`` moves ``champion`` on success and, on registries with stages (not Unity
Catalog), transitions the version to Production, archiving the previous one;
``dry_run`` decides and records, and changes nothing else. Every decision is recorded on
the challenger version (tag + description) and can be read back with
:meth:`cmle.registry.Registry.promotion_history`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from cmle import failpoints, modelspec, tracking
from cmle.columns import LABEL_COLUMN
from cmle.context import Context
from cmle.errors import CmleError, RegistryError
from cmle.model import artifact, gate, metrics
from cmle.registry import CHALLENGER, CHAMPION, PRODUCTION, TAG_PREFIX, Registry
from cmle.stages import SPEC_PARAM, Param, Stage
from cmle.stages.train import HOLDOUT_ARTIFACT, HOLDOUT_TAG

log = logging.getLogger(__name__)

MODES = ("enabled", "dry_run")


def load_holdout(version) -> tuple[pd.DataFrame, str]:
    """The holdout rows stored with the version's training run, and their URI."""
    uri = (version.tags or {}).get(HOLDOUT_TAG) or f"runs:/{version.run_id}/{HOLDOUT_ARTIFACT}"
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"model version {version.version} has no stored holdout at {uri} ({exc}); "
                            "promote compares models on the holdout the train stage stores: retrain with "
                            "`cmle train` (retrain=true)") from None
    return pd.read_parquet(path), uri


def holdout_auc(name: str, version: str, holdout: pd.DataFrame) -> float:
    """ROC-AUC of the registered version's ``propensity`` on the holdout rows."""
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    outputs = model.predict(artifact.conform_input(holdout, model.metadata.get_input_schema()))
    if "propensity" not in outputs:
        raise RegistryError(f"model {name} v{version} returns {list(outputs.columns)}, without 'propensity'")
    return metrics.roc_auc(holdout[LABEL_COLUMN].to_numpy(), outputs["propensity"].to_numpy())


def champion_auc(name: str, champion, holdout: pd.DataFrame) -> tuple[float | None, str]:
    """The champion's AUC on the same holdout, or, if it cannot score those rows (other
    features), its own recorded holdout AUC; and which of the two it is."""
    try:
        return holdout_auc(name, champion.version, holdout), "rescored on the challenger's holdout"
    except (MlflowException, CmleError, ValueError, KeyError) as exc:
        recorded = (champion.tags or {}).get(f"{TAG_PREFIX}holdout_roc_auc")
        note = f"could not score the challenger's holdout ({str(exc).splitlines()[0][:200]})"
        log.warning("promote: champion v%s %s", champion.version, note)
        if recorded is None:
            return None, note + "; no recorded AUC either"
        return float(recorded), note + "; used its recorded holdout ROC-AUC"


def check_same_goal(name: str, challenger, champion) -> None:
    """A challenger replaces a champion only if both predict the same goal (their specs' goal tags)."""
    goal = f"{TAG_PREFIX}goal"
    mine, theirs = (challenger.tags or {}).get(goal), (champion.tags or {}).get(goal)
    if mine and theirs and mine != theirs:
        raise RegistryError(f"the champion v{champion.version} of {name} predicts {theirs!r}, the challenger "
                            f"v{challenger.version} {mine!r}: their scores mean different things. Give the spec "
                            "its own model_name (docs/model-spec.md), or remove the champion alias to start over")


def promote(ctx: Context, min_auc: float = gate.DEFAULT_MIN_AUC, tolerance: float = gate.DEFAULT_TOLERANCE,
            mode: str = "enabled", registry: Registry | None = None, spec: str = "") -> dict:
    gate.check_thresholds(min_auc, tolerance)
    registry = registry or Registry.current()
    name = modelspec.model_name(ctx.settings, modelspec.spec_for(ctx.settings, spec))
    registry.settle_pending(name)
    challenger = registry.by_alias(name, CHALLENGER)
    champion = registry.by_alias(name, CHAMPION, required=False)
    if champion is not None and str(champion.version) != str(challenger.version):
        check_same_goal(name, challenger, champion)
    if champion is not None and str(champion.version) == str(challenger.version):
        log.info("promote: challenger v%s is already the champion; nothing to decide", challenger.version)
        return {"model_name": name, "status": "already_champion", "promoted": False, "mode": mode,
                "challenger_version": str(challenger.version), "champion_version": str(champion.version)}

    holdout, holdout_uri = load_holdout(challenger)
    challenger_auc = holdout_auc(name, challenger.version, holdout)
    champ_auc, champ_source = champion_auc(name, champion, holdout) if champion is not None else (None, "")
    if champion is not None and champ_auc is None:
        raise RegistryError(f"champion v{champion.version} of {name} cannot score the holdout and has no recorded "
                            f"AUC ({champ_source}); compare by hand or remove the champion alias")
    result = gate.decide(challenger_auc, champ_auc, min_auc, tolerance)

    promote_now = result.passed and mode == "enabled"
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "mode": mode, "status": "passed" if result.passed else "failed", "promoted": promote_now,
        "state": "pending" if promote_now else "done",
        "reason": result.reason, "version": str(challenger.version), "challenger_auc": challenger_auc,
        "previous_champion": str(champion.version) if champion is not None else None, "champion_auc": champ_auc,
        "champion_auc_source": champ_source or None, "min_auc": min_auc, "tolerance": tolerance,
        "metric": "roc_auc", "holdout_uri": holdout_uri, "holdout_rows": len(holdout),
        "registry_has_stages": registry.has_stages,
        "stage": None,
        "run_id": mlflow.active_run().info.run_id if mlflow.active_run() else None,
    }
    # Record first (pending), then move the alias, then mark the record done: a kill in
    # between leaves a pending record that the next promote settles, never an unexplained move.
    key = registry.record_promotion(name, challenger.version, record)
    promoted = False
    if promote_now:
        failpoints.hit("promote.recorded")
        registry.set_alias(name, CHAMPION, challenger.version)
        promoted = True
        if registry.transition_to(name, challenger.version, PRODUCTION):
            record["stage"] = PRODUCTION
        failpoints.hit("promote.moved")
        record["state"] = "done"
        registry.record_promotion(name, challenger.version, record, key=key)
    _log(record, registry.promotion_history(name))
    log.info("promote (%s): %s v%s: %s", mode, record["status"].upper(), challenger.version, result.reason)
    current = registry.by_alias(name, CHAMPION, required=False)
    return {"model_name": name, "status": record["status"], "promoted": promoted, "mode": mode,
            "reason": result.reason, "challenger_version": str(challenger.version),
            "previous_champion": record["previous_champion"],
            "champion_version": str(current.version) if current is not None else None,
            "challenger_auc": challenger_auc, "champion_auc": champ_auc, "stage": record["stage"]}


def _log(record: dict, history: list[dict]) -> None:
    if mlflow.active_run() is None:
        return
    mlflow.log_metrics({k: float(record[k]) for k in ("challenger_auc", "champion_auc")
                        if record.get(k) is not None and np.isfinite(record[k])})
    mlflow.set_tags({f"{TAG_PREFIX}promotion_status": record["status"],
                     f"{TAG_PREFIX}challenger_version": str(record["version"]),
                     f"{TAG_PREFIX}promoted": str(record["promoted"]).lower()})
    tracking.log_dict(record, "promotion/decision.json")
    if history:
        tracking.log_table(pd.DataFrame(history).drop(columns=["tag"], errors="ignore"), "promotion/history.csv")


STAGE = Stage(
    name="promote",
    func=promote,
    params=(
        Param("min_auc", float, gate.DEFAULT_MIN_AUC, "absolute ROC-AUC floor of the challenger (Customer AI: 0.65)"),
        Param("tolerance", float, gate.DEFAULT_TOLERANCE,
              "how much lower than the champion's ROC-AUC the challenger's may be", min=0.0),
        Param("mode", str, "enabled", "enabled: promote on success; dry_run: decide and record only",
              choices=MODES),
        SPEC_PARAM,
    ),
    help="Gate the challenger (ROC-AUC floor, no worse than the champion on the same holdout) and move alias "
         "champion; on registries with stages also transition it to Production. Every decision is recorded "
         "on the model version.",
)
