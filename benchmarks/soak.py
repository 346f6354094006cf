"""Memory soak: the embedded scorer on an ever-growing graph, process RSS sampled over time.

One ``Engine`` over one RocksDB ``GraphStore`` with a bounded hot cache
(``--cache-capacity`` rows) scores a synthetic stream as fast as it can for ``--minutes``.
The graph never stops growing: each event end is a brand-new entity with probability
``--new-frac``; otherwise it is an existing entity drawn uniformly (sources) or, for half
of the destinations, one of ``--hubs`` popular merchants (Zipf). Detector-only by
default; ``--tgn`` adds an untrained TGN with the ``riskgraph train`` dimensions (mem 64,
emb 64, k 10; the weights do not matter for memory).

Every ``--sample-s`` seconds it records process RSS (psutil, else ``/proc/self/status``),
the node count, the row cache's counters and the rate. What is bounded by design: the
node table (``cache_capacity`` rows, more only while rows are dirty), the id cache, the
RocksDB block cache (``--block-cache-mb``) and memtables. What grows by design: the
row cache's dense id -> slot map (4 bytes per entity ever seen, ``state.cache``) --
reported as ``slot_map_bytes`` -- so the slope per million new nodes has a floor of
about 4 MB (in doubling steps). The driver keeps nothing per event (it does not use
``streams.runner.run_batches``, which collects every score of a run for evaluation).

Run: ``.venv/bin/python benchmarks/soak.py --minutes 10 [--tgn] [--out FILE]``; prints
one JSON object, writes it to ``--out`` (default ``benchmarks/results/soak.json``) and a
plot next to it (same name, ``.png``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from riskgraph.models.scoring import ScoringModel  # noqa: E402
from riskgraph.state.options import StoreOptions  # noqa: E402
from riskgraph.state.store import GraphStore  # noqa: E402
from riskgraph.streams.engine import Engine  # noqa: E402
from riskgraph.streams.events import Event  # noqa: E402
from common import emit, machine  # noqa: E402

T0 = 1_704_067_200.0  # event time of the first event (2024-01-01 UTC)


def rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    return -1


def rss_source() -> str:
    try:
        import psutil  # noqa: F401

        return "psutil.Process().memory_info().rss"
    except ImportError:
        return "/proc/self/status VmRSS"


class GrowingStream:
    """Seeded synthetic events over an ever-growing set of entities ``a0, a1, ...`` and hubs ``m0..``."""

    def __init__(self, seed: int, new_frac: float, hubs: int, initial: int, gap_s: float = 0.01) -> None:
        self.rng = np.random.default_rng(seed)
        self.new_frac, self.hubs, self.gap = new_frac, hubs, gap_s
        self.n_entities = initial  # entities a0 .. a{n-1} exist (or are about to)
        self.i = 0
        w = 1.0 / np.arange(1, hubs + 1) ** 1.1
        self.hub_p = w / w.sum()

    def batch(self, n: int) -> list[Event]:
        rng = self.rng
        new_src = rng.random(n) < self.new_frac
        new_dst = rng.random(n) < self.new_frac
        to_hub = (rng.random(n) < 0.5) & ~new_dst
        k = int(new_src.sum() + new_dst.sum())
        fresh = np.arange(self.n_entities, self.n_entities + k)
        self.n_entities += k
        old_hi = max(1, self.n_entities - k)
        src = rng.integers(0, old_hi, n)
        dst = rng.integers(0, old_hi, n)
        src[new_src] = fresh[: new_src.sum()]
        dst[new_dst] = fresh[new_src.sum():]
        hub = rng.choice(self.hubs, size=n, p=self.hub_p)
        amt = rng.lognormal(3.0, 1.2, n)
        ts = T0 + (self.i + np.arange(n)) * self.gap
        out = []
        for j, (s, d, h, th, a, t) in enumerate(zip(src.tolist(), dst.tolist(), hub.tolist(), to_hub.tolist(),
                                                   amt.tolist(), ts.tolist())):
            out.append(Event(id=f"e{self.i + j}", ts=t, src=f"a{s}", dst=f"m{h}" if th else f"a{d}",
                             kind="payment", amount=round(a, 2)))
        self.i += n
        return out


def make_model(tgn: bool, seed: int) -> ScoringModel:
    det = ScoringModel.default(seed=seed).detector
    if not tgn:
        return ScoringModel(det)
    import torch

    from riskgraph.models.tgn.model import TGN, TGNConfig
    from riskgraph.models.tgn.runtime import TGNRuntime

    torch.set_num_threads(1)
    m = TGN.from_config(TGNConfig(mem_dim=64, emb_dim=64, k=10), seed=seed).eval()
    return ScoringModel(det, tgn=TGNRuntime(m, fold_on_write=True))


def table_bytes(store: GraphStore) -> int:
    t = store.table
    return int(sum(getattr(t, n).nbytes for n in ("acc", "ring_nbr", "ring_ts", "ring_amt", "ring_dir", "ring_n",
                                                  "mem", "mem_ts")))


def slot_map_bytes(store: GraphStore) -> int | None:
    # the row cache's dense id -> slot array (private: read for the report only)
    arr = getattr(getattr(store, "_rows", None), "_slot_by_id", None)
    return None if arr is None else int(arr.nbytes)


def dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def slope(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    return float(np.polyfit(x, y, 1)[0])


def plot(samples: list[dict], warm_s: float, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s["t_s"] for s in samples]) / 60.0
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(t, [s["rss_mb"] for s in samples], color="tab:red", label="process RSS (MB)")
    ax.plot(t, [s["table_mb"] for s in samples], color="tab:orange", ls="--", label="node table (MB)")
    if "rocksdb_block_cache_mb" in samples[0]:
        ax.plot(t, [s["rocksdb_block_cache_mb"] for s in samples], color="tab:green", ls=":",
                label="RocksDB block cache (MB)")
        ax.plot(t, [s["rss_mb"] - s["rocksdb_block_cache_mb"] - s["rocksdb_memtables_mb"] - s.get("mem_cache_mb", 0.0)
                    for s in samples],
                color="tab:purple", ls="-.", label="RSS minus block cache, memtables, memory cache (MB)")
    if any(s.get("mem_cache_mb") for s in samples):
        ax.plot(t, [s["mem_cache_mb"] for s in samples], color="tab:brown", ls="--", label="TGN memory cache (MB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.axvline(warm_s / 60.0, color="grey", ls=":", label="end of warm-up")
    ax2 = ax.twinx()
    ax2.plot(t, np.array([s["nodes"] for s in samples]) / 1e6, color="tab:blue", label="nodes (millions)")
    ax2.set_ylabel("nodes (millions)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    ax.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--tgn", action="store_true", help="score with an (untrained) TGN as well")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--commit-every", type=int, default=10, help="micro-batches per RocksDB commit")
    p.add_argument("--cache-capacity", type=int, default=100_000, help="node rows kept in memory")
    p.add_argument("--block-cache-mb", type=int, default=256)
    p.add_argument("--compaction", choices=("level", "universal"), default="universal",
                   help="StoreOptions.compaction: RocksDB's compaction style (RISKGRAPH_STORE_COMPACTION)")
    p.add_argument("--mem-cache-capacity", type=int, default=0,
                   help="with --tgn: TGN memories kept for neighbour reads (state.memcache; 0: none)")
    p.add_argument("--new-frac", type=float, default=0.05, help="probability that an event end is a new entity")
    p.add_argument("--hubs", type=int, default=2000)
    p.add_argument("--initial", type=int, default=10_000, help="entities the first events draw from")
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--warmup-s", type=float, default=None, help="default: 10%% of the run, at most 60 s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--state", default=None, help="store directory (default: a temporary one, deleted)")
    p.add_argument("--out", default="benchmarks/results/soak.json")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    duration = a.minutes * 60.0
    warm_s = a.warmup_s if a.warmup_s is not None else min(60.0, 0.1 * duration)

    model = make_model(a.tgn, a.seed)
    path = a.state or tempfile.mkdtemp(prefix="riskgraph-soak-")
    stream = GrowingStream(a.seed, a.new_frac, a.hubs, a.initial)
    samples: list[dict[str, Any]] = []
    rss_start = rss_bytes()
    t_start = time.perf_counter()
    try:
        with GraphStore(path, StoreOptions(mem_dim=model.mem_dim, cache_capacity=a.cache_capacity,
                                           block_cache_mb=a.block_cache_mb, mem_cache_capacity=a.mem_cache_capacity,
                                           mem_cache_width=model.mem_cache_width, compaction=a.compaction)) as store:
            eng = Engine(store, model, commit_every=a.commit_every)
            n_events, last_events, last_t = 0, 0, t_start
            next_sample = t_start
            busy = 0.0  # seconds inside the Engine (event generation excluded)
            while True:
                now = time.perf_counter()
                if now >= next_sample or now - t_start >= duration:
                    cs = store.cache_stats
                    s = {"t_s": round(now - t_start, 2), "events": n_events, "nodes": store.node_count,
                         "rss_mb": round(rss_bytes() / 2**20, 2), "table_mb": round(table_bytes(store) / 2**20, 2),
                         "table_rows": cs["rows"], "resident": cs["resident"], "evicted": cs["evicted"],
                         "slot_map_mb": (None if slot_map_bytes(store) is None
                                         else round(slot_map_bytes(store) / 2**20, 2)),
                         "ev_per_s": round((n_events - last_events) / max(now - last_t, 1e-9), 1),
                         "mem_cache_mb": round(cs.get("mem_cache_bytes", 0) / 2**20, 2),
                         "id_cache_ids": cs["id_cache_ids"], "id_cache_mb": round(cs["id_cache_bytes"] / 2**20, 2),
                         **{f"rocksdb_{k}_mb": round(v / 2**20, 2) for k, v in store.rocksdb_memory.items()}}
                    samples.append(s)
                    if not a.quiet:
                        print(f"[soak] {s['t_s']:7.1f}s events={n_events:,} nodes={s['nodes']:,} "
                              f"rss={s['rss_mb']:.0f}MB table={s['table_mb']:.0f}MB resident={s['resident']:,} "
                              f"rate={s['ev_per_s']:,.0f}/s", file=sys.stderr, flush=True)
                    last_events, last_t = n_events, now
                    next_sample = max(next_sample + a.sample_s, now)
                    if now - t_start >= duration:
                        break
                evs = stream.batch(a.batch)
                b0 = time.perf_counter()
                eng.process_events(evs, positions={"soak/0": n_events + len(evs)})
                busy += time.perf_counter() - b0
                n_events += len(evs)
            eng.flush()
            store.flush()
            final_cache = store.cache_stats
            disk = dir_bytes(path)
            nodes = store.node_count
            tb, sm = table_bytes(store), slot_map_bytes(store)
    finally:
        if a.state is None:
            shutil.rmtree(path, ignore_errors=True)

    t = np.array([s["t_s"] for s in samples])
    rss = np.array([s["rss_mb"] for s in samples])
    nd = np.array([s["nodes"] for s in samples], np.float64)
    after_warm = [s for s in samples if s["t_s"] >= warm_s]
    half = t >= t[-1] / 2
    per_min = slope(t[half] / 60.0, rss[half])
    per_mnode = slope(nd[half] / 1e6, rss[half])
    # what is left once the bounded pools (RocksDB's block cache and memtables, the memory and id caches) are
    # taken out
    rest = rss - np.array([s.get("rocksdb_block_cache_mb", 0.0) + s.get("rocksdb_memtables_mb", 0.0)
                           + s.get("mem_cache_mb", 0.0) + s.get("id_cache_mb", 0.0) for s in samples])
    result = {
        "benchmark": "memory_soak_embedded",
        "machine": machine(),
        "config": {"minutes": a.minutes, "tgn": a.tgn, "batch": a.batch, "commit_every": a.commit_every,
                   "cache_capacity": a.cache_capacity, "block_cache_mb": a.block_cache_mb, "compaction": a.compaction,
                   "mem_cache_capacity": a.mem_cache_capacity, "new_frac": a.new_frac, "hubs": a.hubs, "initial": a.initial, "seed": a.seed,
                   "mem_dim": model.mem_dim, "model_version": model.version, "rss_source": rss_source()},
        "events": n_events,
        "events_per_s_engine": n_events / busy if busy else None,
        "nodes_end": nodes,
        "new_nodes": nodes - (samples[0]["nodes"] if samples else 0),
        "rss_mb": {"start": round(rss_start / 2**20, 2),
                   "after_warmup": after_warm[0]["rss_mb"] if after_warm else None,
                   "end": samples[-1]["rss_mb"], "max": float(rss.max())},
        "warmup_s": warm_s,
        "rss_slope_second_half": {"mb_per_minute": per_min, "mb_per_million_new_nodes": per_mnode,
                                  "from_t_s": float(t[half][0]) if half.any() else None},
        "rss_minus_bounded_pools_slope_second_half": {
            "mb_per_minute": slope(t[half] / 60.0, rest[half]),
            "mb_per_million_new_nodes": slope(nd[half] / 1e6, rest[half]),
            "end_mb": round(float(rest[-1]), 2)},
        "rocksdb_memory_mb_end": {k[len("rocksdb_"):-len("_mb")]: v for k, v in samples[-1].items()
                                  if k.startswith("rocksdb_")} if samples else None,
        "bounded_by_design": {"cache_capacity_rows": a.cache_capacity, "table_rows_allocated": final_cache["rows"],
                              "resident_rows_end": final_cache["resident"], "evicted_rows": final_cache["evicted"],
                              "node_table_mb_end": round(tb / 2**20, 2),
                              "mem_cache_mb_end": samples[-1].get("mem_cache_mb") if samples else None,
                              "id_cache_ids_end": final_cache["id_cache_ids"],
                              "id_cache_mb_end": round(final_cache["id_cache_bytes"] / 2**20, 2),
                              "block_cache_mb": a.block_cache_mb},
        "grows_by_design": {"slot_map_mb_end": None if sm is None else round(sm / 2**20, 2),
                            "note": "riskgraph.state.cache: dense int32 id -> slot map, 4 bytes per entity ever seen "
                                    "(grown by doubling)"},
        "store_dir_mb_end": round(disk / 2**20, 1),
        "samples": samples,
    }
    emit(result, a.out)
    if a.out:
        png = os.path.splitext(a.out)[0] + ".png"
        plot(samples, warm_s, png,
             f"soak: {'TGN + ' if a.tgn else ''}detector, cache {a.cache_capacity:,} rows, "
             + (f"memory cache {a.mem_cache_capacity:,} nodes, " if a.mem_cache_capacity else "")
             + f"{nodes:,} nodes at the end")
        print(f"wrote {a.out} and {png}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
