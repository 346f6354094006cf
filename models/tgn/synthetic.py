"""A small seeded temporal interaction graph with labelled risky events, for tests and benchmarks.

Background: every node has a few habitual counterparties and sends to one of them most
of the time (so links are predictable from history); sources are drawn with a
heavy-tailed popularity, inter-event gaps are exponential, amounts log-normal per
sender. Risk: a few *mule* nodes; in short bursts, senders who never dealt with a mule
send it an unusually large amount. Those events are labelled 1 -- detectable from the
features (new counterparty, amount z-score) and from the mule's memory (many new
senders in a short time).

>>> s = synthetic_stream(n_nodes=50, n_events=500, seed=1)
>>> len(s.ts), bool((np.diff(s.ts) >= 0).all()), bool(0 < s.labels.mean() < 0.2)
(500, True, True)
>>> synthetic_stream(n_nodes=50, n_events=500, seed=1).src.tolist() == s.src.tolist()
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SyntheticStream:
    """Events in time order; node ids are dense in ``[0, n_nodes)``."""

    src: np.ndarray  # int64 [n]
    dst: np.ndarray  # int64 [n]
    ts: np.ndarray  # float64 [n], seconds
    amount: np.ndarray  # float64 [n]
    labels: np.ndarray  # int64 [n], 1: risky
    n_nodes: int


def synthetic_stream(n_nodes: int = 300, n_events: int = 10_000, seed: int = 0, habits: int = 3,
                     p_habit: float = 0.85, mule_frac: float = 0.03, burst_rate: float = 0.004,
                     burst_len: int = 8, mean_gap_s: float = 5.0) -> SyntheticStream:
    """Generate the stream; everything is a function of the arguments (``seed`` included)."""
    if n_nodes < 10 or n_events < 1:
        raise ValueError(f"need n_nodes >= 10 and n_events >= 1, got {n_nodes}, {n_events}")
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_nodes + 1) ** 0.8
    pop = rng.permutation(pop / pop.sum())
    habit = rng.integers(0, n_nodes, size=(n_nodes, habits))
    scale = rng.lognormal(3.0, 1.0, size=n_nodes)
    mules = rng.choice(n_nodes, size=max(1, int(mule_frac * n_nodes)), replace=False)
    src = np.empty(n_events, np.int64)
    dst = np.empty(n_events, np.int64)
    amount = np.empty(n_events, np.float64)
    labels = np.zeros(n_events, np.int64)
    i = 0
    while i < n_events:
        if rng.random() < burst_rate:  # a burst of fresh senders paying one mule
            mule = mules[rng.integers(len(mules))]
            for _ in range(min(burst_len, n_events - i)):
                s = rng.integers(n_nodes)
                src[i], dst[i] = s, mule
                amount[i] = scale[s] * rng.lognormal(2.0, 0.3)
                labels[i] = 1
                i += 1
            continue
        s = rng.choice(n_nodes, p=pop)
        d = habit[s, rng.integers(habits)] if rng.random() < p_habit else rng.integers(n_nodes)
        src[i], dst[i] = s, d
        amount[i] = scale[s] * rng.lognormal(0.0, 0.3)
        i += 1
    ts = np.cumsum(rng.exponential(mean_gap_s, size=n_events))
    return SyntheticStream(src=src, dst=dst, ts=ts, amount=amount, labels=labels, n_nodes=n_nodes)
