"""Fraud decision data from a real Kafka broker through bronze, SCD dimensions, the as-of decision
dataset, serving and training sets."""

import copy
import datetime as dt
import hashlib
import hmac
import json
import shutil
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from assets.fraud import bronze, decision, dimensions, live, serving
from assets.fraud.contracts import reason_code
from assets.fraud.decision import build_decision_asset, fraud_decision_partition
from assets.fraud.names import (
    BRONZE_EVENTS,
    CHANGES_GROUP,
    CHANGES_TOPIC,
    DECISION_EVENTS,
    EVENTS_GROUP,
    EVENTS_TOPIC,
    LATEST_FEATURES,
    QUARANTINE_CHANGES,
    QUARANTINE_EVENTS,
    SCD1,
    SCD2,
    SILVER_EVENTS,
)
from assets.fraud.rules import DEFAULT_RULES_PATH, load_rules
from assets.fraud.serving import build_latest_features
from assets.streaming import BRONZE_SCHEMA, Batch
from demo.fraud import (
    IRREGULAR_REASONS,
    Buyer,
    buyer_snapshot,
    checkout_event,
    generate_changes,
    generate_events,
    make_buyers,
    produce,
)
from resources import KafkaResource, LakeResource, PseudonymizerResource, WarehouseResource
from resources.duckdb_lake import attach_lake
from sensors.fraud import fraud_changes_kafka_sensor, fraud_dimension_dates_sensor, fraud_events_kafka_sensor

NOON = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
DAY = NOON.date().isoformat()
KEY = "test-pseudonymization-key"
BASE_ASSETS = [
    bronze.bronze_fraud_risk_events,
    bronze.bronze_fraud_buyer_changes,
    dimensions.fraud_buyer_dimensions,
    serving.fraud_buyer_latest_features,
]
TRACKED = ["credit_rating", "total_cost", "risk_score", "risk_level", "approval_status"]


def tick(sensor, instance, resources, cursor=None):
    return sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))


def materialize(instance, resources, selection, decision_asset=fraud_decision_partition, **kwargs):
    result = dg.materialize(
        [*BASE_ASSETS, decision_asset], selection=selection, resources=resources, instance=instance, **kwargs
    )
    assert result.success
    return result


def run_pipeline(instance, resources, decision_asset=fraud_decision_partition) -> list[str]:
    """As the daemon would: each Kafka sensor's tick and the run it requests. Returns the dates whose
    decision partition the live runs rebuilt (a date rebuilt twice shows up twice)."""
    for request in getattr(tick(fraud_changes_kafka_sensor, instance, resources), "run_requests", None) or []:
        materialize(
            instance,
            resources,
            ["bronze_fraud_buyer_changes", "fraud_buyer_scd2", "fraud_buyer_scd1"],
            decision_asset,
            run_config=request.run_config,
        )
    dates = []
    for request in getattr(tick(fraud_events_kafka_sensor, instance, resources), "run_requests", None) or []:
        dates += run_live(instance, resources, request, decision_asset)
    return sorted(dates)


def run_live(instance, resources, request, decision_asset=fraud_decision_partition, follow_seconds=0.0) -> list[str]:
    """The live run the Kafka sensor requested, following the topic for `follow_seconds` instead of the
    sensor's two minutes (0: one micro-batch). Returns the dates whose decision partition it rebuilt."""
    assert request.run_config["ops"]["bronze_fraud_risk_events"]["config"]["follow_seconds"] == 120
    run_config = copy.deepcopy(request.run_config)
    run_config["ops"]["bronze_fraud_risk_events"]["config"]["follow_seconds"] = follow_seconds
    result = materialize(
        instance, resources, ["bronze_fraud_risk_events"], decision_asset, run_config=run_config, tags=request.tags
    )
    return [
        m.partition
        for m in result.asset_materializations_for_node("bronze_fraud_risk_events")
        if m.asset_key == dg.AssetKey("fraud_decision_events") and m.partition
    ]


def run_date(instance, resources, date, decision_asset=fraud_decision_partition):
    materialize(
        instance,
        resources,
        dg.AssetSelection.groups("fraud_silver", "fraud_gold"),
        decision_asset,
        partition_key=date,
    )


def query(lake: LakeResource, table: str, sql: str, params=None):
    """`sql` over the lake table `table` (as `t`), read the way analysts read it: DuckDB's delta_scan."""
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    attach_lake(conn, lake.root, lake.s3_endpoint_url, lake.s3_region)
    conn.execute(f"CREATE VIEW t AS SELECT * FROM delta_scan('{lake.uri(table)}')")
    return conn.execute(sql, params or []).fetchall()


def stale_status(instance, decision_asset, key: dg.AssetKey, partition: str) -> StaleStatus:
    graph = AssetGraph.from_assets([*BASE_ASSETS, decision_asset])
    return CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance)).get_status(key, partition)


def make_resources(broker: str, root: Path) -> dict:
    return {
        "kafka": KafkaResource(bootstrap_servers=broker, namespace=f"t{uuid.uuid4().hex[:10]}."),
        "lake": LakeResource(root=str(root / "lake")),
        "warehouse": WarehouseResource(database=str(root / "warehouse.duckdb")),
        "pseudonymizer": PseudonymizerResource(key=KEY),
    }


@pytest.fixture(scope="module")
def world(kafka_broker, tmp_path_factory):
    """40 buyers with late and SCD1-only changes, 1,200 checkout events with every irregular case,
    through the whole pipeline once; the tests below examine the result."""
    resources = make_resources(kafka_broker, tmp_path_factory.mktemp("fraud"))
    buyers = make_buyers(40, seed=3)
    start, span = NOON - dt.timedelta(hours=6), dt.timedelta(hours=6)
    changes = generate_changes(buyers, start=start, span=span, changes_per_buyer=3, late_rate=0.25, seed=3)
    events = list(generate_events(1200, buyers, start=start, span=span, seed=3, repeat_rate=0.06, irregular_rate=0.06))
    produce(resources["kafka"], CHANGES_TOPIC, changes)
    produce(resources["kafka"], EVENTS_TOPIC, events)
    with dg.DagsterInstance.ephemeral() as instance:
        dates = run_pipeline(instance, resources)
        yield {
            "resources": resources,
            "instance": instance,
            "changes": [json.loads(v) for _, v in changes],
            "events": events,
            "dates": dates,
        }


def test_each_event_exactly_once_and_irregular_values_quarantined(world):
    lake, kafka, instance = world["resources"]["lake"], world["resources"]["kafka"], world["instance"]
    kinds = Counter(kind for *_, kind in world["events"])
    assert all(kinds[k] for k in [*IRREGULAR_REASONS, "duplicate", "retry"]), kinds  # every case exercised
    valid_ids = {json.loads(v)["event_id"] for _, v, kind in world["events"] if kind == "valid"}
    rows = query(lake, DECISION_EVENTS, "SELECT event_id FROM t")
    assert len(rows) == len(valid_ids) and {r for (r,) in rows} == valid_ids

    expected = Counter(IRREGULAR_REASONS[k] for *_, k in world["events"] if k in IRREGULAR_REASONS)
    assert Counter(reason_code(r) for (r,) in query(lake, QUARANTINE_EVENTS, "SELECT reason FROM t")) == expected
    # The original payload is kept byte for byte, with its Kafka coordinates.
    irregular = sorted(v for _, v, k in world["events"] if k in IRREGULAR_REASONS)
    kept = query(lake, QUARANTINE_EVENTS, 'SELECT payload, topic, "offset" FROM t')
    assert sorted(p for p, _, _ in kept) == irregular
    assert all(t == kafka.topic(EVENTS_TOPIC) and o >= 0 for _, t, o in kept)
    # Both touched dates (today: where events with unusable times land) are rebuilt in the live run
    # itself, each once.
    assert world["dates"] == sorted([DAY, dt.datetime.now(dt.UTC).date().isoformat()])

    key = dg.AssetCheckKey(dg.AssetKey("quarantine_fraud_risk_events"), "nothing_lost_check")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    done = [r for r in history if r.status.value in ("SUCCEEDED", "FAILED")]
    assert len(done) == len(world["dates"]) and all(r.evaluation.passed for r in done)
    for topic, group in ((EVENTS_TOPIC, EVENTS_GROUP), (CHANGES_TOPIC, CHANGES_GROUP)):
        pending = kafka.pending_offsets(kafka.topic(topic), kafka.group(group))
        assert all(start == end for start, end in pending.values())


def brute_force_versions(changes: list[dict]) -> dict[str, list[tuple]]:
    """SCD2 the slow way: per buyer, changes in event-time order, a version per change of a tracked value."""
    versions: dict[str, list[tuple]] = {}
    for change in sorted(changes, key=lambda c: c["changed_at"]):
        attrs = tuple(change[a] for a in TRACKED)
        history = versions.setdefault(change["buyer_id"], [])
        if not history or history[-1][1] != attrs:
            history.append((dt.datetime.fromisoformat(change["changed_at"]), attrs))
    return versions


def test_scd2_invariants_and_late_changes_in_event_time_order(world):
    lake, changes = world["resources"]["lake"], world["changes"]
    arrival = [c["changed_at"] for c in changes]
    assert any(a > b for a, b in zip(arrival, arrival[1:], strict=False))  # some arrive late
    assert query(
        lake, SCD2, "SELECT count(*) FROM (SELECT buyer_id FROM t GROUP BY 1 HAVING count(*) FILTER (is_current) <> 1)"
    ) == [(0,)]
    overlaps = query(
        lake,
        SCD2,
        """
        SELECT count(*) FROM t a JOIN t b ON a.buyer_id = b.buyer_id AND a.version <> b.version
        WHERE a.valid_from < coalesce(b.valid_to, 'infinity'::TIMESTAMPTZ)
          AND b.valid_from < coalesce(a.valid_to, 'infinity'::TIMESTAMPTZ)""",
    )
    assert overlaps == [(0,)]
    rows = query(lake, SCD2, f"SELECT buyer_id, valid_from, {', '.join(TRACKED)} FROM t ORDER BY 1, 2")
    table: dict[str, list[tuple]] = {}
    for buyer, valid_from, *attrs in rows:
        table.setdefault(buyer, []).append((valid_from, tuple(attrs)))
    assert table == brute_force_versions(changes)
    # SCD1: the latest change by event time, stored only as keyed pseudonyms.
    latest = {c["buyer_id"]: c for c in sorted(changes, key=lambda c: c["changed_at"])}
    scd1 = dict(query(lake, SCD1, "SELECT buyer_id, email_pseudonym FROM t"))
    assert scd1 == {
        b: hmac.new(KEY.encode(), c["email"].strip().casefold().encode(), hashlib.sha256).hexdigest()
        for b, c in latest.items()
    }
    some_email = next(iter(latest.values()))["email"].encode()
    for dataset in (SCD1, SCD2, DECISION_EVENTS, SILVER_EVENTS):
        assert all(some_email not in p.read_bytes() for p in lake.path(dataset).rglob("*.parquet"))
    # The dimension's materialization asks for a rebuild of every decision date its changes can alter.
    request = tick(fraud_dimension_dates_sensor, world["instance"], world["resources"])
    first_change_day = min(c["changed_at"][:10] for c in changes)
    assert [r.partition_key for r in request.run_requests][0] == first_change_day
    assert [r.partition_key for r in request.run_requests][-1] == dt.datetime.now(dt.UTC).date().isoformat()


def test_asof_enrichment_equals_brute_force(world):
    versions = brute_force_versions(world["changes"])
    rows = query(
        world["resources"]["lake"],
        DECISION_EVENTS,
        f"SELECT buyer_id, occurred_at, {', '.join(TRACKED)} FROM t USING SAMPLE 300 ROWS (reservoir, 1)",
    )
    assert len(rows) == 300
    for buyer, occurred_at, *attrs in rows:
        valid = [v for v in versions[buyer] if v[0] <= occurred_at]
        assert tuple(attrs) == valid[-1][1], (buyer, occurred_at)


def test_serving_lookup_and_point_in_time_training_rows(world):
    lake, warehouse = world["resources"]["lake"], world["resources"]["warehouse"]
    events = query(lake, DECISION_EVENTS, "SELECT buyer_id, occurred_at, order_amount, risk_score FROM t")
    lookup = serving.BuyerFeatureLookup(lake.root)
    features = query(lake, LATEST_FEATURES, "SELECT buyer_id, as_of, prior_events_7d, risk_score FROM t")
    assert len(features) == 40
    for buyer, as_of, prior_7d, risk_score in features:
        assert prior_7d == sum(1 for b, t, *_ in events if b == buyer and as_of - dt.timedelta(days=7) <= t < as_of)
        row = lookup.get(buyer)
        assert row["prior_events_7d"] == prior_7d and row["risk_score"] == risk_score
    assert lookup.get("B-unknown") is None
    timings = []
    for buyer, *_ in features * 50:
        started = time.perf_counter()
        lookup.get(buyer)
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[int(len(timings) * 0.99)] < 0.001  # p99 under a millisecond

    training = serving.training_rows(lake, DAY, DAY)
    assert len(training) == sum(1 for _, t, *_ in events if t.date().isoformat() == DAY) > 0
    for row in training.sample(100, random_state=1).itertuples():
        prior = [
            e
            for e in events
            if e[0] == row.buyer_id and row.occurred_at - dt.timedelta(hours=24) <= e[1] < row.occurred_at
        ]
        assert row.prior_events_24h == len(prior)  # only strictly earlier events: no leakage
        assert row.prior_amount_24h == pytest.approx(sum(e[2] for e in prior))
    with warehouse.connect() as conn:
        in_view = conn.execute("SELECT count(*) FROM fraud_training_rows WHERE event_date = ?", [DAY]).fetchone()
    assert in_view[0] == len(training)


def rows_of(table: pa.Table) -> list[dict]:
    """Rows sorted by buyer; sums of amounts to 1e-9 (their order of addition may differ)."""
    rows = table.sort_by("buyer_id").to_pylist()
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def assert_rebuilt_from_bronze_identically(instance, resources, dates: list[str]) -> None:
    """The disaster: every table derived from bronze is deleted, and the DuckDB file with its views. The
    dimension run and the date runs rebuild them from bronze alone: identical rows, sorted. The serving
    table holds features as of the moment of its refresh: it equals what the lost tables gave at that
    moment."""
    lake, warehouse = resources["lake"], resources["warehouse"]
    derived = [SCD2, SCD1, QUARANTINE_CHANGES, SILVER_EVENTS, QUARANTINE_EVENTS, DECISION_EVENTS]
    before = {d: query(lake, d, "SELECT * FROM t ORDER BY ALL") for d in derived}
    assert all(before[d] for d in (SCD2, SCD1, SILVER_EVENTS, QUARANTINE_EVENTS, DECISION_EVENTS))
    history, scd2 = lake.scan(DECISION_EVENTS), lake.scan(SCD2)
    for dataset in [*derived, LATEST_FEATURES]:
        lake.delete(dataset)
        assert lake.table(dataset) is None
    Path(warehouse.database).unlink()

    materialize(instance, resources, ["fraud_buyer_scd2", "fraud_buyer_scd1"])
    for date in dates:
        run_date(instance, resources, date)
    assert {d: query(lake, d, "SELECT * FROM t ORDER BY ALL") for d in derived} == before
    rebuilt = lake.scan(LATEST_FEATURES)
    (as_of,) = set(rebuilt["as_of"].to_pylist())  # one refresh, one moment
    assert rebuilt.num_rows == len(set(scd2["buyer_id"].to_pylist()))
    assert rows_of(rebuilt) == rows_of(serving.latest_features(history, scd2, as_of))
    with warehouse.connect() as conn:
        attach_lake(conn, lake.root, lake.s3_endpoint_url, lake.s3_region)
        views = conn.execute("SELECT count(*) FROM fraud_decision_events").fetchone()
    assert views == (len(before[DECISION_EVENTS]),)


def test_rebuild_from_bronze_gives_identical_rows(world):
    assert_rebuilt_from_bronze_identically(world["instance"], world["resources"], world["dates"])


def test_rule_change_and_new_market_need_no_code_change(kafka_broker, tmp_path):
    resources = make_resources(kafka_broker, tmp_path)
    lake, instance = resources["lake"], dg.DagsterInstance.ephemeral()
    rng = __import__("random").Random(1)
    de, pl = Buyer("B200001", "DE"), Buyer("B200002", "PL")
    onboarded = NOON - dt.timedelta(days=1)
    changes = [buyer_snapshot(rng, b, onboarded) for b in (de, pl)]
    pl_event = dict(checkout_event(rng, pl, NOON), currency="PLN", order_amount=900.0)
    de_event = dict(checkout_event(rng, de, NOON), order_amount=20_000.0)
    produce(resources["kafka"], CHANGES_TOPIC, [(c["buyer_id"].encode(), json.dumps(c).encode()) for c in changes])
    produce(
        resources["kafka"],
        EVENTS_TOPIC,
        [(e["buyer_id"].encode(), json.dumps(e).encode()) for e in (pl_event, de_event)],
    )
    assert DAY in run_pipeline(instance, resources)
    assert [reason_code(r) for (r,) in query(lake, QUARANTINE_EVENTS, "SELECT reason FROM t")] == [
        "unknown_value:market=PL"
    ]

    # The rules change in configuration only: Poland joins, Germany's ceiling drops below the DE order.
    doc = __import__("yaml").safe_load(DEFAULT_RULES_PATH.read_text())
    doc["version"] += 1
    doc["markets"]["DE"]["max_amount"] = 10_000.0
    doc["markets"]["PL"] = {
        "currencies": ["PLN"],
        "min_amount": 5.0,
        "max_amount": 100_000.0,
        "risk_thresholds": {"medium": 1, "high": 2},
    }
    rules_path = tmp_path / "markets.yaml"
    rules_path.write_text(__import__("yaml").safe_dump(doc))
    changed = build_decision_asset(rules_path)
    old_versions, new_versions = fraud_decision_partition.code_versions_by_key, changed.code_versions_by_key
    assert set(old_versions) == set(new_versions)
    assert all(old_versions[k] != new_versions[k] for k in old_versions)  # the UI shows them stale
    assert all(load_rules(rules_path).content_hash in v for v in new_versions.values())
    # Staleness as the UI computes it (Dagster's own resolver): fresh under the old rules, stale under the new.
    key = dg.AssetKey("fraud_decision_events")
    assert stale_status(instance, fraud_decision_partition, key, DAY) == StaleStatus.FRESH
    assert stale_status(instance, changed, key, DAY) == StaleStatus.STALE

    run_date(instance, resources, DAY, changed)  # the backfill of the affected date
    assert query(lake, DECISION_EVENTS, "SELECT market, currency, market_risk_level FROM t") == [("PL", "PLN", "high")]
    assert [(p, reason_code(r)) for p, r in query(lake, QUARANTINE_EVENTS, "SELECT payload, reason FROM t")] == [
        (json.dumps(de_event).encode(), "invalid_value:order_amount")
    ]


def test_crash_during_ingest_loses_and_duplicates_nothing(kafka_broker, tmp_path, monkeypatch):
    resources = make_resources(kafka_broker, tmp_path)
    lake, kafka, instance = resources["lake"], resources["kafka"], dg.DagsterInstance.ephemeral()
    buyers = make_buyers(5, seed=9)
    produce(kafka, CHANGES_TOPIC, generate_changes(buyers, start=NOON, span=dt.timedelta(hours=1), seed=9))
    events = list(
        generate_events(60, buyers, start=NOON, span=dt.timedelta(hours=1), seed=9, repeat_rate=0, irregular_rate=0)
    )
    produce(kafka, EVENTS_TOPIC, events)
    request = tick(fraud_events_kafka_sensor, instance, resources).run_requests[0]

    def crash(*_args, **_kwargs):
        raise ConnectionError("injected: broker unreachable at commit time")

    # The real broker cannot be made to fail exactly between the write and the commit: inject it.
    with monkeypatch.context() as patched:
        patched.setattr(KafkaResource, "commit", crash)
        with pytest.raises(Exception, match="injected"):
            run_live(instance, resources, request)
    written = lake.count_by_date(BRONZE_EVENTS)
    assert written  # durable, but not acknowledged
    late = list(
        generate_events(
            1,
            buyers,
            start=NOON + dt.timedelta(minutes=30),
            span=dt.timedelta(0),
            seed=10,
            repeat_rate=0,
            irregular_rate=0,
        )
    )
    produce(kafka, EVENTS_TOPIC, late)

    run_pipeline(instance, resources)
    assert lake.count_by_date(BRONZE_EVENTS) == written  # the same range, recognised by its tokens
    # The crashed run ran before the first buyer changes were ingested: its events were quarantined as
    # unknown buyers, and the dimension build asks for their dates to be rebuilt (as the daemon would).
    for request in tick(fraud_dimension_dates_sensor, instance, resources).run_requests:
        run_date(instance, resources, request.partition_key)
    assert query(lake, DECISION_EVENTS, "SELECT count(*), count(DISTINCT event_id) FROM t") == [(60, 60)]
    assert query(lake, QUARANTINE_EVENTS, "SELECT count(*) FROM t") == [(0,)]
    run_pipeline(instance, resources)  # the next tick takes what arrived after the crash
    ids = {json.loads(v)["event_id"] for _, v, _ in [*events, *late]}
    assert {r for (r,) in query(lake, DECISION_EVENTS, "SELECT event_id FROM t")} == ids
    assert query(lake, DECISION_EVENTS, "SELECT count(*) FROM t") == [(61,)]


def test_a_late_change_re_enriches_the_decisions_it_affects(kafka_broker, tmp_path):
    resources = make_resources(kafka_broker, tmp_path)
    lake, kafka, instance = resources["lake"], resources["kafka"], dg.DagsterInstance.ephemeral()
    rng = __import__("random").Random(2)
    buyer = Buyer("B300001", "DE")
    onboarding = buyer_snapshot(rng, buyer, NOON - dt.timedelta(days=1))
    event = checkout_event(rng, buyer, NOON)
    produce(kafka, CHANGES_TOPIC, [(b"B300001", json.dumps(onboarding).encode())])
    produce(kafka, EVENTS_TOPIC, [(b"B300001", json.dumps(event).encode())])
    run_pipeline(instance, resources)
    assert query(lake, DECISION_EVENTS, "SELECT risk_score, buyer_version FROM t") == [(onboarding["risk_score"], 1)]

    # A rating change that took effect an hour before the checkout arrives only now.
    late = dict(buyer_snapshot(rng, buyer, NOON - dt.timedelta(hours=1), "risk"))
    late["risk_score"] = 999 if onboarding["risk_score"] != 999 else 1
    produce(kafka, CHANGES_TOPIC, [(b"B300001", json.dumps(late).encode())])
    run_pipeline(instance, resources)
    request = tick(fraud_dimension_dates_sensor, instance, resources)
    dates = [r.partition_key for r in request.run_requests]
    assert DAY in dates
    run_date(instance, resources, DAY)
    assert query(lake, DECISION_EVENTS, "SELECT risk_score, buyer_version FROM t") == [(late["risk_score"], 2)]
    assert query(lake, SCD2, "SELECT version, valid_to IS NULL FROM t ORDER BY version") == [(1, False), (2, True)]


def test_live_run_follows_the_topic_and_refreshes_decisions_per_micro_batch(kafka_broker, tmp_path):
    resources = make_resources(kafka_broker, tmp_path)
    lake, kafka, instance = resources["lake"], resources["kafka"], dg.DagsterInstance.ephemeral()
    buyers = make_buyers(5, seed=11)
    produce(kafka, CHANGES_TOPIC, generate_changes(buyers, start=NOON - dt.timedelta(hours=2), span=dt.timedelta(0)))
    run_pipeline(instance, resources)  # the dimensions
    hour = dt.timedelta(hours=1)
    first, second = (
        list(generate_events(20, buyers, start=NOON, span=hour, seed=s, repeat_rate=0, irregular_rate=0))
        for s in (12, 13)
    )
    produce(kafka, EVENTS_TOPIC, first)
    request = tick(fraud_events_kafka_sensor, instance, resources).run_requests[0]
    dates: list[str] = []
    follower = threading.Thread(target=lambda: dates.extend(run_live(instance, resources, request, follow_seconds=8)))
    follower.start()
    time.sleep(3)
    assert follower.is_alive()
    produce(kafka, EVENTS_TOPIC, second)  # arrives while the run follows the topic
    follower.join(60)

    ids = {json.loads(v)["event_id"] for _, v, _ in [*first, *second]}
    assert {r for (r,) in query(lake, DECISION_EVENTS, "SELECT event_id FROM t")} == ids
    assert dates == [DAY, DAY]  # one rebuild per micro-batch, in the same run
    assert query(lake, LATEST_FEATURES, "SELECT sum(prior_events_7d) FROM t") == [(40,)]
    pending = kafka.pending_offsets(kafka.topic(EVENTS_TOPIC), kafka.group(EVENTS_GROUP))
    assert all(start == end for start, end in pending.values())
    # The reported partitions carry their provenance: fresh in the UI, and stale once the rules change.
    key = dg.AssetKey("fraud_decision_events")
    assert stale_status(instance, fraud_decision_partition, key, DAY) == StaleStatus.FRESH
    doc = __import__("yaml").safe_load(DEFAULT_RULES_PATH.read_text())
    doc["version"] += 1
    (tmp_path / "markets.yaml").write_text(__import__("yaml").safe_dump(doc))
    assert stale_status(instance, build_decision_asset(tmp_path / "markets.yaml"), key, DAY) == StaleStatus.STALE


def test_a_crash_between_tables_is_recovered_by_the_tokens(kafka_broker, tmp_path, monkeypatch):
    """Quarantine and decisions appended, silver not, Kafka not acknowledged: the next run reads the same
    range again and appends only what is missing."""
    resources = make_resources(kafka_broker, tmp_path)
    lake, kafka, instance = resources["lake"], resources["kafka"], dg.DagsterInstance.ephemeral()
    buyers = make_buyers(5, seed=14)
    produce(kafka, CHANGES_TOPIC, generate_changes(buyers, start=NOON - dt.timedelta(hours=2), span=dt.timedelta(0)))
    run_pipeline(instance, resources)
    events = list(
        generate_events(30, buyers, start=NOON, span=dt.timedelta(hours=1), seed=15, repeat_rate=0.1, irregular_rate=0)
    )
    produce(kafka, EVENTS_TOPIC, events)
    request = tick(fraud_events_kafka_sensor, instance, resources).run_requests[0]
    original = LakeResource.append

    def append(self, name, rows, **options):
        if name == SILVER_EVENTS:
            raise OSError("injected: the process dies before the silver append")
        return original(self, name, rows, **options)

    with monkeypatch.context() as patched:
        patched.setattr(LakeResource, "append", append)
        with pytest.raises(Exception, match="injected"):
            run_live(instance, resources, request)
    pending = kafka.pending_offsets(kafka.topic(EVENTS_TOPIC), kafka.group(EVENTS_GROUP))
    assert any(start < end for start, end in pending.values())  # not acknowledged
    assert lake.table(SILVER_EVENTS) is None
    decided = query(lake, DECISION_EVENTS, "SELECT count(*) FROM t")

    # The next run re-reads the range: the tokens skip quarantine and decisions, silver gets its rows.
    run_pipeline(instance, resources)
    ids = {json.loads(v)["event_id"] for _, v, _ in events}
    assert query(lake, DECISION_EVENTS, "SELECT count(*) FROM t") == decided == [(len(ids),)]
    assert {r for (r,) in query(lake, SILVER_EVENTS, "SELECT event_id FROM t")} == ids
    assert query(lake, SILVER_EVENTS, "SELECT count(*) FROM t") == [(len(ids),)]
    assert query(lake, LATEST_FEATURES, "SELECT sum(prior_events_7d) FROM t") == [(len(ids),)]
    pending = kafka.pending_offsets(kafka.topic(EVENTS_TOPIC), kafka.group(EVENTS_GROUP))
    assert all(start == end for start, end in pending.values())


def test_a_rebuild_that_a_live_batch_overtakes_is_done_again(world, tmp_path, monkeypatch):
    """The live run and a date run may write one date at once: the rebuild computed from the older version
    conflicts on commit and is done again; the result holds the batch exactly once."""
    shutil.copytree(world["resources"]["lake"].root, tmp_path / "lake")
    lake = LakeResource(root=str(tmp_path / "lake"))
    warehouse = WarehouseResource(database=str(tmp_path / "warehouse.duckdb"))
    before = {r for (r,) in query(lake, DECISION_EVENTS, "SELECT event_id FROM t WHERE event_date = ?", [NOON.date()])}
    # A new checkout of the date, as the next Kafka record of a partition that already has rows of it.
    bronze_rows = lake.scan(BRONZE_EVENTS, [DAY], schema=BRONZE_SCHEMA)
    (template,) = query(
        lake, DECISION_EVENTS, 'SELECT "partition", "offset" FROM t WHERE event_date = ? LIMIT 1', [DAY]
    )
    partition = template[0]
    row = bronze_rows.filter(
        pc.and_(pc.equal(bronze_rows["partition"], partition), pc.equal(bronze_rows["offset"], template[1]))
    )
    new_event = dict(json.loads(row["payload"][0].as_py()), event_id=str(uuid.uuid4()))
    topic = row["topic"][0].as_py()
    last = lake.token(BRONZE_EVENTS, f"{topic}/{partition}")
    late = row.set_column(row.schema.get_field_index("offset"), "offset", pa.array([last + 1], pa.int64()))
    payload = pa.array([json.dumps(new_event).encode()], pa.binary())
    late = late.set_column(late.schema.get_field_index("payload"), "payload", payload)
    batch = Batch(topic, {partition: (last + 1, last + 1)}, late)
    builds, original = [], decision.build_decisions

    def build(*args, **kwargs):
        builds.append(original(*args, **kwargs))
        if len(builds) == 1:  # the live run's batch lands while the rebuild computes
            lake.append(BRONZE_EVENTS, late, tokens={f"{topic}/{partition}": last + 1})
            live.LiveDecisionWriter(lake, warehouse, decision.LOADED_RULES)(batch)
        return builds[-1]

    monkeypatch.setattr(decision, "build_decisions", build)
    decision.rebuild_decision_dates(lake, decision.LOADED_RULES, [DAY])
    assert len(builds) == 2 and builds[0].bronze_rows + 1 == builds[1].bronze_rows
    after = query(lake, DECISION_EVENTS, "SELECT event_id FROM t WHERE event_date = ?", [NOON.date()])
    assert sorted(r for (r,) in after) == sorted(before | {new_event["event_id"]})
    # The live run does not append the covered batch again (its tokens are in the rebuild's commits).
    live.LiveDecisionWriter(lake, warehouse, decision.LOADED_RULES)(batch)
    assert query(lake, DECISION_EVENTS, "SELECT count(*) FROM t WHERE event_date = ?", [NOON.date()]) == [
        (len(before) + 1,)
    ]


def test_serving_table_before_any_buyer_change_is_empty_not_an_error(tmp_path):
    """The live path may serve before the first buyer changes have built the SCD2 dimension."""
    table = build_latest_features(LakeResource(root=str(tmp_path)), dt.datetime.now(dt.UTC))
    assert table.num_rows == 0 and "buyer_id" in table.column_names
