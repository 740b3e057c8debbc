"""The Data Distiller SQL of the challenger, written once from Adobe's documented forms.

Adobe's "Models" page (experience-platform ``query/advanced-statistics/models.md``)::

    CREATE MODEL | CREATE MODEL IF NOT EXISTS | CREATE OR REPLACE MODEL} model_alias
    [TRANSFORM (select_list)] [OPTIONS(model_option_list)] [AS {select_query}]
    model_option_list: MODEL_TYPE = {'LINEAR_REG' | 'LOGISTIC_REG' | 'KMEANS'}
                       [, MAX_ITER = int64_value] [, LABEL = string_array] [, REG_PARAM = float64_value]

    SELECT * FROM model_evaluate(model-alias, version-number, SELECT col1, col2, label-COLUMN FROM test_dataset)
    SELECT * FROM model_predict(model-alias, version-number, SELECT col1, col2 FROM dataset)
    SHOW MODELS;   DROP MODEL IF EXISTS modelName

and "Feature transformation techniques" (``feature-transformation.md``): every
transformation is ``functionName(colName, parameters) aliasName`` (the alias is mandatory),
transformations chain, and the last one, a ``vector_assembler`` (or a scaler of its
output), is what the model trains on; ``numeric_imputer`` takes DoubleType or FloatType
columns; evaluation and prediction apply the training's transformations.

The rows come from the training set's dataset in Query Service: the training rows are
those whose profile is not among the holdout's profiles (a small dataset cmle uploads,
see :mod:`cmle.distiller.challenger`), the holdout rows those that are, so Data
Distiller's model trains and is evaluated on exactly the rows cmle's model did.

Features: numeric ones are cast to DOUBLE and imputed with their median (``numeric_imputer``),
with a 0/1 missing indicator for a column that has NULLs, as cmle's own logistic
regression does. String categoricals are one-hot encoded in the SELECT, with the levels
seen in the training rows, rather than with ``string_indexer``/``one_hot_encoder``: the
indexer refuses a label it did not see in training, so one rare level in the holdout
would fail the evaluation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from cmle.columns import ID_COLUMN, LABEL_COLUMN

MODEL_TYPES = ("logistic_reg",)  # the documented MODEL_TYPE for a binary goal
MAX_ITER = 100
REG_PARAM = 0.01  # a little L2: one-hot levels and the intercept are collinear
MAX_LEVELS = 30  # one-hot columns per categorical feature (the most frequent levels)
KEY = "cmle_userid"  # the profile of a row, passed through every statement (not a feature)
FEATURES = "features"
HIDDEN_FIELDS = "set advanced_statistics_show_hidden_fields=true"  # model_predict's probability
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """``name`` if it is a plain identifier; ValueError otherwise (nothing is quoted into SQL)."""
    if not _IDENT.match(name or ""):
        raise ValueError(f"{name!r} is not a plain SQL identifier (letters, digits and _)")
    return name


def _string_literal(value: str) -> str | None:
    if "'" in value or "\\" in value or any(ord(ch) < 32 for ch in value):
        return None
    return f"'{value}'"


@dataclass(frozen=True)
class Column:
    """One column of the statements' SELECT: its name and Spark SQL over the training table ``t``."""

    name: str
    sql: str


@dataclass(frozen=True)
class Features:
    """What Data Distiller's model is given, derived from the training rows."""

    numeric: tuple[str, ...]  # cast to DOUBLE, imputed by numeric_imputer
    indicators: tuple[str, ...]  # numeric features with NULLs: a 0/1 column each
    levels: tuple[tuple[str, tuple[str, ...]], ...]  # categorical feature -> its one-hot levels
    skipped: tuple[str, ...] = ()  # features left out, with why

    @classmethod
    def from_frame(cls, train: pd.DataFrame, numeric, categorical) -> "Features":
        """The features of the training rows ``train``: all-NULL and non-finite numeric
        columns are left out (Data Distiller's imputer cannot fill the one, its regression
        cannot take the other), categoricals keep their :data:`MAX_LEVELS` most frequent levels."""
        keep, indicators, skipped = [], [], []
        for c in numeric:
            ident(c)
            values = pd.to_numeric(train[c], errors="coerce").astype("float64")
            if values.isna().all():
                skipped.append(f"{c} (no value in the training rows)")
                continue
            if values.abs().eq(math.inf).any():
                skipped.append(f"{c} (holds infinite values)")
                continue
            keep.append(c)
            if values.isna().any():
                indicators.append(c)
        levels = []
        for c in categorical:
            ident(c)
            counts = train[c].dropna().astype(str).value_counts()
            usable = [v for v in counts.index if _string_literal(v) is not None][:MAX_LEVELS]
            if not usable:
                skipped.append(f"{c} (no usable level in the training rows)")
                continue
            levels.append((c, tuple(sorted(usable))))
        return cls(numeric=tuple(keep), indicators=tuple(indicators), levels=tuple(levels), skipped=tuple(skipped))

    def columns(self, with_label: bool = True) -> list[Column]:
        """The SELECT list: the key, the features' raw columns, then the label."""
        cols = [Column(KEY, f"CAST(t.`{ID_COLUMN}` AS STRING)")]
        cols += [Column(c, f"CAST(t.`{c}` AS DOUBLE)") for c in self.numeric]
        cols += [Column(f"cmle_missing_{c}", f"CAST(CASE WHEN t.`{c}` IS NULL THEN 1 ELSE 0 END AS DOUBLE)")
                 for c in self.indicators]
        for c, values in self.levels:
            cols += [Column(f"cmle_{c}_{i}", f"CAST(CASE WHEN t.`{c}` = {_string_literal(v)} THEN 1 ELSE 0 END "
                                             "AS DOUBLE)") for i, v in enumerate(values)]
        if with_label:
            cols.append(Column(LABEL_COLUMN, f"CAST(t.`{LABEL_COLUMN}` AS INT)"))
        return cols

    def transform(self) -> str:
        """The TRANSFORM list: median imputation of the numeric columns, then the vector."""
        items = [f"numeric_imputer({c}, 'median') cmle_imputed_{c}" for c in self.numeric]
        vector = [f"cmle_imputed_{c}" for c in self.numeric] + [f"cmle_missing_{c}" for c in self.indicators]
        vector += [f"cmle_{c}_{i}" for c, values in self.levels for i in range(len(values))]
        if not vector:
            raise ValueError("no feature is left for Data Distiller's model")
        items.append(f"vector_assembler(array({', '.join(vector)})) {FEATURES}")
        return ",\n  ".join(items)


def rows_select(features: Features, training_table: str, holdout_table: str, tenant: str, holdout: bool,
                with_label: bool = True) -> str:
    """SELECT of the training rows (``holdout=False``: those whose profile is not in the
    holdout) or of the holdout rows, from the training set's table."""
    cols = ",\n  ".join(f"{c.sql} AS {c.name}" for c in features.columns(with_label))
    rows = "holdout" if holdout else "train"
    return f"SELECT\n  {cols}\nFROM {_table(training_table)} AS t\n{_holdout_join(holdout_table, tenant, rows)}"


def _table(name: str) -> str:
    from cmle.features.render import quote_table

    return quote_table(name)


def _holdout_join(holdout_table: str, tenant: str, rows: str) -> str:
    """The join with the holdout's profiles keeping the ``train`` rows (not in it), the
    ``holdout`` rows, or ``all`` rows (marked by ``h.cmle_holdout_id``)."""
    root = ident(tenant if tenant.startswith("_") else f"_{tenant}")
    ids = (f"(SELECT DISTINCT CAST(`{root}`.`{ID_COLUMN}` AS STRING) AS cmle_holdout_id "
           f"FROM {_table(holdout_table)}) AS h")
    on = f"ON CAST(t.`{ID_COLUMN}` AS STRING) = h.cmle_holdout_id"
    if rows == "holdout":
        return f"JOIN {ids} {on}"
    return f"LEFT JOIN {ids} {on}" + ("\nWHERE h.cmle_holdout_id IS NULL" if rows == "train" else "")


def split_counts(training_table: str, holdout_table: str, tenant: str) -> str:
    """Rows of the training set, and how many of them are holdout rows (one query)."""
    return (f"SELECT COUNT(*) AS cmle_rows, COUNT(h.cmle_holdout_id) AS cmle_holdout_rows\n"
            f"FROM {_table(training_table)} AS t\n{_holdout_join(holdout_table, tenant, 'all')}")


def create_model(alias: str, features: Features, select: str, model_type: str = "logistic_reg",
                 max_iter: int = MAX_ITER, reg_param: float = REG_PARAM) -> str:
    """``CREATE OR REPLACE MODEL``: one model per alias, its latest version replaced."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model type {model_type!r} is not one of {MODEL_TYPES}")
    return (f"CREATE OR REPLACE MODEL {ident(alias)}\n"
            f"TRANSFORM (\n  {features.transform()}\n)\n"
            f"OPTIONS (MODEL_TYPE = '{model_type}', LABEL = '{LABEL_COLUMN}', MAX_ITER = {int(max_iter)}, "
            f"REG_PARAM = {float(reg_param)!r})\n"
            f"AS\n{select}")


def model_evaluate(alias: str, version: int, select: str) -> str:
    return f"SELECT * FROM model_evaluate({ident(alias)}, {int(version)},\n{select})"


def model_predict(alias: str, version: int, select: str) -> str:
    return f"SELECT * FROM model_predict({ident(alias)}, {int(version)},\n{select})"


def show_models() -> str:
    return "SHOW MODELS"


def drop_model(alias: str) -> str:
    return f"DROP MODEL IF EXISTS {ident(alias)}"
