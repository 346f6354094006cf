"""The hot row cache: eviction keeps data correct, dirty rows stay, slots stay valid."""

from __future__ import annotations

import numpy as np
import pytest

from riskgraph.features.layout import RING, init_rows
from riskgraph.state.cache import RowCache
from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore


def _apply(table, slots, ids, k):
    """A deterministic per-node update standing in for the feature kernels."""
    table.acc[slots, 0] += ids * 0.5 + k
    table.ring_nbr[slots, k % RING] = k
    table.ring_n[slots] += 1
    table.mem[slots, 0] = np.float32(k)


def test_tiny_cache_matches_a_reference_dict(tmp_path):
    rng = np.random.default_rng(5)
    n_nodes, cap = 120, 8
    names = [f"e{i}" for i in range(n_nodes)]
    ref = {}  # name -> (acc0, ring_n, mem0, ring_nbr row)
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=1, cache_capacity=cap)) as st:
        for k in range(300):
            batch = [names[i] for i in rng.integers(0, n_nodes, rng.integers(1, 7))]
            ids = st.resolve(batch)
            uniq_ids = np.unique(ids)
            s = st.slots(uniq_ids)
            _apply(st.table, s, uniq_ids, k)
            if rng.random() < 0.3:  # a neighbour read in between, as scoring does
                st.peek_slots(rng.integers(0, st.node_count, 5))
            for i, name in zip(uniq_ids.tolist(), st.external_ids(uniq_ids)):
                a0, rn, m0, nbr = ref.get(name, (np.nan, 0, 0.0, [-1] * RING))
                a0 = (0.0 if np.isnan(a0) else a0) + i * 0.5 + k
                nbr = list(nbr)
                nbr[k % RING] = k
                ref[name] = (a0, rn + 1, float(np.float32(k)), nbr)
            if k % 3 == 2:  # dirty rows pile up over three batches before a commit
                st.commit(positions={"in/0": k})
        st.commit(positions={"in/0": 300})
        # at most 3 batches of dirty rows (<= 18) plus one pinned peek (5) ever coexist
        assert st.table.capacity <= 18 + 5 + 8  # so eviction kept the table from growing with the node set
        assert st.cache_stats["evicted"] > 0
        seen = [n for n in names if n in ref]

        def check(store):
            for name in seen:
                s = int(store.peek_slots(store.resolve([name]))[0])
                a0, rn, m0, nbr = ref[name]
                t = store.table
                assert (t.acc[s, 0], t.ring_n[s], t.mem[s, 0]) == (a0, rn, m0), name
                assert t.ring_nbr[s].tolist() == nbr

        check(st)
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=1, cache_capacity=cap), create=False) as st:
        check(st)
        assert st.positions() == {"in/0": 300}


def test_dirty_rows_are_never_evicted_the_table_grows_instead(tmp_path):
    with GraphStore(tmp_path / "s", StoreOptions(cache_capacity=4)) as st:
        ids = st.resolve([f"n{i}" for i in range(10)])
        for i in ids.tolist():  # ten separate batches, no commit in between
            s = st.slots(np.array([i]))
            st.table.acc[s, 0] = 100 + i
        assert st.table.capacity >= 10
        s = st.peek_slots(ids)
        assert st.table.acc[s, 0].tolist() == [100.0 + i for i in range(10)]
        st.commit()
        cap_after = st.table.capacity
        more = st.resolve([f"m{i}" for i in range(40)])
        for i in more.tolist():
            st.slots(np.array([i]))
            st.commit()
        assert st.table.capacity == cap_after  # clean rows are evicted now
        assert st.table.acc[st.peek_slots(ids), 0].tolist() == [100.0 + i for i in range(10)]


def test_one_call_larger_than_the_cache_returns_valid_distinct_slots(tmp_path):
    with GraphStore(tmp_path / "s", StoreOptions(cache_capacity=8)) as st:
        ids = st.resolve([f"n{i}" for i in range(50)])
        s = st.slots(ids)
        st.table.acc[s, 0] = np.arange(50)
        st.commit()
        st.peek_slots(st.resolve([f"x{i}" for i in range(30)]))  # pushes the first rows out
        s = st.peek_slots(np.concatenate([ids, ids[:5]]))
        assert len(set(s[:50].tolist())) == 50 and s[50:].tolist() == s[:5].tolist()
        assert st.table.acc[s, 0].tolist() == list(range(50)) + list(range(5))


def _cache(capacity, calls=None, fail=None):
    def load(ids, slots):
        if fail is not None and fail[0]:
            raise OSError("disk gone")
        if calls is not None:
            calls.append(ids.tolist())
        init_rows(c.table, slots)
        c.table.acc[slots, 0] = ids

    c = RowCache(mem_dim=0, capacity=capacity, load=load)
    return c


def test_least_recently_used_clean_row_goes_first():
    calls: list[list[int]] = []
    c = _cache(4, calls)
    for i in range(4):
        c.lookup(np.array([i]), mark_dirty=False)
    c.lookup(np.array([0]), mark_dirty=False)  # 0 is now more recent than 1
    c.lookup(np.array([9]), mark_dirty=False)
    assert c.resident_slots(np.array([0, 1, 2, 3, 9])).tolist()[1] == -1
    assert (c.resident_slots(np.array([0, 2, 3, 9])) >= 0).all()
    c.lookup(np.array([1]), mark_dirty=False)  # comes back through the loader
    assert calls[-1] == [1]
    s = c.lookup(np.array([1, 9]), mark_dirty=False)
    assert c.table.acc[s, 0].tolist() == [1.0, 9.0]


def test_failed_load_leaves_nothing_resident():
    fail = [True]
    c = _cache(4, fail=fail)
    with pytest.raises(OSError):
        c.lookup(np.array([3, 4]), mark_dirty=True)
    assert c.n_resident == 0 and c.dirty()[0].size == 0
    fail[0] = False
    s = c.lookup(np.array([3, 4]), mark_dirty=True)
    assert c.table.acc[s, 0].tolist() == [3.0, 4.0] and c.dirty()[1].tolist() == [3, 4]
