"""Fraud decision data benchmarks.

    python -m bench.bench_fraud [--events 1000000] [--dimension-rows 100000] [--partition-events 200000]
    python -m bench.bench_fraud --dagster-dev [--latency-only] [--latency-events 300]  # + end-to-end latency

1. Enrichment: the decision dataset's as-of enrichment (the production `enrich_events`: ASOF join,
   market rules, SCD1 pseudonyms, decision rows in Arrow) of `--events` silver events against a
   `--dimension-rows` SCD2 dimension, on one core (process pinned, DuckDB threads=1).
2. A whole decision partition from bronze: JSON parsing, market rules, dedup, quarantine, enrichment.
   Then the live path's cost per micro-batch (`LiveDecisionWriter`: check, dedup against the held ids,
   enrich, append to three Delta tables, merge the serving table) into that date once it is full, beside
   the same batches into an empty date: it must not grow with the date.
3. Lookup latency of `BuyerFeatureLookup.get` over the serving table built from (1).
4. With --dagster-dev: seconds from an event produced to Kafka to its row in the decision dataset, with
   `dagster dev` running the real sensors and jobs against a fresh broker: events at a steady rate
   (crossing a live run's hand-off to its successor), the cold start (first event, no live run) apart.
"""

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pyarrow as pa

from assets.fraud.common import partition_dates_by, replace_table
from assets.fraud.decision import DIMENSION_SQL, enrich_events, rebuild_decision_dates
from assets.fraud.live import LiveDecisionWriter
from assets.fraud.names import (
    BRONZE_CHANGES,
    BRONZE_EVENTS,
    CHANGES_TOPIC,
    DECISION_EVENTS,
    EVENTS_TOPIC,
    LATEST_FEATURES,
    QUARANTINE_EVENTS,
    SCD1,
    SCD2,
)
from assets.fraud.rules import load_rules
from assets.fraud.serving import BuyerFeatureLookup, latest_features
from assets.streaming import MESSAGE_SCHEMA, Batch
from bench.common import ROOT, free_port, kafka_broker, peak_rss_mib, pin_to_one_core, report, stop_dagster_dev
from demo.fraud import checkout_event, generate_changes, generate_events, make_buyers, produce
from resources import KafkaResource, LakeResource, WarehouseResource
from resources.warehouse import engine

VERSIONS_PER_BUYER = 4
SYNTHETIC_SQL = """
CREATE TABLE scd2 AS
WITH v AS (
    SELECT 'B' || (100000 + b) AS buyer_id, v + 1 AS version,
        TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds((v * 3888000 + hash(b, v) % 3000000)::BIGINT) AS valid_from,
        (hash(b, v, 1) % 1001)::INTEGER AS risk_score
    FROM range($buyers) t(b), range($versions) s(v)
)
SELECT buyer_id, version,
    ['AAA', 'AA', 'A', 'BBB', 'BB', 'B', 'CCC'][1 + (hash(buyer_id, version) % 7)::BIGINT] AS credit_rating,
    (hash(buyer_id, version, 2) % 25000000) / 100.0 AS total_cost, risk_score,
    CASE WHEN risk_score < 400 THEN 'low' WHEN risk_score < 700 THEN 'medium' ELSE 'high' END AS risk_level,
    ['approved', 'pending', 'rejected'][1 + (hash(buyer_id, version, 3) % 3)::BIGINT] AS approval_status,
    valid_from, lead(valid_from) OVER (PARTITION BY buyer_id ORDER BY valid_from) AS valid_to,
    valid_to IS NULL AS is_current
FROM v;
CREATE TABLE scd1 AS SELECT buyer_id, md5(buyer_id || 'n') AS name_pseudonym, md5(buyer_id || 'e') AS email_pseudonym,
    md5(buyer_id || 'c') AS contact_person_pseudonym, md5(buyer_id || 'a') AS address_pseudonym
FROM scd2 WHERE is_current;
CREATE TABLE silver AS
SELECT md5(i::VARCHAR) AS event_id, md5(i::VARCHAR || 'd') AS delivery_id,
    TIMESTAMPTZ '2026-01-02 00:00:00+00' + to_seconds((hash(i) % 15000000)::BIGINT) AS occurred_at,
    DATE '2026-01-02' AS event_date, ['DE', 'AT', 'NL', 'FR', 'GB'][1 + (hash(i, 1) % 5)::BIGINT] AS market,
    'B' || (100000 + hash(i, 2) % $buyers) AS buyer_id, 'M' || (1000 + hash(i, 3) % 400) AS merchant_id,
    'O' || i AS order_id, 1 + (hash(i, 4) % 500000) / 100.0 AS order_amount, 'EUR' AS currency,
    'invoice' AS payment_method, 30 AS payment_terms_days, 3 AS line_items, 'online' AS channel,
    'fraud.checkout_risk_events' AS topic, (i % 3)::INTEGER AS "partition", i AS "offset",
    TIMESTAMPTZ '2026-01-02 00:00:00+00' AS kafka_timestamp
FROM range($events) t(i);
"""


ASOF_ONLY_SQL = """
SELECT count(d.version) FROM silver s
ASOF LEFT JOIN scd2 d ON s.buyer_id = d.buyer_id AND s.occurred_at >= d.valid_from
"""
ASOF_ATTRIBUTES_SQL = """
SELECT s.event_id, d.version, d.valid_from, d.credit_rating, d.total_cost, d.risk_score, d.risk_level,
    d.approval_status
FROM silver s ASOF LEFT JOIN scd2 d ON s.buyer_id = d.buyer_id AND s.occurred_at >= d.valid_from
"""
# The enrichment as it was until November 2026 (every event column carried through the ASOF join, all
# joins per event), kept as a reference for the late-materialized production enrichment.
WIDE_ASOF_SQL = """
SELECT s.*,
    d.version AS buyer_version, d.valid_from AS buyer_version_valid_from,
    d.credit_rating, d.total_cost, d.risk_score, d.risk_level, d.approval_status,
    CASE WHEN d.risk_score >= r.high_threshold THEN 'high'
         WHEN d.risk_score >= r.medium_threshold THEN 'medium' ELSE 'low' END AS market_risk_level,
    p.name_pseudonym AS buyer_name_pseudonym, p.email_pseudonym AS buyer_email_pseudonym,
    p.contact_person_pseudonym AS buyer_contact_person_pseudonym,
    p.address_pseudonym AS buyer_address_pseudonym,
    'bench'::VARCHAR AS rules_version
FROM silver s
ASOF LEFT JOIN scd2 d ON s.buyer_id = d.buyer_id AND s.occurred_at >= d.valid_from
LEFT JOIN market_rules r ON r.market = s.market
LEFT JOIN scd1 p ON p.buyer_id = s.buyer_id
"""


def _best_of(runs: int, work) -> tuple[list[float], object]:
    timings, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        timings.append(time.perf_counter() - started)
    return timings, result


def enrichment(events: int, dimension_rows: int):
    """Seconds (best of 5, median kept) for the as-of enrichment of `events` against `dimension_rows`
    versions: the join alone, the join delivering the SCD2 attributes, and the production enrichment
    (`enrich_events`) from the silver table as the partition build holds it (sorted, in Arrow) to the
    decision rows in Arrow, plus the unknown-buyer rows."""
    conn = engine()
    conn.execute("SET threads = 1")
    buyers = dimension_rows // VERSIONS_PER_BUYER
    sql = SYNTHETIC_SQL.replace("$buyers", str(buyers)).replace("$versions", str(VERSIONS_PER_BUYER))
    conn.execute(sql.replace("$events", str(events)))
    for name, table in load_rules().tables().items():
        conn.register(name, table)
    export_s, silver = _best_of(
        3, lambda: conn.execute("SELECT * FROM silver ORDER BY occurred_at, event_id").to_arrow_table()
    )
    # One row per buyer version with its SCD1 data: computed once per dimension version (the live run
    # keeps it while the dimensions do not change), not per enrichment.
    versions = conn.execute(DIMENSION_SQL).to_arrow_table()
    rows = []
    for label, work in (
        ("ASOF JOIN alone (count of matched versions)", lambda: conn.execute(ASOF_ONLY_SQL).fetchall()),
        (
            "ASOF JOIN -> SCD2 attributes per event, to Arrow",
            lambda: conn.execute(ASOF_ATTRIBUTES_SQL).to_arrow_table(),
        ),
        (
            "reference: the former enrichment SQL (every event column through the ASOF join), to Arrow",
            lambda: conn.execute(WIDE_ASOF_SQL).to_arrow_table(),
        ),
        (
            "production enrichment (enrich_events: decision rows, all columns + SCD1 + rules), to Arrow",
            lambda: enrich_events(conn, silver, versions, "bench"),
        ),
    ):
        timings, result = _best_of(5, work)
        rows.append(
            {
                "step": f"{label}, {events:,} x {dimension_rows:,}",
                "seconds": min(timings),
                "median_s": statistics.median(timings),
                "rows_per_s": events / min(timings),
            }
        )
    decision, unknown = result  # type: ignore[misc]
    rows[-1]["note"] = f"{decision.num_rows:,} events matched a version, {unknown.num_rows:,} did not"
    rows.append(
        {
            "step": "  before it, not counted: silver sorted to Arrow (written as the silver dataset anyway)",
            "seconds": min(export_s),
            "median_s": statistics.median(export_s),
        }
    )
    return rows, conn, decision


def _bronze(messages, start_offset: int = 0, now: dt.datetime | None = None) -> pa.Table:
    values = [v for _, v, *_ in messages]
    table = pa.table(
        {
            "topic": ["t"] * len(values),
            "partition": [0] * len(values),
            "offset": list(range(start_offset, start_offset + len(values))),
            "kafka_timestamp": [now or dt.datetime.now(dt.UTC)] * len(values),
            "key": [None] * len(values),
            "payload": values,
        },
        schema=MESSAGE_SCHEMA,
    )
    return table


def partition_build(events: int, batch_events: int = 5000, batches: int = 5) -> list[dict]:
    """Seconds for one decision date built from `events` bronze messages (parse, validate, dedup,
    quarantine, enrich, replace in the Delta tables), with a real SCD2 dimension of 5,000 buyers; then
    the live writer's seconds per `batch_events` micro-batch into an empty date and into that full date."""
    day = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    buyers = make_buyers(5000, seed=2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fraud-") as root:
        lake = LakeResource(root=f"{root}/lake")
        warehouse = WarehouseResource(database=f"{root}/warehouse.duckdb")
        now = dt.datetime.now(dt.UTC)
        from assets.fraud.dimensions import build_dimensions  # the production dimension build
        from resources import PseudonymizerResource

        changes = _bronze(generate_changes(buyers, start=day - dt.timedelta(days=2), span=dt.timedelta(hours=20)))
        lake.append(BRONZE_CHANGES, partition_dates_by("changed_at", partitioned=False)(changes))
        dims = build_dimensions(lake, PseudonymizerResource(key="bench"))
        for table, built in ((SCD1, dims.scd1), (SCD2, dims.scd2)):
            replace_table(lake, table, built)
        messages = list(generate_events(events, buyers, start=day, span=dt.timedelta(hours=20), seed=2, now=now))
        lake.append(BRONZE_EVENTS, partition_dates_by("occurred_at")(_bronze(messages, now=now)))
        started = time.perf_counter()
        build = rebuild_decision_dates(lake, load_rules(), [day.date().isoformat()])[day.date().isoformat()]
        seconds = time.perf_counter() - started
        rows.append(
            {
                "step": f"decision date rebuilt from bronze (Delta replace), {events:,} messages",
                "seconds": seconds,
                "rows_per_s": events / seconds,
                "note": f"{build.decision.num_rows:,} decisions, {build.duplicates:,} duplicates, "
                f"{build.quarantine.num_rows:,} quarantined; SCD2 {dims.scd2.num_rows:,} rows",
            }
        )
        offset = events
        for label, start in (("an empty date", day + dt.timedelta(days=1)), (f"a date of {events:,}", day)):
            writer = LiveDecisionWriter(lake, warehouse, load_rules())
            timings = []
            for b in range(batches + 1):
                batch_messages = generate_events(
                    batch_events, buyers, start=start, span=dt.timedelta(hours=20), seed=100 + b + offset, now=now
                )
                routed = partition_dates_by("occurred_at")(_bronze(list(batch_messages), offset, now))
                batch = Batch("t", {0: (offset, offset + batch_events - 1)}, routed)
                lake.append(BRONZE_EVENTS, routed, tokens={"t/0": offset + batch_events - 1})
                offset += batch_events
                started = time.perf_counter()
                writer(batch)
                if b:  # the first batch of a run loads the held state: reported apart
                    timings.append(time.perf_counter() - started)
                else:
                    first_s = time.perf_counter() - started
            rows.append(
                {
                    "step": f"live micro-batch of {batch_events:,} into {label}, median of {batches}",
                    "seconds": statistics.median(timings),
                    "rows_per_s": batch_events / statistics.median(timings),
                    "note": f"first batch of the run (loads held ids, feature window, dimensions): {first_s:.2f} s",
                }
            )
    return rows


def lookups(conn, decision: pa.Table, count: int = 200_000) -> list[dict]:
    """Latency of the serving lookup over the serving table built from the enriched events."""
    scd2 = conn.execute("SELECT * FROM scd2").to_arrow_table()
    table = latest_features(decision, scd2, dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as root:
        lake = LakeResource(root=root)
        lake.append(LATEST_FEATURES, table)
        lookup = BuyerFeatureLookup(lake)
        started = time.perf_counter()
        lookup.get("warm-up")
        load_s = time.perf_counter() - started
        keys = table["buyer_id"].to_pylist()
        rng = random.Random(1)
        timings = []
        for _ in range(count):
            key = rng.choice(keys)
            started = time.perf_counter()
            lookup.get(key)
            timings.append(time.perf_counter() - started)
    timings.sort()
    return [
        {"step": f"serving table load ({table.num_rows:,} buyers)", "seconds": load_s},
        {
            "step": f"lookup p50 over {count:,} gets",
            "seconds": timings[len(timings) // 2],
            "note": f"{timings[len(timings) // 2] * 1e6:.1f} us",
        },
        {
            "step": "lookup p99",
            "seconds": timings[int(len(timings) * 0.99)],
            "note": f"{timings[int(len(timings) * 0.99)] * 1e6:.1f} us",
        },
    ]


def dagster_dev_latency(count: int, interval_s: float) -> list[dict]:
    """Produce `count` events `interval_s` apart while `dagster dev` runs the sensors; seconds from each
    acknowledged produce to the first moment its row is readable in the decision dataset."""
    with (
        kafka_broker() as bootstrap,
        tempfile.TemporaryDirectory(prefix="bench-dagster-", ignore_cleanup_errors=True) as root,
    ):
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            **{f"KAFKA_{name}": "" for name in ("SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD", "SSL_CAFILE")},
            "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "LAKE_ROOT": f"{root}/lake",
            "DUCKDB_DATABASE": f"{root}/warehouse.duckdb",
            "DAGSTER_HOME": f"{root}/dagster",
            "PSEUDONYMIZATION_KEY": "bench-key",
            # The code location runs tools from the virtualenv (dbt for the warehouse domain).
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        }
        Path(env["DAGSTER_HOME"]).mkdir()
        shutil.copy(ROOT / "platform" / "dagster.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
        kafka, lake = KafkaResource(bootstrap_servers=bootstrap), LakeResource(root=env["LAKE_ROOT"])
        for topic in (CHANGES_TOPIC, EVENTS_TOPIC):
            kafka.ensure_topic(topic, 3)
        port = free_port()
        log_path = Path(tempfile.gettempdir()) / "bench_fraud_dagster_dev.log"  # kept for a post-mortem
        log = open(log_path, "w")  # noqa: SIM115 - closed with the process below
        server = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2), 180, "dagster dev")
            now = dt.datetime.now(dt.UTC)
            buyers = make_buyers(200, seed=4)
            produce(
                kafka,
                CHANGES_TOPIC,
                generate_changes(buyers, start=now - dt.timedelta(hours=1), span=dt.timedelta(minutes=30), seed=4),
            )
            _wait(lambda: _require(lake.table(SCD2)), 180, "the buyer dimensions")
            today = dt.datetime.now(dt.UTC).date().isoformat()
            # The changes re-enrich the dates they touch (today included) in date runs: wait for those.
            _wait(lambda: _require(today in lake.count_by_date(DECISION_EVENTS, [today])), 300, "date runs")
            _wait(lambda: _no_active_runs(port), 300, "the dimension-triggered runs")  # measure the steady state
            rng, producer = random.Random(5), kafka.producer(acks="all", linger_ms=0)

            def send() -> tuple[str, float]:
                buyer = rng.choice(buyers)
                doc = checkout_event(rng, buyer, dt.datetime.now(dt.UTC))
                producer.send(EVENTS_TOPIC, key=buyer.buyer_id.encode(), value=json.dumps(doc).encode()).get(10)
                return doc["event_id"], time.time()

            # Cold start, measured apart: the first event waits for the first live run's process to start.
            first, first_at = send()
            cold: dict[str, float] = {}
            deadline = time.time() + 300
            while not cold and time.time() < deadline:
                _scan(lake, {first: first_at}, cold)
                time.sleep(0.2)
            cold_start_s = cold[first] - first_at if cold else None
            produced: dict[str, float] = {}

            def steady() -> None:
                for _ in range(count):
                    event_id, at = send()
                    produced[event_id] = at
                    time.sleep(interval_s)

            thread = threading.Thread(target=steady)
            thread.start()
            seen: dict[str, float] = {}
            deadline = None
            while True:  # watch the decision dataset while the events are produced
                _scan(lake, produced, seen)
                if not thread.is_alive():
                    deadline = deadline or time.time() + 120
                    if len(seen) == len(produced) or time.time() > deadline:
                        break
                time.sleep(0.2)
            thread.join()
            producer.close()
            quarantined = {e for e in produced if e not in seen} & _quarantined_ids(lake)
        finally:
            stop_dagster_dev(server, env["DAGSTER_HOME"])
            log.close()
    latencies = sorted(seen[e] - produced[e] for e in seen)
    if not latencies:
        return [{"step": "dagster dev: produce -> decision row", "note": "no event arrived within 120 s"}]
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    note = (
        f"{len(latencies)}/{count} events seen, one every {interval_s} s for {count * interval_s:.0f} s; "
        f"{len(quarantined)} quarantined (the generator's amounts can fall below a market's minimum)"
    )
    return [
        {"step": "dagster dev: produce -> decision row, p50", "seconds": pick(0.5), "note": note},
        {"step": "dagster dev: produce -> decision row, p95", "seconds": pick(0.95)},
        {"step": "dagster dev: produce -> decision row, max", "seconds": latencies[-1]},
        {
            "step": "dagster dev: cold start, the first event (no live run yet) -> its decision row",
            "seconds": cold_start_s,
            "note": "measured apart, before the steady stream",
        },
        *_run_breakdown(log_path),
    ]


def _require(value) -> None:
    if not value:
        raise RuntimeError("not yet")


def _quarantined_ids(lake: LakeResource) -> set[str]:
    ids = set()
    if lake.table(QUARANTINE_EVENTS) is None:
        return ids
    for payload in lake.scan(QUARANTINE_EVENTS, columns=["payload"])["payload"].to_pylist():
        try:
            ids.add(json.loads(payload)["event_id"])
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def _scan(lake: LakeResource, produced: dict[str, float], seen: dict[str, float]) -> None:
    """Record the first moment each produced event id is readable in the decision dataset."""
    if lake.table(DECISION_EVENTS) is None:
        return
    ids = lake.scan(DECISION_EVENTS, columns=["event_id"])["event_id"].to_pylist()
    now = time.time()
    for event_id in ids:
        if event_id in produced and event_id not in seen:
            seen[event_id] = now


def _no_active_runs(port: int) -> None:
    """Raises while any run is queued or in flight (asked through Dagster's GraphQL API)."""
    query = (
        "{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) "
        "{ ... on Runs { results { runId } } } }"
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        runs = json.load(response)["data"]["runsOrError"]["results"]
    if runs:
        raise RuntimeError(f"{len(runs)} runs in flight")
    time.sleep(3)  # a sensor may be about to launch the next one: ask twice
    with urllib.request.urlopen(request, timeout=10) as response:
        if json.load(response)["data"]["runsOrError"]["results"]:
            raise RuntimeError("runs in flight")


def _run_breakdown(log_path: Path) -> list[dict]:
    """Where the time goes, from the dagster dev log (second resolution): launch of each live run until
    its process has loaded the code location and starts (hidden by the hand-off once a run follows the
    topic), and how long each run followed it."""
    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000")
    launches, starts, ends = [], {}, {}
    for line in re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text()).splitlines():
        match = stamp.match(line)
        if not match:
            continue
        at = dt.datetime.fromisoformat(match.group(1)).timestamp()
        if "Launching run for fraud_events_kafka_sensor" in line:
            launches.append(at)
        elif "fraud_live_job - " in line and ("RUN_START" in line or "RUN_SUCCESS" in line):
            run_id = line.split("fraud_live_job - ")[1].split(" ")[0]
            (starts if "RUN_START" in line else ends)[run_id] = at
    ordered = sorted(starts, key=starts.__getitem__)
    startup = [starts[r] - launched for r, launched in zip(ordered, launches, strict=False)]
    execution = [ends[r] - starts[r] for r in ordered if r in ends]
    if not startup:
        return []
    return [
        {
            "step": "live run launch -> run started (process + code location load), median",
            "seconds": statistics.median(startup),
            "note": f"{len(startup)} live runs (the first from cold, then successors)",
        },
        {
            "step": "live run duration (follows the topic, then hands off), median",
            "seconds": statistics.median(execution) if execution else None,
        },
    ]


def _wait(probe, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            probe()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready within {timeout_s:.0f}s") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dimension-rows", type=int, default=100_000)
    parser.add_argument("--partition-events", type=int, default=200_000)
    parser.add_argument("--dagster-dev", action="store_true", help="also measure end-to-end latency")
    parser.add_argument("--latency-only", action="store_true", help="with --dagster-dev: skip the CPU benchmarks")
    # 150 s of events: longer than a live run follows the topic, so the stream crosses a hand-off.
    parser.add_argument("--latency-events", type=int, default=300)
    parser.add_argument("--latency-interval", type=float, default=0.5)
    args, _ = parser.parse_known_args()  # `python -m bench` passes every benchmark's flags to all
    if args.dagster_dev:  # before pinning: dagster dev and the broker get both cores, as in production
        latency = dagster_dev_latency(args.latency_events, args.latency_interval)
        report(
            "fraud_dagster_dev_latency",
            {
                "events": args.latency_events,
                "interval_s": args.latency_interval,
                "target_p95_s": 10.0,
                "load_average_at_end": os.getloadavg(),
            },
            latency,
        )
    if args.latency_only:
        return
    pin_to_one_core()
    rows, conn, decision = enrichment(args.events, args.dimension_rows)
    rows += lookups(conn, decision)
    conn.close()
    rows += partition_build(args.partition_events)
    rows.append({"step": "peak memory (MiB)", "seconds": None, "note": f"{peak_rss_mib():.0f}"})
    report(
        "fraud",
        {
            "events": args.events,
            "dimension_rows": args.dimension_rows,
            "versions_per_buyer": VERSIONS_PER_BUYER,
            "partition_events": args.partition_events,
            "target_enrichment_s": 1.0,
            "load_average_at_end": os.getloadavg(),
        },
        rows,
    )


if __name__ == "__main__":
    main()
