"""Stage ``history``: the promotion history of the model as a table (not an MLflow run).

Every decision, approval, rejection and rollback recorded on the model's versions, oldest
first: time (UTC), version, decision, metrics, who approved, evidence.
"""

from __future__ import annotations

import json

from cmle import modelspec
from cmle.context import Context
from cmle.promotion import history as table_of
from cmle.registry import Registry
from cmle.stages import SPEC_PARAM, Param, Stage

FORMATS = ("table", "json")


def history(ctx: Context, format: str = "table", last: int = 0, spec: str = "",
            registry: Registry | None = None) -> dict:
    registry = registry or Registry.configured(ctx.settings)
    name = modelspec.model_name(ctx.settings, modelspec.spec_for(ctx.settings, spec))
    registry.aliases(name)  # a clear error when the model does not exist
    records = registry.promotion_history(name)
    if last > 0:
        records = records[-last:]
    return {"model_name": name, "format": format, "decisions": len(records),
            "history": [{k: v for k, v in r.items() if k != "tag"} for r in records],
            "table": table_of.table(records), "aliases": registry.aliases(name)}


def render(outputs: dict) -> str:
    """What the command line prints: the table (with the aliases), or the records as JSON."""
    if outputs.get("format") == "json":
        return json.dumps(outputs["history"], indent=2, sort_keys=True, default=str)
    aliases = ", ".join(f"{a} -> v{v}" for a, v in sorted(outputs.get("aliases", {}).items())) or "none"
    return f"promotion history of {outputs['model_name']} (aliases: {aliases})\n\n{outputs['table']}"


STAGE = Stage(
    name="history",
    func=history,
    params=(
        Param("format", str, "table", "table, or json (every field of every record)", choices=FORMATS),
        Param("last", int, 0, "only the last N records (0: all)", min=0),
        SPEC_PARAM,
    ),
    help="Print the promotion history of the model: time, version, decision, metrics, who approved, evidence.",
    tracked=False,
    render=render,
)
