"""Stage ``main``: every pipeline stage in order, in-process, as nested runs of one run.

Its parameters are the union of the stages' parameters (a name means the same thing, with
the same type and default, in every stage that declares it; a test checks that), plus
``skip``. Each stage gets the values of the parameters it declares. Outputs flow on: when a
stage declares a parameter that an earlier stage returned (for example ``export_time``
from ``score`` to ``ingest``) and the user left it at its default, the output is passed.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow

from cmle.context import Context
from cmle.errors import NotFoundError, ParameterError, RegistryError
from cmle.stages import STAGE_ORDER, Param, Stage, get_stage

log = logging.getLogger(__name__)


def _union_params() -> tuple[Param, ...]:
    seen: dict[str, Param] = {}
    for name in STAGE_ORDER:
        for p in get_stage(name).params:
            seen.setdefault(p.name, p)
    skip = Param("skip", str, "", "comma-separated stages to skip, e.g. explore,audience")
    return (*seen.values(), skip)


def parse_skip(skip: str) -> list[str]:
    names = [s.strip() for s in skip.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGE_ORDER]
    if unknown:
        raise ParameterError(f"main: skip names unknown stages {unknown}; stages: {', '.join(STAGE_ORDER)}")
    return names


def run_pipeline(ctx: Context, skip: str = "", **values: Any) -> dict:
    """Run the stages in order as nested runs; return each stage's outputs by name."""
    from cmle.runner import run_stage

    skipped = parse_skip(skip)
    if values.get("via") == "sql" and "audience" not in skipped and ctx.platform.backend != "aep":
        from cmle.audiences.sql import needs_aep

        raise needs_aep(ctx.platform.backend)  # before any stage runs, not at the end
    outputs: dict[str, dict] = {}
    carried: dict[str, Any] = {}
    for name in STAGE_ORDER:
        if name in skipped:
            log.info("main: skipping %s", name)
            continue
        stage = get_stage(name)
        params = {}
        for p in stage.params:
            value = values.get(p.name, p.default)
            if value == p.default and p.name in carried:
                value = carried[p.name]
            params[p.name] = value
        if name == "promote" and outputs.get("train", {}).get("skipped"):
            log.info("main: train kept the champion (%s); nothing to promote", outputs["train"].get("skip_reason"))
            continue
        if name == "score" and "featurize" in outputs:
            _align_scoring_set(ctx, outputs, values, params)
        try:
            out = run_stage(name, ctx.settings, params, ctx=ctx)
        except NotFoundError as exc:
            if name != "monitor":
                raise
            # monitor runs when the data allow it: without a score run there is nothing to monitor
            log.warning("main: monitor skipped: %s", exc)
            continue
        outputs[name] = out
        if name == "promote":
            _after_gate(out, params, skipped)
        carried.update({k: v for k, v in out.items() if isinstance(v, (str, int, float, bool))})
    mlflow.set_tag("cmle.stages", ",".join(outputs))
    return outputs


def _align_scoring_set(ctx: Context, outputs: dict, values: dict, params: dict) -> None:
    """When the model about to score was trained at another look-back than this run's
    featurize used (a look-back that follows a grown history, and a champion kept by
    retrain=auto or by the gate), rebuild and export the sets at the model's look-back so it
    scores features measured as it learnt them (:mod:`cmle.scoring.alignment`)."""
    from cmle import modelspec
    from cmle.errors import CmleError
    from cmle.registry import Registry
    from cmle.runner import run_stage
    from cmle.scoring import alignment, model_ref

    try:
        name = modelspec.model_name(ctx.settings, modelspec.spec_for(ctx.settings, params.get("spec", "")))
        ref = model_ref.resolve(name, params.get("model", "champion"))
        wanted = alignment.model_lookback(Registry.current().version(name, ref.version).tags)
    except CmleError:
        return  # score says what is wrong
    built = outputs["featurize"].get("lookback_days")
    if not alignment.mismatch(wanted, built):
        return
    log.warning("main: %s v%s was trained with a %s-day look-back, this run's features use %s days: rebuilding the "
                "scoring set at %s days before scoring", name, ref.version, wanted, built, wanted)
    for stage_name in ("featurize", "export"):
        stage_params = {p.name: values.get(p.name, p.default) for p in get_stage(stage_name).params}
        if stage_name == "featurize":
            stage_params["lookback_days"] = wanted
        outputs[f"{stage_name}_for_score"] = run_stage(stage_name, ctx.settings, stage_params, ctx=ctx)


def _after_gate(out: dict, params: dict, skipped: list[str]) -> None:
    """Stop when the gate kept the challenger out and there is no champion to score with;
    go on with the existing champion otherwise, saying so."""
    if out.get("promoted") or out.get("status") == "already_champion":
        return
    status, version = out.get("status"), out.get("challenger_version")
    why = {"failed": f"the promotion gate refused challenger v{version} ({out.get('reason')})",
           "insufficient_evidence": f"the promotion gate did not decide on challenger v{version} ({out.get('reason')})",
           "pending_approval": f"challenger v{version} passed the gate and awaits approval (`cmle approve --reason "
                               "...`, or tag approved=true on the version; then `cmle promote --mode approval`)",
           "rejected": f"challenger v{version} was rejected ({out.get('reason')})",
           }.get(status, f"promote ran with mode={out.get('mode')} and moved no alias")
    if out.get("champion_version"):
        log.warning("main: %s; going on with the existing champion v%s", why, out["champion_version"])
        return
    if all(s in skipped for s in ("score", "ingest", "audience")):
        return
    advice = {"pending_approval": "Approve it and run main or promote again",
              "insufficient_evidence": "Use more profiles (or a larger holdout_fraction) so the evaluation rows hold "
                                       f"at least min_eval_positives = {params.get('min_eval_positives')} positives, "
                                       "and run main again"}.get(
        status, f"If this model is good enough, lower min_auc (now {params.get('min_auc')}) or promote it yourself "
                "(`cmle promote --min_auc ...`); otherwise improve the training (more profiles or history, "
                "max_evals) and run main again")
    raise RegistryError(f"main: {why}, and model {out.get('model_name')!r} has no champion to score with, so main "
                        f"stops before score. {advice}")


STAGE = Stage(
    name="main",
    func=run_pipeline,
    params=_union_params(),
    help="Run every stage in order (synthetic → explore → featurize → export → train → promote → "
         "score → ingest → audience → monitor) as nested MLflow runs of one run.",
)
