"""Kafka access for sensors and ingest runs: offsets, consumers, producers, topics."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

from dagster import ConfigurableResource
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from tqdm import tqdm


class KafkaResource(ConfigurableResource):
    """A Kafka cluster reached at `bootstrap_servers` (KAFKA_BOOTSTRAP_SERVERS).

    A managed cluster authenticates with SASL: `security_protocol` SASL_SSL (or SASL_PLAINTEXT),
    `sasl_mechanism` PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, and the user's name and password;
    `ssl_cafile` names the CA bundle when the brokers' certificates are not signed by a public CA.
    Empty strings mean "not set", so every field can come from an environment variable."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    request_timeout_ms: int = 15_000
    # Prefixed to every topic and consumer group name: several environments (or tests) share a broker.
    namespace: str = ""
    # Ingest runs per topic, each reading its share of the partitions (INGEST_SHARDS): 1 on a laptop; up
    # to the topic's partition count where one core per topic is not enough.
    ingest_shards: int = 1

    def topic(self, name: str) -> str:
        return f"{self.namespace}{name}"

    def group(self, name: str) -> str:
        return f"{self.namespace}{name}"

    def _common(self) -> dict:
        """Settings every client (consumer, producer, admin) is built with: where, and who we are."""
        settings = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": self.security_protocol or "PLAINTEXT",
        }
        if self.sasl_mechanism:
            settings |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.ssl_cafile:
            settings["ssl_cafile"] = self.ssl_cafile
        return settings

    @contextmanager
    def consumer(self, group_id: str | None = None, **overrides) -> Iterator[KafkaConsumer]:
        """A consumer that never commits on its own: offsets are committed explicitly, after durability."""
        consumer = KafkaConsumer(
            **self._common(),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **overrides,
        )
        try:
            yield consumer
        finally:
            consumer.close(autocommit=False)

    def producer(self, **overrides) -> KafkaProducer:
        return KafkaProducer(**self._common(), **overrides)

    def send_all(
        self,
        topic: str,
        messages: Iterable[tuple[bytes | None, bytes]],
        *,
        partitions: int = 3,
        rate: float = 0,
        progress_total: int | None = None,
        **producer_overrides,
    ) -> int:
        """Send (key, value) messages to the logical `topic` (created with `partitions` if missing);
        `rate` caps messages per second (0: as fast as possible); `progress_total` shows a progress bar."""
        name = self.topic(topic)
        self.ensure_topic(name, partitions)
        producer = self.producer(linger_ms=5, acks="all", batch_size=256 * 1024, **producer_overrides)
        if progress_total is not None:
            messages = tqdm(messages, total=progress_total, unit="events", desc=f"producing to {name}")
        started, sent = time.monotonic(), 0
        for key, value in messages:
            producer.send(name, value=value, key=key)
            sent += 1
            if rate and (ahead := sent / rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)
        producer.flush()
        producer.close()
        return sent

    def ensure_topic(self, topic: str, partitions: int) -> None:
        admin = KafkaAdminClient(**self._common())
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def pending_offsets(
        self, topic: str, group_id: str, consumer: KafkaConsumer | None = None
    ) -> dict[int, tuple[int, int]]:
        """For each partition of `topic`: (next offset the group will read, end offset of the log).
        `consumer`: an open consumer of the group to ask (a new one otherwise)."""
        with nullcontext(consumer) if consumer is not None else self.consumer(group_id) as consumer:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise RuntimeError(f"Kafka topic {topic!r} does not exist at {self.bootstrap_servers}")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            ends = consumer.end_offsets(tps)
            begins = consumer.beginning_offsets(tps)
            result = {}
            for tp in tps:
                committed = consumer.committed(tp)
                start = begins[tp] if committed is None else max(committed, begins[tp])
                result[tp.partition] = (start, ends[tp])
            return result

    def commit(
        self, topic: str, group_id: str, next_offsets: dict[int, int], consumer: KafkaConsumer | None = None
    ) -> None:
        """Commit `next_offsets` (offset of the next record to read, per partition) for the group.
        `consumer`: an open consumer of the group to commit through (a new one otherwise)."""
        with nullcontext(consumer) if consumer is not None else self.consumer(group_id) as consumer:
            consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in next_offsets.items()})
