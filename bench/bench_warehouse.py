"""Benchmark of the commerce warehouse: a full build (every processing date in one single-run
backfill: extract, stage, dbt star schema and marts) and one incremental day, on generated data in
a real PostgreSQL server and landing folder. Each phase runs in its own process, so its peak memory
(including dbt's subprocesses) is its own.

    python -m bench.bench_warehouse --orders 1000000 --days 30
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
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_phase(phase: str, args: argparse.Namespace, env: dict) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_warehouse",
            "--phase",
            phase,
            "--orders",
            str(args.orders),
            "--days",
            str(args.days),
        ],
        env=env,
        cwd=ROOT,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"phase {phase} failed")
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def phase(name: str, args: argparse.Namespace) -> None:
    """One phase, inside its own process."""
    import dagster as dg
    import psycopg2
    from dagster_dbt import DbtCliResource

    from assets.warehouse import dbt as warehouse_dbt
    from assets.warehouse import raw, staging
    from demo import warehouse as generator
    from resources import LakeResource, LandingResource, PostgresResource, PseudonymizerResource, WarehouseResource

    start = date(2026, 1, 1)
    last = start + timedelta(days=args.days)  # the incremental day
    pg = PostgresResource(port=int(os.environ["POSTGRES_PORT"]), password=os.environ["POSTGRES_PASSWORD"])
    if name in ("load", "load_day"):
        versions = generator.generate(args.orders, start.isoformat(), args.days + 1)
        lo, hi = (start, last) if name == "load" else (last, last + timedelta(days=1))
        with pg.connect() as conn:
            if name == "load":
                conn.cursor().execute(generator.source_ddl())
            counts = generator.publish(versions, conn, os.environ["LANDING_ROOT"], lo.isoformat(), hi.isoformat())
        Path(os.environ["BENCH_OUT"], f"{name}.json").write_text(json.dumps(counts))
        return
    resources = {
        "postgres": pg,
        "lake": LakeResource(root=os.environ["LAKE_ROOT"]),
        "landing": LandingResource(root=os.environ["LANDING_ROOT"]),
        "warehouse": WarehouseResource(database=os.environ["DUCKDB_DATABASE"]),
        "pseudonymizer": PseudonymizerResource(key="bench-key"),
        "dbt": DbtCliResource(
            project_dir=warehouse_dbt.warehouse_dbt_project, dbt_executable=warehouse_dbt.DBT_EXECUTABLE
        ),
    }
    assets = [
        *raw.raw_assets,
        *staging.staging_assets,
        warehouse_dbt.commerce_dbt_facts,
        warehouse_dbt.commerce_dbt_models,
    ]
    if name == "full":
        tags = {
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": (last - timedelta(days=1)).isoformat(),
        }
        kwargs = {"tags": tags}
    else:
        kwargs = {"partition_key": last.isoformat()}
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(assets, resources=resources, instance=instance, **kwargs)
    assert result.success
    del psycopg2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--phase")
    args = parser.parse_args()
    if args.phase:
        return phase(args.phase, args)

    from tests.conftest import free_port

    work = Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
    os.chmod(work, 0o755)
    env = {
        **os.environ,
        "POSTGRES_PORT": str(free_port()),
        "POSTGRES_STATE_DIR": str(work / "pg"),
        "POSTGRES_PASSWORD": "bench",
        "POSTGRES_USER": "commerce",
        "POSTGRES_DB": "commerce",
        "LAKE_ROOT": str(work / "lake"),
        "LANDING_ROOT": str(work / "input"),
        "DUCKDB_DATABASE": str(work / "warehouse.duckdb"),
        "BENCH_OUT": str(work),
    }
    (work / "pg").mkdir()
    os.chmod(work / "pg", 0o755)
    subprocess.run([ROOT / "platform" / "postgres.sh", "start"], env=env, check=True)
    try:
        phases = {p: run_phase(p, args, env) for p in ("load", "full", "load_day", "incremental_day")}
    finally:
        subprocess.run([ROOT / "platform" / "postgres.sh", "stop"], env=env)
    counts = json.loads((work / "load.json").read_text())
    lake_mib = sum(f.stat().st_size for f in (work / "lake").rglob("*.parquet")) / 2**20
    report = {
        "benchmark": "commerce warehouse: full build and one incremental day",
        "machine": {
            "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": host.python_version(),
        },
        "input": {
            "orders": args.orders,
            "days": args.days,
            "source_row_versions_loaded": counts,
            "lake_parquet_mib": round(lake_mib, 1),
        },
        "phases": phases,
    }
    from tabulate import tabulate

    print(
        tabulate(
            [(p, v["seconds"], v["peak_rss_mib"]) for p, v in phases.items()],
            headers=["phase", "seconds", "peak RSS MiB"],
        )
    )
    out = ROOT / "bench" / "results" / "warehouse.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"saved {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
