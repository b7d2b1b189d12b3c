"""The cost of one streaming micro-batch as its date fills up: 5,000 events through the ingest run's
step (Kafka -> bronze -> quarantine, duplicates, gold's aggregate state, silver, committed; gold published
every 5 s) into a date whose tables already hold 0, 1 million and 5 million rows. A batch must cost the
same whatever the date holds; the first batch into the date also loads the date's aggregate state (once
per run), reported apart.

    python -m bench.bench_clickstream_full_date [--sizes 0,1000000,5000000] [--batch 5000] [--batches 5]
"""

import argparse
import datetime as dt
import json
import os
import tempfile
import time

import numpy as np

from assets.clickstream.aggregates import state_of
from assets.clickstream.bronze import CLICKSTREAM_STREAM
from assets.clickstream.names import AGGREGATE_STATE_TABLE, BRONZE_TABLE, SILVER_TABLE, TOPIC
from assets.clickstream.silver import SILVER_ARROW_SCHEMA, SilverWriter
from assets.streaming import BRONZE_SCHEMA, ingest_batch
from bench.common import kafka_broker, peak_rss_mib, pin_to_one_core, report
from demo.clickstream import event
from resources import KafkaResource, LakeResource
from resources.warehouse import engine

CHUNK = 500_000


def prefill(lake: LakeResource, rows: int, day: dt.date, until: dt.datetime) -> None:
    """`rows` events of `day` (before `until`) in bronze and silver, appended in chunks as a day of
    streaming would leave them (after the daily compaction, one large file per chunk)."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    span_us = int((until - start).total_seconds() * 1e6)
    for first in range(0, rows, CHUNK):
        n = min(CHUNK, rows - first)
        with engine() as conn:
            silver = conn.execute(
                f"""SELECT TIMESTAMPTZ '{start.isoformat()}' + to_microseconds((i * {span_us} // {rows})::BIGINT)
                        AS event_datetime, DATE '{day}' AS event_date,
                    ['view', 'click', 'purchase'][1 + i % 3] AS event_name, 'user_' || (i % 50000) AS user_id,
                    'web' AS platform, 'Product ' || (i % 500) AS product_name, 'SKU-' || (i % 500) AS "SKU",
                    md5(i::VARCHAR) AS event_id
                FROM range({first}, {first + n}) t(i)"""
            ).to_arrow_table()
            bronze = conn.execute(
                f"""SELECT 'prefill' AS topic, 0::INT AS partition, i AS "offset",
                    TIMESTAMPTZ '{start.isoformat()}' AS kafka_timestamp, NULL::BLOB AS key,
                    encode(repeat('x', 250)) AS payload, DATE '{day}' AS event_date
                FROM range({first}, {first + n}) t(i)"""
            ).to_arrow_table()
        lake.append(SILVER_TABLE, silver.cast(SILVER_ARROW_SCHEMA))
        lake.append(BRONZE_TABLE, bronze.cast(BRONZE_SCHEMA))
        # gold's aggregate state of those rows: 50,000 users and 500 products per event name, 25M pairs at most
        lake.append(AGGREGATE_STATE_TABLE, state_of(silver.cast(SILVER_ARROW_SCHEMA)), change_feed=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0,1000000,5000000")
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC)
    day = now.date() if now.hour >= 2 else now.date() - dt.timedelta(days=1)
    batch_at = dt.datetime.combine(day, dt.time(23, 59), dt.UTC) if day < now.date() else now
    rows_out = []
    with kafka_broker() as bootstrap:
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory(prefix="bench-lake-") as root:
                lake = LakeResource(root=root)
                print(f"prefilling {size:,} rows of {day}", flush=True)
                prefill(lake, size, day, batch_at - dt.timedelta(minutes=40))
                kafka = KafkaResource(bootstrap_servers=bootstrap, namespace=f"full{size}x{int(time.time())}.")
                producer_values = [
                    json.dumps(
                        event(batch_at - dt.timedelta(seconds=60 - i * 1e-4), "view", f"u{i}", "web", ("SKU-1", "P"))
                    ).encode()
                    for i in range(args.batch * args.batches)
                ]
                kafka.send_all(TOPIC, ((f"u{i}".encode(), v) for i, v in enumerate(producer_values)), partitions=3)
                pin_to_one_core()
                started = time.perf_counter()
                writer = SilverWriter.open(lake)
                start_s = time.perf_counter() - started
                costs, sizes = [], []
                for _ in range(args.batches):
                    started = time.perf_counter()
                    batch, _ = ingest_batch(
                        kafka, lake, CLICKSTREAM_STREAM, writer, max_records_per_partition=args.batch // 3 + 1
                    )
                    costs.append(time.perf_counter() - started)
                    assert batch is not None
                    sizes.append(batch.records)
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
                held = lake.count_by_date(SILVER_TABLE, [day.isoformat()])[day.isoformat()]
                rows_out.append(
                    {
                        "date_rows_before": size,
                        "date_rows_after": held,
                        "run_start_s": start_s,
                        "batch_events_p50": float(np.median(sizes)),
                        "first_batch_s": costs[0],
                        "batch_p50_s": float(np.median(costs[1:])),
                        "batch_max_s": max(costs[1:]),
                        "gold_keys_held": sum(d.size for d in writer.gold.dates.values()),
                        "ids_held": writer.seen.size,
                        "peak_rss_mib": peak_rss_mib(),
                    }
                )
                print(rows_out[-1], flush=True)
    base = rows_out[0]["batch_p50_s"]
    for row in rows_out:
        row["ratio_to_empty_date"] = row["batch_p50_s"] / base
    report(
        "clickstream_full_date",
        {"batch_events": args.batch, "batches_per_size": args.batches, "topic_partitions": 3, "cores": 1},
        rows_out,
    )


if __name__ == "__main__":
    main()
