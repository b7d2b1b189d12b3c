"""Kafka -> bronze, exactly once: the one ingest path every streaming domain uses.

A run reads, per partition, the records from the consumer group's committed offset up to a target
offset, writes them to bronze files whose names are derived from (topic, partition, first offset,
last offset), and only then commits the offsets. Before reading, it records the range it is about to
write (an in-flight manifest); a run that retries after a crash finds the manifest and re-reads
exactly the same range, so it rewrites the same files instead of writing overlapping ones.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from kafka import TopicPartition

from resources import KafkaResource, LakeResource
from resources.faults import failpoint

# Runs that count as "in flight" for the one-ingest-run-per-topic rule.
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def wait_for_earlier_runs(context: dg.AssetExecutionContext, poll_seconds: float = 0.2) -> None:
    """Hand-off between consecutive ingest runs of a topic: the next run is launched while the current
    one still follows the topic (so its start-up overlaps), and consumes only once the earlier runs of
    its job have ended. One consumer at a time, no gap while a run process starts."""
    instance, job = context.instance, context.job_name
    me = instance.get_run_record_by_id(context.run.run_id)
    if me is None:
        return
    while True:
        records = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=ACTIVE_RUN_STATUSES))
        if not [
            r
            for r in records
            if r.dagster_run.run_id != context.run.run_id and r.create_timestamp < me.create_timestamp
        ]:
            return
        time.sleep(poll_seconds)


def successor_starting(context: dg.AssetExecutionContext) -> bool:
    """Whether a later run of this job was launched and has not started executing yet: a following run
    keeps following until then (its successor's start-up can outlast the sensor's head start on a
    busy machine), so that no gap opens at the hand-off."""
    me = context.instance.get_run_record_by_id(context.run.run_id)
    starting = context.instance.get_run_records(
        dg.RunsFilter(
            job_name=context.job_name,
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING],
        )
    )
    return me is not None and any(r.create_timestamp > me.create_timestamp for r in starting)


MESSAGE_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
        ("key", pa.binary()),
        ("payload", pa.binary()),
    ]
)


# Bronze as written to the lake: every message exactly as received, plus the date partition it belongs to.
BRONZE_SCHEMA = MESSAGE_SCHEMA.append(pa.field("event_date", pa.date32()))


@dataclass
class IngestResult:
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> (first, last) offset
    rows_by_date: dict[str, int] = field(default_factory=dict)
    # Dates where a file of this range was already there: a retry or a replay of offsets already in
    # bronze, which rewrites the same files. Whatever was derived from them incrementally needs a rebuild.
    rewritten_dates: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    bronze: pa.Table | None = None  # the rows written (and what the domain parsed from them)

    @property
    def records(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges.values())


def plan_ranges(
    kafka: KafkaResource,
    lake: LakeResource,
    topic: str,
    group_id: str,
    dataset: str,
    until: dict[int, int] | None,
    max_records_per_partition: int,
) -> dict[int, tuple[int, int]]:
    """The range to read per partition: an unfinished in-flight range first, else committed..target."""
    planned = {}
    for partition, (committed, end) in kafka.pending_offsets(topic, group_id).items():
        manifest = lake.read_json(dataset, "_inflight", f"{topic}-{partition}.json")
        if isinstance(manifest, dict) and manifest["first"] == committed:
            planned[partition] = (manifest["first"], manifest["last"])
            continue
        target = end if until is None else min(end, until.get(partition, end))
        last = min(target, committed + max_records_per_partition) - 1
        if last >= committed:
            planned[partition] = (committed, last)
    return planned


def read_range(
    kafka: KafkaResource, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float = 120.0
) -> pa.Table:
    """Exactly the records in `ranges`, as an Arrow table in MESSAGE_SCHEMA."""
    if not ranges:
        return MESSAGE_SCHEMA.empty_table()
    with gc_paused():
        return _read_range(kafka, topic, ranges, timeout_s)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Decoding a Kafka batch creates millions of short-lived, acyclic objects: reference counting frees
    them, but their allocation keeps triggering cyclic collections that scan every object of the
    process (Dagster's included), measured at about a third of the read's time. Paused for the read."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_range(kafka: KafkaResource, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float) -> pa.Table:
    batches: list[pa.RecordBatch] = []
    with kafka.consumer(None, max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024) as consumer:
        tps = {p: TopicPartition(topic, p) for p in ranges}
        consumer.assign(list(tps.values()))
        for p, (first, _) in ranges.items():
            consumer.seek(tps[p], first)
        remaining = {p: last for p, (_, last) in ranges.items()}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Kafka did not deliver offsets up to {remaining} of {topic!r} within {timeout_s:.0f}s"
                )
            for tp, records in consumer.poll(timeout_ms=500, max_records=50_000).items():
                last = remaining.get(tp.partition)
                if last is None:
                    continue
                if records and records[-1].offset > last:
                    records = [r for r in records if r.offset <= last]
                if records:  # one column at a time: far cheaper than a row at a time
                    batches.append(
                        pa.RecordBatch.from_arrays(
                            [
                                pa.array([topic] * len(records), pa.string()),
                                pa.array([tp.partition] * len(records), pa.int32()),
                                pa.array([r.offset for r in records], pa.int64()),
                                pa.array([r.timestamp for r in records], pa.int64()).cast(
                                    MESSAGE_SCHEMA.field("kafka_timestamp").type
                                ),
                                pa.array([r.key for r in records], pa.binary()),
                                pa.array([r.value for r in records], pa.binary()),
                            ],
                            schema=MESSAGE_SCHEMA,
                        )
                    )
                if (records and records[-1].offset >= last) or (consumer.position(tp) or 0) > last:
                    del remaining[tp.partition]
                    consumer.pause(tp)
    return pa.Table.from_batches(batches, schema=MESSAGE_SCHEMA)


def ingest(
    kafka: KafkaResource,
    lake: LakeResource,
    *,
    topic: str,
    group_id: str,
    dataset: str,
    with_partition_dates: Callable[[pa.Table], pa.Table],
    until: dict[int, int] | None = None,
    max_records_per_partition: int = 500_000,
    on_progress: Callable[[str], None] = lambda _: None,
    on_durable: Callable[[IngestResult], None] | None = None,
    on_dates: Callable[[list[str]], None] | None = None,
) -> IngestResult:
    """Move one pending range of `topic` into `dataset` in the lake and commit it; see module doc.

    `with_partition_dates` adds an `event_date` column (the date partition each message belongs to),
    and may add what else the domain parses from the messages: only BRONZE_SCHEMA's columns are written,
    the whole table is returned (`IngestResult.bronze`) for the domain's next step.
    Files land at `<dataset>/event_date=<date>/<topic>-<partition>-<first>-<last>.parquet`. Topic and
    group are logical names, resolved in the Kafka resource's namespace. `on_durable` runs once the
    files are durable and before the commit: whatever it records survives a crash at the commit.
    `on_dates` runs before the first file is written, with the dates the batch will touch.
    """
    topic, group_id = kafka.topic(topic), kafka.group(group_id)
    result = IngestResult(ranges=plan_ranges(kafka, lake, topic, group_id, dataset, until, max_records_per_partition))
    if not result.ranges:
        return result
    for p, (first, last) in result.ranges.items():
        lake.write_json({"first": first, "last": last}, dataset, "_inflight", f"{topic}-{p}.json")
    failpoint("before_write")
    on_progress(f"reading {result.records} records of {topic!r}: {result.ranges}")
    messages = read_range(kafka, topic, result.ranges)
    if messages.num_rows != result.records:
        raise RuntimeError(
            f"expected {result.records} records from {topic!r} {result.ranges}, got {messages.num_rows}: "
            "the log was truncated or compacted under the range"
        )
    result.bronze = parsed = with_partition_dates(messages)
    bronze = parsed.select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)
    if on_dates:
        on_dates(sorted(d.isoformat() for d in pc.unique(bronze["event_date"]).to_pylist()))
    for p, (first, last) in result.ranges.items():
        in_partition = bronze.filter(pc.equal(bronze["partition"], p))
        for date in pc.unique(in_partition["event_date"]).to_pylist():
            rows = in_partition.filter(pc.equal(in_partition["event_date"], date))
            key = date.isoformat()
            name = f"{topic}-{p}-{first:012d}-{last:012d}.parquet"
            if lake.exists(dataset, f"event_date={key}", name):
                result.rewritten_dates.add(key)
            result.files.append(str(lake.write_parquet(rows, dataset, f"event_date={key}", name)))
            result.rows_by_date[key] = result.rows_by_date.get(key, 0) + rows.num_rows
            failpoint("mid_write")
    if on_durable:
        on_durable(result)
    on_progress(f"bronze durable in {len(result.files)} files; committing offsets")
    failpoint("before_commit")
    kafka.commit(topic, group_id, {p: last + 1 for p, (_, last) in result.ranges.items()})
    failpoint("after_commit")
    for p in result.ranges:
        lake.delete(dataset, "_inflight", f"{topic}-{p}.json")
    return result
