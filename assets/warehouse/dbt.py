"""The star schema and KPI marts, built by dbt (dbt/, dbt-duckdb) into the warehouse DuckDB file.

Every dbt model is an asset and every dbt test an asset check. Facts are partitioned by processing
date like raw and staging (a run replaces what changed on its dates); dimensions (customers' SCD2
history built from the change times in the data) and the KPI marts are rebuilt from all dates. Each
KPI mart attaches a rendered table, its headline figures and a chart to its materialization
(assets/warehouse/kpis.py)."""

import json
import shutil
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from assets.warehouse.kpis import kpi_metadata
from assets.warehouse.names import warehouse_daily_partitions
from resources import LakeResource, WarehouseResource

# dagster-dbt runs the `dbt` on PATH; fall back to the one installed beside this interpreter.
DBT_EXECUTABLE = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")

warehouse_dbt_project = DbtProject(project_dir=Path(__file__).resolve().parents[2] / "dbt")
# The manifest is built once, at install time (`make dbt-manifest`, part of `make install`), and rebuilt by
# make only when the dbt project changes: importing the definitions (every run worker does) never runs dbt.
_DBT_SOURCES = (".sql", ".yml", ".yaml", ".csv")


def _stale_manifest_sources(project: DbtProject) -> list[str]:
    """dbt files changed after the manifest was written (a few stat calls; dbt's own output is not walked)."""
    built = project.manifest_path.stat().st_mtime
    tops = [p for p in project.project_dir.iterdir() if p.name not in ("target", "logs", "dbt_packages")]
    files = [p for top in tops for p in ([top] if top.is_file() else top.rglob("*"))]
    return [
        str(p.relative_to(project.project_dir))
        for p in files
        if p.suffix in _DBT_SOURCES and p.is_file() and p.stat().st_mtime > built
    ]


if not warehouse_dbt_project.manifest_path.exists():
    raise FileNotFoundError(
        f"The dbt manifest {warehouse_dbt_project.manifest_path} is missing. Build it once with `make dbt-manifest` "
        "(part of `make install`, so `make demo` and `make test` do it): the definitions never run dbt at import."
    )
if _stale := _stale_manifest_sources(warehouse_dbt_project):
    warnings.warn(
        f"dbt files changed after the manifest was built ({', '.join(sorted(_stale)[:5])}): run `make dbt-manifest` "
        "and reload the code location to see the change.",
        stacklevel=1,
    )
MARTS_SCHEMA = "marts"
# dbt holds the warehouse file for a whole command: automation may start the facts and the dimensions in two
# runs at once, and the pool (one op at a time, platform/dagster.yaml) makes the second wait.
DBT_POOL = "commerce_dbt"
PREVIEW_ROWS = 20


class CommerceTranslator(DagsterDbtTranslator):
    """Models keep their plain names as asset keys; groups follow the dbt folders; the catalog shows the
    business description of dbt/models/schema.yml instead of the raw SQL."""

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        props = dbt_resource_props
        return props.get("description") or f"dbt {props['resource_type']} {props['name']}"

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "snapshot"):
            return dg.AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return "commerce_marts" if "marts" in fqn else "commerce_core"


@dbt_assets(
    manifest=warehouse_dbt_project.manifest_path,
    select="tag:partitioned",
    name="commerce_dbt_facts",
    partitions_def=warehouse_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    dagster_dbt_translator=CommerceTranslator(),
    project=warehouse_dbt_project,
    pool=DBT_POOL,
)
def commerce_dbt_facts(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """fact_orders and fact_order_positions for the processing dates of the run."""
    window = context.partition_time_window
    dates = {"min_date": window.start.date().isoformat(), "max_date": window.end.date().isoformat()}
    yield from dbt.cli(["build", "--vars", json.dumps(dates)], context=context).stream()


@dbt_assets(
    manifest=warehouse_dbt_project.manifest_path,
    exclude="tag:partitioned",
    name="commerce_dbt_models",
    dagster_dbt_translator=CommerceTranslator(),
    project=warehouse_dbt_project,
    pool=DBT_POOL,
)
def commerce_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource, lake: LakeResource
):
    """Dimensions (customers with SCD2 history from the change times in the data), dim_date and the KPI marts."""
    marts = []
    for event in dbt.cli(["build"], context=context).stream():
        if isinstance(event, dg.Output) and event.output_name.startswith("kpi_"):
            marts.append(event)  # rendered once dbt has released the database file
        else:
            yield event
    with warehouse.connect() as conn:
        for event in marts:
            table = f"{MARTS_SCHEMA}.{event.output_name}"
            preview = conn.execute(f"SELECT * FROM {table} ORDER BY ALL DESC LIMIT {PREVIEW_ROWS}").df()
            rows = (conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,))[0]
            yield event.with_metadata(
                {
                    **event.metadata,
                    "dagster/row_count": rows,
                    "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
                    "query": dg.MetadataValue.text(f"SELECT * FROM {table}"),
                    **kpi_metadata(conn, lake, event.output_name),
                }
            )
