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


def test_cleanup_removes_adhoc_schemas_and_the_export_files_in_the_landing_zone(aep_settings, double, tmp_cwd,
                                                                                 monkeypatch):
    """With the default empty storage_url, exports land in the sandbox's Data Landing Zone:
    cleanup removes the export folders there (not ``<local_root>/landing``), and the ad-hoc
    schemas Query Service made for the CTAS datasets, rebuilds included."""
    from aep.conftest import aep_env
    from cmle.config import load_settings
    from cmle.platform.aep import AEPPlatform
    from cmle.platform.aep.flows import ExportService, LandingZone

    # The landing zone of the double is a local folder (fsspec's "file" stands in for abfs).
    monkeypatch.setattr(ExportService, "landing_zone",
                        lambda self: LandingZone(str(double.landing_zone), "file", {}))
    env = aep_env(double, CMLE_PLATFORM_LOCAL_ROOT=str(tmp_cwd / "local"))
    env.pop("CMLE_CLOUD_STORAGE_URL")
    settings = load_settings(env=env)
    assert settings.cloud.storage_url == ""
    aep = AEPPlatform.from_settings(settings)
    user_files = tmp_cwd / "local" / "landing" / "cmle" / "egress"
    user_files.mkdir(parents=True)
    (user_files / "keep.txt").write_text("not cleanup's to delete")
    people = profile_dataset(aep)
    ingestion.ingest_tables(aep, people.id, [profiles_table(3)], key="p", timeout_s=10)
    for sql in (f"SELECT _cmle.userid AS userid FROM {people.table}",
                f"SELECT _cmle.userid AS userid, _cmle.age AS age FROM {people.table}"):  # a rebuild, new columns
        ctas = aep.create_table_as("cmle_training_set_cmle", sql, timeout_s=10)
    aep.export_dataset(ctas.id, "cmle/egress", timeout_s=20)
    assert (double.landing_zone / "cmle" / "egress" / ctas.id).is_dir()

    out = cleanup(Context(settings, _platform=aep))
    assert out["by_kind"]["dataset"] == 2
    assert not (double.landing_zone / "cmle" / "egress" / ctas.id).exists()
    assert not double.schemas and not double.datasets  # ad-hoc schemas included
    assert (user_files / "keep.txt").exists()
    aep.close()
