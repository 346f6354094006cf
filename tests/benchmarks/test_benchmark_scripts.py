"""The benchmark scripts still run, end to end, on tiny inputs.

The README's numbers come from these scripts; a script that no longer runs leaves them
unreproducible (``bench_embedded.py`` broke once when the Engine started asking
detectors for traced scores and nothing noticed). Each runs as the README runs it, as a
subprocess, with the smallest sizes its options allow, and its JSON is checked for
sane values. Rates are not checked: timed unit tests flake on shared machines.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stdout


def positive(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_bench_embedded_runs_ours_and_river(tmp_path) -> None:
    out = tmp_path / "embedded.json"
    run_script("bench_embedded.py", "--events", "3000", "--river-events", "1000", "--out", str(out))
    r = json.loads(out.read_text())
    assert r["ours_full_stream"]["events"] == 3000 and r["river_prefix"]["events"] == 1000
    assert all(positive(r[k]["events_per_second"]) for k in
               ("ours_full_stream", "ours_full_stream_commit_every_batch", "ours_prefix", "river_prefix"))
    assert positive(r["ratio_vs_river"]) and positive(r["detector_only"]["ratio"])


@pytest.mark.slow
def test_bench_tgn_runs_both_sides() -> None:
    pytest.importorskip("torch_geometric")
    r = json.loads(run_script("bench_tgn.py", "--events", "2000", "--warmup", "200", "--repeats", "1"))
    assert positive(r["ours"]["events_per_s"]) and positive(r["pyg_reference"]["events_per_s"])
    assert positive(r["ratio_ours_over_pyg"])


@pytest.mark.slow
def test_bench_tgn_scale_quick_writes_json_and_plot(tmp_path) -> None:
    out = tmp_path / "scale.json"
    run_script("bench_tgn_scale.py", "--quick", "--out", str(out))
    r = json.loads(out.read_text())
    assert [s["nodes"] for s in r["sizes"]] == [2000, 20000]
    assert all(positive(s["events_per_s"]) and s["disk_bytes_per_node"] > 0 for s in r["sizes"])
    assert out.with_suffix(".png").stat().st_size > 0
    # committed results carry the options, not where this machine put its files
    assert "out" not in r["config"] and str(tmp_path) not in out.read_text()
    assert r["machine"]["cpus"] >= 1


@pytest.mark.slow
def test_profile_tgn_scale_times_the_window_on_a_copy_of_a_kept_store(tmp_path) -> None:
    import os

    work = tmp_path / "w"
    run_script("bench_tgn_scale.py", "--sizes", "2000", "--rounds", "1", "--events", "3000", "--warmup", "1000",
               "--cache-capacity", "5000", "--prepop-touches", "4", "--keep", "--workdir", str(work),
               "--out", str(tmp_path / "build.json"))
    store = work / "n2000"
    before = sorted(p.name for p in store.iterdir())
    pin = ["--pin", str(min(os.sched_getaffinity(0)))] if len(os.sched_getaffinity(0)) >= 2 else []
    out = tmp_path / "profile.json"
    run_script("profile_tgn_scale.py", "--store", str(store), "--events", "3000", "--warmup", "1000",
               "--no-compactions", *pin, "--out", str(out))
    r = json.loads(out.read_text())
    assert r["nodes"] == 2000 and r["events"] == 3000 and positive(r["events_per_s"])
    us = r["timed_us_per_event"]
    assert positive(us["TGN.embed"]) and positive(us["GraphStore.commit"])
    assert us["TGNRuntime.forward"] >= us["TGN.embed"]  # inclusive times
    assert r["timed_calls"]["TGNRuntime.forward"] == 3  # the timed window only: 3 batches of 1,000
    assert r["rocksdb_during_timed_events"]["write_gb"] >= 0
    assert (r["pinning"] is not None) == bool(pin)
    assert sorted(p.name for p in store.iterdir()) == before  # it worked on a copy
    assert not [p for p in work.iterdir() if p.name.startswith("profile-")]  # and removed it


def test_bench_store_write_order_times_every_mode(tmp_path) -> None:
    out = tmp_path / "order.json"
    run_script("bench_store_write_order.py", "--nodes", "3000", "--batches", "4", "--batch", "200", "--out", str(out))
    r = json.loads(out.read_text())["sizes"]["3000"]
    assert set(r) == {"random", "sorted", "sorted+hint"}
    assert all(positive(m["us_per_put_median"]) and m["batches"] == 4 for m in r.values())
    assert r["random"]["ratio_vs_random"] == 1.0


@pytest.mark.slow
def test_soak_with_the_tgn_reports_bounded_pools(tmp_path) -> None:
    out = tmp_path / "soak.json"
    run_script("soak.py", "--minutes", "0.1", "--tgn", "--mem-cache-capacity", "20000", "--quiet",
               "--out", str(out))
    r = json.loads(out.read_text())
    assert r["events"] > 0 and r["config"]["tgn"] is True
    assert r["bounded_by_design"]["resident_rows_end"] <= r["bounded_by_design"]["cache_capacity_rows"]
    # the id cache holds ids up to the larger of the row and memory caches, and reports its arrays
    assert 0 < r["bounded_by_design"]["id_cache_ids_end"] <= max(20000, r["config"]["cache_capacity"])
    assert r["bounded_by_design"]["id_cache_mb_end"] > 0


def test_common_helper_doctest_and_local_options() -> None:
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    failed, tried = doctest.testmod(mod)
    assert tried > 0 and failed == 0
    import argparse

    a = argparse.Namespace(sizes="1,2", out="/x/y.json", workdir="/w", keep=True, child=None, seed=3)
    assert mod.config(a) == {"sizes": "1,2", "seed": 3}
    assert mod.config(a, drop=("seed",)) == {"sizes": "1,2"}
