"""DuckDB: the query engine over the lake, and the file where analysts find every table as a view."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster import ConfigurableResource

from resources.duckdb_lake import extension_path


class WarehouseResource(ConfigurableResource):
    """The DuckDB database file at `database` (DUCKDB_DATABASE)."""

    database: str = "data/warehouse.duckdb"

    @contextmanager
    def connect(self, lock_timeout_s: float = 60.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the database file. DuckDB admits one writing process at a time, so a
        concurrent run waits for the lock instead of failing."""
        deadline = time.monotonic() + lock_timeout_s
        while True:
            try:
                conn = duckdb.connect(self.database)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            conn.execute("SET TimeZone = 'UTC'")
            load_delta(conn)
            yield conn
        finally:
            conn.close()


def engine() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for transformations over files (no lock on the database file), with one
    thread per core this process may run on (DuckDB would count every core of the machine)."""
    conn = duckdb.connect(config={"threads": len(os.sched_getaffinity(0))})
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET enable_progress_bar = false")
    return conn


def load_delta(conn: duckdb.DuckDBPyConnection) -> None:
    """Make `delta_scan` available on `conn`, for the views over the lake's Delta tables."""
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute(f"LOAD '{extension_path('delta')}'")
