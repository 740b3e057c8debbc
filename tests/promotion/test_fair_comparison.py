"""Promotion compares on rows neither model trained on, with each model scored by its own version."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from cmle.columns import ID_COLUMN, LABEL_COLUMN
from cmle.errors import RegistryError
from cmle.model import artifact, metrics
from cmle.model.holdout import buckets, describe
from cmle.promotion import evaluation
from cmle.registry import CHAMPION, Registry
from cmle.runner import run_stage
from cmle.stages.train import SPLIT_TAG
from tests.model.fabricate import BANK_SALT, bank, empty_mlflow_db, register_version, store  # noqa: F401


@pytest.fixture
def name(settings):
    return settings.cloud.model_name


def _record(name):
    return Registry.current().promotion_history(name)[-1]


def test_a_champion_from_another_split_is_compared_on_the_profiles_both_held_out(store, settings, bank, name):
    """The issue's case: a champion trained with a seeded random split (another seed) saw most
    of the challenger's holdout; only the profiles in both holdouts are fair."""
    old = register_version(name, bank.frame, seed=5, stable=False, alias=CHAMPION)  # before the stable split
    champion_holdout, _ = evaluation.load_holdout(Registry.current().version(name, old))
    new = bank.register(name, "strong")
    challenger_holdout, _ = evaluation.load_holdout(Registry.current().version(name, new))
    out = run_stage("promote", settings, {"min_eval_positives": 10})
    evaluated = _record(name)["evaluation"]
    both = set(champion_holdout[ID_COLUMN]) & set(challenger_holdout[ID_COLUMN])
    assert evaluated["rows"] == len(both) == out["evaluation_rows"]
    assert evaluated["excluded_rows"] == len(challenger_holdout) - len(both) > len(both)  # most were seen
    assert "both models' stored holdouts" in evaluated["rule"] and "no split record" in evaluated["rule"]
    kept = challenger_holdout[challenger_holdout[ID_COLUMN].isin(both)]
    assert evaluated["positives"] == int(kept[LABEL_COLUMN].sum())
    # the rows are in the run: exactly those profiles
    rows = pd.read_parquet(mlflow.artifacts.download_artifacts(
        f"runs:/{_record(name)['run_id']}/promotion/evaluation_rows.parquet"))
    assert set(rows[ID_COLUMN]) == both


def test_the_same_salt_keeps_the_whole_holdout_or_the_champions_smaller_fraction(store, settings, bank, name):
    champion = bank.register(name, "weak", alias=CHAMPION,
                             tags={SPLIT_TAG: describe(BANK_SALT, 0.15).to_json()})  # it held out less
    bank.register(name, "strong")
    run_stage("promote", settings, {"min_eval_positives": 10})
    evaluated = _record(name)["evaluation"]
    holdout, _ = evaluation.load_holdout(Registry.current().by_alias(name, "challenger"))
    kept = buckets(holdout[ID_COLUMN], BANK_SALT) < 0.15
    assert evaluated["rows"] == int(kept.sum()) and evaluated["excluded_rows"] == int((~kept).sum())
    assert "below the champion's holdout fraction 0.15" in evaluated["rule"]
    # once the champion held out as much, every holdout row is fair
    Registry.current().set_tags(name, champion, {SPLIT_TAG: describe(BANK_SALT, 0.3).to_json()})
    Registry.current().set_alias(name, "challenger", bank.register(name, "strong"))
    run_stage("promote", settings, {"min_eval_positives": 10})
    assert _record(name)["evaluation"]["excluded_rows"] == 0


def test_too_few_positives_is_not_decided(store, settings, bank, name):
    bank.register(name, "weak", alias=CHAMPION)
    bank.register(name, "strong")
    out = run_stage("promote", settings, {"min_eval_positives": 100_000})
    assert out["status"] == "insufficient_evidence" and not out["promoted"]
    assert Registry.current().aliases(name)[CHAMPION] == "1"
    record = _record(name)
    assert record["evaluation"]["positives"] == out["evaluation_positives"] > 0
    assert f"hold {out['evaluation_positives']} positives" in out["reason"] and "min_eval_positives = 100000" in \
        out["reason"]
    # main says what to do when there is no champion to go on with
    from cmle.stages import pipeline

    with pytest.raises(RegistryError, match="at least min_eval_positives = 100000 positives"):
        pipeline._after_gate({**out, "champion_version": None}, {"min_eval_positives": 100_000}, [])


def test_each_model_is_scored_by_its_own_version(store, settings, bank, name):
    """vertex-ai-samples#71: the champion evaluated with the challenger's model. Two different
    models; the record's scores of each are those of that version's own model."""
    champion = register_version(name, bank.frame, ["emails_opened", "age"], alias=CHAMPION)
    challenger = register_version(name, bank.frame)
    run_stage("promote", settings, {})
    record = _record(name)
    rows = pd.read_parquet(mlflow.artifacts.download_artifacts(
        f"runs:/{record['run_id']}/promotion/evaluation_rows.parquet"))
    holdout, _ = evaluation.load_holdout(Registry.current().version(name, challenger))
    features = holdout.set_index(ID_COLUMN).loc[rows[ID_COLUMN]].reset_index()
    registry = Registry.current()
    for side, version in (("challenger", challenger), ("champion", champion)):
        own = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        expected = own.predict(artifact.conform_input(features, own.metadata.get_input_schema()))["propensity"]
        np.testing.assert_allclose(rows[f"{side}_propensity"], expected)
        scored = record["scored_by"][side]
        assert scored["version"] == version and scored["run_id"] == registry.version(name, version).run_id
    assert not np.allclose(rows["challenger_propensity"], rows["champion_propensity"])
    assert record["scored_by"]["challenger"]["scores_sha256"] != record["scored_by"]["champion"]["scores_sha256"]
    assert record["champion_auc"] == pytest.approx(metrics.roc_auc(rows[LABEL_COLUMN], rows["champion_propensity"]))
    assert record["challenger_auc"] == pytest.approx(metrics.roc_auc(rows[LABEL_COLUMN],
                                                                     rows["challenger_propensity"]))


def test_a_version_is_never_evaluated_with_another_versions_model(store, bank, name):
    v1 = register_version(name, bank.frame, alias=None)
    register_version(name, bank.frame, ["emails_opened"], alias=None)
    holdout, _ = evaluation.load_holdout(Registry.current().version(name, v1))

    class Mixed:  # a version record whose run is not the one that logged its model
        version, tags = v1, {}
        run_id = Registry.current().version(name, "2").run_id

    with pytest.raises(RegistryError, match="refusing to evaluate v1 with another model"):
        evaluation.score(name, Mixed, holdout)
