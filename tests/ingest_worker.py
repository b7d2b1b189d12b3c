"""A clickstream streaming micro-batch in a process of its own, so a test can SIGKILL it: exactly what
the bronze asset runs for each batch (the streaming package with the clickstream's silver writer),
without Dagster around it.

    python -m tests.ingest_worker --bootstrap HOST:PORT --namespace NS --lake DIR [--max-records N] [--shard K/N]
"""

import argparse
import json

from assets.clickstream.bronze import CLICKSTREAM_STREAM
from assets.clickstream.silver import SilverWriter
from assets.streaming import TopicReader, ingest_batch
from resources import KafkaResource, LakeResource

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--namespace", default="")
    parser.add_argument("--lake", required=True)
    parser.add_argument("--max-records", type=int, default=500_000)
    parser.add_argument("--shard", default="0/1", help="the share of the partitions read: K/N (p % N == K)")
    args = parser.parse_args()
    shard, shards = map(int, args.shard.split("/"))
    kafka = KafkaResource(bootstrap_servers=args.bootstrap, namespace=args.namespace, request_timeout_ms=5000)
    lake = LakeResource(root=args.lake)
    topic, group = kafka.topic(CLICKSTREAM_STREAM.topic), kafka.group(CLICKSTREAM_STREAM.group_id)
    writer = SilverWriter.open(lake)
    with TopicReader(kafka, topic, group, shard, shards) as reader:
        batch, _ = ingest_batch(
            kafka, lake, CLICKSTREAM_STREAM, writer, max_records_per_partition=args.max_records, reader=reader
        )
    writer.publish_gold(settle=True)  # as the bronze asset does when its run ends
    dates = sorted(batch.rows_by_date()) if batch else []
    print(json.dumps({"records": batch.records if batch else 0, "dates": dates}))
