"""Stage ``promote``: gate the challenger against the champion and move alias ``champion``.

What the gate compares (docs/promotion.md):

- rows neither model trained on (:mod:`cmle.promotion.evaluation`): the challenger's holdout,
  kept to the profiles the champion held out too; too few positives there and the gate does
  not decide (``min_eval_positives``);
- each model scored by its own version; every metric of ``metrics`` (ROC-AUC, PR-AUC, ECE,
  Brier, top-decile lift), each with its tolerance, and a paired bootstrap interval of each
  difference (:mod:`cmle.model.gate`); the challenger must also reach ``min_auc``;
- realised outcomes of both models on their latest common window, when a provider has them
  (:mod:`cmle.promotion.evidence`);
- a challenger that training flagged for leakage is refused unless ``allow_leakage``; a
  version that was rolled back is refused.

``mode``: ``enabled`` moves ``champion`` on success and, on registries with stages (not
Unity Catalog), transitions the version to Production, archiving the previous one;
``dry_run`` decides and records, and changes nothing else; ``approval`` marks a passing
challenger pending, and a later run completes the move once it is approved (``cmle
approve``, or the tag ``approved`` set in the registry UI) or records the rejection.
``rollback`` moves the champion back to the previous champion named in the history.

Every decision is recorded on the version before any alias moves (pending → move → done)
and read back by ``cmle history``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from cmle import failpoints, modelspec, tracking
from cmle.columns import ID_COLUMN, LABEL_COLUMN, SNAPSHOT_COLUMN
from cmle.context import Context
from cmle.errors import CmleError, RegistryError
from cmle.model import comparison, gate, train_checks
from cmle.promotion import approval, evaluation, events, evidence
from cmle.registry import CHALLENGER, CHAMPION, PRODUCTION, TAG_PREFIX, Registry
from cmle.stages import SPEC_PARAM, Param, Stage

log = logging.getLogger(__name__)

MODES = ("enabled", "dry_run", "approval")
REALISED = ("auto", "off", "require")
ROLLED_BACK_TAG = f"{TAG_PREFIX}rolled_back"
EVALUATION_ARTIFACT = "promotion/evaluation_rows.parquet"
# Recorded metrics of a champion that cannot score the challenger's rows (other features).
_RECORDED = {"roc_auc": "holdout_roc_auc", "pr_auc": "holdout_pr_auc", "ece": "holdout_ece",
             "brier": "holdout_brier", "top_decile_lift": "holdout_lift_decile_1"}
MAX_REASON = 700


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _run_id() -> str | None:
    return mlflow.active_run().info.run_id if mlflow.active_run() else None


def check_same_goal(name: str, challenger, champion) -> None:
    """A challenger replaces a champion only if both predict the same goal (their specs' goal tags)."""
    goal = f"{TAG_PREFIX}goal"
    mine, theirs = (challenger.tags or {}).get(goal), (champion.tags or {}).get(goal)
    if mine and theirs and mine != theirs:
        raise RegistryError(f"the champion v{champion.version} of {name} predicts {theirs!r}, the challenger "
                            f"v{challenger.version} {mine!r}: their scores mean different things. Give the spec "
                            "its own model_name (docs/model-spec.md), or remove the champion alias to start over")


def promote(ctx: Context, min_auc: float = gate.DEFAULT_MIN_AUC, tolerance: float = gate.DEFAULT_TOLERANCE,
            mode: str = "enabled", metrics: str = gate.DEFAULT_METRICS, confidence: float = gate.DEFAULT_CONFIDENCE,
            bootstrap: int = comparison.DEFAULT_BOOTSTRAP, min_eval_positives: int = gate.DEFAULT_MIN_EVAL_POSITIVES,
            allow_leakage: bool = False, realised: str = "auto", approval_tag: str = approval.DEFAULT_APPROVAL_TAG,
            rollback: bool = False, by: str = "", reason: str = "", spec: str = "",
            registry: Registry | None = None) -> dict:
    gate.check_thresholds(min_auc, tolerance, confidence)
    rules = gate.parse_metrics(metrics, tolerance)
    approval_tag = approval.check_tag_name(approval_tag)
    registry = registry or Registry.current()
    name = modelspec.model_name(ctx.settings, modelspec.spec_for(ctx.settings, spec))
    who = by.strip() or approval.current_user()
    registry.settle_pending(name)
    if rollback:
        return roll_back(registry, name, mode, who, reason)
    challenger = registry.by_alias(name, CHALLENGER)
    champion = registry.by_alias(name, CHAMPION, required=False)
    if champion is not None and str(champion.version) != str(challenger.version):
        check_same_goal(name, challenger, champion)
    if champion is not None and str(champion.version) == str(challenger.version):
        log.info("promote: challenger v%s is already the champion; nothing to decide", challenger.version)
        return {"model_name": name, "status": "already_champion", "promoted": False, "mode": mode,
                "challenger_version": str(challenger.version), "champion_version": str(champion.version)}
    if mode == "approval":
        resumed = _resume_approval(registry, name, challenger, champion, approval_tag, mode)
        if resumed is not None:
            return resumed

    record = {"action": "promotion", "time": _now(), "mode": mode, "version": str(challenger.version),
              "previous_champion": str(champion.version) if champion is not None else None,
              "min_auc": min_auc, "tolerance": tolerance, "metrics": metrics, "confidence": confidence,
              "bootstrap": bootstrap, "min_eval_positives": min_eval_positives,
              "registry_has_stages": registry.has_stages, "stage": None, "run_id": _run_id()}
    status, result, frame = _decide(ctx, registry, name, challenger, champion, rules, record, min_auc=min_auc,
                                    confidence=confidence, bootstrap=bootstrap,
                                    min_eval_positives=min_eval_positives, allow_leakage=allow_leakage,
                                    realised=realised, who=who, reason=reason)
    promote_now = status == "passed" and mode == "enabled"
    record.update(status=status, promoted=promote_now, state="pending" if promote_now else "done",
                  reason=result.reason[:MAX_REASON], comparisons=[c.as_record() for c in result.comparisons])
    if status == "passed" and mode == "approval":
        record["approval"] = {"state": approval.PENDING}
    key = registry.record_promotion(name, challenger.version, _fit_record(record))
    if status == "passed" and mode == "approval":
        approval.mark_pending(registry, name, challenger.version, approval_tag)
        log.warning("promote: challenger v%s of %s passed the gate and awaits approval: `cmle approve --reason ...` "
                    "(or tag %s=approved on the version), then run promote again", challenger.version, name,
                    approval_tag)
    if promote_now:
        _move(registry, name, challenger.version, record, key)
    _log(record, registry.promotion_history(name), frame)
    log.info("promote (%s): %s v%s: %s", mode, status.upper(), challenger.version, result.reason)
    return _outputs(registry, name, record)


def _decide(ctx: Context, registry: Registry, name: str, challenger, champion, rules, record: dict, *, min_auc,
            confidence, bootstrap, min_eval_positives, allow_leakage, realised, who, reason):
    """The gate's decision: (status, GateResult, the evaluation rows with both scores or None).
    Fills the evidence parts of ``record`` (evaluation rows, scorers, realised, override)."""
    tags = challenger.tags or {}
    if tags.get(ROLLED_BACK_TAG):
        back = json.loads(tags[ROLLED_BACK_TAG])
        return "failed", gate.GateResult(False, (
            f"v{challenger.version} was rolled back on {back.get('time', '?')[:19]} by {back.get('by', '?')} "
            f"({back.get('reason') or 'no reason given'}); it is not promoted again: train a new version, or delete "
            f"tag {ROLLED_BACK_TAG} from v{challenger.version} to allow it")), None
    leak = train_checks.read_leakage(tags)
    if leak:
        if not allow_leakage:
            return "failed", gate.GateResult(False, (
                f"training flagged v{challenger.version} for leakage ({leak.get('summary', '')}); promote refuses it: "
                "retrain without those features, or pass allow_leakage=true to promote it anyway (the override is "
                "recorded)")), None
        record["override"] = {"leakage": leak.get("summary", ""), "by": who, "reason": reason or "no reason given"}
        log.warning("promote: v%s is flagged for leakage (%s); promoting it anyway, as allow_leakage=true asks "
                    "(recorded)", challenger.version, leak.get("summary", ""))

    holdout, uri = evaluation.load_holdout(challenger)
    rows = evaluation.rows_neither_saw(challenger, champion, holdout, uri)
    record["evaluation"] = rows.as_record()
    record["holdout_uri"], record["holdout_rows"] = uri, len(holdout)
    # Too few positives to tell two models apart: no decision. A first model (no champion) is
    # only held to the floor, so it is judged, with a warning, rather than blocking a first run.
    if rows.positives < min_eval_positives and champion is None:
        log.warning("promote: the evaluation rows hold %d positives, fewer than min_eval_positives = %d: the ROC-AUC "
                    "floor is judged on thin evidence (no champion to compare with)", rows.positives,
                    min_eval_positives)
        record["thin_evidence"] = True
    elif rows.positives < min_eval_positives:
        return "insufficient_evidence", gate.GateResult(False, (
            f"not decided: the evaluation rows ({rows.rule}) hold {rows.positives} positives in {rows.rows} rows, "
            f"fewer than min_eval_positives = {min_eval_positives} needed to tell models apart: use more profiles "
            "or a larger holdout_fraction when training (or lower min_eval_positives knowingly)")), None
    y = rows.frame[LABEL_COLUMN].to_numpy(dtype="int64")
    mine = evaluation.score(name, challenger, rows.frame)
    record["scored_by"] = {"challenger": mine.as_record()}
    challenger_auc = comparison.point("roc_auc", y, mine.propensity)
    record["challenger_auc"], record["champion_auc"] = challenger_auc, None
    frame = _scored_rows(rows.frame, mine.propensity, None)
    record["evidence"] = ["holdout"]
    if champion is None:
        result = gate.decide(challenger_auc, None, min_auc)
        return _status(result), result, frame

    names = [r.metric for r in rules]
    try:
        theirs = evaluation.score(name, champion, rows.frame)
    except (MlflowException, CmleError, ValueError, KeyError) as exc:
        comparisons = _recorded_comparisons(champion, rules, y, mine.propensity, exc, record)
    else:
        record["scored_by"]["champion"] = theirs.as_record()
        frame = _scored_rows(rows.frame, mine.propensity, theirs.propensity)
        diffs = comparison.paired(names, y, mine.propensity, theirs.propensity, resamples=bootstrap,
                                  confidence=confidence, seed=0)
        comparisons = [gate.judge(d, r, "holdout", confidence) for d, r in zip(diffs, rules)]
        record["champion_auc"] = comparison.point("roc_auc", y, theirs.propensity)
    realised_cmp, realised_record = _realised(ctx, name, challenger, champion, rules, realised, min_eval_positives,
                                              bootstrap, confidence)
    if realised_record:
        record["realised"] = realised_record
    if realised_cmp:
        comparisons += realised_cmp
        record["evidence"].append(f"realised:{realised_record['window']}")
    elif realised == "require":
        why = realised_record.get("why", "no provider has outcomes of both versions") if realised_record else \
            "no provider has outcomes of both versions on a common window"
        return "insufficient_evidence", gate.GateResult(False, f"not decided: realised=require, but {why}",
                                                        tuple(comparisons)), frame
    result = gate.decide(challenger_auc, comparisons, min_auc)
    return _status(result), result, frame


def _status(result: gate.GateResult) -> str:
    return "passed" if result.passed else "failed"


def _recorded_comparisons(champion, rules, y, p, exc: Exception, record: dict) -> list[gate.Comparison]:
    """The champion cannot score these rows (other features): compare with its own recorded
    holdout metrics, point estimates on other rows (recorded as such); RegistryError without them."""
    note = f"the champion could not score these rows ({str(exc).splitlines()[0][:200]})"
    log.warning("promote: champion v%s: %s; comparing with its recorded holdout metrics", champion.version, note)
    tags = champion.tags or {}
    out = []
    for rule in rules:
        value = tags.get(f"{TAG_PREFIX}{_RECORDED[rule.metric]}")
        if value in (None, ""):
            continue
        diff = comparison.Difference(rule.metric, comparison.point(rule.metric, y, p), float(value),
                                     comparison.METRICS[rule.metric].better_by(comparison.point(rule.metric, y, p),
                                                                              float(value)),
                                     float("nan"), float("nan"), 0)
        out.append(gate.judge(diff, rule, "holdout vs the champion's recorded holdout metrics", 0.0))
    if not any(c.metric == "roc_auc" for c in out):
        raise RegistryError(f"champion v{champion.version} cannot score the evaluation rows and has no recorded "
                            f"ROC-AUC ({note}); compare by hand or remove the champion alias")
    record["champion_auc"] = next(c.champion for c in out if c.metric == "roc_auc")
    record["champion_source"] = note + "; compared with its recorded holdout metrics (other rows, no interval)"
    return out


def _realised(ctx, name, challenger, champion, rules, realised, min_positives, bootstrap, confidence):
    """Comparisons on realised outcomes (latest common window of both versions), and the record of it."""
    if realised == "off":
        return [], {}
    pair = evidence.latest_common_window(name, str(challenger.version), str(champion.version),
                                         evidence.providers(ctx))
    if pair is None:
        return [], {}
    rec = {"window": pair.window, "challenger": pair.challenger.as_record(), "champion": pair.champion.as_record()}
    thin = min(pair.challenger.positives, pair.champion.positives)
    if thin < min_positives:
        rec.update(used=False, why=f"the realised window {pair.window} holds {thin} positives for one model, fewer "
                                   f"than min_eval_positives = {min_positives}")
        return [], rec
    diffs = comparison.unpaired([r.metric for r in rules], pair.challenger.y, pair.challenger.propensity,
                                pair.champion.y, pair.champion.propensity, resamples=bootstrap,
                                confidence=confidence, seed=0)
    rec["used"] = True
    return [gate.judge(d, r, f"realised:{pair.window}", confidence) for d, r in zip(diffs, rules)], rec


def _scored_rows(rows: pd.DataFrame, mine: np.ndarray, theirs: np.ndarray | None) -> pd.DataFrame:
    """The evaluation rows (ids, label) with each model's propensity, for the run's artifact."""
    out = rows[[c for c in (ID_COLUMN, SNAPSHOT_COLUMN, LABEL_COLUMN) if c in rows.columns]].copy()
    out["challenger_propensity"] = mine
    if theirs is not None:
        out["champion_propensity"] = theirs
    return out


def _resume_approval(registry: Registry, name: str, challenger, champion, approval_tag: str, mode: str) -> dict | None:
    """In approval mode: complete an approved request, record a rejection, or report that it is
    still pending. None when there is no open request for this challenger against this champion."""
    mine = [r for r in registry.promotion_history(name)
            if str(r.get("version")) == str(challenger.version) and r.get("action", "promotion") == "promotion"]
    if not mine:
        return None
    last = mine[-1]
    champ = str(champion.version) if champion is not None else None
    if last.get("status") == "rejected" and last.get("previous_champion") == champ:
        return _outputs(registry, name, last)
    opened = (last.get("status") == "passed" and not last.get("promoted")
              and (last.get("approval") or {}).get("state") == approval.PENDING)
    if not opened or last.get("previous_champion") != champ:
        return None  # no request, or one made against another champion: decide again
    found = approval.state_of(challenger.tags, approval_tag)
    if found.state not in (approval.APPROVED, approval.REJECTED):
        log.warning("promote: challenger v%s of %s still awaits approval (since %s): `cmle approve --reason ...` or "
                    "tag %s=approved on the version, then run promote again", challenger.version, name,
                    str(last.get("time"))[:19], approval_tag)
        return {**_outputs(registry, name, last), "status": "pending_approval"}
    record = {k: v for k, v in last.items() if k != "tag"}
    record.update(time=_now(), mode=mode, approval=found.as_record(), run_id=_run_id(), request=last["tag"])
    registry.set_tags(name, challenger.version, {approval.APPROVAL_TAG: found.state})
    if found.state == approval.REJECTED:
        record.update(status="rejected", promoted=False, state="done",
                      reason=f"rejected by {found.by} ({found.via}): {found.reason or 'no reason given'}"[:MAX_REASON])
        registry.record_promotion(name, challenger.version, _fit_record(record))
        log.warning("promote: v%s was rejected; the champion stays %s", challenger.version, champ)
    else:
        record.update(status="passed", promoted=True, state="pending",
                      reason=(f"approved by {found.by} ({found.via}): {found.reason or 'no reason given'}; "
                              f"gate: {last.get('reason', '')}")[:MAX_REASON])
        key = registry.record_promotion(name, challenger.version, _fit_record(record))
        _move(registry, name, challenger.version, record, key)
        log.info("promote: approved v%s is now the champion of %s", challenger.version, name)
    _log(record, registry.promotion_history(name), None)
    return _outputs(registry, name, record)


def roll_back(registry: Registry, name: str, mode: str, who: str, reason: str) -> dict:
    """Move ``champion`` back to the champion before the current one (from the history)."""
    champion = registry.by_alias(name, CHAMPION, required=False)
    if champion is None:
        raise RegistryError(f"model {name!r} has no champion to roll back")
    current = str(champion.version)
    made = [r for r in registry.promotion_history(name) if r.get("action", "promotion") == "promotion"
            and r.get("promoted") and r.get("state") == "done" and str(r.get("version")) == current]
    if not made:
        raise RegistryError(f"no promotion record says how v{current} became the champion of {name}, so there is no "
                            "previous champion to go back to; move the alias yourself (`cmle history` shows the "
                            "decisions)")
    target = made[-1].get("previous_champion")
    if not target:
        raise RegistryError(f"v{current} was the first champion of {name}: there is no earlier champion to go back to")
    registry.version(name, target)  # a clear error if it was deleted since
    record = {"action": "rollback", "time": _now(), "mode": mode, "version": str(target), "rolled_back": current,
              "by": who, "reason": reason or "no reason given", "promoted": True, "state": "pending",
              "registry_has_stages": registry.has_stages, "stage": None, "run_id": _run_id()}
    if mode == "dry_run":
        log.info("promote --rollback (dry run): the champion would move back from v%s to v%s", current, target)
        return {"model_name": name, "status": "dry_run", "promoted": False, "mode": mode, "rollback": True,
                "champion_version": current, "rollback_to": str(target), "reason": record["reason"]}
    key = registry.record_promotion(name, target, record)
    registry.set_tags(name, current, {ROLLED_BACK_TAG: json.dumps({"time": record["time"], "by": who,
                                                                   "reason": record["reason"], "to": str(target)})})
    _move(registry, name, target, record, key)
    log.warning("promote: rolled the champion of %s back from v%s to v%s (%s)", name, current, target,
                record["reason"])
    _log(record, registry.promotion_history(name), None)
    return {"model_name": name, "status": "rolled_back", "promoted": True, "mode": mode, "rollback": True,
            "previous_champion": current, "champion_version": str(target), "stage": record["stage"],
            "reason": record["reason"]}


def _move(registry: Registry, name: str, version, record: dict, key: str) -> None:
    """Move ``champion`` (and the stage where there are stages) after the pending record, then close it."""
    failpoints.hit("promote.recorded")
    registry.set_alias(name, CHAMPION, version)
    if registry.transition_to(name, version, PRODUCTION):
        record["stage"] = PRODUCTION
    failpoints.hit("promote.moved")
    record["state"] = "done"
    if events.supports_webhooks(registry.uri):
        try:  # who the registry notified: the server fires the webhooks itself
            record["webhooks"] = events.registered_for(registry.client)
        except Exception as exc:  # noqa: BLE001 - only the record's note depends on it
            log.debug("webhook listing failed: %s", exc)
    registry.record_promotion(name, version, _fit_record(record), key=key)


def _fit_record(record: dict) -> dict:
    """The record, its reason shortened if the whole would exceed MLflow's tag limit (the full
    decision is in the run's promotion/decision.json)."""
    from cmle.registry import MAX_TAG_VALUE

    if len(json.dumps(record, default=str)) <= MAX_TAG_VALUE:
        return record
    short = {**record, "reason": str(record.get("reason", ""))[:200]}
    for c in short.get("comparisons") or []:
        c.pop("note", None)
    return short


def _outputs(registry: Registry, name: str, record: dict) -> dict:
    current = registry.by_alias(name, CHAMPION, required=False)
    status = record.get("status", "")
    if status == "passed" and not record.get("promoted") and (record.get("approval") or {}).get("state") == "pending":
        status = "pending_approval"
    evaluated = record.get("evaluation") or {}
    return {"model_name": name, "status": status, "promoted": bool(record.get("promoted")),
            "mode": record.get("mode"), "reason": record.get("reason", ""), "challenger_version": record.get("version"),
            "previous_champion": record.get("previous_champion"),
            "champion_version": str(current.version) if current is not None else None,
            "challenger_auc": record.get("challenger_auc"), "champion_auc": record.get("champion_auc"),
            "stage": record.get("stage"), "evaluation_rows": evaluated.get("rows"),
            "evaluation_positives": evaluated.get("positives"), "evidence": record.get("evidence"),
            "approval": (record.get("approval") or {}).get("state")}


def _log(record: dict, history: list[dict], frame: pd.DataFrame | None) -> None:
    if mlflow.active_run() is None:
        return
    mlflow.log_metrics({k: float(record[k]) for k in ("challenger_auc", "champion_auc")
                        if isinstance(record.get(k), (int, float)) and np.isfinite(record[k])})
    for c in record.get("comparisons") or []:
        if c.get("better_by") is not None and c.get("evidence") == "holdout":
            mlflow.log_metric(f"better_by_{c['metric']}", float(c["better_by"]))
    mlflow.set_tags({f"{TAG_PREFIX}promotion_status": record.get("status", record.get("action", "")),
                     f"{TAG_PREFIX}challenger_version": str(record.get("version")),
                     f"{TAG_PREFIX}promoted": str(bool(record.get("promoted"))).lower()})
    tracking.log_dict(record, "promotion/decision.json")
    if frame is not None:
        tracking.log_parquet(frame, EVALUATION_ARTIFACT)
    if history:
        tracking.log_table(pd.DataFrame(history).drop(columns=["tag"], errors="ignore").astype(str),
                           "promotion/history.csv")


STAGE = Stage(
    name="promote",
    func=promote,
    params=(
        Param("min_auc", float, gate.DEFAULT_MIN_AUC, "absolute ROC-AUC floor of the challenger (Customer AI: 0.65)"),
        Param("tolerance", float, gate.DEFAULT_TOLERANCE,
              "how much lower than the champion's ROC-AUC the challenger's may be (beyond the noise)", min=0.0),
        Param("mode", str, "enabled", "enabled: promote on success; dry_run: decide and record only; approval: a "
              "passing challenger waits for `cmle approve` (or tag approved), a later promote completes the move",
              choices=MODES),
        Param("metrics", str, gate.DEFAULT_METRICS, "metrics compared with the champion, metric[:tolerance] comma "
              "separated: roc_auc (its tolerance: `tolerance`), pr_auc, ece, brier, top_decile_lift"),
        Param("confidence", float, gate.DEFAULT_CONFIDENCE, "a comparison fails when the challenger is worse by more "
              "than its tolerance with this confidence (bootstrap); 0: on the point estimates", min=0.0),
        Param("bootstrap", int, comparison.DEFAULT_BOOTSTRAP, "bootstrap resamples of the evaluation rows", min=0),
        Param("min_eval_positives", int, gate.DEFAULT_MIN_EVAL_POSITIVES, "do not decide when the rows neither model "
              "trained on hold fewer positives (with no champion: decide on the floor, with a warning)", min=1),
        Param("allow_leakage", bool, False, "promote a challenger that training flagged for leakage (recorded)"),
        Param("realised", str, "auto", "realised outcomes of both models (from a provider, e.g. monitoring): auto = "
              "compare on them when present, off, require = do not decide without", choices=REALISED),
        Param("approval_tag", str, approval.DEFAULT_APPROVAL_TAG, "the version tag a person sets by hand to approve "
              "(approved/true/yes) or reject (rejected/false/no)"),
        Param("rollback", bool, False, "move the champion back to the previous champion named in the history"),
        Param("by", str, "", "who acts (recorded with a rollback, an override or an approval); default: the user"),
        Param("reason", str, "", "why (recorded with a rollback, an override or an approval)"),
        SPEC_PARAM,
    ),
    help="Gate the challenger (ROC-AUC floor; no worse than the champion on ROC-AUC, PR-AUC, ECE, Brier and top-"
         "decile lift, beyond the noise, on rows neither trained on; no leakage flag) and move alias champion, "
         "after approval in mode approval; --rollback moves it back. Every decision is recorded on the version.",
)
