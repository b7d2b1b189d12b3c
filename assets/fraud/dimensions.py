"""Buyer dimensions from the master-data change stream: SCD type 2 history of the risk attributes and
SCD type 1 (current, pseudonymized) contact attributes. Rebuilt from every bronze change in event-time
order, so a change that arrives late lands where it happened, never where it arrived. Each is a Delta
table replaced whole in one commit (partitioned by the date a version took effect, `event_date`)."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa

from assets.fraud.common import replace_table, sound_time_sql
from assets.fraud.contracts import BUYER_CHANGES
from assets.fraud.names import BRONZE_CHANGES, DIMENSION_LOOKBACK_DAYS, QUARANTINE_CHANGES, SCD1, SCD2
from assets.streaming import BRONZE_SCHEMA, TOUCHED_DATES
from resources import LakeResource, PseudonymizerResource
from resources.warehouse import engine

SCD2_ATTRIBUTES = ["credit_rating", "total_cost", "risk_score", "risk_level", "approval_status"]
SCD1_ATTRIBUTES = ["name", "email", "contact_person", "address"]

_TS = pa.timestamp("us", tz="UTC")
# Storage types, fixed so that every rebuild (and an empty dimension) has the same schema.
SCD2_SCHEMA = pa.schema(
    [
        ("buyer_id", pa.string()),
        ("version", pa.int64()),
        ("credit_rating", pa.string()),
        ("total_cost", pa.float64()),
        ("risk_score", pa.int32()),
        ("risk_level", pa.string()),
        ("approval_status", pa.string()),
        ("valid_from", _TS),
        ("valid_to", _TS),
        ("is_current", pa.bool_()),
        ("change_id", pa.string()),
        ("event_date", pa.date32()),  # the date the version took effect: the table's partition
    ]
)
SCD1_SCHEMA = pa.schema(
    [("buyer_id", pa.string())]
    + [(f"{a}_pseudonym", pa.string()) for a in SCD1_ATTRIBUTES]
    + [("updated_at", _TS), ("event_date", pa.date32())]
)
CHANGES_QUARANTINE_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("kafka_timestamp", _TS),
        ("payload", pa.binary()),
        ("reason", pa.string()),
        ("event_date", pa.date32()),
    ]
)

# Every change checked against its contract (assets/fraud/contracts.py).
CHANGES_SQL = f"""
WITH {BUYER_CHANGES.checked_sql("bronze", sound_time_sql)}
SELECT * EXCLUDE (contract_error), contract_error AS reason FROM typed
"""

# One change per change id (the first delivery); of several changes at the same instant, the one that
# arrived last. Ordered by when the change happened, not when it arrived.
INSTANTS_SQL = """
WITH valid AS (
    SELECT * FROM changes WHERE reason IS NULL
    QUALIFY row_number() OVER (PARTITION BY change_id ORDER BY kafka_timestamp, topic, "partition", "offset") = 1
)
SELECT * FROM valid
QUALIFY row_number() OVER (
    PARTITION BY buyer_id, changed_at ORDER BY kafka_timestamp DESC, topic DESC, "partition" DESC, "offset" DESC) = 1
"""

_ATTRS = ", ".join(SCD2_ATTRIBUTES)
# A new version opens only when a tracked attribute changes; it is valid from its change's time until the
# next version's (valid_to exclusive, NULL while current), so windows never overlap or leave gaps.
SCD2_SQL = f"""
WITH marked AS (
    SELECT *, struct_pack({_ATTRS}) AS attrs,
        lag(struct_pack({_ATTRS})) OVER (PARTITION BY buyer_id ORDER BY changed_at) AS previous
    FROM instants
), versions AS (
    SELECT * FROM marked WHERE previous IS NULL OR attrs IS DISTINCT FROM previous
)
SELECT buyer_id, row_number() OVER w AS version, {_ATTRS},
    changed_at AS valid_from, lead(changed_at) OVER w AS valid_to,
    lead(changed_at) OVER w IS NULL AS is_current,
    change_id, changed_at::DATE AS event_date
FROM versions WINDOW w AS (PARTITION BY buyer_id ORDER BY changed_at)
ORDER BY buyer_id, valid_from
"""

SCD1_SQL = f"""
SELECT buyer_id, {", ".join(SCD1_ATTRIBUTES)}, changed_at AS updated_at, changed_at::DATE AS event_date
FROM instants
QUALIFY row_number() OVER (PARTITION BY buyer_id ORDER BY changed_at DESC) = 1
ORDER BY buyer_id
"""

SCD2_INVARIANTS_SQL = """
SELECT
    (SELECT count(*) FROM (SELECT buyer_id FROM scd2 GROUP BY 1 HAVING count(*) FILTER (is_current) <> 1))
        AS keys_without_exactly_one_current,
    (SELECT count(*) FROM (
        SELECT valid_from, valid_to,
            lead(valid_from) OVER (PARTITION BY buyer_id ORDER BY valid_from) AS next_from
        FROM scd2
    ) WHERE valid_to IS DISTINCT FROM next_from OR valid_to <= valid_from) AS overlapping_or_gapped
"""


@dataclass
class DimensionBuild:
    scd2: pa.Table
    scd1: pa.Table
    quarantine: pa.Table
    bronze_rows: int
    duplicates: int
    buyers_with_changes: int
    invariants: dict[str, int]


def build_dimensions(lake: LakeResource, pseudonymizer: PseudonymizerResource) -> DimensionBuild:
    """Both buyer dimensions and the quarantined changes, from every bronze change."""
    bronze = lake.scan(BRONZE_CHANGES, schema=BRONZE_SCHEMA)
    with engine() as conn:
        conn.register("bronze", bronze)
        conn.execute(f"CREATE TEMP TABLE changes AS {CHANGES_SQL}")
        conn.execute(f"CREATE TEMP TABLE instants AS {INSTANTS_SQL}")
        scd2 = conn.execute(SCD2_SQL).to_arrow_table()
        scd1 = conn.execute(SCD1_SQL).to_arrow_table()
        quarantine = conn.execute(
            'SELECT topic, "partition", "offset", kafka_timestamp, payload, reason, event_date FROM changes '
            'WHERE reason IS NOT NULL ORDER BY "partition", "offset"'
        ).to_arrow_table()
        bronze_rows, valid_rows = conn.execute(
            "SELECT count(*), count(*) FILTER (reason IS NULL) FROM changes"
        ).fetchone() or (0, 0)
        kept, buyers = conn.execute(
            "SELECT count(DISTINCT change_id), count(DISTINCT buyer_id) FROM changes WHERE reason IS NULL"
        ).fetchone() or (0, 0)
        conn.register("scd2", scd2)
        without_one_current, overlapping = conn.execute(SCD2_INVARIANTS_SQL).fetchone() or (0, 0)
        invariants = {"keys_without_exactly_one_current": without_one_current, "overlapping_or_gapped": overlapping}
    for column in SCD1_ATTRIBUTES:  # personal data leaves the dimension only as a keyed pseudonym
        index = scd1.column_names.index(column)
        scd1 = scd1.set_column(
            index,
            f"{column}_pseudonym",
            pa.array(pseudonymizer.pseudonyms(scd1[column].to_pylist()), pa.string()),
        )
    return DimensionBuild(
        scd2.cast(SCD2_SCHEMA),
        scd1.select(SCD1_SCHEMA.names).cast(SCD1_SCHEMA),
        quarantine.cast(CHANGES_QUARANTINE_SCHEMA),
        bronze_rows,
        valid_rows - kept,
        buyers,
        invariants,
    )


def affected_dates(bronze_dates: list[str], today: dt.date, max_days: int = DIMENSION_LOOKBACK_DAYS) -> list[str]:
    """Decision dates a batch of changes can alter: from its earliest change date through today (a
    change holds until the next one), at most `max_days` of them (the look-back setting), so that a very
    late change triggers a bounded rebuild."""
    if not bronze_dates:
        return []
    first = max(dt.date.fromisoformat(min(bronze_dates)), today - dt.timedelta(days=max_days - 1))
    last = max(today, dt.date.fromisoformat(max(bronze_dates)))
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "fraud_buyer_scd2",
            deps=["bronze_fraud_buyer_changes"],
            group_name="fraud_dimensions",
            kinds={"deltalake", "duckdb"},
            description=(
                "Buyer risk history (SCD type 2): credit rating, total cost, risk score, risk level and "
                "approval status, one row per version with valid_from (inclusive) and valid_to (exclusive, "
                "NULL while current); exactly one current row per buyer, no overlapping windows, versions "
                "ordered by when the change happened even if it arrived late."
            ),
        ),
        dg.AssetSpec(
            "fraud_buyer_scd1",
            deps=["bronze_fraud_buyer_changes"],
            group_name="fraud_dimensions",
            kinds={"deltalake", "duckdb"},
            description=(
                "Buyer contact data (SCD type 1): name, email, contact person and address, overwritten by "
                "the latest change and stored only as keyed pseudonyms (HMAC), safe for analysts."
            ),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "scd2_one_current_row_check",
            asset="fraud_buyer_scd2",
            blocking=True,
            description="Every buyer has exactly one current version.",
        ),
        dg.AssetCheckSpec(
            "scd2_no_overlap_check",
            asset="fraud_buyer_scd2",
            blocking=True,
            description="Each version ends exactly where the next begins: no overlaps, no gaps.",
        ),
        dg.AssetCheckSpec(
            "every_buyer_kept_check",
            asset="fraud_buyer_scd2",
            blocking=True,
            description="Every buyer with a valid change is in both dimensions.",
        ),
    ],
)
def fraud_buyer_dimensions(context: dg.AssetExecutionContext, lake: LakeResource, pseudonymizer: PseudonymizerResource):
    """Rebuild both buyer dimensions (and the change quarantine) from bronze."""
    build = write_dimensions(lake, pseudonymizer)
    bronze = context.instance.get_latest_materialization_event(dg.AssetKey("bronze_fraud_buyer_changes"))
    entry = (
        bronze.asset_materialization.metadata.get(TOUCHED_DATES) if bronze and bronze.asset_materialization else None
    )
    dates = affected_dates(list(entry.value) if entry else [], dt.datetime.now(dt.UTC).date())  # type: ignore[union-attr]
    metadata = dimension_metadata(build)
    # Read by fraud_dimension_dates_sensor: the decision dates these changes may alter.
    yield dg.MaterializeResult(
        asset_key="fraud_buyer_scd2",
        metadata=metadata["fraud_buyer_scd2"] | {TOUCHED_DATES: dg.MetadataValue.json(dates)},
    )
    yield dg.MaterializeResult(asset_key="fraud_buyer_scd1", metadata=metadata["fraud_buyer_scd1"])
    for name, passed, check_metadata in dimension_checks(build):
        yield dg.AssetCheckResult(check_name=name, asset_key="fraud_buyer_scd2", passed=passed, metadata=check_metadata)


def write_dimensions(lake: LakeResource, pseudonymizer: PseudonymizerResource) -> DimensionBuild:
    """Both buyer dimensions and the change quarantine rebuilt from every bronze change, each replaced whole."""
    build = build_dimensions(lake, pseudonymizer)
    # SCD1 before SCD2: a decision rebuild that reads the new SCD2 version finds the SCD1 of the same change.
    for table, rows in ((QUARANTINE_CHANGES, build.quarantine), (SCD1, build.scd1), (SCD2, build.scd2)):
        replace_table(lake, table, rows)
    return build


def dimension_metadata(build: DimensionBuild) -> dict[str, dict]:
    """The materialization metadata of each dimension."""
    return {
        "fraud_buyer_scd2": {
            "dagster/row_count": build.scd2.num_rows,
            "buyers": build.scd1.num_rows,
            "quarantined_changes": build.quarantine.num_rows,
            "duplicate_changes": build.duplicates,
        },
        "fraud_buyer_scd1": {"dagster/row_count": build.scd1.num_rows},
    }


def dimension_checks(build: DimensionBuild) -> list[tuple[str, bool, dict]]:
    """The SCD2 dimension's checks (name, passed, metadata), as declared on fraud_buyer_dimensions."""
    scd2_buyers = len(set(build.scd2["buyer_id"].to_pylist()))
    return [
        ("scd2_one_current_row_check", build.invariants["keys_without_exactly_one_current"] == 0, build.invariants),
        ("scd2_no_overlap_check", build.invariants["overlapping_or_gapped"] == 0, build.invariants),
        (
            "every_buyer_kept_check",
            scd2_buyers == build.scd1.num_rows == build.buyers_with_changes,
            {
                "buyers_with_changes": build.buyers_with_changes,
                "scd2_buyers": scd2_buyers,
                "scd1_buyers": build.scd1.num_rows,
                "bronze_rows": build.bronze_rows,
                "duplicates": build.duplicates,
                "quarantined": build.quarantine.num_rows,
            },
        ),
    ]
