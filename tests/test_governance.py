"""The data-usage-label gate and label propagation, on the local platform."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cmle import governance
from cmle.errors import GovernanceError


@pytest.fixture
def dataset(platform):
    return platform.put_table("cmle_test_labels_cmle", pa.table({"userid": ["a", "b"]}))


def test_forbidden_labels_are_found_whatever_their_case():
    assert governance.forbidden({"c9", " PSPD ", "C1", "I2"}) == {
        "C9": "no data science", "PSPD": "permitted sensitive personal data"}
    assert governance.forbidden(set()) == {} and governance.forbidden({"RHD"}) == {"RHD": "regulated health data"}


def test_unlabelled_and_harmless_labels_pass(platform, dataset):
    assert governance.check_export_allowed(platform, dataset) == set()
    platform.set_labels(dataset.id, {"C1", "S1"})
    assert governance.check_export_allowed(platform, dataset) == {"C1", "S1"}


@pytest.mark.parametrize("labels", [{"C9"}, {"PSPD", "C1"}, {"RHD"}, {"C9", "RHD"}])
def test_forbidden_labels_raise_naming_the_label(platform, dataset, labels):
    platform.set_labels(dataset.id, labels)
    with pytest.raises(GovernanceError) as err:
        governance.check_export_allowed(platform, dataset)
    for label in labels & {"C9", "PSPD", "RHD"}:
        assert f"{label} (" in str(err.value)
    assert dataset.name in str(err.value) and "data steward" in str(err.value)


def test_labels_flow_from_sources_to_derived_datasets(platform, dataset):
    a = platform.put_table("cmle_test_source_a_cmle", pa.table({"x": [1]}))
    b = platform.put_table("cmle_test_source_b_cmle", pa.table({"x": [2]}))
    platform.set_labels(a.id, {"C9"})
    platform.set_labels(b.id, {"I1"})
    platform.set_labels(dataset.id, {"C2"})
    assert governance.propagate_labels(platform, [a, b], dataset) == {"C9", "I1", "C2"}
    assert platform.get_labels(dataset.id) == {"C9", "I1", "C2"}
    with pytest.raises(GovernanceError, match="C9"):
        governance.check_export_allowed(platform, dataset)
