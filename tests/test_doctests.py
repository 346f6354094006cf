"""Every docstring example of every module runs and holds, under the module's installed name.

pytest's ``--doctest-modules`` would import ``streams/app.py`` as a top-level ``streams``
package (the folders sit at the repository root), a second copy beside ``riskgraph.streams``.
This collects the same examples, one test per docstring, from the modules imported by their
``riskgraph.*`` names.
"""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_packaging import package_dirs


def module_names() -> Iterator[str]:
    for package, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            if path.stem == "__main__":
                continue
            yield package if path.stem == "__init__" else f"{package}.{path.stem}"


def examples() -> Iterator[tuple[str, str]]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in module_names():
        for test in finder.find(importlib.import_module(name), name):
            if test.examples:
                yield name, test.name


EXAMPLES = sorted(set(examples()))


def test_examples_were_found() -> None:
    assert len(EXAMPLES) > 80
    assert {name.split(".")[1] for name, _ in EXAMPLES if name.count(".")} >= {
        "streams", "models", "features", "state", "simulators"}


@pytest.mark.parametrize(("module", "test_name"), EXAMPLES, ids=[t for _, t in EXAMPLES])
def test_docstring_example(module: str, test_name: str) -> None:
    finder = doctest.DocTestFinder(exclude_empty=True)
    (test,) = [t for t in finder.find(importlib.import_module(module), module) if t.name == test_name]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    failures: list[str] = []

    class Collect(doctest.DocTestRunner):
        def report_failure(self, out, test, example, got):  # type: ignore[override]
            failures.append(f"line {example.lineno + 1}: {example.source.strip()}\n"
                            f"expected: {example.want.strip()}\ngot: {got.strip()}")

        def report_unexpected_exception(self, out, test, example, exc_info):  # type: ignore[override]
            failures.append(f"line {example.lineno + 1}: {example.source.strip()}\n"
                            f"raised {exc_info[0].__name__}: {exc_info[1]}")

    runner = Collect(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=lambda _: None)
    assert not failures, f"{Path(test.filename or module).name}:\n" + "\n\n".join(failures)
