"""``featurize`` with ``profiles: {union: true}``: with one profile dataset the union holds
exactly its profiles, so the feature sets equal those built from the dataset itself; a
second run reuses the union dataset rather than merging again."""

from __future__ import annotations

import pytest

from cmle import naming
from cmle.modelspec import packaged_spec_text
from cmle.runner import run_stage
from tests.features.eventdata import put_data, random_data

SMALL = {"min_positives": 5, "min_negatives": 5, "framing": "pit"}


@pytest.fixture
def data(platform):
    rows, profiles = random_data(120, seed=11)
    return put_data(platform, "cmle", rows, profiles)


def _union_spec(tmp_path) -> str:
    text = packaged_spec_text()
    old = 'profiles:\n  identity: {field: "_{tenant}.userid", namespace: ECID}\n'
    assert old in text
    path = tmp_path / "union.yaml"
    # the union's identity: the ECID of the profile's identityMap (the default)
    path.write_text(text.replace(old, "profiles:\n  union: true\n"))
    return str(path)


def _sets(platform):
    out = {}
    for name in (naming.training_set("cmle"), naming.scoring_set("cmle")):
        df = platform.read_dataset(platform.find_dataset(name).id).to_pandas()
        out[name] = df.sort_values("userid").reset_index(drop=True)
    return out


def test_union_spec_gives_the_same_feature_sets_as_the_profiles_dataset(settings, platform, data, tmp_path):
    by_dataset = run_stage("featurize", settings, SMALL)
    expected = _sets(platform)
    union_spec = _union_spec(tmp_path)
    by_union = run_stage("featurize", settings, {**SMALL, "spec": union_spec})
    got = _sets(platform)
    for name, df in expected.items():
        assert list(got[name].columns) == list(df.columns), name
        assert got[name].equals(df), name
    assert by_union["training_rows"] == by_dataset["training_rows"] > 0
    unions = [r for r in platform.list_resources() if r.kind == "dataset" and "Profile union" in r.name]
    assert len(unions) == 1
    batches = platform.list_batches(unions[0].id)
    run_stage("featurize", settings, {**SMALL, "spec": union_spec, "rebuild": True})
    assert platform.list_batches(unions[0].id) == batches  # the union was reused, not merged again
