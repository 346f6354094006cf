"""Checkpoints hold the committed state at their time; restore reproduces it elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore


def _state(store: GraphStore, helpers) -> tuple:
    ids = np.arange(store.node_count)
    ext = store.external_ids(ids)
    rows = [helpers.row_bytes(store.table, int(s)) for s in store.peek_slots(ids)]
    return store.node_count, ext, rows, store.positions(), store.blob("det")


def test_restore_equals_the_committed_state_at_checkpoint_time(tmp_path, rng, helpers):
    with GraphStore(tmp_path / "live", StoreOptions(mem_dim=3, cache_capacity=16)) as st:
        helpers.fill_random(st.table, st.slots(st.resolve([f"a{i}" for i in range(50)])), rng)
        st.commit(positions={"events/0": 50}, blobs={"det": b"v1"})
        expected = _state(st, helpers)
        # uncommitted work at checkpoint time must not be in the checkpoint
        s = st.slots(st.resolve(["a1", "uncommitted"]))
        st.table.acc[s, 0] = 1e9
        st.checkpoint(tmp_path / "ckpt" / "1")
        st.commit(positions={"events/0": 52}, blobs={"det": b"v2"})  # life goes on after it
        helpers.fill_random(st.table, st.slots(st.resolve([f"b{i}" for i in range(20)])), rng)
        st.commit(positions={"events/0": 72})
        live_after = _state(st, helpers)
    with GraphStore.restore(tmp_path / "ckpt" / "1", tmp_path / "restored") as r:
        assert r.mem_dim == 3  # taken from the checkpoint
        assert _state(r, helpers) == expected
        assert r.resolve(["uncommitted"]).tolist() == [50]
    with GraphStore(tmp_path / "live", StoreOptions(mem_dim=3), create=False) as st:
        assert _state(st, helpers) == live_after  # the checkpoint did not disturb the live store


def test_restore_refuses_to_clobber_unless_asked(tmp_path):
    with GraphStore(tmp_path / "live") as st:
        st.slots(st.resolve(["a"]))
        st.commit(positions={"p": 1})
        st.checkpoint(tmp_path / "ck")
        with pytest.raises(FileExistsError, match="already exists"):
            st.checkpoint(tmp_path / "ck")
        st.commit(positions={"p": 2})
    target = tmp_path / "target"
    target.mkdir()
    (target / "junk").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        GraphStore.restore(tmp_path / "ck", target)
    with GraphStore.restore(tmp_path / "ck", target, overwrite=True) as r:
        assert r.positions() == {"p": 1}
    with pytest.raises(FileNotFoundError, match="not a RocksDB checkpoint"):
        GraphStore.restore(tmp_path / "nothing", tmp_path / "t2")
    (tmp_path / "empty").mkdir()
    with GraphStore.restore(tmp_path / "ck", tmp_path / "empty") as r:  # an empty dir is fine
        assert r.node_count == 1
    # a restore can be checkpointed and restored again
    with GraphStore.restore(tmp_path / "ck", tmp_path / "t3", StoreOptions(mem_dim=0, cache_capacity=16)) as r:
        r.checkpoint(tmp_path / "ck2")
    with GraphStore.restore(tmp_path / "ck2", tmp_path / "t4") as r:
        assert r.positions() == {"p": 1} and r.external_id(0) == "a"
