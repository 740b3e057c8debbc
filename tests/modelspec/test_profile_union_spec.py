"""The ``profiles`` section's profile union: exactly one of ``dataset`` and ``union``, a
merge policy only with the union, the identityMap identity by default; errors name the line."""

from __future__ import annotations

import pytest

from cmle.modelspec import SpecError, parse_spec

BASE = """\
version: 1
name: shop
events:
  dataset: Shop events
  identity: {{field: "_{{tenant}}.crmId", namespace: CRMID}}
profiles:
{profiles}
goal:
  event_types: [commerce.purchases]
  window_days: 7
"""


def _spec(profiles: str):
    return parse_spec(BASE.format(profiles=profiles), "shop.yaml")


def _error(profiles: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        _spec(profiles)
    return info.value


def test_union_spec_parses_with_identity_map_of_the_events_namespace_and_default_merge_policy():
    spec = _spec("  union: true\n  numeric: ['_{tenant}.age']\n  categorical: ['_{tenant}.plan']")
    p = spec.profiles
    assert p.union and p.dataset is None and p.merge_policy == ""
    assert p.identity.in_identity_map and p.identity.namespace == "CRMID"
    assert [a.name for a in p.attributes] == ["age", "plan"]


def test_union_with_a_merge_policy_and_an_explicit_identity():
    p = _spec("  union: true\n  merge_policy: timestampOrdered-none-mp\n  identity: {namespace: ECID}\n"
              "  numeric: ['_{tenant}.age']").profiles
    assert p.merge_policy == "timestampOrdered-none-mp" and p.identity.namespace == "ECID"


def test_both_dataset_and_union_is_a_line_numbered_error():
    err = _error("  dataset: Shop profiles\n  union: true\n  numeric: ['_{tenant}.age']")
    assert err.line == 8 and err.path == ("profiles", "union")
    assert "not both" in err.reason and "shop.yaml, line 8" in str(err)


def test_neither_dataset_nor_union_is_a_line_numbered_error():
    err = _error("  numeric: ['_{tenant}.age']")
    assert err.line == 6 and err.path == ("profiles",)
    assert "union: true" in err.reason and "dataset" in err.reason


def test_merge_policy_without_union_is_refused():
    err = _error("  dataset: Shop profiles\n  merge_policy: mp1")
    assert err.line == 8 and err.path == ("profiles", "merge_policy") and "union" in err.reason


@pytest.mark.parametrize("line, words", [("  union: false", "True was expected"),
                                         ("  union: true\n  merge_policy: 'a b'", "does not match")])
def test_schema_errors_on_union_keys_name_the_line(line, words):
    err = _error(line)
    assert err.line in (7, 8) and words in str(err)
