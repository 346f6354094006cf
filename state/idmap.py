"""External (string) ids to dense internal ids, backed by RocksDB.

Internal ids are assigned 0, 1, 2, ... in order of first sight. The map is
unbounded, so only a bounded dict of recently resolved ids is kept in memory in
front of RocksDB; a miss costs one multi-get for the whole batch. Ids created
since the last commit are *pending*: they live in memory only until
:meth:`IdMap.write_pending` puts them into the commit's ``WriteBatch``, so a
crash before the commit forgets them together with the rows that used them.

The cache (``state.idcache``: flat arrays searched by compiled code, not a dict)
is trimmed first-in first-out (down to three quarters of its capacity at a time):
cheaper than LRU bookkeeping on every hit, and a hot entity dropped by mistake
costs a single RocksDB read to come back.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from rocksdict import Rdict, WriteBatch

from riskgraph.state.idcache import IdCache
from riskgraph.state.codecs import CorruptRecordError, decode_ext, decode_ids, encode_count
from riskgraph.state.keys import EXT, META_NEXT_ID, ext_key, int_keys


class IdMap:
    """Resolve external ids to internal ids; remember new ones until commit."""

    def __init__(self, db: Rdict, next_id: int, cache_capacity: int) -> None:
        if cache_capacity < 1:
            raise ValueError(f"id cache capacity must be >= 1, got {cache_capacity}")
        self._db = db
        self._committed = int(next_id)  # ids below this are in RocksDB
        self._pending: dict[str, int] = {}
        self._pending_list: list[str] = []  # pending external ids, by internal id - committed
        self._cache = IdCache(int(cache_capacity))

    @property
    def next_id(self) -> int:
        """Number of internal ids assigned so far (pending ones included)."""
        return self._committed + len(self._pending_list)

    @property
    def cache_stats(self) -> tuple[int, int]:
        """(ids cached, bytes the cache's arrays hold)."""
        return len(self._cache), self._cache.nbytes

    @property
    def n_pending(self) -> int:
        return len(self._pending_list)

    @property
    def n_committed(self) -> int:
        """Ids ``0 .. n_committed - 1`` are in RocksDB; the rest are pending."""
        return self._committed

    def resolve(self, ext_ids: Sequence[str]) -> np.ndarray:
        """Internal ids of ``ext_ids`` (int64), creating ids for unseen entities."""
        if isinstance(ext_ids, (str, bytes)):
            raise ValueError("resolve expects a sequence of external ids, got a single string")
        out = self._cache.get(ext_ids)  # ValueError for a non-str
        miss = np.flatnonzero(out < 0)
        if miss.size:
            names = [ext_ids[i] for i in miss.tolist()]
            found = self._resolve_misses(list(dict.fromkeys(names)))
            out[miss] = np.fromiter(map(found.__getitem__, names), np.int64, len(names))
        return out

    def _resolve_misses(self, uniq: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        ask: list[str] = []
        keys: list[bytes] = []
        for u in uniq:
            i = self._pending.get(u)
            if i is not None:
                found[u] = i
                continue
            keys.append(ext_key(u))  # validates: non-empty str, UTF-8
            ask.append(str(u))
        if ask:
            values = self._db.get(keys)
            have = [k for k, v in enumerate(values) if v is not None]
            if have:
                try:
                    got = decode_ids([values[k] for k in have])
                except CorruptRecordError as exc:
                    name = ask[have[exc.index]]
                    raise CorruptRecordError(f"id record of {name!r}: {exc}", exc.index) from None
                for k, i in zip(have, got.tolist()):
                    found[ask[k]] = i
            for u, v in zip(ask, values):
                if v is None:  # never seen: next dense id, in order of first sight
                    i = self.next_id
                    self._pending[u] = i
                    self._pending_list.append(u)
                    found[u] = i
        self._cache.put(list(found), np.fromiter(found.values(), np.int64, len(found)))
        return found

    def check_ids(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` as a 1-D int64 array of assigned ids, or a clear ValueError."""
        a = np.asarray(ids)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a 1-D integer array, got shape {a.shape} dtype {a.dtype}")
        a = a.astype(np.int64, copy=False)
        if a.size and (int(a.min()) < 0 or int(a.max()) >= self.next_id):
            raise ValueError(
                f"ids must be assigned internal ids in [0, {self.next_id}), got [{int(a.min())}, {int(a.max())}]"
            )
        return a

    def external_ids(self, ids: np.ndarray) -> list[str]:
        """External id of each internal id."""
        a = self.check_ids(ids)
        out: list[str | None] = [None] * len(a)
        old = np.flatnonzero(a < self._committed)
        for k in np.flatnonzero(a >= self._committed).tolist():
            out[k] = self._pending_list[int(a[k]) - self._committed]
        if old.size:
            values = self._db.get(int_keys(a[old]))
            for k, v in zip(old.tolist(), values):
                if v is None:
                    raise CorruptRecordError(f"internal id {int(a[k])} has no external id record", k)
                out[k] = decode_ext(v)
        return out  # type: ignore[return-value]

    def write_pending(self, wb: WriteBatch) -> None:
        """Put the pending mappings (both directions) and the next id into ``wb``."""
        if not self._pending_list:
            return
        ids = np.arange(self._committed, self.next_id, dtype=np.int64)
        id_values = ids.astype(">i8").view(np.dtype((np.void, 8))).tolist()
        for e, ik, iv in zip(self._pending_list, int_keys(ids), id_values):
            eb = e.encode("utf-8")
            wb[EXT + eb] = iv
            wb[ik] = eb
        wb[META_NEXT_ID] = encode_count(self.next_id)

    def mark_committed(self) -> None:
        """The pending mappings were written: they are ordinary cached ids now."""
        self._committed = self.next_id
        self._pending.clear()
        self._pending_list.clear()
