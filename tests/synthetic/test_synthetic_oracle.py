"""The oracle file: its rows, its path, and the latent propensity at a snapshot."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cmle import naming
from cmle.model import metrics
from cmle.synthetic import oracle
from cmle.synthetic.simulate import generate
from cmle.synthetic.xdm import ecids
from tests.synthetic.synthdata import END

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_oracle_path_is_under_the_work_dir(settings):
    path = oracle.oracle_path(settings)
    token = naming.owner_token(settings.platform.owner)  # unique per owner, as every name
    assert path == settings.work_dir / "oracle" / token / "latent_propensity.parquet"


def test_oracle_rows_are_a_start_row_per_user_then_every_event():
    d = generate(2000, end=END, seed=4)
    table = d.oracle.combine_chunks()
    assert table.schema == oracle.ORACLE_SCHEMA
    assert table.num_rows == d.n_events + d.n_profiles
    df = table.to_pandas()
    start = df.groupby("userid", sort=False).head(1)
    assert (start["timestamp"] == pd.Timestamp(d.window_start)).all()
    ids = ecids(np.arange(d.n_profiles)).to_pylist()
    assert start["userid"].tolist() == ids
    assert np.array_equal(start["propensity"].to_numpy(), d.profile.p0)
    events = df.drop(start.index)
    assert np.array_equal(events["propensity"].to_numpy(), d.propensity)
    assert np.array_equal(events["timestamp"].astype("int64").to_numpy(), d.ts)
    assert events["userid"].tolist() == [ids[u] for u in d.user]
    # pieces of users add up to the whole
    assert pa.concat_tables(list(d.iter_oracle_tables(max_users=300))).equals(d.oracle)


def _frame(rows):
    return pd.DataFrame(rows, columns=["userid", "timestamp", "propensity"])


def test_latent_propensity_at_takes_the_last_row_at_or_before_the_snapshot():
    h = timedelta(hours=1)
    df = _frame([("a", T0, 0.01), ("a", T0 + h, 0.02), ("a", T0 + 3 * h, 0.5),
                 ("b", T0, 0.03), ("b", T0, 0.04),  # same instant: file order decides
                 ("c", T0 + 5 * h, 0.9)])
    at = oracle.latent_propensity_at(df, T0 + h)
    assert at.to_dict("list") == {"userid": ["a", "b"], "propensity": [0.02, 0.04]}
    # a naive snapshot is UTC; a string works too
    assert oracle.latent_propensity_at(df, datetime(2024, 1, 1, 2)).set_index("userid")["propensity"]["a"] == 0.02
    later = oracle.latent_propensity_at(pa.Table.from_pandas(df), "2024-01-01T06:00:00Z")
    assert later.set_index("userid")["propensity"].to_dict() == {"a": 0.5, "b": 0.04, "c": 0.9}
    assert oracle.latent_propensity_at(df, T0 - h).empty


def test_latent_propensity_at_agrees_with_the_simulation():
    d = generate(1500, end=END, seed=8)
    snapshot = d.window_end - timedelta(days=14)
    got = oracle.latent_propensity_at(d.oracle, snapshot).set_index("userid")["propensity"]
    snap_us = int((snapshot - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1e6)
    want = d.profile.p0.copy()
    before = np.flatnonzero(d.ts <= snap_us)
    want[d.user[before]] = d.propensity[before]  # rows in time order: the last one wins
    ids = ecids(np.arange(d.n_profiles)).to_pylist()
    assert len(got) == d.n_profiles
    assert np.array_equal(got.loc[ids].to_numpy(), want)


def test_write_oracle_is_atomic_and_readable(tmp_path):
    d = generate(500, end=END, seed=9)
    path = oracle.write_oracle(d, tmp_path / "o" / "latent_propensity.parquet")
    assert [p.name for p in path.parent.iterdir()] == ["latent_propensity.parquet"]
    back = oracle.read_oracle(path)
    assert len(back) == d.n_events + d.n_profiles
    assert back["timestamp"].dt.tz is not None
    oracle.write_oracle(d, path)  # replacing it works
    assert len(oracle.read_oracle(path)) == len(back)


def test_the_file_records_whether_its_snapshot_propensity_is_a_valid_oracle(tmp_path):
    for legacy, valid in ((False, True), (True, False)):
        d = generate(300, end=END, seed=2, legacy=legacy)
        path = oracle.write_oracle(d, tmp_path / f"{legacy}" / "latent_propensity.parquet")
        got_valid, note = oracle.oracle_validity(path)
        assert got_valid is valid and (note == oracle.LEGACY_NOTE) is legacy
        assert oracle.snapshot_validity(d.model) == (got_valid, note)
    # a file without the record (older, or written by hand) counts as valid
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"userid": ["a"], "timestamp": [pd.Timestamp(T0)], "propensity": [0.1]}).to_parquet(plain)
    assert oracle.oracle_validity(plain)[0] is True


@pytest.mark.parametrize("legacy", [False, True], ids=["default", "legacy"])
def test_snapshot_truth_is_the_oracle_file_at_the_snapshot(legacy):
    d = generate(3000, end=END, seed=6, legacy=legacy)
    snapshot = d.window_end - timedelta(days=14)
    truth = oracle.snapshot_truth(d, snapshot, 14).set_index("userid")
    at = oracle.latent_propensity_at(d.oracle, snapshot).set_index("userid")["propensity"]
    assert np.array_equal(truth["propensity"].to_numpy(), at.loc[truth.index].to_numpy())
    conv = d.code == d.model.code("web.formFilledOut")
    conv_ts = pd.Series(d.ts[conv], index=ecids(d.user[conv]).to_pylist())
    snap_us = int((snapshot - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1e6)
    assert not (conv_ts.reindex(truth.index) <= snap_us).any()  # eligible: not converted at T
    later = conv_ts.reindex(truth.index)
    assert np.array_equal(truth["label"].to_numpy(), (later <= snap_us + 14 * 86_400_000_000).to_numpy())
    assert len(truth) == d.n_profiles - int((conv_ts <= snap_us).sum())


def test_the_latent_propensity_drives_default_labels_and_not_legacy_ones(default_data, legacy_data):
    """The statistic behind the legacy verdict: at the snapshot, the default generator's latent
    propensity ranks the labels well; the legacy generator's ranks them backwards."""
    def auc(data):
        truth = oracle.snapshot_truth(data, data.window_end - timedelta(days=14), 14)
        return metrics.roc_auc(truth["label"], truth["propensity"])

    assert auc(default_data) > 0.6
    assert auc(legacy_data) < 0.4
