"""Raw: applications exactly as they arrived, as batch files in the landing folder or Kafka messages."""

import hashlib
import os

import dagster as dg
import pandas as pd

from assets.kafka_ingest import ingest
from assets.loans.parsing import (
    BRONZE_DATASET,
    CONSUMER_GROUP,
    LANDING_DIR,
    RAW_FILES_DATASET,
    TOPIC,
    with_partition_dates,
)
from resources import KafkaResource, LakeResource


def landed_files(lake: LakeResource) -> list:
    return lake.files(LANDING_DIR, pattern="*.csv")


def raw_name(data: bytes, stem: str) -> str:
    """The kept file's name: the landing name and its content hash, so a re-delivered file is kept once and
    a corrected file under the same name is kept beside the first."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}.csv"


@dg.asset(group_name="loans_raw", kinds={"csv"})
def raw_loan_application_files(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Every application file that landed in `landing/loan_applications/` (the 2007 batch in seed 001),
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


class LoanIngestConfig(dg.Config):
    """Records moved into bronze: from the committed offset up to `until_offsets` (partition -> end offset,
    exclusive; everything pending when empty)."""

    until_offsets: dict[str, int] = {}
    max_records_per_partition: int = 500_000


@dg.asset(group_name="loans_raw", kinds={"kafka", "parquet"}, metadata={"topic": TOPIC, "dataset": BRONZE_DATASET})
def bronze_loan_applications(
    context: dg.AssetExecutionContext, config: LoanIngestConfig, kafka: KafkaResource, lake: LakeResource
) -> dg.MaterializeResult:
    """Applications streamed from 2008 on: each message of Kafka topic `loans.applications` (one JSON object
    with the export's nine text fields) kept as delivered, with its offset; committed only once durable.
    The topic has one partition: moving windows need one arrival order."""
    kafka.ensure_topic(kafka.topic(TOPIC), partitions=1)
    result = ingest(
        kafka,
        lake,
        topic=TOPIC,
        group_id=CONSUMER_GROUP,
        dataset=BRONZE_DATASET,
        with_partition_dates=with_partition_dates,
        until={int(p): o for p, o in config.until_offsets.items()} or None,
        max_records_per_partition=config.max_records_per_partition,
        on_progress=context.log.info,
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.records,
            "offset_ranges": dg.MetadataValue.json({str(p): list(r) for p, r in result.ranges.items()}),
            "event_dates": dg.MetadataValue.json(sorted(result.rows_by_date)),
        }
    )


def bronze_ranges(lake: LakeResource, from_offset: int) -> list[tuple[int, int, pd.DataFrame]]:
    """Bronze offset ranges starting at or after `from_offset`, each with its messages in offset order (a
    range's rows are filed under the dates they belong to: gathered back here)."""
    by_range: dict[tuple[int, int], list[str]] = {}
    for path in sorted(lake.path(BRONZE_DATASET).glob("event_date=*/*.parquet")):
        first, last = (int(x) for x in path.stem.rsplit("-", 2)[1:])
        if first >= from_offset:
            by_range.setdefault((first, last), []).append(str(path))
    out = []
    for (first, last), files in sorted(by_range.items()):
        frame = pd.concat([pd.read_parquet(f, columns=["topic", "offset", "payload"]) for f in files])
        out.append((first, last, frame.sort_values("offset", kind="stable").reset_index(drop=True)))
    return out
