"""Serving and training: the latest decision features per buyer with a millisecond lookup for decision
services, and point-in-time correct training rows for data scientists. Both compute the behavioural
features with one definition (events and amounts in the 24 h and 7 days strictly before a moment), so
what a model trains on is what it is served."""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets.fraud.common import replace_table
from assets.fraud.decision import DECISION_SCHEMA
from assets.fraud.dimensions import SCD2_SCHEMA
from assets.fraud.names import DECISION_EVENTS, DECISION_WRITER_POOL, LATEST_FEATURES, QUARANTINE_EVENTS, SCD1, SCD2
from resources import LakeResource, WarehouseResource
from resources.duckdb_lake import attach_lake
from resources.lake import CommitFailedError
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

# The same features at one moment `as_of` (a parameter), per buyer (of `buyers`, when that table is there),
# with the buyer's current risk version.
LATEST_FEATURES_SQL = """
WITH recent AS (
    SELECT * FROM decision WHERE occurred_at < $as_of {buyer_filter}
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
    a.last_market_risk_level, $as_of::DATE AS event_date
FROM scd2 d LEFT JOIN activity a USING (buyer_id)
WHERE d.is_current {buyer_filter}
ORDER BY d.buyer_id
"""
_TS = pa.timestamp("us", tz="UTC")
LATEST_FEATURES_SCHEMA = pa.schema(
    [
        ("buyer_id", pa.string()),
        ("as_of", _TS),
        ("buyer_version", pa.int64()),
        ("buyer_version_valid_from", _TS),
        ("credit_rating", pa.string()),
        ("total_cost", pa.float64()),
        ("risk_score", pa.int32()),
        ("risk_level", pa.string()),
        ("approval_status", pa.string()),
        ("prior_events_24h", pa.int64()),
        ("prior_amount_24h", pa.float64()),
        ("prior_events_7d", pa.int64()),
        ("prior_amount_7d", pa.float64()),
        ("seconds_since_previous_event", pa.float64()),
        ("last_event_at", _TS),
        ("last_market", pa.string()),
        ("last_market_risk_level", pa.string()),
        ("event_date", pa.date32()),  # the date of `as_of`: the table's partition
    ]
)
# What the features read of a decision row (the live run holds these for the feature window).
FEATURE_COLUMNS = ["buyer_id", "occurred_at", "order_amount", "market", "market_risk_level", "event_date"]


def _dates(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def feature_history(lake: LakeResource, as_of: dt.datetime) -> pa.Table:
    """The decision rows the features at `as_of` read: the dates of the longest window (and a day more)."""
    dates = _dates((as_of - dt.timedelta(days=FEATURE_HISTORY_DAYS + 1)).date(), as_of.date() + dt.timedelta(days=1))
    return lake.scan(DECISION_EVENTS, dates, columns=FEATURE_COLUMNS, schema=DECISION_SCHEMA)


def training_rows(lake: LakeResource, start: str | dt.date, end: str | dt.date) -> pd.DataFrame:
    """Point-in-time correct training rows for events that occurred from `start` to `end` (dates,
    inclusive): every feature as it was known at the event's time, nothing from after it (no leakage).
    The SQL is the same as the warehouse view `fraud_training_rows`."""
    start, end = dt.date.fromisoformat(str(start)), dt.date.fromisoformat(str(end))
    # Events before `start` still count in the windows of the first days: read the longest window more.
    decision = lake.scan(
        DECISION_EVENTS, _dates(start - dt.timedelta(days=FEATURE_HISTORY_DAYS), end), schema=DECISION_SCHEMA
    )
    if not decision.num_rows:
        return pd.DataFrame()
    with engine() as conn:
        conn.register("decision", decision)
        return conn.execute(
            f"SELECT * FROM ({TRAINING_SQL}) WHERE event_date BETWEEN ? AND ? ORDER BY occurred_at, event_id",
            [start, end],
        ).df()


def latest_features(decision: pa.Table, scd2: pa.Table, as_of: dt.datetime, buyers: pa.Array | None = None) -> pa.Table:
    """The serving rows at `as_of` of every current buyer of `scd2` (only `buyers`, when given), from
    `decision` rows (FEATURE_COLUMNS, at least the window before `as_of`)."""
    with engine() as conn:
        conn.register("decision", decision.select(FEATURE_COLUMNS))
        conn.register("scd2", scd2)
        buyer_filter = ""
        if buyers is not None:
            conn.register("buyers", pa.table({"buyer_id": buyers}))
            buyer_filter = "AND buyer_id IN (SELECT buyer_id FROM buyers)"
        sql = LATEST_FEATURES_SQL.format(buyer_filter=buyer_filter)
        return conn.execute(sql, {"as_of": as_of}).to_arrow_table().cast(LATEST_FEATURES_SCHEMA)


def build_latest_features(lake: LakeResource, as_of: dt.datetime) -> pa.Table:
    """The serving table at `as_of`: every known buyer's current risk attributes and recent behaviour."""
    # The live path can serve before the first buyer changes have built the dimension: no buyers yet.
    return latest_features(feature_history(lake, as_of), lake.scan(SCD2, schema=SCD2_SCHEMA), as_of)


def merge_latest_features(lake: LakeResource, rows: pa.Table, attempts: int = 10) -> None:
    """Upsert `rows` (some buyers' serving rows) into the serving table, keyed by buyer: one Delta merge,
    which rewrites the serving files holding those buyers (O(buyers), not O(events))."""
    for attempt in range(attempts):
        table = lake.table(LATEST_FEATURES)
        try:
            if table is None:
                lake.append(LATEST_FEATURES, rows)
                return
            (
                table.merge(source=rows, predicate="t.buyer_id = s.buyer_id", source_alias="s", target_alias="t")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
            return
        except CommitFailedError:  # a whole-table refresh committed meanwhile: merge on top of it
            if attempt == attempts - 1:
                raise


# Views this process has published, per database file: the DuckDB file (one writer at a time) is opened
# when the set of views changes, once per process at most otherwise.
_PUBLISHED: dict[str, dict[str, str]] = {}


def publish_fraud_views(warehouse: WarehouseResource, lake: LakeResource) -> bool:
    """Every fraud table as a view in the DuckDB file (`delta_scan` of the table: each query reads its
    current version), and the training view, for analysts and scientists."""
    sources = {
        "fraud_decision_events": DECISION_EVENTS,
        "quarantine_fraud_risk_events": QUARANTINE_EVENTS,
        "fraud_buyer_scd2": SCD2,
        "fraud_buyer_scd1": SCD1,
        "fraud_buyer_latest_features": LATEST_FEATURES,
    }
    statements = {
        view: f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM delta_scan('{lake.uri(table)}')"
        for view, table in sources.items()
        if lake.table(table) is not None
    }
    if "fraud_decision_events" in statements:
        statements["fraud_training_rows"] = "CREATE OR REPLACE VIEW fraud_training_rows AS " + TRAINING_SQL.replace(
            "FROM decision", "FROM fraud_decision_events"
        )
    if _PUBLISHED.get(warehouse.database) == statements and Path(warehouse.database).exists():
        return False
    with warehouse.connect() as conn:
        attach_lake(conn, lake.root, lake.s3_endpoint_url, lake.s3_region)  # on S3: DuckDB's access to the bucket
        for statement in statements.values():
            conn.execute(statement)
    _PUBLISHED[warehouse.database] = statements
    return True


def write_latest_features(
    lake: LakeResource, warehouse: WarehouseResource, log=None, tokens: dict[str, int] | None = None
) -> dict:
    """Rebuild the serving table as of now, replacing it whole in one commit (with `tokens`: a history
    import's mark that it is done) and publish the analysts' views; its materialization metadata. Reads
    the decisions of the longest feature window."""
    while True:
        version = lake.version(LATEST_FEATURES)
        table = build_latest_features(lake, dt.datetime.now(dt.UTC))
        try:
            replace_table(lake, LATEST_FEATURES, table, version=version, tokens=tokens)
            break
        except CommitFailedError:  # the live run merged a batch meanwhile: compute again, as of later
            if log:
                log.info("the live run updated the serving table during the refresh; refreshing again")
    published = publish_fraud_views(warehouse, lake)
    active = sum(1 for n in table["prior_events_7d"].to_pylist() if n)
    return {"dagster/row_count": table.num_rows, "buyers_active_7d": active, "views_republished": published}


@dg.asset(
    deps=["fraud_decision_events", "fraud_buyer_scd2"],
    group_name="fraud_gold",
    kinds={"deltalake", "duckdb"},
    pool=DECISION_WRITER_POOL,
    description=(
        "The latest decision features per buyer, for decision services: current credit rating, total cost, "
        "risk score, risk level and approval status, and events and amounts in the last 24 h and 7 days, "
        "each row as of its `as_of`. Served in milliseconds by `assets.fraud.serving.BuyerFeatureLookup`. "
        "The live ingest run updates the buyers of each micro-batch (a Delta merge); a materialization "
        "(every date run) refreshes every buyer."
    ),
)
def fraud_buyer_latest_features(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=write_latest_features(lake, warehouse, context.log))


class BuyerFeatureLookup:
    """The latest decision features of a buyer, in microseconds: the serving table held in memory as a
    dict, reloaded when a new version of the table is committed (checked at most every `refresh_s`).

        lookup = BuyerFeatureLookup(os.environ["LAKE_ROOT"])
        lookup.get("B100042")  # -> {"risk_score": 612, "prior_events_24h": 3, ...} or None
    """

    def __init__(self, lake_root: str | Path | LakeResource, refresh_s: float = 1.0):
        self.lake = lake_root if isinstance(lake_root, LakeResource) else LakeResource(root=str(lake_root))
        self.refresh_s = refresh_s
        self._checked = -float("inf")
        self._version: int | None = None
        self._rows: dict[str, dict] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return
        self._checked = now
        table = self.lake.table(LATEST_FEATURES)
        if table is None or table.version() == self._version:
            return
        version = table.version()  # a reader sees whole commits only: never half of a merge
        rows = table.to_pyarrow_dataset().to_table().to_pylist()
        self._rows = {row["buyer_id"]: row for row in rows}
        self._version = version

    def get(self, buyer_id: str) -> dict | None:
        self._refresh()
        return self._rows.get(buyer_id)


def lookup_buyer_features(lake_root: str | Path, buyer_id: str) -> dict | None:
    """One-off lookup (loads the table); services keep a `BuyerFeatureLookup` for millisecond answers."""
    return BuyerFeatureLookup(lake_root).get(buyer_id)
