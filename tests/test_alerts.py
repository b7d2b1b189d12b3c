"""Alerts: failed checks and failed runs become exactly one alert each, in the log and on a real HTTP
webhook on loopback; freshness checks fail when Kafka holds events that silver and gold have not seen."""

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from assets.clickstream.freshness import clickstream_freshness_checks, evaluate_freshness
from demo.clickstream import event, irregular
from resources import AlertsResource
from sensors.alerts import asset_check_alert_sensor, main, run_failure_alert_sensor
from tests.clickstream_pipeline import ASSETS, CHECKS, produce, run_pipeline, valid_event
from tests.conftest import ROOT

UI = "http://dagster.example:3000"
NOON = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POSTed JSON body."""

    def __init__(self) -> None:
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def failed_evaluations(instance: dg.DagsterInstance, asset: str, check: str):
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
    return [r for r in history if r.status.value == "FAILED"]


def test_a_failed_warn_check_posts_exactly_one_alert_to_the_webhook(
    kafka, lake, warehouse, resources, instance, receiver, tmp_path
):
    # 3 bad messages among 23 (13 %, all dated by their own sound timestamp): quarantine_rate_check
    # fails with WARN; the run still succeeds.
    base = event(NOON, "click", "user_9", "web", ("SKU-9", "Nine"))
    bad = [irregular(kind, base) for kind in ("unknown_event_name", "missing_user", "unknown_platform")]
    good = [valid_event(NOON + dt.timedelta(seconds=i), user=f"user_{i}") for i in range(20)]
    produce(kafka, [*bad, *good])
    assert run_pipeline(instance, resources) == [NOON.date().isoformat()]
    failed = failed_evaluations(instance, "quarantine_clickstream_events", "quarantine_rate_check")
    evaluation = failed[0].evaluation if len(failed) == 1 else None
    assert evaluation is not None and evaluation.severity == dg.AssetCheckSeverity.WARN

    log = tmp_path / "alerts" / "alerts.jsonl"
    alerts = AlertsResource(log_path=str(log), webhook_url=receiver.url, ui_url=UI)
    defs = dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        sensors=[asset_check_alert_sensor],
        resources={**resources, "alerts": alerts},
    )

    def tick(cursor: str | None):
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources={"alerts": alerts}
        )
        asset_check_alert_sensor(context)
        return context.cursor

    def all_failed() -> int:  # every failed evaluation of every check (other checks may fail too)
        keys = defs.get_repository_def().asset_graph.asset_check_keys
        return sum(len(failed_evaluations(instance, k.asset_key.to_user_string(), k.name)) for k in keys)

    cursor = tick(None)
    assert len(receiver.bodies) == all_failed() >= 1, [b["text"] for b in receiver.bodies]
    (body,) = [b for b in receiver.bodies if "quarantine_rate_check" in b["text"]]
    run_id, date = failed[0].run_id, NOON.date().isoformat()
    assert set(body) == {"text", "blocks"}
    for expected in ("quarantine_clickstream_events", "quarantine_rate_check", date, "WARN", f"{UI}/runs/{run_id}"):
        assert expected in body["text"], (expected, body["text"])
    assert "quarantine_rate=0.1304" in body["text"] and "threshold=0.05" in body["text"]
    assert any(f"<{UI}/runs/{run_id}|" in json.dumps(block) for block in body["blocks"])
    (alert,) = [row for row in log_lines(log) if row["type"] == "alert" and row["check"] == "quarantine_rate_check"]
    assert alert["asset"] == "quarantine_clickstream_events" and alert["check"] == "quarantine_rate_check"
    assert alert["partition"] == date and alert["severity"] == "WARN" and alert["run_id"] == run_id
    deliveries = [row["status"] for row in log_lines(log) if row["type"] == "delivery"]
    assert deliveries == ["delivered"] * len(receiver.bodies)
    posted = len(receiver.bodies)

    # Passed checks never alert; later ticks (with the cursor, or with the cursor lost) repeat nothing.
    size = log.stat().st_size
    tick(cursor)
    tick(None)
    assert len(receiver.bodies) == posted
    assert log.stat().st_size == size

    # The next failing evaluation (a second batch for the same date) is one new alert, and only it.
    produce(kafka, [irregular(kind, base) for kind in ("wrong_type_user_id", "unknown_event_name")])
    run_pipeline(instance, resources)
    rate_failures = failed_evaluations(instance, "quarantine_clickstream_events", "quarantine_rate_check")
    assert len(rate_failures) >= 2
    tick(cursor)
    assert len(receiver.bodies) == all_failed() > posted
    rates = [row for row in log_lines(log) if row["type"] == "alert" and row["check"] == "quarantine_rate_check"]
    assert sorted((r["run_id"], r["partition"]) for r in rates) == sorted(
        (f.run_id, f.partition) for f in rate_failures
    )
    assert len([row for row in log_lines(log) if row["type"] == "alert"]) == len(receiver.bodies)


def test_an_unreachable_webhook_keeps_the_alert_and_delivers_it_later(receiver, tmp_path):
    from resources import Alert

    log = tmp_path / "alerts.jsonl"
    closed = f"http://127.0.0.1:{receiver.server.server_port + 1}/nobody"  # almost surely nothing listens
    down = AlertsResource(log_path=str(log), webhook_url=closed, webhook_timeout_seconds=2)
    alert = Alert(id="check:a:c::r1", kind="asset_check", title="t", reason="r", asset="a", check="c", run_id="r1")
    assert down.send(alert) is True
    assert down.send(alert) is False  # the same id again: nothing
    assert [(e["id"], e["delivery"], e["attempts"]) for e in down.alerts()] == [("check:a:c::r1", "failed", 1)]

    up = AlertsResource(log_path=str(log), webhook_url=receiver.url)
    assert up.retry_undelivered() == 1
    assert up.retry_undelivered() == 0
    assert len(receiver.bodies) == 1 and "r1" in json.dumps(receiver.bodies[0])
    assert [(e["delivery"], e["attempts"]) for e in up.alerts()] == [("delivered", 2)]


def test_a_failed_run_is_exactly_one_alert(instance, tmp_path):
    @dg.asset
    def exploding_asset() -> None:
        raise ValueError("the upstream file is truncated")

    result = dg.materialize([exploding_asset], instance=instance, raise_on_error=False)
    assert not result.success
    log = tmp_path / "alerts.jsonl"
    alerts = AlertsResource(log_path=str(log), ui_url=UI)
    for _ in range(2):  # the daemon may see the same failure again after a restart: still one alert
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor",
            dagster_event=result.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources={"alerts": alerts},
        ).for_run_failure()
        run_failure_alert_sensor(context)
    (alert,) = log_lines(log)
    assert alert["kind"] == "run_failure" and alert["job"] == result.dagster_run.job_name
    assert alert["run_id"] == result.run_id and alert["url"] == f"{UI}/runs/{result.run_id}"
    assert "exploding_asset" in alert["reason"] and "the upstream file is truncated" in alert["reason"]


def test_freshness_fails_only_when_events_are_pending_and_the_asset_is_stale(kafka, lake, resources, instance):
    assets = ["silver_clickstream_events", "gold_clickstream_daily_metrics"]
    # No topic yet, nothing pending: fresh whatever the age.
    assert all(r.passed for r in evaluate_freshness(instance, kafka, assets, 10).values())

    # Events are pending and silver/gold were never updated: both checks fail, through the real job.
    produce(kafka, [valid_event(NOON, user=f"user_{i}") for i in range(5)])
    result = dg.materialize(
        [*ASSETS, *CHECKS, clickstream_freshness_checks],
        selection=dg.AssetSelection.checks(clickstream_freshness_checks),
        resources={**resources, "alerts": AlertsResource(freshness_minutes=10)},
        instance=instance,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"silver_freshness_check", "gold_freshness_check"}
    assert not any(e.passed for e in evaluations.values())
    assert "5 records pending" in (evaluations["silver_freshness_check"].description or "")

    # The pipeline catches up: nothing pending, fresh.
    run_pipeline(instance, resources)
    assert all(r.passed for r in evaluate_freshness(instance, kafka, assets, 10).values())

    # New events pending: fresh while silver and gold were updated recently, stale 11 minutes later.
    produce(kafka, [valid_event(NOON + dt.timedelta(minutes=1))])
    assert all(r.passed for r in evaluate_freshness(instance, kafka, assets, 10).values())
    later = evaluate_freshness(instance, kafka, assets, 10, now=time.time() + 11 * 60)
    assert not later["silver_clickstream_events"].passed and not later["gold_clickstream_daily_metrics"].passed
    assert later["silver_clickstream_events"].metadata["pending_records"].value == 1


def test_the_cli_lists_the_alert_log(tmp_path, capsys):
    from resources import Alert

    log = tmp_path / "alerts.jsonl"
    alerts = AlertsResource(log_path=str(log), ui_url=UI)
    for i in range(3):
        alerts.send(
            Alert(
                id=f"run:r{i}",
                kind="run_failure",
                title="Run failed",
                reason=f"boom number {i}",
                job="clickstream_gold_job",
                run_id=f"r{i}",
                url=alerts.run_url(f"r{i}"),
            )
        )
    assert main(["list", "--log", str(log), "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "SEV", "KIND"]
    assert len(lines) == 3 and "boom number 1" in lines[1] and "boom number 2" in lines[2]
    assert f"{UI}/runs/r2" in lines[2] and "clickstream_gold_job" in lines[2]

    # The module entry point, as an operator runs it, reading ALERT_LOG.
    listed = subprocess.run(
        [sys.executable, "-m", "sensors.alerts", "list"],
        cwd=ROOT,
        env={**os.environ, "ALERT_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert all(f"boom number {i}" in listed.stdout for i in range(3))


@dg.op
def _noop() -> None:
    pass


@dg.job(name="commerce_warehouse_job")
def _stand_in_job():
    _noop()


def test_a_run_whose_worker_could_not_load_the_job_alerts_with_the_real_error(instance, tmp_path):
    """The worker of a run imports the code location first; when that fails the run is failed "from outside",
    and the alert names the exception, class and message, from the run's event log."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._grpc.impl import core_execute_run

    broken = tmp_path / "broken_definitions.py"
    broken.write_text("raise FileNotFoundError('The dbt manifest dbt/target/manifest.json is missing')\n")
    recon_job = ReconstructableRepository.for_file(str(broken), "defs", str(tmp_path)).get_reconstructable_job(
        _stand_in_job.name
    )
    run = instance.create_run_for_job(job_def=_stand_in_job)
    with pytest.raises(Exception):  # noqa: B017 (whatever the loader raises; the event log keeps it)
        list(core_execute_run(recon_job, run, instance, inject_env_vars=False))
    run = instance.get_run_by_id(run.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    (failure,) = [e.dagster_event for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
    log = tmp_path / "alerts.jsonl"
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={"alerts": AlertsResource(log_path=str(log), ui_url=UI)},
    ).for_run_failure()
    run_failure_alert_sensor(context)
    (alert,) = log_lines(log)
    assert "Could not load job definition" in alert["reason"]
    assert "FileNotFoundError: The dbt manifest dbt/target/manifest.json is missing" in alert["reason"]
