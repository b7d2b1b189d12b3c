"""Fraud automation. Live path: the Kafka sensor starts an ingest run that follows the checkout events
topic for two minutes; each micro-batch is appended to bronze, quarantine, decisions and silver and the
serving table is updated for its buyers, in that same run (assets/fraud/bronze.py and live.py). The
sensor launches the successor run before the current one stops, so a run's start-up never sits between
an event and its decision row. Buyer changes rebuild the dimensions and then every decision date they
can alter (each date rebuilt from bronze and replaced in one commit per table)."""

import dagster as dg

from assets.fraud.names import CHANGES_GROUP, CHANGES_TOPIC, EVENTS_GROUP, EVENTS_TOPIC, fraud_daily_partitions
from sensors.run_policy import BATCH_TAGS, STREAMING_TAGS
from sensors.streaming import bronze_partitions_sensor, kafka_ingest_sensor

fraud_live_job = dg.define_asset_job(
    "fraud_live_job",
    selection=dg.AssetSelection.assets("bronze_fraud_risk_events"),
    description="Follow the checkout risk events topic: each micro-batch into bronze, quarantine, the decision "
    "dataset and silver (offsets committed once it is durable in all), and its buyers into the serving table.",
    tags=STREAMING_TAGS,
)

fraud_dimensions_job = dg.define_asset_job(
    "fraud_dimensions_job",
    selection=dg.AssetSelection.assets("bronze_fraud_buyer_changes", "fraud_buyer_scd2", "fraud_buyer_scd1"),
    description="Move pending buyer changes into bronze, then rebuild the SCD2 and SCD1 buyer dimensions.",
    tags=STREAMING_TAGS,
)

fraud_daily_job = dg.define_asset_job(
    "fraud_daily_job",
    selection=dg.AssetSelection.groups("fraud_silver", "fraud_gold"),
    description="Rebuild one event date of silver, quarantine and decisions, then the serving table.",
    tags=BATCH_TAGS,
)

fraud_import_job = dg.define_asset_job(
    "fraud_import_job",
    selection=dg.AssetSelection.assets("fraud_history_import"),
    description="Import a fraud history (buyer-change and checkout-event files, NDJSON or CSV) from the landing "
    "folder into bronze, exactly once per file; rebuild the buyer dimensions with every version it holds and "
    "every decision date it reaches, with their checks: a range of dates is one run.",
    tags=BATCH_TAGS,
)

fraud_events_kafka_sensor = kafka_ingest_sensor(
    name="fraud_events_kafka_sensor",
    topic=EVENTS_TOPIC,
    group_id=EVENTS_GROUP,
    job=fraud_live_job,
    asset_name="bronze_fraud_risk_events",
    # Events reach the decision dataset a second or two after they arrive, instead of waiting for a new
    # run process to load the code location (5-25 s on two busy cores) each time.
    follow_seconds=120,
)

fraud_changes_kafka_sensor = kafka_ingest_sensor(
    name="fraud_changes_kafka_sensor",
    topic=CHANGES_TOPIC,
    group_id=CHANGES_GROUP,
    job=fraud_dimensions_job,
    asset_name="bronze_fraud_buyer_changes",
)

# The SCD2 materialization names the decision dates its changes can alter (see fraud_buyer_dimensions).
fraud_dimension_dates_sensor = bronze_partitions_sensor(
    name="fraud_dimension_dates_sensor",
    bronze_asset="fraud_buyer_scd2",
    job=fraud_daily_job,
    partitions_def=fraud_daily_partitions,
)

FRAUD_JOBS = [fraud_live_job, fraud_dimensions_job, fraud_daily_job, fraud_import_job]
FRAUD_SENSORS = [fraud_events_kafka_sensor, fraud_changes_kafka_sensor, fraud_dimension_dates_sensor]
