"""`ingest --scores PATH`: a file of scores from a model trained elsewhere, on the embedded
platform. A good file is ingested once with cmle's own derivation of score, percentile,
decile and bucket and its provenance in MLflow, and audiences work on it unchanged; each
kind of bad file is refused with its first bad rows, before anything is created."""

from __future__ import annotations

import hashlib

import mlflow
import numpy as np
import pandas as pd
import pytest

from cmle import naming
from cmle.audiences.rules import DEFAULT_RULES, evaluate, parse_rules
from cmle.cli import run_cli
from cmle.errors import DataCheckError, NotFoundError, ParameterError
from cmle.model import scoring
from cmle.platform.base import BATCH_SUCCESS
from cmle.runner import run_stage
from tests.scoring.external_files import make_profiles, propensities, write_csv, write_parquet
from tests.scoring.toy import mlflow_db_template, own_store_settings  # noqa: F401 - fixtures


@pytest.fixture
def profiles(platform, settings):
    return make_profiles(platform, 300)


def _scores_dataset(platform, settings):
    return platform.find_dataset(naming.scores_dataset(settings.platform.owner))


def _batches(platform, settings):
    ds = _scores_dataset(platform, settings)
    return [b for b in platform.list_batches(ds.id) if b.status == BATCH_SUCCESS] if ds else []


def _run(experiment="cmle"):
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`cmle.stage` = 'ingest'",
                              order_by=["attributes.start_time DESC"]).iloc[0]


def test_a_good_csv_file_is_ingested_once_with_cmles_derivation_and_its_provenance(
        settings, platform, mlflow_store, profiles, tmp_cwd):
    ids = profiles[:250]
    p = propensities(len(ids))
    # DataRobot-style names, its own (ignored) score column, and a column the contract does not know
    path = write_csv(tmp_cwd / "datarobot.csv", ["customer_id", "churned_1_PREDICTION", "score", "model_version",
                                                 "note"],
                     [[i, f"{v:.6f}", 99, "7", "x"] for i, v in zip(ids, p)])
    params = {"scores": str(path), "scores_columns": "userid=customer_id,propensity=churned_1_PREDICTION",
              "scores_model": "datarobot_churn"}
    out = run_stage("ingest", settings, params)
    assert (out["records"], out["reused"], out["source"]) == (250, False, "external")
    assert (out["model_name"], out["model_version"]) == ("datarobot_churn", "7")
    assert sorted(out["ignored_columns"]) == ["note", "score"]
    fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert out["scores_fingerprint"] == fingerprint

    attrs = platform.profile_attributes(["propensity", "score", "percentile", "decile", "bucket",
                                         "model_name", "model_version"]).set_index("userid")
    attrs = attrs[attrs["propensity"].notna()]  # the 50 profiles without a score have only their own attributes
    assert len(attrs) == 250 and set(attrs.index) == set(ids)
    got = attrs.loc[ids]
    p6 = np.round(p, 6)
    np.testing.assert_allclose(got["propensity"].to_numpy(), p6)
    # the same derivation as cmle's own model, the file being the reference population
    want = scoring.outputs(p6, scoring.Reference.from_propensities(p6))
    assert got["score"].tolist() == want["score"].tolist()
    assert got["percentile"].tolist() == want["percentile"].tolist()
    assert got["bucket"].tolist() == want["bucket"].tolist()
    # ... which means: about a tenth of the file per decile, and buckets that follow the score
    assert got["decile"].value_counts().between(20, 30).all()
    assert (got.loc[got["score"] >= 75, "bucket"] == "high").all() and (got.loc[got["score"] < 25, "bucket"] == "low").all()
    assert set(got["model_name"]) == {"datarobot_churn"} and set(got["model_version"]) == {"7"}

    run = _run()
    assert run["tags.cmle.scores_source"] == "external"
    assert run["tags.cmle.scores_file_fingerprint"] == fingerprint
    assert run["tags.cmle.model_name"] == "datarobot_churn" and run["tags.cmle.model_version"] == "7"
    assert run["tags.cmle.scores_file"] == str(path)
    assert run["metrics.scores_rows"] == 250

    # the same content again, even under another name: the batch it made is found, nothing is sent
    copy = tmp_cwd / "copy.csv"
    copy.write_bytes(path.read_bytes())
    again = run_stage("ingest", settings, {**params, "scores": str(copy)})
    assert again["reused"] and again["batch_id"] == out["batch_id"]
    assert [b.id for b in _batches(platform, settings)] == [out["batch_id"]]


def test_a_parquet_file_with_only_the_required_columns_feeds_audiences_unchanged(
        settings, platform, mlflow_store, profiles, tmp_cwd):
    ids = profiles[:200]
    p = propensities(200, seed=9)
    path = write_parquet(tmp_cwd / "scores.parquet", {"userid": ids, "propensity": p})
    out = run_stage("ingest", settings, {"scores": str(path)})
    assert out["model_name"] == "external" and out["model_version"] == f"file-{out['scores_fingerprint'][:12]}"

    audiences = run_stage("audience", settings, {"destination": ""})
    scored = pd.DataFrame({"userid": ids, "propensity": p})
    scored = pd.concat([scored, scoring.outputs(p, scoring.Reference.from_propensities(p)).drop(columns="propensity")],
                       axis=1)
    expected = evaluate(parse_rules(DEFAULT_RULES), scored)
    assert {name: a["qualified"] for name, a in audiences["audiences"].items()} == expected
    assert audiences["scored_profiles"] == 200 and all(expected.values())


def _bad_csv(tmp_cwd, profiles, edit):
    rows = [[i, f"{v:.4f}"] for i, v in zip(profiles[:40], propensities(40))]
    header = ["userid", "propensity"]
    header, rows = edit(header, rows)
    return write_csv(tmp_cwd / "bad.csv", header, rows)


def _set(row_index, col, value):
    def edit(header, rows):
        rows[row_index][col] = value
        return header, rows
    return edit


def _dup(header, rows):
    rows[7][0] = rows[2][0]
    return header, rows


def _unknown(header, rows):
    rows[4][0] = "9" * 38
    rows[11][0] = "1234567890123456789" + "0" * 19
    return header, rows


def _no_propensity(header, rows):
    return ["userid", "probability"], rows


def _two_models(header, rows):
    return header + ["model_version"], [r + ["1" if k < 30 else "2"] for k, r in enumerate(rows)]


def _header_only(header, rows):
    return header, []


BAD_FILES = {
    "propensity above 1": (_set(5, 1, "1.2"), r"1 row whose propensity is not a finite number in \[0, 1\] \(line 7: '1.2'\)"),
    "propensity below 0": (_set(0, 1, "-0.01"), r"propensity is not a finite number in \[0, 1\] \(line 2: '-0.01'\)"),
    "propensity not a number": (_set(3, 1, "high"), r"\(line 5: 'high'\)"),
    "propensity not finite": (_set(9, 1, "inf"), r"\(line 11: 'inf'\)"),
    "propensity missing": (_set(2, 1, ""), r"\(line 4: ''\)"),
    "duplicate ids": (_dup, r"1 duplicate profile id .*\(line 9: '\d{38}', also at line 4\)"),
    "unknown ids": (_unknown, r"2 profile ids not in the profiles dataset .*\(line 6: '9{38}'; line 13: "),
    "missing id": (_set(6, 0, ""), r"1 row without a profile id \(line 8\)"),
    "id with a quote": (_set(1, 0, "o'neil"), r"1 profile id with a quote.*\(line 3: \"o'neil\"\)"),
    "required column missing": (_no_propensity, r"lacks the required column\(s\) \['propensity'\]; its columns are "
                                                r"\['userid', 'probability'\]; map them with scores_columns"),
    "two models in one file": (_two_models, r"2 distinct values of model_version .*\(line 2: '1'; line 32: '2'\)"),
    "no rows": (_header_only, r"holds no score rows"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_each_kind_of_bad_file_is_refused_with_its_first_bad_rows_and_nothing_is_created(
        kind, settings, platform, mlflow_store, profiles, tmp_cwd):
    edit, message = BAD_FILES[kind]
    path = _bad_csv(tmp_cwd, profiles, edit)
    with pytest.raises(DataCheckError, match=message):
        run_stage("ingest", settings, {"scores": str(path)})
    assert _scores_dataset(platform, settings) is None  # no schema, dataset or batch was made


def test_every_problem_of_a_file_is_reported_at_once(settings, platform, mlflow_store, profiles, tmp_cwd):
    def many(header, rows):
        rows[1][1] = "2"
        rows[3][0] = rows[0][0]
        rows[5][0] = "8" * 38
        return header, rows

    with pytest.raises(DataCheckError) as err:
        run_stage("ingest", settings, {"scores": str(_bad_csv(tmp_cwd, profiles, many))})
    text = str(err.value)
    assert "propensity is not a finite number" in text and "duplicate profile id" in text
    assert "not in the profiles dataset" in text and "nothing was ingested" in text


def test_unreadable_and_misnamed_files_are_clear_errors(settings, mlflow_store, profiles, tmp_cwd):
    broken = tmp_cwd / "broken.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataCheckError, match="is not a readable parquet file"):
        run_stage("ingest", settings, {"scores": str(broken)})
    with pytest.raises(ParameterError, match="neither CSV .* nor Parquet"):
        run_stage("ingest", settings, {"scores": str(tmp_cwd / "scores.xlsx")})
    with pytest.raises(NotFoundError, match="does not exist"):
        run_stage("ingest", settings, {"scores": str(tmp_cwd / "nowhere.csv")})


def test_parameters_that_do_not_fit_together_are_refused(settings, mlflow_store, tmp_cwd):
    with pytest.raises(ParameterError, match="either scores .* or export_time"):
        run_stage("ingest", settings, {"scores": "x.csv", "export_time": "20260101000000"})
    with pytest.raises(ParameterError, match="pass the file as scores=PATH"):
        run_stage("ingest", settings, {"scores_model": "m"})
    with pytest.raises(ParameterError, match="not a score-file column"):
        run_stage("ingest", settings, {"scores": "x.csv", "scores_columns": "prob=p"})


def test_the_cli_prints_one_line_naming_the_bad_rows(settings, profiles, tmp_cwd, capsys):
    path = _bad_csv(tmp_cwd, profiles, _set(5, 1, "1.2"))
    assert run_cli("ingest", ["--scores", str(path)]) == 2
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("cmle ingest")]
    assert "Traceback" not in err and len(ours) == 1
    assert ours[0].startswith("cmle ingest: error: the scores file") and "line 7: '1.2'" in ours[0]


def test_a_spec_without_profiles_checks_the_ids_against_its_events(settings, platform, mlflow_store, tmp_cwd):
    import re

    from cmle import modelspec
    from cmle.ingestion import ingest_tables
    from tests.aep.helpers import ecid, events_dataset, events_table

    spec = tmp_cwd / "no-profiles.yaml"
    spec.write_text(re.sub(r"\nprofiles:\n(  .*\n)+", "\n", modelspec.packaged_spec_text()))
    ds = events_dataset(platform)
    ingest_tables(platform, ds.id, [events_table(30)], key="events")
    path = write_csv(tmp_cwd / "s.csv", ["userid", "propensity"], [[ecid(i), "0.5"] for i in range(31)])
    with pytest.raises(DataCheckError, match=r"1 profile id not in the events dataset .*\(line 32: "):
        run_stage("ingest", settings, {"scores": str(path), "spec": str(spec)})
    ok = write_csv(tmp_cwd / "ok.csv", ["userid", "propensity"], [[ecid(i), "0.5"] for i in range(30)])
    assert run_stage("ingest", settings, {"scores": str(ok), "spec": str(spec)})["records"] == 30
