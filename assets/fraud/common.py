"""Parsing shared by the fraud assets: the streams, each message's date partition, sound event times."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from assets.event_time import EventTimeBounds
from assets.fraud.names import (
    BOUNDS,
    BRONZE_CHANGES,
    BRONZE_EVENTS,
    CHANGES_GROUP,
    CHANGES_TOPIC,
    EVENTS_GROUP,
    EVENTS_TOPIC,
)
from assets.streaming import BRONZE_SCHEMA, Stream
from resources import LakeResource
from resources.warehouse import engine


def sound_time_sql(text: str, bounds: EventTimeBounds = BOUNDS) -> str:
    """The timestamp written in SQL expression `text` when it parses and is plausible (from the earliest
    accepted date to the clock skew past the broker's time), else NULL."""
    ts = f"try_cast({text} AS TIMESTAMPTZ)"
    return (
        f"CASE WHEN {ts} >= TIMESTAMPTZ '{bounds.earliest_event_date} 00:00:00+00' "
        f"AND {ts} <= kafka_timestamp + INTERVAL '{bounds.max_clock_skew}' THEN {ts} END"
    )


def first_partition_sql(bounds: EventTimeBounds = BOUNDS) -> str:
    return f"TIMESTAMPTZ '{bounds.partitions_start} 00:00:00+00'"


def partition_dates_by(
    field: str, bounds: EventTimeBounds = BOUNDS, partitioned: bool = True
) -> Callable[[pa.Table], pa.Table]:
    """Bronze rows with their date partition: the UTC date of the message's own `field` time when it is
    sound, else the date the broker received it (so a bad message is quarantined on its arrival day).
    `partitioned`: the dates are Dagster partitions (checkout events), so a message is never filed before
    the first one: an event before it is filed under its arrival date (or the first partition), where it is
    quarantined as `before_first_partition`. Buyer changes keep their own dates (history before the first
    partition is what the dimensions are made of)."""

    text = f"try(json_extract_string(decode(payload), '$.{field}'))"
    sound = sound_time_sql(text, bounds)
    if partitioned:
        start = first_partition_sql(bounds)
        date = f"CASE WHEN {sound} >= {start} THEN {sound}::DATE ELSE greatest(kafka_timestamp, {start})::DATE END"
    else:
        date = f"coalesce({sound}::DATE, kafka_timestamp::DATE)"

    def with_partition_dates(messages: pa.Table) -> pa.Table:
        with engine() as conn:
            conn.register("messages", messages)
            table = conn.execute(
                f'SELECT *, {date} AS event_date FROM messages ORDER BY "partition", "offset"'
            ).to_arrow_table()
        return table.select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)

    return with_partition_dates


EVENTS_STREAM = Stream(
    topic=EVENTS_TOPIC, group_id=EVENTS_GROUP, bronze_table=BRONZE_EVENTS, route=partition_dates_by("occurred_at")
)
CHANGES_STREAM = Stream(
    topic=CHANGES_TOPIC,
    group_id=CHANGES_GROUP,
    bronze_table=BRONZE_CHANGES,
    route=partition_dates_by("changed_at", partitioned=False),
)


def replace_table(
    lake: LakeResource, name: str, rows: pa.Table, version: int | None = None, tokens: dict[str, int] | None = None
) -> None:
    """Make lake table `name` hold exactly `rows`, in one commit (every date partition it held is replaced),
    with `tokens` in the same commit. For the tables that are rebuilt whole (the dimensions, the serving
    table)."""
    held = set(lake.count_by_date(name))
    new = {d.isoformat() for d in pc.unique(rows["event_date"]).to_pylist() if d is not None}
    lake.replace_dates(name, rows, sorted(held | new), version=version, tokens=tokens)
