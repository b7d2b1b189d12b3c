"""Sensor factories shared by every streaming domain.

`kafka_ingest_sensor`: Kafka's committed offsets (written by runs only after bronze is durable) are the
record of what was consumed, not the sensor cursor: a failed run leaves them unchanged, so the next
tick requests the same range again. A topic's partitions are split into `KafkaResource.ingest_shards`
shards (p % shards): each shard has at most one following run (plus its successor) in flight.

`bronze_partitions_sensor`: each bronze materialization names the date partitions it touched; one run
of the downstream job per touched date rebuilds exactly those partitions.
"""

import json
import time

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from assets.streaming import ACTIVE_RUN_STATUSES, SHARD_TAG, TOUCHED_DATES, IngestConfig
from resources import KafkaResource

# A following run's successor is launched this long before the run stops following, to cover the
# successor's start-up (loading the code location: 5-25 s on two busy cores).
HANDOFF_SECONDS = 45


def kafka_ingest_sensor(
    *,
    name: str,
    topic: str,
    group_id: str,
    job: UnresolvedAssetJobDefinition,
    asset_name: str,
    follow_seconds: float = 0.0,
) -> dg.SensorDefinition:
    """`follow_seconds` > 0 asks the run to keep following the topic that long. The run's config is
    typed: the streaming package's `IngestConfig` (the asset's config class or a subclass of it)."""

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests an ingest run of {asset_name} when Kafka topic {topic!r} has records that the "
        f"consumer group {group_id!r} has not committed.",
    )
    def _sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource):
        shards = kafka.ingest_shards
        active = context.instance.get_run_records(dg.RunsFilter(job_name=job.name, statuses=ACTIVE_RUN_STATUSES))
        try:
            offsets = kafka.pending_offsets(kafka.topic(topic), kafka.group(group_id))
        except Exception as error:  # the broker is down or the topic is missing: say so, retry next tick
            return dg.SkipReason(f"cannot read offsets of {topic!r}: {error}")
        requests, skipped = [], []
        for shard in range(shards):
            tag = f"{shard}/{shards}"
            in_flight = [r for r in active if r.dagster_run.tags.get(SHARD_TAG, "0/1") == tag]
            request = _shard_request(shard, shards, in_flight, offsets)
            if isinstance(request, str):
                skipped.append(f"shard {tag}: {request}")
            else:
                requests.append(request)
        if not requests:
            return dg.SkipReason("; ".join(skipped))
        # The cursor only tells the UI what was asked for: the committed offsets are the record.
        shares = {r.tags[SHARD_TAG] for r in requests if "platform/successor_of" not in r.tags}
        requested = {
            str(p): [start, end]
            for p, (start, end) in offsets.items()
            if end > start and f"{p % shards}/{shards}" in shares
        }
        successors = {
            r.tags[SHARD_TAG]: r.tags["platform/successor_of"] for r in requests if r.tags[SHARD_TAG] not in shares
        }
        cursor = {"requested": requested} | ({"successor_of": successors} if successors else {})
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))

    def _shard_request(shard: int, shards: int, in_flight: list, offsets: dict) -> dg.RunRequest | str:
        """The run a shard needs: a successor when its following run nears its end, a run for its pending
        records when none is in flight; else why not."""
        tags = {"platform/topic": topic, SHARD_TAG: f"{shard}/{shards}"}
        config = {"shard": shard, "shards": shards, "follow_seconds": follow_seconds}
        if len(in_flight) > 1:
            return f"run {in_flight[0].dagster_run.run_id} and its successor are in flight"
        if in_flight:
            run = in_flight[0]
            started = run.start_time or run.create_timestamp.timestamp()
            if not follow_seconds or started + follow_seconds - time.time() > HANDOFF_SECONDS:
                return f"run {run.dagster_run.run_id} is still in flight"
            return dg.RunRequest(
                run_config=dg.RunConfig(ops={asset_name: IngestConfig(**config)}),
                tags=tags | {"platform/successor_of": run.dagster_run.run_id},
            )
        pending = {p: (s, e) for p, (s, e) in offsets.items() if e > s and p % shards == shard}
        if not pending:
            return f"no pending records on {topic!r}"
        records = sum(end - start for start, end in pending.values())
        until = {str(p): e for p, (_, e) in pending.items()}
        return dg.RunRequest(
            run_config=dg.RunConfig(ops={asset_name: IngestConfig(until_offsets=until, **config)}),
            tags=tags | {"platform/pending_records": str(records)},
        )

    return _sensor


def bronze_partitions_sensor(
    *,
    name: str,
    bronze_asset: str,
    job: UnresolvedAssetJobDefinition,
    partitions_def: dg.PartitionsDefinition,
    minimum_interval_seconds: int = 5,
    one_run_per_tick: bool = False,
) -> dg.SensorDefinition:
    """`one_run_per_tick`: the touched dates of a tick are rebuilt by a single run over the range from
    the first to the last of them (the job's assets must accept ranges: single-run backfill policy),
    instead of one run per date: each run costs a process start that loads the code location."""

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Rebuilds the date partitions that new {bronze_asset} data touched.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        after = int(context.cursor) if context.cursor else None
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(bronze_asset), after_storage_id=after),
            limit=200,
            ascending=True,
        ).records
        if not records:
            return dg.SkipReason(f"no new {bronze_asset} materializations")
        dates: set[str] = set()
        for record in records:
            materialization = record.asset_materialization
            value = materialization.metadata.get(TOUCHED_DATES) if materialization else None
            dates.update(value.value if value is not None else [])  # type: ignore[union-attr]
        known = set(partitions_def.get_partition_keys(dynamic_partitions_store=context.instance))
        for date in sorted(dates - known):
            context.log.warning(f"{bronze_asset} has data for {date}, outside the partitions; it waits in bronze")
        last = records[-1].storage_id
        touched = sorted(dates & known)
        if one_run_per_tick and len(touched) > 1:
            first, final = touched[0], touched[-1]
            range_tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": final}
            requests = [dg.RunRequest(run_key=f"{name}:{first}...{final}:{last}", tags=range_tags)]
        else:
            requests = [dg.RunRequest(partition_key=date, run_key=f"{name}:{date}:{last}") for date in touched]
        return dg.SensorResult(run_requests=requests, cursor=str(last))

    return _sensor
