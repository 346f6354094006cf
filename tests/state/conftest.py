"""Shared helpers of the state tests: random node rows and bitwise row comparison."""

from __future__ import annotations

import numpy as np
import pytest

from riskgraph.features.layout import NodeArrays
from riskgraph.state.codecs import TABLE_FIELDS


def fill_random(table: NodeArrays, slots: np.ndarray, rng: np.random.Generator) -> None:
    """Random values in rows ``slots``, with NaN and +-inf sprinkled into the float arrays."""
    n = len(slots)
    for name in TABLE_FIELDS:
        arr = getattr(table, name)
        shape = (n,) + arr.shape[1:]
        if arr.dtype.kind == "f":
            v = rng.normal(0, 1e3, shape).astype(arr.dtype)
            mask = rng.random(shape)
            v[mask < 0.05] = np.nan
            v[(mask >= 0.05) & (mask < 0.08)] = np.inf
            v[(mask >= 0.08) & (mask < 0.1)] = -np.inf
        else:
            info = np.iinfo(arr.dtype)
            v = rng.integers(info.min, info.max, shape, dtype=arr.dtype, endpoint=True)
        arr[slots] = v


def row_bytes(table: NodeArrays, slot: int) -> bytes:
    """Every array's row ``slot``, concatenated: equal bytes <=> bitwise equal rows (NaN included)."""
    return b"".join(getattr(table, name)[slot].tobytes() for name in TABLE_FIELDS)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.fixture
def helpers():
    """The module-level helpers, for tests (conftest modules are not importable by name)."""

    class H:
        fill_random = staticmethod(fill_random)
        row_bytes = staticmethod(row_bytes)

    return H
