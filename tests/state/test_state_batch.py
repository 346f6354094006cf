"""The per-batch handle (``state.batch.BatchRows``): the current table, neighbours on demand, ended by a commit."""

from __future__ import annotations

import numpy as np
import pytest

from riskgraph.state.batch import BatchOverError
from riskgraph.state.store import GraphStore
from riskgraph.state.options import StoreOptions


def test_the_handle_reads_the_table_grown_by_loading_neighbours(tmp_path) -> None:
    with GraphStore(tmp_path / "g", StoreOptions(mem_dim=2, cache_capacity=4)) as st:
        rows = st.batch(st.resolve([f"b{i}" for i in range(4)]))
        rows.table.mem[rows.slots] = np.arange(8, dtype=np.float32).reshape(4, 2)
        held, capacity = rows.table.mem, rows.table.capacity
        nbr = rows.peek(st.resolve([f"n{i}" for i in range(20)]))  # nothing evictable: the table grows
        assert rows.table.capacity > capacity and nbr.max() >= capacity
        assert rows.table.mem is not held  # the old array is a copy from before the growth ...
        np.testing.assert_array_equal(rows.table.mem[rows.slots], held[rows.slots])  # ... the rows moved along
        rows.table.mem[rows.slots[0]] = 9.0  # writes through the handle land in the store's table
        st.commit()
        assert st.peek_mem(st.resolve(["b0"])).tolist() == [[9.0, 9.0]]


def test_a_commit_ends_the_batch(tmp_path) -> None:
    with GraphStore(tmp_path / "g", StoreOptions(cache_capacity=2)) as st:
        rows = st.batch(st.resolve(["a", "b"]))
        assert len(rows) == 2 and rows.table is st.table
        st.commit()
        _ = st.peek_slots(st.resolve(["c", "d"]))  # may reuse the rows of a and b now
        with pytest.raises(BatchOverError, match="open a new batch"):
            _ = rows.table
        with pytest.raises(BatchOverError):
            rows.peek(st.resolve(["a"]))
        assert st.batch(st.resolve(["a"])).table is st.table  # a new batch works


def test_lead_reader_serves_neighbours_from_the_memory_cache(tmp_path) -> None:
    with GraphStore(tmp_path / "plain", StoreOptions(mem_dim=3)) as st:
        assert st.batch(st.resolve(["a"])).lead_reader(2, 2) is None
    with GraphStore(tmp_path / "cached", StoreOptions(mem_dim=3, cache_capacity=1, mem_cache_capacity=8)) as st:
        s = st.slots(st.resolve(["a"]))
        st.table.mem[s] = [1.0, 2.0, 0.0]
        st.commit()
        rows = st.batch(st.resolve(["x"]))  # "a" leaves the row cache for the memory cache
        got = rows.lead_reader(2, 2)(st.resolve(["a", "new"]))
        assert got.lead.tolist() == [[1.0, 2.0], [0.0, 0.0]] and got.whole.size == 0
