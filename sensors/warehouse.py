"""Commerce warehouse automation: one job per processing date (extract, stage, star schema, marts),
scheduled daily for the date that just ended; backfills of the same job reprocess chosen dates."""

import dagster as dg

from assets.warehouse.names import warehouse_daily_partitions
from sensors.run_policy import BATCH_TAGS

commerce_warehouse_job = dg.define_asset_job(
    "commerce_warehouse_job",
    selection=dg.AssetSelection.groups("commerce_raw", "commerce_staging", "commerce_core", "commerce_marts"),
    partitions_def=warehouse_daily_partitions,
    description="Extract one processing date from PostgreSQL and the landing files, stage it, rebuild facts, "
    "dimensions and KPI marts.",
    tags=BATCH_TAGS,
)

commerce_warehouse_schedule = dg.build_schedule_from_partitioned_job(
    commerce_warehouse_job, hour_of_day=1, description="Every night, the processing date that just ended."
)
