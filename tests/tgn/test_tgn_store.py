"""TGNRuntime over the RocksDB graph store: rows evicted, reloaded and grown between batches."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from riskgraph.features.catalogue import N_FEATURES  # noqa: E402
from riskgraph.features.kernels import compute_features  # noqa: E402
from riskgraph.features.unit import to_unit  # noqa: E402
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
            slots = store.slots(ids)
            table = store.table
            compute_features(table, slots[:bs], slots[bs:], ids[:bs], ids[bs:], t, a)
            got = rt.score_batch(table, slots[:bs], slots[bs:], t, e, store.peek_slots)
            rt.update_batch(store.table, got)
            store.commit()
            np.testing.assert_allclose(got.link_prob, want.link_prob, atol=1e-6)
            np.testing.assert_allclose(got.risk, want.risk, atol=1e-6)
            ext = np.array([int(x) if i >= 0 else -1 for i, x in
                            zip(got.top_ids.ravel(), store.external_ids(np.maximum(got.top_ids.ravel(), 0)))])
            np.testing.assert_array_equal(ext.reshape(got.top_ids.shape), want.top_ids)
        assert store.cache_stats["evicted"] > 0
