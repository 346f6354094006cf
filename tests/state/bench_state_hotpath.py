"""Hot-path timing of the graph store: resolve + slots + commit per micro-batch.

Run: ``.venv/bin/python tests/state/bench_state_hotpath.py [--nodes 200000] [--batches 20]``.
Prints JSON: median microseconds per node touched, for a batch of ``2 * events``
node references (source and destination of each event), in four regimes:

* ``new``: every entity unseen (ids created, fresh rows, id mappings written);
* ``hot``: entities already resolved and resident (the steady state);
* ``cold``: entities in RocksDB only (a freshly opened store: multi-gets);
* ``evicting``: cache smaller than the working set (loads plus LRU eviction).

``rocksdb_floor`` times bare rocksdict doing the same writes and reads in the same
process (us per key), and the ratio puts the store's commit against it: the part of
the cost that is RocksDB's own (WAL append, memtable insert) versus the store's.
Not collected by pytest (file name); seeded, so the workload is reproducible.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rocksdict import WriteBatch  # noqa: E402

from riskgraph.state.codecs import record_size  # noqa: E402
from riskgraph.state.keys import node_keys  # noqa: E402
from riskgraph.state.options import StoreOptions  # noqa: E402
from riskgraph.state.store import GraphStore  # noqa: E402


def _batch(store: GraphStore, ext: list[str], out: dict[str, list[float]]) -> None:
    t0 = time.perf_counter()
    ids = store.resolve(ext)
    t1 = time.perf_counter()
    slots = store.slots(ids)
    store.table.acc[slots, 0] += 1.0  # touch the rows as the feature kernels would
    t2 = time.perf_counter()
    store.commit(positions={"events/0": 1}, blobs={"detector": b"x" * 4096})
    t3 = time.perf_counter()
    n = len(ext)
    out["resolve"].append((t1 - t0) / n * 1e6)
    out["slots"].append((t2 - t1) / n * 1e6)
    out["commit"].append((t3 - t2) / n * 1e6)


def _summary(out: dict[str, list[float]], per: int) -> dict[str, float]:
    s = {k: round(statistics.median(v), 3) for k, v in out.items()}
    s["total"] = round(sum(s.values()), 3)
    s["ms_per_batch"] = round(s["total"] * per / 1e3, 2)
    return s


def _floor(store: GraphStore, n_ids: int, per: int, rng: np.random.Generator, reps: int) -> dict[str, float]:
    """Bare rocksdict costs of the same work, same process and database: a WriteBatch of
    ``per`` record-sized values, and a multi-get of ``per`` node keys (us per key)."""
    db = store._db  # the reference deliberately bypasses the store
    value = bytes(record_size(store.mem_dim))
    w, g = [], []
    for _ in range(reps):
        keys = node_keys(np.sort(rng.choice(n_ids, per, replace=False)))
        t0 = time.perf_counter()
        got = db.get(keys)
        t1 = time.perf_counter()
        wb = WriteBatch(raw_mode=True)
        for k, v in zip(keys, got):
            wb[k] = v if v is not None else value
        db.write(wb)
        t2 = time.perf_counter()
        g.append((t1 - t0) / per * 1e6)
        w.append((t2 - t1) / per * 1e6)
    return {"write_batch": round(statistics.median(w), 3), "multi_get": round(statistics.median(g), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=200_000)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--mem-dim", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    per = 2 * a.events
    names = [f"acct-{i:09d}" for i in range(a.nodes)]
    res: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store"
        with GraphStore(path, StoreOptions(mem_dim=a.mem_dim)) as st:
            out = {"resolve": [], "slots": [], "commit": []}
            for b in range(0, a.nodes, per):  # creates every node
                _batch(st, names[b:b + per], out)
            res["new"] = _summary(out, per)
            out = {"resolve": [], "slots": [], "commit": []}
            for _ in range(a.batches):
                _batch(st, [names[i] for i in rng.integers(0, a.nodes, per)], out)
            res["hot"] = _summary(out, per)
            res["rocksdb_floor"] = _floor(st, a.nodes, per, rng, a.batches)
            res["ratio_hot_commit_vs_floor_write"] = round(res["hot"]["commit"] / res["rocksdb_floor"]["write_batch"], 2)
        with GraphStore(path, StoreOptions(mem_dim=a.mem_dim), create=False) as st:
            out = {"resolve": [], "slots": [], "commit": []}
            for _ in range(a.batches):
                _batch(st, [names[i] for i in rng.integers(0, a.nodes, per)], out)
            res["cold"] = _summary(out, per)
        with GraphStore(path, StoreOptions(mem_dim=a.mem_dim, cache_capacity=a.nodes // 10), create=False) as st:
            out = {"resolve": [], "slots": [], "commit": []}
            for _ in range(a.batches * 3):
                _batch(st, [names[i] for i in rng.integers(0, a.nodes, per)], out)
            res["evicting"] = _summary(out, per)
    print(json.dumps({"unit": "us per node reference", "nodes": a.nodes, "refs_per_batch": per,
                      "mem_dim": a.mem_dim, "seed": a.seed, **res}, indent=1))


if __name__ == "__main__":
    main()
