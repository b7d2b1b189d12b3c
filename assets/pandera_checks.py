"""Pandera schemas as Dagster asset checks and column schemas: one helper for every layer."""

from collections.abc import Collection

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow

from resources.privacy import masked_failure_cases


def table_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The model's columns, for the asset's column schema in the UI."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(column.dtype)) for name, column in model.to_schema().columns.items()]
    )


def validate_schema(
    model: type[pa.DataFrameModel], frame: pd.DataFrame, personal: Collection[str] = ()
) -> tuple[bool, dict]:
    """Validate `frame` with `model`: whether it passed, and check metadata (failure count, a sample of
    failing values, those of the `personal` columns masked)."""
    try:
        model.validate(frame, lazy=True)
        return True, {"failures": 0, "rows": len(frame)}
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        return False, {
            "failures": len(cases),
            "rows": len(frame),
            "failing_rows_sample": dg.MetadataValue.json(masked_failure_cases(cases, personal)),
        }


def schema_check_result(
    model: type[pa.DataFrameModel],
    frame: pd.DataFrame,
    *,
    asset_key: str,
    check_name: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    personal: Collection[str] = (),
) -> dg.AssetCheckResult:
    """`validate_schema` as the result of the check `check_name` on `asset_key`."""
    passed, metadata = validate_schema(model, frame, personal)
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=check_name, passed=passed, severity=severity, metadata=metadata
    )


def _sql_literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def check_violation_sql(column: str, check) -> str:
    """SQL that is true when the non-null value `column` fails the Pandera `check`."""
    stats = check.statistics
    text = f"CAST({column} AS VARCHAR)"
    match check.name:
        case "isin":
            return f"{column} NOT IN ({', '.join(_sql_literal(v) for v in stats['allowed_values'])})"
        case "notin":
            return f"{column} IN ({', '.join(_sql_literal(v) for v in stats['forbidden_values'])})"
        case "str_length":
            if stats.get("exact_value") is not None:
                return f"length({text}) <> {stats['exact_value']}"
            bounds = [f"length({text}) < {stats['min_value']}"] if stats.get("min_value") is not None else []
            bounds += [f"length({text}) > {stats['max_value']}"] if stats.get("max_value") is not None else []
            return " OR ".join(bounds) or "false"
        case "str_matches":  # Pandera anchors the pattern at the start, like re.match
            return f"NOT regexp_matches({text}, {_sql_literal('^(?:' + stats['pattern'] + ')')})"
        case "greater_than_or_equal_to":
            return f"{column} < {_sql_literal(stats['min_value'])}"
        case "less_than_or_equal_to":
            return f"{column} > {_sql_literal(stats['max_value'])}"
        case "greater_than":
            return f"{column} <= {_sql_literal(stats['min_value'])}"
        case "less_than":
            return f"{column} >= {_sql_literal(stats['max_value'])}"
    raise NotImplementedError(f"Pandera check {check.name!r} on {column!r} has no SQL translation yet")


def violations_sql(model: type[pa.DataFrameModel]) -> str:
    """A DuckDB expression over `model`'s columns: NULL when a row satisfies the model's value rules,
    else its failures as '; '-joined reasons (`missing_field:<col>` for a null in a required column,
    `unknown_value:<col>` for a value outside an allowed set, `invalid_value:<col>` for any other
    failed check). Routing rows in SQL is what makes ingest fast; the model itself still validates
    every written partition (the schema check), so the two cannot drift apart unnoticed."""
    failures: dict[str, list[str]] = {}  # reason -> SQL conditions that give it
    for name, column in model.to_schema().columns.items():
        quoted = f'"{name}"'
        if not column.nullable:
            failures.setdefault(f"missing_field:{name}", []).append(f"{quoted} IS NULL")
        for check in column.checks:
            label = "unknown_value" if check.name == "isin" else "invalid_value"
            condition = f"({quoted} IS NOT NULL AND ({check_violation_sql(quoted, check)}))"
            failures.setdefault(f"{label}:{name}", []).append(condition)
    # concat_ws skips NULLs: the reasons of a row, in sorted order, without per-row list work.
    cases = [f"CASE WHEN {' OR '.join(conds)} THEN '{reason}' END" for reason, conds in sorted(failures.items())]
    return f"nullif(concat_ws('; ', {', '.join(cases)}), '')"


def to_arrow(frame: pd.DataFrame, date_columns: tuple[str, ...] = ("event_date",)) -> pyarrow.Table:
    """`frame` as Arrow, with ISO date strings (how pandas carries dates here) stored as real dates."""
    table = pyarrow.Table.from_pandas(frame, preserve_index=False)
    for name in date_columns:
        if name in table.column_names:
            index = table.column_names.index(name)
            table = table.set_column(index, name, table[name].cast(pyarrow.date32()))
    return table
