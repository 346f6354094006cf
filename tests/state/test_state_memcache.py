"""MemCache (LRU of memory rows) and GraphStore.peek_mem / peek_lead on a real RocksDB."""

from __future__ import annotations

import numpy as np
import pytest

from riskgraph.state.memcache import MemCache
from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore


def test_lru_keeps_recent_entries_and_the_capacity():
    c = MemCache(width=3, capacity=32)
    ids = np.arange(32)
    c.put(ids, np.repeat(ids[:, None], 3, axis=1).astype(np.float32))
    c.get(ids[:4])  # touched: survive the next eviction
    c.put(np.arange(100, 110), np.zeros((10, 3), np.float32))
    assert len(c) <= 32 and c.n_evicted >= 10
    s = c.get(ids[:4])
    assert (s >= 0).all() and c.rows[s, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert (c.get(np.arange(100, 110)) >= 0).all()
    c.put(np.array([2]), np.full((1, 3), 9.0, np.float32))  # overwrite in place
    assert c.rows[c.get(np.array([2]))[0]].tolist() == [9.0, 9.0, 9.0]


def test_a_put_larger_than_the_cache_keeps_its_last_rows():
    c = MemCache(width=1, capacity=4)
    c.put(np.arange(10), np.arange(10, dtype=np.float32)[:, None])
    assert len(c) == 4
    assert (c.get(np.arange(6, 10)) >= 0).all() and (c.get(np.arange(6)) < 0).all()


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="capacity"):
        MemCache(width=4, capacity=0)
    with pytest.raises(ValueError, match="mem_cache_capacity"):
        GraphStore(tmp_path / "never", StoreOptions(mem_dim=2, mem_cache_capacity=-1))
    for bad in (0, 3, True):
        with pytest.raises(ValueError, match="mem_cache_width"):
            GraphStore(tmp_path / "never", StoreOptions(mem_dim=2, mem_cache_capacity=4, mem_cache_width=bad))
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("mem_cache, width", [(0, None), (16, None), (10_000, None), (16, 2), (10_000, 2)])
def test_peek_mem_always_equals_the_full_rows(tmp_path, mem_cache, width):
    """Random writes, commits, evictions and a reopen: peek_mem must agree with the rows.
    With a cache ``width`` of 2 of 4 columns, half the rows written end in zeros (those
    may be cached) and half do not (those must not be, or their tail would read as 0)."""
    rng = np.random.default_rng(3)
    names = [f"n{i}" for i in range(120)]
    path = tmp_path / "s"
    for life in range(2):
        with GraphStore(path, StoreOptions(mem_dim=4, cache_capacity=20, mem_cache_capacity=mem_cache,
                                           mem_cache_width=width)) as st:
            for step in range(40):
                batch = list(rng.choice(names, 8, replace=False))
                s = st.slots(st.resolve(batch))
                rows = rng.normal(size=(8, 4)).astype(np.float32)
                if width:
                    rows[::2, width:] = 0.0
                st.table.mem[s] = rows
                st.commit()
                ask = st.resolve(list(rng.choice(names, 30)))
                # the TGN's neighbour read first (resident rows, memory cache, RocksDB): 2 leading
                # columns, and whole rows where column 3 is set
                lead = st.peek_lead(ask, 2, flag=3)
                got = st.peek_mem(ask)
                slots = st.peek_slots(ask)  # the full rows, loaded if need be (may grow the table)
                want = st.table.mem[slots]
                np.testing.assert_array_equal(got, want, err_msg=f"life {life} step {step}")
                np.testing.assert_array_equal(lead.lead, want[:, :2])
                assert sorted(lead.whole.tolist()) == np.flatnonzero(want[:, 3] != 0).tolist()
                np.testing.assert_array_equal(lead.rows, want[lead.whole])
            if mem_cache:
                stats = st.cache_stats
                assert stats["mem_cache_hits"] > 0 and stats["evicted"] > 0, stats


def test_peek_mem_reads_uncommitted_resident_rows_and_zeros_for_new_ids(tmp_path):
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=2, cache_capacity=4, mem_cache_capacity=4)) as st:
        s = st.slots(st.resolve(["a"]))
        st.table.mem[s] = 7.0  # not committed: only the resident row has it
        assert st.peek_mem(st.resolve(["a", "never-written"])).tolist() == [[7.0, 7.0], [0.0, 0.0]]
        with pytest.raises(ValueError, match="ids"):
            st.peek_mem(np.array([99]))


def test_a_narrow_cache_keeps_only_rows_whose_tail_is_zero(tmp_path):
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=3, cache_capacity=2, mem_cache_capacity=8,
                                                 mem_cache_width=1)) as st:
        s = st.slots(st.resolve(["zero-tail", "full"]))
        st.table.mem[s] = [[5.0, 0.0, 0.0], [6.0, 1.0, np.nan]]
        st.commit()
        st.peek_slots(st.resolve(["x", "y"]))  # both leave the row cache for the memory cache
        assert st.cache_stats["mem_cache_rows"] == 1  # only the row that reads back exactly
        got = st.peek_mem(st.resolve(["zero-tail", "full"]))
        np.testing.assert_array_equal(got, [[5.0, 0.0, 0.0], [6.0, 1.0, np.nan]])
        assert st.cache_stats["mem_cache_hits"] == 1


def test_peek_lead_refuses_bad_columns(tmp_path):
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=4, mem_cache_capacity=4)) as st:
        ids = st.resolve(["a"])
        for width, flag in ((0, None), (5, None), (True, None), (2, 1), (2, 4), (2, True)):
            with pytest.raises(ValueError, match="width|flag"):
                st.peek_lead(ids, width, flag=flag)
        got = st.peek_lead(ids, 4)  # every column, no flag: the same as peek_mem
        assert got.lead.tolist() == [[0.0] * 4] and got.whole.size == 0 and got.rows.shape == (0, 4)
