"""Kafka -> lake tables, exactly once: the one streaming path of every domain.

A *stream* names a topic, its consumer group, its bronze table and how a message finds its date
partition (`route`). A domain registers what it does with each micro-batch (`writer`: silver,
quarantine, decisions...), and this module does the rest, once for every domain:

- **plan**: per Kafka partition, the records from the group's committed offset up to a target. A range
  that bronze already holds but Kafka never acknowledged (a crash before the offset commit) is read
  again exactly, so that every table downstream of bronze gets it too;
- **bronze**: the batch is appended to the bronze table in one commit that also records, per Kafka
  partition, the last offset written (a Delta app transaction). A retry finds the token and skips;
- **writer**: the domain's tables, each appended with `append_once`: one commit per table whose tokens
  are (Kafka partition, date) -> last offset, so a retry skips what a table already holds, and a
  backfill that replaced a date (carrying the tokens it covered) is not appended to twice;
- **commit**: only then the consumer group's offsets.

A micro-batch costs O(batch): nothing of a date is read again. Whole-date work (exact re-validation,
compaction) is a backfill or a scheduled run, never part of a batch.

The following run (`follow`) repeats this for `follow_seconds`, reporting each batch's materializations
and checks as it lands, and hands off to its successor (launched by the Kafka sensor while this run
still follows) with no gap and no overlap: the successor waits for the earlier run to end.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from kafka import TopicPartition

from resources import KafkaResource, LakeResource
from resources.faults import failpoint
from resources.lake import CommitFailedError

# The metadata key under which a bronze materialization names the date partitions its batch touched
# (read by the partitions sensors).
TOUCHED_DATES = "event_dates"

# The tag that says which share of a topic's partitions an ingest run reads: "<shard>/<shards>".
SHARD_TAG = "platform/shard"

# How often an append that lost a commit race to a concurrent writer is tried again.
APPEND_ATTEMPTS = 20

# Runs that count as "in flight" for the one-ingest-run-per-stream rule.
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

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
# Bronze as stored: every message exactly as received, plus the date partition it belongs to.
BRONZE_SCHEMA = MESSAGE_SCHEMA.append(pa.field("event_date", pa.date32()))


class IngestConfig(dg.Config):
    """What an ingest run moves: the records from the consumer group's committed offsets up to
    `until_offsets` (partition -> end offset, exclusive; all pending records when empty). With
    `follow_seconds` > 0 the run keeps following the topic that long, a micro-batch at a time: a run's
    start-up (loading the code location) is paid once, not per batch. `shard` of `shards`: the share of
    the topic's partitions this run reads (one following run per shard)."""

    until_offsets: dict[str, int] = {}
    max_records_per_partition: int = 500_000
    follow_seconds: float = 0.0
    poll_interval_seconds: float = 0.25
    # Ingest scaled out by Kafka partition: this run reads only the partitions p with p % shards == shard.
    shard: int = 0
    shards: int = 1


@dataclass
class Batch:
    """One micro-batch: its Kafka ranges (partition -> first, last offset) and its routed rows (bronze's
    columns plus whatever the stream's `route` parsed)."""

    topic: str
    ranges: dict[int, tuple[int, int]]
    rows: pa.Table

    @property
    def records(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges.values())

    def rows_by_date(self) -> dict[str, int]:
        counts = self.rows["event_date"].value_counts().to_pylist() if self.rows.num_rows else []
        return {c["values"].isoformat(): c["counts"] for c in counts}


@dataclass
class Report:
    """What a writer tells the run to report for a batch: materializations of the partitions it
    appended to, and check evaluations."""

    materializations: list[dg.AssetMaterialization] = field(default_factory=list)
    checks: list[dg.AssetCheckEvaluation] = field(default_factory=list)

    def extend(self, other: Report) -> None:
        self.materializations += other.materializations
        self.checks += other.checks

    @property
    def failed_blocking(self) -> bool:
        return any(c.blocking and not c.passed for c in self.checks)


class BatchWriter(Protocol):
    def __call__(self, batch: Batch) -> Report: ...


@dataclass(frozen=True)
class Stream:
    """A Kafka topic and the lake tables it feeds. `route` adds `event_date` (and may add parsed columns)
    to MESSAGE_SCHEMA rows, in input order."""

    topic: str
    group_id: str
    bronze_table: str
    route: Callable[[pa.Table], pa.Table]


# -- the protocol -----------------------------------------------------------------------------------------


def plan(
    reader: TopicReader, lake: LakeResource, stream: Stream, until: dict[int, int] | None, max_records: int
) -> dict[int, tuple[int, int]]:
    """Per partition, the range to read: one bronze holds but Kafka never acknowledged first, else from
    the committed offset up to the target."""
    topic = reader.topic
    planned = {}
    pending = reader.pending()
    written = lake.tokens(stream.bronze_table, [f"{topic}/{p}" for p in pending])
    for partition, (committed, end) in pending.items():
        in_bronze = written[f"{topic}/{partition}"]
        if in_bronze is not None and in_bronze >= committed:
            planned[partition] = (committed, in_bronze)
            continue
        target = end if until is None else min(end, until.get(partition, end))
        last = min(target, committed + max_records) - 1
        if last >= committed:
            planned[partition] = (committed, last)
    return planned


def ingest_batch(
    kafka: KafkaResource,
    lake: LakeResource,
    stream: Stream,
    writer: BatchWriter | None = None,
    *,
    until: dict[int, int] | None = None,
    max_records_per_partition: int = 500_000,
    log=None,
    reader: TopicReader | None = None,
) -> tuple[Batch | None, Report]:
    """One micro-batch of `stream` through bronze and `writer`, then acknowledged (see module doc).
    `reader`: the run's open consumer (one is opened for this batch otherwise)."""
    if reader is None:
        with TopicReader(kafka, kafka.topic(stream.topic), kafka.group(stream.group_id)) as own:
            return ingest_batch(
                kafka,
                lake,
                stream,
                writer,
                until=until,
                max_records_per_partition=max_records_per_partition,
                log=log,
                reader=own,
            )
    topic = reader.topic
    ranges = plan(reader, lake, stream, until, max_records_per_partition)
    if not ranges:
        return None, Report()
    failpoint("before_write")
    records = sum(last - first + 1 for first, last in ranges.values())
    if log:
        log.debug(f"reading {records} records of {topic!r}: {ranges}")
    messages = reader.read(ranges)
    if messages.num_rows != records:
        raise RuntimeError(
            f"expected {records} records from {topic!r} {ranges}, got {messages.num_rows}: "
            "the log was truncated or compacted under the range"
        )
    batch = Batch(topic, ranges, stream.route(messages))
    tokens = {f"{topic}/{p}": last for p, (_, last) in ranges.items()}
    for attempt in range(APPEND_ATTEMPTS):
        written = lake.tokens(stream.bronze_table, list(tokens))
        missing = {a: v for a, v in tokens.items() if _newer(v, written[a])}
        if not missing:
            break
        wanted = pa.array([int(a.rsplit("/", 1)[1]) for a in missing], pa.int32())
        bronze = batch.rows.select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)
        try:
            lake.append(stream.bronze_table, bronze.filter(pc.is_in(bronze["partition"], wanted)), tokens=missing)
            break
        except CommitFailedError:  # a concurrent compaction of bronze: check the tokens again and retry
            if attempt == APPEND_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    failpoint("after_bronze")
    report = writer(batch) if writer else Report()
    failpoint("before_commit")
    reader.commit({p: last + 1 for p, (_, last) in ranges.items()})
    failpoint("after_commit")
    return batch, report


def append_once(
    lake: LakeResource,
    table: str,
    rows: pa.Table,
    batch: Batch,
    schema: pa.Schema | None = None,
    change_feed: bool = False,
) -> int:
    """Append to `table` the `rows` derived from `batch` (with `partition` and `event_date` columns) that
    it does not hold yet, stored as `schema` (default: as they are), in one commit carrying a token per
    (Kafka partition, date) of the batch: a retry of the batch, or a batch a backfill of its date
    already covered, appends nothing. Returns the rows appended."""
    pairs = batch.rows.group_by(["partition", "event_date"]).aggregate([]).to_pylist()
    wanted = {date_token(batch.topic, p["partition"], p["event_date"].isoformat()): p["partition"] for p in pairs}
    for attempt in range(APPEND_ATTEMPTS):
        try:
            return _append_once(lake, table, rows, batch, schema, wanted, change_feed)
        except CommitFailedError:
            # delta-rs fails an append when a concurrent commit replaced any date of the table (it treats an
            # append as a read of the whole table): check the tokens again and retry.
            if attempt == APPEND_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return 0


def _append_once(
    lake: LakeResource, table: str, rows: pa.Table, batch: Batch, schema, wanted: dict, change_feed: bool
) -> int:
    written = lake.tokens(table, list(wanted))
    tokens = {a: batch.ranges[p][1] for a, p in wanted.items() if _newer(batch.ranges[p][1], written[a])}
    if not tokens:
        return 0
    if len(tokens) < len(wanted):  # part of the batch is in the table already: keep only the rest
        keep = set(tokens)
        ids = pc.binary_join_element_wise(
            pa.scalar(f"{batch.topic}/"),
            rows["partition"].cast(pa.string()),
            pa.scalar("@"),
            rows["event_date"].cast(pa.string()),
            "",
        )
        rows = rows.filter(pc.is_in(ids, pa.array(sorted(keep))))
    stored = rows if schema is None else rows.select(schema.names).cast(schema)
    lake.append(table, stored, tokens=tokens, change_feed=change_feed)
    return rows.num_rows


def _newer(offset: int, token: int | None) -> bool:
    """Whether a table whose token is `token` lacks the batch that ends at `offset`."""
    return token is None or token < offset


def date_token(topic: str, partition: int, event_date: str) -> str:
    """The app id under which a derived table records the last offset of a Kafka partition it holds for a
    date (a backfill of the date records the same ids, for what it read from bronze)."""
    return f"{topic}/{partition}@{event_date}"


def bronze_dates(lake: LakeResource, bronze_table: str, event_dates: list[str]) -> tuple[pa.Table, dict[str, int]]:
    """The dates' bronze rows (offsets ascending per Kafka partition) and the date tokens a rebuild from
    them covers, both from one version of the table: per Kafka partition and date, the last offset bronze
    held. Batches land in bronze whole, so every row of the date up to it was read, even when the
    partition's last batch ended with rows of another date. One scan for all the dates: a scan costs
    O(the table's files), so many dates rebuilt together read the table once."""
    version = lake.version(bronze_table)
    if version is None:
        return BRONZE_SCHEMA.empty_table(), {}
    rows = lake.scan(bronze_table, event_dates, version=version).select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)
    rows = rows.sort_by([("partition", "ascending"), ("offset", "ascending")])
    groups = rows.group_by(["topic", "partition", "event_date"]).aggregate([]).to_pylist()
    pairs = sorted({(g["topic"], g["partition"]) for g in groups})
    held = lake.tokens(bronze_table, [f"{t}/{p}" for t, p in pairs], version=version)
    tokens = {}
    for g in groups:
        last = held[f"{g['topic']}/{g['partition']}"]
        if last is not None:
            tokens[date_token(g["topic"], g["partition"], g["event_date"].isoformat())] = last
    return rows, tokens


# -- reading Kafka ------------------------------------------------------------------------------------------


class TopicReader:
    """One Kafka consumer of the stream's group for the whole following run: it asks the group's
    offsets, reads the planned ranges and commits, without a new connection per batch. Records fetched
    beyond a range are kept for the next one, so a run reads every record once."""

    def __init__(self, kafka: KafkaResource, topic: str, group_id: str | None, shard: int = 0, shards: int = 1):
        self.kafka, self.topic, self.group_id = kafka, topic, group_id
        self.shard, self.shards = shard, shards
        self._open = kafka.consumer(
            group_id, max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024
        )
        self.consumer = self._open.__enter__()
        self.assigned: dict[int, TopicPartition] = {}
        self.ahead: dict[int, list] = {}  # partition -> records fetched past the last range, in order

    def close(self) -> None:
        self._open.__exit__(None, None, None)

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def pending(self) -> dict[int, tuple[int, int]]:
        assert self.group_id is not None, "a reader without a consumer group has no committed offsets"
        offsets = self.kafka.pending_offsets(self.topic, self.group_id, self.consumer)
        return {p: r for p, r in offsets.items() if p % self.shards == self.shard}

    def commit(self, next_offsets: dict[int, int]) -> None:
        assert self.group_id is not None, "a reader without a consumer group cannot commit"
        self.kafka.commit(self.topic, self.group_id, next_offsets, self.consumer)

    def read(self, ranges: dict[int, tuple[int, int]], timeout_s: float = 120.0) -> pa.Table:
        """Exactly the records in `ranges`, as an Arrow table in MESSAGE_SCHEMA."""
        if not ranges:
            return MESSAGE_SCHEMA.empty_table()
        with gc_paused():
            return self._read(ranges, timeout_s)

    def _read(self, ranges: dict[int, tuple[int, int]], timeout_s: float) -> pa.Table:
        consumer = self.consumer
        if set(ranges) - set(self.assigned):
            self.assigned |= {p: TopicPartition(self.topic, p) for p in ranges}
            consumer.assign(list(self.assigned.values()))
            self.ahead.clear()
        got: dict[int, list] = {}
        remaining = {}
        for p, (first, last) in ranges.items():
            kept = self.ahead.pop(p, [])
            if not (kept and kept[0].offset == first):
                kept = []
                if consumer.position(self.assigned[p]) != first:
                    consumer.seek(self.assigned[p], first)
            got[p] = [r for r in kept if r.offset <= last]
            if kept and kept[-1].offset > last:
                self.ahead[p] = [r for r in kept if r.offset > last]
            if not got[p] or got[p][-1].offset < last:
                remaining[p] = last
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Kafka did not deliver offsets up to {remaining} of {self.topic!r} within {timeout_s:.0f}s"
                )
            for tp, records in consumer.poll(timeout_ms=500, max_records=50_000).items():
                p = tp.partition
                last = remaining.get(p)
                if last is None:  # read past its range (or not in this batch): kept for the next batch
                    self.ahead.setdefault(p, []).extend(records)
                    continue
                if records and records[-1].offset > last:
                    self.ahead[p] = [r for r in records if r.offset > last]
                    records = [r for r in records if r.offset <= last]
                got[p].extend(records)
                if got[p] and got[p][-1].offset >= last:
                    del remaining[p]
        batches = [_record_batch(self.topic, p, records) for p, records in got.items() if records]
        return pa.Table.from_batches(batches, schema=MESSAGE_SCHEMA)


def _record_batch(topic: str, partition: int, records: list) -> pa.RecordBatch:
    """Records of one partition, a column at a time: far cheaper than a row at a time."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array([topic] * len(records), pa.string()),
            pa.array([partition] * len(records), pa.int32()),
            pa.array([r.offset for r in records], pa.int64()),
            pa.array([r.timestamp for r in records], pa.int64()).cast(MESSAGE_SCHEMA.field("kafka_timestamp").type),
            pa.array([r.key for r in records], pa.binary()),
            pa.array([r.value for r in records], pa.binary()),
        ],
        schema=MESSAGE_SCHEMA,
    )


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


# -- the following run ------------------------------------------------------------------------------------


def _shard(run: dg.DagsterRun) -> tuple[int, int]:
    shard, _, shards = run.tags.get(SHARD_TAG, "0/1").partition("/")
    return int(shard), int(shards)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two shards may read a common partition: the same shard of the same count, or any shards
    of different counts (a change of the shard count waits for every run of the former count)."""
    return a == b or a[1] != b[1]


def wait_for_earlier_runs(context: dg.AssetExecutionContext, poll_seconds: float = 0.2) -> None:
    """Hand-off between consecutive ingest runs of a stream's shard: the next run is launched while the
    current one still follows the topic (so its start-up overlaps), and consumes only once the earlier
    runs of its job that may read its partitions have ended. One consumer per partition at a time, no
    gap while a run process starts."""
    instance, job = context.instance, context.job_name
    me = instance.get_run_record_by_id(context.run.run_id)
    if me is None:
        return
    mine = _shard(context.run)
    while True:
        records = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=ACTIVE_RUN_STATUSES))
        if not [
            r
            for r in records
            if r.dagster_run.run_id != context.run.run_id
            and r.create_timestamp < me.create_timestamp
            and _overlaps(_shard(r.dagster_run), mine)
        ]:
            return
        time.sleep(poll_seconds)


def successor_starting(context: dg.AssetExecutionContext) -> bool:
    """Whether a later run of this job's shard was launched and has not started executing yet: a
    following run keeps following until then (its successor's start-up can outlast the sensor's head
    start on a busy machine), so that no gap opens at the hand-off."""
    me = context.instance.get_run_record_by_id(context.run.run_id)
    starting = context.instance.get_run_records(
        dg.RunsFilter(
            job_name=context.job_name,
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING],
        )
    )
    mine = _shard(context.run)
    return me is not None and any(
        r.create_timestamp > me.create_timestamp and _overlaps(_shard(r.dagster_run), mine) for r in starting
    )


def follow(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    kafka: KafkaResource,
    lake: LakeResource,
    stream: Stream,
    writer: BatchWriter | None,
) -> Iterator[Batch]:
    """The ingest run's loop: micro-batches until `follow_seconds` are over (and the successor has
    started, at most another window), each reported as it lands. Yields every batch that had records;
    the run's own events are logged here."""
    wait_for_earlier_runs(context)
    topic, group = kafka.topic(stream.topic), kafka.group(stream.group_id)
    with TopicReader(kafka, topic, group, config.shard, config.shards) as reader:
        yield from _follow(context, config, kafka, lake, stream, writer, reader)


def _follow(context, config: IngestConfig, kafka, lake, stream: Stream, writer, reader: TopicReader) -> Iterator[Batch]:
    deadline = time.monotonic() + config.follow_seconds
    until = {int(p): o for p, o in config.until_offsets.items()} or None
    while True:
        batch, report = ingest_batch(
            kafka,
            lake,
            stream,
            writer,
            until=until,
            max_records_per_partition=config.max_records_per_partition,
            log=context.log,
            reader=reader,
        )
        for materialization in report.materializations:
            context.log_event(materialization)
        for check in report.checks:
            context.log_event(check)
        if batch is not None:
            yield batch
        # A failed blocking check ends the run: nothing more is served from a table known to be wrong.
        if report.failed_blocking:
            failed = [f"{c.check_name} ({c.partition})" for c in report.checks if c.blocking and not c.passed]
            raise dg.Failure(f"blocking checks failed: {', '.join(failed)}; the batch is committed, see the checks")
        now = time.monotonic()
        if now >= deadline and (now >= deadline + config.follow_seconds or not successor_starting(context)):
            return
        if batch is None:
            time.sleep(config.poll_interval_seconds)
        until = None


def batch_metadata(batch: Batch) -> dict:
    """A bronze materialization's metadata for one batch."""
    return {
        "dagster/row_count": batch.records,
        "offset_ranges": dg.MetadataValue.json({str(p): list(r) for p, r in batch.ranges.items()}),
        TOUCHED_DATES: dg.MetadataValue.json(sorted(batch.rows_by_date())),
        "rows_by_event_date": dg.MetadataValue.json(batch.rows_by_date()),
    }
