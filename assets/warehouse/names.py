"""The commerce warehouse's names: its partitions. Sensors and tools import them from here, not from
the assets."""

import dagster as dg

# One partition per processing date: the day a row was written or updated at the source (PostgreSQL),
# or the delivery folder input/<entity>/<YYYY-MM-DD>/ of the landing files.
warehouse_daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01")
