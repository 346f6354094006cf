"""The hot cache of node rows: which node sits in which slot of the node table.

:class:`RowCache` owns a :class:`features.layout.NodeArrays` table and maps
internal ids to slots. It knows nothing of RocksDB: rows that are not resident
are filled by a ``load(ids, slots)`` callback the store provides.

Residency rules (why each exists):

* The table grows on demand (doubling) up to ``capacity`` rows, so a small
  stream does not pay for a million-row table up front.
* Beyond that, clean rows are evicted least-recently-used first. Recency is
  counted in lookups (one tick per :meth:`RowCache.lookup`), which is all the
  hot path needs and costs one vectorised store per lookup.
* Dirty rows (handed out for writing since the last commit) are never evicted:
  they exist nowhere else. Rows looked up in the current call are pinned too, so
  every slot a lookup returns is valid at once. If nothing can be evicted the
  table grows past ``capacity`` rather than losing data.
* Eviction frees a chunk (1/16 of the table) at a time so that its O(capacity)
  scan is paid rarely, not once per batch.

The id -> slot map is a dense int32 array indexed by internal id (ids are dense,
see ``state.keys``): four bytes per entity ever seen buys a vectorised lookup,
about 50x faster than a dict for a 2,000-node batch.

>>> from riskgraph.features.layout import init_rows
>>> c = RowCache(mem_dim=0, capacity=2, load=lambda ids, slots: init_rows(c.table, slots))
>>> a = c.lookup(np.array([5, 7, 5]), mark_dirty=True)
>>> int(a[0]) == int(a[2]), c.n_resident
(True, 2)
>>> slots, ids = c.dirty()
>>> ids.tolist()
[5, 7]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from riskgraph.features.layout import NodeArrays

Loader = Callable[[np.ndarray, np.ndarray], None]
#: Called with ``(ids, slots)`` of clean rows about to be evicted (their data still in place).
EvictHook = Callable[[np.ndarray, np.ndarray], None]
_INITIAL_ROWS = 4096


def grow_id_map(slot_by_id: np.ndarray, n: int) -> np.ndarray:
    """``slot_by_id`` (int32, -1: absent) with room for ids below ``n`` (doubling)."""
    if n <= len(slot_by_id):
        return slot_by_id
    bigger = np.full(max(n, 2 * len(slot_by_id)), -1, np.int32)
    bigger[: len(slot_by_id)] = slot_by_id
    return bigger


def lru_victims(candidates: np.ndarray, last_used: np.ndarray, want: int) -> np.ndarray:
    """The ``want`` least recently used of ``candidates`` (slots), or all of them if fewer."""
    if candidates.size > want:
        return candidates[np.argpartition(last_used[candidates], want - 1)[:want]]
    return candidates


class RowCache:
    """Node table plus id -> slot residency with LRU eviction of clean rows."""

    def __init__(self, mem_dim: int, capacity: int, load: Loader, on_evict: EvictHook | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._load = load
        self._on_evict = on_evict
        rows = min(self.capacity, _INITIAL_ROWS)
        self.table = NodeArrays.empty(rows, mem_dim)
        self._id_of_slot = np.full(rows, -1, np.int64)  # -1: free
        self._last_used = np.zeros(rows, np.int64)
        self._dirty = np.zeros(rows, np.bool_)
        self._dirty_parts: list[np.ndarray] = []
        self._free = np.empty(0, np.int64)  # slots freed by eviction
        self._high = 0  # slots [high, table.capacity) were never used
        self._slot_by_id = np.full(_INITIAL_ROWS, -1, np.int32)
        self._tick = 0
        self.n_evicted = 0
        #: Times the dirty set was cleared (commits): slots handed out before may be evicted since.
        self.generation = 0

    @property
    def n_resident(self) -> int:
        return int(self._high - self._free.size)

    def resident_slots(self, ids: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 where the node is not resident (loads nothing)."""
        out = np.full(len(ids), -1, np.int64)
        known = ids < len(self._slot_by_id)
        out[known] = self._slot_by_id[ids[known]]
        return out

    def lookup(self, ids: np.ndarray, mark_dirty: bool) -> np.ndarray:
        """Slots of ``ids`` (int64, validated by the caller), loading missing rows.

        All returned slots stay valid until the next lookup; with ``mark_dirty``
        they stay resident until :meth:`clear_dirty`.
        """
        self._tick += 1
        tick = self._tick
        if ids.size == 0:
            return np.empty(0, np.int64)
        self._ensure_ids(int(ids.max()) + 1)
        s = self._slot_by_id[ids].astype(np.int64)
        miss = s < 0
        if miss.any():
            self._last_used[s[~miss]] = tick  # pin what this call already has
            need = np.unique(ids[miss])
            new = self._alloc(len(need), tick)
            self._slot_by_id[need] = new
            self._id_of_slot[new] = need
            self._last_used[new] = tick
            try:
                self._load(need, new)
            except BaseException:
                # leave no half-loaded row resident: the next lookup retries the load
                self._slot_by_id[need] = -1
                self._id_of_slot[new] = -1
                self._free = np.concatenate([self._free, new])
                raise
            s = self._slot_by_id[ids].astype(np.int64)
        else:
            self._last_used[s] = tick
        if mark_dirty:
            fresh = s[~self._dirty[s]]
            if fresh.size:
                self._dirty[fresh] = True
                self._dirty_parts.append(fresh)
        return s

    def dirty(self) -> tuple[np.ndarray, np.ndarray]:
        """(slots, ids) of every dirty row, ids ascending-by-slot, no duplicates."""
        if not self._dirty_parts:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        slots = np.unique(np.concatenate(self._dirty_parts))
        return slots, self._id_of_slot[slots]

    def clear_dirty(self) -> None:
        """Forget the dirty set (after its rows were committed)."""
        for part in self._dirty_parts:
            self._dirty[part] = False
        self._dirty_parts = []
        self.generation += 1

    # -- slots ------------------------------------------------------------

    def _ensure_ids(self, n: int) -> None:
        self._slot_by_id = grow_id_map(self._slot_by_id, n)

    def _grow(self, rows: int) -> None:
        old = self.table.capacity
        self.table.grow(rows)
        for name, fill in (("_id_of_slot", -1), ("_last_used", 0), ("_dirty", False)):
            arr = getattr(self, name)
            bigger = np.full(rows, fill, arr.dtype)
            bigger[:old] = arr
            setattr(self, name, bigger)

    def _alloc(self, k: int, tick: int) -> np.ndarray:
        parts: list[np.ndarray] = []
        while k > 0:
            if self._free.size:
                t = min(k, self._free.size)
                parts.append(self._free[self._free.size - t:])
                self._free = self._free[: self._free.size - t]
                k -= t
                continue
            cap = self.table.capacity
            if self._high < cap:
                t = min(k, cap - self._high)
                parts.append(np.arange(self._high, self._high + t, dtype=np.int64))
                self._high += t
                k -= t
                continue
            if cap < self.capacity:
                self._grow(min(self.capacity, max(2 * cap, cap + k)))
                continue
            if self._evict(max(k, cap // 16), tick) == 0:
                # everything resident is dirty or pinned: grow past capacity, keep data
                self._grow(cap + max(k, cap // 8))
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def _evict(self, want: int, tick: int) -> int:
        hi = self._high
        cand = np.flatnonzero(
            (self._id_of_slot[:hi] >= 0) & ~self._dirty[:hi] & (self._last_used[:hi] < tick)
        )
        cand = lru_victims(cand, self._last_used, want)
        if cand.size:
            if self._on_evict is not None:
                self._on_evict(self._id_of_slot[cand], cand)
            self._slot_by_id[self._id_of_slot[cand]] = -1
            self._id_of_slot[cand] = -1
            self._free = np.concatenate([self._free, cand])
            self.n_evicted += int(cand.size)
        return int(cand.size)
