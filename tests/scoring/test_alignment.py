"""The look-back a model version learnt on against the scoring set's (pure parts)."""

from cmle.scoring import alignment


def test_a_version_says_its_look_back_or_nothing():
    assert alignment.model_lookback({alignment.LOOKBACK_TAG: "56"}) == 56
    assert alignment.model_lookback({}) is None and alignment.model_lookback(None) is None
    assert alignment.model_lookback({alignment.LOOKBACK_TAG: "soon"}) is None


def test_only_two_known_and_different_look_backs_mismatch():
    assert alignment.mismatch(56, 70)
    assert not alignment.mismatch(56, 56)
    assert not alignment.mismatch(None, 70) and not alignment.mismatch(56, None)


def test_the_advice_names_both_windows_and_the_fix():
    text = alignment.advice("m", "3", 56, 70)
    assert "v3" in text and "56 days" in text and "70 days" in text and "--lookback_days 56" in text
