"""The fraud live path: what the checkout events stream does with each micro-batch after bronze, in
O(batch) (registered with the streaming package by `assets/fraud/bronze.py`).

Per batch: the messages are checked against the market rules (EVENTS_SQL), each event is kept once (its
first delivery, unless the date already holds its event id: the ids are held in memory by the following
run), enriched as of its time against the current buyer dimensions, and appended to quarantine, decisions
and silver (`append_once`: one commit per table, idempotent per Kafka partition and date). The serving
table is then updated for the buyers of the batch (a Delta merge keyed by buyer).

What the run holds in memory, loaded on first use (after the earlier run ended) and reloaded when
another writer rewrote a table (a date rebuild, a dimension change):
- the event ids of the dates the stream touches (`SeenEventIds`): about 120 bytes per id (Python str of
  a 36-character UUID plus its set slot), dates older than `dedup_window_days` dropped;
- the decision rows of the feature window (`FEATURE_COLUMNS` of the last 8 days, Arrow): about 40 bytes
  per event;
- the buyer dimensions (one row per buyer version).

Costs per batch: O(batch) for the checks, dedup and appends; O(dimension) for the as-of join's build
side; O(window) for one vectorized pass of the feature window to find the batch's buyers' events; and a
merge that rewrites the serving files holding those buyers (O(buyers)). No date is read again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.fraud.decision import (
    DECISION_SCHEMA,
    QUARANTINE_SCHEMA,
    SILVER_SCHEMA,
    DecisionBuild,
    Dimensions,
    build_decisions,
    dimension_versions,
    fraud_decision_partition,
    load_dimensions,
    partition_checks,
    partition_metadata,
)
from assets.fraud.names import DECISION_EVENTS, QUARANTINE_EVENTS, SILVER_EVENTS
from assets.fraud.rules import MarketRules
from assets.fraud.serving import (
    FEATURE_COLUMNS,
    FEATURE_HISTORY_DAYS,
    feature_history,
    fraud_buyer_latest_features,
    latest_features,
    merge_latest_features,
    publish_fraud_views,
)
from assets.provenance import reported_materialization
from assets.streaming import BRONZE_SCHEMA, Batch, Report, append_once, batch_metadata
from resources import LakeResource, WarehouseResource
from resources.faults import failpoint


@dataclass
class TableWatch:
    """Whether lake table `name` was rewritten by another writer since this run took its rows in: any
    commit other than an append (the live run is the only appender) or a compaction (same rows)."""

    lake: LakeResource
    name: str
    version: int = -1

    def rewritten(self) -> bool:
        """True the first time (nothing was taken in yet), and whenever another writer rewrote rows."""
        table = self.lake.table(self.name)
        current = table.version() if table is not None else -1
        first, previous, self.version = self.version == -1, self.version, current
        if first or current == previous or table is None:
            return first
        return any(not _same_rows_or_more(entry) for entry in table.history(current - previous))


def _same_rows_or_more(entry: dict) -> bool:
    if entry.get("operation") == "OPTIMIZE":
        return True
    return entry.get("operation") == "WRITE" and entry.get("operationParameters", {}).get("mode") == "Append"


@dataclass
class SeenEventIds:
    """The event ids silver holds per date, for the duplicate check of a live batch: loaded from silver
    the first time the run meets a date (a date is read once per run, never per batch)."""

    lake: LakeResource
    window_days: int = 2
    dates: dict[str, set[str]] = field(default_factory=dict)

    def ids(self, event_date: str) -> set[str]:
        if event_date not in self.dates:
            held = self.lake.scan(SILVER_EVENTS, [event_date], columns=["event_id"], schema=SILVER_SCHEMA)
            self.dates[event_date] = set(held["event_id"].to_pylist())
        return self.dates[event_date]

    def held(self, first: pa.Table) -> np.ndarray:
        """Mask over `first` (event_id, event_date): which events silver already holds."""
        dates = [d.isoformat() for d in first["event_date"].to_pylist()]
        return np.array(
            [i in self.ids(d) for i, d in zip(first["event_id"].to_pylist(), dates, strict=True)], dtype=bool
        )

    def add(self, silver: pa.Table) -> None:
        for event_id, day in zip(silver["event_id"].to_pylist(), silver["event_date"].to_pylist(), strict=True):
            self.ids(day.isoformat()).add(event_id)
        if self.dates:  # late dates are loaded on demand; the open ones stay
            oldest = (dt.date.fromisoformat(max(self.dates)) - dt.timedelta(days=self.window_days)).isoformat()
            for stale in [d for d in self.dates if d < oldest]:
                del self.dates[stale]


@dataclass
class LiveDecisionWriter:
    """The checkout events stream's writer (see the module doc). `context`: the ingest run's, to report
    each materialization as it is made, tagged with its provenance (so a rule change shows the partitions
    stale); without it (tools, benchmarks) the materializations are returned in the report."""

    lake: LakeResource
    warehouse: WarehouseResource
    rules: MarketRules
    context: dg.AssetExecutionContext | None = None
    dedup_window_days: int = 2
    seen: SeenEventIds = field(init=False)
    window: pa.Table | None = None  # the feature window's decision rows
    dimensions: Dimensions | None = None
    # Per date, this run's messages and quarantined messages: the quarantine rate the live checks report.
    run_counts: dict[str, list[int]] = field(default_factory=dict)
    _silver: TableWatch = field(init=False)
    _decisions: TableWatch = field(init=False)

    def __post_init__(self) -> None:
        self.seen = SeenEventIds(self.lake, self.dedup_window_days)
        self._silver = TableWatch(self.lake, SILVER_EVENTS)
        self._decisions = TableWatch(self.lake, DECISION_EVENTS)

    def __call__(self, batch: Batch) -> Report:
        report = Report()
        self._report(report, "bronze_fraud_risk_events", None, batch_metadata(batch))
        bronze = batch.rows.select(BRONZE_SCHEMA.names)
        while True:
            dimensions = self._current_dimensions()
            build = build_decisions(bronze, self.rules, dimensions, held=self._held)
            # Enriched with the dimensions as they are now: a dimension change commits before the date runs
            # it triggers, and a rebuild that overlaps this append conflicts with it and starts over.
            if dimension_versions(self.lake) == dimensions.table_versions:
                break
        # Quarantine and decisions first, silver last: a retry after a crash between them finds silver as it
        # was, so the duplicate check decides exactly as before and the tokens skip what is there.
        append_once(self.lake, QUARANTINE_EVENTS, build.quarantine, batch, QUARANTINE_SCHEMA)
        failpoint("between_tables")
        appended = append_once(self.lake, DECISION_EVENTS, build.decision, batch, DECISION_SCHEMA)
        self._take_in_decisions(build.decision, appended)
        serving = self._update_serving(build.decision)
        append_once(self.lake, SILVER_EVENTS, build.silver, batch, SILVER_SCHEMA)
        self.seen.add(build.silver)  # appended now, or already there (a retry, a rebuild that covered it)
        for event_date in sorted(batch.rows_by_date()):
            self._report_date(report, build.for_date(event_date))
        if serving is not None:
            self._report(report, "fraud_buyer_latest_features", None, serving)
        return report

    # -- state held by the run ----------------------------------------------------------------------------

    def _held(self, first: pa.Table) -> np.ndarray:
        if self._silver.rewritten():
            self.seen.dates.clear()
        return self.seen.held(first)

    def _current_dimensions(self) -> Dimensions:
        if self.dimensions is None or dimension_versions(self.lake) != self.dimensions.table_versions:
            self.dimensions = load_dimensions(self.lake)
        return self.dimensions

    def _take_in_decisions(self, decision: pa.Table, appended: int) -> None:
        now = dt.datetime.now(dt.UTC)
        rewritten = self._decisions.rewritten()  # (first, so that it has seen this run's own append)
        if self.window is None or rewritten or appended != decision.num_rows:
            self.window = feature_history(self.lake, now)  # (again) from the table, which holds the batch
            return
        window = pa.concat_tables([self.window, decision.select(FEATURE_COLUMNS)])
        oldest = (now - dt.timedelta(days=FEATURE_HISTORY_DAYS + 1)).date()
        if window.num_rows and pc.min(window["event_date"]).as_py() < oldest:
            window = window.filter(pc.greater_equal(window["event_date"], pa.scalar(oldest)))
        self.window = window

    def _update_serving(self, decision: pa.Table) -> dict | None:
        """The serving rows of the batch's buyers, as of now, merged into the serving table."""
        if not decision.num_rows or self.window is None or self.dimensions is None:
            return None
        buyers = pc.unique(decision["buyer_id"])
        rows = latest_features(self.window, self.dimensions.scd2, dt.datetime.now(dt.UTC), buyers)
        merge_latest_features(self.lake, rows)
        published = publish_fraud_views(self.warehouse, self.lake)
        return {"buyers_updated": rows.num_rows, "views_republished": published}

    # -- reporting ------------------------------------------------------------------------------------------

    def _report_date(self, report: Report, added: DecisionBuild) -> None:
        (event_date,) = added.bronze_by_date
        counts = self.run_counts.setdefault(event_date, [0, 0])
        counts[0] += added.bronze_rows
        counts[1] += added.quarantine.num_rows
        for asset_key, metadata in partition_metadata(added).items():
            self._report(report, asset_key, event_date, {**metadata, "scope": "micro-batch"})
        for check in partition_checks(added, quarantine_rate_over=(counts[1], counts[0])):
            report.checks.append(check.evaluation(event_date, "micro-batch"))

    def _report(self, report: Report, asset_key: str, partition: str | None, metadata: dict) -> None:
        """Logged at once when the run's context is known: a materialization's provenance names its inputs'
        latest materializations, so it is made after theirs were logged."""
        if self.context is None:
            report.materializations.append(dg.AssetMaterialization(asset_key, partition=partition, metadata=metadata))
            return
        definition = self.context.assets_def if asset_key == "bronze_fraud_risk_events" else _DEFINITIONS[asset_key]
        self.context.log_event(
            reported_materialization(self.context, definition, asset_key, partition=partition, metadata=metadata)
        )


_DEFINITIONS: dict[str, dg.AssetsDefinition] = {
    "silver_fraud_risk_events": fraud_decision_partition,
    "quarantine_fraud_risk_events": fraud_decision_partition,
    "fraud_decision_events": fraud_decision_partition,
    "fraud_buyer_latest_features": fraud_buyer_latest_features,
}
