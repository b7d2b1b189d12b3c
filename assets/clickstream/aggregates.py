"""Gold kept current per micro-batch: the state behind the daily metrics and the product funnel.

Events per (event name, platform) add up batch by batch; distinct users and products, and a user's
progress through a product's funnel, do not. For those the stream keeps a keyed state: each distinct
(name, platform, user) and (name, platform, SKU) of a date, and per (SKU, user) the time of the first
view, the last click and the last purchase. A batch changes only the keys it carries, so its cost is
O(batch): the state says which users are new to a group and which reached a funnel stage, and the gold
counters move by exactly that. The changed state rows are appended to one Delta table
(`gold/clickstream_aggregate_state`) with the batch's tokens, so a run started after a crash loads the
state of a date from there and goes on exactly; the gold tables are the state counted, published every
few seconds from memory, and rebuilt from the state table (O(distinct keys), not O(events)) when gold is
materialized.

Funnel stages, reached in order: a viewer viewed the product; a clicker also clicked it at or after
their first view; a purchaser clicked so and also purchased it at or after their first view. Each stage
depends only on min/max times, so the state merges in any order (late events included) and a stage,
once reached, stays reached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow

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
        ("first_view", _TS),
        ("last_click", _TS),
        ("last_purchase", _TS),
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
        ("viewers", pyarrow.int64()),
        ("clickers", pyarrow.int64()),
        ("purchasers", pyarrow.int64()),
        ("view_to_click", pyarrow.float64()),
        ("click_to_purchase", pyarrow.float64()),
        ("view_to_purchase", pyarrow.float64()),
    ]
)

# The state of a set of silver rows (`silver`, with a `partition` column), one row per key: what a
# batch contributes, or a whole date's state rebuilt from silver.
STATE_OF_SILVER_SQL = """
SELECT event_date, 'events' AS kind, event_name, platform, NULL AS "SKU", NULL AS user_id, NULL AS product_name,
       count(*) AS events, NULL AS first_view, NULL AS last_click, NULL AS last_purchase,
       min("partition") AS "partition"
FROM silver GROUP BY event_date, event_name, platform
UNION ALL
SELECT event_date, 'user', event_name, platform, NULL, user_id, NULL, NULL, NULL, NULL, NULL, min("partition")
FROM silver GROUP BY event_date, event_name, platform, user_id
UNION ALL
SELECT event_date, 'product', event_name, platform, "SKU", NULL, NULL, NULL, NULL, NULL, NULL, min("partition")
FROM silver WHERE "SKU" IS NOT NULL GROUP BY event_date, event_name, platform, "SKU"
UNION ALL
SELECT event_date, 'pair', NULL, NULL, "SKU", user_id, min(product_name), NULL,
       min(event_datetime) FILTER (event_name = 'view'), max(event_datetime) FILTER (event_name = 'click'),
       max(event_datetime) FILTER (event_name = 'purchase'), min("partition")
FROM silver WHERE "SKU" IS NOT NULL GROUP BY event_date, "SKU", user_id
"""


def _stages(first_view, last_click, last_purchase) -> tuple[bool, bool, bool]:
    viewed = first_view is not None
    clicked = viewed and last_click is not None and last_click >= first_view
    purchased = clicked and last_purchase is not None and last_purchase >= first_view
    return viewed, clicked, purchased


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
    pairs: dict[tuple, list] = field(default_factory=dict)  # (SKU, user) -> [first view, last click, last purchase]
    funnel: dict[str, list] = field(default_factory=dict)  # SKU -> [viewers, clickers, purchasers, product name]

    def merge(self, rows: list[dict], emit: bool) -> list[dict]:
        """Fold state rows into the counters; with `emit`, return the rows that changed the state (what
        must be stored so that a restart finds the same state), else nothing."""
        changed = []
        for row in rows:
            kind = row["kind"]
            group = (row["event_name"], row["platform"])
            if kind == "events":
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
        sku, key = row["SKU"], (row["SKU"], row["user_id"])
        old = self.pairs.get(key)
        fv, lc, lp = old if old else (None, None, None)
        new = [_min(fv, row["first_view"]), _max(lc, row["last_click"]), _max(lp, row["last_purchase"])]
        counts = self.funnel.setdefault(sku, [0, 0, 0, None])
        name = _min(counts[3], row["product_name"])
        before, after = _stages(fv, lc, lp), _stages(*new)
        for stage in range(3):
            counts[stage] += int(after[stage]) - int(before[stage])
        # A stored max only matters until its stage is reached; a new first view always matters.
        relevant = (
            old is None
            or new[0] != fv
            or before != after
            or (not after[1] and new[1] != lc)
            or (not after[2] and new[2] != lp)
            or name != counts[3]
        )
        counts[3] = name
        self.pairs[key] = new
        if not relevant:
            return []
        return [row | {"first_view": new[0], "last_click": new[1], "last_purchase": new[2]}]

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
            viewers, clickers, purchasers, name = self.funnel[sku]
            rows.append(
                {
                    "event_date": event_date,
                    "SKU": sku,
                    "product_name": name,
                    "viewers": viewers,
                    "clickers": clickers,
                    "purchasers": purchasers,
                    "view_to_click": clickers / viewers if viewers else None,
                    "click_to_purchase": purchasers / clickers if clickers else None,
                    "view_to_purchase": purchasers / viewers if viewers else None,
                }
            )
        return pyarrow.Table.from_pylist(rows, schema=PRODUCT_FUNNEL_SCHEMA)

    def gold(self, event_date: str) -> tuple[pyarrow.Table, pyarrow.Table]:
        day = pyarrow.scalar(event_date).cast(pyarrow.date32()).as_py()
        return self.daily_metrics(day), self.product_funnel(day)

    @property
    def size(self) -> int:
        """Keys held: users and products per group, (SKU, user) pairs."""
        return sum(map(len, self.users.values())) + sum(map(len, self.products.values())) + len(self.pairs)


def state_of(silver: pyarrow.Table) -> pyarrow.Table:
    """The state rows of silver rows (`partition` column optional): one per key."""
    if "partition" not in silver.column_names:
        silver = silver.append_column("partition", pyarrow.array([0] * silver.num_rows, pyarrow.int64()))
    with engine() as conn:
        conn.register("silver", silver)
        rows = conn.execute(STATE_OF_SILVER_SQL).to_arrow_table()
    return rows.cast(pyarrow.schema([*STATE_SCHEMA, pyarrow.field("partition", pyarrow.int64())]))


def load_date(lake: LakeResource, event_date: str, version: int | None = None) -> DateAggregates:
    """A date's aggregates from the state table: O(distinct keys of the date)."""
    rows = lake.scan(AGGREGATE_STATE_TABLE, [event_date], schema=STATE_SCHEMA, version=version)
    aggregates = DateAggregates()
    aggregates.merge(rows.to_pylist(), emit=False)
    return aggregates


@dataclass
class LiveAggregates:
    """The stream's side of gold: the aggregates of the dates it appends to, held in memory (each date
    loaded from the state table when first touched), advanced per batch, published every
    `publish_seconds` (replacing the touched dates of the two gold tables, O(groups + SKUs))."""

    lake: LakeResource
    publish_seconds: float = 5.0
    dates: dict[str, DateAggregates] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    published_at: float = field(default_factory=time.monotonic)

    def add(self, batch: Batch, silver: pyarrow.Table) -> None:
        """Advance the aggregates by the batch's new silver rows, storing the changed state rows first
        (`append_once`: a replayed batch stores nothing twice). Call before silver is appended."""
        state = state_of(silver)
        by_date: dict[str, list[dict]] = {}
        for row in state.to_pylist():
            by_date.setdefault(row["event_date"].isoformat(), []).append(row)
        for event_date in batch.rows_by_date():
            if event_date not in self.dates:
                self.dates[event_date] = load_date(self.lake, event_date)
        # Merged in memory first (that is how the changed rows are found), then stored. When the store did not
        # take all of them (a replayed batch, a rebuild that covered part of it) or failed, the table is the
        # truth: the dates are loaded from it again.
        changed = [row for d, rows in by_date.items() for row in self.dates[d].merge(rows, emit=True)]
        table = pyarrow.Table.from_pylist(changed, schema=state.schema) if changed else state.schema.empty_table()
        try:
            stored = append_once(self.lake, AGGREGATE_STATE_TABLE, table, batch, STATE_SCHEMA)
        except Exception:
            for event_date in batch.rows_by_date():
                self.dates.pop(event_date, None)
            raise
        if stored != table.num_rows:
            for event_date in batch.rows_by_date():
                self.dates[event_date] = load_date(self.lake, event_date)
        self.dirty |= set(batch.rows_by_date())

    def due(self) -> bool:
        return bool(self.dirty) and time.monotonic() - self.published_at >= self.publish_seconds

    def publish(self) -> dict[str, tuple[pyarrow.Table, pyarrow.Table]]:
        """Write the touched dates' gold rows; returns them per date (metrics, funnel)."""
        published = {}
        for event_date in sorted(self.dirty):
            try:
                published[event_date] = write_gold(self.lake, event_date, self.dates[event_date])
            except CommitFailedError:  # the date's gold was being rebuilt meanwhile: publish it next time
                continue
            self.dirty.discard(event_date)
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
