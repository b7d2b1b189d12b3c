"""The lake on an S3 API server started here (moto's server mode on loopback), through dagster-aws."""

import contextlib
import socket
import threading

import boto3
import pytest

from assets.clickstream.names import BRONZE_TABLE, CONSUMER_GROUP, QUARANTINE_TABLE, SILVER_TABLE, TOPIC
from resources import LakeResource
from tests.clickstream_pipeline import produce, run_pipeline
from tests.conftest import free_port
from tests.test_clickstream_recovery import labelled_stream

# How delta-rs reports an S3 endpoint that refuses connections.
UNREACHABLE = r"(?i)(error sending request|connection refused|could not connect|dispatch failure)"


class SwitchableProxy:
    """A TCP relay to the S3 server that can be switched off (connections refused and cut) and on again,
    so the server stays up, with its data, while the platform cannot reach it."""

    def __init__(self, target_port: int):
        self.target_port, self.port = target_port, free_port()
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []

    def on(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def off(self) -> None:
        if self.listener:
            self.listener.close()
            self.listener = None
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()
        self.connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_clickstream_on_s3_as_delta_tables(kafka, s3_lake, warehouse, instance):
    lake, bucket = s3_lake
    messages, users = labelled_stream(valid=500, duplicates=20, broken=10)
    produce(kafka, messages)
    resources = {"kafka": kafka, "lake": lake, "warehouse": warehouse}
    dates = run_pipeline(instance, resources)
    assert dates

    silver = lake.scan(SILVER_TABLE)
    assert sorted(silver.column("user_id").to_pylist()) == sorted(users)
    assert lake.scan(QUARANTINE_TABLE).num_rows == 10
    assert lake.scan(BRONZE_TABLE).num_rows == len(messages)
    # Objects really are in the S3 server, under the configured prefix: the table's log, and exactly the
    # data files its current version names (no partial or orphaned object).
    for table in (BRONZE_TABLE, SILVER_TABLE):
        listed = boto3.client("s3", endpoint_url=lake.s3_endpoint_url).list_objects_v2(
            Bucket=bucket, Prefix=f"platform/{table}/"
        )
        keys = {o["Key"] for o in listed["Contents"]}
        assert any(k.startswith(f"platform/{table}/_delta_log/") for k in keys)
        delta = lake.table(table)
        assert delta is not None
        named = {u.removeprefix(f"s3://{bucket}/") for u in delta.file_uris()}
        assert {k for k in keys if k.endswith(".parquet") and "/_delta_log/" not in k} == named
    with warehouse.connect() as conn:
        assert conn.execute("SELECT sum(events) FROM gold_clickstream_daily_metrics").fetchone()[0] == len(users)


def test_s3_unreachable_fails_clearly_commits_nothing_and_catches_up(kafka, s3_lake, s3_server, warehouse, instance):
    lake, _ = s3_lake
    proxy = SwitchableProxy(s3_server)
    proxy.on()
    via_proxy = LakeResource(root=lake.root, s3_endpoint_url=f"http://127.0.0.1:{proxy.port}", s3_region="us-east-1")
    resources = {"kafka": kafka, "lake": via_proxy, "warehouse": warehouse}
    messages, users = labelled_stream(valid=300, duplicates=0, broken=0)
    produce(kafka, messages[:150])
    run_pipeline(instance, resources)

    proxy.off()
    produce(kafka, messages[150:])
    with pytest.raises(Exception, match=UNREACHABLE):
        run_pipeline(instance, resources)
    pending = kafka.pending_offsets(kafka.topic(TOPIC), kafka.group(CONSUMER_GROUP))
    assert sum(end - start for start, end in pending.values()) == 150  # nothing committed

    proxy.on()
    run_pipeline(instance, resources)
    silver = lake.scan(SILVER_TABLE)
    assert sorted(silver.column("user_id").to_pylist()) == sorted(users)
    pending = kafka.pending_offsets(kafka.topic(TOPIC), kafka.group(CONSUMER_GROUP))
    assert all(start == end for start, end in pending.values())
    proxy.off()
