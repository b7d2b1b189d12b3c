"""Run tags that say how the instance treats each kind of run (platform/dagster.yaml reads them).

- Streaming runs follow Kafka: they are dequeued first (dagster/priority) and not retried by Dagster, since
  their sensor starts the next run from the committed offsets anyway (a retry would race that successor).
- Batch runs rebuild dates or landed files: retried twice from the failed step.
- Housekeeping runs (periodic checks) come last, never retried (the next tick comes soon), and one at a time
  per job (tag concurrency limit on platform/housekeeping).
"""

STREAMING_TAGS = {"dagster/priority": "10", "dagster/max_retries": "0"}
BATCH_TAGS = {"dagster/priority": "0", "dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}


def housekeeping_tags(job_name: str) -> dict[str, str]:
    return {"dagster/priority": "-10", "dagster/max_retries": "0", "platform/housekeeping": job_name}
