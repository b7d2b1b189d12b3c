"""Clickstream automation: Kafka -> bronze, silver and gold in near real time (the streaming run), and the
daily close that rebuilds yesterday exactly."""

import datetime as dt

import dagster as dg

from assets.clickstream.names import CONSUMER_GROUP, TOPIC
from sensors.run_policy import BATCH_TAGS, STREAMING_TAGS
from sensors.streaming import kafka_ingest_sensor

clickstream_ingest_job = dg.define_asset_job(
    "clickstream_ingest_job",
    selection=dg.AssetSelection.assets("bronze_clickstream_events"),
    description="Move pending Kafka records of clickstream.events into bronze and commit their offsets.",
    tags=STREAMING_TAGS,
)

clickstream_daily_job = dg.define_asset_job(
    "clickstream_daily_job",
    selection=dg.AssetSelection.groups("clickstream_silver", "clickstream_gold"),
    description="Rebuild event dates of silver, quarantine and gold from bronze, exactly, with every "
    "whole-date check: the daily close, a reprocessing, a disaster recovery.",
    tags=BATCH_TAGS,
)


clickstream_import_job = dg.define_asset_job(
    "clickstream_import_job",
    selection=dg.AssetSelection.assets("clickstream_history_import"),
    description="Import clickstream archive files (NDJSON or CSV) from the landing folder into bronze, exactly "
    "once per file, and rebuild every date they reach in silver, quarantine and gold, with their checks: "
    "a range of dates is one run.",
    tags=BATCH_TAGS,
)


@dg.schedule(
    job=clickstream_daily_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The daily close: yesterday rebuilt from bronze in one commit per table (exact duplicate "
    "check over the whole date, small files of its micro-batches compacted) and checked whole.",
)
def clickstream_daily_close_schedule(context: dg.ScheduleEvaluationContext):
    yesterday = (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()
    return dg.RunRequest(partition_key=yesterday, run_key=f"close:{yesterday}")


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
