"""A local Databricks workspace double: an HTTP server on 127.0.0.1 for databricks-sdk.

It answers the paths the SDK calls for ``cmle deploy`` (as recorded against a fake host in
shared/reference/distributed.md §1.2): the host-metadata probe, SCIM ``Me``, Files API
directory and file uploads to volumes, workspace mkdirs/import, and Jobs API 2.2
``create``, ``reset``, ``list``, ``get``, ``run-now``, ``runs/get``, ``runs/get-output``.
A run plays out task by task (one step per ``runs/get``): pending, each task running then
succeeding in ``depends_on`` order, or ``fail_task`` failing and the tasks after it
``UPSTREAM_FAILED``. Runs with the same idempotency token are the same run, as on Databricks.
Every request is recorded in :attr:`WorkspaceDouble.requests`.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class RunPlan:
    """How the double plays out a run: which task fails (None: all succeed) and its error."""

    fail_task: str | None = None
    error: str = "ValueError: something went wrong"


@dataclass
class _Run:
    run_id: int
    job_id: int
    order: list[str]  # task keys in execution order
    plan: RunPlan
    step: int = 0
    task_run_ids: dict[str, int] = field(default_factory=dict)


def _topological(tasks: list[dict]) -> list[str]:
    done: list[str] = []
    pending = {t["task_key"]: [d["task_key"] for d in t.get("depends_on") or []] for t in tasks}
    while pending:
        ready = [k for k, deps in pending.items() if all(d in done for d in deps)]
        if not ready:
            raise ValueError("task dependencies form a cycle")
        for k in ready:
            done.append(k)
            del pending[k]
    return done


class WorkspaceDouble:
    """The server and its state; use as a context manager."""

    user_name = "ann.lee@example.com"

    def __init__(self) -> None:
        self.jobs: dict[int, dict] = {}
        self.runs: dict[int, _Run] = {}
        self.tokens: dict[str, int] = {}
        self.files: dict[str, bytes] = {}  # volume files
        self.directories: set[str] = set()
        self.workspace: dict[str, bytes] = {}  # workspace files
        self.requests: list[Request] = []
        self.plan = RunPlan()
        # path prefix -> (HTTP status, error_code, message): requests the workspace refuses
        self.refuse: dict[str, tuple[int, str, str]] = {}
        self._next_job, self._next_run = 1000, 5000
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "WorkspaceDouble":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, prefix: str = "/api/") -> list[tuple[str, str]]:
        """``(method, path)`` of the recorded requests whose path starts with ``prefix``."""
        return [(r.method, r.path) for r in self.requests if r.path.startswith(prefix)]

    # --- the API ------------------------------------------------------------------------

    def _run_json(self, run: _Run) -> dict:
        """The run as ``runs/get`` shows it at its current step, then advance one step."""
        n = len(run.order)
        fail_at = run.order.index(run.plan.fail_task) if run.plan.fail_task in run.order else None
        last = (fail_at if fail_at is not None else n - 1)
        # step 0: everything pending; step s: task s-1 running, those before it done;
        # after the last (or the failing) task: terminal
        finished = run.step > last + 1
        current = run.step - 1
        tasks = []
        for i, key in enumerate(run.order):
            if finished and fail_at is not None and i == fail_at:
                state = {"life_cycle_state": "TERMINATED", "result_state": "FAILED",
                         "state_message": "Workload failed, see run output for details"}
            elif finished and fail_at is not None and i > fail_at:
                state = {"life_cycle_state": "TERMINATED", "result_state": "UPSTREAM_FAILED",
                         "state_message": "Upstream task failed"}
            elif finished or i < current:
                state = {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""}
            elif i == current:
                state = {"life_cycle_state": "RUNNING", "state_message": "In run"}
            else:
                state = {"life_cycle_state": "PENDING", "state_message": ""}
            task_run = run.task_run_ids.setdefault(key, run.run_id * 100 + i)
            tasks.append({"task_key": key, "run_id": task_run, "state": state,
                          "run_page_url": f"{self.host}/#job/{run.job_id}/run/{task_run}"})
        if finished:
            state = {"life_cycle_state": "TERMINATED", "result_state": "FAILED" if fail_at is not None else "SUCCESS",
                     "state_message": ""}
        else:
            state = {"life_cycle_state": "PENDING" if run.step == 0 else "RUNNING", "state_message": ""}
            run.step += 1
        return {"run_id": run.run_id, "job_id": run.job_id, "state": state, "tasks": tasks,
                "run_page_url": f"{self.host}/#job/{run.job_id}/run/{run.run_id}"}

    def _output(self, task_run_id: int) -> dict:
        for run in self.runs.values():
            for key, rid in run.task_run_ids.items():
                if rid == task_run_id and key == run.plan.fail_task:
                    return {"error": run.plan.error, "error_trace": "Traceback ...", "metadata": {"run_id": rid}}
        return {"metadata": {"run_id": task_run_id}}

    def handle(self, req: Request) -> tuple[int, Any]:
        p, q, body = req.path, req.query, req.body
        for prefix, (status, code, message) in self.refuse.items():
            if p.startswith(prefix):
                return status, {"error_code": code, "message": message}
        with self._lock:
            if p == "/.well-known/databricks-config":
                return 200, {}
            if p == "/api/2.0/preview/scim/v2/Me":
                return 200, {"id": "1", "userName": self.user_name, "active": True}
            if p.startswith("/api/2.0/fs/directories/"):
                self.directories.add(p[len("/api/2.0/fs/directories"):])
                return 200, {}
            if p.startswith("/api/2.0/fs/files/") and req.method == "PUT":
                target = p[len("/api/2.0/fs/files"):]
                if not target.startswith("/Volumes/"):
                    return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"not a volume path: {target}"}
                self.files[target] = body
                return 200, None
            if p == "/api/2.0/workspace/mkdirs":
                self.directories.add(body["path"])
                return 200, {}
            if p == "/api/2.0/workspace/import":
                self.workspace[body["path"]] = body["content"]
                return 200, {}
            if p == "/api/2.2/jobs/create":
                job_id = self._next_job
                self._next_job += 1
                self.jobs[job_id] = body
                return 200, {"job_id": job_id}
            if p == "/api/2.2/jobs/reset":
                if body["job_id"] not in self.jobs:
                    return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Job {body['job_id']} does not exist."}
                self.jobs[body["job_id"]] = body["new_settings"]
                return 200, {}
            if p == "/api/2.2/jobs/list":
                name = (q.get("name") or [None])[0]
                found = [{"job_id": j, "settings": {"name": s["name"]}} for j, s in sorted(self.jobs.items())
                         if name is None or s["name"].lower() == name.lower()]
                return 200, ({"jobs": found} if found else {})
            if p == "/api/2.2/jobs/get":
                job_id = int(q["job_id"][0])
                if job_id not in self.jobs:
                    return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Job {job_id} does not exist."}
                return 200, {"job_id": job_id, "settings": self.jobs[job_id]}
            if p == "/api/2.2/jobs/run-now":
                token = body.get("idempotency_token")
                if token and token in self.tokens:
                    return 200, {"run_id": self.tokens[token]}
                job_id = body["job_id"]
                if job_id not in self.jobs:
                    return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Job {job_id} does not exist."}
                run_id = self._next_run
                self._next_run += 1
                self.runs[run_id] = _Run(run_id, job_id, _topological(self.jobs[job_id].get("tasks") or []),
                                         self.plan)
                if token:
                    self.tokens[token] = run_id
                return 200, {"run_id": run_id, "number_in_job": run_id}
            if p == "/api/2.2/jobs/runs/get":
                run_id = int(q["run_id"][0])
                if run_id not in self.runs:
                    return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id} does not exist."}
                return 200, self._run_json(self.runs[run_id])
            if p == "/api/2.2/jobs/runs/get-output":
                return 200, self._output(int(q["run_id"][0]))
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {req.method} {p}"}

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, obj: Any) -> None:
                data = b"" if obj is None else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                ctype = self.headers.get("Content-Type") or ""
                if ctype.startswith("multipart/form-data"):
                    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
                    form = {}
                    for part in msg.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        form[name] = part.get_payload(decode=True)
                    return {k: (v if k == "content" else v.decode()) for k, v in form.items()}
                if ctype.startswith("application/json") and raw:
                    return json.loads(raw)
                return raw

            def _handle(self) -> None:
                u = urlparse(self.path)
                req = Request(self.command, unquote(u.path), parse_qs(u.query), self._body(), dict(self.headers))
                double.requests.append(req)
                code, obj = double.handle(req)
                self._reply(code, obj)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        return Handler
