"""How the loan features are stored: one Delta table, every feature version side by side.

    features/loan_risk_features   partitioned by feature_version: the rows version N computed

A version's rows are its partition; older versions are never rewritten by a newer one, and each version
reads back with exactly its own columns (a later version's new columns read as absent, not null). Each
commit records the version's next seq as its token (app id `v<N>`), in the same commit as the rows.

An increment of version N reads its token (O(1)), the state of the moving windows from the tables' tail
(the feature row just before it and the last 100 scores: O(1)), the cleaned rows after it, and appends
one commit. A crash before the commit leaves nothing; a retry computes the same rows again. Two writers
of one version carry the same app id, so the later commit fails and starts over: no lock.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from assets.loans.logic import FEATURE_VERSIONS, WINDOWS, FeatureVersion, WindowState, compute_features, window_state
from assets.loans.names import CLEANED_DATASET, FEATURES_DATASET
from assets.streaming import APPEND_ATTEMPTS
from resources import LakeResource
from resources.lake import CommitFailedError, write_table
from resources.warehouse import engine

KEY_COLUMNS = ["seq", "application_date", "risk_score", "risk_score_missing", "risk_scores_seen"]
VERSION_COLUMNS = ["feature_version", "schema_version", "code_version"]
APPLICATION_COLUMNS = [
    "amount_requested",
    "loan_title",
    "debt_to_income_pct",
    "debt_to_income_irregular",
    "zip_code",
    "state",
    "employment_length",
    "employment_years",
    "policy_code",
]
COLUMN_TYPES = {
    "seq": pa.int64(),
    "application_date": pa.date32(),
    "risk_score": pa.int64(),
    "risk_score_missing": pa.bool_(),
    "risk_scores_seen": pa.int64(),
    "feature_version": pa.int64(),
    "schema_version": pa.int64(),
    "code_version": pa.string(),
}


def columns_of(version: int) -> list[str]:
    """Exactly the columns of feature version `version`, in order."""
    return [*KEY_COLUMNS, *FEATURE_VERSIONS[version].features, *VERSION_COLUMNS]


def schema_of(version: int) -> pa.Schema:
    return pa.schema([(c, COLUMN_TYPES.get(c, pa.float64())) for c in columns_of(version)])


def version_token(version: int) -> str:
    """The app id under which the features table records version `version`'s next seq."""
    return f"v{version}"


def read_cleaned(lake: LakeResource, from_seq: int, columns: list[str]) -> pd.DataFrame:
    """Cleaned applications from `from_seq` on, in seq order; only the files that can hold them are read."""
    if lake.table(CLEANED_DATASET) is None:
        return pd.DataFrame({c: [] for c in columns})
    rows = lake.scan(CLEANED_DATASET, columns=columns, where=pads.field("seq") >= from_seq)
    return rows.sort_by("seq").to_pandas()


def recent_scores(lake: LakeResource, before: int, count: int) -> np.ndarray:
    """The last `count` scores (oldest first) of the applications before seq `before`: a look back from
    the tail, widened until it holds them, so it reads a few files whatever the history's length."""
    span = 4 * count
    while True:
        low = max(before - span, 0)
        where = (pads.field("seq") >= low) & (pads.field("seq") < before) & pads.field("risk_score").is_valid()
        rows = lake.scan(CLEANED_DATASET, columns=["seq", "risk_score"], where=where)
        if rows.num_rows >= count or low == 0:
            return rows.sort_by("seq")["risk_score"].to_numpy()[-count:].astype(np.int64)
        span *= 4


def window_before(lake: LakeResource, version: FeatureVersion, next_seq: int) -> WindowState:
    """The windows' state before seq `next_seq`, from the tables: the feature row just before it (of this
    version, else of the version it continued from) gives the scores seen and the EMA; the cleaned table
    gives the last scores."""
    if next_seq == 0:
        return WindowState()
    for number in range(version.version, 0, -1):
        where = (pads.field("feature_version") == number) & (pads.field("seq") == next_seq - 1)
        row = lake.scan(FEATURES_DATASET, where=where).to_pylist()
        if row or FEATURE_VERSIONS[number].start != "continue":
            break
    if not row:
        raise LookupError(f"no feature row at seq {next_seq - 1} for version {version.version} to continue from")
    source = FEATURE_VERSIONS[row[0]["feature_version"]]
    emas = [row[0][c] for c, logic in source.features.items() if logic == "ema50"]
    if "ema50" in version.features.values() and not emas:
        raise ValueError(
            f"feature version {version.version} cannot continue an EMA that version {source.version} never "
            "computed: give it start='recompute'"
        )
    ema = emas[0] if emas and emas[0] is not None and not np.isnan(emas[0]) else None
    recent = recent_scores(lake, next_seq, max(WINDOWS.values()))
    return window_state(recent, int(row[0]["risk_scores_seen"]), ema)


@dataclass
class FeatureUpdate:
    version: int
    first_seq: int
    rows: int
    started: str  # "continued from v<N>", "recomputed from the first application", "incremental"
    frame: pd.DataFrame


def update_features(lake: LakeResource, version: FeatureVersion, recompute: bool = False) -> FeatureUpdate:
    """Bring version `version` up to the last cleaned application (see the module doc), starting over when
    a concurrent writer of the version committed first."""
    for attempt in range(APPEND_ATTEMPTS):
        try:
            return _update_features(lake, version, recompute)
        except CommitFailedError:
            if attempt == APPEND_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _update_features(lake: LakeResource, version: FeatureVersion, recompute: bool) -> FeatureUpdate:
    """A version without a token starts as its `start` says: a new column continues from the previous
    version's last row (older rows keep their version), a logic change recomputes every row (the
    backfill), replacing only that version's rows."""
    table_version = lake.version(FEATURES_DATASET)
    ids = [version_token(v) for v in FEATURE_VERSIONS]
    held = lake.tokens(FEATURES_DATASET, ids)
    token = None if recompute else held.get(version_token(version.version))
    next_seq, started, replace = token, "incremental", False
    if next_seq is None:
        previous = held.get(version_token(version.version - 1)) if version.start == "continue" else None
        if previous is not None and not recompute:
            next_seq, started = previous, f"continued from v{version.version - 1} at seq {previous}"
        else:
            next_seq, started, replace = 0, "recomputed from the first application", True
    rows = read_cleaned(lake, next_seq, ["seq", "application_date", "risk_score", "risk_score_missing"])
    if rows.empty and token is not None:
        return FeatureUpdate(version.version, next_seq, 0, started, rows)
    rows["risk_score"] = rows["risk_score"].astype("Int64")
    features, _ = compute_features(rows["risk_score"], version, window_before(lake, version, next_seq))
    frame = pd.concat([rows, features], axis=1).assign(
        feature_version=version.version,
        schema_version=version.schema_version,
        code_version=version.code_version,
    )[columns_of(version.version)]
    table = pa.Table.from_pandas(frame, preserve_index=False).cast(schema_of(version.version))
    write_table(
        lake,
        FEATURES_DATASET,
        table,
        tokens={version_token(version.version): next_seq + len(frame)},
        replace_where=f"feature_version = {version.version}" if replace and table_version is not None else None,
        partition_by=["feature_version"],
        version=table_version,
    )
    return FeatureUpdate(version.version, next_seq, len(frame), started, frame)


def version_stats(lake: LakeResource) -> dict[int, dict]:
    """Per stored version: its rows, first seq and when its oldest rows were written, from the table's
    log (no data file is read)."""
    table = lake.table(FEATURES_DATASET)
    if table is None:
        return {}
    actions = pa.table(table.get_add_actions(flatten=True))
    stats: dict[int, dict] = {}
    for number, rows, first, written in zip(
        actions["partition.feature_version"].to_pylist(),
        actions["num_records"].to_pylist(),
        actions["min.seq"].to_pylist(),
        actions["modification_time"].to_pylist(),
        strict=True,
    ):
        at = dt.datetime.fromtimestamp(written / 1000, dt.UTC).isoformat(timespec="seconds")
        entry = stats.setdefault(int(number), {"rows": 0, "first_seq": first, "first_computed_at": at})
        entry["rows"] += int(rows or 0)
        entry["first_seq"] = min(entry["first_seq"], first)
        entry["first_computed_at"] = min(entry["first_computed_at"], at)
    return {v: s for v, s in stats.items() if s["rows"]}


def stored_versions(lake: LakeResource) -> list[int]:
    return sorted(version_stats(lake))


def _dates(start: str | None, end: str | None) -> pads.Expression | None:
    where = None
    if start is not None:
        where = pads.field("application_date") >= pa.scalar(dt.date.fromisoformat(start))
    if end is not None:
        upper = pads.field("application_date") <= pa.scalar(dt.date.fromisoformat(end))
        where = upper if where is None else where & upper
    return where


def _features(lake: LakeResource, version: int, start: str | None, end: str | None) -> pa.Table:
    where = pads.field("feature_version") == version
    dates = _dates(start, end)
    rows = lake.scan(FEATURES_DATASET, columns=columns_of(version), where=where if dates is None else where & dates)
    return rows.cast(schema_of(version))


def read_features(lake: LakeResource, version: int, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Feature version `version` exactly as it was computed, in seq order, optionally for application dates
    in [start, end]. A version never computed reads as empty with its own columns."""
    if version not in stored_versions(lake):
        return pd.DataFrame({c: [] for c in columns_of(version)})
    return _query("SELECT * FROM features ORDER BY seq", features=_features(lake, version, start, end))


def training_set(lake: LakeResource, version: int, start: str, end: str) -> pd.DataFrame:
    """The training set of feature version `version` for applications dated `start`..`end` (inclusive):
    the version's columns plus the application attributes, point-in-time correct by construction (each
    feature uses only applications that arrived before it). SQL: view `loan_training_set_v<N>`."""
    if version not in stored_versions(lake):
        raise LookupError(f"feature version {version} has no stored rows; materialize loan_risk_features at it")
    features = _features(lake, version, start, end)
    seqs = pc.min_max(features["seq"]).as_py() if features.num_rows else {"min": 0, "max": -1}
    where = (pads.field("seq") >= seqs["min"]) & (pads.field("seq") <= seqs["max"])
    applications = lake.scan(CLEANED_DATASET, columns=["seq", *APPLICATION_COLUMNS], where=where)
    return _query(
        "SELECT f.*, a.* EXCLUDE (seq) FROM features f JOIN applications a USING (seq) ORDER BY seq",
        features=features,
        applications=applications,
    )


def _query(sql: str, **tables: pa.Table) -> pd.DataFrame:
    with engine() as conn:
        for name, table in tables.items():
            conn.register(name, table)
        return conn.execute(sql).df()


def publish_views(lake: LakeResource, conn: duckdb.DuckDBPyConnection) -> list[str]:
    """DuckDB views for analysts and data scientists over the Delta tables (each query reads their current
    version): the applications, and per stored version its feature table and training set with exactly
    that version's columns. DuckDB reads the lake here only on local disk (no S3 credentials)."""
    if lake.is_s3 or lake.table(CLEANED_DATASET) is None:
        return []
    applications = f"delta_scan('{lake.uri(CLEANED_DATASET)}')"
    conn.execute(f"CREATE OR REPLACE VIEW loan_applications AS SELECT * FROM {applications}")
    views = ["loan_applications"]
    attrs = ", ".join(f"a.{c}" for c in APPLICATION_COLUMNS)
    for version in stored_versions(lake):
        cols = ", ".join(f'"{c}"' for c in columns_of(version))
        features = f"SELECT {cols} FROM delta_scan('{lake.uri(FEATURES_DATASET)}') WHERE feature_version = {version}"
        conn.execute(f"CREATE OR REPLACE VIEW loan_risk_features_v{version} AS {features}")
        conn.execute(
            f"CREATE OR REPLACE VIEW loan_training_set_v{version} AS "
            f"SELECT f.*, {attrs} FROM loan_risk_features_v{version} f JOIN {applications} a USING (seq)"
        )
        views += [f"loan_risk_features_v{version}", f"loan_training_set_v{version}"]
    return views
