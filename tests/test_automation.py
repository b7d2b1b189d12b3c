"""Declarative Automation of the batch layers, evaluated by Dagster's own evaluator on the code location's
real definitions: what each new materialization makes the automation sensor request, and what a failed
blocking check holds back."""

import datetime as dt
import importlib.util

import dagster as dg
import pytest

from assets.clickstream.names import clickstream_daily_partitions
from assets.warehouse.names import warehouse_daily_partitions
from tests.conftest import ROOT

ENTITIES = ["shops", "products", "customers", "orders", "order_positions"]


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    spec = importlib.util.spec_from_file_location("platform_definitions", ROOT / "platform" / "definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


class Ticks:
    """Automation ticks against one instance, carrying the evaluator's cursor like the sensor does."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None
        self.tick()  # the first evaluation only starts the conditions' memory

    def tick(self) -> dict[str, set]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        requested = {}
        for key in {r.key for r in result.results if r.true_subset.size and isinstance(r.key, dg.AssetKey)}:
            requested[key.to_user_string()] = result.get_requested_partitions(key)
        return requested

    def materialize(self, asset: str, partition: str | None = None, checks: dict[str, bool] | None = None) -> None:
        """A real run that materializes `asset` (one date of it) and evaluates its named checks, as a stand-in
        with the same keys and partitions (the real computation needs Kafka, PostgreSQL or dbt)."""
        graph = self.defs.resolve_asset_graph()
        partitions_def = graph.get(dg.AssetKey(asset)).partitions_def
        specs = [
            dg.AssetCheckSpec(
                name, asset=asset, partitions_def=graph.get(dg.AssetCheckKey(dg.AssetKey(asset), name)).partitions_def
            )
            for name in checks or {}
        ]

        @dg.multi_asset(specs=[dg.AssetSpec(asset)], check_specs=specs, partitions_def=partitions_def, name="stand_in")
        def stand_in():
            yield dg.MaterializeResult(asset_key=asset)
            for name, passed in (checks or {}).items():
                yield dg.AssetCheckResult(asset_key=asset, check_name=name, passed=passed)

        assert dg.materialize([stand_in], instance=self.instance, partition_key=partition).success

    def checked(self, asset: str, partition: str | None = None, failing: tuple[str, ...] = ()) -> None:
        """`asset` materialized with every one of its checks evaluated: passed, except those in `failing`."""
        keys = self.defs.resolve_asset_graph().asset_check_keys
        names = [k.name for k in keys if k.asset_key == dg.AssetKey(asset) and "freshness" not in k.name]
        self.materialize(asset, partition, {name: name not in failing for name in names})


def test_a_landed_date_requests_its_staging_and_facts(defs):
    day = warehouse_daily_partitions.get_last_partition_key()
    with dg.instance_for_test() as instance:
        ticks = Ticks(defs, instance)
        for entity in ENTITIES:
            ticks.materialize(f"raw_postgres_{entity}", day)
            ticks.materialize(f"raw_landing_{entity}", day)
        # Staging of that date, and the facts of that date with it (same partitions: one run, in which a
        # failing blocking staging check stops the facts). Dimensions and marts wait for staging to land.
        requested = ticks.tick()
        assert all(requested[f"stg_{e}"] == {day} for e in ENTITIES)
        assert requested["fact_orders"] == requested["fact_order_positions"] == {day}
        assert not any(name.startswith(("dim_", "kpi_")) for name in requested)


def test_staging_reaches_dbt_only_past_passing_blocking_checks(defs):
    day = warehouse_daily_partitions.get_last_partition_key()
    with dg.instance_for_test() as instance:
        ticks = Ticks(defs, instance)
        # A staging run of that date (e.g. from the UI) in which the orders failed their blocking schema check:
        # fact_orders waits, the rest goes on.
        for entity in ENTITIES:
            ticks.checked(f"stg_{entity}", day, failing=("stg_orders_schema_check",))
        requested = ticks.tick()
        # Both facts read the orders (the positions take their business date and delivery from them): both wait.
        assert "fact_orders" not in requested and "fact_order_positions" not in requested
        assert "kpi_sales" not in requested
        assert {"dim_customers", "dim_products", "dim_shops"} <= set(requested)

        # The orders staged again, valid: now fact_orders of that date follows.
        ticks.tick()  # (the previous tick's requests are handled on this one)
        ticks.checked("stg_orders", day)
        follow = ticks.tick()
        assert follow.get("fact_orders") == follow.get("fact_order_positions") == {day}


def test_marts_follow_the_facts(defs):
    day = warehouse_daily_partitions.get_last_partition_key()
    with dg.instance_for_test() as instance:
        ticks = Ticks(defs, instance)
        for entity in ENTITIES:  # dim_date also reads the staging tables' processing dates
            ticks.checked(f"stg_{entity}", day)
        for name in ("dim_shops", "dim_products", "dim_customers", "dim_date"):
            ticks.checked(name)
        ticks.checked("fact_order_positions", day)
        ticks.checked("fact_orders", day, failing=("unique_fact_orders_order_id",))
        assert not {"kpi_sales", "dim_date"} & set(ticks.tick())  # a dbt test failed on the facts: held back
        ticks.checked("fact_orders", day)
        requested = set(ticks.tick())
        assert {"kpi_shipping_lag", "kpi_customers", "dim_date"} <= requested
        ticks.checked("dim_date")  # kpi_sales reads the calendar, kpi_dropoff kpi_sales: they follow in turn
        requested |= set(ticks.tick())
        ticks.checked("kpi_sales")
        requested |= set(ticks.tick())
        assert {"kpi_sales", "kpi_dropoff"} <= requested


def test_the_feature_registry_follows_the_features(defs):
    with dg.instance_for_test() as instance:
        ticks = Ticks(defs, instance)
        ticks.materialize("loan_risk_features")
        assert "loan_feature_registry" in ticks.tick()
        assert "loan_feature_registry" not in ticks.tick()  # handled: not requested again


def test_gold_follows_a_checked_rebuild_of_a_closed_date_but_not_the_stream(defs):
    today = dt.datetime.now(dt.UTC).date()
    closed, unchecked = (today - dt.timedelta(days=10)).isoformat(), (today - dt.timedelta(days=11)).isoformat()
    assert clickstream_daily_partitions.has_partition_key(closed)
    with dg.instance_for_test() as instance:
        ticks = Ticks(defs, instance)
        ticks.checked("silver_clickstream_events", closed)  # a rebuild: the whole-date checks ran
        ticks.materialize("silver_clickstream_events", unchecked)  # a stream batch into an old date: no checks
        ticks.checked("silver_clickstream_events", today.isoformat())  # today: the stream's
        requested = ticks.tick()
        assert requested.get("gold_clickstream_daily_metrics") == {closed}
        assert requested.get("gold_clickstream_product_funnel") == {closed}
        # A rebuild whose blocking check failed is held back.
        ticks.checked("silver_clickstream_events", closed, failing=("silver_schema_check",))
        assert "gold_clickstream_daily_metrics" not in ticks.tick()
