"""Alerts: every failed asset check and every failed run becomes exactly one alert (AlertsResource).

A failed WARN or non-blocking check does not fail its run, so run-failure sensors never see it:
`asset_check_alert_sensor` reads each check's execution history instead. Its cursor keeps, per check,
the highest execution record id it has read and the ids that were still PLANNED then (Dagster creates a
check's record when the run is planned and completes that same record later, so a record with a lower
id can fail after one with a higher id). Alert ids are deterministic and the alert log refuses an id it
already holds, so a lost cursor repeats nothing.

`run_failure_alert_sensor` is Dagster's own run-failure sensor. `clickstream_freshness_schedule`
evaluates the clickstream freshness checks every minute; their failures alert like any other check.

The log is listed with `python -m sensors.alerts list [--limit N]` (ALERT_LOG).
"""

import argparse
import json
import os
import sys
from collections.abc import Mapping

import dagster as dg
from dagster._core.events import EngineEventData, JobFailureData
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from dagster_shared.error import SerializableErrorInfo

from assets.clickstream.freshness import clickstream_freshness_checks
from resources import Alert, AlertsResource
from sensors.run_policy import housekeeping_tags

DEFAULT_ALERT_LOG = "data/alerts/alerts.jsonl"
_PAGE = 100


def check_alert(record: AssetCheckExecutionRecord, alerts: AlertsResource) -> Alert | None:
    """The alert for one completed check execution record, or None when it passed."""
    evaluation = record.evaluation
    if record.status != AssetCheckExecutionRecordStatus.FAILED or evaluation is None or evaluation.passed:
        return None
    asset, check = record.key.asset_key.to_user_string(), record.key.name
    blocking = " (blocking)" if evaluation.blocking else ""
    return Alert(
        id=f"check:{asset}:{check}:{record.partition or ''}:{record.run_id}",
        kind="asset_check",
        title=f"Asset check {check}{blocking} failed on {asset}",
        reason=evaluation.description or summarize_metadata(evaluation.metadata),
        severity=evaluation.severity.value,
        asset=asset,
        partition=record.partition,
        check=check,
        run_id=record.run_id,
        url=alerts.run_url(record.run_id),
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


def _new_records(instance: dg.DagsterInstance, key: dg.AssetCheckKey, after: int) -> list[AssetCheckExecutionRecord]:
    """Every execution record of `key` with an id above `after`, oldest first."""
    records: list[AssetCheckExecutionRecord] = []
    before = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(key, limit=_PAGE, cursor=before)
        records += [r for r in page if r.id > after]
        if len(page) < _PAGE or page[-1].id <= after:
            return sorted(records, key=lambda r: r.id)
        before = page[-1].id


def _record(instance: dg.DagsterInstance, key: dg.AssetCheckKey, record_id: int) -> AssetCheckExecutionRecord | None:
    page = instance.event_log_storage.get_asset_check_execution_history(key, limit=1, cursor=record_id + 1)
    return page[0] if page and page[0].id == record_id else None


def _abandoned(instance: dg.DagsterInstance, record: AssetCheckExecutionRecord) -> bool:
    """A PLANNED record whose run has ended will never complete (the run failed or skipped the check)."""
    run = instance.get_run_by_id(record.run_id)
    return run is None or run.is_finished


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
    state: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
    sent = seen = 0
    for key in sorted(repository.asset_graph.asset_check_keys, key=lambda k: k.to_user_string()):
        entry = state.get(key.to_user_string(), {"after": 0, "open": []})
        completed, still_open = [], []
        for record_id in entry["open"]:
            record = _record(context.instance, key, record_id)
            if record is None:
                continue
            if record.status == AssetCheckExecutionRecordStatus.PLANNED:
                if not _abandoned(context.instance, record):
                    still_open.append(record_id)
            else:
                completed.append(record)
        for record in _new_records(context.instance, key, entry["after"]):
            entry["after"] = max(entry["after"], record.id)
            if record.status == AssetCheckExecutionRecordStatus.PLANNED:
                still_open.append(record.id)
            else:
                completed.append(record)
        for record in completed:
            seen += 1
            alert = check_alert(record, alerts)
            if alert is not None and alerts.send(alert):
                sent += 1
                context.log.info(f"alert {alert.id}: {alert.reason}")
        entry["open"] = sorted(set(still_open))
        state[key.to_user_string()] = entry
    retried = alerts.retry_undelivered()
    context.update_cursor(json.dumps(state, sort_keys=True))
    return dg.SkipReason(
        f"{seen} new check evaluations, {sent} alerts sent, {retried} earlier webhook deliveries retried"
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


clickstream_freshness_job = dg.define_asset_job(
    "clickstream_freshness_job",
    selection=dg.AssetSelection.checks(clickstream_freshness_checks),
    description="Evaluate the clickstream freshness checks (Kafka pending vs. last update of silver and gold).",
    tags=housekeeping_tags("clickstream_freshness_job"),
)

UNFINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dg.schedule(
    name="clickstream_freshness_schedule",
    job=clickstream_freshness_job,
    cron_schedule="* * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every minute: are silver and gold keeping up with Kafka? Skipped while the previous evaluation "
    "is still queued or running, so a busy machine never builds a queue of them.",
)
def clickstream_freshness_schedule(context: dg.ScheduleEvaluationContext):
    unfinished = dg.RunsFilter(job_name=clickstream_freshness_job.name, statuses=UNFINISHED_RUN_STATUSES)
    if context.instance.get_run_records(unfinished, limit=1):
        return dg.SkipReason("the previous freshness evaluation has not finished")
    return dg.RunRequest()


ALERT_SENSORS = [asset_check_alert_sensor, run_failure_alert_sensor]


# -- CLI -----------------------------------------------------------------------------------------------


def format_table(rows: list[dict]) -> str:
    columns = [
        ("created_at", "TIME", 25),
        ("severity", "SEV", 5),
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
