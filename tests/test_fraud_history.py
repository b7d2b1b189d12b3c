"""Fraud history: event-time bounds and partitions from the environment, nothing outside the partitions,
the topics' written contracts, and a year of history imported without Kafka."""

import datetime as dt
import json
import os
import random
import subprocess
import sys
from collections import Counter

import dagster as dg
import pyarrow as pa

from assets.archives import import_file
from assets.fraud import dimensions, history
from assets.fraud.bronze import bronze_fraud_buyer_changes, bronze_fraud_risk_events
from assets.fraud.common import CHANGES_STREAM, EVENTS_STREAM
from assets.fraud.contracts import BUYER_CHANGES, CHECKOUT_EVENTS, reason_code
from assets.fraud.decision import LOADED_RULES, fraud_decision_partition, partition_checks, rebuild_decision_dates
from assets.fraud.names import (
    BOUNDS,
    BRONZE_CHANGES,
    BRONZE_EVENTS,
    DECISION_EVENTS,
    QUARANTINE_CHANGES,
    QUARANTINE_EVENTS,
    SCD2,
    SILVER_EVENTS,
    fraud_daily_partitions,
)
from assets.streaming import MESSAGE_SCHEMA
from demo.fraud import IRREGULAR_REASONS, Buyer, buyer_snapshot, checkout_event, make_buyers, write_history
from demo.fraud import history as fraud_history
from resources import KafkaResource, LakeResource, LandingResource, PseudonymizerResource, WarehouseResource
from tests.conftest import ROOT
from tests.test_fraud import BASE_ASSETS, TRACKED, brute_force_versions, query

NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date().isoformat()
KEY = "test-pseudonymization-key"


def messages(docs: list[dict], topic: str = "t", received: dt.datetime = NOW) -> pa.Table:
    """Kafka records of partition 0 carrying `docs`, received at `received`."""
    n = len(docs)
    return pa.table(
        {
            "topic": [topic] * n,
            "partition": pa.array([0] * n, pa.int32()),
            "offset": list(range(n)),
            "kafka_timestamp": pa.array([received] * n, pa.timestamp("ms", tz="UTC")),
            "key": pa.array([d.get("buyer_id", "").encode() for d in docs], pa.binary()),
            "payload": pa.array([json.dumps(d).encode() for d in docs], pa.binary()),
        },
        schema=MESSAGE_SCHEMA,
    )


def reason_codes(reasons) -> Counter:
    return Counter(reason_code(r) for r in reasons)


def test_events_outside_every_partition_are_quarantined_never_dropped(tmp_path):
    """A checkout before the first partition is filed under a date that is a partition and quarantined there
    as `before_first_partition`; bronze rows already dated before the first partition (written before its
    start was moved later) are taken in by the first partition's rebuild. Every bronze row is accounted for."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    rng = random.Random(4)
    buyer = Buyer("B400001", "DE")
    first = dt.datetime.fromisoformat(BOUNDS.partitions_start).replace(tzinfo=dt.UTC)
    earliest = dt.datetime.fromisoformat(BOUNDS.earliest_event_date).replace(tzinfo=dt.UTC)
    assert earliest < first  # the defaults: buyer records may predate the first partition
    onboarded = buyer_snapshot(rng, buyer, earliest + dt.timedelta(days=1))
    lake.append(BRONZE_CHANGES, CHANGES_STREAM.route(messages([onboarded], "changes")))
    dg.materialize(
        [dimensions.fraud_buyer_dimensions],
        resources={"lake": lake, "pseudonymizer": PseudonymizerResource(key=KEY)},
    )

    before_partitions = checkout_event(rng, buyer, first - dt.timedelta(days=200))
    before_earliest = checkout_event(rng, buyer, earliest - dt.timedelta(days=1))
    on_first_day = checkout_event(rng, buyer, first + dt.timedelta(hours=10))
    routed = EVENTS_STREAM.route(messages([before_partitions, before_earliest, on_first_day], "events"))
    dates = [d.isoformat() for d in routed["event_date"].to_pylist()]
    assert dates == [TODAY, TODAY, BOUNDS.partitions_start]
    keys = set(fraud_daily_partitions.get_partition_keys())
    assert set(dates) <= keys
    lake.append(BRONZE_EVENTS, routed)
    # Written by an earlier release (or under an earlier start): a bronze date that is no partition.
    legacy_day = first - dt.timedelta(days=30)
    legacy = checkout_event(rng, buyer, legacy_day)
    legacy_rows = messages([legacy], "legacy", received=legacy_day).append_column(
        "event_date", pa.array([legacy_day.date()], pa.date32())
    )
    lake.append(BRONZE_EVENTS, legacy_rows)
    assert legacy_day.date().isoformat() not in keys

    builds = rebuild_decision_dates(lake, LOADED_RULES, [TODAY, BOUNDS.partitions_start])
    today, first_day = builds[TODAY], builds[BOUNDS.partitions_start]
    assert reason_codes(today.quarantine["reason"].to_pylist()) == Counter(
        ["before_first_partition", "invalid_value:occurred_at"]
    )
    assert reason_codes(first_day.quarantine["reason"].to_pylist()) == Counter(["before_first_partition"])
    assert first_day.decision["event_id"].to_pylist() == [on_first_day["event_id"]]
    for build in (today, first_day):
        lost = next(c for c in partition_checks(build) if c.name == "nothing_lost_check")
        assert lost.passed, lost.metadata
    # Every bronze row is a decision or quarantined, in a date that is a partition.
    assert sum(b.bronze_rows for b in builds.values()) == sum(lake.count_by_date(BRONZE_EVENTS).values()) == 4
    held = {**lake.count_by_date(DECISION_EVENTS), **lake.count_by_date(QUARANTINE_EVENTS)}
    assert set(held) <= keys


def test_bounds_partitions_and_look_back_are_settings(tmp_path):
    """Read when the code location loads: a history's settings move the partitions back and widen the
    look-back after a buyer change; a wrong value fails the load naming the setting."""
    probe = (
        "from assets.fraud.dimensions import affected_dates; from assets.fraud import names; import datetime as d; "
        "print(names.BOUNDS.partitions_start, names.BOUNDS.earliest_event_date, names.BOUNDS.max_clock_skew, "
        "names.fraud_daily_partitions.start.date(), names.fraud_daily_partitions.end_offset, "
        "len(affected_dates(['2020-01-01'], d.date(2026, 1, 1))))"
    )

    def load(**env: str) -> subprocess.CompletedProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
        return subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=120
        )

    assert load().stdout.split() == ["2024-01-01", "2020-01-01", "5", "minutes", "2024-01-01", "1", "8"]
    history = load(
        FRAUD_PARTITIONS_START="2017-01-01", FRAUD_MAX_CLOCK_SKEW="36 hours", FRAUD_DIMENSION_LOOKBACK_DAYS="400"
    )
    assert history.stdout.split() == ["2017-01-01", "2017-01-01", "36", "hours", "2017-01-01", "2", "400"]
    broken = load(FRAUD_DIMENSION_LOOKBACK_DAYS="a week")
    assert broken.returncode != 0 and "FRAUD_DIMENSION_LOOKBACK_DAYS='a week'" in broken.stderr


def test_messages_breaking_the_contract_are_quarantined_in_its_words(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    rng = random.Random(6)
    buyer = Buyer("B500001", "DE")
    change = buyer_snapshot(rng, buyer, NOW - dt.timedelta(days=2))
    broken_changes = {
        "wrong_type:risk_score (contract: required integer >= 0 and <= 1000)": {"risk_score": "500"},
        "unknown_value:risk_level=severe (contract: required string: one of low, medium, high)": {
            "risk_level": "severe"
        },
        "missing_field:credit_rating (contract: required string)": {"credit_rating": None},
        "invalid_value:total_cost (contract: required number >= 0)": {"total_cost": -1},
        "invalid_value:changed_at (contract: required timestamp: ISO 8601, from FRAUD_EARLIEST_EVENT_DATE to "
        "FRAUD_MAX_CLOCK_SKEW past its arrival)": {"changed_at": "yesterday"},
        "wrong_type:email (contract: optional string)": {"email": 42},
    }
    docs = [change] + [change | {"change_id": f"c{i}"} | edit for i, edit in enumerate(broken_changes.values())]
    lake.append(BRONZE_CHANGES, CHANGES_STREAM.route(messages(docs, "changes")))
    dg.materialize(
        [dimensions.fraud_buyer_dimensions],
        resources={"lake": lake, "pseudonymizer": PseudonymizerResource(key=KEY)},
    )
    assert sorted(lake.scan(QUARANTINE_CHANGES)["reason"].to_pylist()) == sorted(broken_changes)
    assert lake.scan(SCD2)["change_id"].to_pylist() == [change["change_id"]]

    event = checkout_event(rng, buyer, NOW - dt.timedelta(hours=1))
    amount_words = "required number > 0, within its market's min_amount..max_amount (markets.yaml)"
    broken_events = {
        f"wrong_type:order_amount (contract: {amount_words})": {"order_amount": "12.50"},
        f"invalid_value:order_amount (contract: {amount_words})": {"order_amount": 0},
        "wrong_type:payment_terms_days (contract: optional integer >= 0 and <= 365)": {"payment_terms_days": 30.5},
        "invalid_value:line_items (contract: optional integer >= 1 and <= 100000)": {"line_items": 0},
        "missing_field:merchant_id (contract: required string)": {"merchant_id": None},
        "unknown_value:currency=USD (contract: required string: a currency of its market (markets.yaml))": {
            "currency": "USD"
        },
        "unknown_buyer (contract: required string: a buyer with a change on fraud.buyer_changes at or before "
        "`occurred_at`)": {"buyer_id": "B999999"},
        "malformed_json (contract: one UTF-8 JSON object per message)": None,
    }
    # Without a UTC offset, a time is read as UTC.
    local = event | {
        "event_id": "no-offset",
        "occurred_at": (NOW - dt.timedelta(hours=2)).replace(tzinfo=None).isoformat(),
    }
    docs = [event, local] + [
        event | {"event_id": f"e{i}"} | (edit or {}) for i, edit in enumerate(broken_events.values())
    ]
    rows = EVENTS_STREAM.route(messages(docs, "events"))
    malformed = len(docs) - 1
    payloads = rows["payload"].to_pylist()
    payloads[malformed] = payloads[malformed][:-9]
    rows = rows.set_column(rows.schema.get_field_index("payload"), "payload", pa.array(payloads, pa.binary()))
    lake.append(BRONZE_EVENTS, rows)
    builds = rebuild_decision_dates(lake, LOADED_RULES, sorted({d.isoformat() for d in rows["event_date"].to_pylist()}))
    quarantined = [r for b in builds.values() for r in b.quarantine["reason"].to_pylist()]
    assert sorted(quarantined) == sorted(broken_events)
    decided = {r["event_id"]: r["occurred_at"] for b in builds.values() for r in b.decision.to_pylist()}
    assert decided == {
        event["event_id"]: dt.datetime.fromisoformat(event["occurred_at"]),
        "no-offset": dt.datetime.fromisoformat(local["occurred_at"]).replace(tzinfo=dt.UTC),
    }


def test_the_contracts_are_in_the_readme_and_the_raw_assets_descriptions():
    readme = (ROOT / "README.md").read_text()
    for contract, asset in ((CHECKOUT_EVENTS, bronze_fraud_risk_events), (BUYER_CHANGES, bronze_fraud_buyer_changes)):
        assert contract.markdown() in readme
        (description,) = asset.descriptions_by_key.values()
        assert description.endswith(contract.markdown())
        assert contract.topic in description.split("**Topic")[0]  # the docstring comes first


def _run_import(instance, resources: dict) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [history.fraud_history_import, *BASE_ASSETS, fraud_decision_partition],
        selection=["fraud_history_import"],
        run_config={"ops": {"fraud_history_import": {"config": {"folder": "archive"}}}},
        resources=resources,
        instance=instance,
    )
    assert result.success
    return result


def _import_materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    (materialization,) = [
        m
        for m in result.asset_materializations_for_node("fraud_history_import")
        if m.asset_key == dg.AssetKey("fraud_history_import")
    ]
    return materialization


def test_a_year_of_history_is_imported_in_one_run_as_if_each_date_had_run(tmp_path):
    """365 dates of checkouts (empty days among them) and buyers changing several times, landed as CSV and
    NDJSON and imported in one run: every event in its own date's partition, every SCD2 version with its
    own validity, the as-of enrichment right, nothing lost per date; importing again adds nothing."""
    buyers = make_buyers(6, seed=21)
    end = NOW.date() - dt.timedelta(days=1)
    changes, events = fraud_history(buyers, end=end, days=365, seed=21)
    landing = LandingResource(root=str(tmp_path / "landing"))
    write_history(landing, "archive", changes, [e for e, _ in events])
    lake = LakeResource(root=str(tmp_path / "lake"))
    resources = {
        "lake": lake,
        "landing": landing,
        "warehouse": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
        "pseudonymizer": PseudonymizerResource(key=KEY),
        "kafka": KafkaResource(bootstrap_servers="127.0.0.1:1"),  # not used: no Kafka on this path
    }
    valid = {e["event_id"]: e for e, kind in events if kind == "valid"}
    days_with_events = {e["occurred_at"][:10] for e in valid.values()}
    assert len(days_with_events) > 250 and len(days_with_events) < 365 - 50  # empty days among them
    assert all(sum(c["buyer_id"] == b.buyer_id for c in changes) >= 4 for b in buyers)  # several changes each

    with dg.DagsterInstance.ephemeral() as instance:
        result = _run_import(instance, resources)
        imported = _import_materialization(result)
        assert imported.metadata["dagster/row_count"].value == len(changes) + len(events)

        # Every event in its own date's partition, exactly once.
        decided = query(lake, DECISION_EVENTS, "SELECT event_id, event_date::VARCHAR, occurred_at FROM t")
        assert {e for e, *_ in decided} == set(valid) and len(decided) == len(valid)
        assert all(d == valid[e]["occurred_at"][:10] == o.date().isoformat() for e, d, o in decided)
        irregular = Counter(IRREGULAR_REASONS[k] for _, k in events if k in IRREGULAR_REASONS)
        assert reason_codes(r for (r,) in query(lake, QUARANTINE_EVENTS, "SELECT reason FROM t")) == irregular

        # Every SCD2 version the history holds, each with its own validity; one current row per buyer.
        rows = query(lake, SCD2, f"SELECT buyer_id, valid_from, {', '.join(TRACKED)} FROM t ORDER BY 1, 2")
        versions: dict[str, list[tuple]] = {}
        for buyer, valid_from, *attrs in rows:
            versions.setdefault(buyer, []).append((valid_from, tuple(attrs)))
        assert versions == brute_force_versions(changes)
        assert all(len(v) >= 3 for v in versions.values())
        assert query(
            lake,
            SCD2,
            "SELECT count(*) FILTER (is_current), count(DISTINCT buyer_id), count(*) FILTER (valid_to <= valid_from), "
            "count(*) FILTER (NOT is_current AND valid_to IS DISTINCT FROM next_from) FROM "
            "(SELECT *, lead(valid_from) OVER (PARTITION BY buyer_id ORDER BY valid_from) AS next_from FROM t)",
        ) == [(len(buyers), len(buyers), 0, 0)]

        # As of each event's time: the version valid then.
        enriched = query(lake, DECISION_EVENTS, f"SELECT buyer_id, occurred_at, {', '.join(TRACKED)} FROM t")
        for buyer, occurred_at, *attrs in enriched:
            assert tuple(attrs) == [v for v in versions[buyer] if v[0] <= occurred_at][-1][1], (buyer, occurred_at)

        # Nothing lost, per date: one passing evaluation for each date the history reached.
        key = dg.AssetCheckKey(dg.AssetKey("quarantine_fraud_risk_events"), "nothing_lost_check")
        history_records = instance.event_log_storage.get_asset_check_execution_history(key, limit=1000)
        evaluations = {r.partition: r.evaluation.passed for r in history_records if r.evaluation}
        dates = {d for _, d, _ in decided} | set(lake.count_by_date(QUARANTINE_EVENTS))
        assert evaluations == dict.fromkeys(dates, True)

        # Importing again adds nothing and rebuilds nothing.
        before = {t: lake.version(t) for t in (BRONZE_CHANGES, BRONZE_EVENTS, SILVER_EVENTS, DECISION_EVENTS, SCD2)}
        again = _import_materialization(_run_import(instance, resources))
        assert again.metadata["dagster/row_count"].value == 0 and again.metadata["dates"].value == 0
        assert {t: lake.version(t) for t in before} == before


def test_an_import_that_stopped_after_bronze_is_finished_by_the_next_one(tmp_path):
    buyers = make_buyers(2, seed=22)
    changes, events = fraud_history(buyers, end=NOW.date() - dt.timedelta(days=1), days=20, seed=22)
    landing = LandingResource(root=str(tmp_path / "landing"))
    keys = write_history(landing, "archive", changes, [e for e, _ in events])
    lake = LakeResource(root=str(tmp_path / "lake"))
    # The first run got every file into bronze, then died before the dimensions.
    now_ms = int(NOW.timestamp() * 1000)
    for key in keys:
        changes_file = "/buyer_changes/" in key
        stream, contract = (CHANGES_STREAM, BUYER_CHANGES) if changes_file else (EVENTS_STREAM, CHECKOUT_EVENTS)
        import_file(
            lake, stream.bronze_table, key, landing.read(key), history.message_sql(contract), stream.route, now_ms
        )
    assert lake.table(SCD2) is None and lake.table(SILVER_EVENTS) is None
    resources = {
        "lake": lake,
        "landing": landing,
        "warehouse": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
        "pseudonymizer": PseudonymizerResource(key=KEY),
        "kafka": KafkaResource(bootstrap_servers="127.0.0.1:1"),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        finished = _import_materialization(_run_import(instance, resources))
        assert finished.metadata["dagster/row_count"].value == 0 and finished.metadata["dates"].value > 0
        valid = {e["event_id"] for e, kind in events if kind == "valid"}
        assert {r for (r,) in query(lake, DECISION_EVENTS, "SELECT event_id FROM t")} == valid
        assert query(lake, SCD2, "SELECT count(DISTINCT buyer_id) FROM t") == [(2,)]
        assert _import_materialization(_run_import(instance, resources)).metadata["dates"].value == 0  # settled
