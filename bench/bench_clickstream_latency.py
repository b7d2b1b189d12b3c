"""Freshness under `dagster dev`: events produced at a steady rate while the Kafka sensor runs; seconds
from produce time until each event is queryable in silver (p50, p95, max).

    python -m bench.bench_clickstream_latency [--rate 20] [--seconds 90]
"""

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from assets.clickstream.names import SILVER_TABLE, TOPIC
from bench.common import ROOT, free_port, kafka_broker, report, stop_dagster_dev
from demo.clickstream import event
from resources import KafkaResource, LakeResource


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args()
    with (
        kafka_broker() as bootstrap,
        tempfile.TemporaryDirectory(prefix="bench-latency-", ignore_cleanup_errors=True) as root,
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
        }
        env = _platform_env(overrides)
        kafka = KafkaResource(bootstrap_servers=bootstrap)
        kafka.ensure_topic(TOPIC, 3)
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
            # Cold start, measured apart: the first event waits for the first run process to load.
            cold = time.time()
            _produce(kafka, 1.0, 0.5, {})
            _wait_for(lambda: lake.table(SILVER_TABLE) is not None, 180)
            cold_start_s = time.time() - cold
            produced: dict[str, float] = {}
            thread = threading.Thread(target=_produce, args=(kafka, args.rate, args.seconds, produced))
            thread.start()
            seen: dict[str, float] = {}
            deadline = None
            while True:
                ids = lake.scan(SILVER_TABLE, columns=["user_id"])["user_id"].to_pylist()
                now = time.time()
                for user in ids:
                    seen.setdefault(user, now)
                if not thread.is_alive():
                    deadline = deadline or time.time() + 60
                    if set(produced) <= set(seen) or time.time() > deadline:
                        break
                time.sleep(0.25)
            thread.join()
        finally:
            stop_dagster_dev(server, f"{root}/home")
        latencies = sorted(seen[u] - t for u, t in produced.items() if u in seen)
        quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
        report(
            "clickstream_freshness_latency",
            {"rate_per_s": args.rate, "seconds": args.seconds, "events": len(produced)},
            [
                {
                    "events_seen": len(latencies),
                    "events_missing": len(produced) - len(latencies),
                    "p50_s": statistics.median(latencies),
                    "p95_s": quantiles[94],
                    "max_s": latencies[-1],
                    "target_p95_s": 10.0,
                    "cold_start_first_event_s": cold_start_s,
                }
            ],
        )


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


def _produce(kafka: KafkaResource, rate: float, seconds: float, produced: dict[str, float]) -> None:
    producer = kafka.producer(acks="all", linger_ms=0)
    started = time.time()
    i = 0
    while time.time() - started < seconds:
        user = f"latency_{started}_{i}"
        value = json.dumps(event(dt.datetime.now(dt.UTC), "view", user, "web", ("SKU-1", "One"))).encode()
        produced[user] = time.time()
        producer.send(TOPIC, value=value, key=user.encode()).get(timeout=10)
        i += 1
        time.sleep(max(0.0, started + i / rate - time.time()))
    producer.close()


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
