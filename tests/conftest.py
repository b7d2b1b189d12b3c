"""Fixtures that start the real parts: a Kafka broker from the project's own script, a lake on local
disk, a DuckDB file and an ephemeral Dagster instance."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest

from resources import KafkaResource, LakeResource, WarehouseResource

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node Kafka broker on a free port, started by platform/kafka.sh. Fails, never
    skips, when the broker cannot start."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_STATE_DIR": str(tmp_path_factory.mktemp("kafka")),
    }
    started = subprocess.run([ROOT / "platform" / "kafka.sh", "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"the Kafka broker did not start:\n{started.stderr}")
    yield f"127.0.0.1:{port}"
    subprocess.run([ROOT / "platform" / "kafka.sh", "stop"], env=env, capture_output=True)


@pytest.fixture
def kafka(kafka_broker: str) -> KafkaResource:
    """The broker, with topics and consumer groups in a namespace of this test's own."""
    return KafkaResource(bootstrap_servers=kafka_broker, namespace=f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
def lake(tmp_path: Path) -> LakeResource:
    return LakeResource(root=str(tmp_path / "lake"))


@pytest.fixture
def warehouse(tmp_path: Path) -> WarehouseResource:
    return WarehouseResource(database=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def resources(kafka: KafkaResource, lake: LakeResource, warehouse: WarehouseResource) -> dict:
    return {"kafka": kafka, "lake": lake, "warehouse": warehouse}


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict]:
    """A real PostgreSQL 15 server on a free port, started by platform/postgres.sh (its data directory in
    a fresh folder the `postgres` user can enter). Fails, never skips, when the server cannot start."""
    import shutil
    import tempfile

    state = tempfile.mkdtemp(prefix="pg-test-")
    os.chmod(state, 0o755)
    settings = {
        "POSTGRES_PORT": str(free_port()),
        "POSTGRES_STATE_DIR": state,
        "POSTGRES_USER": "commerce",
        "POSTGRES_PASSWORD": "test-password",
        "POSTGRES_DB": "commerce",
        "POSTGRES_FSYNC": "off",
    }
    env = {**os.environ, **settings}
    started = subprocess.run([ROOT / "platform" / "postgres.sh", "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL did not start:\n{started.stderr}")
    yield settings
    subprocess.run([ROOT / "platform" / "postgres.sh", "stop"], env=env, capture_output=True)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto's server mode) on a free loopback port; fails, never skips."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            break
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            pytest.fail("the S3 API server (moto_server) did not start")
        time.sleep(0.2)
    yield port
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_lake(s3_server, monkeypatch, request) -> tuple[LakeResource, str]:
    """A lake in a fresh bucket of the S3 server, with the credentials delta-rs and boto3 read from the
    environment: (the lake resource, the bucket)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"lake-{abs(hash(request.node.name)) % 10**8}"
    endpoint = f"http://127.0.0.1:{s3_server}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return LakeResource(root=f"s3://{bucket}/platform", s3_endpoint_url=endpoint, s3_region="us-east-1"), bucket
