"""Temporal neighbours from the ring: most recent k, newest first, strictly older, no empty slots."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from riskgraph.features.kernels import compute_features  # noqa: E402
from riskgraph.features.layout import IN, OUT, RING  # noqa: E402
from riskgraph.models.tgn.model import ring_edge_attr  # noqa: E402
from riskgraph.models.tgn.neighbours import recent_neighbours  # noqa: E402


def test_most_recent_k_newest_first_and_padding(make_table, ring_writer) -> None:
    t = make_table(3, 0)
    ring_writer(t, 1, [(10, 1.0, 5.0, OUT), (11, 2.0, np.nan, IN), (12, 3.0, -7.0, OUT)])
    nb = recent_neighbours(t, np.array([1, 0]), np.array([10.0, 10.0]), k=4)
    assert nb.ids.tolist() == [[12, 11, 10, -1], [-1, -1, -1, -1]]
    assert nb.valid.tolist() == [[True, True, True, False], [False] * 4]
    assert nb.ts[0].tolist() == [3.0, 2.0, 1.0, 0.0]
    np.testing.assert_array_equal(nb.amt[0], np.array([-7.0, np.nan, 5.0, np.nan], np.float32))
    assert nb.dir[0].tolist() == [OUT, IN, OUT, 0]
    assert nb.col[0].tolist() == [2, 1, 0, -1]


def test_ring_wraparound_keeps_the_newest(make_table, ring_writer) -> None:
    t = make_table(1, 0)
    ring_writer(t, 0, [(100 + i, float(i), 1.0, OUT) for i in range(RING + 4)])
    nb = recent_neighbours(t, np.array([0, 0]), np.array([1e9, 17.0]), k=5)
    assert nb.ids[0].tolist() == [119, 118, 117, 116, 115]
    assert nb.ids[1].tolist() == [116, 115, 114, 113, 112]  # entries at t >= 17 are not visible at 17
    full = recent_neighbours(t, np.array([0]), np.array([1e9]), k=RING)
    assert full.ids[0].tolist() == list(range(119, 103, -1))  # the 4 oldest were overwritten


def test_only_strictly_older_entries(make_table, ring_writer) -> None:
    t = make_table(1, 0)
    ring_writer(t, 0, [(1, 1.0, 1.0, OUT), (2, 2.0, 1.0, OUT), (3, 3.0, 1.0, IN), (4, 3.0, 1.0, OUT)])
    nb = recent_neighbours(t, np.array([0, 0, 0]), np.array([3.0, 3.5, 1.0]), k=3)
    assert nb.ids.tolist() == [[2, 1, -1], [4, 3, 2], [-1, -1, -1]]


def test_empty_ring_entries_are_skipped(make_table, ring_writer) -> None:
    t = make_table(1, 0)
    ring_writer(t, 0, [(5, 1.0, 1.0, OUT), (6, 2.0, 1.0, OUT)])
    t.ring_nbr[0, 1] = -1  # a cleared entry inside the written range never counts
    nb = recent_neighbours(t, np.array([0]), np.array([9.0]), k=3)
    assert nb.ids.tolist() == [[5, -1, -1]]


def _twin(history: list[tuple[int, float]], t: float, k: int) -> list[int]:
    """The newest k of the last RING written interactions strictly older than t (plain Python)."""
    kept = history[-RING:]
    return [nbr for nbr, ts in reversed(kept) if ts < t][:k]


def test_selection_over_rings_written_by_the_feature_kernels(make_table) -> None:
    rng = np.random.default_rng(4)
    n_nodes, n = 12, 400
    src, dst = rng.integers(0, n_nodes, n), rng.integers(0, n_nodes, n)
    ts = np.sort(rng.integers(0, 150, n)).astype(np.float64)  # many ties
    amount = rng.lognormal(2.0, 1.0, n)
    t = make_table(n_nodes, 0)
    history: dict[int, list[tuple[int, float]]] = {i: [] for i in range(n_nodes)}
    for lo in range(0, n, 50):
        sl = slice(lo, lo + 50)
        compute_features(t, src[sl], dst[sl], src[sl], dst[sl], ts[sl], amount[sl])
        for s, d, tt in zip(src[sl], dst[sl], ts[sl]):
            history[int(s)].append((int(d), float(tt)))
            history[int(d)].append((int(s), float(tt)))
        q_slot = np.concatenate([src[sl], dst[sl]])
        q_ts = np.tile(ts[sl], 2)
        nb = recent_neighbours(t, q_slot, q_ts, k=6)
        for q in range(len(q_slot)):
            want = _twin(history[int(q_slot[q])], q_ts[q], 6)
            assert nb.ids[q, : len(want)].tolist() == want
            assert (nb.ids[q, len(want):] == -1).all()


def test_validation(make_table) -> None:
    t = make_table(2, 0)
    good = (np.array([0, 1]), np.array([1.0, 2.0]))
    for k in (0, RING + 1):
        with pytest.raises(ValueError, match="k must be"):
            recent_neighbours(t, *good, k=k)
    with pytest.raises(ValueError, match="slots must be in"):
        recent_neighbours(t, np.array([0, 2]), good[1], k=2)
    with pytest.raises(ValueError, match="finite"):
        recent_neighbours(t, good[0], np.array([1.0, np.nan]), k=2)
    with pytest.raises(ValueError, match="same length"):
        recent_neighbours(t, good[0], np.array([1.0]), k=2)
    with pytest.raises(ValueError, match="integers"):
        recent_neighbours(t, np.array([0.0, 1.0]), good[1], k=2)


def test_ring_edge_attr() -> None:
    a = ring_edge_attr(np.array([[0.0, np.nan], [np.e - 1, -(np.e - 1)]], np.float32),
                       np.array([[OUT, IN], [IN, OUT]], np.int8))
    assert a.shape == (2, 2, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a[0], [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(a[1], [[0.1, 1.0, 1.0], [-0.1, 1.0, 0.0]], rtol=1e-6)
