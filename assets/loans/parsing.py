"""The applications' source format and its irregularities, turned into typed rows (pure functions).

Files and Kafka messages carry the same nine text fields as LendingClub's rejected-loan export;
one function types both, so batch and stream rows are cleaned identically.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import orjson
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

HEADER = [
    "Amount Requested",
    "Application Date",
    "Loan Title",
    "Risk_Score",
    "Debt-To-Income Ratio",
    "Zip Code",
    "State",
    "Employment Length",
    "Policy Code",
]


class LoanApplication(pa.DataFrameModel):
    """One application, typed. `seq` is its place in the feature order: application date, then arrival."""

    seq: Series[int] = pa.Field(ge=0, unique=True)
    source: Series[str]
    source_row: Series[int] = pa.Field(ge=0)
    application_date: Series[pd.Timestamp]
    amount_requested: Series[float] = pa.Field(ge=0)
    loan_title: Series[str] = pa.Field(nullable=True)
    risk_score: Series[pd.Int64Dtype] = pa.Field(nullable=True, gt=0, le=1000)
    risk_score_missing: Series[bool]
    debt_to_income_pct: Series[float] = pa.Field(nullable=True, ge=0)
    debt_to_income_irregular: Series[bool]
    zip_code: Series[str] = pa.Field(nullable=True)
    state: Series[str] = pa.Field(nullable=True)
    employment_length: Series[str] = pa.Field(nullable=True)
    employment_years: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0, le=10)
    policy_code: Series[pd.Int64Dtype] = pa.Field(nullable=True)

    @pa.dataframe_check
    def missing_flag_matches_score(cls, frame: pd.DataFrame) -> pd.Series:
        """A row is flagged exactly when it has no usable score: flagged rows are kept, never dropped."""
        return frame["risk_score_missing"] == frame["risk_score"].isna()

    class Config:
        strict = True
        coerce = False


class QuarantinedApplication(pa.DataFrameModel):
    """A row that could not become an application, with the reason and the row exactly as received."""

    source: Series[str]
    source_row: Series[int]
    reason: Series[str] = pa.Field(str_length={"min_value": 1})
    original: Series[str]


CLEANED_COLUMNS = list(LoanApplication.to_schema().columns)
QUARANTINE_COLUMNS = list(QuarantinedApplication.to_schema().columns)
EMPLOYMENT_YEARS = {"< 1 year": 0, "1 year": 1, **{f"{n} years": n for n in range(2, 10)}, "10+ years": 10}


def read_csv_rows(data: bytes) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """The file's rows as text columns named as in HEADER, with `source_row` (1-based data line), and the
    rows that do not have nine fields (row, reason, original line)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace")))
    header = next(reader, None)
    if header != HEADER:
        # The received "header" is not quoted: in a file without one, it is an applicant's row.
        missing = [name for name in HEADER if name not in (header or [])]
        raise ValueError(f"unexpected header of {len(header or [])} fields, without {missing}; expected {HEADER!r}")
    rows, numbers, bad = [], [], []
    for number, row in enumerate(reader, start=1):
        if len(row) == len(HEADER):
            rows.append(row)
            numbers.append(number)
        elif row:
            bad.append((number, "wrong_field_count", _csv_line(row)))
    frame = pd.DataFrame(rows, columns=HEADER, dtype=object)
    frame.insert(0, "source_row", pd.Series(numbers, dtype="int64"))
    return frame, bad


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


def message_rows(payloads: list[bytes | None], offsets: list[int]) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """Kafka messages (one JSON object per application, keys as in HEADER, values as in the file)."""
    rows, numbers, bad = [], [], []
    for offset, payload in zip(offsets, payloads, strict=True):
        try:
            doc = orjson.loads(payload or b"")
        except orjson.JSONDecodeError:
            bad.append((offset, "malformed_json", (payload or b"").decode("utf-8", "backslashreplace")))
            continue
        if not isinstance(doc, dict) or any(not isinstance(doc.get(k), str) for k in HEADER):
            bad.append((offset, "missing_field", (payload or b"").decode("utf-8", "backslashreplace")))
            continue
        rows.append([doc[k] for k in HEADER])
        numbers.append(offset)
    frame = pd.DataFrame(rows, columns=HEADER, dtype=object)
    frame.insert(0, "source_row", pd.Series(numbers, dtype="int64"))
    return frame, bad


def parse_dates(text: pd.Series) -> pd.Series:
    """ISO dates, or M/D/YYYY as spreadsheets re-save them; anything else is NaT."""
    text = text.astype("string").str.strip()
    iso = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    return iso.fillna(pd.to_datetime(text, format="%m/%d/%Y", errors="coerce")).astype("datetime64[ns]")


def _number(text: pd.Series, strip: str = "") -> pd.Series:
    cleaned = text.astype("string").str.strip().str.replace(",", "", regex=False)
    if strip:
        cleaned = cleaned.str.rstrip(strip)
    return pd.Series(pd.to_numeric(cleaned, errors="coerce"), index=text.index, dtype="float64")


def clean(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed applications and quarantined rows from text rows (HEADER columns plus `source_row`).

    Rules, in the order the business reads them:
    - `Application Date` ISO or M/D/YYYY; otherwise the row is quarantined (`unparsable_date`): without a
      date it has no place in the feature order.
    - `Amount Requested` `1000.00` or `"1,000"`; otherwise quarantined (`invalid_amount`).
    - `Risk_Score` empty or `0` means "no score": the row is kept and flagged `risk_score_missing`, its
      score is null, and it does not enter the moving windows. Text that is not a number is quarantined.
    - `Debt-To-Income Ratio` `10%` -> 10.0; `-1%` is the source's "unknown" (null) and, like values above
      100%, flagged `debt_to_income_irregular`; the row is kept.
    - `Employment Length` `< 1 year` -> 0, `10+ years` -> 10, `n/a` -> null (the text is kept as well).
    The seq column is left for the caller, which knows the arrival order.
    """
    dates = parse_dates(frame["Application Date"])
    amount = _number(frame["Amount Requested"])
    score_text = frame["Risk_Score"].astype("string").str.strip()
    score = _number(score_text)
    score_absent = score_text.eq("") | score.eq(0)
    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")
    score_bad = score.isna() & ~score_absent | (score.notna() & (score != np.floor(score)))
    reasons = reasons.mask(reasons.isna() & score_bad, "invalid_risk_score")
    reasons = reasons.mask(amount.isna() | (amount < 0), "invalid_amount")
    reasons = reasons.mask(dates.isna(), "unparsable_date")

    ok = reasons.isna()
    good = frame[ok]
    dti = _number(good["Debt-To-Income Ratio"], "%")
    employment = good["Employment Length"].astype("string").str.strip()
    text = {c: good[c].astype("string").str.strip().replace("", pd.NA) for c in ("Loan Title", "Zip Code", "State")}
    cleaned = pd.DataFrame(
        {
            "seq": pd.Series(-1, index=good.index, dtype="int64"),
            "source": source,
            "source_row": good["source_row"].astype("int64"),
            "application_date": dates[ok],
            "amount_requested": amount[ok],
            "loan_title": text["Loan Title"].astype(object),
            "risk_score": score[ok].where(~score_absent[ok]).astype("Int64"),
            "risk_score_missing": score_absent[ok].astype(bool),
            "debt_to_income_pct": dti.where(dti >= 0),
            "debt_to_income_irregular": (dti.isna() | (dti < 0) | (dti > 100)).astype(bool),
            "zip_code": text["Zip Code"].astype(object),
            "state": text["State"].astype(object),
            "employment_length": employment.replace("", pd.NA).astype(object),
            "employment_years": employment.map(EMPLOYMENT_YEARS).astype("Int64"),
            "policy_code": _number(good["Policy Code"]).round().astype("Int64"),
        }
    )
    bad = frame[~ok]
    quarantined = pd.DataFrame(
        {
            "source": source,
            "source_row": bad["source_row"].astype("int64"),
            "reason": reasons[~ok].astype(str),
            "original": [_csv_line(list(r)) for r in bad[HEADER].itertuples(index=False)],
        }
    )
    return cleaned, quarantined


def quarantine_frame(source: str, bad: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": source,
            "source_row": pd.Series([b[0] for b in bad], dtype="int64"),
            "reason": [b[1] for b in bad],
            "original": [b[2] for b in bad],
        }
    )


def with_partition_dates(messages: pyarrow.Table) -> pyarrow.Table:
    """Bronze rows: Kafka messages with `event_date`, the application date when it parses, else the day
    the broker received the message."""
    payloads = messages["payload"].to_pylist()
    texts = []
    for payload in payloads:
        try:
            doc = orjson.loads(payload or b"")
            texts.append(doc.get("Application Date") if isinstance(doc, dict) else None)
        except orjson.JSONDecodeError:
            texts.append(None)
    parsed = parse_dates(pd.Series(texts, dtype=object))
    received = pd.Series(messages["kafka_timestamp"].to_pandas()).dt.tz_convert("UTC").dt.tz_localize(None)
    dates = parsed.fillna(received).dt.date
    return messages.append_column("event_date", pyarrow.array(dates.tolist(), type=pyarrow.date32()))
