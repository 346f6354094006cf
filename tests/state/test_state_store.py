"""GraphStore on a real RocksDB in tmp_path: ids, rows, commits, reopen, crashes, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rocksdict import Options, Rdict

from riskgraph.features.layout import Acc, NAN_COLUMNS
from riskgraph.state.codecs import CorruptRecordError, decode_count, encode_count, record_size
from riskgraph.state.keys import META_LAYOUT, META_SCHEMA, node_key
from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore, StoreMismatchError

REPO = Path(__file__).resolve().parents[2]


def _snapshot(store: GraphStore, names: list[str], helpers) -> dict[str, bytes]:
    ids = store.resolve(names)
    slots = store.peek_slots(ids)
    return {n: helpers.row_bytes(store.table, int(s)) for n, s in zip(names, slots)}


def test_ids_are_dense_in_order_of_first_sight(tmp_path):
    with GraphStore(tmp_path / "s") as st:
        assert st.resolve(["b", "a", "b", "c"]).tolist() == [0, 1, 0, 2]
        assert st.resolve(["c", "d"]).tolist() == [2, 3]
        assert st.resolve([]).tolist() == []
        assert st.node_count == 4
        assert st.external_id(1) == "a"
        assert st.external_ids(np.array([3, 0])) == ["d", "b"]
        st.commit()
        assert st.resolve(["e", "a"]).tolist() == [4, 1]
        assert st.external_ids(np.array([4, 2])) == ["e", "c"]  # pending and committed together


def test_new_rows_are_fresh_and_duplicates_share_a_slot(tmp_path):
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=3)) as st:
        ids = st.resolve(["x", "y", "x"])
        s = st.slots(ids)
        assert s[0] == s[2] and s[0] != s[1]
        t = st.table
        assert np.isnan(t.acc[s[1], list(NAN_COLUMNS)]).all()
        assert t.acc[s[1], Acc.N_OUT] == 0 and t.ring_n[s[1]] == 0
        assert (t.ring_nbr[s[1]] == -1).all() and t.mem.shape[1] == 3
        assert st.n_dirty == 2


def test_commit_then_reopen_restores_everything(tmp_path, rng, helpers):
    path = tmp_path / "s"
    names = [f"acct-{i}" for i in range(300)]
    with GraphStore(path, StoreOptions(mem_dim=4)) as st:
        slots = st.slots(st.resolve(names))
        helpers.fill_random(st.table, slots, rng)
        st.commit(positions={"events/0": 1234, "events/1": 7}, blobs={"detector": b"\x00state\xff", "e": b""})
        before = _snapshot(st, names, helpers)
        assert st.positions() == {"events/0": 1234, "events/1": 7}
    with GraphStore(path, StoreOptions(mem_dim=4), create=False) as st:
        assert st.node_count == 300
        assert st.resolve(names).tolist() == list(range(300))
        assert st.node_count == 300  # nothing new was created by resolving known names
        assert _snapshot(st, names, helpers) == before
        assert st.positions() == {"events/0": 1234, "events/1": 7}
        assert st.blob("detector") == b"\x00state\xff" and st.blob("e") == b"" and st.blob("none") is None
        assert st.external_ids(np.arange(300)) == names


def test_close_without_commit_keeps_only_the_last_commit(tmp_path, rng, helpers):
    path = tmp_path / "s"
    names = [f"n{i}" for i in range(40)]
    with GraphStore(path) as st:
        helpers.fill_random(st.table, st.slots(st.resolve(names)), rng)
        st.commit(positions={"events/0": 10}, blobs={"b": b"one"})
        committed = _snapshot(st, names, helpers)
        # a batch that never commits: changed rows, new entities, no positions
        s = st.slots(st.resolve(names[:20] + ["late-1", "late-2"]))
        st.table.acc[s, 0] = 99.0
        st.table.ring_n[s] += 5
    with GraphStore(path, create=False) as st:
        assert st.positions() == {"events/0": 10} and st.blob("b") == b"one"
        assert st.node_count == 40
        assert _snapshot(st, names, helpers) == committed
        assert st.resolve(["late-2", "late-1"]).tolist() == [40, 41]  # ids re-assigned densely


def test_killed_process_keeps_exactly_the_committed_state(tmp_path):
    path = tmp_path / "s"
    child = textwrap.dedent(f"""
        import os, numpy as np
        from riskgraph.state.store import GraphStore
        st = GraphStore({str(path)!r})
        s = st.slots(st.resolve(["a", "b"]))
        st.table.acc[s, 0] = [1.0, 2.0]
        st.commit(positions={{"events/0": 2}})
        s = st.slots(st.resolve(["a", "c"]))
        st.table.acc[s, 0] = [50.0, 60.0]
        os._exit(3)  # dies without commit or close, as a crashed worker would
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", child], env=env, cwd=REPO, capture_output=True, timeout=120)
    assert r.returncode == 3, r.stderr.decode()
    with GraphStore(path, create=False) as st:
        assert st.positions() == {"events/0": 2} and st.node_count == 2
        s = st.peek_slots(st.resolve(["a", "b"]))
        assert st.table.acc[s, 0].tolist() == [1.0, 2.0]


def test_mismatched_mem_dim_and_layout_are_refused(tmp_path):
    path = tmp_path / "s"
    GraphStore(path, StoreOptions(mem_dim=8)).close()
    with pytest.raises(StoreMismatchError, match="mem_dim=8.*mem_dim=0"):
        GraphStore(path)
    db = Rdict(str(path), Options(raw_mode=True))
    db[META_LAYOUT] = b"0123456789abcdef"
    db.close()
    with pytest.raises(StoreMismatchError, match="node layout 0123456789abcdef.*start from an empty state directory"):
        GraphStore(path, StoreOptions(mem_dim=8))
    db = Rdict(str(path), Options(raw_mode=True))
    db[META_SCHEMA] = encode_count(99)
    db.close()
    with pytest.raises(StoreMismatchError, match="format v99"):
        GraphStore(path, StoreOptions(mem_dim=8))


def test_rows_with_a_zero_tail_are_stored_trimmed_and_read_back_whole(tmp_path):
    path = tmp_path / "s"
    with GraphStore(path, StoreOptions(mem_dim=6, mem_cache_width=2, cache_capacity=2)) as st:
        s = st.slots(st.resolve(["folded", "pending", "negzero"]))
        st.table.mem[s] = [[1, 2, 0, 0, 0, 0], [3, 4, 0, 0, 5, 0], [6, 7, 0, -0.0, 0, 0]]
        st.commit()
    db = Rdict(str(path), Options(raw_mode=True))
    assert [len(db[node_key(i)]) for i in range(3)] == [record_size(6) - 16, record_size(6), record_size(6)]
    db.close()
    for width in (2, None):  # any store reads both kinds
        with GraphStore(path, StoreOptions(mem_dim=6, mem_cache_width=width, cache_capacity=2), create=False) as st:
            s = st.peek_slots(np.array([0, 1]))
            got = np.concatenate([st.table.mem[s], st.peek_mem(np.array([2]))])
            want = np.array([[1, 2, 0, 0, 0, 0], [3, 4, 0, 0, 5, 0], [6, 7, 0, -0.0, 0, 0]], np.float32)
            assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist()  # -0.0 kept


def test_a_v1_store_is_read_and_marked_v2(tmp_path):
    path = tmp_path / "s"
    with GraphStore(path, StoreOptions(mem_dim=4)) as st:
        s = st.slots(st.resolve(["a"]))
        st.table.mem[s] = [[1, 0, 0, 0]]
        st.commit()
    db = Rdict(str(path), Options(raw_mode=True))  # what the v1 build wrote: schema 1, whole v1 records
    db[META_SCHEMA] = encode_count(1)
    db[node_key(0)] = (1).to_bytes(4, "little") + db[node_key(0)][4:]
    db.close()
    with GraphStore(path, StoreOptions(mem_dim=4, mem_cache_width=1), create=False) as st:
        assert st.peek_mem(np.array([0])).tolist() == [[1.0, 0.0, 0.0, 0.0]]
        st.slots(np.array([0]))
        st.commit()  # now written trimmed: a v1 build must not open this store any more
    db = Rdict(str(path), Options(raw_mode=True))
    assert decode_count(db[META_SCHEMA]) == 2 and len(db[node_key(0)]) == record_size(4) - 12
    db.close()


def test_opening_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="create=False"):
        GraphStore(tmp_path / "missing", create=False)
    db = Rdict(str(tmp_path / "other"), Options(raw_mode=True))
    db[b"somebody else's key"] = b"v"
    db.close()
    with pytest.raises(StoreMismatchError, match="not a graph store"):
        GraphStore(tmp_path / "other")
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="mem_dim"):
            GraphStore(tmp_path / "x", StoreOptions(mem_dim=bad))
    with pytest.raises(ValueError, match="cache_capacity"):
        GraphStore(tmp_path / "x", StoreOptions(cache_capacity=0))


@pytest.mark.parametrize(
    "value, match",
    [
        (lambda good: good[:-3], "bytes, expected"),
        (lambda good: good + b"\x00", "bytes, expected"),
        (lambda good: (7).to_bytes(4, "little") + good[4:], "format version 7"),
        (lambda good: good[:4] + (2).to_bytes(4, "little") + good[8:], "mem_dim 2"),
    ],
)
def test_corrupt_node_records_give_clear_errors(tmp_path, value, match):
    path = tmp_path / "s"
    with GraphStore(path) as st:
        st.slots(st.resolve(["a", "b"]))
        st.commit()
    db = Rdict(str(path), Options(raw_mode=True))
    good = db[node_key(1)]
    assert len(good) == record_size(0)
    db[node_key(1)] = value(good)
    db.close()
    with GraphStore(path, create=False) as st:
        with pytest.raises(CorruptRecordError, match=f"internal id 1: .*{match}"):
            st.peek_slots(np.array([0, 1]))
        with pytest.raises(CorruptRecordError, match="internal id 1"):
            list(st.iter_records())
        # the failed load left nothing half-loaded: the good row still loads alone
        s = st.peek_slots(np.array([0]))
        assert np.isnan(st.table.acc[s[0], Acc.FIRST_SEEN])


def test_bad_inputs_raise_before_anything_changes(tmp_path):
    with GraphStore(tmp_path / "s") as st:
        st.slots(st.resolve(["a"]))
        for bad in ([""], [5], [None], [b"bytes"], [["x"]], "abc", ["\ud800"]):
            with pytest.raises(ValueError):
                st.resolve(bad)
        assert st.node_count == 1
        for bad in (np.array([1]), np.array([-1]), np.array([0.0]), np.array([[0]])):
            with pytest.raises(ValueError, match="ids"):
                st.slots(bad)
        for positions, blobs, match in (
            ({"events/0": -1}, None, "position"),
            ({"events/0": 1.0}, None, "position"),
            ({"": 1}, None, "position name"),
            (None, {"b": "text"}, "blob 'b' must be bytes"),
            (None, {"": b"x"}, "blob name"),
        ):
            with pytest.raises(ValueError, match=match):
                st.commit(positions=positions, blobs=blobs)
        assert st.n_dirty == 1 and st.positions() == {}  # the failed commits wrote nothing
        st.commit(positions={"events/0": 1})
        assert st.n_dirty == 0 and st.positions() == {"events/0": 1}


def test_iter_records_sees_resident_evicted_and_uncommitted_rows(tmp_path, rng, helpers):
    names = [f"n{i}" for i in range(30)]
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=2, cache_capacity=4)) as st:
        for k in range(0, 30, 3):
            s = st.slots(st.resolve(names[k:k + 3]))
            helpers.fill_random(st.table, s, rng)
            st.commit()
        last = st.slots(st.resolve(["n0", "new"]))  # n0 changed and a new node, both uncommitted
        st.table.acc[last, 0] = [-5.0, -6.0]
        recs = list(st.iter_records(chunk=7))
        assert [r[0] for r in recs] == list(range(31))
        assert [r[1] for r in recs] == names + ["new"]
        assert recs[0][2]["acc"][0] == -5.0 and recs[30][2]["acc"][0] == -6.0
        assert recs[30][2]["mem"].shape == (2,)
        for i, _, rec in recs[1:30]:  # every other row equals what peek_slots loads
            s = int(st.peek_slots(np.array([i]))[0])
            assert rec["acc"].tobytes() == st.table.acc[s].tobytes()
            assert rec["ring_nbr"].tolist() == st.table.ring_nbr[s].tolist()


def test_closed_store_refuses_use(tmp_path):
    st = GraphStore(tmp_path / "s")
    st.close()
    st.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        st.resolve(["a"])
    with pytest.raises(RuntimeError, match="closed"):
        st.commit()
    assert "closed" in repr(st)


def test_compression_is_checked_and_either_kind_reads_the_other(tmp_path, rng, helpers):
    with pytest.raises(ValueError, match="compression"):
        GraphStore(tmp_path / "bad", StoreOptions(compression="zstd"))
    assert not (tmp_path / "bad").exists()
    names = [f"n{i}" for i in range(50)]
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=3, compression="lz4")) as st:
        helpers.fill_random(st.table, st.slots(st.resolve(names)), rng)
        st.commit(positions={"events/0": 50})
        before = _snapshot(st, names, helpers)
        st.flush()  # into an LZ4-compressed file
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=3, compression="none"), create=False) as st:
        assert _snapshot(st, names, helpers) == before and st.positions() == {"events/0": 50}


def test_reopen_applies_this_opens_settings_not_the_ones_on_disk(tmp_path):
    """rocksdict opens an existing database with the options of its OPTIONS file unless
    told otherwise: the block cache fell back to RocksDB's 8 MB and the compression to
    the creating open's. Both must follow the settings of the open that is running."""
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=64, block_cache_mb=16, compression="none")) as st:
        assert st.block_cache_capacity == 16 << 20
        st.slots(st.resolve(["x"]))
        st.commit()
    with GraphStore(tmp_path / "s", StoreOptions(mem_dim=64, block_cache_mb=48,
                                                 compression="lz4"), create=False) as st:
        assert st.block_cache_capacity == 48 << 20
        before = {f for f in os.listdir(tmp_path / "s") if f.endswith(".sst")}
        names = [f"z{i}" for i in range(2000)]
        st.slots(st.resolve(names))  # fresh rows: mostly zeros and NaNs, very compressible
        st.commit()
        st.flush()
        new = [f for f in os.listdir(tmp_path / "s") if f.endswith(".sst") and f not in before]
        raw = len(names) * record_size(64)
        assert new and sum(os.path.getsize(tmp_path / "s" / f) for f in new) < raw / 3
