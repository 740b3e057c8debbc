"""Stage ``audience``: audiences from score rules, evaluated, plotted and activated.

Each rule (``rules``, see :mod:`cmle.audiences.rules`) renders as PQL over the score
attributes under ``_{tenant}`` and becomes an audience named
``naming.audience(rule, owner)`` (get-or-create: re-running updates, never duplicates).
The audiences are evaluated now and their qualified counts logged with a reach curve
(profiles reached against the propensity threshold, from the merged profile attributes).
With a ``destination`` (default ``local-files``; empty = skip), every audience is activated:
the destination receives the members with their identity and ``fields``, and the
platform records every send, success or failure. ``local-files`` exists only on the
embedded platform: on AEP the default means "no destination configured", and activation
is skipped with a note saying how to name one (a batch destination dataflow set up once in
the sandbox).

With ``via = sql`` (AEP only) each rule becomes a Data Distiller SQL audience instead
(``CREATE AUDIENCE ... AS (SELECT ...)`` over the owner's scores dataset, each profile's newest
score; see :mod:`cmle.audiences.sql`), named ``naming.sql_audience(rule, owner)`` and replaced on
every run. Adobe's limits apply: its dataset is not enabled for Profile, it can be activated to
file-based destinations only (set up in the sandbox's Destinations UI, not by this stage) and
Adobe deletes it after 30 days, so re-run the stage to keep it.
"""

from __future__ import annotations

import logging

import mlflow
import pandas as pd

from cmle import modelspec, naming, tracking
from cmle.audiences import sql as audience_sql
from cmle.audiences.plots import reach_figure
from cmle.audiences.rules import DEFAULT_RULES, parse_rules, reach_curve, uses_factors
from cmle.columns import ID_COLUMN
from cmle.context import Context
from cmle.errors import NotFoundError, ParameterError, PlatformError
from cmle.scoring.schema import SCORE_COLUMNS
from cmle.stages import SPEC_PARAM, Param, Stage
from cmle.stages.ingest import scores_dataset

log = logging.getLogger(__name__)

DEFAULT_DESTINATION = "local-files"  # the embedded platform's folder destination
DEFAULT_FIELDS = "propensity,score,percentile,decile,bucket,model_version"
_RULE_FIELDS = ["propensity", "percentile", "bucket"]
VIAS = ("segments", "sql")


def parse_fields(text: str) -> list[str]:
    """Score fields sent with each member besides the identity; ParameterError for unknown ones."""
    fields = list(dict.fromkeys(f.strip() for f in text.split(",") if f.strip() and f.strip() != ID_COLUMN))
    allowed = [c for c in SCORE_COLUMNS if c != ID_COLUMN]
    unknown = [f for f in fields if f not in allowed]
    if unknown:
        raise ParameterError(f"audience: fields {unknown} are not score fields; choose among {', '.join(allowed)}")
    return fields


def resolve_destination(backend: str, destination: str) -> tuple[str, str]:
    """The destination to activate to ("" = skip) and, when skipped for want of one, why."""
    destination = destination.strip()
    if destination == DEFAULT_DESTINATION and backend != "local":
        return "", (f"no destination configured for backend = {backend}: activation skipped. The default "
                    f"{DEFAULT_DESTINATION!r} exists only on the embedded platform; set up a batch (file-based) "
                    "destination dataflow once in the sandbox (Destinations > Catalog) and pass its dataflow name "
                    "as the audience stage's `destination`")
    return destination, ""


def audience(ctx: Context, rules: str = DEFAULT_RULES, destination: str = DEFAULT_DESTINATION,
             fields: str = DEFAULT_FIELDS, spec: str = "", via: str = "segments") -> dict:
    parsed = parse_rules(rules)
    model_spec = modelspec.spec_for(ctx.settings, spec)
    goal = model_spec.goal.phrase()
    member_fields = parse_fields(fields)
    platform = ctx.platform
    if via == "sql":
        return sql_audiences(ctx, parsed, destination, model_spec.events.identity.namespace)
    check_destination = getattr(platform, "check_destination", None)
    if destination.strip() and check_destination is not None:
        check_destination(destination.strip())  # a typo fails before anything is created
    attrs = platform.profile_attributes(_RULE_FIELDS + (["factors"] if uses_factors(parsed) else []))
    scored = attrs[pd.to_numeric(attrs["propensity"], errors="coerce").notna()].reset_index(drop=True)
    if scored.empty:
        raise NotFoundError("no profile holds a propensity score yet; run `score` and `ingest` first")

    if uses_factors(parsed):
        _warn_unknown_factors(parsed, scored)
    # the description says what the score predicts (the spec's goal)
    audiences = [platform.get_or_create_audience(naming.audience(r.name, ctx.owner), r.pql(platform.tenant_id),
                                                 f"{r.describe()} (goal: {goal})") for r in parsed]
    qualified = platform.evaluate_audiences([a.id for a in audiences])
    counts = {r.name: int(qualified.get(a.id, 0)) for r, a in zip(parsed, audiences)}
    report = pd.DataFrame([{
        "rule": r.name, "kind": r.kind, "spec": r.spec(), "audience": a.name, "audience_id": a.id, "pql": a.pql,
        "qualified": counts[r.name], "share": counts[r.name] / len(scored),
        "matching_attributes": int(r.mask(scored).sum()),  # what the rule selects in the attributes read here
    } for r, a in zip(parsed, audiences)])
    mlflow.log_metrics({"scored_profiles": float(len(scored)),
                        **{f"qualified_{name}": float(n) for name, n in counts.items()}})
    tracking.log_table(report, "audiences/audiences.csv")
    curve = reach_curve(scored["propensity"])
    tracking.log_table(curve, "audiences/reach_curve.csv")
    tracking.log_figure(reach_figure(curve, parsed, counts, scored), "audiences/reach_curve.png")

    activations = []
    destination, note = resolve_destination(platform.backend, destination)
    if note:
        log.warning("audience: %s", note)
        mlflow.set_tag("activation", "skipped: no destination configured")
    if destination:
        activations = [platform.activate_audience(a, destination, member_fields) for a in audiences]
        table = pd.DataFrame([{"audience": a.name, "audience_id": act.audience_id, "destination": act.destination,
                               "status": act.status, "members": act.members, "location": act.location,
                               "detail": act.detail} for a, act in zip(audiences, activations)])
        tracking.log_table(table, "audiences/activations.csv")
        mlflow.log_metric("activations_failed", float(sum(act.status != "success" for act in activations)))
    failed = [f"{a.name}: {act.detail or act.status}" for a, act in zip(audiences, activations)
              if act.status != "success"]
    if failed:
        raise PlatformError(f"activation to {destination!r} failed for {len(failed)} audience(s): "
                            + "; ".join(failed) + ". Check the destination and re-run audience")
    return {
        "scored_profiles": len(scored),
        "audiences": {r.name: {"id": a.id, "name": a.name, "pql": a.pql, "qualified": counts[r.name]}
                      for r, a in zip(parsed, audiences)},
        "destination": destination,
        "activation_note": note,
        "activations": [{"audience_id": act.audience_id, "status": act.status, "members": act.members,
                         "location": act.location} for act in activations],
    }


def sql_audiences(ctx: Context, parsed: list, destination: str, namespace: str) -> dict:
    """``via = sql``: one Data Distiller SQL audience per rule over the scores dataset, replaced
    on every run; their member counts logged with the statements. No activation: Adobe
    activates these audiences to file-based destinations set up in the sandbox."""
    platform = ctx.platform
    if platform.backend != "aep":
        raise audience_sql.needs_aep(platform.backend)
    if destination.strip() and destination.strip() != DEFAULT_DESTINATION:
        raise ParameterError(f"audience: via = sql does not activate (destination = {destination.strip()!r}): Data "
                             "Distiller audiences go to file-based destinations mapped in the sandbox's Destinations "
                             "UI. Leave destination at its default or empty, or use via = segments")
    ds = platform.find_dataset(naming.scores_dataset(ctx.owner))
    if ds is None:
        raise NotFoundError("no scores dataset yet: run `score` and `ingest` first")
    names = {r.name: naming.sql_audience(r.name, ctx.owner) for r in parsed}
    clash = sorted(r for r in names if list(names.values()).count(names[r]) > 1)
    if clash:  # a table name folds '-' into '_': two rules would be one audience
        raise ParameterError(f"audience: with via = sql the rules {clash} name the same audience table "
                             f"{names[clash[0]]!r}; rename one of them")
    scores = scores_dataset(platform, ctx.owner, namespace)  # the same dataset; checks its identity namespace
    rows = []
    for r in parsed:
        name = names[r.name]
        select = audience_sql.select(r, scores.table, platform.tenant_id)
        members = platform.create_sql_audience(name, select, ID_COLUMN, namespace)
        statement = audience_sql.create_audience(name, select, ID_COLUMN, namespace)
        rows.append({"rule": r.name, "kind": r.kind, "spec": r.spec(), "audience": name, "members": members,
                     "sql": statement})
        mlflow.log_text(statement + "\n", f"audiences/sql/{r.name}.sql")
    report = pd.DataFrame(rows)
    mlflow.log_metrics({f"members_{row['rule']}": float(row["members"]) for row in rows})
    tracking.log_table(report.drop(columns="sql"), "audiences/audiences.csv")
    mlflow.set_tag("audience_via", "sql")
    return {"via": "sql", "audiences": {row["rule"]: {"name": row["audience"], "members": row["members"],
                                                      "sql": row["sql"]} for row in rows},
            "destination": "", "activations": []}


def _warn_unknown_factors(rules, scored: pd.DataFrame) -> None:
    """Say so when a rule names a feature that is no profile's factor (a typo selects nobody)."""
    seen = {f.get("feature") for fs in scored.get("factors", pd.Series(dtype=object)).dropna() for f in fs
            if isinstance(f, dict)}
    for r in rules:
        missing = [f for f in getattr(r, "features", ()) if f not in seen]
        if missing:
            log.warning("audience: rule %s: %s is among no profile's top factors (the factors name: %s)", r.name,
                        ", ".join(missing), ", ".join(sorted(x for x in seen if x)[:15]) or "none")


STAGE = Stage(
    name="audience",
    func=audience,
    params=(
        Param("rules", str, DEFAULT_RULES,
              "audience rules 'NAME:band:LOWER:UPPER', 'NAME:top:PERCENT', 'NAME:bucket:high[,medium]', each "
              "optionally ending ':factor=FEATURE[,...]' (a feature among the profile's top factors), separated by ';'"),
        Param("destination", str, DEFAULT_DESTINATION, "destination to activate the audiences to; empty = skip"),
        Param("fields", str, DEFAULT_FIELDS, "score fields sent with each member's identity, comma-separated"),
        SPEC_PARAM,
        Param("via", str, "segments",
              "how audiences are built: 'segments' (Segmentation API over Profile, evaluated and activated) or 'sql' "
              "(AEP only: Data Distiller SQL audiences, CREATE AUDIENCE ... AS SELECT over the scores dataset; not "
              "Profile-enabled, file-based destinations only, deleted by Adobe after 30 days)", choices=VIAS),
    ),
    help="Create audiences from score rules (band, top percent, bucket), evaluate them, log the reach curve "
         "and activate them to a destination.",
)
