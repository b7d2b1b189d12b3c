"""Fraud automation. Live path: one run per Kafka batch moves the events into bronze and rebuilds
today's decision partition in the same run (a second run would add its whole start-up to every event's
latency), then the serving table; the batch's other dates (late events) follow through the partitions
sensor. Buyer changes rebuild the dimensions and then every decision date they can alter."""

import datetime as dt

import dagster as dg

from assets.fraud.common import (
    CHANGES_GROUP,
    CHANGES_TOPIC,
    EVENTS_GROUP,
    EVENTS_TOPIC,
    fraud_daily_partitions,
)
from resources import KafkaResource
from sensors.streaming import bronze_partitions_sensor, kafka_ingest_sensor

LIVE_ASSETS = [
    "bronze_fraud_risk_events",
    "silver_fraud_risk_events",
    "quarantine_fraud_risk_events",
    "fraud_decision_events",
    "fraud_buyer_latest_features",
]

fraud_live_job = dg.define_asset_job(
    "fraud_live_job",
    selection=dg.AssetSelection.assets(*LIVE_ASSETS),
    description="Move pending checkout risk events from Kafka into bronze, commit their offsets, then rebuild "
    "the live (today's) partition of silver, quarantine and the decision dataset, and the serving table.",
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

_pending_events = kafka_ingest_sensor(
    name="fraud_events_kafka_offsets",
    topic=EVENTS_TOPIC,
    group_id=EVENTS_GROUP,
    job=fraud_live_job,
    asset_name="bronze_fraud_risk_events",
)


@dg.sensor(
    name="fraud_events_kafka_sensor",
    job=fraud_live_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Requests a live run (ingest + today's decisions) when Kafka topic {EVENTS_TOPIC!r} has records "
    f"that the consumer group {EVENTS_GROUP!r} has not committed.",
)
def fraud_events_kafka_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource):
    """The shared Kafka ingest sensor's decision, with today's partition attached to each run request."""
    result = _pending_events(context)
    if not isinstance(result, dg.SensorResult):
        return result
    today = dt.datetime.now(dt.UTC).date().isoformat()
    requests = []
    for request in result.run_requests or []:
        config = request.run_config["ops"]["bronze_fraud_risk_events"]["config"]
        run_config = {"ops": {"bronze_fraud_risk_events": {"config": {**config, "live_date": today}}}}
        requests.append(dg.RunRequest(run_config=run_config, tags=request.tags, partition_key=today))
    return dg.SensorResult(run_requests=requests, cursor=result.cursor)


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

FRAUD_JOBS = [fraud_live_job, fraud_dimensions_job, fraud_daily_job]
FRAUD_SENSORS = [
    fraud_events_kafka_sensor,
    fraud_changes_kafka_sensor,
    fraud_partitions_sensor,
    fraud_dimension_dates_sensor,
]
