"""``benchmarks/quality.py`` end to end on a tiny simulated world and a tiny hand-made edge list:
the JSON's shape, baselines and riskgraph components with intervals, and a baseline that the
script computed checked against one computed here by hand."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.benchmarks.test_benchmark_scripts import ROOT, run_script

T0 = 1_600_000_000


def edge_list(path: Path, n_users: int = 40, n_bad: int = 6, rows: int = 400, seed: int = 2) -> tuple[Path, Path]:
    """A signed rating log (``rater,ratee,rating,time``: no kind, no id) and an ``id,is_fraud``
    label file in -1/1 where the bad users receive mostly negative ratings."""
    rng = np.random.default_rng(seed)
    lines, t = ["rater,ratee,rating,time"], T0
    for _ in range(rows):
        t += int(rng.integers(1, 900))
        a, b = rng.choice(n_users, 2, replace=False)
        neg = b < n_bad and rng.random() < 0.7
        lines.append(f"u{a},u{b},{int(rng.integers(-10, -1)) if neg else int(rng.integers(-1, 11))},{t}")
    path.write_text("\n".join(lines) + "\n")
    labels = path.with_name("gt.csv")
    labels.write_text("id,is_fraud\n" + "".join(f"u{i},{1 if i < n_bad else -1}\n" for i in range(n_users)))
    return path, labels


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> tuple[dict, Path, Path, Path]:
    d = tmp_path_factory.mktemp("quality")
    log, labels = edge_list(d / "trust.csv")
    out = d / "q.json"
    run_script("quality.py", "--seeds", "3", "--hard-seeds", "", "--persons", "300", "--days", "3", "--epochs", "1",
               "--out", str(out),
               "--file", str(log), "--name", "trust", "--map", "src=rater,dst=ratee,amount=rating,ts=time",
               "--entity-labels", str(labels), "--entity-positive", "1", "--split", "0", timeout=600)
    return json.loads(out.read_text()), out, log, labels


def _has_interval(row: dict) -> bool:
    ok = lambda ci, v: isinstance(ci, list) and len(ci) == 2 and ci[0] <= v + 1e-12 and v <= ci[1] + 1e-12  # noqa: E731
    return ok(row["auc_ci90"], row["auc"]) and ok(row["ap_ci90"], row["ap"]) and row["positives"] > 0


def test_shape_baselines_and_components_with_intervals(result) -> None:
    r, out, _, _ = result
    assert [d["name"] for d in r["datasets"]] == ["sim-seed3", "trust"]
    assert r["bootstrap"]["level"] == 0.9 and r["machine"]["cpus"] >= 1
    sim, trust = r["datasets"]
    assert sim["train"]["epochs"] == 1 and sim["split"] == 0.7 and trust["train"] is None
    assert sim["events_evaluated"] == sim["events"] - round(sim["events"] * 0.7)
    ev, ent = sim["event"], sim["entity"]
    assert set(ev["baselines"]) == {"src_prior_events", "src_degree", "src_age", "amount"}
    assert set(ent["baselines"]) == {"first_seen", "degree", "event_count", "neg_share_received"}
    # every component evaluate reports, whatever its name; the shipped ones are the headline
    assert {"final", "head", "detector"} <= set(ev["riskgraph"]) and ev["headline"] == "final"
    assert {"entity_risk", "max_event_score"} <= set(ent["riskgraph"]) and ent["headline"] == "entity_risk"
    for level in (ev, ent, trust["entity"]):
        assert all(_has_interval(b) and b["direction"] for b in level["baselines"].values())
        assert all(_has_interval(c) for c in level["riskgraph"].values())
        assert level["verdict"] in ("ahead", "behind", "within intervals")
        assert level["best_baseline"] in level["baselines"]
    assert "event" not in trust  # no event labels in the edge list: no event table
    assert trust["entity"]["positives"] == 6 and trust["entity"]["items"] == 40
    md = out.with_suffix(".md").read_text()
    assert "| sim-seed3 | event |" in md and "| trust | entity |" in md and "neg_share_received" in md
    assert str(out.parent) not in out.read_text()  # no paths of this machine in a result


def test_a_baseline_matches_one_computed_by_hand(result) -> None:
    r, _, log, labels = result
    rows = [line.split(",") for line in log.read_text().split()[1:]]
    y = {u: int(v == "1") for u, v in (line.split(",") for line in labels.read_text().split()[1:])}
    neg, got, first = {}, {}, {}
    for a, b, rating, t in rows:
        got[b] = got.get(b, 0) + 1
        neg[b] = neg.get(b, 0) + (int(rating) < 0)
        first.setdefault(a, int(t))
        first.setdefault(b, int(t))
    users = sorted(y)
    truth = [y[u] for u in users]
    share = [neg.get(u, 0) / got[u] if u in got else 0.0 for u in users]
    base = r["datasets"][1]["entity"]["baselines"]
    assert base["neg_share_received"]["auc"] == pytest.approx(roc_auc_score(truth, share))
    assert base["first_seen"]["auc"] == pytest.approx(roc_auc_score(truth, [first[u] for u in users]))
    assert base["first_seen"]["auc_flipped_optimistic"] == pytest.approx(1 - base["first_seen"]["auc"])


def test_event_baselines_by_hand() -> None:
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["quality"] = mod  # its dataclasses look their module up by name
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
        del sys.modules["quality"]
    import doctest

    failed, tried = doctest.testmod(mod)
    assert tried > 0 and failed == 0
    Ev = mod._Ev
    evs = [Ev("a", "b", 10.0, 1.0), Ev("b", "c", 20.0, 2.0), Ev("a", "c", 30.0, 3.0), Ev("a", "b", 35.0, None)]
    b = mod.event_baseline_scores(evs)
    assert b["src_prior_events"].tolist() == [0, 1, 1, 2]  # b was seen as a's counterparty
    assert b["src_degree"].tolist() == [0, 1, 1, 2]
    assert (-b["src_age"]).tolist() == [0, 10, 20, 25]
    assert b["amount"][3] < b["amount"].min() + 1e-9 < 1.0


def test_a_bad_file_option_is_one_line(tmp_path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--seeds", "", "--hard-seeds",
                           "", "--out", str(tmp_path / "q.json"), "--file", str(tmp_path / "nope.csv")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no such event file" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
