"""A backlog behind a slow scorer: back-pressure, never a dropped record.

The worker's channel queue between Faust's consumer and the engine holds
``max(4 * batch_size, 4096)`` records. A scorer slower than the fetcher fills it; the
records then wait (the consumer stops fetching the partition) -- they must not be
dropped, and the store's position must never pass a record the engine did not see.
"""

from __future__ import annotations

import pytest

from riskgraph.broker import free_ports
from riskgraph.streams.kafka_io import ensure_topics
from tests.integration.worker_proc import WorkerConfig, WorkerProcess, metric

from .faults import dead_lettered, outcome, scored, send_all, slow_scorer_env, traffic, wait_settled, worker_log_errors

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.parametrize("consume", ["batch", "stream"])
def test_backlog_behind_a_slow_scorer_is_scored_exactly_once(kafka_bootstrap, tmp_path, fault_table, consume):
    n = 12_000
    cfg = WorkerConfig.fresh(kafka_bootstrap, tmp_path / "state", metrics_port=free_ports(1)[0], tag="backlog",
                             batch_size=20, extra={**slow_scorer_env(0.002), "RISKGRAPH_CONSUME": consume})
    ensure_topics(cfg.settings())
    send_all(kafka_bootstrap, cfg.events_topic, traffic(n, seed=3))  # the whole backlog before the worker starts
    log = tmp_path / "worker.log"
    with WorkerProcess(cfg, log) as worker:
        final = wait_settled(worker, n)
        assert worker.terminate() == 0
    out = outcome(kafka_bootstrap, cfg)
    fault_table(f"backlog {n:,}, slow scorer, batch 20 ({consume})", n, scored(final), dead_lettered(final),
                alerts=len(out["alerts"]))
    assert scored(final) == n and dead_lettered(final) == 0
    assert out["positions"] == {f"{cfg.events_topic}/0": n}
    assert len(out["alert_ids"]) == len(out["alerts"])  # every alert once, ids unique
    assert metric(final, "riskgraph_consumer_lag_records", topic=cfg.events_topic, partition="0") == 0
    assert not [e for e in worker_log_errors(log) if "Cannot put" in e or "Traceback" in e]
