"""Opening a store directory that cannot be one: one clear error, never RocksDB's bare Exception.

All on real RocksDB: a second process holding the lock, damaged files, someone's other files.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from riskgraph.state.store import GraphStore, StoreCorruptError, StoreLockedError, StoreOpenError


def make_store(path) -> None:
    with GraphStore(path) as st:
        st.slots(st.resolve(["alice", "bob"]))
        st.commit(positions={"file/0": 2})


def test_a_directory_of_other_files_is_refused_and_left_alone(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("x,y\n")
    with pytest.raises(StoreOpenError, match=r"not a state directory: it holds a\.csv, b\.csv"):
        GraphStore(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]  # no RocksDB files put there


def test_an_empty_or_missing_directory_becomes_a_store(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "dotted").mkdir()
    (tmp_path / "dotted" / ".gitkeep").write_text("")
    for d in ("empty", "missing/deeper", "dotted"):
        with GraphStore(tmp_path / d) as st:
            assert st.node_count == 0


def test_a_worker_state_dir_with_feedback_but_no_database_yet_opens(tmp_path):
    (tmp_path / "feedback.jsonl").write_text("{}\n")
    (tmp_path / "faust").mkdir()
    with GraphStore(tmp_path) as st:
        assert st.positions() == {}


def test_a_file_is_not_a_state_directory(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(StoreOpenError, match="is a file, not a state directory"):
        GraphStore(f)


def test_a_store_locked_by_another_process(tmp_path):
    make_store(tmp_path / "st")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from riskgraph.state.store import GraphStore
            st = GraphStore({str(tmp_path / "st")!r})
            print("open", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError, match="in use by another process") as ei:
            GraphStore(tmp_path / "st")
        assert "\n" not in str(ei.value)
    finally:
        holder.communicate("", timeout=30)
    with GraphStore(tmp_path / "st") as st:  # the lock goes with the process
        assert st.positions() == {"file/0": 2}


def test_the_same_store_twice_in_one_process_is_locked_too(tmp_path):
    with GraphStore(tmp_path):
        with pytest.raises(StoreLockedError):
            GraphStore(tmp_path)


@pytest.mark.parametrize("damage", ["current", "manifest", "sst"])
def test_damaged_files_say_corrupt_in_one_line(tmp_path, damage):
    make_store(tmp_path)
    with GraphStore(tmp_path) as st:  # an .sst file: flush the memtable
        st.flush()
    if damage == "current":
        (tmp_path / "CURRENT").write_text("garbage\n")
    else:
        pattern = "MANIFEST-*" if damage == "manifest" else "*.sst"
        files = sorted(tmp_path.glob(pattern))
        assert files
        for f in files:
            f.write_bytes(np.random.default_rng(0).bytes(100))
    with pytest.raises(StoreCorruptError, match="is corrupt") as ei:
        GraphStore(tmp_path)
    assert "\n" not in str(ei.value)
