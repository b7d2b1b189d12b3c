"""Bronze: every checkout risk event and buyer master-data change exactly as Kafka delivered it, durable
before it is acknowledged, through the platform's one ingest path (`assets.kafka_ingest.ingest`).

The checkout events feed decision services, so their ingest run is also the live path: it follows the
topic (`follow_seconds`) and, after each micro-batch is committed, rebuilds the silver, quarantine and
decision partitions of the dates the batch touched and the serving table, in the same process, and
reports those materializations and checks. A run's start-up (loading the code location) is paid once,
not per batch."""

import time
from dataclasses import dataclass, field

import dagster as dg

from assets.fraud.common import (
    BRONZE_CHANGES,
    BRONZE_EVENTS,
    CHANGES_GROUP,
    CHANGES_TOPIC,
    EVENTS_GROUP,
    EVENTS_TOPIC,
    fraud_daily_partitions,
    partition_dates_by,
)
from assets.fraud.decision import (
    LOADED_RULES,
    DecisionBuild,
    fraud_decision_partition,
    partition_checks,
    partition_metadata,
    write_decision_partition,
)
from assets.fraud.rules import MarketRules
from assets.fraud.serving import fraud_buyer_latest_features, write_latest_features
from assets.kafka_ingest import IngestResult, ingest, successor_starting, wait_for_earlier_runs
from assets.provenance import reported_materialization
from resources import KafkaResource, LakeResource, WarehouseResource

# Dates whose bronze is committed but whose decision partition has not been rebuilt since.
DIRTY = "_decision_pending"


class FraudIngestConfig(dg.Config):
    """Which records the run moves into bronze: from the consumer group's committed offsets up to
    `until_offsets` (partition -> end offset, exclusive; all pending records when empty)."""

    until_offsets: dict[str, int] = {}
    max_records_per_partition: int = 500_000


class FraudEventsIngestConfig(FraudIngestConfig):
    # Keep following the topic this long after the first batch, each micro-batch committed and its dates
    # rebuilt as it lands (set by the Kafka sensor); 0: one batch. Extended (up to twice as long) while the
    # successor run the sensor launched is still starting, so that no gap opens at the hand-off.
    follow_seconds: float = 0.0
    poll_interval_seconds: float = 0.25


@dataclass
class LiveBatch:
    """One micro-batch of the live path: what was ingested, the dates rebuilt, the serving table."""

    ingest: IngestResult
    builds: dict[str, DecisionBuild] = field(default_factory=dict)
    serving: dict | None = None  # the serving table's materialization metadata, when it was rebuilt


def ingest_fraud_events(
    kafka: KafkaResource,
    lake: LakeResource,
    warehouse: WarehouseResource,
    *,
    rules: MarketRules = LOADED_RULES,
    until: dict[int, int] | None = None,
    max_records_per_partition: int = 500_000,
    log=None,
) -> LiveBatch:
    """One live micro-batch: pending checkout events into bronze (committed), then the decision dates
    they touched rebuilt, then the serving table. The touched dates are marked in the lake before the
    commit and unmarked after their rebuild, so a crash in between is repaired by the next batch."""

    def mark_dirty(durable: IngestResult) -> None:
        for event_date in durable.rows_by_date:
            lake.put(b"", BRONZE_EVENTS, DIRTY, event_date)

    batch = LiveBatch(
        ingest(
            kafka,
            lake,
            topic=EVENTS_TOPIC,
            group_id=EVENTS_GROUP,
            dataset=BRONZE_EVENTS,
            with_partition_dates=partition_dates_by("occurred_at"),
            until=until,
            max_records_per_partition=max_records_per_partition,
            on_progress=log.info if log else lambda _: None,
            on_durable=mark_dirty,
        )
    )
    touched = set(lake.list_keys(BRONZE_EVENTS, DIRTY, suffix="")) | set(batch.ingest.rows_by_date)
    # A date outside the partitions (a clock far ahead) stays marked and waits in bronze until it is one.
    dates = sorted(touched & set(fraud_daily_partitions.get_partition_keys())) if touched else []
    for event_date in dates:
        batch.builds[event_date] = write_decision_partition(lake, rules, event_date, log)
        lake.delete(BRONZE_EVENTS, DIRTY, event_date)
    if batch.builds:
        batch.serving = write_latest_features(lake, warehouse)
    return batch


@dg.asset(
    group_name="fraud_bronze",
    kinds={"kafka", "parquet"},
    metadata={"topic": EVENTS_TOPIC, "consumer_group": EVENTS_GROUP, "dataset": BRONZE_EVENTS},
    # Not in DECISION_WRITER_POOL: a following run would hold it for minutes, and its successor could not
    # start while it does (no hand-off). Its rebuilds are guarded like every rebuild: see
    # write_decision_partition.
    # Each micro-batch is reported as a materialization of its own (none when nothing arrived).
    output_required=False,
)
def bronze_fraud_risk_events(
    context: dg.AssetExecutionContext,
    config: FraudEventsIngestConfig,
    kafka: KafkaResource,
    lake: LakeResource,
    warehouse: WarehouseResource,
):
    """Raw checkout risk events: each message of Kafka topic `fraud.checkout_risk_events` with its key and
    Kafka coordinates, kept forever, filed under the date the event occurred (arrival date when its time
    is missing or implausible). Offsets are committed only after the files are durable.

    The live path: after each micro-batch the same run rebuilds the silver, quarantine and decision
    partitions of the dates it touched and the serving table, and reports them (with their checks).
    Runs started by the Kafka sensor keep following the topic for a while (`follow_seconds`)."""
    wait_for_earlier_runs(context)
    deadline = time.monotonic() + config.follow_seconds
    until = {int(p): o for p, o in config.until_offsets.items()} or None
    while True:
        batch = ingest_fraud_events(
            kafka,
            lake,
            warehouse,
            until=until,
            max_records_per_partition=config.max_records_per_partition,
            log=context.log,
        )
        if batch.ingest.records:
            yield reported_materialization(
                context, bronze_fraud_risk_events, "bronze_fraud_risk_events", metadata=_batch_metadata(batch)
            )
        failed_blocking = False
        for event_date, build in batch.builds.items():
            for asset_key, metadata in partition_metadata(build).items():
                yield reported_materialization(
                    context, fraud_decision_partition, asset_key, partition=event_date, metadata=metadata
                )
            for check in partition_checks(build):
                failed_blocking |= check.blocking and not check.passed
                yield dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(check.asset),
                    check_name=check.name,
                    passed=check.passed,
                    metadata=check.metadata,
                    severity=check.severity,
                    blocking=check.blocking,
                    # One execution record per date and run (the latest evaluation of the run), not one per run.
                    partition=event_date,
                )
        if batch.serving is not None:
            yield reported_materialization(
                context, fraud_buyer_latest_features, "fraud_buyer_latest_features", metadata=batch.serving
            )
        # A failed blocking check ends the run (Dagster fails it on the check): nothing more is served
        # from a decision dataset that is known to be wrong.
        if failed_blocking:
            break
        # Past the deadline, keep following while the successor the sensor launched is still starting (its
        # start-up can outlast the sensor's head start on a busy machine), for at most another window.
        now = time.monotonic()
        if now >= deadline and (now >= deadline + config.follow_seconds or not successor_starting(context)):
            break
        if not batch.ingest.records:
            time.sleep(config.poll_interval_seconds)
        until = None


def _batch_metadata(batch: LiveBatch) -> dict:
    result = batch.ingest
    return {
        "dagster/row_count": result.records,
        "offset_ranges": dg.MetadataValue.json({str(p): list(r) for p, r in result.ranges.items()}),
        "rows_by_event_date": dg.MetadataValue.json(result.rows_by_date),
        "rebuilt_event_dates": dg.MetadataValue.json(sorted(batch.builds)),
    }


@dg.asset(
    group_name="fraud_bronze",
    kinds={"kafka", "parquet"},
    metadata={"topic": CHANGES_TOPIC, "consumer_group": CHANGES_GROUP, "dataset": BRONZE_CHANGES},
)
def bronze_fraud_buyer_changes(
    context: dg.AssetExecutionContext, config: FraudIngestConfig, kafka: KafkaResource, lake: LakeResource
) -> dg.MaterializeResult:
    """Raw buyer master-data changes (after-images from the CRM change stream `fraud.buyer_changes`), kept
    forever, filed under the date the change took effect. The source of both buyer dimensions."""
    result = ingest(
        kafka,
        lake,
        topic=CHANGES_TOPIC,
        group_id=CHANGES_GROUP,
        dataset=BRONZE_CHANGES,
        with_partition_dates=partition_dates_by("changed_at"),
        until={int(p): o for p, o in config.until_offsets.items()} or None,
        max_records_per_partition=config.max_records_per_partition,
        on_progress=context.log.info,
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.records,
            "offset_ranges": dg.MetadataValue.json({str(p): list(r) for p, r in result.ranges.items()}),
            # Read by fraud_buyer_dimensions: the decision dates these changes may alter.
            "event_dates": dg.MetadataValue.json(sorted(result.rows_by_date)),
            "rows_by_event_date": dg.MetadataValue.json(result.rows_by_date),
        }
    )
