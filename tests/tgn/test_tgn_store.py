"""TGNRuntime over the RocksDB graph store: rows evicted, reloaded and grown between batches,
and grown in the middle of one (by loading its temporal neighbours)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from riskgraph.features.catalogue import N_FEATURES  # noqa: E402
from riskgraph.features.kernels import compute_features  # noqa: E402
from riskgraph.features.unit import to_unit  # noqa: E402
from riskgraph.models.hst import HalfSpaceTrees  # noqa: E402
from riskgraph.models.scoring import BatchContext, ScoringModel  # noqa: E402
from riskgraph.models.tgn.runtime import TGNRuntime  # noqa: E402
from riskgraph.state.options import StoreOptions  # noqa: E402
from riskgraph.state.store import GraphStore  # noqa: E402


def test_scores_through_an_evicting_store_equal_the_in_memory_table(tmp_path, make_model, make_table, ident) -> None:
    model = make_model(seed=9, edge_dim=N_FEATURES)
    rt = TGNRuntime(model, "cpu")
    rng = np.random.default_rng(2)
    n_nodes, n, bs = 40, 600, 30
    src, dst = rng.integers(0, n_nodes, n), rng.integers(0, n_nodes, n)
    ts, amt = np.cumsum(rng.exponential(2.0, n)), rng.lognormal(2.0, 1.0, n)
    ref = make_table(n_nodes, model.row_width)
    # a cache far smaller than the graph: neighbours are evicted and read back from RocksDB
    with GraphStore(tmp_path / "g", StoreOptions(mem_dim=model.row_width, cache_capacity=8)) as store:
        for lo in range(0, n, bs):
            sl = slice(lo, lo + bs)
            s, d, t, a = src[sl], dst[sl], ts[sl], amt[sl]
            e = to_unit(compute_features(ref, s, d, s, d, t, a))
            want = rt.score_batch(ref, s, d, t, e, ident)
            rt.update_batch(ref, want)

            ids = store.resolve([str(x) for x in np.r_[s, d]])
            rows = store.batch(ids)
            compute_features(rows.table, rows.slots[:bs], rows.slots[bs:], ids[:bs], ids[bs:], t, a)
            got = rt.score_batch(rows.table, rows.slots[:bs], rows.slots[bs:], t, e, rows.peek)
            rt.update_batch(rows.table, got)
            store.commit()
            np.testing.assert_allclose(got.link_prob, want.link_prob, atol=1e-6)
            np.testing.assert_allclose(got.risk, want.risk, atol=1e-6)
            ext = np.array([int(x) if i >= 0 else -1 for i, x in
                            zip(got.top_ids.ravel(), store.external_ids(np.maximum(got.top_ids.ravel(), 0)))])
            np.testing.assert_array_equal(ext.reshape(got.top_ids.shape), want.top_ids)
        assert store.cache_stats["evicted"] > 0


def _score_with_growth(path, model, cache_capacity: int):
    """History over nodes 0..39 (committed), then nodes 100.. pinned uncommitted, then one batch
    among nodes 0..3 whose neighbours (4..39) must be loaded to score it. Returns what the
    last batch produced, the table's rows before and after its scoring, and the batch's rows."""
    rng = np.random.default_rng(5)
    scorer = ScoringModel(HalfSpaceTrees(n_features=N_FEATURES, seed=1), tgn=TGNRuntime(model, "cpu"))
    scorer.recorder = []  # the head's inputs: the graph features over the same rings

    def run(store, s, d, t, a):
        ids = store.resolve([f"n{x}" for x in np.r_[s, d]])
        rows = store.batch(ids)
        n = len(t)
        unit = to_unit(compute_features(rows.table, rows.slots[:n], rows.slots[n:], ids[:n], ids[n:], t, a))
        before = rows.table.capacity
        out = scorer.score(unit, ctx=BatchContext(rows, rows.slots[:n], rows.slots[n:], t))
        return rows, out, before

    with GraphStore(path, StoreOptions(mem_dim=model.row_width, cache_capacity=cache_capacity)) as store:
        t0 = 0.0
        for _ in range(6):
            s, d = rng.integers(4, 40, 30), rng.integers(4, 40, 30)
            s[:4] = np.arange(4)  # nodes 0..3 meet the others: their rings point at 4..39
            t = t0 + np.cumsum(rng.exponential(2.0, 30))
            run(store, s, d, t, rng.lognormal(2.0, 1.0, 30))
            store.commit()
            t0 = t[-1]
        store.batch(store.resolve([f"n{x}" for x in range(100, 100 + store.table.capacity)]))  # pinned: dirty
        s, d = np.array([0, 1, 2]), np.array([1, 2, 3])
        rows, out, before = run(store, s, d, t0 + np.arange(1.0, 4.0), np.array([5.0, 6.0, np.nan]))
        ext = [rows.external_id(int(x)) if x >= 0 else "" for x in out.neighbours.ravel()]
        state = {name: getattr(rows.table, name)[rows.slots].copy() for name in ("acc", "ring_nbr", "ring_ts",
                                                                                  "ring_n", "mem", "mem_ts")}
        return out, scorer.recorder[-1], before, rows.table.capacity, ext, state


def test_a_batch_whose_neighbours_grow_the_table_scores_as_one_that_fits(tmp_path, make_model) -> None:
    model = make_model(seed=4, edge_dim=N_FEATURES)
    small = _score_with_growth(tmp_path / "small", model, cache_capacity=8)
    large = _score_with_growth(tmp_path / "large", model, cache_capacity=100_000)
    (out_s, graph_s, before_s, after_s, ext_s, rows_s), (out_l, graph_l, before_l, after_l, ext_l, rows_l) = small, large
    assert after_s > before_s  # loading the last batch's neighbours grew the small store's table ...
    assert after_l == before_l  # ... and not the large one's
    np.testing.assert_array_equal(out_s.scores, out_l.scores)
    for name in out_l.components:
        np.testing.assert_array_equal(out_s.components[name], out_l.components[name])
    np.testing.assert_array_equal(graph_s, graph_l)
    assert ext_s == ext_l and any(ext_l)
    for name in rows_l:  # the rows the batch wrote (TGN memory) and the rings it read
        np.testing.assert_array_equal(rows_s[name], rows_l[name], err_msg=name)
