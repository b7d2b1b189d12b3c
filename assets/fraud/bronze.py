"""Bronze: every checkout risk event and buyer master-data change exactly as Kafka delivered it, durable
before it is acknowledged, through the platform's one ingest path (`assets.kafka_ingest.ingest`)."""

import dagster as dg

from assets.fraud.common import (
    BRONZE_CHANGES,
    BRONZE_EVENTS,
    CHANGES_GROUP,
    CHANGES_TOPIC,
    EVENTS_GROUP,
    EVENTS_TOPIC,
    partition_dates_by,
)
from assets.kafka_ingest import ingest
from resources import KafkaResource, LakeResource


class FraudIngestConfig(dg.Config):
    """Which records the run moves into bronze: from the consumer group's committed offsets up to
    `until_offsets` (partition -> end offset, exclusive; all pending records when empty).
    `live_date`: the date partition this same run rebuilds right after ingest (the live path of
    fraud_live_job); it is left out of `event_dates`, so the partitions sensor does not rebuild it again."""

    until_offsets: dict[str, int] = {}
    max_records_per_partition: int = 500_000
    live_date: str = ""


def _bronze_asset(name: str, topic: str, group: str, dataset: str, time_field: str, description: str):
    @dg.asset(
        name=name,
        group_name="fraud_bronze",
        kinds={"kafka", "parquet"},
        description=description,
        metadata={"topic": topic, "consumer_group": group, "dataset": dataset},
    )
    def _asset(context: dg.AssetExecutionContext, config: FraudIngestConfig, kafka: KafkaResource, lake: LakeResource):
        result = ingest(
            kafka,
            lake,
            topic=topic,
            group_id=group,
            dataset=dataset,
            with_partition_dates=partition_dates_by(time_field),
            until={int(p): o for p, o in config.until_offsets.items()} or None,
            max_records_per_partition=config.max_records_per_partition,
            on_progress=context.log.info,
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.records,
                "offset_ranges": dg.MetadataValue.json({str(p): list(r) for p, r in result.ranges.items()}),
                # Read by the partitions sensor: the dates it still has to rebuild.
                "event_dates": dg.MetadataValue.json(sorted(set(result.rows_by_date) - {config.live_date})),
                "rebuilt_in_this_run": config.live_date,
                "rows_by_event_date": dg.MetadataValue.json(result.rows_by_date),
            }
        )

    return _asset


bronze_fraud_risk_events = _bronze_asset(
    "bronze_fraud_risk_events",
    EVENTS_TOPIC,
    EVENTS_GROUP,
    BRONZE_EVENTS,
    "occurred_at",
    "Raw checkout risk events: each message of Kafka topic `fraud.checkout_risk_events` with its key and "
    "Kafka coordinates, kept forever, filed under the date the event occurred (arrival date when its time "
    "is missing or implausible). Offsets are committed only after the files are durable.",
)
bronze_fraud_buyer_changes = _bronze_asset(
    "bronze_fraud_buyer_changes",
    CHANGES_TOPIC,
    CHANGES_GROUP,
    BRONZE_CHANGES,
    "changed_at",
    "Raw buyer master-data changes (after-images from the CRM change stream `fraud.buyer_changes`), kept "
    "forever, filed under the date the change took effect. The source of both buyer dimensions.",
)
