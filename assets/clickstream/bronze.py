"""Bronze: every clickstream message exactly as Kafka delivered it, durable before it is acknowledged."""

import time

import dagster as dg
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from assets.clickstream.parsing import BRONZE_DATASET, CONSUMER_GROUP, TOPIC
from assets.clickstream.silver import (
    SILVER_PENDING,
    SilverSummary,
    clickstream_daily_partitions,
    merge_silver_batch,
    quarantine_metadata,
    route_messages,
    silver_metadata,
    write_silver_partitions,
)
from assets.kafka_ingest import IngestResult, ingest, successor_starting, wait_for_earlier_runs
from assets.pandera_checks import validate_schema
from resources import KafkaResource, LakeResource


class BronzeClickstreamMessage(pa.DataFrameModel):
    """Where each message of a batch came from: one row per Kafka offset. (Key and payload are the
    bytes as received, typed by the bronze Arrow schema; the check leaves them out to stay cheap.)"""

    topic: Series[str]
    partition: Series[np.int32] = pa.Field(ge=0)
    offset: Series[int] = pa.Field(ge=0)
    kafka_timestamp: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ms", "tz": "UTC"})
    event_date: Series[object]

    @pa.dataframe_check
    def offsets_unique(cls, frame: pd.DataFrame) -> bool:
        return not frame.duplicated(["topic", "partition", "offset"]).any()


class ClickstreamIngestConfig(dg.Config):
    """Which records the run moves into bronze: from the consumer group's committed offsets up to
    `until_offsets` (partition -> end offset, exclusive; all pending records when empty)."""

    until_offsets: dict[str, int] = {}
    max_records_per_partition: int = 500_000
    # Keep following the topic for this long after the first batch, committing each micro-batch as it
    # lands: a run's start-up (loading the code location) is paid once, not per batch.
    follow_seconds: float = 0.0
    poll_interval_seconds: float = 0.25


def ingest_clickstream(
    kafka: KafkaResource,
    lake: LakeResource,
    *,
    until: dict[int, int] | None = None,
    max_records_per_partition: int = 500_000,
    log=None,
) -> tuple[IngestResult, dict[str, SilverSummary]]:
    """One streaming micro-batch: pending Kafka records into bronze (committed), then merged into the
    silver dates they touched. The touched dates are marked in the lake before the commit and unmarked
    after the merge; a date still marked when a run starts was left half-done by a crash and is rebuilt
    from bronze."""

    def mark_pending(event_dates: list[str]) -> None:
        for event_date in event_dates:
            lake.put(b"", BRONZE_DATASET, SILVER_PENDING, event_date)

    known = set(clickstream_daily_partitions.get_partition_keys())
    left_by_crash = set(lake.list_keys(BRONZE_DATASET, SILVER_PENDING, suffix="")) & known
    result = ingest(
        kafka,
        lake,
        topic=TOPIC,
        group_id=CONSUMER_GROUP,
        dataset=BRONZE_DATASET,
        with_partition_dates=route_messages,
        until=until,
        max_records_per_partition=max_records_per_partition,
        on_progress=log.info if log else lambda _: None,
        on_dates=mark_pending,
    )
    # A date an earlier run left half-done, or whose bronze files the batch rewrote (a replay), is
    # rebuilt from bronze; the others just take the batch in.
    rebuild = (left_by_crash | result.rewritten_dates) & known
    builds = write_silver_partitions(lake, sorted(rebuild), log)
    fresh = sorted(set(result.rows_by_date) & known - rebuild)
    if fresh and result.bronze is not None:
        builds |= merge_silver_batch(lake, result.bronze, fresh, log)
    for event_date in builds:
        lake.delete(BRONZE_DATASET, SILVER_PENDING, event_date)
    return result, builds


@dg.asset(
    group_name="clickstream_bronze",
    kinds={"kafka", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "bronze_batch_schema_check",
            asset="bronze_clickstream_events",
            description="The ingested batch satisfies BronzeClickstreamMessage: one row per Kafka offset.",
        )
    ],
    metadata={"topic": TOPIC, "consumer_group": CONSUMER_GROUP, "dataset": BRONZE_DATASET},
)
def bronze_clickstream_events(
    context: dg.AssetExecutionContext, config: ClickstreamIngestConfig, kafka: KafkaResource, lake: LakeResource
):
    """The raw clickstream: each message of Kafka topic `clickstream.events` with its key, topic,
    partition, offset and broker timestamp, kept forever. Files are named after their offset range
    and filed under the date partition the message belongs to, so any silver date can be rebuilt from
    here. Offsets are committed only after the files are durable.

    For freshness, the same run then rebuilds the silver and quarantine dates it touched and records
    them as materializations of those partitions; gold and the silver checks follow in a run per date.
    Runs started by the Kafka sensor keep following the topic for a while (`follow_seconds`)."""
    wait_for_earlier_runs(context)
    deadline = time.monotonic() + config.follow_seconds
    until = {int(p): o for p, o in config.until_offsets.items()} or None
    records, dates, failures = 0, set(), []
    while True:
        result, builds = ingest_clickstream(
            kafka, lake, until=until, max_records_per_partition=config.max_records_per_partition, log=context.log
        )
        for event_date, build in builds.items():
            context.log_event(
                dg.AssetMaterialization(
                    "silver_clickstream_events", partition=event_date, metadata=silver_metadata(build)
                )
            )
            context.log_event(
                dg.AssetMaterialization(
                    "quarantine_clickstream_events", partition=event_date, metadata=quarantine_metadata(build)
                )
            )
        batch_dates = sorted(set(result.rows_by_date) | set(builds))
        if result.bronze is not None:
            records += result.records
            dates.update(batch_dates)
            passed, metadata = check_bronze_batch(result.bronze)
            failures += [] if passed else [metadata]
            if config.follow_seconds:  # each micro-batch is visible at once; the run goes on
                context.log_event(
                    dg.AssetMaterialization("bronze_clickstream_events", metadata=_batch_metadata(result, batch_dates))
                )
        # Past the deadline, keep following while the successor is still starting (at most another window).
        now = time.monotonic()
        if now >= deadline and (now >= deadline + config.follow_seconds or not successor_starting(context)):
            break
        if not result.records:
            time.sleep(config.poll_interval_seconds)
        until = None
    yield dg.MaterializeResult(
        metadata={"dagster/row_count": records, "event_dates": dg.MetadataValue.json(sorted(dates))}
        if config.follow_seconds
        else _batch_metadata(result, batch_dates)
    )
    yield dg.AssetCheckResult(
        check_name="bronze_batch_schema_check",
        passed=not failures,
        metadata={"rows": records, "failing_batches": dg.MetadataValue.json(failures[:3])},
    )


def _batch_metadata(result: IngestResult, dates: list[str]) -> dict:
    return {
        "dagster/row_count": result.records,
        "offset_ranges": dg.MetadataValue.json({str(p): list(r) for p, r in result.ranges.items()}),
        "event_dates": dg.MetadataValue.json(dates),
        "rows_by_event_date": dg.MetadataValue.json(result.rows_by_date),
    }


def check_bronze_batch(bronze: pyarrow.Table) -> tuple[bool, dict]:
    """BronzeClickstreamMessage on a batch's columns that say where each message came from."""
    return validate_schema(
        BronzeClickstreamMessage, bronze.select(list(BronzeClickstreamMessage.to_schema().columns)).to_pandas()
    )
