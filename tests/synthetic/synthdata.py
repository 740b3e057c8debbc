"""Helpers shared by the synthetic tests."""

from __future__ import annotations

import numpy as np

END = "2024-06-01"  # window end of the generated test data


def per_user_counts(data, name: str) -> np.ndarray:
    """Events of type ``name`` of each user (zeros included)."""
    return np.bincount(data.user[data.code == data.model.code(name)], minlength=data.n_profiles)
