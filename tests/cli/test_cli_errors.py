"""Every user-caused error of the CLI: exit code != 0, one line on stderr, no traceback.

The cheap cases run ``riskgraph.cli.main`` in this process (start-up with torch costs
seconds per subprocess); the worker and the broker cases run ``python -m riskgraph.cli``
as users do, the broker ones concurrently from the start of the module (each waits out
the Kafka client's 30 s bootstrap timeout).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from riskgraph.cli import main

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "kafka://127.0.0.1:1"  # nothing listens on port 1
BROKER_COMMANDS = {
    "produce": ["produce", "--limit", "5", "--no-progress"],
    "alerts-tail": ["alerts", "tail", "--idle-timeout", "2"],
    "feedback": ["feedback", "some-alert", "--label", "0"],
    "worker": ["worker", "--metrics-port", "0"],
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKGRAPH_")}
    env.update(extra, PYTHONPATH=str(ROOT))
    return env


def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "riskgraph.cli", *args], cwd=cwd, env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def broker_runs(tmp_path_factory):
    """The broker commands against an unreachable broker, started together at once."""
    d = tmp_path_factory.mktemp("broker")
    t0 = time.monotonic()
    procs = {name: _cli([*args, *(["--state", str(d / "state")] if name == "worker" else [])], d,
                        RISKGRAPH_BROKER=UNREACHABLE) for name, args in BROKER_COMMANDS.items()}
    yield procs, t0
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture(scope="module", autouse=True)
def _start_broker_runs_first(broker_runs):
    """Module setup starts the slow broker runs, so they overlap every other case."""


@dataclass
class Files:
    dir: Path
    csv: Path
    jsonl: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    d = tmp_path_factory.mktemp("errors")
    sim = ["--days", "2", "--persons", "300", "--merchants", "50", "--seed", "3"]
    assert main(["simulate", "--out", str(d / "x.csv"), *sim]) == 0
    assert main(["simulate", "--out", str(d / "x.jsonl"), *sim]) == 0
    return Files(d, d / "x.csv", d / "x.jsonl")


@dataclass
class Case:
    """``setup(files, tmp)`` prepares inputs and returns the argv (``{csv}``-style names)."""

    name: str
    argv: Callable[[Files, Path], list[str]]
    needle: str  # the one line must contain this (case-insensitive)
    env: dict[str, str] = field(default_factory=dict)
    holder: bool = False  # another process holds the --state directory's lock


def _truncated(src: Path, dst: Path) -> Path:
    data = gzip.compress(src.read_bytes())
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _model(tmp: Path, cfg) -> str:
    d = tmp / "model"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return str(d)


def _valid_cfg() -> dict:
    from riskgraph.features.catalogue import FEATURE_NAMES
    from riskgraph.models.scoring import ScoringModel

    m = ScoringModel.default(seed=1)
    return {"format": 1, "version": m.version, "detector": m.detector.to_config(), "policy": m.policy_config,
            "combiner": m.combiner, "tgn": None, "head": None, "features": list(FEATURE_NAMES)}


def _broken_cfg(**changes) -> dict:
    cfg = _valid_cfg()
    for k, v in changes.items():
        if v is KeyError:
            cfg.pop(k)
        else:
            cfg[k] = v
    return cfg


def _store(path: Path) -> Path:
    from riskgraph.state.store import GraphStore

    with GraphStore(path) as st:
        st.slots(st.resolve(["a", "b"]))
        st.commit(positions={"file/0": 2})
        st.flush()
    return path


def _corrupt_store(tmp: Path) -> str:
    d = _store(tmp / "state")
    (d / "CURRENT").write_text("garbage\n")
    return str(d)


def _foreign_dir(tmp: Path) -> str:
    d = tmp / "someones-csvs"
    d.mkdir()
    (d / "q3.csv").write_text("a,b\n1,2\n")
    return str(d)


def _dir_with(tmp: Path, name: str) -> str:
    (tmp / name).mkdir()
    return str(tmp / name)


def _file(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


R = ["--no-progress"]
CASES = [
    # -- input files
    Case("missing file", lambda f, t: ["replay", str(t / "nope.csv"), *R], "no such event file"),
    Case("directory as input", lambda f, t: ["replay", str(f.dir), *R], "is a directory, not an event file"),
    Case("empty csv", lambda f, t: ["replay", _file(t / "e.csv", ""), *R], "empty CSV file"),
    Case("empty jsonl", lambda f, t: ["replay", _file(t / "e.jsonl", "\n"), *R], "empty JSONL file"),
    Case("unknown suffix", lambda f, t: ["replay", _file(t / "x.txt", "a,b\n"), *R], "cannot tell the format"),
    Case("csv read as parquet", lambda f, t: ["replay", str(f.csv), "--format", "parquet", *R],
         "not a readable Parquet file"),
    Case("unknown --map field", lambda f, t: ["replay", str(f.csv), "--map", "sender=src", *R], "unknown field"),
    Case("--map column not in file", lambda f, t: ["replay", str(f.csv), "--map", "src=sender", *R],
         "is not in the file"),
    Case("truncated csv.gz", lambda f, t: ["replay", str(_truncated(f.csv, t / "x.csv.gz")),
                                           "--alerts", str(t / "a.jsonl"), *R], "truncated or corrupt"),
    Case("truncated jsonl.gz", lambda f, t: ["replay", str(_truncated(f.jsonl, t / "x.jsonl.gz")),
                                             "--alerts", str(t / "a.jsonl"), *R], "truncated or corrupt"),
    Case("not gzip at all", lambda f, t: ["replay", _file(t / "fake.csv.gz", "id,ts,src\n"), *R],
         "truncated or corrupt"),
    Case("rate 0", lambda f, t: ["replay", str(f.csv), "--rate", "0", *R], "rate must be a positive"),
    Case("eval fraction 2", lambda f, t: ["evaluate", str(f.csv), "--eval-fraction", "2", "--out",
                                          str(t / "ev"), *R], "--eval-fraction must be in"),
    Case("missing entity labels", lambda f, t: ["evaluate", str(f.csv), "--entity-labels", str(t / "nope.csv"),
                                                "--out", str(t / "ev"), *R], "no such entity label file"),
    Case("simulate days 1", lambda f, t: ["simulate", "--out", str(t / "s.csv"), "--days", "1"], "at least 2"),
    # -- model directory
    Case("model dir missing", lambda f, t: ["replay", str(f.csv), "--model", str(t / "nope"), *R],
         "is not a model artifact"),
    Case("config.json not json", lambda f, t: ["replay", str(f.csv), "--model", _model(t, "{nope"), *R],
         "invalid JSON"),
    Case("config.json a list", lambda f, t: ["replay", str(f.csv), "--model", _model(t, []), *R],
         "not a valid model config"),
    Case("config.json empty object", lambda f, t: ["replay", str(f.csv), "--model", _model(t, {}), *R],
         "unsupported artifact format"),
    Case("config.json no detector", lambda f, t: ["replay", str(f.csv), "--model",
                                                  _model(t, _broken_cfg(detector=KeyError)), *R],
         "missing key 'detector'"),
    Case("config.json no version", lambda f, t: ["replay", str(f.csv), "--model",
                                                 _model(t, _broken_cfg(version=KeyError)), *R],
         "missing key 'version'"),
    Case("config.json detector a list", lambda f, t: ["replay", str(f.csv), "--model",
                                                      _model(t, _broken_cfg(detector=[])), *R],
         "not a valid model config"),
    Case("config.json policy an int", lambda f, t: ["replay", str(f.csv), "--model",
                                                    _model(t, _broken_cfg(policy=5)), *R],
         "not a valid model config"),
    Case("config.json tgn an int", lambda f, t: ["replay", str(f.csv), "--model",
                                                 _model(t, _broken_cfg(tgn=5)), *R], "not a valid model config"),
    # -- state directory
    Case("corrupt state", lambda f, t: ["replay", str(f.csv), "--state", _corrupt_store(t), *R], "is corrupt"),
    Case("locked state", lambda f, t: ["replay", str(f.csv), "--state", str(t / "locked"), *R],
         "in use by another process", holder=True),
    Case("foreign directory as state", lambda f, t: ["replay", str(f.csv), "--state", _foreign_dir(t), *R],
         "not a state directory"),
    Case("file as state", lambda f, t: ["replay", str(f.csv), "--state", str(f.csv), *R],
         "is a file, not a state directory"),
    # -- outputs
    Case("alerts is a directory", lambda f, t: ["replay", str(f.csv), "--alerts", _dir_with(t, "adir"), *R],
         "cannot write alerts"),
    Case("alerts in a missing directory", lambda f, t: ["replay", str(f.csv), "--alerts", str(t / "no/a.jsonl"),
                                                        *R], "cannot write alerts"),
    Case("evaluate --out is a file", lambda f, t: ["evaluate", str(f.csv), "--out", str(f.csv), *R],
         "is a file"),
    # -- settings
    Case("batch size 0", lambda f, t: ["replay", str(f.csv), *R], "RISKGRAPH_BATCH_SIZE must be at least 1",
         env={"RISKGRAPH_BATCH_SIZE": "0"}),
    Case("batch size negative", lambda f, t: ["replay", str(f.csv), *R], "RISKGRAPH_BATCH_SIZE",
         env={"RISKGRAPH_BATCH_SIZE": "-5"}),
    Case("batch size words", lambda f, t: ["replay", str(f.csv), *R], "expected int",
         env={"RISKGRAPH_BATCH_SIZE": "many"}),
    Case("--batch-size 0", lambda f, t: ["replay", str(f.csv), "--batch-size", "0", *R], "RISKGRAPH_BATCH_SIZE"),
    Case("commit every 0", lambda f, t: ["replay", str(f.csv), *R], "RISKGRAPH_COMMIT_EVERY",
         env={"RISKGRAPH_COMMIT_EVERY": "0"}),
    Case("dedupe window negative", lambda f, t: ["replay", str(f.csv), *R], "RISKGRAPH_DEDUPE_WINDOW",
         env={"RISKGRAPH_DEDUPE_WINDOW": "-1"}),
    Case("compression unknown", lambda f, t: ["replay", str(f.csv), *R], "RISKGRAPH_STORE_COMPRESSION",
         env={"RISKGRAPH_STORE_COMPRESSION": "zstd"}),
    Case("metrics port 70000", lambda f, t: ["worker", "--state", str(t / "w")], "RISKGRAPH_METRICS_PORT",
         env={"RISKGRAPH_METRICS_PORT": "70000"}),
    Case("session timeout 2", lambda f, t: ["worker", "--state", str(t / "w")], "RISKGRAPH_SESSION_TIMEOUT_S",
         env={"RISKGRAPH_SESSION_TIMEOUT_S": "2"}),
    Case("broker not host:port", lambda f, t: ["produce", "--limit", "1", "--broker", "kafka://h:x"],
         "RISKGRAPH_BROKER"),
]
if os.path.exists("/dev/full"):
    CASES += [
        Case("alerts on a full disk", lambda f, t: ["replay", str(f.csv), "--alerts", "/dev/full", *R],
             "No space left on device"),
        Case("entities on a full disk", lambda f, t: ["replay", str(f.csv), "--entities", "/dev/full", *R],
             "No space left on device"),
    ]


def assert_one_error_line(rc: int, out: str, err: str, command: str, needle: str) -> None:
    assert rc != 0, f"exit 0; stdout: {out[-500:]!r} stderr: {err[-500:]!r}"
    assert "Traceback" not in out + err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith(f"riskgraph {command}: error: "), lines[0]
    assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"


@pytest.fixture
def lock_holder(tmp_path):
    """Another process that has ``tmp_path/locked`` open as a store (as a running replay would)."""
    _store(tmp_path / "locked")
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from riskgraph.state.store import GraphStore
        st = GraphStore({str(tmp_path / "locked")!r})
        print("open", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    assert p.stdout.readline().strip() == "open"
    yield
    p.communicate("", timeout=30)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_user_error_is_one_line(case: Case, files: Files, tmp_path, monkeypatch, capsys, request):
    monkeypatch.chdir(tmp_path)  # default outputs (alerts.jsonl, entities.csv) land there
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    if case.holder:
        request.getfixturevalue("lock_holder")
    argv = case.argv(files, tmp_path)
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert_one_error_line(rc, out, err, argv[0], case.needle)


def test_metrics_port_in_use_is_one_line(files: Files, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = _cli(["worker", "--state", str(tmp_path / "w"), "--metrics-port", str(port)], tmp_path,
                 RISKGRAPH_BROKER=UNREACHABLE)
        out, err = p.communicate(timeout=120)
    assert_one_error_line(p.returncode, out, err, "worker", f"cannot serve /metrics on 127.0.0.1:{port}")


@pytest.mark.parametrize("name", list(BROKER_COMMANDS))
def test_unreachable_broker_is_one_line_within_a_bound(broker_runs, name):
    procs, t0 = broker_runs
    p = procs[name]
    out, err = p.communicate(timeout=max(1.0, 90 - (time.monotonic() - t0)))
    assert_one_error_line(p.returncode, out, err, BROKER_COMMANDS[name][0],
                          f"cannot reach the Kafka broker {UNREACHABLE}")
