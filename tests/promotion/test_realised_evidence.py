"""The gate on realised outcomes: a provider (the monitoring stage's role) hands over what
really happened to the profiles each version scored; both models are compared there too."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from cmle.model import artifact
from cmle.promotion import evidence
from cmle.registry import CHAMPION, Registry
from cmle.runner import run_stage
from tests.model.fabricate import bank, empty_mlflow_db, latent, store, training_frame  # noqa: F401

WINDOW = "2024-04-01/2024-04-29"


class ScoringProvider:
    """Realised outcomes computed for real: each version's own model scores the production rows
    of the window, and the outcome is what those profiles then did (drawn from their true
    propensity, the real clicks included, whatever the features showed)."""

    def __init__(self, name: str, production, outcome: np.ndarray):
        self.name, self.production, self.outcome = name, production, outcome
        self.calls = []

    def outcomes(self, model_name, version):
        self.calls.append(version)
        model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
        p = model.predict(artifact.conform_input(self.production, model.metadata.get_input_schema()))["propensity"]
        return [evidence.RealisedOutcomes(version, WINDOW, self.outcome, p.to_numpy(), source="test scoring")]


@pytest.fixture
def provider(store, settings):
    """Production in the window: the email-click feed broke (no clicks recorded), while people
    went on clicking and converting as before."""
    truth = training_frame(3000, seed=21, shift=1.0)
    outcome = (np.random.default_rng(5).random(len(truth)) < latent(truth, 1.0)).astype(int)
    broken = truth.assign(emails_clicked=0, minutes_since_email_clicked=np.nan)
    made = ScoringProvider(settings.cloud.model_name, broken, outcome)
    factory = lambda ctx: made  # noqa: E731
    evidence.register(factory)
    yield made
    evidence.unregister(factory)


def test_realised_outcomes_can_refuse_what_the_holdout_passes(provider, settings, bank):
    name = settings.cloud.model_name
    bank.register(name, "no_clicks", alias=CHAMPION)  # uses no click feature
    bank.register(name, "strong")  # better on the holdout, but leans on clicks
    out = run_stage("promote", settings, {"bootstrap": 300})
    assert out["status"] == "failed" and out["champion_version"] == "1"
    assert out["evidence"] == ["holdout", f"realised:{WINDOW}"] and sorted(provider.calls) == ["1", "2"]
    record = Registry.current().promotion_history(name)[-1]
    holdout = [c for c in record["comparisons"] if c["evidence"] == "holdout"]
    realised = [c for c in record["comparisons"] if c["evidence"] == f"realised:{WINDOW}"]
    assert all(c["passed"] for c in holdout)  # better on the holdout...
    assert not next(c for c in realised if c["metric"] == "roc_auc")["passed"]  # ...worse on what happened
    assert record["realised"]["used"] and record["realised"]["challenger"]["rows"] == 3000
    assert f"[realised:{WINDOW}]" in record["reason"]
    # without realised evidence the holdout alone decides
    assert run_stage("promote", settings, {"realised": "off", "bootstrap": 300})["promoted"]


def test_require_refuses_to_decide_without_realised_outcomes(store, settings, bank):
    name = settings.cloud.model_name
    bank.register(name, "weak", alias=CHAMPION)
    bank.register(name, "strong")
    out = run_stage("promote", settings, {"realised": "require"})
    assert out["status"] == "insufficient_evidence" and not out["promoted"]
    assert "realised=require" in out["reason"]
    assert run_stage("promote", settings, {})["promoted"]  # auto: the holdout decides
