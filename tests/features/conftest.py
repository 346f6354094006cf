"""Shared helpers for the feature kernel tests: tables, seeded event streams, twin checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from riskgraph.features.layout import RING, Acc, NodeArrays, init_rows
from .twins import Node, twin_state

# Rounding differs between the kernels (stepwise decay, Welford) and the twins (sums
# recomputed from history, exact statistics); these bounds are far above it and far below
# any real disagreement.
RTOL, ATOL = 1e-9, 1e-7


@dataclass
class Events:
    """A stream of events as the kernel's arrays, with the id <-> slot mapping used."""

    src_id: np.ndarray
    dst_id: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    slot_of: dict[int, int]

    @property
    def src_slot(self) -> np.ndarray:
        return np.array([self.slot_of[int(i)] for i in self.src_id], np.int64)

    @property
    def dst_slot(self) -> np.ndarray:
        return np.array([self.slot_of[int(i)] for i in self.dst_id], np.int64)

    def tuples(self) -> list[tuple[int, int, float, float]]:
        return [(int(s), int(d), float(t), float(a))
                for s, d, t, a in zip(self.src_id, self.dst_id, self.ts, self.amount)]

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def fresh_table(capacity: int) -> NodeArrays:
    t = NodeArrays.empty(capacity)
    init_rows(t, np.arange(capacity))
    return t


def make_events(src: list[int], dst: list[int], ts: list[float], amount: list[float],
                rng: np.random.Generator | None = None) -> Events:
    """Events over entity ids, each id given a slot (shuffled when ``rng`` is given)."""
    ids = sorted(set(src) | set(dst))
    slots = np.arange(len(ids)) if rng is None else rng.permutation(len(ids))
    return Events(np.asarray(src, np.int64), np.asarray(dst, np.int64), np.asarray(ts, np.float64),
                  np.asarray(amount, np.float64), {i: int(s) for i, s in zip(ids, slots)})


def random_events(seed: int, n: int, n_nodes: int, self_loop_p: float = 0.05, nan_p: float = 0.2,
                  back_p: float = 0.1) -> Events:
    """A seeded stream over a few nodes: bursts and gaps, late events, missing and negative
    amounts, self loops, ids unrelated to slots."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1000, 100000), size=n_nodes, replace=False)
    src = rng.choice(ids, size=n)
    dst = rng.choice(ids, size=n)
    loops = rng.random(n) < self_loop_p
    dst[loops] = src[loops]
    gaps = rng.choice([0.0, 1.0, 30.0, 600.0, 7200.0, 200000.0], size=n, p=[.15, .3, .25, .15, .1, .05])
    ts = 1.7e9 + np.cumsum(gaps * rng.random(n))
    late = rng.random(n) < back_p
    ts[late] -= rng.random(late.sum()) * 120.0
    amount = np.round(rng.lognormal(3.0, 1.5, n) * np.where(rng.random(n) < 0.1, -1.0, 1.0), 2)
    amount[rng.random(n) < nan_p] = np.nan
    return make_events(src.tolist(), dst.tolist(), ts.tolist(), amount.tolist(), rng)


def assert_state_matches(t: NodeArrays, slot: int, node: Node) -> None:
    """Row ``slot`` of the table holds what the twin's node says, up to rounding."""
    want = twin_state(node)
    acc = t.acc[slot]
    for key, first in (("out_cnt", Acc.OUT_CNT_0), ("in_cnt", Acc.IN_CNT_0), ("out_amt", Acc.OUT_AMT_0),
                       ("in_amt", Acc.IN_AMT_0)):
        np.testing.assert_allclose(acc[first:first + 3], want[key], rtol=RTOL, atol=ATOL, err_msg=key)
    for key, col in (("decay_ts", Acc.DECAY_TS), ("last_out", Acc.LAST_OUT_TS), ("last_in", Acc.LAST_IN_TS),
                     ("first_seen", Acc.FIRST_SEEN), ("amt_n", Acc.AMT_N), ("amt_mean", Acc.AMT_MEAN),
                     ("amt_m2", Acc.AMT_M2), ("n_out", Acc.N_OUT), ("n_in", Acc.N_IN)):
        np.testing.assert_allclose(acc[col], want[key], rtol=RTOL, atol=ATOL, err_msg=key)
    for key in ("in_tot", "out_tot", "in_amt_n", "in_neg_n", "in_neg_sum", "out_neg_n", "out_neg_sum", "rec_out",
                "rec_in", "gap_n", "gap_mean", "gap_m2", "nbr_good", "nbr_log_deg"):
        np.testing.assert_allclose(acc[Acc[key.upper()]], want[key], rtol=RTOL, atol=ATOL, err_msg=key)
    goodness = acc[Acc.GOOD_SUM] / (acc[Acc.GOOD_W] + 1.0)
    fairness = 1.0 - acc[Acc.FAIR_ERR] / (acc[Acc.AMT_N] + 1.0)
    np.testing.assert_allclose([goodness, fairness], [want["goodness"], want["fairness"]], rtol=RTOL, atol=ATOL)
    assert t.ring_n[slot] == want["ring_n"]
    k = min(int(t.ring_n[slot]), RING)
    order = [(int(t.ring_n[slot]) - k + i) % RING for i in range(k)]  # oldest first
    got = [(int(t.ring_nbr[slot, j]), float(t.ring_ts[slot, j]), float(t.ring_amt[slot, j]),
            int(t.ring_dir[slot, j])) for j in order]
    assert len(got) == len(want["ring"])
    for (gn, gt, ga, gd), (wn, wt, wa, wd) in zip(got, want["ring"]):
        assert (gn, gt, gd) == (wn, wt, wd)
        wa32 = float(np.float32(wa))
        assert (math.isnan(ga) and math.isnan(wa32)) or ga == wa32


# Helpers reach the tests as session fixtures (plain functions, no state): test modules
# must not import conftest, and hypothesis accepts session-scoped fixtures in @given tests.
@pytest.fixture(scope="session")
def table() -> Callable[[int], NodeArrays]:
    """Factory of node tables whose every row is fresh."""
    return fresh_table


@pytest.fixture(scope="session")
def events_from() -> Callable[..., Events]:
    """``make_events``: events from explicit lists of ids, times and amounts."""
    return make_events


@pytest.fixture(scope="session")
def seeded_events() -> Callable[..., Events]:
    """``random_events``: a seeded random stream."""
    return random_events


@pytest.fixture(scope="session")
def state_matches() -> Callable[[NodeArrays, int, Node], None]:
    """``assert_state_matches``: a table row equals the twin's node up to rounding."""
    return assert_state_matches
