"""DuckDB over the lake's Delta tables: `delta_scan` from the delta extension, and on S3 the httpfs
extension with a secret for the lake's endpoint. Both extensions come from their PyPI wheels (DuckDB
would download them, which fails offline).

Imports nothing of the platform: dbt's process loads this module (through `dbt_lake`) without the
resources package, whose import would cost every dbt command seconds."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import duckdb


@functools.cache
def extension_path(name: str) -> str:
    """The extension file shipped in the `duckdb-extension-<name>` wheel."""
    import importlib

    package = importlib.import_module(f"duckdb_extension_{name}")
    return str(next(Path(package.__file__ or "").parent.rglob("*.duckdb_extension")))


def attach_lake(
    conn: duckdb.DuckDBPyConnection, root: str, endpoint: str | None = None, region: str | None = None
) -> None:
    """Make `delta_scan` read the lake at `root` on `conn`. On S3, credentials come from the standard
    AWS environment, and `endpoint` (else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) names an
    S3-compatible server."""
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute(f"LOAD '{extension_path('delta')}'")
    if not root.startswith("s3://"):
        return
    conn.execute(f"LOAD '{extension_path('httpfs')}'")
    env = os.environ
    endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    options = {
        "KEY_ID": env.get("AWS_ACCESS_KEY_ID", ""),
        "SECRET": env.get("AWS_SECRET_ACCESS_KEY", ""),
        "SESSION_TOKEN": env.get("AWS_SESSION_TOKEN", ""),
        "REGION": region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    if endpoint:  # an S3-compatible server: its host, path-style addressing, TLS as its URL says
        options |= {"ENDPOINT": endpoint.split("://", 1)[-1].rstrip("/"), "URL_STYLE": "path"}
        options |= {"USE_SSL": str(not endpoint.startswith("http:")).lower()}
    settings = ", ".join(f"{k} '{v}'" if k != "USE_SSL" else f"{k} {v}" for k, v in options.items())
    conn.execute(f"CREATE OR REPLACE SECRET lake (TYPE s3, {settings})")
