"""Staging: each commerce entity typed to the source contract (assets/warehouse/contracts.py), validated
with Pandera models built from that contract, deduplicated to the latest version of each business key per
processing date, and with personal data pseudonymized. A row that breaks the contract is quarantined
with the contract's words in its reason and its values as received. From here on, no layer holds a
name, email, phone number or street address. A run over a range of dates stages them all at once."""

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from assets.pandera_checks import check_violation_sql, schema_check_result, table_schema
from assets.partition_checks import per_partition
from assets.quality import (
    NOTHING_LOST_CHECK,
    QUARANTINE_RATE_CHECK,
    nothing_lost,
    quality_check_specs,
    quarantine_rate,
)
from assets.warehouse.contracts import DUCKDB_TYPES, ENTITIES, TYPE_WORDS, Entity
from assets.warehouse.names import (
    SOURCE_TIMEZONE,
    quarantine_table,
    raw_table,
    staging_table,
    warehouse_daily_partitions,
)
from resources import LakeResource, PseudonymizerResource
from resources.privacy import masked_rows
from resources.warehouse import engine

_TS = {"dtype_kwargs": {"unit": "us", "tz": "UTC"}}
_HASH = r"^[0-9a-f]{64}$"
_NO_CHECKS: list = []
_PANDERA_TYPES = {"int": int, "decimal": float, "text": str, "timestamp": pd.DatetimeTZDtype}


class _Lineage(pa.DataFrameModel):
    source: Series[str] = pa.Field(isin=["postgres", "landing"])
    processing_date: Series[str] = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2}$")


def contract_model(entity: Entity) -> type[pa.DataFrameModel]:
    """The Pandera model of the entity's staging table, from the contract: types, nullability and rules;
    personal columns as keyed pseudonyms (`<column>_hash`); one version per key and processing date."""
    annotations: dict[str, object] = {}
    fields: dict[str, object] = {}
    for name, column in entity.columns.items():
        if name in entity.pii:
            annotations[f"{name}_hash"] = Series[str]
            fields[f"{name}_hash"] = pa.Field(str_matches=_HASH, nullable=not column.required)
            continue
        kind = pd.Int64Dtype if column.type == "int" and not column.required else _PANDERA_TYPES[column.type]
        annotations[name] = Series[kind]
        fields[name] = pa.Field(
            nullable=not column.required, **column.rule, **(_TS if column.type == "timestamp" else {})
        )
    config = type("Config", (), {"unique": [entity.key, "processing_date"]})
    title = "".join(part.capitalize() for part in entity.name.split("_"))
    return type(f"Stg{title}", (_Lineage,), {"__annotations__": annotations, **fields, "Config": config})


MODELS: dict[str, type[pa.DataFrameModel]] = {name: contract_model(entity) for name, entity in ENTITIES.items()}


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
        f"{c}_hash" if c in entity.pii else c: ARROW_TYPES["text" if c in entity.pii else col.type]
        for c, col in entity.columns.items()
    }
    types |= {"source": pyarrow.string(), "processing_date": pyarrow.string()}
    return pyarrow.schema([*types.items(), ("event_date", pyarrow.date32())])


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _typed_select(entity: Entity, received: list[str], source: str) -> str:
    """SELECT of a raw table's rows mapped onto the contract: drifted names mapped, types cast, missing
    columns null, unknown columns left behind (they stay in raw). A contract column held under several
    names (the table keeps the name a source used before it drifted) takes the first value present.
    `_invalid` says, in the contract's words, each column whose value breaks the contract (the value
    is quoted unless it is personal); `_payload` keeps the row as received."""
    by_contract: dict[str, list[str]] = {}
    for name in received:
        by_contract.setdefault(entity.aliases.get(name, name), []).append(name)
    checks = {name: column.checks for name, column in MODELS[entity.name].to_schema().columns.items()}
    exprs, invalid = [], []
    for column, spec in entity.columns.items():
        target = DUCKDB_TYPES[spec.type]
        names = sorted(by_contract.get(column, []), key=lambda name: name != column)
        if not names:
            exprs.append(f"NULL::{target} AS {column}")
            if spec.required:
                invalid.append(f"{_quote(f'{column} ({spec.words}): missing')}")
            continue
        text = "NULLIF(TRIM(CAST(coalesce(" + ", ".join(f'"{n}"' for n in names) + ") AS VARCHAR)), '')"
        cast = f"TRY_CAST({text} AS {target})"
        exprs.append(f"{cast} AS {column}")
        # A value is quoted only where it broke a rule on a value of the right type (a vocabulary, a range):
        # free text in a wrong type may hold anything, personal data included.
        got = "'a value outside the rule'" if column in entity.personal else "'''' || " + text + " || ''''"
        rules = [f"{cast} IS NOT NULL AND ({check_violation_sql(cast, c)})" for c in checks.get(column, _NO_CHECKS)]
        conditions = (
            [f"WHEN {text} IS NULL THEN {_quote(f'{column} ({spec.words}): missing')}"] if spec.required else []
        )
        not_typed = _quote(f"{column} ({spec.words}): got a value that is not {TYPE_WORDS[spec.type]}")
        conditions.append(f"WHEN {cast} IS NULL AND {text} IS NOT NULL THEN {not_typed}")
        if rules:
            conditions.append(f"WHEN {' OR '.join(rules)} THEN {_quote(f'{column} ({spec.words}): got ')} || {got}")
        invalid.append(f"CASE {' '.join(conditions)} END")
    reasons = f"concat_ws('; ', {', '.join(invalid)})" if invalid else "''"
    payload = "json_object(" + ", ".join(f'{_quote(n)}, "{n}"' for n in received) + ")"
    return (
        f"SELECT {', '.join(exprs)}, '{source}' AS source, strftime(event_date, '%Y-%m-%d') AS processing_date, "
        f"{reasons} AS _invalid, {payload} AS _payload"
    )


def stage_dates(lake: LakeResource, entity: Entity, days: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """For the processing dates `days` at once: the latest valid version per key and date, the quarantined
    rows with their reasons, and per date (versions received, valid versions superseded by a later one of
    the same key). Both sources are merged; on equal update time PostgreSQL wins over a landing file."""
    selects = []
    with engine() as conn:
        # A timestamp without an offset is local time of the source (the contract).
        conn.execute(f"SET TimeZone = {_quote(SOURCE_TIMEZONE)}")
        for source in ("postgres", "landing"):
            name = raw_table(source, entity.name)
            rows = lake.scan(name, days) if lake.table(name) is not None else None
            if rows is not None and rows.num_rows:
                conn.register(f"raw_{source}", rows)
                received = [c for c in rows.column_names if c != "event_date"]
                selects.append(_typed_select(entity, received, source) + f" FROM raw_{source}")
        if not selects:
            empty = ", ".join(f"NULL::{DUCKDB_TYPES[col.type]} AS {c}" for c, col in entity.columns.items())
            selects.append(
                f"SELECT {empty}, '' AS source, '' AS processing_date, '' AS _invalid, '' AS _payload WHERE false"
            )
        conn.execute(f"CREATE TABLE typed AS {' UNION ALL '.join(selects)}")
        conn.execute("SET TimeZone = 'UTC'")
        latest = f"PARTITION BY {entity.key}, processing_date ORDER BY updated_at DESC, source = 'postgres' DESC"
        counts = conn.execute(
            f"SELECT processing_date, count(*), count(*) FILTER (WHERE _invalid = '' AND _rank > 1) FROM "
            f"(SELECT processing_date, _invalid, CASE WHEN _invalid = '' THEN row_number() OVER ("
            f"PARTITION BY _invalid = '', {entity.key}, processing_date "
            f"ORDER BY updated_at DESC, source = 'postgres' DESC) END AS _rank FROM typed) GROUP BY 1"
        ).fetchall()
        staged = conn.execute(
            f"SELECT * EXCLUDE (_invalid, _payload) FROM typed WHERE _invalid = '' "
            f"QUALIFY row_number() OVER ({latest}) = 1 ORDER BY processing_date, {entity.key}"
        ).df()
        quarantine = conn.execute(
            "SELECT source, processing_date, 'breaks the contract: ' || _invalid AS reason, "
            "_payload::VARCHAR AS payload FROM typed WHERE _invalid <> '' ORDER BY processing_date, payload"
        ).df()
    for column, spec in entity.columns.items():
        if spec.type == "decimal":
            staged[column] = staged[column].astype("float64")
    accounting = {day: (received, superseded) for day, received, superseded in counts}
    return staged, quarantine, accounting


def _checked_frame(table: pyarrow.Table, entity: Entity) -> pd.DataFrame:
    """`table` as Pandera sees it: optional integers as nullable integers (pandas would make them floats)."""
    frame = table.to_pandas()
    for column, spec in entity.columns.items():
        if spec.type == "int" and not spec.required:
            frame[column] = frame[column].astype("Int64")
    return frame


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
            "processing date, from PostgreSQL and the landing files, typed to the source contract; rows breaking "
            "the contract quarantined with its words"
            + (f"; {', '.join(entity.pii)} only as keyed pseudonyms (`*_hash`)." if entity.pii else ".")
        ),
        metadata={"dagster/column_schema": table_schema(model)},
        check_specs=[
            dg.AssetCheckSpec(
                f"{name}_schema_check",
                asset=name,
                blocking=True,
                description=f"The partition satisfies the Pandera model {model.__name__}, built from the contract.",
                partitions_def=warehouse_daily_partitions,
            ),
            dg.AssetCheckSpec(
                f"{name}_quarantine_check",
                asset=name,
                description="No row broke the source contract (a required value missing, a wrong type, a rule).",
                partitions_def=warehouse_daily_partitions,
            ),
            *quality_check_specs(name, warehouse_daily_partitions),
        ],
    )
    def staging_asset(context: dg.AssetExecutionContext, lake: LakeResource, pseudonymizer: PseudonymizerResource):
        days = list(context.partition_keys)
        staged, quarantine, accounting = stage_dates(lake, entity, days)
        for column in entity.pii:
            staged[f"{column}_hash"] = pseudonymizer.pseudonyms(staged.pop(column))
        # One commit per table for the whole range: every date of it holds exactly its rows afterwards.
        rows = _arrow(
            staged.assign(event_date=pd.to_datetime(staged["processing_date"]).dt.date), staged_schema(entity)
        )
        lake.replace_dates(staging_table(entity.name), rows, days)
        quarantined = _arrow(
            quarantine.assign(event_date=pd.to_datetime(quarantine["processing_date"]).dt.date), QUARANTINE_SCHEMA
        )
        lake.replace_dates(quarantine_table(entity.name), quarantined, days)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows.num_rows,
                "versions_received": sum(received for received, _ in accounting.values()),
                "quarantined": quarantined.num_rows,
                "table": staging_table(entity.name),
            }
        )
        # One result per processing date, also in a range backfill. Pandera validates what was written, with the
        # types it was written with: the whole range at once, date by date only to tell which dates failed.
        schema_check = dg.AssetCheckKey(dg.AssetKey(name), f"{name}_schema_check")
        quarantine_check = dg.AssetCheckKey(dg.AssetKey(name), f"{name}_quarantine_check")
        written = _checked_frame(rows, entity)
        by_day = dict(tuple(written.groupby("processing_date"))) if len(written) else {}
        whole = schema_check_result(
            model, written, asset_key=name, check_name=schema_check.name, personal=entity.personal
        )

        def schema_result(day: str) -> dg.AssetCheckResult:
            frame = by_day.get(day, written.iloc[0:0])
            if whole.passed:
                return dg.AssetCheckResult(
                    asset_key=name,
                    check_name=schema_check.name,
                    passed=True,
                    metadata={"failures": 0, "rows": len(frame)},
                )
            return schema_check_result(
                model, frame, asset_key=name, check_name=schema_check.name, personal=entity.personal
            )

        yield from per_partition(context, {d: schema_result(d) for d in days}, schema_check)
        held = dict(tuple(quarantine.groupby("processing_date"))) if len(quarantine) else {}
        yield from per_partition(
            context,
            {
                d: dg.AssetCheckResult(
                    check_name=quarantine_check.name,
                    passed=d not in held,
                    metadata={
                        "quarantined": len(held.get(d, ())),
                        "sample": dg.MetadataValue.json(
                            masked_rows(held[d].head(20), entity.personal) if d in held else []
                        ),
                    },
                )
                for d in days
            },
            quarantine_check,
        )
        # The platform's two promises, as in every domain: each version received is staged, superseded by a
        # later version of its key, or quarantined (counted from the tables as written); and the rate.
        staged_rows = lake.count_by_date(staging_table(entity.name), days)
        quarantined_rows = lake.count_by_date(quarantine_table(entity.name), days)
        lost, rate = {}, {}
        for day in days:
            count, superseded = accounting.get(day, (0, 0))
            passed, metadata = nothing_lost(
                count,
                clean=staged_rows.get(day, 0),
                quarantined=quarantined_rows.get(day, 0),
                duplicates=superseded,
            )
            lost[day] = dg.AssetCheckResult(check_name=NOTHING_LOST_CHECK, passed=passed, metadata=metadata)
            passed, metadata = quarantine_rate(count, quarantined_rows.get(day, 0))
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
