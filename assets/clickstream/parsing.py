"""How a raw clickstream message (seed 004) becomes a typed event, or a quarantine reason.

Structural problems (bytes that are not UTF-8, text that is not JSON, fields of the wrong JSON type,
timestamps that do not parse or are absurd) are found here in SQL, because they decide the event's
date partition already at ingest. Value rules (required fields, known event names and platforms) are
the Pandera schema in `silver.py`, applied to the typed fields parsed here.
"""

from __future__ import annotations

import pyarrow as pa

from assets.kafka_ingest import BRONZE_SCHEMA, MESSAGE_SCHEMA
from resources.warehouse import engine

# The first day a clickstream event may carry; anything earlier is an absurd timestamp.
FIRST_EVENT_DATE = "2023-01-01"
# How far an event's own timestamp may run ahead of the broker's clock before it counts as absurd.
MAX_CLOCK_SKEW = "1 hour"


_FIELDS_SQL = f"""
WITH decoded AS (
    SELECT *, try(decode(payload)) AS body FROM {{source}}
), parsed AS (
    SELECT *, CASE WHEN body IS NOT NULL AND json_valid(body) THEN body::JSON END AS doc FROM decoded
), fields AS (
    SELECT *,
        json_type(doc) AS t_doc,
        json_type(doc, '$.timestamp') AS t_ts,
        json_type(doc, '$.event_name') AS t_name,
        json_type(doc, '$.user_identifiers') AS t_user,
        json_type(doc, '$.user_identifiers.id') AS t_user_id,
        json_type(doc, '$.user_identifiers.platform') AS t_platform,
        json_type(doc, '$.product_information') AS t_product,
        json_type(doc, '$.product_information.name') AS t_product_name,
        json_type(doc, '$.product_information.SKU') AS t_sku,
        try_cast(doc ->> '$.timestamp' AS TIMESTAMPTZ) AS parsed_ts
    FROM parsed
), checked AS (
    SELECT *,
        CASE
            WHEN payload IS NULL OR octet_length(payload) = 0 THEN 'empty_payload'
            WHEN body IS NULL THEN 'invalid_utf8'
            WHEN doc IS NULL THEN 'malformed_json'
            WHEN t_doc <> 'OBJECT' THEN 'not_a_json_object'
            WHEN coalesce(t_ts, 'NULL') = 'NULL' THEN 'missing_field:timestamp'
            WHEN t_ts <> 'VARCHAR' THEN 'wrong_type:timestamp'
            WHEN coalesce(t_name, 'NULL') NOT IN ('VARCHAR', 'NULL') THEN 'wrong_type:event_name'
            WHEN coalesce(t_user, 'NULL') NOT IN ('OBJECT', 'NULL') THEN 'wrong_type:user_identifiers'
            WHEN coalesce(t_user_id, 'NULL') NOT IN ('VARCHAR', 'NULL') THEN 'wrong_type:user_identifiers.id'
            WHEN coalesce(t_platform, 'NULL') NOT IN ('VARCHAR', 'NULL')
                THEN 'wrong_type:user_identifiers.platform'
            WHEN coalesce(t_product, 'NULL') NOT IN ('OBJECT', 'NULL') THEN 'wrong_type:product_information'
            WHEN coalesce(t_product_name, 'NULL') NOT IN ('VARCHAR', 'NULL')
                THEN 'wrong_type:product_information.name'
            WHEN coalesce(t_sku, 'NULL') NOT IN ('VARCHAR', 'NULL') THEN 'wrong_type:product_information.SKU'
            WHEN parsed_ts IS NULL THEN 'unparsable_timestamp'
            WHEN parsed_ts < TIMESTAMPTZ '{FIRST_EVENT_DATE} 00:00:00+00'
                OR parsed_ts > kafka_timestamp + INTERVAL '{MAX_CLOCK_SKEW}' THEN 'absurd_timestamp'
        END AS structural_error
    FROM fields
)
"""

# Every message parsed once, at ingest: its partition date (the event's UTC date when the timestamp is
# sound, otherwise the date the broker received it; bronze files and silver partitions agree on it by
# construction), its structural error if any, and the typed fields silver is made of.
PARSE_SQL = (
    _FIELDS_SQL
    + """
SELECT
    topic, "partition", "offset", kafka_timestamp, key, payload,
    CASE WHEN structural_error IS NULL THEN parsed_ts::DATE ELSE kafka_timestamp::DATE END AS event_date,
    structural_error,
    CASE WHEN structural_error IS NULL THEN parsed_ts END AS event_datetime,
    doc ->> '$.event_name' AS event_name,
    doc ->> '$.user_identifiers.id' AS user_id,
    doc ->> '$.user_identifiers.platform' AS platform,
    doc ->> '$.product_information.name' AS product_name,
    doc ->> '$.product_information.SKU' AS "SKU"
FROM checked
"""
)


def parse_messages(messages: pa.Table) -> pa.Table:
    """`messages` (topic, partition, offset, kafka_timestamp, key, payload; any order of rows kept)
    with their partition date, structural error and typed fields (PARSE_SQL). Ingest writes the
    BRONZE_SCHEMA columns of it to bronze and builds silver from the rest, so JSON is parsed once."""
    with engine() as conn:
        conn.register("messages", messages.select(MESSAGE_SCHEMA.names))
        parsed = conn.execute(PARSE_SQL.format(source="messages")).to_arrow_table()
    # The bronze columns keep bronze's exact types (DuckDB hands timestamps back in microseconds).
    return parsed.cast(pa.schema([_BRONZE_FIELDS.get(f.name, f) for f in parsed.schema]))


_BRONZE_FIELDS = {f.name: f for f in BRONZE_SCHEMA}


TOPIC = "clickstream.events"
CONSUMER_GROUP = "platform.clickstream.bronze"
BRONZE_DATASET = "bronze/clickstream_events"
SILVER_DATASET = "silver/clickstream_events"
QUARANTINE_DATASET = "quarantine/clickstream_events"
EVENT_NAMES = ["view", "click", "add_to_cart", "purchase"]
PLATFORMS = ["web", "mobile", "ios", "android"]
