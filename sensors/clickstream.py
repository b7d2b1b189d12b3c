"""Clickstream automation: Kafka -> bronze in near real time, then silver and gold for touched dates."""

import dagster as dg

from assets.clickstream.parsing import CONSUMER_GROUP, TOPIC
from assets.clickstream.silver import clickstream_daily_partitions
from sensors.run_policy import BATCH_TAGS, STREAMING_TAGS
from sensors.streaming import bronze_partitions_sensor, kafka_ingest_sensor

clickstream_ingest_job = dg.define_asset_job(
    "clickstream_ingest_job",
    selection=dg.AssetSelection.assets("bronze_clickstream_events"),
    description="Move pending Kafka records of clickstream.events into bronze and commit their offsets.",
    tags=STREAMING_TAGS,
)

clickstream_daily_job = dg.define_asset_job(
    "clickstream_daily_job",
    selection=dg.AssetSelection.groups("clickstream_silver", "clickstream_gold"),
    description="Rebuild one event_date of silver, quarantine and gold from bronze.",
    tags=BATCH_TAGS,
)

clickstream_kafka_sensor = kafka_ingest_sensor(
    name="clickstream_kafka_sensor",
    topic=TOPIC,
    group_id=CONSUMER_GROUP,
    job=clickstream_ingest_job,
    asset_name="bronze_clickstream_events",
    # A run follows the topic for two minutes: events reach silver within a second or two of arriving,
    # instead of waiting for a new run process to load the code location each time.
    follow_seconds=120,
)

clickstream_gold_job = dg.define_asset_job(
    "clickstream_gold_job",
    selection=dg.AssetSelection.groups("clickstream_gold")
    | dg.AssetSelection.checks_for_assets("silver_clickstream_events", "quarantine_clickstream_events"),
    description="Check the silver dates the ingest run refreshed (blocking), then rebuild their gold.",
    tags=BATCH_TAGS,
)

clickstream_partitions_sensor = bronze_partitions_sensor(
    name="clickstream_partitions_sensor",
    bronze_asset="bronze_clickstream_events",
    job=clickstream_gold_job,
    partitions_def=clickstream_daily_partitions,
    # Gold and the silver checks trail the stream: at most one run every 30 s, over the touched dates.
    minimum_interval_seconds=30,
    one_run_per_tick=True,
)
