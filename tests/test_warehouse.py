"""Commerce warehouse end to end: a real PostgreSQL source and landing files, through raw and staging
into the dbt star schema and KPI marts (real dbt-duckdb), on a small fixture whose KPIs are worked
out by hand below."""

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster_dbt import DbtCliResource
from PIL import Image

from assets.warehouse import dbt as warehouse_dbt
from assets.warehouse import raw, staging
from assets.warehouse.names import quarantine_table, raw_table, staging_table
from demo import warehouse as generator
from resources import LakeResource, LandingResource, PostgresResource, PseudonymizerResource, WarehouseResource

ALL_ASSETS = [
    *raw.raw_assets,
    *staging.staging_assets,
    warehouse_dbt.commerce_dbt_facts,
    warehouse_dbt.commerce_dbt_models,
]
D1, D2, D3 = "2026-01-01", "2026-01-02", "2026-01-03"
PERSONAL = [
    "Anna",
    "Ben",
    "anna@example.org",
    "ben@example.org",
    "+49 30 1111111",
    "+33 1 2222222",
    "Alexanderplatz 1",
    "Marienplatz 5",
    "Rue Oberkampf 9",
]


def ts(day: str, clock: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day} {clock}", tz="UTC")


def frame(entity: str, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(generator.ENTITIES[entity].columns))


SHOPS = frame(
    "shops",
    [
        {
            "shop_id": 1,
            "shop_name": "Mitte",
            "city": "Berlin",
            "country": "DE",
            "channel": "own",
            "updated_at": ts(D1, "00:00"),
        },
        {
            "shop_id": 2,
            "shop_name": "Oberkampf",
            "city": "Paris",
            "country": "FR",
            "channel": "franchise",
            "updated_at": ts(D1, "00:00"),
        },
    ],
)
PRODUCTS = frame(
    "products",
    [
        {"product_id": 1, "product_name": "Mug", "category": "kitchen", "price": 10.0, "updated_at": ts(D1, "00:00")},
        {"product_id": 2, "product_name": "Lamp", "category": "home", "price": 25.0, "updated_at": ts(D1, "00:00")},
    ],
)
ANNA = {
    "customer_id": 1,
    "first_name": "Anna",
    "last_name": "Schmidt",
    "email": "anna@example.org",
    "phone": "+49 30 1111111",
    "street": "Alexanderplatz 1",
    "postcode": "10178",
    "city": "Berlin",
    "country": "DE",
    "created_at": ts(D1, "09:00"),
    "updated_at": ts(D1, "09:00"),
}
BEN = {
    "customer_id": 2,
    "first_name": "Ben",
    "last_name": "Dubois",
    "email": "ben@example.org",
    "phone": "+33 1 2222222",
    "street": "Rue Oberkampf 9",
    "postcode": "75011",
    "city": "Paris",
    "country": "FR",
    "created_at": ts(D1, "09:30"),
    "updated_at": ts(D1, "09:30"),
}
NO = pd.NaT
# Day 1: o1 (Anna, Berlin shop) 2 mugs + 1 lamp = 45, shipped after 4 h; o2 (Ben, Berlin) 2 lamps = 50, cancelled.
O1 = {
    "order_id": 1,
    "customer_id": 1,
    "shop_id": 1,
    "status": "shipped",
    "purchased_at": ts(D1, "10:00"),
    "shipped_at": ts(D1, "14:00"),
    "delivered_at": NO,
    "cancelled_at": NO,
    "updated_at": ts(D1, "14:00"),
}
O2 = {
    "order_id": 2,
    "customer_id": 2,
    "shop_id": 1,
    "status": "cancelled",
    "purchased_at": ts(D1, "12:00"),
    "shipped_at": NO,
    "delivered_at": NO,
    "cancelled_at": ts(D1, "13:00"),
    "updated_at": ts(D1, "13:00"),
}
# Day 2: o1 delivered; Anna moves to Munich; o4 (Anna, Berlin) 1 mug = 10, shipped after 2 h and delivered;
# o3 (Ben, Paris franchise, from a landing file) 3 mugs = 30, shipped after 10 h, never delivered.
O1_DELIVERED = {**O1, "status": "delivered", "delivered_at": ts(D2, "08:00"), "updated_at": ts(D2, "08:00")}
ANNA_MOVED = {**ANNA, "street": "Marienplatz 5", "postcode": "80331", "city": "Munich", "updated_at": ts(D2, "07:00")}
O4 = {
    "order_id": 4,
    "customer_id": 1,
    "shop_id": 1,
    "status": "delivered",
    "purchased_at": ts(D2, "11:00"),
    "shipped_at": ts(D2, "13:00"),
    "delivered_at": ts(D2, "20:00"),
    "cancelled_at": NO,
    "updated_at": ts(D2, "20:00"),
}
O3 = {
    "order_id": 3,
    "customer_id": 2,
    "shop_id": 2,
    "status": "shipped",
    "purchased_at": ts(D2, "09:00"),
    "shipped_at": ts(D2, "19:00"),
    "delivered_at": NO,
    "cancelled_at": NO,
    "updated_at": ts(D2, "19:00"),
}


def position(pid: int, order: dict, product: int, quantity: int, price: float) -> dict:
    return {
        "position_id": pid,
        "order_id": order["order_id"],
        "product_id": product,
        "quantity": quantity,
        "price": price,
        "updated_at": order["purchased_at"],
    }


# What the source holds new on each day: (PostgreSQL rows, landing files) per entity.
DAY_ONE = (
    {
        "shops": SHOPS.to_dict("records"),
        "products": PRODUCTS.to_dict("records"),
        "customers": [ANNA, BEN],
        "orders": [O1, O2],
        "order_positions": [position(1, O1, 1, 2, 10.0), position(2, O1, 2, 1, 25.0), position(3, O2, 2, 2, 25.0)],
    },
    {"shops": SHOPS.to_dict("records"), "products": PRODUCTS.to_dict("records")},
)
DAY_TWO = (
    {"customers": [ANNA_MOVED], "orders": [O1_DELIVERED, O4], "order_positions": [position(5, O4, 1, 1, 10.0)]},
    {"customers": [BEN], "orders": [O3], "order_positions": [position(4, O3, 1, 3, 10.0)]},
)


@pytest.fixture(scope="module")
def env(postgres_server: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("warehouse")
    mp = pytest.MonkeyPatch()
    # dbt (a subprocess) reads the database file and the lake from the environment, like production.
    mp.setenv("DUCKDB_DATABASE", str(root / "warehouse.duckdb"))
    mp.setenv("LAKE_ROOT", str(root / "lake"))
    resources = {
        "postgres": PostgresResource(
            port=int(postgres_server["POSTGRES_PORT"]), password=postgres_server["POSTGRES_PASSWORD"]
        ),
        "lake": LakeResource(root=str(root / "lake")),
        "landing": LandingResource(root=str(root / "input")),
        "warehouse": WarehouseResource(database=str(root / "warehouse.duckdb")),
        "pseudonymizer": PseudonymizerResource(key="test-key"),
        "dbt": DbtCliResource(
            project_dir=warehouse_dbt.warehouse_dbt_project, dbt_executable=warehouse_dbt.DBT_EXECUTABLE
        ),
    }
    with resources["postgres"].connect() as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS commerce CASCADE")
        cur.execute(generator.source_ddl())
    yield {"root": root, "resources": resources}
    mp.undo()


def build(env: dict, day: str, selection=ALL_ASSETS) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            selection, partition_key=day, resources=env["resources"], instance=instance, raise_on_error=False
        )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def load_day(env: dict, day: str, pg: dict[str, list[dict]], landing: dict[str, list[dict]]) -> None:
    with env["resources"]["postgres"].connect() as conn:
        for entity, rows in pg.items():
            generator.upsert(conn, entity, frame(entity, rows))
    for entity, rows in landing.items():
        generator.write_landing(env["root"] / "input", entity, day, frame(entity, rows))


def query(env: dict, sql: str) -> list[tuple]:
    with env["resources"]["warehouse"].connect() as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def after_day_one(env: dict) -> dict:
    load_day(env, D1, *DAY_ONE)
    result = build(env, D1)
    return {"result": result, "orders": query(env, "SELECT order_id, status, revenue FROM core.fact_orders ORDER BY 1")}


@pytest.fixture(scope="module")
def built(env: dict, after_day_one: dict) -> dict:
    load_day(env, D2, *DAY_TWO)
    return {**after_day_one, "result": build(env, D2)}  # day two's run, not day one's


def test_kpis_match_the_hand_computed_values(env: dict, built: dict) -> None:
    sales = query(
        env,
        "SELECT grain, period_start::VARCHAR, shop_id, city, orders, order_intake::DOUBLE, "
        "revenue::DOUBLE FROM marts.kpi_sales ORDER BY 1, 2, 3",
    )
    assert sales == [
        ("day", D1, 1, "Berlin", 2, 95.0, 45.0),  # o1 45 delivered + o2 50 cancelled
        ("day", D1, 2, "Paris", 0, 0.0, 0.0),  # a row per calendar day and shop, 0 without orders
        ("day", D2, 1, "Berlin", 1, 10.0, 10.0),  # o4
        ("day", D2, 2, "Paris", 1, 30.0, 0.0),  # o3 never delivered
        ("month", D1, 1, "Berlin", 3, 105.0, 55.0),
        ("month", D1, 2, "Paris", 1, 30.0, 0.0),
        ("week", "2025-12-29", 1, "Berlin", 3, 105.0, 55.0),
        ("week", "2025-12-29", 2, "Paris", 1, 30.0, 0.0),
    ]
    dropoff = query(env, "SELECT shop_id, dropoff_rate::DOUBLE FROM marts.kpi_dropoff WHERE grain = 'month' ORDER BY 1")
    assert dropoff == [(1, round(1 - 55 / 105, 4)), (2, 1.0)]
    lag = query(
        env,
        "SELECT shop_id, shipped_orders, median_lag_hours::DOUBLE, p90_lag_hours::DOUBLE "
        "FROM marts.kpi_shipping_lag WHERE grain = 'month' ORDER BY 1",
    )
    assert lag == [(1, 2, 3.0, 3.8), (2, 1, 10.0, 10.0)]  # o1 4 h, o4 2 h: p90 = 2 + 0.9 * 2
    customers = query(
        env,
        "SELECT grain, period_start::VARCHAR, customers, new_customers, returning_customers, "
        "returning_share::DOUBLE FROM marts.kpi_customers ORDER BY 1, 2",
    )
    assert customers == [("day", D1, 2, 2, 0, 0.0), ("day", D2, 2, 0, 2, 1.0), ("month", D1, 2, 2, 0, 0.0)]

    # The rendered view is attached to each KPI materialization.
    mats = {
        m.asset_key.to_user_string(): m
        for m in built["result"].get_asset_materialization_events()
        for m in [m.materialization]
    }
    for kpi in ("kpi_sales", "kpi_dropoff", "kpi_shipping_lag", "kpi_customers"):
        assert "|" in mats[kpi].metadata["preview"].value
    # Headline figures as numbers, which the UI plots over materializations: totals to date, and the latest
    # day's customers.
    figures = {kpi: {k: v.value for k, v in m.metadata.items()} for kpi, m in mats.items()}
    sales = {"orders_total": 4, "order_intake_total": 135.0, "revenue_total": 55.0, "orders_latest_day": 2}
    assert figures["kpi_sales"].items() >= sales.items()
    assert all(type(figures["kpi_sales"][k]) is type(v) for k, v in sales.items())
    assert figures["kpi_dropoff"]["dropoff_rate_total"] == round(1 - 55 / 135, 4)
    # lags 2, 4 and 10 h over both shops: median 4, p90 = 4 + 0.8 * 6
    assert figures["kpi_shipping_lag"]["median_lag_hours"] == 4.0
    assert figures["kpi_shipping_lag"]["p90_lag_hours"] == 8.8
    assert figures["kpi_customers"]["new_share_latest_day"] == 0.0
    assert figures["kpi_customers"]["returning_share_latest_day"] == 1.0
    assert figures["kpi_customers"]["latest_day"] == D2
    # A chart per mart in the lake, linked from the materialization, and inline.
    for kpi in ("kpi_sales", "kpi_dropoff", "kpi_shipping_lag", "kpi_customers"):
        chart = Path(mats[kpi].metadata["chart"].value)
        assert chart == Path(env["resources"]["lake"].root) / "commerce" / "marts" / "charts" / f"{kpi}.png"
        with Image.open(chart) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] >= 400
        assert mats[kpi].metadata["chart_preview"].value.startswith("![")
    # dbt tests ran as asset checks and passed.
    checks = built["result"].get_asset_check_evaluations()
    assert any(c.check_name == "unique_fact_orders_order_id" for c in checks)
    assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
    # Staging accounts for every version received, as every domain does (assets/quality.py).
    lost = [c for c in checks if c.check_name == "nothing_lost_check"]
    assert {c.asset_key.path[-1] for c in lost} >= {"stg_customers", "stg_orders"}
    assert all(c.metadata["received_rows"].value == c.metadata["accounted_rows"].value for c in lost)


def test_incremental_day_updates_facts_and_keeps_customer_history(env: dict, built: dict) -> None:
    assert built["orders"] == [(1, "shipped", 0), (2, "cancelled", 0)]  # after day one only
    assert query(env, "SELECT order_id, status, revenue::DOUBLE FROM core.fact_orders ORDER BY 1") == [
        (1, "delivered", 45.0),
        (2, "cancelled", 0.0),
        (3, "shipped", 0.0),
        (4, "delivered", 10.0),
    ]
    history = query(
        env,
        "SELECT city, is_current, valid_from::VARCHAR FROM core.dim_customers "
        "WHERE customer_id = 1 ORDER BY valid_from",
    )
    assert history == [("Berlin", False, "2026-01-01 09:00:00+00"), ("Munich", True, "2026-01-02 07:00:00+00")]
    assert query(env, "SELECT count(*) FROM core.dim_customers WHERE customer_id = 2") == [(1,)]
    # Extraction windows tile time: every source row was extracted exactly once.
    lake = env["resources"]["lake"]
    extracted = lake.scan(raw_table("postgres", "orders"), columns=["order_id"])["order_id"].to_pylist()
    assert sorted(extracted, key=int) == ["1", "1", "2", "4"]  # o1 as shipped on day 1 and delivered on day 2
    assert lake.count_by_date(raw_table("postgres", "orders")) == {D1: 2, D2: 2}


def test_no_raw_personal_data_in_staging_or_warehouse(env: dict, built: dict) -> None:
    lake = env["resources"]["lake"]
    staged = pd.concat([lake.scan(staging_table(e)).to_pandas() for e in generator.ENTITIES], ignore_index=True)
    assert "email_hash" in staged.columns and "email" not in staged.columns
    text = staged.astype(str).to_csv()
    with env["resources"]["warehouse"].connect() as conn:
        for schema, table in conn.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall():
            text += conn.execute(f'SELECT * FROM "{schema}"."{table}"').df().astype(str).to_csv()
    assert "Munich" in text  # the city is not personal on its own and stays readable
    leaked = [value for value in PERSONAL if value.lower() in text.lower()]
    assert leaked == []


def lake_tables() -> list[str]:
    """Every lake table of the warehouse: raw per source and entity, staging and its quarantine."""
    return [
        *(raw_table(source, e) for source in ("postgres", "landing") for e in generator.ENTITIES),
        *(t(e) for t in (staging_table, quarantine_table) for e in generator.ENTITIES),
    ]


def sorted_rows(lake: LakeResource, table: str, dates: list[str] | None = None) -> list[tuple]:
    return duckdb.arrow(lake.scan(table, dates)).order("ALL").fetchall()


def fingerprint(env: dict) -> dict:
    lake = env["resources"]["lake"]
    files = {f"{t} {d}": sorted_rows(lake, t, [d]) for t in lake_tables() for d in sorted(lake.count_by_date(t))}
    tables = {
        t: query(env, f"SELECT * FROM {t} ORDER BY ALL")
        for t in (
            "core.fact_orders",
            "core.fact_order_positions",
            "core.dim_customers",
            "marts.kpi_sales",
            "marts.kpi_customers",
            "marts.kpi_dropoff",
            "marts.kpi_shipping_lag",
        )
    }
    return {"files": files, "tables": tables}


def test_reprocessing_a_date_twice_gives_identical_output(env: dict, built: dict) -> None:
    before = fingerprint(env)
    (env["root"] / "input" / "orders" / D2 / "export.csv").touch()
    build(env, D2)
    first = fingerprint(env)
    build(env, D2)
    assert fingerprint(env) == first == before
    assert any(D2 in name for name in first["files"]) and any(D1 in name for name in first["files"])


def test_schema_drift_is_kept_in_raw_mapped_in_staging_and_fails_the_check(env: dict, built: dict) -> None:
    with env["resources"]["postgres"].connect() as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE commerce.customers RENAME COLUMN email TO email_address")
        cur.execute("ALTER TABLE commerce.customers ADD COLUMN loyalty_tier text")
        cur.execute("ALTER TABLE commerce.orders ALTER COLUMN shop_id TYPE text")
        cur.execute(f"UPDATE commerce.customers SET loyalty_tier = 'gold', updated_at = '{D3} 08:00+00'")
        cur.execute(f"UPDATE commerce.orders SET updated_at = '{D3} 09:00+00' WHERE order_id = 2")
    selection = [
        a
        for a in [*raw.raw_assets, *staging.staging_assets]
        if any(k.path[-1].endswith(("customers", "orders")) for k in a.keys)
    ]
    result = build(env, D3, selection)
    checks = {(c.asset_key.path[-1], c.check_name): c for c in result.get_asset_check_evaluations()}
    customers = checks[("raw_postgres_customers", "schema_drift_check")]
    assert not customers.passed
    assert customers.metadata["drift"].value[D3]["added"] == ["loyalty_tier"]
    assert customers.metadata["drift"].value[D3]["mapped"] == ["email_address -> email"]
    orders = checks[("raw_postgres_orders", "schema_drift_check")]
    assert not orders.passed and orders.metadata["drift"].value[D3]["retyped"] == ["shop_id: VARCHAR (contract int)"]
    assert checks[("raw_landing_orders", "schema_drift_check")].passed
    assert checks[("stg_customers", "stg_customers_schema_check")].passed

    lake = env["resources"]["lake"]
    raw_customers = lake.scan(raw_table("postgres", "customers"), [D3])
    assert {"loyalty_tier", "email_address"} <= set(raw_customers.column_names)  # kept as received
    assert raw_customers.num_rows == 2 and set(raw_customers["loyalty_tier"].to_pylist()) == {"gold"}
    staged = lake.scan(staging_table("customers"), [D3])
    assert "loyalty_tier" not in staged.column_names
    assert staged.num_rows == 2 and staged["email_hash"].null_count == 0  # email_address mapped to email
    shop = lake.scan(staging_table("orders"), [D3], columns=["shop_id"])
    assert shop["shop_id"].to_pylist() == [1] and shop.schema.field("shop_id").type == "int64"
