"""Throughput of compute_features on a seeded workload (slow: run with -m slow)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from riskgraph.features.catalogue import N_FEATURES
from riskgraph.features.kernels import compute_features


@pytest.mark.slow
def test_features_throughput(table) -> None:
    n_nodes, n_events = 20_000, 100_000
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, n_nodes, n_events), rng.integers(0, n_nodes, n_events)
    ts = 1.7e9 + np.sort(rng.random(n_events)) * 86400.0
    amount = rng.lognormal(3.0, 1.5, n_events)
    amount[rng.random(n_events) < 0.1] = np.nan
    compute_features(table(2), [0], [1], [0], [1], [0.0], [1.0])  # JIT / cache load
    out = np.empty((n_events, N_FEATURES))
    best = {}
    for batch in (n_events, 1000):
        runs = []
        for _ in range(5):
            t = table(n_nodes)
            t0 = time.perf_counter()
            for lo in range(0, n_events, batch):
                hi = lo + batch
                compute_features(t, src[lo:hi], dst[lo:hi], src[lo:hi], dst[lo:hi], ts[lo:hi], amount[lo:hi],
                                 out=out[lo:hi])
            runs.append(time.perf_counter() - t0)
        best[batch] = min(runs) / n_events * 1e6
    print(json.dumps({"us_per_event_batch_100k": round(best[n_events], 3), "us_per_event_batch_1000":
                      round(best[1000], 3)}))
    assert np.isfinite(out).all()
    # target is well under 1 us per event; the bound leaves room for a busy shared machine
    assert best[n_events] < 3.0
