"""Gold: daily clickstream metrics and the product funnel, for dashboards and decision services."""

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from assets.clickstream.names import (
    DAILY_METRICS_TABLE,
    PRODUCT_FUNNEL_TABLE,
    SILVER_TABLE,
    clickstream_daily_partitions,
)
from assets.clickstream.silver import SILVER_ARROW_SCHEMA
from assets.pandera_checks import schema_check_result, table_schema
from assets.partition_checks import per_partition
from resources import LakeResource, WarehouseResource
from resources.warehouse import engine


class DailyMetrics(pa.DataFrameModel):
    event_date: Series[str]
    event_name: Series[str]
    platform: Series[str] = pa.Field(nullable=True)
    events: Series[int] = pa.Field(ge=1)
    users: Series[int] = pa.Field(ge=1)
    products: Series[int] = pa.Field(ge=0)


class ProductFunnel(pa.DataFrameModel):
    event_date: Series[str]
    SKU: Series[str]
    product_name: Series[str] = pa.Field(nullable=True)
    viewers: Series[int] = pa.Field(ge=0)
    clickers: Series[int] = pa.Field(ge=0)
    purchasers: Series[int] = pa.Field(ge=0)
    view_to_click: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    click_to_purchase: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    view_to_purchase: Series[float] = pa.Field(ge=0, le=1, nullable=True)


DAILY_METRICS_SQL = """
SELECT strftime(event_date, '%Y-%m-%d') AS event_date, event_name, platform, count(*)::BIGINT AS events,
       count(DISTINCT user_id)::BIGINT AS users, count(DISTINCT "SKU")::BIGINT AS products
FROM silver GROUP BY ALL ORDER BY ALL
"""

# A user counts at a stage only after reaching the stage before it on the same product that day:
# clickers clicked after a view, purchasers purchased after such a click.
PRODUCT_FUNNEL_SQL = """
WITH firsts AS (
    SELECT "SKU", user_id,
           min(event_datetime) FILTER (event_name = 'view') AS viewed,
           min(event_datetime) FILTER (event_name = 'click') AS clicked,
           max(event_datetime) FILTER (event_name = 'purchase') AS purchased
    FROM silver WHERE "SKU" IS NOT NULL GROUP BY ALL
), stages AS (
    SELECT "SKU", viewed IS NOT NULL AS v,
           viewed IS NOT NULL AND clicked >= viewed AS c,
           viewed IS NOT NULL AND clicked >= viewed AND purchased >= clicked AS p
    FROM firsts
), names AS (
    SELECT "SKU", min(product_name) AS product_name FROM silver GROUP BY ALL
), counts AS (
    SELECT "SKU", count(*) FILTER (v) AS viewers, count(*) FILTER (c) AS clickers, count(*) FILTER (p) AS purchasers
    FROM stages GROUP BY ALL
)
SELECT "SKU", product_name, viewers, clickers, purchasers,
       clickers / nullif(viewers, 0) AS view_to_click,
       purchasers / nullif(clickers, 0) AS click_to_purchase,
       purchasers / nullif(viewers, 0) AS view_to_purchase
FROM counts JOIN names USING ("SKU") ORDER BY "SKU"
"""


def _gold_check(name: str, asset: str, model: type[pa.DataFrameModel]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        description=f"The partition satisfies the Pandera schema {model.__name__}.",
        partitions_def=clickstream_daily_partitions,
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "gold_clickstream_daily_metrics",
            deps=["silver_clickstream_events"],
            group_name="clickstream_gold",
            kinds={"deltalake", "duckdb"},
            description="Events, distinct users and distinct products per day, event name and platform.",
            metadata={"dagster/column_schema": table_schema(DailyMetrics)},
        ),
        dg.AssetSpec(
            "gold_clickstream_product_funnel",
            deps=["silver_clickstream_events"],
            group_name="clickstream_gold",
            kinds={"deltalake", "duckdb"},
            description=(
                "Per product and day: users who viewed, then clicked, then purchased it, and the "
                "conversion rates between the stages."
            ),
            metadata={"dagster/column_schema": table_schema(ProductFunnel)},
        ),
    ],
    partitions_def=clickstream_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        _gold_check("daily_metrics_schema_check", "gold_clickstream_daily_metrics", DailyMetrics),
        _gold_check("product_funnel_schema_check", "gold_clickstream_product_funnel", ProductFunnel),
    ],
)
def clickstream_gold(context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
    """Recompute the run's dates of gold from silver and publish them as DuckDB views."""
    outputs: dict[str, list[pd.DataFrame]] = {DAILY_METRICS_TABLE: [], PRODUCT_FUNNEL_TABLE: []}
    for event_date in context.partition_keys:
        silver = lake.scan(SILVER_TABLE, [event_date], schema=SILVER_ARROW_SCHEMA)
        with engine() as conn:
            conn.register("silver", silver)
            # Arrow straight from DuckDB: an empty date keeps the columns' types.
            metrics = conn.execute(DAILY_METRICS_SQL).to_arrow_table()
            funnel = conn.execute(
                f"SELECT DATE '{event_date}' AS event_date, * FROM ({PRODUCT_FUNNEL_SQL})"
            ).to_arrow_table()
        metrics = metrics.set_column(0, "event_date", metrics["event_date"].cast(pyarrow.date32()))
        for table, rows in ((DAILY_METRICS_TABLE, metrics), (PRODUCT_FUNNEL_TABLE, funnel)):
            lake.replace_dates(table, rows, [event_date])
            frame = rows.to_pandas()
            frame["event_date"] = frame["event_date"].astype(str)
            outputs[table].append(frame)
    for table, model, asset, check in (
        (DAILY_METRICS_TABLE, DailyMetrics, "gold_clickstream_daily_metrics", "daily_metrics_schema_check"),
        (PRODUCT_FUNNEL_TABLE, ProductFunnel, "gold_clickstream_product_funnel", "product_funnel_schema_check"),
    ):
        frame = pd.concat(outputs[table], ignore_index=True)
        yield dg.MaterializeResult(
            asset_key=asset,
            metadata={
                "dagster/row_count": len(frame),
                "preview": dg.MetadataValue.md(frame.head(10).to_markdown() or ""),
            },
        )
        # One result per date, also in a range backfill (assets/partition_checks.py).
        by_date = zip(context.partition_keys, outputs[table], strict=True)
        yield from per_partition(
            context, {d: schema_check_result(model, f, asset_key=asset, check_name=check) for d, f in by_date}
        )
    publish(warehouse, lake, {name: pd.concat(frames, ignore_index=True) for name, frames in outputs.items()})


def publish(warehouse: WarehouseResource, lake: LakeResource, gold: dict[str, pd.DataFrame]) -> None:
    """Gold dates into DuckDB tables (replacing exactly those dates), so analysts query them by name;
    silver is there too, as a view over its Delta table (DuckDB's delta extension)."""
    with warehouse.connect() as conn:
        for dataset, frame in gold.items():
            table = dataset.replace("/", "_")
            conn.register("frame", frame)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM frame WHERE false")
            conn.execute(f"DELETE FROM {table} WHERE event_date IN (SELECT DISTINCT event_date FROM frame)")
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
            conn.unregister("frame")
        if not lake.is_s3 and lake.table(SILVER_TABLE) is not None:
            source = f"delta_scan('{lake.uri(SILVER_TABLE)}')"
            conn.execute(f"CREATE OR REPLACE VIEW silver_clickstream_events AS SELECT * FROM {source}")
