"""The stable holdout: membership by a hash of the profile id and a salt (pure)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from cmle.errors import DataCheckError
from cmle.model import fit
from cmle.model.holdout import SplitRecord, buckets, describe, in_holdout
from tests.model.fabricate import training_frame


def test_a_bucket_is_the_first_8_bytes_of_sha256_of_salt_and_id():
    expected = int.from_bytes(hashlib.sha256(b"s1:u-42").digest()[:8], "big") / 2 ** 64
    assert buckets(["u-42"], "s1")[0] == expected
    # the same everywhere: a fixed value (this would change if the scheme did)
    assert round(buckets(["u-42"], "s1")[0], 12) == round(expected, 12)
    assert buckets(["u-42"], "s2")[0] != expected


def test_the_holdout_is_the_same_profiles_whatever_else_is_in_the_data():
    ids = [f"u{i}" for i in range(20_000)]
    held = in_holdout(ids, "salt", 0.2)
    assert 0.18 < held.mean() < 0.22
    # a later training set: some profiles gone, new ones, another order
    later = ids[5000:] + [f"new{i}" for i in range(3000)]
    later_held = dict(zip(later, in_holdout(later[::-1], "salt", 0.2)[::-1]))
    assert all(later_held[i] == h for i, h in zip(ids[5000:], held[5000:]))
    # a smaller fraction holds out a subset
    assert not (in_holdout(ids, "salt", 0.1) & ~held).any()


def test_split_with_a_salt_keeps_each_profile_on_one_side():
    frame = training_frame(3000, seed=4, shift=1.0)
    # two snapshots of every profile: both rows must fall on the same side
    both = pd.concat([frame, frame.assign(snapshot_ts=frame["snapshot_ts"] - pd.Timedelta(days=28))])
    parts = fit.split(both, 0.2, 0.2, seed=1, salt="abc")
    held = set(parts.holdout["userid"])
    assert held.isdisjoint(parts.train["userid"]) and held.isdisjoint(parts.valid["userid"])
    assert held == {u for u, h in zip(frame["userid"], in_holdout(frame["userid"], "abc", 0.2)) if h}
    assert len(parts.holdout) == 2 * len(held)
    # another seed moves train/validation, never the holdout
    assert set(fit.split(both, 0.2, 0.2, seed=9, salt="abc").holdout["userid"]) == held


def test_a_holdout_with_one_class_is_a_clear_error():
    frame = training_frame(400, seed=4, shift=1.0)
    held = in_holdout(frame["userid"], "abc", 0.2)
    frame.loc[held, "label"] = 0
    frame.loc[np.flatnonzero(~held)[:30], "label"] = 1
    with pytest.raises(DataCheckError, match="holdout .* holds 0 positive"):
        fit.split(frame, 0.2, 0.2, seed=1, salt="abc")


def test_the_split_record_round_trips_and_rejects_garbage():
    record = describe("abc", 0.2)
    assert SplitRecord.from_json(record.to_json()) == record
    assert SplitRecord.from_json("") is None and SplitRecord.from_json("{not json") is None
    assert SplitRecord.from_json('{"salt": "x"}') is None
