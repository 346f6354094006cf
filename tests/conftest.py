"""Fixtures for the tests that need a real Kafka broker (tiers integration and fault).

``kafka_bootstrap`` starts ONE single-node KRaft broker per test run (riskgraph.broker,
i.e. deploy/kafka/kafka.sh) on free loopback ports in a temporary directory and stops it
at the end. With ``RISKGRAPH_KAFKA_BOOTSTRAP=host:port`` set, that broker is used instead
and left running (e.g. ``bash deploy/kafka/kafka.sh up`` once, then many test runs).
Tests create the topics they use and never rely on auto-creation (off on the dev broker).

Every test gets fresh names (``fresh_topic``, ``fresh_group``) so tests never see each
other's records or offsets, even against a long-lived broker. Mark tests with
``@pytest.mark.kafka`` (deselect with ``-m "not kafka"`` where there is no Java).
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Callable, Iterator

import pytest
from kafka import KafkaAdminClient

from riskgraph.broker import LocalBroker, free_ports

BOOTSTRAP_ENV = "RISKGRAPH_KAFKA_BOOTSTRAP"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The broker this run started, or None when ``RISKGRAPH_KAFKA_BOOTSTRAP`` names one."""
    if os.environ.get(BOOTSTRAP_ENV):
        yield None
        return
    port, controller_port = free_ports(2)
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), port=port, controller_port=controller_port)
    broker.up(timeout=120)
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker | None) -> str:
    """``host:port`` of the test broker."""
    return kafka_broker.bootstrap if kafka_broker is not None else os.environ[BOOTSTRAP_ENV]


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="riskgraph-tests")
    try:
        yield admin
    finally:
        admin.close()


def _unique(prefix: str, request: pytest.FixtureRequest) -> str:
    # The test's name in the topic/group name makes broker logs and leftovers readable.
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60]
    return f"{prefix}-{test}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def fresh_topic(
    kafka_admin: KafkaAdminClient, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    """Factory: ``fresh_topic(partitions=1, prefix="t", configs=None) -> name``.

    Creates a uniquely named topic (replication 1), waits until every partition has a
    leader, and deletes the topics it made when the test ends.
    """
    made: list[str] = []

    def make(partitions: int = 1, prefix: str = "t", configs: dict[str, str] | None = None) -> str:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        name = _unique(prefix, request)
        kafka_admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}},
            wait_for_metadata=True,
        )
        made.append(name)
        return name

    yield make
    if made:
        kafka_admin.delete_topics(made, raise_errors=False)


@pytest.fixture
def fresh_group(request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: ``fresh_group(prefix="g") -> a consumer group id no other test uses``."""

    def make(prefix: str = "g") -> str:
        return _unique(prefix, request)

    return make
