"""Cleaned: applications typed and validated, in feature order, each with its `seq`; and the quarantine."""

from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets.loans.names import CLEANED_DATASET, PERSONAL_FIELDS, QUARANTINE_DATASET, RAW_FILES_DATASET
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
from assets.loans.raw import bronze_ranges
from assets.loans.store import drop_beyond, loans_lock, seq_file_name
from assets.pandera_checks import schema_check_result
from resources import LakeResource

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


def append_cleaned(lake: LakeResource) -> CleanedBatch:
    """Type every raw file and bronze range not yet cleaned and append them to the sequence.

    A file's rows are ordered by application date, then line; stream rows keep their Kafka order (a late
    application takes its place on arrival: features already served are never rewritten). Cleaned rows,
    quarantine files and the state are written in that order, so a crashed run is repeated exactly."""
    state = lake.read_json(CLEANED_DATASET, "_state.json") or {
        "next_seq": 0,
        "raw_files": [],
        "next_offset": 0,
    }
    assert isinstance(state, dict)
    drop_beyond(lake, state["next_seq"], CLEANED_DATASET)
    chunks, bad_chunks, sources, received = [], [], [], 0
    for path in lake.files(RAW_FILES_DATASET, pattern="*.csv"):
        if path.name in state["raw_files"]:
            continue
        rows, malformed = read_csv_rows(path.read_bytes())
        cleaned, bad = clean(rows, path.name)
        chunks.append(cleaned.sort_values(["application_date", "source_row"], kind="stable"))
        bad_chunks.append((path.stem, pd.concat([bad, quarantine_frame(path.name, malformed)])))
        received += len(rows) + len(malformed)
        sources.append(path.name)
        state["raw_files"].append(path.name)
    for first, last, messages in bronze_ranges(lake, state["next_offset"]):
        topic = str(messages["topic"].iloc[0])
        rows, malformed = message_rows(messages["payload"].tolist(), messages["offset"].tolist())
        cleaned, bad = clean(rows, topic)
        chunks.append(cleaned)
        bad_chunks.append((f"{topic}-{first:012d}-{last:012d}", pd.concat([bad, quarantine_frame(topic, malformed)])))
        received += len(messages)
        sources.append(f"{topic}@{first}-{last}")
        state["next_offset"] = last + 1
    cleaned = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=CLEANED_COLUMNS)
    cleaned["seq"] = range(state["next_seq"], state["next_seq"] + len(cleaned))
    if len(cleaned):
        table = pa.Table.from_pandas(cleaned[CLEANED_COLUMNS], preserve_index=False)
        table = table.set_column(3, "application_date", table["application_date"].cast(pa.date32()))
        lake.write_parquet(
            table, CLEANED_DATASET, seq_file_name(state["next_seq"], state["next_seq"] + len(cleaned) - 1)
        )
    for name, bad in bad_chunks:
        if len(bad):
            lake.write_parquet(
                pa.Table.from_pandas(bad[QUARANTINE_COLUMNS], preserve_index=False),
                QUARANTINE_DATASET,
                f"{name}.parquet",
            )
    state["next_seq"] += len(cleaned)
    lake.write_json(state, CLEANED_DATASET, "_state.json")
    quarantined = pd.concat([b for _, b in bad_chunks], ignore_index=True) if bad_chunks else quarantine_frame("", [])
    return CleanedBatch(cleaned[CLEANED_COLUMNS], quarantined[QUARANTINE_COLUMNS], received, sources)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "loan_applications",
            deps=["raw_loan_application_files", "bronze_loan_applications"],
            group_name="loans_cleaned",
            kinds={"parquet", "pandera"},
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
            kinds={"parquet"},
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
        dg.AssetCheckSpec(
            "loan_applications_nothing_lost_check",
            asset="quarantine_loan_applications",
            blocking=True,
            description="Every received row is cleaned or quarantined.",
        ),
    ],
)
def loan_applications(context: dg.AssetExecutionContext, lake: LakeResource):
    """Append the raw files and bronze ranges not yet cleaned."""
    with loans_lock(lake):
        batch = append_cleaned(lake)
    reasons = batch.quarantined["reason"].value_counts().to_dict()
    context.log.info(f"{batch.received} rows from {batch.sources}: {len(batch.cleaned)} cleaned, {reasons}")
    yield dg.MaterializeResult(
        asset_key="loan_applications",
        metadata={
            "dagster/row_count": int(lake.read_json(CLEANED_DATASET, "_state.json")["next_seq"]),  # type: ignore[index]
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
    accounted = len(batch.cleaned) + len(batch.quarantined)
    yield dg.AssetCheckResult(
        check_name="loan_applications_nothing_lost_check",
        asset_key="quarantine_loan_applications",
        passed=accounted == batch.received,
        metadata={
            "received": batch.received,
            "accounted": accounted,
            "reasons": dg.MetadataValue.json(reasons),
        },
    )
