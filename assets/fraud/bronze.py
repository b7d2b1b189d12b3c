"""Bronze: every checkout risk event and buyer master-data change exactly as Kafka delivered it, durable
before it is acknowledged, through the streaming package (`assets/streaming.py`).

Both streams are registered here (`EVENTS_STREAM`, `CHANGES_STREAM` in common.py). The checkout events
feed decision services, so their ingest run is also the live path: it follows the topic
(`follow_seconds`), and its writer (`LiveDecisionWriter`, assets/fraud/live.py) appends each micro-batch
to quarantine, decisions and silver and updates the serving table for the batch's buyers, reporting
those partitions and their checks as it goes. A run's start-up is paid once, not per batch."""

import dagster as dg

from assets.fraud.common import CHANGES_STREAM, EVENTS_STREAM
from assets.fraud.contracts import BUYER_CHANGES, CHECKOUT_EVENTS
from assets.fraud.decision import LOADED_RULES
from assets.fraud.live import LiveDecisionWriter
from assets.fraud.names import BRONZE_CHANGES, BRONZE_EVENTS, CHANGES_GROUP, CHANGES_TOPIC, EVENTS_GROUP, EVENTS_TOPIC
from assets.streaming import TOUCHED_DATES, IngestConfig, follow
from resources import KafkaResource, LakeResource, WarehouseResource


class FraudEventsIngestConfig(IngestConfig):
    """The live run's range and following time; `dedup_window_days`: how many days of event ids the run
    holds for the duplicate check (an event of an older date loads that date's ids on demand)."""

    dedup_window_days: int = 2


@dg.asset(
    group_name="fraud_bronze",
    kinds={"kafka", "deltalake"},
    metadata={"topic": EVENTS_TOPIC, "consumer_group": EVENTS_GROUP, "table": BRONZE_EVENTS},
    # Not in DECISION_WRITER_POOL: a following run would hold it for minutes, and its successor could not
    # start while it does (no hand-off). Concurrent writers are resolved by the tables' commits.
    # Each micro-batch is reported as a materialization of its own (none when nothing arrived).
    output_required=False,
)
@CHECKOUT_EVENTS.described
def bronze_fraud_risk_events(
    context: dg.AssetExecutionContext,
    config: FraudEventsIngestConfig,
    kafka: KafkaResource,
    lake: LakeResource,
    warehouse: WarehouseResource,
):
    """Raw checkout risk events: each message of Kafka topic `fraud.checkout_risk_events` with its key and
    Kafka coordinates, kept forever, filed under the date the event occurred (arrival date when its time
    is missing or implausible). Offsets are committed only after the batch is durable in every table.

    The live path: each micro-batch is appended to silver, quarantine and the decision dataset and the
    serving table is updated for its buyers, by the same run, which reports them (with their checks).
    Runs started by the Kafka sensor keep following the topic for a while (`follow_seconds`)."""
    writer = LiveDecisionWriter(lake, warehouse, LOADED_RULES, context, config.dedup_window_days)
    for batch in follow(context, config, kafka, lake, EVENTS_STREAM, writer):
        context.log.debug(f"batch of {batch.records} records: {batch.rows_by_date()}")
    # The batches were reported as they landed (by the writer); there is no output of its own.
    return
    yield


@dg.asset(
    group_name="fraud_bronze",
    kinds={"kafka", "deltalake"},
    metadata={"topic": CHANGES_TOPIC, "consumer_group": CHANGES_GROUP, "table": BRONZE_CHANGES},
)
@BUYER_CHANGES.described
def bronze_fraud_buyer_changes(
    context: dg.AssetExecutionContext, config: IngestConfig, kafka: KafkaResource, lake: LakeResource
) -> dg.MaterializeResult:
    """Raw buyer master-data changes (after-images from the CRM change stream `fraud.buyer_changes`), kept
    forever, filed under the date the change took effect. The source of both buyer dimensions."""
    records, dates = 0, {}
    for batch in follow(context, config, kafka, lake, CHANGES_STREAM, writer=None):
        records += batch.records
        for event_date, rows in batch.rows_by_date().items():
            dates[event_date] = dates.get(event_date, 0) + rows
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": records,
            # Read by fraud_buyer_dimensions: the decision dates these changes may alter.
            TOUCHED_DATES: dg.MetadataValue.json(sorted(dates)),
            "rows_by_event_date": dg.MetadataValue.json(dates),
        }
    )
