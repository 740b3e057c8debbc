"""The cleanup stage on the AEP backend deletes every resource this package created (found
by name) and nothing else."""

from __future__ import annotations

from aep.helpers import events_dataset, profile_dataset, profiles_table
from cmle import ingestion, naming
from cmle.context import Context
from cmle.platform.base import PROFILE
from cmle.stages.cleanup import cleanup


def test_cleanup_deletes_ours_only(aep, aep_settings, double):
    people = profile_dataset(aep)
    events_dataset(aep)
    ingestion.ingest_tables(aep, people.id, [profiles_table(3)], key="p", timeout_s=10)
    ctas = aep.create_table_as("cmle_training_set_cmle", f"SELECT _cmle.userid AS userid FROM {people.table}",
                               timeout_s=10)
    aep.export_dataset(ctas.id, "cmle/egress", timeout_s=20)
    aep.get_or_create_audience(naming.audience("high", "cmle"), "_cmle.age > 30")
    their_fg = aep.get_or_create_field_group("Someone else's fields", {"userid": "string"}, PROFILE)
    their_schema = aep.get_or_create_schema("Someone else's schema", PROFILE, [their_fg])
    aep.catalog.owner = "someone else"  # their dataset carries their ownership record
    theirs = aep.get_or_create_dataset("Someone else's dataset", their_schema)
    aep.catalog.owner = "cmle"

    ctx = Context(aep_settings, _platform=aep)
    dry = cleanup(ctx, dry_run=True)
    assert dry["by_kind"] == {"audience": 1, "flow": 1, "connection": 3, "dataset": 3, "descriptor": 2,
                              "schema": 2, "fieldgroup": 2}
    assert len(double.datasets) == 4  # a dry run deletes nothing

    out = cleanup(ctx)
    assert out["resources"] == dry["resources"]
    assert [r for r in aep.list_resources() if naming.is_ours(r.name, "cmle")] == []
    assert list(double.datasets) == [theirs.id]
    assert [s["title"] for s in double.schemas.values()] == ["Someone else's schema"]
    assert [f["title"] for f in double.fieldgroups.values()] == ["Someone else's fields"]
    assert not (double.flows or double.connections or double.source_connections or double.target_connections
                or double.segments)
    assert cleanup(ctx)["resources"] == 0  # nothing left to delete
