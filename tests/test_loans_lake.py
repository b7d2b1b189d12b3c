"""Loan features on the lakehouse tables: the pipeline end to end with the lake and the landing folder on S3
(a real S3 API server), a rebuild of every derived table from the raw layer, and the feature-version setting.
Real Kafka, real Delta tables, real DuckDB."""

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from assets.loans import features as loan_features
from assets.loans.cleaned import SEQUENCE, clean_pending
from assets.loans.names import (
    CLEANED_DATASET,
    FEATURE_VERSION_ENV,
    FEATURES_DATASET,
    LANDING_DIR,
    QUARANTINE_DATASET,
    RAW_FILES_DATASET,
    REGISTRY_DATASET,
)
from assets.loans.raw import keep_landed
from assets.loans.store import columns_of, read_features
from demo.loans import applications
from resources import LandingResource
from resources.lake import CommitFailedError, write_table
from sensors.loans import loans_landing_sensor
from tests.conftest import ROOT
from tests.test_loans import (
    BATCH_ASSETS,
    FIXTURE,
    batch_recomputation,
    land,
    run,
    same,
    stream,
    tick,
    version_files,
    written,
)

DERIVED = ["loan_applications", "quarantine_loan_applications", "loan_risk_features", "loan_feature_registry"]


@pytest.fixture
def landing(tmp_path: Path) -> LandingResource:
    return LandingResource(root=str(tmp_path / "input"))


def test_pipeline_on_s3_lake_and_landing(kafka, s3_lake, warehouse, instance):
    lake, bucket = s3_lake
    landing = LandingResource(root=f"s3://{bucket}/input", s3_endpoint_url=lake.s3_endpoint_url, s3_region="us-east-1")
    resources = {"kafka": kafka, "lake": lake, "landing": landing, "warehouse": warehouse}
    land(landing, FIXTURE)
    land(landing, rows=applications([2007], 120, seed=5), name="loan_applications_2007b.csv")
    (request,) = tick(loans_landing_sensor, instance, resources).run_requests
    result = run(instance, resources, 1, BATCH_ASSETS)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"loan_applications_schema_check": True, "nothing_lost_check": True, "quarantine_rate_check": True}
    assert lake.table(RAW_FILES_DATASET).count() == 2 and lake.table(QUARANTINE_DATASET).count() == 4
    # The landed files are processed: the same listing asks for no new run key.
    (again,) = tick(loans_landing_sensor, instance, resources).run_requests
    assert again.run_key == request.run_key

    rows_2008 = list(applications([2008], 150, seed=6))
    for chunk in (rows_2008[:60], rows_2008[60:]):
        assert written(stream(kafka, instance, resources, 1, chunk)) == len(chunk)
    same(read_features(lake, 1), batch_recomputation(lake, 1), ["RiskScoreMA50", "risk_scores_seen"])
    assert written(stream(kafka, instance, resources, 2, list(applications([2009], 80, seed=7)))) > 0
    run(instance, resources, 3, ["loan_risk_features", "loan_feature_registry"])
    v1, v2, v3 = (read_features(lake, v) for v in (1, 2, 3))
    assert len(v3) == len(v1) + len(v2) and v2["seq"].min() == v1["seq"].max() + 1
    same(v2, batch_recomputation(lake, 2), ["RiskScoreMA50", "RiskScoreMA100"])
    same(v3, batch_recomputation(lake, 3), ["RiskScoreMA50", "RiskScoreMA100"])
    # Every table is on S3 only: nothing of the lake or the landing folder on local disk.
    assert lake.uri(FEATURES_DATASET).startswith(f"s3://{bucket}/")
    assert lake.list_keys(FEATURES_DATASET, suffix=".json") and lake.list_keys(REGISTRY_DATASET)


def snapshot(lake) -> dict[str, pd.DataFrame]:
    """Every derived table's rows, sorted: what a rebuild must give again."""
    keys = {
        CLEANED_DATASET: ["seq"],
        QUARANTINE_DATASET: ["source", "source_row", "reason"],
        FEATURES_DATASET: ["feature_version", "seq"],
    }
    return {
        name: lake.scan(name).to_pandas().sort_values(by).reset_index(drop=True)[sorted(lake.scan(name).column_names)]
        for name, by in keys.items()
    }


def test_everything_derived_is_rebuilt_from_the_raw_layer(kafka, lake, landing, warehouse, instance):
    """Cleaned rows, quarantine and every feature version deleted, then rebuilt from the kept files and
    bronze: identical rows, a file that landed mid-stream included at the place it arrived."""
    resources = {"kafka": kafka, "lake": lake, "landing": landing, "warehouse": warehouse}
    land(landing, FIXTURE)
    run(instance, resources, 1, BATCH_ASSETS)
    rows_2008 = list(applications([2008], 200, seed=8))
    stream(kafka, instance, resources, 1, rows_2008[:90])
    land(landing, rows=applications([2008], 40, seed=9), name="corrections_2008.csv")  # lands mid-stream
    run(instance, resources, 1, BATCH_ASSETS)
    stream(kafka, instance, resources, 1, rows_2008[90:])
    run(instance, resources, 3, ["loan_risk_features", "loan_feature_registry"])
    before = snapshot(lake)
    source = before[CLEANED_DATASET]["source"]
    runs = source[source != source.shift()].tolist()  # the sources in feature order: file, stream, file, stream
    assert [r.startswith("corrections_2008") for r in runs] == [False, False, True, False]

    for table in (CLEANED_DATASET, QUARANTINE_DATASET, FEATURES_DATASET, REGISTRY_DATASET):
        lake.delete(table)
    assert lake.table(CLEANED_DATASET) is None and lake.table(FEATURES_DATASET) is None
    run(instance, resources, 1, DERIVED)
    run(instance, resources, 3, ["loan_risk_features", "loan_feature_registry"])
    after = snapshot(lake)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, check_exact=True, obj=name)


def test_feature_version_switch_is_one_setting_and_versions_read_side_by_side(
    lake, landing, warehouse, instance, monkeypatch
):
    resources = {"lake": lake, "landing": landing, "warehouse": warehouse}
    land(landing, rows=applications([2007], 200, seed=10))
    monkeypatch.setenv(FEATURE_VERSION_ENV, "1")
    deployed = importlib.reload(loan_features)
    assert deployed.loan_risk_features.code_versions_by_key[dg.AssetKey("loan_risk_features")] == "loan-features-v1"
    run(instance, resources, deployed.active_feature_version(), BATCH_ASSETS)
    v1_files = version_files(lake, 1)

    monkeypatch.setenv(FEATURE_VERSION_ENV, "3")
    deployed = importlib.reload(loan_features)
    assert deployed.loan_risk_features.code_versions_by_key[dg.AssetKey("loan_risk_features")] == "loan-features-v3"
    run(instance, resources, deployed.active_feature_version(), ["loan_risk_features", "loan_feature_registry"])
    assert version_files(lake, 1) == v1_files  # the older version's rows are not rewritten

    v1, v3 = read_features(lake, 1), read_features(lake, 3)
    assert list(v1.columns) == columns_of(1) and list(v3.columns) == columns_of(3)
    assert v1["seq"].tolist() == v3["seq"].tolist() and len(v1) > 150
    side = v1.merge(v3, on="seq", suffixes=("_v1", "_v3"))
    assert (side["RiskScoreMA50_v1"] != side["RiskScoreMA50_v3"]).mean() > 0.9  # MA50 beside EMA50
    with warehouse.connect() as conn:
        both = conn.execute(
            "SELECT count(*) FROM loan_risk_features_v1 a JOIN loan_risk_features_v3 b USING (seq)"
        ).fetchone()
        active = conn.execute("SELECT DISTINCT feature_version FROM loan_feature_registry WHERE status = 'active'")
        assert both == (len(v1),) and active.fetchall() == [(3,)]

    monkeypatch.setenv(FEATURE_VERSION_ENV, "7")
    with pytest.raises(ValueError, match="not a feature version"):
        importlib.reload(loan_features)
    monkeypatch.delenv(FEATURE_VERSION_ENV)
    assert importlib.reload(loan_features).active_feature_version() == 3  # unset: the latest version


def test_cleaning_is_exactly_once_after_a_crash_and_against_a_concurrent_writer(lake, landing):
    """A run killed between the quarantine's commit and the cleaned rows' commit is repeated without a
    duplicate; a writer that read an older sequence cannot commit over a newer one."""
    land(landing, FIXTURE)
    land(landing, rows=applications([2007], 50, seed=11), name="loan_applications_2007b.csv")
    keep_landed(landing, lake)
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from assets.loans.cleaned import clean_pending; from resources import LakeResource; "
            f"clean_pending(LakeResource(root={lake.root!r}))",
        ],
        env={**os.environ, "PLATFORM_FAILPOINT": "loans_between_commits"},
        cwd=ROOT,
    )
    assert crashed.returncode == -signal.SIGKILL
    assert lake.table(CLEANED_DATASET) is None and lake.table(QUARANTINE_DATASET).count() == 4

    batch = clean_pending(lake)
    assert batch.received == len(batch.cleaned) + len(batch.quarantined) == 10 + 50
    cleaned = lake.scan(CLEANED_DATASET).to_pandas()
    assert sorted(cleaned["seq"]) == list(range(len(batch.cleaned))) and lake.table(QUARANTINE_DATASET).count() == 4
    assert clean_pending(lake).received == 0  # nothing left: the tokens say so

    land(landing, rows=applications([2007], 5, seed=12), name="late.csv")
    keep_landed(landing, lake)
    before = lake.version(CLEANED_DATASET)
    assert len(clean_pending(lake).cleaned) == 5
    with pytest.raises(CommitFailedError):  # what a concurrent run that read the sequence before would commit
        write_table(lake, CLEANED_DATASET, pa.table({"seq": [0]}), tokens={SEQUENCE: 1}, version=before)
    assert lake.table(CLEANED_DATASET).count() == len(batch.cleaned) + 5


def test_readme_names_the_landing_folder_the_sensor_reads_and_the_version_setting():
    readme = (ROOT / "README.md").read_text()
    env = (ROOT / "platform" / "env.sh").read_text()
    assert LandingResource().root == "data/input" and "LANDING_ROOT=${LANDING_ROOT:-$root/data/input}" in env
    assert f"`$LANDING_ROOT/{LANDING_DIR}/`" in readme and f"`data/input/{LANDING_DIR}/`" in readme
    assert f"`{FEATURE_VERSION_ENV}`" in readme and f"export {FEATURE_VERSION_ENV}=" in env
    assert f"$LANDING_ROOT/{LANDING_DIR}/" in (loans_landing_sensor.description or "")


def test_the_stream_before_any_file_lands_is_cleaned(kafka, lake, landing, warehouse, instance):
    """Applications may arrive on Kafka before the first batch file lands: the stream is cleaned on its own
    (no kept file yet), and the file that lands later comes after it."""
    resources = {"kafka": kafka, "lake": lake, "landing": landing, "warehouse": warehouse}

    def received() -> int:
        return sum(lake.table(t).count() for t in (CLEANED_DATASET, QUARANTINE_DATASET) if lake.table(t))

    stream(kafka, instance, resources, 1, applications([2008], 20, seed=21))
    assert lake.table(RAW_FILES_DATASET) is None and received() == 20
    land(landing, rows=applications([2007], 30, seed=22))
    run(instance, resources, 1, BATCH_ASSETS)
    cleaned = lake.scan(CLEANED_DATASET).to_pandas().sort_values("seq")
    assert received() == 50 and list(cleaned["seq"]) == list(range(len(cleaned)))
    from_file = cleaned["source"].str.endswith(".csv").tolist()
    assert from_file == sorted(from_file) and 0 < sum(from_file) < len(from_file)  # the stream's rows first
