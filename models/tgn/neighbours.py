"""Temporal neighbours from the node rings: the ``k`` most recent interactions before a time.

The feature kernels write every interaction into both ends' rings *before* the batch
is scored (``streams.engine``: features, then score), so a ring may already hold the
event being scored and later events of the same batch. Selection therefore keeps only
entries strictly older than the query time: an event never sees itself, a later event,
or one at the same instant. Entries are taken newest first in ring (write) order, which
is time order for a stream processed in time order per key.

>>> from riskgraph.features.layout import NodeArrays, init_rows
>>> t = NodeArrays.empty(1); init_rows(t, np.arange(1))
>>> for i, (nbr, ts) in enumerate([(7, 1.0), (8, 2.0), (9, 3.0)]):
...     t.ring_nbr[0, i], t.ring_ts[0, i] = nbr, ts
>>> t.ring_n[0] = 3
>>> nb = recent_neighbours(t, np.array([0, 0]), np.array([3.0, 9.0]), k=2)
>>> nb.ids.tolist(), nb.valid.tolist()
([[8, 7], [9, 8]], [[True, True], [True, True]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from riskgraph.features.checks import refresh_stale_cache
from riskgraph.features.layout import RING, NodeArrays
from riskgraph.features.prefetch import prefetch
from riskgraph.features.rings import SOURCE_DIGEST, held, newest_column, older_than

#: Queries ahead whose ring rows are prefetched (the rows are random in a table that may
#: be far larger than the CPU caches).
_AHEAD = 8
_LAYOUT = (_AHEAD, SOURCE_DIGEST)


@njit(cache=True)
def _baked_layout() -> tuple:
    return (_AHEAD, SOURCE_DIGEST)


@dataclass
class Neighbours:
    """``k`` neighbour interactions per query, newest first; invalid entries are padding."""

    ids: np.ndarray  # int64 [Q, k], internal id of the counterparty (-1: none)
    ts: np.ndarray  # float64 [Q, k], interaction time (0: none)
    amt: np.ndarray  # float32 [Q, k], amount (NaN: missing or none)
    dir: np.ndarray  # int8 [Q, k], 0 OUT / 1 IN (0: none)
    col: np.ndarray  # int64 [Q, k], ring column the entry came from (-1: none)
    valid: np.ndarray  # bool [Q, k]


@njit(cache=True)
def _select_recent(ring_nbr, ring_ts, ring_amt, ring_dir, ring_n, slots, ts, ids, out_ts, amt, dirs, cols):
    """Fill row q of the outputs with the newest ring entries of ``slots[q]`` older than ``ts[q]``."""
    k = ids.shape[1]
    ring = ring_nbr.shape[1]
    nq = slots.shape[0]
    for q in range(nq):
        if q + _AHEAD < nq:
            a = slots[q + _AHEAD]
            prefetch(ring_n, a, 0)
            prefetch(ring_nbr, a, 0)
            prefetch(ring_nbr, a, ring - 1)
            prefetch(ring_ts, a, 0)
            prefetch(ring_ts, a, ring - 1)
            prefetch(ring_amt, a, 0)
            prefetch(ring_dir, a, 0)
        s = slots[q]
        n = ring_n[s]
        got = 0
        for back in range(held(n)):
            c = newest_column(n, back)
            if older_than(ring_nbr, ring_ts, s, c, ts[q]):
                ids[q, got] = ring_nbr[s, c]
                out_ts[q, got] = ring_ts[s, c]
                amt[q, got] = ring_amt[s, c]
                dirs[q, got] = ring_dir[s, c]
                cols[q, got] = c
                got += 1
                if got == k:
                    break
        for j in range(got, k):
            ids[q, j] = -1
            out_ts[q, j] = 0.0
            amt[q, j] = np.nan
            dirs[q, j] = 0
            cols[q, j] = -1


def recent_neighbours(table: NodeArrays, slots: np.ndarray, ts: np.ndarray, k: int) -> Neighbours:
    """The ``k`` most recent ring entries of row ``slots[q]`` strictly older than ``ts[q]``.

    Raises ValueError on bad shapes, slots outside the table, non-finite times, or
    ``k`` outside ``[1, RING]``.
    """
    if not 1 <= k <= RING:
        raise ValueError(f"k must be in [1, {RING}], got {k}")
    slots = np.asarray(slots)
    ts = np.asarray(ts)
    if slots.ndim != 1 or ts.shape != slots.shape:
        raise ValueError(f"slots and ts must be 1-D of the same length, got {slots.shape} and {ts.shape}")
    if slots.size and not np.issubdtype(slots.dtype, np.integer):
        raise ValueError(f"slots must be integers, got dtype {slots.dtype}")
    slots = np.ascontiguousarray(slots, np.int64)
    ts = np.ascontiguousarray(ts, np.float64)
    if slots.size and (slots.min() < 0 or slots.max() >= table.capacity):
        raise ValueError(f"slots must be in [0, {table.capacity}), got {slots.min()}..{slots.max()}")
    if not np.isfinite(ts).all():
        raise ValueError("ts must be finite")
    if table.ring_nbr.shape[1] != RING:
        raise ValueError(f"table rings must have {RING} columns, got {table.ring_nbr.shape[1]}")
    q = slots.shape[0]
    out = Neighbours(ids=np.empty((q, k), np.int64), ts=np.empty((q, k), np.float64),
                     amt=np.empty((q, k), np.float32), dir=np.empty((q, k), np.int8),
                     col=np.empty((q, k), np.int64), valid=np.empty((q, k), np.bool_))
    _select_recent(table.ring_nbr, table.ring_ts, table.ring_amt, table.ring_dir, table.ring_n,
                   slots, ts, out.ids, out.ts, out.amt, out.dir, out.col)
    np.greater_equal(out.ids, 0, out=out.valid)
    return out


refresh_stale_cache(_baked_layout, _LAYOUT, (_select_recent,))
