"""`cmle load`: an AEP export (Parquet or JSON lines, nested) into the embedded platform as the
spec's dataset; bad rows counted by reason, never silently dropped; idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from cmle import loading
from cmle.errors import DataCheckError, ParameterError
from cmle.stages.load import load
from cmle.synthetic import retail

RETAIL = str(Path(__file__).resolve().parents[2] / "conf" / "models" / "retail.yaml")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A small retail export, with 2 % of extra rows lacking identity or timestamp, in both formats."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for fmt in ("parquet", "jsonl"):
        out[fmt] = retail.write_export(root / fmt, users=60, weeks=4, seed=3, fmt=fmt, bad_rows=0.02)
    return root, out


def test_parquet_export_loads_and_bad_rows_are_counted(ctx, export):
    root, info = export
    out = load(ctx, files=str(root / "parquet" / "events"), spec=RETAIL)
    bad = info["parquet"]["events"] - out["rows_loaded"]
    assert out["dataset_name"] == "Luma web events" and out["rows_read"] == info["parquet"]["events"]
    assert out["rows_rejected"] == bad > 0
    assert out["rejected"] == {"missing identity": bad // 2, "missing timestamp": bad - bad // 2}
    ds = ctx.platform.find_dataset("Luma web events")
    assert ctx.platform.read_dataset(ds.id).num_rows == out["rows_loaded"]
    fields = ctx.platform.dataset_fields(ds.id)
    assert fields["identityMap"] == "map" and fields["productListItems[].priceTotal"] == "number"
    assert fields[f"_{ctx.platform.tenant_id}.orderValue"] == "number" and fields["timestamp"] == "date-time"
    again = load(ctx, files=str(root / "parquet" / "events"), spec=RETAIL)
    assert again["reused"] is True and again["batch_id"] == out["batch_id"]


def test_json_lines_read_like_parquet(ctx, export):
    root, _ = export
    parquet = loading.read_export(loading.find_files(str(root / "parquet" / "events")))
    jsonl = loading.read_export(loading.find_files(str(root / "jsonl" / "events")))
    assert jsonl.num_rows == parquet.num_rows
    assert pa.types.is_map(jsonl.schema.field("identityMap").type)
    assert jsonl.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    # JSON exports carry milliseconds
    p_rows = sorted((r["_id"], r["timestamp"].replace(microsecond=r["timestamp"].microsecond // 1000 * 1000)
                     if r["timestamp"] else None) for r in parquet.select(["_id", "timestamp"]).to_pylist())
    j_rows = sorted((r["_id"], r["timestamp"]) for r in jsonl.select(["_id", "timestamp"]).to_pylist())
    assert p_rows == j_rows
    from_json = load(ctx, files=str(root / "jsonl" / "events" / "*.json"), spec=RETAIL, dataset="Luma from JSON")
    from_parquet = load(ctx, files=str(root / "parquet" / "events"), spec=RETAIL)
    assert from_json["rows_loaded"] == from_parquet["rows_loaded"] and from_json["rejected"] == from_parquet["rejected"]

    def visitors(table: str) -> int:  # the identity as the feature SQL reads it
        return int(ctx.platform.query(f"SELECT COUNT(DISTINCT CASE WHEN size(`identityMap`['ECID']) > 0 THEN "
                                      f"`identityMap`['ECID'][0].`id` END) AS n FROM {table}")["n"].iloc[0])

    assert visitors("luma_from_json") == visitors("luma_web_events") > 20


def test_too_many_bad_rows_load_nothing(ctx, export):
    root, _ = export
    with pytest.raises(DataCheckError, match=r"rows \(\d+\.\d%\) cannot be loaded.*nothing was loaded"):
        load(ctx, files=str(root / "parquet" / "events"), spec=RETAIL, max_bad_share=0.001)
    assert ctx.platform.find_dataset("Luma web events") is None
    # the wrong identity: every row is bad
    with pytest.raises(DataCheckError, match="missing identity"):
        load(ctx, files=str(root / "parquet" / "events"), spec=RETAIL, identity="Email")


def test_profiles_and_mode_append_and_replace(ctx, export, tmp_path):
    root, info = export
    out = load(ctx, files=str(root / "parquet" / "profiles"), spec=RETAIL, kind="profiles")
    assert out["dataset_name"] == "Luma CRM profiles" and out["rows_loaded"] == info["parquet"]["profiles"]
    # another file appended, then replaced by it alone
    extra = tmp_path / "more.json"
    extra.write_text(json.dumps({"identityMap": {"ECID": [{"id": "x1", "primary": True}]},
                                 "_cmle": {"loyaltyTier": "gold"}}) + "\n")
    more = load(ctx, files=str(extra), spec=RETAIL, kind="profiles", mode="append", format="jsonl")
    ds = ctx.platform.find_dataset("Luma CRM profiles")
    assert ctx.platform.read_dataset(ds.id).num_rows == out["rows_loaded"] + more["rows_loaded"]
    load(ctx, files=str(extra), spec=RETAIL, kind="profiles", format="jsonl", identity="identityMap[ECID]")
    assert ctx.platform.read_dataset(ds.id).num_rows == 1


def test_clear_errors(ctx, settings, tmp_path):
    with pytest.raises(ParameterError, match="no file found|neither a file"):
        load(ctx, files=str(tmp_path / "nothing" / "*.parquet"), spec=RETAIL)
    with pytest.raises(ParameterError, match="files is required"):
        load(ctx, spec=RETAIL)
    with pytest.raises(ParameterError, match="synthetic"):
        load(ctx, files=str(tmp_path))  # the synthetic spec names no dataset to load into
