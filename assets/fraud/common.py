"""Parsing shared by the fraud assets: the streams, each message's date partition, sound event times."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from assets.fraud.names import (
    BRONZE_CHANGES,
    BRONZE_EVENTS,
    CHANGES_GROUP,
    CHANGES_TOPIC,
    EVENTS_GROUP,
    EVENTS_TOPIC,
    FIRST_VALID_TIME,
    MAX_CLOCK_SKEW,
)
from assets.streaming import BRONZE_SCHEMA, Stream
from resources import LakeResource
from resources.warehouse import engine


def sound_time_sql(text: str) -> str:
    """The timestamp written in SQL expression `text` when it parses and is plausible, else NULL."""
    ts = f"try_cast({text} AS TIMESTAMPTZ)"
    return (
        f"CASE WHEN {ts} >= TIMESTAMPTZ '{FIRST_VALID_TIME}' "
        f"AND {ts} <= kafka_timestamp + INTERVAL '{MAX_CLOCK_SKEW}' THEN {ts} END"
    )


def partition_dates_by(field: str) -> Callable[[pa.Table], pa.Table]:
    """Bronze rows with their date partition: the UTC date of the message's own `field` time when it is
    sound, else the date the broker received it (so a bad message is quarantined on its arrival day)."""

    text = f"try(json_extract_string(decode(payload), '$.{field}'))"

    def with_partition_dates(messages: pa.Table) -> pa.Table:
        with engine() as conn:
            conn.register("messages", messages)
            table = conn.execute(
                f"SELECT *, coalesce({sound_time_sql(text)}::DATE, kafka_timestamp::DATE) AS event_date "
                'FROM messages ORDER BY "partition", "offset"'
            ).to_arrow_table()
        return table.select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)

    return with_partition_dates


EVENTS_STREAM = Stream(
    topic=EVENTS_TOPIC, group_id=EVENTS_GROUP, bronze_table=BRONZE_EVENTS, route=partition_dates_by("occurred_at")
)
CHANGES_STREAM = Stream(
    topic=CHANGES_TOPIC, group_id=CHANGES_GROUP, bronze_table=BRONZE_CHANGES, route=partition_dates_by("changed_at")
)


def replace_table(lake: LakeResource, name: str, rows: pa.Table, version: int | None = None) -> None:
    """Make lake table `name` hold exactly `rows`, in one commit (every date partition it held is replaced).
    For the tables that are rebuilt whole (the dimensions, the serving table)."""
    held = set(lake.count_by_date(name))
    new = {d.isoformat() for d in pc.unique(rows["event_date"]).to_pylist() if d is not None}
    lake.replace_dates(name, rows, sorted(held | new), version=version)
