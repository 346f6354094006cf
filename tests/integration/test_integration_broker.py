"""Smoke tests of the development broker and of both Kafka clients riskgraph uses.

kafka-python (tools, simulators, tests) and aiokafka (under faust-streaming) must both
produce, consume and share consumer-group offsets with the Kafka 4.x broker that
deploy/kafka runs. The tests without the ``kafka`` mark exercise riskgraph.broker's
argument checks and the script's stopped-state paths; they need bash, not Java.
"""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict
from pathlib import Path
from typing import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from riskgraph.broker import BrokerError, BrokerStatus, LocalBroker, free_ports


def _consume_all(consumer: KafkaConsumer, expected: int, timeout_ms: int = 15_000) -> list:
    """Poll until ``expected`` records arrived; fewer by the deadline fails the test."""
    records: list = []
    polls = timeout_ms // 500
    for _ in range(polls):
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        if len(records) >= expected:
            return records
    raise AssertionError(f"got {len(records)} of {expected} records within {timeout_ms} ms")


# -- broker-backed tests ---------------------------------------------------------------------


@pytest.mark.kafka
def test_kafka_python_round_trip_keeps_per_key_order(
    kafka_bootstrap: str, fresh_topic: Callable[..., str], fresh_group: Callable[..., str]
) -> None:
    topic = fresh_topic(partitions=3)
    sent = [(f"k{i % 5}".encode(), f"v{i}".encode()) for i in range(40)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in sent:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=15)
    finally:
        producer.close()

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=fresh_group(),
                             auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        records = _consume_all(consumer, len(sent))
    finally:
        consumer.close()

    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key[r.key].append(r.value)
        partitions_of_key[r.key].add(r.partition)
    # One key, one partition, send order kept: what "in time order per key" relies on.
    assert all(len(p) == 1 for p in partitions_of_key.values())
    for key, values in by_key.items():
        assert values == [v for k, v in sent if k == key]


@pytest.mark.kafka
def test_aiokafka_commit_then_resume_from_committed_offset(
    kafka_bootstrap: str, fresh_topic: Callable[..., str], fresh_group: Callable[..., str]
) -> None:
    topic, group = fresh_topic(partitions=1), fresh_group()
    tp = AioTopicPartition(topic, 0)

    async def scenario() -> tuple[list[bytes], list[tuple[int, bytes]]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, f"m{i}".encode(), key=b"src-1")
        finally:
            await producer.stop()

        first = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        await first.start()
        try:
            seen: list[bytes] = []
            while len(seen) < 4:
                batch = await first.getmany(tp, timeout_ms=10_000, max_records=4 - len(seen))
                assert batch, "no records for the first consumer"
                seen.extend(m.value for m in batch[tp])
            # Commit after the 4th record only: a worker that crashed here resumes at m4.
            await first.commit({tp: 4})
        finally:
            await first.stop()

        # "earliest" would restart at m0 if the commit had been lost.
        second = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                  auto_offset_reset="earliest", enable_auto_commit=False)
        await second.start()
        try:
            rest: list[tuple[int, bytes]] = []
            while len(rest) < 6:
                batch = await second.getmany(tp, timeout_ms=10_000)
                assert batch, f"second consumer stalled after {len(rest)} records"
                rest.extend((m.offset, m.value) for m in batch[tp])
        finally:
            await second.stop()
        return seen, rest

    seen, rest = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert seen == [b"m0", b"m1", b"m2", b"m3"]
    assert rest == [(i, f"m{i}".encode()) for i in range(4, 10)]

    # The group offset aiokafka committed is the one kafka-python sees: one broker-side truth.
    reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    try:
        assert reader.committed(TopicPartition(topic, 0)) == 4
    finally:
        reader.close()


@pytest.mark.kafka
def test_broker_runs_with_the_documented_settings(
    kafka_broker: LocalBroker | None, kafka_admin: KafkaAdminClient
) -> None:
    if kafka_broker is None:
        pytest.skip("settings are those of the external RISKGRAPH_KAFKA_BOOTSTRAP broker")
    res = kafka_admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")], config_filter="all")
    configs = {k: v["value"] for k, v in res["broker"]["1"].items()}
    assert configs["auto.create.topics.enable"] == "false"
    assert configs["group.initial.rebalance.delay.ms"] == "0"
    assert configs["offsets.topic.replication.factor"] == "1"
    assert configs["process.roles"] == "broker,controller"


@pytest.mark.kafka
def test_up_is_idempotent_and_refuses_other_ports(kafka_broker: LocalBroker | None) -> None:
    if kafka_broker is None:
        pytest.skip("the external broker is not managed by this run")
    before = kafka_broker.status()
    assert before.running and before.bootstrap == kafka_broker.bootstrap
    assert before.data_dir == kafka_broker.data_dir
    again = kafka_broker.up(timeout=30)
    assert again.pid == before.pid

    port, controller_port = free_ports(2)
    other = LocalBroker(kafka_broker.data_dir, port=port, controller_port=controller_port)
    with pytest.raises(BrokerError, match="already running on " + kafka_broker.bootstrap):
        other.up(timeout=10)


@pytest.mark.kafka
def test_failed_jvm_start_reports_the_java_error(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    broker = LocalBroker(tmp_path / "k", port=port, controller_port=controller_port, heap="1k")
    with pytest.raises(BrokerError, match="Error occurred during initialization of VM"):
        broker.up(timeout=30)
    assert not broker.status().running


@pytest.mark.kafka
@pytest.mark.slow
def test_restart_on_new_ports_keeps_data_and_bad_storage_fails_clearly(tmp_path: Path) -> None:
    data = tmp_path / "k"
    ports = free_ports(4)
    first = LocalBroker(data, port=ports[0], controller_port=ports[1])
    first.up(timeout=120)
    try:
        with KafkaAdminClient(bootstrap_servers=first.bootstrap) as admin:
            admin.create_topics({"kept": {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
        producer = KafkaProducer(bootstrap_servers=first.bootstrap, acks="all")
        for i in range(3):
            producer.send("kept", value=f"r{i}".encode())
        producer.flush(timeout=15)
        producer.close()
    finally:
        first.down()
    assert not first.status().running

    # The static controller voter set keeps ports out of the formatted storage.
    second = LocalBroker(data, port=ports[2], controller_port=ports[3])
    second.up(timeout=120)
    try:
        consumer = KafkaConsumer("kept", bootstrap_servers=second.bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, group_id=None)
        try:
            values = [r.value for r in _consume_all(consumer, 3)]
        finally:
            consumer.close()
    finally:
        second.down()
    assert values == [b"r0", b"r1", b"r2"]

    # Storage that belongs to another node: the JVM exits, and the error says why.
    meta = data / "kraft-logs" / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=1", "node.id=2"))
    with pytest.raises(BrokerError, match=r"(?s)Stored node id 2 doesn't match.*exited during start-up"):
        second.up(timeout=120)
    assert not second.status().running


# -- no broker needed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "port must be an int in 1..65535"),
        ({"port": 70000}, "port must be an int in 1..65535"),
        ({"port": "9092"}, "port must be an int in 1..65535"),
        ({"controller_port": True}, "controller_port must be an int"),
        ({"port": 9500, "controller_port": 9500}, "must differ"),
        ({"heap": "lots"}, "heap must look like"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalBroker(tmp_path, **kwargs)


def test_status_and_down_of_a_never_started_broker(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    broker = LocalBroker(tmp_path / "k", port=port, controller_port=controller_port)
    broker.down()  # nothing to stop is not an error
    assert broker.status() == BrokerStatus(running=False, bootstrap=f"127.0.0.1:{port}",
                                           data_dir=tmp_path / "k", version=broker.status().version)
    assert broker.status().version.startswith("4.")


def test_up_refuses_a_port_another_process_listens_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (controller_port,) = free_ports(1)
        broker = LocalBroker(tmp_path / "k", port=port, controller_port=controller_port)
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            broker.up(timeout=5)
    assert not broker.status().running


def test_status_line_parsing_rejects_garbage() -> None:
    with pytest.raises(BrokerError, match="unexpected status line"):
        BrokerStatus.parse("crashed pid=1")
    with pytest.raises(BrokerError, match="unexpected status line"):
        BrokerStatus.parse("running pid=x bootstrap=a:1 data_dir=/d")
