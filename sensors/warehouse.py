"""Commerce warehouse automation: every night the processing date that just ended is extracted from
PostgreSQL and the landing files (`commerce_raw_schedule`); Declarative Automation then stages it and
rebuilds the star schema and the KPI marts, each layer once the one before it passed its blocking checks
(sensors/policies.py). `commerce_warehouse_job` reprocesses chosen dates end to end (backfills)."""

import dagster as dg

from assets.warehouse.contracts import ENTITIES
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

commerce_import_job = dg.define_asset_job(
    "commerce_import_job",
    selection=dg.AssetSelection.assets(*(f"raw_landing_{entity}" for entity in ENTITIES))
    | dg.AssetSelection.groups("commerce_staging", "commerce_core", "commerce_marts"),
    partitions_def=warehouse_daily_partitions,
    description="A history import (python -m assets.warehouse.history): the landing files of a range of dates "
    "staged and built into the star schema and marts in one run.",
    tags=BATCH_TAGS,
)

commerce_raw_job = dg.define_asset_job(
    "commerce_raw_job",
    selection=dg.AssetSelection.groups("commerce_raw"),
    partitions_def=warehouse_daily_partitions,
    description="Extract one processing date from PostgreSQL and the landing files; automation takes it from there.",
    tags=BATCH_TAGS,
)

commerce_raw_schedule = dg.build_schedule_from_partitioned_job(
    commerce_raw_job,
    hour_of_day=1,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night, the processing date that just ended.",
)
