"""The rows the gate compares challenger and champion on, and each model scored by its own version.

The challenger's stored holdout holds profiles it never trained on. Which of them the
champion never trained on follows from the champion's split record (tag ``cmle.split``):

- same salt (every version of a model trained since the stable split): the champion held
  out the same profiles; only when it held out a smaller fraction are the profiles above its
  fraction dropped;
- otherwise (a champion from before the stable split, or another salt): the profiles in
  both models' stored holdouts.

:func:`score` loads ``models:/<name>/<version>`` for exactly the version it is given and
checks that what it loaded was logged by that version's run, so a champion can never be
evaluated with the challenger's model (vertex-ai-samples#71); the record keeps, for each
side, the version, its run, and a hash of the scores it gave.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from cmle.columns import ID_COLUMN, LABEL_COLUMN
from cmle.errors import RegistryError
from cmle.model import artifact
from cmle.model.holdout import SplitRecord, buckets
from cmle.stages.train import HOLDOUT_ARTIFACT, HOLDOUT_TAG, SPLIT_TAG

log = logging.getLogger(__name__)



def load_holdout(version) -> tuple[pd.DataFrame, str]:
    """The holdout rows stored with the version's training run, and their URI."""
    uri = (version.tags or {}).get(HOLDOUT_TAG) or f"runs:/{version.run_id}/{HOLDOUT_ARTIFACT}"
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"model version {version.version} has no stored holdout at {uri} ({exc}); "
                            "promote compares models on the holdout the train stage stores: retrain with "
                            "`cmle train` (retrain=true)") from None
    return pd.read_parquet(path), uri


def split_of(version) -> SplitRecord | None:
    return SplitRecord.from_json((version.tags or {}).get(SPLIT_TAG))


@dataclass
class EvaluationRows:
    """The rows both models are scored on, and how they were chosen."""

    frame: pd.DataFrame
    holdout_uri: str
    rule: str
    excluded: int  # rows of the challenger's holdout left out (the champion may have seen them)

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def positives(self) -> int:
        return int(pd.to_numeric(self.frame[LABEL_COLUMN], errors="coerce").fillna(0).sum()) if self.rows else 0

    def ids_sha(self) -> str:
        """A hash of the profile ids used (which rows, without listing them)."""
        ids = np.sort(self.frame[ID_COLUMN].astype(str).to_numpy()) if ID_COLUMN in self.frame else np.array([])
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]

    def as_record(self) -> dict:
        return {"rows": self.rows, "positives": self.positives, "rule": self.rule, "excluded_rows": self.excluded,
                "holdout_uri": self.holdout_uri, "ids_sha256": self.ids_sha()}


def rows_neither_saw(challenger, champion, holdout: pd.DataFrame, holdout_uri: str) -> EvaluationRows:
    """The challenger's holdout rows that ``champion`` (None: no champion) did not train on either."""
    mine = split_of(challenger)
    if champion is None:
        return EvaluationRows(holdout, holdout_uri, "the challenger's holdout (no champion)", 0)
    theirs = split_of(champion)
    if mine is not None and theirs is not None and (mine.scheme, mine.salt) == (theirs.scheme, theirs.salt):
        if theirs.holdout_fraction >= mine.holdout_fraction:
            return EvaluationRows(holdout, holdout_uri, f"the challenger's holdout: profiles hashed below "
                                  f"{mine.holdout_fraction:g} with split salt {mine.salt}, held out by both", 0)
        keep = buckets(holdout[ID_COLUMN].to_numpy(), mine.salt) < theirs.holdout_fraction
        return EvaluationRows(holdout[keep].reset_index(drop=True), holdout_uri,
                              f"the challenger's holdout profiles hashed below the champion's holdout fraction "
                              f"{theirs.holdout_fraction:g} (split salt {mine.salt})", int((~keep).sum()))
    try:
        other, _ = load_holdout(champion)
    except RegistryError as exc:
        log.warning("promote: %s", exc)
        return EvaluationRows(holdout.iloc[0:0], holdout_uri, f"none: the champion v{champion.version} keeps no "
                              "split record and no holdout, so the rows it trained on are unknown", len(holdout))
    keep = holdout[ID_COLUMN].astype(str).isin(set(other[ID_COLUMN].astype(str))).to_numpy()
    why = "another split salt" if theirs is not None else "no split record (trained before the stable split)"
    return EvaluationRows(holdout[keep].reset_index(drop=True), holdout_uri,
                          f"profiles in both models' stored holdouts (the champion v{champion.version} has {why})",
                          int((~keep).sum()))


@dataclass(frozen=True)
class Scored:
    """One version's propensities on the evaluation rows, and what produced them."""

    version: str
    run_id: str
    model_uri: str
    propensity: np.ndarray

    def as_record(self) -> dict:
        digest = hashlib.sha256(np.round(self.propensity, 12).tobytes()).hexdigest()[:16]
        return {"version": self.version, "run_id": self.run_id, "model_uri": self.model_uri, "scores_sha256": digest}


def score(name: str, version, frame: pd.DataFrame) -> Scored:
    """``version``'s own model scored on ``frame``: loads ``models:/<name>/<version>`` and checks
    the loaded model was logged by that version's run."""
    uri = f"models:/{name}/{version.version}"
    model = mlflow.pyfunc.load_model(uri)
    loaded_run = getattr(model.metadata, "run_id", None)
    if loaded_run and version.run_id and loaded_run != version.run_id:
        raise RegistryError(f"{uri} loaded a model logged by run {loaded_run}, not by the version's run "
                            f"{version.run_id}: refusing to evaluate v{version.version} with another model")
    outputs = model.predict(artifact.conform_input(frame, model.metadata.get_input_schema()))
    if "propensity" not in outputs:
        raise RegistryError(f"model {name} v{version.version} returns {list(outputs.columns)}, without 'propensity'")
    return Scored(version=str(version.version), run_id=version.run_id or "", model_uri=uri,
                  propensity=outputs["propensity"].to_numpy(dtype="float64"))
