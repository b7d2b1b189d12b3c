"""The SQL that routes rows at ingest (`violations_sql`) says exactly what Pandera says of the same rows."""

import datetime as dt

import pandas as pd
import pandera.pandas as pa
import pyarrow

from assets.clickstream.silver import SILVER_ARROW_SCHEMA, SILVER_COLUMNS, SilverClickstreamEvent
from assets.pandera_checks import violations_sql
from resources.warehouse import engine

WHEN = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
GOOD = {
    "event_datetime": WHEN,
    "event_date": WHEN.date(),
    "event_name": "view",
    "user_id": "user_1",
    "platform": "web",
    "product_name": "Lamp",
    "SKU": "SKU-1",
    "event_id": "0" * 32,
}
ROWS = [
    GOOD,
    {**GOOD, "platform": None, "product_name": None, "SKU": None},  # optional fields may be missing
    {**GOOD, "event_name": "hover"},
    {**GOOD, "event_name": None},
    {**GOOD, "user_id": ""},
    {**GOOD, "user_id": "u" * 257},
    {**GOOD, "user_id": None, "platform": "smart-fridge"},  # two failures at once
    {**GOOD, "SKU": ""},
    {**GOOD, "SKU": "S" * 65},
    {**GOOD, "event_id": "abc"},
]


def _pandera_reasons(frame: pd.DataFrame) -> list[str | None]:
    """Pandera's own verdict per row, in the reason vocabulary of the quarantine."""
    try:
        SilverClickstreamEvent.validate(frame, lazy=True)
        return [None] * len(frame)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.dropna(subset=["index"])
        per_row: dict[int, set[str]] = {}
        for column, check, index in zip(cases["column"], cases["check"], cases["index"], strict=True):
            kind = (
                "missing_field"
                if check == "not_nullable"
                else "unknown_value"
                if check.startswith("isin")
                else "invalid_value"
            )
            per_row.setdefault(int(index), set()).add(f"{kind}:{column}")
        return ["; ".join(sorted(per_row[i])) if i in per_row else None for i in range(len(frame))]


def test_sql_routing_agrees_with_pandera_row_by_row():
    table = pyarrow.Table.from_pylist(ROWS, schema=SILVER_ARROW_SCHEMA)
    with engine() as conn:
        conn.register("rows", table)
        sql_reasons = [
            r[0] for r in conn.execute(f"SELECT {violations_sql(SilverClickstreamEvent)} FROM rows").fetchall()
        ]
    frame = table.to_pandas()[SILVER_COLUMNS]
    frame["event_date"] = frame["event_date"].astype(str)
    expected = _pandera_reasons(frame)
    assert sql_reasons == expected
    assert expected[0] is None and expected[1] is None
    assert expected[6] == "missing_field:user_id; unknown_value:platform"
    assert all(reason is not None for reason in expected[2:])
