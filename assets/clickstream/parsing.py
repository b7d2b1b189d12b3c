"""How a raw clickstream message becomes a typed event, or a quarantine reason.

Structural problems (bytes that are not UTF-8, text that is not JSON, fields of the wrong JSON type,
timestamps that do not parse or fall outside the configured bounds) are found here in SQL, because
they decide the event's date partition already at ingest. Value rules (required fields, known event
names and platforms) are the Pandera schema in `silver.py`, applied to the typed fields parsed here.
"""

from __future__ import annotations

import pyarrow as pa

from assets.clickstream.config import BOUNDS, CONFIG, ClickstreamConfig, EventTimeBounds
from assets.streaming import MESSAGE_SCHEMA
from resources.warehouse import engine

# JSON paths of the fields an event may carry, and the JSON type each must have when present.
_SHAPE = {
    "$.timestamp": "VARCHAR",
    "$.event_name": "VARCHAR",
    "$.user_identifiers": "OBJECT",
    "$.user_identifiers.id": "VARCHAR",
    "$.user_identifiers.platform": "VARCHAR",
    "$.product_information": "OBJECT",
    "$.product_information.name": "VARCHAR",
    "$.product_information.SKU": "VARCHAR",
}
_WRONG_TYPES = "\n".join(
    f"WHEN coalesce(t[{i + 1}], 'NULL') NOT IN ('{kind}', 'NULL') THEN 'wrong_type:{path[2:]}'"
    for i, (path, kind) in enumerate(_SHAPE.items())
    if path != "$.timestamp"
)


def _quote(value: str) -> str:
    # Braces doubled: the SQL is formatted once more with its source relation.
    return "'" + value.replace("'", "''").replace("{", "{{").replace("}", "}}") + "'"


def _accepted(column: str, vocabulary: dict[str, list[str]]) -> str:
    """`column` with every synonym replaced by the accepted value it stands for (others unchanged)."""
    pairs = [(synonym, name) for name, synonyms in vocabulary.items() for synonym in synonyms]
    if not pairs:
        return column
    return f"CASE {column} " + " ".join(f"WHEN {_quote(a)} THEN {_quote(b)}" for a, b in pairs) + f" ELSE {column} END"


def parse_sql(bounds: EventTimeBounds, config: ClickstreamConfig) -> str:
    """Every message parsed once, at ingest (one JSON parse per path list, no payload copied): its
    partition date (the event's UTC date when the timestamp is sound, otherwise the date it was received,
    never before the first partition; bronze files and silver partitions agree on it by construction),
    its structural error if any, and the typed fields silver is made of, event names and platforms
    translated from their synonyms. `_row` is the message's position in the input."""
    paths = list(_SHAPE) + ([f"$.{config.event_id_field}"] if config.event_id_field else [])
    source_id = "v[9]" if config.event_id_field else "NULL::VARCHAR"
    start = f"TIMESTAMPTZ '{bounds.partitions_start} 00:00:00+00'"
    return f"""
WITH decoded AS (
    SELECT _row, kafka_timestamp, payload IS NULL OR octet_length(payload) = 0 AS empty, try(decode(payload)) AS body
    FROM {{source}}
), fields AS (
    SELECT *, json_type(doc) AS t_doc, json_type(doc, {paths}) AS t, json_extract_string(doc, {paths}) AS v
    FROM (SELECT *, CASE WHEN json_valid(body) THEN body END AS doc FROM decoded)
), checked AS (
    SELECT *, try_cast(v[1] AS TIMESTAMPTZ) AS parsed_ts FROM fields
), routed AS (
    SELECT *,
        CASE
            WHEN empty THEN 'empty_payload'
            WHEN body IS NULL THEN 'invalid_utf8'
            WHEN doc IS NULL THEN 'malformed_json'
            WHEN t_doc <> 'OBJECT' THEN 'not_a_json_object'
            WHEN coalesce(t[1], 'NULL') = 'NULL' THEN 'missing_field:timestamp'
            WHEN t[1] <> 'VARCHAR' THEN 'wrong_type:timestamp'
            {_WRONG_TYPES}
            WHEN parsed_ts IS NULL THEN 'unparsable_timestamp'
            WHEN parsed_ts < TIMESTAMPTZ '{bounds.earliest_event_date} 00:00:00+00'
                OR parsed_ts > kafka_timestamp + INTERVAL '{bounds.max_clock_skew}' THEN 'absurd_timestamp'
            WHEN parsed_ts < {start} THEN 'before_first_partition'
        END AS structural_error
    FROM checked
)
SELECT
    _row,
    CASE WHEN structural_error IS NULL THEN parsed_ts::DATE
         ELSE greatest(kafka_timestamp, {start})::DATE END AS event_date,
    structural_error,
    CASE WHEN structural_error IS NULL THEN parsed_ts END AS event_datetime,
    {_accepted("v[2]", config.event_names)} AS event_name,
    v[4] AS user_id,
    {_accepted("v[5]", config.platforms)} AS platform,
    v[7] AS product_name,
    v[8] AS "SKU",
    {source_id} AS source_event_id
FROM routed
"""


PARSE_SQL = parse_sql(BOUNDS, CONFIG)


def parse_messages(messages: pa.Table, then: str = "SELECT * FROM parsed", sql: str = PARSE_SQL) -> pa.Table:
    """`messages` (topic, partition, offset, kafka_timestamp, key, payload) with their partition date,
    structural error and typed fields (PARSE_SQL) appended, in the same row order; `then` may derive
    more columns from the relation `parsed` in the same pass (keeping `_row`). Ingest writes the
    BRONZE_SCHEMA columns of the result to bronze and builds silver from the rest, so JSON is parsed once.

    A parallel scan may return rows in another order than they came in (seen with multi-batch input), so
    each row carries its position and the result is put back in input order by it."""
    with engine() as conn:
        inputs = messages.select(["kafka_timestamp", "payload"])
        conn.register("messages", inputs.append_column("_row", pa.array(range(inputs.num_rows), pa.int64())))
        parsed = conn.execute(
            f"WITH parsed AS ({sql.format(source='messages')}) SELECT * EXCLUDE (_row) FROM ({then}) ORDER BY _row"
        ).to_arrow_table()
    table = messages.select(MESSAGE_SCHEMA.names)
    for name in parsed.column_names:
        table = table.append_column(name, parsed[name])
    return table
