"""The platform's one code location: every domain's assets, checks, jobs, sensors and resources.

Loaded by `dagster dev` through workspace.yaml (python_file, working directory = repository root).
`platform/` is deliberately not a Python package: it would shadow the standard library's `platform`.
"""

import dagster as dg
from dagster_dbt import DbtCliResource

from assets.clickstream import bronze as clickstream_bronze
from assets.clickstream import freshness as clickstream_freshness
from assets.clickstream import gold as clickstream_gold
from assets.clickstream import history as clickstream_history
from assets.clickstream import silver as clickstream_silver
from assets.fraud import bronze as fraud_bronze
from assets.fraud import decision as fraud_decision
from assets.fraud import dimensions as fraud_dimensions
from assets.fraud import history as fraud_history
from assets.fraud import serving as fraud_serving
from assets.loans import cleaned as loans_cleaned
from assets.loans import features as loans_features
from assets.loans import raw as loans_raw
from assets.warehouse import dbt as warehouse_dbt
from assets.warehouse import raw as warehouse_raw
from assets.warehouse import staging as warehouse_staging
from resources import (
    AlertsResource,
    KafkaResource,
    LakeResource,
    LandingResource,
    PostgresResource,
    PseudonymizerResource,
    WarehouseResource,
)
from sensors.alerts import ALERT_SENSORS
from sensors.clickstream import (
    clickstream_daily_close_schedule,
    clickstream_daily_job,
    clickstream_import_job,
    clickstream_ingest_job,
    clickstream_kafka_sensor,
)
from sensors.fraud import FRAUD_JOBS, FRAUD_SENSORS
from sensors.loans import loans_batch_job, loans_kafka_sensor, loans_landing_sensor, loans_stream_job
from sensors.policies import automation_sensor, with_policies
from sensors.warehouse import commerce_import_job, commerce_raw_job, commerce_raw_schedule, commerce_warehouse_job

ASSET_MODULES = [clickstream_bronze, clickstream_silver, clickstream_gold, clickstream_history]
ASSET_MODULES += [loans_raw, loans_cleaned, loans_features]
ASSET_MODULES += [fraud_bronze, fraud_dimensions, fraud_decision, fraud_serving, fraud_history]
ASSET_MODULES += [warehouse_raw, warehouse_staging, warehouse_dbt]
ASSET_MODULES += [clickstream_freshness]


defs = dg.Definitions(
    # Freshness policies and automation conditions are project policy, attached here (sensors/policies.py).
    assets=dg.map_asset_specs(with_policies, dg.load_assets_from_modules(ASSET_MODULES)),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[
        clickstream_ingest_job,
        clickstream_daily_job,
        clickstream_import_job,
        loans_batch_job,
        loans_stream_job,
        *FRAUD_JOBS,
        commerce_warehouse_job,
        commerce_raw_job,
        commerce_import_job,
    ],
    schedules=[commerce_raw_schedule, clickstream_daily_close_schedule],
    sensors=[clickstream_kafka_sensor, loans_kafka_sensor, loans_landing_sensor]
    + FRAUD_SENSORS
    + ALERT_SENSORS
    + [automation_sensor],
    resources={
        "kafka": KafkaResource(
            bootstrap_servers=dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS"),
            security_protocol=dg.EnvVar("KAFKA_SECURITY_PROTOCOL"),
            sasl_mechanism=dg.EnvVar("KAFKA_SASL_MECHANISM"),
            sasl_username=dg.EnvVar("KAFKA_SASL_USERNAME"),
            sasl_password=dg.EnvVar("KAFKA_SASL_PASSWORD"),
            ssl_cafile=dg.EnvVar("KAFKA_SSL_CAFILE"),
            ingest_shards=dg.EnvVar.int("INGEST_SHARDS"),
        ),
        "lake": LakeResource(root=dg.EnvVar("LAKE_ROOT")),
        "warehouse": WarehouseResource(database=dg.EnvVar("DUCKDB_DATABASE")),
        "pseudonymizer": PseudonymizerResource(key=dg.EnvVar("PSEUDONYMIZATION_KEY")),
        "postgres": PostgresResource(
            host=dg.EnvVar("POSTGRES_HOST"),
            port=dg.EnvVar.int("POSTGRES_PORT"),
            database=dg.EnvVar("POSTGRES_DB"),
            user=dg.EnvVar("POSTGRES_USER"),
            password=dg.EnvVar("POSTGRES_PASSWORD"),
        ),
        "landing": LandingResource(root=dg.EnvVar("LANDING_ROOT")),
        "alerts": AlertsResource(
            log_path=dg.EnvVar("ALERT_LOG"),
            webhook_url=dg.EnvVar("ALERT_WEBHOOK_URL"),
            ui_url=dg.EnvVar("DAGSTER_UI_URL"),
            freshness_minutes=dg.EnvVar.int("FRESHNESS_MINUTES"),
        ),
        "dbt": DbtCliResource(
            project_dir=warehouse_dbt.warehouse_dbt_project, dbt_executable=warehouse_dbt.DBT_EXECUTABLE
        ),
    },
    # Runs execute in one process: a streaming micro-batch is a few steps, and a subprocess per step
    # would add seconds of start-up to every event's latency.
    executor=dg.in_process_executor,
)
