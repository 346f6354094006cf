"""Direct I/O for RocksDB's flushes and compactions: chosen by a probe, data intact through compactions."""

from __future__ import annotations

import numpy as np
import pytest

import riskgraph.state.store as store_mod
from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore, direct_io_supported


def test_auto_uses_direct_io_where_the_file_system_takes_it_and_rows_survive_compaction(tmp_path, helpers) -> None:
    path = tmp_path / "s"
    rng = np.random.default_rng(3)
    with GraphStore(tmp_path / "default") as st:
        assert st.direct_io is False  # off unless asked for
    with GraphStore(path, StoreOptions(mem_dim=8, direct_io="auto")) as st:
        assert st.direct_io == direct_io_supported(str(path))
        names = [f"n{i}" for i in range(3000)]
        ids = st.resolve(names)
        slots = st.slots(ids)
        helpers.fill_random(st.table, slots, rng)
        st.table.mem[slots] = rng.normal(size=(len(slots), 8)).astype(np.float32)
        before = {n: helpers.row_bytes(st.table, int(s)) for n, s in zip(names, slots)}
        st.commit()
        for round_ in range(3):  # several flushed files, then a full compaction through direct I/O
            again = st.slots(st.resolve(names[round_::3]))
            st.table.mem[again] += 1.0
            for n, s in zip(names[round_::3], again):
                before[n] = helpers.row_bytes(st.table, int(s))
            st.commit()
            st.flush()
        st._db.compact_range(None, None)
    assert not (path / ".direct-io-probe").exists()
    with GraphStore(path, StoreOptions(mem_dim=8, cache_capacity=10_000), create=False) as st:
        slots = st.peek_slots(st.resolve(names))
        assert all(helpers.row_bytes(st.table, int(s)) == before[n] for n, s in zip(names, slots))


def test_a_file_system_refusing_o_direct_falls_back_under_auto_and_is_an_error_under_on(tmp_path, monkeypatch) -> None:
    # no file system here refuses O_DIRECT (tmpfs takes it since Linux 6.6): stand one in
    monkeypatch.setattr(store_mod, "direct_io_supported", lambda path: False)
    with GraphStore(tmp_path / "a", StoreOptions(direct_io="auto")) as st:
        assert st.direct_io is False
        st.resolve(["x"])
        st.commit()
    with pytest.raises(ValueError, match="refuses O_DIRECT"):
        GraphStore(tmp_path / "b", StoreOptions(direct_io="on"))
    with GraphStore(tmp_path / "c", StoreOptions(direct_io="off")) as st:
        assert st.direct_io is False


def test_bad_mode_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="direct_io must be one of"):
        GraphStore(tmp_path / "s", StoreOptions(direct_io="yes"))
    assert not (tmp_path / "s").exists()  # checked before anything is created
