"""Features: the versioned risk-score feature table and the registry of every feature version.

The active feature version is configuration: LOAN_FEATURE_VERSION, read once when the code location loads
(default: the latest version in logic.py). It is the asset's `code_version`, so switching it shows the asset
as changed and stale in the UI, and materializing it runs what the version asks for (continue from the
previous version, or recompute every row). Older versions' rows stay where they were written.
"""

import os

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets.loans.logic import FEATURE_VERSIONS, LOGIC_TEXT
from assets.loans.names import FEATURE_VERSION_ENV, FEATURES_DATASET, REGISTRY_DATASET
from assets.loans.store import columns_of, publish_views, update_features, version_stats
from resources import LakeResource, WarehouseResource
from resources.lake import write_table

COLUMN_DESCRIPTIONS = {
    "seq": "The application's place in the feature order (application date, then arrival); joins loan_applications.",
    "application_date": "Application Date.",
    "risk_score": "Risk_Score of this application; null when missing or 0 in the source.",
    "risk_score_missing": "True if the row had no usable score: it carries the features of the rows before.",
    "risk_scores_seen": "Scores seen up to this row: below the window size, moving averages are partial.",
    "feature_version": "Version of the feature logic that computed the row (see loan_feature_registry).",
    "schema_version": "Version of the table's columns: 1 = RiskScoreMA50, 2 = + RiskScoreMA100.",
    "code_version": "Dagster code version of loan_risk_features that wrote the row.",
}


def _feature_description(column: str, upto: int) -> str:
    history = "; ".join(
        f"v{v.version}: {v.features[column]}"
        for v in FEATURE_VERSIONS.values()
        if v.version <= upto and column in v.features
    )
    current = FEATURE_VERSIONS[upto].features[column]
    return f"{LOGIC_TEXT[current]}. Versions: {history}."


def feature_table_schema(version: int) -> dg.TableSchema:
    kinds = {
        "seq": "int64",
        "application_date": "date",
        "risk_score": "Int64",
        "risk_score_missing": "bool",
        "risk_scores_seen": "int64",
        "feature_version": "int64",
        "schema_version": "int64",
        "code_version": "str",
    }
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c,
                kinds.get(c, "float64"),
                description=COLUMN_DESCRIPTIONS.get(c) or _feature_description(c, version),
            )
            for c in columns_of(version)
        ]
    )


class FeatureRunConfig(dg.Config):
    """`recompute`: rebuild the active version from the first application (a backfill), replacing only
    that version's rows."""

    recompute: bool = False


def registry(lake: LakeResource, upto: int) -> pd.DataFrame:
    """One row per feature and version: logic, columns, when it took effect, the code version, and what the
    lake holds for it."""
    stats = version_stats(lake)
    rows = []
    for v in FEATURE_VERSIONS.values():
        if v.version > upto:
            continue
        stored = stats.get(v.version, {})
        for column, logic in v.features.items():
            rows.append(
                {
                    "feature": column,
                    "feature_version": v.version,
                    "schema_version": v.schema_version,
                    "logic": logic,
                    "logic_description": LOGIC_TEXT[logic],
                    "columns": ", ".join(columns_of(v.version)),
                    "effective_from": v.effective_from,
                    "change": v.change,
                    "code_version": v.code_version,
                    "status": "active" if v.version == upto else "superseded",
                    "rows_stored": stored.get("rows", 0),
                    "first_computed_at": stored.get("first_computed_at"),
                    "first_seq": stored.get("first_seq"),
                }
            )
    return pd.DataFrame(rows).astype({"rows_stored": "int64", "first_seq": "Int64", "first_computed_at": "string"})


def active_feature_version() -> int:
    """The feature version this deployment computes: LOAN_FEATURE_VERSION, else the latest one. Read when
    the definitions load, because the version is the asset's code version (what the UI compares)."""
    setting = os.environ.get(FEATURE_VERSION_ENV) or str(max(FEATURE_VERSIONS))
    if not setting.isdigit() or int(setting) not in FEATURE_VERSIONS:
        raise ValueError(f"{FEATURE_VERSION_ENV}={setting!r}: not a feature version; known: {sorted(FEATURE_VERSIONS)}")
    return int(setting)


def build_feature_assets(version_number: int) -> list[dg.AssetsDefinition]:
    """The feature table and registry as of feature version `version_number` (the code deployed)."""
    version = FEATURE_VERSIONS[version_number]

    @dg.asset(
        name="loan_risk_features",
        deps=["loan_applications"],
        group_name="loans_features",
        kinds={"deltalake", "duckdb"},
        code_version=version.code_version,
        description=(
            f"Risk-score features per loan application, version {version.version} (schema version "
            f"{version.schema_version}): {', '.join(f'{c} = {lg}' for c, lg in version.features.items())}. "
            "Point in time: each row's features use only applications that arrived before it. Every version "
            "stays readable beside the others (its own partition of the table, with exactly its columns): "
            "DuckDB views loan_risk_features_v<N> and "
            "loan_training_set_v<N>, Python assets.loans.store.training_set(lake, N, start, end). The version "
            f"computed is the setting {FEATURE_VERSION_ENV}."
        ),
        metadata={
            "dagster/column_schema": feature_table_schema(version.version),
            "feature_version": version.version,
            "schema_version": version.schema_version,
            "table": FEATURES_DATASET,
        },
    )
    def loan_risk_features(
        context: dg.AssetExecutionContext,
        config: FeatureRunConfig,
        lake: LakeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        update = update_features(lake, version, recompute=config.recompute)
        with warehouse.connect() as conn:
            views = publish_views(lake, conn)
        context.log.info(f"v{update.version}: {update.rows} rows from seq {update.first_seq} ({update.started})")
        stored = version_stats(lake).get(version.version, {})
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stored.get("rows", 0),
                "rows_written": update.rows,
                "first_seq_written": update.first_seq,
                "how": update.started,
                "feature_version": version.version,
                "schema_version": version.schema_version,
                "views": dg.MetadataValue.json(views),
            }
        )

    @dg.asset(
        name="loan_feature_registry",
        deps=["loan_risk_features"],
        group_name="loans_features",
        kinds={"deltalake", "duckdb"},
        code_version=f"registry-{version.code_version}",
        description="The feature registry: per feature and version, its logic, its columns, when it took "
        "effect, the code version that produced it and the rows stored. DuckDB table loan_feature_registry.",
    )
    def loan_feature_registry(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        table = registry(lake, version.version)
        write_table(lake, REGISTRY_DATASET, pa.Table.from_pandas(table, preserve_index=False), replace_where="true")
        with warehouse.connect() as conn:
            conn.register("registry", table)
            conn.execute("CREATE OR REPLACE TABLE loan_feature_registry AS SELECT * FROM registry")
        shown = table[
            [
                "feature",
                "feature_version",
                "schema_version",
                "logic",
                "effective_from",
                "code_version",
                "status",
                "rows_stored",
            ]
        ]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(table),
                "registry": dg.MetadataValue.md(shown.to_markdown(index=False)),
                "active_version": version.version,
            }
        )

    return [loan_risk_features, loan_feature_registry]


loan_risk_features, loan_feature_registry = build_feature_assets(active_feature_version())
