"""No loss, no duplicates: SIGKILLed ingest runs, a restarted broker, and a rebuild from bronze."""

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from assets.clickstream.names import (
    BRONZE_TABLE,
    CONSUMER_GROUP,
    DUPLICATES_TABLE,
    QUARANTINE_TABLE,
    SILVER_TABLE,
    TOPIC,
)
from assets.clickstream.silver import rebuild_dates
from demo.clickstream import IRREGULAR_KINDS, event, irregular
from resources import KafkaResource, LakeResource
from tests.clickstream_pipeline import assert_gold_counted_from_silver, produce, query, run_date, run_pipeline
from tests.conftest import ROOT, free_port

# One event per second from here: 200,000 of them end 11.6 hours before today began, whatever the time
# of day (events ahead of the broker's clock would be quarantined as absurd).
START = dt.datetime.now(dt.UTC).replace(hour=6, minute=0, second=0, microsecond=0) - dt.timedelta(days=3)
CRASH_POINTS = ["before_write", "after_bronze", "between_tables", "before_commit", "after_commit"]


def labelled_stream(valid: int, duplicates: int, broken: int) -> tuple[list[bytes], set[str]]:
    """Messages with known fate: `valid` distinct events (user ids returned), `duplicates` re-sends of
    some of them, and `broken` messages of every quarantine kind, interleaved."""
    events = [
        json.dumps(event(START + dt.timedelta(seconds=i), "view", f"u{i}", "web", ("SKU-1", "One"))).encode()
        for i in range(valid)
    ]
    base = event(START, "click", "x", "web", None)
    bad = [irregular(IRREGULAR_KINDS[i % len(IRREGULAR_KINDS)], dict(base, timestamp=f"{i}")) for i in range(broken)]
    messages = list(events)
    for i in range(duplicates):
        messages.insert((i * 97) % len(messages), events[(i * 31) % valid])
    for i, message in enumerate(bad):
        messages.insert((i * 53) % len(messages), message)
    return messages, {f"u{i}" for i in range(valid)}


def ingest_command(kafka: KafkaResource, lake: str, max_records: int, shard: str = "0/1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.ingest_worker",
        "--bootstrap",
        kafka.bootstrap_servers,
        "--namespace",
        kafka.namespace,
        "--lake",
        lake,
        "--max-records",
        str(max_records),
        "--shard",
        shard,
    ]


def ingest_process(kafka: KafkaResource, lake: str, failpoint: str | None, max_records: int, shard: str = "0/1"):
    env = {**os.environ, "PLATFORM_FAILPOINT": failpoint or ""}
    return subprocess.run(
        ingest_command(kafka, lake, max_records, shard), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def shards_at_once(kafka: KafkaResource, lake: str, max_records: int, shards: int) -> list[int]:
    """One ingest batch per shard, the shards' processes running at the same time: records read by each."""
    workers = [
        subprocess.Popen(
            ingest_command(kafka, lake, max_records, f"{k}/{shards}"),
            cwd=ROOT,
            env={**os.environ, "PLATFORM_FAILPOINT": ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(shards)
    ]
    records = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        records.append(json.loads(out.strip().splitlines()[-1])["records"])
    return records


def assert_exactly_once(lake: LakeResource, kafka: KafkaResource, produced: int, users: set[str], broken: int):
    silver, quarantine, bronze, duplicates = (
        lake.scan(t) for t in (SILVER_TABLE, QUARANTINE_TABLE, BRONZE_TABLE, DUPLICATES_TABLE)
    )
    ids = silver.column("user_id").to_pylist()
    assert len(ids) == len(users) and set(ids) == users  # every valid event exactly once
    coordinates = set(
        zip(quarantine.column("partition").to_pylist(), quarantine.column("offset").to_pylist(), strict=True)
    )
    assert quarantine.num_rows == len(coordinates) == broken  # every broken message exactly once
    offsets = sorted(zip(bronze.column("partition").to_pylist(), bronze.column("offset").to_pylist(), strict=True))
    assert len(offsets) == len(set(offsets)) == produced  # bronze: each offset once, none missing
    assert silver.num_rows + duplicates.num_rows + quarantine.num_rows == produced  # every message accounted once
    pending = kafka.pending_offsets(kafka.topic(TOPIC), kafka.group(CONSUMER_GROUP))
    assert all(start == end for start, end in pending.values())


@pytest.mark.parametrize("shards", [1, 2])
def test_sigkill_at_every_step_loses_and_duplicates_nothing(kafka, lake, shards):
    """25 SIGKILLs at the five fail points (with 2 shards: alternately in each shard's process), then
    plain runs (with 2 shards: both shards' processes at once, on the same tables) until nothing is pending."""
    # Five of the kills come after a commit (3,000 records per partition each): enough stays pending for all 25.
    messages, users = labelled_stream(valid=100_000 // shards, duplicates=2_000, broken=2_000)
    produce(kafka, messages, partitions=4)
    kills = 0
    for round_ in range(25):
        point = CRASH_POINTS[round_ % len(CRASH_POINTS)]
        crashed = ingest_process(kafka, lake.root, point, max_records=3_000, shard=f"{round_ % shards}/{shards}")
        assert crashed.returncode == -9, (point, crashed.stdout, crashed.stderr)
        kills += 1
    assert kills >= 20
    for _ in range(60):  # recovery: plain runs until nothing is pending
        if sum(shards_at_once(kafka, lake.root, 50_000, shards)) == 0:
            break
    assert_exactly_once(lake, kafka, len(messages), users, broken=2_000)
    # Gold, kept per batch by the crashed and concurrent runs, equals gold counted from silver.
    assert_gold_counted_from_silver(lake)


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test's own, so it can be restarted."""
    env = {
        **os.environ,
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_STATE_DIR": str(tmp_path / "kafka"),
    }
    script = str(ROOT / "platform" / "kafka.sh")
    subprocess.run([script, "start"], env=env, check=True, capture_output=True)
    yield lambda action: subprocess.run([script, action], env=env, check=True, capture_output=True), env
    subprocess.run([script, "stop"], env=env, capture_output=True)


def test_broker_restarted_mid_stream(own_broker, tmp_path):
    control, env = own_broker
    kafka = KafkaResource(
        bootstrap_servers=f"127.0.0.1:{env['KAFKA_PORT']}", namespace="restart.", request_timeout_ms=5000
    )
    lake = LakeResource(root=str(tmp_path / "lake"))
    messages, users = labelled_stream(valid=20_000, duplicates=200, broken=100)
    half = len(messages) // 2
    produce(kafka, messages[:half])
    assert ingest_process(kafka, lake.root, None, max_records=4_000).returncode == 0
    control("stop")
    down = ingest_process(kafka, lake.root, None, max_records=4_000)
    assert down.returncode != 0 and ("NoBrokersAvailable" in down.stderr or "Kafka" in down.stderr), down.stderr
    control("start")
    produce(kafka, messages[half:])
    for _ in range(30):
        finished = ingest_process(kafka, lake.root, None, max_records=50_000)
        assert finished.returncode == 0, finished.stderr
        if json.loads(finished.stdout.strip().splitlines()[-1])["records"] == 0:
            break
    assert_exactly_once(lake, kafka, len(messages), users, broken=100)


def test_rebuild_from_bronze_after_losing_silver_gold_and_duckdb(kafka, lake, warehouse, resources, instance):
    messages, users = labelled_stream(valid=3_000, duplicates=50, broken=30)
    produce(kafka, messages)
    dates = run_pipeline(instance, resources)
    before = {d: query(f"SELECT * FROM t WHERE event_date = '{d}' ORDER BY event_id", lake) for d in dates}
    with warehouse.connect() as conn:
        gold_before = conn.execute("SELECT * FROM gold_clickstream_daily_metrics ORDER BY ALL").fetchall()
    quarantine_before = query('SELECT * FROM t ORDER BY "partition", "offset"', lake, QUARANTINE_TABLE)

    for dataset in ("silver", "gold", "quarantine"):
        lake.delete(dataset)
    os.remove(warehouse.database)
    for date in dates:  # the disaster-recovery procedure: a backfill of every date from bronze
        assert run_date(instance, resources, date).success

    assert {d: query(f"SELECT * FROM t WHERE event_date = '{d}' ORDER BY event_id", lake) for d in dates} == before
    assert query('SELECT * FROM t ORDER BY "partition", "offset"', lake, QUARANTINE_TABLE) == quarantine_before
    with warehouse.connect() as conn:
        assert conn.execute("SELECT * FROM gold_clickstream_daily_metrics ORDER BY ALL").fetchall() == gold_before
    assert sum(len(rows) for rows in before.values()) == len(users)


def test_write_silver_is_idempotent(lake, kafka, resources, instance):
    produce(kafka, labelled_stream(valid=100, duplicates=10, broken=5)[0])
    dates = run_pipeline(instance, resources)

    def rows() -> list[list]:
        return [
            sorted(lake.scan(t, dates).to_pylist(), key=repr)
            for t in (SILVER_TABLE, QUARANTINE_TABLE, DUPLICATES_TABLE)
        ]

    streamed = rows()  # a rebuild from bronze gives what the stream appended, batch by batch
    for _ in range(2):
        rebuild_dates(lake, dates)
        assert rows() == streamed
