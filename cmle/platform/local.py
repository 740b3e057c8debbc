"""The embedded platform: a local stand-in for AEP with AEP's semantics.

Layout under ``root``::

    catalog.sqlite                       resources, datasets, batches, labels, audiences
    staging/{batch_id}/*.parquet         files of open batches
    lake/{dataset_id}/{batch_id}/*.parquet   files of successful batches (never modified)
    destinations/{name}/...              activated audience members and the activation log

The catalog is SQLite, so get-or-create and batch status changes are transactions and
several processes can use one platform at once. A batch becomes visible by one catalog
update after its files were moved into the lake, so a reader sees all of a batch or none
of it; a failed batch leaves no rows. Queries run on an in-memory DuckDB connection over
the Parquet files of the successful batches, so readers never block writers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cmle import failpoints, holder, naming, pql, storage
from cmle.errors import BatchFailedError, NotFoundError, PlatformError, QueryError
from cmle.platform import fields as xdm_fields
from cmle.platform import union
from cmle.platform.base import (
    BATCH_FAILED,
    BATCH_SUCCESS,
    EXPERIENCE_EVENT,
    PROFILE,
    XDM_CLASSES,
    Activation,
    Audience,
    Batch,
    Dataset,
    ExportResult,
    Resource,
)
from cmle.sql import to_duckdb

log = logging.getLogger(__name__)

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL,
    created REAL NOT NULL, UNIQUE (kind, name));
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, tbl TEXT NOT NULL UNIQUE, schema_id TEXT NOT NULL,
    profile_enabled INTEGER NOT NULL, labels TEXT NOT NULL DEFAULT '[]', arrow_schema BLOB,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, status TEXT NOT NULL, tags TEXT NOT NULL,
    errors TEXT NOT NULL DEFAULT '[]', records INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS batches_ds ON batches (dataset_id);
CREATE TABLE IF NOT EXISTS audiences (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, pql TEXT NOT NULL, description TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS owners (kind TEXT NOT NULL, id TEXT NOT NULL, owner TEXT NOT NULL,
    PRIMARY KEY (kind, id));
"""

# Destinations the embedded platform has, as a sandbox has the destinations set up in it: any
# other name is refused, as AEP refuses a destination that does not exist.
DESTINATIONS = ("local-files",)
HOLDER_TAG = holder.TAG

_XDM_ARROW = {"string": pa.string(), "number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_(),
              "date-time": pa.timestamp("us", tz="UTC"), "date": pa.date32()}
# Standard fields every ExperienceEvent carries (the class's required fields).
_EE_REQUIRED = ("_id", "timestamp")


def _new_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:24]


class LocalPlatform:
    """Embedded platform rooted at a folder; see the module docstring."""

    backend = "local"

    def __init__(self, root: str | os.PathLike, tenant_id: str = "cmle", storage_url: str | None = None,
                 threads: int | None = None, owner: str = ""):
        self.root = Path(root)
        self._tenant = tenant_id
        self.owner = owner  # recorded on everything this instance creates (cleanup follows it)
        self.storage_url = storage_url or str(self.root / "landing")
        self.threads = threads or max(1, os.cpu_count() or 1)
        for sub in ("staging", "lake", "destinations"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(_SCHEMA_SQL)
        self.sweep()

    # --- catalog plumbing ---------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.root / "catalog.sqlite", timeout=60, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self):
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @property
    def tenant_id(self) -> str:
        return self._tenant

    # --- XDM and datasets -------------------------------------------------------------
    def _get_or_create_resource(self, kind: str, name: str, body: dict) -> str:
        with self._tx() as db:
            row = db.execute("SELECT id FROM resources WHERE kind=? AND name=?", (kind, name)).fetchone()
            if row:
                self._check_owner(db, kind, row[0], name)
                return row[0]
            rid = f"https://ns.adobe.com/{self._tenant}/{kind}s/{_new_id()}"
            db.execute("INSERT INTO resources VALUES (?,?,?,?,?)", (kind, rid, name, json.dumps(body), time.time()))
            self._record_owner(db, kind, rid)
            return rid

    def _resource(self, kind: str, rid: str) -> dict:
        row = self._db().execute("SELECT body FROM resources WHERE kind=? AND id=?", (kind, rid)).fetchone()
        if not row:
            raise NotFoundError(f"{kind} {rid} does not exist on the embedded platform")
        return json.loads(row[0])

    def get_or_create_field_group(self, title: str, fields: dict[str, str], extends: str) -> str:
        if extends not in XDM_CLASSES:
            raise PlatformError(f"field group {title!r}: unknown class {extends!r}")
        bad = {k: v for k, v in fields.items() if not xdm_fields.field_type_ok(v)}
        if bad:
            raise PlatformError(f"field group {title!r}: unsupported XDM types {bad}")
        fg_id = self._get_or_create_resource("fieldgroup", title, {"fields": fields, "extends": extends})
        self._extend_field_group(fg_id, fields)
        return fg_id

    def _extend_field_group(self, fg_id: str, fields: dict) -> None:
        """Add the fields a newer version of the package declares to an existing field group and
        to the schemas using it (XDM allows additive changes; AEP's adapter does the same)."""
        body = self._resource("fieldgroup", fg_id)
        missing = {k: v for k, v in fields.items() if k not in body["fields"]}
        if not missing:
            return
        with self._tx() as db:
            body["fields"].update(missing)
            db.execute("UPDATE resources SET body=? WHERE id=?", (json.dumps(body), fg_id))
            for sid, raw in db.execute("SELECT id, body FROM resources WHERE kind='schema'").fetchall():
                schema = json.loads(raw)
                if fg_id in schema.get("fieldGroups", []):
                    schema["fields"].update(missing)
                    db.execute("UPDATE resources SET body=? WHERE id=?", (json.dumps(schema), sid))
        log.info("field group %s: added fields %s", fg_id, sorted(missing))

    def get_or_create_schema(self, title: str, xdm_class: str, field_group_ids: list[str],
                             identity_field: str = "userid", profile_enabled: bool = False,
                             identity_namespace: str = "ECID") -> str:
        if xdm_class not in XDM_CLASSES:
            raise PlatformError(f"schema {title!r}: unknown class {xdm_class!r}")
        fields: dict[str, str] = {}
        for fg in field_group_ids:
            body = self._resource("fieldgroup", fg)
            if body["extends"] != xdm_class:
                raise PlatformError(f"schema {title!r}: field group {fg} extends {body['extends']}, not {xdm_class}")
            fields.update(body["fields"])
        if identity_field not in fields:
            raise PlatformError(f"schema {title!r}: identity field {identity_field!r} is not in its field groups")
        schema_id = self._get_or_create_resource("schema", title, {
            "class": xdm_class, "fieldGroups": field_group_ids, "fields": fields,
            "identity": identity_field, "namespace": identity_namespace, "profile": profile_enabled})
        existing = self._resource("schema", schema_id).get("namespace", "ECID")
        if existing != identity_namespace:
            raise PlatformError(f"schema {title!r} exists with its identity in namespace {existing}, not "
                                f"{identity_namespace}; run cleanup or choose another owner")
        return schema_id

    def _row_to_dataset(self, row) -> Dataset:
        return Dataset(id=row[0], name=row[1], table=row[2], schema_id=row[3], profile_enabled=bool(row[4]))

    def get_or_create_dataset(self, name: str, schema_id: str, profile_enabled: bool = False) -> Dataset:
        schema = self._resource("schema", schema_id)
        if profile_enabled and not schema["profile"]:
            raise PlatformError(f"dataset {name!r}: its schema is not enabled for Profile")
        with self._tx() as db:
            row = db.execute("SELECT id,name,tbl,schema_id,profile_enabled FROM datasets WHERE name=?",
                             (name,)).fetchone()
            if row:
                self._check_owner(db, "dataset", row[0], name)
                if row[3] != schema_id:
                    raise PlatformError(f"dataset {name!r} exists on another schema ({row[3]}); "
                                        "run cleanup or choose another owner")
                return self._row_to_dataset(row)
            ds = Dataset(id=_new_id(), name=name, table=naming.table_name(name), schema_id=schema_id,
                         profile_enabled=profile_enabled)
            db.execute("INSERT INTO datasets (id,name,tbl,schema_id,profile_enabled,created) VALUES (?,?,?,?,?,?)",
                       (ds.id, ds.name, ds.table, ds.schema_id, int(profile_enabled), time.time()))
            self._record_owner(db, "dataset", ds.id)
            return ds

    def get_or_create_loaded_dataset(self, name: str, xdm_class: str, new_schema: bool = False) -> Dataset:
        """A dataset for rows exported from AEP (``cmle load``): any XDM fields, nested structs,
        arrays and maps, checked only for the class's required fields. ``new_schema`` lets the
        next batch bring other columns (a replacing load); otherwise batches must match.

        Not part of the Platform protocol: on AEP a customer's data is already in the sandbox.
        """
        if xdm_class not in XDM_CLASSES:
            raise PlatformError(f"dataset {name!r}: unknown class {xdm_class!r}")
        marker = f"loaded:{xdm_class}"
        with self._tx() as db:
            row = db.execute("SELECT id,name,tbl,schema_id,profile_enabled FROM datasets WHERE name=?",
                             (name,)).fetchone()
            if row is None:
                ds_id = _new_id()
                db.execute("INSERT INTO datasets (id,name,tbl,schema_id,profile_enabled,created) VALUES (?,?,?,?,0,?)",
                           (ds_id, name, naming.table_name(name), f"{marker}:{ds_id}", time.time()))
                row = db.execute("SELECT id,name,tbl,schema_id,profile_enabled FROM datasets WHERE id=?",
                                 (ds_id,)).fetchone()
            elif not row[3].startswith(marker):
                raise PlatformError(f"dataset {name!r} exists and was not loaded from an export of "
                                    f"{xdm_class} rows ({row[3]}); choose another name")
            elif new_schema:
                db.execute("UPDATE datasets SET arrow_schema=NULL WHERE id=?", (row[0],))
        return self._row_to_dataset(row)

    def find_dataset(self, name: str) -> Dataset | None:
        row = self._db().execute("SELECT id,name,tbl,schema_id,profile_enabled FROM datasets WHERE name=?",
                                 (name,)).fetchone()
        return self._row_to_dataset(row) if row else None

    def get_dataset(self, dataset_id: str) -> Dataset:
        row = self._db().execute("SELECT id,name,tbl,schema_id,profile_enabled FROM datasets WHERE id=?",
                                 (dataset_id,)).fetchone()
        if not row:
            raise NotFoundError(f"dataset {dataset_id} does not exist on the embedded platform")
        return self._row_to_dataset(row)

    def arrow_schema(self, dataset_id: str) -> pa.Schema | None:
        """The Arrow schema the dataset's batches must match (None before its first batch)."""
        row = self._db().execute("SELECT arrow_schema FROM datasets WHERE id=?", (dataset_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"dataset {dataset_id} does not exist on the embedded platform")
        return pa.ipc.read_schema(pa.py_buffer(row[0])) if row[0] else None

    def dataset_fields(self, dataset_id: str) -> dict[str, str]:
        schema = self.arrow_schema(dataset_id)
        return xdm_fields.from_arrow(schema) if schema is not None else {}

    # --- batches ------------------------------------------------------------------------
    def create_batch(self, dataset_id: str, tags: dict[str, str] | None = None) -> str:
        self.get_dataset(dataset_id)
        tags = {HOLDER_TAG: holder.this_process(), **(tags or {})}  # who loads it: see sweep()
        bid = _new_id("b")
        (self.root / "staging" / bid).mkdir(parents=True)
        with self._tx() as db:
            seq = self._next(db, "batch")
            db.execute("INSERT INTO batches (id,dataset_id,status,tags,created,seq) VALUES (?,?,?,?,?,?)",
                       (bid, dataset_id, "loading", json.dumps(tags), time.time(), seq))
        return bid

    @staticmethod
    def _next(db, name: str) -> int:
        db.execute("INSERT INTO counters VALUES (?, 0) ON CONFLICT(name) DO UPDATE SET value = value + 1", (name,))
        return db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()[0]

    def _batch_row(self, batch_id: str):
        row = self._db().execute("SELECT id,dataset_id,status,tags,errors,records,created FROM batches WHERE id=?",
                                 (batch_id,)).fetchone()
        if not row:
            raise NotFoundError(f"batch {batch_id} does not exist on the embedded platform")
        return row

    @staticmethod
    def _to_batch(row) -> Batch:
        return Batch(id=row[0], dataset_id=row[1], status=row[2], tags=json.loads(row[3]),
                     errors=tuple(json.loads(row[4])), records=row[5], created=row[6])

    def upload_file(self, batch_id: str, dataset_id: str, file_name: str, data: bytes) -> None:
        b = self._to_batch(self._batch_row(batch_id))
        if b.dataset_id != dataset_id:
            raise PlatformError(f"batch {batch_id} belongs to dataset {b.dataset_id}, not {dataset_id}")
        if b.status != "loading":
            raise PlatformError(f"batch {batch_id} is {b.status}; files can only be added to a loading batch")
        if "/" in file_name or file_name.startswith("."):
            raise PlatformError(f"invalid file name {file_name!r}")
        target = self.root / "staging" / batch_id / file_name
        tmp = target.with_name("." + file_name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def complete_batch(self, batch_id: str) -> None:
        b = self._to_batch(self._batch_row(batch_id))
        if b.status in (BATCH_SUCCESS, BATCH_FAILED):
            return  # completing twice is safe, as on AEP
        if b.status != "loading":
            raise PlatformError(f"batch {batch_id} is {b.status}; only a loading batch can be completed")
        failpoints.hit("batch.complete")
        staging = self.root / "staging" / batch_id
        try:
            records, schema = self._validate_batch(b.dataset_id, staging)
        except BatchFailedError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            with self._tx() as db:
                db.execute("UPDATE batches SET status=?, errors=? WHERE id=?",
                           (BATCH_FAILED, json.dumps([str(exc)]), batch_id))
            return
        lake = self.root / "lake" / b.dataset_id / batch_id
        lake.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, lake)
        with self._tx() as db:
            db.execute("UPDATE batches SET status=?, records=? WHERE id=?", (BATCH_SUCCESS, records, batch_id))
            db.execute("UPDATE datasets SET arrow_schema=? WHERE id=? AND arrow_schema IS NULL",
                       (schema.serialize().to_pybytes(), b.dataset_id))

    def _validate_batch(self, dataset_id: str, folder: Path) -> tuple[int, pa.Schema]:
        """Check every file as AEP would; raise BatchFailedError with the reason."""
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        if not files:
            raise BatchFailedError("batch has no file")
        ds_row = self._db().execute("SELECT schema_id, arrow_schema FROM datasets WHERE id=?",
                                    (dataset_id,)).fetchone()
        expected = pa.ipc.read_schema(pa.py_buffer(ds_row[1])) if ds_row[1] else None
        xdm = self._resource("schema", ds_row[0]) if ds_row[0].startswith("https://") else None
        records = 0
        schema = None
        for f in files:
            try:
                meta = pq.read_metadata(f)
                fschema = pq.read_schema(f)
            except Exception as exc:  # noqa: BLE001 - any unreadable file fails the batch
                raise BatchFailedError(f"{f.name}: not a readable Parquet file ({exc})") from None
            if xdm is not None:
                self._check_xdm(f, fschema, xdm)
            ref = expected or schema
            if ref is not None and not _compatible(ref, fschema):
                raise BatchFailedError(f"{f.name}: columns {fschema.names} do not match the dataset's "
                                       f"{ref.names} (TypeCompatibilityException)")
            schema = schema or fschema
            records += meta.num_rows
        return records, schema

    def _check_xdm(self, f: Path, fschema: pa.Schema, xdm: dict) -> None:
        tenant = f"_{self._tenant}"
        if xdm["class"] == EXPERIENCE_EVENT:
            missing = [c for c in _EE_REQUIRED if c not in fschema.names]
            if missing:
                raise BatchFailedError(f"{f.name}: required ExperienceEvent fields missing: {missing}")
        if tenant not in fschema.names or not pa.types.is_struct(fschema.field(tenant).type):
            raise BatchFailedError(f"{f.name}: custom fields must be under the struct {tenant}")
        struct = fschema.field(tenant).type
        names = {struct.field(i).name: struct.field(i).type for i in range(struct.num_fields)}
        for field_name, xdm_type in xdm["fields"].items():
            if field_name in names and not _type_ok(names[field_name], xdm_type):
                raise BatchFailedError(f"{f.name}: {tenant}.{field_name} is {names[field_name]}, "
                                       f"the schema says {xdm_type}")
        unknown = set(names) - set(xdm["fields"])
        if unknown:
            raise BatchFailedError(f"{f.name}: fields not in the schema: {sorted(unknown)}")
        ident = xdm["identity"]
        if ident not in names:
            raise BatchFailedError(f"{f.name}: identity field {tenant}.{ident} is missing")
        col = pq.read_table(f, columns=[tenant]).column(tenant)
        nulls = sum(chunk.field(ident).null_count + chunk.null_count for chunk in col.chunks)
        if nulls:
            raise BatchFailedError(f"{f.name}: {nulls} rows without identity {tenant}.{ident}")

    def get_batch(self, batch_id: str) -> Batch:
        return self._to_batch(self._batch_row(batch_id))

    def list_batches(self, dataset_id: str) -> list[Batch]:
        rows = self._db().execute("SELECT id,dataset_id,status,tags,errors,records,created FROM batches "
                                  "WHERE dataset_id=? ORDER BY seq", (dataset_id,)).fetchall()
        return [self._to_batch(r) for r in rows]

    def abort_batch(self, batch_id: str) -> None:
        b = self._to_batch(self._batch_row(batch_id))
        if b.status == "aborted":
            return
        if b.status != "loading":
            raise PlatformError(f"batch {batch_id} is {b.status}; only a loading batch can be aborted")
        with self._tx() as db:
            db.execute("UPDATE batches SET status='aborted' WHERE id=? AND status='loading'", (batch_id,))
        shutil.rmtree(self.root / "staging" / batch_id, ignore_errors=True)
        log.info("aborted batch %s of dataset %s", batch_id, b.dataset_id)

    def sweep(self) -> dict[str, int]:
        """Abort batches and remove staging files that a killed run left behind.

        A loading batch whose recorded holder process is gone is aborted; staging folders of
        batches that are no longer loading, and temporary files of dead processes, are removed.
        """
        counts = {"aborted": 0, "removed": 0}
        for bid, tags in self._db().execute("SELECT id, tags FROM batches WHERE status='loading'").fetchall():
            if holder.is_alive(json.loads(tags).get(HOLDER_TAG, "")) is False:
                log.warning("batch %s was left loading by %s, which is gone: aborting it", bid,
                            holder.describe(json.loads(tags)[HOLDER_TAG]))
                self.abort_batch(bid)
                counts["aborted"] += 1
        staging = self.root / "staging"
        for entry in staging.iterdir() if staging.is_dir() else ():
            row = self._db().execute("SELECT status FROM batches WHERE id=?", (entry.name,)).fetchone()
            if row is not None:
                stale = row[0] != "loading"
            else:
                stale = _temp_owner_alive(entry.name) is False
            if stale:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                counts["removed"] += 1
        return counts

    def delete_batch(self, batch_id: str) -> None:
        b = self._to_batch(self._batch_row(batch_id))
        with self._tx() as db:
            db.execute("UPDATE batches SET status='deleted' WHERE id=?", (batch_id,))
        self._collect_garbage(b.dataset_id)

    def _collect_garbage(self, dataset_id: str, grace_s: float = 300.0) -> None:
        """Remove files of deleted batches once no reader can still be using them."""
        rows = self._db().execute("SELECT id, created FROM batches WHERE dataset_id=? AND status='deleted'",
                                  (dataset_id,)).fetchall()
        for bid, _created in rows:
            folder = self.root / "lake" / dataset_id / bid
            if folder.exists() and time.time() - folder.stat().st_mtime > grace_s:
                shutil.rmtree(folder, ignore_errors=True)

    def _live_files(self, dataset_id: str) -> list[str]:
        rows = self._db().execute("SELECT id FROM batches WHERE dataset_id=? AND status=? ORDER BY seq",
                                  (dataset_id, BATCH_SUCCESS)).fetchall()
        files: list[str] = []
        for (bid,) in rows:
            folder = self.root / "lake" / dataset_id / bid
            files.extend(str(p) for p in sorted(folder.glob("*.parquet")))
        return files

    # --- queries ------------------------------------------------------------------------
    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(config={"threads": self.threads})
        con.execute("SET TimeZone='UTC'")
        rows = self._db().execute("SELECT id, tbl, arrow_schema FROM datasets").fetchall()
        for ds_id, tbl, schema_bytes in rows:
            files = self._live_files(ds_id)
            if files:
                file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                con.execute(f'CREATE VIEW "{tbl}" AS SELECT * FROM read_parquet([{file_list}], union_by_name=true)')
            elif schema_bytes:
                empty = pa.ipc.read_schema(pa.py_buffer(schema_bytes)).empty_table()
                con.register(f"__empty_{tbl}", empty)
                con.execute(f'CREATE VIEW "{tbl}" AS SELECT * FROM "__empty_{tbl}"')
        return con

    @contextmanager
    def _deadline(self, con: duckdb.DuckDBPyConnection, timeout_s: float, what: str):
        timer = threading.Timer(timeout_s, con.interrupt)
        timer.start()
        started = time.monotonic()
        try:
            yield
        except duckdb.InterruptException:
            raise QueryError(f"{what} timed out after {timeout_s:.0f} s and was cancelled") from None
        except duckdb.Error as exc:
            if time.monotonic() - started >= timeout_s:
                raise QueryError(f"{what} timed out after {timeout_s:.0f} s and was cancelled") from None
            raise QueryError(f"{what} failed: {exc}") from None
        finally:
            timer.cancel()

    def query(self, sql: str, timeout_s: float = 600.0, max_rows: int = 50_000) -> pd.DataFrame:
        translated = to_duckdb(sql)
        con = self._connect()
        try:
            with self._deadline(con, timeout_s, "query"):
                rel = con.sql(translated)
                if rel is None:
                    return pd.DataFrame()
                df = rel.limit(max_rows + 1).df()
        finally:
            con.close()
        if len(df) > max_rows:
            log.warning("query result capped at %d rows, as Query Service caps interactive results", max_rows)
            df = df.iloc[:max_rows]
        return df

    def create_table_as(self, name: str, sql: str, timeout_s: float = 3600.0, key: str | None = None) -> Dataset:
        held = self._holding(name, key) if key is not None else None
        return held or self._ctas(name, to_duckdb(sql), timeout_s, key=key)

    def _holding(self, name: str, key: str) -> Dataset | None:
        """The dataset ``name`` if its one live batch was made for ``key`` (a CTAS not to run again)."""
        ds = self.find_dataset(name)
        if ds is not None:
            live = [b for b in self.list_batches(ds.id) if b.status == BATCH_SUCCESS]
            if len(live) == 1 and live[0].tags.get("cmle.key") == key:
                log.info("%s already holds the result for key %s: not running the CTAS again", name, key)
                return ds
        return None

    def _ctas(self, name: str, translated: str, timeout_s: float = 3600.0, key: str | None = None,
              ordered: bool = False) -> Dataset:
        """CTAS from DuckDB SQL: publish the result as the dataset's only batch.

        A query result has no row order (as on AEP), so it is written one part file per
        thread, in parallel; ``ordered`` writes one file that keeps the rows' order.
        """
        tbl = naming.table_name(name)
        with self._tx() as db:
            row = db.execute("SELECT id,name,tbl,schema_id,profile_enabled FROM datasets WHERE name=?",
                             (name,)).fetchone()
            if row is None:
                ds_id = _new_id()
                db.execute("INSERT INTO datasets (id,name,tbl,schema_id,profile_enabled,created) "
                           "VALUES (?,?,?,?,0,?)", (ds_id, name, tbl, f"adhoc:{ds_id}", time.time()))
                self._record_owner(db, "dataset", ds_id)
            else:
                ds_id = row[0]
                self._check_owner(db, "dataset", ds_id, name)
        bid = self.create_batch(ds_id, {"cmle.ctas": "1", HOLDER_TAG: holder.this_process(),
                                        **({"cmle.key": key} if key else {})})
        staging = self.root / "staging" / bid
        con = self._connect()
        try:
            with self._deadline(con, timeout_s, f"CTAS {name}"):
                # Per-thread part files: Parquet encoding runs on every core instead of one
                # (a third of a feature CTAS's time otherwise).
                layout = ("" if ordered else ", PER_THREAD_OUTPUT true, FILENAME_PATTERN 'part-0000{i}'")
                target = staging / "part-00000.parquet" if ordered else staging
                con.execute(f"COPY ({translated}) TO '{target}' "
                            f"(FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 131072{layout})")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            with self._tx() as db:
                db.execute("UPDATE batches SET status=?, errors=? WHERE id=?",
                           (BATCH_FAILED, json.dumps(["CTAS failed"]), bid))
            raise
        finally:
            con.close()
        parts = sorted(staging.glob("*.parquet"))  # DuckDB writes at least one, empty or not
        schema = pq.read_schema(parts[0])
        records = sum(pq.read_metadata(part).num_rows for part in parts)
        lake = self.root / "lake" / ds_id / bid
        lake.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, lake)
        # One transaction publishes the new content and retires the old: replace, never append.
        with self._tx() as db:
            db.execute("UPDATE batches SET status='deleted' WHERE dataset_id=? AND status=? AND id<>?",
                       (ds_id, BATCH_SUCCESS, bid))
            db.execute("UPDATE batches SET status=?, records=? WHERE id=?", (BATCH_SUCCESS, records, bid))
            db.execute("UPDATE datasets SET arrow_schema=? WHERE id=?", (schema.serialize().to_pybytes(), ds_id))
        self._collect_garbage(ds_id)
        return self.get_dataset(ds_id)

    def put_table(self, name: str, table: pa.Table) -> Dataset:
        """Create or replace the ad-hoc dataset ``name`` with ``table`` (a CTAS from data; for
        tests and tools, not part of the Platform protocol)."""
        # Reuse the CTAS path so replace semantics stay in one place.
        staging = self.root / "staging" / f"put-{_temp_suffix()}.parquet"
        pq.write_table(table, staging)
        try:
            return self._ctas(name, f"SELECT * FROM read_parquet('{staging}')", ordered=True)
        finally:
            staging.unlink(missing_ok=True)

    def read_dataset(self, dataset_id: str, columns: list[str] | None = None) -> pa.Table:
        files = self._live_files(dataset_id)
        if not files:
            row = self._db().execute("SELECT arrow_schema FROM datasets WHERE id=?", (dataset_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"dataset {dataset_id} does not exist on the embedded platform")
            schema = pa.ipc.read_schema(pa.py_buffer(row[0])) if row[0] else pa.schema([])
            table = schema.empty_table()
            return table.select(columns) if columns else table
        tables = [pq.read_table(f, columns=columns) for f in files]
        return pa.concat_tables(tables, promote_options="default")

    # --- export and governance ----------------------------------------------------------
    def export_dataset(self, dataset_id: str, export_path: str, data_format: str = "parquet",
                       compression: str = "gzip", timeout_s: float = 3600.0) -> ExportResult:
        ds = self.get_dataset(dataset_id)
        if data_format != "parquet":
            raise PlatformError(f"the embedded platform exports Parquet only, not {data_format!r}")
        files = self._live_files(dataset_id)
        if not files:
            raise PlatformError(f"dataset {ds.name} ({dataset_id}) holds no data to export")
        comp = "uncompressed" if compression == "none" else compression
        remote = storage.is_remote(self.storage_url)
        with storage.atomic_export_folder(self.storage_url, export_path, dataset_id) as (folder, export_time):
            target_dir = Path(folder) if not remote else self.root / "staging" / f"export-{_temp_suffix()}"
            target_dir.mkdir(parents=True, exist_ok=True)
            con = self._connect()
            try:
                with self._deadline(con, timeout_s, f"export of {ds.name}"):
                    con.execute(f'COPY (SELECT * FROM "{ds.table}") TO \'{target_dir / "part-00000.parquet"}\' '
                                f"(FORMAT parquet, COMPRESSION {comp}, ROW_GROUP_SIZE 131072)")
            finally:
                con.close()
            if remote:
                for p in sorted(target_dir.glob("*.parquet")):
                    storage.write_table(folder, pq.read_table(p), name=p.name, compression=compression)
                shutil.rmtree(target_dir, ignore_errors=True)
        url = storage.join(storage.dataset_folder(self.storage_url, export_path, dataset_id),
                           f"exportTime={export_time}")
        parts = tuple(storage.part_files(url))
        return ExportResult(dataset_id=dataset_id, url=url, export_time=export_time, files=parts,
                            rows=storage.count_rows(url))

    def get_labels(self, dataset_id: str) -> set[str]:
        row = self._db().execute("SELECT labels FROM datasets WHERE id=?", (dataset_id,)).fetchone()
        if not row:
            raise NotFoundError(f"dataset {dataset_id} does not exist on the embedded platform")
        return set(json.loads(row[0]))

    def set_labels(self, dataset_id: str, labels: set[str]) -> None:
        self.get_dataset(dataset_id)
        with self._tx() as db:
            db.execute("UPDATE datasets SET labels=? WHERE id=?", (json.dumps(sorted(labels)), dataset_id))

    # --- profile ------------------------------------------------------------------------
    def _profile_sql(self, fields: list[str]) -> str | None:
        """SQL merging profile-enabled datasets: per identity, the newest non-null value of each field."""
        tenant = f"_{self._tenant}"
        rows = self._db().execute("SELECT id, tbl FROM datasets WHERE profile_enabled=1").fetchall()
        parts = []
        for ds_id, _tbl in rows:
            for bid, seq in self._db().execute("SELECT id, seq FROM batches WHERE dataset_id=? AND status=?",
                                               (ds_id, BATCH_SUCCESS)).fetchall():
                folder = self.root / "lake" / ds_id / bid
                files = sorted(folder.glob("*.parquet"))
                if not files:
                    continue
                names = set()
                struct = pq.read_schema(files[0]).field(tenant).type
                names = {struct.field(i).name for i in range(struct.num_fields)}
                cols = ", ".join(
                    (f'"{tenant}"."{f}" AS "{f}"' if f in names else f'NULL AS "{f}"') for f in fields)
                flist = ", ".join(f"'{p}'" for p in files)
                parts.append(f'SELECT "{tenant}".userid AS userid, {cols}, {seq} AS _seq '
                             f"FROM read_parquet([{flist}])")
        if not parts:
            return None
        union = " UNION ALL BY NAME ".join(parts)
        aggs = ", ".join(f'arg_max("{f}", _seq) FILTER (WHERE "{f}" IS NOT NULL) AS "{f}"' for f in fields)
        return f"SELECT userid, {aggs} FROM ({union}) GROUP BY userid"

    def _fragments(self) -> list[union.Fragment]:
        """The successful batches of the Profile-enabled datasets of the Profile class."""
        out = []
        rows = self._db().execute("SELECT id, schema_id FROM datasets WHERE profile_enabled=1").fetchall()
        for ds_id, schema_id in rows:
            schema = self._resource("schema", schema_id)
            if schema.get("class") != PROFILE:
                continue
            identity = (f"_{self._tenant}", schema["identity"])
            for bid, seq in self._db().execute("SELECT id, seq FROM batches WHERE dataset_id=? AND status=? "
                                               "ORDER BY seq", (ds_id, BATCH_SUCCESS)).fetchall():
                files = tuple(str(p) for p in sorted((self.root / "lake" / ds_id / bid).glob("*.parquet")))
                if files:
                    have = frozenset(xdm_fields.from_arrow(pq.read_schema(files[0])))
                    out.append(union.Fragment(files, seq, identity, schema.get("namespace", "ECID"), have))
        return out

    def profile_union(self, name: str, fields: list[str], merge_policy: str = "", fresh_after: float = 0.0,
                      timeout_s: float = 3600.0) -> Dataset:
        if merge_policy:
            log.warning("the embedded platform has one merge policy (timestamp-ordered); merge policy %r is "
                        "used as that one", merge_policy)
        fragments = self._fragments()
        if not fragments:
            raise PlatformError("the profile union is empty: no Profile-enabled dataset of the Profile class holds "
                                "data on the embedded platform; ingest profiles first (the synthetic stage), or "
                                "name a profiles dataset in the model spec instead of union: true")
        # Fresh while its source batches are the current ones: any new or reverted batch remakes it.
        key = union.union_key(fields, merge_policy, *[f.files for f in fragments])
        held = self._holding(name, key)
        if held is not None:
            return held
        return self._ctas(name, union.union_sql(fragments, fields), timeout_s, key=key)

    def profile_attributes(self, fields: list[str]) -> pd.DataFrame:
        sql = self._profile_sql(fields)
        if sql is None:
            return pd.DataFrame(columns=["userid", *fields])
        with duckdb.connect(config={"threads": self.threads}) as con:
            return con.sql(sql + " ORDER BY userid").df()

    # --- audiences ----------------------------------------------------------------------
    def get_or_create_audience(self, name: str, pql_text: str, description: str = "") -> Audience:
        pql.to_sql(pql_text, self._tenant)  # refuse what cannot be evaluated, before creating
        with self._tx() as db:
            row = db.execute("SELECT id, pql, description FROM audiences WHERE name=?", (name,)).fetchone()
            if row:
                self._check_owner(db, "audience", row[0], name)
                if row[1] != pql_text:  # same name, new rule: update in place, as a PATCH would
                    db.execute("UPDATE audiences SET pql=?, description=? WHERE id=?", (pql_text, description, row[0]))
                return Audience(id=row[0], name=name, pql=pql_text, description=description)
            aid = str(uuid.uuid4())
            db.execute("INSERT INTO audiences VALUES (?,?,?,?,?)", (aid, name, pql_text, description, time.time()))
            self._record_owner(db, "audience", aid)
            return Audience(id=aid, name=name, pql=pql_text, description=description)

    def _audience(self, audience_id: str) -> Audience:
        row = self._db().execute("SELECT id, name, pql, description FROM audiences WHERE id=?",
                                 (audience_id,)).fetchone()
        if not row:
            raise NotFoundError(f"audience {audience_id} does not exist on the embedded platform")
        return Audience(*row)

    def _fields_of(self, pql_text: str) -> list[str]:
        prefix = f"_{self._tenant}."
        import re

        return sorted(set(re.findall(re.escape(prefix) + r"([A-Za-z_][A-Za-z0-9_]*)", pql_text)))

    def audience_members(self, audience: Audience, fields: list[str] | None = None) -> pd.DataFrame:
        """Profiles that qualify for the audience, with ``userid`` and ``fields``."""
        needed = sorted(set(self._fields_of(audience.pql)) | set(fields or []))
        sql = self._profile_sql(needed)
        if sql is None:
            return pd.DataFrame(columns=["userid", *(fields or [])])
        where = pql.to_sql(audience.pql, self._tenant)
        cols = ", ".join(["userid", *[f'"{f}"' for f in (fields or [])]])
        with duckdb.connect(config={"threads": self.threads}) as con:
            return con.sql(f"SELECT {cols} FROM ({sql}) WHERE {where} ORDER BY userid").df()

    def evaluate_audiences(self, audience_ids: list[str], timeout_s: float = 1800.0) -> dict[str, int]:
        return {aid: len(self.audience_members(self._audience(aid))) for aid in audience_ids}

    def check_destination(self, destination: str) -> None:
        """Refuse a destination the platform does not have (AEP refuses an unknown one too)."""
        if destination not in DESTINATIONS:
            raise PlatformError(f"destination {destination!r} does not exist on the embedded platform; its "
                                f"destinations are: {', '.join(DESTINATIONS)} (or leave destination empty to skip "
                                "activation)")

    def create_sql_audience(self, name: str, select_sql: str, identity_field: str, namespace: str,
                            timeout_s: float = 3600.0) -> int:
        from cmle.audiences.sql import needs_aep

        raise needs_aep(self.backend)

    def activate_audience(self, audience: Audience, destination: str, fields: list[str]) -> Activation:
        self.check_destination(destination)
        dest = self.root / "destinations" / naming.table_name(destination)
        dest.mkdir(parents=True, exist_ok=True)
        log_path = dest / "activation_log.jsonl"
        entry = {"time": time.time(), "audience_id": audience.id, "audience": audience.name,
                 "destination": destination}
        try:
            members = self.audience_members(audience, fields)
            target = dest / f"{naming.table_name(audience.name)}.parquet"
            tmp = target.with_name("." + target.name + ".part")
            pq.write_table(pa.Table.from_pandas(members, preserve_index=False), tmp)
            os.replace(tmp, target)
            act = Activation(audience_id=audience.id, destination=destination, status="success",
                             members=len(members), location=str(target))
        except Exception as exc:  # noqa: BLE001 - every send is logged, failed ones too
            act = Activation(audience_id=audience.id, destination=destination, status="failed", members=0,
                             detail=str(exc))
        entry.update(status=act.status, members=act.members, location=act.location, detail=act.detail)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        return act

    # --- cleanup ------------------------------------------------------------------------
    def list_resources(self) -> list[Resource]:
        db = self._db()
        owners = {(k, i): o for k, i, o in db.execute("SELECT kind, id, owner FROM owners")}
        out = [Resource(kind="audience", id=i, name=n, owner=owners.get(("audience", i)))
               for i, n in db.execute("SELECT id, name FROM audiences")]
        out += [Resource(kind="dataset", id=i, name=n, owner=owners.get(("dataset", i)))
                for i, n in db.execute("SELECT id, name FROM datasets")]
        for kind in ("schema", "fieldgroup"):
            out += [Resource(kind=kind, id=i, name=n, owner=owners.get((kind, i)))
                    for i, n in db.execute("SELECT id, name FROM resources WHERE kind=?", (kind,))]
        return out

    # --- ownership ----------------------------------------------------------------------
    def _record_owner(self, db, kind: str, rid: str) -> None:
        if self.owner:
            db.execute("INSERT OR REPLACE INTO owners VALUES (?,?,?)", (kind, rid, self.owner))

    def _check_owner(self, db, kind: str, rid: str, name: str) -> None:
        """Refuse to reuse (and so overwrite) a resource another owner created."""
        row = db.execute("SELECT owner FROM owners WHERE kind=? AND id=?", (kind, rid)).fetchone()
        if self.owner and row is not None and row[0] != self.owner:
            raise PlatformError(f"{kind} {name!r} belongs to owner {row[0]!r}, not {self.owner!r}; "
                                "choose another [Platform] owner")

    def delete_resource(self, resource: Resource) -> None:
        with self._tx() as db:
            if resource.kind == "audience":
                db.execute("DELETE FROM audiences WHERE id=?", (resource.id,))
            elif resource.kind == "dataset":
                db.execute("DELETE FROM batches WHERE dataset_id=?", (resource.id,))
                db.execute("DELETE FROM datasets WHERE id=?", (resource.id,))
            else:
                db.execute("DELETE FROM resources WHERE kind=? AND id=?", (resource.kind, resource.id))
            db.execute("DELETE FROM owners WHERE kind=? AND id=?", (resource.kind, resource.id))
        if resource.kind == "dataset":
            shutil.rmtree(self.root / "lake" / resource.id, ignore_errors=True)


def _temp_suffix() -> str:
    """Name part of a temporary staging entry: the holder process, so a sweep can tell."""
    return holder.this_process().replace("/", "~") + "~" + uuid.uuid4().hex[:8]


def _temp_owner_alive(entry_name: str) -> bool | None:
    stem = entry_name.split("-", 1)[-1].removesuffix(".parquet")
    parts = stem.split("~")
    if len(parts) < 3:
        return None
    return holder.is_alive("/".join(parts[:3]))


def _type_ok(arrow_type: pa.DataType, xdm_type) -> bool:
    return xdm_fields.arrow_matches(arrow_type, xdm_type)


def _compatible(ref: pa.Schema, new: pa.Schema) -> bool:
    """Same column names, and types that unify (AEP refuses incompatible types)."""
    if set(ref.names) != set(new.names):
        return False
    try:
        pa.unify_schemas([ref, new], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


__all__ = ["LocalPlatform", "PROFILE", "EXPERIENCE_EVENT"]
