"""Importing a fraud history: a team's buyer-change history and checkout events (NDJSON or CSV files in the
landing folder) into the same bronze -> dimensions -> decision path the streams feed, without Kafka, in
one run for any range of dates.

Files under `$LANDING_ROOT/<folder>/buyer_changes/` and `<folder>/checkout_events/` carry the topics'
messages (assets/fraud/contracts.py): NDJSON lines as they would be sent, CSV columns named after the
contract's fields (numbers written as text are typed by the contract). Each file becomes a source of its
own in bronze, exactly once (assets/archives.py: a token per file), filed under its dates as the stream
files them. Then, as if each date had run one by one:
- the buyer dimensions are rebuilt from every change in bronze, in event-time order: every version the
  history contains, each with its own validity;
- every date the new events reached, and every date from the earliest new change on, is rebuilt from
  bronze against those dimensions (as-of enrichment), many dates a commit, each date reported with its
  materializations and checks (schema, nothing lost, quarantine rate);
- the serving table is refreshed last, recording the change files' tokens: a run that stopped anywhere
  before is finished by the next import of the folder.
"""

import time

import dagster as dg
import pyarrow as pa

from assets.archives import file_kind, import_file, import_result, unsettled_dates
from assets.fraud.common import CHANGES_STREAM, EVENTS_STREAM
from assets.fraud.contracts import BUYER_CHANGES, CHECKOUT_EVENTS, SQL_TYPES, Contract
from assets.fraud.decision import (
    LOADED_RULES,
    DecisionBuild,
    fraud_decision_partition,
    partition_checks,
    partition_metadata,
    rebuild_decision_dates,
    validate_decisions,
)
from assets.fraud.dimensions import (
    DimensionBuild,
    dimension_checks,
    dimension_metadata,
    fraud_buyer_dimensions,
    write_dimensions,
)
from assets.fraud.names import (
    BRONZE_CHANGES,
    BRONZE_EVENTS,
    DECISION_WRITER_POOL,
    LATEST_FEATURES,
    SILVER_EVENTS,
    fraud_daily_partitions,
)
from assets.fraud.serving import fraud_buyer_latest_features, write_latest_features
from assets.provenance import reported_materialization
from resources import LakeResource, LandingResource, PseudonymizerResource, WarehouseResource

CHANGES_FOLDER, EVENTS_FOLDER = "buyer_changes", "checkout_events"


class FraudImportConfig(dg.Config):
    """`folder`: under the landing root (LANDING_ROOT), holding `buyer_changes/` and `checkout_events/`
    (`*.ndjson`, `*.jsonl`, `*.json`: one JSON message per line; `*.csv` with a header of the contract's
    field names); `dates_per_commit`: how many decision dates are rebuilt in one commit per table."""

    folder: str = "fraud"
    dates_per_commit: int = 31


def message_sql(contract: Contract):
    """The topic's message of each archive record: an NDJSON line as it is; a CSV row as a JSON object of
    its columns, numbers typed as the contract says (text that is no number stays text, and is
    quarantined as the wrong type). Empty CSV cells are absent values."""
    typed = [f for f in contract.fields if f.type in ("number", "integer")]
    row = "to_json(records)"

    def sql(kind: str) -> str:
        if kind == "ndjson":
            return "SELECT _offset, line AS payload FROM records"
        patch = ", ".join(
            f"'{f.name}', coalesce(to_json(try_cast({row} ->> '$.{f.name}' AS {SQL_TYPES[f.type]})), "
            f"to_json({row} ->> '$.{f.name}'))"
            for f in typed
        )
        message = f"json_merge_patch({row}, json_object('_offset', NULL, {patch}))"
        return f"SELECT _offset, encode({message}::VARCHAR) AS payload FROM records"

    return sql


@dg.asset(
    group_name="fraud_bronze",
    kinds={"deltalake"},
    pool=DECISION_WRITER_POOL,
    metadata={"tables": [BRONZE_CHANGES, BRONZE_EVENTS]},
)
def fraud_history_import(
    context: dg.AssetExecutionContext,
    config: FraudImportConfig,
    lake: LakeResource,
    landing: LandingResource,
    pseudonymizer: PseudonymizerResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """A team's history of buyer changes and checkout events (files in the landing folder) imported
    exactly once per file, as if it had streamed in: the buyer dimensions with every version it holds,
    and every date it reaches rebuilt in silver, quarantine and the decision dataset with its checks."""
    received_ms = time.time_ns() // 1_000_000
    per_file: dict[str, int] = {}
    changed: dict[str, dict[str, int]] = {}  # change dates not settled yet -> the files' tokens
    pending: dict[str, dict[str, int]] = {}  # event dates not settled yet -> the files' tokens
    for folder, stream, contract, settled, unsettled in (
        (CHANGES_FOLDER, CHANGES_STREAM, BUYER_CHANGES, LATEST_FEATURES, changed),
        (EVENTS_FOLDER, EVENTS_STREAM, CHECKOUT_EVENTS, SILVER_EVENTS, pending),
    ):
        for landed in landing.landed(f"{config.folder}/{folder}", suffix=""):
            if not file_kind(landed.key):
                continue
            data = landing.read(landed.key)
            added = import_file(
                lake, stream.bronze_table, landed.key, data, message_sql(contract), stream.route, received_ms
            )
            per_file[landed.key] = sum(added.values())
            for event_date, tokens in unsettled_dates(lake, stream.bronze_table, landed.key, settled).items():
                unsettled[event_date] = unsettled.get(event_date, {}) | tokens
    partitions = set(fraud_daily_partitions.get_partition_keys())
    dates = set(pending)
    if changed:  # a change holds until the next one: every decision date from the earliest change on
        dates |= {d for d in lake.count_by_date(BRONZE_EVENTS) if d >= min(changed)}
    dates = sorted(dates & partitions)
    context.log.info(
        f"{len(per_file)} files, {sum(per_file.values())} new records; "
        f"{len(changed)} change dates and {len(dates)} decision dates to rebuild"
    )
    if changed or pending:
        build = write_dimensions(lake, pseudonymizer)
        _report_dimensions(context, build)
        builds = rebuild_decision_dates(lake, LOADED_RULES, dates, context.log, together=config.dates_per_commit)
        _report_dates(context, builds)
        serving = write_latest_features(
            lake, warehouse, context.log, tokens={t: v for tokens in changed.values() for t, v in tokens.items()}
        )
        context.log_event(
            reported_materialization(
                context, fraud_buyer_latest_features, "fraud_buyer_latest_features", metadata=serving
            )
        )
    return import_result(per_file, dates)


def _report_dimensions(context: dg.AssetExecutionContext, build: DimensionBuild) -> None:
    for asset, metadata in dimension_metadata(build).items():
        context.log_event(reported_materialization(context, fraud_buyer_dimensions, asset, metadata=metadata))
    checks = dimension_checks(build)
    for name, passed, metadata in checks:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("fraud_buyer_scd2"), check_name=name, passed=passed, metadata=metadata
            )
        )
    if not all(passed for _, passed, _ in checks):
        raise dg.Failure("the buyer dimensions failed their checks: see fraud_buyer_scd2's checks")


def _report_dates(context: dg.AssetExecutionContext, builds: dict[str, DecisionBuild]) -> None:
    """Per date: silver, quarantine and decision materializations (tagged with their code version, so the
    UI knows them current) and the date's checks. Pandera validates all the dates' decisions at once, and
    a date alone only when that fails (to say which)."""
    every = pa.concat_tables([b.decision for b in builds.values()]) if builds else None
    all_valid = every is None or validate_decisions(every)[0]
    lost, latest = [], {}
    for event_date, build in builds.items():
        for asset, metadata in partition_metadata(build).items():
            context.log_event(
                reported_materialization(
                    context,
                    fraud_decision_partition,
                    asset,
                    partition=event_date,
                    metadata={**metadata, "scope": "import"},
                    latest=latest,
                )
            )
        schema = (True, {"failures": 0, "rows": build.decision.num_rows}) if all_valid else None
        for check in partition_checks(build, schema=schema):
            context.log_event(check.evaluation(event_date, "import"))
            if check.blocking and not check.passed:
                lost.append(f"{check.name} ({event_date})")
    if lost:
        raise dg.Failure(f"blocking checks failed: {', '.join(lost[:5])}; see the checks")
