"""Importing a clickstream archive: NDJSON or CSV files from the landing folder into the same bronze ->
silver -> gold path the stream feeds, without Kafka.

Each file is a source of its own in bronze (`assets/archives.py`, shared by every domain's import): topic
`import:<landing key>`, partition 0, one offset per record (its row number), received at the import's
time. Every record becomes a message in the stream's shape (the file's fields mapped by a mapping of
assets/clickstream/clickstream.yaml, the original record kept under `source`), so parsing, vocabulary,
quarantine, deduplication and the checks are the stream's own. Exactly once: bronze records, in the same
commit as the rows, the file's last offset (the stream's token), so importing the file again adds nothing
and a file that grew adds only its new records. Then every date the new records reached is rebuilt from
bronze, many dates a commit: a year is one run.
"""

import time

import dagster as dg

from assets import archives
from assets.archives import file_kind, unsettled_dates
from assets.clickstream.aggregates import write_gold_dates
from assets.clickstream.config import CONFIG, MAPPABLE_FIELDS, ImportMapping
from assets.clickstream.gold import GOLD_OUTPUTS, clickstream_gold, gold_frames
from assets.clickstream.names import BRONZE_TABLE, PRODUCT_FUNNEL_TABLE, clickstream_daily_partitions
from assets.clickstream.silver import (
    SILVER_ARROW_SCHEMA,
    SILVER_TABLE,
    SILVER_WRITER_POOL,
    SilverClickstreamEvent,
    clickstream_silver,
    quarantine_metadata,
    rebuild_dates,
    route_messages,
    silver_metadata,
)
from assets.pandera_checks import validate_schema
from assets.provenance import reported_materialization
from assets.quality import NOTHING_LOST_CHECK, QUARANTINE_RATE_CHECK, nothing_lost, quarantine_rate
from resources import LakeResource, LandingResource


class ClickstreamImportConfig(dg.Config):
    """`folder`: under the landing root (LANDING_ROOT), where the archive's files are (`*.ndjson`,
    `*.jsonl`, `*.json`: one JSON object per line; `*.csv` with a header); `mapping`: which of
    assets/clickstream/clickstream.yaml's `imports` says where the files keep each field; `dates_per_commit`: how
    many dates are rebuilt in one commit per table."""

    folder: str = "clickstream"
    mapping: str = "events"
    dates_per_commit: int = 31


def _field(source: str, column: str | None) -> str:
    """SQL for the text of one mapped field of `source` rows: a CSV column or a JSON path."""
    if column is None:
        return "NULL::VARCHAR"
    if source == "csv":
        return '"' + column.replace('"', '""') + '"'
    return "json_extract_string(doc, '$." + column.replace("'", "''") + "')"


def _message_sql(source: str, mapping: ImportMapping) -> str:
    """The stream's message for each record of relation `records` (columns `_offset` and, for NDJSON,
    `line`): the mapped fields in the stream's shape, the original record under `source`. A line that is
    not UTF-8 JSON stays as it was (it is quarantined with its reason)."""
    f = {name: _field(source, mapping.fields.get(name)) for name in MAPPABLE_FIELDS}
    timestamp = f["timestamp"]
    if mapping.timestamp_unit:  # epoch numbers as ISO text; anything else is kept and found unparsable
        divisor = 1 if mapping.timestamp_unit == "s" else 1000
        iso = f"strftime(to_timestamp(try_cast({timestamp} AS DOUBLE) / {divisor}), '%Y-%m-%dT%H:%M:%S.%fZ')"
        timestamp = f"coalesce({iso}, {timestamp})"
    name, sku = f["product_name"], f["SKU"]
    product = f"CASE WHEN {name} IS NOT NULL OR {sku} IS NOT NULL THEN json_object('name', {name}, 'SKU', {sku}) END"
    original = "json(body)" if source == "ndjson" else "to_json(records)"
    message = f"""json_object('timestamp', {timestamp}, 'event_name', {f["event_name"]},
        'user_identifiers', json_object('id', {f["user_id"]}, 'platform', {f["platform"]}),
        'product_information', {product}, 'event_id', {f["event_id"]}, 'source', {original})"""
    if source == "csv":
        return f"SELECT _offset, encode({message}::VARCHAR) AS payload FROM records"
    return f"""SELECT _offset, CASE WHEN doc IS NOT NULL THEN encode({message}::VARCHAR) ELSE line END AS payload
        FROM (SELECT *, CASE WHEN json_valid(body) AND json_type(body) = 'OBJECT' THEN body END AS doc
              FROM (SELECT *, try(decode(line)) AS body FROM records))"""


def import_file(lake: LakeResource, key: str, data: bytes, mapping: ImportMapping, received_ms: int) -> dict[str, int]:
    """The landed file's records that bronze lacks, as the stream's messages, appended exactly once."""
    return archives.import_file(
        lake, BRONZE_TABLE, key, data, lambda kind: _message_sql(kind, mapping), route_messages, received_ms
    )


@dg.asset(
    group_name="clickstream_bronze",
    kinds={"deltalake"},
    pool=SILVER_WRITER_POOL,
    metadata={"table": BRONZE_TABLE},
)
def clickstream_history_import(
    context: dg.AssetExecutionContext, config: ClickstreamImportConfig, lake: LakeResource, landing: LandingResource
) -> dg.MaterializeResult:
    """Historical clickstream files (an archive, an export of another tracking tool) imported into bronze
    exactly once per file, then the dates they reach rebuilt in silver, quarantine and gold with every
    check the stream runs: the same tables, as if the events had streamed in on their own dates."""
    if config.mapping not in CONFIG.imports:
        raise dg.Failure(
            f"unknown mapping {config.mapping!r}; assets/clickstream/clickstream.yaml defines {sorted(CONFIG.imports)}"
        )
    mapping = CONFIG.imports[config.mapping]
    received_ms = time.time_ns() // 1_000_000
    files = [f for f in landing.landed(config.folder, suffix="") if file_kind(f.key)]
    per_file, pending = {}, {}
    for landed in files:
        data = landing.read(landed.key)
        per_file[landed.key] = sum(import_file(lake, landed.key, data, mapping, received_ms).values())
        for event_date, tokens in unsettled_dates(lake, BRONZE_TABLE, landed.key, PRODUCT_FUNNEL_TABLE).items():
            pending[event_date] = pending.get(event_date, {}) | tokens
    dates = sorted(pending)
    context.log.info(f"{len(files)} files, {sum(per_file.values())} new records; {len(dates)} dates to rebuild")
    _check_partitions(dates)
    summaries = rebuild_dates(lake, dates, context.log, together=config.dates_per_commit)
    published = {}
    for i in range(0, len(dates), config.dates_per_commit):
        chunk = dates[i : i + config.dates_per_commit]
        published |= write_gold_dates(lake, chunk, tokens={t: v for d in chunk for t, v in pending[d].items()})
    _report(context, lake, summaries, published)
    return archives.import_result(per_file, dates)


def _check_partitions(dates: list[str]) -> None:
    """Every date an event went to is a partition (parsing quarantines events before the first one)."""
    keys = set(clickstream_daily_partitions.get_partition_keys())
    outside = [d for d in dates if d not in keys]
    if outside:
        raise dg.Failure(f"records landed in dates outside the partitions: {outside[:5]}")


def _report(context, lake: LakeResource, summaries: dict[str, dict], published: dict) -> None:
    """Per date: silver, quarantine and gold materializations (tagged with their code version, so the UI
    knows them current) and the whole-date checks."""
    frames = gold_frames(published) if published else {}
    # Pandera over all the dates at once (per date only when something fails: to say which).
    silver = lake.scan(SILVER_TABLE, list(summaries), schema=SILVER_ARROW_SCHEMA).to_pandas()
    silver["event_date"] = silver["event_date"].astype(str)
    all_valid, _ = validate_schema(SilverClickstreamEvent, silver)
    for event_date, summary in summaries.items():
        for asset, meta in (
            ("silver_clickstream_events", silver_metadata(summary)),
            ("quarantine_clickstream_events", quarantine_metadata(summary)),
        ):
            context.log_event(
                reported_materialization(context, clickstream_silver, asset, partition=event_date, metadata=meta)
            )
        for table, _model, asset, _check in GOLD_OUTPUTS:
            rows = int((frames[table]["event_date"] == event_date).sum()) if frames else 0
            context.log_event(
                reported_materialization(
                    context, clickstream_gold, asset, partition=event_date, metadata={"dagster/row_count": rows}
                )
            )
        if all_valid:
            schema_ok, schema_meta = True, {"failures": 0, "rows": summary["rows"]}
        else:
            schema_ok, schema_meta = validate_schema(SilverClickstreamEvent, silver[silver["event_date"] == event_date])
        lost_ok, lost_meta = nothing_lost(
            summary["bronze_rows"],
            clean=summary["rows"],
            quarantined=summary["quarantined"],
            duplicates=summary["duplicates"],
        )
        rate_ok, rate_meta = quarantine_rate(summary["bronze_rows"], summary["quarantined"], summary["reasons"])
        for asset, check, ok, meta, severity in (
            ("silver_clickstream_events", "silver_schema_check", schema_ok, schema_meta, dg.AssetCheckSeverity.ERROR),
            ("quarantine_clickstream_events", NOTHING_LOST_CHECK, lost_ok, lost_meta, dg.AssetCheckSeverity.ERROR),
            ("quarantine_clickstream_events", QUARANTINE_RATE_CHECK, rate_ok, rate_meta, dg.AssetCheckSeverity.WARN),
        ):
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(asset),
                    check_name=check,
                    passed=ok,
                    metadata=meta | {"scope": "import"},
                    partition=event_date,
                    severity=severity,
                )
            )
    failed = [d for d, s in summaries.items() if s["bronze_rows"] != s["rows"] + s["quarantined"] + s["duplicates"]]
    if failed:
        raise dg.Failure(f"nothing-lost failed for {failed[:5]}: see the checks")
