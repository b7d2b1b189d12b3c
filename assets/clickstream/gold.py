"""Gold: daily clickstream metrics and the product funnel, for dashboards and decision services."""

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from assets.clickstream.aggregates import load_date, write_gold
from assets.clickstream.names import (
    CODE_VERSION,
    DAILY_METRICS_TABLE,
    PRODUCT_FUNNEL_TABLE,
    SILVER_TABLE,
    clickstream_daily_partitions,
)
from assets.pandera_checks import schema_check_result, table_schema, validate_schema
from assets.partition_checks import per_partition
from assets.streaming import Report
from resources import LakeResource, WarehouseResource


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
    stage_number: Series[int] = pa.Field(ge=1)
    stage: Series[str]
    users: Series[int] = pa.Field(ge=0)
    share_of_first_stage: Series[float] = pa.Field(ge=0, le=1, nullable=True)


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
            code_version=CODE_VERSION,
            kinds={"deltalake", "duckdb"},
            description="Events, distinct users and distinct products per day, event name and platform.",
            metadata={"dagster/column_schema": table_schema(DailyMetrics)},
        ),
        dg.AssetSpec(
            "gold_clickstream_product_funnel",
            deps=["silver_clickstream_events"],
            group_name="clickstream_gold",
            code_version=CODE_VERSION,
            kinds={"deltalake", "duckdb"},
            description=(
                "Per product, day and funnel stage (configured in assets/clickstream/clickstream.yaml; by default "
                "view, "
                "click, add to cart, purchase): the users who reached the stage, in order (a later stage's "
                "event at or after their first view, every required stage before it reached; optional "
                "stages may be skipped), and their share of the first stage's users."
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
    """Gold of the run's dates, counted from their aggregate state (O(distinct keys), no event is read
    again), and published to DuckDB. The streaming run keeps the same tables current between these runs."""
    published = {}
    for event_date in context.partition_keys:
        published[event_date] = write_gold(lake, event_date, load_date(lake, event_date))
    frames = gold_frames(published)
    for (table, _, asset, _), frame in zip(GOLD_OUTPUTS, frames.values(), strict=True):
        yield dg.MaterializeResult(
            asset_key=asset,
            metadata={
                "dagster/row_count": len(frame),
                **headline_figures(table, frame),
                "preview": dg.MetadataValue.md(frame.head(10).to_markdown() or ""),
                "table": table,
            },
        )
    for index, (_, model, asset, check) in enumerate(GOLD_OUTPUTS):
        # One result per date, also in a range backfill (assets/partition_checks.py).
        by_date = {
            d: schema_check_result(model, _frame(tables[index]), asset_key=asset, check_name=check)
            for d, tables in published.items()
        }
        yield from per_partition(context, by_date)
    publish(warehouse, lake, frames)


GOLD_OUTPUTS = (
    (DAILY_METRICS_TABLE, DailyMetrics, "gold_clickstream_daily_metrics", "daily_metrics_schema_check"),
    (PRODUCT_FUNNEL_TABLE, ProductFunnel, "gold_clickstream_product_funnel", "product_funnel_schema_check"),
)


def headline_figures(table: str, frame: pd.DataFrame) -> dict[str, float]:
    """The KPIs of a gold table as numeric metadata, which the UI plots over its materializations: events
    and purchases per day; the funnel's users at its first and last stage (summed over products) and the
    conversion between them."""
    if table == DAILY_METRICS_TABLE:
        events = frame.groupby("event_name")["events"].sum() if len(frame) else pd.Series(dtype=int)
        return {"events": int(events.sum()), "purchases": int(events.get("purchase", 0))}
    by_stage = frame.groupby("stage_number")["users"].sum() if len(frame) else pd.Series(dtype=int)
    entered = int(by_stage.iloc[0]) if len(by_stage) else 0
    completed = int(by_stage.iloc[-1]) if len(by_stage) else 0
    return {
        "funnel_entered": entered,
        "funnel_completed": completed,
        "conversion": completed / entered if entered else 0.0,
    }


def gold_frames(published: dict[str, tuple[pyarrow.Table, pyarrow.Table]]) -> dict[str, pd.DataFrame]:
    """Gold rows of several dates, (metrics, funnel) per date, as one frame per gold table."""
    return {
        table: pd.concat([_frame(tables[i]) for tables in published.values()], ignore_index=True)
        for i, table in enumerate((DAILY_METRICS_TABLE, PRODUCT_FUNNEL_TABLE))
    }


def _frame(rows: pyarrow.Table) -> pd.DataFrame:
    frame = rows.to_pandas()
    frame["event_date"] = frame["event_date"].astype(str)
    return frame


def gold_report(published: dict[str, tuple[pyarrow.Table, pyarrow.Table]]) -> Report:
    """What the streaming run reports when it publishes gold: per date, both tables' materializations and
    their schema checks."""
    report = Report()
    for event_date, tables in published.items():
        for (table, model, asset, check), rows in zip(GOLD_OUTPUTS, tables, strict=True):
            passed, metadata = validate_schema(model, _frame(rows))
            report.materializations.append(
                dg.AssetMaterialization(
                    asset,
                    partition=event_date,
                    metadata={
                        "dagster/row_count": rows.num_rows,
                        "table": table,
                        **headline_figures(table, _frame(rows)),
                    },
                )
            )
            report.checks.append(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(asset),
                    check_name=check,
                    passed=passed,
                    metadata=metadata,
                    partition=event_date,
                )
            )
    return report


def publish(warehouse: WarehouseResource, lake: LakeResource, gold: dict[str, pd.DataFrame]) -> None:
    """Silver and gold by name in DuckDB, for analysts: on a local lake, views over the Delta tables (always
    current, also between gold runs); on S3, gold's dates copied into DuckDB tables (replacing exactly
    those dates)."""
    with warehouse.connect() as conn:
        if not lake.is_s3:
            for table in (SILVER_TABLE, DAILY_METRICS_TABLE, PRODUCT_FUNNEL_TABLE):
                if lake.table(table) is not None:
                    view = table.replace("/", "_")
                    if conn.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [view]).fetchone():
                        conn.execute(f"DROP TABLE {view}")  # a copy from an S3 lake of earlier days
                    conn.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM delta_scan('{lake.uri(table)}')")
            return
        for dataset, frame in gold.items():
            table = dataset.replace("/", "_")
            conn.register("frame", frame)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM frame WHERE false")
            conn.execute(f"DELETE FROM {table} WHERE event_date IN (SELECT DISTINCT event_date FROM frame)")
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
            conn.unregister("frame")
