"""The one ring walk (``features.rings``): newest first, strictly older, wrapped or not yet full."""

from __future__ import annotations

import math

import numpy as np
import pytest

from riskgraph.features.layout import RING, NodeArrays, init_rows
from riskgraph.features.rings import held, newest_column, newest_first, next_column, older_than


def ring_of(times: list[float]) -> NodeArrays:
    """One row that received an interaction with node 100 + i at ``times[i]``, in that order."""
    t = NodeArrays.empty(2)
    init_rows(t, np.arange(2))
    for i, ts in enumerate(times):
        c = next_column(t.ring_n[1])
        t.ring_nbr[1, c], t.ring_ts[1, c] = 100 + i, ts
        t.ring_n[1] += 1
    return t


def walk(t: NodeArrays, before: float, limit: int = RING) -> list[int]:
    cols = np.full(RING, -7, np.int64)
    m = newest_first(t.ring_nbr, t.ring_ts, t.ring_n, 1, before, limit, cols)
    assert (cols[m:] == -7).all()  # nothing written past what it returns
    return t.ring_nbr[1, cols[:m]].tolist()


def test_a_ring_not_yet_full_walks_its_entries_newest_first() -> None:
    t = ring_of([1.0, 2.0, 3.0])
    assert walk(t, math.inf) == [102, 101, 100]
    assert walk(t, 3.0) == [101, 100]  # strictly older: not the entry at the same instant
    assert walk(t, 1.0) == []
    assert walk(t, math.inf, limit=2) == [102, 101]


def test_a_wrapped_ring_starts_before_the_next_write_and_keeps_the_last_ring_entries() -> None:
    n = RING + 5
    t = ring_of([float(i) for i in range(n)])
    assert int(t.ring_n[1]) == n and next_column(n) == 5
    assert walk(t, math.inf) == [100 + i for i in range(n - 1, n - 1 - RING, -1)]
    assert walk(t, float(n - 3)) == [100 + i for i in range(n - 4, n - 1 - RING, -1)]
    assert walk(t, math.inf, limit=3) == [100 + n - 1, 100 + n - 2, 100 + n - 3]


def test_a_fresh_row_has_nothing_to_walk() -> None:
    t = ring_of([])
    assert walk(t, math.inf) == [] and held(0) == 0
    assert not any(older_than(t.ring_nbr, t.ring_ts, 1, c, math.inf) for c in range(RING))


def test_the_newest_column_is_the_one_before_the_next_write() -> None:
    for n in range(1, 3 * RING):
        cols = [newest_column(n, b) for b in range(held(n))]
        assert cols[0] == (next_column(n) - 1) % RING
        assert sorted(cols) == list(range(held(n)))  # each held column once


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_walk_equals_a_plain_python_twin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n = int(rng.integers(0, 3 * RING))
        times = rng.uniform(0, 10, n).round(1).tolist()  # out of order, with ties
        t = ring_of(times)
        before = float(rng.uniform(0, 11))
        limit = int(rng.integers(1, RING + 1))
        kept = [100 + i for i in range(n - 1, max(n - RING, 0) - 1, -1) if times[i] < before]
        assert walk(t, before, limit) == kept[:limit]
