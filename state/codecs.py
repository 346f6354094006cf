"""Value encodings of the graph store: node records, ids, positions.

A node record is one fixed-size little-endian value: an 8-byte header
(format version, ``mem_dim``) followed by that node's row of every array of
:class:`features.layout.NodeArrays`. The record is described by a NumPy
structured dtype whose itemsize is the record size, so a whole micro-batch is
encoded by filling one structured array and cutting it into items, and decoded
by joining the values and viewing them through the same dtype: no per-field
Python work per node. Floats are copied bit for bit (NaN payloads and infinities
included).

Format v2 lets a record end early: the header's second field is the number of ``mem``
columns the record stores (``mem_dim`` for a whole record), the omitted trailing ones
are zero, and the value's length must match it (a truncated value is still caught). A TGN
row whose pending message is folded in is its memory and zeros (64 of 154 floats with
the default dimensions): ``encode_rows(trim=64)`` writes it in 824 instead of 1,184
bytes, which is that much less write-ahead log, memtable, flush and compaction work,
disk and block cache per node. v1 records (always whole) read as v2 ones.

>>> from riskgraph.features.layout import NodeArrays, init_rows
>>> t = NodeArrays.empty(4, mem_dim=2)
>>> init_rows(t, np.arange(4))
>>> t.acc[1, 0] = 2.5; t.mem[1] = (1.0, -1.0)
>>> vals = encode_rows(t, np.array([1]))
>>> len(vals[0]) == record_size(2)
True
>>> u = NodeArrays.empty(2, mem_dim=2)
>>> decode_rows_into(u, np.array([0]), vals)
>>> float(u.acc[0, 0]), u.mem[0].tolist()
(2.5, [1.0, -1.0])
>>> decode_position(encode_position(1234)), decode_id(encode_id(7))
(1234, 7)
"""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from riskgraph.features.layout import N_ACC, RING, Acc, NodeArrays
from riskgraph.state.gather import gather_words

#: Version of the node record format; bump it when the record dtype changes.
#: v2: a record may omit trailing zero columns of ``mem`` (v1 records are whole v2 ones).
FORMAT_VERSION: int = 2
#: Record versions this build decodes.
READABLE_VERSIONS: tuple[int, ...] = (1, 2)
#: What :func:`layout_fingerprint` hashes as the format: the fields and their meaning did
#: not change in v2, so stores written by v1 keep their fingerprint.
_FINGERPRINT_FORMAT = 1
HEADER_BYTES: int = 8
#: The arrays of ``NodeArrays`` stored in a record, in record order.
TABLE_FIELDS: tuple[str, ...] = ("acc", "ring_nbr", "ring_ts", "ring_amt", "ring_dir", "ring_n", "mem_ts", "mem")
_INT64_MAX = (1 << 63) - 1
_LITTLE = sys.byteorder == "little"


class CorruptRecordError(ValueError):
    """A stored value cannot be decoded; ``index`` is its position in the batch given."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@lru_cache(maxsize=64)
def record_dtype(mem_dim: int) -> np.dtype:
    """Structured dtype of one node record for a given ``mem_dim`` (mem last, so the
    fixed part of the record has the same offsets whatever the model width)."""
    if not isinstance(mem_dim, int) or mem_dim < 0:
        raise ValueError(f"mem_dim must be an int >= 0, got {mem_dim!r}")
    return np.dtype([
        ("version", "<u4"),
        ("mem_dim", "<u4"),
        ("acc", "<f8", (N_ACC,)),
        ("ring_nbr", "<i8", (RING,)),
        ("ring_ts", "<f8", (RING,)),
        ("ring_amt", "<f4", (RING,)),
        ("ring_dir", "i1", (RING,)),
        ("ring_n", "<i8"),
        ("mem_ts", "<f8"),
        ("mem", "<f4", (mem_dim,)),
    ])


def record_size(mem_dim: int) -> int:
    """Bytes of one node record."""
    return record_dtype(mem_dim).itemsize


def layout_fingerprint() -> str:
    """Short hash of everything that fixes what a record means: the record dtype,
    the format version and the accumulator column names. Stored in the store's meta
    so that a build with another layout refuses to misread it.

    >>> len(layout_fingerprint())
    16
    """
    desc = repr((_FINGERPRINT_FORMAT, record_dtype(0).descr, [a.name for a in Acc], RING))
    return hashlib.sha256(desc.encode()).hexdigest()[:16]


def _check_slots(table: NodeArrays, slots: np.ndarray) -> np.ndarray:
    s = np.asarray(slots)
    if s.ndim != 1 or (s.size and s.dtype.kind not in "iu"):
        raise ValueError(f"slots must be a 1-D integer array, got shape {s.shape} dtype {s.dtype}")
    if s.size and (int(s.min()) < 0 or int(s.max()) >= table.capacity):
        raise ValueError(f"slots must lie in [0, {table.capacity}), got [{int(s.min())}, {int(s.max())}]")
    return s


def rows_to_records(table: NodeArrays, slots: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Structured array (``record_dtype(table.mem_dim)``) of the rows ``slots``.

    ``out``: a scratch record array (at least ``len(slots)`` long) to fill and return
    a prefix of, so the hot path reuses warm memory instead of allocating per batch.
    """
    s = _check_slots(table, slots)
    dt = record_dtype(table.mem_dim)
    if out is None:
        rec = np.empty(len(s), dt)
    elif out.dtype != dt or out.ndim != 1 or len(out) < len(s):
        raise ValueError(f"out must be a 1-D record array of the table's dtype with >= {len(s)} items")
    else:
        rec = out[: len(s)]
    rec["version"] = FORMAT_VERSION
    rec["mem_dim"] = table.mem_dim
    # each array's rows copied as 4-byte words into the records by a compiled loop that
    # prefetches (state.gather): NumPy's gather-then-assign per field waited on every
    # random row (2,000 rows of a 10^6-row table: 1.50 -> 1.04 ms)
    words = rec.view(np.uint32).reshape(len(s), dt.itemsize // 4) if dt.itemsize % 4 == 0 else None
    for name in TABLE_FIELDS:
        a = getattr(table, name)
        width = a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64))
        offset = dt.fields[name][1]
        if not width or not len(s):
            continue
        if words is None or not _LITTLE or width % 4 or offset % 4 or not a.flags.c_contiguous:
            rec[name] = a[s]  # NumPy converts byte order and copies any layout
            continue
        gather_words(a.reshape(a.shape[0], width // a.itemsize).view(np.uint32), s.astype(np.int64, copy=False),
                     words, offset // 4)
    return rec


def records_to_rows(rec: np.ndarray, table: NodeArrays, slots: np.ndarray) -> None:
    """Write validated records ``rec`` into rows ``slots`` of ``table``."""
    s = _check_slots(table, slots)
    if rec.dtype != record_dtype(table.mem_dim) or rec.shape != s.shape:
        raise ValueError(f"{len(rec)} records of dtype for mem_dim {table.mem_dim} expected per slot, "
                         f"got shape {rec.shape} for {len(s)} slots")
    for name in TABLE_FIELDS:
        getattr(table, name)[s] = rec[name]


def encode_rows(table: NodeArrays, slots: np.ndarray, out: np.ndarray | None = None,
                trim: int | None = None) -> list[bytes]:
    """One record (bytes) per slot, in order (``out``: scratch, see :func:`rows_to_records`).

    ``trim``: a row whose ``mem`` columns from ``trim`` on are all zero (bit for bit: not
    -0.0, not NaN) is stored without them (see the module docstring); None: every record whole.

    >>> from riskgraph.features.layout import NodeArrays, init_rows
    >>> t = NodeArrays.empty(2, mem_dim=3); init_rows(t, np.arange(2))
    >>> t.mem[:] = [[1.0, 0.0, 0.0], [1.0, 0.0, 2.0]]
    >>> [record_size(3) - len(v) for v in encode_rows(t, np.arange(2), trim=1)]
    [8, 0]
    """
    if trim is not None and not 0 <= trim <= table.mem_dim:
        raise ValueError(f"trim must be in [0, mem_dim={table.mem_dim}], got {trim}")
    rec = rows_to_records(table, slots, out)
    size = rec.dtype.itemsize
    # A void view of itemsize bytes makes tolist() yield one bytes object per record.
    whole = rec.view(np.dtype((np.void, size)))
    if trim is None or trim == table.mem_dim or len(rec) == 0:
        return whole.tolist()
    cut = ~rec["mem"][:, trim:].view(np.uint32).any(axis=1)
    if not cut.any():
        return whole.tolist()
    short = size - 4 * (table.mem_dim - trim)
    part = np.ascontiguousarray(rec.view(np.uint8).reshape(len(rec), size)[:, :short])
    part[:, 4:8] = np.frombuffer(np.uint32(trim).astype("<u4").tobytes(), np.uint8)  # columns stored
    if cut.all():
        return part.view(np.dtype((np.void, short))).ravel().tolist()
    vals = whole.tolist()
    at = np.flatnonzero(cut)
    for i, v in zip(at.tolist(), part[at].view(np.dtype((np.void, short))).ravel().tolist()):
        vals[i] = v
    return vals


def decode_records(values: Sequence[bytes], mem_dim: int, copy: bool = True) -> np.ndarray:
    """Validate and view encoded records as a structured array (writable if ``copy``).

    Records stored without trailing ``mem`` columns (format v2) come back whole, the
    omitted columns zero (then the array is always a copy).
    Raises :class:`CorruptRecordError` naming the first bad value: not bytes,
    wrong length (truncated, or another ``mem_dim``/layout), a format version this
    build does not read, or a header ``mem_dim`` other than ``mem_dim``.
    """
    dt = record_dtype(mem_dim)
    size = dt.itemsize
    fixed = size - 4 * mem_dim  # a record without any mem column
    n = len(values)
    try:
        lens = np.fromiter(map(len, values), np.int64, n)
        buf = b"".join(values)
    except TypeError:
        i = next(k for k, v in enumerate(values) if not isinstance(v, (bytes, bytearray, memoryview)))
        raise CorruptRecordError(f"record {i} is {type(values[i]).__name__}, not bytes", i) from None
    short = lens != size
    if short.any():
        _reject_first(short & ((lens < fixed) | (lens > size) | ((lens - fixed) % 4 != 0)), lambda i: (
            f"record {i} is {int(lens[i])} bytes, expected {size} (format v{FORMAT_VERSION}, "
            f"mem_dim {mem_dim}; or {fixed} + 4 x the mem columns stored): truncated or written "
            "with another layout"))
        rec = _widen(values, buf, lens, dt)
    else:
        rec = np.frombuffer(buf, dt)
        if copy:
            rec = rec.copy()
    _reject_first(~np.isin(rec["version"], READABLE_VERSIONS), lambda i: (
        f"record {i} has format version {int(rec['version'][i])}, this build reads versions "
        f"{list(READABLE_VERSIONS)}"))
    if not short.any():
        _reject_first(rec["mem_dim"] != mem_dim,
                      lambda i: f"record {i} has mem_dim {int(rec['mem_dim'][i])}, expected {mem_dim}")
        return rec
    stored = (lens - fixed) // 4
    _reject_first((rec["mem_dim"] != stored) | (short & (rec["version"] < 2)), lambda i: (
        f"record {i} says it stores {int(rec['mem_dim'][i])} of {mem_dim} mem columns (format "
        f"v{int(rec['version'][i])}), its {int(lens[i])} bytes hold {int(stored[i])}: truncated or "
        "written with another layout"))
    rec["mem_dim"] = mem_dim  # whole now
    return rec


def _reject_first(bad: np.ndarray, why: Callable[[int], str]) -> None:
    """Raise :class:`CorruptRecordError` for the first record flagged in ``bad``; ``why(i)`` says why."""
    if bad.any():
        i = int(np.argmax(bad))
        raise CorruptRecordError(why(i), i)


def _widen(values: Sequence[bytes], buf: bytes, lens: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Whole records (a new array) from ``values`` of (valid) lengths ``lens``, ``buf`` their join."""
    out = np.zeros(len(lens), dt)
    flat = out.view(np.uint8).reshape(len(lens), dt.itemsize)
    kinds = np.unique(lens).tolist()
    if len(kinds) == 1:  # the usual case: every record trimmed alike
        flat[:, : kinds[0]] = np.frombuffer(buf, np.uint8).reshape(len(lens), kinds[0])
        return out
    for length in kinds:
        idx = np.flatnonzero(lens == length)
        part = b"".join([values[i] for i in idx.tolist()])
        flat[idx, :length] = np.frombuffer(part, np.uint8).reshape(idx.size, length)
    return out


def decode_rows_into(table: NodeArrays, slots: np.ndarray, values: Sequence[bytes]) -> None:
    """Decode ``values`` (one record per slot) into rows ``slots`` of ``table``."""
    s = _check_slots(table, slots)
    if len(values) != len(s):
        raise ValueError(f"{len(values)} values for {len(s)} slots")
    records_to_rows(decode_records(values, table.mem_dim, copy=False), table, s)


def _int64_value(v: object, what: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{what} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if not lo <= v <= _INT64_MAX:
        raise ValueError(f"{what} must be in [{lo}, 2**63 - 1], got {v}")
    return v


def _decode_int64(b: bytes, what: str) -> int:
    if not isinstance(b, (bytes, bytearray)) or len(b) != 8:
        raise CorruptRecordError(f"{what} value must be 8 bytes, got {b!r}", 0)
    return int.from_bytes(b, "big", signed=True)


def encode_id(node_id: int) -> bytes:
    """Value of an external -> internal id record: int64 big-endian, >= 0."""
    return _int64_value(node_id, "internal id", 0).to_bytes(8, "big", signed=True)


def decode_id(b: bytes) -> int:
    """Inverse of :func:`encode_id`."""
    v = _decode_int64(b, "internal id")
    if v < 0:
        raise CorruptRecordError(f"internal id value decodes to {v} < 0", 0)
    return v


def decode_ids(values: Sequence[bytes]) -> np.ndarray:
    """Vectorised :func:`decode_id` of many values (int64 array)."""
    for i, b in enumerate(values):
        if not isinstance(b, (bytes, bytearray)) or len(b) != 8:
            raise CorruptRecordError(f"internal id value {i} must be 8 bytes, got {b!r}", i)
    out = np.frombuffer(b"".join(values), ">i8").astype(np.int64)
    if out.size and int(out.min()) < 0:
        i = int(np.argmin(out))
        raise CorruptRecordError(f"internal id value {i} decodes to {int(out[i])} < 0", i)
    return out


def encode_ext(ext_id: str) -> bytes:
    """Value of an internal -> external id record (UTF-8)."""
    if not isinstance(ext_id, str) or not ext_id:
        raise ValueError(f"external id must be a non-empty str, got {ext_id!r}")
    try:
        return ext_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"external id {ext_id!r} is not encodable as UTF-8: {exc.reason}") from None


def decode_ext(b: bytes) -> str:
    """Inverse of :func:`encode_ext`."""
    try:
        s = bytes(b).decode("utf-8")
    except (TypeError, UnicodeDecodeError) as exc:
        raise CorruptRecordError(f"external id value {b!r} is not UTF-8 bytes: {exc}", 0) from None
    if not s:
        raise CorruptRecordError("external id value is empty", 0)
    return s


def encode_position(offset: int) -> bytes:
    """Value of an input position (next offset to read): int64 big-endian, >= 0."""
    return _int64_value(offset, "position", 0).to_bytes(8, "big", signed=True)


def decode_position(b: bytes) -> int:
    """Inverse of :func:`encode_position`."""
    v = _decode_int64(b, "position")
    if v < 0:
        raise CorruptRecordError(f"position value decodes to {v} < 0", 0)
    return v


def encode_count(v: int) -> bytes:
    """Value of an int64 meta record (``next_id``, ``mem_dim``)."""
    return _int64_value(v, "count", 0).to_bytes(8, "big", signed=True)


def decode_count(b: bytes) -> int:
    """Inverse of :func:`encode_count`."""
    v = _decode_int64(b, "count")
    if v < 0:
        raise CorruptRecordError(f"count value decodes to {v} < 0", 0)
    return v
