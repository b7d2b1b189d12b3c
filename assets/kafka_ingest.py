"""Kafka -> bronze, exactly once: the one ingest path every streaming domain uses.

A run reads, per partition, the records from the consumer group's committed offset up to a target
offset, writes them to bronze files whose names are derived from (topic, partition, first offset,
last offset), and only then commits the offsets. Before reading, it records the range it is about to
write (an in-flight manifest); a run that retries after a crash finds the manifest and re-reads
exactly the same range, so it rewrites the same files instead of writing overlapping ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from assets.streaming import (  # noqa: F401  (re-exported for the domains not yet on the tables)
    ACTIVE_RUN_STATUSES,
    BRONZE_SCHEMA,
    MESSAGE_SCHEMA,
    read_range,
    successor_starting,
    wait_for_earlier_runs,
)
from resources import KafkaResource, LakeResource
from resources.faults import failpoint


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
