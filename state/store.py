"""The persistent graph store: node rows, id map, input positions and blobs in RocksDB.

One :class:`GraphStore` serves one engine (one set of partitions) and is used
from one thread. Reads go through two in-memory caches (ids: ``state.idmap``,
rows: ``state.cache``); writes happen only in :meth:`GraphStore.commit`, as one
RocksDB ``WriteBatch`` holding every row changed since the last commit, the new
id mappings, the blobs and the input positions. RocksDB applies a batch
atomically, so after a crash the store holds exactly some commit: rows and the
offsets they reflect always agree, and resuming from :meth:`positions` replays
precisely what was lost.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> with GraphStore(d) as st:
...     ids = st.resolve(["alice", "bob", "alice"])
...     s = st.slots(ids)
...     st.table.acc[s[0], 0] = 3.0
...     st.commit(positions={"events/0": 3}, blobs={"detector": b"x"})
>>> with GraphStore(d, create=False) as st:
...     (st.node_count, st.positions(), st.blob("detector"), st.external_ids(np.array([1])),
...      float(st.table.acc[st.peek_slots(np.array([0]))[0], 0]))
(2, {'events/0': 3}, b'x', ['bob'], 3.0)
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import shutil
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
from rocksdict import (
    BlockBasedOptions,
    Cache,
    Checkpoint,
    DBCompactionStyle,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from riskgraph.features.layout import NodeArrays, init_rows
from riskgraph.state.affinity import ThreadPinner
from riskgraph.state.batch import BatchRows
from riskgraph.state.cache import RowCache
from riskgraph.state.gather import gather_lead
from riskgraph.state.memcache import MemCache
# the allowed words are re-exported: code that configures a store finds them next to it
from riskgraph.state.options import COMPACTIONS, COMPRESSIONS, DIRECT_IO_MODES, StoreOptions  # noqa: F401
from riskgraph.state.window import RecentIds, RecentKeys
from riskgraph.state.codecs import (
    FORMAT_VERSION,
    READABLE_VERSIONS,
    CorruptRecordError,
    decode_count,
    decode_position,
    decode_records,
    encode_count,
    encode_position,
    encode_rows,
    layout_fingerprint,
    record_dtype,
    records_to_rows,
    rows_to_records,
)
from riskgraph.state.idmap import IdMap
from riskgraph.state.keys import (
    META_LAYOUT,
    META_MEM_DIM,
    META_NEXT_ID,
    META_SCHEMA,
    POS,
    blob_key,
    name_of,
    node_keys,
    position_key,
)

log = logging.getLogger(__name__)


class LeadRows(NamedTuple):
    """What :meth:`GraphStore.peek_lead` returns."""

    lead: np.ndarray  # float32 [n, width]: the leading columns of every row asked for
    whole: np.ndarray  # int64 [w]: positions (into the ids asked for) of rows whose flag column is non-zero
    rows: np.ndarray  # float32 [w, mem_dim]: those rows in full


# RocksDB's constants for the words of state.options (which says why each is there)
_COMPRESSION_TYPES = {"none": DBCompressionType.none, "lz4": DBCompressionType.lz4}
_COMPACTION_STYLES = {"level": DBCompactionStyle.level, "universal": DBCompactionStyle.universal}


def direct_io_supported(path: str) -> bool:
    """Whether the file system of directory ``path`` takes ``O_DIRECT`` writes (tmpfs does not).

    RocksDB with direct I/O for flushes and compactions fails in the background, after
    the store opened, where it does not; so the store asks first with a one-page file.

    >>> import tempfile
    >>> isinstance(direct_io_supported(tempfile.mkdtemp()), bool)
    True
    """
    flag = getattr(os, "O_DIRECT", None)
    if flag is None:
        return False
    probe = os.path.join(path, ".direct-io-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o600)
    except OSError:
        return False
    try:
        with mmap.mmap(-1, mmap.PAGESIZE) as page:  # page-aligned, as O_DIRECT wants
            os.write(fd, page)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(probe)


def _db_options(create: bool, block_cache_mb: int, compression: str = "none", direct_io: bool = False,
                compaction: str = "universal") -> Options:
    """RocksDB options for point lookups of random keys, the store's only read pattern."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(create)
    table = BlockBasedOptions()
    # Whole-key bloom filters: most lookups of a new entity's id are misses, which the
    # filter answers without reading a data block.
    table.set_bloom_filter(10, False)
    table.set_block_cache(Cache(max(1, block_cache_mb) << 20))
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    opts.set_block_based_table_factory(table)
    # ... and the memtable gets one too: a miss there otherwise costs a full skiplist search
    opts.set_memtable_prefix_bloom_ratio(0.05)
    opts.set_memtable_whole_key_filtering(True)
    # see COMPRESSIONS; LZ4 (when chosen) decompresses several times faster than the default Snappy
    opts.set_compression_type(_COMPRESSION_TYPES[compression]())
    # Flushes and compactions stream whole files; through the page cache that is a kernel
    # copy of every byte and pages to recycle, next to a scoring thread that waits on
    # memory: direct I/O is faster while the graph fits the row cache, but a store read back
    # from disk then misses the page cache for every freshly compacted file (both measured:
    # benchmarks/README.md), so it is off unless asked for.
    opts.set_use_direct_io_for_flush_and_compaction(direct_io)
    opts.set_compaction_style(_COMPACTION_STYLES[compaction]())
    return opts


def open_db(path: str, create: bool, block_cache_mb: int, compression: str = "none",
            direct_io: bool = False, compaction: str = "universal") -> Rdict:
    """The store's RocksDB opened with :func:`_db_options`, also when it already exists.

    rocksdict opens an existing database with the column-family options of its OPTIONS
    file unless they are given: the block cache given here was then silently replaced by
    RocksDB's default 8 MB one (and the compression by the one the store was created
    with). Naming the default column family's options makes ours apply on every open.
    """
    check_store_dir(path)
    opts = _db_options(create, block_cache_mb, compression, direct_io, compaction)
    try:
        return Rdict(path, opts, column_families={"default": opts})
    except Exception as exc:  # rocksdict raises a bare Exception carrying RocksDB's status text
        raise _open_error(path, exc) from None


class StoreOpenError(ValueError):
    """The store directory cannot be opened; the message says why and what to do."""


class StoreLockedError(StoreOpenError):
    """Another process (or another store in this one) has the directory open."""


class StoreCorruptError(StoreOpenError):
    """RocksDB found the directory's files damaged."""


#: names RocksDB, rocksdict and riskgraph put into a store directory (the worker keeps
#: Faust's data and analyst feedback there too)
_STORE_NAME = re.compile(r"^(CURRENT|IDENTITY|LOCK|LOG(\.old\.\d+)?|MANIFEST-\d+|OPTIONS-\d+(\.dbtmp)?|"
                         r"\d+\.(log|sst|blob|dbtmp)|rocksdict-config\.json|faust|feedback\.jsonl)$")


def check_store_dir(path: str) -> None:
    """Refuse a path that is not a directory, or a directory with files but no RocksDB database.

    A missing or empty directory is fine (the store is created there); so are dot-files. A
    directory of someone's other files is refused rather than silently turned into a store.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "x.csv").write_text("a,b")
    >>> check_store_dir(str(d))
    Traceback (most recent call last):
    ...
    riskgraph.state.store.StoreOpenError: ... is not a state directory: it holds x.csv and no RocksDB database; give --state an empty or new directory
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreOpenError(f"{path!r} is a file, not a state directory; give --state a directory (new or empty "
                             "to start a store)")
    if not os.path.isdir(path) or os.path.exists(os.path.join(path, "CURRENT")):
        return
    foreign = sorted(n for n in os.listdir(path) if not n.startswith(".") and not _STORE_NAME.match(n))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise StoreOpenError(f"{path!r} is not a state directory: it holds {shown} and no RocksDB database; "
                             "give --state an empty or new directory")


def _open_error(path: str, exc: Exception) -> StoreOpenError:
    """One clear error for RocksDB's refusal to open ``path`` (its status text kept at the end)."""
    msg = " ".join(str(exc).split())  # RocksDB's text may span lines: the error stays one line
    if "lock" in msg.lower() and ("LOCK" in msg or "Resource temporarily unavailable" in msg):
        return StoreLockedError(
            f"state directory {path!r} is in use by another process (RocksDB holds its LOCK): stop the other "
            f"replay or worker, or use another --state directory (RocksDB: {msg})")
    if msg.startswith("Corruption") or "corrupt" in msg.lower():
        return StoreCorruptError(
            f"state directory {path!r} is corrupt: restore it from a checkpoint, or move it away to start a new "
            f"store (RocksDB: {msg})")
    if "does not exist" in msg and "create_if_missing" in msg:
        return StoreOpenError(f"no graph store at {path!r} (RocksDB: {msg})")
    return StoreOpenError(f"cannot open state directory {path!r} (RocksDB: {msg})")


class StoreMismatchError(ValueError):
    """The store on disk was written with another layout, format or ``mem_dim``."""


class GraphStore:
    """RocksDB-backed node table with dense ids, atomic commits and checkpoints.

    ``path``: store directory. ``options``: its tuning (:class:`StoreOptions`, checked
    when built; None: the defaults); ``options.mem_dim`` must equal the width the
    store was created with. ``create``: create the store if missing, else raise
    :class:`FileNotFoundError`. The attribute ``direct_io`` says whether RocksDB's
    flushes and compactions bypass the page cache (``options.direct_io`` "auto" asks the
    file system, :func:`direct_io_supported`).

    >>> import tempfile
    >>> with GraphStore(tempfile.mkdtemp(), StoreOptions(mem_dim=4, cache_capacity=100)) as st:
    ...     st.mem_dim, st.cache_capacity, st.options.compaction
    (4, 100, 'universal')
    """

    def __init__(self, path: str | os.PathLike, options: StoreOptions | None = None, *,
                 create: bool = True) -> None:
        options = StoreOptions() if options is None else options
        if not isinstance(options, StoreOptions):
            raise TypeError(f"options must be a StoreOptions, got {type(options).__name__}")
        self.options = options
        self.path = os.fspath(path)
        self.mem_dim = options.mem_dim
        if not create and not os.path.exists(os.path.join(self.path, "CURRENT")):
            raise FileNotFoundError(f"no graph store at {self.path!r} (opened with create=False)")
        self.direct_io = False
        if options.direct_io != "off":
            if create:
                os.makedirs(self.path, exist_ok=True)
            self.direct_io = direct_io_supported(self.path)
            if not self.direct_io:
                if options.direct_io == "on":
                    raise ValueError(f"direct_io='on' but the file system of {self.path!r} refuses O_DIRECT "
                                     "(tmpfs does): use 'auto' or 'off'")
                log.info("graph store %s: file system refuses O_DIRECT, flushes and compactions buffered",
                         self.path)
        self.compaction = options.compaction
        self._db: Rdict | None = open_db(self.path, create, options.block_cache_mb, options.compression,
                                         self.direct_io, options.compaction)
        try:
            next_id = self._open_meta()
            self._positions = self._read_positions()
        except BaseException as exc:
            self._db.close()
            self._db = None
            if type(exc) is Exception:  # rocksdict's: e.g. a damaged block of the meta records
                raise _open_error(self.path, exc) from None
            raise
        self._windows: dict[str, RecentKeys | RecentIds] = {}
        self._write_opts = WriteOptions()
        self._write_opts.sync = options.sync
        self._ids = IdMap(self._db, next_id, options.id_capacity)
        self._mem = MemCache(options.mem_cache_width or self.mem_dim, options.mem_cache_capacity) \
            if options.mem_cache_capacity and self.mem_dim else None
        self._rows = RowCache(self.mem_dim, options.cache_capacity, self._load_rows,
                              on_evict=self._keep_mem if self._mem is not None else None)
        self._scratch = np.empty(0, record_dtype(self.mem_dim))  # reused by every commit
        self._trim = options.mem_cache_width
        # last, with the store open: a CPU the process may not use closes it again and raises
        self._pinner: ThreadPinner | None = None
        if options.pin_scoring_cpu is not None:
            try:
                self._pinner = ThreadPinner(options.pin_scoring_cpu)
            except BaseException:
                self._db.close()
                self._db = None
                raise

    # -- opening ------------------------------------------------------------

    def _open_meta(self) -> int:
        db = self._db
        assert db is not None
        schema, layout, mem_dim, next_id = db.get([META_SCHEMA, META_LAYOUT, META_MEM_DIM, META_NEXT_ID])
        if schema is None:
            if next(iter(db.keys()), None) is not None:
                raise StoreMismatchError(f"{self.path!r} holds a RocksDB database that is not a graph store")
            wb = WriteBatch(raw_mode=True)
            wb[META_SCHEMA] = encode_count(FORMAT_VERSION)
            wb[META_LAYOUT] = layout_fingerprint().encode()
            wb[META_MEM_DIM] = encode_count(self.mem_dim)
            wb[META_NEXT_ID] = encode_count(0)
            db.write(wb)
            return 0
        version = decode_count(schema)
        if version not in READABLE_VERSIONS:
            raise StoreMismatchError(f"store {self.path!r} has record format v{version}, this build reads "
                                     f"v{', v'.join(map(str, READABLE_VERSIONS))}")
        if layout != layout_fingerprint().encode():
            raise StoreMismatchError(
                f"state directory {self.path!r} was written by a version of riskgraph that keeps other "
                f"per-entity state (node layout {layout.decode(errors='replace')}, this one "
                f"{layout_fingerprint()}): start from an empty state directory (another --state path, or "
                "delete this one)")
        if decode_count(mem_dim) != self.mem_dim:
            raise StoreMismatchError(
                f"store {self.path!r} was created with mem_dim={decode_count(mem_dim)}, opened with "
                f"mem_dim={self.mem_dim}: use the model the store was built with, or a new store")
        if version != FORMAT_VERSION:  # its records read as they are; new ones may be v2-only (trimmed)
            log.info("graph store %s: record format v%d -> v%d", self.path, version, FORMAT_VERSION)
            db.put(META_SCHEMA, encode_count(FORMAT_VERSION))
        return decode_count(next_id)

    def _read_positions(self) -> dict[str, int]:
        assert self._db is not None
        out: dict[str, int] = {}
        for k, v in self._db.items(from_key=POS):
            if not k.startswith(POS):
                break
            out[name_of(k, POS)] = decode_position(v)
        return out

    def _check_open(self) -> Rdict:
        if self._db is None:
            raise RuntimeError(f"graph store {self.path!r} is closed")
        return self._db

    # -- ids and rows -------------------------------------------------------

    @property
    def table(self) -> NodeArrays:
        """The hot node table. Loading rows may grow it, which replaces its arrays: a micro-batch
        works through :meth:`batch`, whose handle reads the table at each use."""
        return self._rows.table

    @property
    def commits(self) -> int:
        """Commits since the store was opened (a :class:`~riskgraph.state.batch.BatchRows` ends at the next)."""
        return self._rows.generation

    @property
    def node_count(self) -> int:
        """Number of entities with an internal id (ids are ``0 .. node_count - 1``)."""
        return self._ids.next_id

    @property
    def mem_cache_capacity(self) -> int:
        """Nodes whose memory the compact cache may hold (0: no such cache)."""
        return 0 if self._mem is None else self._mem.capacity

    @property
    def cache_capacity(self) -> int:
        return self._rows.capacity

    def resolve(self, ext_ids: Sequence[str]) -> np.ndarray:
        """Internal ids (int64) of ``ext_ids``; unseen entities get the next ids, pending until commit."""
        self._check_open()
        return self._ids.resolve(ext_ids)

    def slots(self, ids: np.ndarray) -> np.ndarray:
        """Table slots of ``ids`` for reading and writing; the rows are written at the next commit.

        Missing rows are loaded in one multi-get (fresh rows for never-written
        nodes). Duplicate ids get the same slot. The slots stay valid until the
        next commit.
        """
        self._check_open()
        return self._rows.lookup(self._ids.check_ids(ids), mark_dirty=True)

    def batch(self, ids: np.ndarray) -> BatchRows:
        """The rows of one micro-batch's nodes ``ids``, loaded and marked for the next commit
        (:meth:`slots`), behind a handle that always reads the current table (``state.batch``)."""
        slots = self.slots(ids)
        return BatchRows(self, ids, slots, self.commits)

    def peek_slots(self, ids: np.ndarray) -> np.ndarray:
        """Table slots of ``ids`` for reading only (valid until the next slots/peek_slots call).

        Changes made through these slots are not committed unless the row is also
        obtained through :meth:`slots` before the commit.
        """
        self._check_open()
        return self._rows.lookup(self._ids.check_ids(ids), mark_dirty=False)

    def peek_mem(self, ids: np.ndarray) -> np.ndarray:
        """The ``mem`` rows (float32[len(ids), mem_dim], a copy) of ``ids``, read-only use.

        For rows that are only read, like a TGN's temporal neighbours: a resident row
        is read from the row cache; any other from the memory cache, else RocksDB
        (then kept in the memory cache) -- without loading the full row or evicting
        one. Never-written nodes read as fresh rows do (zeros). See :meth:`peek_lead`
        for the leading columns only.

        >>> import tempfile
        >>> opts = StoreOptions(mem_dim=2, cache_capacity=1, mem_cache_capacity=8)
        >>> with GraphStore(tempfile.mkdtemp(), opts) as st:
        ...     s = st.slots(st.resolve(["a"]))
        ...     st.table.mem[s] = 5.0
        ...     st.commit()
        ...     _ = st.peek_slots(st.resolve(["b", "c"]))  # "a" leaves the row cache
        ...     st.peek_mem(st.resolve(["a", "b", "z"])).tolist()
        [[5.0, 5.0], [0.0, 0.0], [0.0, 0.0]]
        """
        return self.peek_lead(ids, self.mem_dim).lead

    def peek_lead(self, ids: np.ndarray, width: int, flag: int | None = None) -> LeadRows:
        """The leading ``width`` columns of the ``mem`` rows of ``ids``, read-only use, and
        the whole rows of those whose column ``flag`` is non-zero.

        As :meth:`peek_mem`, but a TGN reading its temporal neighbours needs only their
        memory (64 of 154 columns with the default dimensions) unless a row still holds a
        pending message (``flag``: the message-kind column): copying 4 instead of 10 cache
        lines per row, and nothing for the rest, keeps the gather cheap when the table is
        larger than the CPU caches. ``flag=None``: no whole rows.

        >>> import tempfile
        >>> with GraphStore(tempfile.mkdtemp(), StoreOptions(mem_dim=3, mem_cache_capacity=8)) as st:
        ...     s = st.slots(st.resolve(["a", "b"]))
        ...     st.table.mem[s] = [[1.0, 2.0, 0.0], [3.0, 4.0, 1.0]]  # "b" has a pending message
        ...     got = st.peek_lead(st.resolve(["a", "b", "new"]), 2, flag=2)
        ...     got.lead.tolist(), got.whole.tolist(), got.rows.tolist()
        ([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]], [1], [[3.0, 4.0, 1.0]])
        """
        self._check_open()
        ids = self._ids.check_ids(ids)
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or not 1 <= width <= self.mem_dim:
            raise ValueError(f"width must be an int in [1, mem_dim={self.mem_dim}], got {width!r}")
        if flag is not None and (isinstance(flag, bool) or not isinstance(flag, (int, np.integer))
                                 or not width <= flag < self.mem_dim):
            raise ValueError(f"flag must be a column in [width={width}, mem_dim={self.mem_dim}) or None, "
                             f"got {flag!r}")
        table = self._rows.table
        res = self._rows.resident_slots(ids)
        here = res >= 0
        whole: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        # one compiled pass over the resident rows (see state.gather); the others stay zero
        lead = (np.empty if here.all() else np.zeros)((ids.shape[0], width), np.float32)
        flagged = np.empty(ids.shape[0], np.int64)
        k = gather_lead(table.mem, res, width, -1 if flag is None else flag, lead, flagged)
        if k:
            whole.append(flagged[:k])
            rows.append(table.mem[res[flagged[:k]]])
        rest = np.flatnonzero(~here)
        if rest.size and self._mem is not None:
            # cached memories: their columns past the cache's width are zero
            m = self._mem
            got = m.get(ids[rest])
            hit = got >= 0
            w = min(width, m.width)
            lead[rest[hit], :w] = m.rows[got[hit], :w]
            if flag is not None and flag < m.width:
                f = m.rows[got[hit], flag] != 0
                if f.any():
                    whole.append(rest[hit][f])
                    full = np.zeros((int(f.sum()), self.mem_dim), np.float32)
                    full[:, : m.width] = m.rows[got[hit][f]]
                    rows.append(full)
            rest = rest[~hit]
        rest = rest[ids[rest] < self._ids.n_committed]  # newer ids have no record: zeros
        if rest.size:
            uniq, inv = np.unique(ids[rest], return_inverse=True)
            stored, rec = self._read_records(uniq)
            mem = np.zeros((uniq.shape[0], self.mem_dim), np.float32)
            if rec is not None:
                mem[stored] = rec["mem"]
            lead[rest] = mem[inv, :width]
            if flag is not None:
                f = mem[inv, flag] != 0
                if f.any():
                    whole.append(rest[f])
                    rows.append(mem[inv[f]])
            if self._mem is not None:
                self._cache_mem(uniq, mem)
        if not whole:
            return LeadRows(lead, np.empty(0, np.int64), np.empty((0, self.mem_dim), np.float32))
        return LeadRows(lead, np.concatenate(whole), np.concatenate(rows))

    def _keep_mem(self, ids: np.ndarray, slots: np.ndarray) -> None:
        self._cache_mem(ids, self._rows.table.mem[slots])

    def _cache_mem(self, ids: np.ndarray, mem: np.ndarray) -> None:
        """Put the rows whose columns past the cache's width are all zero (only those
        read back exactly from it) into the memory cache; drop older entries of the others."""
        m = self._mem
        assert m is not None
        if m.width < mem.shape[1]:
            fits = ~mem[:, m.width:].any(axis=1)  # NaN counts as non-zero
            m.discard(ids[~fits])  # an entry from before the row changed would be stale
            ids, mem = ids[fits], mem[fits, : m.width]
        m.put(ids, mem)

    def _read_records(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Which committed ``ids`` have a record in RocksDB (bool mask), and those records
        decoded (a read-only structured view: callers copy out what they keep, or None
        when there are none). One multi-get; a bad record raises
        :class:`CorruptRecordError` naming its internal id."""
        values = self._check_open().get(node_keys(ids))
        stored = np.fromiter((v is not None for v in values), np.bool_, len(values))
        if not stored.any():
            return stored, None
        try:
            return stored, decode_records([v for v in values if v is not None], self.mem_dim, copy=False)
        except CorruptRecordError as exc:
            nid = int(ids[stored][exc.index])
            raise CorruptRecordError(f"node record of internal id {nid}: {exc}", exc.index) from None

    def _load_rows(self, ids: np.ndarray, slots: np.ndarray) -> None:
        table = self._rows.table
        known = ids < self._ids.n_committed
        fresh = slots[~known]
        if known.any():
            stored, rec = self._read_records(ids[known])
            ks = slots[known]
            if rec is not None:
                records_to_rows(rec, table, ks[stored])
            fresh = np.concatenate([fresh, ks[~stored]])
        if fresh.size:
            init_rows(table, fresh)

    def external_id(self, node_id: int) -> str:
        """External id of one internal id."""
        return self.external_ids(np.array([node_id]))[0]

    def external_ids(self, ids: np.ndarray) -> list[str]:
        """External id of each internal id."""
        self._check_open()
        return self._ids.external_ids(ids)

    # -- commit -------------------------------------------------------------

    def commit(self, positions: Mapping[str, int] | None = None, blobs: Mapping[str, bytes] | None = None) -> None:
        """Write every dirty row, new id, blob and position in one atomic ``WriteBatch``.

        ``positions``: next offset to read per input (e.g. ``{"events/0": 1234}``).
        ``blobs``: named opaque bytes (e.g. detector stream state). Bad names or
        values raise ``ValueError`` before anything is written.
        """
        db = self._check_open()
        pos = [(position_key(k), encode_position(v), k, int(v)) for k, v in (positions or {}).items()]
        blob_items = []
        for k, v in (blobs or {}).items():
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise ValueError(f"blob {k!r} must be bytes, got {type(v).__name__}")
            blob_items.append((blob_key(k), bytes(v)))
        slots, ids = self._rows.dirty()
        wb = WriteBatch(raw_mode=True)
        if slots.size:
            if len(self._scratch) < slots.size:
                self._scratch = np.empty(max(slots.size, 2 * len(self._scratch)), self._scratch.dtype)
            # rows are gathered in slot order (``dirty()``: sequential reads of the table) but
            # written in key order: RocksDB inserts a batch's keys into the memtable's skiplist
            # one after the other, and an insert next to the previous one finds its place
            # from there instead of searching from the top (a memory miss per level)
            vals = encode_rows(self._rows.table, slots, self._scratch, self._trim)
            keys = node_keys(ids)
            for i in np.argsort(ids, kind="stable").tolist():
                wb[keys[i]] = vals[i]
        self._ids.write_pending(wb)
        for k, v, _, _ in pos:
            wb[k] = v
        for k, v in blob_items:
            wb[k] = v
        for w in self._windows.values():
            w.write_pending(wb)
        if len(wb):
            db.write(wb, self._write_opts)
            if self._pinner is not None:  # RocksDB starts flush and compaction threads lazily
                self._pinner.refresh()
        # only now that RocksDB has the batch: on a failed write everything stays pending
        self._rows.clear_dirty()
        self._ids.mark_committed()
        for w in self._windows.values():
            w.mark_committed()
        self._positions.update((name, v) for _, _, name, v in pos)

    def window(self, name: str, capacity: int) -> RecentKeys:
        """The window of recent keys ``name`` (``state.window``), read back from the store on
        first use and written with every :meth:`commit` from then on."""
        return self._window(RecentKeys, name, capacity)

    def id_window(self, name: str, capacity: int) -> RecentIds:
        """The window of recent string ids ``name`` (``state.window.RecentIds``), as :meth:`window`."""
        return self._window(RecentIds, name, capacity)

    def _window(self, kind: type, name: str, capacity: int) -> Any:
        w = self._windows.get(name)
        if w is not None and not isinstance(w, kind):
            raise ValueError(f"window {name!r} is open as a {type(w).__name__}, not a {kind.__name__}")
        if w is None:
            db = self._check_open()
            w = kind(name, capacity)
            prefix = w.prefix

            def stored() -> Iterator[tuple[bytes, bytes]]:
                for k, v in db.items(from_key=prefix):
                    if not k.startswith(prefix):
                        break
                    yield k, v
            w.load(stored())
            self._windows[name] = w
        elif w.capacity != capacity:
            raise ValueError(f"window {name!r} is open with capacity {w.capacity}, asked for {capacity}")
        return w

    def positions(self) -> dict[str, int]:
        """The committed input positions (a copy)."""
        self._check_open()
        return dict(self._positions)

    def blob(self, name: str) -> bytes | None:
        """The committed blob ``name``, or None."""
        return self._check_open().get(blob_key(name))

    @property
    def pinning(self) -> dict[str, object] | None:
        """Which CPU the scoring thread and which RocksDB's threads are pinned to (None: not pinned)."""
        return self._pinner.describe() if self._pinner is not None else None

    @property
    def cache_stats(self) -> dict[str, int]:
        """Row cache counters: capacity (configured), rows (allocated), resident, dirty, evicted;
        the id cache's ids and bytes; the memory cache's rows, hits, misses and bytes (if any)."""
        r = self._rows
        ids, id_bytes = self._ids.cache_stats
        out = {"capacity": r.capacity, "rows": r.table.capacity, "resident": r.n_resident,
               "dirty": self.n_dirty, "evicted": r.n_evicted, "id_cache_ids": ids, "id_cache_bytes": id_bytes}
        if self._mem is not None:
            m = self._mem
            out.update(mem_cache_rows=len(m), mem_cache_hits=m.hits, mem_cache_misses=m.misses,
                       mem_cache_bytes=m.nbytes)
        return out

    @property
    def rocksdb_memory(self) -> dict[str, int]:
        """Bytes RocksDB holds in memory: ``block_cache`` (bounded by ``block_cache_mb``;
        index and filter blocks are charged to it), ``memtables`` (bounded by the write
        buffers) and ``table_readers`` (outside the block cache).

        >>> import tempfile
        >>> with GraphStore(tempfile.mkdtemp()) as s:
        ...     sorted(s.rocksdb_memory)
        ['block_cache', 'memtables', 'table_readers']
        """
        db = self._check_open()
        props = {"block_cache": "rocksdb.block-cache-usage", "memtables": "rocksdb.cur-size-all-mem-tables",
                 "table_readers": "rocksdb.estimate-table-readers-mem"}
        return {k: int(db.property_int_value(v) or 0) for k, v in props.items()}

    @property
    def block_cache_capacity(self) -> int:
        """Bytes RocksDB's block cache may hold (``block_cache_mb``, also after a reopen).

        >>> import tempfile
        >>> with GraphStore(tempfile.mkdtemp(), StoreOptions(block_cache_mb=32)) as s:
        ...     s.block_cache_capacity == 32 << 20
        True
        """
        return int(self._check_open().property_int_value("rocksdb.block-cache-capacity") or 0)

    @property
    def n_dirty(self) -> int:
        """Rows changed since the last commit."""
        return int(self._rows.dirty()[0].size)

    # -- dumps --------------------------------------------------------------

    def iter_records(self, chunk: int = 4096) -> Iterator[tuple[int, str, np.void]]:
        """Yield ``(internal id, external id, record)`` for every node, in id order.

        ``record`` is a structured scalar of ``state.codecs.record_dtype(mem_dim)``
        (``rec["acc"]``, ``rec["ring_nbr"]``, ..., ``rec["mem"]``), a copy of the
        current row: uncommitted changes in the cache included, the cache untouched.
        """
        self._check_open()
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        fresh = NodeArrays.empty(1, self.mem_dim)
        init_rows(fresh, np.array([0]))
        blank = rows_to_records(fresh, np.array([0]))[0]
        for start in range(0, self.node_count, chunk):
            ids = np.arange(start, min(self.node_count, start + chunk), dtype=np.int64)
            exts = self.external_ids(ids)
            rec = np.empty(len(ids), record_dtype(self.mem_dim))
            res = self._rows.resident_slots(ids)
            here = res >= 0
            rec[here] = rows_to_records(self._rows.table, res[here])
            away = np.flatnonzero(~here)
            rec[away] = blank
            known = away[ids[away] < self._ids.n_committed]
            if known.size:
                stored, got = self._read_records(ids[known])
                if got is not None:
                    rec[known[stored]] = got
            for j in range(len(ids)):
                yield int(ids[j]), exts[j], rec[j]

    # -- files --------------------------------------------------------------

    def checkpoint(self, dest_dir: str | os.PathLike) -> None:
        """A consistent RocksDB checkpoint of the committed state in ``dest_dir`` (must not exist)."""
        db = self._check_open()
        dest = os.fspath(dest_dir)
        if os.path.exists(dest):
            raise FileExistsError(f"checkpoint destination {dest!r} already exists")
        parent = os.path.dirname(os.path.abspath(dest))
        os.makedirs(parent, exist_ok=True)
        Checkpoint(db).create_checkpoint(dest)

    @classmethod
    def restore(cls, checkpoint_dir: str | os.PathLike, path: str | os.PathLike,
                options: StoreOptions | None = None, *, overwrite: bool = False) -> "GraphStore":
        """Copy a checkpoint to ``path`` and open it there with ``options`` (the checkpoint stays untouched).

        ``options`` defaults to ``StoreOptions(mem_dim=<the stored one>)``. ``path`` must
        not exist or be empty unless ``overwrite`` (then it is deleted first).
        """
        src, dst = os.fspath(checkpoint_dir), os.fspath(path)
        if not os.path.exists(os.path.join(src, "CURRENT")):
            raise FileNotFoundError(f"{src!r} is not a RocksDB checkpoint (no CURRENT file)")
        if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
            if not overwrite:
                raise FileExistsError(f"restore target {dst!r} exists and is not empty (pass overwrite=True)")
            shutil.rmtree(dst)
        elif os.path.isdir(dst):
            os.rmdir(dst)
        shutil.copytree(src, dst)
        if options is None:
            db = Rdict(dst, Options(raw_mode=True))
            try:
                stored = db.get(META_MEM_DIM)
            finally:
                db.close()
            if stored is None:
                raise StoreMismatchError(f"checkpoint {src!r} is not a graph store (no mem_dim meta record)")
            options = StoreOptions(mem_dim=decode_count(stored))
        return cls(dst, options, create=False)

    def flush(self) -> None:
        """Flush RocksDB's memtables to disk (committed data only; commits are durable without it)."""
        self._check_open().flush()

    def close(self, *, failing: bool = False) -> None:
        """Close the database. Changes since the last commit are discarded (as in a crash).

        Discarding is logged as a warning, or at debug level when ``failing`` (closing
        because of an exception, which already says what went wrong).
        """
        if self._db is None:
            return
        n_dirty, n_new = self.n_dirty, self._ids.n_pending
        if n_dirty or n_new:
            log.log(logging.DEBUG if failing else logging.WARNING,
                    "closing graph store %s: discarding %d uncommitted rows and %d new ids",
                        self.path, n_dirty, n_new)
        self._db.close()
        self._db = None
        if self._pinner is not None:
            self._pinner.release()
            self._pinner = None

    def __enter__(self) -> "GraphStore":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failing=exc_type is not None)

    def __repr__(self) -> str:
        state = "closed" if self._db is None else f"{self.node_count} nodes, {self._rows.n_resident} resident"
        return f"GraphStore({self.path!r}, mem_dim={self.mem_dim}, {state})"
