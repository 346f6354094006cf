"""Input checks shared by the validating wrappers around the numba kernels.

The kernels trust their inputs (no bounds checks, fixed dtypes); these helpers make
sure they can, and turn every bad shape, dtype or value into a ``ValueError`` that
names the argument.

>>> as_index_array([0, 2], "slots", n=2, upper=3)
array([0, 2])
>>> as_index_array([0, 3], "slots", n=2, upper=3)
Traceback (most recent call last):
...
ValueError: slots must be in [0, 3), got 3
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np
from numba import njit

from riskgraph.features.layout import N_ACC, RING, NodeArrays

_TABLE_DTYPES = {
    "acc": (np.dtype(np.float64), N_ACC),
    "ring_nbr": (np.dtype(np.int64), RING),
    "ring_ts": (np.dtype(np.float64), RING),
    "ring_amt": (np.dtype(np.float32), RING),
    "ring_dir": (np.dtype(np.int8), RING),
    "ring_n": (np.dtype(np.int64), None),
}
_INT64_MAX = np.iinfo(np.int64).max

# The value checks run in numba: over a micro-batch of a few hundred events, a handful of
# NumPy reductions per argument cost more than the feature kernel itself.


@njit(cache=True)
def _first_outside(a: np.ndarray, lo: int, hi: int) -> int:
    """Index of the first value of ``a`` outside [lo, hi), or -1."""
    for i in range(a.shape[0]):
        if a[i] < lo or a[i] >= hi:
            return i
    return -1


@njit(cache=True)
def _first_bad_float(a: np.ndarray, allow_nan: bool, lo: float, hi: float) -> int:
    """Index of the first value of ``a`` that is NaN (unless allowed) or outside [lo, hi], or -1."""
    for i in range(a.shape[0]):
        x = a[i]
        if math.isnan(x):
            if not allow_nan:
                return i
        elif not (lo <= x <= hi) or math.isinf(x):
            return i
    return -1


def check_table(t: NodeArrays) -> None:
    """Raise ValueError unless ``t``'s arrays have the layout's dtypes, shapes and C order."""
    if not isinstance(t, NodeArrays):
        raise ValueError(f"expected a NodeArrays table, got {type(t).__name__}")
    cap = t.capacity
    for name, (dtype, width) in _TABLE_DTYPES.items():
        a = getattr(t, name)
        want = (cap,) if width is None else (cap, width)
        # `is` first: NumPy shares one dtype object per native type, and this runs per batch
        if not isinstance(a, np.ndarray) or (a.dtype is not dtype and a.dtype != dtype) or a.shape != want:
            got = (a.dtype, a.shape) if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"table.{name} must be {dtype} of shape {want}, got {got}")
        flags = a.flags
        if not (flags.c_contiguous and flags.writeable):
            raise ValueError(f"table.{name} must be C-contiguous and writeable")


def _vector(x: Any, name: str, n: int | None, kinds: str, what: str, dtype: type) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have length {n}, got {a.shape[0]}")
    if a.dtype.kind not in kinds and a.size:
        raise ValueError(f"{name} must be {what}, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


def as_index_array(x: Any, name: str, n: int | None, upper: int | None = None) -> np.ndarray:
    """``x`` as a contiguous int64 vector (of length ``n`` if given) with values in [0, upper)."""
    a = _vector(x, name, n, "iu", "integers", np.int64)
    i = _first_outside(a, 0, _INT64_MAX if upper is None else upper)
    if i >= 0:
        if a[i] < 0:
            raise ValueError(f"{name} must be >= 0, got {a[i]}")
        raise ValueError(f"{name} must be in [0, {upper}), got {a[i]}")
    return a


def as_float_array(x: Any, name: str, n: int | None, allow_nan: bool = False, lo: float = -math.inf,
                   hi: float = math.inf) -> np.ndarray:
    """``x`` as a contiguous float64 vector (of length ``n`` if given), finite and in [lo, hi].

    With ``allow_nan`` NaN passes (it means "missing"); +-inf never does.
    """
    a = _vector(x, name, n, "iuf", "real numbers", np.float64)
    i = _first_bad_float(a, allow_nan, lo, hi)
    if i >= 0:
        if math.isfinite(a[i]):
            raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {a[i]} at index {i}")
        raise ValueError(f"{name} must be finite{' or NaN' if allow_nan else ''}, got {a[i]} at index {i}")
    return a


def as_out_array(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """A fresh float64 array of ``shape``, or ``out`` after checking it can be written in place."""
    if out is None:
        return np.empty(shape, np.float64)
    if not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != shape:
        got = (out.dtype, out.shape) if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out must be float64 of shape {shape}, got {got}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    return out


def refresh_stale_cache(baked: Callable[[], tuple], expected: tuple, kernels: Iterable[Any]) -> bool:
    """Recompile ``kernels`` if their on-disk cache was built against another layout.

    numba freezes module globals (the ``Acc`` columns, ``RING``, half-lives) into the
    compiled code, and ``cache=True`` only notices edits of the kernel's own file, not of
    ``features/layout.py``. ``baked`` is a cached kernel returning those constants as it
    saw them; when they differ from ``expected`` every kernel is recompiled (which also
    rewrites its cache). Returns whether it had to.
    """
    if tuple(baked()) == tuple(expected):
        return False
    for k in (baked, *kernels):
        k.recompile()
    return True
