"""The promotion gate's decisions (pure)."""

from __future__ import annotations

import pytest

from cmle.errors import ParameterError
from cmle.model.gate import decide


@pytest.mark.parametrize("challenger, champion, passed, words", [
    (0.70, None, True, "no champion yet"),
    (0.64, None, False, "below the floor"),
    (0.80, 0.79, True, "change +0.0100"),
    (0.785, 0.79, True, "change -0.0050"),  # within the tolerance
    (0.77, 0.79, False, "more than the tolerance"),
    (0.60, 0.50, False, "below the floor"),  # better than a poor champion is not enough
    (float("nan"), None, False, "undefined"),
])
def test_floor_and_tolerance(challenger, champion, passed, words):
    result = decide(challenger, champion, min_auc=0.65, tolerance=0.01)
    assert result.passed is passed and words in result.reason


def test_thresholds_are_validated():
    with pytest.raises(ParameterError, match="min_auc"):
        decide(0.8, None, min_auc=1.5)
    with pytest.raises(ParameterError, match="tolerance"):
        decide(0.8, None, tolerance=-0.1)
