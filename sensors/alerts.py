"""Alerts: every failed asset check and every failed run becomes exactly one alert (AlertsResource).

A failed WARN or non-blocking check does not fail its run, so run-failure sensors never see it:
`asset_check_alert_sensor` reads the check evaluation events instead, those after its cursor (the last
event's storage id) in one indexed query per tick, so a tick costs the same with 10 checks or 1,000 and
stays seconds even on a saturated machine. Alert ids are deterministic and the alert log refuses an id it
already holds, so a lost cursor repeats nothing.

`run_failure_alert_sensor` is Dagster's own run-failure sensor. `freshness_sensor` evaluates the Kafka-aware
clickstream freshness checks (only while events are pending, without a run) and reads the state of every
asset's FreshnessPolicy (evaluated by Dagster's freshness daemon): one alert when an incident opens, one
"resolved" when it closes.

The log is listed with `python -m sensors.alerts list [--limit N]` (ALERT_LOG).
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping

import dagster as dg
from dagster._core.definitions.freshness import CronFreshnessPolicy, FreshnessState, TimeWindowFreshnessPolicy
from dagster._core.events import EngineEventData, JobFailureData
from dagster_shared.error import SerializableErrorInfo

from assets.clickstream.freshness import clickstream_freshness_checks, evaluate_freshness
from resources import Alert, AlertsResource, KafkaResource

DEFAULT_ALERT_LOG = "data/alerts/alerts.jsonl"
_PAGE = 1000  # check evaluations read per tick (one indexed query)
# Alerted once per incident by freshness_sensor, not per failed evaluation by asset_check_alert_sensor.
FRESHNESS_CHECK_KEYS = frozenset(clickstream_freshness_checks.check_keys)


def check_alert(evaluation: dg.AssetCheckEvaluation, run_id: str, alerts: AlertsResource) -> Alert | None:
    """The alert for one check evaluation, or None when it passed."""
    if evaluation.passed:
        return None
    asset, check = evaluation.asset_key.to_user_string(), evaluation.check_name
    blocking = " (blocking)" if evaluation.blocking else ""
    return Alert(
        id=f"check:{asset}:{check}:{evaluation.partition or ''}:{run_id}",
        kind="asset_check",
        title=f"Asset check {check}{blocking} failed on {asset}",
        reason=evaluation.description or summarize_metadata(evaluation.metadata),
        severity=evaluation.severity.value,
        asset=asset,
        partition=evaluation.partition,
        check=check,
        run_id=run_id,
        url=alerts.run_url(run_id),
    )


def summarize_metadata(metadata: Mapping[str, object], limit: int = 300) -> str:
    """A check's metadata as one short line: plain values first, then JSON values cut short. Lists (samples of
    rows) are counted, not shown: even masked, rows belong in the UI, not in an operator channel."""
    plain, rest = [], []
    for name, value in metadata.items():
        raw = getattr(value, "value", value)
        if isinstance(raw, bool | int | float | str):
            plain.append(f"{name}={raw:.4g}" if isinstance(raw, float) else f"{name}={raw}")
        elif isinstance(raw, list):
            rest.append(f"{name}=[{len(raw)} items]")
        else:
            text = json.dumps(raw, default=str, sort_keys=True)
            rest.append(f"{name}={text[:80]}{'...' if len(text) > 80 else ''}")
    summary = ", ".join(plain + rest) or "the check failed without a description"
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


@dg.sensor(
    name="asset_check_alert_sensor",
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends one alert (log, and webhook when ALERT_WEBHOOK_URL is set) per failed asset check "
    "evaluation, WARN or ERROR, blocking or not.",
)
def asset_check_alert_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource):
    repository = context.repository_def
    if repository is None:
        return dg.SkipReason("no repository definition: cannot list the asset checks")
    checks = repository.asset_graph.asset_check_keys - FRESHNESS_CHECK_KEYS
    after = int(context.cursor) if (context.cursor or "").isdigit() else 0
    records = context.instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
        limit=_PAGE,
        ascending=True,
    )
    sent = 0
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation) and evaluation.asset_check_key in checks:
            alert = check_alert(evaluation, record.run_id, alerts)
            if alert is not None and alerts.send(alert):
                sent += 1
                context.log.info(f"alert {alert.id}: {alert.reason}")
        after = record.storage_id
    retried = alerts.retry_undelivered()
    context.update_cursor(str(after))
    more = " (more to read next tick)" if len(records) == _PAGE else ""
    return dg.SkipReason(
        f"{len(records)} new check evaluations{more}, {sent} alerts sent, {retried} earlier webhook deliveries retried"
    )


def describe_error(error: SerializableErrorInfo) -> str:
    """The innermost cause (the user's exception, not Dagster's wrapper) as `Class: message`."""
    while error.cause is not None:
        error = error.cause
    text = error.message.strip()
    return text if not error.cls_name or text.startswith(error.cls_name) else f"{error.cls_name}: {text}"


_FAILURE_EVENTS = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ENGINE_EVENT}


def run_failure_reason(instance: dg.DagsterInstance, run_id: str, fallback: str) -> str:
    """Why a run failed, from its event log: the first failed step's error; else the run failure's own error;
    else the first engine error (a worker that could not load the job, a launch that failed), with the
    engine's message; else `fallback` (e.g. "marked as failed from outside the execution context")."""
    events = [e.dagster_event for e in instance.all_logs(run_id, of_type=_FAILURE_EVENTS) if e.dagster_event]
    for event in events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            return f"{event.step_key}: {describe_error(event.step_failure_data.error)}"
    for event in events:
        data = event.event_specific_data
        if event.is_run_failure and isinstance(data, JobFailureData) and data.error is not None:
            return describe_error(data.error)
    for event in events:
        data = event.event_specific_data
        if event.is_engine_event and isinstance(data, EngineEventData) and data.error is not None:
            return f"{(event.message or 'engine error').strip()} {describe_error(data.error)}"
    return fallback


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends one alert per failed run of this code location (log, and webhook when set).",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource):
    run = context.dagster_run
    reason = run_failure_reason(context.instance, run.run_id, context.failure_event.message or "the run failed")
    assets = sorted(key.to_user_string() for key in run.asset_selection or [])
    alerts.send(
        Alert(
            id=f"run:{run.run_id}",
            kind="run_failure",
            title=f"Run of {run.job_name} failed",
            reason=reason[:1000],
            severity="ERROR",
            asset=", ".join(assets)[:300] or None,
            partition=run.tags.get("dagster/partition"),
            job=run.job_name,
            run_id=run.run_id,
            url=alerts.run_url(run.run_id),
        )
    )


# -- freshness ----------------------------------------------------------------------------------------
# An incident opens with one alert and closes with one "resolved" alert; the cursor holds the open ones
# ({"incidents": {subject: alert id}}) and the last recorded outcome of each Kafka-aware check.


def kafka_freshness(
    instance: dg.DagsterInstance, kafka: KafkaResource, alerts: AlertsResource, state: dict, now: float
) -> tuple[list[dg.AssetCheckEvaluation], list[Alert]]:
    """The Kafka-aware rule (events pending and the asset not updated for FRESHNESS_MINUTES) for every freshness
    check. An evaluation is recorded only while records are pending, and only when its outcome changes (plus
    the recovery once nothing is pending any more): no run, and no evaluation on a quiet topic. A failing
    evaluation carries its incident's alert id, so a lost cursor finds the open incident again. Returns the
    evaluations to record and the alerts of incidents that opened or closed."""
    keys = sorted(FRESHNESS_CHECK_KEYS, key=lambda k: k.to_user_string())
    assets = [k.asset_key.to_user_string() for k in keys]
    results = evaluate_freshness(instance, kafka, assets, alerts.freshness_minutes, now)
    outcomes, incidents = state.setdefault("checks", {}), state.setdefault("incidents", {})
    evaluations, sent = [], []
    for key in keys:
        result, subject, asset = (
            results[key.asset_key.to_user_string()],
            key.to_user_string(),
            key.asset_key.to_user_string(),
        )
        pending = int(getattr(result.metadata.get("pending_records"), "value", 1))  # unknown when Kafka is down
        common = dict(asset=asset, check=key.name, url=alerts.asset_url(asset), kind="freshness")
        metadata = dict(result.metadata)
        if not result.passed and subject not in incidents:
            incidents[subject] = _open_incident(instance, key) or f"freshness:{subject}:{int(now)}"
            title = f"{asset} is not keeping up with Kafka"
            alert = Alert(id=incidents[subject], title=title, reason=result.description or "", **common)
            sent += [alert] if alerts.send(alert) else []
        elif result.passed and subject in incidents:
            reason = "caught up: nothing pending" if not pending else "updated again while records arrive"
            title = f"{asset} is keeping up with Kafka again"
            alert = Alert(
                id=f"{incidents.pop(subject)}:resolved", title=title, reason=reason, severity="RESOLVED", **common
            )
            sent += [alert] if alerts.send(alert) else []
        if not result.passed:
            metadata["incident"] = dg.MetadataValue.text(incidents[subject])
        if result.passed != outcomes.get(subject) and (pending or outcomes.get(subject) is False or not result.passed):
            outcomes[subject] = result.passed
            evaluations.append(
                dg.AssetCheckEvaluation(
                    asset_key=key.asset_key,
                    check_name=key.name,
                    passed=result.passed,
                    metadata=metadata,
                    description=result.description,
                )
            )
    return evaluations, sent


def _open_incident(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> str | None:
    """The incident id of the check's latest evaluation, when that evaluation failed."""
    latest = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    evaluation = latest[0].evaluation if latest else None
    if isinstance(evaluation, dg.AssetCheckEvaluation) and not evaluation.passed:
        incident = evaluation.metadata.get("incident")
        return str(incident.value) if incident is not None else None
    return None


def policy_freshness(instance: dg.DagsterInstance, asset_graph, alerts: AlertsResource, state: dict) -> list[Alert]:
    """One alert when an asset's FreshnessPolicy state (evaluated by Dagster's freshness daemon) turns FAIL, one
    "resolved" when it no longer is. The incident is named by the time of its FAIL state change, so a lost cursor
    repeats nothing."""
    nodes = {n.key: n for n in asset_graph.asset_nodes if n.freshness_policy_or_from_metadata is not None}
    records = instance.get_freshness_state_records(list(nodes))
    incidents = state.setdefault("incidents", {})
    sent = []
    for key in sorted(nodes, key=lambda k: k.to_user_string()):
        record, asset = records.get(key), key.to_user_string()
        failing = record is not None and record.freshness_state == FreshnessState.FAIL
        subject = f"policy:{asset}"
        if failing and record is not None and subject not in incidents:
            policy = nodes[key].freshness_policy_or_from_metadata
            incident = f"freshness:{asset}:{int(record.updated_at.timestamp())}"
            alert = Alert(
                id=incident,
                kind="freshness",
                title=f"{asset} is stale: its freshness policy failed",
                reason=f"no materialization within {describe_policy(policy)} "
                f"(failing since {record.updated_at:%Y-%m-%d %H:%M} UTC)",
                asset=asset,
                url=alerts.asset_url(asset),
            )
            incidents[subject] = incident
            sent += [alert] if alerts.send(alert) else []
        elif not failing and subject in incidents:
            now_state = record.freshness_state.value if record is not None else "UNKNOWN"
            alert = Alert(
                id=f"{incidents.pop(subject)}:resolved",
                kind="freshness",
                title=f"{asset} is fresh again",
                reason=f"freshness state {now_state}",
                severity="RESOLVED",
                asset=asset,
                url=alerts.asset_url(asset),
            )
            sent += [alert] if alerts.send(alert) else []
    return sent


def describe_policy(policy) -> str:
    if isinstance(policy, TimeWindowFreshnessPolicy):
        return f"the last {policy.fail_window.to_timedelta()}"
    if isinstance(policy, CronFreshnessPolicy):
        return f"{policy.lower_bound_delta} before each '{policy.deadline_cron}' deadline ({policy.timezone})"
    return str(policy)


@dg.sensor(
    name="freshness_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the Kafka-aware clickstream freshness checks while events are pending (no run), and "
    "sends one alert per freshness incident (those checks, and every asset's FreshnessPolicy), plus one when "
    "it is resolved.",
)
def freshness_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource, alerts: AlertsResource):
    repository = context.repository_def
    if repository is None:
        return dg.SkipReason("no repository definition: cannot list the freshness policies")
    state: dict = json.loads(context.cursor) if context.cursor else {}
    evaluations, sent = kafka_freshness(context.instance, kafka, alerts, state, time.time())
    sent += policy_freshness(context.instance, repository.asset_graph, alerts, state)
    for alert in sent:
        context.log.info(f"alert {alert.id}: {alert.title}")
    return dg.SensorResult(
        asset_events=evaluations,
        cursor=json.dumps(state, sort_keys=True),
        skip_reason=None if evaluations else f"{len(state.get('incidents', {}))} open incidents, {len(sent)} alerts",
    )


ALERT_SENSORS = [asset_check_alert_sensor, run_failure_alert_sensor, freshness_sensor]


# -- CLI -----------------------------------------------------------------------------------------------


def format_table(rows: list[dict]) -> str:
    columns = [
        ("created_at", "TIME", 25),
        ("severity", "SEV", 8),
        ("kind", "KIND", 11),
        ("asset", "ASSET", 30),
        ("partition", "PARTITION", 10),
        ("check", "CHECK/JOB", 26),
        ("reason", "REASON", 60),
        ("delivery", "WEBHOOK", 10),
        ("url", "LINK", 0),
    ]

    def cell(row: dict, name: str, width: int) -> str:
        value = row.get(name) or (row.get("job") if name == "check" else None) or "-"
        text = " ".join(str(value).split())
        if width and len(text) > width:
            text = text[: width - 1] + "…"
        return text.ljust(width) if width else text

    lines = ["  ".join(cell({c: h for c, h, _ in columns}, c, w) for c, _, w in columns).rstrip()]
    lines += ["  ".join(cell(row, c, w) for c, _, w in columns).rstrip() for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sensors.alerts", description="List the alert log.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="print the alert log as a table, newest last")
    listing.add_argument("--limit", type=int, default=50, help="show the N newest alerts (default 50)")
    listing.add_argument("--log", default=None, help="the alert log (default: $ALERT_LOG)")
    listing.add_argument("--json", action="store_true", help="one JSON object per alert instead of a table")
    args = parser.parse_args(argv)
    log_path = args.log or os.environ.get("ALERT_LOG") or DEFAULT_ALERT_LOG
    rows = AlertsResource(log_path=log_path).alerts()[-args.limit :] if args.limit > 0 else []
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
    elif rows:
        print(format_table(rows))
    else:
        print(f"no alerts in {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
