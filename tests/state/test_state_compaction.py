"""RocksDB compaction style of the graph store: either style opens a store the other wrote."""

from __future__ import annotations

import numpy as np
import pytest

from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore


def _write_rounds(st: GraphStore, names: list[str], rng: np.random.Generator, helpers, before: dict) -> None:
    for round_ in range(4):  # several flushed files, so that compactions have runs to merge
        again = st.slots(st.resolve(names[round_::4]))
        helpers.fill_random(st.table, again, rng)
        st.table.mem[again] = rng.normal(size=(len(again), 8)).astype(np.float32)
        for n, s in zip(names[round_::4], again):
            before[n] = helpers.row_bytes(st.table, int(s))
        st.commit()
        st.flush()


def test_universal_and_level_open_each_others_stores_with_rows_intact(tmp_path, helpers) -> None:
    path, rng, before = tmp_path / "s", np.random.default_rng(5), {}
    names = [f"n{i}" for i in range(4000)]
    with GraphStore(path, StoreOptions(mem_dim=8, compaction="level")) as st:
        _write_rounds(st, names, rng, helpers, before)
    with GraphStore(path, StoreOptions(mem_dim=8), create=False) as st:  # universal: the default
        assert st.compaction == "universal"
        _write_rounds(st, names, rng, helpers, before)
        st._db.compact_range(None, None)
        assert "compaction_style=kCompactionStyleUniversal" in open(_latest_options(path)).read()
    with GraphStore(path, StoreOptions(mem_dim=8, compaction="level", cache_capacity=10_000), create=False) as st:
        assert _rows_intact(st, names, helpers, before)
        _write_rounds(st, names, rng, helpers, before)
        st._db.compact_range(None, None)
        assert "compaction_style=kCompactionStyleLevel" in open(_latest_options(path)).read()
    with GraphStore(path, StoreOptions(mem_dim=8, compaction="universal",
                                       cache_capacity=10_000), create=False) as st:
        assert _rows_intact(st, names, helpers, before)


def _rows_intact(st: GraphStore, names: list[str], helpers, before: dict) -> bool:
    slots = st.peek_slots(st.resolve(names))
    return all(helpers.row_bytes(st.table, int(s)) == before[n] for n, s in zip(names, slots))


def _latest_options(path) -> str:
    return str(max(path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1])))


def test_bad_compaction_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="compaction must be one of"):
        GraphStore(tmp_path / "s", StoreOptions(compaction="fifo"))
    assert not (tmp_path / "s").exists()  # checked before anything is created
