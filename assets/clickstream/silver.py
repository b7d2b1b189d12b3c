"""Silver: clickstream events flattened to seed 004's schema, validated, deduplicated; and the
quarantine, where every message that could not become an event is kept with its reason."""

from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from assets.clickstream.parsing import (
    BRONZE_DATASET,
    EVENT_NAMES,
    FLATTEN_SQL,
    PLATFORMS,
    QUARANTINE_DATASET,
    SILVER_DATASET,
)
from assets.pandera_checks import schema_check_result, table_schema, to_arrow
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
QUARANTINE_COLUMNS = list(QuarantinedClickstreamMessage.to_schema().columns)
# Identical content is the same event: the seed's events carry no id, so a message delivered twice
# (producer retry, replay) is recognised by the hash of everything it says.
_EVENT_ID_SQL = (
    "md5(to_json([strftime(event_datetime, '%Y-%m-%dT%H:%M:%S.%fZ'), event_name, user_id, platform, "
    'product_name, "SKU"]))'
)


@dataclass
class SilverBuild:
    silver: pd.DataFrame
    quarantine: pd.DataFrame
    bronze_rows: int
    duplicates: int


def build_silver_partition(lake: LakeResource, event_date: str) -> SilverBuild:
    """Silver and quarantine rows of one `event_date`, from every bronze file of that date."""
    files = [str(f) for f in lake.files(BRONZE_DATASET, f"event_date={event_date}")]
    with engine() as conn:
        if files:
            conn.execute(f"CREATE VIEW bronze AS SELECT * FROM read_parquet({files!r}, hive_partitioning=false)")
        else:
            conn.execute(
                'CREATE VIEW bronze AS SELECT NULL::VARCHAR topic, NULL::INT "partition", NULL::BIGINT "offset", '
                "NULL::TIMESTAMPTZ kafka_timestamp, NULL::BLOB payload WHERE false"
            )
        candidates = conn.execute(
            f"SELECT *, {_EVENT_ID_SQL} AS event_id, strftime(event_datetime, '%Y-%m-%d') AS event_date "
            f'FROM ({FLATTEN_SQL.format(source="bronze")}) ORDER BY kafka_timestamp, "partition", "offset"'
        ).df()
    bronze_rows = len(candidates)
    candidates["event_datetime"] = candidates["event_datetime"].astype("datetime64[us, UTC]")
    candidates["kafka_timestamp"] = candidates["kafka_timestamp"].astype("datetime64[ms, UTC]")

    reasons = candidates["structural_error"].copy()
    typed = candidates[reasons.isna()]
    try:
        SilverClickstreamEvent.validate(typed[SILVER_COLUMNS], lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.dropna(subset=["index"])
        labels = [_reason(col, chk) for col, chk in zip(cases["column"], cases["check"], strict=True)]
        per_row = (
            pd.Series(labels, index=cases["index"].astype(int))
            .groupby(level=0)
            .agg(lambda r: "; ".join(sorted(set(r))))
        )
        reasons.loc[per_row.index] = per_row.values

    valid = candidates[reasons.isna()]
    silver = valid.drop_duplicates("event_id", keep="first")
    silver = silver[SILVER_COLUMNS].sort_values(["event_datetime", "event_id"]).reset_index(drop=True)

    bad = candidates[reasons.notna()].assign(reason=reasons[reasons.notna()], event_date=event_date)
    quarantine = bad[QUARANTINE_COLUMNS].sort_values(["partition", "offset"]).reset_index(drop=True)
    quarantine["partition"] = quarantine["partition"].astype("int64")
    return SilverBuild(silver, quarantine, bronze_rows, duplicates=len(valid) - len(silver))


def _reason(column: str, check: str) -> str:
    """A Pandera failure as a quarantine reason: missing_field, unknown_value or invalid_value."""
    if check == "not_nullable":
        return f"missing_field:{column}"
    if check.startswith("isin"):
        return f"unknown_value:{column}"
    return f"invalid_value:{column}"


QUARANTINE_RATE_THRESHOLD = 0.05


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
                "Partitioned by the event's own date; late events land in their own date."
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
    check_specs=[
        dg.AssetCheckSpec(
            "silver_schema_check",
            asset="silver_clickstream_events",
            blocking=True,
            description="The written partition satisfies the Pandera schema SilverClickstreamEvent.",
        ),
        dg.AssetCheckSpec(
            "silver_unique_event_check",
            asset="silver_clickstream_events",
            blocking=True,
            description="No event appears twice in the partition.",
        ),
        dg.AssetCheckSpec(
            "nothing_lost_check",
            asset="quarantine_clickstream_events",
            blocking=True,
            description="Every bronze message of the date is in silver, in quarantine, or a counted duplicate.",
        ),
        dg.AssetCheckSpec(
            "quarantine_rate_check",
            asset="quarantine_clickstream_events",
            description=f"At most {QUARANTINE_RATE_THRESHOLD:.0%} of the date's messages are quarantined.",
        ),
    ],
)
def clickstream_silver(context: dg.AssetExecutionContext, lake: LakeResource):
    """Rebuild the run's dates of silver and quarantine from bronze, replacing exactly those dates.
    A backfill of a date range is one run (single-run backfill policy)."""
    builds = []
    for event_date in context.partition_keys:
        build = build_silver_partition(lake, event_date)
        lake.replace_dir({"data.parquet": to_arrow(build.silver)}, SILVER_DATASET, f"event_date={event_date}")
        lake.replace_dir({"data.parquet": to_arrow(build.quarantine)}, QUARANTINE_DATASET, f"event_date={event_date}")
        context.log.info(
            f"{event_date}: {build.bronze_rows} bronze -> {len(build.silver)} silver, {build.duplicates} "
            f"duplicates, {len(build.quarantine)} quarantined {build.quarantine['reason'].value_counts().to_dict()}"
        )
        builds.append(build)
    build = SilverBuild(
        silver=pd.concat([b.silver for b in builds], ignore_index=True),
        quarantine=pd.concat([b.quarantine for b in builds], ignore_index=True),
        bronze_rows=sum(b.bronze_rows for b in builds),
        duplicates=sum(b.duplicates for b in builds),
    )
    reasons = build.quarantine["reason"].value_counts().to_dict()

    yield dg.MaterializeResult(
        asset_key="silver_clickstream_events",
        metadata={
            "dagster/row_count": len(build.silver),
            "duplicates_removed": build.duplicates,
            "bronze_rows": build.bronze_rows,
            "dates": dg.MetadataValue.json(
                {k: len(b.silver) for k, b in zip(context.partition_keys, builds, strict=True)}
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantine_clickstream_events",
        metadata={"dagster/row_count": len(build.quarantine), "reasons": dg.MetadataValue.json(reasons)},
    )

    yield schema_check_result(
        SilverClickstreamEvent, build.silver, asset_key="silver_clickstream_events", check_name="silver_schema_check"
    )
    repeated = int(build.silver["event_id"].duplicated().sum())
    yield dg.AssetCheckResult(
        check_name="silver_unique_event_check",
        asset_key="silver_clickstream_events",
        passed=repeated == 0,
        metadata={"repeated_events": repeated},
    )
    accounted = len(build.silver) + build.duplicates + len(build.quarantine)
    yield dg.AssetCheckResult(
        check_name="nothing_lost_check",
        asset_key="quarantine_clickstream_events",
        passed=accounted == build.bronze_rows,
        metadata={"bronze_rows": build.bronze_rows, "accounted_rows": accounted},
    )
    rate = len(build.quarantine) / build.bronze_rows if build.bronze_rows else 0.0
    yield dg.AssetCheckResult(
        check_name="quarantine_rate_check",
        asset_key="quarantine_clickstream_events",
        passed=rate <= QUARANTINE_RATE_THRESHOLD,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "quarantine_rate": rate,
            "threshold": QUARANTINE_RATE_THRESHOLD,
            "quarantined": len(build.quarantine),
            "reasons": dg.MetadataValue.json(reasons),
            "sample": dg.MetadataValue.json(
                build.quarantine.head(5)
                .assign(payload=lambda f: f["payload"].map(_preview))
                .astype(str)
                .to_dict(orient="records")
            ),
        },
    )


def _preview(payload: bytes | None) -> str:
    return "" if payload is None else payload[:200].decode("utf-8", errors="backslashreplace")
