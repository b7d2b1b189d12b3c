"""Which event times a domain accepts and where its date partitions start, from the environment: read
when the code location loads (Dagster needs the partitions when the definitions are built). A live
stream keeps the defaults; a history import moves them back before the code location starts.

Per domain `<PREFIX>`: `<PREFIX>_PARTITIONS_START` (the first date partition), `<PREFIX>_EARLIEST_EVENT_DATE`
(the earliest accepted event time; earlier ones are quarantined) and `<PREFIX>_MAX_CLOCK_SKEW` (how far an
event's own time may run ahead of the time it was received, e.g. `5 minutes`, `2 days`). An accepted event
before the first partition is quarantined as `before_first_partition`, filed under a date that is a
partition: nothing in bronze is outside every partition."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import dataclass

_SKEW = re.compile(r"^(\d+) (second|minute|hour|day)s?$")
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class EventTimeBounds:
    partitions_start: str  # YYYY-MM-DD
    earliest_event_date: str  # YYYY-MM-DD
    max_clock_skew: str  # a DuckDB interval: "<n> second|minute|hour|day[s]"

    @classmethod
    def from_env(
        cls,
        prefix: str,
        *,
        partitions_start: str,
        max_clock_skew: str,
        earliest_event_date: str | None = None,
        error: type[ValueError] = ValueError,
    ) -> EventTimeBounds:
        """The bounds `<prefix>_*` set, else the defaults given. The earliest accepted date defaults to the
        partitions' start, or to `earliest_event_date` when that is earlier (a domain whose records may
        predate its first partition); a start moved back takes it along."""
        start = os.environ.get(f"{prefix}_PARTITIONS_START") or partitions_start
        earliest = os.environ.get(f"{prefix}_EARLIEST_EVENT_DATE") or min(start, earliest_event_date or start)
        bounds = cls(start, earliest, os.environ.get(f"{prefix}_MAX_CLOCK_SKEW") or max_clock_skew)
        for name, value in (("PARTITIONS_START", start), ("EARLIEST_EVENT_DATE", earliest)):
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise error(f"{prefix}_{name}={value!r} is not a date (YYYY-MM-DD)") from None
        if not _SKEW.match(bounds.max_clock_skew):
            expected = "expected e.g. '1 hour', '30 minutes', '2 days'"
            raise error(f"{prefix}_MAX_CLOCK_SKEW={bounds.max_clock_skew!r}: {expected}")
        return bounds

    @property
    def days_ahead(self) -> int:
        """How many dates after today an accepted event can fall on: the partitions' end offset."""
        match = _SKEW.match(self.max_clock_skew)
        seconds = int(match.group(1)) * _SECONDS[match.group(2)] if match else 0
        return max(1, math.ceil(seconds / 86400))
