"""Staging: each commerce entity typed to its contract, validated with Pandera, deduplicated to the
latest version of each business key per processing date, and with personal data pseudonymized.
From here on, no layer holds a name, email, phone number or street address."""

import datetime as dt

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from assets.pandera_checks import schema_check_result, table_schema
from assets.partition_checks import per_partition
from assets.quality import (
    NOTHING_LOST_CHECK,
    QUARANTINE_RATE_CHECK,
    nothing_lost,
    quality_check_specs,
    quarantine_rate,
)
from assets.warehouse.contracts import DUCKDB_TYPES, ENTITIES, Entity
from assets.warehouse.names import quarantine_table, raw_table, staging_table, warehouse_daily_partitions
from resources import LakeResource, PseudonymizerResource
from resources.privacy import masked_rows
from resources.warehouse import engine

_TS = {"dtype_kwargs": {"unit": "us", "tz": "UTC"}}
_HASH = {"str_matches": r"^[0-9a-f]{64}$", "nullable": True}


class _Lineage(pa.DataFrameModel):
    source: Series[str] = pa.Field(isin=["postgres", "landing"])
    processing_date: Series[str] = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2}$")


class StgShop(_Lineage):
    shop_id: Series[int] = pa.Field(gt=0)
    shop_name: Series[str] = pa.Field(nullable=True)
    city: Series[str]
    country: Series[str] = pa.Field(str_length={"min_value": 2, "max_value": 2})
    channel: Series[str] = pa.Field(nullable=True)
    updated_at: Series[pd.DatetimeTZDtype] = pa.Field(**_TS)

    class Config:
        unique = ["shop_id", "processing_date"]  # one version per key and date


class StgProduct(_Lineage):
    product_id: Series[int] = pa.Field(gt=0)
    product_name: Series[str] = pa.Field(nullable=True)
    category: Series[str] = pa.Field(nullable=True)
    price: Series[float] = pa.Field(ge=0)
    updated_at: Series[pd.DatetimeTZDtype] = pa.Field(**_TS)

    class Config:
        unique = ["product_id", "processing_date"]  # one version per key and date


class StgCustomer(_Lineage):
    customer_id: Series[int] = pa.Field(gt=0)
    first_name_hash: Series[str] = pa.Field(**_HASH)
    last_name_hash: Series[str] = pa.Field(**_HASH)
    email_hash: Series[str] = pa.Field(**_HASH)
    phone_hash: Series[str] = pa.Field(**_HASH)
    street_hash: Series[str] = pa.Field(**_HASH)
    postcode: Series[str] = pa.Field(nullable=True)
    city: Series[str]
    country: Series[str] = pa.Field(str_length={"min_value": 2, "max_value": 2})
    created_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, **_TS)
    updated_at: Series[pd.DatetimeTZDtype] = pa.Field(**_TS)

    class Config:
        unique = ["customer_id", "processing_date"]  # one version per key and date


class StgOrder(_Lineage):
    order_id: Series[int] = pa.Field(gt=0)
    customer_id: Series[int] = pa.Field(gt=0)
    shop_id: Series[int] = pa.Field(gt=0)
    status: Series[str] = pa.Field(isin=["placed", "shipped", "delivered", "cancelled"], nullable=True)
    purchased_at: Series[pd.DatetimeTZDtype] = pa.Field(**_TS)
    shipped_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, **_TS)
    delivered_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, **_TS)
    cancelled_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, **_TS)
    updated_at: Series[pd.DatetimeTZDtype] = pa.Field(**_TS)

    class Config:
        unique = ["order_id", "processing_date"]  # one version per key and date


class StgOrderPosition(_Lineage):
    position_id: Series[int] = pa.Field(gt=0)
    order_id: Series[int] = pa.Field(gt=0)
    product_id: Series[int] = pa.Field(gt=0)
    quantity: Series[int] = pa.Field(gt=0)
    price: Series[float] = pa.Field(ge=0)
    updated_at: Series[pd.DatetimeTZDtype] = pa.Field(**_TS)

    class Config:
        unique = ["position_id", "processing_date"]  # one version per key and date


MODELS: dict[str, type[pa.DataFrameModel]] = {
    "shops": StgShop,
    "products": StgProduct,
    "customers": StgCustomer,
    "orders": StgOrder,
    "order_positions": StgOrderPosition,
}


# Storage types of what staging writes, from the contract (never from the data: an empty date writes
# the same types as a full one).
ARROW_TYPES = {
    "int": pyarrow.int64(),
    "decimal": pyarrow.float64(),
    "text": pyarrow.string(),
    "timestamp": pyarrow.timestamp("us", tz="UTC"),
}
QUARANTINE_SCHEMA = pyarrow.schema(
    [
        *((c, pyarrow.string()) for c in ("source", "processing_date", "reason", "payload")),
        ("event_date", pyarrow.date32()),
    ]
)


def staged_schema(entity: Entity) -> pyarrow.Schema:
    """The staging table's columns and types: the contract's, personal data as text pseudonyms, lineage,
    and the lake's date partition (the processing date)."""
    types = {
        f"{c}_hash" if c in entity.pii else c: ARROW_TYPES["text" if c in entity.pii else f]
        for c, f in entity.columns.items()
    }
    types |= {"source": pyarrow.string(), "processing_date": pyarrow.string()}
    return pyarrow.schema([*types.items(), ("event_date", pyarrow.date32())])


def _typed_select(entity: Entity, received: list[str], source: str, day: str) -> str:
    """SELECT of one date of a raw table mapped onto the contract: drifted names mapped, types cast,
    missing columns null, unknown columns left behind (they stay in raw). A contract column held under
    several names (the table keeps the name a source used before it drifted) takes the first value
    present. `_invalid` names each required column that is empty or could not be cast."""
    by_contract: dict[str, list[str]] = {}
    for name in received:
        by_contract.setdefault(entity.aliases.get(name, name), []).append(name)
    exprs, invalid = [], []
    for column, family in entity.columns.items():
        target = DUCKDB_TYPES[family]
        names = sorted(by_contract.get(column, []), key=lambda name: name != column)
        raw = "coalesce(" + ", ".join(f'"{n}"' for n in names) + ")" if names else "NULL"
        cast = f"TRY_CAST(NULLIF(TRIM(CAST({raw} AS VARCHAR)), '') AS {target})" if names else f"NULL::{target}"
        exprs.append(f"{cast} AS {column}")
        if column in entity.required:
            invalid.append(f"CASE WHEN {cast} IS NULL THEN '{column}' END")
    reasons = f"concat_ws(',', {', '.join(invalid)})"
    return f"SELECT {', '.join(exprs)}, '{source}' AS source, '{day}' AS processing_date, {reasons} AS _invalid"


def stage_partition(lake: LakeResource, entity: Entity, day: str) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """(latest valid version per key, quarantined rows with reason, versions received, valid versions
    superseded by a later one of the same key) for one date. Both sources are merged; on equal update
    time PostgreSQL wins over a landing file."""
    selects = []
    with engine() as conn:
        for source in ("postgres", "landing"):
            name = raw_table(source, entity.name)
            rows = lake.scan(name, [day]) if lake.table(name) is not None else None
            if rows is not None and rows.num_rows:
                rows = rows.drop_columns(["event_date"])
                conn.register(f"raw_{source}", rows)
                selects.append(_typed_select(entity, rows.column_names, source, day) + f" FROM raw_{source}")
        if not selects:
            empty = ", ".join(f"NULL::{DUCKDB_TYPES[f]} AS {c}" for c, f in entity.columns.items())
            selects.append(f"SELECT {empty}, '' AS source, '' AS processing_date, '' AS _invalid WHERE false")
        conn.execute(f"CREATE TABLE typed AS {' UNION ALL '.join(selects)}")
        received = (conn.execute("SELECT count(*) FROM typed").fetchone() or (0,))[0]
        order = f"PARTITION BY {entity.key} ORDER BY updated_at DESC, source = 'postgres' DESC"
        older = f"SELECT 1 FROM typed WHERE _invalid = '' QUALIFY row_number() OVER ({order}) > 1"
        superseded = (conn.execute(f"SELECT count(*) FROM ({older})").fetchone() or (0,))[0]
        staged = conn.execute(
            f"SELECT * EXCLUDE (_invalid) FROM typed WHERE _invalid = '' "
            f"QUALIFY row_number() OVER (PARTITION BY {entity.key} "
            f"ORDER BY updated_at DESC, source = 'postgres' DESC) = 1 ORDER BY {entity.key}"
        ).df()
        quarantine = conn.execute(
            "SELECT source, processing_date, 'missing_or_invalid:' || _invalid AS reason, "
            "to_json(typed) AS payload FROM typed WHERE _invalid <> ''"
        ).df()
    for column, family in entity.columns.items():
        if family == "decimal":
            staged[column] = staged[column].astype("float64")
    return staged, quarantine, received, superseded


def _staging_asset(entity: Entity) -> dg.AssetsDefinition:
    name = f"stg_{entity.name}"
    model = MODELS[entity.name]

    @dg.asset(
        name=name,
        group_name="commerce_staging",
        kinds={"deltalake", "pandera"},
        partitions_def=warehouse_daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[f"raw_postgres_{entity.name}", f"raw_landing_{entity.name}"],
        description=(
            f"{entity.name.replace('_', ' ').capitalize()}: the latest version of each {entity.key} changed on the "
            "processing date, from PostgreSQL and the landing files, typed to the contract"
            + (f"; {', '.join(entity.pii)} only as keyed pseudonyms (`*_hash`)." if entity.pii else ".")
        ),
        metadata={"dagster/column_schema": table_schema(model)},
        check_specs=[
            dg.AssetCheckSpec(
                f"{name}_schema_check",
                asset=name,
                blocking=True,
                description=f"The partition satisfies the Pandera model {model.__name__}.",
                partitions_def=warehouse_daily_partitions,
            ),
            dg.AssetCheckSpec(
                f"{name}_quarantine_check",
                asset=name,
                description="No row had a required value missing or of the wrong type.",
                partitions_def=warehouse_daily_partitions,
            ),
            *quality_check_specs(name, warehouse_daily_partitions),
        ],
    )
    def staging_asset(context: dg.AssetExecutionContext, lake: LakeResource, pseudonymizer: PseudonymizerResource):
        schema = staged_schema(entity)
        written, quarantined, received = [], [], 0
        accounting: dict[str, tuple[int, int]] = {}  # date -> (versions received, superseded)
        for day in context.partition_keys:
            staged, quarantine, count, superseded = stage_partition(lake, entity, day)
            for column in entity.pii:
                staged[f"{column}_hash"] = pseudonymizer.pseudonyms(staged.pop(column))
            date = dt.date.fromisoformat(day)
            rows = _arrow(staged.assign(event_date=date), schema)
            lake.replace_dates(staging_table(entity.name), rows, [day])
            quarantine = _arrow(quarantine.assign(event_date=date), QUARANTINE_SCHEMA)
            lake.replace_dates(quarantine_table(entity.name), quarantine, [day])
            written.append(rows)
            quarantined.append(quarantine)
            received += count
            accounting[day] = (count, superseded)
        # Pandera checks what was written, with the types it was written with.
        staged = pyarrow.concat_tables(written).to_pandas()
        quarantine = pyarrow.concat_tables(quarantined).to_pandas()
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(staged),
                "versions_received": received,
                "quarantined": len(quarantine),
                "table": staging_table(entity.name),
            }
        )
        # One result per processing date, also in a range backfill.
        days = context.partition_keys
        schema_check = dg.AssetCheckKey(dg.AssetKey(name), f"{name}_schema_check")
        quarantine_check = dg.AssetCheckKey(dg.AssetKey(name), f"{name}_quarantine_check")
        yield from per_partition(
            context,
            {
                d: schema_check_result(
                    model, w.to_pandas(), asset_key=name, check_name=schema_check.name, personal=entity.personal
                )
                for d, w in zip(days, written, strict=True)
            },
            schema_check,
        )
        yield from per_partition(
            context,
            {
                d: dg.AssetCheckResult(
                    check_name=quarantine_check.name,
                    passed=q.num_rows == 0,
                    metadata={
                        "quarantined": q.num_rows,
                        "sample": dg.MetadataValue.json(masked_rows(q.to_pandas(), entity.personal)),
                    },
                )
                for d, q in zip(days, quarantined, strict=True)
            },
            quarantine_check,
        )
        # The platform's two promises, as in every domain: each version received is staged, superseded by a
        # later version of its key, or quarantined (counted from the tables as written); and the rate.
        lost, rate = {}, {}
        for day, (count, superseded) in accounting.items():
            staged_rows = lake.count_by_date(staging_table(entity.name), [day]).get(day, 0)
            quarantined_rows = lake.count_by_date(quarantine_table(entity.name), [day]).get(day, 0)
            passed, metadata = nothing_lost(
                count, clean=staged_rows, quarantined=quarantined_rows, duplicates=superseded
            )
            lost[day] = dg.AssetCheckResult(check_name=NOTHING_LOST_CHECK, passed=passed, metadata=metadata)
            passed, metadata = quarantine_rate(count, quarantined_rows)
            rate[day] = dg.AssetCheckResult(
                check_name=QUARANTINE_RATE_CHECK, passed=passed, metadata=metadata, severity=dg.AssetCheckSeverity.WARN
            )
        yield from per_partition(context, lost, dg.AssetCheckKey(dg.AssetKey(name), NOTHING_LOST_CHECK))
        yield from per_partition(context, rate, dg.AssetCheckKey(dg.AssetKey(name), QUARANTINE_RATE_CHECK))

    return staging_asset


def _arrow(frame: pd.DataFrame, schema: pyarrow.Schema) -> pyarrow.Table:
    """`frame` with the storage types of `schema` (an empty frame's columns carry no usable type)."""
    return pyarrow.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


staging_assets = [_staging_asset(entity) for entity in ENTITIES.values()]
