"""The commerce warehouse's names: its partitions and lake tables. Sensors and tools import them from
here, not from the assets."""

import dagster as dg

# One partition per processing date: the day a row was written or updated at the source (PostgreSQL),
# or the delivery folder input/<entity>/<YYYY-MM-DD>/ of the landing files.
warehouse_daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01")


# Lake tables (Delta, partitioned by processing date in the lake's partition column `event_date`): raw
# per source and entity, staging and its quarantine per entity.
def raw_table(source: str, entity: str) -> str:
    return f"raw/commerce_{source}_{entity}"


def staging_table(entity: str) -> str:
    return f"staging/commerce_{entity}"


def quarantine_table(entity: str) -> str:
    return f"quarantine/commerce_{entity}"
