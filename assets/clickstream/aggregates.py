"""Gold kept current per micro-batch: the state behind the daily metrics and the product funnel.

Events per (event name, platform) add up batch by batch; distinct users and products, and a user's
progress through a product's funnel, do not. For those the stream keeps a keyed state: each distinct
(name, platform, user) and (name, platform, SKU) of a date, and per (SKU, user) the time of the first
stage event and the last time of each later stage's events. A batch changes only the keys it carries, so its cost is
O(batch): the state says which users are new to a group and which reached a funnel stage, and the gold
counters move by exactly that. The changed state rows are appended to one Delta table
(`gold/clickstream_aggregate_state`) with the batch's tokens, so a run started after a crash loads the
state of a date from there and goes on exactly; the gold tables are the state counted, published every
few seconds from memory, and rebuilt from the state table (O(distinct keys), not O(events)) when gold is
materialized.

Funnel stages come from the configuration (`funnel` in assets/clickstream/clickstream.yaml), reached in order: the
first stage by any of its events; a later stage by one of its events at or after the user's first event
of the first stage, once every earlier stage that is not optional was reached (so with view, an optional
click and purchase, a view then a purchase counts as a purchase). Each stage depends only on min/max
times, so the state merges in any order (late events included) and a stage, once reached, stays reached.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import pyarrow
import pyarrow.compute

from assets.clickstream.config import CONFIG, FunnelStage
from assets.clickstream.names import AGGREGATE_STATE_TABLE, DAILY_METRICS_TABLE, PRODUCT_FUNNEL_TABLE
from assets.streaming import Batch, append_once
from resources import LakeResource
from resources.lake import CommitFailedError
from resources.warehouse import engine

_TS = pyarrow.timestamp("us", tz="UTC")
STATE_SCHEMA = pyarrow.schema(
    [
        ("event_date", pyarrow.date32()),
        ("kind", pyarrow.string()),  # events | user | product | pair
        ("event_name", pyarrow.string()),
        ("platform", pyarrow.string()),
        ("SKU", pyarrow.string()),
        ("user_id", pyarrow.string()),
        ("product_name", pyarrow.string()),
        ("events", pyarrow.int64()),
        # a (SKU, user) pair's funnel: the first time of a first-stage event, then each later stage's last time
        ("stage_times", pyarrow.list_(_TS)),
        # Where an `events` row came from: its Kafka partition and the batch's last offset there, so that a
        # row read twice (a shard catching up on the table) counts once. NULL for a rebuilt date's rows.
        ("partition", pyarrow.int64()),
        ("last_offset", pyarrow.int64()),
    ]
)
DAILY_METRICS_SCHEMA = pyarrow.schema(
    [
        ("event_date", pyarrow.date32()),
        ("event_name", pyarrow.string()),
        ("platform", pyarrow.string()),
        ("events", pyarrow.int64()),
        ("users", pyarrow.int64()),
        ("products", pyarrow.int64()),
    ]
)
PRODUCT_FUNNEL_SCHEMA = pyarrow.schema(
    [
        ("event_date", pyarrow.date32()),
        ("SKU", pyarrow.string()),
        ("product_name", pyarrow.string()),
        ("stage_number", pyarrow.int64()),
        ("stage", pyarrow.string()),
        ("users", pyarrow.int64()),
        ("share_of_first_stage", pyarrow.float64()),
    ]
)
FUNNEL: tuple[FunnelStage, ...] = CONFIG.funnel


def _in(stage: FunnelStage) -> str:
    return "event_name IN (" + ", ".join("'" + e + "'" for e in stage.events) + ")"


def state_of_silver_sql(funnel: tuple[FunnelStage, ...]) -> str:
    """The state of a set of silver rows (`silver`, with a `partition` column), one row per key: what a
    batch contributes, or a whole date's state rebuilt from silver."""
    times = ", ".join(
        [f"min(event_datetime) FILTER ({_in(funnel[0])})"]
        + [f"max(event_datetime) FILTER ({_in(stage)})" for stage in funnel[1:]]
    )
    return f"""
SELECT event_date, 'events' AS kind, event_name, platform, NULL AS "SKU", NULL AS user_id, NULL AS product_name,
       count(*) AS events, NULL AS stage_times, "partition", NULL AS last_offset
FROM silver GROUP BY event_date, event_name, platform, "partition"
UNION ALL
SELECT event_date, 'user', event_name, platform, NULL, user_id, NULL, NULL, NULL, min("partition"), NULL
FROM silver GROUP BY event_date, event_name, platform, user_id
UNION ALL
SELECT event_date, 'product', event_name, platform, "SKU", NULL, NULL, NULL, NULL, min("partition"), NULL
FROM silver WHERE "SKU" IS NOT NULL GROUP BY event_date, event_name, platform, "SKU"
UNION ALL
SELECT event_date, 'pair', NULL, NULL, "SKU", user_id, min(product_name), NULL, [{times}], min("partition"), NULL
FROM silver WHERE "SKU" IS NOT NULL GROUP BY event_date, "SKU", user_id
"""


STATE_OF_SILVER_SQL = state_of_silver_sql(FUNNEL)


def stages_reached(times: list, funnel: tuple[FunnelStage, ...] = FUNNEL) -> tuple[bool, ...]:
    """Which stages a (SKU, user) pair reached, from its stage times (see the module doc)."""
    first = times[0]
    reached, required = [first is not None], first is not None
    for stage, last in zip(funnel[1:], times[1:], strict=True):
        hit = required and last is not None and last >= first
        reached.append(hit)
        required = required and (hit or stage.optional)
    return tuple(reached)


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


@dataclass
class DateAggregates:
    """One date's gold, counted, with the keyed state behind it."""

    events: dict[tuple, int] = field(default_factory=dict)  # (name, platform) -> events
    users: dict[tuple, set] = field(default_factory=dict)  # (name, platform) -> user ids
    products: dict[tuple, set] = field(default_factory=dict)  # (name, platform) -> SKUs
    pairs: dict[tuple, list] = field(default_factory=dict)  # (SKU, user) -> stage times
    funnel: dict[str, list] = field(default_factory=dict)  # SKU -> [users per stage..., product name]
    counted: dict[int, int] = field(default_factory=dict)  # Kafka partition -> last offset whose events count

    def merge(self, rows: list[dict], emit: bool) -> list[dict]:
        """Fold state rows into the counters; with `emit`, return the rows that changed the state (what
        must be stored so that a restart finds the same state), else nothing. Idempotent: keys and
        min/max times merge as sets do, and an `events` row whose batch was counted already is skipped."""
        changed, counted = [], dict(self.counted)
        for row in rows:
            kind = row["kind"]
            group = (row["event_name"], row["platform"])
            if kind == "events":
                partition, offset = row["partition"], row["last_offset"]
                if offset is not None and offset <= counted.get(partition, -1):
                    continue
                if offset is not None:
                    self.counted[partition] = max(offset, self.counted.get(partition, -1))
                self.events[group] = self.events.get(group, 0) + row["events"]
                changed.append(row)
            elif kind in ("user", "product"):
                keys = (self.users if kind == "user" else self.products).setdefault(group, set())
                key = row["user_id"] if kind == "user" else row["SKU"]
                if key not in keys:
                    keys.add(key)
                    changed.append(row)
            else:
                changed += self._merge_pair(row)
        return changed if emit else []

    def _merge_pair(self, row: dict) -> list[dict]:
        sku, key, n = row["SKU"], (row["SKU"], row["user_id"]), len(FUNNEL)
        old = self.pairs.get(key)
        before_times = old if old else [None] * n
        times = row["stage_times"]
        new = [_min(before_times[0], times[0])] + [_max(a, b) for a, b in zip(before_times[1:], times[1:], strict=True)]
        counts = self.funnel.setdefault(sku, [0] * n + [None])
        name = _min(counts[n], row["product_name"])
        before, after = stages_reached(before_times), stages_reached(new)
        for stage in range(n):
            counts[stage] += int(after[stage]) - int(before[stage])
        # A stored last time only matters until its stage is reached; a new first time always matters.
        relevant = (
            old is None
            or new[0] != before_times[0]
            or before != after
            or any(not after[k] and new[k] != before_times[k] for k in range(1, n))
            or name != counts[n]
        )
        counts[n] = name
        self.pairs[key] = new
        if not relevant:
            return []
        return [row | {"stage_times": new}]

    def daily_metrics(self, event_date) -> pyarrow.Table:
        groups = sorted(self.events, key=lambda g: (g[0] or "", g[1] is None, g[1] or ""))
        return pyarrow.Table.from_pylist(
            [
                {
                    "event_date": event_date,
                    "event_name": name,
                    "platform": platform,
                    "events": self.events[(name, platform)],
                    "users": len(self.users.get((name, platform), ())),
                    "products": len(self.products.get((name, platform), ())),
                }
                for name, platform in groups
            ],
            schema=DAILY_METRICS_SCHEMA,
        )

    def product_funnel(self, event_date) -> pyarrow.Table:
        rows = []
        for sku in sorted(self.funnel):
            *users, name = self.funnel[sku]
            rows += [
                {
                    "event_date": event_date,
                    "SKU": sku,
                    "product_name": name,
                    "stage_number": number,
                    "stage": stage.name,
                    "users": count,
                    "share_of_first_stage": count / users[0] if users[0] else None,
                }
                for number, (stage, count) in enumerate(zip(FUNNEL, users, strict=True), 1)
            ]
        return pyarrow.Table.from_pylist(rows, schema=PRODUCT_FUNNEL_SCHEMA)

    def gold(self, event_date: str) -> tuple[pyarrow.Table, pyarrow.Table]:
        day = pyarrow.scalar(event_date).cast(pyarrow.date32()).as_py()
        return self.daily_metrics(day), self.product_funnel(day)

    @property
    def size(self) -> int:
        """Keys held: users and products per group, (SKU, user) pairs."""
        return sum(map(len, self.users.values())) + sum(map(len, self.products.values())) + len(self.pairs)


def state_of(silver: pyarrow.Table, last_offsets: dict[int, int] | None = None) -> pyarrow.Table:
    """The state rows of silver rows, one per key. A batch's rows carry their Kafka `partition` and
    `last_offsets` (partition -> the batch's last offset) mark its `events` rows; a whole date's have none."""
    if "partition" not in silver.column_names:
        silver = silver.append_column("partition", pyarrow.nulls(silver.num_rows, pyarrow.int64()))
    with engine() as conn:
        conn.register("silver", silver)
        rows = conn.execute(STATE_OF_SILVER_SQL).to_arrow_table().cast(STATE_SCHEMA)
    if last_offsets:
        events = pyarrow.compute.equal(rows["kind"], "events")
        offsets = pyarrow.array([last_offsets.get(p) for p in rows["partition"].to_pylist()], pyarrow.int64())
        last = pyarrow.compute.if_else(events, offsets, pyarrow.nulls(rows.num_rows, pyarrow.int64()))
        rows = rows.set_column(rows.schema.get_field_index("last_offset"), "last_offset", last)
    return rows


def load_date(lake: LakeResource, event_date: str, version: int | None = None) -> DateAggregates:
    """A date's aggregates from the state table: O(distinct keys of the date)."""
    rows = lake.scan(AGGREGATE_STATE_TABLE, [event_date], schema=STATE_SCHEMA, version=version)
    lengths = pyarrow.compute.list_value_length(rows["stage_times"]).drop_null()
    if len(lengths) and pyarrow.compute.any(pyarrow.compute.not_equal(lengths, len(FUNNEL))).as_py():
        raise RuntimeError(
            f"the funnel state of {event_date} was kept for another funnel configuration: rebuild the date "
            "(materialize silver_clickstream_events for it) before the stream continues it"
        )
    aggregates = DateAggregates()
    aggregates.merge(rows.to_pylist(), emit=False)
    return aggregates


SETTLE_ATTEMPTS = 10


@dataclass
class LiveAggregates:
    """The stream's side of gold: the aggregates of the dates it appends to, held in memory (each date
    loaded from the state table when first touched), advanced per batch, published every
    `publish_seconds` (replacing the touched dates of the two gold tables, O(groups + SKUs)).

    Before it publishes, it catches up on what others committed to the state table since (its change
    feed: O(rows committed meanwhile)): the other shards' batches of the same dates, merged like its own
    (idempotently: its own rows read back change nothing), or a date rebuilt by the daily close, which is
    then loaded again."""

    lake: LakeResource
    publish_seconds: float = 5.0
    dates: dict[str, DateAggregates] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    published_at: float = field(default_factory=time.monotonic)
    version: int = -1  # the state table's version the held dates reflect (-1: before its first commit)

    def add(self, batch: Batch, silver: pyarrow.Table) -> None:
        """Advance the aggregates by the batch's new silver rows, storing the changed state rows first
        (`append_once`: a replayed batch stores nothing twice). Call before silver is appended."""
        state = state_of(silver, {p: last for p, (_, last) in batch.ranges.items()})
        by_date: dict[str, list[dict]] = {}
        for row in state.to_pylist():
            by_date.setdefault(row["event_date"].isoformat(), []).append(row)
        self._hold([d for d in batch.rows_by_date() if d not in self.dates])
        # Merged in memory first (that is how the changed rows are found), then stored. When the store did not
        # take all of them (a replayed batch, a rebuild that covered part of it) or failed, the table is the
        # truth: the dates are loaded from it again.
        changed = [row for d, rows in by_date.items() for row in self.dates[d].merge(rows, emit=True)]
        table = pyarrow.Table.from_pylist(changed, schema=STATE_SCHEMA) if changed else STATE_SCHEMA.empty_table()
        try:
            stored = append_once(self.lake, AGGREGATE_STATE_TABLE, table, batch, STATE_SCHEMA, change_feed=True)
        except Exception:
            for event_date in batch.rows_by_date():
                self.dates.pop(event_date, None)
            raise
        if stored != table.num_rows:
            self._reload(list(batch.rows_by_date()))
        self.dirty |= set(batch.rows_by_date())

    def _hold(self, new_dates: list[str]) -> None:
        """Load dates not held yet, at the version the held ones reflect (caught up first)."""
        if not new_dates:
            return
        if self.dates:
            self.catch_up()
        else:
            self.version = self._current()
        for event_date in new_dates:
            self.dates[event_date] = self._load(event_date, self.version)

    def _reload(self, event_dates: list[str]) -> None:
        for event_date in event_dates:
            self.dates.pop(event_date, None)
        self._hold(event_dates)

    def _current(self) -> int:
        version = self.lake.version(AGGREGATE_STATE_TABLE)
        return -1 if version is None else version  # -1: the table does not exist yet

    def _load(self, event_date: str, version: int) -> DateAggregates:
        return DateAggregates() if version < 0 else load_date(self.lake, event_date, version)

    def catch_up(self) -> None:
        """Merge what was committed to the held dates' state since `version`."""
        current = self._current()
        if current == self.version:
            return
        try:
            changes = self.lake.changes(AGGREGATE_STATE_TABLE, self.version, current)
        except Exception:  # a table written without its change feed: read the held dates again
            self.dates = {d: self._load(d, current) for d in self.dates}
            self.dirty |= set(self.dates)
            self.version = current
            return
        held = pyarrow.array([dt.date.fromisoformat(d) for d in self.dates], pyarrow.date32())
        changes = changes.filter(pyarrow.compute.is_in(changes["event_date"], held))
        # A date another writer moved is published again here too: whichever gold write lands last then
        # holds everything committed before it.
        self.dirty |= {d.isoformat() for d in changes["event_date"].to_pylist()}
        replaced = changes.filter(pyarrow.compute.not_equal(changes["_change_type"], "insert"))
        rebuilt = {d.isoformat() for d in replaced["event_date"].to_pylist()}
        inserted = changes.filter(pyarrow.compute.equal(changes["_change_type"], "insert"))
        for row in inserted.select(STATE_SCHEMA.names).to_pylist():
            event_date = row["event_date"].isoformat()
            if event_date not in rebuilt:
                self.dates[event_date].merge([row], emit=False)
        for event_date in rebuilt:
            self.dates[event_date] = self._load(event_date, current)
        self.version = current
        self.dirty |= rebuilt

    def due(self) -> bool:
        return bool(self.dirty) and time.monotonic() - self.published_at >= self.publish_seconds

    def publish(self, settle: bool = False) -> dict[str, tuple[pyarrow.Table, pyarrow.Table]]:
        """Write the touched dates' gold rows; returns them per date (metrics, funnel).

        `settle` (a run's last publication): repeat until nothing is left to write and no other writer
        committed state meanwhile, so that gold is exact once every run has stopped."""
        published = {}
        for _ in range(SETTLE_ATTEMPTS if settle else 1):
            self.catch_up()
            for event_date in sorted(self.dirty):
                try:
                    published[event_date] = write_gold(self.lake, event_date, self.dates[event_date])
                except CommitFailedError:  # another writer's gold or a rebuild landed meanwhile: again
                    continue
                self.dirty.discard(event_date)
            if not self.dirty and self._current() == self.version:
                break
        self.published_at = time.monotonic()
        return published

    def tables(self, event_date: str) -> tuple[pyarrow.Table, pyarrow.Table]:
        """The date's gold rows as held: (metrics, funnel)."""
        return self.dates[event_date].gold(event_date)


def write_gold(lake: LakeResource, event_date: str, aggregates: DateAggregates) -> tuple[pyarrow.Table, pyarrow.Table]:
    """Replace `event_date` of both gold tables with the date's aggregates; returns (metrics, funnel)."""
    tables = aggregates.gold(event_date)
    for name, rows in zip((DAILY_METRICS_TABLE, PRODUCT_FUNNEL_TABLE), tables, strict=True):
        lake.replace_dates(name, rows, [event_date])
    return tables


def write_gold_dates(
    lake: LakeResource, event_dates: list[str], tokens: dict[str, int] | None = None
) -> dict[str, tuple[pyarrow.Table, pyarrow.Table]]:
    """Gold of many dates counted from their stored state (one scan) and written in one commit per gold
    table, the funnel's (written last) with `tokens`: what a history import of a year does instead of a
    commit per date and table."""
    if not event_dates:
        return {}
    rows = lake.scan(AGGREGATE_STATE_TABLE, event_dates, schema=STATE_SCHEMA)
    by_date: dict[str, list[dict]] = {d: [] for d in event_dates}
    for row in rows.to_pylist():
        by_date[row["event_date"].isoformat()].append(row)
    published = {}
    for event_date, state in by_date.items():
        aggregates = DateAggregates()
        aggregates.merge(state, emit=False)
        published[event_date] = aggregates.gold(event_date)
    for i, name in enumerate((DAILY_METRICS_TABLE, PRODUCT_FUNNEL_TABLE)):
        rows = pyarrow.concat_tables([tables[i] for tables in published.values()])
        lake.replace_dates(name, rows, event_dates, tokens=tokens if name == PRODUCT_FUNNEL_TABLE else None)
    return published
