"""What the CLI does with inputs a user gets wrong without it being an error: a second
replay on the same --state (resumes), an unlabelled file to evaluate, --help everywhere,
and where /metrics binds."""

from __future__ import annotations

import csv
import json
import socket
import urllib.request

import pytest

from riskgraph.cli import build_parser, main
from riskgraph.settings import Settings

SIM = ["--days", "2", "--persons", "300", "--merchants", "50", "--seed", "4"]


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("recovery")
    assert main(["simulate", "--out", str(d / "x.csv"), *SIM]) == 0
    return d / "x.csv"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_a_second_replay_on_the_same_state_resumes_and_says_so(sim_csv, tmp_path, capsys):
    rows = _rows(sim_csv)
    head = tmp_path / "head.csv"
    with head.open("w", newline="") as f:
        csv.writer(f).writerows(rows[: 1 + 300])  # header and the first 300 records
    n = len(rows) - 1
    state = tmp_path / "state"
    base = ["--state", str(state), "--no-progress", "--entities", ""]
    assert main(["replay", str(head), "--alerts", str(tmp_path / "a1.jsonl"), *base]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["events"] == 300 and first["skipped_already_in_state"] == 0
    # the whole file: the first 300 records are already in the store
    assert main(["replay", str(sim_csv), "--alerts", str(tmp_path / "a2.jsonl"), *base]) == 0
    out, err = capsys.readouterr()
    second = json.loads(out)
    assert second["skipped_already_in_state"] == 300
    assert second["events"] + second["dead_letters"] == n - 300
    assert f"already reflects the first 300 of the {n:,} records" in err
    # once more: nothing new, nothing scored twice
    assert main(["replay", str(sim_csv), "--alerts", str(tmp_path / "a3.jsonl"), *base]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["events"] == 0 and "nothing new to score" in err
    assert (tmp_path / "a3.jsonl").read_text() == ""
    # the resumed alerts are those of one replay of the whole file (no record twice)
    assert main(["replay", str(sim_csv), "--alerts", str(tmp_path / "all.jsonl"), "--no-progress",
                 "--entities", ""]) == 0
    ids = lambda p: [json.loads(x)["event_id"] for x in p.read_text().splitlines()]  # noqa: E731
    resumed = ids(tmp_path / "a1.jsonl") + ids(tmp_path / "a2.jsonl")
    assert len(resumed) == len(set(resumed))


def test_evaluate_an_unlabelled_file_reports_what_it_can(sim_csv, tmp_path, capsys):
    rows = _rows(sim_csv)
    keep = [i for i, c in enumerate(rows[0]) if c not in ("label", "typology")]
    nolab = tmp_path / "nolab.csv"
    with nolab.open("w", newline="") as f:
        csv.writer(f).writerows([[r[i] for i in keep] for r in rows])
    out_dir = tmp_path / "ev"
    assert main(["evaluate", str(nolab), "--out", str(out_dir), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    m = json.loads((out_dir / "metrics.json").read_text())
    assert m["labelled_events"] == 0 and "event_auc" not in m
    assert 0 <= m["alert_rate"] <= 1 and m["events_per_second"] > 0
    assert set(m["score_quantiles"]) == {"p1", "p10", "p50", "p90", "p99"}
    assert "no quality metric" in out and "score quantiles" in out
    assert err == ""  # no warnings from the plots either
    for name in ("report.md", "roc_pr.png", "scores.png", "throughput.png"):
        assert (out_dir / name).stat().st_size > 0


def _subcommands() -> list[list[str]]:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    out = []
    for name, p in sub.choices.items():
        out.append([name])
        for a in p._actions:
            if a.__class__.__name__ == "_SubParsersAction":
                out += [[name, n] for n in a.choices]
    return out


@pytest.mark.parametrize("cmd", _subcommands(), ids=" ".join)
def test_help_works_for_every_subcommand(cmd, capsys):
    with pytest.raises(SystemExit) as ei:
        main([*cmd, "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: riskgraph " + " ".join(cmd))


def test_kafka_help_lists_its_commands(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["kafka", "--help"])
    assert ei.value.code == 0
    assert "up,down,status" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_bind_loopback_by_default_and_the_host_setting_is_used():
    from prometheus_client import CollectorRegistry

    from riskgraph.worker import start_metrics_server

    assert Settings().metrics_host == "127.0.0.1"
    for host in ("127.0.0.1", "0.0.0.0"):
        port = _free_port()
        server = start_metrics_server(Settings(metrics_port=port, metrics_host=host), CollectorRegistry())
        try:
            assert server.server_address[:2] == (host, port)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                assert r.status == 200
        finally:
            server.shutdown()
            server.server_close()
    assert start_metrics_server(Settings(metrics_port=0), CollectorRegistry()) is None
