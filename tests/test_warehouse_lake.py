"""The commerce warehouse on the lake's Delta tables: end to end on an S3 server (real PostgreSQL, real
dbt reading the staging tables from S3), disaster recovery from raw, and empty processing dates."""

from pathlib import Path

import boto3
import dagster as dg
import duckdb
import pandas as pd
import psycopg2
import pytest
from dagster_dbt import DbtCliResource

from assets.warehouse import dbt as warehouse_dbt
from assets.warehouse import staging
from assets.warehouse.names import quarantine_table, raw_table, staging_table
from demo import warehouse as generator
from resources import LakeResource, LandingResource, PostgresResource, PseudonymizerResource, WarehouseResource
from tests.test_warehouse import D1, D2, D3, DAY_ONE, DAY_TWO, build, load_day, query

ENTITIES = list(generator.ENTITIES)
DERIVED_ASSETS = [*staging.staging_assets, warehouse_dbt.commerce_dbt_facts, warehouse_dbt.commerce_dbt_models]


def make_env(root: Path, lake: LakeResource, postgres_server: dict, database: str, mp: pytest.MonkeyPatch) -> dict:
    """Resources over a source database of its own (created empty here) and `lake`; dbt, a subprocess,
    finds the warehouse file and the lake in the environment, as in production."""
    port, password = int(postgres_server["POSTGRES_PORT"]), postgres_server["POSTGRES_PASSWORD"]
    admin = psycopg2.connect(host="127.0.0.1", port=port, dbname="commerce", user="commerce", password=password)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {database}")
        cur.execute(f"CREATE DATABASE {database}")
    admin.close()
    mp.setenv("DUCKDB_DATABASE", str(root / "warehouse.duckdb"))
    mp.setenv("LAKE_ROOT", lake.root)
    resources = {
        "postgres": PostgresResource(port=port, password=password, database=database),
        "lake": lake,
        "landing": LandingResource(root=str(root / "input")),
        "warehouse": WarehouseResource(database=str(root / "warehouse.duckdb")),
        "pseudonymizer": PseudonymizerResource(key="test-key"),
        "dbt": DbtCliResource(
            project_dir=warehouse_dbt.warehouse_dbt_project, dbt_executable=warehouse_dbt.DBT_EXECUTABLE
        ),
    }
    with resources["postgres"].connect() as conn, conn.cursor() as cur:
        cur.execute(generator.source_ddl())
    return {"root": root, "resources": resources}


def derived_tables() -> list[str]:
    return [t(e) for t in (staging_table, quarantine_table) for e in ENTITIES]


def lake_tables() -> list[str]:
    return [*(raw_table(source, e) for source in ("postgres", "landing") for e in ENTITIES), *derived_tables()]


def derived(env: dict) -> dict[str, list[tuple]]:
    """Every row derived from raw, sorted: the staging and quarantine tables, and every table dbt built
    (star schema with the SCD2 customers, marts)."""
    lake = env["resources"]["lake"]
    rows = {t: duckdb.arrow(lake.scan(t)).order("ALL").fetchall() for t in derived_tables()}
    tables = query(
        env,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema IN ('core', 'marts') ORDER BY 1",
    )
    for (table,) in tables:
        rows[table] = query(env, f"SELECT * FROM {table} ORDER BY ALL")
    return rows


@pytest.fixture(scope="module")
def on_s3(postgres_server: dict, s3_server: int, tmp_path_factory: pytest.TempPathFactory):
    """Two processing dates through the whole warehouse with the lake in a bucket of the S3 server."""
    mp = pytest.MonkeyPatch()
    endpoint, bucket = f"http://127.0.0.1:{s3_server}", "warehouse-lake"
    aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    for name, value in {**aws, "AWS_ENDPOINT_URL_S3": endpoint}.items():
        mp.setenv(name, value)  # what dbt's process reads to reach the lake
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    lake = LakeResource(root=f"s3://{bucket}/platform", s3_endpoint_url=endpoint, s3_region="us-east-1")
    env = make_env(tmp_path_factory.mktemp("warehouse-s3"), lake, postgres_server, "commerce_s3", mp)
    for day, data in ((D1, DAY_ONE), (D2, DAY_TWO)):
        load_day(env, day, *data)
        build(env, day)
    yield {**env, "bucket": bucket}
    mp.undo()


def test_warehouse_end_to_end_on_s3(on_s3: dict) -> None:
    assert query(on_s3, "SELECT order_id, status, revenue::DOUBLE FROM core.fact_orders ORDER BY 1") == [
        (1, "delivered", 45.0),
        (2, "cancelled", 0.0),
        (3, "shipped", 0.0),
        (4, "delivered", 10.0),
    ]
    sales = "SELECT sum(order_intake)::DOUBLE, sum(revenue)::DOUBLE FROM marts.kpi_sales WHERE grain = 'day'"
    assert query(on_s3, sales) == [(135.0, 55.0)]
    history = query(on_s3, "SELECT city, is_current FROM core.dim_customers WHERE customer_id = 1 ORDER BY valid_from")
    assert history == [("Berlin", False), ("Munich", True)]

    # Everything the warehouse stores is in its Delta tables in the bucket: a log each, exactly the data
    # files the current version names, and no other object (no manifest, checkpoint or state file).
    lake, bucket = on_s3["resources"]["lake"], on_s3["bucket"]
    assert lake.count_by_date(raw_table("postgres", "orders")) == {D1: 2, D2: 2}
    assert lake.count_by_date(staging_table("orders")) == {D1: 2, D2: 3}
    pages = boto3.client("s3", endpoint_url=lake.s3_endpoint_url).get_paginator("list_objects_v2")
    keys = {o["Key"] for page in pages.paginate(Bucket=bucket, Prefix="platform/") for o in page.get("Contents", [])}
    held = set()
    for name in lake_tables():
        table = lake.table(name)
        if table is None:  # a landing entity that never had a delivery
            continue
        mine = {k for k in keys if k.startswith(f"platform/{name}/")}
        assert any("/_delta_log/" in k for k in mine), name
        named = {u.removeprefix(f"s3://{bucket}/") for u in table.file_uris()}
        assert {k for k in mine if "/_delta_log/" not in k} == named, name
        held |= mine
    # besides the tables, only the KPI marts' rendered charts (plain objects, linked from their materializations)
    charts = {
        f"platform/commerce/marts/charts/{kpi}.png"
        for kpi in ("kpi_sales", "kpi_dropoff", "kpi_shipping_lag", "kpi_customers")
    }
    assert keys == held | charts


def test_warehouse_rebuilt_from_raw_on_s3_gives_identical_rows(on_s3: dict) -> None:
    lake = on_s3["resources"]["lake"]
    before = derived(on_s3)
    assert len(before["core.fact_orders"]) == 4 and len(before["core.dim_customers"]) == 3
    assert before[staging_table("customers")] and {"marts.kpi_sales", "core.dim_date"} <= set(before)
    # The disaster: every derived table is gone (staging, quarantine, the whole DuckDB warehouse file).
    for entity in ENTITIES:
        lake.delete(staging_table(entity))
        lake.delete(quarantine_table(entity))
    Path(on_s3["resources"]["warehouse"].database).unlink()
    assert lake.table(staging_table("orders")) is None
    for day in (D1, D2):  # from raw only: nothing is extracted again
        build(on_s3, day, DERIVED_ASSETS)
    assert derived(on_s3) == before


def shifted(data: tuple[dict, dict], days: int) -> tuple[dict, dict]:
    """A day's source data with every timestamp `days` later."""

    def move(row: dict) -> dict:
        return {k: v + pd.Timedelta(days=days) if isinstance(v, pd.Timestamp) else v for k, v in row.items()}

    return tuple({entity: [move(r) for r in rows] for entity, rows in part.items()} for part in data)  # type: ignore[return-value]


def checks_passed(result: dg.ExecuteInProcessResult) -> None:
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    assert failed == []


def test_empty_processing_dates_give_typed_empty_outputs(postgres_server: dict, tmp_path: Path) -> None:
    mp = pytest.MonkeyPatch()
    try:
        env = make_env(tmp_path, LakeResource(root=str(tmp_path / "lake")), postgres_server, "commerce_empty", mp)
        lake = env["resources"]["lake"]
        # A first date without a single change: every layer exists, empty, typed from the contract.
        checks_passed(build(env, D1))
        assert lake.count_by_date(staging_table("customers")) == {}
        assert str(lake.scan(staging_table("customers")).schema.field("email_hash").type) == "string"
        types = query(
            env,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'core' AND table_name = 'fact_orders' AND column_name IN ('status', 'order_id')",
        )
        assert sorted(types) == [("order_id", "BIGINT"), ("status", "VARCHAR")]
        assert query(env, "SELECT count(*) FROM core.fact_orders") == [(0,)]

        load_day(env, D2, *shifted(DAY_ONE, 1))
        checks_passed(build(env, D2))
        orders = [(1, "shipped"), (2, "cancelled")]
        assert query(env, "SELECT order_id, status FROM core.fact_orders ORDER BY 1") == orders
        assert query(env, "SELECT count(*) FROM core.dim_customers") == [(2,)]

        # Every mart has a row per day from the first run on; no dbt test fails on an empty mart.
        for mart in ("kpi_sales", "kpi_dropoff", "kpi_shipping_lag", "kpi_customers"):
            assert query(env, f"SELECT count(DISTINCT period_start) FROM marts.{mart} WHERE grain = 'day'") == [(1,)]

        # A day without orders after data (the catalogue changes, nothing is ordered): its KPIs are 0, not NULL.
        with env["resources"]["postgres"].connect() as conn, conn.cursor() as cur:
            cur.execute(f"UPDATE commerce.products SET price = price + 1, updated_at = '{D3} 08:00+00'")
        checks_passed(build(env, D3))  # the dbt tests (not-null KPIs among them) are checks
        assert query(env, "SELECT order_id, status FROM core.fact_orders ORDER BY 1") == orders
        assert lake.count_by_date(staging_table("orders")) == {D2: 2}
        assert query(env, f"SELECT sum(orders) FROM marts.kpi_sales WHERE grain = 'day' AND period_start = '{D2}'") == [
            (2,)
        ]
        empty_day = {
            "kpi_sales": "sum(orders), sum(order_intake), sum(revenue), sum(freight)",
            "kpi_dropoff": "sum(order_intake), sum(dropoff_rate)",
            "kpi_shipping_lag": "sum(shipped_orders), sum(median_lag_hours), sum(late_delivery_rate)",
            "kpi_customers": "sum(customers), sum(new_share), sum(returning_share)",
        }
        for mart, figures in empty_day.items():
            (row,) = query(env, f"SELECT {figures} FROM marts.{mart} WHERE grain = 'day' AND period_start = '{D3}'")
            assert all(value == 0 for value in row), (mart, row)
    finally:
        mp.undo()
