"""Shared pieces of the fault tier: traffic, producing it, and counting what came out.

>>> len(traffic(5, seed=1)), traffic(2, seed=1)[0][0]
(5, b'a68')
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Mapping

from riskgraph.state.store import GraphStore
from riskgraph.streams.alerts import decode_alert
from tests.fault.conftest import SLOW_SCORER
from tests.integration.worker_proc import read_topic, send_all  # noqa: F401  (send_all: for the fault tests)

T0 = 1_704_067_200.0


def traffic(n: int, *, seed: int = 0, prefix: str = "e", t0: float = T0) -> list[tuple[bytes, bytes]]:
    """``n`` valid payment events with unique ids, as (key, JSON value) records."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        src, dst = f"a{rng.randrange(500)}", f"m{rng.randrange(80)}"
        ev = {"id": f"{prefix}{i}", "ts": t0 + i * 0.05, "src": src, "dst": dst, "kind": "payment",
              "amount": round(rng.lognormvariate(3.0, 1.0), 2)}
        out.append((src.encode(), json.dumps(ev).encode()))
    return out


def slow_scorer_env(delay_s: float) -> dict[str, str]:
    """Environment that makes the worker's ``Engine.process`` ``delay_s`` slower (see slow_scorer/)."""
    return {"PYTHONPATH": str(SLOW_SCORER), "FAULT_SCORE_DELAY_S": str(delay_s)}


def outcome(bootstrap: str, cfg: Any) -> dict[str, Any]:
    """What a (stopped) worker left: alerts and dead letters on their topics, the store's position."""
    alerts = [decode_alert(r.value) for r in read_topic(bootstrap, cfg.alerts_topic)]
    dead = [json.loads(r.value) for r in read_topic(bootstrap, cfg.dlq_topic)]
    with GraphStore(cfg.state_dir, create=False) as store:
        positions = store.positions()
    return {"alerts": alerts, "dead": dead, "positions": positions,
            "alert_ids": {a.alert_id for a in alerts}, "event_ids": {a.event_id for a in alerts}}


def worker_log_errors(path: str | os.PathLike[str]) -> list[str]:
    """ERROR and Traceback lines of a worker's log."""
    text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
    return [line for line in text.splitlines()
            if "[ERROR]" in line or " ERROR " in line or line.startswith("Traceback")]


def scored(samples: Mapping[Any, float]) -> int:
    from tests.integration.worker_proc import metric

    return int(metric(samples, "riskgraph_events_total", outcome="scored"))


def dead_lettered(samples: Mapping[Any, float]) -> int:
    from tests.integration.worker_proc import metric

    return int(metric(samples, "riskgraph_events_total", outcome="dead_letter"))


def wait_settled(worker: Any, n: int, *, stall_s: float = 20.0, timeout: float = 300.0) -> dict[Any, float]:
    """/metrics once ``n`` records are scored or dead-lettered and a second more has passed
    (anything still coming would show), or as soon as nothing moved for ``stall_s`` seconds:
    records that never arrive fail the test's counts then, not a long timeout."""
    import time

    last, last_change = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = worker.wait_for("the metrics endpoint", lambda s: True, timeout=60)
        done = scored(samples) + dead_lettered(samples)
        if done >= n:
            time.sleep(1.0)
            return worker.metrics()
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return samples
        time.sleep(0.25)
    return worker.metrics()
