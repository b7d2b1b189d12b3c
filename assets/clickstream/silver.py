"""Silver: clickstream events flattened to the business's event schema, validated, deduplicated; and
the quarantine, where every message that could not become an event is kept with its reason.

Two ways in, one result:
- the stream: each micro-batch appends its new events, its quarantined messages and its duplicates
  (O(batch): the batch is checked against the event ids held in memory, `SeenEvents`);
- a materialization or backfill of a date: the date rebuilt from bronze and replaced in one commit per
  table (exact, whole-date: the daily close of yesterday, a reprocessing, a disaster recovery).
"""

import time
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
import pyarrow.dataset as pads
from pandera.typing import Series

from assets.clickstream.aggregates import LiveAggregates, state_of
from assets.clickstream.gold import gold_report
from assets.clickstream.names import (
    AGGREGATE_STATE_TABLE,
    BRONZE_TABLE,
    CODE_VERSION,
    DUPLICATES_TABLE,
    EVENT_NAMES,
    PERSONAL_FIELDS,
    PLATFORMS,
    QUARANTINE_TABLE,
    SILVER_TABLE,
    clickstream_daily_partitions,
)
from assets.clickstream.parsing import PARSE_SQL, parse_messages
from assets.pandera_checks import table_schema, validate_schema, violations_sql
from assets.partition_checks import per_partition
from assets.quality import (
    NOTHING_LOST_CHECK,
    NOTHING_LOST_DESCRIPTION,
    QUARANTINE_RATE_CHECK,
    QUARANTINE_RATE_DESCRIPTION,
    nothing_lost,
    quarantine_rate,
)
from assets.streaming import Batch, Report, append_once, bronze_dates
from resources import LakeResource
from resources.faults import failpoint
from resources.lake import CommitFailedError
from resources.privacy import masked_rows


class SilverClickstreamEvent(pa.DataFrameModel):
    """One user action, as the business reads it. Required: when, what, who."""

    event_datetime: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    event_date: Series[str] = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2}$")
    event_name: Series[str] = pa.Field(isin=EVENT_NAMES)
    user_id: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 256})
    platform: Series[str] = pa.Field(nullable=True, isin=PLATFORMS)
    product_name: Series[str] = pa.Field(nullable=True)
    SKU: Series[str] = pa.Field(nullable=True, str_length={"min_value": 1, "max_value": 64})
    event_id: Series[str] = pa.Field(str_length={"min_value": 32, "max_value": 32})

    class Config:
        strict = True


class QuarantinedClickstreamMessage(pa.DataFrameModel):
    """A message kept out of silver: where it came from, what it was, and why."""

    topic: Series[str]
    partition: Series[int] = pa.Field(ge=0)
    offset: Series[int] = pa.Field(ge=0)
    kafka_timestamp: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ms", "tz": "UTC"})
    payload: Series[object]
    reason: Series[str] = pa.Field(str_length={"min_value": 1})
    event_date: Series[str]

    class Config:
        strict = True


SILVER_COLUMNS = list(SilverClickstreamEvent.to_schema().columns)
# Storage types, fixed so that an empty date has the same schema as a full one.
SILVER_ARROW_SCHEMA = pyarrow.schema(
    [("event_datetime", pyarrow.timestamp("us", tz="UTC")), ("event_date", pyarrow.date32())]
    + [(name, pyarrow.string()) for name in ("event_name", "user_id", "platform", "product_name", "SKU", "event_id")]
)
QUARANTINE_ARROW_SCHEMA = pyarrow.schema(
    [
        ("topic", pyarrow.string()),
        ("partition", pyarrow.int64()),
        ("offset", pyarrow.int64()),
        ("kafka_timestamp", pyarrow.timestamp("ms", tz="UTC")),
        ("payload", pyarrow.binary()),
        ("reason", pyarrow.string()),
        ("event_date", pyarrow.date32()),
    ]
)
QUARANTINE_COLUMNS = list(QuarantinedClickstreamMessage.to_schema().columns)
# A message whose event silver already holds: where it came from and which event it repeated. Kept so
# that the accounting is exact: bronze = silver + duplicates + quarantine, per date.
DUPLICATE_ARROW_SCHEMA = pyarrow.schema(
    [
        ("topic", pyarrow.string()),
        ("partition", pyarrow.int64()),
        ("offset", pyarrow.int64()),
        ("event_id", pyarrow.string()),
        ("event_date", pyarrow.date32()),
    ]
)
# An event's identity: the source's own id where the configuration names its field (event_id_field), else
# its content: identical content is the same event, so a message delivered twice (producer retry, replay)
# is recognised by the hash of everything it says.
_EVENT_ID_SQL = (
    "CASE WHEN source_event_id IS NOT NULL THEN md5('id:' || source_event_id) ELSE "
    'md5(to_json([epoch_us(event_datetime)::VARCHAR, event_name, user_id, platform, product_name, "SKU"])) END'
)
# A value outside the vocabulary is quarantined with the value itself in the reason (cut to 64 characters).
_WITH_VALUES = {
    column: f"'unknown_value:{column}=' || left(coalesce({column}, ''), 64)" for column in ("event_name", "platform")
}
_SILVER_SELECT = ", ".join(f'"{c}"' for c in SILVER_COLUMNS)
# Materializations and backfills of silver take turns; the streaming run stays out of the pool (it would
# hold it for minutes and block its successor): concurrent writers are resolved by the table's commits.
SILVER_WRITER_POOL = "clickstream_silver_writer"


def route_messages(messages: pyarrow.Table, sql: str = PARSE_SQL) -> pyarrow.Table:
    """`messages` parsed (`parse_messages`) and routed in the same pass: each row gets its `event_id`
    and its quarantine `reason` (a structural error, or SilverClickstreamEvent's rules it fails; NULL
    for a good event). What ingest writes to bronze and hands to silver."""
    reason = f"coalesce(structural_error, {violations_sql(SilverClickstreamEvent)})"
    for column, with_value in _WITH_VALUES.items():
        reason = f"replace({reason}, 'unknown_value:{column}', {with_value})"
    return parse_messages(
        messages,
        sql=sql,
        then=f"""SELECT _row, {_SILVER_SELECT}, {reason} AS reason
        FROM (SELECT *, CASE WHEN structural_error IS NULL THEN {_EVENT_ID_SQL} END AS event_id FROM parsed)""",
    )


@dataclass
class SilverRows:
    """What a set of routed messages adds to silver, quarantine and the duplicates."""

    silver: pyarrow.Table
    quarantine: pyarrow.Table
    duplicates: pyarrow.Table

    def reasons(self) -> dict[str, int]:
        counts = self.quarantine["reason"].value_counts().to_pylist()
        return {c["values"]: c["counts"] for c in counts}

    def summary(self) -> dict:
        return {
            "rows": self.silver.num_rows,
            "quarantined": self.quarantine.num_rows,
            "duplicates": self.duplicates.num_rows,
            "reasons": self.reasons(),
        }


def split_routed(routed: pyarrow.Table, seen: np.ndarray | None = None) -> SilverRows:
    """Silver, quarantine and duplicate rows of `routed` messages (in offset order per partition). An
    event counts once: the first message carrying it, unless `seen` (a mask over the good rows) says
    silver already holds it. Rows keep `partition` and `event_date` (the tokens of `append_once`)."""
    good = pc.is_null(routed["reason"])
    rejected = routed.filter(pc.invert(good))
    quarantine = pyarrow.table(
        {name: rejected[name] for name in ("topic", "partition", "offset", "kafka_timestamp", "payload", "reason")}
        | {"event_date": rejected["event_date"]}
    ).cast(QUARANTINE_ARROW_SCHEMA)
    events = routed.filter(good)
    # The first message of each event in the batch (input order: offsets ascending per partition).
    keys = np.empty(events.num_rows, dtype=[("hi", np.uint64), ("lo", np.uint64)])
    keys["hi"], keys["lo"] = id_halves(events["event_id"])
    first = np.zeros(events.num_rows, bool)
    first[np.unique(keys, return_index=True)[1]] = True
    new = pyarrow.array(first if seen is None else first & ~seen)
    duplicates = events.filter(pc.invert(new))
    return SilverRows(
        silver=events.filter(new).select([*SILVER_COLUMNS, "partition"]),
        quarantine=quarantine,
        duplicates=pyarrow.table({name: duplicates[name] for name in DUPLICATE_ARROW_SCHEMA.names}).cast(
            DUPLICATE_ARROW_SCHEMA
        ),
    )


def _stored_silver(rows: pyarrow.Table) -> pyarrow.Table:
    return rows.select(SILVER_COLUMNS).cast(SILVER_ARROW_SCHEMA)


# -- the stream: O(batch) ------------------------------------------------------------------------------------

_NIBBLE = np.zeros(256, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i


def id_halves(ids: pyarrow.Array | pyarrow.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """32-hex-digit event ids as two uint64 arrays (high and low half), decoded without Python objects."""
    arr = ids.combine_chunks() if isinstance(ids, pyarrow.ChunkedArray) else ids
    if len(arr) == 0:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    arr = arr.cast(pyarrow.string())
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + len(arr) + 1]
    nibbles = _NIBBLE[np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 32)]
    raw = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]  # 16 bytes per id
    halves = np.ascontiguousarray(raw).view(">u8").astype(np.uint64)
    return halves[:, 0], halves[:, 1]


_MINUTE_US = 60_000_000


@dataclass
class SeenEvents:
    """The event ids silver holds, for the duplicate check of a streaming batch, held by the following
    run instead of reading the date again. A duplicate repeats its event's content, time included, so
    ids are kept per event minute: a batch is checked against the minutes it carries only.

    Memory is bounded: the minutes of the last `window_minutes` (by the newest event seen) stay; an
    event in an older minute loads that minute from the table first (late events are rare). 16 bytes
    per event id (two uint64 halves, sorted per minute): 16 MB per million events held."""

    lake: LakeResource
    window_minutes: int = 30
    minutes: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # minute -> (lo sorted, hi)
    loaded_from: int | None = None  # every minute from here on is in `minutes` (or holds no event)

    def start(self, now_us: int) -> None:
        """Load the window before `now_us` from silver: what a run started after a crash needs."""
        self.loaded_from = now_us // _MINUTE_US - self.window_minutes
        self._load(self.loaded_from, None)

    def is_seen(self, rows: pyarrow.Table) -> np.ndarray:
        """Mask: which of `rows` (event_datetime, event_id) silver already holds."""
        minute = _minutes(rows)
        self._cover(np.unique(minute))
        hi, lo = id_halves(rows["event_id"])
        seen = np.zeros(len(minute), bool)
        for m, at in _by_minute(minute):
            lo_sorted, hi_sorted = self.minutes.get(m, (np.empty(0, np.uint64), np.empty(0, np.uint64)))
            if not len(lo_sorted):
                continue
            pos = np.searchsorted(lo_sorted, lo[at])
            for k in range(3):  # equal low halves are adjacent; more than three would be a miracle
                p = np.minimum(pos + k, len(lo_sorted) - 1)
                seen[at] |= (lo_sorted[p] == lo[at]) & (hi_sorted[p] == hi[at])
        return seen

    def add(self, rows: pyarrow.Table) -> None:
        """Remember `rows` (appended to silver) and forget the minutes that fell out of the window."""
        if not rows.num_rows:
            return
        minute = _minutes(rows)
        hi, lo = id_halves(rows["event_id"])
        self._insert(minute, hi, lo)
        horizon = int(minute.max()) - self.window_minutes
        if self.loaded_from is None or horizon > self.loaded_from:
            for m in [m for m in self.minutes if m < horizon]:
                del self.minutes[m]
            self.loaded_from = max(self.loaded_from or horizon, horizon)

    @property
    def size(self) -> int:
        return sum(len(lo) for lo, _ in self.minutes.values())

    def _insert(self, minute: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> None:
        for m, at in _by_minute(minute):
            order = np.argsort(lo[at], kind="stable")
            new_lo, new_hi = lo[at][order], hi[at][order]
            old_lo, old_hi = self.minutes.get(m, (np.empty(0, np.uint64), np.empty(0, np.uint64)))
            pos = np.searchsorted(old_lo, new_lo)
            self.minutes[m] = (np.insert(old_lo, pos, new_lo), np.insert(old_hi, pos, new_hi))

    def _cover(self, minutes: np.ndarray) -> None:
        """Load the minutes that are neither held nor known to be empty: one read per date."""
        missing = [int(m) for m in minutes if int(m) not in self.minutes]
        missing = [m for m in missing if self.loaded_from is None or m < self.loaded_from]
        by_date: dict[str, list[int]] = {}
        for m in missing:
            by_date.setdefault(_datetime(m).date().isoformat(), []).append(m)
        for minutes_of_date in by_date.values():
            self._load(min(minutes_of_date), max(minutes_of_date) + 1, only=set(minutes_of_date))
            for m in minutes_of_date:
                self.minutes.setdefault(m, (np.empty(0, np.uint64), np.empty(0, np.uint64)))

    def _load(self, first_minute: int, end_minute: int | None, only: set[int] | None = None) -> None:
        """Event ids of silver from `first_minute` on (to `end_minute`, within one date), by minute."""
        start = _datetime(first_minute)
        where = pads.field("event_datetime") >= pyarrow.scalar(start, pyarrow.timestamp("us", tz="UTC"))
        dates = None
        if end_minute is not None:
            end = _datetime(end_minute)
            where &= pads.field("event_datetime") < pyarrow.scalar(end, pyarrow.timestamp("us", tz="UTC"))
            dates = [start.date().isoformat()]
        else:  # from a minute on: the dates from its own to the newest (the future included)
            known = self.lake.count_by_date(SILVER_TABLE)
            dates = sorted(d for d in known if d >= start.date().isoformat())
        rows = self.lake.scan(
            SILVER_TABLE, dates, columns=["event_datetime", "event_id"], where=where, schema=SILVER_ARROW_SCHEMA
        )
        minute = _minutes(rows)
        if only is not None:
            keep = np.isin(minute, np.fromiter(only, np.int64))
            rows, minute = rows.filter(pyarrow.array(keep)), minute[keep]
        if rows.num_rows:
            self._insert(minute, *id_halves(rows["event_id"]))


def _by_minute(minute: np.ndarray):
    """(minute, positions of the rows of that minute), one sort for all minutes."""
    if not len(minute):
        return
    order = np.argsort(minute, kind="stable")
    values, starts = np.unique(minute[order], return_index=True)
    yield from zip(values.tolist(), np.split(order, starts[1:]), strict=True)


def _minutes(rows: pyarrow.Table) -> np.ndarray:
    micros = rows["event_datetime"].cast(pyarrow.timestamp("us", tz="UTC")).cast(pyarrow.int64())
    return (micros.to_numpy() // _MINUTE_US).astype(np.int64)


def _datetime(minute: int):
    import datetime as dt

    return dt.datetime.fromtimestamp(minute * 60, dt.UTC)


@dataclass
class SilverWriter:
    """What the clickstream stream does with each micro-batch (registered with the streaming package):
    append its quarantined messages, its duplicates and its new events, each table once per batch
    (`append_once`), and report the dates it touched with their checks."""

    lake: LakeResource
    seen: SeenEvents
    gold: LiveAggregates

    @classmethod
    def open(cls, lake: LakeResource, window_minutes: int = 30, gold_publish_seconds: float = 5.0) -> "SilverWriter":
        seen = SeenEvents(lake, window_minutes)
        seen.start(time.time_ns() // 1000)
        return cls(lake, seen, LiveAggregates(lake, gold_publish_seconds))

    def __call__(self, batch: Batch) -> Report:
        routed = batch.rows
        good = routed.filter(pc.is_null(routed["reason"]))
        split = split_routed(routed, self.seen.is_seen(good))
        # Quarantine, duplicates and gold's state first, silver last: a retry after a crash between them finds
        # silver as it was, so the duplicate check decides exactly as before.
        append_once(self.lake, QUARANTINE_TABLE, split.quarantine, batch)
        failpoint("between_tables")
        append_once(self.lake, DUPLICATES_TABLE, split.duplicates, batch)
        self.gold.add(batch, split.silver)
        appended = append_once(self.lake, SILVER_TABLE, split.silver, batch, SILVER_ARROW_SCHEMA)
        if appended:
            self.seen.add(split.silver)
        report = _batch_report(batch, split)
        if self.gold.due():
            report.extend(self.publish_gold())
        return report

    def publish_gold(self, settle: bool = False) -> Report:
        """Gold of the dates touched since the last publication, written and reported with its checks
        (`settle`: the run's last publication, see `LiveAggregates.publish`)."""
        return gold_report(self.gold.publish(settle))


def _batch_report(batch: Batch, split: SilverRows) -> Report:
    """Per date the batch touched: silver and quarantine materializations (what the batch added) and the
    batch's accounting (every message of it in silver, quarantine or the duplicates)."""
    report = Report()
    by_date = {
        name: _count_by_date(table)
        for name, table in (
            ("silver", split.silver),
            ("quarantine", split.quarantine),
            ("duplicates", split.duplicates),
        )
    }
    for event_date, bronze_rows in batch.rows_by_date().items():
        added = {name: counts.get(event_date, 0) for name, counts in by_date.items()}
        report.materializations += [
            dg.AssetMaterialization(
                "silver_clickstream_events",
                partition=event_date,
                metadata={"rows_added": added["silver"], "duplicates_removed": added["duplicates"]},
            ),
            dg.AssetMaterialization(
                "quarantine_clickstream_events", partition=event_date, metadata={"rows_added": added["quarantine"]}
            ),
        ]
        reasons = split.quarantine.filter(
            pc.equal(split.quarantine["event_date"], pyarrow.scalar(event_date).cast(pyarrow.date32()))
        )
        lost_passed, lost_metadata = nothing_lost(
            bronze_rows, clean=added["silver"], quarantined=added["quarantine"], duplicates=added["duplicates"]
        )
        rate_passed, rate_metadata = quarantine_rate(
            bronze_rows, added["quarantine"], SilverRows(split.silver, reasons, split.duplicates).reasons()
        )
        report.checks += [
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("quarantine_clickstream_events"),
                check_name=NOTHING_LOST_CHECK,
                passed=lost_passed,
                metadata=lost_metadata | {"scope": "micro-batch"},
                partition=event_date,
            ),
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("quarantine_clickstream_events"),
                check_name=QUARANTINE_RATE_CHECK,
                passed=rate_passed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=rate_metadata | {"scope": "micro-batch"},
                partition=event_date,
            ),
        ]
    return report


def _count_by_date(table: pyarrow.Table) -> dict[str, int]:
    counts = table["event_date"].value_counts().to_pylist() if table.num_rows else []
    return {c["values"].isoformat(): c["counts"] for c in counts}


# -- a date rebuilt from bronze: O(date), exact ----------------------------------------------------------------


def rebuild_dates(lake: LakeResource, event_dates: list[str], log=None, together: int = 1) -> dict[str, dict]:
    """Rebuild silver, quarantine, duplicates and gold's aggregate state of `event_dates` from bronze,
    replacing exactly those dates (one commit per table for each `together` dates) and compacting their
    bronze files. Used by materializations and backfills of silver (the daily close, reprocessing,
    disaster recovery) and by history imports (many dates a commit).

    The streaming run may append to a date while it is rebuilt here: the replace is computed from the
    table version read at the start and fails if a batch landed in the date since (the rebuild then
    starts over); it records the date tokens of everything it read from bronze, so a batch it covered
    is not appended again afterwards."""
    summaries = {}
    groups = [event_dates[i : i + together] for i in range(0, len(event_dates), max(together, 1))]
    for dates in groups:
        while True:
            tables = (QUARANTINE_TABLE, DUPLICATES_TABLE, AGGREGATE_STATE_TABLE, SILVER_TABLE)
            versions = {t: lake.version(t) for t in tables}
            bronze, tokens = bronze_dates(lake, BRONZE_TABLE, dates)
            split = split_routed(route_messages(bronze))
            silver = _stored_silver(split.silver).sort_by([("event_datetime", "ascending"), ("event_id", "ascending")])
            state = state_of(silver)
            try:
                for table, rows in zip(tables, (split.quarantine, split.duplicates, state, silver), strict=True):
                    change_feed = table == AGGREGATE_STATE_TABLE  # the streaming runs catch up on it
                    lake.replace_dates(
                        table, rows, dates, tokens=tokens, version=versions[table], change_feed=change_feed
                    )
            except CommitFailedError as conflict:
                if log:
                    log.info(
                        f"{dates[0]}..{dates[-1]}: a streaming batch landed during the rebuild; again ({conflict})"
                    )
                continue
            break
        lake.compact(BRONZE_TABLE, dates)
        for event_date in dates:
            summaries[event_date] = _date_summary(split, bronze, event_date)
            if log and len(dates) == 1:
                log.info(f"{event_date}: {summaries[event_date]}")
    return summaries


def _date_summary(split: SilverRows, bronze: pyarrow.Table, event_date: str) -> dict:
    day = pyarrow.scalar(event_date).cast(pyarrow.date32())

    def of(table: pyarrow.Table) -> pyarrow.Table:
        return table.filter(pc.equal(table["event_date"], day))

    rows = SilverRows(of(split.silver), of(split.quarantine), of(split.duplicates))
    return rows.summary() | {"bronze_rows": of(bronze).num_rows}


def silver_metadata(summary: dict) -> dict:
    return {
        "dagster/row_count": summary["rows"],
        "duplicates_removed": summary["duplicates"],
        "bronze_rows": summary["bronze_rows"],
    }


def quarantine_metadata(summary: dict) -> dict:
    return {"dagster/row_count": summary["quarantined"], "reasons": dg.MetadataValue.json(summary["reasons"])}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "silver_clickstream_events",
            deps=["bronze_clickstream_events"],
            group_name="clickstream_silver",
            code_version=CODE_VERSION,
            kinds={"deltalake", "pandera"},
            description=(
                "Every user action (view, click, add to cart, purchase) exactly once: when it happened "
                "(UTC), what, by which user on which platform, for which product. Partitioned by the "
                "event's own date; late events land in their own date. Kept current by the streaming "
                "ingest run, a micro-batch at a time; materialize a date (or a range) to rebuild it from "
                "bronze, exactly (the daily close does so for yesterday)."
            ),
            metadata={"dagster/column_schema": table_schema(SilverClickstreamEvent), "table": SILVER_TABLE},
        ),
        dg.AssetSpec(
            "quarantine_clickstream_events",
            deps=["bronze_clickstream_events"],
            group_name="clickstream_silver",
            code_version=CODE_VERSION,
            kinds={"deltalake"},
            description=(
                "Messages that could not become events, each with the reason, the original payload and its "
                "Kafka coordinates. Nothing is dropped silently: bronze = silver + duplicates + quarantine."
            ),
            metadata={"dagster/column_schema": table_schema(QuarantinedClickstreamMessage), "table": QUARANTINE_TABLE},
        ),
    ],
    partitions_def=clickstream_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=SILVER_WRITER_POOL,
)
def clickstream_silver(context: dg.AssetExecutionContext, lake: LakeResource):
    """Rebuild the run's dates of silver and quarantine from bronze. A backfill of a date range is one run."""
    builds = rebuild_dates(lake, context.partition_keys, context.log)
    if len(builds) == 1:
        (build,) = builds.values()
        yield dg.MaterializeResult(asset_key="silver_clickstream_events", metadata=silver_metadata(build))
        yield dg.MaterializeResult(asset_key="quarantine_clickstream_events", metadata=quarantine_metadata(build))
        return
    totals = {"dates": dg.MetadataValue.json({d: b["rows"] for d, b in builds.items()})}
    yield dg.MaterializeResult(
        asset_key="silver_clickstream_events",
        metadata={"dagster/row_count": sum(b["rows"] for b in builds.values()), **totals},
    )
    yield dg.MaterializeResult(
        asset_key="quarantine_clickstream_events",
        metadata={"dagster/row_count": sum(b["quarantined"] for b in builds.values())},
    )


# -- checks: partitioned, beside the asset, run with every rebuild of a date (whole-date work) -------------


def _per_date(context: dg.AssetCheckExecutionContext, lake: LakeResource, evaluate, severity=None):
    """Evaluate a check on each date of the run: one result per date, also in a range backfill."""
    severity = severity or dg.AssetCheckSeverity.ERROR
    results = {
        d: dg.AssetCheckResult(passed=ok, metadata=meta, severity=severity)
        for d, (ok, meta) in ((d, evaluate(lake, d, context)) for d in context.partition_keys)
    }
    yield from per_partition(context, results)


def _silver(lake: LakeResource, event_date: str) -> pd.DataFrame:
    frame = lake.scan(SILVER_TABLE, [event_date], schema=SILVER_ARROW_SCHEMA).to_pandas()
    frame["event_date"] = frame["event_date"].astype(str)
    return frame


def _check_schema(lake, event_date, _context):
    return validate_schema(SilverClickstreamEvent, _silver(lake, event_date), PERSONAL_FIELDS)


def _check_unique(lake, event_date, _context):
    ids = lake.scan(SILVER_TABLE, [event_date], columns=["event_id"], schema=SILVER_ARROW_SCHEMA)["event_id"]
    repeated = len(ids) - len(pc.unique(ids))
    return repeated == 0, {"repeated_events": repeated}


def _check_nothing_lost(lake, event_date, _context, settle_seconds: float = 60.0):
    # Counted from the tables' logs (no data file is read). A streaming batch may land in the date while
    # this reads (bronze first, then the others): the counts are taken again until bronze did not change
    # meanwhile and they agree, or the wait is over.
    deadline = time.monotonic() + settle_seconds
    while True:
        bronze_rows = lake.count_by_date(BRONZE_TABLE, [event_date]).get(event_date, 0)
        counts = {t: lake.count_by_date(t, [event_date]).get(event_date, 0) for t in (SILVER_TABLE, QUARANTINE_TABLE)}
        duplicates = lake.count_by_date(DUPLICATES_TABLE, [event_date]).get(event_date, 0)
        accounted = sum(counts.values()) + duplicates
        settled = bronze_rows == lake.count_by_date(BRONZE_TABLE, [event_date]).get(event_date, 0)
        if (settled and accounted == bronze_rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return nothing_lost(
        bronze_rows, clean=counts[SILVER_TABLE], quarantined=counts[QUARANTINE_TABLE], duplicates=duplicates
    )


def _check_quarantine_rate(lake, event_date, _context):
    frame = lake.scan(QUARANTINE_TABLE, [event_date], schema=QUARANTINE_ARROW_SCHEMA).to_pandas()
    total = lake.count_by_date(BRONZE_TABLE, [event_date]).get(event_date, 0)
    passed, metadata = quarantine_rate(total, len(frame), frame["reason"].value_counts().to_dict())
    return passed, metadata | {"sample": dg.MetadataValue.json(masked_rows(frame, PERSONAL_FIELDS))}


@dg.asset_check(
    asset="silver_clickstream_events",
    blocking=True,
    partitions_def=clickstream_daily_partitions,
    description="The partition satisfies the Pandera schema SilverClickstreamEvent.",
)
def silver_schema_check(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    yield from _per_date(context, lake, _check_schema)


@dg.asset_check(
    asset="silver_clickstream_events",
    blocking=True,
    partitions_def=clickstream_daily_partitions,
    description="No event appears twice in the partition.",
)
def silver_unique_event_check(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    yield from _per_date(context, lake, _check_unique)


@dg.asset_check(
    asset="quarantine_clickstream_events",
    name=NOTHING_LOST_CHECK,
    blocking=True,
    partitions_def=clickstream_daily_partitions,
    description=NOTHING_LOST_DESCRIPTION,
)
def nothing_lost_check(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    yield from _per_date(context, lake, _check_nothing_lost)


@dg.asset_check(
    asset="quarantine_clickstream_events",
    name=QUARANTINE_RATE_CHECK,
    partitions_def=clickstream_daily_partitions,
    description=QUARANTINE_RATE_DESCRIPTION,
)
def quarantine_rate_check(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    yield from _per_date(context, lake, _check_quarantine_rate, dg.AssetCheckSeverity.WARN)
