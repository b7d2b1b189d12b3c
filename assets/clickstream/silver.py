"""Silver: clickstream events flattened to seed 004's schema, validated, deduplicated; and the
quarantine, where every message that could not become an event is kept with its reason."""

import datetime as dt
import time
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pandera.typing import Series

from assets.clickstream.parsing import (
    BRONZE_DATASET,
    EVENT_NAMES,
    PLATFORMS,
    QUARANTINE_DATASET,
    SILVER_DATASET,
    parse_messages,
)
from assets.kafka_ingest import MESSAGE_SCHEMA
from assets.pandera_checks import table_schema, validate_schema, violations_sql
from resources import LakeResource
from resources.warehouse import engine

clickstream_daily_partitions = dg.DailyPartitionsDefinition(start_date="2023-01-01", end_offset=2)


class SilverClickstreamEvent(pa.DataFrameModel):
    """One user action, as the business reads it. Required: when, what, who."""

    event_datetime: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    event_date: Series[str] = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2}$")
    event_name: Series[str] = pa.Field(isin=EVENT_NAMES)
    user_id: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 256})
    platform: Series[str] = pa.Field(nullable=True, isin=PLATFORMS)
    product_name: Series[str] = pa.Field(nullable=True)
    SKU: Series[str] = pa.Field(nullable=True, str_length={"min_value": 1, "max_value": 64})
    event_id: Series[str] = pa.Field(str_length={"min_value": 32, "max_value": 32})

    class Config:
        strict = True


class QuarantinedClickstreamMessage(pa.DataFrameModel):
    """A message kept out of silver: where it came from, what it was, and why."""

    topic: Series[str]
    partition: Series[int] = pa.Field(ge=0)
    offset: Series[int] = pa.Field(ge=0)
    kafka_timestamp: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ms", "tz": "UTC"})
    payload: Series[object]
    reason: Series[str] = pa.Field(str_length={"min_value": 1})
    event_date: Series[str]

    class Config:
        strict = True


SILVER_COLUMNS = list(SilverClickstreamEvent.to_schema().columns)
# Storage types, fixed so that an empty date has the same schema as a full one.
SILVER_ARROW_SCHEMA = pyarrow.schema(
    [("event_datetime", pyarrow.timestamp("us", tz="UTC")), ("event_date", pyarrow.date32())]
    + [(name, pyarrow.string()) for name in ("event_name", "user_id", "platform", "product_name", "SKU", "event_id")]
)
QUARANTINE_ARROW_SCHEMA = pyarrow.schema(
    [
        ("topic", pyarrow.string()),
        ("partition", pyarrow.int64()),
        ("offset", pyarrow.int64()),
        ("kafka_timestamp", pyarrow.timestamp("ms", tz="UTC")),
        ("payload", pyarrow.binary()),
        ("reason", pyarrow.string()),
        ("event_date", pyarrow.date32()),
    ]
)
QUARANTINE_COLUMNS = list(QuarantinedClickstreamMessage.to_schema().columns)
# Identical content is the same event: the seed's events carry no id, so a message delivered twice
# (producer retry, replay) is recognised by the hash of everything it says.
_EVENT_ID_SQL = 'md5(to_json([epoch_us(event_datetime)::VARCHAR, event_name, user_id, platform, product_name, "SKU"]))'
_SILVER_SELECT = ", ".join(f'"{c}"' for c in SILVER_COLUMNS)


@dataclass
class SilverBuild:
    silver: pyarrow.Table
    quarantine: pyarrow.Table
    bronze_rows: int
    duplicates: int

    def reasons(self) -> dict[str, int]:
        counts = self.quarantine["reason"].value_counts().to_pylist()
        return {c["values"]: c["counts"] for c in counts}


def route_messages(messages: pyarrow.Table) -> pyarrow.Table:
    """`messages` parsed (`parse_messages`) and routed in the same pass: each row gets its `event_id`
    and its quarantine `reason` (a structural error, or SilverClickstreamEvent's rules it fails; NULL
    for a good event). What ingest writes to bronze and merges into silver."""
    return parse_messages(
        messages,
        then=f"""SELECT {_SILVER_SELECT},
            coalesce(structural_error, {violations_sql(SilverClickstreamEvent)}) AS reason
        FROM (SELECT *, CASE WHEN structural_error IS NULL THEN {_EVENT_ID_SQL} END AS event_id FROM parsed)""",
    )


def build_silver(
    routed: pyarrow.Table,
    event_date: str,
    *,
    silver: pyarrow.Table | None = None,
    quarantine: pyarrow.Table | None = None,
) -> SilverBuild:
    """Silver and quarantine of `event_date` after adding the `routed` messages (`route_messages`) to
    what the date already holds (`silver`, `quarantine`; nothing when rebuilding from bronze). An
    event already in silver or twice in `routed` is a duplicate. The result does not depend on how
    the date's messages were split into batches."""
    old_rows = silver.num_rows if silver is not None else 0
    good = pc.is_null(routed["reason"])
    with engine() as conn:
        conn.register("new", routed.select(SILVER_COLUMNS).filter(good))
        conn.register("old_silver", silver if silver is not None else SILVER_ARROW_SCHEMA.empty_table())
        merged = conn.execute(
            f"""SELECT {_SILVER_SELECT} FROM old_silver UNION ALL (
                SELECT DISTINCT ON (event_id) * FROM new n
                WHERE NOT EXISTS (SELECT 1 FROM old_silver o WHERE o.event_id = n.event_id)
            ) ORDER BY event_datetime, event_id"""
        ).to_arrow_table()
    rejected = routed.filter(pc.invert(good))
    rejected = pyarrow.table(
        {
            **{name: rejected[name] for name in ("topic", "partition", "offset", "kafka_timestamp", "payload")},
            "reason": rejected["reason"],
            "event_date": pyarrow.repeat(pyarrow.scalar(dt.date.fromisoformat(event_date)), rejected.num_rows),
        }
    ).cast(QUARANTINE_ARROW_SCHEMA)
    valid = routed.num_rows - rejected.num_rows
    if quarantine is not None:
        rejected = pyarrow.concat_tables([quarantine.cast(QUARANTINE_ARROW_SCHEMA), rejected])
    return SilverBuild(
        merged.cast(SILVER_ARROW_SCHEMA),
        rejected.sort_by([("partition", "ascending"), ("offset", "ascending")]),
        bronze_rows=routed.num_rows,
        duplicates=valid - (merged.num_rows - old_rows),
    )


def build_silver_partition(lake: LakeResource, event_date: str) -> SilverBuild:
    """Silver and quarantine rows of one `event_date`, rebuilt from every bronze file of that date."""
    bronze = lake.read_dataset(BRONZE_DATASET, f"event_date={event_date}")
    return build_silver(route_messages(bronze if bronze is not None else MESSAGE_SCHEMA.empty_table()), event_date)


QUARANTINE_RATE_THRESHOLD = 0.05
# Marks, under bronze, the dates a streaming batch is being written to and merged into (set before its
# first bronze file, cleared after the merge); a date still marked when a run starts is rebuilt.
SILVER_PENDING = "_silver_pending"
# Materializations and backfills of silver take turns (the streaming ingest run stays out: it would
# hold the pool for minutes and block its successor; see write_silver_partitions).
SILVER_WRITER_POOL = "clickstream_silver_writer"


@dataclass(frozen=True)
class SilverSummary:
    """What a date's rebuild wrote (the rows themselves are in the lake, not kept in memory)."""

    rows: int
    quarantined: int
    bronze_rows: int
    duplicates: int
    reasons: dict[str, int]


def write_silver_partitions(lake: LakeResource, event_dates: list[str], log=None) -> dict[str, SilverSummary]:
    """Rebuild silver and quarantine for `event_dates` from bronze, replacing exactly those dates.
    Used by the silver asset (materializations, backfills) and to repair dates an ingest run left.

    The streaming run may merge a new batch into a date while it is rebuilt here (they do not share a
    lock, so that a following run never waits for a backfill): when the date's bronze files changed
    between the start of a rebuild and the end of its write, the rebuild is done again."""
    summaries = {}
    for event_date in event_dates:
        while True:
            files = lake.list_keys(BRONZE_DATASET, f"event_date={event_date}")
            summaries[event_date] = _write(lake, event_date, build_silver_partition(lake, event_date), log)
            if lake.list_keys(BRONZE_DATASET, f"event_date={event_date}") == files:
                break
    return summaries


def merge_silver_batch(
    lake: LakeResource, routed: pyarrow.Table, event_dates: list[str], log=None
) -> dict[str, SilverSummary]:
    """Add a freshly ingested batch (`routed`, already in bronze) to its `event_dates` of silver and
    quarantine, without reading bronze again: the streaming path. Gives the same rows as a rebuild."""
    summaries = {}
    # Only quarantined rows keep their payload; then one reordering by date (stable: offsets stay in
    # order) and a zero-copy slice per date.
    kept = pc.if_else(pc.is_null(routed["reason"]), pyarrow.scalar(None, pyarrow.binary()), routed["payload"])
    routed = routed.drop_columns(["key", "payload"]).append_column("payload", kept)
    routed = routed.take(pc.sort_indices(routed["event_date"]))
    dates = routed["event_date"].cast(pyarrow.string())
    for event_date in event_dates:
        first = pc.index(dates, event_date).as_py()
        count = pc.sum(pc.equal(dates, event_date)).as_py() or 0
        rows = routed.slice(first, count) if first >= 0 else routed.slice(0, 0)
        silver = lake.read_dataset(SILVER_DATASET, f"event_date={event_date}")
        quarantine = lake.read_dataset(QUARANTINE_DATASET, f"event_date={event_date}")
        stats = lake.read_json(*_stats_key(event_date)) or {}
        build = build_silver(rows, event_date, silver=silver, quarantine=quarantine)
        build.bronze_rows += int(stats.get("bronze_rows", 0))  # type: ignore[union-attr]
        build.duplicates += int(stats.get("duplicates", 0))  # type: ignore[union-attr]
        summaries[event_date] = _write(lake, event_date, build, log)
    return summaries


def _write(lake: LakeResource, event_date: str, build: SilverBuild, log) -> SilverSummary:
    lake.replace_dir({"data.parquet": build.silver}, SILVER_DATASET, f"event_date={event_date}")
    lake.replace_dir({"data.parquet": build.quarantine}, QUARANTINE_DATASET, f"event_date={event_date}")
    lake.write_json({"bronze_rows": build.bronze_rows, "duplicates": build.duplicates}, *_stats_key(event_date))
    summary = SilverSummary(
        build.silver.num_rows, build.quarantine.num_rows, build.bronze_rows, build.duplicates, build.reasons()
    )
    if log:
        log.info(
            f"{event_date}: {summary.bronze_rows} bronze -> {summary.rows} silver, {summary.duplicates} "
            f"duplicates, {summary.quarantined} quarantined {summary.reasons}"
        )
    return summary


def _stats_key(event_date: str) -> tuple[str, str]:
    """Where a date's build records what it read and what it dropped as duplicates."""
    return (f"{SILVER_DATASET}_stats", f"event_date={event_date}.json")


def silver_metadata(build: SilverSummary) -> dict:
    return {
        "dagster/row_count": build.rows,
        "duplicates_removed": build.duplicates,
        "bronze_rows": build.bronze_rows,
    }


def quarantine_metadata(build: SilverSummary) -> dict:
    return {"dagster/row_count": build.quarantined, "reasons": dg.MetadataValue.json(build.reasons)}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "silver_clickstream_events",
            deps=["bronze_clickstream_events"],
            group_name="clickstream_silver",
            kinds={"parquet", "pandera"},
            description=(
                "Every user action (view, click, add to cart, purchase) exactly once, in seed 004's shape: "
                "when it happened (UTC), what, by which user on which platform, for which product. "
                "Partitioned by the event's own date; late events land in their own date. Kept current by "
                "the streaming ingest run; materialize a date (or a range) to rebuild it from bronze."
            ),
            metadata={"dagster/column_schema": table_schema(SilverClickstreamEvent)},
        ),
        dg.AssetSpec(
            "quarantine_clickstream_events",
            deps=["bronze_clickstream_events"],
            group_name="clickstream_silver",
            kinds={"parquet"},
            description=(
                "Messages that could not become events, each with the reason, the original payload and its "
                "Kafka coordinates. Nothing is dropped silently: bronze = silver + duplicates + quarantine."
            ),
            metadata={"dagster/column_schema": table_schema(QuarantinedClickstreamMessage)},
        ),
    ],
    partitions_def=clickstream_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=SILVER_WRITER_POOL,
)
def clickstream_silver(context: dg.AssetExecutionContext, lake: LakeResource):
    """Rebuild the run's dates of silver and quarantine from bronze. A backfill of a date range is one run."""
    builds = write_silver_partitions(lake, context.partition_keys, context.log)
    if len(builds) == 1:
        (build,) = builds.values()
        yield dg.MaterializeResult(asset_key="silver_clickstream_events", metadata=silver_metadata(build))
        yield dg.MaterializeResult(asset_key="quarantine_clickstream_events", metadata=quarantine_metadata(build))
        return
    totals = {"dates": dg.MetadataValue.json({d: b.rows for d, b in builds.items()})}
    yield dg.MaterializeResult(
        asset_key="silver_clickstream_events",
        metadata={"dagster/row_count": sum(b.rows for b in builds.values()), **totals},
    )
    yield dg.MaterializeResult(
        asset_key="quarantine_clickstream_events",
        metadata={"dagster/row_count": sum(b.quarantined for b in builds.values())},
    )


# -- checks: partitioned, beside the asset, run with every silver rebuild and before gold ------------------


def _per_date(context: dg.AssetCheckExecutionContext, lake: LakeResource, evaluate) -> dg.AssetCheckResult:
    """Evaluate a check on each date of the run; it passes when every date passes."""
    results = {d: evaluate(lake, d, context) for d in context.partition_keys}
    if len(results) == 1:
        ((ok, meta),) = results.values()
        return dg.AssetCheckResult(passed=ok, metadata=meta)
    plain = {d: {k: getattr(v, "value", v) for k, v in meta.items()} for d, (_, meta) in results.items()}
    failed = {d: plain[d] for d, (ok, _) in results.items() if not ok}
    counts = {k for meta in plain.values() for k, v in meta.items() if type(v) is int}
    totals = {k: sum(int(meta.get(k, 0)) for meta in plain.values()) for k in counts}
    return dg.AssetCheckResult(
        passed=not failed,
        metadata={**totals, "dates": len(results), "failed_dates": dg.MetadataValue.json(failed)},
    )


def _silver(lake: LakeResource, event_date: str) -> pd.DataFrame:
    table = lake.read_dataset(SILVER_DATASET, f"event_date={event_date}")
    frame = (table if table is not None else SILVER_ARROW_SCHEMA.empty_table()).to_pandas()
    frame["event_date"] = frame["event_date"].astype(str)
    return frame


def _check_schema(lake, event_date, _context):
    return validate_schema(SilverClickstreamEvent, _silver(lake, event_date))


def _check_unique(lake, event_date, _context):
    repeated = int(_silver(lake, event_date)["event_id"].duplicated().sum())
    return repeated == 0, {"repeated_events": repeated}


def _check_nothing_lost(lake, event_date, _context, settle_seconds: float = 60.0):
    # A streaming batch may land in the date while this reads: the counts are taken again until no
    # batch is pending and bronze did not change meanwhile (or the wait is over: then they must agree).
    deadline = time.monotonic() + settle_seconds
    while True:
        bronze_rows = _bronze_rows(lake, event_date)
        quarantine = lake.read_dataset(QUARANTINE_DATASET, f"event_date={event_date}", columns=["offset"])
        stats = lake.read_json(*_stats_key(event_date)) or {}
        duplicates = int(stats.get("duplicates", 0))  # type: ignore[union-attr]
        quarantined = quarantine.num_rows if quarantine is not None else 0
        accounted = len(_silver(lake, event_date)) + quarantined + duplicates
        settled = not lake.exists(BRONZE_DATASET, SILVER_PENDING, event_date) and bronze_rows == _bronze_rows(
            lake, event_date
        )
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return accounted == bronze_rows, {"bronze_rows": bronze_rows, "accounted_rows": accounted, "duplicates": duplicates}


def _bronze_rows(lake: LakeResource, event_date: str) -> int:
    # Counting needs one narrow column, not the payloads.
    bronze = lake.read_dataset(BRONZE_DATASET, f"event_date={event_date}", columns=["offset"])
    return bronze.num_rows if bronze is not None else 0


def _check_quarantine_rate(lake, event_date, _context):
    quarantine = lake.read_dataset(QUARANTINE_DATASET, f"event_date={event_date}")
    frame = quarantine.to_pandas() if quarantine is not None else pd.DataFrame({"reason": [], "payload": []})
    total = _bronze_rows(lake, event_date)
    rate = len(frame) / total if total else 0.0
    sample = frame.head(5).assign(payload=lambda f: f["payload"].map(_preview)).astype(str).to_dict(orient="records")
    return rate <= QUARANTINE_RATE_THRESHOLD, {
        "quarantine_rate": rate,
        "threshold": QUARANTINE_RATE_THRESHOLD,
        "quarantined": len(frame),
        "reasons": dg.MetadataValue.json(frame["reason"].value_counts().to_dict()),
        "sample": dg.MetadataValue.json(sample),
    }


@dg.asset_check(
    asset="silver_clickstream_events",
    blocking=True,
    partitions_def=clickstream_daily_partitions,
    description="The partition satisfies the Pandera schema SilverClickstreamEvent.",
)
def silver_schema_check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    return _per_date(context, lake, _check_schema)


@dg.asset_check(
    asset="silver_clickstream_events",
    blocking=True,
    partitions_def=clickstream_daily_partitions,
    description="No event appears twice in the partition.",
)
def silver_unique_event_check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    return _per_date(context, lake, _check_unique)


@dg.asset_check(
    asset="quarantine_clickstream_events",
    blocking=True,
    partitions_def=clickstream_daily_partitions,
    description="Every bronze message of the date is in silver, in quarantine, or a counted duplicate.",
)
def nothing_lost_check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    return _per_date(context, lake, _check_nothing_lost)


@dg.asset_check(
    asset="quarantine_clickstream_events",
    partitions_def=clickstream_daily_partitions,
    description=f"Warns when more than {QUARANTINE_RATE_THRESHOLD:.0%} of a date's messages are quarantined.",
)
def quarantine_rate_check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    result = _per_date(context, lake, _check_quarantine_rate)
    return dg.AssetCheckResult(passed=result.passed, metadata=result.metadata, severity=dg.AssetCheckSeverity.WARN)


def _preview(payload: bytes | None) -> str:
    return "" if payload is None else payload[:200].decode("utf-8", errors="backslashreplace")
