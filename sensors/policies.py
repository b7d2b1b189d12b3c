"""Project-wide policies, attached once to the asset specs in platform/definitions.py (`with_policies`):
how fresh each asset family must be (FreshnessPolicy, evaluated by Dagster's freshness daemon and shown in
the UI) and which batch layers Declarative Automation drives (AutomationCondition, evaluated by
`automation_sensor`). Asset files stay free of operating policy; a layer's cadence is read here at a glance.

Kafka-driven layers keep their sensors (sensors/streaming.py): Dagster has no condition for "a topic has
records pending", and the streaming hand-off (a run that follows the topic, its successor started before it
ends) is not a materialization request.
"""

import datetime as dt

import dagster as dg

from sensors.run_policy import BATCH_TAGS

# Streaming layers are updated within seconds while events flow; a window of minutes catches a stuck
# stream (the Kafka-aware freshness checks tell a quiet topic from a stuck ingest, sensors/alerts.py).
STREAMING = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=15), warn_window=dt.timedelta(minutes=5))
# Gold of the clickstream trails silver by one partitions-sensor tick (30 s) and a run start.
STREAM_GOLD = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=30), warn_window=dt.timedelta(minutes=10))
# The nightly warehouse run (01:00 UTC) and its automated staging -> dbt -> marts chain must be done by 04:00.
NIGHTLY = dg.FreshnessPolicy.cron(deadline_cron="0 4 * * *", lower_bound_delta=dt.timedelta(hours=4))
# Loan applications arrive through the business day; features feed training, not live decisions.
LOANS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26), warn_window=dt.timedelta(hours=25))
# Buyer master data changes a few times a day; the dimensions follow each change.
DIMENSIONS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26), warn_window=dt.timedelta(hours=25))

FRESHNESS_BY_GROUP: dict[str, dg.FreshnessPolicy] = {
    "clickstream_bronze": STREAMING,
    "clickstream_silver": STREAMING,
    "clickstream_gold": STREAM_GOLD,
    "fraud_bronze": STREAMING,
    "fraud_silver": STREAMING,
    "fraud_gold": STREAMING,
    "fraud_dimensions": DIMENSIONS,
    "loans_raw": LOANS,
    "loans_cleaned": LOANS,
    "loans_features": LOANS,
    "commerce_raw": NIGHTLY,
    "commerce_staging": NIGHTLY,
    "commerce_core": NIGHTLY,
    "commerce_marts": NIGHTLY,
}
FRESHNESS_BY_ASSET: dict[str, dg.FreshnessPolicy | None] = {
    # Buyer changes arrive on their own topic, as rarely as the master data changes.
    "bronze_fraud_buyer_changes": DIMENSIONS,
    # One historical file (2007) lands once: no cadence to hold it to.
    "raw_loan_application_files": None,
    # History imports run when a team brings an archive: no cadence either.
    "clickstream_history_import": None,
    "fraud_history_import": None,
}


def freshness_policy(key: str, group: str | None) -> dg.FreshnessPolicy | None:
    return FRESHNESS_BY_ASSET[key] if key in FRESHNESS_BY_ASSET else FRESHNESS_BY_GROUP.get(group or "")


# Gate of every automated layer: run only when every blocking check of every upstream passed on that
# upstream's latest materialization (of the same date), so bad staging never reaches dbt and unchecked
# silver never reaches gold.
GATE = dg.AutomationCondition.all_deps_blocking_checks_passed()
RUNNABLE = ~dg.AutomationCondition.any_deps_in_progress() & ~dg.AutomationCondition.in_progress() & GATE

# Follow upstream updates, of any date. Unlike eager(), not only the latest date (re-extracting an old
# processing date flows through to the marts) and without its guard against missing upstream partitions:
# the dimensions and marts read every date of the facts, and most dates of the calendar never get data.
ON_UPSTREAM = (dg.AutomationCondition.any_deps_updated().since_last_handled() & RUNNABLE).with_label(
    "upstream updated, upstream checks passed"
)

# Gold of a closed date (before today) follows a rebuild of its silver date (a backfill, a repair from the
# UI). The dates the stream touches have their gold kept by the streaming run itself, and a stream batch's
# silver has not been through the blocking whole-date checks.
CLOSED_DATES = (
    ~dg.AutomationCondition.in_latest_time_window(lookback_delta=dt.timedelta(days=2)) & ON_UPSTREAM
).with_label("closed date, upstream updated, upstream checks passed")

AUTOMATION_BY_GROUP: dict[str, dg.AutomationCondition] = {
    "commerce_staging": ON_UPSTREAM,
    "commerce_core": ON_UPSTREAM,
    "commerce_marts": ON_UPSTREAM,
    "clickstream_gold": CLOSED_DATES,
}
AUTOMATION_BY_ASSET: dict[str, dg.AutomationCondition] = {
    # The registry follows every feature update (and a new feature version), outside the stream's runs.
    "loan_feature_registry": ON_UPSTREAM,
}


def automation_condition(key: str, group: str | None) -> dg.AutomationCondition | None:
    return AUTOMATION_BY_ASSET.get(key) or AUTOMATION_BY_GROUP.get(group or "")


def with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
    """`spec` with its family's freshness policy and automation condition (an asset's own setting wins)."""
    key = spec.key.to_user_string()
    return spec.replace_attributes(
        freshness_policy=spec.freshness_policy or freshness_policy(key, spec.group_name),
        automation_condition=spec.automation_condition or automation_condition(key, spec.group_name),
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    run_tags=BATCH_TAGS,
    description="Evaluates the automation conditions of the batch layers (sensors/policies.py): warehouse "
    "staging -> dbt -> marts, the loan feature registry, clickstream gold of rebuilt closed dates.",
)
