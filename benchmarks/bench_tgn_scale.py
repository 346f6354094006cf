"""Streaming TGN scoring through the Engine at 10^4, 10^5 and 10^6 nodes: does the rate hold?

The whole serving path is timed: ``Engine.process_events`` (state lookups in a RocksDB
``GraphStore`` with a bounded hot cache, the 24 numba features, Half-Space Trees, the
TGN -- memory, attention over k = 10 temporal neighbours, link + risk decoders, memory
write-back -- the alert policy, and a RocksDB commit per ``--commit-every`` batches).
The TGN is untrained but valid, with the dimensions ``riskgraph train`` uses (mem 64,
emb 64, k 10): weights do not change the work.

Per size N, in a child process of its own (clean RSS, nothing shared but the OS page cache):

1. **build** (not timed): all N nodes are written through the Engine. First a
   detector-only Engine streams ``--prepop-touches`` x N / 2 uniform random events over
   the N entities (every node gets its feature accumulators and a ring of about
   ``touches`` recent neighbours, so the TGN has neighbours to read at every size); then
   a TGN Engine streams a random perfect matching of the N nodes (N / 2 events: every
   node gets a TGN memory, folded, non-zero). The build's hot cache holds the whole graph
   (it is not timed; evicting there only makes it slower). The store is flushed and closed.
2. **measure** (``--rounds`` times, sizes interleaved so that machine noise hits all
   sizes alike): reopen the store (``create=False``, cold caches), fill the id and row
   caches (``prefill``: all ids resolved and rows loaded in random order until the row
   cache is full; ``--no-prefill`` to skip), run ``--warmup``
   events untimed (default min(N, 100,000), at least 20,000; then more, until the memory cache of neighbour
   memories misses under 1 % of its reads or is full, see ``warm_up``: a long-running
   worker is measured, not one just restarted), then time ``--events / --rounds`` events. Events
   are drawn uniformly over the N entities (``--dist zipf`` for a skewed draw); their ends
   are existing nodes. A round's rate is its events over its Engine seconds (the final
   commit included); the reported rate is the median over rounds. Also reported: events
   per second of the scoring thread's CPU time (``time.thread_time``; RocksDB's background
   flushes and compactions excluded), which other tenants of a shared machine move less.

The hot cache (``--cache-capacity``, default 1,000,000 rows as in the product) holds all
three sizes; ``--cache-capacity 200000`` holds a fifth of 10^6, so that setting reads most
ends back from RocksDB (blocks compressed as ``--compression`` says, default none as in
the store; ``--block-cache-mb`` of block cache, the rest from the OS page cache). The id
cache holds the larger of the row and memory caches' capacities (``GraphStore``). Temporal
neighbours are only read: their memory comes from the row cache, else the memory cache
(``--mem-cache-capacity``, default 1,000,000 nodes, ``state.memcache``), else RocksDB;
``--mem-cache-capacity 0`` loads them as full rows, as before that cache existed.
``--pin-scoring-cpu C`` runs the measure steps with the scoring thread pinned to CPU C and
RocksDB's flush and compaction threads to the other CPUs (``state.affinity``; off by default,
as in the product). After the rounds each store is compacted; bytes per node = directory size / N
(records, id map both ways, metadata), next to the codec's record size.

Run: ``.venv/bin/python benchmarks/bench_tgn_scale.py [--quick] [--out FILE]`` (JSON printed
and written to ``--out``, default ``benchmarks/results/tgn_scale.json``, plot next to it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
from common import config, emit, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

T0 = 1_704_067_200.0  # event time of the first event
GAP_S = 0.01  # event-time gap between consecutive events
POS = "bench/0"  # input position: events consumed so far (continues the clock across phases)
TGN_DIMS = {"mem_dim": 64, "emb_dim": 64, "k": 10}


def log(msg: str) -> None:
    print(f"[tgn-scale] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def dir_bytes(path: str, suffix: str = "") -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs if f.endswith(suffix))


# -- the child: one size, one step ----------------------------------------------


def events(src: np.ndarray, dst: np.ndarray, first: int, amount: np.ndarray, tag: str) -> list:
    from riskgraph.streams.events import Event

    ts = T0 + (first + np.arange(len(src))) * GAP_S
    return [Event(id=f"{tag}{first + i}", ts=t, src=f"a{s}", dst=f"a{d}", kind="payment", amount=round(a, 2))
            for i, (s, d, t, a) in enumerate(zip(src.tolist(), dst.tolist(), ts.tolist(), amount.tolist()))]


def draw_pairs(rng: np.random.Generator, n_nodes: int, n: int, dist: str, zipf_a: float,
               perm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if dist == "uniform":
        src = rng.integers(0, n_nodes, n)
    else:  # Zipf over ranks, ranks scattered over the ids by a fixed permutation
        w = 1.0 / np.arange(1, n_nodes + 1) ** zipf_a
        cdf = np.cumsum(w / w.sum())
        src = perm[np.minimum(np.searchsorted(cdf, rng.random(n)), n_nodes - 1)]
        dst = perm[np.minimum(np.searchsorted(cdf, rng.random(n)), n_nodes - 1)]
        same = src == dst
        dst[same] = (dst[same] + 1) % n_nodes
        return src, dst
    dst = (src + 1 + rng.integers(0, n_nodes - 1, n)) % n_nodes  # no self loops
    return src, dst


def make_model(seed: int, tgn: bool):
    from riskgraph.models.scoring import ScoringModel

    det = ScoringModel.default(seed=seed).detector
    if not tgn:
        return ScoringModel(det)
    from riskgraph.models.tgn.model import TGN, TGNConfig
    from riskgraph.models.tgn.runtime import TGNRuntime

    m = TGN.from_config(TGNConfig(**TGN_DIMS), seed=seed).eval()
    return ScoringModel(det, tgn=TGNRuntime(m, fold_on_write=True))


def row_width() -> int:
    from riskgraph.models.tgn.model import RowLayout, TGNConfig

    c = TGNConfig(**TGN_DIMS)
    return RowLayout(c.mem_dim, c.edge_dim).width


def stream(eng, evs: list, batch: int, first: int) -> dict[str, Any]:
    """Process ``evs`` in batches; engine seconds, per-batch seconds, stage sums, and the
    calling thread's CPU seconds (RocksDB's background threads not included)."""
    stages: dict[str, float] = {}
    per_batch = []
    t_all, cpu_all = time.perf_counter(), time.thread_time()
    for lo in range(0, len(evs), batch):
        b = evs[lo:lo + batch]
        t0 = time.perf_counter()
        r = eng.process_events(b, positions={POS: first + lo + len(b)})
        per_batch.append(time.perf_counter() - t0)
        for k, v in r.timings.items():
            stages[k] = stages.get(k, 0.0) + v
    t0 = time.perf_counter()
    eng.flush()
    per_batch[-1] += time.perf_counter() - t0
    return {"seconds": time.perf_counter() - t_all, "batch_s": per_batch, "stages": stages,
            "cpu_seconds": time.thread_time() - cpu_all}


def warmup_events(arg: int, n: int) -> int:
    """``arg`` events, or with ``arg`` < 0 (auto) enough to bring the hot row and id caches to their
    steady state after a reopen: min(N, 100,000) events, at least 20,000 (then see ``warm_up``)."""
    return arg if arg >= 0 else max(20_000, min(n, 100_000))


WARM_CHUNK = 20_000  # events per extra warm-up step
WARM_MISS_SHARE = 0.01  # the memory cache is warm once fewer neighbour reads than this miss it
WARM_MAX = 1_000_000  # events: the auto warm-up stops here whatever the cache does


PREFILL_CHUNK = 20_000  # ids resolved and rows loaded per step of the prefill


def prefill(store, n: int, rng: np.random.Generator) -> dict[str, Any]:
    """Fill the id cache and the row cache after the reopen, as a worker running for long
    has them: resolve all N ids in random order (the id cache keeps the last ones up to its
    capacity) and load their rows until the row cache is full. With uniform draws an LRU
    cache holds a random subset of the graph: the same as this, without the hundreds of
    thousands of events (several minutes at 10^6 nodes) it takes to get there."""
    t0 = time.perf_counter()
    order = rng.permutation(n)
    for lo in range(0, n, PREFILL_CHUNK):
        ids = store.resolve([f"a{i}" for i in order[lo:lo + PREFILL_CHUNK].tolist()])
        room = store.cache_capacity - store.cache_stats["resident"]
        if room > 0:
            store.peek_slots(ids[:room])
    return {"seconds": round(time.perf_counter() - t0, 1), "rows_resident": store.cache_stats["resident"]}


def warm_up(eng, c: dict[str, Any], rng: np.random.Generator, perm: np.ndarray, first: int) -> dict[str, Any]:
    """Untimed work after the reopen; returns how many events and the memory cache's last miss share.

    First :func:`prefill` (unless ``--no-prefill``). Then with ``--warmup`` >= 0 exactly that
    many events. Auto: :func:`warmup_events`, then steps of ``WARM_CHUNK`` events while more
    than ``WARM_MISS_SHARE`` of the neighbour memories read in the last step missed the
    memory cache and it is not full (a full cache misses at its steady rate; one that holds
    the whole graph fills up, which takes several hundred thousand uniform events at 10^6
    nodes): a long-running worker is measured, not a freshly restarted one. At most
    ``WARM_MAX`` events.
    """
    store, n = eng.store, c["n"]
    filled = prefill(store, n, rng) if c.get("prefill", True) else None

    def step(k: int, done: int) -> float:
        src, dst = draw_pairs(rng, n, k, c["dist"], c["zipf_a"], perm)
        s0 = store.cache_stats
        stream(eng, events(src, dst, first + done, rng.lognormal(3.0, 1.0, k), "w"), c["batch"], first + done)
        s1 = store.cache_stats
        reads = sum(s1.get(f"mem_cache_{x}", 0) - s0.get(f"mem_cache_{x}", 0) for x in ("hits", "misses"))
        return (s1.get("mem_cache_misses", 0) - s0.get("mem_cache_misses", 0)) / max(reads, 1)

    done = warmup_events(c["warmup"], n)
    share = step(done, 0) if done else float("nan")
    while (c["warmup"] < 0 and done < WARM_MAX and share > WARM_MISS_SHARE
           and store.cache_stats.get("mem_cache_rows", 0) < store.mem_cache_capacity):
        share = step(WARM_CHUNK, done)
        done += WARM_CHUNK
    return {"events": done, "mem_cache_miss_share_last_step": round(share, 4), "prefill": filled}


def child_build(c: dict[str, Any]) -> dict[str, Any]:
    import torch

    from riskgraph.state.options import StoreOptions
    from riskgraph.state.store import GraphStore
    from riskgraph.streams.engine import Engine

    torch.set_num_threads(c["threads"])
    n, seed = c["n"], c["seed"]
    rng = np.random.default_rng([seed, n, 0])
    t_start = time.perf_counter()
    out: dict[str, Any] = {}
    # the build is not timed: a hot cache holding the whole graph makes it several times faster
    with GraphStore(c["dir"], StoreOptions(mem_dim=row_width(), cache_capacity=max(c["cache_capacity"], n + 1),
                                           block_cache_mb=c["block_cache_mb"],
                                           compression=c.get("compression", "none"),
                                           compaction=c.get("compaction", "universal"))) as store:
        # 1. detector-only: feature accumulators and neighbour rings of every node
        eng = Engine(store, make_model(seed, tgn=False), commit_every=10)
        n_det = c["touches"] * n // 2
        done, chunk = 0, 200_000
        t0 = time.perf_counter()
        while done < n_det:
            k = min(chunk, n_det - done)
            src, dst = draw_pairs(rng, n, k, "uniform", 0.0, None)
            stream(eng, events(src, dst, done, rng.lognormal(3.0, 1.0, k), "p"), c["build_batch"], done)
            done += k
            log(f"build N={n:,}: detector pass {done:,}/{n_det:,} events, {store.node_count:,} nodes")
        out["detector_events"], out["detector_seconds"] = n_det, time.perf_counter() - t0
        # 2. TGN: a perfect matching of all nodes, so every node has a TGN memory
        eng = Engine(store, make_model(seed, tgn=True), commit_every=10)
        perm = rng.permutation(n)
        half = n // 2
        src, dst = perm[:half], perm[half: 2 * half]
        t0 = time.perf_counter()
        for lo in range(0, half, chunk):
            hi = min(lo + chunk, half)
            stream(eng, events(src[lo:hi], dst[lo:hi], done + lo, rng.lognormal(3.0, 1.0, hi - lo), "q"),
                   c["build_batch"], done + lo)
            log(f"build N={n:,}: TGN matching pass {hi:,}/{half:,} events")
        if n % 2:  # the odd one out
            stream(eng, events(perm[-1:], perm[:1], done + half, np.array([10.0]), "q"), 1, done + half)
        out["tgn_events"], out["tgn_seconds"] = half + n % 2, time.perf_counter() - t0
        assert store.node_count == n, (store.node_count, n)
        out["node_count"] = store.node_count
        out["position"] = store.positions()[POS]
        store.flush()
    out["seconds"] = time.perf_counter() - t_start
    out["dir_bytes_uncompacted"] = dir_bytes(c["dir"])
    return out


def child_measure(c: dict[str, Any]) -> dict[str, Any]:
    import torch

    from riskgraph.features.layout import RING
    from riskgraph.state.options import StoreOptions
    from riskgraph.state.store import GraphStore
    from riskgraph.streams.engine import Engine

    torch.set_num_threads(c["threads"])
    n, seed, rnd = c["n"], c["seed"], c["round"]
    rng = np.random.default_rng([seed, n, 1 + rnd])
    perm = np.random.default_rng([seed, n, 999]).permutation(n)  # fixed per size: the same hot ids every round
    rss0 = rss_mb()
    model = make_model(seed, tgn=True)
    with GraphStore(c["dir"], StoreOptions(mem_dim=row_width(), cache_capacity=c["cache_capacity"],
                                           block_cache_mb=c["block_cache_mb"],
                                           mem_cache_capacity=c["mem_cache_capacity"],
                                           compression=c.get("compression", "none"),
                                           mem_cache_width=model.mem_cache_width,
                                           pin_scoring_cpu=c.get("pin_scoring_cpu"),
                                           direct_io=c.get("direct_io", "off"),
                                           compaction=c.get("compaction", "universal")), create=False) as store:
        assert store.node_count == n
        eng = Engine(store, model, commit_every=c["commit_every"])
        first = store.positions()[POS]
        m = c["events"]
        src, dst = draw_pairs(rng, n, m, c["dist"], c["zipf_a"], perm)
        amt = rng.lognormal(3.0, 1.0, m)
        warm = warm_up(eng, c, np.random.default_rng([seed, n, 1 + rnd, 7]), perm, first)
        w = warm["events"]
        timed = events(src, dst, first + w, amt, "m")
        cs0 = store.cache_stats
        rss_warm = rss_mb()
        r = stream(eng, timed, c["batch"], first + w)
        cs1 = store.cache_stats
        assert store.node_count == n  # no new entity: the graph is exactly N nodes
        # ring fill of a sample of nodes: how many temporal neighbours the TGN can read
        sample = np.unique(rng.integers(0, n, min(n, 10_000)))
        slots = store.peek_slots(sample)  # first: loading rows may grow the table's arrays
        ring_n = store.table.ring_n[slots]
        fill = np.minimum(ring_n, RING)
        out = {
            "n": n, "round": rnd, "events": m, "warmup_events": w, "seconds": r["seconds"],
            "events_per_s": m / r["seconds"],
            "events_per_cpu_s": m / r["cpu_seconds"],
            "batch_ms_p50": float(np.percentile(np.array(r["batch_s"]) * 1e3, 50)),
            "batch_ms_p99": float(np.percentile(np.array(r["batch_s"]) * 1e3, 99)),
            "stage_seconds": {k: round(v, 3) for k, v in r["stages"].items()},
            "distinct_ends_measured": int(np.unique(np.concatenate([src, dst])).size),
            "mem_cache_miss_share_end_of_warmup": warm["mem_cache_miss_share_last_step"],
            "prefill": warm["prefill"],
            "rows_evicted_measured": cs1["evicted"] - cs0["evicted"],
            "cache": cs1,
            "ring_entries_mean": float(fill.mean()),
            "readable_neighbours_mean": float(np.minimum(fill, TGN_DIMS["k"]).mean()),
            "rss_mb_child_start": rss0, "rss_mb_after_warmup": rss_warm, "rss_mb_end": rss_mb(),
            "peak_rss_mb": peak_rss_mb(), "model_version": model.version, "pinning": store.pinning,
            "direct_io": store.direct_io,
        }
    return out


def run_child(step: str, conf: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps({"step": step, **conf})]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"child {step} for N={conf['n']} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the parent --------------------------------------------------------------------


def compact(path: str, block_cache_mb: int, compression: str, compaction: str = "universal") -> dict[str, Any]:
    """Flush and fully compact a closed store with its own options; sizes before and after."""
    from riskgraph.state.store import open_db  # the store's own options (compression, bloom filters, block cache)

    before = dir_bytes(path)
    t0 = time.perf_counter()
    db = open_db(path, False, block_cache_mb, compression, compaction=compaction)
    try:
        db.flush()
        db.compact_range(None, None)
        live = db.property_int_value("rocksdb.total-sst-files-size")
    finally:
        db.close()
    return {"dir_bytes_before": before, "dir_bytes": dir_bytes(path), "sst_bytes": dir_bytes(path, ".sst"),
            "live_sst_bytes_property": live, "seconds": time.perf_counter() - t0}


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    ns = [s["nodes"] for s in sizes]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in sizes:
        ax.scatter([s["nodes"]] * len(s["events_per_s_rounds"]), s["events_per_s_rounds"], color="tab:blue",
                   alpha=0.4, s=18)
    med = [s["events_per_s"] for s in sizes]
    ax.plot(ns, med, "o-", color="tab:blue", label="median over rounds")
    ref = med[0]
    ax.axhspan(0.8 * ref, 1.2 * ref, color="tab:green", alpha=0.12, label=f"within 20% of {ns[0]:,} nodes")
    for x, y, s in zip(ns, med, sizes):
        ax.annotate(f"{y:,.0f}/s\n({s['ratio_vs_smallest']:.2f}x)", (x, y), textcoords="offset points",
                    xytext=(0, 10), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_ylim(0, max(max(s["events_per_s_rounds"]) for s in sizes) * 1.3)
    ax.set_xlabel("nodes in the graph store")
    ax.set_ylabel("events / s (Engine, TGN + detector, RocksDB)")
    c = result["config"]
    ax.set_title(f"TGN streaming scoring vs graph size\n(batch {c['batch']}, cache {c['cache_capacity']:,} rows, "
                 f"memory cache {c.get('mem_cache_capacity', 0):,} nodes, {c['dist']} draws, "
                 f"{c.get('compaction', 'level')} compaction)", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="node counts, comma separated")
    p.add_argument("--events", type=int, default=150_000, help="timed events per size (split over rounds)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=-1,
                   help="untimed events after each reopen (default -1: min(N, 100k), at least 20k, "
                        "then until the memory cache is warm, see warm_up)")
    p.add_argument("--prefill", action=argparse.BooleanOptionalAction, default=True,
                   help="after each reopen, fill the id and row caches before the warm-up (see prefill)")
    p.add_argument("--batch", type=int, default=1000, help="micro-batch (the worker's default)")
    p.add_argument("--commit-every", type=int, default=1, help="batches per RocksDB commit (worker: 1)")
    p.add_argument("--cache-capacity", type=int, default=1_000_000,
                   help="hot node rows (GraphStore; the product default, RISKGRAPH_CACHE_CAPACITY)")
    p.add_argument("--block-cache-mb", type=int, default=256)
    p.add_argument("--compression", choices=("none", "lz4"), default="none", help="RocksDB block compression")
    p.add_argument("--mem-cache-capacity", type=int, default=1_000_000,
                   help="TGN memories kept for neighbour reads outside the row cache (0: none, as before)")
    p.add_argument("--prepop-touches", type=int, default=10, help="detector-pass event ends per node in the build")
    p.add_argument("--build-batch", type=int, default=2000)
    p.add_argument("--dist", choices=("uniform", "zipf"), default="uniform")
    p.add_argument("--zipf-a", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--direct-io", choices=("auto", "on", "off"), default="off",
                   help="StoreOptions.direct_io of the measure steps (RISKGRAPH_STORE_DIRECT_IO; default off)")
    p.add_argument("--compaction", choices=("level", "universal"), default="universal",
                   help="StoreOptions.compaction of the build and the measure steps (RISKGRAPH_STORE_COMPACTION)")
    p.add_argument("--pin-scoring-cpu", type=int, default=None,
                   help="measure steps pin the scoring thread to this CPU and RocksDB's threads to the others "
                        "(StoreOptions.pin_scoring_cpu, RISKGRAPH_PIN_SCORING_CPU; default: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where the stores go (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    p.add_argument("--quick", action="store_true", help="smoke run: 2k and 20k nodes, few events")
    p.add_argument("--out", default="benchmarks/results/tgn_scale.json")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.child is not None:
        c = json.loads(a.child)
        res = child_build(c) if c["step"] == "build" else child_measure(c)
        print(json.dumps(res))
        return res

    if a.quick:
        a.sizes, a.events, a.rounds, a.warmup = "2000,20000", 10_000, 2, 2_000
        a.cache_capacity, a.prepop_touches = min(a.cache_capacity, 5_000), 4
        if a.out == p.get_default("out"):
            a.out = "benchmarks/results/tgn_scale_quick.json"
    sizes = [int(x) for x in a.sizes.split(",")]
    per_round = a.events // a.rounds
    work = a.workdir or tempfile.mkdtemp(prefix="riskgraph-tgn-scale-")
    os.makedirs(work, exist_ok=True)
    held = [n for n in sizes if os.path.exists(os.path.join(work, f"n{n}"))]
    if held:  # a build would stream more events into the old store, not build a fresh one
        p.error(f"{work} already holds stores for N={held} (from an earlier --keep run): "
                "remove them or choose another --workdir")
    base = {"seed": a.seed, "cache_capacity": a.cache_capacity, "block_cache_mb": a.block_cache_mb,
            "mem_cache_capacity": a.mem_cache_capacity, "compression": a.compression,
            "pin_scoring_cpu": a.pin_scoring_cpu, "direct_io": a.direct_io, "compaction": a.compaction,
            "batch": a.batch, "commit_every": a.commit_every, "threads": a.threads, "dist": a.dist,
            "zipf_a": a.zipf_a, "touches": a.prepop_touches, "build_batch": a.build_batch,
            "warmup": a.warmup, "events": per_round, "prefill": a.prefill}
    t_start = time.perf_counter()
    builds, rounds = {}, {n: [] for n in sizes}
    try:
        for n in sizes:
            log(f"build N={n:,} in {work}")
            builds[n] = run_child("build", {**base, "n": n, "dir": os.path.join(work, f"n{n}")})
            log(f"build N={n:,} done in {builds[n]['seconds']:.0f}s")
        # the builds leave ~1 GB of dirty page cache at 10^6 nodes: write it back before any
        # timing, not during the first round (two runs on 2026-12-02 had their first 10^4
        # round a fifth slower than the others, 22-23k against 27-30k events/s; probably this)
        os.sync()
        for r in range(a.rounds):
            order = sizes if r % 2 == 0 else sizes[::-1]
            for n in order:
                res = run_child("measure", {**base, "n": n, "round": r, "dir": os.path.join(work, f"n{n}")})
                rounds[n].append(res)
                log(f"round {r + 1}/{a.rounds} N={n:,}: {res['events_per_s']:,.0f} ev/s "
                    f"({res['events_per_cpu_s']:,.0f} per CPU-s), "
                    f"evicted {res['rows_evicted_measured']:,}, rss {res['rss_mb_end']:.0f} MB")
        disk = {}
        for n in sizes:
            disk[n] = compact(os.path.join(work, f"n{n}"), a.block_cache_mb, a.compression, a.compaction)
            log(f"N={n:,}: {disk[n]['dir_bytes'] / n:,.0f} bytes/node on disk after compaction")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    from riskgraph.state.codecs import record_size

    rec = record_size(row_width())
    rows = []
    for n in sizes:
        rs = rounds[n]
        rates = [x["events_per_s"] for x in rs]
        rows.append({
            "nodes": n,
            "events_per_s": float(np.median(rates)),
            "events_per_s_pooled": sum(x["events"] for x in rs) / sum(x["seconds"] for x in rs),
            "events_per_cpu_s": float(np.median([x["events_per_cpu_s"] for x in rs])),
            "events_per_s_rounds": [round(x, 1) for x in rates],
            "events_timed": sum(x["events"] for x in rs),
            "warmup_events_per_round": [x["warmup_events"] for x in rs],
            "mem_cache_miss_share_end_of_warmup": [x["mem_cache_miss_share_end_of_warmup"] for x in rs],
            "batch_ms_p50": float(np.median([x["batch_ms_p50"] for x in rs])),
            "batch_ms_p99": float(np.median([x["batch_ms_p99"] for x in rs])),
            "stage_seconds_per_1k_events": {k: round(1e3 * sum(x["stage_seconds"].get(k, 0.0) for x in rs)
                                                     / sum(x["events"] for x in rs), 4)
                                            for k in rs[0]["stage_seconds"]},
            "distinct_ends_per_round": int(np.median([x["distinct_ends_measured"] for x in rs])),
            "rows_evicted_per_round": int(np.median([x["rows_evicted_measured"] for x in rs])),
            "hot_cache_rows": rs[-1]["cache"]["rows"],
            "ring_entries_mean": round(float(np.mean([x["ring_entries_mean"] for x in rs])), 2),
            "readable_neighbours_mean": round(float(np.mean([x["readable_neighbours_mean"] for x in rs])), 2),
            "rss_mb_after_warmup": round(max(x["rss_mb_after_warmup"] for x in rs), 1),
            "rss_mb_end": round(max(x["rss_mb_end"] for x in rs), 1),
            "peak_rss_mb": round(max(x["peak_rss_mb"] for x in rs), 1),
            "rss_mb_child_start": round(min(x["rss_mb_child_start"] for x in rs), 1),
            "pinning": rs[-1]["pinning"], "direct_io": rs[-1]["direct_io"],
            "disk_bytes_per_node": disk[n]["dir_bytes"] / n,
            "sst_bytes_per_node": disk[n]["sst_bytes"] / n,
            "disk_bytes_per_node_before_compaction": disk[n]["dir_bytes_before"] / n,
            "disk": disk[n],
            "build": builds[n],
        })
    ref = rows[0]["events_per_s"]
    for i, row in enumerate(rows):
        row["ratio_vs_smallest"] = row["events_per_s"] / ref
        # same-round ratios: each round runs every size back to back, so machine noise partly cancels
        row["ratio_vs_smallest_per_round"] = [round(x["events_per_s"] / y["events_per_s"], 3)
                                              for x, y in zip(rounds[sizes[i]], rounds[sizes[0]])]
        row["within_20pct_of_smallest"] = bool(row["ratio_vs_smallest"] >= 0.8)
        # the same on the scoring thread's CPU time: less moved by other tenants of the machine
        row["cpu_ratio_vs_smallest"] = row["events_per_cpu_s"] / rows[0]["events_per_cpu_s"]
    result = {
        "benchmark": "tgn_streaming_scale",
        "machine": machine(),  # load average at the end of the run
        "config": config(a)
                  | {"events_per_round": per_round, "tgn": TGN_DIMS | {"row_width": row_width(), "untrained": True}},
        "prepopulated": ("per size: a detector-only Engine pass of prepop_touches*N/2 uniform events (feature "
                         "accumulators + neighbour rings), then a TGN Engine pass over a random perfect matching "
                         "of all N nodes (every node has a TGN memory); all through Engine + GraphStore, committed"),
        "timed": ("Engine.process_events over existing nodes only, after a warm-up following a reopen: decode-free "
                  "(Event objects built before timing), state + features + detector + TGN + policy + commit"),
        "record_bytes_codec": rec,
        "sizes": rows,
        "ratio_largest_vs_smallest": rows[-1]["ratio_vs_smallest"],
        "seconds_total": time.perf_counter() - t_start,
    }
    emit(result, a.out)
    if a.out:
        png = os.path.splitext(a.out)[0] + ".png"
        plot(result, png)
        log(f"wrote {a.out} and {png}")
    return result


if __name__ == "__main__":
    main()
