"""Raw: every commerce entity as received, from PostgreSQL (incremental by update time) and from the
landing files, one partition per processing date. Raw keeps the source's columns and types exactly,
drift included, so every later layer can be rebuilt from it."""

import io
from datetime import timedelta
from typing import cast

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv

from assets.partition_checks import per_partition
from assets.warehouse.contracts import ENTITIES, type_family
from assets.warehouse.names import warehouse_daily_partitions
from resources import LakeResource, LandingResource, PostgresResource
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


def raw_path(source: str, entity: str, day: str) -> tuple[str, ...]:
    return ("commerce", "raw", source, entity, f"processing_date={day}", "data.parquet")


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


def extract_postgres(pg: PostgresResource, entity: str, start: str, end: str) -> pa.Table:
    """Rows of commerce.<entity> with start <= updated_at < end, with the source's own column types.
    Adjacent windows neither overlap nor leave gaps, so extracting each date once (or again) takes
    every change exactly once."""
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
    types = {name: PG_ARROW.get(kind, pa.string()) for name, kind in columns}
    schema = pa.schema([(n, t) for n, t in types.items()])
    if buffer.tell() <= len(",".join(types)) + 1:
        return schema.empty_table()
    buffer.seek(0)
    return pcsv.read_csv(buffer, convert_options=pcsv.ConvertOptions(column_types=types)).select(schema.names)


def read_landing(landing: LandingResource, entity: str, day: str) -> pa.Table | None:
    """The entity's landing files of `day`, every column as text (a CSV carries no types)."""
    files = landing.files(entity, day)
    if not files:
        return None
    with engine() as conn:
        return (
            conn.execute(
                "SELECT * FROM read_csv(?, all_varchar = true, header = true, union_by_name = true)",
                [[str(f) for f in files]],
            )
            .arrow()
            .read_all()
        )


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
        kinds={"postgres" if source == "postgres" else "csv", "parquet"},
        partitions_def=warehouse_daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            f"Every {entity} row version as received from the {where}, one partition per processing date. "
            "Columns and types exactly as the source sent them, schema drift included."
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
        total, drifts = 0, {}
        for day in context.partition_keys:
            if source == "postgres":
                start_dt = warehouse_daily_partitions.time_window_for_partition_key(day).start
                end = (start_dt + timedelta(days=1)).isoformat()
                table = extract_postgres(postgres, entity, start_dt.isoformat(), end)
                checkpoint = cast(dict, lake.read_json("commerce", "_checkpoints", f"{name}.json") or {})
                high_water = max(table["updated_at"].to_pylist(), default=None) if table.num_rows else None
                checkpoint[day] = {"rows": table.num_rows, "window_end": end, "max_updated_at": str(high_water)}
            else:
                table = read_landing(landing, entity, day)
            if table is None:  # no delivery for that date: the partition is empty
                lake.delete(*raw_path(source, entity, day)[:-1])
                continue
            lake.replace_dir({"data.parquet": table}, *raw_path(source, entity, day)[:-1])
            if source == "postgres":
                lake.write_json(checkpoint, "commerce", "_checkpoints", f"{name}.json")
            total += table.num_rows
            found = drift(entity, table, typed_source=source == "postgres")
            if any(found[k] for k in ("added", "removed", "retyped")):
                drifts[day] = found
        yield dg.MaterializeResult(
            metadata={"dagster/row_count": total, "processing_dates": ", ".join(context.partition_keys)}
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
