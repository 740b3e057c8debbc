"""Generated data shared by the synthetic tests (module scope: generated once per file)."""

from __future__ import annotations

import pytest

from cmle.synthetic.simulate import generate
from tests.synthetic.synthdata import END


@pytest.fixture(scope="module")
def default_data():
    """The default model with churn, parent links kept."""
    return generate(20_000, end=END, seed=11, keep_parents=True)


@pytest.fixture(scope="module")
def no_churn_data():
    return generate(20_000, end=END, seed=12, churn=False, keep_parents=True)


@pytest.fixture(scope="module")
def legacy_data():
    return generate(40_000, end=END, seed=13, legacy=True, keep_parents=True)
