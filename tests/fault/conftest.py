"""The fault tier: a real broker and real worker processes under the faults operators meet.

Each test adds one row to the fault table (``fault_table``): the fault, the records in,
events scored, dead letters and records lost (in minus scored minus dead letters, which
must be 0). The table is printed at the end of the run and written to
``$FAULT_TABLE_JSON`` when that is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

SLOW_SCORER = Path(__file__).resolve().parent / "slow_scorer"
_ROWS: list[dict] = []


@pytest.fixture
def fault_table() -> Callable[..., None]:
    """``fault_table(fault, records_in, scored, dead_letters, **extra)``: one row of the table."""
    def add(fault: str, records_in: int, scored: int, dead_letters: int, **extra: object) -> None:
        _ROWS.append({"fault": fault, "in": records_in, "scored": scored, "dead_letters": dead_letters,
                      "lost": records_in - scored - dead_letters, **extra})
    return add


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.fault)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    tr = terminalreporter
    tr.section("fault table")
    tr.write_line(f"{'fault':<62} {'in':>8} {'scored':>8} {'dead':>6} {'lost':>5}  notes")
    for r in _ROWS:
        notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("fault", "in", "scored", "dead_letters", "lost"))
        tr.write_line(f"{r['fault']:<62} {r['in']:>8} {r['scored']:>8} {r['dead_letters']:>6} {r['lost']:>5}  {notes}")
    out = os.environ.get("FAULT_TABLE_JSON")
    if out:
        Path(out).write_text(json.dumps(_ROWS, indent=2) + "\n")
