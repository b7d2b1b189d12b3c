"""The clickstream's names: its Kafka topic and consumer group, its tables, its partitions and its
vocabulary. Sensors and tools import them from here, not from the assets."""

import dagster as dg

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

clickstream_daily_partitions = dg.DailyPartitionsDefinition(start_date="2023-01-01", end_offset=2)

# Fields that identify a person: masked wherever a row is shown to operators (resources/privacy.py).
PERSONAL_FIELDS = ("user_id",)

EVENT_NAMES = ["view", "click", "add_to_cart", "purchase"]
PLATFORMS = ["web", "mobile", "ios", "android"]
