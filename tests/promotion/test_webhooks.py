"""Registry events: a real `mlflow server` calls the registered webhook when the champion alias
moves, and the delivery carries a valid signature."""

from __future__ import annotations

import json
import threading
import time

import pytest

from cmle.errors import ConfigError
from cmle.promotion import events
from cmle.registry import Registry
from cmle.runner import run_stage
from tests.model.fabricate import bank, empty_mlflow_db, register_version, store  # noqa: F401
from tests.remote.servers import MlflowServer

SECRET = "s3cr3t-for-the-test"


@pytest.fixture
def server(tmp_path, empty_mlflow_db):
    """An `mlflow server` (free port, private folder) that may call a receiver on 127.0.0.1."""
    folder = tmp_path / "server"
    folder.mkdir()
    srv = MlflowServer(folder, str(folder / "artifacts"), db_template=empty_mlflow_db,
                       env={"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
                            "MLFLOW_WEBHOOK_CACHE_TTL": "1"}).start()
    yield srv
    srv.stop()


@pytest.fixture
def receiver(tmp_path):
    """The reference receiver (cmle.promotion.events) on a free port, recording headers too."""
    out = tmp_path / "events.jsonl"
    httpd = events.serve("127.0.0.1", 0, SECRET, out)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/hooks/cmle", out
    httpd.shutdown()
    httpd.server_close()


def _wait_for(path, predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        found = [x for x in lines if predicate(x)]
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no matching delivery within {timeout} s; got {lines}")


@pytest.mark.slow
def test_the_champion_alias_move_reaches_the_receiver_signed(server, receiver, settings, monkeypatch):
    url, out = receiver
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv(events.SECRET_ENV, SECRET)
    first = run_stage("webhook", settings, {"url": url})
    assert first["action"] == "created" and first["events"] == [events.ALIAS_CREATED]
    again = run_stage("webhook", settings, {"url": url})  # get-or-create by name: the same webhook
    assert again["webhook_id"] == first["webhook_id"] and again["action"] == "updated"
    name = settings.cloud.model_name
    from tests.model.fabricate import training_frame

    version = register_version(name, training_frame(3000, seed=11, shift=1.0))
    promoted = run_stage("promote", settings, {"bootstrap": 100})
    assert promoted["promoted"] and promoted["champion_version"] == version
    (delivery,) = _wait_for(out, lambda d: d["event"]["data"].get("alias") == "champion")
    event = delivery["event"]
    assert event["entity"] == "model_version_alias" and event["action"] == "created"
    assert event["data"] == {"name": name, "alias": "champion", "version": version}
    # the server signed what it sent with the webhook's secret
    assert delivery["headers"][events.SIGNATURE_HEADER].startswith("v1,")
    assert events.verify(SECRET, delivery["headers"], delivery["body"].encode(), max_age_s=600)
    assert not events.verify("another secret", delivery["headers"], delivery["body"].encode(), max_age_s=600)
    # a forged, altered or replayed delivery fails the check
    body = delivery["body"]
    stamp = str(int(time.time()))
    good = events.signature(SECRET, "d-1", stamp, body)
    headers = {events.DELIVERY_HEADER: "d-1", events.TIMESTAMP_HEADER: stamp}
    assert events.verify(SECRET, {**headers, events.SIGNATURE_HEADER: good}, body.encode())
    assert not events.verify("wrong", {**headers, events.SIGNATURE_HEADER: good}, body.encode())
    assert not events.verify(SECRET, {**headers, events.SIGNATURE_HEADER: good}, body.encode() + b" ")
    old = {events.DELIVERY_HEADER: "d-1", events.TIMESTAMP_HEADER: str(int(time.time()) - 3600),
           events.SIGNATURE_HEADER: events.signature(SECRET, "d-1", str(int(time.time()) - 3600), body)}
    assert not events.verify(SECRET, old, body.encode())  # a replay
    # the decision record names who was notified
    record = Registry.current().promotion_history(name)[-1]
    assert record["webhooks"] == [f"{events.DEFAULT_WEBHOOK_NAME} -> {url}"]


def test_a_local_store_has_no_webhooks_to_register(store, settings, monkeypatch):
    monkeypatch.setenv(events.SECRET_ENV, SECRET)
    with pytest.raises(ConfigError, match="fires no webhooks: only an MLflow tracking server"):
        run_stage("webhook", settings, {"url": "https://hooks.example.com/x"})
