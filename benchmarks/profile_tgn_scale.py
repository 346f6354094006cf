"""Where a TGN scale round spends its time: timers inside one measure round of bench_tgn_scale.

Runs one measure step of ``benchmarks/bench_tgn_scale.py`` (reopen, prefill, warm-up,
timed events; see its docstring) on a store that a ``--keep`` run of it left behind, with
``time.perf_counter`` timers wrapped around the functions of the serving path that the
Engine's own stage timings lump together (``TIMED``). The timers are reset when the timed
events start, so they cover exactly the timed window. Times are inclusive (``forward``
includes ``embed``) and reported as microseconds per event.

The store is copied first (``--copy-to``, default a temporary directory next to it) so the
kept store stays as it was and runs can be repeated on the same data.

Two switches test what slows the scoring thread at 10^6 nodes:

* ``--no-compactions``: RocksDB's automatic compactions are off for the run (flushes still
  happen). Not a setting to ship -- L0 files pile up and reads slow down over hours -- but
  a run with and without it on the same store shows what the compaction thread costs the
  scoring thread.
* ``--rocks SETTER=VALUE``: any other rocksdict ``Options`` setter for the run.
* ``--pin C``: the scoring thread on CPU C, RocksDB's background threads on the other CPUs
  (``StoreOptions(pin_scoring_cpu=C)``, ``state.affinity``; as ``bench_tgn_scale.py --pin-scoring-cpu``).

RocksDB's own counters for the timed window (bytes flushed and compacted, compaction CPU
seconds) come from ``rocksdb.stats``.

Run (build a kept store once, then profile a size as often as needed)::

    .venv/bin/python benchmarks/bench_tgn_scale.py --sizes 10000,1000000 --rounds 1 \\
        --events 50000 --keep --workdir /tmp/tgn-scale --out /tmp/tgn-scale/build.json
    .venv/bin/python benchmarks/profile_tgn_scale.py --store /tmp/tgn-scale/n1000000 \\
        --events 100000 [--no-compactions] [--pin 0] [--out FILE]

JSON is printed (and written to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import bench_tgn_scale as bench  # noqa: E402
from common import emit  # noqa: E402

#: "module:qualified.name" of each function timed; module-level functions are also
#: replaced where other modules imported them by name.
TIMED: tuple[str, ...] = (
    "riskgraph.state.store:GraphStore.resolve",
    "riskgraph.state.store:GraphStore.slots",
    "riskgraph.state.store:GraphStore.peek_lead",
    "riskgraph.state.store:GraphStore.commit",
    "riskgraph.state.codecs:encode_rows",
    "riskgraph.models.tgn.runtime:TGNRuntime.forward",
    "riskgraph.models.tgn.runtime:TGNRuntime._plan_update",
    "riskgraph.models.tgn.runtime:TGNRuntime.update_batch",
    "riskgraph.models.tgn.neighbours:recent_neighbours",
    "riskgraph.models.tgn.model:TGN.apply_pending",
    "riskgraph.models.tgn.model:TGN.embed",
)


class Timers:
    """Inclusive wall seconds and calls per timed function; ``reset`` starts a window."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def wrap(self, spec: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[spec] += time.perf_counter() - t0
                self.calls[spec] += 1
        return timed


def install(timers: Timers, specs: tuple[str, ...] = TIMED) -> None:
    """Replace each function named in ``specs`` by a timed wrapper (static methods stay static)."""
    for spec in specs:
        mod_name, qual = spec.split(":")
        owner: Any = importlib.import_module(mod_name)
        *path, name = qual.split(".")
        for part in path:
            owner = getattr(owner, part)
        raw = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        static = isinstance(raw, staticmethod)
        fn = raw.__func__ if static else raw
        new = timers.wrap(spec, fn)
        setattr(owner, name, staticmethod(new) if static else new)
        if not path:  # a module function: also where it was imported with "from ... import"
            for mod in list(sys.modules.values()):
                if mod is not None and getattr(mod, name, None) is fn:
                    setattr(mod, name, new)


_CUM = re.compile(r"Cumulative compaction: ([\d.]+) GB write, [\d.]+ MB/s write, ([\d.]+) GB read, "
                  r"[\d.]+ MB/s read, ([\d.]+) seconds")
_FLUSH = re.compile(r"Flush\(GB\): cumulative ([\d.]+)")
_SUM = re.compile(r"^\s*Sum\s+(.*)$", re.M)


def rocks_counters(db: Any) -> dict[str, float]:
    """Cumulative RocksDB work since the DB was opened, from ``rocksdb.stats``: gigabytes
    flushed, gigabytes written and read by flushes and compactions together, their wall
    seconds and (``Sum`` row, ``CompMergeCPU``) CPU seconds; write stalls; the L0 file count."""
    text = db.property_value("rocksdb.stats") or ""
    out: dict[str, float] = {}
    m = _CUM.search(text)
    if m:
        out["write_gb"], out["read_gb"], out["busy_s"] = (float(x) for x in m.groups())
    m = _FLUSH.search(text)
    if m:
        out["flush_gb"] = float(m.group(1))
    m = _SUM.search(text)
    if m:  # Files, Size (two tokens), Score, Read, Rn, Rnp1, Write, Wnew, Moved, W-Amp, Rd, Wr, Comp(sec), CompMergeCPU(sec)
        cols = m.group(1).split()
        if len(cols) > 14:
            out["cpu_s"] = float(cols[14])
    for key in ("total-delays", "total-stops"):  # write stalls
        m = re.search(key + r": (\d+)", text)
        if m:
            out["stall_" + key.split("-")[1]] = float(m.group(1))
    out["num_files_l0"] = float(db.property_int_value("rocksdb.num-files-at-level0") or 0)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="a store directory kept by bench_tgn_scale.py --keep (nN)")
    p.add_argument("--n", type=int, default=None, help="its node count (default: from the directory name nN)")
    p.add_argument("--events", type=int, default=100_000, help="timed events")
    p.add_argument("--warmup", type=int, default=-1, help="as bench_tgn_scale.py --warmup")
    p.add_argument("--round", type=int, default=0, help="seeds the draws as that round of bench_tgn_scale")
    p.add_argument("--no-compactions", action="store_true", help="RocksDB auto compactions off for the run")
    p.add_argument("--rocks", action="append", default=[], metavar="SETTER=VALUE",
                   help="an extra rocksdict Options setter for the run, e.g. "
                        "set_use_direct_io_for_flush_and_compaction=true (value read as JSON; repeatable)")
    p.add_argument("--pin", type=int, default=None, metavar="CPU",
                   help="pin the scoring thread to CPU and RocksDB's threads to the others")
    p.add_argument("--copy-to", default=None, help="where the store's working copy goes (removed after)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    src = os.path.abspath(a.store)
    n = a.n
    if n is None:
        m = re.fullmatch(r"n(\d+)", os.path.basename(src.rstrip("/")))
        if not m:
            p.error(f"cannot tell the node count from {src!r}: give --n")
        n = int(m.group(1))
    work = tempfile.mkdtemp(prefix="profile-", dir=a.copy_to or os.path.dirname(src))
    copy = os.path.join(work, os.path.basename(src))
    shutil.copytree(src, copy)

    import riskgraph.state.store as store_mod

    setters = [("set_disable_auto_compactions", True)] if a.no_compactions else []
    for item in a.rocks:
        name, _, value = item.partition("=")
        setters.append((name, json.loads(value)))
    if setters:
        base_options = store_mod._db_options

        def with_setters(*args: Any, **kwargs: Any) -> Any:
            opts = base_options(*args, **kwargs)
            for name, value in setters:
                getattr(opts, name)(value)
            return opts
        store_mod._db_options = with_setters

    timers = Timers()
    install(timers)
    window: dict[str, Any] = {}
    base_stream = bench.stream

    def stream(eng: Any, evs: list, batch: int, first: int) -> dict[str, Any]:
        # the last call is the timed one: every call starts a fresh window
        window.clear()
        db = eng.store._db
        before = rocks_counters(db)
        timers.reset()
        r = base_stream(eng, evs, batch, first)
        after = rocks_counters(db)
        window["events"] = len(evs)
        window["seconds"] = {k: v for k, v in timers.seconds.items()}
        window["calls"] = {k: v for k, v in timers.calls.items()}
        window["rocksdb"] = {k: round(after[k] - before.get(k, 0.0), 3) for k in after if k != "num_files_l0"}
        window["rocksdb"]["num_files_l0_end"] = after.get("num_files_l0", 0.0)
        return r
    bench.stream = stream

    conf = {"step": "measure", "n": n, "round": a.round, "dir": copy, "seed": 0,
            "cache_capacity": 1_000_000, "block_cache_mb": 256, "mem_cache_capacity": 1_000_000,
            "compression": "none", "batch": 1000, "commit_every": 1, "threads": 1, "dist": "uniform",
            "zipf_a": 1.0, "warmup": a.warmup, "events": a.events, "prefill": True,
            "pin_scoring_cpu": a.pin}
    try:
        res = bench.child_measure(conf)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ev = window["events"]
    result = {
        "benchmark": "tgn_scale_profile",
        "nodes": n, "events": ev, "no_compactions": a.no_compactions, "rocks": a.rocks, "pinning": res["pinning"],
        "events_per_s": round(res["events_per_s"], 1),
        "events_per_cpu_s": round(res["events_per_cpu_s"], 1),
        "batch_ms_p50": round(res["batch_ms_p50"], 2), "batch_ms_p99": round(res["batch_ms_p99"], 2),
        "engine_stage_us_per_event": {k: round(1e6 * v / ev, 2) for k, v in res["stage_seconds"].items()},
        "timed_us_per_event": {k.split(":")[1]: round(1e6 * v / ev, 2) for k, v in window["seconds"].items()},
        "timed_calls": {k.split(":")[1]: v for k, v in window["calls"].items()},
        "rocksdb_during_timed_events": window["rocksdb"],
        "warmup_events": res["warmup_events"],
    }
    emit(result, a.out)
    return result


if __name__ == "__main__":
    main()
