"""Versioned feature storage: one dataset per feature version, never overwritten by another version.

    features/loan_risk_features/v<N>/seq-<first>-<last>.parquet   rows computed by version N
    features/loan_risk_features/v<N>/_state.json                   next seq and the trailing window

An increment reads the version's state (O(1)), the cleaned rows after it, writes one file named after its
seq range, then the new state. A crash in between leaves a file beyond the state: the retry deletes it
and writes the same range again, so nothing is counted twice.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assets.loans.logic import FEATURE_VERSIONS, FeatureVersion, WindowState, compute_features
from assets.loans.names import CLEANED_DATASET
from resources import LakeResource
from resources.warehouse import engine

FEATURES_DATASET = "features/loan_risk_features"
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
_SEQ_FILE = re.compile(r"seq-(\d+)-(\d+)\.parquet$")


def columns_of(version: int) -> list[str]:
    """Exactly the columns of feature version `version`, in order."""
    return [*KEY_COLUMNS, *FEATURE_VERSIONS[version].features, *VERSION_COLUMNS]


def seq_files(lake: LakeResource, *parts: str) -> list[tuple[int, int, Path]]:
    found = [(_SEQ_FILE.search(p.name), p) for p in lake.files(*parts, pattern="seq-*.parquet")]
    return sorted((int(m[1]), int(m[2]), p) for m, p in found if m)


def seq_file_name(first: int, last: int) -> str:
    return f"seq-{first:012d}-{last:012d}.parquet"


@contextmanager
def loans_lock(lake: LakeResource) -> Iterator[None]:
    """Batch and stream runs append to the same sequence: one at a time."""
    path = lake.path("_locks", "loans.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def drop_beyond(lake: LakeResource, next_seq: int, *parts: str) -> None:
    """Files of a run that crashed before recording its state."""
    for first, _, path in seq_files(lake, *parts):
        if first >= next_seq:
            path.unlink()


def read_cleaned(lake: LakeResource, from_seq: int, columns: list[str]) -> pd.DataFrame:
    """Cleaned applications from `from_seq` on, in seq order; only the files that hold them are opened."""
    files = [p for _, last, p in seq_files(lake, CLEANED_DATASET) if last >= from_seq]
    if not files:
        return pd.DataFrame({c: [] for c in columns})
    table = pa.concat_tables([pq.read_table(p, columns=columns) for p in files])
    table = table.filter(pc.greater_equal(table["seq"], from_seq))
    return table.to_pandas()


@dataclass
class FeatureUpdate:
    version: int
    first_seq: int
    rows: int
    started: str  # "continued from v<N>", "recomputed from the first application", "incremental"
    frame: pd.DataFrame


def _version_dir(version: int) -> str:
    return f"v{version}"


def read_version_state(lake: LakeResource, version: int) -> dict | None:
    doc = lake.read_json(FEATURES_DATASET, _version_dir(version), "_state.json")
    return doc if isinstance(doc, dict) else None


def update_features(lake: LakeResource, version: FeatureVersion, recompute: bool = False) -> FeatureUpdate:
    """Bring version `version` up to the last cleaned application (see the module doc). A version without
    state starts as its `start` says: a new column continues from the previous version's last row and
    window (older rows keep their version), a logic change recomputes every row (the backfill)."""
    folder = _version_dir(version.version)
    doc = None if recompute else read_version_state(lake, version.version)
    started = "incremental"
    if doc is None:
        lake.delete(FEATURES_DATASET, folder)
        previous = read_version_state(lake, version.version - 1) if version.start == "continue" else None
        if previous and not recompute:
            doc = {"next_seq": previous["next_seq"], "window": previous["window"]}
            started = f"continued from v{version.version - 1} at seq {previous['next_seq']}"
        else:
            doc = {"next_seq": 0, "window": None}
            started = "recomputed from the first application"
        doc["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        doc["first_seq"] = doc["next_seq"]
    next_seq = int(doc["next_seq"])
    drop_beyond(lake, next_seq, FEATURES_DATASET, folder)
    rows = read_cleaned(lake, next_seq, ["seq", "application_date", "risk_score", "risk_score_missing"])
    if rows.empty:
        lake.write_json(doc, FEATURES_DATASET, folder, "_state.json")
        return FeatureUpdate(version.version, next_seq, 0, started, rows)
    rows["risk_score"] = rows["risk_score"].astype("Int64")
    features, window = compute_features(rows["risk_score"], version, WindowState.from_json(doc["window"]))
    frame = pd.concat([rows, features], axis=1).assign(
        feature_version=version.version,
        schema_version=version.schema_version,
        code_version=version.code_version,
    )[columns_of(version.version)]
    last = int(frame["seq"].iloc[-1])
    lake.write_parquet(
        pa.Table.from_pandas(frame, preserve_index=False),
        FEATURES_DATASET,
        folder,
        seq_file_name(next_seq, last),
    )
    doc.update(next_seq=last + 1, window=window.to_json(), updated_at=datetime.now(UTC).isoformat(timespec="seconds"))
    lake.write_json(doc, FEATURES_DATASET, folder, "_state.json")
    return FeatureUpdate(version.version, next_seq, len(frame), started, frame)


def feature_sql(lake: LakeResource, version: int) -> str:
    """SELECT of exactly version `version`'s columns over its files (a glob: new files show up)."""
    glob = str(lake.path(FEATURES_DATASET, _version_dir(version)).resolve() / "seq-*.parquet")
    cols = ", ".join(f'"{c}"' for c in columns_of(version))
    return f"SELECT {cols} FROM read_parquet('{glob}')"


def training_sql(lake: LakeResource, version: int) -> str:
    """Feature version `version` joined with the applications' attributes: one row per application the
    version computed, with the features known when it arrived (no later row enters a feature)."""
    applications = str(lake.path(CLEANED_DATASET).resolve() / "seq-*.parquet")
    attrs = ", ".join(f"a.{c}" for c in APPLICATION_COLUMNS)
    return (
        f"SELECT f.*, {attrs} FROM ({feature_sql(lake, version)}) f JOIN read_parquet('{applications}') a USING (seq)"
    )


def stored_versions(lake: LakeResource) -> list[int]:
    return [v for v in FEATURE_VERSIONS if seq_files(lake, FEATURES_DATASET, _version_dir(v))]


def read_features(lake: LakeResource, version: int, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Feature version `version` exactly as it was computed, in seq order, optionally for application dates
    in [start, end]. A version never computed reads as empty with its own columns."""
    if version not in stored_versions(lake):
        return pd.DataFrame({c: [] for c in columns_of(version)})
    return _query(feature_sql(lake, version), start, end)


def training_set(lake: LakeResource, version: int, start: str, end: str) -> pd.DataFrame:
    """The training set of feature version `version` for applications dated `start`..`end` (inclusive):
    the version's columns plus the application attributes, point-in-time correct by construction (each
    feature uses only applications that arrived before it). SQL: view `loan_training_set_v<N>`."""
    if version not in stored_versions(lake):
        raise LookupError(f"feature version {version} has no stored rows; materialize loan_risk_features at it")
    return _query(training_sql(lake, version), start, end)


def _query(sql: str, start: str | None, end: str | None) -> pd.DataFrame:
    where = (
        " WHERE application_date BETWEEN coalesce(?::DATE, DATE '0001-01-01') AND coalesce(?::DATE, DATE '9999-12-31')"
    )
    with engine() as conn:
        return conn.execute(f"SELECT * FROM ({sql}){where} ORDER BY seq", [start, end]).df()


def publish_views(lake: LakeResource, conn: duckdb.DuckDBPyConnection) -> list[str]:
    """DuckDB views for analysts and data scientists: the applications, and per stored version its feature
    table and training set with exactly that version's columns."""
    views = []
    if seq_files(lake, CLEANED_DATASET):
        glob = str(lake.path(CLEANED_DATASET).resolve() / "seq-*.parquet")
        conn.execute(f"CREATE OR REPLACE VIEW loan_applications AS SELECT * FROM read_parquet('{glob}')")
        views.append("loan_applications")
    for version in stored_versions(lake):
        conn.execute(f"CREATE OR REPLACE VIEW loan_risk_features_v{version} AS {feature_sql(lake, version)}")
        conn.execute(f"CREATE OR REPLACE VIEW loan_training_set_v{version} AS {training_sql(lake, version)}")
        views += [f"loan_risk_features_v{version}", f"loan_training_set_v{version}"]
    return views
