"""Shared fixtures of the CLI tests: a simulated file (ours and renamed), one evaluation of it."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from riskgraph.cli import main

SIM_ARGS = ["--days", "2", "--persons", "1500", "--merchants", "200", "--seed", "5"]
#: Our column -> the foreign name the renamed file uses.
RENAME = {"src": "sender", "dst": "receiver", "ts": "time", "amount": "value", "label": "is_fraud",
          "id": "tx", "kind": "type"}
MAP = ",".join(f"{field}={col}" for field, col in RENAME.items())


@pytest.fixture(scope="session", autouse=True)
def clean_env():
    """RISKGRAPH_* variables from the caller's shell must not change what the CLI does here."""
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("RISKGRAPH_"):
                mp.delenv(k)
        yield


@dataclass(frozen=True)
class Workspace:
    dir: Path
    events: Path  # as ``simulate`` wrote it
    labels: Path  # its entity labels
    renamed: Path  # the same rows under foreign column names
    map: str = MAP  # the --map that reads the renamed file
    rename: tuple[tuple[str, str], ...] = tuple(RENAME.items())
    sim_args: tuple[str, ...] = tuple(SIM_ARGS)

    def rows(self) -> list[dict[str, str]]:
        with self.events.open(newline="") as f:
            return list(csv.DictReader(f))

    def write_renamed(self, dst: Path, rows: list[list[str]] | None = None) -> None:
        write_renamed(self.events, dst, rows)


def write_renamed(src: Path, dst: Path, rows: list[list[str]] | None = None) -> None:
    """Copy a simulated CSV under the foreign column names (optionally with other data rows)."""
    with src.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        data = list(reader) if rows is None else rows
    with dst.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([RENAME.get(c, c) for c in header])
        w.writerows(data)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    d = tmp_path_factory.mktemp("cli")
    events = d / "x.csv"
    assert main(["simulate", "--out", str(events), *SIM_ARGS]) == 0
    renamed = d / "renamed.csv"
    write_renamed(events, renamed)
    return Workspace(dir=d, events=events, labels=d / "x.entities.csv", renamed=renamed)


@dataclass(frozen=True)
class Evaluation:
    out: Path
    metrics: dict


@pytest.fixture(scope="session")
def evaluation(workspace: Workspace) -> Evaluation:
    """``evaluate`` of the renamed file, mapped back, with entity labels, on the second half."""
    out = workspace.dir / "eval"
    rc = main(["evaluate", str(workspace.renamed), "--map", MAP, "--entity-labels", str(workspace.labels),
               "--eval-fraction", "0.5", "--out", str(out), "--no-progress"])
    assert rc == 0
    return Evaluation(out=out, metrics=json.loads((out / "metrics.json").read_text()))
