"""History imports: archive files from the landing folder into a domain's bronze table, without Kafka, with
the stream's exactly-once accounting. Shared by every domain's import (`clickstream_history_import`,
`fraud_history_import`).

Each file is a source of its own in bronze: topic `import:<landing key>`, partition 0, one offset per
record (its row number), received at the import's time. A domain turns each record into its stream's
message (`message_sql`), routes it to its date partition like the stream (`route`), and bronze records the
file's last offset in the same commit as the rows (the stream's token): importing the file again adds
nothing, and a file that grew adds only its new records. The derived tables a rebuild writes carry the
file's date tokens, so a later import finds the dates a stopped one left unfinished (`unsettled_dates`).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from assets.streaming import APPEND_ATTEMPTS, BRONZE_SCHEMA, MESSAGE_SCHEMA, date_token
from resources import LakeResource
from resources.lake import CommitFailedError
from resources.warehouse import engine

FORMATS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv"}
CHUNK_ROWS = 500_000  # records per bronze commit: bounds memory, and a crash resumes after the last one


def file_kind(key: str) -> str | None:
    """`ndjson` (one JSON object per line) or `csv` (with a header) by the file's extension; None otherwise."""
    return FORMATS.get("." + key.rsplit(".", 1)[-1].lower()) if "." in key else None


def import_topic(key: str) -> str:
    return f"import:{key}"


def read_archive(data: bytes, kind: str, message_sql: str, first_offset: int = 0) -> Iterator[pa.Table]:
    """The file's records from `first_offset` on as messages (`_offset`, `payload`), in chunks:
    `message_sql` selects them from the relation `records`, which holds `_offset` and, for NDJSON, the
    raw `line`, for CSV the file's columns (text)."""
    with engine() as conn:
        if kind == "ndjson":
            lines = data.split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            for start in range(first_offset, len(lines), CHUNK_ROWS):
                chunk = lines[start : start + CHUNK_ROWS]
                records = pa.table(
                    {
                        "_offset": pa.array(range(start, start + len(chunk)), pa.int64()),
                        "line": pa.array(chunk, pa.binary()),
                    }
                )
                conn.register("records", records)
                yield conn.execute(f"SELECT * FROM ({message_sql}) ORDER BY _offset").to_arrow_table()
                conn.unregister("records")
            return
        relation = conn.read_csv(io.BytesIO(data), header=True, all_varchar=True)
        conn.register("rows_in_file", relation)
        conn.execute("CREATE TEMP TABLE csv_records AS SELECT row_number() OVER () - 1 AS _offset, * FROM rows_in_file")
        total = conn.execute("SELECT count(*) FROM csv_records").fetchone()[0]  # type: ignore[index]
        for start in range(first_offset, total, CHUNK_ROWS):
            conn.execute(
                "CREATE OR REPLACE TEMP VIEW records AS SELECT * FROM csv_records "
                f"WHERE _offset >= {start} AND _offset < {start + CHUNK_ROWS}"
            )
            yield conn.execute(f"SELECT * FROM ({message_sql}) ORDER BY _offset").to_arrow_table()


def import_file(
    lake: LakeResource,
    bronze_table: str,
    key: str,
    data: bytes,
    message_sql: Callable[[str], str],
    route: Callable[[pa.Table], pa.Table],
    received_ms: int,
) -> dict[str, int]:
    """Append the records of landed file `key` that `bronze_table` does not hold yet, each chunk in one
    commit with the file's token: `message_sql(kind)` makes the stream's messages of them, `route` files
    each under its date partition as the stream does. Returns the rows appended per date."""
    topic = import_topic(key)
    token = f"{topic}/0"
    kind = file_kind(key)
    if kind is None:
        raise ValueError(f"{key}: not an archive file ({', '.join(FORMATS)})")
    held = lake.tokens(bronze_table, [token])[token]
    added: dict[str, int] = {}
    for messages in read_archive(data, kind, message_sql(kind), 0 if held is None else held + 1):
        if not messages.num_rows:
            continue
        n = messages.num_rows
        rows = pa.table(
            {
                "topic": pa.array([topic] * n, pa.string()),
                "partition": pa.array([0] * n, pa.int32()),
                "offset": messages["_offset"],
                "kafka_timestamp": pa.array([received_ms] * n, pa.int64()).cast(
                    MESSAGE_SCHEMA.field("kafka_timestamp").type
                ),
                "key": pa.nulls(n, pa.binary()),
                "payload": messages["payload"].cast(pa.binary()),
            },
            schema=MESSAGE_SCHEMA,
        )
        bronze = route(rows).select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)
        last = int(pc.max(bronze["offset"]).as_py())
        for attempt in range(APPEND_ATTEMPTS):
            written = lake.tokens(bronze_table, [token])[token]
            if written is not None and written >= last:
                break
            try:
                lake.append(bronze_table, bronze, tokens={token: last})
                for c in bronze["event_date"].value_counts().to_pylist():
                    added[c["values"].isoformat()] = added.get(c["values"].isoformat(), 0) + c["counts"]
                break
            except CommitFailedError:  # a concurrent compaction of bronze: check the token again and retry
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
    return added


def unsettled_dates(lake: LakeResource, bronze_table: str, key: str, settled_table: str) -> dict[str, dict[str, int]]:
    """The dates holding records of file `key` in `bronze_table` that `settled_table` (the last table the
    import writes, with the file's date tokens) has not taken in yet, each with the token it records once
    it has: after a run that stopped between bronze and that table, the next import finds them."""
    topic = import_topic(key)
    held = lake.tokens(bronze_table, [f"{topic}/0"])[f"{topic}/0"]
    if held is None:
        return {}
    rows = lake.scan(bronze_table, columns=["event_date"], where=pads.field("topic") == topic)
    dates = sorted(d.isoformat() for d in pc.unique(rows["event_date"]).to_pylist())
    taken = lake.tokens(settled_table, [date_token(topic, 0, d) for d in dates])
    unsettled = {}
    for event_date in dates:
        token = date_token(topic, 0, event_date)
        recorded = taken[token]
        if recorded is None or recorded < held:
            unsettled[event_date] = {token: held}
    return unsettled


def import_result(per_file: dict[str, int], dates: list[str]) -> dg.MaterializeResult:
    """What an import run reports on its asset: records per file and the range of dates it rebuilt."""
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(per_file.values()),
            "files": dg.MetadataValue.json(per_file),
            "dates": len(dates),
            "first_date": dates[0] if dates else "",
            "last_date": dates[-1] if dates else "",
        }
    )
