"""``riskgraph simulate | evaluate | replay`` end to end, in process, on a small simulated file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from riskgraph.cli import main
from riskgraph.simulators.transactions import SimConfig, simulate
from riskgraph.simulators.typologies import TYPOLOGIES
from riskgraph.streams.alerts import decode_alert

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def alert_ids(path: Path) -> list[str]:
    return [decode_alert(line).alert_id for line in path.read_bytes().splitlines()]


def one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert lines[0].startswith(f"riskgraph {command}: error: ")
    return lines[0]


# -- simulate ---------------------------------------------------------------------------


def test_simulate_writes_the_events_and_an_entity_label_file(workspace):
    sim = simulate(SimConfig(seed=5, n_persons=1500, n_merchants=200, days=2))
    rows = workspace.rows()
    assert [r["id"] for r in rows] == [e.id for e in sim.events]
    assert [float(r["ts"]) for r in rows] == [e.ts for e in sim.events]
    assert sum(r["label"] == "1" for r in rows) == sum(e.label for e in sim.events) > 0
    assert {r["typology"] for r in rows if r["typology"]} <= set(TYPOLOGIES)
    with workspace.labels.open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["entity", "label"]
        labels = {e: int(v) for e, v in reader}
    assert labels == sim.entity_labels
    assert 0 < sum(labels.values()) < len(labels)


def test_simulate_names_the_label_file_and_reports_counts(workspace, tmp_path, capsys):
    out, labels = tmp_path / "s.jsonl", tmp_path / "lab.csv"
    assert main(["simulate", "--out", str(out), "--entity-labels", str(labels), *workspace.sim_args]) == 0
    assert out.is_file() and labels.is_file()
    n = sum(1 for line in out.read_bytes().splitlines() if line.strip())
    printed = capsys.readouterr().out
    assert f"wrote {n:,} events" in printed and str(labels) in printed


# -- evaluate ---------------------------------------------------------------------------


def test_evaluate_with_a_column_mapping_writes_metrics(workspace, evaluation):
    m = evaluation.metrics
    rows = workspace.rows()
    n = len(rows)
    assert m["events_total"] == n
    start = n - m["events_evaluated"]
    assert m["events_evaluated"] == n - int(round(n * 0.5))
    for k in ("event_auc", "event_ap", "precision_at_k", "entity_auc", "entity_ap", "alert_rate"):
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 1.0, k
    assert m["event_auc"] > 0.5  # the detector ranks attacks above normal traffic
    assert m["events_per_second"] > 0
    assert 0 < m["latency_p50_ms"] <= m["latency_p99_ms"]
    assert m["positives"] == sum(r["label"] == "1" for r in rows[start:])
    with workspace.labels.open(newline="") as f:
        assert m["labelled_entities"] == sum(1 for _ in f) - 1
    assert m["dead_letters"] == 0
    # typologies come from the kept "typology" column, over the evaluated part only
    expected = {}
    for r in rows[start:]:
        if r["typology"]:
            expected[r["typology"]] = expected.get(r["typology"], 0) + 1
    assert expected and {t: v["events"] for t, v in m["typologies"].items()} == expected


def test_evaluate_writes_report_plots_and_alerts(evaluation):
    out = evaluation.out
    for name in ("roc_pr.png", "scores.png", "throughput.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    report = (out / "report.md").read_text()
    assert "roc_pr.png" in report and len(report) > 200
    ids = alert_ids(out / "alerts.jsonl")
    assert len(ids) == evaluation.metrics["alerts"] > 0
    assert len(set(ids)) == len(ids)


def test_eval_after_restricts_the_evaluated_events(workspace, tmp_path):
    ts = [float(r["ts"]) for r in workspace.rows()]
    cut = ts[len(ts) // 3]
    rc = main(["evaluate", str(workspace.renamed), "--map", workspace.map, "--eval-after", repr(cut),
               "--out", str(tmp_path / "ev"), "--no-progress"])
    assert rc == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["events_total"] == len(ts)
    assert m["events_evaluated"] == sum(t > cut for t in ts)
    assert "entity_auc" not in m  # no --entity-labels


def test_eval_after_and_eval_fraction_exclude_each_other(workspace, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(workspace.renamed), "--eval-after", "1", "--eval-fraction", "0.5"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# -- replay -----------------------------------------------------------------------------


def test_replay_writes_alerts_and_entity_risk_matching_evaluate(workspace, evaluation, tmp_path, capsys):
    alerts, entities = tmp_path / "alerts.jsonl", tmp_path / "entities.csv"
    rc = main(["replay", str(workspace.renamed), "--map", workspace.map, "--alerts", str(alerts),
               "--entities", str(entities), "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    ids = alert_ids(alerts)
    assert ids == alert_ids(evaluation.out / "alerts.jsonl")  # same file, same settings: same alerts
    rows = workspace.rows()
    assert summary["events"] == len(rows) and summary["alerts"] == len(ids) and summary["dead_letters"] == 0
    assert summary["model_version"] == evaluation.metrics["model_version"]
    with entities.open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["entity", "risk", "event_risk"]
        table = [(e, float(r), float(er)) for e, r, er in reader]
    assert {e for e, _, _ in table} == {r["src"] for r in rows} | {r["dst"] for r in rows}
    values = [r for _, r, _ in table]
    assert all(0.0 <= r <= 1.0 for r in values) and values == sorted(values, reverse=True)
    assert values[0] > 0 and max(er for _, _, er in table) > 0
    # evaluate's headline entity metrics are the entity model's, beside the decayed event risk
    assert evaluation.metrics["entity_headline"] == "entity_model"
    assert {"entity_model", "entity_risk"} <= set(evaluation.metrics["entity_components"])


# -- user errors: exit 2, one line on stderr --------------------------------------------


@pytest.mark.parametrize("command", ["replay", "evaluate"])
@pytest.mark.parametrize("old,new,needle", [
    ("kind=type", "knd=type", "unknown field 'knd'"),
    ("kind=type", "kind=typo", "column 'typo' (mapped to kind) is not in the file"),
    ("kind=type", "kind", "bad mapping item 'kind'"),
    ("ts=time,", "", "no column for required field 'ts'"),
])
def test_bad_mapping_exits_2_with_one_clear_line(workspace, tmp_path, capsys, command, old, new, needle):
    assert old in workspace.map
    mapping = workspace.map.replace(old, new)
    out = ["--alerts", str(tmp_path / "a.jsonl"), "--entities", ""] if command == "replay" else \
          ["--out", str(tmp_path / "ev")]
    rc = main([command, str(workspace.renamed), "--map", mapping, "--no-progress", *out])
    assert rc == 2
    line = one_error_line(capsys.readouterr().err, command)
    assert needle in line


def test_missing_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert main(["replay", str(missing), "--alerts", str(tmp_path / "a.jsonl"), "--no-progress"]) == 2
    assert str(missing) in one_error_line(capsys.readouterr().err, "replay")


@pytest.fixture(scope="module")
def shuffled(workspace) -> tuple[Path, list[dict[str, str]]]:
    """The renamed file with two early rows of different times swapped."""
    with workspace.events.open(newline="") as f:
        data = list(csv.reader(f))[1:]
    i = next(k for k in range(10, len(data)) if float(data[k][1]) < float(data[k + 1][1]))
    data[i], data[i + 1] = data[i + 1], data[i]
    path = workspace.dir / "shuffled.csv"
    workspace.write_renamed(path, data)
    return path, data


def test_out_of_order_file_exits_2_unless_sorted(workspace, shuffled, evaluation, tmp_path, capsys):
    path, data = shuffled
    alerts = tmp_path / "a.jsonl"
    rc = main(["replay", str(path), "--map", workspace.map, "--alerts", str(alerts), "--entities", "", "--no-progress"])
    assert rc == 2
    assert "not in time order" in one_error_line(capsys.readouterr().err, "replay")
    rc = main(["replay", str(path), "--map", workspace.map, "--alerts", str(alerts), "--entities", "", "--no-progress",
               "--order", "sort"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["events"] == len(data)
    # sorting restores the simulated order exactly (stable sort, distinct times swapped)
    assert alert_ids(alerts) == alert_ids(evaluation.out / "alerts.jsonl")


def test_out_of_order_late_in_the_file_still_prints_one_line(workspace, tmp_path):
    # Run as a user would (a fresh process, default logging): after some batches were
    # scored, the error must still be the only thing on stderr.
    with workspace.events.open(newline="") as f:
        data = list(csv.reader(f))[1:]
    i = next(k for k in range(2500, len(data)) if float(data[k][1]) < float(data[k + 1][1]))
    data[i], data[i + 1] = data[i + 1], data[i]
    path = tmp_path / "late.csv"
    workspace.write_renamed(path, data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKGRAPH_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "riskgraph.cli", "replay", str(path), "--map", workspace.map,
                           "--alerts", str(tmp_path / "a.jsonl"), "--entities", "", "--no-progress",
                           "--batch-size", "1000"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "not in time order" in one_error_line(proc.stderr, "replay")


def test_renamed_columns_are_really_foreign(workspace):
    # guard: the mapping tests mean something only if none of our field names is a column
    with workspace.renamed.open(newline="") as f:
        header = next(csv.reader(f))
    rename = dict(workspace.rename)
    assert not set(rename) & set(header)
    assert set(rename.values()) <= set(header) and "typology" in header
