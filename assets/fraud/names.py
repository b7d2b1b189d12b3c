"""The fraud domain's names: its Kafka topics and consumer groups, its tables (each partitioned by
`event_date`), its partitions and the bounds of a plausible event time. Sensors and tools import them
from here, not from the assets."""

import os

import dagster as dg

from assets.event_time import EventTimeBounds

EVENTS_TOPIC = "fraud.checkout_risk_events"
CHANGES_TOPIC = "fraud.buyer_changes"
EVENTS_GROUP = "platform.fraud.events.bronze"
CHANGES_GROUP = "platform.fraud.buyer_changes.bronze"

BRONZE_EVENTS = "bronze/fraud_checkout_risk_events"
BRONZE_CHANGES = "bronze/fraud_buyer_changes"
SILVER_EVENTS = "silver/fraud_risk_events"
QUARANTINE_EVENTS = "quarantine/fraud_risk_events"
DECISION_EVENTS = "gold/fraud_decision_events"
SCD2 = "silver/fraud_buyer_scd2"
SCD1 = "silver/fraud_buyer_scd1"
QUARANTINE_CHANGES = "quarantine/fraud_buyer_changes"
LATEST_FEATURES = "gold/fraud_buyer_latest_features"

# Fields that identify a buyer or a person: masked wherever a row is shown to operators (resources/privacy.py).
PERSONAL_FIELDS = ("buyer_id", "name", "email", "contact_person", "address")

# Date runs (backfills, dimension changes) rewrite decision dates and the serving table one at a time. The
# live ingest run stays out of the pool (it would hold it for minutes): concurrent writers are resolved by
# the tables' commits (see rebuild_decision_dates).
DECISION_WRITER_POOL = "fraud_decision_writer"

# The first date partition (FRAUD_PARTITIONS_START), the earliest time an event or change may carry
# (FRAUD_EARLIEST_EVENT_DATE: buyer records may predate the first partition) and how far its own clock may
# run ahead of the broker's (FRAUD_MAX_CLOCK_SKEW): anything outside is a timestamp no checkout can have. A
# checkout before the first partition is quarantined as `before_first_partition`. Read when the code
# location loads (assets/event_time.py); a history import moves the first two back.
BOUNDS = EventTimeBounds.from_env(
    "FRAUD", partitions_start="2024-01-01", earliest_event_date="2020-01-01", max_clock_skew="5 minutes"
)

# Through the last date an event's clock may reach (tomorrow, unless the accepted skew is over a day).
fraud_daily_partitions = dg.DailyPartitionsDefinition(start_date=BOUNDS.partitions_start, end_offset=BOUNDS.days_ahead)


def _days(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name}={value!r}: expected a whole number of days, at least 1")
    return int(value)


# How far back a buyer change re-enriches decisions: the dates from the change's own date through today, at
# most this many (today included). A change older than that re-enriches the last ones only; backfill older
# dates by hand. Read when the code location loads (FRAUD_DIMENSION_LOOKBACK_DAYS).
DIMENSION_LOOKBACK_DAYS = _days("FRAUD_DIMENSION_LOOKBACK_DAYS", 8)
