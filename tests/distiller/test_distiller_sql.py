"""The SQL of the Data Distiller challenger against Adobe's documented forms (Models page:
query/advanced-statistics/models.md; Feature transformation techniques:
query/advanced-statistics/feature-transformation.md), and what reading its results means."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from cmle.distiller import results, sql

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# CREATE MODEL | CREATE MODEL IF NOT EXISTS | CREATE OR REPLACE MODEL} model_alias
# [TRANSFORM (select_list)] [OPTIONS(model_option_list)] [AS {select_query}]
CREATE = re.compile(rf"^CREATE (?:OR REPLACE )?MODEL (?P<alias>{IDENT})\s+TRANSFORM \((?P<transform>.*)\)\s+"
                    rf"OPTIONS \((?P<options>[^)]*)\)\s+AS\s+(?P<select>SELECT\b.*)$", re.DOTALL)
# model_option_list: MODEL_TYPE = {...} [, MAX_ITER = int64] [, LABEL = ...] [, REG_PARAM = float64]
OPTION = re.compile(r"^(MODEL_TYPE = '(linear_reg|logistic_reg|kmeans)'|MAX_ITER = \d+|LABEL = '" + IDENT + "'|"
                    r"REG_PARAM = \d+(\.\d+)?)$", re.IGNORECASE)
# TRANSFORM(functionName(colName, parameters) <aliasNAME>): the alias is mandatory
ITEM = re.compile(rf"^(?P<fn>{IDENT})\((?P<args>.*)\) (?P<alias>{IDENT})$", re.DOTALL)
# SELECT * FROM model_evaluate(model-alias, version-number, SELECT col1, col2, label-COLUMN FROM test_dataset)
EVALUATE = re.compile(rf"^SELECT \* FROM model_evaluate\((?P<alias>{IDENT}), (?P<version>\d+),\s*"
                      r"(?P<select>SELECT\b.*)\)$", re.DOTALL)
PREDICT = re.compile(rf"^SELECT \* FROM model_predict\((?P<alias>{IDENT}), (?P<version>\d+),\s*"
                     r"(?P<select>SELECT\b.*)\)$", re.DOTALL)


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({
        "userid": [f"{i:038d}" for i in range(50)], "label": rng.integers(0, 2, 50),
        "visits": rng.poisson(3, 50).astype("int64"), "recency": np.where(rng.random(50) < 0.2, np.nan, 1.0),
        "empty": np.nan, "ratio": np.where(np.arange(50) == 3, np.inf, 0.5),
        "region": rng.choice(np.array(["north", "south", None, "o'hare"], dtype=object), 50)})
    return sql.Features.from_frame(train, ["visits", "recency", "empty", "ratio"], ["region"])


def _split_top(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + [cur.strip()]


def test_features_follow_the_training_rows(features):
    assert features.numeric == ("visits", "recency")  # all-NULL and infinite columns are left out, and said so
    assert [s.split(" ")[0] for s in features.skipped] == ["empty", "ratio"]
    assert features.indicators == ("recency",)
    assert features.levels == (("region", ("north", "south")),)  # a level with a quote is not a SQL literal


def test_create_model_has_the_documented_form(features):
    select = sql.rows_select(features, "cmle_training_set_cmle_x", "cmle_holdout_x", "cmle", holdout=False)
    text = sql.create_model("cmle_distiller_model_cmle_x", features, select)
    m = CREATE.match(text)
    assert m and m.group("alias") == "cmle_distiller_model_cmle_x"
    options = [o.strip() for o in m.group("options").split(",")]
    assert all(OPTION.match(o) for o in options), options
    assert options[:2] == ["MODEL_TYPE = 'logistic_reg'", "LABEL = 'label'"]
    items = [ITEM.match(i) for i in _split_top(m.group("transform"))]
    assert all(items)
    assert [i.group("fn") for i in items] == ["numeric_imputer", "numeric_imputer", "vector_assembler"]
    assert items[0].group("args") == "visits, 'median'"  # mean, median or mode
    # the last clause is the vector the model trains on: imputed numerics, indicators, one-hot levels
    assert items[-1].group("args") == ("array(cmle_imputed_visits, cmle_imputed_recency, cmle_missing_recency, "
                                       "cmle_region_0, cmle_region_1)")
    # numeric_imputer takes DoubleType: the SELECT casts; the training rows are those not in the holdout
    assert "CAST(t.`visits` AS DOUBLE) AS visits" in m.group("select")
    assert "LEFT JOIN (SELECT DISTINCT CAST(`_cmle`.`userid` AS STRING) AS cmle_holdout_id FROM " \
           "`cmle_holdout_x`) AS h" in m.group("select")
    assert m.group("select").rstrip().endswith("WHERE h.cmle_holdout_id IS NULL")


def test_model_evaluate_and_predict_have_the_documented_form(features):
    holdout = sql.rows_select(features, "t1", "h1", "cmle", holdout=True)
    m = EVALUATE.match(sql.model_evaluate("cmle_m", 3, holdout))
    assert m and (m.group("alias"), m.group("version")) == ("cmle_m", "3")
    assert "JOIN (SELECT DISTINCT" in m.group("select") and "WHERE" not in m.group("select")
    assert m.group("select").split("FROM")[0].rstrip().endswith("AS label")  # evaluation needs the label
    p = PREDICT.match(sql.model_predict("cmle_m", 3, sql.rows_select(features, "t1", "h1", "cmle", holdout=True,
                                                                     with_label=False)))
    assert p and " AS label" not in p.group("select") and "AS cmle_userid" in p.group("select")
    assert sql.show_models() == "SHOW MODELS"
    assert sql.drop_model("cmle_m") == "DROP MODEL IF EXISTS cmle_m"
    assert sql.HIDDEN_FIELDS == "set advanced_statistics_show_hidden_fields=true"


def test_nothing_unsafe_reaches_the_sql():
    for bad in ("a b", "x;drop", "1x", ""):
        with pytest.raises(ValueError):
            sql.ident(bad)
    with pytest.raises(ValueError):
        sql.create_model("m", sql.Features(("x",), (), ()), "SELECT 1", model_type="random_forest")


def test_results_are_read_whatever_form_the_client_gets():
    shown = pd.DataFrame({"model-id": ["a", "b", "c"], "model-name": ["m1", "m1", "m2"], "version": ["1.0", "2", "1"]})
    assert results.model_versions(shown) == {"m1": 2, "m2": 1}
    assert results.evaluation(pd.DataFrame([{"auc_roc": 0.71, "accuracy": 0.8, "precision": 0.5, "recall": 0.25}])) \
        == {"auc_roc": 0.71, "accuracy": 0.8, "precision": 0.5, "recall": 0.25}
    for value, want in (([0.8, 0.2], 0.2), ("[0.75,0.25]", 0.25), ({"type": 1, "values": [0.6, 0.4]}, 0.4),
                        ('{"type":1,"values":[0.3,0.7]}', 0.7), (0.9, 0.9)):
        assert results.positive_probability(value) == pytest.approx(want)
    frame = pd.DataFrame({"cmle_userid": ["a", "b"], "prediction": [0.0, 1.0], "probability": [[0.9, 0.1], [0.2, 0.8]]})
    assert results.predictions(frame, "cmle_userid").to_dict() == {"a": pytest.approx(0.1), "b": pytest.approx(0.8)}
    assert results.predictions(frame.drop(columns="probability"), "cmle_userid").empty
