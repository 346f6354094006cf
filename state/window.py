"""Bounded, first-in first-out records of recent keys, committed with the graph store.

Some decisions need a memory of what came recently, and that memory must survive a
restart exactly as the node rows do: the event ids already scored (a repeat is a dead
letter, not a second alert under the same id) and the alerts this deployment sent
(feedback is accepted only for those). :class:`RecentKeys` keeps the newest
``capacity`` keys with a small payload each, in memory for lookups, and writes what
changed (new keys, evicted keys) into the store's ``WriteBatch`` at the next
:meth:`state.store.GraphStore.commit`, under the ``WINDOW`` prefix of ``state.keys``.
So the window, the node rows and the input position always agree: after a crash the
window is the one of the last commit, and the events replayed from there are new to it.

On disk a key is ``WINDOW + name + b"/" + seq`` (seq: a big-endian uint64, so RocksDB's
order is arrival order) and its value is the key's length (one byte), the key and the
payload; opening reads them back in order.

>>> w = RecentKeys("doc", capacity=2)
>>> w.add(b"a", b"1"), w.add(b"a", b"2"), w.add(b"b")
(True, False, True)
>>> w.get(b"a"), b"b" in w, len(w)
(b'1', True, 2)
>>> w.add(b"c")  # a third key: the oldest ("a") goes
True
>>> b"a" in w, sorted(w.keys())
(False, [b'b', b'c'])

:class:`RecentIds` is the same idea for many string ids a second (every event id): no
payload, and on disk one record per commit holding that commit's new ids, so a commit
costs one RocksDB write however many ids it adds. The ids are kept as they are (a set of
``str``: exact, no hash collisions, and Python's string hashing is keyed per process, so
nobody can flood it with colliding ids).

>>> h = RecentIds("doc", capacity=2)
>>> [h.add(x) for x in ("a", "a", "b", "c")], "a" in h, sorted(h)
([True, False, True, True], False, ['b', 'c'])
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from typing import Any, Iterable, Iterator

import msgspec

from riskgraph.state.keys import WINDOW

_SEQ = struct.Struct(">Q")
_ids_enc = msgspec.msgpack.Encoder()
_ids_dec = msgspec.msgpack.Decoder(list[bytes])
MAX_KEY_BYTES = 255
MAX_NAME_BYTES = 64


def window_prefix(name: str) -> bytes:
    """The key prefix of window ``name`` (ASCII letters, digits, ``_`` and ``.``).

    >>> window_prefix("event_ids")
    b'Wevent_ids/'
    """
    if not name or len(name) > MAX_NAME_BYTES or not all(c.isascii() and (c.isalnum() or c in "_.") for c in name):
        raise ValueError(f"window name must be 1..{MAX_NAME_BYTES} ASCII letters, digits, '_' or '.', got {name!r}")
    return WINDOW + name.encode() + b"/"


class RecentKeys:
    """The newest ``capacity`` distinct keys (bytes, at most 255) with a payload each."""

    def __init__(self, name: str, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.name = name
        self.prefix = window_prefix(name)
        self.capacity = capacity
        self._items: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()  # key -> (seq, payload)
        self._next_seq = 0
        self._puts: dict[int, bytes] = {}  # seq -> stored value, not yet committed
        self._deletes: list[int] = []  # seqs evicted since the last commit

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: bytes) -> bool:
        return key in self._items

    def keys(self) -> Iterator[bytes]:
        """Keys, oldest first."""
        return iter(self._items)

    def get(self, key: bytes) -> bytes | None:
        """The payload stored with ``key``, or None when it is not (or no longer) in the window."""
        item = self._items.get(key)
        return None if item is None else item[1]

    def add(self, key: bytes, payload: bytes = b"") -> bool:
        """Add ``key`` unless present; True if it was new. The oldest keys go past ``capacity``."""
        if key in self._items:
            return False
        if len(key) > MAX_KEY_BYTES:
            raise ValueError(f"window keys are at most {MAX_KEY_BYTES} bytes, got {len(key)}")
        seq = self._next_seq
        self._next_seq += 1
        self._items[key] = (seq, bytes(payload))
        self._puts[seq] = bytes((len(key),)) + key + bytes(payload)
        while len(self._items) > self.capacity:
            _, (old, _) = self._items.popitem(last=False)
            if self._puts.pop(old, None) is None:  # committed before: delete it on disk
                self._deletes.append(old)
        return True

    # -- persistence (driven by GraphStore) ----------------------------------

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Fill from stored ``(key, value)`` pairs in key order (the store's prefix scan)."""
        plen = len(self.prefix)
        for k, v in items:
            seq = _SEQ.unpack(k[plen:plen + 8])[0]
            n = v[0]
            self._items[v[1:1 + n]] = (seq, v[1 + n:])
            self._next_seq = seq + 1
        while len(self._items) > self.capacity:  # opened with a smaller capacity than it was written with
            _, (old, _) = self._items.popitem(last=False)
            self._deletes.append(old)

    def write_pending(self, wb: Any) -> None:
        """Put the changes since the last commit into a RocksDB ``WriteBatch``."""
        p = self.prefix
        for seq in self._deletes:
            wb.delete(p + _SEQ.pack(seq))
        for seq, value in self._puts.items():
            wb[p + _SEQ.pack(seq)] = value

    def mark_committed(self) -> None:
        """The batch holding :meth:`write_pending`'s changes is in RocksDB."""
        self._puts.clear()
        self._deletes.clear()


class RecentIds:
    """The newest ``capacity`` distinct string ids, FIFO, persisted one segment per commit.

    On disk: ``WINDOW + name + b"/" + seq`` (>u8) holds the ids a commit added (a MessagePack
    array of their UTF-8 bytes); a segment whose ids have all left the window is deleted.
    """

    def __init__(self, name: str, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.name = name
        self.prefix = window_prefix(name)
        self.capacity = capacity
        self._members: set[str] = set()
        self._order: deque[str] = deque()
        self._pending: list[str] = []  # added since the last commit
        self._segments: deque[tuple[int, int]] = deque()  # (seq, ids) on disk, oldest first
        self._stored = 0  # ids in those segments
        self._next_seq = 0
        self._deletes: list[int] = []

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, h: str) -> bool:
        return h in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def add(self, h: str) -> bool:
        """Add ``h`` unless present; True if it was new. The oldest go past ``capacity``."""
        members = self._members
        if h in members:
            return False
        members.add(h)
        self._order.append(h)
        self._pending.append(h)
        if len(self._order) > self.capacity:
            members.discard(self._order.popleft())
        return True

    def add_many(self, hashes: Iterable[str]) -> list[int]:
        """:meth:`add` each id in turn; the positions of those that were new.

        >>> RecentIds("doc", capacity=4).add_many(["x", "y", "x", "z"])
        [0, 1, 3]
        """
        members, order, pending, cap = self._members, self._order, self._pending, self.capacity
        new = []
        for i, h in enumerate(hashes):
            if h in members:
                continue
            members.add(h)
            order.append(h)
            pending.append(h)
            new.append(i)
            if len(order) > cap:
                members.discard(order.popleft())
        return new

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Fill from stored segments in key order (the store's prefix scan)."""
        plen = len(self.prefix)
        for k, v in items:
            seq = _SEQ.unpack(k[plen:plen + 8])[0]
            ids = [b.decode("utf-8", "surrogatepass") for b in _ids_dec.decode(v)]
            self._segments.append((seq, len(ids)))
            self._stored += len(ids)
            self._order.extend(ids)
            self._next_seq = seq + 1
        if len(self._order) > self.capacity:  # opened with a smaller capacity: rewrite what is kept
            while len(self._order) > self.capacity:
                self._order.popleft()
            self._deletes.extend(seq for seq, _ in self._segments)
            self._segments.clear()
            self._stored = 0
            self._pending = list(self._order)
        self._members = set(self._order)

    def _drop_old_segments(self) -> None:
        # a segment goes when every id in it is older than the window
        while self._segments and self._stored - self._segments[0][1] >= len(self._order):
            seq, n = self._segments.popleft()
            self._stored -= n
            self._deletes.append(seq)

    def write_pending(self, wb: Any) -> None:
        """Put the commit's new segment and the deletions into a RocksDB ``WriteBatch``
        (nothing changes here: :meth:`mark_committed` applies it once RocksDB has it)."""
        p = self.prefix
        if self._pending:
            # bytes, not str: an id may hold a lone surrogate, which UTF-8 strings cannot
            wb[p + _SEQ.pack(self._next_seq)] = _ids_enc.encode(
                [i.encode("utf-8", "surrogatepass") for i in self._pending])
        segments, stored = list(self._segments), self._stored
        if self._pending:
            segments.append((self._next_seq, len(self._pending)))
            stored += len(self._pending)
        deletes = list(self._deletes)
        while segments and stored - segments[0][1] >= len(self._order):
            deletes.append(segments[0][0])
            stored -= segments.pop(0)[1]
        for seq in deletes:
            wb.delete(p + _SEQ.pack(seq))

    def mark_committed(self) -> None:
        """The batch holding :meth:`write_pending`'s changes is in RocksDB."""
        if self._pending:
            self._segments.append((self._next_seq, len(self._pending)))
            self._stored += len(self._pending)
            self._next_seq += 1
            self._pending = []
        self._drop_old_segments()
        self._deletes.clear()
