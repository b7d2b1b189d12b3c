"""PostgreSQL access: the commerce source database the warehouse extracts from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from dagster import ConfigurableResource


class PostgresResource(ConfigurableResource):
    """A PostgreSQL database (POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD)."""

    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "commerce"
    user: str = "commerce"
    password: str = "commerce"

    @contextmanager
    def connect(self) -> Iterator[psycopg2.extensions.connection]:
        """A connection that commits on success and rolls back on error."""
        conn = psycopg2.connect(
            host=self.host, port=self.port, dbname=self.database, user=self.user, password=self.password
        )
        try:
            with conn:
                yield conn
        finally:
            conn.close()
