"""The retraining rule on sequences of windows: N of the last M, the latest included."""

from __future__ import annotations

import pytest

from cmle.monitoring.trigger import TriggerRule, evaluate

RULE = TriggerRule("psi_score", 0.25, windows=3, violations=2)


@pytest.mark.parametrize("values, due", [
    ([], False),
    ([0.3], False),  # one breach is not two
    ([0.3, 0.3], True),
    ([0.3, 0.1, 0.3], True),  # 2 of the last 3, the latest among them
    ([0.3, 0.3, 0.1], False),  # the latest window is fine: the alarm has cleared
    ([0.3, 0.1, 0.1, 0.3], False),  # the older breach fell out of the last 3
    ([0.1, 0.3, None, 0.3], True),
    ([0.3, 0.3, None], False),  # the latest window has no value
    ([0.25, 0.25], False),  # at the threshold is not above it
])
def test_n_of_the_last_m_windows_with_the_latest(values, due):
    assert evaluate(RULE, values).due is due


def test_auc_breaches_below_its_threshold_and_the_reason_says_why():
    rule = TriggerRule("realised_auc", 0.65, windows=2, violations=2)
    assert evaluate(rule, [0.6, 0.62]).due
    assert not evaluate(rule, [0.6, 0.7]).due
    v = evaluate(rule, [0.6, 0.62])
    assert "realised_auc < 0.65" in v.reason and v.breaches == 2 and v.latest == 0.62
    single = TriggerRule("psi_max_feature", 0.25, windows=1, violations=1)
    assert evaluate(single, [0.1, 0.3]).due


def test_a_rule_that_cannot_be_met_is_refused():
    with pytest.raises(ValueError):
        TriggerRule("psi_score", 0.25, windows=2, violations=3)
    with pytest.raises(ValueError):
        TriggerRule("accuracy", 0.25)
