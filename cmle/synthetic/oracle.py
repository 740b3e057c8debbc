"""The oracle: each user's latent propensity over time, kept apart from the platform data.

File ``settings.work_dir / "oracle" / <owner token> / "latent_propensity.parquet"`` with columns
``userid`` (the ECID-like identity), ``timestamp`` (UTC) and ``propensity``: one row per user
at the window start with the initial propensity, then one row per event of the events
dataset with the latent propensity *after* that event. Rows are in user, time order.

Later stages measure a model against it: :func:`latent_propensity_at` gives every user's
latent propensity at a snapshot time.

Whether that is a valid reference depends on the generator, and the file says so in its
Parquet metadata (:func:`oracle_validity`):

* default generator: valid. Events arrive as Poisson processes whose future does not depend
  on the user's past (beyond children of recent events), and every conversion draw after T
  starts from the latent propensity at T, so it is the quantity that drives the label.
* legacy generator (the notebooks' overwrite bug): not valid. Every dependent event hangs off
  the user's *last* parent event, so a user's engagement (opens, clicks, page views and
  the conversion chances they bring) comes in one burst. At the snapshot a high latent
  propensity marks a user whose burst is over without a conversion, and the burst that
  drives a positive label lies in the outcome window (the past even depends on the future:
  children of earlier parents exist only when no later parent comes). Measured, seed 11,
  50,000 profiles, 10 weeks: the latent propensity at T ranks the labels with ROC-AUC 0.30;
  eligible users with an email open before T convert at 2.3 %, the others at 7.2 %. So no
  model-vs-oracle ratio is computed for legacy data; see ``docs/model-quality.md`` and
  ``bench/oracle_diagnostics.py``.
"""

from __future__ import annotations

import os
import uuid
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cmle.config import Settings

ORACLE_FILE = "latent_propensity.parquet"
ORACLE_SCHEMA = pa.schema([("userid", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
                           ("propensity", pa.float64())])
# Parquet key-value metadata of the file: which generator wrote it and whether its latent
# propensity at a snapshot is a valid reference for a model (see the module docstring).
META_GENERATOR = b"cmle.generator"
META_VALID = b"cmle.snapshot_oracle"
META_NOTE = b"cmle.snapshot_oracle_note"
VALID, NOT_VALID = "valid", "not valid"

LEGACY_NOTE = ("the legacy generator (the notebooks' overwrite bug) gives each user's dependent events in one "
               "burst after the user's last parent event; at the snapshot a high latent propensity marks a user "
               "whose burst is over without a conversion, while the burst that drives a positive label lies in the "
               "outcome window (measured: the latent propensity at T ranks the labels with ROC-AUC 0.30 at seed "
               "11, 50,000 profiles, 10 weeks). No latent quantity at the snapshot drives the label, so no "
               "model-vs-oracle ratio is computed; see docs/model-quality.md")
DEFAULT_NOTE = ("the latent propensity at the snapshot is where every later conversion draw starts from; future "
                "events do not depend on the user's past beyond children of recent events")


def snapshot_validity(model) -> tuple[bool, str]:
    """Whether a generator model's latent propensity at a snapshot drives the label after it,
    and why (``model``: a :class:`cmle.synthetic.model.SimulationModel`)."""
    if model.overwrite_children:
        return False, LEGACY_NOTE
    return True, DEFAULT_NOTE


def _schema_for(model) -> pa.Schema:
    valid, note = snapshot_validity(model)
    return ORACLE_SCHEMA.with_metadata({META_GENERATOR: model.name.encode(),
                                        META_VALID: (VALID if valid else NOT_VALID).encode(),
                                        META_NOTE: note.encode()})


def oracle_validity(path: str | os.PathLike) -> tuple[bool, str]:
    """``(valid, note)`` recorded in an oracle file. A file without the record (written
    before it existed, or by hand) counts as valid: only the legacy generator is not."""
    meta = pq.read_schema(path).metadata or {}
    if META_VALID not in meta:
        return True, "no validity record in the oracle file; taken as valid"
    return meta[META_VALID].decode() == VALID, meta.get(META_NOTE, b"").decode()


def oracle_path(settings: Settings) -> Path:
    """Where the synthetic stage writes the oracle for the configured owner."""
    from cmle.naming import owner_token

    return Path(settings.work_dir) / "oracle" / owner_token(settings.platform.owner) / ORACLE_FILE


def oracle_table(data, lo: int, hi: int) -> pa.Table:
    """Oracle rows of users ``lo:hi`` of generated data (``SyntheticData``)."""
    from cmle.synthetic.xdm import ecids

    ev_lo, ev_hi = np.searchsorted(data.user, [lo, hi])
    users = data.user[ev_lo:ev_hi].astype(np.int64)
    n_users, n_events = hi - lo, ev_hi - ev_lo
    out_user = np.empty(n_users + n_events, np.int64)
    out_ts = np.empty(n_users + n_events, np.int64)
    out_p = np.empty(n_users + n_events, np.float64)
    # each user's start row comes before the user's events
    event_pos = np.arange(n_events) + (users - lo) + 1
    start_pos = (np.searchsorted(users, np.arange(lo, hi)) + np.arange(n_users)).astype(np.int64)
    out_user[start_pos], out_ts[start_pos] = np.arange(lo, hi), data.window_start_us
    out_p[start_pos] = data.profile.p0[lo:hi]
    out_user[event_pos], out_ts[event_pos] = users, data.ts[ev_lo:ev_hi]
    out_p[event_pos] = data.propensity[ev_lo:ev_hi]
    ids = ecids(np.arange(lo, hi)).take(pa.array(out_user - lo))
    return pa.Table.from_arrays([ids, pa.array(out_ts, ORACLE_SCHEMA.field("timestamp").type), pa.array(out_p)],
                                schema=_schema_for(data.model))


def write_oracle(data, path: str | os.PathLike, extension=None) -> Path:
    """Write the oracle of ``data`` (and of its ``extension``, the same users later:
    :func:`cmle.synthetic.extend.extend`) to ``path`` atomically (readers see the old file or
    the new one, never a partial one); memory stays bounded by writing it in pieces."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with pq.ParquetWriter(tmp, _schema_for(data.model), compression="zstd") as writer:
            for part in (data, extension):
                for table in part.iter_oracle_tables() if part is not None else ():
                    writer.write_table(table, row_group_size=1 << 20)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_oracle(path: str | os.PathLike) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def _utc(ts) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def latent_propensity_at(df: pd.DataFrame | pa.Table,
                         snapshot_ts: datetime | date | str | pd.Timestamp) -> pd.DataFrame:
    """Each user's latent propensity at ``snapshot_ts``: the value after the user's last row
    at or before it (the window-start row when no event came before). Users with no row at
    or before the snapshot are absent. A naive snapshot is UTC. Columns ``userid``,
    ``propensity``; sorted by ``userid``."""
    if isinstance(df, pa.Table):
        df = df.to_pandas()
    snap = _utc(snapshot_ts)
    ts = pd.to_datetime(df["timestamp"])
    ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    upto = df.loc[(ts <= snap).to_numpy(), ["userid", "propensity"]].assign(_ts=ts[ts <= snap])
    # stable: rows at the same instant keep their file order (start row, then events)
    last = upto.sort_values("_ts", kind="stable").drop_duplicates("userid", keep="last")
    return last[["userid", "propensity"]].sort_values("userid", kind="stable").reset_index(drop=True)


def snapshot_truth(data, snapshot: datetime | date | str | pd.Timestamp, outcome_days: int) -> pd.DataFrame:
    """The generator's own truth at a snapshot, from the generated arrays (no SQL, no file).

    One row per user eligible at T as the feature SQL defines it (no conversion at or before
    T; every synthetic profile signed up before the window): ``userid``, ``label`` (1 when
    the user converts in ``(T, T + outcome_days]``) and ``propensity`` (the latent
    propensity at T). The yardstick the oracle comparison and its tests are held to.
    """
    from cmle.columns import CONVERSION_EVENT
    from cmle.synthetic.simulate import US_PER_S, to_us
    from cmle.synthetic.xdm import ecids

    t_us = to_us(_utc(snapshot).to_pydatetime())
    w_us = int(outcome_days) * 86_400 * US_PER_S
    n = data.n_profiles
    is_conv = data.code == data.model.code(CONVERSION_EVENT)
    conv_ts = np.full(n, np.iinfo(np.int64).max, np.int64)
    conv_ts[data.user[is_conv]] = data.ts[is_conv]  # at most one conversion per user
    latent = data.profile.p0.astype(np.float64).copy()
    upto = np.flatnonzero(data.ts <= t_us)  # rows are in user, time order: the last one wins
    latent[data.user[upto]] = data.propensity[upto]
    eligible = np.flatnonzero(conv_ts > t_us)
    return pd.DataFrame({"userid": ecids(eligible).to_pylist(),
                         "label": (conv_ts[eligible] <= t_us + w_us).astype(np.int64),
                         "propensity": latent[eligible]})
