"""Alerts: an append-only JSON-lines log that always receives them, and a Slack-compatible webhook
(ALERT_WEBHOOK_URL) that receives them too when it is set.

The log holds two kinds of lines: `{"type": "alert", ...}` once per alert id, and `{"type": "delivery",
"id": ..., "status": "delivered" | "failed", ...}` after each webhook attempt. An alert whose webhook
post failed is therefore never lost: it is in the log, and `retry_undelivered` posts it again later.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dagster import ConfigurableResource

# After this many failed webhook attempts an alert stays in the log only (the CLI shows it as failed).
MAX_DELIVERY_ATTEMPTS = 5


@dataclass
class Alert:
    """One thing that went wrong, once. `id` is deterministic, so the same failure seen twice is one alert."""

    id: str
    kind: str  # "asset_check", "run_failure" or "freshness"
    title: str
    reason: str
    severity: str = "ERROR"
    asset: str | None = None
    partition: str | None = None
    check: str | None = None
    job: str | None = None
    run_id: str | None = None
    url: str | None = None
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def slack_body(self) -> dict:
        """A Slack incoming-webhook body: `text` (the fallback every receiver reads) plus Block Kit blocks."""
        where = " ".join(
            part
            for part in (
                f"asset `{self.asset}`" if self.asset else "",
                f"partition `{self.partition}`" if self.partition else "",
                f"check `{self.check}`" if self.check else "",
                f"job `{self.job}`" if self.job else "",
            )
            if part
        )
        link = f" <{self.url}|open in Dagster>" if self.url else ""
        text = f"[{self.severity}] {self.title}: {where}. Reason: {self.reason}.{link}"
        fields = [
            ("Severity", self.severity),
            ("Asset", self.asset),
            ("Partition", self.partition),
            ("Check", self.check),
            ("Job", self.job),
            ("Run", self.run_id),
        ]
        blocks: list[dict] = [
            {"type": "header", "text": {"type": "plain_text", "text": f"{self.title}"[:150]}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields if value],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Reason*\n{self.reason}"[:3000]}},
        ]
        if self.url:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{self.url}|Open in Dagster>"}})
        return {"text": text, "blocks": blocks}


class AlertsResource(ConfigurableResource):
    """Where alerts go: `log_path` (ALERT_LOG), always; `webhook_url` (ALERT_WEBHOOK_URL) when not empty.
    `ui_url` (DAGSTER_UI_URL) is the Dagster UI that alert links point at. `freshness_minutes`
    (FRESHNESS_MINUTES) is how long an asset may go without an update while Kafka holds pending records."""

    log_path: str = "data/alerts/alerts.jsonl"
    webhook_url: str = ""
    ui_url: str = "http://127.0.0.1:3000"
    webhook_timeout_seconds: float = 5.0
    freshness_minutes: int = 10

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"

    def asset_url(self, asset: str) -> str:
        return f"{self.ui_url.rstrip('/')}/assets/{asset}"

    # -- sending -----------------------------------------------------------------------------------
    def send(self, alert: Alert) -> bool:
        """Record `alert` in the log and post it to the webhook, once per alert id. Returns False (and
        does nothing) when the id is already in the log."""
        with self._locked() as handle:
            if alert.id in self._state(handle):
                return False
            self._append(handle, {"type": "alert", **asdict(alert)})
        if self.webhook_url:
            self._deliver(alert)
        return True

    def retry_undelivered(self) -> int:
        """Post again every alert whose webhook delivery failed (fewer than MAX_DELIVERY_ATTEMPTS times).
        Returns how many were delivered now."""
        if not self.webhook_url:
            return 0
        with self._locked() as handle:
            state = self._state(handle)
        delivered = 0
        for entry in state.values():
            if entry.get("delivery") == "failed" and entry.get("attempts", 0) < MAX_DELIVERY_ATTEMPTS:
                alert = Alert(**{k: v for k, v in entry.items() if k in Alert.__dataclass_fields__})
                delivered += self._deliver(alert)
        return delivered

    def alerts(self) -> list[dict]:
        """Every alert in the log, oldest first, each with its latest delivery status and attempt count."""
        if not Path(self.log_path).exists():
            return []
        with self._locked() as handle:
            return list(self._state(handle).values())

    # -- internals ------------------------------------------------------------------------------------
    def _deliver(self, alert: Alert) -> bool:
        request = urllib.request.Request(
            self.webhook_url,
            data=json.dumps(alert.slack_body()).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.webhook_timeout_seconds) as response:
                ok, detail = 200 <= response.status < 300, f"HTTP {response.status}"
        except (urllib.error.URLError, OSError, ValueError) as error:
            ok, detail = False, f"{type(error).__name__}: {error}"
        with self._locked() as handle:
            self._append(
                handle,
                {
                    "type": "delivery",
                    "id": alert.id,
                    "status": "delivered" if ok else "failed",
                    "detail": detail[:500],
                    "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                },
            )
        return ok

    @contextmanager
    def _locked(self) -> Iterator:
        """The log, opened for reading and appending under an exclusive lock: the check sensor and the
        run-failure sensor may write at the same time, and "is this id new?" must hold until appended."""
        path = Path(self.log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _state(handle) -> dict[str, dict]:
        handle.seek(0)
        state: dict[str, dict] = {}
        for line in handle:
            try:
                row = json.loads(line)
            except (
                json.JSONDecodeError,
                UnicodeDecodeError,
            ):  # a line cut short by a crash: the alert it began was not recorded
                continue
            if row.get("type") == "alert":
                row.pop("type")
                state.setdefault(row["id"], {**row, "delivery": "log only", "attempts": 0})
            elif row.get("type") == "delivery" and row.get("id") in state:
                entry = state[row["id"]]
                entry.update(delivery=row["status"], attempts=entry["attempts"] + 1, detail=row.get("detail"))
        return state

    @staticmethod
    def _append(handle, row: dict) -> None:
        end = handle.seek(0, os.SEEK_END)
        if end:  # a line cut short by a crash must not swallow this one
            handle.seek(end - 1)
            last = handle.read(1)
            handle.seek(0, os.SEEK_END)
            if last != b"\n":
                handle.write(b"\n")
        handle.write(json.dumps(row, sort_keys=True).encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
