"""The embedded platform's profile union: the Profile-enabled datasets of the Profile class
merged per identity, timestamp-ordered (the newest non-null value of each attribute wins),
written as a dataset with identityMap and nested XDM fields; made again only when the profile
batches change."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cmle import naming
from cmle.errors import PlatformError
from cmle.platform.base import EXPERIENCE_EVENT, PROFILE

FIELDS = ["_cmle.age", "_cmle.region", "_cmle.tier"]


def _dataset(platform, what: str, fields: dict, klass: str = PROFILE, profile: bool = True):
    fg = platform.get_or_create_field_group(f"{what} fields", fields, klass)
    schema = platform.get_or_create_schema(f"{what} schema", klass, [fg], profile_enabled=profile)
    return platform.get_or_create_dataset(f"{what} dataset", schema, profile_enabled=profile)


def _ingest(platform, ds, rows: list[dict], struct: pa.StructType) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"_cmle": pa.array(rows, struct)}), buf)
    bid = platform.create_batch(ds.id)
    platform.upload_file(bid, ds.id, "part-0.parquet", buf.getvalue())
    platform.complete_batch(bid)
    assert platform.get_batch(bid).status == "success"


CRM = pa.struct([("userid", pa.string()), ("age", pa.int64()), ("region", pa.string())])
LOYALTY = pa.struct([("userid", pa.string()), ("tier", pa.string()), ("age", pa.int64())])


@pytest.fixture
def fragments(platform):
    crm = _dataset(platform, "crm", {"userid": "string", "age": "integer", "region": "string"})
    loyalty = _dataset(platform, "loyalty", {"userid": "string", "tier": "string", "age": "integer"})
    events = _dataset(platform, "web", {"userid": "string"}, EXPERIENCE_EVENT, profile=False)
    _ingest(platform, crm, [{"userid": "a", "age": 30, "region": "north"},
                            {"userid": "b", "age": 40, "region": "south"}], CRM)
    _ingest(platform, loyalty, [{"userid": "a", "tier": "gold", "age": 31},      # newer age for a
                                {"userid": "c", "tier": "silver", "age": None}], LOYALTY)
    _ingest(platform, crm, [{"userid": "b", "age": None, "region": "east"}], CRM)  # newer region, no age
    return crm, loyalty, events


def _rows(platform, ds) -> dict:
    t = platform.read_dataset(ds.id).to_pylist()
    return {dict(r["identityMap"])["ECID"][0]["id"]: r["_cmle"] for r in t}


def test_union_merges_fragments_by_identity_newest_non_null_value_wins(platform, fragments):
    ds = platform.profile_union(naming.profile_union_dataset("t", "k1"), FIELDS)
    rows = _rows(platform, ds)
    assert rows == {"a": {"age": 31, "region": "north", "tier": "gold"},
                    "b": {"age": 40, "region": "east", "tier": None},
                    "c": {"age": None, "region": None, "tier": "silver"}}
    one = platform.read_dataset(ds.id).to_pylist()[0]
    assert dict(one["identityMap"])["ECID"] == [{"id": "a", "primary": True}]
    # Queried as a spec reads it: identityMap['ECID'][0].id and the nested field.
    got = platform.query(f"SELECT identityMap['ECID'][0].id AS u, _cmle.age AS age FROM {ds.table} ORDER BY u")
    assert got.to_dict("list") == {"u": ["a", "b", "c"], "age": [31, 40, None]}


def test_union_is_reused_until_a_profile_batch_changes(platform, fragments):
    crm = fragments[0]
    name = naming.profile_union_dataset("t", "k1")
    first = platform.profile_union(name, FIELDS)
    batches = platform.list_batches(first.id)
    again = platform.profile_union(name, FIELDS)
    assert again.id == first.id and platform.list_batches(first.id) == batches  # nothing made again
    _ingest(platform, crm, [{"userid": "c", "age": 50, "region": "west"}], CRM)
    third = platform.profile_union(name, FIELDS)
    assert third.id == first.id and _rows(platform, third)["c"] == {"age": 50, "region": "west", "tier": "silver"}
    assert len([b for b in platform.list_batches(first.id) if b.status == "success"]) == 1  # replaced, not appended


def test_empty_union_is_a_clear_error(platform):
    with pytest.raises(PlatformError, match="profile union is empty"):
        platform.profile_union(naming.profile_union_dataset("t", "k1"), FIELDS)
