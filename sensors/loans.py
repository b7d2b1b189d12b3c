"""Loan-application automation: a landed batch file or new Kafka records -> cleaned rows -> features."""

import hashlib
import json
import time

import dagster as dg
from dagster._core.storage.dagster_run import RunRecord
from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, RUN_KEY_TAG, WILL_RETRY_TAG

from assets.loans.names import CONSUMER_GROUP, LANDING_DIR, TOPIC
from assets.streaming import ACTIVE_RUN_STATUSES
from resources import LandingResource
from sensors.run_policy import BATCH_TAGS, STREAMING_TAGS
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
    tags=BATCH_TAGS,
)

loans_stream_job = dg.define_asset_job(
    "loans_stream_job",
    selection=dg.AssetSelection.assets("bronze_loan_applications", *_DOWNSTREAM),
    description="Move pending Kafka applications into bronze, clean them, extend the features incrementally.",
    tags=STREAMING_TAGS,
)

loans_kafka_sensor = kafka_ingest_sensor(
    name="loans_kafka_sensor",
    topic=TOPIC,
    group_id=CONSUMER_GROUP,
    job=loans_stream_job,
    asset_name="bronze_loan_applications",
)


# A failed run is requested again under a new run key (Dagster never relaunches a key whose run failed), at
# the earliest this long after it ended, times the attempt number (capped at 10 minutes).
RETRY_BACKOFF_SECONDS = 30.0
# A failed run Dagster's run retries will retry (tag dagster/will_retry) is waited for this long at most.
PENDING_RETRY_GRACE_SECONDS = 300.0


def landing_run_key(signature: str, attempt: int) -> str:
    return f"loans-landing:{signature}" if attempt == 0 else f"loans-landing:{signature}:retry{attempt}"


def _retry_pending(record: RunRecord, now: float) -> bool:
    """Dagster's run retries will launch a new run for this failed one (its retry copies the run key)."""
    tags = record.dagster_run.tags
    return (
        record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        and tags.get(WILL_RETRY_TAG) == "true"
        and AUTO_RETRY_RUN_ID_TAG not in tags
        and now - (record.end_time or 0.0) < PENDING_RETRY_GRACE_SECONDS
    )


@dg.sensor(
    job=loans_batch_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Requests a batch run when an application file lands in $LANDING_ROOT/{LANDING_DIR}/ (the landing "
    "resource), and again (new run key, with back-off) until a run for that version of the files has succeeded.",
)
def loans_landing_sensor(context: dg.SensorEvaluationContext, landing: LandingResource):
    """The cursor holds the signature of the landed files, the attempt number and whether a run for them has
    succeeded. A run key names one attempt; the runs of an attempt (with Dagster's own retries, which keep
    the key) are found by their dagster/run_key tag."""
    files = landing.landed(LANDING_DIR)
    if not files:
        return dg.SkipReason("no landed application files")
    # A file is new when its name, size or modification stamp (mtime, or the ETag on S3) is.
    listing = ";".join(f"{f.key}:{f.size}:{f.stamp}" for f in files)
    signature = hashlib.sha256(listing.encode()).hexdigest()[:16]
    state = json.loads(context.cursor) if context.cursor else {}
    if state.get("signature") != signature:
        state = {"signature": signature, "attempt": 0, "succeeded": False}
    if state["succeeded"]:
        return dg.SkipReason(f"the landed files ({len(files)}) were processed by a successful run")
    instance, now = context.instance, time.time()
    run_key = landing_run_key(signature, state["attempt"])
    records = instance.get_run_records(dg.RunsFilter(tags={RUN_KEY_TAG: run_key}))
    if any(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records):
        state["succeeded"] = True
        return dg.SensorResult(skip_reason=f"run key {run_key} succeeded", cursor=json.dumps(state))
    if any(not r.dagster_run.is_finished or _retry_pending(r, now) for r in records):
        return dg.SkipReason(f"a run for {run_key} is in flight or about to be retried")
    if records:  # every run of this attempt failed or was canceled: a new attempt, after a back-off
        ended = max(r.end_time or 0.0 for r in records)
        wait = min(RETRY_BACKOFF_SECONDS * (state["attempt"] + 1), 600.0) - (now - ended)
        if wait > 0:
            return dg.SkipReason(f"run key {run_key} failed; requesting it again in {wait:.0f} s")
        state["attempt"] += 1
        run_key = landing_run_key(signature, state["attempt"])
    active = dg.RunsFilter(job_name=loans_batch_job.name, statuses=ACTIVE_RUN_STATUSES)
    if instance.get_run_records(active, limit=1):
        return dg.SkipReason("a batch run is in flight")
    # No run with this key yet (or its request was lost): (re-)request it; Dagster drops a duplicate key.
    tags = {"platform/files": str(len(files)), "platform/attempt": str(state["attempt"])}
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key, tags=tags)], cursor=json.dumps(state))
