"""Raw: every commerce entity as received, from PostgreSQL (incremental by update time) and from the
landing files, in one Delta table per source and entity, partitioned by processing date. Raw keeps
the source's columns exactly, drift included, and every value as the source exported it (text: a
column the source retypes stays readable in the same table), so every later layer can be rebuilt
from it. The source's column types are checked against the contract as each date is loaded."""

import datetime as dt
import io
import tempfile
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv

from assets.partition_checks import per_partition
from assets.warehouse.contracts import ENTITIES, type_family
from assets.warehouse.names import raw_table, warehouse_daily_partitions
from resources import LakeResource, LandingResource, PostgresResource
from resources.lake import write_table
from resources.warehouse import engine

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
            for c, f in entity.columns.items()
            # Landing files are text by nature: their types are checked when staging casts them.
            if c in known and typed_source and type_family(received[known[c]]) != f
        ),
        "mapped": sorted(f"{c} -> {entity.aliases[c]}" for c in received if c in entity.aliases),
    }


def extract_postgres(pg: PostgresResource, entity: str, start: str, end: str) -> tuple[pa.Table, pa.Schema]:
    """Rows of commerce.<entity> with start <= updated_at < end, every value as PostgreSQL exports it
    (text, NULL as null), and the source's own column types. Adjacent windows neither overlap nor leave
    gaps, so extracting each date once (or again) takes every change exactly once."""
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
            f"SELECT * FROM commerce.{entity} WHERE updated_at >= %s AND updated_at < %s "
            f"ORDER BY updated_at, {ENTITIES[entity].key}",
            (start, end),
        ).decode()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
    source_types = pa.schema([(name, PG_ARROW.get(kind, pa.string())) for name, kind in columns])
    text = pa.schema([(name, pa.string()) for name in source_types.names])
    if buffer.tell() <= len(",".join(text.names)) + 1:
        return text.empty_table(), source_types
    buffer.seek(0)
    # In PostgreSQL's CSV an unquoted empty field is NULL and "" an empty string.
    options = pcsv.ConvertOptions(column_types=text, strings_can_be_null=True, quoted_strings_can_be_null=False)
    return pcsv.read_csv(buffer, convert_options=options).select(text.names), source_types


def read_landing(landing: LandingResource, entity: str, day: str) -> pa.Table | None:
    """The entity's landing files of `day`, every column as text (a CSV carries no types)."""
    files = landing.landed(f"{entity}/{day}")
    if not files:
        return None
    # Copied to local files first: the landing folder may be on S3, and DuckDB reads S3 only with httpfs.
    with tempfile.TemporaryDirectory(prefix="landing-") as copies, engine() as conn:
        paths = []
        for number, landed in enumerate(files):
            paths.append(Path(copies) / f"{number}-{landed.name}")
            paths[-1].write_bytes(landing.read(landed.key))
        return (
            conn.execute(
                "SELECT * FROM read_csv(?, all_varchar = true, header = true, union_by_name = true)",
                [[str(p) for p in paths]],
            )
            .arrow()
            .read_all()
        )


def write_raw(lake: LakeResource, name: str, rows: pa.Table | None, day: str) -> None:
    """Make date `day` of raw table `name` hold exactly `rows` (nothing when None), in one commit. Columns
    the source added join the table (earlier dates read them as null); columns it dropped are null on
    this date."""
    if rows is None and lake.table(name) is None:
        return  # no delivery, and never one: the table stays absent
    data = rows if rows is not None else pa.table({})  # no delivery: the date is emptied
    data = data.append_column("event_date", pa.array([dt.date.fromisoformat(day)] * data.num_rows, pa.date32()))
    write_table(lake, name, data, replace_where=f"event_date = '{day}'", partition_by=["event_date"])


def _raw_asset(source: str, entity: str) -> dg.AssetsDefinition:
    name = f"raw_{source}_{entity}"
    where = (
        f"table commerce.{entity} of the PostgreSQL source, extracted incrementally by updated_at"
        if source == "postgres"
        else f"landing files input/{entity}/<YYYY-MM-DD>/"
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
            "included, values as exported (text)."
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
        total, drifts, windows = 0, {}, {}
        for day in context.partition_keys:
            if source == "postgres":
                start_dt = warehouse_daily_partitions.time_window_for_partition_key(day).start
                end = (start_dt + timedelta(days=1)).isoformat()
                table, source_types = extract_postgres(postgres, entity, start_dt.isoformat(), end)
                windows[day] = {"rows": table.num_rows, "window_end": end}
            else:
                table = read_landing(landing, entity, day)
                source_types = table.schema if table is not None else None
            write_raw(lake, raw_table(source, entity), table, day)
            if table is None or source_types is None:  # no delivery for that date: the partition is empty
                continue
            total += table.num_rows
            found = drift(entity, source_types.empty_table(), typed_source=source == "postgres")
            if any(found[k] for k in ("added", "removed", "retyped")):
                drifts[day] = found
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": total,
                "processing_dates": ", ".join(context.partition_keys),
                "table": raw_table(source, entity),
                **({"extraction_windows": dg.MetadataValue.json(windows)} if windows else {}),
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
                for day in context.partition_keys
            },
        )

    return raw_asset


raw_assets = [_raw_asset(source, entity) for source in ("postgres", "landing") for entity in ENTITIES]
