"""`dagster dev` headless, as a data engineer runs it: the Kafka sensor alone brings events to silver."""

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from assets.clickstream.names import SILVER_TABLE
from bench.common import stop_dagster_dev
from resources import KafkaResource, LakeResource
from tests.clickstream_pipeline import produce, valid_event
from tests.conftest import ROOT, free_port


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_dagster_dev_sensor_materializes_events_as_they_arrive(kafka_broker, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "platform" / "dagster.yaml", home / "dagster.yaml")
    lake = tmp_path / "lake"
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # dbt beside this interpreter
        "DAGSTER_HOME": str(home),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "LAKE_ROOT": str(lake),
        "DUCKDB_DATABASE": str(tmp_path / "warehouse.duckdb"),
        "ALERT_LOG": str(tmp_path / "alerts.jsonl"),
        "DAGSTER_UI_URL": f"http://127.0.0.1:{port}",
        "LANDING_ROOT": str(tmp_path / "input"),
    }
    # Everything else as `make demo` has it: platform/env.sh's defaults, under the settings above.
    sourced = subprocess.run(
        ["bash", "-c", "source platform/env.sh && env -0"], cwd=ROOT, env=env, capture_output=True, check=True
    ).stdout
    env = dict(line.split("=", 1) for line in sourced.decode().split("\0") if "=" in line)
    log = open(tmp_path / "dagster-dev.log", "w")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def up():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).status == 200
            except OSError:
                return False

        _wait(up, 180, "the Dagster webserver")
        noon = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
        produced_at = time.monotonic()
        produce(KafkaResource(bootstrap_servers=kafka_broker), [valid_event(noon, user=f"u{i}") for i in range(200)])

        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            silver = dg.AssetKey("silver_clickstream_events")
            _wait(lambda: instance.get_latest_materialization_event(silver), 240, "a silver materialization")
        seconds = time.monotonic() - produced_at
        assert LakeResource(root=str(lake)).scan(SILVER_TABLE).num_rows == 200
        print(f"produce -> silver materialized under dagster dev: {seconds:.1f}s")
    finally:
        stop_dagster_dev(server, str(home))
        log.close()
