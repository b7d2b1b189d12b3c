"""Kafka with authentication: a broker that requires SASL (SCRAM or PLAIN) refuses clients without credentials, and
the platform, configured from the environment, ingests through it exactly."""

import datetime as dt
import logging
import os
import subprocess
from collections.abc import Iterator

import dagster as dg
import pytest
from kafka.errors import KafkaError

from resources import KafkaResource
from sensors.clickstream import clickstream_kafka_sensor
from tests.clickstream_pipeline import produce, query, run_pipeline, tick, valid_event
from tests.conftest import ROOT, free_port
from tests.platform_env import load_definitions, resolved_resource

USER, PASSWORD = "platform", "a secret with spaces"


@pytest.fixture(scope="module", params=["SCRAM-SHA-512", "PLAIN"])
def sasl_broker(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A broker whose only client listener is SASL_PLAINTEXT with the mechanism `request.param`, started by
    platform/kafka.sh from the same variables the platform reads. Yields those variables. Fails, never skips."""
    port = free_port()
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": request.param,
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "KAFKA_SSL_CAFILE": "",
        "INGEST_SHARDS": "1",
    }
    env = {
        **os.environ,
        **settings,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_STATE_DIR": str(tmp_path_factory.mktemp("kafka-sasl")),
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",  # a small topic; the suite's own broker may run beside it
    }
    started = subprocess.run([ROOT / "platform" / "kafka.sh", "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"the SASL Kafka broker did not start:\n{started.stderr}")
    yield settings
    subprocess.run([ROOT / "platform" / "kafka.sh", "stop"], env=env, capture_output=True)


def _topics(kafka: KafkaResource) -> set[str]:
    with kafka.consumer(bootstrap_timeout_ms=8000) as consumer:
        return consumer.topics()


def test_a_client_without_credentials_or_with_a_wrong_password_is_refused(sasl_broker, caplog):
    address = sasl_broker["KAFKA_BOOTSTRAP_SERVERS"]
    with pytest.raises(KafkaError):
        _topics(KafkaResource(bootstrap_servers=address))

    caplog.set_level(logging.ERROR, logger="kafka")
    wrong = KafkaResource(
        bootstrap_servers=address,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=sasl_broker["KAFKA_SASL_MECHANISM"],
        sasl_username=USER,
        sasl_password="not the password",
    )
    with pytest.raises(KafkaError):
        _topics(wrong)
    assert "SaslAuthenticationFailedError" in caplog.text


def test_the_platform_with_credentials_from_the_environment_ingests_exactly(sasl_broker, lake, warehouse, instance):
    # The Kafka resource exactly as the code location configures it, from the environment.
    kafka = resolved_resource(load_definitions(), "kafka", sasl_broker)
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == (
        "SASL_PLAINTEXT",
        sasl_broker["KAFKA_SASL_MECHANISM"],
        USER,
    )
    noon = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    produce(kafka, [valid_event(noon + dt.timedelta(seconds=i), user=f"u{i}") for i in range(500)])

    resources = {"kafka": kafka, "lake": lake, "warehouse": warehouse}
    assert run_pipeline(instance, resources) == [noon.date().isoformat()]
    assert query("SELECT count(*), count(DISTINCT user_id) FROM t", lake) == [(500, 500)]
    # Nothing pending: the consumer group's offsets were committed through the authenticated connection.
    result, _ = tick(clickstream_kafka_sensor, instance, resources)
    assert isinstance(result, dg.SkipReason) and "no pending records" in str(result.skip_message)
