"""Raw: every commerce entity as received, from PostgreSQL (incremental by update time) and from the
landing files, in one Delta table per source and entity, partitioned by processing date. Raw keeps
the source's columns exactly, drift included, and every value as the source exported it (text: a
column the source retypes stays readable in the same table), so every later layer can be rebuilt
from it. The source's column types are checked against the contract as each date is loaded."""

import datetime as dt
import io

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv

from assets.partition_checks import per_partition
from assets.warehouse.contracts import ENTITIES, contract_markdown, type_family
from assets.warehouse.names import raw_table, warehouse_daily_partitions
from resources import LakeResource, LandingResource, PostgresResource
from resources.lake import write_table

_DATE = "processing_date__"  # a name no source column has
PG_ARROW = {
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "text": pa.string(),
    "character varying": pa.string(),
    "numeric": pa.float64(),
    "double precision": pa.float64(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
    "date": pa.date32(),
    "boolean": pa.bool_(),
}


def drift(entity_name: str, table: pa.Table, typed_source: bool = True) -> dict[str, list[str]]:
    """How the received columns differ from the contract: added, removed, retyped (by type family),
    and which drifted names staging maps back to the contract."""
    entity = ENTITIES[entity_name]
    with duckdb.connect() as conn:
        conn.register("received_table", table)
        received = {r[0]: r[1] for r in conn.execute("DESCRIBE received_table").fetchall()}
    known = {entity.aliases.get(c, c): c for c in received}
    return {
        "added": sorted(c for c in received if entity.aliases.get(c, c) not in entity.columns),
        "removed": sorted(c for c in entity.columns if c not in known),
        "retyped": sorted(
            f"{known[c]}: {received[known[c]]} (contract {f})"
            for c, f in entity.types.items()
            # Landing files are text by nature: their types are checked when staging casts them.
            if c in known and typed_source and type_family(received[known[c]]) != f
        ),
        "mapped": sorted(f"{c} -> {entity.aliases[c]}" for c in received if c in entity.aliases),
    }


def extract_postgres(pg: PostgresResource, entity: str, start: str, end: str) -> tuple[pa.Table, pa.Schema]:
    """Rows of commerce.<entity> with start <= updated_at < end, every value as PostgreSQL exports it
    (text, NULL as null), its processing date (the UTC date of updated_at) in `event_date`, and the
    source's own column types. Adjacent windows neither overlap nor leave gaps, so extracting each date
    once (or again, or as part of a range) takes every change exactly once."""
    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'commerce' AND table_name = %s ORDER BY ordinal_position",
            (entity,),
        )
        columns = cur.fetchall()
        if not columns:
            raise RuntimeError(f"source table commerce.{entity} does not exist")
        buffer = io.BytesIO()
        query = cur.mogrify(
            f"SELECT *, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS {_DATE} FROM commerce.{entity} "
            f"WHERE updated_at >= %s AND updated_at < %s ORDER BY updated_at, {ENTITIES[entity].key}",
            (start, end),
        ).decode()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
    source_types = pa.schema([(name, PG_ARROW.get(kind, pa.string())) for name, kind in columns])
    text = pa.schema([(name, pa.string()) for name in [*source_types.names, _DATE]])
    if buffer.tell() <= len(",".join(text.names)) + 1:
        rows = text.empty_table()
    else:
        buffer.seek(0)
        # In PostgreSQL's CSV an unquoted empty field is NULL and "" an empty string.
        options = pcsv.ConvertOptions(column_types=text, strings_can_be_null=True, quoted_strings_can_be_null=False)
        rows = pcsv.read_csv(buffer, convert_options=options).select(text.names)
    dates = rows[_DATE].cast(pa.date32())
    return rows.drop_columns([_DATE]).append_column("event_date", dates), source_types


def read_landing(
    landing: LandingResource, entity: str, days: list[str]
) -> tuple[pa.Table | None, dict[str, pa.Schema]]:
    """The entity's landing files of the delivery dates `days`, every column as text (a CSV carries no
    types), each row with its delivery date in `event_date`; and per date the columns its files have.
    Files of one date may differ in their columns: the union is kept, absent values null."""
    wanted = set(days)
    files = [f for f in landing.landed(entity) if f.key.split("/")[1:2] and f.key.split("/")[1] in wanted]
    if not files:
        return None, {}
    # Every value as text, empty fields as null (as the PostgreSQL export gives them).
    options = pcsv.ConvertOptions(default_column_type=pa.string(), strings_can_be_null=True)
    tables, schemas = [], {}
    for landed in files:
        day = landed.key.split("/")[1]
        rows = pcsv.read_csv(io.BytesIO(landing.read(landed.key)), convert_options=options)
        rows = rows.append_column("event_date", pa.array([dt.date.fromisoformat(day)] * rows.num_rows, pa.date32()))
        tables.append(rows)
        known = schemas.get(day, pa.schema([]))
        schemas[day] = pa.unify_schemas([known, rows.schema.remove(rows.schema.get_field_index("event_date"))])
    return pa.concat_tables(tables, promote_options="default"), schemas


def write_raw(lake: LakeResource, name: str, rows: pa.Table | None, days: list[str]) -> None:
    """Make the dates `days` of raw table `name` hold exactly `rows` (each row's date in `event_date`;
    nothing when None), in one commit. Columns the source added join the table (earlier dates read them
    as null); columns it dropped are null on these dates."""
    if rows is None and lake.table(name) is None:
        return  # no delivery, and never one: the table stays absent
    data = rows if rows is not None else pa.table({"event_date": pa.array([], pa.date32())})
    replace = " OR ".join(f"event_date = '{day}'" for day in days)
    write_table(lake, name, data, replace_where=replace, partition_by=["event_date"])


def _raw_asset(source: str, entity: str) -> dg.AssetsDefinition:
    name = f"raw_{source}_{entity}"
    where = (
        f"table commerce.{entity} of the PostgreSQL source, extracted incrementally by updated_at"
        if source == "postgres"
        else f"landing files input/{entity}/<YYYY-MM-DD>/*.csv"
    )

    @dg.asset(
        name=name,
        group_name="commerce_raw",
        kinds={"postgres" if source == "postgres" else "csv", "deltalake"},
        partitions_def=warehouse_daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            f"Every {entity} row version as received from the {where}, one partition per processing date "
            f"(Delta table `{raw_table(source, entity)}`). Columns exactly as the source sent them, schema drift "
            "included, values as exported (text). The source contract it is checked against "
            "(timestamps without an offset are local times of `COMMERCE_SOURCE_TIMEZONE`):\n\n"
            + contract_markdown(ENTITIES[entity])
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "schema_drift_check",
                asset=name,
                description="The source columns match the contract (no column added, removed or retyped).",
                partitions_def=warehouse_daily_partitions,
            )
        ],
    )
    def raw_asset(
        context: dg.AssetExecutionContext, lake: LakeResource, postgres: PostgresResource, landing: LandingResource
    ):
        days = list(context.partition_keys)
        windows: dict[str, object] = {}
        if source == "postgres":
            window = context.partition_time_window
            table, source_types = extract_postgres(postgres, entity, window.start.isoformat(), window.end.isoformat())
            schemas: dict[str, pa.Schema] = dict.fromkeys(days, source_types)
            windows = {"start": window.start.isoformat(), "end": window.end.isoformat(), "rows": table.num_rows}
        else:
            table, schemas = read_landing(landing, entity, days)
        # A range is one commit: every date of it holds exactly its rows afterwards (one run or date by date alike).
        write_raw(lake, raw_table(source, entity), table, days)
        drifts = {}
        for day, schema in schemas.items():
            found = drift(entity, schema.empty_table(), typed_source=source == "postgres")
            if any(found[k] for k in ("added", "removed", "retyped")):
                drifts[day] = found
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": table.num_rows if table is not None else 0,
                "processing_dates": f"{days[0]} .. {days[-1]}" if len(days) > 1 else days[0],
                "table": raw_table(source, entity),
                **({"extraction_window": dg.MetadataValue.json(windows)} if windows else {}),
            }
        )
        # One result per processing date, also in a range backfill.
        yield from per_partition(
            context,
            {
                day: dg.AssetCheckResult(
                    check_name="schema_drift_check",
                    passed=day not in drifts,
                    metadata={"drift": dg.MetadataValue.json({day: drifts[day]} if day in drifts else {})},
                )
                for day in days
            },
        )

    return raw_asset


raw_assets = [_raw_asset(source, entity) for source in ("postgres", "landing") for entity in ENTITIES]
