"""Cleaned: applications typed and validated, in feature order, each with its `seq`; and the quarantine."""

import time
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets.loans.names import CLEANED_DATASET, PERSONAL_FIELDS, QUARANTINE_DATASET
from assets.loans.parsing import (
    CLEANED_COLUMNS,
    QUARANTINE_COLUMNS,
    LoanApplication,
    QuarantinedApplication,
    clean,
    message_rows,
    quarantine_frame,
    read_csv_rows,
)
from assets.loans.raw import bronze_messages, file_token, raw_files
from assets.pandera_checks import schema_check_result
from assets.quality import (
    NOTHING_LOST_CHECK,
    QUARANTINE_RATE_CHECK,
    nothing_lost,
    quality_check_specs,
    quarantine_rate,
)
from assets.streaming import APPEND_ATTEMPTS
from resources import LakeResource
from resources.faults import failpoint
from resources.lake import CommitFailedError, write_table

CLEANED_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("source", pa.string()),
        ("source_row", pa.int64()),
        ("application_date", pa.date32()),
        ("amount_requested", pa.float64()),
        ("loan_title", pa.string()),
        ("risk_score", pa.int64()),
        ("risk_score_missing", pa.bool_()),
        ("debt_to_income_pct", pa.float64()),
        ("debt_to_income_irregular", pa.bool_()),
        ("zip_code", pa.string()),
        ("state", pa.string()),
        ("employment_length", pa.string()),
        ("employment_years", pa.int64()),
        ("policy_code", pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [("source", pa.string()), ("source_row", pa.int64()), ("reason", pa.string()), ("original", pa.string())]
)
# App ids of the cleaned table's tokens: the next seq (every writer of the sequence carries it, so two
# concurrent writers conflict and the later one starts over) and the last bronze offset cleaned. A kept
# file cleaned carries file_token(name). The quarantine records the same file and bronze tokens.
SEQUENCE = "sequence"
BRONZE = "bronze"

APPLICATION_DESCRIPTIONS = {
    "seq": "Place in the feature order: application date, then arrival (batch line, then Kafka offset).",
    "source": "Where the row came from: the kept raw file name, or the Kafka topic.",
    "source_row": "Line in the file (1 = first data line) or Kafka offset.",
    "application_date": "Application Date; ISO or M/D/YYYY in the source.",
    "amount_requested": "Amount Requested in USD ('1000.00' or '1,000' in the source).",
    "loan_title": "Loan Title as typed by the applicant; null when empty.",
    "risk_score": "Risk_Score; null when the source has it empty or 0 (then risk_score_missing is true).",
    "risk_score_missing": "True when the source had no usable score: the row is kept but enters no window.",
    "debt_to_income_pct": "Debt-To-Income Ratio in percent; null for the source's -1% (unknown).",
    "debt_to_income_irregular": "True when the ratio was -1%, unparsable or above 100%.",
    "zip_code": "First three digits of the zip code, e.g. 481xx.",
    "state": "US state, two letters.",
    "employment_length": "Employment Length as in the source ('< 1 year', '10+ years', 'n/a').",
    "employment_years": "Employment Length in years: '< 1 year' = 0, '10+ years' = 10, 'n/a' = null.",
    "policy_code": "Policy Code.",
}


def column_schema(model, descriptions: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(col.dtype), description=descriptions.get(name))
            for name, col in model.to_schema().columns.items()
        ]
    )


@dataclass
class CleanedBatch:
    cleaned: pd.DataFrame
    quarantined: pd.DataFrame
    received: int
    sources: list[str]
    next_seq: int


@dataclass
class _Piece:
    """One source's rows in the feature order: a kept file, or a range of bronze messages."""

    cleaned: pd.DataFrame
    bad: pd.DataFrame
    received: int
    label: str
    token: str  # file_token(name) or BRONZE
    last: int  # 1 for a file, the last offset for messages


def _messages_piece(messages: pd.DataFrame) -> _Piece:
    topic = str(messages["topic"].iloc[0])
    offsets = messages["offset"].astype("int64").tolist()
    rows, malformed = message_rows(messages["payload"].tolist(), offsets)
    cleaned, bad = clean(rows, topic)
    bad = pd.concat([bad, quarantine_frame(topic, malformed)])
    return _Piece(cleaned, bad, len(messages), f"{topic}@{offsets[0]}-{offsets[-1]}", BRONZE, offsets[-1])


def _file_piece(name: str, data: bytes) -> _Piece:
    rows, malformed = read_csv_rows(data)
    cleaned, bad = clean(rows, name)
    cleaned = cleaned.sort_values(["application_date", "source_row"], kind="stable")
    bad = pd.concat([bad, quarantine_frame(name, malformed)])
    return _Piece(cleaned, bad, len(rows) + len(malformed), name, file_token(name), 1)


def _pieces(lake: LakeResource) -> tuple[list[_Piece], int]:
    """The kept files and bronze messages not cleaned yet, in arrival order, and the next seq. A file comes
    after the messages bronze held when it was kept (`after_offset`), so a rebuild from the raw layer puts
    every row at the same place. (A file kept while a stream run had already cleaned past its position,
    a race of milliseconds, goes after what was cleaned: there alone a rebuild could order differently.)"""
    files = raw_files(lake)
    ids = [SEQUENCE, BRONZE, *(file_token(f) for f in files["file"])]
    held = lake.tokens(CLEANED_DATASET, ids)
    next_seq, done = held.get(SEQUENCE) or 0, held.get(BRONZE)
    done = -1 if done is None else done
    new = files[
        files["file"].map(lambda f: held.get(file_token(f)) is None).astype(bool)
    ]  # a Series: no files, no rows
    positions = sorted(zip(new["after_offset"].clip(lower=done).tolist(), new["file"].tolist(), strict=True))
    contents = raw_files(lake, [f for _, f in positions], content=True).set_index("file")["content"]
    messages = bronze_messages(lake, done + 1)
    pieces = []
    for position, name in positions:
        before = messages[messages["offset"] <= position]
        if len(before):
            pieces.append(_messages_piece(before))
            messages = messages[messages["offset"] > position]
        pieces.append(_file_piece(name, contents[name]))
    if len(messages):
        pieces.append(_messages_piece(messages))
    return pieces, int(next_seq)


def append_cleaned(lake: LakeResource) -> CleanedBatch:
    """Type every kept file and bronze range not yet cleaned and append them to the sequence.

    A file's rows are ordered by application date, then line; stream rows keep their Kafka order (a late
    application takes its place on arrival: features already served are never rewritten). The quarantine
    is appended first, then the cleaned rows, each in one commit carrying the sources' tokens: a crashed
    run is repeated exactly, and a table appends nothing it already holds."""
    # The sequence as read: a commit since then carrying its token makes ours fail (the caller starts over).
    version = lake.version(CLEANED_DATASET)
    pieces, next_seq = _pieces(lake)
    cleaned = pd.concat([p.cleaned for p in pieces], ignore_index=True) if pieces else None
    if cleaned is None or cleaned.empty:
        cleaned = pd.DataFrame(columns=CLEANED_COLUMNS)
    cleaned["seq"] = range(next_seq, next_seq + len(cleaned))
    cleaned = cleaned[CLEANED_COLUMNS]
    tokens = {p.token: p.last for p in pieces}
    _append_quarantine(lake, pieces)
    failpoint("loans_between_commits")
    if pieces:
        rows = pa.Table.from_pandas(cleaned, preserve_index=False).cast(CLEANED_SCHEMA)
        tokens[SEQUENCE] = next_seq + len(cleaned)
        write_table(lake, CLEANED_DATASET, rows, tokens=tokens, version=version)
    quarantined = [p.bad for p in pieces]
    quarantined = pd.concat(quarantined, ignore_index=True) if quarantined else quarantine_frame("", [])
    return CleanedBatch(
        cleaned,
        quarantined[QUARANTINE_COLUMNS],
        sum(p.received for p in pieces),
        [p.label for p in pieces],
        next_seq + len(cleaned),
    )


def _append_quarantine(lake: LakeResource, pieces: list[_Piece]) -> None:
    """The pieces' quarantined rows that the quarantine does not hold yet (a retry after a crash between
    the two commits, or a concurrent run, wrote them there), with the tokens of what they add."""
    version = lake.version(QUARANTINE_DATASET)
    ids = list({p.token for p in pieces})
    held = lake.tokens(QUARANTINE_DATASET, ids)
    fresh, tokens = [], {}
    for p in pieces:
        token = held.get(p.token)
        if token is None or (p.token == BRONZE and token < p.last):
            fresh.append(p.bad if token is None else p.bad[p.bad["source_row"] > token])
            tokens[p.token] = p.last
    rows = pd.concat(fresh, ignore_index=True) if fresh else quarantine_frame("", [])
    if len(rows):
        table = pa.Table.from_pandas(rows[QUARANTINE_COLUMNS], preserve_index=False).cast(QUARANTINE_SCHEMA)
        write_table(lake, QUARANTINE_DATASET, table, tokens=tokens, version=version)


def clean_pending(lake: LakeResource) -> CleanedBatch:
    """append_cleaned, started over when a concurrent writer of the sequence committed first."""
    for attempt in range(APPEND_ATTEMPTS):
        try:
            return append_cleaned(lake)
        except CommitFailedError:
            if attempt == APPEND_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "loan_applications",
            deps=["raw_loan_application_files", "bronze_loan_applications"],
            group_name="loans_cleaned",
            kinds={"deltalake", "pandera"},
            description=(
                "Every loan application, typed and validated, in the order the features read them (`seq`). "
                "Rows without a usable Risk_Score (empty or 0) are kept and flagged `risk_score_missing`."
            ),
            metadata={"dagster/column_schema": column_schema(LoanApplication, APPLICATION_DESCRIPTIONS)},
        ),
        dg.AssetSpec(
            "quarantine_loan_applications",
            deps=["raw_loan_application_files", "bronze_loan_applications"],
            group_name="loans_cleaned",
            kinds={"deltalake"},
            description="Rows that could not become applications (no parsable date, amount or score), each "
            "with the reason and the row exactly as received.",
            metadata={"dagster/column_schema": column_schema(QuarantinedApplication, {})},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "loan_applications_schema_check",
            asset="loan_applications",
            blocking=True,
            description="The appended rows satisfy the Pandera model LoanApplication.",
        ),
        *quality_check_specs("quarantine_loan_applications"),
    ],
)
def loan_applications(context: dg.AssetExecutionContext, lake: LakeResource):
    """Append the raw files and bronze ranges not yet cleaned."""
    batch = clean_pending(lake)
    reasons = batch.quarantined["reason"].value_counts().to_dict()
    context.log.info(f"{batch.received} rows from {batch.sources}: {len(batch.cleaned)} cleaned, {reasons}")
    yield dg.MaterializeResult(
        asset_key="loan_applications",
        metadata={
            "dagster/row_count": batch.next_seq,
            "appended_rows": len(batch.cleaned),
            "risk_score_missing": int(batch.cleaned["risk_score_missing"].sum()),
            "sources": dg.MetadataValue.json(batch.sources),
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantine_loan_applications",
        metadata={"quarantined": len(batch.quarantined), "reasons": dg.MetadataValue.json(reasons)},
    )
    yield schema_check_result(
        LoanApplication,
        batch.cleaned,
        asset_key="loan_applications",
        check_name="loan_applications_schema_check",
        personal=PERSONAL_FIELDS,
    )
    passed, metadata = nothing_lost(batch.received, clean=len(batch.cleaned), quarantined=len(batch.quarantined))
    yield dg.AssetCheckResult(
        check_name=NOTHING_LOST_CHECK, asset_key="quarantine_loan_applications", passed=passed, metadata=metadata
    )
    passed, metadata = quarantine_rate(batch.received, len(batch.quarantined), reasons)
    yield dg.AssetCheckResult(
        check_name=QUARANTINE_RATE_CHECK,
        asset_key="quarantine_loan_applications",
        passed=passed,
        metadata=metadata,
        severity=dg.AssetCheckSeverity.WARN,
    )
