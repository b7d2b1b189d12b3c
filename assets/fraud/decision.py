"""Silver checkout risk events (validated against the market rules, deduplicated), their quarantine, and
the decision dataset: every event exactly once, enriched with the buyer's SCD type 2 risk attributes as
they were when the event occurred (an as-of join) and the current SCD type 1 attributes."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
from pandera.typing import Series

from assets.fraud.common import (
    BRONZE_EVENTS,
    DECISION_EVENTS,
    DECISION_WRITER_POOL,
    QUARANTINE_EVENTS,
    SCD1,
    SCD2,
    SILVER_EVENTS,
    bronze_view_sql,
    fraud_daily_partitions,
    sound_time_sql,
)
from assets.fraud.rules import DEFAULT_RULES_PATH, MarketRules, load_rules
from assets.pandera_checks import table_schema, validate_schema
from resources import LakeResource
from resources.warehouse import engine

# Bumped by hand when the SQL below changes meaning; the rules file's hash is appended automatically.
LOGIC_VERSION = "1"

EVENTS_SQL = f"""
WITH decoded AS (
    SELECT *, try(decode(payload)) AS body FROM bronze
), parsed AS (
    SELECT *, CASE WHEN json_valid(body) THEN body::JSON END AS doc FROM decoded
), typed AS (
    SELECT topic, "partition", "offset", kafka_timestamp, payload, event_date,
        CASE
            WHEN payload IS NULL OR octet_length(payload) = 0 THEN 'empty_payload'
            WHEN body IS NULL THEN 'invalid_utf8'
            WHEN doc IS NULL THEN 'malformed_json'
            WHEN json_type(doc) <> 'OBJECT' THEN 'not_a_json_object'
        END AS structural_error,
        doc ->> '$.event_id' AS event_id,
        doc ->> '$.delivery_id' AS delivery_id,
        doc ->> '$.occurred_at' AS occurred_at_text,
        {sound_time_sql("doc ->> '$.occurred_at'")} AS occurred_at,
        doc ->> '$.market' AS market,
        doc ->> '$.buyer_id' AS buyer_id,
        doc ->> '$.merchant_id' AS merchant_id,
        doc ->> '$.order_id' AS order_id,
        json_type(doc, '$.order_amount') AS amount_type,
        try_cast(doc ->> '$.order_amount' AS DOUBLE) AS order_amount,
        doc ->> '$.currency' AS currency,
        doc ->> '$.payment_method' AS payment_method,
        try_cast(doc ->> '$.payment_terms_days' AS INTEGER) AS payment_terms_days,
        try_cast(doc ->> '$.line_items' AS INTEGER) AS line_items,
        doc ->> '$.channel' AS channel
    FROM parsed
)
SELECT t.* EXCLUDE (structural_error, occurred_at_text, amount_type), CASE
    WHEN structural_error IS NOT NULL THEN structural_error
    WHEN event_id IS NULL THEN 'missing_field:event_id'
    WHEN occurred_at_text IS NULL THEN 'missing_field:occurred_at'
    WHEN occurred_at IS NULL THEN 'invalid_value:occurred_at'
    WHEN buyer_id IS NULL THEN 'missing_field:buyer_id'
    WHEN merchant_id IS NULL THEN 'missing_field:merchant_id'
    WHEN t.market IS NULL THEN 'missing_field:market'
    WHEN amount_type IS NULL OR amount_type = 'NULL' THEN 'missing_field:order_amount'
    WHEN amount_type NOT IN ('DOUBLE', 'BIGINT', 'UBIGINT') THEN 'wrong_type:order_amount'
    WHEN t.currency IS NULL THEN 'missing_field:currency'
    WHEN r.market IS NULL THEN 'unknown_value:market'
    WHEN c.currency IS NULL THEN 'unknown_value:currency'
    WHEN NOT order_amount BETWEEN r.min_amount AND r.max_amount THEN 'invalid_value:order_amount'
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

# A retried or re-sent event is the same event id: its first delivery is the event.
SILVER_SQL = f"""
SELECT {SILVER_COLUMNS} FROM checked WHERE reason IS NULL
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY kafka_timestamp, "partition", "offset") = 1
"""

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

QUARANTINE_SQL = """
SELECT topic, "partition", "offset", kafka_timestamp, payload, reason, event_date
FROM checked WHERE reason IS NOT NULL
UNION ALL
SELECT c.topic, c."partition", c."offset", c.kafka_timestamp, c.payload, 'unknown_buyer', c.event_date
FROM unknown_buyers u JOIN checked c USING (topic, "partition", "offset")
ORDER BY "partition", "offset"
"""


def enrich_events(
    conn: duckdb.DuckDBPyConnection, silver: pa_arrow.Table, rules_version: str
) -> tuple[pa_arrow.Table, pa_arrow.Table]:
    """The decision rows of `silver` (its rows, in its order, with the buyer version valid at each event's
    time, the market's risk level, the current SCD1 pseudonyms and `rules_version`), and the silver rows
    of buyers with no version at that time. `conn` holds tables scd2, scd1 and market_rules."""
    versions = conn.execute(DIMENSION_SQL).to_arrow_table()
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


EMPTY_SCD2 = (
    "SELECT NULL::VARCHAR buyer_id, NULL::BIGINT AS version, NULL::VARCHAR credit_rating, "
    "NULL::DOUBLE total_cost, "
    "NULL::INTEGER risk_score, NULL::VARCHAR risk_level, NULL::VARCHAR approval_status, "
    "NULL::TIMESTAMPTZ valid_from WHERE false"
)
EMPTY_SCD1 = (
    "SELECT NULL::VARCHAR buyer_id, NULL::VARCHAR name_pseudonym, NULL::VARCHAR email_pseudonym, "
    "NULL::VARCHAR contact_person_pseudonym, NULL::VARCHAR address_pseudonym WHERE false"
)


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
    silver: pa_arrow.Table
    quarantine: pa_arrow.Table
    decision: pa_arrow.Table
    bronze_rows: int
    duplicates: int


def _lake_table(lake: LakeResource, dataset: str, empty_sql: str) -> str:
    files = [str(f) for f in lake.files(dataset)]
    return f"SELECT * FROM read_parquet({files!r})" if files else empty_sql


def build_decision_partition(lake: LakeResource, rules: MarketRules, event_date: str) -> DecisionBuild:
    """Silver, quarantine and decision rows of one `event_date`, from that date's bronze files and the
    current buyer dimensions."""
    files = [str(f) for f in lake.files(BRONZE_EVENTS, f"event_date={event_date}")]
    with engine() as conn:
        for name, table in rules.tables().items():
            conn.register(name, table)
        conn.execute(f"CREATE VIEW bronze AS {bronze_view_sql(files)}")
        conn.execute(f"CREATE TEMP TABLE scd2 AS {_lake_table(lake, SCD2, EMPTY_SCD2)}")
        conn.execute(f"CREATE TEMP TABLE scd1 AS {_lake_table(lake, SCD1, EMPTY_SCD1)}")
        conn.execute(f"CREATE TEMP TABLE checked AS {EVENTS_SQL}")
        silver = conn.execute(f"{SILVER_SQL} ORDER BY occurred_at, event_id").to_arrow_table()
        decision, unknown_buyers = enrich_events(conn, silver, rules.content_hash)
        conn.register("unknown_buyers", unknown_buyers.select(["topic", "partition", "offset"]))
        quarantine = conn.execute(QUARANTINE_SQL).to_arrow_table()
        bronze_rows, valid = conn.execute(
            "SELECT count(*), count(*) FILTER (reason IS NULL) FROM checked"
        ).fetchone() or (0, 0)
    return DecisionBuild(silver, quarantine, decision, bronze_rows, duplicates=valid - silver.num_rows)


QUARANTINE_RATE_THRESHOLD = 0.05


@dataclass(frozen=True)
class CheckOutcome:
    """An asset check's result, for either way of reporting it (a step's own check or a live run's)."""

    asset: str
    name: str
    passed: bool
    metadata: dict
    blocking: bool
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


def _inputs_stamp(lake: LakeResource, event_date: str) -> tuple:
    """What a rebuild of `event_date` reads: the date's bronze files and the dimension files' versions."""
    dimensions = [f for dataset in (SCD2, SCD1) for f in lake.files(dataset)]
    return (
        tuple(f.name for f in lake.files(BRONZE_EVENTS, f"event_date={event_date}")),
        tuple((str(f), f.stat().st_mtime_ns) for f in dimensions),
    )


def write_decision_partition(lake: LakeResource, rules: MarketRules, event_date: str, log=None) -> DecisionBuild:
    """Rebuild silver, quarantine and decisions of `event_date` from bronze and write them to the lake.

    The live ingest run and date runs (backfills, dimension changes) may rebuild the same date at the
    same time. A rebuild whose inputs changed while it ran (new bronze files of the date, new dimensions)
    is thrown away and done again, so a result from older inputs does not land over one from newer
    inputs (date runs also take turns among themselves: DECISION_WRITER_POOL)."""
    for _ in range(5):
        before = _inputs_stamp(lake, event_date)
        build = build_decision_partition(lake, rules, event_date)
        if _inputs_stamp(lake, event_date) == before:
            break
        if log:
            log.info(f"{event_date}: inputs changed during the rebuild; rebuilding")
    part = f"event_date={event_date}"
    for dataset, table in (
        (SILVER_EVENTS, build.silver),
        (QUARANTINE_EVENTS, build.quarantine),
        (DECISION_EVENTS, build.decision),
    ):
        lake.replace_dir({"data.parquet": table}, dataset, part)
    if log:
        log.info(
            f"{event_date}: {build.bronze_rows} bronze -> {build.decision.num_rows} decisions, "
            f"{build.duplicates} duplicates, {build.quarantine.num_rows} quarantined {quarantine_reasons(build)}"
        )
    return build


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


def partition_checks(build: DecisionBuild) -> list[CheckOutcome]:
    passed, schema_metadata = validate_schema(DecisionEvent, build.decision.to_pandas())
    accounted = build.decision.num_rows + build.duplicates + build.quarantine.num_rows
    rate = build.quarantine.num_rows / build.bronze_rows if build.bronze_rows else 0.0
    return [
        CheckOutcome("fraud_decision_events", "decision_schema_check", passed, schema_metadata, blocking=True),
        CheckOutcome(
            "quarantine_fraud_risk_events",
            "fraud_nothing_lost_check",
            accounted == build.bronze_rows,
            {"bronze_rows": build.bronze_rows, "accounted_rows": accounted},
            blocking=True,
        ),
        CheckOutcome(
            "quarantine_fraud_risk_events",
            "fraud_quarantine_rate_check",
            rate <= QUARANTINE_RATE_THRESHOLD,
            {"quarantine_rate": rate, "reasons": dg.MetadataValue.json(quarantine_reasons(build))},
            blocking=False,
            severity=dg.AssetCheckSeverity.WARN,
        ),
    ]


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
                kinds={"parquet", "duckdb"},
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
                kinds={"parquet"},
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
                kinds={"parquet", "duckdb"},
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
            ),
            dg.AssetCheckSpec(
                "fraud_nothing_lost_check",
                asset="quarantine_fraud_risk_events",
                blocking=True,
                description="Every bronze message of the date is a decision row, a counted duplicate, or quarantined.",
            ),
            dg.AssetCheckSpec(
                "fraud_quarantine_rate_check",
                asset="quarantine_fraud_risk_events",
                description=f"At most {QUARANTINE_RATE_THRESHOLD:.0%} of the date's messages are quarantined.",
            ),
        ],
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource):
        build = write_decision_partition(lake, rules, context.partition_key, context.log)
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
