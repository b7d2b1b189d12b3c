"""Clickstream from a real Kafka broker through bronze, silver and gold."""

import datetime as dt
import hashlib
import json

import dagster as dg
import pyarrow as pa
import pytest

from assets.clickstream.names import (
    BRONZE_TABLE,
    CONSUMER_GROUP,
    DAILY_METRICS_TABLE,
    PRODUCT_FUNNEL_TABLE,
    SILVER_TABLE,
    TOPIC,
)
from demo.clickstream import IRREGULAR_KINDS, event, generate, irregular
from sensors.clickstream import clickstream_kafka_sensor
from tests.clickstream_pipeline import (
    assert_gold_counted_from_silver,
    data_files,
    produce,
    quarantine,
    query,
    run_date,
    run_ingest,
    run_pipeline,
    tick,
    valid_event,
)

NOON = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
DAY = NOON.date().isoformat()


def test_events_flow_from_kafka_to_silver_and_gold(kafka, lake, warehouse, resources, instance):
    values = [
        m
        for _, m in generate(
            3000, seed=3, start=NOON - dt.timedelta(hours=6), duplicate_rate=0, irregular_rate=0, late_rate=0
        )
    ]
    produce(kafka, values)
    dates = run_pipeline(instance, resources)

    assert dates == [NOON.date().isoformat()] or set(dates) <= {DAY, (NOON - dt.timedelta(days=1)).date().isoformat()}
    (rows,) = query("SELECT count(*) FROM t", lake)[0:1]
    assert rows[0] == 3000
    columns = query("SELECT column_name FROM (DESCRIBE t)", lake)
    assert [c for (c,) in columns] == [
        "event_datetime",
        "event_date",
        "event_name",
        "user_id",
        "platform",
        "product_name",
        "SKU",
        "event_id",
    ]
    by_name = dict(query("SELECT event_name, count(*) FROM t GROUP BY 1", lake))
    metrics = dict(query("SELECT event_name, sum(events) FROM t GROUP BY 1", lake, DAILY_METRICS_TABLE))
    assert metrics == by_name
    funnel = query("SELECT stage, sum(users) FROM t GROUP BY ALL", lake, PRODUCT_FUNNEL_TABLE)
    funnel = dict(funnel)
    assert funnel["view"] >= funnel["click"] >= funnel["add_to_cart"] > 0 and funnel["view"] >= funnel["purchase"] > 0
    # Offsets are committed after bronze is durable: nothing is pending any more.
    pending = kafka.pending_offsets(kafka.topic(TOPIC), kafka.group(CONSUMER_GROUP))
    assert all(start == end for start, end in pending.values())
    # Gold's headline figures are numeric metadata of its materializations (the UI plots them over time).
    records = instance.fetch_materializations(dg.AssetKey("gold_clickstream_daily_metrics"), limit=100).records
    latest = {}
    for record in records:  # newest first
        latest.setdefault(record.partition_key, record.asset_materialization.metadata["events"].value)
    assert sum(latest.values()) == 3000
    # Gold is queryable by name in the DuckDB file.
    with warehouse.connect() as conn:
        assert conn.execute("SELECT sum(events) FROM gold_clickstream_daily_metrics").fetchone()[0] == 3000


EXPECTED_REASONS = {
    "malformed_json": "malformed_json",
    "invalid_utf8": "invalid_utf8",
    "missing_timestamp": "missing_field:timestamp",
    "missing_user": "missing_field:user_id",
    "wrong_type_user_id": "wrong_type:user_identifiers.id",
    "unknown_event_name": "unknown_value:event_name=hover",
    "unparsable_timestamp": "unparsable_timestamp",
    "absurd_timestamp": "absurd_timestamp",
    "not_an_object": "not_a_json_object",
    "unknown_platform": "unknown_value:platform=smart-fridge",
}


def test_every_class_of_bad_input_is_quarantined_with_its_reason(kafka, lake, resources, instance):
    assert set(EXPECTED_REASONS) == set(IRREGULAR_KINDS)
    base = event(NOON, "click", "user_9", "web", ("SKU-9", "Nine"))
    bad = {kind: irregular(kind, base) for kind in IRREGULAR_KINDS}
    future = dict(base, timestamp=(dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    bad["future_timestamp"] = json.dumps(future).encode()
    bad["empty"] = b""
    missing_optional = {"timestamp": base["timestamp"], "event_name": "view", "user_identifiers": {"id": "u"}}
    good = [valid_event(NOON + dt.timedelta(seconds=i), user=f"user_{i}") for i in range(20)]
    produce(kafka, [*bad.values(), json.dumps(missing_optional).encode(), *good])
    for date in run_pipeline(instance, resources):  # then the daily close: every whole-date check
        run_date(instance, resources, date)

    rows = quarantine(lake, 'SELECT reason, payload, topic, "partition", "offset" FROM t')
    reasons = sorted(r[0] for r in rows)
    expected = sorted([*EXPECTED_REASONS.values(), "absurd_timestamp", "empty_payload"])
    assert reasons == expected
    # The original payload is kept byte for byte, with its Kafka coordinates.
    assert sorted(r[1] for r in rows) == sorted(bad.values())
    assert all(r[2] == kafka.topic(TOPIC) and r[4] >= 0 for r in rows)
    # A missing optional field is a null, not a rejection.
    assert query("SELECT platform, product_name, \"SKU\" FROM t WHERE user_id = 'u'", lake) == [(None, None, None)]
    assert query("SELECT count(*) FROM t", lake)[0][0] == 21

    # Counted by the quarantine rate check (one evaluation per date partition; it warns above 5%),
    # and the nothing-lost check passed on every date.
    def evaluations(check: str):
        key = dg.AssetCheckKey(dg.AssetKey("quarantine_clickstream_events"), check)
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
        return [r.evaluation for r in history if r.status.value in ("SUCCEEDED", "FAILED")]

    rates = [e for e in evaluations("quarantine_rate_check") if "scope" not in e.metadata]  # the daily close's
    assert sum(e.metadata["quarantined"].value for e in rates) == len(bad)
    assert any(not e.passed and e.severity == dg.AssetCheckSeverity.WARN for e in rates)
    assert all(e.passed for e in evaluations("nothing_lost_check"))


def test_a_message_delivered_twice_is_one_row(kafka, lake, resources, instance):
    message = valid_event(NOON, "purchase", "user_dup", "SKU-D")
    produce(kafka, [message, message, valid_event(NOON, "view", "user_other")])
    run_pipeline(instance, resources)
    # The same range replayed from Kafka (offsets reset) is recognised by the tables' tokens: nothing is
    # written again, anywhere.
    topic = kafka.topic(TOPIC)
    files_before = {t: data_files(lake, t) for t in (BRONZE_TABLE, SILVER_TABLE)}
    kafka.commit(topic, kafka.group(CONSUMER_GROUP), {p: 0 for p in range(3)})
    run_pipeline(instance, resources)
    assert {t: data_files(lake, t) for t in (BRONZE_TABLE, SILVER_TABLE)} == files_before
    assert query("SELECT user_id, count(*) FROM t GROUP BY 1 ORDER BY 1", lake) == [("user_dup", 1), ("user_other", 1)]


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backfill_twice_is_identical_and_leaves_other_partitions_alone(kafka, lake, resources, instance):
    other_day = NOON - dt.timedelta(days=2)
    produce(
        kafka,
        [valid_event(NOON + dt.timedelta(minutes=i), user=f"u{i % 5}") for i in range(50)]
        + [valid_event(other_day, user="late")],
    )
    dates = run_pipeline(instance, resources)
    other = other_day.date().isoformat()
    assert sorted(dates) == sorted([DAY, other])  # the late event lands in its own date's partition

    snapshot = {p: _digest(p) for p in lake.path().rglob("*.parquet") if f"event_date={other}" in str(p)}
    assert snapshot
    first = query(f"SELECT * FROM t WHERE event_date = '{DAY}' ORDER BY event_id", lake)
    for _ in range(2):
        assert run_date(instance, resources, DAY).success
        assert query(f"SELECT * FROM t WHERE event_date = '{DAY}' ORDER BY event_id", lake) == first
    assert len([f for f in data_files(lake, SILVER_TABLE) if f"event_date={DAY}" in f]) == 1  # one file per date
    assert {p: _digest(p) for p in snapshot} == snapshot  # the other date's files, untouched


def test_crash_between_write_and_commit_rewrites_the_same_range(kafka, lake, resources, instance, monkeypatch):
    produce(kafka, [valid_event(NOON + dt.timedelta(seconds=i), user=f"u{i}") for i in range(30)])
    request = tick(clickstream_kafka_sensor, instance, resources)[0].run_requests[0]

    def crash(*_args, **_kwargs):
        raise ConnectionError("injected: broker unreachable at commit time")

    # The real broker cannot be made to fail exactly between the write and the commit: inject it.
    with monkeypatch.context() as patched:
        patched.setattr(type(kafka), "commit", crash)
        with pytest.raises(Exception, match="injected"):
            run_ingest(instance, resources, request)
    written = data_files(lake, BRONZE_TABLE)
    assert written  # durable, but not acknowledged
    produce(kafka, [valid_event(NOON + dt.timedelta(minutes=5), user="after-crash")])

    run_pipeline(instance, resources)
    after_retry = data_files(lake, BRONZE_TABLE)
    assert after_retry == written  # the retry found the crashed range in bronze and wrote nothing again
    assert query("SELECT count(*) FROM t", lake) == [(30,)]
    run_pipeline(instance, resources)  # the next tick takes what arrived after the crash
    assert query("SELECT count(*), count(DISTINCT event_id) FROM t", lake) == [(31, 31)]


def test_a_sensor_run_follows_the_topic_and_lands_each_micro_batch(kafka, lake, resources, instance):
    import copy
    import threading
    import time

    from tests.clickstream_pipeline import ASSETS

    produce(kafka, [valid_event(NOON, user="early")])
    request = tick(clickstream_kafka_sensor, instance, resources)[0].run_requests[0]
    config = request.run_config["ops"]["bronze_clickstream_events"]["config"]
    assert config["follow_seconds"] == 120
    run_config = copy.deepcopy(request.run_config)
    run_config["ops"]["bronze_clickstream_events"]["config"]["follow_seconds"] = 4

    def late():
        time.sleep(1.5)
        produce(kafka, [valid_event(NOON + dt.timedelta(minutes=1), user="late")])

    producer = threading.Thread(target=late)
    producer.start()
    result = dg.materialize(
        ASSETS, selection=["bronze_clickstream_events"], run_config=run_config, resources=resources, instance=instance
    )
    producer.join()
    assert result.success
    # The message produced while the run was going is in silver, and each batch was its own materialization.
    assert query("SELECT user_id FROM t ORDER BY 1", lake) == [("early",), ("late",)]
    bronze = [
        m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("bronze_clickstream_events")
    ]
    assert len(bronze) >= 3  # two micro-batches, then the run's own result
    pending = kafka.pending_offsets(kafka.topic(TOPIC), kafka.group(CONSUMER_GROUP))
    assert all(start == end for start, end in pending.values())


def test_gold_kept_by_the_stream_equals_gold_counted_from_silver(kafka, lake, resources, instance):
    stream = [m for _, m in generate(6000, seed=21, start=NOON - dt.timedelta(hours=3), late_rate=0.05)]
    # Two ingest runs: the second loads the aggregate state the first stored, as a successor or a run
    # started after a crash does; duplicates, late events and bad messages included.
    for part in (stream[:3500], stream[3500:]):
        produce(kafka, part)
        run_pipeline(instance, resources)
    dates = sorted(d for (d,) in query("SELECT DISTINCT event_date::VARCHAR FROM t", lake))
    assert len(dates) > 1  # late events reached earlier dates

    kept = assert_gold_counted_from_silver(lake)
    # The daily close (a date rebuilt from bronze, gold counted from the rebuilt state) changes nothing.
    assert run_date(instance, resources, dates[-1]).success
    assert assert_gold_counted_from_silver(lake) == kept


def test_a_user_reaches_each_funnel_stage_in_order_whatever_order_the_events_arrive_in():
    from assets.clickstream.aggregates import DateAggregates, state_of
    from assets.clickstream.silver import SILVER_ARROW_SCHEMA

    def at(minute: int) -> dt.datetime:
        return NOON + dt.timedelta(minutes=minute)

    journeys = {  # user -> events on one product; expected users per stage (view, click, add to cart, purchase)
        "clicked_before_viewing_then_again": ([("click", 0), ("view", 1), ("click", 2), ("purchase", 3)], (1, 1, 0, 1)),
        "bought_without_a_click": ([("view", 0), ("purchase", 5)], (1, 0, 0, 1)),
        "view_cart_buy": ([("view", 0), ("add_to_cart", 1), ("purchase", 9)], (1, 0, 1, 1)),
        "bought_before_viewing": ([("purchase", 0), ("view", 1)], (1, 0, 0, 0)),
        "clicked_only_before_viewing": ([("click", 0), ("view", 1)], (1, 0, 0, 0)),
        "no_view": ([("click", 0), ("purchase", 1)], (0, 0, 0, 0)),
    }
    rows = [
        {
            "event_datetime": at(minute),
            "event_date": NOON.date(),
            "event_name": name,
            "user_id": user,
            "platform": "web",
            "product_name": "Lamp",
            "SKU": f"SKU-{user}",
            "event_id": f"{user}{name}{minute}".ljust(32, "0")[:32],
        }
        for user, (events, _) in journeys.items()
        for name, minute in events
    ]
    in_order = DateAggregates()
    in_order.merge(state_of(pa.Table.from_pylist(rows, SILVER_ARROW_SCHEMA)).to_pylist(), emit=True)
    # The same events in one-event batches, newest first: the state merges to the same stages.
    reversed_batches = DateAggregates()
    stored = []
    for row in reversed(rows):
        stored += reversed_batches.merge(state_of(pa.Table.from_pylist([row], SILVER_ARROW_SCHEMA)).to_pylist(), True)
    # And what was stored is enough: a restart that loads only the stored rows counts the same.
    restarted = DateAggregates()
    restarted.merge(stored, emit=False)
    for aggregates in (in_order, reversed_batches, restarted):
        funnel = {sku: tuple(counts[:-1]) for sku, counts in aggregates.funnel.items()}
        assert funnel == {f"SKU-{user}": expected for user, (_, expected) in journeys.items()}
