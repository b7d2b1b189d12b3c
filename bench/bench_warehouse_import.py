"""Benchmark of the commerce history import: a year of N orders (with their customers, products, shops
and positions) as CSV files per entity, through `sensors.commerce_import` in one run: split into the
landing path by processing date, then raw, staging, dbt facts, dimensions and marts over 365 dates.
The import runs in its own process (the partitions must start with the history) on an in-memory
Dagster instance, so the figure is the pipeline's, not the event log's fsyncs.

    python -m bench.bench_warehouse_import --orders 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
START, END = "2025-01-01", "2026-01-01"
IMPORT = (
    "import json, time, dagster as dg; from sensors.commerce_import import import_history; t = time.perf_counter(); "
    "s = import_history('history', dg.DagsterInstance.ephemeral()); s['import_seconds'] = time.perf_counter() - t; "
    "print(json.dumps(s))"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--label", default="", help="suffix of the results file, e.g. _tiny")
    args = parser.parse_args()
    from demo import warehouse as generator

    work = Path(tempfile.mkdtemp(prefix="bench-warehouse-import-"))
    versions = generator.generate(args.orders, START, 365)
    folder = work / "input" / "history"
    folder.mkdir(parents=True)
    rows = {}
    for name, frame in versions.items():
        frame = frame[frame["updated_at"] < pd.Timestamp(END, tz="UTC")]
        frame.to_csv(folder / f"{name}.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
        rows[name] = len(frame)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("COMMERCE_", "DAGSTER_"))},
        "LAKE_ROOT": str(work / "lake"),
        "LANDING_ROOT": str(work / "input"),
        "DUCKDB_DATABASE": str(work / "warehouse.duckdb"),
        "DAGSTER_HOME": str(work / "dagster"),
        "COMMERCE_PARTITIONS_START": START,
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["bash", "-c", f'source platform/env.sh && exec {sys.executable} -c "{IMPORT}"'],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit("the import failed")
    summary = json.loads(out.strip().splitlines()[-1])
    orders = versions["orders"]["order_id"].nunique()
    report = {
        "benchmark": "commerce history import: a year of CSV exports in one run",
        "machine": {
            "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": host.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 1),
        },
        "input": {"orders": orders, "dates": 365, "row_versions": rows},
        "wall_seconds_with_process_start": round(wall, 1),
        "import_seconds": round(summary["import_seconds"], 1),
        "orders_per_second": round(orders / summary["import_seconds"]),
        "row_versions_per_second": round(sum(rows.values()) / summary["import_seconds"]),
        "dates": f"{summary['first_date']} .. {summary['last_date']}",
        "failed_checks": summary["failed_checks"],
    }
    print(json.dumps(report, indent=2))
    out_file = ROOT / "bench" / "results" / f"warehouse_import{args.label}.json"
    out_file.parent.mkdir(exist_ok=True)
    out_file.write_text(json.dumps(report, indent=2))
    print(f"saved {out_file}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
