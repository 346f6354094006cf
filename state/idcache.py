"""A bounded cache of external id -> internal id, in flat arrays searched by compiled code.

Every event resolves both ends' external ids (strings). A ``dict`` of a million of them
costs about 880 ns per lookup here against 90 ns for ten thousand: the index, the entry,
the key string and the value object each sit somewhere else in a heap of 4 kB pages.
:class:`IdCache` keeps the same mapping in NumPy arrays (which get transparent huge pages):
the ids' UTF-8 bytes in one arena, an open-addressing table of 64-bit hashes, and a numba
loop that hashes a whole batch, probes the table with the slots of later keys prefetched,
and compares the bytes of a hit exactly -- a hash collision costs a probe, never a
wrong id. 48-64 bytes per id plus its UTF-8 bytes, instead of ~130 in the dict.

Trimming is first-in first-out, as the ``dict`` it replaces: past ``capacity`` entries
the oldest go until three quarters of ``capacity`` remain, and the table is rebuilt
(amortised O(1) per insert).

>>> c = IdCache(capacity=3)
>>> c.put(["alice", "bob"], np.array([7, 9]))
>>> c.get(["bob", "carol", "alice"]).tolist()
[9, -1, 7]
>>> c.put(["carol", "dave"], np.array([1, 2]))  # 4 > 3: back to 3/4 of 3, oldest first out
>>> c.get(["alice", "bob", "carol", "dave"]).tolist(), len(c)
([-1, -1, 1, 2], 2)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit

from riskgraph.features.prefetch import prefetch

_AHEAD = 8
_EMPTY = -1  # table slot without an entry


def encode_names(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes as uint8, start offsets, lengths) of ``names`` in UTF-8 (lone surrogates passed
    through, so that distinct strings always give distinct bytes). ValueError for a non-str."""
    try:
        joined = "".join(names)
    except TypeError:
        bad = next(x for x in names if not isinstance(x, str))
        raise ValueError(f"external ids must be non-empty str, got {type(bad).__name__} {bad!r}") from None
    n = len(names)
    if joined.isascii():  # the usual case: a character is a byte
        data = joined.encode("ascii")
        lens = np.fromiter(map(len, names), np.int64, n)
    else:
        parts = [x.encode("utf-8", "surrogatepass") for x in names]
        data = b"".join(parts)
        lens = np.fromiter(map(len, parts), np.int64, n)
    starts = np.zeros(n, np.int64)
    if n > 1:
        np.cumsum(lens[:-1], out=starts[1:])
    return np.frombuffer(data, np.uint8), starts, lens


@njit(cache=True, nogil=True)
def _hash(buf, start, length):
    """FNV-1a, 64-bit, of ``buf[start:start + length]``; never 0 (0 marks nothing)."""
    h = np.uint64(14695981039346656037)
    for j in range(start, start + length):
        h = (h ^ np.uint64(buf[j])) * np.uint64(1099511628211)
    return np.int64(h) if h != 0 else np.int64(1)


@njit(cache=True, nogil=True)
def _same(buf, start, length, arena, a_start, a_len):
    if length != a_len:
        return False
    for j in range(length):
        if buf[start + j] != arena[a_start + j]:
            return False
    return True


@njit(cache=True, nogil=True)
def _lookup(buf, starts, lens, table, hashes, a_starts, a_lens, arena, values, out):
    n = starts.shape[0]
    mask = table.shape[0] - 1
    h = np.empty(n, np.int64)
    _hash_all(buf, starts, lens, h)
    for i in range(n):
        if i + _AHEAD < n:
            prefetch(table, np.int64(h[i + _AHEAD]) & mask, 0)
        p = np.int64(h[i]) & mask
        out[i] = -1
        while True:
            e = table[p]
            if e == _EMPTY:
                break
            if hashes[e] == h[i] and _same(buf, starts[i], lens[i], arena, a_starts[e], a_lens[e]):
                out[i] = values[e]
                break
            p = (p + 1) & mask


@njit(cache=True, nogil=True)
def _insert(table, hashes, e, h):
    mask = table.shape[0] - 1
    p = h & mask
    while table[p] != _EMPTY:
        p = (p + 1) & mask
    table[p] = e


@njit(cache=True, nogil=True)
def _rebuild(table, hashes, n):
    table[:] = _EMPTY
    for e in range(n):
        _insert(table, hashes, e, hashes[e])


@njit(cache=True, nogil=True)
def _hash_all(buf, starts, lens, out):
    for i in range(starts.shape[0]):
        out[i] = _hash(buf, starts[i], lens[i])


class IdCache:
    """External id (str) -> int64, bounded to ``capacity`` entries, oldest dropped first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"id cache capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._n = 0  # entries 0 .. n-1, oldest first
        self._arena_used = 0
        self._arena = np.zeros(1 << 16, np.uint8)
        size = 1 << 10
        self._hashes = np.zeros(size, np.int64)
        self._a_starts = np.zeros(size, np.int64)
        self._a_lens = np.zeros(size, np.int64)
        self._values = np.zeros(size, np.int64)
        self._table = np.full(2 * size, _EMPTY, np.int64)

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (allocated, not only used)."""
        return sum(a.nbytes for a in (self._arena, self._hashes, self._a_starts, self._a_lens, self._values,
                                      self._table))

    def get(self, names: Sequence[str]) -> np.ndarray:
        """Internal id of each name, -1 where not cached. ValueError for a non-str name."""
        buf, starts, lens = encode_names(names)
        out = np.empty(len(names), np.int64)
        if len(names):
            _lookup(buf, starts, lens, self._table, self._hashes, self._a_starts, self._a_lens, self._arena,
                    self._values, out)
        return out

    def put(self, names: Sequence[str], ids: np.ndarray) -> None:
        """Cache ``names[i] -> ids[i]``; a name already cached keeps its entry (its id is set)."""
        ids = np.asarray(ids, np.int64)
        if ids.shape != (len(names),):
            raise ValueError(f"need one id per name, got {ids.shape} for {len(names)} names")
        have = self.get(names)
        new = np.flatnonzero(have < 0)
        if new.size < len(names):  # known names: set their value (an id never changes in practice)
            self._set_known(names, ids, np.flatnonzero(have >= 0))
        if not new.size:
            return
        first: dict[str, int] = {}  # each distinct new name once, at its first position
        for k, i in enumerate(new.tolist()):
            first.setdefault(names[i], k)
        pick = list(first)
        vals = ids[new[np.fromiter(first.values(), np.int64, len(first))]]
        buf, starts, lens = encode_names(pick)
        m = len(pick)
        self._reserve(m, int(lens.sum()))
        e0, a0 = self._n, self._arena_used
        self._arena[a0: a0 + buf.shape[0]] = buf
        self._a_starts[e0: e0 + m] = a0 + starts
        self._a_lens[e0: e0 + m] = lens
        _hash_all(buf, starts, lens, self._hashes[e0: e0 + m])
        self._values[e0: e0 + m] = vals
        self._n += m
        self._arena_used += buf.shape[0]
        for e in range(e0, e0 + m):
            _insert(self._table, self._hashes, e, self._hashes[e])
        if self._n > self.capacity:
            self._drop_oldest(self._n - (3 * self.capacity) // 4)

    def _set_known(self, names: Sequence[str], ids: np.ndarray, at: np.ndarray) -> None:
        buf, starts, lens = encode_names([names[i] for i in at.tolist()])
        h = np.empty(at.size, np.int64)
        _hash_all(buf, starts, lens, h)
        for k in range(at.size):
            e = self._entry_of(buf, int(starts[k]), int(lens[k]), int(h[k]))
            self._values[e] = ids[at[k]]

    def _entry_of(self, buf: np.ndarray, start: int, length: int, h: int) -> int:
        mask = self._table.shape[0] - 1
        p = h & mask
        while True:
            e = int(self._table[p])
            a, n = int(self._a_starts[e]), int(self._a_lens[e])
            if self._hashes[e] == h and n == length and \
                    bytes(self._arena[a: a + n]) == bytes(buf[start: start + length]):
                return e
            p = (p + 1) & mask

    def _reserve(self, entries: int, nbytes: int) -> None:
        need = self._n + entries
        if need > self._hashes.shape[0]:
            size = max(need, 2 * self._hashes.shape[0])
            for name in ("_hashes", "_a_starts", "_a_lens", "_values"):
                old = getattr(self, name)
                new = np.zeros(size, np.int64)
                new[: self._n] = old[: self._n]
                setattr(self, name, new)
            self._table = np.empty(1 << int(np.ceil(np.log2(2 * size))), np.int64)
            _rebuild(self._table, self._hashes, self._n)
        if self._arena_used + nbytes > self._arena.shape[0]:
            bigger = np.zeros(max(self._arena_used + nbytes, 2 * self._arena.shape[0]), np.uint8)
            bigger[: self._arena_used] = self._arena[: self._arena_used]
            self._arena = bigger

    def _drop_oldest(self, k: int) -> None:
        n = self._n
        cut = int(self._a_starts[k]) if k < n else self._arena_used
        used = self._arena_used - cut
        self._arena[:used] = self._arena[cut: self._arena_used].copy()
        for name in ("_hashes", "_a_lens", "_values"):
            a = getattr(self, name)
            a[: n - k] = a[k:n].copy()
        self._a_starts[: n - k] = self._a_starts[k:n] - cut
        self._n, self._arena_used = n - k, used
        _rebuild(self._table, self._hashes, self._n)
