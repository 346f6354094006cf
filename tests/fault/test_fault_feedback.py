"""Feedback against a live worker: forged records move nothing, genuine ones move the
threshold by at most the rate limit, a restart keeps it, and a fresh consumer group that
replays the whole feedback topic changes nothing.

The worker runs with ``RISKGRAPH_FEEDBACK_SECRET`` set; genuine labels go through the
analysts' path (``streams.kafka_io.send_feedback``, what ``riskgraph feedback`` calls),
which signs them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaProducer

from riskgraph.broker import free_ports
from riskgraph.simulators.transactions import SimConfig, simulate
from riskgraph.streams.alerts import Feedback, decode_alert, encode_feedback, sign_feedback
from riskgraph.streams.events import DeadLetter
from riskgraph.streams.kafka_io import produce, send_feedback
from tests.integration.worker_proc import WorkerConfig, WorkerProcess, metric, metric_sum, read_topic

N_EVENTS = 2000
SECRET = "it-feedback-secret"
THR = "riskgraph_alert_threshold"
REJECTED = "riskgraph_feedback_rejected_total"
APPLIED = "riskgraph_feedback_total"


def _rejected(s, reason: str) -> float:
    return metric(s, REJECTED, reason=reason)


@pytest.mark.kafka
def test_forged_feedback_moves_nothing_genuine_is_bounded_and_restart_and_replay_keep_it(
        kafka_bootstrap: str, tmp_path: Path, fault_table) -> None:
    cfg = WorkerConfig.fresh(kafka_bootstrap, tmp_path / "state", metrics_port=free_ports(1)[0], tag="fb",
                             extra={"RISKGRAPH_FEEDBACK_SECRET": SECRET})
    settings = cfg.settings()
    events = simulate(SimConfig(n_persons=1500, n_merchants=200, days=2, seed=3)).events[:N_EVENTS]
    with WorkerProcess(cfg, tmp_path / "worker-1.log") as worker:
        worker.wait_for("the metrics endpoint", lambda s: True, timeout=60)
        assert produce(settings, events, progress=False) == N_EVENTS
        worker.wait_scored(N_EVENTS, timeout=90)
        alerts = [decode_alert(r.value) for r in read_topic(kafka_bootstrap, cfg.alerts_topic)]
        assert len(alerts) > 20
        thr0 = metric(worker.metrics(), THR)

        # forged: genuine alert ids without a signature, and signed records (a leaked key) for ids never raised
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        try:
            for a in alerts[:40]:
                producer.send(cfg.feedback_topic, value=json.dumps(
                    {"alert_id": a.alert_id, "label": 0, "score": 0.99}).encode())
            for _ in range(80):
                fb = sign_feedback(Feedback(alert_id=secrets.token_hex(16), label=1, score=0.0), SECRET)
                producer.send(cfg.feedback_topic, value=encode_feedback(fb))
            producer.send(cfg.feedback_topic, value=json.dumps(
                {"alert_id": alerts[0].alert_id, "label": 0, "note": "x" * 5000}).encode())  # oversized
            producer.flush(30)
        finally:
            producer.close()
        forged = worker.wait_for(
            "the forged feedback to be refused",
            lambda s: (_rejected(s, "bad_signature"), _rejected(s, "unknown_alert"), _rejected(s, "too_large"))
            == (40, 80, 1), timeout=60)
        assert metric(forged, THR) == thr0
        assert metric_sum(forged, APPLIED) == 0
        letters = [msgspec.json.decode(r.value, type=DeadLetter) for r in read_topic(kafka_bootstrap, cfg.dlq_topic)]
        cats = sorted(d.category for d in letters if d.topic == cfg.feedback_topic)
        assert cats == sorted(["bad_signature"] * 40 + ["unknown_alert"] * 80 + ["oversized"])
        assert all(SECRET not in d.reason for d in letters)

        # genuine: 15 false positives on the highest alerts, signed by the analysts' tool
        top = sorted(alerts, key=lambda a: -a.score)[:15]
        assert top[0].score > thr0
        for a in top:
            send_feedback(settings, Feedback(alert_id=a.alert_id, label=0, analyst="ana", ts=time.time()))
        done = worker.wait_for(
            "the genuine feedback", lambda s: metric(s, APPLIED, label="0") + _rejected(s, "rate_limited") == 15,
            timeout=60)
        thr1 = metric(done, THR)
        steps = round((thr1 - thr0) / 0.005)
        assert thr0 < thr1 <= min(thr0 + 10 * 0.005, 0.9) + 1e-9  # <= 10 steps (the rate limit), <= the ceiling
        assert steps <= 10 and _rejected(done, "rate_limited") == 15 - metric(done, APPLIED, label="0") >= 1
        fault_table("hostile feedback records: 121 forged or oversized, 15 genuine", 136,
                    int(metric(done, APPLIED, label="0") + _rejected(done, "rate_limited")), 121,
                    threshold=f"{thr0:.4f}->{thr1:.4f}", applied=int(metric(done, APPLIED, label="0")))
        assert worker.alive()
    assert worker.proc.returncode == 0, worker.log_tail()

    # restart, same consumer group: the threshold feedback moved is still in force
    with WorkerProcess(cfg, tmp_path / "worker-2.log") as worker:
        # the endpoint is up before the worker sets the gauge; feedback cannot take it to 0
        s = worker.wait_for("the threshold gauge", lambda s: metric(s, THR) > 0, timeout=60)
        assert metric(s, THR) == thr1
        time.sleep(3)  # let it drain whatever the first one had not committed on the feedback topic
        s = worker.metrics()
        assert metric(s, THR) == thr1 and metric_sum(s, APPLIED) == 0

    # a fresh consumer group over the same state: every feedback record again, from the start
    fresh = dataclasses.replace(cfg, app_id=cfg.app_id + "-fresh")
    with WorkerProcess(fresh, tmp_path / "worker-3.log") as worker:
        s = worker.wait_for(
            "the replay of the feedback topic",
            lambda s: (_rejected(s, "bad_signature"), _rejected(s, "unknown_alert"), _rejected(s, "too_large"),
                       _rejected(s, "repeated")) == (40, 80, 1, 15), timeout=90)
        assert metric(s, THR) == thr1
        assert metric_sum(s, APPLIED) == 0 and _rejected(s, "rate_limited") == 0
        assert metric(s, "riskgraph_events_total", outcome="scored") == 0  # the events were in the state already
