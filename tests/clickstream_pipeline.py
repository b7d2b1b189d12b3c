"""Drive the clickstream pipeline as the daemon would: sensor ticks and the runs they request."""

import copy
import datetime as dt
import hashlib
import json

import dagster as dg
import duckdb

from assets.clickstream import bronze, gold, silver
from assets.clickstream.names import DAILY_METRICS_TABLE, PRODUCT_FUNNEL_TABLE, QUARANTINE_TABLE, SILVER_TABLE, TOPIC
from demo.clickstream import event
from resources import KafkaResource, LakeResource
from resources.warehouse import load_delta
from sensors.clickstream import clickstream_kafka_sensor

ASSETS = dg.load_assets_from_modules([bronze, silver, gold])
CHECKS = dg.load_asset_checks_from_modules([bronze, silver, gold])


def produce(kafka: KafkaResource, values: list[bytes], partitions: int = 3) -> None:
    topic = kafka.topic(TOPIC)
    kafka.ensure_topic(topic, partitions)
    producer = kafka.producer(acks="all")
    for value in values:
        # Keyed by content, as a producer keyed by event or user id: a re-sent message lands in the same
        # partition as its first delivery (what lets ingest shards, each reading its partitions, deduplicate).
        producer.send(topic, value=value, key=hashlib.md5(value).digest()[:8])
    producer.flush()
    producer.close()


def valid_event(ts: dt.datetime, name: str = "view", user: str = "user_1", sku: str = "SKU-1") -> bytes:
    return json.dumps(event(ts, name, user, "web", (sku, f"Product {sku}"))).encode()


def tick(sensor, instance: dg.DagsterInstance, resources: dict, cursor: str | None = None):
    context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    return sensor(context), context


def run_ingest(instance: dg.DagsterInstance, resources: dict, run_request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """The run the Kafka sensor requested, except that it stops after its first batch instead of
    following the topic."""
    run_config = copy.deepcopy(run_request.run_config)
    run_config["ops"]["bronze_clickstream_events"]["config"]["follow_seconds"] = 0
    return dg.materialize(
        ASSETS,
        selection=["bronze_clickstream_events"],
        run_config=run_config,
        resources=resources,
        instance=instance,
        tags=run_request.tags,
    )


def run_date(instance: dg.DagsterInstance, resources: dict, date: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=dg.AssetSelection.groups("clickstream_silver", "clickstream_gold"),
        partition_key=date,
        resources=resources,
        instance=instance,
    )


def run_pipeline(instance: dg.DagsterInstance, resources: dict) -> list[str]:
    """One Kafka sensor tick and its ingest run (bronze, then silver, quarantine and gold of the touched
    dates, as the streaming run does). Returns the touched dates."""
    result, _ = tick(clickstream_kafka_sensor, instance, resources)
    assert isinstance(result, dg.SensorResult), result
    touched: set[str] = set()
    for request in result.run_requests or []:
        ingest = run_ingest(instance, resources, request)
        assert ingest.success
        for materialized in ingest.get_asset_materialization_events():
            if materialized.asset_key == dg.AssetKey("bronze_clickstream_events"):
                touched.update(materialized.materialization.metadata["event_dates"].value)  # type: ignore[arg-type]
    return sorted(touched)


def query(sql: str, lake: LakeResource, table: str = SILVER_TABLE):
    """`sql` over the lake table `table` (as `t`), read the way analysts read it: DuckDB's delta_scan."""
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    load_delta(conn)
    conn.execute(f"CREATE VIEW t AS SELECT * FROM delta_scan('{lake.uri(table)}')")
    return conn.execute(sql).fetchall()


def data_files(lake: LakeResource, table: str) -> list[str]:
    """The data files of the table's current version."""
    delta = lake.table(table)
    return sorted(delta.file_uris()) if delta is not None else []


def quarantine(lake: LakeResource, sql: str = "SELECT reason, count(*) FROM t GROUP BY 1 ORDER BY 1"):
    return query(sql, lake, QUARANTINE_TABLE)


def _funnel_from_silver() -> str:
    """The funnel's definition over the whole of silver, written out for the configured stages: a pair's
    first time of stage 1, the last time of each later stage; a stage is reached at or after that first
    time, once every earlier required stage was."""
    from assets.clickstream.config import CONFIG

    def among(stage) -> str:
        return "event_name IN (" + ", ".join(f"'{e}'" for e in stage.events) + ")"

    stages = CONFIG.funnel
    times = [f"min(event_datetime) FILTER ({among(stages[0])}) AS t0"]
    times += [f"max(event_datetime) FILTER ({among(s)}) AS t{k}" for k, s in enumerate(stages) if k]
    reached, required = ["t0 IS NOT NULL AS r0"], "(t0 IS NOT NULL)"
    for k, stage in enumerate(stages[1:], 1):
        reached.append(f"coalesce({required} AND t{k} >= t0, false) AS r{k}")
        required = required if stage.optional else f"({required} AND coalesce(t{k} >= t0, false))"
    per_stage = " UNION ALL ".join(
        f"SELECT event_date, \"SKU\", min(product_name) AS product_name, {k + 1} AS n, '{s.name}' AS stage, "
        f'count(*) FILTER (r{k}) AS users FROM reached GROUP BY event_date, "SKU"'
        for k, s in enumerate(stages)
    )
    return f"""
        WITH pairs AS (
            SELECT event_date, "SKU", user_id, min(product_name) AS product_name, {", ".join(times)}
            FROM t WHERE "SKU" IS NOT NULL GROUP BY ALL),
        reached AS (SELECT *, {", ".join(reached)} FROM pairs)
        SELECT * FROM ({per_stage}) ORDER BY ALL"""


GOLD_FROM_SILVER = {
    # The definitions, computed over the whole of silver: what the stream's per-batch counting must equal.
    DAILY_METRICS_TABLE: """
        SELECT event_date, event_name, platform, count(*) AS events, count(DISTINCT user_id) AS users,
               count(DISTINCT "SKU") AS products
        FROM t GROUP BY ALL ORDER BY ALL""",
    PRODUCT_FUNNEL_TABLE: _funnel_from_silver(),
}
GOLD_COLUMNS = {
    DAILY_METRICS_TABLE: "event_date, event_name, platform, events, users, products",
    PRODUCT_FUNNEL_TABLE: 'event_date, "SKU", product_name, stage_number, stage, users',
}


def assert_gold_counted_from_silver(lake: LakeResource) -> dict[str, list]:
    """Assert that both gold tables hold what their definitions give over the whole of silver; returns them."""
    gold = {
        table: query(f"SELECT {GOLD_COLUMNS[table]} FROM t ORDER BY ALL", lake, table) for table in GOLD_FROM_SILVER
    }
    for table, sql in GOLD_FROM_SILVER.items():
        assert gold[table] == query(sql, lake), table
    return gold
