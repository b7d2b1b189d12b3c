"""Fraud automation: Kafka -> bronze within seconds of arrival, then the decision dataset of the touched
dates; buyer changes rebuild the dimensions and then every decision date they can alter."""

import dagster as dg

from assets.fraud.common import (
    CHANGES_GROUP,
    CHANGES_TOPIC,
    EVENTS_GROUP,
    EVENTS_TOPIC,
    fraud_daily_partitions,
)
from sensors.streaming import bronze_partitions_sensor, kafka_ingest_sensor

fraud_ingest_job = dg.define_asset_job(
    "fraud_ingest_job",
    selection=dg.AssetSelection.assets("bronze_fraud_risk_events"),
    description="Move pending checkout risk events from Kafka into bronze and commit their offsets.",
)

fraud_dimensions_job = dg.define_asset_job(
    "fraud_dimensions_job",
    selection=dg.AssetSelection.assets("bronze_fraud_buyer_changes", "fraud_buyer_scd2", "fraud_buyer_scd1"),
    description="Move pending buyer changes into bronze, then rebuild the SCD2 and SCD1 buyer dimensions.",
)

fraud_daily_job = dg.define_asset_job(
    "fraud_daily_job",
    selection=dg.AssetSelection.groups("fraud_silver", "fraud_gold"),
    description="Rebuild one event date of silver, quarantine and decisions, then the serving table.",
)

fraud_events_kafka_sensor = kafka_ingest_sensor(
    name="fraud_events_kafka_sensor",
    topic=EVENTS_TOPIC,
    group_id=EVENTS_GROUP,
    job=fraud_ingest_job,
    asset_name="bronze_fraud_risk_events",
)

fraud_changes_kafka_sensor = kafka_ingest_sensor(
    name="fraud_changes_kafka_sensor",
    topic=CHANGES_TOPIC,
    group_id=CHANGES_GROUP,
    job=fraud_dimensions_job,
    asset_name="bronze_fraud_buyer_changes",
)

fraud_partitions_sensor = bronze_partitions_sensor(
    name="fraud_partitions_sensor",
    bronze_asset="bronze_fraud_risk_events",
    job=fraud_daily_job,
    partitions_def=fraud_daily_partitions,
)

# The SCD2 materialization names the decision dates its changes can alter (see fraud_buyer_dimensions).
fraud_dimension_dates_sensor = bronze_partitions_sensor(
    name="fraud_dimension_dates_sensor",
    bronze_asset="fraud_buyer_scd2",
    job=fraud_daily_job,
    partitions_def=fraud_daily_partitions,
)

FRAUD_JOBS = [fraud_ingest_job, fraud_dimensions_job, fraud_daily_job]
FRAUD_SENSORS = [
    fraud_events_kafka_sensor,
    fraud_changes_kafka_sensor,
    fraud_partitions_sensor,
    fraud_dimension_dates_sensor,
]
