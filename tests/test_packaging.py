"""The distribution installs one top-level package, riskgraph; its layers are subpackages."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import riskgraph

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("streams", "models", "features", "state", "simulators")


def package_dirs() -> dict[str, Path]:
    """Every package of the distribution and the folder it is built from (from pyproject)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = tool["package-dir"]
    out = {}
    for package in tool["packages"]:
        parent, rest = package, []
        while parent not in mapping:
            parent, _, child = parent.rpartition(".")
            rest.insert(0, child)
        out[package] = ROOT.joinpath(mapping[parent], *rest)
    return out


def test_every_folder_with_an_init_is_a_listed_package() -> None:
    listed = {path.resolve() for path in package_dirs().values()}
    on_disk = {init.parent.resolve() for top in ("riskgraph", *LAYERS) for init in (ROOT / top).rglob("__init__.py")}
    assert on_disk == listed
    assert {name.split(".")[0] for name in package_dirs()} == {"riskgraph"}


def test_layers_import_under_riskgraph() -> None:
    import riskgraph.models.tgn
    import riskgraph.streams

    assert Path(riskgraph.streams.__file__).parent == ROOT / "streams"
    assert Path(riskgraph.models.tgn.__file__).parent == ROOT / "models" / "tgn"
    assert Path(riskgraph.__file__).parent == ROOT / "riskgraph"


def test_no_module_imports_a_layer_by_its_bare_name() -> None:
    bare = []
    for top in ("riskgraph", *LAYERS, "tests", "benchmarks"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                bare += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in LAYERS]
    assert not bare, "import these as riskgraph.<layer>:\n" + "\n".join(bare)
