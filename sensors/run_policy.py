"""Run tags that say how the instance treats each kind of run (platform/dagster.yaml reads them).

- Streaming runs follow Kafka: they are dequeued first (dagster/priority) and not retried by Dagster, since
  their sensor starts the next run from the committed offsets anyway (a retry would race that successor);
  one running far longer than a following run can is failed by run monitoring (dagster/max_runtime).
- Batch runs rebuild dates or landed files: retried twice from the failed step.
- Housekeeping runs (periodic checks) come last, never retried (the next tick comes soon), and one at a time
  per job (tag concurrency limit on platform/housekeeping).

`platform/run_kind` lets the instance keep slots for each kind. Following runs never end while the topic
lives, and a run and its successor overlap for as long as the hand-off takes (over a minute on a saturated
machine), so the streams alone can hold 2 x streaming jobs x shards slots. The instance's max_concurrent_runs
is that plus the batch limit, so that streams never wait for batch work and batch work never waits forever
behind streams (the soak saw dbt runs queued 14 minutes behind four following runs in four slots).
"""

RUN_KIND = "platform/run_kind"

# A following run ends after at most two follow windows (sensors/streaming.py); run monitoring fails one still
# running after 10 minutes as hung, and the sensor's next run continues from the committed offsets.
STREAMING_TAGS = {
    "dagster/priority": "10",
    "dagster/max_retries": "0",
    "dagster/max_runtime": "600",
    RUN_KIND: "streaming",
}
BATCH_TAGS = {
    "dagster/priority": "0",
    "dagster/max_retries": "2",
    "dagster/retry_strategy": "FROM_FAILURE",
    RUN_KIND: "batch",
}


def housekeeping_tags(job_name: str) -> dict[str, str]:
    return {"dagster/priority": "-10", "dagster/max_retries": "0", "platform/housekeeping": job_name}
