"""Raw: applications exactly as they arrived, as batch files in the landing folder or Kafka messages."""

import hashlib
import os

import dagster as dg
import pandas as pd
import pyarrow.dataset as pads

from assets.loans.names import BRONZE_DATASET, CONSUMER_GROUP, LANDING_DIR, RAW_FILES_DATASET, TOPIC
from assets.loans.parsing import with_partition_dates
from assets.streaming import TOUCHED_DATES, IngestConfig, Stream, batch_metadata, ingest_batch
from resources import KafkaResource, LakeResource


def landed_files(lake: LakeResource) -> list:
    return lake.files(LANDING_DIR, pattern="*.csv")


def raw_name(data: bytes, stem: str) -> str:
    """The kept file's name: the landing name and its content hash, so a re-delivered file is kept once and
    a corrected file under the same name is kept beside the first."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}.csv"


@dg.asset(group_name="loans_raw", kinds={"csv"})
def raw_loan_application_files(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Every application file that landed in `landing/loan_applications/` (the first batch of applications),
    kept byte for byte as received, named after its content hash. The cleaned layer is rebuilt from here."""
    kept = []
    for path in landed_files(lake):
        data = path.read_bytes()
        target = lake.path(RAW_FILES_DATASET, raw_name(data, path.stem))
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".partial")
            tmp.write_bytes(data)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            kept.append(target.name)
    context.log.info(f"kept {len(kept)} new files: {kept}")
    return dg.MaterializeResult(
        metadata={
            "new_files": dg.MetadataValue.json(kept),
            "files": len(lake.files(RAW_FILES_DATASET, pattern="*.csv")),
        }
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


def bronze_ranges(lake: LakeResource, from_offset: int) -> list[tuple[int, int, pd.DataFrame]]:
    """The bronze messages from `from_offset` on, in offset order, as one range (the topic has one
    partition; the range's rows are filed under the dates they belong to: gathered back here)."""
    if lake.table(BRONZE_DATASET) is None:
        return []
    rows = lake.scan(BRONZE_DATASET, columns=["topic", "offset", "payload"], where=pads.field("offset") >= from_offset)
    if not rows.num_rows:
        return []
    frame = rows.to_pandas().sort_values("offset", kind="stable").reset_index(drop=True)
    return [(int(frame["offset"].iloc[0]), int(frame["offset"].iloc[-1]), frame)]
