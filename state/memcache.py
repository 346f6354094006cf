"""A compact cache of node *memory* rows for nodes that are not in the row cache.

A TGN scores an event from both ends' full rows and from the memory of up to ``k``
temporal neighbours of each end. Neighbours are read-only and need only their
``mem`` row (``row_width`` float32s: 616 bytes with the default dimensions, against a
full record's 1,184), yet on a graph larger than the row cache nearly every one of
them was a RocksDB read and decode of a whole record (``benchmarks/bench_tgn_scale.py``
at 10^6 nodes: up to 20 per event). :class:`MemCache` keeps just the memory of nodes
evicted from the row cache, or read as neighbours, so about twice as many nodes'
memory stays in memory per byte, and a neighbour read is an array gather.

Coherence: a node's memory changes only while its full row is resident (the TGN
writes the rows of a batch's ends). The store reads a resident row from the row
cache first, copies a row's memory here when the row is evicted (evicted rows are
clean: RocksDB holds the same), and fills misses from RocksDB. So an entry for a
node that is not resident is never stale, and one for a resident node is never read.

A cache narrower than the rows (``StoreOptions.mem_cache_width``: a TGN's 64 memory
floats of its 154-float row, 256 instead of 616 bytes per node) keeps only rows whose
other columns are zero, which is what a TGN row is once its pending message is folded
in; the store drops the entry of a node whose row no longer fits, so it is never stale.

Eviction is least-recently-used in chunks of 1/16 of the capacity, as in
``state.cache``.

>>> c = MemCache(width=2, capacity=2)
>>> c.put(np.array([7, 9]), np.array([[1, 1], [2, 2]], np.float32))
>>> (c.get(np.array([9, 8])) >= 0).tolist()
[True, False]
>>> c.put(np.array([8]), np.array([[3, 3]], np.float32))  # full: 7, the least recent, goes
>>> c.rows[c.get(np.array([8, 9]))].tolist(), c.get(np.array([7])).tolist()
([[3.0, 3.0], [2.0, 2.0]], [-1])
>>> c.discard(np.array([8, 100])); c.get(np.array([8])).tolist()
[-1]
"""

from __future__ import annotations

import numpy as np

from riskgraph.state.cache import grow_id_map, lru_victims

_INITIAL_ROWS = 4096


class MemCache:
    """Internal id -> memory row (float32[width]), LRU-bounded to ``capacity`` rows."""

    def __init__(self, width: int, capacity: int) -> None:
        if width < 1 or capacity < 1:
            raise ValueError(f"width and capacity must be >= 1, got {width} and {capacity}")
        self.width, self.capacity = int(width), int(capacity)
        rows = min(self.capacity, _INITIAL_ROWS)
        self.rows = np.zeros((rows, self.width), np.float32)
        self._id_of_slot = np.full(rows, -1, np.int64)
        self._last_used = np.zeros(rows, np.int64)
        self._slot_by_id = np.full(_INITIAL_ROWS, -1, np.int32)
        self._free: np.ndarray = np.arange(rows - 1, -1, -1, dtype=np.int64)
        self._tick = 0
        self.hits = self.misses = self.n_evicted = 0

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays (the rows grow by doubling up to the capacity)."""
        return int(self.rows.nbytes + self._id_of_slot.nbytes + self._last_used.nbytes + self._slot_by_id.nbytes)

    def __len__(self) -> int:
        return int(self.rows.shape[0] - self._free.size)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Slot in :attr:`rows` of each id (int64), -1 where it is not cached."""
        self._tick += 1
        out = np.full(ids.shape[0], -1, np.int64)
        known = ids < self._slot_by_id.shape[0]
        out[known] = self._slot_by_id[ids[known]]
        hit = out >= 0
        self._last_used[out[hit]] = self._tick
        n_hit = int(hit.sum())
        self.hits += n_hit
        self.misses += ids.shape[0] - n_hit
        return out

    def put(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Cache ``rows[i]`` as the memory of ``ids[i]`` (distinct ids; replaces older entries)."""
        if ids.shape[0] > self.capacity:  # a cache, not a store: keep what fits
            ids, rows = ids[-self.capacity:], rows[-self.capacity:]
        if ids.shape[0] == 0:
            return
        self._tick += 1
        self._slot_by_id = grow_id_map(self._slot_by_id, int(ids.max()) + 1)
        slots = self._slot_by_id[ids].astype(np.int64)
        new = slots < 0
        self._last_used[slots[~new]] = self._tick  # not evicted by the allocation below
        if new.any():
            fresh = self._alloc(int(new.sum()))
            slots[new] = fresh
            self._slot_by_id[ids[new]] = fresh
            self._id_of_slot[fresh] = ids[new]
        self.rows[slots] = rows
        self._last_used[slots] = self._tick

    def discard(self, ids: np.ndarray) -> None:
        """Forget the entries of ``ids`` (those cached; others are ignored)."""
        ids = ids[ids < self._slot_by_id.shape[0]]
        slots = self._slot_by_id[ids].astype(np.int64)
        slots = slots[slots >= 0]
        if slots.size:
            self._slot_by_id[self._id_of_slot[slots]] = -1
            self._id_of_slot[slots] = -1
            self._free = np.concatenate([slots, self._free])

    def _alloc(self, k: int) -> np.ndarray:
        if self._free.size < k and self.rows.shape[0] < self.capacity:  # grow (doubling) up to the capacity
            n = self.rows.shape[0]
            self._grow(min(self.capacity, max(2 * n, n + k)))
        if self._free.size < k:
            self._evict(max(k - self._free.size, self.capacity // 16))
        take = self._free[self._free.size - k:]
        self._free = self._free[: self._free.size - k]
        return take

    def _grow(self, rows: int) -> None:
        n = self.rows.shape[0]
        self.rows = np.concatenate([self.rows, np.zeros((rows - n, self.width), np.float32)])
        self._id_of_slot = np.concatenate([self._id_of_slot, np.full(rows - n, -1, np.int64)])
        self._last_used = np.concatenate([self._last_used, np.zeros(rows - n, np.int64)])
        self._free = np.concatenate([np.arange(rows - 1, n - 1, -1, dtype=np.int64), self._free])

    def _evict(self, want: int) -> None:
        # entries touched in this call (this tick) stay: they are being written now
        cand = lru_victims(np.flatnonzero((self._id_of_slot >= 0) & (self._last_used < self._tick)),
                           self._last_used, want)
        self._slot_by_id[self._id_of_slot[cand]] = -1
        self._id_of_slot[cand] = -1
        self._free = np.concatenate([cand, self._free])
        self.n_evicted += int(cand.size)
