"""Dagster's production topology, run for real: the webserver, the daemon and the code server as separate
processes (as the official Helm chart runs them) sharing one instance on PostgreSQL
(platform/dagster-production.yaml): events stream to silver and gold, a failed check becomes an alert, and a
run launched through GraphQL succeeds. Ingest runs as two shards. The same Definitions as on the laptop; only
the environment differs."""

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_graphql import DagsterGraphQLClient
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from assets.clickstream.names import CONSUMER_GROUP, DAILY_METRICS_TABLE, QUARANTINE_TABLE, SILVER_TABLE, TOPIC
from assets.streaming import SHARD_TAG
from bench.common import stop_dagster_dev
from resources import AlertsResource, KafkaResource, LakeResource
from sensors.clickstream import clickstream_ingest_job
from tests.clickstream_pipeline import produce, query, valid_event
from tests.conftest import ROOT, free_port

PRODUCTION_YAML = ROOT / "platform" / "dagster-production.yaml"


@pytest.fixture
def dagster_db(postgres_server: dict) -> dict[str, str]:
    """A fresh database for Dagster's storage on the project's PostgreSQL server: the DAGSTER_PG_* settings."""
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    connection = psycopg2.connect(
        host="127.0.0.1",
        port=postgres_server["POSTGRES_PORT"],
        dbname=postgres_server["POSTGRES_DB"],
        user=postgres_server["POSTGRES_USER"],
        password=postgres_server["POSTGRES_PASSWORD"],
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": postgres_server["POSTGRES_PORT"],
        "DAGSTER_PG_DB": name,
        "DAGSTER_PG_USERNAME": postgres_server["POSTGRES_USER"],
        "DAGSTER_PG_PASSWORD": postgres_server["POSTGRES_PASSWORD"],
    }


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    return home


def test_production_instance_keeps_everything_in_postgres_with_queue_limits_monitoring_and_retries(
    tmp_path, dagster_db, monkeypatch
):
    for name, value in dagster_db.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(_home(tmp_path))) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits  # type: ignore[union-attr]
        assert {"key": "dagster/backfill", "limit": 6} in limits
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 21600
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        # A following run's own limit is far below the instance's and far above its longest legal run.
        assert 240 < int(clickstream_ingest_job.tags["dagster/max_runtime"]) < 21600


def _wait(condition, timeout: float, what: str, processes: dict[str, subprocess.Popen]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [name for name, process in processes.items() if process.poll() is not None]
        assert not dead, f"{dead} exited while waiting for {what}"
        if value := condition():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_webserver_daemon_and_code_server_as_separate_processes_on_postgres(kafka_broker, tmp_path, dagster_db):
    home = _home(tmp_path)
    lake_root = tmp_path / "lake"
    grpc_port, web_port = free_port(), free_port()
    overrides = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # dbt beside this interpreter
        "DAGSTER_HOME": str(home),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "LAKE_ROOT": str(lake_root),
        "DUCKDB_DATABASE": str(tmp_path / "warehouse.duckdb"),
        "ALERT_LOG": str(tmp_path / "alerts.jsonl"),
        "LANDING_ROOT": str(tmp_path / "input"),
        "DAGSTER_UI_URL": f"http://127.0.0.1:{web_port}",
        "INGEST_SHARDS": "2",  # the topic's 3 partitions split over two following runs
        **dagster_db,
    }
    sourced = subprocess.run(
        ["bash", "-c", "source platform/env.sh && env -0"],
        cwd=ROOT,
        env={**os.environ, **overrides},
        capture_output=True,
        check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in sourced.decode().split("\0") if "=" in line)
    env["DAGSTER_HOME"] = str(home)  # env.sh would otherwise copy the laptop's instance over it
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n      location_name: platform\n"
    )
    bin_dir = Path(sys.executable).parent
    commands = {
        "code-server": [
            bin_dir / "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", str(grpc_port),
            "-f", "platform/definitions.py", "-d", str(ROOT), "--location-name", "platform",
        ],
        "daemon": [bin_dir / "dagster-daemon", "run", "-w", str(workspace)],
        "webserver": [bin_dir / "dagster-webserver", "-h", "127.0.0.1", "-p", str(web_port), "-w", str(workspace)],
    }  # fmt: skip
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in commands}  # noqa: SIM115 (closed in finally)
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            processes[name] = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True
            )

        def webserver_up() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{web_port}/server_info", timeout=2).status == 200
            except OSError:
                return False

        _wait(webserver_up, 120, "the webserver", processes)

        # The stream: the daemon's Kafka sensor starts an ingest run per shard in run workers of the code
        # server; they append silver and publish gold on the same tables. Only this test's events are pending
        # for the consumer group.
        kafka = KafkaResource(bootstrap_servers=kafka_broker)
        kafka.ensure_topic(TOPIC, 3)
        kafka.commit(
            TOPIC, CONSUMER_GROUP, {p: end for p, (_, end) in kafka.pending_offsets(TOPIC, CONSUMER_GROUP).items()}
        )
        noon = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
        day = noon.date().isoformat()
        # 200 events of yesterday and, every 11th message, one that is not JSON: it has no event time, so it
        # is quarantined under the broker's date (today), where it is all there is: the quarantine-rate check
        # of that date fails (it warns above 5 %) and the alert sensor raises an alert.
        today = dt.datetime.now(dt.UTC).date().isoformat()
        events = [valid_event(noon + dt.timedelta(seconds=i), user=f"u{i % 50}") for i in range(200)]
        produce(kafka, [m for i, e in enumerate(events) for m in ([e, b"{not json"] if i % 10 == 9 else [e])])
        lake = LakeResource(root=str(lake_root))

        def rows(table: str, sql: str) -> int:
            return lake.table(table) is not None and query(sql, lake, table)[0][0] or 0

        _wait(lambda: rows(SILVER_TABLE, "SELECT count(*) FROM t") == 200, 150, "200 events in silver", processes)
        gold_sql = f"SELECT sum(events) FROM t WHERE event_date = '{day}'"
        _wait(lambda: rows(DAILY_METRICS_TABLE, gold_sql) == 200, 120, "gold from the stream's run", processes)

        # A materialization launched through the webserver's GraphQL API, queued and run by the daemon: the
        # daily close of the date (silver and gold rebuilt from bronze, whole-date checks).
        client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
        run_id = client.submit_job_execution(
            "clickstream_daily_job", repository_location_name="platform", tags={"dagster/partition": day}
        )
        status = _wait(
            lambda: (
                (s := client.get_run_status(run_id)) in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE) and s
            ),
            180,
            "the GraphQL-launched daily close",
            processes,
        )
        assert status == dg.DagsterRunStatus.SUCCESS
        assert rows(DAILY_METRICS_TABLE, gold_sql) == 200

        # The stream's checks ran and the failed one became exactly one alert, with a link into this UI.
        def quarantine_alerts() -> list[dict]:
            alerts = AlertsResource(log_path=env["ALERT_LOG"]).alerts()
            return [a for a in alerts if a.get("check") == "quarantine_rate_check"]

        (alert,) = _wait(quarantine_alerts, 90, "the quarantine-rate alert", processes)
        assert alert["kind"] == "asset_check" and alert["partition"] == today
        assert alert["url"].startswith(f"http://127.0.0.1:{web_port}/")
        assert rows(QUARANTINE_TABLE, "SELECT count(*) FROM t") == 20

        # Every run is recorded in PostgreSQL, not in a file under DAGSTER_HOME.
        with (
            psycopg2.connect(
                host="127.0.0.1",
                port=dagster_db["DAGSTER_PG_PORT"],
                dbname=dagster_db["DAGSTER_PG_DB"],
                user=dagster_db["DAGSTER_PG_USERNAME"],
                password=dagster_db["DAGSTER_PG_PASSWORD"],
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", (run_id,))
            assert cursor.fetchall() == [("clickstream_daily_job", "SUCCESS")]
            cursor.execute(
                "SELECT DISTINCT t.value FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
                "WHERE r.pipeline_name = 'clickstream_ingest_job' AND t.key = %s",
                (SHARD_TAG,),
            )
            assert sorted(v for (v,) in cursor.fetchall()) == ["0/2", "1/2"]  # both shards ran
        assert not list(home.glob("**/*.db")), "no SQLite storage may be created"
    finally:
        for process in reversed(list(processes.values())):
            stop_dagster_dev(process, str(home))
        for log in logs.values():
            log.close()
