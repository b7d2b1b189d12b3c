"""Backfill scaling: 10 and then 30 daily partitions of 200,000 events each, rebuilt from bronze
(silver, quarantine, silver checks and gold) in one single-run backfill, as `make backfill` runs it.

    python -m bench.bench_clickstream_backfill [--events-per-day 200000] [--days 10 30]
"""

import argparse
import datetime as dt
import tempfile
import time

import dagster as dg
import pyarrow as pa

from assets.clickstream import bronze, gold, silver
from assets.clickstream.names import BRONZE_TABLE
from assets.clickstream.parsing import parse_messages
from assets.streaming import BRONZE_SCHEMA, MESSAGE_SCHEMA
from bench.common import peak_rss_mib, pin_to_one_core, report
from demo.clickstream import generate
from resources import KafkaResource, LakeResource, WarehouseResource

FIRST_DAY = dt.date(2026, 1, 1)


def land_bronze(lake: LakeResource, days: int, per_day: int) -> None:
    """Bronze for `days` dates, as the ingest would have appended it (one commit per date here)."""
    offset = 0
    for day in range(days):
        start = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=day), dt.time(0, 5), dt.UTC)
        messages = list(generate(per_day, seed=day, start=start, span=dt.timedelta(hours=23), late_rate=0))
        received = start + dt.timedelta(hours=23, minutes=30)
        table = pa.table(
            {
                "topic": ["clickstream.events"] * per_day,
                "partition": pa.array([0] * per_day, pa.int32()),
                "offset": pa.array(range(offset, offset + per_day), pa.int64()),
                "kafka_timestamp": pa.array([received] * per_day, pa.timestamp("ms", tz="UTC")),
                "key": pa.array([k for k, _ in messages], pa.binary()),
                "payload": pa.array([v for _, v in messages], pa.binary()),
            },
            schema=MESSAGE_SCHEMA,
        )
        rows = parse_messages(table).select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)
        lake.append(BRONZE_TABLE, rows, tokens={"clickstream.events/0": offset + per_day - 1})
        offset += per_day


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events-per-day", type=int, default=200_000)
    parser.add_argument("--days", type=int, nargs="+", default=[10, 30])
    args = parser.parse_args()
    assets = dg.load_assets_from_modules([bronze, silver, gold])
    checks = dg.load_asset_checks_from_modules([bronze, silver, gold])
    rows = []
    for days in args.days:
        with tempfile.TemporaryDirectory(prefix="bench-backfill-") as root:
            lake = LakeResource(root=f"{root}/lake")
            land_bronze(lake, days, args.events_per_day)
            pin_to_one_core()
            last = (FIRST_DAY + dt.timedelta(days=days - 1)).isoformat()
            resources = {
                "lake": lake,
                "warehouse": WarehouseResource(database=f"{root}/warehouse.duckdb"),
                "kafka": KafkaResource(),
            }
            started = time.perf_counter()
            with dg.DagsterInstance.ephemeral() as instance:
                result = dg.materialize(
                    [*assets, *checks],
                    selection=dg.AssetSelection.groups("clickstream_silver", "clickstream_gold"),
                    tags={
                        "dagster/asset_partition_range_start": FIRST_DAY.isoformat(),
                        "dagster/asset_partition_range_end": last,
                    },
                    resources=resources,
                    instance=instance,
                    raise_on_error=True,
                )
            seconds = time.perf_counter() - started
            assert result.success
            events = days * args.events_per_day
            rows.append(
                {
                    "partitions": days,
                    "events": events,
                    "seconds": seconds,
                    "seconds_per_partition": seconds / days,
                    "events_per_s": events / seconds,
                    "peak_rss_mib": peak_rss_mib(),
                }
            )
    if len(rows) >= 2:
        growth = (rows[-1]["seconds"] / rows[0]["seconds"]) / (rows[-1]["partitions"] / rows[0]["partitions"])
        rows[-1]["cost_growth_vs_linear"] = growth
    report("clickstream_backfill", {"events_per_day": args.events_per_day, "days": args.days}, rows)


if __name__ == "__main__":
    main()
