"""Import a commerce history in one run:

    python -m sensors.commerce_import <folder>

with the settings of platform/env.sh (LANDING_ROOT, LAKE_ROOT, DUCKDB_DATABASE, DAGSTER_HOME, and
COMMERCE_PARTITIONS_START no later than the history's first date). The CSV files per entity under
`$LANDING_ROOT/<folder>/` are split by processing date into the landing path `<entity>/<YYYY-MM-DD>/`
(assets/warehouse/history.py), then `commerce_import_job` runs once over the whole range on the Dagster
instance of DAGSTER_HOME (the UI shows the run, every date's materializations and checks). Prints a JSON
summary; exits 1 if the run or any check failed."""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import dagster as dg

from assets.warehouse.history import land_history

ROOT = Path(__file__).resolve().parent.parent


def _definitions() -> dg.Definitions:
    """The code location as a deployment loads it (its resources configured from the environment)."""
    spec = importlib.util.spec_from_file_location("platform_definitions", ROOT / "platform" / "definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


def import_history(folder: str, instance: dg.DagsterInstance) -> dict:
    """Land the history under `folder` and run commerce_import_job over its dates: the summary."""
    defs = _definitions()
    landing = (defs.resources or {})["landing"].process_config_and_initialize()  # LANDING_ROOT from the environment
    first, last, rows = land_history(landing, folder)
    result = defs.resolve_job_def("commerce_import_job").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )
    checks = result.get_asset_check_evaluations()
    failed = sorted({f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed})
    return {
        "run_id": result.run_id,
        "success": result.success,
        "first_date": first,
        "last_date": last,
        "rows_landed": rows,
        "check_evaluations": len(checks),
        "failed_checks": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Import a commerce history (CSV files per entity) in one run.")
    parser.add_argument("folder", help="folder under LANDING_ROOT holding <entity>.csv or <entity>/*.csv")
    args = parser.parse_args()
    with dg.DagsterInstance.get() as instance:
        summary = import_history(args.folder, instance)
    print(json.dumps(summary, indent=2))
    sys.exit(0 if summary["success"] and not summary["failed_checks"] else 1)


if __name__ == "__main__":
    main()
