"""Does the order of keys in a commit's WriteBatch change what RocksDB's write costs?

``GraphStore.commit`` writes one record per dirty node in one ``WriteBatch``. Its rows
come out of the row cache in slot order, which after a restart or under random access is
no order of the keys (big-endian node ids). This benchmark writes micro-batches of
``--batch`` random node records (``--value-bytes`` each, the TGN row's size by default)
into a store-configured RocksDB holding ``--nodes`` records, the batch's keys either in
random order or sorted, and the same sorted with ``memtable_insert_hint_per_batch``;
the modes take turns batch by batch, so machine noise hits them alike. Only
``db.write`` is timed (building the batch in Python is the same work in every mode).

Run: ``.venv/bin/python benchmarks/bench_store_write_order.py [--nodes 1000000] [--out FILE]``
(JSON printed and written to ``--out``, default
``benchmarks/results/store_write_order.json``).
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from rocksdict import WriteBatch, WriteOptions  # noqa: E402

from riskgraph.state.keys import node_keys  # noqa: E402
from riskgraph.state.store import open_db  # noqa: E402
from common import config, emit, machine  # noqa: E402

MODES = ("random", "sorted", "sorted+hint")


def run(nodes: int, batches: int, batch: int, value_bytes: int, seed: int, workdir: str) -> dict[str, Any]:
    db = open_db(workdir, True, 256)
    try:
        val = b"x" * value_bytes
        for lo in range(0, nodes, 10_000):  # every node has a record, as in a built store
            wb = WriteBatch(raw_mode=True)
            for k in node_keys(np.arange(lo, min(nodes, lo + 10_000))):
                wb[k] = val
            db.write(wb)
        plain, hinted = WriteOptions(), WriteOptions()
        hinted.memtable_insert_hint_per_batch = True
        rng = np.random.default_rng(seed)
        seconds: dict[str, list[float]] = {m: [] for m in MODES}
        for b in range(batches * len(MODES)):
            mode = MODES[b % len(MODES)]
            ids = rng.integers(0, nodes, batch)
            if mode != "random":
                ids = np.sort(ids)
            wb = WriteBatch(raw_mode=True)
            for k in node_keys(ids):
                wb[k] = val
            t0 = time.perf_counter()
            db.write(wb, hinted if mode == "sorted+hint" else plain)
            seconds[mode].append(time.perf_counter() - t0)
    finally:
        db.close()
    out: dict[str, Any] = {}
    for mode, s in seconds.items():
        us = np.array(s) / batch * 1e6
        out[mode] = {"us_per_put_median": round(float(np.median(us)), 3), "us_per_put_mean": round(float(us.mean()), 3),
                     "batches": len(s)}
    ref = out["random"]["us_per_put_median"]
    for mode in MODES:
        out[mode]["ratio_vs_random"] = round(out[mode]["us_per_put_median"] / ref, 3)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="10000,1000000", help="records in the store, comma separated")
    p.add_argument("--batches", type=int, default=300, help="timed batches per mode")
    p.add_argument("--batch", type=int, default=2000, help="records per batch (1,000 events: 2,000 ends)")
    p.add_argument("--value-bytes", type=int, default=824, help="record size (the default TGN row, trimmed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/store_write_order.json")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    sizes = {}
    for n in (int(x) for x in a.nodes.split(",")):
        work = tempfile.mkdtemp(prefix="riskgraph-write-order-")
        try:
            sizes[str(n)] = run(n, a.batches, a.batch, a.value_bytes, a.seed, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"[write-order] N={n:,}: " + ", ".join(f"{m} {v['us_per_put_median']:.2f} us/put"
                                                    for m, v in sizes[str(n)].items()), file=sys.stderr)
    result = {"benchmark": "store_write_order",
              "machine": machine(), "config": config(a),
              "sizes": sizes, "seconds_total": round(time.perf_counter() - t0, 1)}
    emit(result, a.out)
    return result


if __name__ == "__main__":
    main()
