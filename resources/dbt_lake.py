"""The dbt-duckdb plugin that lets dbt's models read the lake's Delta tables (`delta_scan`), on local
disk or S3, exactly as the platform's own DuckDB connections do. dbt/profiles.yml puts this folder on
dbt's module path and names this module, so dbt imports it without the resources package."""

import os

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb_lake import attach_lake  # pyright: ignore[reportMissingImports]  (this folder is dbt's module path)


class Plugin(BasePlugin):
    def configure_connection(self, conn):
        attach_lake(conn, os.environ.get("LAKE_ROOT", "../data/lake"))
