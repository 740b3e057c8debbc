"""Time moves forward: the same users past the old end, prefix-stable, idempotent, with the oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmle.errors import ParameterError
from cmle.platform.base import BATCH_SUCCESS
from cmle.runner import run_stage
from cmle.synthetic.extend import extend
from cmle.synthetic.oracle import oracle_path
from cmle.synthetic.simulate import generate

SMALL = {"profiles": 400, "weeks": 4, "end_date": "2024-06-01", "seed": 7}


def test_an_extension_continues_the_same_users_and_only_grows():
    base = generate(3000, weeks=6, end="2024-06-01", seed=3)
    two, four = extend(base, 2), extend(base, 4)
    assert two.window_start == base.window_end and two.ts.min() >= base.window_end_us
    assert two.ts.max() < two.window_end_us and str(four.window_end.date()) == "2024-06-29"
    early = four.ts < two.window_end_us
    assert np.array_equal(four.user[early], two.user) and np.array_equal(four.ts[early], two.ts)
    assert np.array_equal(four.code[early], two.code)
    again = extend(base, 2)
    assert np.array_equal(again.ts, two.ts) and np.array_equal(again.propensity, two.propensity)
    conv = base.model.code("web.formFilledOut")
    converted_before = set(np.flatnonzero(base.converted))
    assert not converted_before & set(two.user[two.code == conv])  # at most one conversion per user
    churned = set(np.flatnonzero(base.churned))
    assert not churned & set(two.user.tolist())  # the churned are gone
    # a behaviour shift changes the mix and the conversions
    more = extend(base, 2, shift_events=3.0, shift_conversion=0.1)
    assert more.n_events > 2 * two.n_events
    assert (more.code == conv).sum() > (two.code == conv).sum()


def test_an_extension_needs_the_default_model_and_sane_shifts():
    legacy = generate(100, weeks=2, end="2024-06-01", seed=1, legacy=True)
    with pytest.raises(ParameterError, match="legacy"):
        extend(legacy, 1)
    base = generate(100, weeks=2, end="2024-06-01", seed=1)
    with pytest.raises(ParameterError, match="shift_events"):
        extend(base, 1, shift_events=-1)


def test_the_stage_extends_idempotently_keeps_the_extension_and_extends_the_oracle(settings, mlflow_store, platform):
    first = run_stage("synthetic", settings, SMALL)
    ext = run_stage("synthetic", settings, {**SMALL, "extend_weeks": 2})
    assert ext["reused"] is False and ext["extension_events"] > 0 and ext["window_end"].startswith("2024-06-15")
    assert ext["events_batch_id"] == first["events_batch_id"]  # the base data stays as it was
    again = run_stage("synthetic", settings, {**SMALL, "extend_weeks": 2})
    assert again["reused"] is True and again["extension_batch_id"] == ext["extension_batch_id"]
    kept = run_stage("synthetic", settings, SMALL)  # extend_weeks = 0 keeps the extension
    assert kept["reused"] is True and kept["extension_weeks"] == 2
    live = [b for b in platform.list_batches(first["events_dataset_id"]) if b.status == BATCH_SUCCESS]
    assert sorted(b.id for b in live) == sorted([first["events_batch_id"], ext["extension_batch_id"]])
    rows = platform.query(f"SELECT COUNT(*) AS n, MAX(timestamp) AS last FROM "
                          f"{platform.get_dataset(first['events_dataset_id']).table}")
    assert int(rows["n"][0]) == first["events"] + ext["extension_events"]
    oracle = pd.read_parquet(oracle_path(settings))
    assert pd.Timestamp(oracle["timestamp"].max()) > pd.Timestamp("2024-06-01", tz="UTC")
    # longer, with a shift: replaces the extension (not the base)
    shifted = run_stage("synthetic", settings, {**SMALL, "extend_weeks": 3, "shift_events": 2.0})
    live = [b for b in platform.list_batches(first["events_dataset_id"]) if b.status == BATCH_SUCCESS]
    assert sorted(b.id for b in live) == sorted([first["events_batch_id"], shifted["extension_batch_id"]])
