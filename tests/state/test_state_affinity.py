"""Pinning the scoring thread and RocksDB's background threads apart, on a real store."""

from __future__ import annotations

import os

import pytest

from riskgraph.jobs import open_store
from riskgraph.settings import Settings
from riskgraph.state.affinity import ROCKSDB_THREAD_PREFIX, TASKS, ThreadPinner, supported
from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore

pytestmark = pytest.mark.skipif(not supported() or len(os.sched_getaffinity(0)) < 2,
                                reason="needs Linux and at least two CPUs")


def _threads() -> dict[int, tuple[str, frozenset[int]]]:
    out = {}
    for tid in os.listdir(TASKS):
        try:
            with open(f"{TASKS}/{tid}/comm") as f:
                name = f.read().strip()
            out[int(tid)] = (name, frozenset(os.sched_getaffinity(int(tid))))
        except (OSError, ProcessLookupError):
            pass
    return out


def _rocksdb_cpus() -> set[frozenset[int]]:
    return {cpus for name, cpus in _threads().values() if name.startswith(ROCKSDB_THREAD_PREFIX)}


@pytest.fixture
def allowed():
    before = frozenset(os.sched_getaffinity(0))
    yield sorted(before)
    os.sched_setaffinity(0, before)  # whatever a failing test left behind


def test_store_pins_scoring_thread_and_rocksdb_threads_apart_and_close_releases_them(tmp_path, allowed):
    cpu = allowed[-1]
    others = frozenset(allowed) - {cpu}
    with GraphStore(tmp_path / "s", StoreOptions(pin_scoring_cpu=cpu)) as st:
        st.resolve([f"n{i}" for i in range(100)])
        st.commit()
        st.flush()  # a memtable flush: RocksDB's background threads have work
        st.resolve(["late"])
        st.commit()
        assert os.sched_getaffinity(0) == {cpu}
        rocks = _rocksdb_cpus()
        assert rocks == {others}, rocks  # every RocksDB thread, none left on the scoring CPU
        assert st.pinning["scoring_cpu"] == cpu and st.pinning["background_cpus"] == sorted(others)
        assert "scoring" in st.pinning["threads"] and any(
            t.startswith(ROCKSDB_THREAD_PREFIX) for t in st.pinning["threads"])
    assert st.pinning is None
    assert os.sched_getaffinity(0) == set(allowed)
    assert _rocksdb_cpus() <= {frozenset(allowed)}


def test_default_pins_nothing(tmp_path, allowed):
    with GraphStore(tmp_path / "s") as st:
        st.resolve(["a"])
        st.commit()
        assert st.pinning is None
        assert os.sched_getaffinity(0) == set(allowed)


def test_a_cpu_the_process_may_not_use_is_a_clear_error_and_leaves_the_store_closed(tmp_path, allowed):
    bad = max(allowed) + 1000
    with pytest.raises(ValueError, match=r"CPUs this process may use"):
        GraphStore(tmp_path / "s", StoreOptions(pin_scoring_cpu=bad))
    assert os.sched_getaffinity(0) == set(allowed)
    with GraphStore(tmp_path / "s", create=False) as st:  # closed again: RocksDB's lock is free
        assert st.node_count == 0
    with pytest.raises(ValueError, match=r"CPUs this process may use"):
        ThreadPinner(True)  # type: ignore[arg-type]  # a bool is not a CPU number


def test_one_allowed_cpu_is_a_clear_error(allowed):
    os.sched_setaffinity(0, {allowed[0]})
    with pytest.raises(ValueError, match=r"at least two CPUs"):
        ThreadPinner(allowed[0])


def test_refresh_pins_a_thread_that_commits_later(tmp_path, allowed):
    import threading

    cpu = allowed[0]
    st = GraphStore(tmp_path / "s", StoreOptions(pin_scoring_cpu=cpu))
    seen: dict[str, object] = {}

    def other() -> None:  # e.g. a worker that hands scoring to another thread after opening
        st.resolve(["x"])
        st.commit()
        seen["cpus"] = os.sched_getaffinity(0)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    st.close()
    assert seen["cpus"] == {cpu}


def test_settings_turn_pinning_on_for_the_jobs_store(tmp_path, allowed):
    assert Settings.from_env({}).scoring_cpu is None
    s = Settings.from_env({"RISKGRAPH_PIN_SCORING_CPU": str(allowed[0])})
    assert s.scoring_cpu == allowed[0]

    class _Model:
        mem_dim, mem_cache_width = 0, None

    store, tmp = open_store(s, _Model(), str(tmp_path / "s"))  # type: ignore[arg-type]
    try:
        assert tmp is None and store.pinning is not None and store.pinning["scoring_cpu"] == allowed[0]
    finally:
        store.close()
    assert os.sched_getaffinity(0) == set(allowed)
