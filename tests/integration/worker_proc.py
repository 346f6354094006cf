"""Run ``riskgraph worker`` as a real subprocess against the test broker, and read it back.

A :class:`WorkerConfig` names everything one worker needs (topics, consumer group, state
directory, metrics port) with a unique suffix, so tests never share topics or offsets.
A :class:`WorkerProcess` starts ``python -m riskgraph.cli worker`` with that environment
(stdout and stderr into a log file: a pipe could fill up and stall the worker), scrapes
its ``/metrics`` endpoint, and always stops it: SIGTERM first, SIGKILL after a timeout.

Also: :func:`send_all` (records in order, every one acknowledged), :func:`read_topic` (every record of a topic up to its current end) and
:func:`scrape` (Prometheus text to ``{(name, labels): value}``).

>>> cfg = WorkerConfig.fresh("127.0.0.1:9092", "/tmp/state", metrics_port=19108, tag="doc")
>>> cfg.env()["RISKGRAPH_BROKER"], cfg.events_topic.startswith("doc-events-")
('kafka://127.0.0.1:9092', True)
>>> parse_metrics('riskgraph_events_total{outcome="scored"} 3.0\\n')
{('riskgraph_events_total', (('outcome', 'scored'),)): 3.0}
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from riskgraph.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
MetricKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class WorkerConfig:
    """The settings of one test worker, all unique to it (topics, group, state, port)."""

    bootstrap: str
    state_dir: str
    metrics_port: int
    events_topic: str
    alerts_topic: str
    dlq_topic: str
    feedback_topic: str
    app_id: str
    batch_size: int = 500
    extra: Mapping[str, str] = field(default_factory=dict)  # more environment variables

    @classmethod
    def fresh(cls, bootstrap: str, state_dir: str | os.PathLike[str], *, metrics_port: int, tag: str = "w",
              batch_size: int = 500, extra: Mapping[str, str] | None = None) -> "WorkerConfig":
        """Unique topic names and app id (``tag`` and a random suffix)."""
        sfx = uuid.uuid4().hex[:10]
        return cls(bootstrap=bootstrap, state_dir=str(state_dir), metrics_port=metrics_port,
                   events_topic=f"{tag}-events-{sfx}", alerts_topic=f"{tag}-alerts-{sfx}",
                   dlq_topic=f"{tag}-dlq-{sfx}", feedback_topic=f"{tag}-feedback-{sfx}",
                   app_id=f"{tag}-app-{sfx}", batch_size=batch_size, extra=dict(extra or {}))

    def env(self) -> dict[str, str]:
        """The ``RISKGRAPH_*`` variables that configure this worker (and the CLI tools)."""
        return {
            "RISKGRAPH_BROKER": f"kafka://{self.bootstrap}",
            "RISKGRAPH_EVENTS_TOPIC": self.events_topic,
            "RISKGRAPH_ALERTS_TOPIC": self.alerts_topic,
            "RISKGRAPH_DLQ_TOPIC": self.dlq_topic,
            "RISKGRAPH_FEEDBACK_TOPIC": self.feedback_topic,
            "RISKGRAPH_APP_ID": self.app_id,
            "RISKGRAPH_STATE_DIR": self.state_dir,
            "RISKGRAPH_METRICS_PORT": str(self.metrics_port),
            "RISKGRAPH_BATCH_SIZE": str(self.batch_size),
            **self.extra,
        }

    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


def clean_environ() -> dict[str, str]:
    """``os.environ`` without ``RISKGRAPH_*`` settings (a developer's shell must not leak in),
    keeping ``RISKGRAPH_KAFKA_*`` (the test broker's own variables)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("RISKGRAPH_") or k.startswith("RISKGRAPH_KAFKA_")}


def parse_metrics(text: str) -> dict[MetricKey, float]:
    """Prometheus exposition text to ``{(sample name, sorted labels): value}``."""
    out: dict[MetricKey, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def scrape(url: str, timeout: float = 5.0) -> dict[MetricKey, float]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return parse_metrics(resp.read().decode())


def metric(samples: Mapping[MetricKey, float], name: str, **labels: str) -> float:
    """One sample's value (0.0 when absent: a labelled counter appears on first increment)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def metric_sum(samples: Mapping[MetricKey, float], name: str) -> float:
    """Sum of a sample name over all its label sets."""
    return sum(v for (n, _), v in samples.items() if n == name)


class WorkerProcess:
    """``python -m riskgraph.cli worker`` as a child process; use as a context manager."""

    def __init__(self, config: WorkerConfig, log_path: str | os.PathLike[str], *, loglevel: str = "info") -> None:
        self.config = config
        self.log_path = Path(log_path)
        self.loglevel = loglevel
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "WorkerProcess":
        if self.proc is not None:
            raise RuntimeError("worker already started")
        env = {**clean_environ(), **self.config.env()}
        # the repository root first on the path: the checkout under test, wherever pytest runs
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "riskgraph.cli", "worker", "--loglevel", self.loglevel],
                env=env, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("worker not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no worker log)"
        return text[-chars:]

    def metrics(self) -> dict[MetricKey, float]:
        return scrape(self.config.metrics_url)

    def wait_for(self, what: str, predicate: Callable[[dict[MetricKey, float]], bool], *,
                 timeout: float = 60.0, interval: float = 0.1) -> dict[MetricKey, float]:
        """Poll /metrics until ``predicate(samples)``; fail with the worker's log otherwise."""
        deadline = time.monotonic() + timeout
        samples: dict[MetricKey, float] = {}
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"worker exited (rc={self.proc.returncode if self.proc else None}) "
                                     f"while waiting for {what}\n--- worker log ---\n{self.log_tail()}")
            try:
                samples = self.metrics()
            except OSError:  # the endpoint is not up yet
                samples = {}
            if samples and predicate(samples):
                return samples
            time.sleep(interval)
        scored = metric(samples, "riskgraph_events_total", outcome="scored")
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (scored={scored})"
                             f"\n--- worker log ---\n{self.log_tail()}")

    def wait_scored(self, n: int, *, timeout: float = 60.0, dead: int | None = None) -> dict[MetricKey, float]:
        """Until ``events_total{outcome=scored}`` (and dead letters, when given) reach ``n``."""
        def done(s: dict[MetricKey, float]) -> bool:
            ok = metric(s, "riskgraph_events_total", outcome="scored") >= n
            return ok and (dead is None or metric(s, "riskgraph_events_total", outcome="dead_letter") >= dead)
        return self.wait_for(f"{n} scored events", done, timeout=timeout)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> "WorkerProcess":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.terminate()
        if exc_type is not None:
            print(f"--- worker log ({self.log_path}) ---\n{self.log_tail()}", file=sys.stderr)


def send_all(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]], *,
             max_request_size: int = 2 * 1024 * 1024) -> None:
    """Send (key, value) records in order to partition 0 with acks=all; wait for every acknowledgement."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             max_in_flight_requests_per_connection=1, max_request_size=max_request_size)
    try:
        futs = [producer.send(topic, key=k, value=v, partition=0) for k, v in records]
        producer.flush(timeout=120)
        for f in futs:
            f.get(timeout=60)
    finally:
        producer.close()


def read_topic(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` (all partitions) up to the end offsets as of the call,
    in (partition, offset) order. No consumer group: nothing is committed."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:  # metadata may lag topic creation
            time.sleep(0.1)
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise AssertionError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                got = {tp.partition: consumer.position(tp) for tp in tps}
                raise AssertionError(f"read {len(records)} records of {topic}: positions {got}, ends {end}")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(r for r in batch if r.offset < end[TopicPartition(r.topic, r.partition)])
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()
