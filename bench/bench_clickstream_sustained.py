"""A sustained clickstream stream at the business's rate, through the ingest run's own step.

A producer process sends events of about 250 B at `--rate` events/s for `--minutes` into a 3-partition
topic (each event stamped with the time it is sent; 1% duplicates, 0.5% irregular).
Meanwhile this process runs what a following ingest run runs, in process (no `dagster dev`): the
streaming package's micro-batch (`ingest_batch`) with the clickstream's silver writer (silver, quarantine,
duplicates, gold's aggregate state, gold published every 5 s), one batch after another, into a date that
grows all along. Per minute it reports: events/s achieved, consumer lag, per-batch cost p50/p95 with
the events per batch and the cost per event, produce -> silver freshness p50/p95/p99 (Kafka's create
time of each event to the commit of its batch), the event ids held for the duplicate check, the keys
held for gold, and peak RSS.

    python -m bench.bench_clickstream_sustained [--rate 20000] [--minutes 10] [--window-minutes 30]
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow.compute as pc

from assets.clickstream.bronze import CLICKSTREAM_STREAM
from assets.clickstream.names import CONSUMER_GROUP, TOPIC
from assets.clickstream.silver import SilverWriter
from assets.streaming import ingest_batch
from bench.common import ROOT, kafka_broker, peak_rss_mib, report
from demo.clickstream import generate
from resources import KafkaResource, LakeResource

PLACEHOLDER = b"2000-01-01T00:00:00.000000Z"


def produce(bootstrap: str, topic: str, rate: float, seconds: float) -> None:
    """The producer process: templates from the generator, each sent with the current time (unique to
    the microsecond) in place of its timestamp, paced in 20 ms slices."""
    templates = []
    start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    for _, value in generate(50_000, seed=3, start=start, span=dt.timedelta(0), duplicate_rate=0, late_rate=0):
        templates.append(value.replace(b'"2000-01-01T00:00:00Z"', b'"' + PLACEHOLDER + b'"'))
    kafka = KafkaResource(bootstrap_servers=bootstrap)
    producer = kafka.producer(linger_ms=10, acks=1, batch_size=512 * 1024)
    started, sent, i, value = time.monotonic(), 0, 0, b""
    stamp_us = time.time_ns() // 1000
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        for _ in range(due):
            stamp_us = max(stamp_us + 1, time.time_ns() // 1000)
            stamp = dt.datetime.fromtimestamp(stamp_us / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
            if i % 100 == 99:  # 1%: a client's retry re-sends the previous event as it was
                producer.send(topic, value=value)
            else:
                value = templates[i % len(templates)].replace(PLACEHOLDER, stamp)
                producer.send(topic, value=value)
            i += 1
        sent += due
        time.sleep(0.02)
    producer.flush()
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - started}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--window-minutes", type=int, default=30, help="event ids held for the duplicate check")
    parser.add_argument("--label", default="", help="suffix of the saved result's name")
    parser.add_argument("--max-batch", type=int, default=100_000, help="records per Kafka partition per batch")
    parser.add_argument("--produce", nargs=2, metavar=("BOOTSTRAP", "TOPIC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        produce(*args.produce, args.rate, args.minutes * 60)
        return
    with kafka_broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-lake-") as root:
        kafka = KafkaResource(bootstrap_servers=bootstrap, namespace=f"sustained{int(time.time())}.")
        topic, group = kafka.topic(TOPIC), kafka.group(CONSUMER_GROUP)
        kafka.ensure_topic(topic, 3)
        lake = LakeResource(root=root)
        producer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_clickstream_sustained",
                "--rate",
                str(args.rate),
                "--minutes",
                str(args.minutes),
                "--produce",
                bootstrap,
                topic,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        writer = SilverWriter.open(lake, args.window_minutes)
        started = time.monotonic()
        minutes: dict[int, dict] = {}
        idle_since = None
        while True:
            t0 = time.monotonic()
            batch, _ = ingest_batch(kafka, lake, CLICKSTREAM_STREAM, writer, max_records_per_partition=args.max_batch)
            done_ms = time.time_ns() / 1e6
            cost = time.monotonic() - t0
            minute = int((t0 - started) // 60)
            if minute not in minutes and minute - 1 in minutes:  # progress: the minute that just ended
                done = minutes[minute - 1]
                print(
                    f"minute {minute}: {done['events'] / 60:,.0f} events/s, lag {max(done['lag'] or [0]):,}, "
                    f"{done['held']:,} ids held",
                    flush=True,
                )
            stats = minutes.setdefault(
                minute, {"events": 0, "costs": [], "sizes": [], "fresh": [], "lag": [], "held": 0, "gold_keys": 0}
            )
            if batch is None:
                if producer.poll() is not None:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 5:
                        break
                time.sleep(0.05)
                continue
            stats["events"] += batch.records
            stats["costs"].append(cost)
            stats["sizes"].append(batch.records)
            created = pc.cast(batch.rows["kafka_timestamp"], "int64").to_numpy()
            stats["fresh"].append(done_ms - created[:: max(1, len(created) // 200)])  # a sample per batch
            pending = kafka.pending_offsets(topic, group)
            stats["lag"].append(sum(end - start for start, end in pending.values()))
            stats["held"] = writer.seen.size
            stats["gold_keys"] = sum(d.size for d in writer.gold.dates.values())
            stats["rss"] = peak_rss_mib()
        sent = json.loads((producer.stdout.read() if producer.stdout else "").strip().splitlines()[-1])
        rows = []
        for minute, s in sorted(minutes.items()):
            if not s["costs"]:
                continue
            fresh = np.concatenate(s["fresh"]) / 1000
            rows.append(
                {
                    "minute": minute + 1,
                    "events_per_s": s["events"] / 60,
                    "batches": len(s["costs"]),
                    "lag_max": max(s["lag"]),
                    "batch_p50_s": float(np.percentile(s["costs"], 50)),
                    "batch_p95_s": float(np.percentile(s["costs"], 95)),
                    "events_per_batch_p50": float(np.percentile(s["sizes"], 50)),
                    "us_per_event": 1e6 * sum(s["costs"]) / max(1, sum(s["sizes"])),
                    "fresh_p50_s": float(np.percentile(fresh, 50)),
                    "fresh_p95_s": float(np.percentile(fresh, 95)),
                    "fresh_p99_s": float(np.percentile(fresh, 99)),
                    "ids_held": s["held"],
                    "gold_keys_held": s["gold_keys"],
                    "peak_rss_mib": s.get("rss", 0.0),
                }
            )
        total = sum(s["events"] for s in minutes.values())
        silver = sum(lake.count_by_date("silver/clickstream_events").values())
        report(
            f"clickstream_sustained{args.label}",
            {
                "target_rate": args.rate,
                "minutes": args.minutes,
                "dedup_window_minutes": args.window_minutes,
                "events_sent": sent["sent"],
                "events_ingested": total,
                "silver_rows": silver,
                "mode": "the ingest run's step in process (ingest_batch + SilverWriter with live gold), no dagster dev",
                "topic_partitions": 3,
                "load_average_at_end": os.getloadavg(),
            },
            rows,
        )


if __name__ == "__main__":
    main()
