"""Data Distiller SQL audiences (``audience --via sql``) on the AEP double: the statements
as Adobe documents them create the audience's dataset from each profile's newest score,
re-running replaces it (same members, no second audience or dataset), what the docs refuse
is refused, and the members are those the Segmentation path selects for the same rules."""

from __future__ import annotations

import datetime as dt
import shutil

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aep.conftest import aep_env
from aep.double import svc_segments
from aep.helpers import ecid
from cmle import ingestion, naming
from cmle.audiences import sql as audience_sql
from cmle.audiences.rules import parse_rules
from cmle.config import load_settings
from cmle.errors import ParameterError, QueryError
from cmle.runner import run_stage
from cmle.scoring.schema import SCORE_SCHEMA, to_xdm
from cmle.stages.ingest import scores_dataset
from tests.scoring.toy import mlflow_db_template  # noqa: F401 - fixture

RULES = "mid:band:0.2:0.7;top10:top:10;hot:bucket:high,medium;hot_mail:bucket:high:factor=emails_opened"
FEATURES = ("emails_opened", "visits", "tenure")


def _run(ids: list[str], seed: int, day: int, version: str) -> pa.Table:
    """One scoring run's rows (the score file's shape), dated ``day``."""
    rng = np.random.default_rng(seed)
    p = rng.random(len(ids))
    pct = (pd.Series(p).rank(method="first") / len(p) * 100).apply(np.ceil).clip(1, 100).astype("int32")
    factors = [[{"feature": FEATURES[(i + seed) % 3], "name": "n", "value": "1", "contribution": 0.5}]
               for i in range(len(ids))]
    return pa.table({
        "userid": ids, "propensity": p, "score": (p * 100).round().astype("int32"), "percentile": pct,
        "decile": ((pct - 1) // 10 + 1).astype("int32"),
        "bucket": np.where(p >= 0.7, "high", np.where(p >= 0.3, "medium", "low")),
        "model_name": ["m"] * len(ids), "model_version": [version] * len(ids),
        "score_date": [dt.datetime(2024, 3, day, tzinfo=dt.timezone.utc)] * len(ids),
        "factors": factors}).cast(SCORE_SCHEMA)


@pytest.fixture
def scores(aep):
    """Two score runs: an older one of 60 profiles, a newer one re-scoring 40 of them."""
    ds = scores_dataset(aep, "cmle")
    old = [ecid(i) for i in range(60)]
    ingestion.ingest_tables(aep, ds.id, [to_xdm(_run(old, 1, 1, "1"), aep.tenant_id)], key="run1", timeout_s=10)
    ingestion.ingest_tables(aep, ds.id, [to_xdm(_run(old[20:], 2, 8, "2"), aep.tenant_id)], key="run2", timeout_s=10)
    return ds


def _members(aep, name: str) -> set[str]:
    return set(aep.query(f"SELECT userid FROM {name}")["userid"])


def test_sql_audiences_select_what_the_segments_select(aep, double, scores):
    merged = svc_segments.profiles(double, ["propensity", "percentile", "bucket", "factors"])  # Profile's merge
    assert len(merged) == 60
    for rule in parse_rules(RULES):
        name = naming.sql_audience(rule.name, "cmle")
        count = aep.create_sql_audience(name, audience_sql.select(rule, scores.table, aep.tenant_id), "userid", "ECID")
        got = _members(aep, name)
        expected = set(merged.loc[rule.mask(merged), "userid"])
        assert got == expected and count == len(got) > 0, rule.name
        if not rule.kind.endswith("factor"):  # the Segmentation API's own evaluation of the rule's PQL
            seg = aep.get_or_create_audience(naming.audience(rule.name, "cmle"), rule.pql(aep.tenant_id))
            assert set(svc_segments.evaluate_members(double, seg.id)["userid"]) == got, rule.name
    # the members carry their newest score, flat, with the identity at the root
    top = aep.query(f"SELECT * FROM {naming.sql_audience('top10', 'cmle')}")
    assert list(top.columns) == ["userid", *audience_sql.MEMBER_FIELDS]
    newest = {u for u in top["userid"] if u in {ecid(i) for i in range(20, 60)}}
    assert set(top.loc[top["userid"].isin(newest), "model_version"]) <= {"2"}
    assert double.sql_audiences[naming.sql_audience("top10", "cmle")]["identity_namespace"] == "ECID"
    assert not any(s["name"].startswith("cmle_audience") for s in double.segments.values())  # not a segment


def test_re_running_replaces_the_audience(aep, double, scores):
    rule = parse_rules("top10:top:10")[0]
    name = naming.sql_audience(rule.name, "cmle")
    select = audience_sql.select(rule, scores.table, aep.tenant_id)
    first = aep.create_sql_audience(name, select, "userid", "ECID")
    members = _members(aep, name)
    assert aep.create_sql_audience(name, select, "userid", "ECID") == first
    assert _members(aep, name) == members
    assert list(double.sql_audiences) == [name]
    assert [d for d in double.datasets.values() if d["tags"]["adobe/pqs/table"][0] == name].__len__() == 1
    assert "enabled:true" not in (next(d for d in double.datasets.values()
                                       if d["tags"]["adobe/pqs/table"][0] == name)["tags"].get("unifiedProfile") or [])


@pytest.mark.parametrize("statement, message", [
    ("CREATE AUDIENCE a1 WITH (primary_identity='userid') AS (SELECT {root}.userid AS userid FROM {table})",
     "identity_namespace"),
    ("CREATE AUDIENCE a1 AS (SELECT {root}.userid AS userid FROM {table})", "malformed"),
    ("CREATE AUDIENCE a1 WITH (primary_identity='{root}.userid', identity_namespace='ECID') AS (SELECT * FROM "
     "{table})", "root level"),
    ("CREATE AUDIENCE a1 WITH (primary_identity='userid', identity_namespace='ECID') AS (SELECT "
     "{root}.userid AS userid, {root} FROM {table})", "nested attributes"),
    ("CREATE AUDIENCE a1 WITH (primary_identity='id', identity_namespace='ECID') AS (SELECT "
     "{root}.userid AS userid FROM {table})", "not a column"),
    ("CREATE AUDIENCE a1 WITH (primary_identity='userid', identity_namespace='ECID', ttl='30') AS (SELECT "
     "{root}.userid AS userid FROM {table})", "unknown CREATE AUDIENCE option"),
    ("DROP AUDIENCE a1", "does not exist"),
])
def test_what_adobe_refuses_is_refused(aep, double, scores, statement, message):
    sql = statement.format(root=f"_{aep.tenant_id}", table=scores.table)
    with pytest.raises(QueryError, match=message):
        aep.run_statement(sql, "refused")
    assert double.sql_audiences == {}


def test_creating_an_existing_audience_is_refused_and_the_documented_form_works(aep, double, scores):
    sql = (f"CREATE AUDIENCE a1 WITH (primary_identity=userid, identity_namespace=ECID) AS SELECT "
           f"_{aep.tenant_id}.userid AS userid FROM {scores.table}")  # Adobe's example: bare names, no parentheses
    aep.run_statement(sql, "create")
    assert len(_members(aep, "a1")) == 60
    with pytest.raises(QueryError, match="already exists"):
        aep.run_statement(sql, "again")
    aep.run_statement("DROP AUDIENCE a1", "drop")
    aep.run_statement("DROP AUDIENCE IF EXISTS a1", "drop again")
    assert double.sql_audiences == {}


@pytest.fixture
def settings(double, tmp_cwd, mlflow_db_template):
    shutil.copyfile(mlflow_db_template, tmp_cwd / "mlflow.db")
    return load_settings(env=aep_env(double, CMLE_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_cwd / 'mlflow.db'}"))


def test_the_audience_stage_via_sql(aep, double, scores, settings):
    out = run_stage("audience", settings, {"via": "sql", "rules": "top10:top:10;hot:bucket:high"})
    again = run_stage("audience", settings, {"via": "sql", "rules": "top10:top:10;hot:bucket:high"})
    assert out["via"] == "sql" and {k: v["members"] for k, v in out["audiences"].items()} == \
        {k: v["members"] for k, v in again["audiences"].items()}
    assert out["audiences"]["top10"]["name"] == naming.sql_audience("top10", "cmle")
    assert out["audiences"]["top10"]["sql"].startswith(f"CREATE AUDIENCE {naming.sql_audience('top10', 'cmle')} WITH")
    assert sorted(double.sql_audiences) == sorted(naming.sql_audience(r, "cmle") for r in ("top10", "hot"))
    run = mlflow.last_active_run()
    assert run.data.metrics["members_top10"] == out["audiences"]["top10"]["members"]
    assert run.data.tags["audience_via"] == "sql"
    with pytest.raises(ParameterError, match="does not activate"):
        run_stage("audience", settings, {"via": "sql", "destination": "Audience exports"})



def test_cleanup_drops_the_sql_audiences_with_their_datasets_and_schemas(aep, double, scores, settings):
    adhoc_before = {k for k, s in double.schemas.items() if s["meta:class"].endswith("/adhoc")}
    run_stage("audience", settings, {"via": "sql", "rules": "top10:top:10"})
    run_stage("audience", settings, {"via": "sql", "rules": "top10:top:10"})  # the replaced one's schema went
    adhoc = {k for k, s in double.schemas.items() if s["meta:class"].endswith("/adhoc")} - adhoc_before
    assert len(adhoc) == 1
    name = naming.sql_audience("top10", "cmle")
    assert [r.kind for r in aep.list_resources() if r.name == name] == ["sqlaudience"]
    out = run_stage("cleanup", settings)
    assert out["by_kind"]["sqlaudience"] == 1
    assert double.sql_audiences == {}
    assert not [d for d in double.datasets.values() if d["name"] == name]
    assert not adhoc & set(double.schemas)


def test_rules_that_fold_to_one_audience_name_are_refused_before_any_work(aep, double, scores, settings):
    with pytest.raises(ParameterError, match="name the same audience table"):
        run_stage("audience", settings, {"via": "sql", "rules": "top-10:top:10;top_10:top:20"})
    assert double.sql_audiences == {}
