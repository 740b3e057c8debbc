"""Helpers for the external-scores tests (local and on the AEP double): profiles on a
platform, and score files written the way an external tool writes them.

Import as ``from tests.scoring.external_files import ...``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cmle.ingestion import ingest_tables
from tests.aep.helpers import ecid, profile_dataset, profiles_table


def make_profiles(platform, n: int = 300) -> list[str]:
    """The synthetic spec's profiles dataset holding ``n`` profiles; returns their ids."""
    ds = profile_dataset(platform)
    ingest_tables(platform, ds.id, [profiles_table(n, tenant=f"_{platform.tenant_id}")], key=f"profiles:{n}")
    return [ecid(i) for i in range(n)]


def propensities(n: int, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).beta(1.3, 4.0, n)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_parquet(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path
