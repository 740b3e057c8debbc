"""Make the pictures of the documentation (docs/img/) from a real local run.

    python docs/make_figures.py [--profiles 100000] [--end-date 2024-06-01] [--keep DIR [--reuse]] [--no-screenshot]

In a fresh working folder (a temporary one, or ``--keep DIR``) it runs, with the configuration
template and the embedded platform, exactly what a user runs:

1. ``cmle main --profiles N --end_date D`` (every other parameter at its default): version 1 of
   the model, aliases ``challenger`` and ``champion``;
2. ``cmle train --retrain true --families logreg``: version 2, alias ``challenger``;
3. ``cmle promote --mode dry_run``: the gate's decision recorded on version 2, no alias moved.

Then it copies the plots the stages logged as MLflow artifacts, unchanged, into docs/img/:
the holdout's lift and gains and calibration (``train`` of ``main``: version 1), the score
histogram (``score``), the reach curve (``audience``) and the email funnel (``explore``).

Last, it serves ``mlflow ui`` on that run's store (127.0.0.1, a free port) and takes screenshots
with headless Chromium (``apt-get install chromium``): the registered models with their aliased
versions (the "+1" alias menu opened), and the pages of version 1 (alias ``champion``, stage
Production, the promotion record in its description) and version 2 (alias ``challenger``, the
dry run's refusal in its description). Chromium
is driven over the DevTools protocol so that what the UI opens over the page on its own (the
assistant panel, a one-time dialog) can be closed first, with the UI's own close buttons; the
pages are not otherwise touched. Without Chromium no screenshot is made (the existing ones are
left as they are): it says so and exits 1; ``--no-screenshot`` skips them on purpose.

It prints what it made, with the registry's versions and aliases, as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
MODEL = "cmle_propensity_model"

# docs/img/<name>: (stage whose run logged it, artifact path)
PLOTS = {
    "lift_gains.png": ("train", "evaluation/lift_gains.png"),
    "calibration_curve.png": ("train", "evaluation/calibration_curve.png"),
    "score_histogram.png": ("score", "scores/score_histogram.png"),
    "reach_curve.png": ("audience", "audiences/reach_curve.png"),
    "explore_funnel.png": ("explore", "explore/funnel.png"),
}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMLE_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"))
    return env


def cmle(work: Path, *args: str) -> dict:
    """Run ``cmle <args>`` in ``work`` as a user would; return its JSON outputs."""
    started = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cmle.cli", *args], cwd=work, env=clean_env(),
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"cmle {' '.join(args)} failed (exit {res.returncode})")
    print(f"cmle {' '.join(args)}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return json.loads(res.stdout)


def copy_plots(work: Path) -> list[str]:
    """Copy the plots of the first pipeline run (the train run that made version 1, and the
    other stages' first runs) into docs/img/."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    client = MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list", order_by=["start_time ASC"])
    first = {}
    for run in runs:
        first.setdefault(run.data.tags.get("cmle.stage"), run.info.run_id)
    first["train"] = client.get_model_version(MODEL, "1").run_id
    IMG.mkdir(parents=True, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (stage, artifact) in PLOTS.items():
            local = client.download_artifacts(first[stage], artifact, tmp)
            shutil.copyfile(local, IMG / name)
            made.append(name)
    return made


def registry_state(work: Path) -> list[dict]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    out = []
    for found in sorted(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version)):
        v = client.get_model_version(MODEL, found.version)  # the search leaves aliases out
        out.append({"version": v.version, "aliases": sorted(v.aliases), "stage": v.current_stage,
                    "family": v.tags.get("cmle.family"), "holdout_roc_auc": v.tags.get("cmle.holdout_roc_auc")})
    return out


# ---------------------------------------------------------------------------------------------
# The screenshot: mlflow ui + headless Chromium over the DevTools protocol (a minimal WebSocket
# client, so that nothing beyond the standard library is needed).


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)


class DevTools:
    """Just enough of RFC 6455 and the DevTools protocol: send a command, wait for its answer."""

    def __init__(self, ws_url: str):
        u = urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise SystemExit(f"DevTools refused the connection: {head.decode(errors='replace')}")
        self.next_id = 0

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise SystemExit("DevTools closed the connection")
            buf += chunk
        return buf

    def _frame(self) -> bytes:
        data, fin = b"", False
        while not fin:
            b0, b1 = self._read(2)
            fin, length = bool(b0 & 0x80), b1 & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            data += self._read(length)
        return data

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                  bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                  bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            message = json.loads(self._frame())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise SystemExit(f"DevTools {method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


# Close what the UI opens on its own over the page: the assistant side panel (open by default on
# localhost) and the one-time "new Model Registry UI" dialog, each with its own close button.
CLOSE_OVERLAYS = """(() => {
  let closed = 0;
  const panel = document.querySelector('[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (panel) { panel.click(); closed++; }
  for (const button of document.querySelectorAll('[role="dialog"] button[aria-label="Close"]')) {
    button.click(); closed++;
  }
  return closed;
})()"""

# The aliases column of the models list shows one alias and "+N"; the others open in a menu, as
# for a user who tabs to "+N" and presses Enter.
OPEN_ALIAS_MENU = """(() => {
  const more = Array.from(document.querySelectorAll('button')).find(b => /^\\+\\d+$/.test(b.innerText.trim()));
  if (!more) return false;
  more.focus();
  return document.activeElement === more;
})()"""

# docs/img/<name>: (page of the UI, text it shows once loaded, open the alias menu, height of the picture)
SCREENSHOTS = {
    "mlflow_registry.png": ("#/models", "cmle_propensity_model", True, 300),
    "mlflow_version_champion.png": (f"#/models/{MODEL}/versions/1", "promotion enabled", False, 380),
    "mlflow_version_challenger.png": (f"#/models/{MODEL}/versions/2", "promotion dry_run", False, 380),
}


def screenshots(work: Path, width: int = 1440, height: int = 900) -> list[str]:
    """Serve ``mlflow ui`` on the run's store and photograph the pages of :data:`SCREENSHOTS`."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no Chromium found (apt-get install chromium): the MLflow UI screenshots were not made; "
                         "run with --no-screenshot to make the plots only")
    port = free_port()
    made = []
    with tempfile.TemporaryDirectory() as profile:
        ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                               f"sqlite:///{work / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=work, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        chrome = None
        try:
            wait_http(f"http://127.0.0.1:{port}/", 120)
            chrome = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                                       "--hide-scrollbars", "--no-first-run", "--remote-debugging-port=0",
                                       f"--user-data-dir={profile}", f"--window-size={width},{height}",
                                       "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
            active = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not (active.is_file() and len(active.read_text().splitlines()) >= 2):
                if time.monotonic() > deadline:
                    raise SystemExit("Chromium did not open its DevTools port")
                time.sleep(0.2)
            dt_port = int(active.read_text().splitlines()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{dt_port}/json/list", timeout=10) as r:
                page = next(t for t in json.load(r) if t["type"] == "page")
            dt = DevTools(page["webSocketDebuggerUrl"])
            dt.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                    mobile=False)
            for name, (fragment, shows, alias_menu, clip_height) in SCREENSHOTS.items():
                dt.call("Page.navigate", url=f"http://127.0.0.1:{port}/{fragment}")
                deadline = time.monotonic() + 90
                while not dt.evaluate(f"document.body && document.body.innerText.includes({json.dumps(shows)})"):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the UI's page {fragment} did not show {shows!r} within 90 s")
                    time.sleep(0.5)
                time.sleep(3.0)  # the UI opens its panel and dialogs after the data
                dt.evaluate(CLOSE_OVERLAYS)
                time.sleep(1.0)
                if alias_menu and dt.evaluate(OPEN_ALIAS_MENU):
                    for kind in ("keyDown", "keyUp"):
                        dt.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                                windowsVirtualKeyCode=13, nativeVirtualKeyCode=13)
                time.sleep(2.0)  # let the layout settle
                shot = dt.call("Page.captureScreenshot", format="png",
                               clip={"x": 0, "y": 0, "width": width, "height": clip_height, "scale": 1})
                (IMG / name).write_bytes(base64.b64decode(shot["data"]))
                made.append(name)
        finally:
            for proc in (chrome, ui):
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, 15)  # the process groups started here, and nothing else
                    proc.wait(timeout=30)
    return made


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--end-date", default="2024-06-01", help="the synthetic data's end date (fixed, so the "
                        "pictures do not change with the day they are made)")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR (kept) instead of a temporary folder")
    parser.add_argument("--no-screenshot", action="store_true", help="make the plots only")
    parser.add_argument("--reuse", action="store_true", help="with --keep: take the pictures from the runs "
                        "already in DIR instead of running the stages again")
    args = parser.parse_args(argv)
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep DIR")

    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="cmle-figures-")
    work = Path(args.keep or tmp.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "conf", work / "conf", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.local.ini"))
    try:
        decision = {}
        if not args.reuse:
            cmle(work, "main", "--profiles", str(args.profiles), "--end_date", args.end_date)
            cmle(work, "train", "--retrain", "true", "--families", "logreg")
            decision = cmle(work, "promote", "--mode", "dry_run")
        made = copy_plots(work)
        if not args.no_screenshot:
            made += screenshots(work)
        print(json.dumps({"work": str(work), "made": [f"docs/img/{m}" for m in made],
                          "registry": registry_state(work),
                          "promote_dry_run": {k: decision.get(k) for k in ("status", "reason", "promoted")}},
                         indent=2, default=str))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
