"""A holdout that stays the same across retrains: membership by a hash of the profile id.

A profile is in the holdout when ``bucket(salt, id) < fraction``, where the bucket is the
first 8 bytes of SHA-256(``salt:id``) as a number in [0, 1). The salt is kept with the
registered model (:meth:`cmle.registry.Registry.split_salt`), so every version of a model
holds out the same profiles: a profile in one version's holdout was in no version's
training or validation rows (with the same or a larger fraction), and the promotion gate
can compare champion and challenger on rows neither has seen. All rows of a profile fall
on the same side, so no profile is both trained on and evaluated on.

The record of a version's split (:class:`SplitRecord`) is stored as a tag of the version;
the promotion gate reads it to keep only the rows the other version did not train on
(:mod:`cmle.promotion.evaluation`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

SCHEME = "profile_hash_v1"
_SCALE = float(2 ** 64)


def buckets(ids, salt: str) -> np.ndarray:
    """Each id's bucket in [0, 1) for ``salt`` (stable across processes, machines and versions)."""
    prefix = f"{salt}:".encode()
    out = np.empty(len(ids), dtype="float64")
    for i, value in enumerate(pd.Series(ids).astype(str)):
        digest = hashlib.sha256(prefix + value.encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / _SCALE
    return out


def in_holdout(ids, salt: str, fraction: float) -> np.ndarray:
    """True for the ids whose profile is held out."""
    return buckets(ids, salt) < fraction


@dataclass(frozen=True)
class SplitRecord:
    """How a version's rows were split: what the gate needs to know which profiles it never saw."""

    scheme: str
    salt: str
    holdout_fraction: float

    def to_json(self) -> str:
        return json.dumps({"scheme": self.scheme, "salt": self.salt, "holdout_fraction": self.holdout_fraction},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "SplitRecord | None":
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(scheme=str(data["scheme"]), salt=str(data["salt"]),
                       holdout_fraction=float(data["holdout_fraction"]))
        except (ValueError, KeyError, TypeError):
            return None


def describe(salt: str, holdout_fraction: float) -> SplitRecord:
    return SplitRecord(scheme=SCHEME, salt=salt, holdout_fraction=float(holdout_fraction))
