"""Train/serve parity: a trained TGN scores the same events the same way offline and in the Engine.

Offline is ``models.tgn.train.offline_scores``: the training code path (fold on read,
in-memory table whose slots are the ids) replayed in batches of ``B``. Serving is the
real path: ``streams.engine.Engine`` over a RocksDB ``GraphStore`` with
``ScoringModel(detector, tgn=TGNRuntime(model, fold_on_write=True))``, fed in batches of
the same ``B`` by ``streams.runner``. The components ``tgn_risk`` and ``tgn_link`` must
equal the offline ``risk`` and ``link_surprise`` event by event -- also across a restart
(store closed and reopened from disk) and with a hot cache small enough that rows are
evicted and read back from RocksDB.

Ids: offline takes dense integer ids; the Engine resolves string entity ids in the order
it first sees them (per batch, all sources, then all destinations). The offline ids
here are built in that same order and checked against the store's id map, so both
sides see the same ids, not only the same graph. A second check uses the mapping
``riskgraph train`` uses (all sources of the file, then all destinations): scores only
depend on which ids are equal, so they must agree too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from riskgraph.models.scoring import ScoringModel  # noqa: E402
from riskgraph.models.tgn.model import TGNConfig  # noqa: E402
from riskgraph.models.tgn.runtime import TGNRuntime  # noqa: E402
from riskgraph.models.tgn.train import TrainConfig, offline_scores, train  # noqa: E402
from riskgraph.simulators.transactions import SimConfig, simulate  # noqa: E402
from riskgraph.state.options import StoreOptions  # noqa: E402
from riskgraph.state.store import GraphStore  # noqa: E402
from riskgraph.streams.engine import Engine  # noqa: E402
from riskgraph.streams.events import Event, encode_many  # noqa: E402
from riskgraph.streams.runner import chunk_events, run_batches  # noqa: E402

#: About 1,100 events, ~100 of them labelled attacks, ~400 entities: trains in ~2 s.
SIM = SimConfig(n_persons=400, n_merchants=60, n_atms=5, days=2, seed=11)
B = 100  # micro-batch size, offline and in the Engine
TOL = 1e-5
COMPONENTS = (("tgn_risk", "risk"), ("tgn_link", "link_surprise"))


@dataclass
class Trained:
    events: list[Event]
    src: np.ndarray  # int64, the Engine's id order
    dst: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    ext_order: list[str]  # external id of internal id i, as the Engine assigns them
    model: object  # models.tgn.model.TGN, eval mode
    offline: dict[str, np.ndarray]


def engine_id_order(events: list[Event], batch: int) -> dict[str, int]:
    """Internal ids as ``GraphStore.resolve`` hands them out: per batch, sources then destinations."""
    ids: dict[str, int] = {}
    for lo in range(0, len(events), batch):
        b = events[lo:lo + batch]
        for e in b:
            ids.setdefault(e.src, len(ids))
        for e in b:
            ids.setdefault(e.dst, len(ids))
    return ids


@pytest.fixture(scope="module")
def trained() -> Trained:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the module fixture runs before the per-test one_thread fixture
    try:
        events = simulate(SIM).events
        ids = engine_id_order(events, B)
        src = np.array([ids[e.src] for e in events], np.int64)
        dst = np.array([ids[e.dst] for e in events], np.int64)
        ts = np.array([e.ts for e in events], np.float64)
        amount = np.array([np.nan if e.amount is None else e.amount for e in events], np.float64)
        labels = np.array([e.label for e in events], np.float32)
        assert 0 < labels.sum() < len(labels)
        cfg = TrainConfig(model=TGNConfig(mem_dim=16, time_dim=8, emb_dim=16, k=5), epochs=3, batch_size=B,
                          lr=1e-2, seed=0)
        model, metrics = train(src, dst, ts, amount=amount, labels=labels, config=cfg, progress=False)
        assert metrics["risk_trained"]
        off = offline_scores(model, src, dst, ts, amount=amount, batch_size=B)
        # a model whose outputs barely move would make parity trivially true
        assert off["risk"].std() > 0.02 and off["link_surprise"].std() > 0.02, \
            (off["risk"].std(), off["link_surprise"].std())
        return Trained(events, src, dst, ts, amount, list(ids), model, off)
    finally:
        torch.set_num_threads(before)


def serving_model(t: Trained) -> ScoringModel:
    # the serving runtime as ``models.artifact`` builds it (default device, as offline_scores)
    return ScoringModel(ScoringModel.default(seed=1).detector, tgn=TGNRuntime(t.model, fold_on_write=True))


def serve(path, t: Trained, *, restart_at: tuple[int, ...] = (), cache_capacity: int = 1_000_000,
          commit_every: int = 1, mem_cache_capacity: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Stream ``t.events`` through Engine + GraphStore in batches of B; restart at the given event counts."""
    cuts = [0, *restart_at, len(t.events)]
    parts: dict[str, list[np.ndarray]] = {}
    stats: dict = {"evicted": 0, "restarts": len(restart_at)}
    for i, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        assert lo % B == 0, "restarts happen between two batches"
        sm = serving_model(t)
        with GraphStore(path, StoreOptions(mem_dim=sm.mem_dim, cache_capacity=cache_capacity,
                                           mem_cache_capacity=mem_cache_capacity,
                                           mem_cache_width=sm.mem_cache_width), create=(i == 0)) as store:
            assert store.positions().get("file/0", 0) == lo  # it resumes exactly where it stopped
            eng = Engine(store, sm, commit_every=commit_every)
            run = run_batches(eng, chunk_events(t.events[lo:hi], B), progress=False)
            for k, v in run.components.items():
                parts.setdefault(k, []).append(v)
            stats["evicted"] += store.cache_stats["evicted"]
            for k in ("mem_cache_hits", "mem_cache_misses"):
                stats[k] = stats.get(k, 0) + store.cache_stats.get(k, 0)
            stats["max_rows"] = max(stats.get("max_rows", 0), store.cache_stats["rows"])
            stats["node_count"] = store.node_count
            stats["ext_order"] = store.external_ids(np.arange(store.node_count))
    return {k: np.concatenate(v) for k, v in parts.items()}, stats


def max_diffs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for comp, key in COMPONENTS:
        assert got[comp].shape == want[key].shape, (comp, got[comp].shape, want[key].shape)
        out[comp] = float(np.abs(got[comp] - want[key]).max())
    return out


def assert_parity(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    diffs = max_diffs(got, want)
    print(f"{what}: max |serve - offline| = {diffs}")  # visible with pytest -s
    for comp, d in diffs.items():
        assert d <= TOL, f"{what}: {comp} differs from offline by max abs {d:.3e} (> {TOL:g}); all: {diffs}"


def test_engine_ids_are_the_offline_ids(tmp_path, trained: Trained) -> None:
    _, stats = serve(tmp_path / "g", trained)
    assert stats["node_count"] == len(trained.ext_order)
    assert stats["ext_order"] == trained.ext_order


def test_engine_scores_equal_offline_scores(tmp_path, trained: Trained) -> None:
    got, _ = serve(tmp_path / "g", trained)
    assert_parity(got, trained.offline, "plain")


def test_parity_across_restarts(tmp_path, trained: Trained) -> None:
    # restart mid-stream twice: everything the TGN needs must come back from RocksDB
    n_batches = -(-len(trained.events) // B)
    cuts = (B * (n_batches // 3), B * (2 * n_batches // 3))
    got, stats = serve(tmp_path / "g", trained, restart_at=cuts)
    assert stats["restarts"] == 2
    assert_parity(got, trained.offline, f"restarts at {cuts}")


def test_parity_with_an_evicting_hot_cache(tmp_path, trained: Trained) -> None:
    # ~400 entities, 32 cached rows: neighbours are evicted and read back between batches;
    # commit every 2 batches keeps uncommitted rows pinned across a batch boundary too
    got, stats = serve(tmp_path / "g", trained, cache_capacity=32, commit_every=2)
    assert stats["evicted"] > len(trained.ext_order), stats
    assert stats["max_rows"] < len(trained.ext_order), stats  # never the whole graph in memory
    assert_parity(got, trained.offline, "cache_capacity=32")


def test_parity_with_neighbour_memory_from_the_compact_cache(tmp_path, trained: Trained) -> None:
    # neighbours read through GraphStore.peek_mem: resident rows, the memory cache (itself
    # too small, so it evicts too) or RocksDB; a restart empties it
    n_batches = -(-len(trained.events) // B)
    got, stats = serve(tmp_path / "g", trained, cache_capacity=32, commit_every=2, mem_cache_capacity=96,
                       restart_at=(B * (n_batches // 2),))
    assert stats["evicted"] > len(trained.ext_order) // 2, stats  # neighbours no longer load full rows
    assert stats["mem_cache_hits"] > 0 and stats["mem_cache_misses"] > 0, stats
    assert_parity(got, trained.offline, "cache_capacity=32, mem_cache_capacity=96")


def test_parity_through_raw_records_and_restart_with_small_cache(tmp_path, trained: Trained) -> None:
    # the worker's path: JSON bytes -> Engine.process, positions committed with state
    raw = encode_many(trained.events)
    parts: dict[str, list[np.ndarray]] = {}
    half = B * (len(raw) // B // 2)
    path = tmp_path / "g"
    for i, (lo, hi) in enumerate(((0, half), (half, len(raw)))):
        sm = serving_model(trained)
        with GraphStore(path, StoreOptions(mem_dim=sm.mem_dim, cache_capacity=48), create=(i == 0)) as store:
            eng = Engine(store, sm)
            start = store.positions().get("events/0", 0)
            assert start == lo
            for b in range(start, hi, B):
                r = eng.process(raw[b:min(b + B, hi)], positions={"events/0": min(b + B, hi)})
                assert not r.dead
                for k, v in r.components.items():
                    parts.setdefault(k, []).append(v)
    got = {k: np.concatenate(v) for k, v in parts.items()}
    assert_parity(got, trained.offline, "raw records, restart, cache_capacity=48")


def test_parity_with_training_style_ids(trained: Trained) -> None:
    # ``riskgraph train`` numbers entities as all sources of the file, then all destinations
    ids: dict[str, int] = {}
    src = np.fromiter((ids.setdefault(e.src, len(ids)) for e in trained.events), np.int64, len(trained.events))
    dst = np.fromiter((ids.setdefault(e.dst, len(ids)) for e in trained.events), np.int64, len(trained.events))
    assert not np.array_equal(src, trained.src)  # really another numbering
    off = offline_scores(trained.model, src, dst, trained.ts, amount=trained.amount, batch_size=B)
    got = {comp: off[key] for comp, key in COMPONENTS}
    assert_parity(got, trained.offline, "training-style ids")


def test_parity_check_has_teeth(tmp_path, trained: Trained) -> None:
    # the same events in batches of another size are scored differently (memory moves per
    # batch): the tolerance above is far below what a batching mismatch produces
    got, _ = serve(tmp_path / "g", trained)
    other = offline_scores(trained.model, trained.src, trained.dst, trained.ts, amount=trained.amount,
                           batch_size=B // 2)
    diffs = max_diffs(got, other)
    assert min(diffs.values()) > 1000 * TOL, diffs
