"""Bronze: every clickstream message exactly as Kafka delivered it, durable before it is acknowledged.

The clickstream stream is registered here with the streaming package: its topic, its bronze table, how
a message is routed to its date (parsed once, at ingest), and what happens to each micro-batch after
bronze (`SilverWriter`: silver, quarantine, duplicates)."""

import time

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from assets.clickstream.gold import gold_frames, publish
from assets.clickstream.names import BRONZE_TABLE, CONSUMER_GROUP, TOPIC
from assets.clickstream.silver import SilverWriter, route_messages
from assets.pandera_checks import validate_schema
from assets.streaming import TOUCHED_DATES, IngestConfig, Stream, batch_metadata, follow
from resources import KafkaResource, LakeResource, WarehouseResource

CLICKSTREAM_STREAM = Stream(topic=TOPIC, group_id=CONSUMER_GROUP, bronze_table=BRONZE_TABLE, route=route_messages)


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


class ClickstreamIngestConfig(IngestConfig):
    """The ingest run's range and following time; `dedup_window_minutes`: how many minutes of event ids
    the run holds in memory for the duplicate check (older minutes are loaded from silver on demand);
    `gold_publish_seconds`: how often the run writes the gold tables of the dates it touched."""

    dedup_window_minutes: int = 30
    gold_publish_seconds: float = 5.0


@dg.asset(
    group_name="clickstream_bronze",
    kinds={"kafka", "deltalake"},
    check_specs=[
        dg.AssetCheckSpec(
            "bronze_batch_schema_check",
            asset="bronze_clickstream_events",
            description="Every ingested batch satisfies BronzeClickstreamMessage: one row per Kafka offset.",
        )
    ],
    metadata={"topic": TOPIC, "consumer_group": CONSUMER_GROUP, "table": BRONZE_TABLE},
)
def bronze_clickstream_events(
    context: dg.AssetExecutionContext,
    config: ClickstreamIngestConfig,
    kafka: KafkaResource,
    lake: LakeResource,
    warehouse: WarehouseResource,
):
    """The raw clickstream: each message of Kafka topic `clickstream.events` with its key, topic,
    partition, offset and broker timestamp, kept forever, partitioned by the date the message belongs
    to, so any silver date can be rebuilt from here. Offsets are committed only after the batch is
    durable in bronze and in silver.

    For freshness, the same run appends each micro-batch to silver and quarantine, advances gold's
    aggregates, publishes gold every few seconds, and records those partitions' materializations as it
    goes. Runs started by the Kafka sensor keep following the topic for a while (`follow_seconds`)."""
    started = time.monotonic()
    writer = SilverWriter.open(lake, config.dedup_window_minutes, config.gold_publish_seconds)
    context.log.info(f"loaded {writer.seen.size} recent event ids in {time.monotonic() - started:.1f}s")
    records, dates, failures = 0, set(), []
    for batch in follow(context, config, kafka, lake, CLICKSTREAM_STREAM, writer):
        records += batch.records
        dates.update(batch.rows_by_date())
        passed, metadata = check_bronze_batch(batch.rows)
        failures += [] if passed else [metadata]
        if config.follow_seconds:  # each micro-batch is visible at once; the run goes on
            context.log_event(dg.AssetMaterialization("bronze_clickstream_events", metadata=batch_metadata(batch)))
    final = writer.publish_gold(settle=True)
    for event in [*final.materializations, *final.checks]:
        context.log_event(event)
    try:  # the DuckDB names analysts query; the warehouse file may be busy (a dbt run): then next time
        touched = {d: writer.gold.tables(d) for d in sorted(dates)} if lake.is_s3 and dates else {}
        publish(warehouse, lake, gold_frames(touched) if touched else {})
    except duckdb.IOException as busy:
        context.log.warning(f"DuckDB views not refreshed: {busy}")
    yield dg.MaterializeResult(
        metadata={"dagster/row_count": records, TOUCHED_DATES: dg.MetadataValue.json(sorted(dates))}
    )
    yield dg.AssetCheckResult(
        check_name="bronze_batch_schema_check",
        passed=not failures,
        metadata={"rows": records, "failing_batches": dg.MetadataValue.json(failures[:3])},
    )


def check_bronze_batch(bronze: pyarrow.Table) -> tuple[bool, dict]:
    """BronzeClickstreamMessage on a batch's columns that say where each message came from."""
    return validate_schema(
        BronzeClickstreamMessage, bronze.select(list(BronzeClickstreamMessage.to_schema().columns)).to_pandas()
    )
