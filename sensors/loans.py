"""Loan-application automation: a landed batch file or new Kafka records -> cleaned rows -> features."""

import hashlib

import dagster as dg

from assets.loans.parsing import CONSUMER_GROUP, TOPIC
from assets.loans.raw import landed_files
from assets.streaming import ACTIVE_RUN_STATUSES
from resources import LakeResource
from sensors.streaming import kafka_ingest_sensor

_DOWNSTREAM = [
    "loan_applications",
    "quarantine_loan_applications",
    "loan_risk_features",
    "loan_feature_registry",
]

loans_batch_job = dg.define_asset_job(
    "loans_batch_job",
    selection=dg.AssetSelection.assets("raw_loan_application_files", *_DOWNSTREAM),
    description="Keep newly landed application files, clean them and extend the features.",
)

loans_stream_job = dg.define_asset_job(
    "loans_stream_job",
    selection=dg.AssetSelection.assets("bronze_loan_applications", *_DOWNSTREAM),
    description="Move pending Kafka applications into bronze, clean them, extend the features incrementally.",
)

loans_kafka_sensor = kafka_ingest_sensor(
    name="loans_kafka_sensor",
    topic=TOPIC,
    group_id=CONSUMER_GROUP,
    job=loans_stream_job,
    asset_name="bronze_loan_applications",
)


@dg.sensor(
    job=loans_batch_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a batch run when an application file lands in landing/loan_applications/.",
)
def loans_landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    files = landed_files(lake)
    if not files:
        return dg.SkipReason("no landed application files")
    active = dg.RunsFilter(job_name=loans_batch_job.name, statuses=ACTIVE_RUN_STATUSES)
    if context.instance.get_run_records(active, limit=1):
        return dg.SkipReason("a batch run is in flight")
    # A file is new when its name, size or modification time is: the run key makes each version run once.
    signature = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    key = hashlib.sha256(signature.encode()).hexdigest()[:16]
    return dg.RunRequest(run_key=f"loans-landing:{key}", tags={"platform/files": str(len(files))})
