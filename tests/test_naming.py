"""Resource names are injective per owner: no two owners, however alike, share a name."""

from __future__ import annotations

import itertools

import pytest

from cmle import naming

OWNERS = ["cmle", "cmle_cmle", "CMLE", "team-a", "team_a", "team.a", "Alice", "alice", "ålice", "Ålice",
          "Üni", "Uni", "ünï", "データ", "数据", "a" * 40, "a" * 41, "x-", "x_", "x"]


def all_names(owner: str) -> list[str]:
    names = [naming.event_field_group(owner), naming.profile_field_group(owner), naming.event_schema(owner),
             naming.profile_schema(owner), naming.events_dataset(owner), naming.profiles_dataset(owner),
             naming.training_set(owner), naming.training_set(owner, "cmle"), naming.scoring_set(owner),
             naming.score_field_group(owner), naming.score_schema(owner), naming.scores_dataset(owner),
             naming.scores_folder(owner), naming.audience("top10", owner), naming.audience("high", owner),
             naming.export_connection("dlz", owner), naming.export_target("dlz", "p", "parquet", "gzip", owner),
             naming.export_source("x", owner), naming.export_flow("x", owner),
             naming.owner_token(owner)]
    names += [naming.candidate(n) for n in (naming.training_set(owner), naming.scoring_set(owner))]
    return names


def test_no_two_owners_share_a_name_and_no_owner_reuses_one():
    seen: dict[str, str] = {}
    for owner in OWNERS:
        names = all_names(owner)
        assert len(set(names)) == len(names), owner
        for name in names:
            assert seen.setdefault(name, owner) == owner, f"{owner!r} and {seen[name]!r} share {name!r}"
    # the tables AEP derives from dataset names are distinct too
    tables = [naming.table_name(naming.events_dataset(o)) for o in OWNERS]
    assert len(set(tables)) == len(tables)


@pytest.mark.parametrize("a, b", list(itertools.permutations(["cmle", "cmle_cmle", "team-a", "team_a", "Alice",
                                                               "alice", "Üni", "Uni"], 2)))
def test_is_ours_matches_exactly_one_owner(a, b):
    for name in all_names(a):
        if name.startswith((naming.TITLE_MARK, naming.TABLE_PREFIX)) and name != naming.owner_token(a):
            assert naming.is_ours(name, a)
            assert not naming.is_ours(name, b), (name, b)


def test_names_stay_readable():
    assert naming.training_set("team-a").startswith("cmle_training_set_team_a_")
    assert naming.events_dataset("Alice").endswith(f"(Alice {naming.owner_hash('Alice')})")
    assert naming.owner_slug("データ") == "owner" and naming.owner_token("データ") != naming.owner_token("数据")
