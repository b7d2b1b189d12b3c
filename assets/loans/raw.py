"""Raw: applications exactly as they arrived, as batch files in the landing folder or Kafka messages."""

import datetime as dt
import hashlib
import time

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from assets.loans.names import BRONZE_DATASET, CONSUMER_GROUP, LANDING_DIR, RAW_FILES_DATASET, TOPIC
from assets.loans.parsing import with_partition_dates
from assets.streaming import (
    APPEND_ATTEMPTS,
    TOUCHED_DATES,
    IngestConfig,
    Stream,
    batch_metadata,
    ingest_batch,
)
from resources import KafkaResource, LakeResource, LandingResource
from resources.lake import CommitFailedError, write_table

RAW_FILES_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("landing_key", pa.string()),
        ("size", pa.int64()),
        ("kept_at", pa.timestamp("us", tz="UTC")),
        ("after_offset", pa.int64()),
        ("content", pa.binary()),
    ]
)


def raw_name(data: bytes, stem: str) -> str:
    """The kept file's name: the landing name and its content hash, so a re-delivered file is kept once and
    a corrected file under the same name is kept beside the first."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}.csv"


def file_token(name: str) -> str:
    """The app id under which a loans table records that it holds the kept file `name`."""
    return f"file/{name}"


def stream_position(lake: LakeResource) -> int:
    """The last offset bronze holds (-1 before the first message), from the table's log: no data is read."""
    table = lake.table(BRONZE_DATASET)
    actions = pa.table(table.get_add_actions(flatten=True)) if table is not None else None
    if actions is None or not actions.num_rows:
        return -1
    return int(pc.max(actions["max.offset"]).as_py())


def keep_landed(landing: LandingResource, lake: LakeResource) -> list[str]:
    """Append the landed files the raw table does not hold yet, in one commit with a token per file: a
    retry, or a concurrent run keeping the same file, keeps it once. Returns the kept names."""
    version = lake.version(RAW_FILES_DATASET)
    new: dict[str, tuple[str, bytes]] = {}
    for landed in landing.landed(LANDING_DIR):
        data = landing.read(landed.key)
        new.setdefault(raw_name(data, landed.stem), (landed.key, data))
    held = lake.tokens(RAW_FILES_DATASET, [file_token(n) for n in new])
    new = {n: v for n, v in new.items() if held.get(file_token(n)) is None}
    if not new:
        return []
    # A file takes its place in the applications' arrival order after the stream messages bronze holds now.
    after, now = stream_position(lake), dt.datetime.now(dt.UTC)
    rows = pa.Table.from_pylist(
        [
            {"file": n, "landing_key": k, "size": len(d), "kept_at": now, "after_offset": after, "content": d}
            for n, (k, d) in sorted(new.items())
        ],
        schema=RAW_FILES_SCHEMA,
    )
    write_table(lake, RAW_FILES_DATASET, rows, tokens={file_token(n): 1 for n in new}, version=version)
    return sorted(new)


def raw_files(lake: LakeResource, names: list[str] | None = None, content: bool = False) -> pd.DataFrame:
    """The kept files (only `names` when given), with their bytes when `content`, ordered by name."""
    columns = [f for f in RAW_FILES_SCHEMA.names if content or f != "content"]
    where = None if names is None else pads.field("file").isin(pa.array(names, pa.string()))
    if lake.table(RAW_FILES_DATASET) is None:
        return RAW_FILES_SCHEMA.empty_table().select(columns).to_pandas()
    return lake.scan(RAW_FILES_DATASET, columns=columns, where=where).to_pandas().sort_values("file")


@dg.asset(group_name="loans_raw", kinds={"csv", "deltalake"}, metadata={"table": RAW_FILES_DATASET})
def raw_loan_application_files(
    context: dg.AssetExecutionContext, landing: LandingResource, lake: LakeResource
) -> dg.MaterializeResult:
    """Every application file that landed in the landing folder's `loan_applications/` (the first batch of
    applications), kept byte for byte as received in a Delta table (one row per file, named after its
    content hash, with the stream position it arrived at). The cleaned layer is rebuilt from here."""
    for attempt in range(APPEND_ATTEMPTS):
        try:
            kept = keep_landed(landing, lake)
            break
        except CommitFailedError:  # another run kept files meanwhile: look at the tokens again
            if attempt == APPEND_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    context.log.info(f"kept {len(kept)} new files: {kept}")
    table = lake.table(RAW_FILES_DATASET)
    return dg.MaterializeResult(
        metadata={"new_files": dg.MetadataValue.json(kept), "files": table.count() if table is not None else 0}
    )


LOANS_STREAM = Stream(topic=TOPIC, group_id=CONSUMER_GROUP, bronze_table=BRONZE_DATASET, route=with_partition_dates)


@dg.asset(group_name="loans_raw", kinds={"kafka", "deltalake"}, metadata={"topic": TOPIC, "table": BRONZE_DATASET})
def bronze_loan_applications(
    context: dg.AssetExecutionContext, config: IngestConfig, kafka: KafkaResource, lake: LakeResource
) -> dg.MaterializeResult:
    """Applications streamed from 2008 on: each message of Kafka topic `loans.applications` (one JSON object
    with the export's nine text fields) kept as delivered, with its offset; committed only once durable.
    The topic has one partition: moving windows need one arrival order."""
    kafka.ensure_topic(kafka.topic(TOPIC), partitions=1)
    batch, _ = ingest_batch(
        kafka,
        lake,
        LOANS_STREAM,
        until={int(p): o for p, o in config.until_offsets.items()} or None,
        max_records_per_partition=config.max_records_per_partition,
        log=context.log,
    )
    if batch is None:
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, TOUCHED_DATES: dg.MetadataValue.json([])})
    return dg.MaterializeResult(metadata=batch_metadata(batch))


def bronze_messages(lake: LakeResource, from_offset: int) -> pd.DataFrame:
    """The bronze messages from `from_offset` on, in offset order (the topic has one partition; the messages
    are filed under the dates they belong to: gathered back here, only the files that can hold them read)."""
    if lake.table(BRONZE_DATASET) is None:
        return pd.DataFrame({"topic": [], "offset": [], "payload": []})
    rows = lake.scan(BRONZE_DATASET, columns=["topic", "offset", "payload"], where=pads.field("offset") >= from_offset)
    return rows.to_pandas().sort_values("offset", kind="stable").reset_index(drop=True)
