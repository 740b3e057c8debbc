"""Fault suite: `main` with ``backend = aep`` against the AEP double under faults and kills.

The double (``tests/aep/double``: Adobe's specs enforced, Query Service on a real
PostgreSQL server) runs in this process. Every service answers a share of its calls
(``--rate``, default 15 %) with a fault drawn from: 429 with ``Retry-After`` (whole
seconds, as AEP sends them), 500, 503, a timeout (processed, answer held past the
client's timeout), a dropped connection before or after processing, and a *late* answer
(the connection drops and the request is processed ``late_s`` later). IMS is a service
too. Query Service's PostgreSQL endpoint drops sessions and answers "internal error"
(SQLSTATE XX000) at the same rate.

`main` runs in a child process, which is killed (SIGKILL) at several points (``--kills``:
the Nth request of an operation), then re-run; then run to completion, then run again
(which must create nothing new), then ``cleanup``. The suite prints, side by side:

* requests the double received, faults injected (by kind), the adapter's retries;
* early retries (a request repeated before its 429's Retry-After): must be 0;
* duplicates (a name held twice, a key ingested twice): must be 0;
* orphans (after the completed runs: a dataset, ad-hoc schema, flow or source connection
  no name or dataset leads to, a batch left ``loading``; after cleanup: anything of this
  owner, ad-hoc schemas and export files included): must be 0;
* spec violations and errors of the double: must be 0; wall time.

    python bench/aep_fault_suite.py [--rate 0.15] [--seed 11] [--profiles 1200]

It exits non-zero when a must-be-0 figure is not 0 or a run that should complete fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

OWNER = "cmle"
DESTINATION = "Audience exports"
# (operation key, which occurrence): the child is killed when the double receives it.
KILLS = (
    ("POST /data/foundation/import/batches/{batchId}", 1),  # synthetic: the first batch's COMPLETE
    ("POST /data/foundation/query/queries", 2),  # featurize: a CTAS submitted, running
    ("POST /data/core/activation/disflowprovider/adhocrun", 1),  # export: the first ad-hoc run
    ("POST /data/core/ups/segment/jobs", 1),  # audience: an evaluation job running
)
PARAMS = {"profiles": 1200, "weeks": 10, "end_date": "2024-06-01", "seed": 7, "min_positives": 15,
          "min_negatives": 15, "max_evals": 2, "families": "logreg", "min_auc": 0.5, "destination": DESTINATION}
FAULT_KINDS = ("429", "500", "503", "timeout", "drop", "drop_before", "late")


SERVICES = (("/ims/", "IMS"), ("/schemaregistry", "Schema Registry"), ("/catalog", "Catalog"),
            ("/import", "Batch Ingestion"), ("/export", "Data Access"), ("/query", "Query Service"),
            ("/flowservice", "Flow Service"), ("/disflowprovider", "ad-hoc runs"), ("/landingzone", "landing zone"),
            ("/ups", "Segmentation"), ("/dataset/", "Dataset Service"))


def service_of(path: str) -> str:
    return next((name for part, name in SERVICES if part in path), "other")


# --- the child: one stage run, its adapter's counters written as it goes -------------------
def child(stage: str, params: dict, stats_file: str) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from cmle.config import load_settings
    from cmle.platform import aep as aep_mod
    from cmle.runner import run_stage

    platforms = []
    real = aep_mod.AEPPlatform.from_settings.__func__

    def keep(cls, settings):
        p = real(cls, settings)
        platforms.append(p)
        return p

    aep_mod.AEPPlatform.from_settings = classmethod(keep)

    def counters() -> dict:
        out: Counter = Counter()
        for p in platforms:
            t = p.client.transport
            out.update({"retries": t.stats["retries"], "creates_resent": t.stats["creates_resent"],
                        "found_after_lost_answer": t.stats["creations_found_after_failure"],
                        "token_retries": t.tokens.retries, "qs_retries": p.queries.retries,
                        "qs_reconnects": p.queries.reconnects, "jobs_reused": p.audiences.jobs_reused,
                        "not_ready_waits": p.exports.not_ready_waits})
        return dict(out)

    def flush() -> None:
        Path(stats_file).write_text(json.dumps(counters()))

    def loop() -> None:
        while True:
            flush()
            time.sleep(0.2)

    threading.Thread(target=loop, daemon=True).start()
    try:
        out = run_stage(stage, load_settings(), params)
        flush()
        print("RESULT " + json.dumps({"audience_note": (out.get("audience") or {}).get("activation_note", ""),
                                      "resources": out.get("resources")}, default=str), flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        flush()
        print(f"FAILED {type(exc).__name__}: {exc}", flush=True)
        return 1


# --- the parent ------------------------------------------------------------------------------
class Suite:
    def __init__(self, args, workdir: Path):
        from aep.double import AEPDouble, PostgresServer

        self.args = args
        self.workdir = workdir
        self.pg = PostgresServer().start()
        self.double = AEPDouble(self.pg, workdir / "double", delay_s=0.05, hang_s=1.5, retry_after_s=1.0,
                                late_s=1.0).start()
        self.retries: Counter = Counter()
        self.runs: list[tuple[str, str, float]] = []
        self._add_destination()

    def _add_destination(self) -> None:
        """A batch destination dataflow the user set up once in the sandbox."""
        self.double.flows["dest1"] = {
            "id": "dest1", "name": DESTINATION, "flowSpec": {"id": "cd2fc47e-e838-4f38-a581-8fff2f99b63a"},
            "sourceConnectionIds": [], "targetConnectionIds": [], "etag": '"e1"', "state": "enabled",
            "createdAt": int(time.time() * 1000), "updatedAt": 0, "readyAt": 0,
            "transformations": [{"name": "GeneralTransform", "params": {"segmentSelectors": {"selectors": []},
                                                                         "profileSelectors": {"selectors": []}}}]}

    def env(self) -> dict:
        d = self.double
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CMLE_", "MLFLOW_"))}
        env.update({
            "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true",
            "CMLE_PLATFORM_BACKEND": "aep", "CMLE_PLATFORM_IMS_ORG_ID": d.org_id,
            "CMLE_PLATFORM_SANDBOX_NAME": d.sandbox, "CMLE_PLATFORM_PLATFORM_URL": d.url,
            "CMLE_PLATFORM_IMS_URL": d.url, "CMLE_PLATFORM_QS_SSLMODE": "disable",
            "CMLE_PLATFORM_POLL_INTERVAL": "0.05", "CMLE_PLATFORM_RETRY_BACKOFF": "0.05",
            "CMLE_PLATFORM_REQUEST_TIMEOUT": "1.0", "CMLE_PLATFORM_CREATE_LOOKUP_S": "2.5",
            "CMLE_PLATFORM_LOCAL_ROOT": str(self.workdir / "local"), "CMLE_PLATFORM_OWNER": OWNER,
            "CMLE_AUTHENTICATION_CLIENT_ID": d.client_id, "CMLE_AUTHENTICATION_CLIENT_SECRET": d.client_secret,
            "CMLE_CLOUD_STORAGE_URL": str(d.landing_zone),
            "CMLE_MLFLOW_TRACKING_URI": f"sqlite:///{self.workdir / 'mlflow.db'}",
        })
        return env

    def run(self, label: str, stage: str, params: dict, kill: tuple[str, int] | None = None) -> str:
        """Run a stage in a child; kill it at ``kill``; return killed / completed / failed."""
        stats = self.workdir / f"stats-{len(self.runs)}.json"
        cmd = [sys.executable, __file__, "--child", stage, json.dumps(params), str(stats)]
        started = time.monotonic()
        seen = len(self.double.calls)
        proc = subprocess.Popen(cmd, env=self.env(), cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        killed = False
        if kill is not None:
            key, nth = kill
            while proc.poll() is None:
                hits = [c for c in self.double.calls[seen:] if c[1] == key and c[2] < 400]
                if len(hits) >= nth:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.01)
        out, err = proc.communicate()
        if stats.exists():
            self.retries.update(json.loads(stats.read_text() or "{}"))
        outcome = "killed" if killed else ("completed" if proc.returncode == 0 else "failed")
        self.runs.append((label, outcome, time.monotonic() - started))
        if outcome == "failed":
            tail = "\n".join((out + err).strip().splitlines()[-15:])
            print(f"  {label}: FAILED\n{tail}", file=sys.stderr)
        return outcome

    # --- what the double holds ------------------------------------------------------------
    def orphans_after_runs(self) -> list[str]:
        from cmle import naming

        d = self.double
        names = {naming.events_dataset(OWNER), naming.profiles_dataset(OWNER), naming.scores_dataset(OWNER),
                 naming.training_set(OWNER), naming.training_set(OWNER, "cmle"), naming.scoring_set(OWNER)}
        out = []
        with d.lock:
            datasets = dict(d.datasets)
            used_schemas = {(ds.get("schemaRef") or {}).get("id") for ds in datasets.values()}
            for ds_id, ds in datasets.items():
                if naming.is_ours(ds["name"], OWNER) and ds["name"] not in names:
                    out.append(f"dataset {ds['name']} ({ds_id})")
            for s in d.schemas.values():
                if s.get("meta:class", "").endswith("/data/adhoc") and s["$id"] not in used_schemas:
                    out.append(f"ad-hoc schema {s['$id']}")
            for src in d.source_connections.values():
                if any(x.get("dataSetId") not in datasets for x in (src.get("params") or {}).get("datasets", [])):
                    out.append(f"source connection {src['name']} to a deleted dataset")
            for f in d.flows.values():
                if any(s not in d.source_connections for s in f.get("sourceConnectionIds") or []):
                    out.append(f"flow {f['name']} without its source connection")
            for b_id, b in d.batches.items():
                if b["status"] == "loading":
                    out.append(f"batch {b_id} left loading")
        return out

    def orphans_after_cleanup(self) -> list[str]:
        from cmle import naming

        d = self.double
        with d.lock:
            out = [f"{kind} {name}" for kind, items, key in (
                ("fieldgroup", d.fieldgroups.values(), "title"), ("schema", d.schemas.values(), "title"),
                ("dataset", d.datasets.values(), "name"), ("flow", d.flows.values(), "name"),
                ("connection", d.connections.values(), "name"),
                ("source connection", d.source_connections.values(), "name"),
                ("target connection", d.target_connections.values(), "name"),
                ("audience", d.segments.values(), "name")) for name in (i[key] for i in items)
                if naming.is_ours(name, OWNER)]
            out += [f"ad-hoc schema {s['$id']}" for s in d.schemas.values()
                    if s.get("meta:class", "").endswith("/data/adhoc")]
            selectors = d.flows["dest1"]["transformations"][0]["params"]["segmentSelectors"]["selectors"]
            out += [f"audience {s['value']['id']} still mapped to the destination" for s in selectors]
        out += [f"export files {p}" for p in (d.landing_zone / "cmle" / "egress").glob("*")]
        return out

    def stop(self) -> None:
        self.double.stop()
        self.pg.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.15, help="share of calls of every service that fault")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--profiles", type=int, default=PARAMS["profiles"])
    parser.add_argument("--no-kills", action="store_true", help="skip the killed runs")
    args = parser.parse_args(argv)
    params = {**PARAMS, "profiles": args.profiles}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cmle-aep-faults-") as tmp:
        suite = Suite(args, Path(tmp))
        d = suite.double
        try:
            d.faults.random(args.rate, kinds=FAULT_KINDS, seed=args.seed)
            d.wire_random(args.rate)
            for key, nth in () if args.no_kills else KILLS:
                suite.run(f"main, killed at {key.split(' ', 1)[1]} #{nth}", "main", params, kill=(key, nth))
            completed = suite.run("main, to completion", "main", params)
            dups_first = d.duplicates()
            orphans_runs = suite.orphans_after_runs()
            counts = (len(d.schemas), len(d.fieldgroups), len(d.datasets), len(d.flows), len(d.segments))
            again = suite.run("main, again (nothing new)", "main", params)
            recreated = (len(d.schemas), len(d.fieldgroups), len(d.datasets), len(d.flows),
                         len(d.segments)) != counts
            dups = d.duplicates() or dups_first
            orphans_runs += [o for o in suite.orphans_after_runs() if o not in orphans_runs]
            cleaned = suite.run("cleanup", "cleanup", {})
            d.faults.clear()
            orphans_cleanup = suite.orphans_after_cleanup()
            wall = time.monotonic() - started

            injected = Counter(d.faults.injected)
            injected.update({f"qs:{k}": v for k, v in d.wire_faults_used().items()})
            print("\nAEP fault suite (backend = aep against the AEP double)")
            print(f"  fault rate per call of every service: {args.rate:.0%} (seed {args.seed}); "
                  f"profiles {args.profiles}")
            for label, outcome, seconds in suite.runs:
                print(f"  {label:<60} {outcome:<10} {seconds:6.1f} s")
            print(f"  requests received by the double:  {d.requests}")
            by_service = Counter(service_of(p) for p in d.faults.injected_paths.elements())
            calls = Counter(service_of(p) for p in d.request_paths)
            print("  faults by service:                " + ", ".join(
                f"{svc} {by_service[svc]}/{calls[svc]}" for svc in sorted(calls)))
            print(f"  faults injected:                  {sum(injected.values())} ("
                  + ", ".join(f"{k} {v}" for k, v in sorted(injected.items())) + ")")
            r = suite.retries
            print(f"  retries:                          {r['retries'] + r['token_retries'] + r['qs_retries']} "
                  f"(REST {r['retries']}, of which creations re-sent {r['creates_resent']}; IMS {r['token_retries']};"
                  f" Query Service {r['qs_retries']}, reconnects {r['qs_reconnects']}); lost answers found by "
                  f"look-up {r['found_after_lost_answer']}; evaluation jobs reused {r['jobs_reused']}")
            print(f"  early retries (before Retry-After): {len(d.early_retries)}   (must be 0)")
            print(f"  duplicates:                       {sum(len(v) for v in dups.values())}   (must be 0) {dups or ''}")
            print(f"  orphans after the runs:           {len(orphans_runs)}   (must be 0) {orphans_runs or ''}")
            print(f"  orphans after cleanup:            {len(orphans_cleanup)}   (must be 0) {orphans_cleanup or ''}")
            other = [v for v in d.violations if not v.startswith("early retry")]
            print(f"  spec violations: {len(other)}; double errors: {len(d.errors)}; "
                  f"a second main re-created something: {recreated}")
            print(f"  wall time:                        {wall:.1f} s")
            runs_ok = completed == again == cleaned == "completed"
            bad = bool(d.early_retries or dups or orphans_runs or orphans_cleanup or other or d.errors or recreated
                       or not runs_ok)
            for v in (other + d.errors)[:5]:
                print(f"    {v[:300]}")
            return 1 if bad else 0
        finally:
            suite.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]))
    sys.exit(main())
