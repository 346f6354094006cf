"""Walking a node's ring of recent interactions newest first: the one place that knows its order.

A row's ring (``features.layout``) holds its last ``RING`` interactions; ``ring_n`` counts
every interaction ever written, so the next write goes to column ``ring_n % RING``
(:func:`next_column`) and the newest entry sits just before it. Until the ring wraps only
the first ``ring_n`` columns hold entries (:func:`held`). What reads a ring in time --
the graph features, the TGN's temporal neighbours, the neighbour reasons of an alert --
walks it newest first (:func:`newest_column`) over the entries strictly older than the
event (:func:`older_than`), or collects those columns at once (:func:`newest_first`); the
feature kernels write with :func:`next_column` and count over the :func:`held` columns,
where the order does not matter. The position arithmetic and the rule of which entries
count exist here only.

All are numba functions inlined into the kernels that call them (no call in the hot
loop) and callable from Python too.

>>> from riskgraph.features.layout import NodeArrays, init_rows
>>> t = NodeArrays.empty(1); init_rows(t, np.arange(1))
>>> for nbr, ts in [(7, 1.0), (8, 2.0), (9, 3.0)]:
...     c = next_column(t.ring_n[0])
...     t.ring_nbr[0, c], t.ring_ts[0, c] = nbr, ts
...     t.ring_n[0] += 1
>>> cols = np.empty(RING, np.int64)
>>> m = newest_first(t.ring_nbr, t.ring_ts, t.ring_n, 0, 3.0, RING, cols)
>>> t.ring_nbr[0, cols[:m]].tolist()  # strictly older than 3.0, newest first
[8, 7]
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numba import njit

from riskgraph.features.layout import RING

_RING = int(RING)
#: Digest of this file: kernels that inline these functions bake it into their cache check
#: (``features.checks.refresh_stale_cache``), as numba's cache notices edits of a
#: kernel's own file only.
SOURCE_DIGEST: int = int.from_bytes(hashlib.blake2b(Path(__file__).read_bytes(), digest_size=6).digest(), "big")


@njit(cache=True, inline="always")
def next_column(n: int) -> int:
    """The ring column the next interaction of a row with ``n`` interactions so far goes to.

    >>> [next_column(n) for n in (0, 1, RING - 1, RING, RING + 3)]
    [0, 1, 15, 0, 3]
    """
    return n % _RING


@njit(cache=True, inline="always")
def held(n: int) -> int:
    """How many entries the ring of a row with ``n`` interactions holds: they are in its
    columns ``0 .. held(n) - 1`` (in no particular order once it wrapped).

    >>> [held(n) for n in (0, 3, RING, RING + 3)]
    [0, 3, 16, 16]
    """
    return min(n, _RING)


@njit(cache=True, inline="always")
def newest_column(n: int, back: int) -> int:
    """The column of the ``back``-th newest entry (0: the newest) of a row with ``n``
    interactions so far; ``back`` in ``0 .. held(n) - 1``.

    >>> [newest_column(3, b) for b in range(held(3))], newest_column(RING + 3, 0), newest_column(RING + 3, 3)
    ([2, 1, 0], 2, 15)
    """
    return (n - 1 - back) % _RING


@njit(cache=True, inline="always")
def older_than(ring_nbr: np.ndarray, ring_ts: np.ndarray, s: int, c: int, before: float) -> bool:
    """Whether column ``c`` of row ``s``'s ring holds an interaction strictly older than ``before``.

    Only columns that hold an interaction count (a fresh row's have no neighbour, -1);
    ``before=math.inf`` takes every one. Strict: an event never sees itself, nor an
    interaction at the same instant.
    """
    return ring_nbr[s, c] >= 0 and ring_ts[s, c] < before


@njit(cache=True, inline="always")
def newest_first(ring_nbr: np.ndarray, ring_ts: np.ndarray, ring_n: np.ndarray, s: int, before: float,
                 limit: int, cols: np.ndarray) -> int:
    """Columns of row ``s``'s ring entries strictly older than ``before`` (:func:`older_than`),
    newest first: at most ``limit`` of them into ``cols`` (int64, at least ``limit`` long);
    returns how many.

    "Newest" is write order, which is time order for a stream processed in time order per
    node. The kernels that walk a ring once per event spell this loop out, with the same
    two helpers, instead of calling it: collecting the columns first and reading the
    entries in a second pass made them markedly slower.
    """
    n = ring_n[s]
    m = 0
    for back in range(held(n)):
        c = newest_column(n, back)
        if older_than(ring_nbr, ring_ts, s, c, before):
            cols[m] = c
            m += 1
            if m == limit:
                break
    return m
