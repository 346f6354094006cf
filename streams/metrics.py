"""Prometheus metrics: one typed container, built from an injected registry.

Names follow Prometheus conventions (base units: seconds; counters end in
``_total``). A fresh ``CollectorRegistry`` per container keeps tests and several
workers in one process apart.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> m = EngineMetrics(CollectorRegistry())
>>> m.events.labels(outcome="scored").inc(3)
>>> b"riskgraph_events_total{outcome=\\"scored\\"} 3.0" in generate_latest(m.registry)
True
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


@dataclass
class EngineMetrics:
    """Everything a worker exports on /metrics."""

    registry: CollectorRegistry
    events: Counter
    alerts: Counter
    dead_letters: Counter
    suppressed: Counter
    feedback: Counter
    feedback_rejected: Counter
    end_to_end: Histogram
    processing: Histogram
    inference: Histogram
    batch_size: Histogram
    lag: Gauge
    offset_gaps: Counter
    threshold: Gauge
    model_info: Gauge

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "riskgraph") -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        ns = namespace
        self.events = Counter("events", "Input records by outcome (scored, dead_letter, skipped_replayed)",
                              ["outcome"], namespace=ns, registry=r)
        self.alerts = Counter("alerts", "Alerts produced, by severity", ["severity"], namespace=ns, registry=r)
        self.dead_letters = Counter("dead_letters", "Records sent to the dead-letter topic, by category",
                                    ["category"], namespace=ns, registry=r)
        self.suppressed = Counter("alerts_suppressed", "Alerts withheld by the dedupe cooldown",
                                  namespace=ns, registry=r)
        self.feedback = Counter("feedback", "Analyst feedback records applied to the alert policy, by label",
                                ["label"], namespace=ns, registry=r)
        self.feedback_rejected = Counter(
            "feedback_rejected", "Feedback records not applied to the alert policy, by reason (invalid, "
            "too_large, bad_signature, unknown_alert: dead letters; model_version, repeated, rate_limited: "
            "kept for training)", ["reason"], namespace=ns, registry=r)
        self.end_to_end = Histogram("end_to_end_latency_seconds",
                                    "Event time (producer timestamp) to alert produced",
                                    namespace=ns, registry=r, buckets=_LATENCY_BUCKETS)
        self.processing = Histogram("batch_processing_seconds", "Engine time per micro-batch",
                                    namespace=ns, registry=r, buckets=_LATENCY_BUCKETS)
        self.inference = Histogram("model_inference_seconds", "Scoring time per micro-batch",
                                   namespace=ns, registry=r, buckets=_LATENCY_BUCKETS)
        self.batch_size = Histogram("batch_size_events", "Records per micro-batch", namespace=ns,
                                    registry=r, buckets=_BATCH_BUCKETS)
        self.lag = Gauge("consumer_lag_records", "Records behind the partition's end offset",
                         ["topic", "partition"], namespace=ns, registry=r)
        self.offset_gaps = Counter(
            "offset_gaps", "Offsets of an input partition the engine never received, between two it did "
            "(transaction markers and compaction make some; anything else is records lost upstream)",
            ["topic", "partition"], namespace=ns, registry=r)
        self.threshold = Gauge("alert_threshold", "Current alert threshold", namespace=ns, registry=r)
        self.model_info = Gauge("model_info", "The model version in use (value 1)", ["version"],
                                namespace=ns, registry=r)
