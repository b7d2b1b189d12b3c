"""The lake: every layer of every domain under one root (LAKE_ROOT): a local folder by default, or
`s3://bucket/prefix` on S3 or any S3-compatible server.

Tables are Delta Lake tables (delta-rs): each write is one atomic commit, readers see whole commits
only, every version stays readable (time travel), and small files are compacted in place. A commit
can carry idempotency tokens (Delta "app transactions": an application id and a version, here a
Kafka partition and the last offset written), so a retried write of the same range is recognised and
skipped: exactly-once without manifests or marker files. Spark, Trino, DuckDB (`delta_scan`) and
Polars read the same tables."""

import datetime as dt
import functools
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
from dagster import ConfigurableResource
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError


class LakeResource(ConfigurableResource):
    """The Delta tables under `root`: every write one atomic commit, every read one version.

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
            raise ValueError(f"{self.root} is on S3: local paths are not available; use the table methods")
        return Path(self.root).joinpath(*parts)

    def put(self, data: bytes, *parts: str) -> str:
        """Write one plain object (a rendered chart) whole or not at all: one S3 PUT, or a local temporary
        file renamed into place. Returns its URI."""
        if self.is_s3:
            bucket, key = self._s3_location(*parts)
            self._client().put_object(Bucket=bucket, Key=key, Body=data)
            return self.uri(*parts)
        target = self.path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        partial.write_bytes(data)
        partial.replace(target)
        return str(target)

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
        # An unreachable store fails the run within seconds, clearly, instead of retrying for minutes: the
        # run commits nothing, and the sensor asks for the same range again on its next tick.
        options |= {"max_retries": "3", "retry_timeout": "20s"}
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

    def _as_read(self, name: str, version: int | None) -> DeltaTable | None:
        """The table as of `version` (the current one when None), so that a commit computed from that
        version fails if a conflicting commit landed since; None before the first commit."""
        table = self.table(name)
        if table is not None and version is not None and table.version() != version:
            table = self._at(name, version)
        return table

    def _at(self, name: str, version: int) -> DeltaTable:
        return DeltaTable(self.uri(name), version=version, storage_options=self.storage_options())

    def append(
        self, name: str, rows: pa.Table, *, tokens: dict[str, int] | None = None, change_feed: bool = False
    ) -> None:
        """Append `rows` to table `name` (partitioned by `event_date`) in one commit, recording `tokens`
        (app id -> version) in the same commit. An empty `rows` still commits the tokens. `change_feed`:
        a table created here records its changes (`changes`)."""
        commit = _commit(tokens)
        target = self.table(name) or self.uri(name)
        write_deltalake(
            target,
            rows,
            mode="append",
            partition_by=["event_date"],
            storage_options=self.storage_options(),
            commit_properties=commit,
            configuration=_CHANGE_FEED if change_feed and isinstance(target, str) else None,
        )

    def replace_dates(
        self,
        name: str,
        rows: pa.Table,
        dates: list[str],
        *,
        tokens: dict[str, int] | None = None,
        version=None,
        change_feed: bool = False,
    ) -> None:
        """Make the `dates` of table `name` hold exactly `rows`, in one commit; other dates are untouched.
        `version`: the table version the rows were computed from; if a concurrent writer added rows to
        these dates since, the commit fails (CommitFailedError) and the caller computes again."""
        commit = _commit(tokens)
        table = self._as_read(name, version)
        write_deltalake(
            table if table is not None else self.uri(name),
            rows,
            configuration=_CHANGE_FEED if change_feed and table is None else None,
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

    def changes(self, name: str, after_version: int, to_version: int) -> pa.Table:
        """The rows committed to table `name` after `after_version` up to `to_version` (its change feed):
        inserted rows, and deleted ones where a commit replaced a date, with `_change_type`."""
        table = self._at(name, to_version)
        changes = pa.table(table.load_cdf(starting_version=after_version + 1, ending_version=to_version))
        # The change feed comes with string views, which not every Arrow kernel takes: plain strings.
        plain = [pa.field(f.name, pa.string()) if f.type == pa.string_view() else f for f in changes.schema]
        return changes.cast(pa.schema(plain))

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


# Open Delta tables of this process, by endpoint and URI.
_TABLES: dict[str, DeltaTable] = {}

__all__ = ["CommitFailedError", "LakeResource"]


_CHANGE_FEED = {"delta.enableChangeDataFeed": "true"}


def _commit(tokens: dict[str, int] | None) -> CommitProperties:
    """Commit properties recording `tokens` (app id -> version) as Delta app transactions."""
    return CommitProperties(app_transactions=[Transaction(a, v) for a, v in (tokens or {}).items()])


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
    commit = _commit(tokens)
    table = lake._as_read(name, version)
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
