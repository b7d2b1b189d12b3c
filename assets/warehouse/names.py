"""The commerce warehouse's names: its partitions, lake tables and source settings. Sensors and tools
import them from here, not from the assets.

Read once when the code location loads (Dagster needs the partitions when the definitions are built):
`COMMERCE_PARTITIONS_START` (default 2026-01-01), the first processing date (a history import moves it
back), and `COMMERCE_SOURCE_TIMEZONE` (default UTC), the source's time zone: timestamps without an
offset are local times there, and business dates are local dates there (dbt reads the same variable)."""

import datetime as dt
import os
import zoneinfo

import dagster as dg


class CommerceSettingError(ValueError):
    """A commerce setting in the environment is not valid; the message names it."""


def _partitions_start() -> str:
    value = os.environ.get("COMMERCE_PARTITIONS_START") or "2026-01-01"
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise CommerceSettingError(f"COMMERCE_PARTITIONS_START={value!r} is not a date (YYYY-MM-DD)") from None
    return value


def source_timezone() -> str:
    """The source's time zone (an IANA name), checked."""
    value = os.environ.get("COMMERCE_SOURCE_TIMEZONE") or "UTC"
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CommerceSettingError(
            f"COMMERCE_SOURCE_TIMEZONE={value!r} is not a time zone (e.g. Europe/Berlin)"
        ) from None
    return value


PARTITIONS_START = _partitions_start()
SOURCE_TIMEZONE = source_timezone()

# One partition per processing date: the day a row was written or updated at the source (PostgreSQL),
# or the delivery folder input/<entity>/<YYYY-MM-DD>/ of the landing files.
warehouse_daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START)


# Lake tables (Delta, partitioned by processing date in the lake's partition column `event_date`): raw
# per source and entity, staging and its quarantine per entity.
def raw_table(source: str, entity: str) -> str:
    return f"raw/commerce_{source}_{entity}"


def staging_table(entity: str) -> str:
    return f"staging/commerce_{entity}"


def quarantine_table(entity: str) -> str:
    return f"quarantine/commerce_{entity}"
