"""Clickstream history: archives imported into bronze -> silver -> gold without Kafka, the vocabulary and
the event-time bounds as configuration."""

import csv
import datetime as dt
import io
import json
import random

import dagster as dg
import pyarrow as pa
import pytest

from assets.clickstream import history
from assets.clickstream.config import ClickstreamConfigError, EventTimeBounds, load_config
from assets.clickstream.names import BRONZE_TABLE, QUARANTINE_TABLE, SILVER_TABLE
from assets.clickstream.parsing import parse_messages, parse_sql
from assets.clickstream.silver import route_messages
from assets.streaming import MESSAGE_SCHEMA
from demo.clickstream import event
from resources import KafkaResource, LandingResource
from tests.clickstream_pipeline import ASSETS, CHECKS, data_files, query

TODAY = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _messages(payloads: list[bytes], received: dt.datetime = TODAY) -> pa.Table:
    n = len(payloads)
    return pa.table(
        {
            "topic": ["t"] * n,
            "partition": pa.array([0] * n, pa.int32()),
            "offset": list(range(n)),
            "kafka_timestamp": pa.array([received] * n, pa.timestamp("ms", tz="UTC")),
            "key": pa.nulls(n, pa.binary()),
            "payload": pa.array(payloads, pa.binary()),
        },
        schema=MESSAGE_SCHEMA,
    )


def test_event_time_bounds_and_first_partition_come_from_configuration():
    from assets.clickstream.config import CONFIG

    old = json.dumps(event(dt.datetime(2017, 11, 25, 8, tzinfo=dt.UTC), "view", "u", "web", None)).encode()
    ahead = json.dumps(event(TODAY + dt.timedelta(hours=3), "view", "u", "web", None)).encode()
    live = EventTimeBounds("2023-01-01", "2023-01-01", "1 hour")  # the defaults: a live stream
    history_bounds = EventTimeBounds("2017-01-01", "2017-01-01", "6 hours")
    misconfigured = EventTimeBounds("2018-01-01", "2017-01-01", "1 hour")  # accepts events before the partitions

    def routed(bounds):
        rows = parse_messages(_messages([old, ahead]), sql=parse_sql(bounds, CONFIG)).to_pylist()
        return [(r["structural_error"], r["event_date"].isoformat()) for r in rows]

    today = TODAY.date().isoformat()
    assert routed(live) == [("absurd_timestamp", today), ("absurd_timestamp", today)]
    assert routed(history_bounds) == [(None, "2017-11-25"), (None, today)]
    # Never outside every partition: quarantined with the reason, filed under a date that is a partition.
    assert routed(misconfigured)[0] == ("before_first_partition", today)


def test_the_vocabulary_translates_synonyms_and_quarantines_unknown_values_with_the_value():
    docs = [
        {"timestamp": TODAY.isoformat(), "event_name": name, "user_identifiers": {"id": "u", "platform": platform}}
        for name, platform in [
            ("pv", "web"),
            ("cart", "ios"),
            ("buy", None),
            ("fav", "web"),
            ("hover", "web"),
            ("view", "fridge"),
        ]
    ]
    rows = route_messages(_messages([json.dumps(d).encode() for d in docs], TODAY + dt.timedelta(hours=1)))
    assert [(r["event_name"], r["reason"]) for r in rows.to_pylist()] == [
        ("view", None),
        ("add_to_cart", None),
        ("purchase", None),
        ("favourite", None),
        ("hover", "unknown_value:event_name=hover"),
        ("view", "unknown_value:platform=fridge"),
    ]


def test_a_broken_configuration_fails_the_load_with_the_entry_at_fault(tmp_path):
    from assets.clickstream.config import DEFAULT_CONFIG_PATH

    good = DEFAULT_CONFIG_PATH.read_text()
    cases = [  # (edit, what the error says)
        (("view: [pv, page_view]", "view: [pv, cart]"), "'cart' means both"),
        (("events: [purchase]}", "events: [checkout]}"), "unknown event names ['checkout']"),
        (("events: [purchase]}", "events: [purchase], optional: true}"), "the first and last stage are required"),
        (("timestamp_unit: s", "timestamp_unit: days"), "timestamp_unit must be s or ms"),
    ]
    for (old, new), message in cases:
        path = tmp_path / "clickstream.yaml"
        path.write_text(good.replace(old, new))
        with pytest.raises(ClickstreamConfigError, match=str(path)) as error:
            load_config(path)
        assert message in str(error.value)
    # A change of the file is a new code version of silver and gold.
    path.write_text(good.replace("fav]", "fav, favorite]"))
    assert load_config(path).content_hash != load_config(DEFAULT_CONFIG_PATH).content_hash


def _year_of_history(seed: int = 5) -> tuple[list[dict], list[str]]:
    """A year of events ending yesterday, on many dates with empty days among them (every fifth day and a
    whole fortnight): journeys of a store whose events are view, cart and purchase, without clicks."""
    rng = random.Random(seed)
    start = TODAY - dt.timedelta(days=365)
    events, dates = [], []
    for day in range(365):
        date = start + dt.timedelta(days=day)
        if day % 5 == 0 or 100 <= day < 114:
            continue
        dates.append(date.date().isoformat())
        for j in range(rng.randint(3, 12)):
            at = date + dt.timedelta(seconds=rng.randrange(0, 86_000))
            user, sku = f"user_{rng.randrange(50)}", f"SKU-{rng.randrange(20)}"
            for k, name in enumerate(["view", "cart", "purchase"][: rng.randint(1, 3)]):
                events.append({"ts": at + dt.timedelta(seconds=k), "name": name, "user": user, "sku": sku, "n": j})
    return events, dates


def _run_import(instance, resources, landing, folder: str, mapping: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [history.clickstream_history_import, *ASSETS, *CHECKS],
        selection=["clickstream_history_import"],
        run_config={"ops": {"clickstream_history_import": {"config": {"folder": folder, "mapping": mapping}}}},
        resources=resources | {"landing": landing},
        instance=instance,
    )


def test_a_year_of_history_is_imported_into_its_own_dates_exactly_once(lake, warehouse, instance, tmp_path):
    events, dates = _year_of_history()
    landing = LandingResource(root=str(tmp_path / "landing"))
    # Half as the stream's own NDJSON messages, half as a store's CSV export with its own event names.
    half = len(events) // 2
    ndjson = b"".join(
        json.dumps(
            event(
                e["ts"],
                {"cart": "add_to_cart", "purchase": "buy"}.get(e["name"], e["name"]),
                e["user"],
                "web",
                (e["sku"], "Lamp"),
            )
        ).encode()
        + b"\n"
        for e in events[:half]
    )
    ndjson += b"{not json\n"  # a broken line is quarantined, not lost
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["event_time", "event_type", "product_id", "category_code", "user_id"])
    for e in events[half:]:
        writer.writerow([e["ts"].strftime("%Y-%m-%d %H:%M:%S UTC"), e["name"], e["sku"], "lamp", e["user"]])
    landing.put(ndjson, "archive/events/2025.ndjson")
    landing.put(out.getvalue().encode(), "archive/store/2025.csv")
    # No broker: the import never passes through Kafka (the stream's asset beside it only needs its settings).
    resources = {"lake": lake, "warehouse": warehouse, "kafka": KafkaResource(bootstrap_servers="127.0.0.1:1")}

    assert _run_import(instance, resources, landing, "archive/events", "events").success
    result = _run_import(instance, resources, landing, "archive/store", "store_csv")
    assert result.success

    # Every event in its own date's partition; the empty days stay empty.
    got = query("SELECT event_date::VARCHAR, count(*) FROM t GROUP BY 1 ORDER BY 1", lake)
    expected: dict[str, int] = {}
    for e in events:
        expected[e["ts"].date().isoformat()] = expected.get(e["ts"].date().isoformat(), 0) + 1
    assert dict(got) == expected and sorted(expected) == dates
    assert query("SELECT count(*) FROM t WHERE event_name NOT IN ('view', 'add_to_cart', 'purchase')", lake) == [(0,)]
    assert query("SELECT reason, count(*) FROM t GROUP BY 1", lake, QUARANTINE_TABLE) == [("malformed_json", 1)]
    # The nothing-lost check passed on every date the import reached.
    key = dg.AssetCheckKey(dg.AssetKey("quarantine_clickstream_events"), "nothing_lost_check")
    evaluations = [
        r.evaluation
        for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=1000)
        if r.evaluation is not None
    ]
    # (every date with events, and today: the broken line's, filed under the day it was received)
    assert {e.partition for e in evaluations} == {*dates, TODAY.date().isoformat()}
    assert all(e.passed for e in evaluations)
    # A purchase after a view counts without a click (view, optional click, optional cart, purchase).
    funnel = dict(query("SELECT stage, sum(users) FROM t GROUP BY 1", lake, "gold/clickstream_product_funnel"))
    assert funnel["purchase"] > 0 and funnel["click"] == 0

    # Importing the same files again adds nothing anywhere.
    files = {t: data_files(lake, t) for t in (BRONZE_TABLE, SILVER_TABLE)}
    again = _run_import(instance, resources, landing, "archive/store", "store_csv")
    assert again.success
    assert {t: data_files(lake, t) for t in (BRONZE_TABLE, SILVER_TABLE)} == files
    assert query("SELECT count(*) FROM t", lake) == [(len(events),)]


def test_every_parsed_row_stays_with_its_own_message():
    # Several record batches (one per Kafka partition), events of many dates: each message's date and
    # fields must be its own, whatever order a parallel scan returns the rows in.
    rng = random.Random(3)
    batches = []
    for _ in range(3):
        at = [TODAY - dt.timedelta(days=rng.randrange(30), seconds=rng.randrange(86_400)) for _i in range(20_000)]
        payloads = [json.dumps(event(t, "view", f"u{i}", "web", None)).encode() for i, t in enumerate(at)]
        batches += _messages(payloads, TODAY + dt.timedelta(hours=1)).to_batches()
    messages = pa.Table.from_batches(batches)
    for row in route_messages(messages).select(["payload", "event_date", "user_id"]).to_pylist():
        doc = json.loads(row["payload"])
        assert (row["event_date"].isoformat(), row["user_id"]) == (doc["timestamp"][:10], doc["user_identifiers"]["id"])


def test_a_configuration_change_shows_imported_partitions_stale(lake, warehouse, instance, tmp_path):
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    from assets.clickstream.gold import clickstream_gold
    from assets.clickstream.silver import clickstream_silver

    landing = LandingResource(root=str(tmp_path / "landing"))
    day = TODAY - dt.timedelta(days=3)
    landing.put(json.dumps(event(day, "pv", "u", "web", ("SKU-1", "Lamp"))).encode() + b"\n", "a/one.ndjson")
    resources = {"lake": lake, "warehouse": warehouse, "kafka": KafkaResource(bootstrap_servers="127.0.0.1:1")}
    assert _run_import(instance, resources, landing, "a", "events").success

    def status(code_version: str | None = None) -> dict[str, StaleStatus]:
        assets = [clickstream_silver, clickstream_gold]
        if code_version:  # what the code location would say after an edit of assets/clickstream/clickstream.yaml
            assets = [a.map_asset_specs(lambda s: s.replace_attributes(code_version=code_version)) for a in assets]
        resolver = get_stale_status_resolver(instance, [*ASSETS[:1], *assets])  # type: ignore[list-item]
        keys = ["silver_clickstream_events", "gold_clickstream_product_funnel"]
        return {k: resolver.get_status(dg.AssetKey(k), day.date().isoformat()) for k in keys}

    assert set(status().values()) == {StaleStatus.FRESH}  # the import's materializations carry the code version
    assert set(status("2-another-hash").values()) == {StaleStatus.STALE}


def test_an_import_that_stopped_after_bronze_is_finished_by_the_next_one(lake, warehouse, instance, tmp_path):
    from assets.clickstream.config import CONFIG

    landing = LandingResource(root=str(tmp_path / "landing"))
    day = TODAY - dt.timedelta(days=40)
    data = json.dumps(event(day, "view", "u", "web", ("SKU-1", "Lamp"))).encode() + b"\n"
    landing.put(data, "a/one.ndjson")
    # The first run got its records into bronze, then died before silver.
    history.import_file(lake, "a/one.ndjson", data, CONFIG.imports["events"], int(TODAY.timestamp() * 1000))
    assert query("SELECT count(*) FROM t", lake, BRONZE_TABLE) == [(1,)] and lake.table(SILVER_TABLE) is None
    resources = {"lake": lake, "warehouse": warehouse, "kafka": KafkaResource(bootstrap_servers="127.0.0.1:1")}
    assert _run_import(instance, resources, landing, "a", "events").success
    assert query("SELECT event_date::VARCHAR, user_id FROM t", lake) == [(day.date().isoformat(), "u")]
    assert query("SELECT users FROM t WHERE stage = 'view'", lake, "gold/clickstream_product_funnel") == [(1,)]
    assert query("SELECT count(*) FROM t", lake, BRONZE_TABLE) == [(1,)]
    files = data_files(lake, SILVER_TABLE)
    assert _run_import(instance, resources, landing, "a", "events").success
    assert data_files(lake, SILVER_TABLE) == files  # settled (gold holds the file's token): nothing rebuilt


def test_the_event_identity_is_the_sources_own_id_where_configured(tmp_path):
    import dataclasses

    from assets.clickstream.config import BOUNDS, CONFIG
    from assets.clickstream.silver import split_routed

    base = event(TODAY, "view", "u", "web", ("SKU-1", "Lamp"))
    # Two identical views by one user in the same second from two sessions, and one of them sent twice.
    payloads = [json.dumps(base | {"event_id": i}).encode() for i in ("s1-1", "s2-1", "s1-1")]
    received = TODAY + dt.timedelta(minutes=1)
    by_content = split_routed(route_messages(_messages(payloads, received)))
    assert (by_content.silver.num_rows, by_content.duplicates.num_rows) == (1, 2)
    with_ids = dataclasses.replace(CONFIG, event_id_field="event_id")
    by_id = split_routed(route_messages(_messages(payloads, received), parse_sql(BOUNDS, with_ids)))
    assert (by_id.silver.num_rows, by_id.duplicates.num_rows) == (2, 1)
