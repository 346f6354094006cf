"""The examples in the simulators' docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["catalog", "background", "typologies", "transactions", "writers", "rows", "replay"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"riskgraph.simulators.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
