"""The oracle: each user's latent propensity over time, kept apart from the platform data.

File ``settings.work_dir / "oracle" / <owner token> / "latent_propensity.parquet"`` with columns
``userid`` (the ECID-like identity), ``timestamp`` (UTC) and ``propensity``: one row per user
at the window start with the initial propensity, then one row per event of the events
dataset with the latent propensity *after* that event. Rows are in user, time order.

Later stages measure a model against it: :func:`latent_propensity_at` gives every user's
latent propensity at a snapshot time.
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
                                schema=ORACLE_SCHEMA)


def write_oracle(data, path: str | os.PathLike, extension=None) -> Path:
    """Write the oracle of ``data`` (and of its ``extension``, the same users later:
    :func:`cmle.synthetic.extend.extend`) to ``path`` atomically (readers see the old file or
    the new one, never a partial one); memory stays bounded by writing it in pieces."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with pq.ParquetWriter(tmp, ORACLE_SCHEMA, compression="zstd") as writer:
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
