"""Lake table formats on our own streaming workload: Delta Lake (deltalake), DuckLake (DuckDB; a DuckDB-file and a
SQLite catalog) and Iceberg (pyiceberg, SQL catalog on SQLite), to choose the lake's table format.

Rows are shaped like the clickstream bronze/silver rows (about 250 B each, a binary payload of about 150 B), in
micro-batches of 5,000 rows, all in one date partition (a date that grows). Measured for each format:

- the time of one append (one micro-batch, one commit) over windows as the table grows to `--rows` rows, for a
  long-lived writer and for a writer that opens the table again for every append (as a new run would);
- the exactly-once token: committed in the same commit as the rows, and the time to read it back;
- a streaming writer and a backfill (replace one date partition) in two processes at once, on another date and on
  the same date: failures, how conflicts are reported, and whether the table ends right (row counts replayed from
  the table's own commit history, no duplicate Kafka offsets, the token at the stream's last commit);
- compaction of the small files (time, files before and after, DuckDB full-scan time before and after);
- S3 (a moto server on loopback): writes and reads, and for Delta whether two concurrent writers lose commits;
- readers: DuckDB (delta_scan, the ducklake attach, iceberg_scan); other engines from their documentation.

    python -m bench.bench_table_formats [--rows 2000000] [--batch-rows 5000] [--conflict-seconds 6]

DuckDB extensions are loaded from their PyPI wheels (`duckdb-extension-<name>==<duckdb version>`): ducklake and
delta are in requirements.lock; sqlite_scanner (DuckLake's SQLite catalog), httpfs (DuckLake on S3), avro and
iceberg (DuckDB's iceberg_scan) are not, and the parts that need them are skipped, saying so, where they are missing.
The machine may be shared: the load average is printed and saved with the results.
"""

import argparse
import contextlib
import datetime as dt
import importlib
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import duckdb
import pyarrow as pa

from bench.common import RESULTS, ROOT, free_port, machine, peak_rss_mib

NAME = "table_formats"
APP_ID = "clickstream-silver-ingest"  # the exactly-once token's writer id
TOKEN_KEY = "bench.stream-offset"  # Iceberg: snapshot summary property holding the token
KIND_KEY = "bench.kind"  # Iceberg: snapshot summary property saying which writer made the snapshot
STREAM_DATE = dt.date(2026, 12, 2)  # the date that grows
OLD_DATE = dt.date(2026, 12, 1)  # the date a backfill replaces while the stream writes STREAM_DATE
SQLITE_BUSY_TIMEOUT_MS = int(os.environ.get("BENCH_SQLITE_BUSY_TIMEOUT_MS", "10000"))
BACKFILL_OFFSET = 10**12  # backfill rows' offsets: far from the stream's, the same on every backfill
SCHEMA = pa.schema(
    [
        ("event_date", pa.date32()),
        ("event_datetime", pa.timestamp("us", tz="UTC")),
        ("event_name", pa.string()),
        ("user_id", pa.string()),
        ("platform", pa.string()),
        ("product_name", pa.string()),
        ("SKU", pa.string()),
        ("event_id", pa.string()),
        ("offset", pa.int64()),
        ("payload", pa.binary()),
    ]
)
FORMATS = ("delta", "ducklake", "ducklake_sqlite", "iceberg")
LABELS = {
    "delta": "Delta Lake (deltalake)",
    "ducklake": "DuckLake, DuckDB-file catalog",
    "ducklake_sqlite": "DuckLake, SQLite catalog",
    "iceberg": "Iceberg (pyiceberg, SQLite catalog)",
}
# Which other engines read each format, from their documentation (not run here: no JVM engines on this machine).
OTHER_READERS = {
    "delta": "Spark: delta-spark (docs.delta.io); Trino: Delta Lake connector "
    "(trino.io/docs/current/connector/delta-lake.html); also Polars, DataFusion, Daft through delta-rs",
    "ducklake": "DuckDB only among SQL engines we use; DataFusion through the datafusion-ducklake crate "
    "(docs.rs/datafusion-ducklake); no Spark or Trino connector found in their docs",
    "iceberg": "Spark: iceberg-spark-runtime with catalog type jdbc on the same SQL catalog tables "
    "(iceberg.apache.org/docs/latest/jdbc); Trino: Iceberg connector, JDBC catalog "
    "(trino.io/docs/current/object-storage/metastores.html); a SQLite file is local-only: PostgreSQL for shared use",
}
OTHER_READERS["ducklake_sqlite"] = OTHER_READERS["ducklake"]


def log(message: str) -> None:
    load = os.getloadavg()[0]
    print(f"[{time.strftime('%H:%M:%S')} load {load:4.1f}] {message}", flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def error_text(exc: BaseException) -> str:
    text = " / ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    text = re.sub(r"\d{6,}", "<id>", text)  # snapshot ids, pids: the same error counts once
    return f"{type(exc).__module__}.{type(exc).__name__}: {text[:400]}"


class RetryCounter(logging.Handler):
    """Counts pyiceberg's own commit retries ("Commit failed due to a concurrent update, retrying") and keeps them
    off the console."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0
        logger = logging.getLogger("pyiceberg.table")
        logger.addHandler(self)
        logger.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.count += 1


# ---------------------------------------------------------------------------------------------------------- data


class Rows:
    """Micro-batches of clickstream-shaped rows: a few random templates, with each batch's own offsets and ids."""

    def __init__(self, batch_rows: int, templates: int = 3, seed: int = 7):
        self.batch_rows = batch_rows
        self.templates = [self._template(batch_rows, random.Random(seed + i)) for i in range(templates)]

    @staticmethod
    def _template(n: int, rnd: random.Random) -> pa.Table:
        names = ["page_view", "product_view", "add_to_cart", "remove_from_cart", "purchase", "search", "login"]
        start = int(dt.datetime.combine(STREAM_DATE, dt.time(), dt.UTC).timestamp() * 1e6)
        micros = sorted(start + rnd.randrange(86_400 * 10**6) for _ in range(n))
        payload_tail = b'","page":"/p/xxxxxxxx","referrer":"https://example.com/q?s=abcdefghij","v":3}'
        return pa.table(
            {
                "event_date": pa.array([STREAM_DATE] * n, pa.date32()),
                "event_datetime": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                "event_name": [rnd.choice(names) for _ in range(n)],
                "user_id": [f"u{rnd.randrange(200_000):07d}" for _ in range(n)],
                "platform": [rnd.choice(("web", "ios", "android")) for _ in range(n)],
                "product_name": [f"Product {rnd.randrange(20_000)}" for _ in range(n)],
                "SKU": [f"SKU-{rnd.randrange(10**7):08d}" for _ in range(n)],
                "event_id": [""] * n,
                "offset": pa.array([0] * n, pa.int64()),
                "payload": [b'{"session":"' + rnd.randbytes(32).hex().encode() + payload_tail for _ in range(n)],
            },
            schema=SCHEMA,
        )

    def batch(self, index: int, date: dt.date = STREAM_DATE, first_offset: int | None = None) -> pa.Table:
        """Batch `index` (0-based) of the stream: offsets index*batch_rows onwards, unless `first_offset` is given."""
        table = self.templates[index % len(self.templates)]
        first = index * self.batch_rows if first_offset is None else first_offset
        offsets = range(first, first + self.batch_rows)
        table = table.set_column(8, "offset", pa.array(offsets, pa.int64()))
        table = table.set_column(7, "event_id", pa.array([f"{o * 0x9E3779B97F4A7C15 % 2**128:032x}" for o in offsets]))
        if date != STREAM_DATE:
            table = table.set_column(0, "event_date", pa.array([date] * self.batch_rows, pa.date32()))
        return table

    def backfill(self, date: dt.date, batches: int) -> pa.Table:
        """The rows a backfill writes for `date`: always the same offsets, so two backfills must not both survive."""
        return pa.concat_tables(
            [self.batch(i, date, BACKFILL_OFFSET + i * self.batch_rows) for i in range(batches)]
        ).combine_chunks()


# ------------------------------------------------------------------------------------------------- DuckDB helpers


def extension_path(name: str) -> Path | None:
    """The extension file shipped in the `duckdb-extension-<name>` wheel, or None if it is not installed."""
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        return None
    return next(Path(module.__file__).parent.rglob("*.duckdb_extension"), None)  # type: ignore[arg-type]


def duckdb_connect(*extensions: str) -> duckdb.DuckDBPyConnection:
    """A connection that loads the named extensions from their wheels (loading by name would download them)."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in extensions:
        path = extension_path(name)
        if path is None:
            raise RuntimeError(f"duckdb-extension-{name}=={duckdb.__version__} is not installed")
        con.execute(f"LOAD '{path}'")
    return con


# ---------------------------------------------------------------------------------------------- format adapters
#
# Each adapter: create(), open() -> a writer handle kept between appends, append(handle, batch, token, kind) in
# one commit with the token, replace_date(handle, rows, date) in one commit, refresh(handle), token() read by a
# new reader, history() -> [(commit order, kind)], files(), compact(), scan_sql(con) for DuckDB, close(handle).


class Delta:
    def __init__(self, root: str, storage_options: dict | None = None):
        self.uri = root if "://" in root else str(Path(root) / "delta")
        self.storage_options = storage_options

    def create(self) -> None:
        from deltalake import DeltaTable

        DeltaTable.create(self.uri, schema=SCHEMA, partition_by=["event_date"], storage_options=self.storage_options)

    def open(self):
        from deltalake import DeltaTable

        return DeltaTable(self.uri, storage_options=self.storage_options)

    def refresh(self, handle):
        return self.open()

    def close(self, handle) -> None:
        pass

    def append(self, handle, batch: pa.Table, token: int | None, kind: str) -> None:
        from deltalake import CommitProperties, Transaction, write_deltalake

        txns = [Transaction(APP_ID, token)] if token is not None else None
        write_deltalake(
            handle if handle is not None else self.uri,
            batch,
            mode="append",
            partition_by=["event_date"],
            storage_options=None if handle is not None else self.storage_options,
            commit_properties=CommitProperties(app_transactions=txns, custom_metadata={"kind": kind}),
        )

    def replace_date(self, handle, rows: pa.Table, date: dt.date) -> None:
        from deltalake import CommitProperties, write_deltalake

        write_deltalake(
            handle,
            rows,
            mode="overwrite",
            predicate=f"event_date = '{date.isoformat()}'",
            partition_by=["event_date"],
            commit_properties=CommitProperties(custom_metadata={"kind": f"backfill:{date}"}),
        )

    def token(self, handle=None) -> int | None:
        return (handle or self.open()).transaction_version(APP_ID)

    def history(self) -> list[tuple[int, str]]:
        return sorted((h["version"], h.get("kind", h.get("operation", ""))) for h in self.open().history())

    def internal_retries(self) -> dict[str, int]:
        """delta-rs's own commit retries (operationMetrics.num_retries), by writer."""
        retries: dict[str, int] = {}
        for h in self.open().history():
            kind = str(h.get("kind", "")).split(":")[0]
            retries[kind] = retries.get(kind, 0) + int((h.get("operationMetrics") or {}).get("num_retries", 0))
        return retries

    def files(self) -> int:
        return len(self.open().file_uris())

    def compact(self) -> str:
        metrics = self.open().optimize.compact()
        return f"dt.optimize.compact(): {metrics['numFilesRemoved']} files removed, {metrics['numFilesAdded']} added"

    def scan_sql(self, con) -> str:
        con.execute(f"LOAD '{extension_path('delta')}'")
        return f"delta_scan('{self.uri}')"


class DuckLake:
    def __init__(self, root: str, catalog: str = "duckdb", data_path: str | None = None, secret_sql: str = ""):
        self.catalog = catalog
        suffix = "sqlite" if catalog == "sqlite" else "ducklake"
        self.catalog_file = str(Path(root) / f"ducklake_{catalog}.{suffix}")
        self.data_path = data_path or str(Path(root) / f"ducklake_{catalog}_data") + "/"
        self.secret_sql = secret_sql

    def _extensions(self) -> list[str]:
        extensions = ["ducklake"]
        if self.catalog == "sqlite":
            extensions.append("sqlite_scanner")
        if self.data_path.startswith("s3://"):
            extensions.append("httpfs")
        return extensions

    def open(self):
        con = duckdb_connect(*self._extensions())
        if self.secret_sql:
            con.execute(self.secret_sql)
        con.execute(f"ATTACH '{self._attach_path()}' AS lake (DATA_PATH '{self.data_path}'{self._meta_options()})")
        return con

    def _attach_path(self) -> str:
        return ("ducklake:sqlite:" if self.catalog == "sqlite" else "ducklake:") + self.catalog_file

    def _meta_options(self) -> str:
        # SQLite answers "database is locked" at once while another process writes, unless it waits: the option is
        # passed on to the SQLite attach of the catalog.
        return f", META_BUSY_TIMEOUT {SQLITE_BUSY_TIMEOUT_MS}" if self.catalog == "sqlite" else ""

    def create(self) -> None:
        con = self.open()
        con.register("schema_only", SCHEMA.empty_table())
        con.execute("CREATE TABLE lake.events AS SELECT * FROM schema_only")
        con.execute("ALTER TABLE lake.events SET PARTITIONED BY (event_date)")
        # The exactly-once token: a table of its own, updated in the same transaction as the rows. DuckLake keeps
        # such small writes inlined in the catalog database (no Parquet file per update).
        con.execute("CREATE TABLE lake.offsets (app_id VARCHAR, version BIGINT)")
        con.execute("INSERT INTO lake.offsets VALUES (?, 0)", [APP_ID])
        con.close()

    def refresh(self, handle):
        with contextlib.suppress(Exception):
            handle.execute("ROLLBACK")
        return handle

    def close(self, handle) -> None:
        handle.close()

    def _commit(self, con, statements, kind: str) -> None:
        con.execute("BEGIN")
        try:
            for sql, params in statements:
                con.execute(sql, params)
            con.execute("CALL lake.set_commit_message('bench', ?, extra_info => ?)", [kind, json.dumps({"kind": kind})])
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise

    def append(self, handle, batch: pa.Table, token: int | None, kind: str) -> None:
        con = handle if handle is not None else self.open()
        try:
            con.register("batch", batch)
            statements = [("INSERT INTO lake.events SELECT * FROM batch", None)]
            if token is not None:
                statements.append(("UPDATE lake.offsets SET version = ? WHERE app_id = ?", [token, APP_ID]))
            self._commit(con, statements, kind)
            con.unregister("batch")
        finally:
            if handle is None:
                con.close()

    def replace_date(self, handle, rows: pa.Table, date: dt.date) -> None:
        handle.register("backfill_rows", rows)
        self._commit(
            handle,
            [
                ("DELETE FROM lake.events WHERE event_date = ?::DATE", [date.isoformat()]),
                ("INSERT INTO lake.events SELECT * FROM backfill_rows", None),
            ],
            f"backfill:{date}",
        )
        handle.unregister("backfill_rows")

    def token(self, handle=None) -> int | None:
        con = handle or self.open()
        try:
            row = con.execute("SELECT version FROM lake.offsets WHERE app_id = ?", [APP_ID]).fetchone()
            return row[0] if row else None
        finally:
            if handle is None:
                con.close()

    def history(self) -> list[tuple[int, str]]:
        con = self.open()
        try:
            rows = con.execute("SELECT snapshot_id, commit_message FROM ducklake_snapshots('lake')").fetchall()
        finally:
            con.close()
        return sorted((sid, message or "") for sid, message in rows)

    def files(self) -> int:
        con = self.open()
        try:
            return (con.execute("SELECT count(*) FROM ducklake_list_files('lake', 'events')").fetchone() or (0,))[0]
        finally:
            con.close()

    def compact(self) -> str:
        con = self.open()
        try:
            con.execute("CALL ducklake_merge_adjacent_files('lake', 'events')")
        finally:
            con.close()
        return "CALL ducklake_merge_adjacent_files('lake', 'events')"

    def scan_sql(self, con) -> str:
        for name in self._extensions():
            con.execute(f"LOAD '{extension_path(name)}'")
        if self.secret_sql:
            con.execute(self.secret_sql)
        options = f"DATA_PATH '{self.data_path}', READ_ONLY{self._meta_options()}"
        con.execute(f"ATTACH '{self._attach_path()}' AS scan_lake ({options})")
        return "scan_lake.events"


class Iceberg:
    def __init__(self, root: str, warehouse: str | None = None, properties: dict | None = None):
        self.catalog_uri = f"sqlite:///{Path(root) / 'iceberg_catalog.db'}"
        self.warehouse = warehouse or f"file://{Path(root) / 'iceberg'}"
        self.properties = properties or {}
        self.identifier = "bench.events"

    def catalog(self):
        from pyiceberg.catalog.sql import SqlCatalog

        return SqlCatalog("bench", uri=self.catalog_uri, warehouse=self.warehouse, **self.properties)

    def create(self) -> None:
        catalog = self.catalog()
        catalog.create_namespace_if_not_exists("bench")
        table = catalog.create_table(self.identifier, schema=SCHEMA)
        with table.update_spec() as spec:
            spec.add_identity("event_date")

    def open(self):
        return self.catalog().load_table(self.identifier)

    def refresh(self, handle):
        return handle.refresh()

    def close(self, handle) -> None:
        pass

    def append(self, handle, batch: pa.Table, token: int | None, kind: str) -> None:
        table = handle if handle is not None else self.open()
        properties = {KIND_KEY: kind}
        if token is not None:
            properties[TOKEN_KEY] = str(token)
        table.append(batch, snapshot_properties=properties)

    def replace_date(self, handle, rows: pa.Table, date: dt.date) -> None:
        from pyiceberg.expressions import EqualTo

        handle.overwrite(
            rows,
            overwrite_filter=EqualTo("event_date", date.isoformat()),
            snapshot_properties={KIND_KEY: f"backfill:{date}"},
        )

    def token(self, handle=None) -> int | None:
        """The newest snapshot, walking back through parents, that carries the token."""
        table = handle or self.open()
        snapshot = table.current_snapshot()
        while snapshot is not None:
            value = snapshot.summary.get(TOKEN_KEY) if snapshot.summary else None
            if value is not None:
                return int(value)
            parent = snapshot.parent_snapshot_id
            snapshot = table.snapshot_by_id(parent) if parent is not None else None
        return None

    def history(self) -> list[tuple[int, str]]:
        table = self.open()
        return sorted((s.sequence_number or 0, (s.summary or {}).get(KIND_KEY, "")) for s in table.snapshots())

    def files(self) -> int:
        return sum(1 for _ in self.open().scan().plan_files())

    def manifests(self) -> int:
        table = self.open()
        snapshot = table.current_snapshot()
        return len(snapshot.manifests(table.io)) if snapshot is not None else 0

    def compact(self) -> str:
        """pyiceberg 0.12 has no data-file compaction: rewrite the date in one overwrite (in memory), then expire
        the older snapshots (the append cost grows with the snapshots kept in the table metadata). The rewrite
        carries the token forward: once older snapshots expire it would otherwise be gone."""
        from pyiceberg.expressions import EqualTo

        table = self.open()
        token = self.token(table)
        where = EqualTo("event_date", STREAM_DATE.isoformat())
        t0 = time.perf_counter()
        rows = table.scan(row_filter=where).to_arrow()
        properties = {KIND_KEY: "compaction", **({TOKEN_KEY: str(token)} if token is not None else {})}
        table.overwrite(rows, overwrite_filter=where, snapshot_properties=properties)
        rewrite_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        snapshots = len(table.snapshots())
        table.maintenance.expire_snapshots().older_than(dt.datetime.now(dt.UTC)).commit()
        table = self.open()
        expire_s = time.perf_counter() - t0
        return (
            "no compaction API in pyiceberg 0.12: manual rewrite (scan the date to Arrow, overwrite) "
            f"{rewrite_s:.1f} s; then maintenance.expire_snapshots() {snapshots} -> {len(table.snapshots())} "
            f"snapshots {expire_s:.1f} s"
        )

    def scan_sql(self, con) -> str:
        for name in ("avro", "iceberg"):
            con.execute(f"LOAD '{extension_path(name)}'")
        return f"iceberg_scan('{self.open().metadata_location}')"


def adapter(fmt: str, root: str):
    if fmt == "delta":
        return Delta(root)
    if fmt == "ducklake":
        return DuckLake(root, "duckdb")
    if fmt == "ducklake_sqlite":
        return DuckLake(root, "sqlite")
    if fmt == "iceberg":
        return Iceberg(root)
    raise ValueError(fmt)


def missing_extensions(fmt: str) -> list[str]:
    needed = {"delta": ["delta"], "ducklake": ["ducklake"], "ducklake_sqlite": ["ducklake", "sqlite_scanner"]}
    needed["iceberg"] = ["avro", "iceberg"]  # only for DuckDB's iceberg_scan
    return [name for name in needed[fmt] if extension_path(name) is None]


def duckdb_scan(fmt_adapter) -> tuple[int, int, float]:
    """Rows, distinct offsets and seconds of a full scan by DuckDB (reads every payload)."""
    con = duckdb_connect()
    try:
        source = fmt_adapter.scan_sql(con)
        started = time.perf_counter()
        rows, distinct, _ = con.execute(
            f'SELECT count(*), count(DISTINCT "offset"), sum(octet_length(payload)) FROM {source}'
        ).fetchone() or (0, 0, 0)
        return rows, distinct, time.perf_counter() - started
    finally:
        con.close()


def date_counts(fmt_adapter) -> dict[str, tuple[int, int]]:
    """Rows and distinct offsets per date, read by DuckDB."""
    con = duckdb_connect()
    try:
        source = fmt_adapter.scan_sql(con)
        rows = con.execute(
            f'SELECT event_date::VARCHAR, count(*), count(DISTINCT "offset") FROM {source} GROUP BY ALL'
        ).fetchall()
        return {date: (n, distinct) for date, n, distinct in rows}
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------ append scaling


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def windows(total_appends: int, width: int) -> list[tuple[int, int]]:
    """Append-number windows: the first `width`, then `width` appends ending at 10 %, 50 % and 100 % of the run."""
    result = [(1, min(width, total_appends))]
    for fraction in (0.1, 0.5, 1.0):
        end = max(1, round(total_appends * fraction))
        start = max(1, end - width + 1)
        if start > result[-1][1]:
            result.append((start, end))
    return result


def run_scaling(fmt: str, root: str, rows: Rows, target_rows: int, width: int, reopen_appends: int) -> dict:
    """Append micro-batches until the table holds `target_rows`; time the windows. After each window, a few appends
    by a writer that opens the table first (a following run's first append)."""
    fa = adapter(fmt, root)
    fa.create()
    total = max(1, target_rows // rows.batch_rows)
    plan = windows(total, width)
    handle = fa.open()
    token = 0
    table_rows = 0
    appended = 0  # appends by the long-lived writer, which the windows count
    result = {"format": fmt, "windows": []}
    started = time.perf_counter()
    for start, end in plan:
        while appended < start - 1:
            token += 1
            fa.append(handle, rows.batch(token - 1), token, "stream")
            appended += 1
            table_rows += rows.batch_rows
        timings = []
        for _ in range(start, end + 1):
            token += 1
            batch = rows.batch(token - 1)
            t0 = time.perf_counter()
            fa.append(handle, batch, token, "stream")
            timings.append(time.perf_counter() - t0)
            appended += 1
            table_rows += rows.batch_rows
        rows_at_window = table_rows
        # A following run: the long-lived writer has gone (a DuckDB-file catalog admits one process at a time).
        fa.close(handle)
        reopen, opens = [], []
        for _ in range(reopen_appends):
            token += 1
            batch = rows.batch(token - 1)
            t0 = time.perf_counter()
            fresh = fa.open()
            opens.append(time.perf_counter() - t0)
            fa.append(fresh, batch, token, "stream")
            fa.close(fresh)
            reopen.append(time.perf_counter() - t0)
            table_rows += rows.batch_rows
        handle = fa.open()
        window = {
            "appends": f"{start}-{end}",
            "table_rows": rows_at_window,
            "p50_ms": statistics.median(timings) * 1000,
            "p95_ms": percentile(timings, 0.95) * 1000,
            "max_ms": max(timings) * 1000,
            "open_p50_ms": statistics.median(opens) * 1000 if opens else None,
            "reopen_p50_ms": statistics.median(reopen) * 1000 if reopen else None,
            "reopen_max_ms": max(reopen) * 1000 if reopen else None,
        }
        result["windows"].append(window)
        log(
            f"{fmt}: appends {start}-{end} at {rows_at_window:,} rows: p50 {window['p50_ms']:.0f} ms, "
            f"p95 {window['p95_ms']:.0f} ms; new writer: open p50 {window['open_p50_ms'] or 0:.0f} ms, "
            f"open+append p50 {window['reopen_p50_ms'] or 0:.0f} ms"
        )
    reads = []
    for _ in range(5):
        t0 = time.perf_counter()
        fa.token(handle)
        reads.append(time.perf_counter() - t0)
    result["token_read_open_writer_ms"] = statistics.median(reads) * 1000
    fa.close(handle)
    result["append_seconds_total"] = time.perf_counter() - started
    result["rows"] = table_rows
    result["last_token"] = token

    # The token, read back by a new reader (open included), and checked.
    reads, values = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        values.append(fa.token())
        reads.append(time.perf_counter() - t0)
    result["token_read_ms"] = statistics.median(reads) * 1000
    result["token_ok"] = all(v == token for v in values)

    # DuckDB reads it; compaction; DuckDB reads it again.
    result["files_before"] = fa.files()
    if isinstance(fa, Iceberg):
        result["iceberg_manifests"] = fa.manifests()
    try:
        n, distinct, seconds = duckdb_scan(fa)
        result.update(duckdb_rows=n, duckdb_distinct_offsets=distinct, scan_s_before=seconds)
    except Exception as exc:
        result["duckdb_error"] = error_text(exc)
    log(f"{fmt}: compacting {result['files_before']} files")
    t0 = time.perf_counter()
    try:
        result["compaction"] = fa.compact()
        result["compact_s"] = time.perf_counter() - t0
        result["files_after"] = fa.files()
        with contextlib.suppress(Exception):
            result["scan_s_after"] = duckdb_scan(fa)[2]
    except Exception as exc:
        result["compaction"] = f"failed: {error_text(exc)}"
    with contextlib.suppress(Exception):
        result["token_after_compaction_ok"] = fa.token() == token
    log(
        f"{fmt}: compaction {result.get('compact_s', 0):.1f} s, files {result['files_before']} -> "
        f"{result.get('files_after')}; DuckDB scan {result.get('scan_s_before', 0):.2f} s -> "
        f"{result.get('scan_s_after', 0):.2f} s"
    )

    # Appends again, on the compacted table: does the cost follow the rows, or the files and commits kept?
    handle = fa.open()
    timings = []
    for _ in range(width):
        token += 1
        batch = rows.batch(token - 1)
        t0 = time.perf_counter()
        fa.append(handle, batch, token, "stream")
        timings.append(time.perf_counter() - t0)
        table_rows += rows.batch_rows
    fa.close(handle)
    result["windows"].append(
        {
            "appends": "after compaction",
            "table_rows": table_rows,
            "p50_ms": statistics.median(timings) * 1000,
            "p95_ms": percentile(timings, 0.95) * 1000,
            "max_ms": max(timings) * 1000,
        }
    )
    log(f"{fmt}: {width} appends after compaction: p50 {statistics.median(timings) * 1000:.0f} ms")
    return result


# -------------------------------------------------------------------------------- stream and backfill at once


def _stream_worker(fmt: str, root: str, template: pa.Table, date: dt.date, seconds: float, ready, go, queue):
    """Appends micro-batches to `date` with the exactly-once token; retries a failed append after checking the
    token (a commit that raised may still have landed)."""
    out = {"commits": 0, "failures": 0, "errors": {}, "landed_despite_error": 0, "last_token": 0}
    retries = RetryCounter()
    handle = None
    try:
        rows = Rows.__new__(Rows)
        rows.batch_rows, rows.templates = template.num_rows, [template]
        fa = adapter(fmt, root)
        try:
            handle = fa.open()
            token = fa.token(handle) or 0
        finally:
            ready.put("stream")
        go.wait()
        deadline = time.time() + seconds
        while time.time() < deadline:
            batch = rows.batch(token, date)
            try:
                fa.append(handle, batch, token + 1, f"stream:{date}")
                token += 1
                out["commits"] += 1
            except Exception as exc:
                out["failures"] += 1
                key = error_text(exc)
                out["errors"][key] = out["errors"].get(key, 0) + 1
                handle = fa.refresh(handle)
                if (fa.token(handle) or 0) >= token + 1:
                    token += 1
                    out["commits"] += 1
                    out["landed_despite_error"] += 1
            time.sleep(0.02)
        out["last_token"] = token
        fa.close(handle)
    except Exception as exc:
        out["fatal"] = error_text(exc)
    if fmt == "iceberg":
        out["pyiceberg_internal_retries"] = retries.count
    queue.put(("stream", out))


def _backfill_worker(fmt: str, root: str, rows_table: pa.Table, date: dt.date, seconds: float, ready, go, queue):
    """Replaces `date` again and again, each replace one commit."""
    out = {"commits": 0, "failures": 0, "errors": {}, "seconds": []}
    retries = RetryCounter()
    try:
        fa = adapter(fmt, root)
        try:
            handle = fa.open()
        finally:
            ready.put("backfill")
        go.wait()
        deadline = time.time() + seconds
        while time.time() < deadline:
            t0 = time.perf_counter()
            try:
                fa.replace_date(handle, rows_table, date)
                out["commits"] += 1
                out["seconds"].append(time.perf_counter() - t0)
            except Exception as exc:
                out["failures"] += 1
                key = error_text(exc)
                out["errors"][key] = out["errors"].get(key, 0) + 1
                handle = fa.refresh(handle)
            time.sleep(0.1)
        fa.close(handle)
    except Exception as exc:
        out["fatal"] = error_text(exc)
    if fmt == "iceberg":
        out["pyiceberg_internal_retries"] = retries.count
    queue.put(("backfill", out))


def replay(history: list[tuple[int, str]], batch_rows: int, backfill_rows: int) -> dict[str, int]:
    """Rows per date if the commits had run one after the other in the table's own commit order."""
    counts: dict[str, int] = {}
    for _, kind in history:
        name, _, date = kind.partition(":")
        if name == "stream":
            counts[date] = counts.get(date, 0) + batch_rows
        elif name in ("backfill", "preload"):
            counts[date] = backfill_rows
    return counts


def run_conflicts(fmt: str, root: str, rows: Rows, seconds: float, backfill_batches: int) -> list[dict]:
    """Scenario 'other date': the stream appends to STREAM_DATE while a backfill replaces OLD_DATE.
    Scenario 'same date': both on STREAM_DATE."""
    results = []
    backfill_rows = backfill_batches * rows.batch_rows
    ctx = multiprocessing.get_context("spawn")
    for scenario, backfill_date in (("other date", OLD_DATE), ("same date", STREAM_DATE)):
        where = str(Path(root) / scenario.replace(" ", "_"))
        os.makedirs(where)
        fa = adapter(fmt, where)
        fa.create()
        handle = fa.open()
        for date in (OLD_DATE, STREAM_DATE):  # both dates start with a backfill's rows
            fa.append(handle, rows.backfill(date, backfill_batches), None, f"preload:{date}")
        fa.close(handle)
        queue, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        backfill_table = rows.backfill(backfill_date, backfill_batches)
        procs = [
            ctx.Process(
                target=_stream_worker, args=(fmt, where, rows.templates[0], STREAM_DATE, seconds, ready, go, queue)
            ),
            ctx.Process(
                target=_backfill_worker, args=(fmt, where, backfill_table, backfill_date, seconds, ready, go, queue)
            ),
        ]
        for p in procs:
            p.start()
        for _ in procs:  # both have imported and opened the table (or failed to): start together
            ready.get(timeout=120)
        go.set()
        outs = {}
        for _ in procs:
            role, out = queue.get(timeout=seconds + 120)
            outs[role] = out
        for p in procs:
            p.join(timeout=30)
        stream, backfill = outs["stream"], outs["backfill"]
        row = {"format": fmt, "scenario": scenario, "stream": stream, "backfill": backfill}
        try:
            actual = date_counts(fa)
            history = fa.history()
            expected = replay(history, rows.batch_rows, backfill_rows)
            stream_commits_in_history = sum(1 for _, k in history if k.startswith("stream"))
            token = fa.token()
            if isinstance(fa, Delta):
                row["deltars_internal_retries"] = fa.internal_retries()
            row.update(
                rows_by_date={d: n for d, (n, _) in actual.items()},
                expected_by_serial_replay=expected,
                duplicate_offsets=sum(n - distinct for n, distinct in actual.values()),
                stream_commits_in_history=stream_commits_in_history,
                token=token,
                correct=(
                    {d: n for d, (n, _) in actual.items()} == expected
                    and all(n == distinct for n, distinct in actual.values())
                    and stream_commits_in_history == stream["commits"]
                    and token == stream.get("last_token")
                ),
            )
        except Exception as exc:
            row["check_error"] = error_text(exc)
            row["correct"] = False
        summary = (
            f"stream {stream['commits']} commits / {stream['failures']} failed, backfill {backfill['commits']} / "
            f"{backfill['failures']} failed; correct: {row['correct']}"
        )
        if stream.get("fatal") or backfill.get("fatal"):
            summary += f"; fatal: {stream.get('fatal') or backfill.get('fatal')}"
        log(f"{fmt} [{scenario}]: {summary}")
        results.append(row)
        if any("Could not set lock" in str(out.get("fatal", "")) for out in (stream, backfill)):
            break  # one process per DuckDB-file catalog: the other scenario would fail the same way
    return results


# ------------------------------------------------------------------------------------------------------------ S3


@contextlib.contextmanager
def moto_server():
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


S3_KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"}


def _delta_s3_writer(uri: str, options: dict, template: pa.Table, n: int, ready, go, queue) -> None:
    out = {"commits": 0, "errors": {}}
    try:
        fa = Delta(uri, options)
        ready.put(True)
        go.wait()
        for _ in range(n):
            try:
                fa.append(None, template, None, "stream")
                out["commits"] += 1
            except Exception as exc:
                key = error_text(exc)
                out["errors"][key] = out["errors"].get(key, 0) + 1
    except Exception as exc:
        out["fatal"] = error_text(exc)
    queue.put(out)


def run_s3(rows: Rows, root: str, formats: list[str]) -> dict:
    import boto3

    result: dict = {}
    small = rows.templates[0].slice(0, 1000)
    with moto_server() as endpoint:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="lake")
        s3.put_object(Bucket="lake", Key="probe", Body=b"1")
        try:
            s3.put_object(Bucket="lake", Key="probe", Body=b"2", IfNoneMatch="*")
            result["moto_if_none_match"] = "ignored (a second put-if-absent succeeded)"
        except Exception as exc:
            result["moto_if_none_match"] = f"enforced ({error_text(exc)[:80]})"

        if "delta" in formats:
            base = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", **S3_KEYS}
            ctx = multiprocessing.get_context("spawn")
            writers, per_writer = 2, 8
            delta = {}
            for name, extra in (
                ("no locking option", {}),
                ('aws_conditional_put="etag"', {"aws_conditional_put": "etag"}),
                ("AWS_S3_ALLOW_UNSAFE_RENAME=true", {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}),
            ):
                uri = f"s3://lake/delta-{len(delta)}"
                options = {**base, **extra}
                entry: dict = {}
                try:
                    fa = Delta(uri, options)
                    fa.create()
                    timings = []
                    for _ in range(5):
                        t0 = time.perf_counter()
                        fa.append(None, small, None, "stream")
                        timings.append(time.perf_counter() - t0)
                    entry["append_p50_ms"] = statistics.median(timings) * 1000
                    queue, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
                    procs = [
                        ctx.Process(target=_delta_s3_writer, args=(uri, options, small, per_writer, ready, go, queue))
                        for _ in range(writers)
                    ]
                    for p in procs:
                        p.start()
                    for _ in procs:
                        ready.get(timeout=120)
                    go.set()
                    outs = [queue.get(timeout=180) for _ in procs]
                    for p in procs:
                        p.join(timeout=30)
                    table = fa.open()
                    committed = sum(o["commits"] for o in outs)
                    rows_now = table.to_pyarrow_dataset().count_rows()
                    errors: dict = {}
                    for o in outs:
                        for k, v in o["errors"].items():
                            errors[k] = errors.get(k, 0) + v
                        if "fatal" in o:
                            errors[o["fatal"]] = errors.get(o["fatal"], 0) + 1
                    entry.update(
                        concurrent_commits_reported=committed,
                        table_version=table.version(),
                        rows=rows_now,
                        rows_expected=(5 + committed) * small.num_rows,
                        lost_commits=(5 + committed) - rows_now // small.num_rows,
                        errors=errors,
                    )
                except Exception as exc:
                    entry["error"] = error_text(exc)
                delta[name] = entry
                log(f"S3 delta [{name}]: {entry}")
            result["delta"] = delta

        if "ducklake" in formats or "ducklake_sqlite" in formats:
            if extension_path("httpfs") is None:
                result["ducklake"] = {"error": f"needs duckdb-extension-httpfs=={duckdb.__version__} (not installed)"}
            else:
                host = endpoint.removeprefix("http://")
                secret = (
                    f"CREATE OR REPLACE SECRET s3_bench (TYPE s3, KEY_ID '{S3_KEYS['AWS_ACCESS_KEY_ID']}', "
                    f"SECRET '{S3_KEYS['AWS_SECRET_ACCESS_KEY']}', REGION 'us-east-1', ENDPOINT '{host}', "
                    "URL_STYLE 'path', USE_SSL false)"
                )
                result["ducklake"] = s3_roundtrip(
                    DuckLake(str(Path(root) / "s3"), "duckdb", data_path="s3://lake/ducklake/", secret_sql=secret),
                    rows,
                )
            log(f"S3 ducklake: {result['ducklake']}")

        if "iceberg" in formats:
            properties = {
                "s3.endpoint": endpoint,
                "s3.access-key-id": S3_KEYS["AWS_ACCESS_KEY_ID"],
                "s3.secret-access-key": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                "s3.region": "us-east-1",
                "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
            }
            result["iceberg"] = s3_roundtrip(
                Iceberg(str(Path(root) / "s3"), warehouse="s3://lake/iceberg", properties=properties), rows
            )
            log(f"S3 iceberg: {result['iceberg']}")
    return result


def s3_roundtrip(fa, rows: Rows) -> dict:
    """Create, 5 appends with the token, read back the rows and the token."""
    local_catalog = fa.catalog_file if isinstance(fa, DuckLake) else fa.catalog_uri.removeprefix("sqlite:///")
    os.makedirs(Path(local_catalog).parent, exist_ok=True)
    try:
        fa.create()
        handle = fa.open()
        timings = []
        for i in range(5):
            t0 = time.perf_counter()
            fa.append(handle, rows.batch(i), i + 1, "stream")
            timings.append(time.perf_counter() - t0)
        fa.close(handle)
        if isinstance(fa, Iceberg):
            n = fa.open().scan().to_arrow().num_rows
        else:
            con = fa.open()
            n = (con.execute("SELECT count(*) FROM lake.events").fetchone() or (0,))[0]
            con.close()
        return {
            "append_p50_ms": statistics.median(timings) * 1000,
            "rows": n,
            "rows_expected": 5 * rows.batch_rows,
            "token": fa.token(),
        }
    except Exception as exc:
        return {"error": error_text(exc), "trace": traceback.format_exc(limit=2)[-400:]}


# ---------------------------------------------------------------------------------------------------------- main


def markdown(headers: list[str], body: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
        return "" if v is None else str(v).replace("|", "/")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def conflict_text(entry: dict) -> str:
    s, b = entry["stream"], entry["backfill"]
    text = f"stream {s['commits']} ok/{s['failures']} failed; backfill {b['commits']} ok/{b['failures']} failed"
    internal = {**entry.get("deltars_internal_retries", {})}
    for role, out in (("stream", s), ("backfill", b)):
        if out.get("pyiceberg_internal_retries"):
            internal[role] = out["pyiceberg_internal_retries"]
    internal = {k: v for k, v in internal.items() if v and k in ("stream", "backfill")}
    if internal:
        text += f" (after the library's own retries: {', '.join(f'{k} {v}' for k, v in internal.items())})"
    if s.get("landed_despite_error"):
        text += f"; {s['landed_despite_error']} stream commits landed despite an error (token)"
    for role, fatal in (("stream", s.get("fatal")), ("backfill", b.get("fatal"))):
        if fatal:
            text += f"; the {role} process cannot run: {fatal[:150]}"
    text += "; table correct" if entry.get("correct") else "; table NOT as replayed"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows the table grows to (default 2,000,000)")
    parser.add_argument("--batch-rows", type=int, default=5_000, help="rows per append (default 5,000)")
    parser.add_argument("--window", type=int, default=20, help="appends timed per window (default 20)")
    parser.add_argument("--reopen-appends", type=int, default=5, help="appends after each window by a new writer")
    parser.add_argument("--conflict-seconds", type=float, default=6.0, help="seconds per stream+backfill scenario")
    parser.add_argument("--backfill-batches", type=int, default=4, help="a backfill writes this many batches")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--skip", nargs="*", choices=("scaling", "conflicts", "s3"), default=[])
    args = parser.parse_args()

    RetryCounter()
    started = time.perf_counter()
    inputs = {
        "rows": args.rows,
        "batch_rows": args.batch_rows,
        "window": args.window,
        "reopen_appends": args.reopen_appends,
        "conflict_seconds": args.conflict_seconds,
        "backfill_rows": args.backfill_batches * args.batch_rows,
        "formats": args.formats,
        "versions": {},
    }
    for package in ("deltalake", "duckdb", "pyiceberg", "pyarrow", "moto"):
        with contextlib.suppress(Exception):
            inputs["versions"][package] = importlib.import_module(package).__version__
    extensions = {}
    for name in ("ducklake", "delta", "sqlite_scanner", "httpfs", "avro", "iceberg"):
        extensions[name] = "installed" if extension_path(name) else "not installed"
    inputs["duckdb_extension_wheels"] = extensions
    loads = {"start": load_average()}
    log(f"inputs {json.dumps(inputs)}")

    formats = []
    notes = []
    for fmt in args.formats:
        missing = [m for m in missing_extensions(fmt) if fmt != "iceberg"]
        if missing:
            notes.append(f"{fmt} skipped: duckdb-extension-{missing[0]}=={duckdb.__version__} is not installed")
            log(notes[-1])
        else:
            formats.append(fmt)

    rows = Rows(args.batch_rows)
    sample = rows.batch(0)
    inputs["bytes_per_row_in_arrow"] = round(sample.nbytes / sample.num_rows, 1)
    scaling: dict[str, dict] = {}
    conflicts: dict[str, list] = {}
    s3: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        if "scaling" not in args.skip:
            for fmt in formats:
                root = Path(tmp) / "scaling" / fmt
                root.mkdir(parents=True)
                log(f"{fmt}: appending {args.batch_rows:,}-row batches up to {args.rows:,} rows")
                scaling[fmt] = run_scaling(fmt, str(root), rows, args.rows, args.window, args.reopen_appends)
                shutil.rmtree(root, ignore_errors=True)
            loads["after_scaling"] = load_average()
        if "conflicts" not in args.skip:
            for fmt in formats:
                root = Path(tmp) / "conflicts" / fmt
                root.mkdir(parents=True)
                conflicts[fmt] = run_conflicts(fmt, str(root), rows, args.conflict_seconds, args.backfill_batches)
            loads["after_conflicts"] = load_average()
        if "s3" not in args.skip:
            s3 = run_s3(rows, str(Path(tmp) / "s3work"), formats)
            loads["after_s3"] = load_average()

    loads["end"] = load_average()
    total = time.perf_counter() - started

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{NAME}.json"
    results = []
    for fmt, res in scaling.items():
        for w in res["windows"]:
            results.append({"format": fmt, **w})
    path.write_text(
        json.dumps(
            {
                "benchmark": NAME,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "load_average": loads,
                "inputs": inputs,
                "results": results,
                "formats": {
                    fmt: {
                        "scaling": {k: v for k, v in scaling.get(fmt, {}).items() if k != "windows"},
                        "stream_and_backfill": conflicts.get(fmt, []),
                        "other_readers": OTHER_READERS[fmt],
                    }
                    for fmt in formats
                },
                "s3": s3,
                "notes": notes,
                "seconds": total,
                "peak_rss_mib": peak_rss_mib(),
            },
            indent=2,
            default=str,
        )
    )
    print(f"saved {path.relative_to(ROOT)}")
    # ---- report
    table_rows = []
    for fmt, res in scaling.items():
        for w in res["windows"]:
            table_rows.append(
                [
                    LABELS[fmt],
                    w["appends"],
                    w["table_rows"],
                    w["p50_ms"],
                    w["p95_ms"],
                    w["max_ms"],
                    w.get("open_p50_ms"),
                    w.get("reopen_p50_ms"),
                ]
            )
    print("\n## Append of one micro-batch as the table grows (ms)\n")
    print(
        markdown(
            ["format", "appends", "table rows", "p50", "p95", "max", "new writer: open p50", "open+append p50"],
            table_rows,
        )
    )

    summary_rows = []
    for fmt in formats:
        res = scaling.get(fmt, {})
        token_how = {
            "delta": "yes: Transaction(app_id, version) in the same commit; DeltaTable(path).transaction_version()",
            "ducklake": "yes: offsets table UPDATE in the same transaction as the INSERT",
            "iceberg": f"yes: snapshot summary property ({TOKEN_KEY}) on the append's snapshot; read by walking "
            "back from the current snapshot (lost if snapshots are expired before the writer commits again)",
        }
        token_how["ducklake_sqlite"] = token_how["ducklake"]
        comp = (
            f"{res.get('compact_s', 0):.1f} s, files {res.get('files_before')} -> {res.get('files_after')}; "
            f"scan {res.get('scan_s_before', 0):.2f} s -> {res.get('scan_s_after', 0):.2f} s"
            if "compact_s" in res
            else res.get("compaction", "")
        )
        if "duckdb_rows" in res:
            duck = f"yes, {res['duckdb_rows']:,} rows" + ("" if res["duckdb_rows"] == res["rows"] else " (WRONG)")
        else:
            duck = res.get("duckdb_error", "")
        summary_rows.append(
            [
                LABELS[fmt],
                token_how[fmt],
                res.get("token_read_ms"),
                "; ".join(f"{c['scenario']}: {conflict_text(c)}" for c in conflicts.get(fmt, [])),
                comp,
                duck,
            ]
        )
    print("\n## Exactly-once token, stream + backfill at once, compaction, DuckDB\n")
    print(
        markdown(
            [
                "format",
                "token atomic with the rows",
                "token read ms (new reader)",
                "stream + backfill",
                "compaction",
                "DuckDB reads it",
            ],
            summary_rows,
        )
    )
    print("\n## How conflicts were reported\n")
    for fmt, entries in conflicts.items():
        for entry in entries:
            for role in ("stream", "backfill"):
                for err, n in entry[role]["errors"].items():
                    print(f"- {LABELS[fmt]} [{entry['scenario']}] {role} x{n}: {err}")
                if entry[role].get("fatal"):
                    print(f"- {LABELS[fmt]} [{entry['scenario']}] {role} could not run: {entry[role]['fatal']}")
    if s3:
        print("\n## S3 (moto server on loopback)\n")
        print(f"- moto put-if-absent (If-None-Match: *): {s3.get('moto_if_none_match')}")
        for name, entry in s3.get("delta", {}).items():
            print(f"- Delta, {name}: {json.dumps(entry)}")
        for fmt in ("ducklake", "iceberg"):
            if fmt in s3:
                print(f"- {fmt}: {json.dumps(s3[fmt])}")
    print("\n## Other readers (documentation)\n")
    for fmt in formats:
        print(f"- {LABELS[fmt]}: {OTHER_READERS[fmt]}")
    for note in notes:
        print(f"- {note}")
    print(f"\nload average (1, 5, 15 min): {json.dumps(loads)}; total {total:.0f} s; peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
