"""The instance the project ships retries failed runs, fails stuck ones and sheds housekeeping load; every
job says how it wants to be treated (priority, retries)."""

import shutil
from pathlib import Path

import dagster as dg
import yaml

from sensors.clickstream import clickstream_daily_job, clickstream_ingest_job
from sensors.fraud import FRAUD_JOBS
from sensors.loans import loans_batch_job, loans_stream_job
from sensors.policies import automation_sensor
from sensors.run_policy import BATCH_TAGS, RUN_KIND
from sensors.warehouse import commerce_raw_job, commerce_warehouse_job
from tests.conftest import ROOT

STREAMING = [clickstream_ingest_job, loans_stream_job, FRAUD_JOBS[0], FRAUD_JOBS[1]]
BATCH = [clickstream_daily_job, loans_batch_job, FRAUD_JOBS[2], commerce_warehouse_job]
BATCH += [commerce_raw_job]


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
        assert instance.auto_materialize_use_sensors and instance.freshness_enabled


def test_every_job_has_a_priority_and_a_retry_policy():
    def priority(job) -> int:
        return int(job.tags["dagster/priority"])

    for job in STREAMING + BATCH:
        assert "dagster/max_retries" in job.tags, job.name
    assert min(map(priority, STREAMING)) > max(map(priority, BATCH))
    assert all(job.tags["dagster/max_retries"] == "0" for job in STREAMING)
    assert all(job.tags["dagster/retry_strategy"] == "FROM_FAILURE" for job in BATCH)
    # Runs started by Declarative Automation are batch runs too.
    assert automation_sensor.run_tags == BATCH_TAGS


def test_streams_and_batch_work_never_starve_each_other():
    """Every streaming job may hold a following run and its successor per shard at once: the instances keep
    that many slots beside the batch limit, so a dbt run is never queued behind the streams for good."""
    assert {job.tags[RUN_KIND] for job in STREAMING} == {"streaming"}
    assert {job.tags[RUN_KIND] for job in BATCH} == {"batch"}
    for name, shards in (("dagster.yaml", 1), ("dagster-production.yaml", 2)):
        runs = yaml.safe_load((ROOT / "platform" / name).read_text())["concurrency"]["runs"]
        (batch,) = [limit["limit"] for limit in runs["tag_concurrency_limits"] if limit["key"] == RUN_KIND]
        assert runs["max_concurrent_runs"] - batch >= 2 * len(STREAMING) * shards, name
