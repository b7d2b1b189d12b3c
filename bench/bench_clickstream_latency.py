"""Freshness under `dagster dev`, with the instance on SQLite or on PostgreSQL: a sustained stream while the
Kafka sensor starts the following ingest runs and their hand-offs; seconds from an event's send time until
it is queryable in silver (p50, p95, p99, max), per minute and overall.

The producer is the sustained benchmark's (bench_clickstream_sustained: events stamped with the time they
are sent, 1% duplicates, 0.5% irregular). Every 0.5 s this process lists silver's data files and reads the
event times of the files that are new (O(new rows)), so the time an event became visible is known to the
poll. With `--storage postgres` the project's PostgreSQL server (platform/postgres.sh) holds the run, event
and schedule storage; everything else in the instance (platform/dagster.yaml) is the same.

    python -m bench.bench_clickstream_latency [--rate 5000] [--minutes 5] [--storage sqlite|postgres]
"""

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from assets.clickstream.names import SILVER_TABLE, TOPIC
from bench.common import ROOT, free_port, kafka_broker, report, stop_dagster_dev
from demo.clickstream import event
from resources import KafkaResource, LakeResource

POLL_S = 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=5_000, help="events per second")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--storage", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with (
        kafka_broker() as bootstrap,
        tempfile.TemporaryDirectory(prefix="bench-latency-", ignore_cleanup_errors=True) as root,
        instance_storage(args.storage, root) as storage_env,
    ):
        port = free_port()
        overrides = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LAKE_ROOT": f"{root}/lake",
            "DAGSTER_HOME": f"{root}/home",
            "DUCKDB_DATABASE": f"{root}/warehouse.duckdb",
            "ALERT_LOG": f"{root}/alerts.jsonl",
            "LANDING_ROOT": f"{root}/input",
            "DAGSTER_UI_URL": f"http://127.0.0.1:{port}",
            **storage_env,
        }
        env = _platform_env(overrides)
        _write_instance(f"{root}/home", args.storage)
        KafkaResource(bootstrap_servers=bootstrap).ensure_topic(TOPIC, 3)
        server = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=open(f"{root}/dagster.log", "w"),  # noqa: SIM115 (lives as long as the server)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for(lambda: _up(port), 180)
            lake = LakeResource(root=f"{root}/lake")
            # Cold start, apart: one event, until silver exists (the first run process loads the code first).
            cold = time.time()
            kafka = KafkaResource(bootstrap_servers=bootstrap)
            warm_up = event(dt.datetime.now(dt.UTC), "view", "warm_up", "web", ("SKU-1", "One"))
            kafka.producer().send(TOPIC, value=json.dumps(warm_up).encode()).get(timeout=30)
            _wait_for(lambda: lake.table(SILVER_TABLE) is not None, 300)
            cold_start_s = time.time() - cold
            seen_files = set(lake.table(SILVER_TABLE).file_uris())  # type: ignore[union-attr]
            producer = _producer(bootstrap, args.rate, args.minutes)
            started, minutes = time.time(), {}
            last_new = produced_at = None
            while True:  # until the producer is done and silver has not grown for 20 s
                now = time.time()
                if lags := _newly_visible(lake, seen_files, now):
                    minutes.setdefault(int((now - started) // 60), []).extend(lags)
                    last_new = now
                if producer.poll() is not None:
                    produced_at = produced_at or now
                    if now - max(produced_at, last_new or 0) > 20:
                        break
                time.sleep(POLL_S)
        finally:
            stop_dagster_dev(server, f"{root}/home")
        rows = []
        for minute, lags in sorted(minutes.items()):
            rows.append({"minute": minute + 1, **_quantiles(lags)})
            print(f"minute {minute + 1}: {rows[-1]}", flush=True)
        everything = [lag for lags in minutes.values() for lag in lags]
        sent = producer.stdout.read().decode().strip().splitlines()[-1] if producer.stdout else "{}"
        rows.append(
            {
                "minute": "all",
                **_quantiles(everything),
                "sent": json.loads(sent).get("sent"),
                "cold_start_s": cold_start_s,
            }
        )
        report(
            f"clickstream_freshness_latency_{args.storage}",
            {"rate_per_s": args.rate, "minutes": args.minutes, "storage": args.storage, "poll_s": POLL_S},
            rows,
        )


def _quantiles(lags: list[float]) -> dict:
    cuts = statistics.quantiles(lags, n=100) if len(lags) > 1 else lags * 99
    return {"events": len(lags), "p50_s": cuts[49], "p95_s": cuts[94], "p99_s": cuts[98], "max_s": max(lags)}


def _newly_visible(lake: LakeResource, seen_files: set[str], now: float) -> list[float]:
    """Seconds from send time to now of every event in silver's data files not seen before."""
    table = lake.table(SILVER_TABLE)
    if table is None:
        return []
    new = [uri for uri in table.file_uris() if uri not in seen_files]
    seen_files.update(new)
    lags = []
    for uri in new:
        times = pq.read_table(uri, columns=["event_datetime"])["event_datetime"]
        lags += (now - pc.cast(times, "int64").to_numpy() / 1e6).tolist()
    return lags


@contextlib.contextmanager
def instance_storage(storage: str, root: str) -> Iterator[dict[str, str]]:
    """The environment of the instance's storage: nothing for SQLite (files in DAGSTER_HOME); for
    PostgreSQL a server of the project's own script, started here and stopped after."""
    if storage == "sqlite":
        yield {}
        return
    state = f"{root}/pg"
    os.makedirs(state)
    os.chmod(root, 0o755)
    os.chmod(state, 0o755)
    settings = {
        "POSTGRES_PORT": str(free_port()),
        "POSTGRES_STATE_DIR": state,
        "POSTGRES_USER": "dagster",
        "POSTGRES_PASSWORD": "bench-password",
        "POSTGRES_DB": "dagster",
    }
    script = str(ROOT / "platform" / "postgres.sh")
    subprocess.run([script, "start"], env={**os.environ, **settings}, check=True)
    try:
        yield {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": settings["POSTGRES_PORT"],
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_PG_USERNAME": "dagster",
            "DAGSTER_PG_PASSWORD": "bench-password",
        }
    finally:
        subprocess.run([script, "stop"], env={**os.environ, **settings}, check=False)
        shutil.rmtree(state, ignore_errors=True)


def _write_instance(home: str, storage: str) -> None:
    """The demo's instance (platform/dagster.yaml), with the production instance's PostgreSQL storage
    (platform/dagster-production.yaml) when asked: only the storage differs between the two runs."""
    instance = yaml.safe_load((ROOT / "platform" / "dagster.yaml").read_text())
    if storage == "postgres":
        instance["storage"] = yaml.safe_load((ROOT / "platform" / "dagster-production.yaml").read_text())["storage"]
    os.makedirs(home, exist_ok=True)
    with open(f"{home}/dagster.yaml", "w") as out:
        yaml.safe_dump(instance, out)


def _producer(bootstrap: str, rate: float, minutes: float) -> subprocess.Popen:
    command = ["-m", "bench.bench_clickstream_sustained", "--rate", str(rate), "--minutes", str(minutes)]
    return subprocess.Popen([sys.executable, *command, "--produce", bootstrap, TOPIC], cwd=ROOT, stdout=subprocess.PIPE)


def _platform_env(overrides: dict[str, str]) -> dict[str, str]:
    """The environment `make demo` has (platform/env.sh), with `overrides` set first."""
    out = subprocess.run(
        ["bash", "-c", "source platform/env.sh && env -0"],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, **overrides},
        check=True,
    ).stdout.decode()
    return dict(line.split("=", 1) for line in out.split("\0") if "=" in line)


def _up(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).status == 200
    except OSError:
        return False


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("dagster dev did not come up")
        time.sleep(0.5)


if __name__ == "__main__":
    main()
