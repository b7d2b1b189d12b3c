"""Checks of partitioned assets record one result per date, also when one run covers a range of dates
(assets/partition_checks.py), so the UI shows each date's real status after a range backfill."""

import datetime as dt

import dagster as dg

from assets.partition_checks import per_partition
from tests.clickstream_pipeline import ASSETS, CHECKS, produce, run_pipeline, valid_event

NOON = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)


def history(instance: dg.DagsterInstance, asset: str, check: str) -> list[tuple[str | None, str, str]]:
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
    return sorted((r.partition, r.status.value, r.run_id) for r in records)


def test_gold_checks_record_one_result_per_date_of_a_range_run(kafka, lake, resources, instance):
    dates = [(NOON - dt.timedelta(days=d)).date().isoformat() for d in (2, 1, 0)]
    produce(kafka, [valid_event(NOON - dt.timedelta(days=d), user=f"user_{d}") for d in (2, 1, 0) for _ in range(3)])
    assert run_pipeline(instance, resources) == dates
    # Gold of the three dates in one run, as a range backfill from the UI launches it.
    gold_run = dg.materialize(
        [*ASSETS, *CHECKS],
        selection=dg.AssetSelection.groups("clickstream_gold"),
        tags={"dagster/asset_partition_range_start": dates[0], "dagster/asset_partition_range_end": dates[-1]},
        resources=resources,
        instance=instance,
    )
    assert gold_run.success
    for asset, check in (
        ("gold_clickstream_daily_metrics", "daily_metrics_schema_check"),
        ("gold_clickstream_product_funnel", "product_funnel_schema_check"),
    ):
        in_range_run = [h for h in history(instance, asset, check) if h[2] == gold_run.run_id]
        assert in_range_run == [(d, "SUCCEEDED", gold_run.run_id) for d in dates]


P = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-10")
BAD_DATE = "2026-01-03"


@dg.multi_asset(
    specs=[dg.AssetSpec("daily_table")],
    partitions_def=P,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("rows_valid_check", asset="daily_table", partitions_def=P, blocking=True)],
)
def daily_table(context: dg.AssetExecutionContext):
    yield dg.MaterializeResult(asset_key="daily_table")
    results = {
        d: dg.AssetCheckResult(check_name="rows_valid_check", passed=d != BAD_DATE) for d in context.partition_keys
    }
    yield from per_partition(context, results, dg.AssetCheckKey(dg.AssetKey("daily_table"), "rows_valid_check"))


@dg.asset_check(asset=daily_table, partitions_def=P)
def rows_counted_check(context: dg.AssetCheckExecutionContext):
    yield from per_partition(
        context, {d: dg.AssetCheckResult(passed=True, metadata={"date": d}) for d in context.partition_keys}
    )


@dg.asset(deps=[daily_table], partitions_def=P, backfill_policy=dg.BackfillPolicy.single_run())
def daily_summary() -> None:
    pass


def range_tags(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def test_a_range_run_records_each_date_and_a_failed_blocking_date_stops_downstream(instance):
    assets = [daily_table, rows_counted_check, daily_summary]
    ok = dg.materialize(assets, instance=instance, tags=range_tags("2026-01-05", "2026-01-07"))
    assert ok.success
    dates = ["2026-01-05", "2026-01-06", "2026-01-07"]
    for check in ("rows_valid_check", "rows_counted_check"):
        assert history(instance, "daily_table", check) == [(d, "SUCCEEDED", ok.run_id) for d in dates]
    counted = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("daily_table"), "rows_counted_check"), limit=1
    )[0]
    assert counted.evaluation is not None and counted.evaluation.target_materialization_data is not None
    assert counted.evaluation.target_materialization_data.run_id == ok.run_id  # tied to that date's materialization

    bad = dg.materialize(assets, instance=instance, tags=range_tags("2026-01-02", "2026-01-04"), raise_on_error=False)
    assert not bad.success
    assert [r for r in history(instance, "daily_table", "rows_valid_check") if r[2] == bad.run_id] == [
        ("2026-01-02", "SUCCEEDED", bad.run_id),
        (BAD_DATE, "FAILED", bad.run_id),
        ("2026-01-04", "SUCCEEDED", bad.run_id),
    ]
    summaries = instance.fetch_materializations(dg.AssetKey("daily_summary"), limit=10).records
    assert {r.partition_key for r in summaries} == set(dates)  # nothing downstream of the failed range

    one = dg.materialize(assets, instance=instance, partition_key="2026-01-08")  # a one-date run: the plain path
    assert ("2026-01-08", "SUCCEEDED", one.run_id) in history(instance, "daily_table", "rows_counted_check")
