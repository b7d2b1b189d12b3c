"""The clickstream's names: its Kafka topic and consumer group, its tables, its partitions and its
vocabulary. Sensors and tools import them from here, not from the assets."""

import dagster as dg

from assets.clickstream.config import BOUNDS, CONFIG

TOPIC = "clickstream.events"
CONSUMER_GROUP = "platform.clickstream.bronze"

BRONZE_TABLE = "bronze/clickstream_events"
SILVER_TABLE = "silver/clickstream_events"
QUARANTINE_TABLE = "quarantine/clickstream_events"
DUPLICATES_TABLE = "silver/clickstream_duplicates"
DAILY_METRICS_TABLE = "gold/clickstream_daily_metrics"
PRODUCT_FUNNEL_TABLE = "gold/clickstream_product_funnel"
# The keyed state gold is counted from (assets/clickstream/aggregates.py).
AGGREGATE_STATE_TABLE = "gold/clickstream_aggregate_state"

# From CLICKSTREAM_PARTITIONS_START (assets/clickstream/config.py): a history import moves it back.
clickstream_daily_partitions = dg.DailyPartitionsDefinition(start_date=BOUNDS.partitions_start, end_offset=2)

# Fields that identify a person: masked wherever a row is shown to operators (resources/privacy.py).
PERSONAL_FIELDS = ("user_id",)

# The vocabulary: assets/clickstream/clickstream.yaml.
EVENT_NAMES = CONFIG.accepted_event_names
PLATFORMS = CONFIG.accepted_platforms
# The code version of the assets that apply the configuration: a change of the file shows them stale.
CODE_VERSION = f"2-{CONFIG.content_hash}"
