"""Pandera schemas as Dagster asset checks and column schemas: one helper for every layer."""

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow


def table_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The model's columns, for the asset's column schema in the UI."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(column.dtype)) for name, column in model.to_schema().columns.items()]
    )


def validate_schema(model: type[pa.DataFrameModel], frame: pd.DataFrame) -> tuple[bool, dict]:
    """Validate `frame` with `model`: whether it passed, and check metadata (failure count, a sample of
    failing rows)."""
    try:
        model.validate(frame, lazy=True)
        return True, {"failures": 0, "rows": len(frame)}
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        return False, {
            "failures": len(cases),
            "rows": len(frame),
            "failing_rows_sample": dg.MetadataValue.json(cases.head(10).astype(str).to_dict(orient="records")),
        }


def schema_check_result(
    model: type[pa.DataFrameModel],
    frame: pd.DataFrame,
    *,
    asset_key: str,
    check_name: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """`validate_schema` as the result of the check `check_name` on `asset_key`."""
    passed, metadata = validate_schema(model, frame)
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=check_name, passed=passed, severity=severity, metadata=metadata
    )


def to_arrow(frame: pd.DataFrame, date_columns: tuple[str, ...] = ("event_date",)) -> pyarrow.Table:
    """`frame` as Arrow, with ISO date strings (how pandas carries dates here) stored as real dates."""
    table = pyarrow.Table.from_pandas(frame, preserve_index=False)
    for name in date_columns:
        if name in table.column_names:
            index = table.column_names.index(name)
            table = table.set_column(index, name, table[name].cast(pyarrow.date32()))
    return table
