"""What a score row is: its columns, Arrow types, XDM field types and the XDM shape.

A score file row is flat (``userid``, the model outputs, then model name, version and
score date). The platform receives the same fields nested under ``_{tenant}``, as the
scores field group declares them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cmle.columns import FACTORS_COLUMN, ID_COLUMN, OUTPUT_COLUMNS, SCORE_META_COLUMNS
from cmle.errors import DataCheckError, RegistryError
from cmle.model.scoring import BUCKETS  # Customer AI's buckets, lowest first

SCORE_COLUMNS = (ID_COLUMN, *OUTPUT_COLUMNS, *SCORE_META_COLUMNS, FACTORS_COLUMN)

# One influential factor (cmle.explain.factors): the feature's column name, its readable
# description, its value as text and its contribution to the model's margin.
FACTOR_FIELDS = {"feature": "string", "name": "string", "value": "string", "contribution": "number"}
FACTORS_TYPE = pa.list_(pa.struct([(k, pa.float64() if v == "number" else pa.string()) for k, v in FACTOR_FIELDS.items()]))

SCORE_SCHEMA = pa.schema([
    (ID_COLUMN, pa.string()),
    ("propensity", pa.float64()),
    ("score", pa.int32()),
    ("percentile", pa.int32()),
    ("decile", pa.int32()),
    ("bucket", pa.string()),
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("score_date", pa.timestamp("us", tz="UTC")),
    (FACTORS_COLUMN, FACTORS_TYPE),
])

# The scores field group: the same fields, in XDM types, under `_{tenant}`.
XDM_FIELDS = {
    ID_COLUMN: "string",
    "propensity": "number",
    "score": "integer",
    "percentile": "integer",
    "decile": "integer",
    "bucket": "string",
    "model_name": "string",
    "model_version": "string",
    "score_date": "date-time",
    # an array of objects (the seam's notation for it: cmle.platform.fields)
    FACTORS_COLUMN: {"type": "array", "items": FACTOR_FIELDS},
}

assert tuple(SCORE_SCHEMA.names) == SCORE_COLUMNS == tuple(XDM_FIELDS)  # one definition, three views

_RANGES = {"score": (0, 100), "percentile": (1, 100), "decile": (1, 10)}


def score_table(outputs: pd.DataFrame, ids: pa.Array, model_name: str, model_version: str,
                score_date: pa.Scalar, factors: pa.Array | None = None) -> pa.Table:
    """The model's ``outputs`` for the profiles ``ids`` as score rows (:data:`SCORE_SCHEMA`).

    Raises :class:`RegistryError` when the outputs break the model contract (missing columns,
    wrong length, values out of range), so a bad model never writes a score file.
    """
    missing = [c for c in OUTPUT_COLUMNS if c not in outputs.columns]
    if missing:
        raise RegistryError(f"model {model_name} version {model_version} returned columns {list(outputs.columns)}, "
                            f"without {missing}; register a model that returns {list(OUTPUT_COLUMNS)}")
    n = len(ids)
    if len(outputs) != n:
        raise RegistryError(f"model {model_name} version {model_version} returned {len(outputs)} rows for {n} inputs")
    try:
        arrays = [
            ids.cast(pa.string()),
            pa.array(np.asarray(outputs["propensity"], dtype="float64"), type=pa.float64()),
            *(pa.array(np.asarray(outputs[c]), type=pa.int32()) for c in ("score", "percentile", "decile")),
            pa.array(outputs["bucket"].astype(str).to_numpy(), type=pa.string()),
            pa.repeat(pa.scalar(model_name, pa.string()), n),
            pa.repeat(pa.scalar(model_version, pa.string()), n),
            pa.repeat(score_date, n),
            factors if factors is not None else pa.nulls(n, FACTORS_TYPE),
        ]
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise RegistryError(f"model {model_name} version {model_version} returned values of the wrong type: {exc}; "
                            "propensity must be a number, score/percentile/decile integers") from None
    table = pa.Table.from_arrays(arrays, schema=SCORE_SCHEMA)
    _check_values(table, f"model {model_name} version {model_version}")
    return table


def _check_values(table: pa.Table, who: str) -> None:
    prop = table.column("propensity")
    if prop.null_count or pc.any(pc.is_nan(prop)).as_py():
        raise RegistryError(f"{who} returned missing propensities")
    if len(table):
        for col, (low, high) in {"propensity": (0.0, 1.0), **_RANGES}.items():
            mm = pc.min_max(table.column(col))
            if mm["min"].as_py() < low or mm["max"].as_py() > high:
                raise RegistryError(f"{who} returned {col} outside {low}-{high} "
                                    f"({mm['min'].as_py()} .. {mm['max'].as_py()})")
    unknown = set(pc.unique(table.column("bucket")).to_pylist()) - set(BUCKETS)
    if unknown:
        raise RegistryError(f"{who} returned buckets {sorted(map(str, unknown))}; expected {list(BUCKETS)}")
    ids = table.column(ID_COLUMN)
    if ids.null_count:
        raise DataCheckError(f"the scoring set holds {ids.null_count} rows without {ID_COLUMN}; "
                             "every scored row needs a profile identity")


def to_xdm(data: pa.Table | pa.RecordBatch, tenant_id: str) -> pa.Table:
    """Score rows in the XDM shape: one struct column ``_{tenant_id}`` holding the score fields."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    table = table.select(list(SCORE_COLUMNS)).cast(SCORE_SCHEMA).combine_chunks()
    struct = pa.StructArray.from_arrays([table.column(c).chunk(0) if table.num_rows else
                                         pa.array([], type=SCORE_SCHEMA.field(c).type) for c in SCORE_COLUMNS],
                                        fields=list(SCORE_SCHEMA))
    return pa.Table.from_arrays([struct], names=[f"_{tenant_id}"])
