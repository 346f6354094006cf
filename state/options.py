"""The graph store's tuning options: one frozen, validated object.

A :class:`~riskgraph.state.store.GraphStore` takes its tuning as one
:class:`StoreOptions` (after Quix Streams' ``RocksDBOptions``), checked once when it is
built; a variant is ``dataclasses.replace(options, field=value)``, validated again.
The allowed words of the string options live here too, so that the settings
(``riskgraph.settings``) and the store check against one list. Nothing here opens
RocksDB: the store maps the words to RocksDB's own constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

#: Block compression of the store's files. "none" by default: node records are read at
#: random, one 4 kB block per record, and decompressing that block is most of a read
#: once the block cache is outgrown; LZ4 saves disk at that cost (how much of each:
#: benchmarks/README.md, bench_tgn_scale).
COMPRESSIONS = ("none", "lz4")

#: ``StoreOptions.direct_io`` values: "auto" uses direct I/O for flushes and compactions
#: where the file system takes it, "on" requires it, "off" never uses it.
DIRECT_IO_MODES = ("off", "auto", "on")

#: ``StoreOptions.compaction`` values: RocksDB's compaction style. "universal" (the
#: store's default) merges sorted runs of similar size, which rewrites each record fewer
#: times in a store whose every record is overwritten again and again: fewer bytes
#: compacted and more events/s than "level" at 10^6 nodes (benchmarks/README.md). Its price: a compaction
#: of all runs now and then, which needs up to the store's size again in free disk for a
#: while. "level" (RocksDB's own default) keeps one sorted run per level and needs less
#: headroom. Either opens a store written with the other.
COMPACTIONS = ("universal", "level")


def _is_int(v: object) -> bool:
    # numpy integers count (a width computed with numpy is still a width), bools do not
    return isinstance(v, Integral) and not isinstance(v, bool)


@dataclass(frozen=True)
class StoreOptions:
    """How a :class:`~riskgraph.state.store.GraphStore` keeps its rows, caches and files.

    Parameters
    ----------
    mem_dim : int, default 0
        Width of the model's per-node state; it must equal the width the store was
        created with.
    cache_capacity : int, default 1_000_000
        Rows kept in memory (more only while rows are dirty).
    id_cache_capacity : int or None, default None
        External ids kept in memory; None: the larger of ``cache_capacity`` and
        ``mem_cache_capacity``. An id costs 48-64 bytes plus its UTF-8 bytes
        (``state.idcache``), and an event end whose id is cached but whose row is not
        costs one RocksDB read, not two.
    sync : bool, default False
        fsync the write-ahead log at every commit (survives power loss, not only
        process death).
    block_cache_mb : int, default 256
        RocksDB's cache of uncompressed blocks, for rows and ids read back after
        eviction or a restart.
    mem_cache_capacity : int, default 0
        Nodes whose model memory (``mem``, ``mem_dim`` float32s) is kept apart from the
        row cache for ``GraphStore.peek_mem`` (0: none; see ``state.memcache``).
    compression : {"none", "lz4"}, default "none"
        Block compression of the files written from now on (see ``COMPRESSIONS``);
        files of either kind are read whatever the setting.
    mem_cache_width : int or None, default None
        Leading ``mem`` columns the memory cache keeps (None: all, else 1 to
        ``mem_dim``): a row is cached only when its other columns are zero, as a TGN
        row is once its pending message is folded in (616 -> 256 bytes per node with
        the default dimensions); such a row is also written to RocksDB without those
        columns (``state.codecs``, format v2: 1,184 -> 824 bytes).
    pin_scoring_cpu : int or None, default None
        Pin the thread that opens the store and commits to this CPU and RocksDB's
        background threads to the process's other CPUs (``state.affinity``, which
        checks the CPU when the store opens; None: no pinning).
    direct_io : {"off", "auto", "on"}, default "off"
        RocksDB's flushes and compactions bypass the page cache: "auto" where the file
        system takes ``O_DIRECT`` (``GraphStore.direct_io`` says what was chosen),
        "on" an error where it does not (see ``DIRECT_IO_MODES``). Faster when the rows
        live in the row cache (writes only), slower when rows are read back from
        RocksDB: freshly compacted files are then not in the page cache
        (``benchmarks/README.md``).
    compaction : {"universal", "level"}, default "universal"
        RocksDB's compaction style (see ``COMPACTIONS``).

    Raises
    ------
    ValueError
        A value out of its range, naming the option.

    Examples
    --------
    >>> import dataclasses
    >>> opts = StoreOptions(mem_dim=8, cache_capacity=1000)
    >>> opts.compression, opts.id_cache_capacity
    ('none', None)
    >>> dataclasses.replace(opts, compression="lz4").compression
    'lz4'
    >>> dataclasses.replace(opts, mem_cache_width=9)
    Traceback (most recent call last):
    ...
    ValueError: mem_cache_width must be an int in [1, mem_dim=8], got 9
    """

    mem_dim: int = 0
    cache_capacity: int = 1_000_000
    id_cache_capacity: int | None = None
    sync: bool = False
    block_cache_mb: int = 256
    mem_cache_capacity: int = 0
    compression: str = "none"
    mem_cache_width: int | None = None
    pin_scoring_cpu: int | None = None
    direct_io: str = "off"
    compaction: str = "universal"

    def __post_init__(self) -> None:
        if not _is_int(self.mem_dim) or self.mem_dim < 0:
            raise ValueError(f"mem_dim must be an int >= 0, got {self.mem_dim!r}")
        if not _is_int(self.cache_capacity) or self.cache_capacity < 1:
            raise ValueError(f"cache_capacity must be an int >= 1, got {self.cache_capacity!r}")
        if self.id_cache_capacity is not None and (not _is_int(self.id_cache_capacity)
                                                   or self.id_cache_capacity < 1):
            raise ValueError(f"id_cache_capacity must be None or an int >= 1, got {self.id_cache_capacity!r}")
        if not isinstance(self.sync, bool):
            raise ValueError(f"sync must be True or False, got {self.sync!r}")
        if not _is_int(self.block_cache_mb) or self.block_cache_mb < 1:
            raise ValueError(f"block_cache_mb must be an int >= 1, got {self.block_cache_mb!r}")
        if not _is_int(self.mem_cache_capacity) or self.mem_cache_capacity < 0:
            raise ValueError(f"mem_cache_capacity must be an int >= 0, got {self.mem_cache_capacity!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {self.compression!r}")
        if self.mem_cache_width is not None and (not _is_int(self.mem_cache_width)
                                                 or not 1 <= self.mem_cache_width <= self.mem_dim):
            raise ValueError(f"mem_cache_width must be an int in [1, mem_dim={self.mem_dim}], "
                             f"got {self.mem_cache_width!r}")
        if self.pin_scoring_cpu is not None and not _is_int(self.pin_scoring_cpu):
            raise ValueError(f"pin_scoring_cpu must be None or a CPU number, got {self.pin_scoring_cpu!r}")
        if self.direct_io not in DIRECT_IO_MODES:
            raise ValueError(f"direct_io must be one of {list(DIRECT_IO_MODES)}, got {self.direct_io!r}")
        if self.compaction not in COMPACTIONS:
            raise ValueError(f"compaction must be one of {list(COMPACTIONS)}, got {self.compaction!r}")
        # plain ints from here on (numpy integers compare and hash alike, but repr differently)
        for name in ("mem_dim", "cache_capacity", "id_cache_capacity", "block_cache_mb", "mem_cache_capacity",
                     "mem_cache_width", "pin_scoring_cpu"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, int(v))

    @property
    def id_capacity(self) -> int:
        """External ids the store keeps in memory: ``id_cache_capacity`` or its default."""
        return self.id_cache_capacity or max(self.cache_capacity, self.mem_cache_capacity)
