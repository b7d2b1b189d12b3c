"""Overload soak: the demo's workload on a machine whose cores are taken by competing processes.

`platform/demo.sh` runs in a sandbox of its own (its own Kafka, PostgreSQL, lake, Dagster instance and
ports): the clickstream replay and its live stream, the loans' landing file and Kafka stream, the
buyer changes and checkout events, and the commerce source, whose ten days are then requested as runs.
Once Dagster is up, CPU hogs (plain busy loops at the platform's own priority, two per core) run for
`--minutes`, then stop; so does the stream's producer. Then the soak waits for the platform to drain
(nothing pending in Kafka, no queued or starting run but the streams' own), and asserts:

- every produced message is in its bronze table exactly once (offsets against the topics' end offsets);
- every date's latest nothing-lost check passed, in every domain (silver + quarantine + duplicates =
  bronze, the same for decisions, loans and changes);
- the landed loan file is in the raw table once, and every requested warehouse date succeeded;
- the queue drained within `--drain-minutes` after the load ended.

With them, each sensor's tick durations from the start of the load (Dagster gives a tick 60 s).

It prints and saves the figures: messages, files and changes in and out, failed and retried runs, the
drain time, the load average.

    make soak                   # python -m bench.soak --minutes 10
"""

import argparse
import contextlib
import datetime as dt
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.common import ROOT, free_port, report

ACTIVE = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10, help="how long the CPU hogs run")
    parser.add_argument("--hogs-per-core", type=int, default=2)
    parser.add_argument("--drain-minutes", type=float, default=15, help="the longest drain that passes")
    parser.add_argument("--rate", type=int, default=100, help="clickstream events/s streamed during the load")
    args = parser.parse_args()
    sandbox = Path(tempfile.mkdtemp(prefix="soak-"))
    os.chmod(sandbox, 0o755)  # PostgreSQL's own user enters its data directory below
    env = sandbox_env(sandbox, args.rate)
    demo = subprocess.Popen(
        [str(ROOT / "platform" / "demo.sh")],
        cwd=ROOT,
        env=env,
        stdout=open(sandbox / "demo.log", "w"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    hogs: list[subprocess.Popen] = []
    try:
        ui = f"http://127.0.0.1:{env['DAGSTER_PORT']}"
        wait_for(lambda: _up(ui), 600, f"Dagster did not come up at {ui} (see {sandbox / 'demo.log'})")
        print(f"[soak] platform up at {ui}; sandbox {sandbox}", flush=True)
        warehouse_dates = request_warehouse_dates(ui)
        load, load_started = [], time.time()
        hogs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.hogs_per_core * (os.cpu_count() or 2))
        ]
        print(f"[soak] {len(hogs)} CPU hogs for {args.minutes} min", flush=True)
        load_ends = time.monotonic() + args.minutes * 60
        while time.monotonic() < load_ends:
            time.sleep(30)
            load.append(os.getloadavg()[0])
            print(f"[soak] load average {load[-1]:.1f}, {int(load_ends - time.monotonic())} s of load left", flush=True)
        for hog in hogs:
            hog.kill()
        subprocess.run([str(ROOT / "platform" / "procs.sh"), "stop", "demo-producer"], env=env, check=False)
        ended = time.monotonic()
        print("[soak] load over, producer stopped; waiting for the platform to drain", flush=True)
        with _environment(env):
            check = Verification(env)
            drained = wait_for(check.drained, args.drain_minutes * 60, "the platform did not drain in time")
            drain_seconds = time.monotonic() - ended
            figures = check.exactly_once(warehouse_dates) | check.sensor_ticks(load_started)
        figures |= {"drain_seconds": round(drain_seconds, 1), "drained": drained, "load_average_max": max(load)}
        report(
            "soak",
            {"minutes": args.minutes, "hogs": len(hogs), "cores": os.cpu_count(), "clickstream_rate": args.rate},
            [figures],
        )
        assert drain_seconds <= args.drain_minutes * 60
    finally:
        for hog in hogs:
            hog.kill()
        subprocess.run([str(ROOT / "platform" / "procs.sh"), "stop"], env=env, check=False)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, 15)
        for script in ("kafka.sh", "postgres.sh"):
            subprocess.run([str(ROOT / "platform" / script), "stop"], env=env, check=False, capture_output=True)


def sandbox_env(sandbox: Path, rate: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(sandbox / "dagster"),
        "LAKE_ROOT": str(sandbox / "lake"),
        "DUCKDB_DATABASE": str(sandbox / "warehouse.duckdb"),
        "LANDING_ROOT": str(sandbox / "input"),
        "ALERT_LOG": str(sandbox / "alerts.jsonl"),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_STATE_DIR": str(sandbox / "kafka"),
        "POSTGRES_PORT": str(free_port()),
        "POSTGRES_STATE_DIR": str(sandbox / "postgres"),
        "PROCS_STATE_DIR": str(sandbox / "procs"),
        "DEMO_STATE_DIR": str(sandbox / "demo"),
        "DAGSTER_PORT": str(free_port()),
        "DEMO_RATE": str(rate),
    }
    env["DAGSTER_UI_URL"] = f"http://127.0.0.1:{env['DAGSTER_PORT']}"
    sourced = subprocess.run(
        ["bash", "-c", "source platform/env.sh && env -0"], cwd=ROOT, env=env, capture_output=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in sourced.decode().split("\0") if "=" in line)


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _up(ui: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"{ui}/server_info", timeout=5).ok
    return False


def wait_for(condition, seconds: float, failure: str) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(5)
    raise AssertionError(failure)


def request_warehouse_dates(ui: str) -> list[str]:
    """The commerce warehouse's ten demo days, one run each, as an operator's backfill would."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=int(ui.rsplit(":", 1)[1]))
    today = dt.datetime.now(dt.UTC).date()
    dates = [(today - dt.timedelta(days=d)).isoformat() for d in range(10, 0, -1)]
    for day in dates:
        client.submit_job_execution("commerce_warehouse_job", tags={"dagster/partition": day})
    return dates


class Verification:
    """Reads the sandbox's instance, Kafka and lake."""

    def __init__(self, env: dict[str, str]):
        import dagster as dg

        spec = importlib.util.spec_from_file_location("soak_definitions", ROOT / "platform" / "definitions.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.defs: dg.Definitions = module.defs
        self.instance = dg.DagsterInstance.get()
        from resources import KafkaResource, LakeResource

        self.kafka = KafkaResource(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
        self.lake = LakeResource(root=env["LAKE_ROOT"])

    def streams(self):
        from assets.clickstream.bronze import CLICKSTREAM_STREAM
        from assets.fraud.common import CHANGES_STREAM, EVENTS_STREAM
        from assets.loans.raw import LOANS_STREAM

        return [CLICKSTREAM_STREAM, EVENTS_STREAM, CHANGES_STREAM, LOANS_STREAM]

    def drained(self) -> bool:
        import dagster as dg

        for stream in self.streams():
            pending = self.kafka.pending_offsets(self.kafka.topic(stream.topic), self.kafka.group(stream.group_id))
            if any(end > start for start, end in pending.values()):
                return False
        queued = self.instance.get_run_records(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED])
        )
        batch = self.instance.get_run_records(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
        )
        following = [r for r in batch if "platform/topic" in r.dagster_run.tags]
        return not queued and len(batch) == len(following)

    def exactly_once(self, warehouse_dates: list[str]) -> dict:
        import dagster as dg
        from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

        figures: dict = {}
        for stream in self.streams():
            topic = self.kafka.topic(stream.topic)
            ends = self.kafka.pending_offsets(topic, self.kafka.group(stream.group_id))
            produced = sum(end for _, end in ends.values())
            bronze = self.lake.scan(stream.bronze_table, columns=["partition", "offset"])
            offsets = set(zip(bronze["partition"].to_pylist(), bronze["offset"].to_pylist(), strict=True))
            figures[f"{stream.topic} produced"] = produced
            figures[f"{stream.topic} in bronze"] = bronze.num_rows
            assert bronze.num_rows == len(offsets) == produced, (stream.topic, bronze.num_rows, len(offsets), produced)
        graph = self.defs.resolve_asset_graph()
        for key in graph.asset_check_keys:
            if not key.name.endswith("nothing_lost_check"):
                continue
            history = self.instance.event_log_storage.get_asset_check_execution_history(key, limit=100_000)
            latest: dict = {}
            for record in history:  # newest first
                latest.setdefault(record.partition, record.status)
            failed = [p for p, status in latest.items() if status == AssetCheckExecutionRecordStatus.FAILED]
            figures[f"{key.asset_key.to_user_string()} nothing lost (partitions)"] = len(latest)
            assert not failed, (key, failed)
        from assets.loans.names import RAW_FILES_DATASET

        files = self.lake.scan(RAW_FILES_DATASET)
        figures["loan files landed / in raw"] = f"1 / {files.num_rows}"
        assert files.num_rows == 1
        runs = self.instance.get_run_records(dg.RunsFilter(job_name="commerce_warehouse_job"))
        succeeded = {
            r.dagster_run.tags.get("dagster/partition")
            for r in runs
            if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        }
        figures["warehouse dates requested / succeeded"] = (
            f"{len(warehouse_dates)} / {len(succeeded & set(warehouse_dates))}"
        )
        assert set(warehouse_dates) <= succeeded
        every = self.instance.get_run_records()
        figures["runs"] = len(every)
        figures["runs failed"] = sum(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in every)
        figures["runs retried"] = sum("dagster/retry_number" in r.dagster_run.tags for r in every)
        return figures

    def sensor_ticks(self, since: float) -> dict:
        """Per sensor, the duration of its ticks since `since` (p50, p95, max seconds; Dagster's limit is 60)."""
        from dagster._core.definitions.run_request import InstigatorType

        figures = {}
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            ticks = self.instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
            took = sorted(t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp)
            if took:
                p95 = took[min(len(took) - 1, int(len(took) * 0.95))]
                figures[f"sensor {state.instigator_name} ticks, p50/p95/max s"] = (
                    f"{len(took)}: {took[len(took) // 2]:.1f} / {p95:.1f} / {took[-1]:.1f}"
                )
        return figures


if __name__ == "__main__":
    main()
