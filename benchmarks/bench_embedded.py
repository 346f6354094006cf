"""Embedded feature path throughput: decode + state + features + detector + persist.

Ours (numba Half-Space Trees) against River's ``HalfSpaceTrees`` plugged into the very
same Engine (same JSON records, same RocksDB store, same numba features, same
micro-batches), in the same run. River gets the squashed [0, 1] features as a dict per
event, as River expects. Both detectors use the same configuration (25 trees, height 8,
window 250, same seed: our trees are River's trees).

River is ~50x slower, so it runs on a prefix of the stream; ours is timed on the same
prefix (the ratio) and on the whole stream (the absolute rate). The detector-only rates
(precomputed features, no engine) are reported too.

Run:  .venv/bin/python benchmarks/bench_embedded.py [--events N] [--river-events N] [--out FILE]
Prints one JSON object (and writes it to --out when given).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from typing import Any

import numpy as np

from riskgraph.features.catalogue import FEATURE_NAMES, N_FEATURES
from riskgraph.models.hst import HalfSpaceTrees
from riskgraph.models.scoring import ScoringModel
from riskgraph.simulators.transactions import SimConfig, simulate
from riskgraph.state.store import GraphStore
from riskgraph.streams.engine import Engine
from riskgraph.streams.events import encode_many
from common import emit, machine

SEED = 7
HST = {"n_trees": 25, "height": 8, "window_size": 250}


class RiverHST:
    """River's HalfSpaceTrees behind our scorer protocol (row dicts, one event at a time)."""

    def __init__(self, seed: int) -> None:
        from river.anomaly import HalfSpaceTrees as RHST

        self.model = RHST(n_trees=HST["n_trees"], height=HST["height"], window_size=HST["window_size"], seed=seed)
        self.n_features = N_FEATURES
        self.names = list(FEATURE_NAMES)

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(len(X))
        names = self.names
        for i, row in enumerate(X.tolist()):
            d = dict(zip(names, row))
            out[i] = self.model.score_one(d)
            self.model.learn_one(d)
        return out

    def score_many(self, X: np.ndarray) -> np.ndarray:
        names = self.names
        return np.array([self.model.score_one(dict(zip(names, r))) for r in X.tolist()])

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(self.n_features)  # River has none; alerts get no feature reasons

    def to_config(self) -> dict[str, Any]:
        return {"river": HST}

    # River's stream state is not persisted per batch (ours is): this favours River.
    def state_bytes(self) -> bytes:
        return b""

    def load_state_bytes(self, data: bytes) -> None:
        pass

    def reset_state(self) -> None:
        pass


def run_engine(model: ScoringModel, records: list[bytes], batch: int, commit_every: int) -> dict[str, float]:
    d = tempfile.mkdtemp(prefix="bench-embedded-")
    try:
        with GraphStore(d) as store:
            eng = Engine(store, model, commit_every=commit_every)
            stages: dict[str, float] = {}
            t0 = time.perf_counter()
            for i in range(0, len(records), batch):
                r = eng.process(records[i:i + batch], positions={"bench/0": min(i + batch, len(records))})
                for k, v in r.timings.items():
                    stages[k] = stages.get(k, 0.0) + v
            eng.flush()
            dt = time.perf_counter() - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"events": len(records), "seconds": dt, "events_per_second": len(records) / dt,
            "stage_seconds": {k: round(v, 4) for k, v in stages.items()}}


def detector_only(X: np.ndarray, n_river: int) -> dict[str, float]:
    ours = HalfSpaceTrees(N_FEATURES, seed=SEED, **HST)
    t0 = time.perf_counter()
    ours.score_learn_many(X)
    t_ours = time.perf_counter() - t0
    river = RiverHST(SEED)
    t0 = time.perf_counter()
    river.score_learn_many(X[:n_river])
    t_river = time.perf_counter() - t0
    return {"ours_rows_per_second": len(X) / t_ours, "river_rows_per_second": n_river / t_river,
            "ratio": (len(X) / t_ours) / (n_river / t_river)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=None, help="cap on stream length (default: whole simulation)")
    ap.add_argument("--river-events", type=int, default=20_000, help="prefix River is timed on")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--commit-every", type=int, default=10, help="micro-batches per RocksDB commit")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    sim = simulate(SimConfig(seed=SEED))
    events = sim.events[: a.events] if a.events else sim.events
    records = encode_many(events)
    n_river = min(a.river_events, len(records))

    # warm-up: JIT caches loaded, page cache warm; not timed
    run_engine(ScoringModel.default(seed=SEED, **HST), records[:5000], a.batch, a.commit_every)

    ours_full = run_engine(ScoringModel.default(seed=SEED, **HST), records, a.batch, a.commit_every)
    ours_full_commit1 = run_engine(ScoringModel.default(seed=SEED, **HST), records, a.batch, 1)
    ours_prefix = run_engine(ScoringModel.default(seed=SEED, **HST), records[:n_river], a.batch, a.commit_every)
    river_prefix = run_engine(ScoringModel(RiverHST(SEED), version="river-hst"), records[:n_river], a.batch,
                              a.commit_every)

    # detector-only: the squashed features of the same events, computed once
    from riskgraph.features.kernels import compute_features
    from riskgraph.features.layout import NodeArrays, init_rows
    from riskgraph.features.unit import to_unit

    ids: dict[str, int] = {}
    src = np.array([ids.setdefault(e.src, len(ids)) for e in events], np.int64)
    dst = np.array([ids.setdefault(e.dst, len(ids)) for e in events], np.int64)
    t = NodeArrays.empty(len(ids))
    init_rows(t, np.arange(len(ids)))
    ts = np.array([e.ts for e in events])
    amt = np.array([np.nan if e.amount is None else e.amount for e in events])
    X = to_unit(compute_features(t, src, dst, src, dst, ts, amt))

    result = {
        "benchmark": "embedded_feature_path",
        "machine": machine(),
        "seed": SEED,
        "batch": a.batch,
        "detector": HST,
        "commit_every": a.commit_every,
        "ours_full_stream": ours_full,
        "ours_full_stream_commit_every_batch": ours_full_commit1,
        "ours_prefix": ours_prefix,
        "river_prefix": river_prefix,
        "ratio_vs_river": ours_prefix["events_per_second"] / river_prefix["events_per_second"],
        "detector_only": detector_only(X, n_river),
    }
    emit(result, a.out)


if __name__ == "__main__":
    main()
