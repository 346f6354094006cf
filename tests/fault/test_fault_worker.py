"""The worker under faults an operator meets: a hard kill, a poison record, repeated ids,
a broker restart under load. Each asserts exact counts (every valid event scored once,
every bad record a dead letter with its reason, nothing lost) and adds a row to the fault table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from riskgraph.broker import LocalBroker, free_ports
from riskgraph.streams.kafka_io import ensure_topics
from tests.integration.worker_proc import WorkerConfig, WorkerProcess, metric, read_topic

from .faults import dead_lettered, outcome, scored, send_all, traffic, wait_settled, worker_log_errors

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _config(bootstrap: str, tmp_path: Path, tag: str, **kw) -> WorkerConfig:
    cfg = WorkerConfig.fresh(bootstrap, tmp_path / "state", metrics_port=free_ports(1)[0], tag=tag, **kw)
    ensure_topics(cfg.settings())
    return cfg


def test_sigkill_then_restart_scores_again_within_seconds(kafka_bootstrap, tmp_path, fault_table):
    """Static membership: the restarted worker is the same group member and gets its
    partition back at once, instead of waiting for the killed member's session to expire."""
    n1, n2 = 3_000, 3_000
    cfg = _config(kafka_bootstrap, tmp_path, "kill", batch_size=100)
    first = WorkerProcess(cfg, tmp_path / "worker-1.log")
    with first:
        send_all(kafka_bootstrap, cfg.events_topic, traffic(n1, seed=5))
        first.wait_scored(n1, timeout=90)
        first.proc.kill()
        first.proc.wait(10)
        killed_at = time.monotonic()
    send_all(kafka_bootstrap, cfg.events_topic, traffic(n2, seed=6, prefix="f", t0=1_704_100_000.0))
    second = WorkerProcess(cfg, tmp_path / "worker-2.log")
    with second:
        second.wait_for("the first event scored after the kill", lambda s: scored(s) >= 1, timeout=90,
                        interval=0.05)
        recovery_s = time.monotonic() - killed_at
        final = wait_settled(second, n2)
        assert second.terminate() == 0
    out = outcome(kafka_bootstrap, cfg)
    fault_table("SIGKILL after 3,000, restart, 3,000 more", n1 + n2, n1 + scored(final), dead_lettered(final),
                recovery_s=round(recovery_s, 1))
    assert scored(final) == n2 and dead_lettered(final) == 0
    assert out["positions"] == {f"{cfg.events_topic}/0": n1 + n2}
    assert len({(a.alert_id, a.score) for a in out["alerts"]}) == len(out["alert_ids"])  # a re-sent alert is the same
    assert recovery_s < 10.0, f"first event scored {recovery_s:.1f} s after the kill"


def test_a_poison_record_is_one_bounded_dead_letter_and_the_partition_moves_on(kafka_bootstrap, tmp_path,
                                                                             fault_table):
    before, after = traffic(500, seed=7), traffic(500, seed=8, prefix="g", t0=1_704_100_000.0)
    poison = json.dumps({"id": "poison", "ts": 1_704_067_300.0, "src": "p", "dst": "q", "kind": "payment",
                         "blob": "x" * 900_000}).encode()
    cfg = _config(kafka_bootstrap, tmp_path, "poison", batch_size=100)
    send_all(kafka_bootstrap, cfg.events_topic, before + [(b"k" * 100_000, poison)] + after)  # a poison key too
    # and on the feedback topic: a 900 KB key on a small record for an alert never raised
    send_all(kafka_bootstrap, cfg.feedback_topic, [(b"f" * 900_000, b'{"alert_id": "00", "label": 1}')])
    with WorkerProcess(cfg, tmp_path / "worker.log") as worker:
        final = wait_settled(worker, 1001)
        worker.wait_for("the feedback dead letter",
                        lambda s: metric(s, "riskgraph_feedback_rejected_total", reason="unknown_alert") == 1)
        assert worker.terminate() == 0
    out = outcome(kafka_bootstrap, cfg)
    fault_table("poison records: 900 KB event (100 KB key), 900 KB feedback key", 1001, scored(final),
                dead_lettered(final), feedback_dead=1)
    assert scored(final) == 1000 and dead_lettered(final) == 1
    ev_dead, fb_dead = (sorted((d for d in out["dead"] if d["topic"] == t), key=lambda d: d["offset"])
                        for t in (cfg.events_topic, cfg.feedback_topic))
    (d,) = ev_dead
    assert d["category"] == "oversized" and d["offset"] == 500 and d["raw_size"] == len(poison)
    assert len(json.dumps(d)) < 16_384  # far below any producer limit
    assert [x["category"] for x in fb_dead] == ["unknown_alert"]
    keys = [r.key for r in read_topic(kafka_bootstrap, cfg.dlq_topic)]
    assert all(k.startswith(b"sha256:") and len(k) == 71 for k in keys)  # both poison keys, as digests
    assert out["positions"] == {f"{cfg.events_topic}/0": 1001}


def test_repeated_event_ids_are_dead_letters_and_alert_ids_stay_unique(kafka_bootstrap, tmp_path, fault_table):
    recs = traffic(2_000, seed=9)
    # three consecutive events sharing an id, then the same id once more much later
    recs[100:103] = [(k, v.replace(b'"id": "e%d"' % (100 + j), b'"id": "same"')) for j, (k, v) in enumerate(recs[100:103])]
    recs[1500] = (recs[1500][0], recs[1500][1].replace(b'"id": "e1500"', b'"id": "same"'))
    cfg = _config(kafka_bootstrap, tmp_path, "dups", batch_size=50)
    send_all(kafka_bootstrap, cfg.events_topic, recs)
    with WorkerProcess(cfg, tmp_path / "worker.log") as worker:
        final = wait_settled(worker, len(recs))
        assert worker.terminate() == 0
    out = outcome(kafka_bootstrap, cfg)
    fault_table("repeated event ids (1 id x 4)", len(recs), scored(final), dead_lettered(final))
    assert scored(final) == len(recs) - 3 and dead_lettered(final) == 3
    assert sorted(d["offset"] for d in out["dead"]) == [101, 102, 1500]
    assert {d["category"] for d in out["dead"]} == {"duplicate_id"}
    assert len(out["alert_ids"]) == len(out["alerts"]) == len(out["event_ids"])


def test_a_broker_restart_under_load_loses_nothing_and_logs_a_few_lines(tmp_path, fault_table):
    port, cport = free_ports(2)
    broker = LocalBroker(tmp_path / "kafka", port=port, controller_port=cport)
    broker.up(timeout=120)
    try:
        n = 6_000
        cfg = _config(broker.bootstrap, tmp_path, "bounce", batch_size=100)
        recs = traffic(n, seed=10)
        log = tmp_path / "worker.log"
        with WorkerProcess(cfg, log, loglevel="warning") as worker:
            send_all(broker.bootstrap, cfg.events_topic, recs[: n // 2])
            worker.wait_scored(n // 4, timeout=90)
            broker.down()
            time.sleep(8.0)  # an outage the worker must ride out
            broker.up(timeout=120)
            send_all(broker.bootstrap, cfg.events_topic, recs[n // 2:])
            final = wait_settled(worker, n, stall_s=45.0)
            assert worker.terminate() == 0
        out = outcome(broker.bootstrap, cfg)
        errors = worker_log_errors(log)
        fault_table("broker down 8 s under load", n, scored(final), dead_lettered(final), error_lines=len(errors))
        assert scored(final) == n and dead_lettered(final) == 0
        assert out["positions"] == {f"{cfg.events_topic}/0": n}
        assert len(out["event_ids"]) == len(out["alert_ids"])
        assert metric(final, "riskgraph_offset_gaps_total", topic=cfg.events_topic, partition="0") == 0
        assert len(errors) < 60, "\n".join(errors[:80])
    finally:
        broker.down()
