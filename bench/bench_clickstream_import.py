"""History import: a year of clickstream events from NDJSON archives (one file per month, the stream's own
message shape, 1% duplicates and 0.5% irregular messages) through `clickstream_history_import` in one run:
bronze, silver, quarantine, duplicates, gold and every date's checks. Reported per size: wall time, events/s,
dates, peak RSS; so how the cost grows with the archive is visible.

    python -m bench.bench_clickstream_import [--events 1000000 10000000] [--year 2025]
"""

import argparse
import datetime as dt
import os
import tempfile
import time

import dagster as dg

from assets.clickstream import bronze, gold, history, silver
from bench.common import peak_rss_mib, report
from demo.clickstream import generate
from resources import KafkaResource, LakeResource, LandingResource, WarehouseResource

MODULES = [bronze, silver, gold, history]


def land_archive(landing: LandingResource, events: int, year: int) -> int:
    """Twelve monthly NDJSON files of `events` in all; returns their bytes."""
    size = 0
    for month in range(1, 13):
        start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
        count = events // 12 + (events % 12 if month == 12 else 0)
        lines = b"\n".join(
            v
            for _, v in generate(
                count, seed=month, start=start, span=end - start - dt.timedelta(minutes=1), late_rate=0
            )
        )
        landing.put(lines + b"\n", f"archive/{year}-{month:02d}.ndjson")
        size += len(lines) + 1
    return size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--year", type=int, default=2025)
    args = parser.parse_args()
    rows = []
    for events in args.events:
        with tempfile.TemporaryDirectory(prefix="bench-import-") as root:
            landing = LandingResource(root=f"{root}/input")
            print(f"[import] writing {events:,} events as 12 monthly NDJSON files", flush=True)
            size = land_archive(landing, events, args.year)
            resources = {
                "lake": LakeResource(root=f"{root}/lake"),
                "landing": landing,
                "kafka": KafkaResource(),  # required by the stream's assets in the graph; never connected
                "warehouse": WarehouseResource(database=f"{root}/warehouse.duckdb"),
            }
            print(f"[import] importing {size / 2**20:,.0f} MiB in one run", flush=True)
            started = time.perf_counter()
            with dg.DagsterInstance.ephemeral() as instance:
                result = dg.materialize(
                    [*dg.load_assets_from_modules(MODULES), *dg.load_asset_checks_from_modules(MODULES)],
                    selection=["clickstream_history_import"],
                    run_config={"ops": {"clickstream_history_import": {"config": {"folder": "archive"}}}},
                    resources=resources,
                    instance=instance,
                )
            seconds = time.perf_counter() - started
            assert result.success
            (materialization,) = [
                m
                for m in result.asset_materializations_for_node("clickstream_history_import")
                if m.asset_key == dg.AssetKey("clickstream_history_import")
            ]
            rows.append(
                {
                    "events": events,
                    "archive_mib": round(size / 2**20),
                    "dates": materialization.metadata["dates"].value,
                    "records_imported": materialization.metadata["dagster/row_count"].value,
                    "seconds": seconds,
                    "events_per_s": events / seconds,
                    "peak_rss_mib": peak_rss_mib(),
                    "load_average": os.getloadavg()[0],
                }
            )
            print(f"[import] {rows[-1]}", flush=True)
    report("clickstream_history_import", {"year": args.year, "files": 12}, rows)


if __name__ == "__main__":
    main()
