"""The lake: every layer of every domain under one root (LAKE_ROOT): a local folder by default, or
`s3://bucket/prefix` on S3 or any S3-compatible server.

Tables are Delta Lake tables (delta-rs): each write is one atomic commit, readers see whole commits
only, every version stays readable (time travel), and small files are compacted in place. A commit
can carry idempotency tokens (Delta "app transactions": an application id and a version, here a
Kafka partition and the last offset written), so a retried write of the same range is recognised and
skipped: exactly-once without manifests or marker files. Spark, Trino, DuckDB (`delta_scan`) and
Polars read the same tables.

Plain objects (landed files, rendered charts) are written atomically too (a local temporary file
renamed into place, or one S3 PUT)."""

import contextlib
import datetime as dt
import functools
import io
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from dagster import ConfigurableResource
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from resources.faults import failpoint

# Temporary files of interrupted local writes are removed once they are this old (seconds): a live
# writer never takes that long, and a crashed one never comes back for them.
STALE_TMP_SECONDS = 3600


class LakeResource(ConfigurableResource):
    """Files under `root`. Every write is atomic (a local temporary file renamed into place, or one S3
    PUT), so readers never see a partial file; names are deterministic, so rewriting replaces.

    On S3, credentials and region come from the standard AWS environment (AWS_ACCESS_KEY_ID, ...);
    `s3_endpoint_url` (or AWS_ENDPOINT_URL_S3) points at an S3-compatible server."""

    root: str = "data/lake"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    # -- where things are -------------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def _key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in parts if p)

    def uri(self, *parts: str) -> str:
        return f"{self.root.rstrip('/')}/{self._key(*parts)}" if self.is_s3 else str(self.path(*parts))

    def path(self, *parts: str) -> Path:
        """The local path of `parts` (local lakes only: on S3 use the object methods)."""
        if self.is_s3:
            raise ValueError(f"{self.root} is on S3: local paths are not available; use read_dataset/list_keys")
        return Path(self.root).joinpath(*parts)

    def files(self, *parts: str, pattern: str = "*.parquet") -> list[Path]:
        folder = self.path(*parts)
        return sorted(folder.glob(pattern)) if folder.exists() else []

    # -- bytes --------------------------------------------------------------------------------------
    def put(self, data: bytes, *parts: str) -> str:
        if self.is_s3:
            bucket, key = self._s3_location(*parts)
            self._client().put_object(Bucket=bucket, Key=key, Body=data)
            return self.uri(*parts)
        target = self.path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp()
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        failpoint("mid_file")
        os.replace(tmp, target)
        return str(target)

    def get(self, *parts: str) -> bytes | None:
        if self.is_s3:
            bucket, key = self._s3_location(*parts)
            try:
                return self._client().get_object(Bucket=bucket, Key=key)["Body"].read()
            except self._client().exceptions.NoSuchKey:
                return None
        target = self.path(*parts)
        return target.read_bytes() if target.exists() else None

    def exists(self, *parts: str) -> bool:
        if self.is_s3:
            bucket, key = self._s3_location(*parts)
            try:
                self._client().head_object(Bucket=bucket, Key=key)
                return True
            except self._client().exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return self.path(*parts).is_file()

    def list_keys(self, *parts: str, suffix: str = ".parquet") -> list[str]:
        """Keys (relative to `parts`) of every object under the folder `parts`, recursively, sorted."""
        if self.is_s3:
            bucket, prefix = self._s3_location(*parts)
            prefix = prefix.rstrip("/") + "/"
            keys = []
            for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys += [o["Key"][len(prefix) :] for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
            return sorted(keys)
        folder = self.path(*parts)
        if not folder.exists():
            return []
        return sorted(
            str(p.relative_to(folder)) for p in folder.rglob(f"*{suffix}") if p.is_file() and "_tmp" not in p.parts
        )

    def delete(self, *parts: str) -> None:
        """Delete one object, or everything under a folder (tables included)."""
        prefix = self._cache_key(self.uri(*parts))
        for key in [k for k in _TABLES if k == prefix or k.startswith(prefix.rstrip("/") + "/")]:
            del _TABLES[key]
        if self.is_s3:
            bucket, key = self._s3_location(*parts)
            client = self._client()
            client.delete_object(Bucket=bucket, Key=key)
            for name in self.list_keys(*parts, suffix=""):
                client.delete_object(Bucket=bucket, Key=f"{key.rstrip('/')}/{name}")
            return
        target = self.path(*parts)
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)

    # -- tables and documents -------------------------------------------------------------------------
    def write_parquet(self, table: pa.Table, *parts: str) -> str:
        buffer = io.BytesIO()
        # Dictionary encoding pays off for repeated values, not for raw payloads: it would be tried
        # and abandoned on every page of them.
        repeated = [f.name for f in table.schema if not pa.types.is_binary(f.type)]
        pq.write_table(table, buffer, compression="zstd", use_dictionary=repeated)
        return self.put(buffer.getvalue(), *parts)

    def read_dataset(self, *parts: str, columns: list[str] | None = None) -> pa.Table | None:
        """Every Parquet file under the folder `parts` as one table (None when there is none);
        `columns` reads only those."""
        keys = self.list_keys(*parts)
        if not keys:
            return None
        if self.is_s3:
            tables = [pq.read_table(io.BytesIO(self.get(*parts, k) or b""), columns=columns) for k in keys]
        else:
            tables = [pq.read_table(self.path(*parts, k), columns=columns) for k in keys]
        return pa.concat_tables(tables, promote_options="default")

    def write_json(self, value: object, *parts: str) -> None:
        self.put(json.dumps(value, sort_keys=True).encode(), *parts)

    def read_json(self, *parts: str) -> object | None:
        data = self.get(*parts)
        return json.loads(data) if data is not None else None

    def replace_dir(self, files: dict[str, pa.Table], *parts: str) -> None:
        """Make the folder `parts` hold exactly `files` (name -> table): the new files are written
        first, then files that are no longer part of it are removed."""
        for name, table in files.items():
            self.write_parquet(table, *parts, name)
        for stale in set(self.list_keys(*parts, suffix="")) - set(files):
            self.delete(*parts, stale)

    # -- Delta tables ---------------------------------------------------------------------------------
    def storage_options(self) -> dict[str, str] | None:
        """delta-rs settings for S3 (credentials come from the standard AWS environment)."""
        if not self.is_s3:
            return None
        endpoint = self.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options = {"AWS_REGION": self.s3_region or os.environ.get("AWS_REGION", "us-east-1")}
        if endpoint:
            options |= {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": str(endpoint.startswith("http:")).lower()}
        # Commits use S3's conditional writes (If-None-Match), so concurrent writers cannot overwrite
        # each other's log entries; no external lock service is needed.
        options["conditional_put"] = "etag"
        return options

    def table(self, name: str) -> DeltaTable | None:
        """The current version of table `name` (None before its first commit). Kept open per process
        and brought up to date incrementally: a following run reads only the log entries it has not seen."""
        uri = self.uri(name)
        cached = _TABLES.get(self._cache_key(uri))
        if cached is not None:
            cached.update_incremental()
            return cached
        try:
            table = DeltaTable(uri, storage_options=self.storage_options())
        except TableNotFoundError:
            return None
        _TABLES[self._cache_key(uri)] = table
        return table

    def version(self, name: str) -> int | None:
        """The current version of table `name` (None before its first commit)."""
        table = self.table(name)
        return table.version() if table is not None else None

    def token(self, name: str, app_id: str) -> int | None:
        """The last idempotency version committed to `name` under `app_id`, if any."""
        return self.tokens(name, [app_id])[app_id]

    def tokens(self, name: str, app_ids: list[str], version: int | None = None) -> dict[str, int | None]:
        """`token` for several app ids, from one version of the table (the current one by default)."""
        table = self.table(name) if version is None else self._at(name, version)
        return {a: table.transaction_version(a) if table is not None else None for a in app_ids}

    def _at(self, name: str, version: int) -> DeltaTable:
        return DeltaTable(self.uri(name), version=version, storage_options=self.storage_options())

    def append(self, name: str, rows: pa.Table, *, tokens: dict[str, int] | None = None) -> None:
        """Append `rows` to table `name` (partitioned by `event_date`) in one commit, recording `tokens`
        (app id -> version) in the same commit. An empty `rows` still commits the tokens."""
        commit = CommitProperties(app_transactions=[Transaction(a, v) for a, v in (tokens or {}).items()])
        target = self.table(name) or self.uri(name)
        write_deltalake(
            target,
            rows,
            mode="append",
            partition_by=["event_date"],
            storage_options=self.storage_options(),
            commit_properties=commit,
        )

    def replace_dates(
        self, name: str, rows: pa.Table, dates: list[str], *, tokens: dict[str, int] | None = None, version=None
    ) -> None:
        """Make the `dates` of table `name` hold exactly `rows`, in one commit; other dates are untouched.
        `version`: the table version the rows were computed from; if a concurrent writer added rows to
        these dates since, the commit fails (CommitFailedError) and the caller computes again."""
        commit = CommitProperties(app_transactions=[Transaction(a, v) for a, v in (tokens or {}).items()])
        table = self.table(name)
        if table is not None and version is not None and table.version() != version:
            table = self._at(name, version)
        write_deltalake(
            table if table is not None else self.uri(name),
            rows,
            mode="overwrite",
            predicate=" OR ".join(f"event_date = '{d}'" for d in dates) or "false",
            partition_by=["event_date"],
            storage_options=self.storage_options(),
            commit_properties=commit,
        )
        _TABLES.pop(self._cache_key(self.uri(name)), None)  # the cached snapshot may be the older version

    def scan(
        self,
        name: str,
        dates: list[str] | None = None,
        *,
        columns: list[str] | None = None,
        where: pads.Expression | None = None,
        schema: pa.Schema | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Rows of table `name` (only `dates`' partitions when given), with `columns` and the filter
        `where` pushed down to the files (their min/max statistics skip what cannot match). An empty
        table in `schema` when the table does not exist yet. `version`: as of that table version."""
        table = self.table(name) if version is None else self._at(name, version)
        if table is None:
            if schema is None:
                raise FileNotFoundError(f"table {self.uri(name)} has no commit yet")
            return (schema if columns is None else pa.schema([schema.field(c) for c in columns])).empty_table()
        dataset = table.to_pyarrow_dataset()
        if dates is not None:  # a filter on the partition column: files of other dates are not opened
            in_dates = pads.field("event_date").isin(pa.array([dt.date.fromisoformat(d) for d in dates]))
            where = in_dates if where is None else in_dates & where
        return dataset.to_table(columns=columns, filter=where)

    def count_by_date(self, name: str, dates: list[str] | None = None) -> dict[str, int]:
        """Rows per date partition from the table's log (file statistics): no data file is read."""
        table = self.table(name)
        if table is None:
            return {}
        actions = pa.table(table.get_add_actions(flatten=True))
        counts: dict[str, int] = {}
        for date, rows in zip(
            actions["partition.event_date"].to_pylist(), actions["num_records"].to_pylist(), strict=True
        ):
            key = str(date)
            if dates is None or key in dates:
                counts[key] = counts.get(key, 0) + int(rows)
        return counts

    def compact(self, name: str, dates: list[str]) -> dict:
        """Merge the small files of `dates` (one per micro-batch) into large ones: a commit that
        changes no rows, safe beside a streaming writer. Replaced files stay for time travel until
        vacuumed."""
        table = self.table(name)
        if table is None or not dates:
            return {}
        metrics: dict = {}
        for date in dates:
            try:
                metrics[date] = table.optimize.compact(partition_filters=[("event_date", "=", date)])
            except CommitFailedError as conflict:  # a writer replaced the date meanwhile: compact next time
                metrics[date] = {"skipped": str(conflict)}
        return metrics

    # -- internals ------------------------------------------------------------------------------------
    def _cache_key(self, uri: str) -> str:
        return f"{self.s3_endpoint_url or ''} {uri}"

    def _s3_location(self, *parts: str) -> tuple[str, str]:
        bucket, _, prefix = self.root.removeprefix("s3://").partition("/")
        return bucket, self._key(prefix, *parts)

    def _client(self):
        return _s3_client(self.s3_endpoint_url, self.s3_region)

    def _tmp(self) -> Path:
        # Temporary files live outside every dataset folder, so no reader of a dataset sees them.
        tmp = Path(self.root) / "_tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for stale in tmp.iterdir():
            # Another process may rename or remove its own file between the listing and the stat.
            with contextlib.suppress(FileNotFoundError):
                if time.time() - stale.stat().st_mtime > STALE_TMP_SECONDS:
                    stale.unlink(missing_ok=True)
        return tmp / f"{uuid.uuid4().hex}.part"


# Open Delta tables of this process, by endpoint and URI.
_TABLES: dict[str, DeltaTable] = {}

__all__ = ["CommitFailedError", "LakeResource"]


@functools.cache
def _s3_client(endpoint_url: str | None, region: str | None):
    from dagster_aws.s3 import S3Resource  # imported on first use: it costs every code load a second

    return S3Resource(endpoint_url=endpoint_url, region_name=region).get_client()


def write_table(
    lake: LakeResource,
    name: str,
    rows: pa.Table,
    *,
    tokens: dict[str, int] | None = None,
    replace_where: str | None = None,
    partition_by: list[str] | None = None,
    version: int | None = None,
) -> None:
    """One commit to table `name`, for tables not partitioned by date: `rows` appended, or replacing the
    rows that match the SQL predicate `replace_where` ("true": all), with `tokens` (app id -> version) in
    the same commit. New columns join the table's schema. `version`: the table version the rows were
    computed from; a commit since then that carried one of the same app ids fails this one
    (CommitFailedError), so writers that share an app id take turns without a lock."""
    commit = CommitProperties(app_transactions=[Transaction(a, v) for a, v in (tokens or {}).items()])
    table = lake.table(name)
    if table is not None and version is not None and table.version() != version:
        table = lake._at(name, version)
    write_deltalake(
        table if table is not None else lake.uri(name),
        rows,
        mode="append" if replace_where is None else "overwrite",
        predicate=None if replace_where in (None, "true") else replace_where,
        partition_by=partition_by,
        schema_mode="merge",
        storage_options=lake.storage_options(),
        commit_properties=commit,
    )
    if replace_where is not None:
        _TABLES.pop(lake._cache_key(lake.uri(name)), None)  # the cached snapshot may be the older version
