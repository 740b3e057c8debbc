"""The event table: the legacy model is the notebooks' table, the default model differs only
by its documented re-calibration."""

from __future__ import annotations

import pytest

from cmle.columns import CONVERSION_EVENT
from cmle.synthetic.model import (
    BASE_TYPES,
    CHURN_RULES,
    DEFAULT_CHILDREN_PER_PARENT,
    DEFAULT_MODEL,
    DEFAULT_WEEKLY_RATES,
    DEPENDENCIES,
    LEGACY_MODEL,
    get_model,
)

# eventType: (weekly average, propensity delta, mean hours after parent), SimulationHelpers.py
NOTEBOOKS = {
    "advertising.impressions": (0.1, 0.001, 0), "advertising.clicks": (0.01, 0.002, 0.5),
    "web.webpagedetails.pageViews": (0.1, 0.005, 0.1), "web.webinteraction.linkClicks": (0.05, 0.005, 0.1),
    "commerce.productViews": (0.05, 0.005, 0.2), "commerce.purchases": (0.01, 0.1, 1),
    "decisioning.propositionDisplay": (0.05, 0.005, 0.1), "decisioning.propositionInteract": (0.01, 0.1, 0.05),
    "decisioning.propositionDismiss": (0.01, -0.2, 0.05), "directMarketing.emailSent": (0.5, 0.005, 0),
    "directMarketing.emailOpened": (0.2, 0.02, 24), "directMarketing.emailClicked": (0.05, 0.1, 0.5),
    "web.formFilledOut": (0, 0, 0),
}


def test_legacy_model_is_the_notebooks_table():
    assert set(LEGACY_MODEL.names) == set(NOTEBOOKS)
    for name, (weekly, delta, hours) in NOTEBOOKS.items():
        e = LEGACY_MODEL.event(name)
        assert (e.weekly_rate, e.propensity_delta, e.mean_hours_after_parent) == (weekly, delta, hours), name
    assert LEGACY_MODEL.overwrite_children and LEGACY_MODEL.children_from_weekly_rate
    assert LEGACY_MODEL.churn_rules == ()
    assert LEGACY_MODEL.initial_propensity == 0.001
    # children per parent: weekly average times the weeks, as the notebooks draw them
    assert LEGACY_MODEL.mean_children("directMarketing.emailOpened", 10) == pytest.approx(2.0)


def test_dependencies_are_the_notebooks_in_their_order():
    assert [p for p, _ in DEPENDENCIES] == [
        "advertising.impressions", "directMarketing.emailSent", "directMarketing.emailOpened",
        "directMarketing.emailClicked", "web.webpagedetails.pageViews", "commerce.productViews",
        "decisioning.propositionDisplay"]
    assert dict(DEPENDENCIES)["web.webpagedetails.pageViews"] == (
        "web.webinteraction.linkClicks", "commerce.productViews", "decisioning.propositionDisplay")
    assert BASE_TYPES == ("advertising.impressions", "web.webpagedetails.pageViews", "directMarketing.emailSent")


def test_default_model_changes_only_the_documented_rates():
    for name, (weekly, delta, hours) in NOTEBOOKS.items():
        e = DEFAULT_MODEL.event(name)
        assert e.propensity_delta == delta and e.mean_hours_after_parent == hours, name
        assert e.weekly_rate == DEFAULT_WEEKLY_RATES.get(name, weekly), name
        assert e.children_per_parent == DEFAULT_CHILDREN_PER_PARENT.get(name, 0.0), name
    assert DEFAULT_MODEL.dependencies == LEGACY_MODEL.dependencies
    assert not DEFAULT_MODEL.overwrite_children and not DEFAULT_MODEL.children_from_weekly_rate
    assert DEFAULT_MODEL.churn_rules == CHURN_RULES
    assert [(r.event_type, r.limit) for r in CHURN_RULES] == [
        ("advertising.impressions", 10), ("directMarketing.emailSent", 5)]
    # children per parent do not grow with the window
    assert DEFAULT_MODEL.mean_children("directMarketing.emailOpened", 52) == DEFAULT_MODEL.mean_children(
        "directMarketing.emailOpened", 1)


def test_default_expected_counts_follow_the_branching_process():
    c = DEFAULT_MODEL.expected_counts(10)
    rate = {n: DEFAULT_MODEL.event(n).weekly_rate * 10 for n in BASE_TYPES}
    cpp = DEFAULT_CHILDREN_PER_PARENT
    assert c["directMarketing.emailOpened"] == pytest.approx(rate["directMarketing.emailSent"]
                                                             * cpp["directMarketing.emailOpened"])
    clicks = c["directMarketing.emailOpened"] * cpp["directMarketing.emailClicked"]
    assert c["web.webpagedetails.pageViews"] == pytest.approx(rate["web.webpagedetails.pageViews"]
                                                              + clicks * cpp["web.webpagedetails.pageViews"])
    assert c["commerce.purchases"] == pytest.approx(c["commerce.productViews"] * cpp["commerce.purchases"])
    assert c[CONVERSION_EVENT] == 0
    # before churn the default model is within the brief's 10-20 events per profile
    assert 10 <= sum(c.values()) <= 20
    with pytest.raises(ValueError, match="branching"):
        LEGACY_MODEL.expected_counts(10)


def test_which_events_draw_a_conversion():
    drawing = {e.name for e in DEFAULT_MODEL.events if e.draws}
    assert drawing == {"web.webpagedetails.pageViews", "web.webinteraction.linkClicks", "commerce.productViews",
                       "commerce.purchases", "decisioning.propositionDisplay", "decisioning.propositionInteract",
                       "decisioning.propositionDismiss"}
    assert get_model(True) is LEGACY_MODEL and get_model(False) is DEFAULT_MODEL


def test_profile_shifts_only_in_the_default_model():
    assert all(shift == 0 for spec in (LEGACY_MODEL.profiles.genders, LEGACY_MODEL.profiles.regions,
                                       LEGACY_MODEL.profiles.tiers) for _, _, shift in spec)
    assert LEGACY_MODEL.profiles.age_shifts == ()
    tiers = {name: shift for name, _, shift in DEFAULT_MODEL.profiles.tiers}
    assert tiers["gold"] > tiers["silver"] > tiers["bronze"] > tiers["none"] == 0
