"""The fraud domain with its lake in a bucket of the S3 server: from a real Kafka broker through bronze,
the buyer dimensions, the decision data and the serving table, and a rebuild of all of them from bronze."""

import datetime as dt
import json
from collections import Counter

import boto3
import dagster as dg
import pytest

from assets.fraud import names, serving
from assets.fraud.contracts import reason_code
from assets.fraud.names import CHANGES_GROUP, CHANGES_TOPIC, DECISION_EVENTS, EVENTS_GROUP, EVENTS_TOPIC, SCD2
from demo.fraud import IRREGULAR_REASONS, generate_changes, generate_events, make_buyers, produce
from resources import LakeResource
from resources.duckdb_lake import attach_lake
from tests.test_fraud import (
    NOON,
    TRACKED,
    assert_rebuilt_from_bronze_identically,
    brute_force_versions,
    make_resources,
    query,
    run_pipeline,
)


@pytest.fixture(scope="module")
def s3_world(kafka_broker, s3_server, tmp_path_factory):
    """15 buyers and 400 checkout events (irregular ones among them) through the pipeline once."""
    mp = pytest.MonkeyPatch()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        mp.setenv(name, "test")
    endpoint, bucket = f"http://127.0.0.1:{s3_server}", "fraud-lake"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    lake = LakeResource(root=f"s3://{bucket}/platform", s3_endpoint_url=endpoint, s3_region="us-east-1")
    resources = {**make_resources(kafka_broker, tmp_path_factory.mktemp("fraud-s3")), "lake": lake}
    buyers = make_buyers(15, seed=5)
    start, span = NOON - dt.timedelta(hours=6), dt.timedelta(hours=6)
    changes = generate_changes(buyers, start=start, span=span, changes_per_buyer=3, late_rate=0.25, seed=5)
    events = list(generate_events(400, buyers, start=start, span=span, seed=5, repeat_rate=0.05, irregular_rate=0.08))
    produce(resources["kafka"], CHANGES_TOPIC, changes)
    produce(resources["kafka"], EVENTS_TOPIC, events)
    with dg.DagsterInstance.ephemeral() as instance:
        dates = run_pipeline(instance, resources)
        yield {
            "resources": resources,
            "instance": instance,
            "bucket": bucket,
            "changes": [json.loads(v) for _, v in changes],
            "events": events,
            "dates": dates,
        }
    mp.undo()


def test_fraud_end_to_end_on_s3(s3_world):
    lake, kafka = s3_world["resources"]["lake"], s3_world["resources"]["kafka"]
    valid = {json.loads(v)["event_id"] for _, v, kind in s3_world["events"] if kind == "valid"}
    decided = [r for (r,) in query(lake, DECISION_EVENTS, "SELECT event_id FROM t")]
    assert len(decided) == len(valid) and set(decided) == valid  # each valid checkout exactly once
    irregular = Counter(IRREGULAR_REASONS[k] for *_, k in s3_world["events"] if k in IRREGULAR_REASONS)
    reasons = query(lake, names.QUARANTINE_EVENTS, "SELECT reason FROM t")
    assert irregular and Counter(reason_code(r) for (r,) in reasons) == irregular

    rows = query(lake, SCD2, f"SELECT buyer_id, valid_from, {', '.join(TRACKED)} FROM t ORDER BY 1, 2")
    history: dict[str, list[tuple]] = {}
    for buyer, valid_from, *attrs in rows:
        history.setdefault(buyer, []).append((valid_from, tuple(attrs)))
    assert history == brute_force_versions(s3_world["changes"])

    lookup = serving.BuyerFeatureLookup(lake)
    current = dict(query(lake, SCD2, "SELECT buyer_id, risk_score FROM t WHERE is_current"))
    assert len(current) == 15 and all(lookup.get(b)["risk_score"] == score for b, score in current.items())
    with s3_world["resources"]["warehouse"].connect() as conn:  # the analysts' views read the bucket
        attach_lake(conn, lake.root, lake.s3_endpoint_url, lake.s3_region)
        assert conn.execute("SELECT count(*) FROM fraud_decision_events").fetchone() == (len(valid),)

    # Every table is a Delta table in the bucket; nothing else is stored there.
    pages = boto3.client("s3", endpoint_url=lake.s3_endpoint_url).get_paginator("list_objects_v2")
    listed = pages.paginate(Bucket=s3_world["bucket"], Prefix="platform/")
    keys = {o["Key"] for page in listed for o in page.get("Contents", [])}
    tables = [getattr(names, n) for n in dir(names) if n.isupper() and isinstance(getattr(names, n), str)]
    tables = [t for t in tables if "/" in t]
    assert all(any(k.startswith(f"platform/{t}/_delta_log/") for k in keys) for t in tables), tables
    assert all(any(k.startswith(f"platform/{t}/") for t in tables) for k in keys)
    for topic, group in ((EVENTS_TOPIC, EVENTS_GROUP), (CHANGES_TOPIC, CHANGES_GROUP)):
        pending = kafka.pending_offsets(kafka.topic(topic), kafka.group(group))
        assert all(start == end for start, end in pending.values())


def test_fraud_rebuilt_from_bronze_on_s3_gives_identical_rows(s3_world):
    assert_rebuilt_from_bronze_identically(s3_world["instance"], s3_world["resources"], s3_world["dates"])
