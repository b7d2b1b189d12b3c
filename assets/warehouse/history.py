"""A commerce history (a year of exports, a migration from another shop system) as landing files: a
team's CSV files per entity, split by processing date into the landing path the nightly load reads,
`input/<entity>/<YYYY-MM-DD>/`, through the landing resource (a local folder or S3). From there one run
over the whole range (`commerce_import_job`, started by `python -m sensors.commerce_import`) takes them
through raw, staging (the contract's types, quarantine and checks) and dbt, as the nightly load would.

The files: `<folder>/<entity>.csv` or `<folder>/<entity>/*.csv` under the landing root, one per entity of
the contract (assets/warehouse/contracts.py), with a header; the contract's column names or their known
aliases. A row's processing date is the UTC date of its `updated_at` (a time without an offset is local
time of `COMMERCE_SOURCE_TIMEZONE`); a row whose `updated_at` cannot be read lands on the first date of
the import, where staging quarantines it with the contract's words. Importing again replaces the same
files (`history-<file>.csv` per date): nothing doubles."""

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from assets.warehouse.contracts import ENTITIES
from assets.warehouse.names import SOURCE_TIMEZONE, warehouse_daily_partitions
from resources import LandingResource
from resources.warehouse import engine


class HistoryError(ValueError):
    """The history cannot be imported as it is; the message says why."""


def history_files(landing: LandingResource, folder: str) -> dict[str, list[str]]:
    """entity -> the keys of its CSV files under `folder`."""
    found: dict[str, list[str]] = {}
    prefix = folder.strip("/") + "/"
    for landed in landing.landed(folder.strip("/")):
        first = landed.key[len(prefix) :].split("/")[0].removesuffix(".csv")
        if first in ENTITIES:
            found.setdefault(first, []).append(landed.key)
    return found


def _dated(data: bytes, entity: str) -> pa.Table:
    """The rows of one CSV file, every value as text, each with its processing date (`__date`, null
    when `updated_at` is missing or unreadable)."""
    updated = [n for n, c in ENTITIES[entity].aliases.items() if c == "updated_at"] + ["updated_at"]
    with engine() as conn:
        conn.execute(f"SET TimeZone = '{SOURCE_TIMEZONE}'")
        # Every value as text, as a landing file is read; empty fields as null.
        options = pcsv.ConvertOptions(default_column_type=pa.string(), strings_can_be_null=True)
        rows = pcsv.read_csv(io.BytesIO(data), convert_options=options)
        column = next((n for n in updated if n in rows.column_names), None)
        if column is None:
            return rows.append_column("__date", pa.nulls(rows.num_rows, pa.string()))
        conn.register("history_rows", rows)
        dates = conn.execute(
            f"SELECT strftime(timezone('UTC', TRY_CAST(NULLIF(TRIM(\"{column}\"), '') AS TIMESTAMPTZ)), '%Y-%m-%d') "
            "FROM history_rows"
        ).arrow()
        return rows.append_column("__date", dates.read_all().column(0))


def land_history(landing: LandingResource, folder: str) -> tuple[str, str, dict[str, int]]:
    """Split every history file under `folder` into `<entity>/<date>/history-<file>.csv`; the first and
    last processing date of the history and the rows landed per entity."""
    files = history_files(landing, folder)
    if not files:
        raise HistoryError(f"no <entity>.csv or <entity>/*.csv under {folder!r} (entities: {', '.join(ENTITIES)})")
    tables = {key: (entity, _dated(landing.read(key), entity)) for entity, keys in files.items() for key in keys}
    dates = sorted({d for _, t in tables.values() for d in t["__date"].drop_null().to_pylist()})
    if not dates:
        raise HistoryError("no row of the history has a readable updated_at")
    partitions = warehouse_daily_partitions.get_partition_keys()
    if dates[0] < partitions[0] or dates[-1] > partitions[-1]:
        raise HistoryError(
            f"the history spans {dates[0]} .. {dates[-1]}, the partitions {partitions[0]} .. {partitions[-1]}: "
            f"set COMMERCE_PARTITIONS_START={dates[0]} (or earlier) before the code location loads"
        )
    counts: dict[str, int] = {}
    for key, (entity, table) in tables.items():
        name = "history-" + key.replace("/", "_")
        table = table.set_column(table.column_names.index("__date"), "__date", pc.fill_null(table["__date"], dates[0]))
        for day in sorted(set(table["__date"].to_pylist())):
            rows = table.filter(pc.equal(table["__date"], day)).drop_columns(["__date"])
            buffer = io.BytesIO()
            pcsv.write_csv(rows, buffer)
            landing.put(buffer.getvalue(), f"{entity}/{day}/{name}")
        counts[entity] = counts.get(entity, 0) + table.num_rows
    return dates[0], dates[-1], counts
