"""Clickstream ingest throughput on one core: Kafka -> bronze -> silver through the platform's own
code path, against a bare kafka-python consume loop over the same topic.

    python -m bench.bench_clickstream_ingest [--events 1000000]
"""

import argparse
import datetime as dt
import tempfile
import time

from kafka import TopicPartition

from assets.clickstream.bronze import CLICKSTREAM_STREAM, check_bronze_batch
from assets.clickstream.names import DUPLICATES_TABLE, QUARANTINE_TABLE, SILVER_TABLE, TOPIC
from assets.clickstream.silver import SilverWriter
from assets.streaming import gc_paused, ingest_batch
from bench.common import kafka_broker, peak_rss_mib, pin_to_one_core, report
from demo.clickstream import generate, produce
from resources import KafkaResource, LakeResource


def bare_consume(kafka: KafkaResource, topic: str) -> tuple[int, int, float]:
    """Records and bytes a plain kafka-python loop reads from the whole topic, and seconds it takes."""
    with kafka.consumer(None, max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024) as c:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
        c.assign(tps)
        c.seek_to_beginning()
        ends = c.end_offsets(tps)
        records = size = 0
        started = time.perf_counter()
        while any((c.position(tp) or 0) < ends[tp] for tp in tps):
            for batch in c.poll(timeout_ms=500, max_records=50_000).values():
                records += len(batch)
                size += sum(len(r.value or b"") for r in batch)
        return records, size, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with kafka_broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-lake-") as root:
        kafka = KafkaResource(bootstrap_servers=bootstrap, namespace=f"bench{int(time.time())}.")
        topic = kafka.topic(TOPIC)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)
        messages = generate(
            args.events, seed=1, start=start, span=dt.timedelta(hours=19), duplicate_rate=0.01, irregular_rate=0.005
        )
        produce(bootstrap, topic, messages, args.events)
        pin_to_one_core()

        records, size, bare_s = bare_consume(kafka, topic)
        with gc_paused():  # what the platform's read does, applied to the bare loop: the fairer limit
            _, _, bare_nogc_s = bare_consume(kafka, topic)
        lake = LakeResource(root=root)
        started = time.perf_counter()
        # The ingest run's own step: Kafka -> bronze (durable, committed) -> silver + quarantine.
        batch, _ = ingest_batch(
            kafka, lake, CLICKSTREAM_STREAM, SilverWriter.open(lake), max_records_per_partition=args.events
        )
        total_s = time.perf_counter() - started
        assert batch is not None
        started = time.perf_counter()
        passed, _ = check_bronze_batch(batch.rows)
        check_s = time.perf_counter() - started
        silver_rows, quarantined, duplicates = (
            sum(lake.count_by_date(t).values()) for t in (SILVER_TABLE, QUARANTINE_TABLE, DUPLICATES_TABLE)
        )
        assert passed and silver_rows + quarantined + duplicates == batch.records == records
        mb = size / 1e6
        report(
            "clickstream_ingest",
            {
                "events": args.events,
                "mean_event_bytes": round(size / records),
                "topic_partitions": 3,
                "duplicate_rate": 0.01,
                "invalid_rate": 0.005,
            },
            [
                {
                    "path": "bare kafka-python consume loop",
                    "seconds": bare_s,
                    "events_per_s": records / bare_s,
                    "mb_per_s": mb / bare_s,
                },
                {
                    "path": "bare kafka-python consume loop, GC paused",
                    "seconds": bare_nogc_s,
                    "events_per_s": records / bare_nogc_s,
                    "mb_per_s": mb / bare_nogc_s,
                },
                {
                    "path": "platform: Kafka -> bronze -> silver",
                    "seconds": total_s,
                    "events_per_s": batch.records / total_s,
                    "mb_per_s": mb / total_s,
                    "ratio_to_bare": bare_s / total_s,
                    "ratio_to_bare_gc_paused": bare_nogc_s / total_s,
                    "silver_rows": silver_rows,
                    "quarantined": quarantined,
                    "duplicates": duplicates,
                    "peak_rss_mib": peak_rss_mib(),
                },
                {
                    "path": "bronze batch check (Pandera, per batch)",
                    "seconds": check_s,
                    "events_per_s": batch.records / check_s,
                },
            ],
        )


if __name__ == "__main__":
    main()
