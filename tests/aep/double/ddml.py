"""Data Distiller's SQL ML in the double, as strict as Adobe's documentation.

Sources: the Models page (``query/advanced-statistics/models.md``) and Feature
transformation techniques (``query/advanced-statistics/feature-transformation.md``) of
Adobe's Experience Platform documentation. Statements:

* ``CREATE MODEL alias | CREATE MODEL IF NOT EXISTS alias | CREATE OR REPLACE MODEL alias
  [TRANSFORM (...)] [OPTIONS (...)] AS select`` — creating an existing alias is an error;
  ``IF NOT EXISTS`` then does nothing; ``OR REPLACE`` replaces the latest version.
  ``UPDATE MODEL alias [TRANSFORM (...)] [OPTIONS (...)] AS select`` adds a version.
* ``OPTIONS``: ``MODEL_TYPE`` (``LINEAR_REG``, ``LOGISTIC_REG``, ``KMEANS``; required),
  ``LABEL``, ``MAX_ITER``, ``REG_PARAM``; any other key is refused.
* ``TRANSFORM``: ``functionName(colName, parameters) alias`` items (the alias is
  mandatory), chained (an item may read an earlier item's alias); the last item must be a
  ``vector_assembler`` or a scaler of one, and is what the model trains on; only the
  columns it reaches are used. ``numeric_imputer`` takes DoubleType or FloatType columns
  (mean, median or mode), ``string_indexer`` refuses a label it did not see in training
  (Spark's default), ``one_hot_encoder`` drops the last level (Spark's default),
  ``vector_assembler`` refuses a NULL (Spark's ``handleInvalid = error``).
* ``SELECT ... FROM model_evaluate(alias, version, select)``: the select's columns must be
  the training's (names and types); returns ``auc_roc, accuracy, precision, recall``.
* ``SELECT ... FROM model_predict(alias, version, select)``: the select's columns plus
  ``prediction``; with ``set advanced_statistics_show_hidden_fields=true`` in the session,
  also ``probability`` and ``rawPrediction`` (each a two-element array, class 0 first).
* ``SHOW MODELS``; ``DROP MODEL [IF EXISTS] alias [version]``.

``LOGISTIC_REG`` is a real binomial logistic regression (standardised features, L2
``REG_PARAM``, Newton steps up to ``MAX_ITER``), so evaluation returns real metrics. The
other documented model types and transformations are refused as not implemented by the
double, which a test would notice. Models are kept in ``double.models`` (shared by the
wire proxy's process and the REST service); a result set is a table the rewritten SQL reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import numpy as np

STORE_SQL = """CREATE TABLE IF NOT EXISTS double.models (
  name text NOT NULL, version int NOT NULL, body jsonb NOT NULL,
  created timestamptz NOT NULL DEFAULT now(), updated timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version))"""

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_STATEMENT = re.compile(r"^\s*(?:CREATE\s+(?:OR\s+REPLACE\s+)?MODEL|UPDATE\s+MODEL|DROP\s+MODELS?|SHOW\s+MODELS)\b",
                        re.IGNORECASE)
_CALL = re.compile(r"\bmodel_(evaluate|predict)\s*\(", re.IGNORECASE)
_CREATE = re.compile(rf"^CREATE\s+(?P<replace>OR\s+REPLACE\s+)?MODEL\s+(?P<ifne>IF\s+NOT\s+EXISTS\s+)?"
                     rf"(?P<alias>{_IDENT})(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_UPDATE = re.compile(rf"^UPDATE\s+MODEL\s+(?P<alias>{_IDENT})(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_DROP = re.compile(rf"^DROP\s+MODEL\s+(?P<ifexists>IF\s+EXISTS\s+)?(?P<alias>{_IDENT})(?:\s+(?P<version>\d+))?$",
                   re.IGNORECASE)
_SHOW = re.compile(r"^SHOW\s+MODELS$", re.IGNORECASE)
_HIDDEN = re.compile(r"^\s*set\s+advanced_statistics_show_hidden_fields\s*=\s*(true|false)\s*;?\s*$", re.IGNORECASE)
OPTION_KEYS = ("MODEL_TYPE", "MAX_ITER", "LABEL", "REG_PARAM")
MODEL_TYPES = ("LINEAR_REG", "LOGISTIC_REG", "KMEANS")
IMPLEMENTED_TYPES = ("LOGISTIC_REG",)
DOCUMENTED_TRANSFORMS = (
    "numeric_imputer", "string_imputer", "boolean_imputer", "vector_assembler", "binarizer", "bucketizer",
    "min_max_scaler", "max_abs_scaler", "normalizer", "quantile_discretizer", "standard_scaler", "string_indexer",
    "one_hot_encoder", "count_vectorizer", "ngram", "stop_words_remover", "tokenizer", "tf_idf",
    "word2vec")
VECTOR_LAST = ("vector_assembler", "standard_scaler", "min_max_scaler", "max_abs_scaler", "normalizer")
THRESHOLD = 0.5


class ModelError(Exception):
    """A statement Data Distiller would refuse; the message is what the client sees."""


def is_model_sql(sql: str) -> bool:
    return bool(_STATEMENT.match(sql) or _CALL.search(sql))


def session_setting(sql: str, session: dict) -> bool:
    """Record ``set advanced_statistics_show_hidden_fields=...`` in ``session``; True if it was one."""
    m = _HIDDEN.match(sql)
    if m:
        session["hidden_fields"] = m.group(1).lower() == "true"
    return bool(m)


def run(sql: str, cur, translate, session: dict | None = None) -> str | None:
    """Execute the model parts of ``sql`` with the admin cursor ``cur`` (``translate`` turns
    Spark SQL into PostgreSQL statements). Returns the Spark SQL to run instead (a SELECT
    over a table holding the result set), or None when the statement is done."""
    text = sql.strip().rstrip(";").strip()
    cur.execute(STORE_SQL)
    if _SHOW.match(text):
        return f"SELECT * FROM {_show(cur)}"
    m = _DROP.match(text)
    if m:
        _drop(cur, m.group("alias"), m.group("version"), bool(m.group("ifexists")))
        return None
    m = _CREATE.match(text)
    if m:
        if m.group("replace") and m.group("ifne"):
            raise ModelError("CREATE OR REPLACE MODEL and IF NOT EXISTS cannot be combined")
        _create(cur, translate, m.group("alias"), m.group("rest"), replace=bool(m.group("replace")),
                if_not_exists=bool(m.group("ifne")))
        return None
    m = _UPDATE.match(text)
    if m:
        _create(cur, translate, m.group("alias"), m.group("rest"), update=True)
        return None
    if _STATEMENT.match(text):
        raise ModelError(f"malformed model statement: {text[:120]}")
    call = _CALL.search(text)
    if call is None:
        raise ModelError("not a model statement")
    end = _closing(text, call.end() - 1)
    args = _split(text[call.end():end], maxsplit=2)
    if len(args) != 3:
        raise ModelError(f"model_{call.group(1).lower()} takes (model-alias, version-number, SELECT ...); got "
                         f"{len(args)} arguments")
    alias, version, select = args
    if not re.fullmatch(_IDENT, alias.strip()) or not re.fullmatch(r"\d+", version.strip()):
        raise ModelError(f"model_{call.group(1).lower()}: the first arguments are a model alias and a version "
                         f"number, not {alias.strip()!r}, {version.strip()!r}")
    if not re.match(r"^\s*(SELECT|WITH)\b", select, re.IGNORECASE):
        raise ModelError(f"model_{call.group(1).lower()}: the third argument must be a SELECT statement")
    body = _load(cur, alias.strip(), int(version))
    if call.group(1).lower() == "evaluate":
        table = _evaluate(cur, translate, body, select)
    else:
        table = _predict(cur, translate, body, select, bool((session or {}).get("hidden_fields")))
    return text[:call.start()] + table + text[end + 1:]


# --- parsing ------------------------------------------------------------------------------
def _scan(text: str, start: int = 0):
    """(index, character, depth) of every character outside quotes, ``depth`` counting the
    parentheses open around it (a parenthesis itself counts as outside)."""
    depth, quote = 0, None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
            continue
        if ch in "'\"`":
            quote = ch
            continue
        depth -= ch == ")"
        yield i, ch, depth
        depth += ch == "("


def _closing(text: str, open_at: int) -> int:
    """Index of the parenthesis closing the one at ``open_at`` (quotes respected)."""
    for i, ch, depth in _scan(text, open_at):
        if ch == ")" and depth == 0:
            return i
    raise ModelError("unbalanced parentheses")


def _split(text: str, maxsplit: int = -1) -> list[str]:
    """Split on commas outside parentheses and quotes (at most ``maxsplit`` times)."""
    out, last = [], 0
    for i, ch, depth in _scan(text):
        if ch == "," and depth == 0 and (maxsplit < 0 or len(out) < maxsplit):
            out.append(text[last:i])
            last = i + 1
    out.append(text[last:])
    return [s.strip() for s in out]


def _clauses(rest: str) -> tuple[str | None, str | None, str]:
    """(TRANSFORM list, OPTIONS list, SELECT) of what follows the alias."""
    rest = rest.strip()
    transform = options = None
    m = re.match(r"^TRANSFORM\s*\(", rest, re.IGNORECASE)
    if m:
        end = _closing(rest, m.end() - 1)
        transform, rest = rest[m.end():end], rest[end + 1:].strip()
    m = re.match(r"^OPTIONS\s*\(", rest, re.IGNORECASE)
    if m:
        end = _closing(rest, m.end() - 1)
        options, rest = rest[m.end():end], rest[end + 1:].strip()
    m = re.match(r"^AS\s+(?P<select>(?:SELECT|WITH)\b.*)$", rest, re.IGNORECASE | re.DOTALL)
    if not m:
        raise ModelError("malformed CREATE MODEL: expected [TRANSFORM (...)] [OPTIONS (...)] AS SELECT ...; "
                         f"found {rest[:80]!r}")
    return transform, options, m.group("select")


def _literal(value: str):
    v = value.strip()
    if re.fullmatch(r"'[^']*'", v):
        return v[1:-1]
    if re.fullmatch(r"[-+]?\d+", v):
        return int(v)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", v):
        return float(v)
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ModelError(f"{v!r} is not a literal")


def _options(text: str | None) -> dict:
    if text is None:
        raise ModelError("OPTIONS (MODEL_TYPE = ...) is required")
    out = {}
    for item in _split(text):
        m = re.fullmatch(rf"(?P<key>{_IDENT})\s*=\s*(?P<value>.+)", item, re.DOTALL)
        if not m:
            raise ModelError(f"malformed option {item!r}: expected KEY = value")
        key = m.group("key").upper()
        if key not in OPTION_KEYS:
            raise ModelError(f"unknown model option {m.group('key')!r}; options: {', '.join(OPTION_KEYS)}")
        raw = m.group("value").strip()
        arr = re.fullmatch(r"array\s*\((?P<items>.*)\)", raw, re.IGNORECASE | re.DOTALL)
        value = [_literal(x) for x in _split(arr.group("items"))] if arr else _literal(raw)
        out[key] = value
    if "MODEL_TYPE" not in out or not isinstance(out["MODEL_TYPE"], str):
        raise ModelError("OPTIONS must give MODEL_TYPE = '<type>'")
    out["MODEL_TYPE"] = out["MODEL_TYPE"].upper()
    if out["MODEL_TYPE"] not in MODEL_TYPES:
        raise ModelError(f"MODEL_TYPE {out['MODEL_TYPE']!r} is not one of {', '.join(MODEL_TYPES)}")
    if out["MODEL_TYPE"] not in IMPLEMENTED_TYPES:
        raise ModelError(f"MODEL_TYPE {out['MODEL_TYPE']} is documented, but the double implements "
                         f"{', '.join(IMPLEMENTED_TYPES)} only")
    label = out.get("LABEL")
    if isinstance(label, list):
        if len(label) != 1 or not isinstance(label[0], str):
            raise ModelError("LABEL names one label column")
        label = label[0]
    if not isinstance(label, str) or not re.fullmatch(_IDENT, label):
        raise ModelError(f"{out['MODEL_TYPE']} needs LABEL = '<label column>'")
    out["LABEL"] = label
    if not isinstance(out.setdefault("MAX_ITER", 100), int) or out["MAX_ITER"] < 1:
        raise ModelError("MAX_ITER must be a positive integer")
    if not isinstance(out.setdefault("REG_PARAM", 0.0), (int, float)) or out["REG_PARAM"] < 0:
        raise ModelError("REG_PARAM must be a non-negative number")
    return out


def _transform(text: str | None) -> list[dict]:
    if text is None:
        raise ModelError("the double needs a TRANSFORM clause (automatic feature transformation is documented but "
                         "not implemented here)")
    items = []
    for item in _split(text):
        m = re.fullmatch(rf"(?P<fn>{_IDENT})\s*\((?P<args>.*)\)(?:\s+(?:AS\s+)?(?P<alias>{_IDENT}))?", item,
                         re.IGNORECASE | re.DOTALL)
        if not m:
            raise ModelError(f"malformed transformation {item!r}: expected functionName(colName, parameters) alias")
        fn = m.group("fn").lower()
        if not m.group("alias"):
            raise ModelError(f"transformation {item!r} has no alias: the alias name is mandatory")
        if fn not in DOCUMENTED_TRANSFORMS:
            raise ModelError(f"unknown transformation {m.group('fn')!r}")
        if fn not in _FIT:
            raise ModelError(f"transformation {fn} is documented, but the double does not implement it")
        args = _split(m.group("args")) if m.group("args").strip() else []
        if fn == "vector_assembler":
            arr = re.fullmatch(r"array\s*\((?P<items>.*)\)", args[0], re.IGNORECASE | re.DOTALL) if len(args) == 1 \
                else None
            inputs = _split(arr.group("items")) if arr else args
            params = []
        else:
            if not args:
                raise ModelError(f"{fn} needs an input column")
            inputs, params = [args[0]], [_literal(a) for a in args[1:]]
        for name in inputs:
            if not re.fullmatch(_IDENT, name):
                raise ModelError(f"{fn}: {name!r} is not a column name")
        items.append({"fn": fn, "inputs": [i.lower() for i in inputs], "params": params,
                      "alias": m.group("alias").lower(), "text": item})
    if not items:
        raise ModelError("TRANSFORM is empty")
    if items[-1]["fn"] not in VECTOR_LAST:
        raise ModelError("the last clause of TRANSFORM must be a vector_assembler (or a scaler of its output): it "
                         "holds the features the model trains on")
    return items


# --- data -------------------------------------------------------------------------------------
_KINDS = {700: "double", 701: "double", 1700: "decimal", 20: "int", 21: "int", 23: "int", 25: "string",
          1043: "string", 1042: "string", 16: "bool"}


def _select(cur, translate, select: str) -> tuple[list[str], dict[str, str], list[tuple]]:
    """(column names, {lower name: kind}, rows) of a Spark SELECT run in PostgreSQL."""
    statements = translate(select)
    if len(statements) != 1:
        raise ModelError("the SELECT of a model statement must be one statement")
    cur.execute(statements[0])
    names = [d.name for d in cur.description]
    kinds = {n.lower(): _KINDS.get(d.type_code, "other") for n, d in zip(names, cur.description)}
    return names, kinds, cur.fetchall()


def _values(names, rows, column: str) -> list:
    i = [n.lower() for n in names].index(column)
    return [r[i] for r in rows]


# --- transformations: fit on the training rows, apply with the fitted state ---------------------
def _num(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype="float64")


def _fit_numeric_imputer(item, env, kinds):
    (col,) = item["inputs"]
    if kinds[col] != "double":
        raise ModelError(f"numeric_imputer({col}): the input column is {kinds[col]}; the input columns should be "
                         "either DoubleType or FloatType")
    strategy = (item["params"] or ["mean"])[0]
    if strategy not in ("mean", "median", "mode"):
        raise ModelError(f"numeric_imputer: strategy {strategy!r} is not one of mean, median, mode")
    x = _num(env[col])
    known = x[~np.isnan(x)]
    if known.size == 0:
        raise ModelError(f"surrogate cannot be computed: all the values in {col} are null")
    if strategy == "mean":
        fill = float(known.mean())
    elif strategy == "median":
        fill = float(np.median(known))
    else:
        values, counts = np.unique(known, return_counts=True)
        fill = float(values[np.argmax(counts)])
    return {"fill": fill}, "double"


def _apply_numeric_imputer(item, state, env, kinds):
    (col,) = item["inputs"]
    x = _num(env[col])
    return list(np.where(np.isnan(x), state["fill"], x))


def _fit_string_imputer(item, env, kinds):
    (col,) = item["inputs"]
    if kinds[col] != "string":
        raise ModelError(f"string_imputer({col}): the input column must be a string, not {kinds[col]}")
    return {"fill": str((item["params"] or ["ml_unknown"])[0])}, "string"


def _apply_string_imputer(item, state, env, kinds):
    return [state["fill"] if v is None else v for v in env[item["inputs"][0]]]


def _fit_boolean_imputer(item, env, kinds):
    (col,) = item["inputs"]
    if kinds[col] != "bool":
        raise ModelError(f"boolean_imputer({col}): the input column must be a boolean, not {kinds[col]}")
    return {"fill": bool((item["params"] or [False])[0])}, "bool"


def _apply_boolean_imputer(item, state, env, kinds):
    return [state["fill"] if v is None else v for v in env[item["inputs"][0]]]


def _fit_string_indexer(item, env, kinds):
    (col,) = item["inputs"]
    values = [None if v is None else str(v) for v in env[col]]
    if any(v is None for v in values):
        raise ModelError(f"string_indexer({col}): StringIndexer encountered NULL value; impute it first")
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    order = sorted(counts, key=lambda v: (-counts[v], v))  # frequency, then alphabetical
    return {"labels": order}, "double"


def _apply_string_indexer(item, state, env, kinds):
    index = {v: i for i, v in enumerate(state["labels"])}
    out = []
    for v in env[item["inputs"][0]]:
        key = None if v is None else str(v)
        if key not in index:
            raise ModelError(f"Unseen label: {key}. To handle unseen labels, set Param handleInvalid to keep.")
        out.append(float(index[key]))
    return out


def _fit_one_hot_encoder(item, env, kinds):
    (col,) = item["inputs"]
    if kinds[col] not in ("double", "int", "decimal"):
        raise ModelError(f"one_hot_encoder({col}): the input column must hold label indices (numeric)")
    x = _num(env[col])
    if np.isnan(x).any() or (x < 0).any() or (x != np.round(x)).any():
        raise ModelError(f"one_hot_encoder({col}): the input must be non-negative whole label indices")
    return {"size": int(x.max()) + 1 if x.size else 1}, "vector"


def _apply_one_hot_encoder(item, state, env, kinds):
    size = state["size"]
    out = []
    for v in _num(env[item["inputs"][0]]):
        vec = [0.0] * (size - 1)  # dropLast: the last level is all zeros
        k = int(v)
        if k >= size:
            raise ModelError(f"one_hot_encoder: index {k} is beyond the {size} levels seen in training")
        if k < size - 1:
            vec[k] = 1.0
        out.append(vec)
    return out


def _fit_vector_assembler(item, env, kinds):
    for col in item["inputs"]:
        if kinds[col] not in ("double", "int", "decimal", "bool", "vector"):
            raise ModelError(f"vector_assembler: column {col} is {kinds[col]}; VectorAssembler accepts numeric, "
                             "boolean and vector columns")
    return {}, "vector"


def _apply_vector_assembler(item, state, env, kinds):
    rows = len(next(iter(env.values())))
    out = []
    for r in range(rows):
        vec = []
        for col in item["inputs"]:
            v = env[col][r]
            if v is None or (isinstance(v, float) and np.isnan(v)):
                raise ModelError(f"Encountered null while assembling a row with handleInvalid = \"error\" (column "
                                 f"{col}). Consider removing nulls from dataset or using handleInvalid = \"keep\" or "
                                 "\"skip\".")
            vec.extend(v if isinstance(v, list) else [float(v)])
        out.append(vec)
    return out


def _fit_scaler(item, env, kinds):
    (col,) = item["inputs"]
    if kinds[col] != "vector":
        raise ModelError(f"{item['fn']}({col}): the input must be a vector")
    X = np.array(env[col], dtype="float64")
    fn = item["fn"]
    if fn == "standard_scaler":
        with_std, with_mean = (list(item["params"]) + [True, False][len(item["params"]):])[:2]
        std = X.std(axis=0, ddof=1) if len(X) > 1 else np.ones(X.shape[1])
        return {"mean": X.mean(axis=0).tolist() if with_mean else [0.0] * X.shape[1],
                "scale": [s if with_std and s > 0 else 1.0 for s in std]}, "vector"
    if fn == "max_abs_scaler":
        m = np.abs(X).max(axis=0)
        return {"mean": [0.0] * X.shape[1], "scale": [s if s > 0 else 1.0 for s in m]}, "vector"
    lo, hi = (list(item["params"]) + [0.0, 1.0][len(item["params"]):])[:2]
    mn, mx = X.min(axis=0), X.max(axis=0)
    rng = np.where(mx > mn, mx - mn, 1.0)
    return {"mean": mn.tolist(), "scale": (rng / (hi - lo)).tolist(), "offset": lo}, "vector"


def _apply_scaler(item, state, env, kinds):
    X = np.array(env[item["inputs"][0]], dtype="float64")
    Z = (X - np.array(state["mean"])) / np.array(state["scale"]) + state.get("offset", 0.0)
    return Z.tolist()


_FIT = {"numeric_imputer": (_fit_numeric_imputer, _apply_numeric_imputer),
        "string_imputer": (_fit_string_imputer, _apply_string_imputer),
        "boolean_imputer": (_fit_boolean_imputer, _apply_boolean_imputer),
        "string_indexer": (_fit_string_indexer, _apply_string_indexer),
        "one_hot_encoder": (_fit_one_hot_encoder, _apply_one_hot_encoder),
        "vector_assembler": (_fit_vector_assembler, _apply_vector_assembler),
        "standard_scaler": (_fit_scaler, _apply_scaler), "min_max_scaler": (_fit_scaler, _apply_scaler),
        "max_abs_scaler": (_fit_scaler, _apply_scaler)}


def _raw_inputs(items: list[dict]) -> list[str]:
    """The SELECT columns the transformations read (not earlier aliases), in order."""
    aliases, raw = set(), []
    for item in items:
        for col in item["inputs"]:
            if col not in aliases and col not in raw:
                raw.append(col)
        aliases.add(item["alias"])
    return raw


def _env(names, rows, kinds: dict[str, str], needed: list[str]) -> dict:
    lower = [n.lower() for n in names]
    for col in needed:
        if col not in lower:
            raise ModelError(f"column {col} of the model's input is not in the SELECT (its columns: {names})")
    return {col: _values(names, rows, col) for col in needed}


def _features(items, states, env, kinds) -> np.ndarray:
    kinds = dict(kinds)
    for item, state in zip(items, states):
        env[item["alias"]] = _FIT[item["fn"]][1](item, state, env, kinds)
        kinds[item["alias"]] = state["_kind"]
    return np.array(env[items[-1]["alias"]], dtype="float64").reshape(len(next(iter(env.values()))), -1)


# --- the model ----------------------------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def _fit_logistic(X: np.ndarray, y: np.ndarray, reg: float, max_iter: int) -> dict:
    mean = X.mean(axis=0)
    std = X.std(axis=0, ddof=1) if len(X) > 1 else np.ones(X.shape[1])
    std = np.where(std > 0, std, 1.0)
    A = np.hstack([np.ones((len(X), 1)), (X - mean) / std])
    w = np.zeros(A.shape[1])
    penalty = np.eye(A.shape[1]) * reg
    penalty[0, 0] = 0.0
    for _ in range(max_iter):
        p = _sigmoid(A @ w)
        grad = A.T @ (p - y) / len(y) + penalty @ w
        hess = (A.T * (p * (1 - p))) @ A / len(y) + penalty + 1e-9 * np.eye(A.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return {"mean": mean.tolist(), "std": std.tolist(), "w": w.tolist()}


def _margin(model: dict, X: np.ndarray) -> np.ndarray:
    w = np.array(model["w"])
    return w[0] + ((X - np.array(model["mean"])) / np.array(model["std"])) @ w[1:]


def _create(cur, translate, alias: str, rest: str, replace: bool = False, if_not_exists: bool = False,
            update: bool = False) -> None:
    cur.execute("SELECT max(version) FROM double.models WHERE lower(name) = lower(%s)", (alias,))
    latest = cur.fetchone()[0]
    if update and latest is None:
        raise ModelError(f"model {alias} does not exist; create it first")
    if latest is not None and not (replace or update):
        if if_not_exists:
            return
        raise ModelError(f"model {alias} already exists; use CREATE OR REPLACE MODEL or UPDATE MODEL")
    transform_text, options_text, select = _clauses(rest)
    options, items = _options(options_text), _transform(transform_text)
    names, kinds, rows = _select(cur, translate, select)
    label = options["LABEL"].lower()
    raw = _raw_inputs(items)
    env = _env(names, rows, kinds, raw + ([label] if label not in raw else []))
    if not rows:
        raise ModelError("the training SELECT returned no rows")
    y = _num(env[label])
    if np.isnan(y).any() or not set(np.unique(y)) <= {0.0, 1.0}:
        raise ModelError(f"LOGISTIC_REG is binomial here: the label column {label} must hold 0 and 1")
    states, work_kinds = [], dict(kinds)
    for item in items:
        state, kind = _FIT[item["fn"]][0](item, env, work_kinds)
        state["_kind"] = kind
        env[item["alias"]] = _FIT[item["fn"]][1](item, state, env, work_kinds)
        work_kinds[item["alias"]] = kind
        states.append(state)
    X = np.array(env[items[-1]["alias"]], dtype="float64").reshape(len(rows), -1)
    model = _fit_logistic(X, y, float(options["REG_PARAM"]), int(options["MAX_ITER"]))
    source = re.search(r"\bFROM\s+`?([A-Za-z_][A-Za-z0-9_]*)`?", select, re.IGNORECASE)
    body = {"alias": alias, "type": options["MODEL_TYPE"], "label": label, "options": options, "items": items,
            "states": states, "inputs": {c: kinds[c] for c in raw}, "fields": names, "model": model,
            "source": source.group(1) if source else "", "transform": transform_text.strip(), "rows": len(rows)}
    if latest is not None and replace:
        cur.execute("UPDATE double.models SET body = %s, updated = now() WHERE lower(name) = lower(%s) AND "
                    "version = %s", (json.dumps(body), alias, latest))
    else:
        cur.execute("INSERT INTO double.models (name, version, body) VALUES (%s, %s, %s)",
                    (alias, (latest or 0) + 1, json.dumps(body)))


def _load(cur, alias: str, version: int) -> dict:
    cur.execute("SELECT body FROM double.models WHERE lower(name) = lower(%s) AND version = %s", (alias, version))
    row = cur.fetchone()
    if row is None:
        cur.execute("SELECT version FROM double.models WHERE lower(name) = lower(%s) ORDER BY version", (alias,))
        versions = [r[0] for r in cur.fetchall()]
        raise ModelError(f"model {alias} version {version} does not exist"
                         + (f"; its versions: {versions}" if versions else ""))
    return row[0] if isinstance(row[0], dict) else json.loads(row[0])


def _scored(cur, translate, body: dict, select: str, need_label: bool):
    """(result table, column names, rows, probabilities, labels or None) of a SELECT scored
    by the model; the table holds the SELECT's rows, numbered."""
    table = f"ddml_result_{uuid.uuid4().hex[:12]}"
    statements = translate(select)
    if len(statements) != 1:
        raise ModelError("the SELECT of a model statement must be one statement")
    cur.execute(f'CREATE TABLE public."{table}" AS SELECT row_number() OVER () AS ddml_n, s.* FROM '
                f'({statements[0]}) AS s')
    cur.execute(f'SELECT * FROM public."{table}" ORDER BY ddml_n')
    names = [d.name for d in cur.description][1:]
    kinds = {n.lower(): _KINDS.get(d.type_code, "other") for n, d in zip(names, cur.description[1:])}
    rows = [r[1:] for r in cur.fetchall()]
    for col, kind in body["inputs"].items():
        if col not in kinds:
            raise ModelError(f"column {col} of the model's training input is missing from the SELECT")
        if kinds[col] != kind:
            raise ModelError(f"column {col} is {kinds[col]}, but the model was trained on {kind}: the column names "
                             "and data types must match the training step's")
    labels = None
    if need_label:
        if body["label"] not in kinds:
            raise ModelError(f"model_evaluate needs the label column {body['label']} in the SELECT")
        labels = _num(_values(names, rows, body["label"]))
    if not rows:
        return table, names, rows, np.array([]), labels
    env = _env(names, rows, kinds, list(body["inputs"]))
    X = _features(body["items"], body["states"], env, kinds)
    margin = _margin(body["model"], X)
    return table, names, rows, margin, labels


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _evaluate(cur, translate, body: dict, select: str) -> str:
    table, _, rows, margin, y = _scored(cur, translate, body, select, need_label=True)
    cur.execute(f'DROP TABLE public."{table}"')
    if not rows:
        raise ModelError("model_evaluate: the SELECT returned no rows")
    if np.isnan(y).any():
        raise ModelError(f"model_evaluate: the label column {body['label']} holds NULLs")
    pred = (_sigmoid(margin) > THRESHOLD).astype(float)
    tp = float(((pred == 1) & (y == 1)).sum())
    metrics = {"auc_roc": _auc(y, margin), "accuracy": float((pred == y).mean()),
               "precision": tp / float(pred.sum()) if pred.sum() else 0.0,
               "recall": tp / float((y == 1).sum()) if (y == 1).sum() else 0.0}
    out = f"ddml_result_{uuid.uuid4().hex[:12]}"
    cur.execute(f'CREATE TABLE public."{out}" (auc_roc float8, accuracy float8, "precision" float8, recall float8)')
    cur.execute(f'INSERT INTO public."{out}" VALUES (%s, %s, %s, %s)',
                tuple(None if np.isnan(v) else v for v in metrics.values()))
    return out


def _predict(cur, translate, body: dict, select: str, hidden_fields: bool) -> str:
    table, _, rows, margin, _ = _scored(cur, translate, body, select, need_label=False)
    p = _sigmoid(margin)
    cur.execute(f'ALTER TABLE public."{table}" ADD COLUMN prediction float8')
    if hidden_fields:
        cur.execute(f'ALTER TABLE public."{table}" ADD COLUMN probability float8[], ADD COLUMN "rawPrediction" '
                    'float8[]')
    if rows:
        n = list(range(1, len(rows) + 1))
        sets = ["prediction = u.pred"] + (['probability = ARRAY[1 - u.p, u.p]', '"rawPrediction" = ARRAY[-u.m, u.m]']
                                          if hidden_fields else [])
        cur.execute(f'UPDATE public."{table}" AS r SET {", ".join(sets)} FROM unnest(%s::bigint[], %s::float8[], '
                    '%s::float8[], %s::float8[]) AS u(n, pred, p, m) WHERE r.ddml_n = u.n',
                    (n, (p > THRESHOLD).astype(float).tolist(), p.tolist(), margin.tolist()))
    cur.execute(f'ALTER TABLE public."{table}" DROP COLUMN ddml_n')
    return table


def _show(cur) -> str:
    cur.execute("SELECT name, version, body, created, updated FROM double.models ORDER BY name, version")
    models = cur.fetchall()
    table = f"ddml_result_{uuid.uuid4().hex[:12]}"
    cur.execute(f'CREATE TABLE public."{table}" ("model-id" text, "model-name" text, version text, '
                '"source-dataset" text, type text, options text, transform text, fields text, created timestamptz, '
                'updated timestamptz, "created BY" text)')
    for name, version, body, created, updated in models:
        body = body if isinstance(body, dict) else json.loads(body)
        model_id = f"model-{hashlib.md5(f'{name}/{version}'.encode()).hexdigest()[:5]}-{name[:5]}"
        cur.execute(f'INSERT INTO public."{table}" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)',
                    (model_id, name, f"{version}.0", body["source"],
                     "LogisticRegression", json.dumps({"label": body["label"]}), body["transform"],
                     json.dumps(body["fields"]), created, updated, "cmle-test@double"))
    return table


def _drop(cur, alias: str, version: str | None, if_exists: bool) -> None:
    if version is None:
        cur.execute("DELETE FROM double.models WHERE lower(name) = lower(%s)", (alias,))
    else:
        cur.execute("DELETE FROM double.models WHERE lower(name) = lower(%s) AND version = %s", (alias, int(version)))
    if cur.rowcount == 0 and not if_exists:
        raise ModelError(f"model {alias} does not exist")
