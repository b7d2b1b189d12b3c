"""Freshness of the clickstream: silver and gold must keep up while Kafka holds events for them.

A quiet topic is not a stale table: a check fails only when the consumer group has records pending
AND the asset's latest materialization (any date partition) is older than `freshness_minutes`
(AlertsResource, FRESHNESS_MINUTES). Evaluated by `freshness_sensor` (sensors/alerts.py) while records are
pending, without a run; the checks can also be executed from the UI."""

import time

import dagster as dg

from assets.clickstream.names import CONSUMER_GROUP, TOPIC
from resources import AlertsResource, KafkaResource


def evaluate_freshness(
    instance: dg.DagsterInstance,
    kafka: KafkaResource,
    assets: list[str],
    max_age_minutes: int,
    now: float | None = None,
) -> dict[str, dg.AssetCheckResult]:
    """Per asset: fails when the clickstream topic has records the consumer group has not read and the
    asset has not been materialized for more than `max_age_minutes` (never materialized counts as stale).
    Kafka is asked once for all `assets`."""
    topic, group = kafka.topic(TOPIC), kafka.group(CONSUMER_GROUP)
    try:
        offsets = kafka.pending_offsets(topic, group)
    except RuntimeError:  # the topic does not exist yet: nothing can be pending
        offsets = {}
    except Exception as error:  # the broker is unreachable: freshness is unknown, which is worth an alert
        reason = f"cannot read the offsets of {topic!r}: {error}"
        return {a: dg.AssetCheckResult(passed=False, description=reason, metadata={"topic": topic}) for a in assets}
    pending = sum(end - start for start, end in offsets.values())
    now = now if now is not None else time.time()
    results = {}
    for asset in assets:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1).records
        age = (now - records[0].timestamp) / 60 if records else None
        metadata = {
            "pending_records": pending,
            "minutes_since_update": round(age, 1) if age is not None else -1.0,
            "max_age_minutes": max_age_minutes,
            "topic": topic,
            "consumer_group": group,
        }
        if pending and (age is None or age > max_age_minutes):
            since = f"for {age:.0f} minutes" if age is not None else "ever"
            reason = (
                f"{pending} records pending on {topic!r} but {asset} has not been updated {since} "
                f"(limit {max_age_minutes} minutes)"
            )
            results[asset] = dg.AssetCheckResult(passed=False, description=reason, metadata=metadata)
        else:
            results[asset] = dg.AssetCheckResult(passed=True, metadata=metadata)
    return results


# Runs that rebuild date partitions carry one of these tags.
_PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start")


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "silver_freshness_check",
            asset="silver_clickstream_events",
            description="Fails when clickstream events are pending in Kafka but silver has not been updated for "
            "FRESHNESS_MINUTES minutes: the ingest is stuck.",
        ),
        dg.AssetCheckSpec(
            "gold_freshness_check",
            asset="gold_clickstream_daily_metrics",
            description="Fails when clickstream events are pending in Kafka but gold has not been updated for "
            "FRESHNESS_MINUTES minutes: the ingest or the gold runs are stuck.",
        ),
    ],
    can_subset=True,
)
def clickstream_freshness_checks(context: dg.AssetCheckExecutionContext, kafka: KafkaResource, alerts: AlertsResource):
    """Freshness is a property of the stream, not of a date. Dagster's job selections (a group, or every
    check of an asset) also pull these checks into the runs that rebuild one date of silver or gold; there
    they yield no evaluation (the UI shows them skipped) instead of querying Kafka in every such run."""
    if any(tag in context.run.tags for tag in _PARTITION_TAGS):
        context.log.info("a date-partition run: freshness is evaluated by freshness_sensor instead")
        return
    selected = sorted(context.selected_asset_check_keys, key=lambda k: k.name)
    assets = [k.asset_key.to_user_string() for k in selected]
    results = evaluate_freshness(context.instance, kafka, assets, alerts.freshness_minutes)
    for check_key in selected:
        result = results[check_key.asset_key.to_user_string()]
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=result.passed,
            description=result.description,
            metadata=result.metadata,
        )
