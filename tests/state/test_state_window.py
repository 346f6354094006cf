"""Windows of recent keys (state.window) on a real RocksDB store: committed with the state, FIFO, bounded."""

from __future__ import annotations

import pytest

from riskgraph.state.store import GraphStore


def test_window_survives_reopen_and_keeps_only_committed_keys(tmp_path):
    with GraphStore(tmp_path / "s") as store:
        w = store.window("ids", capacity=3)
        for k in (b"a", b"b"):
            assert w.add(k, k.upper())
        store.commit()
        w.add(b"c")  # never committed: a crash would lose it together with the state it belongs to
    with GraphStore(tmp_path / "s") as store:
        w = store.window("ids", capacity=3)
        assert list(w.keys()) == [b"a", b"b"] and w.get(b"b") == b"B" and b"c" not in w


def test_window_evicts_oldest_on_disk_too(tmp_path):
    with GraphStore(tmp_path / "s") as store:
        w = store.window("ids", capacity=2)
        for i in range(5):
            w.add(b"k%d" % i)
            store.commit()
        assert list(w.keys()) == [b"k3", b"k4"]
    with GraphStore(tmp_path / "s") as store:
        assert list(store.window("ids", capacity=2).keys()) == [b"k3", b"k4"]
        rows = [k for k in store._check_open().keys(from_key=b"W") if k.startswith(b"W")]
        assert len(rows) == 2  # evicted keys were deleted, not left behind


def test_window_reopened_smaller_drops_oldest_and_windows_are_separate(tmp_path):
    with GraphStore(tmp_path / "s") as store:
        a, b = store.window("a", 10), store.window("b", 10)
        for i in range(6):
            a.add(b"%d" % i)
        b.add(b"0")
        store.commit()
    with GraphStore(tmp_path / "s") as store:
        a = store.window("a", 4)
        assert list(a.keys()) == [b"2", b"3", b"4", b"5"] and list(store.window("b", 10).keys()) == [b"0"]
        store.commit()
    with GraphStore(tmp_path / "s") as store:
        assert len(store.window("a", 10)) == 4
        with pytest.raises(ValueError, match="capacity 10"):
            store.window("a", 5)


def test_window_rejects_bad_names_and_keys(tmp_path):
    with GraphStore(tmp_path / "s") as store:
        with pytest.raises(ValueError, match="window name"):
            store.window("a/b", 3)
        with pytest.raises(ValueError, match="at most 255"):
            store.window("ok", 3).add(b"x" * 256)


def test_id_window_keeps_one_segment_per_commit_and_deletes_what_left(tmp_path):
    with GraphStore(tmp_path / "s") as store:
        w = store.id_window("ev", capacity=5)
        for batch in (["1", "2", "3"], ["4", "5"], ["6", "7", "8"], ["9"]):
            assert w.add_many(batch) == list(range(len(batch)))
            store.commit()
        assert list(w) == ["5", "6", "7", "8", "9"]
        w.add_many(["10"])  # never committed
        segs = [k for k in store._check_open().keys(from_key=b"W") if k.startswith(b"Wev/")]
        assert len(segs) == 3  # [1, 2, 3] left the window entirely; [4, 5] still holds 5
    with GraphStore(tmp_path / "s") as store:
        w = store.id_window("ev", capacity=5)
        assert list(w) == ["5", "6", "7", "8", "9"] and "10" not in w and "4" not in w
        assert w.add_many(["9", "10", "10"]) == [1]
        with pytest.raises(ValueError, match="RecentIds"):
            store.window("ev", 5)


def test_id_window_reopened_smaller_keeps_the_newest(tmp_path):
    with GraphStore(tmp_path / "s") as store:
        store.id_window("ev", capacity=100).add_many([f"e{i}" for i in range(50)])
        store.commit()
    with GraphStore(tmp_path / "s") as store:
        w = store.id_window("ev", capacity=10)
        assert list(w) == [f"e{i}" for i in range(40, 50)]
        store.commit()
    with GraphStore(tmp_path / "s") as store:
        assert list(store.id_window("ev", capacity=100)) == [f"e{i}" for i in range(40, 50)]


def test_id_window_is_exact_for_any_string(tmp_path):
    ids = ["", "é", "\udcff", "a\nb", "x" * 256, "e1", "E1"]
    with GraphStore(tmp_path / "s") as store:
        assert store.id_window("ev", capacity=10).add_many(ids + ids) == list(range(len(ids)))
        store.commit()
    with GraphStore(tmp_path / "s") as store:
        assert list(store.id_window("ev", capacity=10)) == ids
