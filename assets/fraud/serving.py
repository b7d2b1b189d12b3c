"""Serving and training: the latest decision features per buyer with a millisecond lookup for decision
services, and point-in-time correct training rows for data scientists. Both compute the behavioural
features with one definition (events and amounts in the 24 h and 7 days strictly before a moment), so
what a model trains on is what it is served."""

import datetime as dt
import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from assets.fraud.common import DECISION_EVENTS, DECISION_WRITER_POOL, LATEST_FEATURES, QUARANTINE_EVENTS, SCD1, SCD2
from assets.fraud.decision import EMPTY_SCD2
from resources import LakeResource, WarehouseResource
from resources.warehouse import engine

# How much decision history the serving table reads: the longest feature window.
FEATURE_HISTORY_DAYS = 7

# Amounts are summed in the orders' own currencies (each buyer checks out in its market's currencies).
_WINDOWS = """
WINDOW w24 AS (PARTITION BY buyer_id ORDER BY occurred_at
               RANGE BETWEEN INTERVAL 24 HOURS PRECEDING AND CURRENT ROW EXCLUDE GROUP),
       w7d AS (PARTITION BY buyer_id ORDER BY occurred_at
               RANGE BETWEEN INTERVAL 7 DAYS PRECEDING AND CURRENT ROW EXCLUDE GROUP),
       wall AS (PARTITION BY buyer_id ORDER BY occurred_at
                RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE GROUP)
"""

# One row per decision event with the features as they were known at the event's time: the SCD2
# attributes from the as-of join, behaviour from strictly earlier events (EXCLUDE GROUP drops the event
# itself and any event at the same instant). Current SCD1 data is left out: it would leak the future.
TRAINING_SQL = f"""
SELECT event_id, occurred_at, event_date, market, buyer_id, merchant_id, order_amount, currency,
    payment_method, payment_terms_days, line_items, channel,
    buyer_version, buyer_version_valid_from,
    credit_rating, total_cost, risk_score, risk_level, approval_status,
    market_risk_level, rules_version,
    count(*) OVER w24 AS prior_events_24h, coalesce(sum(order_amount) OVER w24, 0) AS prior_amount_24h,
    count(*) OVER w7d AS prior_events_7d, coalesce(sum(order_amount) OVER w7d, 0) AS prior_amount_7d,
    epoch(occurred_at - max(occurred_at) OVER wall) AS seconds_since_previous_event
FROM decision
{_WINDOWS}
"""

# The same features at one moment `as_of` (a parameter), per buyer, with the buyer's current risk version.
LATEST_FEATURES_SQL = """
WITH recent AS (
    SELECT * FROM decision WHERE occurred_at < $as_of
), activity AS (
    SELECT buyer_id,
        count(*) FILTER (occurred_at >= $as_of - INTERVAL 24 HOURS) AS prior_events_24h,
        coalesce(sum(order_amount) FILTER (occurred_at >= $as_of - INTERVAL 24 HOURS), 0) AS prior_amount_24h,
        count(*) FILTER (occurred_at >= $as_of - INTERVAL 7 DAYS) AS prior_events_7d,
        coalesce(sum(order_amount) FILTER (occurred_at >= $as_of - INTERVAL 7 DAYS), 0) AS prior_amount_7d,
        max(occurred_at) AS last_event_at,
        arg_max(market_risk_level, occurred_at) AS last_market_risk_level,
        arg_max(market, occurred_at) AS last_market
    FROM recent GROUP BY buyer_id
)
SELECT d.buyer_id, $as_of AS as_of, d.version AS buyer_version, d.valid_from AS buyer_version_valid_from,
    d.credit_rating, d.total_cost, d.risk_score, d.risk_level, d.approval_status,
    coalesce(a.prior_events_24h, 0) AS prior_events_24h, coalesce(a.prior_amount_24h, 0) AS prior_amount_24h,
    coalesce(a.prior_events_7d, 0) AS prior_events_7d, coalesce(a.prior_amount_7d, 0) AS prior_amount_7d,
    epoch($as_of - a.last_event_at) AS seconds_since_previous_event, a.last_event_at, a.last_market,
    a.last_market_risk_level
FROM scd2 d LEFT JOIN activity a USING (buyer_id)
WHERE d.is_current
ORDER BY d.buyer_id
"""


def _decision_files(lake: LakeResource, start: dt.date | None = None, end: dt.date | None = None) -> list[str]:
    files = lake.files(DECISION_EVENTS, pattern="event_date=*/*.parquet")
    keep = []
    for f in files:
        day = dt.date.fromisoformat(f.parent.name.removeprefix("event_date="))
        if (start is None or day >= start) and (end is None or day <= end):
            keep.append(str(f))
    return keep


def training_rows(lake: LakeResource, start: str | dt.date, end: str | dt.date) -> pd.DataFrame:
    """Point-in-time correct training rows for events that occurred from `start` to `end` (dates,
    inclusive): every feature as it was known at the event's time, nothing from after it (no leakage).
    The SQL is the same as the warehouse view `fraud_training_rows`."""
    start, end = dt.date.fromisoformat(str(start)), dt.date.fromisoformat(str(end))
    # Events before `start` still count in the windows of the first days: read the longest window more.
    files = _decision_files(lake, start - dt.timedelta(days=FEATURE_HISTORY_DAYS), end)
    if not files:
        return pd.DataFrame()
    with engine() as conn:
        conn.execute(f"CREATE VIEW decision AS SELECT * FROM read_parquet({files!r}, hive_partitioning=false)")
        return conn.execute(
            f"SELECT * FROM ({TRAINING_SQL}) WHERE event_date BETWEEN ? AND ? ORDER BY occurred_at, event_id",
            [start, end],
        ).df()


def build_latest_features(lake: LakeResource, as_of: dt.datetime):
    """The serving table at `as_of`: every known buyer's current risk attributes and recent behaviour."""
    files = _decision_files(lake, (as_of - dt.timedelta(days=FEATURE_HISTORY_DAYS + 1)).date())
    with engine() as conn:
        decision = (
            f"SELECT * FROM read_parquet({files!r}, hive_partitioning=false)"
            if files
            else "SELECT NULL::VARCHAR buyer_id, NULL::TIMESTAMPTZ occurred_at, NULL::DOUBLE order_amount, "
            "NULL::VARCHAR market, NULL::VARCHAR market_risk_level WHERE false"
        )
        conn.execute(f"CREATE VIEW decision AS {decision}")
        # The live path can serve before the first buyer changes have built the dimension: no buyers yet.
        scd2 = [str(f) for f in lake.files(SCD2)]
        empty = f"SELECT *, true AS is_current FROM ({EMPTY_SCD2})"
        conn.execute(f"CREATE VIEW scd2 AS {f'SELECT * FROM read_parquet({scd2!r})' if scd2 else empty}")
        return conn.execute(LATEST_FEATURES_SQL, {"as_of": as_of}).to_arrow_table()


def publish_fraud_views(warehouse: WarehouseResource, lake: LakeResource) -> bool:
    """Every fraud table as a view in the DuckDB file, and the training view, for analysts and scientists.
    The views glob the lake, so new partitions appear without republishing: the DuckDB file (one writer
    at a time) is opened only when the set of views changes, never on every live run."""
    root = lake.path().resolve()
    sources = {
        "fraud_decision_events": (DECISION_EVENTS, "*/*.parquet"),
        "quarantine_fraud_risk_events": (QUARANTINE_EVENTS, "*/*.parquet"),
        "fraud_buyer_scd2": (SCD2, "*.parquet"),
        "fraud_buyer_scd1": (SCD1, "*.parquet"),
        "fraud_buyer_latest_features": (LATEST_FEATURES, "*.parquet"),
    }
    statements = {
        view: f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM "
        f"read_parquet('{root / dataset / pattern}', hive_partitioning=false)"
        for view, (dataset, pattern) in sources.items()
        if lake.files(dataset, pattern=pattern)
    }
    if "fraud_decision_events" in statements:
        statements["fraud_training_rows"] = "CREATE OR REPLACE VIEW fraud_training_rows AS " + TRAINING_SQL.replace(
            "FROM decision", "FROM fraud_decision_events"
        )
    marker = {"database": warehouse.database, "statements": statements}
    if lake.read_json("_meta", "fraud_views.json") == marker and Path(warehouse.database).exists():
        return False
    with warehouse.connect() as conn:
        for statement in statements.values():
            conn.execute(statement)
    lake.write_json(marker, "_meta", "fraud_views.json")
    return True


def write_latest_features(lake: LakeResource, warehouse: WarehouseResource) -> dict:
    """Rebuild the serving table as of now (and the analysts' views when their set changed); its
    materialization metadata."""
    table = build_latest_features(lake, dt.datetime.now(dt.UTC))
    lake.write_parquet(table, LATEST_FEATURES, "data.parquet")
    published = publish_fraud_views(warehouse, lake)
    active = sum(1 for n in table["prior_events_7d"].to_pylist() if n)
    return {"dagster/row_count": table.num_rows, "buyers_active_7d": active, "views_republished": published}


@dg.asset(
    deps=["fraud_decision_events", "fraud_buyer_scd2"],
    group_name="fraud_gold",
    kinds={"parquet", "duckdb"},
    pool=DECISION_WRITER_POOL,
    description=(
        "The latest decision features per buyer, for decision services: current credit rating, total cost, "
        "risk score, risk level and approval status, and events and amounts in the last 24 h and 7 days. "
        "Served in milliseconds by `assets.fraud.serving.BuyerFeatureLookup`. Refreshed by the live ingest "
        "run after every micro-batch, and after every date run."
    ),
)
def fraud_buyer_latest_features(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=write_latest_features(lake, warehouse))


class BuyerFeatureLookup:
    """The latest decision features of a buyer, in microseconds: the serving table held in memory as a
    dict, reloaded when a new version of the table is written (checked at most every `refresh_s`).

        lookup = BuyerFeatureLookup(os.environ["LAKE_ROOT"])
        lookup.get("B100042")  # -> {"risk_score": 612, "prior_events_24h": 3, ...} or None
    """

    def __init__(self, lake_root: str | Path, refresh_s: float = 1.0):
        self.path = Path(lake_root) / LATEST_FEATURES / "data.parquet"
        self.refresh_s = refresh_s
        self._checked = -float("inf")
        self._version: int | None = None
        self._rows: dict[str, dict] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return
        self._checked = now
        try:
            version = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return
        if version != self._version:  # the file is replaced atomically: a reader never sees half of it
            self._rows = {row["buyer_id"]: row for row in pq.read_table(self.path).to_pylist()}
            self._version = version

    def get(self, buyer_id: str) -> dict | None:
        self._refresh()
        return self._rows.get(buyer_id)


def lookup_buyer_features(lake_root: str | Path, buyer_id: str) -> dict | None:
    """One-off lookup (loads the table); services keep a `BuyerFeatureLookup` for millisecond answers."""
    return BuyerFeatureLookup(lake_root).get(buyer_id)
