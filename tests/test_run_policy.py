"""The instance the project ships retries failed runs, fails stuck ones and sheds housekeeping load; every
job says how it wants to be treated (priority, retries)."""

import shutil
from pathlib import Path

import dagster as dg

from sensors.alerts import clickstream_freshness_job, clickstream_freshness_schedule
from sensors.clickstream import clickstream_daily_job, clickstream_ingest_job
from sensors.fraud import FRAUD_JOBS
from sensors.loans import loans_batch_job, loans_stream_job
from sensors.warehouse import commerce_warehouse_job
from tests.conftest import ROOT

STREAMING = [clickstream_ingest_job, loans_stream_job, FRAUD_JOBS[0], FRAUD_JOBS[1]]
BATCH = [clickstream_daily_job, loans_batch_job, FRAUD_JOBS[2], commerce_warehouse_job]
HOUSEKEEPING = [clickstream_freshness_job]


def test_shipped_instance_config_loads_with_retries_monitoring_and_limits(tmp_path: Path):
    shutil.copy(ROOT / "platform" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_monitoring_settings["cancel_timeout_seconds"] == 180
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_user_code_failure_retries == 3
        assert {"key": "platform/housekeeping", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
            queue.tag_concurrency_limits
        )


def test_every_job_has_a_priority_and_a_retry_policy():
    def priority(job) -> int:
        return int(job.tags["dagster/priority"])

    for job in STREAMING + BATCH + HOUSEKEEPING:
        assert "dagster/max_retries" in job.tags, job.name
    assert min(map(priority, STREAMING)) > max(map(priority, BATCH)) > max(map(priority, HOUSEKEEPING))
    assert all(job.tags["dagster/max_retries"] == "0" for job in STREAMING + HOUSEKEEPING)
    assert all(job.tags["dagster/retry_strategy"] == "FROM_FAILURE" for job in BATCH)
    assert clickstream_freshness_job.tags["platform/housekeeping"] == clickstream_freshness_job.name


@dg.op
def _noop() -> None:
    pass


@dg.job(name=clickstream_freshness_job.name)
def _stand_in_freshness_job():
    _noop()


def test_freshness_schedule_skips_while_its_previous_run_is_unfinished():
    with dg.instance_for_test() as instance:  # a schedule context needs an instance with a ref (not ephemeral)

        def evaluate():
            return clickstream_freshness_schedule(dg.build_schedule_context(instance=instance))

        assert isinstance(evaluate(), dg.RunRequest)
        # (a QUEUED run needs a remote origin; NOT_STARTED is the state just before it)
        queued = instance.create_run_for_job(job_def=_stand_in_freshness_job, status=dg.DagsterRunStatus.NOT_STARTED)
        assert isinstance(evaluate(), dg.SkipReason)
        instance.report_run_canceled(queued)
        assert isinstance(evaluate(), dg.RunRequest)
