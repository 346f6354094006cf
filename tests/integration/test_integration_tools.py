"""The operator and analyst tools against a live worker: produce, alerts tail, feedback.

One worker subprocess (module fixture) serves every test here; ``riskgraph produce``
(in process, as a user would run it) feeds it 2,000 simulated events. The tools find
their topics through the same ``RISKGRAPH_*`` environment as the worker.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import msgspec
import pytest
from kafka import KafkaProducer

from riskgraph.broker import free_ports
from riskgraph.cli import main as cli_main
from riskgraph.streams.alerts import Alert, decode_alert
from riskgraph.streams.events import DeadLetter
from riskgraph.streams.kafka_io import SEVERITY_ORDER
from .worker_proc import WorkerConfig, WorkerProcess, metric, read_topic

N_EVENTS = 2000


@dataclass
class LiveWorker:
    cfg: WorkerConfig
    worker: WorkerProcess
    produce_rc: int
    produce_out: str
    alerts: list[Alert]  # the alerts topic once all events were scored

    @property
    def broker(self) -> str:
        return f"kafka://{self.cfg.bootstrap}"


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorker]:
    tmp = tmp_path_factory.mktemp("tools")
    cfg = WorkerConfig.fresh(kafka_bootstrap, tmp / "state", metrics_port=free_ports(1)[0], tag="tools")
    with WorkerProcess(cfg, tmp / "worker.log") as worker, pytest.MonkeyPatch.context() as mp:
        for k, v in cfg.env().items():
            mp.setenv(k, v)
        worker.wait_for("the metrics endpoint", lambda s: True, timeout=60)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = cli_main(["produce", "--broker", f"kafka://{kafka_bootstrap}", "--limit", str(N_EVENTS),
                           "--days", "2", "--persons", "1500", "--merchants", "200", "--no-progress"])
        worker.wait_scored(N_EVENTS, timeout=60)
        alerts = [decode_alert(r.value) for r in read_topic(kafka_bootstrap, cfg.alerts_topic)]
        yield LiveWorker(cfg, worker, rc, out.getvalue(), alerts)


@pytest.fixture
def tool_env(live: LiveWorker, monkeypatch: pytest.MonkeyPatch) -> LiveWorker:
    """The worker's RISKGRAPH_* topics in this test's environment, for the CLI."""
    for k, v in live.cfg.env().items():
        monkeypatch.setenv(k, v)
    return live


@pytest.mark.kafka
def test_produce_delivers_every_event(tool_env: LiveWorker) -> None:
    live = tool_env
    assert live.produce_rc == 0
    assert f"produced {N_EVENTS:,} events to {live.cfg.events_topic}" in live.produce_out
    records = read_topic(live.cfg.bootstrap, live.cfg.events_topic)
    assert len(records) == N_EVENTS
    assert all(r.key and json.loads(r.value)["src"] == r.key.decode() for r in records)  # keyed by source
    s = live.worker.metrics()
    assert metric(s, "riskgraph_events_total", outcome="scored") == N_EVENTS
    assert metric(s, "riskgraph_events_total", outcome="dead_letter") == 0
    assert live.alerts, "2,000 simulated events raise alerts"


@pytest.mark.kafka
def test_alerts_tail_prints_json_alerts(tool_env: LiveWorker, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["alerts", "tail", "--broker", tool_env.broker, "--from-beginning", "--format", "json",
                   "--limit", "5", "--idle-timeout", "10"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert len(lines) == 5
    printed = [msgspec.json.decode(line.encode(), type=Alert) for line in lines]
    assert printed == tool_env.alerts[:5]  # the oldest five, in topic order


@pytest.mark.kafka
def test_alerts_tail_severity_filter(tool_env: LiveWorker, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["alerts", "tail", "--broker", tool_env.broker, "--from-beginning", "--format", "json",
                   "--severity", "high", "--idle-timeout", "3"])
    printed = [msgspec.json.decode(line.encode(), type=Alert) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0
    expected = [a for a in tool_env.alerts if SEVERITY_ORDER[a.severity] >= SEVERITY_ORDER["high"]]
    assert expected, "the stream must raise some high or critical alerts for the filter to mean anything"
    assert len(expected) < len(tool_env.alerts)
    assert printed == expected


@pytest.mark.kafka
def test_alerts_tail_table_by_entity(tool_env: LiveWorker, capsys: pytest.CaptureFixture[str]) -> None:
    entity = tool_env.alerts[0].src
    rc = cli_main(["alerts", "tail", "--broker", tool_env.broker, "--from-beginning", "--entity", entity,
                   "--idle-timeout", "3"])
    header, *rows = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert "severity" in header and "score" in header
    mine = [a for a in tool_env.alerts if entity in (a.src, a.dst)]
    assert len(rows) == len(mine) >= 1
    for row, a in zip(rows, mine):
        assert a.event_id in row and a.severity in row and entity in row


def _feedback_lines(state_dir: str) -> list[dict]:
    path = Path(state_dir) / "feedback.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.kafka
def test_feedback_false_positive_raises_threshold(tool_env: LiveWorker, capsys: pytest.CaptureFixture[str]) -> None:
    live = tool_env
    before = live.worker.metrics()
    thr0 = metric(before, "riskgraph_alert_threshold")
    n0 = metric(before, "riskgraph_feedback_total", label="0")
    # the worker moves the threshold by the score it recorded with the alert, not the one sent:
    # the highest-scored alert (alerts 0 and 1 are the other tests') is above the threshold
    alert = max(live.alerts[2:], key=lambda a: a.score)
    assert 0 < thr0 <= alert.score, "a false positive above the threshold is needed to move it"
    rc = cli_main(["feedback", alert.alert_id, "--label", "0", "--score", "0.1", "--broker", live.broker,
                   "--analyst", "ana", "--note", "known merchant"])
    assert rc == 0 and f"feedback sent: alert {alert.alert_id} label 0" in capsys.readouterr().out
    after = live.worker.wait_for("the feedback to apply",
                                 lambda s: metric(s, "riskgraph_feedback_total", label="0") == n0 + 1, timeout=30)
    assert metric(after, "riskgraph_alert_threshold") > thr0
    assert metric(after, "riskgraph_alert_threshold") <= 0.9 + 1e-9  # bounded: calibrated 0.8 + 0.5 * (1 - 0.8)
    mine = [r for r in _feedback_lines(live.cfg.state_dir) if r["alert_id"] == alert.alert_id]
    assert len(mine) == 1
    assert ((mine[0]["label"], mine[0]["score"], mine[0]["sent_score"], mine[0]["analyst"], mine[0]["note"])
            == (0, alert.score, 0.1, "ana", "known merchant"))
    assert mine[0]["applied"] is True and mine[0]["model_version"] == alert.model_version
    assert mine[0]["received_at"] >= mine[0]["ts"] > 0


@pytest.mark.kafka
def test_feedback_without_score_uses_the_alerts_own(tool_env: LiveWorker) -> None:
    live = tool_env
    n1 = metric(live.worker.metrics(), "riskgraph_feedback_total", label="1")
    alert = live.alerts[0]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["feedback", alert.alert_id, "--label", "1", "--broker", live.broker]) == 0
    live.worker.wait_for("the feedback to apply",
                         lambda s: metric(s, "riskgraph_feedback_total", label="1") == n1 + 1, timeout=30)
    mine = [r for r in _feedback_lines(live.cfg.state_dir) if r["alert_id"] == alert.alert_id]
    assert [(r["label"], r["score"]) for r in mine] == [(1, alert.score)]  # looked up by the worker


@pytest.mark.kafka
def test_malformed_feedback_goes_to_the_dead_letter_topic(tool_env: LiveWorker) -> None:
    live = tool_env
    before = live.worker.metrics()
    bad = [b"{not json", json.dumps({"alert_id": "a1", "label": 2}).encode(), json.dumps({"label": 0}).encode()]
    producer = KafkaProducer(bootstrap_servers=live.cfg.bootstrap, acks="all")
    try:
        for value in bad:
            producer.send(live.cfg.feedback_topic, value=value).get(timeout=30)
    finally:
        producer.close()
    # "{not json" is malformed JSON; a label of 2 and a missing alert_id are invalid values
    cats = lambda s: (metric(s, "riskgraph_dead_letters_total", category="malformed_json"),  # noqa: E731
                      metric(s, "riskgraph_dead_letters_total", category="invalid_value"))
    bad0, inv0 = cats(before)
    live.worker.wait_for("the bad feedback to be dead-lettered",
                         lambda s: cats(s) == (bad0 + 1, inv0 + 2), timeout=30)
    letters = [msgspec.json.decode(r.value, type=DeadLetter) for r in read_topic(live.cfg.bootstrap, live.cfg.dlq_topic)]
    from_feedback = [d for d in letters if d.topic == live.cfg.feedback_topic]
    assert sorted(d.raw for d in from_feedback) == sorted(bad)
    assert all(d.reason.startswith("bad feedback: ") and d.received_at > 0 for d in from_feedback)
    # bad feedback changes nothing else
    after = live.worker.metrics()
    for label in ("0", "1"):
        assert (metric(after, "riskgraph_feedback_total", label=label)
                == metric(before, "riskgraph_feedback_total", label=label))
    assert metric(after, "riskgraph_alert_threshold") == metric(before, "riskgraph_alert_threshold")
    assert live.worker.alive()


@pytest.mark.kafka
def test_feedback_tombstone_is_dead_lettered_and_feedback_keeps_flowing(tool_env: LiveWorker) -> None:
    # A null value (a tombstone, e.g. from a compaction tool) is bad input like any other:
    # dead-lettered, and the feedback agent keeps applying the records after it.
    live = tool_env
    before = live.worker.metrics()
    n0 = metric(before, "riskgraph_feedback_total", label="0")
    dead0 = len(read_topic(live.cfg.bootstrap, live.cfg.dlq_topic))
    producer = KafkaProducer(bootstrap_servers=live.cfg.bootstrap, acks="all")
    try:
        producer.send(live.cfg.feedback_topic, key=b"a1", value=None).get(timeout=30)
        ok = json.dumps({"alert_id": live.alerts[1].alert_id, "label": 0, "score": 0.5}).encode()
        producer.send(live.cfg.feedback_topic, value=ok).get(timeout=30)
    finally:
        producer.close()
    live.worker.wait_for("the feedback after the tombstone",
                         lambda s: metric(s, "riskgraph_feedback_total", label="0") == n0 + 1, timeout=30)
    letters = [msgspec.json.decode(r.value, type=DeadLetter)
               for r in read_topic(live.cfg.bootstrap, live.cfg.dlq_topic)[dead0:]]
    assert [(d.topic, d.raw) for d in letters] == [(live.cfg.feedback_topic, b"")]
    assert live.worker.alive()
