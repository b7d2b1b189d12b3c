"""Ingest scaled out by Kafka partition: one pre-produced topic consumed to silver (and gold's state) by 1
and by 2 shards, each shard a process of its own as its following run would be.

The topic (`--events`, default 2,000,000 events of about 250 B, 6 partitions, 1% duplicates keyed with
their first delivery) is produced once; each shard count then reads all of it with a consumer group and
a lake of its own. Reports events/s per shard count, the ratio, the CPU seconds the shard processes used and
the machine's busy CPU seconds (the broker's included), so that where the time goes is visible on a
2-core machine.

    python -m bench.bench_clickstream_scaleout [--events 2000000] [--shards 1 2]
"""

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

from assets.clickstream.bronze import CLICKSTREAM_STREAM
from assets.clickstream.names import TOPIC
from assets.clickstream.silver import SilverWriter
from assets.streaming import TopicReader, ingest_batch
from bench.common import ROOT, kafka_broker, report
from demo.clickstream import generate
from resources import KafkaResource, LakeResource

PARTITIONS = 6


def produce(kafka: KafkaResource, events: int) -> None:
    topic = kafka.topic(TOPIC)
    kafka.ensure_topic(topic, PARTITIONS)
    producer = kafka.producer(linger_ms=20, acks=1, batch_size=1024 * 1024)
    for i, (_, value) in enumerate(generate(events, seed=5, duplicate_rate=0.01, late_rate=0.0)):
        producer.send(topic, value=value, key=hashlib.md5(value).digest()[:8])
        if i % 200_000 == 0:
            print(f"  produced {i:,}", flush=True)
    producer.flush()


def consume(bootstrap: str, namespace: str, group: str, lake_root: str, shard: int, shards: int) -> None:
    """A shard's following run, in process: micro-batches until its partitions have nothing pending."""
    kafka = KafkaResource(bootstrap_servers=bootstrap, namespace=namespace)
    stream = dataclasses.replace(CLICKSTREAM_STREAM, group_id=group)
    lake = LakeResource(root=lake_root)
    writer = SilverWriter.open(lake)
    started, records = time.monotonic(), 0
    with TopicReader(kafka, kafka.topic(TOPIC), kafka.group(group), shard, shards) as reader:
        while True:
            batch, _ = ingest_batch(kafka, lake, stream, writer, max_records_per_partition=20_000, reader=reader)
            if batch is None:
                break
            records += batch.records
    writer.publish_gold(settle=True)  # as the run does when it ends
    cpu = os.times()
    print(json.dumps({"records": records, "seconds": time.monotonic() - started, "cpu_s": cpu.user + cpu.system}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--consume", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        bootstrap, namespace, group, lake_root, shard, shards = args.consume
        consume(bootstrap, namespace, group, lake_root, int(shard), int(shards))
        return
    with kafka_broker() as bootstrap:
        namespace = f"scaleout{int(time.time())}."
        kafka = KafkaResource(bootstrap_servers=bootstrap, namespace=namespace)
        print(f"producing {args.events:,} events into {PARTITIONS} partitions", flush=True)
        produce(kafka, args.events)
        rows = []
        for shards in args.shards:
            with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as lake_root:
                group = f"platform.clickstream.scaleout{shards}"
                machine_cpu = _machine_cpu()
                started = time.monotonic()
                workers = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "bench.bench_clickstream_scaleout",
                            "--consume",
                            bootstrap,
                            namespace,
                            group,
                            lake_root,
                            str(k),
                            str(shards),
                        ],
                        cwd=ROOT,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for k in range(shards)
                ]
                results = [json.loads((w.communicate()[0] or "{}").strip().splitlines()[-1]) for w in workers]
                wall = time.monotonic() - started
                records = sum(r["records"] for r in results)
                silver = sum(LakeResource(root=lake_root).count_by_date("silver/clickstream_events").values())
                rows.append(
                    {
                        "shards": shards,
                        "events": records,
                        "silver_rows": silver,
                        "wall_s": wall,
                        "events_per_s": records / wall,
                        "worker_cpu_s": sum(r["cpu_s"] for r in results),
                        # the rest is the broker (and anything else running): where the second core goes
                        "machine_cpu_s": _machine_cpu() - machine_cpu,
                    }
                )
                print(rows[-1], flush=True)
        base = rows[0]["events_per_s"]
        for row in rows:
            row["speedup"] = row["events_per_s"] / base
        report(
            "clickstream_scaleout",
            {"events": args.events, "partitions": PARTITIONS, "cores": os.cpu_count(), "load_average": os.getloadavg()},
            rows,
        )


def _machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat): workers, broker and the rest."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
