"""Keep RocksDB's background threads off the CPU of the thread that scores events.

RocksDB flushes memtables and compacts files on background threads (named
``rocksdb:high`` and ``rocksdb:low``) started lazily inside the process. On a small
machine the kernel moves them and the scoring thread between the same few CPUs; every
time a compaction runs where the scoring thread ran, it streams megabytes of files
through that CPU's private L2 cache and the scoring thread comes back to a cold one.
With 10^6 nodes -- where each flush writes whole memtables and compactions run about a
third of the time -- that cost the scoring thread about 5-20 % of its rate on the 2-vCPU
machine of ``benchmarks/bench_tgn_scale.py`` (``benchmarks/profile_tgn_scale.py --pin``).

:class:`ThreadPinner` pins the calling (scoring) thread to one CPU and every RocksDB
background thread of the process to the other CPUs it may use, and re-pins when the
process has started threads since. Off by default (``Settings.pin_scoring_cpu = -1``):
several workers on one host must each be given their own CPU. Linux only.

>>> import os
>>> cpus = sorted(os.sched_getaffinity(0))
>>> if len(cpus) >= 2:
...     p = ThreadPinner(cpus[0])
...     assert os.sched_getaffinity(0) == {cpus[0]}
...     p.release()
>>> os.sched_getaffinity(0) == set(cpus)
True
"""

from __future__ import annotations

import os
import threading

#: where Linux lists the threads of this process
TASKS = "/proc/self/task"
#: RocksDB names its background threads "rocksdb:low", "rocksdb:high", "rocksdb:bottom", ...
ROCKSDB_THREAD_PREFIX = "rocksdb"


def supported() -> bool:
    """Whether this platform can pin threads (Linux: ``sched_setaffinity`` and ``/proc``)."""
    return hasattr(os, "sched_setaffinity") and os.path.isdir(TASKS)


def _thread_name(tid: str) -> str:
    try:
        with open(f"{TASKS}/{tid}/comm") as f:
            return f.read().strip()
    except OSError:  # the thread ended meanwhile
        return ""


class ThreadPinner:
    """Pins the calling thread to ``scoring_cpu`` and RocksDB's threads to the other allowed CPUs.

    ``scoring_cpu`` must be one of the CPUs this process may run on, and there must be at
    least one other. Create it on the scoring thread; call :meth:`refresh` from that thread
    now and then (``GraphStore.commit`` does, cheaply: it only rescans when the process's
    thread count changed); :meth:`release` gives every thread it pinned the whole
    allowed set again.
    """

    def __init__(self, scoring_cpu: int) -> None:
        if not supported():
            raise ValueError("pinning threads to CPUs needs Linux (os.sched_setaffinity and /proc/self/task)")
        allowed = sorted(os.sched_getaffinity(0))
        if isinstance(scoring_cpu, bool) or not isinstance(scoring_cpu, int) or scoring_cpu not in allowed:
            raise ValueError(f"scoring CPU must be one of the CPUs this process may use {allowed}, "
                             f"got {scoring_cpu!r}")
        if len(allowed) < 2:
            raise ValueError(f"pinning the scoring thread apart needs at least two CPUs; this process may use {allowed}")
        self.allowed = frozenset(allowed)
        self.scoring_cpu = scoring_cpu
        self.background = frozenset(c for c in allowed if c != scoring_cpu)
        self.pinned: dict[int, str] = {}  # thread id -> thread name, of every thread pinned
        self._threads_seen = -1
        self.refresh()

    def refresh(self) -> int:
        """Pin the calling thread and any RocksDB thread started since; returns how many were newly pinned."""
        me = threading.get_native_id()
        tids = os.listdir(TASKS)
        if len(tids) == self._threads_seen and me in self.pinned:
            return 0
        new = 0
        if me not in self.pinned:
            os.sched_setaffinity(me, {self.scoring_cpu})
            self.pinned[me] = "scoring"
            new += 1
        for tid in tids:
            t = int(tid)
            if t in self.pinned:
                continue
            name = _thread_name(tid)
            if name.startswith(ROCKSDB_THREAD_PREFIX):
                try:
                    os.sched_setaffinity(t, self.background)
                except (ProcessLookupError, PermissionError):  # ended meanwhile / not ours to move
                    continue
                self.pinned[t] = name
                new += 1
        self._threads_seen = len(tids)
        return new

    def release(self) -> None:
        """Give every thread pinned here the whole allowed CPU set again."""
        for t in self.pinned:
            try:
                os.sched_setaffinity(t, self.allowed)
            except (ProcessLookupError, PermissionError):
                pass
        self.pinned.clear()
        self._threads_seen = -1

    def describe(self) -> dict[str, object]:
        """What is pinned where (for logs and benchmark results)."""
        return {"scoring_cpu": self.scoring_cpu, "background_cpus": sorted(self.background),
                "threads": sorted(self.pinned.values())}
