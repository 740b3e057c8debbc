"""A score run's summary, accumulated batch by batch (bounded memory): counts, histogram, buckets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cmle.scoring.schema import BUCKETS


@dataclass
class ScoreSummary:
    rows: int = 0
    score_counts: np.ndarray = field(default_factory=lambda: np.zeros(101, dtype="int64"))  # index = score
    bucket_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    propensity_sum: float = 0.0
    propensity_min: float = float("inf")
    propensity_max: float = float("-inf")

    def add(self, table: pa.Table | pa.RecordBatch) -> None:
        """Count the score rows of one batch."""
        n = table.num_rows
        if not n:
            return
        self.rows += n
        scores = np.clip(table.column("score").to_numpy(zero_copy_only=False), 0, 100).astype("int64")
        self.score_counts += np.bincount(scores, minlength=101)
        for row in pc.value_counts(table.column("bucket")).to_pylist():
            self.bucket_counts[row["values"]] = self.bucket_counts.get(row["values"], 0) + row["counts"]
        prop = table.column("propensity")
        mm = pc.min_max(prop)
        self.propensity_sum += pc.sum(prop).as_py()
        self.propensity_min = min(self.propensity_min, mm["min"].as_py())
        self.propensity_max = max(self.propensity_max, mm["max"].as_py())

    @property
    def propensity_mean(self) -> float:
        return self.propensity_sum / self.rows if self.rows else float("nan")

    def metrics(self) -> dict[str, float]:
        """Flat numbers for ``mlflow.log_metrics``."""
        out: dict[str, float] = {"rows": float(self.rows)}
        if self.rows:
            out.update(propensity_mean=self.propensity_mean, propensity_min=self.propensity_min,
                       propensity_max=self.propensity_max,
                       score_mean=float((np.arange(101) * self.score_counts).sum() / self.rows))
        out.update({f"bucket_{b}": float(c) for b, c in self.bucket_counts.items()})
        return out

    def buckets_frame(self) -> pd.DataFrame:
        total = max(self.rows, 1)
        return pd.DataFrame([{"bucket": b, "profiles": c, "share": c / total} for b, c in self.bucket_counts.items()])


_COLORS = {"low": "#9e9e9e", "medium": "#4c8bd6", "high": "#d9534f"}


def histogram_figure(summary: ScoreSummary, title: str):
    """Bar chart of profiles per score (0–100), coloured by bucket."""
    from matplotlib.figure import Figure

    from cmle.model.scoring import HIGH_FROM, LOW_BELOW

    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    scores = np.arange(101)
    for name, lo, hi in (("low", 0, LOW_BELOW), ("medium", LOW_BELOW, HIGH_FROM), ("high", HIGH_FROM, 101)):
        sel = (scores >= lo) & (scores < hi)
        ax.bar(scores[sel], summary.score_counts[sel], width=1.0, color=_COLORS[name],
               label=f"{name}: {summary.bucket_counts.get(name, 0):,}")
    ax.set_xlabel("score (0–100)")
    ax.set_ylabel("profiles")
    ax.set_title(title)
    ax.legend(title="bucket")
    fig.tight_layout()
    return fig
