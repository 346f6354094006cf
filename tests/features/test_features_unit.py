"""to_unit and the catalogue: range, exact monotonicity, the twin formulas, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskgraph.features.catalogue import FEATURE_NAMES, FEATURES, N_FEATURES, SQUASHES, FeatureSpec
from riskgraph.features.unit import to_unit
from .twins import twin_to_unit

finite = st.floats(allow_nan=False, allow_infinity=False)


def test_catalogue_is_consistent() -> None:
    assert N_FEATURES == len(FEATURES) == len(FEATURE_NAMES) >= 16
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    assert all(f.unit and f.description and f.squash in SQUASHES for f in FEATURES)
    with pytest.raises(ValueError, match="squash"):
        FeatureSpec("x", "count", "d", squash="log")
    with pytest.raises(ValueError, match="scale"):
        FeatureSpec("x", "count", "d", scale=0.0)


def test_matches_twin_on_a_grid() -> None:
    grid = np.r_[-1e300, -1e6, -123.4, -1.0, -1e-9, 0.0, 1e-9, 0.5, 1.0, 2.0, 16.0, 23.0, 99.9, 1e4, 1e300]
    raw = np.repeat(grid[:, None], N_FEATURES, axis=1)
    u = to_unit(raw)
    want = [[twin_to_unit(x, f.squash, f.scale) for f in FEATURES] for x in grid]
    np.testing.assert_allclose(u, want, rtol=1e-12, atol=1e-15)


def test_scale_maps_to_documented_points() -> None:
    u = to_unit(np.array([f.scale for f in FEATURES]))
    for f, v in zip(FEATURES, u):
        assert v == {"ratio": 0.5, "linear": 1.0, "signed": 0.75, "signed_sqrt": 0.75, "flag": 1.0}[f.squash], f


@settings(max_examples=300, deadline=None)
@given(a=finite, b=finite)
def test_range_and_exact_monotonicity(a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    u = to_unit(np.array([np.full(N_FEATURES, lo), np.full(N_FEATURES, hi)]))
    assert ((u >= 0.0) & (u <= 1.0)).all()
    assert (u[0] <= u[1]).all(), [FEATURE_NAMES[j] for j in np.flatnonzero(u[0] > u[1])]


def test_shapes_out_and_errors() -> None:
    row = np.arange(N_FEATURES, dtype=np.float64)
    assert to_unit(row).shape == (N_FEATURES,)
    np.testing.assert_array_equal(to_unit(row), to_unit(row[None, :])[0])
    out = np.empty((1, N_FEATURES))
    assert to_unit(row[None, :], out=out) is out
    assert to_unit(np.arange(N_FEATURES)).dtype == np.float64  # integers are fine
    with pytest.raises(ValueError, match="shape"):
        to_unit(np.zeros((2, N_FEATURES + 1)))
    with pytest.raises(ValueError, match="finite.*row 1"):
        to_unit(np.vstack([row, np.where(row == 3, np.nan, row)]))
    with pytest.raises(ValueError, match="out must be"):
        to_unit(row, out=np.empty(N_FEATURES, np.float32))
    with pytest.raises(ValueError, match="real numbers"):
        to_unit(np.array(["a"] * N_FEATURES))
