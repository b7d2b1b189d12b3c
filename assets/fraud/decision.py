"""Silver checkout risk events (validated against the market rules, deduplicated), their quarantine, and
the decision dataset: every event exactly once, enriched with the buyer's SCD type 2 risk attributes as
they were when the event occurred (an as-of join) and the current SCD type 1 attributes.

One transformation (`build_decisions`), two ways in, one result, each a Delta table partitioned by the
event's date:
- the live stream: each micro-batch's events, checked against the event ids the tables already hold,
  appended (O(batch); `assets/fraud/live.py`);
- a materialization or backfill of a date (`rebuild_decision_dates`): the date rebuilt from bronze and the
  current dimensions, replaced in one commit per table (the daily close, a rule change, a dimension change).
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
from pandera.typing import Series

from assets.fraud.common import first_partition_sql, sound_time_sql
from assets.fraud.contracts import CHECKOUT_EVENTS
from assets.fraud.dimensions import SCD1_SCHEMA, SCD2_SCHEMA
from assets.fraud.names import (
    BOUNDS,
    BRONZE_EVENTS,
    DECISION_EVENTS,
    DECISION_WRITER_POOL,
    PERSONAL_FIELDS,
    QUARANTINE_EVENTS,
    SCD1,
    SCD2,
    SILVER_EVENTS,
    fraud_daily_partitions,
)
from assets.fraud.rules import DEFAULT_RULES_PATH, MarketRules, load_rules
from assets.pandera_checks import table_schema, validate_schema
from assets.quality import (
    NOTHING_LOST_CHECK,
    QUARANTINE_RATE_CHECK,
    nothing_lost,
    quality_check_specs,
    quarantine_rate,
)
from assets.streaming import BRONZE_SCHEMA, bronze_dates
from resources import LakeResource
from resources.lake import CommitFailedError
from resources.warehouse import engine

# Bumped by hand when the SQL below changes meaning; the rules file's hash is appended automatically.
LOGIC_VERSION = "1"

_EVENT = CHECKOUT_EVENTS
# Every message checked against its contract (assets/fraud/contracts.py), then against the market rules.
EVENTS_SQL = f"""
WITH {_EVENT.checked_sql("bronze", sound_time_sql)}
SELECT t.* EXCLUDE (contract_error), CASE
    WHEN contract_error IS NOT NULL THEN contract_error
    WHEN r.market IS NULL THEN {_EVENT.reason("unknown_value", "market", "t.market")}
    WHEN c.currency IS NULL THEN {_EVENT.reason("unknown_value", "currency", "t.currency")}
    WHEN NOT order_amount BETWEEN r.min_amount AND r.max_amount THEN {_EVENT.reason("invalid_value", "order_amount")}
    WHEN occurred_at < {first_partition_sql()} THEN 'before_first_partition'
END AS reason
FROM typed t
LEFT JOIN market_rules r ON r.market = t.market
LEFT JOIN market_currencies c ON c.market = t.market AND c.currency = t.currency
"""

SILVER_COLUMNS = (
    "event_id, delivery_id, occurred_at, event_date, market, buyer_id, merchant_id, order_id, order_amount, "
    "currency, payment_method, payment_terms_days, line_items, channel, "
    'topic, "partition", "offset", kafka_timestamp'
)

# A retried or re-sent event is the same event id: its first delivery (of the date) is the event.
SILVER_SQL = f"""
SELECT {SILVER_COLUMNS} FROM checked WHERE reason IS NULL
QUALIFY row_number() OVER (
    PARTITION BY event_date, event_id ORDER BY kafka_timestamp, topic, "partition", "offset") = 1
"""

_TS = pa_arrow.timestamp("us", tz="UTC")
# Storage types, fixed so that the live path and a rebuild write the same schema.
SILVER_SCHEMA = pa_arrow.schema(
    [
        ("event_id", pa_arrow.string()),
        ("delivery_id", pa_arrow.string()),
        ("occurred_at", _TS),
        ("event_date", pa_arrow.date32()),
        ("market", pa_arrow.string()),
        ("buyer_id", pa_arrow.string()),
        ("merchant_id", pa_arrow.string()),
        ("order_id", pa_arrow.string()),
        ("order_amount", pa_arrow.float64()),
        ("currency", pa_arrow.string()),
        ("payment_method", pa_arrow.string()),
        ("payment_terms_days", pa_arrow.int32()),
        ("line_items", pa_arrow.int32()),
        ("channel", pa_arrow.string()),
        ("topic", pa_arrow.string()),
        ("partition", pa_arrow.int32()),
        ("offset", pa_arrow.int64()),
        ("kafka_timestamp", _TS),
    ]
)
DECISION_SCHEMA = pa_arrow.schema(
    list(SILVER_SCHEMA)
    + [
        ("buyer_version", pa_arrow.int64()),
        ("buyer_version_valid_from", _TS),
        ("credit_rating", pa_arrow.string()),
        ("total_cost", pa_arrow.float64()),
        ("risk_score", pa_arrow.int32()),
        ("risk_level", pa_arrow.string()),
        ("approval_status", pa_arrow.string()),
        ("market_risk_level", pa_arrow.string()),
        ("buyer_name_pseudonym", pa_arrow.string()),
        ("buyer_email_pseudonym", pa_arrow.string()),
        ("buyer_contact_person_pseudonym", pa_arrow.string()),
        ("buyer_address_pseudonym", pa_arrow.string()),
        ("rules_version", pa_arrow.string()),
    ]
)
QUARANTINE_SCHEMA = pa_arrow.schema(
    [
        ("topic", pa_arrow.string()),
        ("partition", pa_arrow.int32()),
        ("offset", pa_arrow.int64()),
        ("kafka_timestamp", _TS),
        ("payload", pa_arrow.binary()),
        ("reason", pa_arrow.string()),
        ("event_date", pa_arrow.date32()),
    ]
)

# The enrichment is a late materialization: DuckDB's ASOF join matches each silver row (by its position)
# to a dimension row on the narrow keys only, and the decision rows are then gathered from the silver table
# and the dimension table by those positions (Arrow `take`). Carrying every event column through the join's
# sort, and converting them from DuckDB to Arrow a second time, cost more than the join itself.

# One row per buyer version with everything the decision dataset takes from the buyer: the SCD2 attributes
# and the buyer's current SCD1 pseudonyms, joined once per version instead of once per event.
DIMENSION_SQL = """
SELECT d.buyer_id, d.valid_from,
    d.version AS buyer_version, d.valid_from AS buyer_version_valid_from,
    d.credit_rating, d.total_cost, d.risk_score, d.risk_level, d.approval_status,
    p.name_pseudonym AS buyer_name_pseudonym, p.email_pseudonym AS buyer_email_pseudonym,
    p.contact_person_pseudonym AS buyer_contact_person_pseudonym,
    p.address_pseudonym AS buyer_address_pseudonym
FROM scd2 d LEFT JOIN scd1 p USING (buyer_id)
"""

# ASOF picks, per event, the buyer's latest version with valid_from <= occurred_at: the attributes as
# they were when the checkout happened. Versions are gap-free, so that version was valid at that time.
# The market's risk level for that version's score comes back as a code (0 low, 1 medium, 2 high).
MATCH_SQL = """
SELECT e.pos, v.version_row,
    CASE WHEN v.risk_score >= r.high_threshold THEN 2
         WHEN v.risk_score >= r.medium_threshold THEN 1 ELSE 0 END::TINYINT AS level
FROM event_keys e
ASOF JOIN version_keys v ON e.buyer_id = v.buyer_id AND e.occurred_at >= v.valid_from
LEFT JOIN market_rules r ON r.market = e.market
"""
MARKET_RISK_LEVELS = pa_arrow.array(["low", "medium", "high"])

QUARANTINE_SQL = f"""
SELECT topic, "partition", "offset", kafka_timestamp, payload, reason, event_date
FROM checked WHERE reason IS NOT NULL
UNION ALL
SELECT c.topic, c."partition", c."offset", c.kafka_timestamp, c.payload,
    {_EVENT.reason("unknown_buyer", quote="buyer_id")}, c.event_date
FROM unknown_buyers u JOIN checked c USING (topic, "partition", "offset")
ORDER BY "partition", "offset"
"""


def enrich_events(
    conn: duckdb.DuckDBPyConnection, silver: pa_arrow.Table, versions: pa_arrow.Table, rules_version: str
) -> tuple[pa_arrow.Table, pa_arrow.Table]:
    """The decision rows of `silver` (its rows, in its order, with the buyer version valid at each event's
    time, the market's risk level, the current SCD1 pseudonyms and `rules_version`), and the silver rows
    of buyers with no version at that time. `versions`: DIMENSION_SQL's rows (`Dimensions.versions`);
    `conn` holds the table market_rules."""
    event_keys = silver.select(["buyer_id", "occurred_at", "market"])
    conn.register("event_keys", event_keys.append_column("pos", pa_arrow.array(np.arange(silver.num_rows))))
    version_keys = versions.select(["buyer_id", "valid_from", "risk_score"])
    conn.register(
        "version_keys", version_keys.append_column("version_row", pa_arrow.array(np.arange(versions.num_rows)))
    )
    # Registered Arrow tables have no row estimate; DuckDB would plan the ASOF join as a nested loop.
    conn.execute("SET asof_loop_join_threshold = 0")
    match = conn.execute(MATCH_SQL).fetchnumpy()
    version_row = np.full(silver.num_rows, -1, dtype=np.int64)
    level = np.zeros(silver.num_rows, dtype=np.int8)
    positions = np.asarray(match["pos"], dtype=np.int64)
    version_row[positions] = np.asarray(match["version_row"], dtype=np.int64)
    level[positions] = np.asarray(match["level"], dtype=np.int8)
    matched = np.flatnonzero(version_row >= 0)
    events = silver.take(matched)
    attributes = versions.drop_columns(["buyer_id", "valid_from"]).take(version_row[matched])
    scd2_columns = attributes.select(attributes.column_names[:7])
    scd1_columns = attributes.select(attributes.column_names[7:])
    decision = pa_arrow.Table.from_arrays(
        [
            *events.columns,
            *scd2_columns.columns,
            MARKET_RISK_LEVELS.take(level[matched]),
            *scd1_columns.columns,
            pa_arrow.repeat(pa_arrow.scalar(rules_version, pa_arrow.string()), len(matched)),
        ],
        names=[
            *events.column_names,
            *scd2_columns.column_names,
            "market_risk_level",
            *scd1_columns.column_names,
            "rules_version",
        ],
    )
    return decision, silver.take(np.flatnonzero(version_row < 0))


@dataclass
class Dimensions:
    """The buyer dimensions as the enrichment reads them, with the table versions they were read at."""

    versions: pa_arrow.Table  # DIMENSION_SQL: one row per buyer version
    scd2: pa_arrow.Table
    table_versions: tuple[int | None, int | None]  # (SCD2, SCD1)


def dimension_versions(lake: LakeResource) -> tuple[int | None, int | None]:
    return lake.version(SCD2), lake.version(SCD1)


def load_dimensions(lake: LakeResource) -> Dimensions:
    """Both buyer dimensions, current (empty before the first buyer change). O(dimension), not O(events)."""
    while True:
        before = dimension_versions(lake)
        scd2, scd1 = lake.scan(SCD2, schema=SCD2_SCHEMA), lake.scan(SCD1, schema=SCD1_SCHEMA)
        if dimension_versions(lake) == before:  # not torn between two dimension builds
            break
    with engine() as conn:
        conn.register("scd2", scd2)
        conn.register("scd1", scd1)
        versions = conn.execute(DIMENSION_SQL + " ORDER BY buyer_id, valid_from").to_arrow_table()
    return Dimensions(versions, scd2, before)


class DecisionEvent(pa.DataFrameModel):
    """A checkout risk event as decision services and models read it."""

    event_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    occurred_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    market: Series[str] = pa.Field(str_matches=r"^[A-Z]{2}$")
    buyer_id: Series[str]
    merchant_id: Series[str]
    order_amount: Series[float] = pa.Field(gt=0)
    currency: Series[str] = pa.Field(str_matches=r"^[A-Z]{3}$")
    credit_rating: Series[str]
    total_cost: Series[float] = pa.Field(ge=0)
    risk_score: Series[int] = pa.Field(ge=0, le=1000)
    risk_level: Series[str] = pa.Field(isin=["low", "medium", "high"])
    approval_status: Series[str] = pa.Field(isin=["approved", "pending", "rejected"])
    market_risk_level: Series[str] = pa.Field(isin=["low", "medium", "high"])

    class Config:
        coerce = True  # DuckDB's INTEGER arrives as int32; the check is about values, not widths


@dataclass
class DecisionBuild:
    """What a set of bronze messages adds to silver, quarantine and decisions (each with `partition` and
    `event_date`), and the counts that account for every message."""

    silver: pa_arrow.Table
    quarantine: pa_arrow.Table
    decision: pa_arrow.Table
    bronze_rows: int
    duplicates: int
    bronze_by_date: dict[str, int]
    duplicates_by_date: dict[str, int]

    def for_date(self, event_date: str) -> "DecisionBuild":
        """This build's rows of one date."""

        def of(table: pa_arrow.Table) -> pa_arrow.Table:
            return table.filter(pc.equal(table["event_date"], pa_arrow.scalar(event_date).cast(pa_arrow.date32())))

        return DecisionBuild(
            of(self.silver),
            of(self.quarantine),
            of(self.decision),
            self.bronze_by_date.get(event_date, 0),
            self.duplicates_by_date.get(event_date, 0),
            {event_date: self.bronze_by_date.get(event_date, 0)},
            {event_date: self.duplicates_by_date.get(event_date, 0)},
        )


def build_decisions(
    bronze: pa_arrow.Table,
    rules: MarketRules,
    dimensions: Dimensions,
    held: Callable[[pa_arrow.Table], np.ndarray] | None = None,
) -> DecisionBuild:
    """Silver, quarantine and decision rows of `bronze` messages (BRONZE_SCHEMA, offsets ascending per
    partition) under `rules` and `dimensions`. An event counts once per date: its first delivery, unless
    `held` (a mask over the first deliveries) says the tables already hold it (then it is a duplicate)."""
    with engine() as conn:
        for name, table in rules.tables().items():
            conn.register(name, table)
        conn.register("bronze", bronze)
        conn.execute(f"CREATE TEMP TABLE checked AS {EVENTS_SQL}")
        silver = conn.execute(f"{SILVER_SQL} ORDER BY occurred_at, event_id").to_arrow_table()
        if held is not None and silver.num_rows:
            silver = silver.filter(pa_arrow.array(~held(silver)))
        silver = silver.cast(SILVER_SCHEMA)
        decision, unknown_buyers = enrich_events(conn, silver, dimensions.versions, rules.content_hash)
        conn.register("unknown_buyers", unknown_buyers.select(["topic", "partition", "offset"]))
        quarantine = conn.execute(QUARANTINE_SQL).to_arrow_table().cast(QUARANTINE_SCHEMA)
        counts = conn.execute(
            "SELECT strftime(event_date, '%Y-%m-%d'), count(*), count(*) FILTER (reason IS NULL) "
            "FROM checked GROUP BY 1"
        ).fetchall()
    kept = count_by_date(silver)
    bronze_by_date = {d: n for d, n, _ in counts}
    duplicates_by_date = {d: valid - kept.get(d, 0) for d, _, valid in counts}
    return DecisionBuild(
        silver,
        quarantine,
        decision.cast(DECISION_SCHEMA),
        bronze_rows=sum(bronze_by_date.values()),
        duplicates=sum(duplicates_by_date.values()),
        bronze_by_date=bronze_by_date,
        duplicates_by_date=duplicates_by_date,
    )


def count_by_date(table: pa_arrow.Table) -> dict[str, int]:
    counts = table["event_date"].value_counts().to_pylist() if table.num_rows else []
    return {c["values"].isoformat(): c["counts"] for c in counts}


# -- a date rebuilt from bronze: O(date), exact ----------------------------------------------------------------


def rebuild_decision_dates(
    lake: LakeResource, rules: MarketRules, event_dates: list[str], log=None, together: int = 1
) -> dict[str, DecisionBuild]:
    """Rebuild silver, quarantine and decisions of `event_dates` from bronze and the current dimensions,
    replacing exactly those dates (one commit per table for each `together` dates: a date run takes one,
    a history import many), and compact their bronze files.

    The live run may append to a date while it is rebuilt here: each replace is computed from the table
    version read at the start and fails if a batch landed in the dates since (the rebuild then starts
    over); it records the date tokens of everything it read from bronze, so a batch it covered is not
    appended again afterwards. A rebuild during which the dimensions changed starts over too, so that a
    result from older dimensions does not land over one from newer."""
    builds = {}
    for dates in [event_dates[i : i + together] for i in range(0, len(event_dates), max(together, 1))]:
        span = dates[0] if len(dates) == 1 else f"{dates[0]}..{dates[-1]}"
        while True:
            versions = {t: lake.version(t) for t in (QUARANTINE_EVENTS, DECISION_EVENTS, SILVER_EVENTS)}
            bronze, tokens = bronze_of_dates(lake, dates)
            dimensions = load_dimensions(lake)
            build = build_decisions(bronze, rules, dimensions)
            if dimension_versions(lake) != dimensions.table_versions:
                if log:
                    log.info(f"{span}: the buyer dimensions changed during the rebuild; rebuilding")
                continue
            try:
                for table, rows in (
                    (QUARANTINE_EVENTS, build.quarantine),
                    (DECISION_EVENTS, build.decision),
                    (SILVER_EVENTS, build.silver),
                ):
                    lake.replace_dates(table, rows, dates, tokens=tokens, version=versions[table])
            except CommitFailedError as conflict:
                if log:
                    log.info(f"{span}: a live batch landed during the rebuild; rebuilding ({conflict})")
                continue
            break
        lake.compact(BRONZE_EVENTS, dates)
        if log:
            log.info(
                f"{span}: {build.bronze_rows} bronze -> {build.decision.num_rows} decisions, "
                f"{build.duplicates} duplicates, {build.quarantine.num_rows} quarantined {quarantine_reasons(build)}"
            )
        for event_date in dates:
            builds[event_date] = build.for_date(event_date)
    return builds


def bronze_of_dates(lake: LakeResource, event_dates: list[str]) -> tuple[pa_arrow.Table, dict[str, int]]:
    """The dates' bronze events and the date tokens a rebuild from them covers (`bronze_dates`). The first
    partition also takes in whatever bronze holds before it (written before its start was moved later,
    or before events were routed into the partitions): re-dated to it and quarantined there as
    `before_first_partition`, so that nothing in bronze is outside every partition."""
    rows, tokens = bronze_dates(lake, BRONZE_EVENTS, event_dates)
    first = BOUNDS.partitions_start
    earlier = sorted(d for d in lake.count_by_date(BRONZE_EVENTS) if d < first) if first in event_dates else []
    if not earlier:
        return rows, tokens
    before = lake.scan(BRONZE_EVENTS, earlier).select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)
    before = before.set_column(
        before.schema.get_field_index("event_date"),
        "event_date",
        pa_arrow.array([dt.date.fromisoformat(first)] * before.num_rows, pa_arrow.date32()),
    )
    return pa_arrow.concat_tables([rows, before]).sort_by([("partition", "ascending"), ("offset", "ascending")]), tokens


@dataclass(frozen=True)
class CheckOutcome:
    """An asset check's result, for either way of reporting it (a step's own check or a live run's)."""

    asset: str
    name: str
    passed: bool
    metadata: dict
    blocking: bool
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    def evaluation(self, partition: str, scope: str) -> dg.AssetCheckEvaluation:
        """The result as an event of a run that reports it itself (`scope`: what it covered)."""
        return dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(self.asset),
            check_name=self.name,
            passed=self.passed,
            metadata={**self.metadata, "scope": scope},
            severity=self.severity,
            blocking=self.blocking,
            partition=partition,
        )


def quarantine_reasons(build: DecisionBuild) -> dict[str, int]:
    return pd.Series(build.quarantine["reason"].to_pylist(), dtype=object).value_counts().to_dict()


def partition_metadata(build: DecisionBuild) -> dict[str, dict]:
    """Materialization metadata per asset of a rebuilt date, inputs before the assets that read them."""
    return {
        "silver_fraud_risk_events": {
            "dagster/row_count": build.silver.num_rows,
            "duplicates_removed": build.duplicates,
        },
        "quarantine_fraud_risk_events": {
            "dagster/row_count": build.quarantine.num_rows,
            "reasons": dg.MetadataValue.json(quarantine_reasons(build)),
        },
        "fraud_decision_events": {"dagster/row_count": build.decision.num_rows},
    }


def partition_checks(
    build: DecisionBuild,
    quarantine_rate_over: tuple[int, int] | None = None,
    schema: tuple[bool, dict] | None = None,
) -> list[CheckOutcome]:
    """The date's checks on a rebuilt date, or on what a live batch added to it (its accounting: every
    message of the batch is a decision, a duplicate or quarantined). `quarantine_rate_over`: (quarantined,
    messages) to rate instead of the build's own (a live run's running counts of the date); `schema`: the
    schema check's outcome when it was found already (many dates validated at once)."""
    passed, schema_metadata = schema or validate_decisions(build.decision)
    quarantined, messages = quarantine_rate_over or (build.quarantine.num_rows, build.bronze_rows)
    lost_passed, lost_metadata = nothing_lost(
        build.bronze_rows,
        clean=build.decision.num_rows,
        quarantined=build.quarantine.num_rows,
        duplicates=build.duplicates,
    )
    rate_passed, rate_metadata = quarantine_rate(messages, quarantined, quarantine_reasons(build))
    return [
        CheckOutcome("fraud_decision_events", "decision_schema_check", passed, schema_metadata, blocking=True),
        CheckOutcome("quarantine_fraud_risk_events", NOTHING_LOST_CHECK, lost_passed, lost_metadata, blocking=True),
        CheckOutcome(
            "quarantine_fraud_risk_events",
            QUARANTINE_RATE_CHECK,
            rate_passed,
            rate_metadata,
            blocking=False,
            severity=dg.AssetCheckSeverity.WARN,
        ),
    ]


def validate_decisions(decision: pa_arrow.Table) -> tuple[bool, dict]:
    """Pandera's DecisionEvent over decision rows: (passed, the check's metadata)."""
    return validate_schema(DecisionEvent, decision.to_pandas(), PERSONAL_FIELDS)


def build_decision_asset(rules_path: str | Path = DEFAULT_RULES_PATH) -> dg.AssetsDefinition:
    """The silver/quarantine/decision assets applying the rules at `rules_path`. Their code version is
    the rules file's content hash, so a rule change shows them stale in the UI until backfilled."""
    return _decision_asset(load_rules(rules_path))


def _decision_asset(rules: MarketRules) -> dg.AssetsDefinition:
    code_version = f"{LOGIC_VERSION}-{rules.content_hash}"
    rules_meta = {
        "rules_file": rules.path,
        "rules_version": rules.version,
        "rules_hash": rules.content_hash,
    }

    @dg.multi_asset(
        name="fraud_decision_partition",
        specs=[
            dg.AssetSpec(
                "silver_fraud_risk_events",
                deps=["bronze_fraud_risk_events"],
                group_name="fraud_silver",
                kinds={"deltalake", "duckdb"},
                code_version=code_version,
                metadata=rules_meta,
                description=(
                    "Every checkout risk event exactly once (retries and re-sends collapse on the event id), "
                    "valid under its market's rules: known market, allowed currency, amount in range, a "
                    "plausible time. Partitioned by the day the event occurred."
                ),
            ),
            dg.AssetSpec(
                "quarantine_fraud_risk_events",
                deps=["bronze_fraud_risk_events", "fraud_buyer_scd2"],
                group_name="fraud_silver",
                kinds={"deltalake"},
                code_version=code_version,
                metadata=rules_meta,
                description=(
                    "Messages kept out of the decision dataset, each with its reason, original payload and "
                    "Kafka coordinates: irregular values, broken messages and unknown buyers. bronze = "
                    "decision + duplicates + quarantine."
                ),
            ),
            dg.AssetSpec(
                "fraud_decision_events",
                deps=["silver_fraud_risk_events", "fraud_buyer_scd2", "fraud_buyer_scd1"],
                group_name="fraud_gold",
                kinds={"deltalake", "duckdb"},
                code_version=code_version,
                metadata={**rules_meta, "dagster/column_schema": table_schema(DecisionEvent)},
                description=(
                    "The decision dataset: each valid checkout risk event exactly once, with the buyer's "
                    "credit rating, total cost, risk score, risk level and approval status as they were when"
                    " the event occurred (point in time, SCD2 as-of join), the market's risk level for that "
                    "score, and the buyer's current pseudonymized contact data (SCD1)."
                ),
            ),
        ],
        partitions_def=fraud_daily_partitions,
        pool=DECISION_WRITER_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                "decision_schema_check",
                asset="fraud_decision_events",
                blocking=True,
                description="The partition satisfies the Pandera schema DecisionEvent.",
                partitions_def=fraud_daily_partitions,
            ),
            *quality_check_specs("quarantine_fraud_risk_events", fraud_daily_partitions),
        ],
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource):
        """Rebuild the run's date from bronze and the current dimensions."""
        build = rebuild_decision_dates(lake, rules, [context.partition_key], context.log)[context.partition_key]
        for asset_key, metadata in partition_metadata(build).items():
            yield dg.MaterializeResult(asset_key=asset_key, metadata=metadata)
        for check in partition_checks(build):
            yield dg.AssetCheckResult(
                asset_key=check.asset,
                check_name=check.name,
                passed=check.passed,
                severity=check.severity,
                metadata=check.metadata,
            )

    return _asset


# The rules the code location was loaded with: what its date runs and its live ingest runs apply.
LOADED_RULES = load_rules()
fraud_decision_partition = _decision_asset(LOADED_RULES)
