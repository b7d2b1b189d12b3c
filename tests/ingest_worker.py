"""A clickstream streaming micro-batch in a process of its own, so a test can SIGKILL it: exactly
what the bronze asset runs (`ingest_clickstream`), without Dagster around it.

    python -m tests.ingest_worker --bootstrap HOST:PORT --namespace NS --lake DIR [--max-records N]
"""

import argparse
import json

from assets.clickstream.bronze import ingest_clickstream
from resources import KafkaResource, LakeResource

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--namespace", default="")
    parser.add_argument("--lake", required=True)
    parser.add_argument("--max-records", type=int, default=500_000)
    args = parser.parse_args()
    kafka = KafkaResource(bootstrap_servers=args.bootstrap, namespace=args.namespace, request_timeout_ms=5000)
    result, builds = ingest_clickstream(kafka, LakeResource(root=args.lake), max_records_per_partition=args.max_records)
    print(json.dumps({"records": result.records, "dates": sorted(builds)}))
