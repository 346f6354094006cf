"""The README's settings table names every setting (it is the reference users read)."""

from __future__ import annotations

from pathlib import Path

from riskgraph.settings import env_table

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    section = README.split("RISKGRAPH_BROKER", 1)[1].split("## ", 1)[0]
    missing = []
    for var, _default, _type in env_table():
        short = "_" + var.removeprefix("RISKGRAPH_")
        if var not in README and short not in section:
            missing.append(var)
    assert not missing, f"settings missing from the README table: {missing}"
