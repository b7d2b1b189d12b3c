"""Loan-application risk features: batch 2007, stream from 2008 through a real Kafka broker,
MA100 as schema version 2, EMA50 as logic version 3, every version readable; real DuckDB, no mocks."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from assets.loans import cleaned, raw
from assets.loans.features import build_feature_assets
from assets.loans.logic import EMA_ALPHA, FEATURE_VERSIONS, WindowState, compute_features
from assets.loans.names import FEATURES_DATASET, LANDING_DIR, QUARANTINE_DATASET
from assets.loans.store import columns_of, read_cleaned, read_features, training_set
from demo.loans import applications, csv_text, produce
from resources import LandingResource
from sensors.loans import loans_batch_job, loans_kafka_sensor, loans_landing_sensor, loans_stream_job

FIXTURE = Path(__file__).parent / "fixtures" / "loans" / "applications_2007_fixture.csv"
STREAM_ASSETS = [
    "bronze_loan_applications",
    "loan_applications",
    "quarantine_loan_applications",
    "loan_risk_features",
    "loan_feature_registry",
]
BATCH_ASSETS = ["raw_loan_application_files", *STREAM_ASSETS[1:]]


def loan_assets(version: int) -> list:
    """The domain's assets as deployed with feature logic `version`."""
    return [
        raw.raw_loan_application_files,
        raw.bronze_loan_applications,
        cleaned.loan_applications,
        *build_feature_assets(version),
    ]


def run(instance, resources, version: int, selection: list[str], run_config=None) -> dg.ExecuteInProcessResult:
    # A batch run needs no broker: the Kafka asset is left out of its graph.
    assets = loan_assets(version)
    if "bronze_loan_applications" not in selection:
        assets.remove(raw.bronze_loan_applications)
    result = dg.materialize(
        assets, selection=selection, run_config=run_config or {}, resources=resources, instance=instance
    )
    assert result.success
    return result


def tick(sensor, instance, resources):
    return sensor(dg.build_sensor_context(instance=instance, resources=resources))


@pytest.fixture
def landing(tmp_path: Path) -> LandingResource:
    return LandingResource(root=str(tmp_path / "input"))


def land(landing: LandingResource, source: Path | None = None, rows=None, name="loan_applications_2007.csv") -> None:
    """Drop an application file into the landing folder the sensor watches."""
    data = source.read_bytes() if source is not None else csv_text(list(rows)).encode()
    landing.put(data, f"{LANDING_DIR}/{name}")


def batch_recomputation(lake, version: int) -> pd.DataFrame:
    """The features of `version` computed in one pass over every cleaned application."""
    rows = read_cleaned(lake, 0, ["seq", "risk_score"])
    features, _ = compute_features(rows["risk_score"].astype("Int64"), FEATURE_VERSIONS[version])
    return pd.concat([rows[["seq"]], features], axis=1)


def same(stored: pd.DataFrame, batch: pd.DataFrame, columns: list[str]) -> None:
    merged = stored.merge(batch, on="seq", suffixes=("", "_batch"))
    assert len(merged) == len(stored) > 0
    for c in columns:
        a, b = merged[c].to_numpy(float), merged[f"{c}_batch"].to_numpy(float)
        assert np.array_equal(a, b, equal_nan=True), c  # exactly, not approximately


def version_files(lake, version: int) -> set[str]:
    """The data files that hold a feature version's rows: unchanged when no later version rewrote them."""
    actions = pa.table(lake.table(FEATURES_DATASET).get_add_actions(flatten=True)).to_pylist()
    return {a["path"] for a in actions if a["partition.feature_version"] == version}


def test_fixture_every_irregularity_is_typed_flagged_or_quarantined(lake, landing, warehouse, instance):
    resources = {"lake": lake, "landing": landing, "warehouse": warehouse}
    land(landing, FIXTURE)
    (request,) = tick(loans_landing_sensor, instance, resources).run_requests
    assert request.job_name in (None, loans_batch_job.name)
    result = run(instance, resources, 1, BATCH_ASSETS)

    kept = raw.raw_files(lake, content=True)
    assert len(kept) == 1 and kept["content"].iloc[0] == FIXTURE.read_bytes()  # as received
    rows = read_cleaned(
        lake,
        0,
        [
            "seq",
            "source_row",
            "application_date",
            "amount_requested",
            "loan_title",
            "risk_score",
            "risk_score_missing",
            "debt_to_income_pct",
            "debt_to_income_irregular",
            "employment_years",
            "state",
        ],
    )
    # Ordered by application date, then line: line 5 (05-26) comes right after line 1.
    assert rows["source_row"].tolist() == [1, 5, 2, 3, 4, 10]
    by_line = rows.set_index("source_row")
    assert by_line.loc[2, "amount_requested"] == 1500.0 and str(by_line.loc[2, "application_date"])[:10] == "2007-05-27"
    assert by_line.loc[3, "loan_title"] == 'For Justin, with "love"'
    assert by_line.loc[3, "risk_score_missing"] and by_line.loc[4, "risk_score_missing"]  # empty and 0: flagged, kept
    assert pd.isna(by_line.loc[3, "risk_score"]) and pd.isna(by_line.loc[4, "risk_score"])
    assert pd.isna(by_line.loc[4, "debt_to_income_pct"]) and by_line.loc[4, "debt_to_income_irregular"]  # -1%
    assert by_line.loc[5, "debt_to_income_irregular"] and by_line.loc[5, "debt_to_income_pct"] == 123456.78
    assert by_line.loc[2, "employment_years"] == 0 and by_line.loc[4, "employment_years"] == 10
    assert pd.isna(by_line.loc[5, "employment_years"]) and pd.isna(by_line.loc[5, "loan_title"])

    bad = lake.scan(QUARANTINE_DATASET).to_pandas().sort_values("source_row")
    assert list(zip(bad["source_row"], bad["reason"], strict=True)) == [
        (6, "unparsable_date"),
        (7, "invalid_amount"),
        (8, "invalid_risk_score"),
        (9, "wrong_field_count"),
    ]
    assert bad["original"].str.contains("bad date|bad amount|bad score|too few fields").all()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"loan_applications_schema_check": True, "loan_applications_nothing_lost_check": True}

    # Features: the flagged rows carry the window before them; the first rows have partial windows.
    features = read_features(lake, 1)
    assert list(features.columns) == columns_of(1)
    assert features["RiskScoreMA50"].tolist()[:5] == [
        693.0,
        696.5,
        (693 + 700 + 509) / 3,
        (693 + 700 + 509) / 3,
        (693 + 700 + 509) / 3,
    ]
    assert features["risk_scores_seen"].tolist() == [1, 2, 3, 3, 3, 4]
    # A second tick for the same files requests nothing new (same run key).
    (again,) = tick(loans_landing_sensor, instance, resources).run_requests
    assert again.run_key == request.run_key


@dg.op
def _batch_step(context: dg.OpExecutionContext) -> None:
    if context.run.tags.get("test/fail") == "yes":
        raise RuntimeError("the run worker failed")


@dg.job(name=loans_batch_job.name)
def _stand_in_batch_job():
    _batch_step()


def test_landed_file_whose_run_failed_is_requested_again_until_a_run_succeeds(landing, instance, monkeypatch):
    """Dagster never launches a run key again once its run failed: the sensor asks under a new key until a run
    for the landed file has succeeded, and then stops asking."""
    import sensors.loans as loans_sensors

    resources = {"landing": landing}
    land(landing, FIXTURE)

    def evaluate(cursor):
        return loans_landing_sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))

    def run_for(request, fail: bool) -> None:
        tags = {**request.tags, "dagster/run_key": request.run_key, "test/fail": "yes" if fail else "no"}
        assert (
            _stand_in_batch_job.execute_in_process(instance=instance, tags=tags, raise_on_error=False).success != fail
        )

    first = evaluate(None)
    (request,) = first.run_requests
    run_for(request, fail=True)
    # Within the back-off the file waits; after it, it is requested under a new key.
    waiting = evaluate(first.cursor)
    assert isinstance(waiting, dg.SkipReason) and "again in" in (waiting.skip_message or "")
    monkeypatch.setattr(loans_sensors, "RETRY_BACKOFF_SECONDS", 0.0)
    second = evaluate(first.cursor)
    (retry,) = second.run_requests
    assert retry.run_key != request.run_key and retry.run_key.startswith(request.run_key)
    # The same tick again (the request not launched yet) asks for the same new key, not a third one.
    (same,) = evaluate(second.cursor).run_requests
    assert same.run_key == retry.run_key
    run_for(retry, fail=False)
    done = evaluate(second.cursor)
    assert not done.run_requests and json.loads(done.cursor)["succeeded"]
    assert isinstance(evaluate(done.cursor), dg.SkipReason)
    # A new version of the file is new work.
    land(landing, rows=applications([2007], 5, seed=3))
    (fresh,) = evaluate(done.cursor).run_requests
    assert fresh.run_key not in (request.run_key, retry.run_key)


def test_feature_logic_is_exact_in_any_split_and_never_looks_ahead():
    rng = np.random.default_rng(7)
    scores = pd.Series(rng.integers(300, 851, 5000)).astype("Int64")
    scores[rng.random(5000) < 0.1] = pd.NA
    for version in FEATURE_VERSIONS.values():
        whole, end_state = compute_features(scores, version)
        cuts = sorted(set(rng.integers(1, 5000, 12).tolist()))
        parts, state = [], WindowState()
        for a, b in zip([0, *cuts], [*cuts, 5000], strict=True):
            part, state = compute_features(scores.iloc[a:b], version, state)
            parts.append(part)
        assert pd.concat(parts).equals(whole) and state == end_state
        # Point in time: a row's features are the same when every later row is removed.
        for n in rng.integers(0, 5000, 20):
            prefix, _ = compute_features(scores.iloc[: n + 1], version)
            assert prefix.iloc[-1].equals(whole.iloc[n])

    valid = scores.dropna().astype(float)
    whole, _ = compute_features(scores, FEATURE_VERSIONS[2])
    scored = scores.notna().to_numpy()
    assert np.allclose(whole["RiskScoreMA50"][scored], valid.rolling(50, min_periods=1).mean(), rtol=0, atol=1e-9)
    assert np.allclose(whole["RiskScoreMA100"][scored], valid.rolling(100, min_periods=1).mean(), rtol=0, atol=1e-9)
    ema, reference = None, []
    for x in valid:  # the documented definition, literally
        ema = x if ema is None else EMA_ALPHA * x + (1 - EMA_ALPHA) * ema
        reference.append(ema)
    whole3, _ = compute_features(scores, FEATURE_VERSIONS[3])
    assert EMA_ALPHA == 2 / 51
    assert np.allclose(whole3["RiskScoreMA50"][scored], reference, rtol=0, atol=1e-9)
    assert whole3["RiskScoreMA100"].equals(whole["RiskScoreMA100"])


def stream(kafka, instance, resources, version: int, rows: list) -> dg.ExecuteInProcessResult:
    produce(kafka.bootstrap_servers, iter(rows), namespace=kafka.namespace)
    request = tick(loans_kafka_sensor, instance, resources)
    assert isinstance(request, dg.SensorResult) and len(request.run_requests) == 1
    return run(instance, resources, version, STREAM_ASSETS, request.run_requests[0].run_config)


def written(result: dg.ExecuteInProcessResult) -> int:
    (event,) = [m for m in result.get_asset_materialization_events() if m.asset_key.path == ["loan_risk_features"]]
    return event.materialization.metadata["rows_written"].value


def test_four_stages_batch_stream_ma100_ema50_every_version_readable(kafka, lake, landing, warehouse, instance):
    assert loans_stream_job.name == "loans_stream_job"
    resources = {"kafka": kafka, "lake": lake, "landing": landing, "warehouse": warehouse}
    # Stage 1: 2007 lands as a file; feature version 1 (RiskScoreMA50 = MA50).
    land(landing, rows=applications([2007], 300, seed=1))
    run(instance, resources, 1, BATCH_ASSETS)
    batch_rows = read_features(lake, 1)
    assert len(batch_rows) > 250 and batch_rows["application_date"].dt.year.eq(2007).all()

    # Stage 2: 2008 streams through Kafka in three increments; each increment computes only its own rows.
    rows_2008 = list(applications([2008], 300, seed=2))
    for chunk in (rows_2008[:37], rows_2008[37:200], rows_2008[200:]):
        assert written(stream(kafka, instance, resources, 1, chunk)) == len(chunk)
    v1 = read_features(lake, 1)
    same(v1, batch_recomputation(lake, 1), ["RiskScoreMA50", "risk_scores_seen"])  # stream == batch, exactly
    apps = read_cleaned(lake, 0, ["seq", "source", "source_row", "application_date"])
    streamed = apps[apps["source"].str.endswith("loans.applications")]
    assert streamed["source_row"].is_monotonic_increasing and len(streamed) == len(rows_2008)
    assert streamed["seq"].min() == len(batch_rows)  # arrival order: the file, then Kafka offsets
    v1_files = version_files(lake, 1)

    # Stage 3: from 2009, RiskScoreMA100 joins: schema version 2; older rows keep version 1.
    assert written(stream(kafka, instance, resources, 2, list(applications([2009], 200, seed=3)))) > 0
    v2 = read_features(lake, 2)
    assert list(v2.columns) == columns_of(2) and set(v2["schema_version"]) == {2}
    assert v2["seq"].min() == v1["seq"].max() + 1 and v2["application_date"].dt.year.eq(2009).all()
    same(v2, batch_recomputation(lake, 2), ["RiskScoreMA50", "RiskScoreMA100"])  # windows span 2008 -> 2009
    assert version_files(lake, 1) == v1_files
    assert list(read_features(lake, 1).columns) == columns_of(1)  # version 1 reads without MA100

    # Stage 4: RiskScoreMA50 becomes EMA50 (logic version 3): the asset is stale for its code version...
    resolver = get_stale_status_resolver(instance, loan_assets(3))
    key = dg.AssetKey("loan_risk_features")
    assert resolver.get_status(key) == StaleStatus.STALE
    assert any(c.category == StaleCauseCategory.CODE for c in resolver.get_stale_causes(key))
    # ...and materializing it backfills every application with the new logic.
    result = run(instance, resources, 3, ["loan_risk_features", "loan_feature_registry"])
    assert written(result) == len(apps) + len(v2)
    v3 = read_features(lake, 3)
    same(v3, batch_recomputation(lake, 3), ["RiskScoreMA50", "RiskScoreMA100"])
    assert get_stale_status_resolver(instance, loan_assets(3)).get_status(key) == StaleStatus.FRESH
    # The old MA50 and the new EMA50 stay readable side by side.
    side = read_features(lake, 1).merge(v3, on="seq", suffixes=("_v1", "_v3"))
    assert side["RiskScoreMA50_v1"].equals(v1["RiskScoreMA50"])
    assert (side["RiskScoreMA50_v1"] != side["RiskScoreMA50_v3"]).mean() > 0.9
    assert version_files(lake, 1) == v1_files

    # The stream continues at version 3, incrementally.
    rows_2010 = list(applications([2010], 60, seed=4))
    assert written(stream(kafka, instance, resources, 3, rows_2010)) == len(rows_2010)
    same(read_features(lake, 3), batch_recomputation(lake, 3), ["RiskScoreMA50", "RiskScoreMA100"])

    # Registry, training sets (Python and SQL) and the catalogue in DuckDB.
    with warehouse.connect() as conn:
        registry = conn.execute(
            "SELECT feature, feature_version, schema_version, logic, code_version, status FROM loan_feature_registry "
            "ORDER BY feature_version, feature"
        ).fetchall()
        sql_set = conn.execute(
            "SELECT * FROM loan_training_set_v1 "
            "WHERE application_date BETWEEN '2008-03-01' AND '2008-06-30' ORDER BY seq"
        ).df()
        v1_view_columns = [r[0] for r in conn.execute("DESCRIBE loan_risk_features_v1").fetchall()]
    assert registry == [
        ("RiskScoreMA50", 1, 1, "sma50", "loan-features-v1", "superseded"),
        ("RiskScoreMA100", 2, 2, "sma100", "loan-features-v2", "superseded"),
        ("RiskScoreMA50", 2, 2, "sma50", "loan-features-v2", "superseded"),
        ("RiskScoreMA100", 3, 2, "sma100", "loan-features-v3", "active"),
        ("RiskScoreMA50", 3, 2, "ema50", "loan-features-v3", "active"),
    ]
    assert v1_view_columns == columns_of(1)
    python_set = training_set(lake, 1, "2008-03-01", "2008-06-30")
    assert len(python_set) > 0 and python_set["application_date"].between("2008-03-01", "2008-06-30").all()
    assert python_set["RiskScoreMA50"].equals(sql_set["RiskScoreMA50"]) and "RiskScoreMA100" not in python_set
    assert {"amount_requested", "employment_years", "state"} <= set(python_set.columns)
    # Rows written before version 2 keep version 1: version 2 has no 2007 rows to train on.
    assert training_set(lake, 2, "2007-01-01", "2007-12-31").empty
