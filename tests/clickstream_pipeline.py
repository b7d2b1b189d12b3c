"""Drive the clickstream pipeline as the daemon would: sensor ticks and the runs they request."""

import copy
import datetime as dt
import json

import dagster as dg
import duckdb

from assets.clickstream import bronze, gold, silver
from assets.clickstream.names import QUARANTINE_TABLE, SILVER_TABLE, TOPIC
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
    for i, value in enumerate(values):
        producer.send(topic, value=value, key=f"user_{i % 7}".encode())
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
