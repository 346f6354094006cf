"""Squash raw feature rows into [0, 1] for the detectors (Half-Space Trees need the unit cube).

Each feature has a fixed squash and scale in ``features.catalogue.FEATURES``; the
formulas are in ``catalogue.SQUASHES``. All are monotone non-decreasing, exactly so in
floating point (only +, -, *, / and sqrt, written so that rounding cannot reverse an
order). At x = scale, ``ratio`` gives 0.5, ``signed`` and ``signed_sqrt`` 0.75 (and 0.5
at x = 0), ``linear`` 1.

>>> from riskgraph.features.catalogue import FEATURE_INDEX as F
>>> raw = np.zeros((1, N_FEATURES))
>>> raw[0, F["src_out_cnt_1m"]] = 1.0     # ratio, scale 1
>>> raw[0, F["src_amt_z"]] = -2.0         # signed, scale 2
>>> u = to_unit(raw)
>>> float(u[0, F["src_out_cnt_1m"]]), float(u[0, F["src_amt_z"]]), float(u[0, F["log_amount"]])
(0.5, 0.25, 0.5)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from riskgraph.features.catalogue import FEATURES, N_FEATURES, SQUASHES

# Codes fixed here, next to the kernel that freezes them, so that numba's cache follows edits.
_RATIO, _LINEAR, _SIGNED, _SIGNED_SQRT, _FLAG = 0, 1, 2, 3, 4
_CODE = {"ratio": _RATIO, "linear": _LINEAR, "signed": _SIGNED, "signed_sqrt": _SIGNED_SQRT, "flag": _FLAG}
if set(_CODE) != set(SQUASHES):  # pragma: no cover - guards edits of catalogue.SQUASHES
    raise RuntimeError(f"features.unit knows squashes {sorted(_CODE)}, the catalogue lists {SQUASHES}")
#: Squash code of each feature (see ``_CODE``) and its scale, in catalogue order.
SQUASH_CODES: np.ndarray = np.array([_CODE[f.squash] for f in FEATURES], np.int64)
SCALES: np.ndarray = np.array([f.scale for f in FEATURES], np.float64)
SQUASH_CODES.setflags(write=False)
SCALES.setflags(write=False)


@njit(cache=True)
def _signed(x: float, s: float) -> float:
    if x >= 0.0:
        return 1.0 - 0.5 * s / (x + s)
    return 0.5 * s / (s - x)


@njit(cache=True)
def _to_unit(raw: np.ndarray, codes: np.ndarray, scales: np.ndarray, out: np.ndarray) -> None:
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            x, s, c = raw[i, j], scales[j], codes[j]
            if c == _RATIO:
                y = 1.0 - s / (max(x, 0.0) + s)
            elif c == _LINEAR:
                y = min(max(x / s, 0.0), 1.0)
            elif c == _SIGNED:
                y = _signed(x, s)
            elif c == _SIGNED_SQRT:
                y = _signed(math.copysign(math.sqrt(abs(x) / s), x), 1.0)
            else:
                y = min(max(x, 0.0), 1.0)
            out[i, j] = y


def to_unit(raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Raw feature rows (float64[n, N_FEATURES] or one row [N_FEATURES]) squashed into [0, 1].

    Raises ValueError on another width or non-finite values. ``out`` (same shape,
    float64, C-contiguous) is written in place and returned when given.
    """
    a = np.asarray(raw)
    if a.ndim not in (1, 2) or a.shape[-1] != N_FEATURES:
        raise ValueError(f"raw must have shape (n, {N_FEATURES}) or ({N_FEATURES},), got {a.shape}")
    if a.dtype.kind not in "iuf":
        raise ValueError(f"raw must be real numbers, got dtype {a.dtype}")
    a2 = np.ascontiguousarray(a.reshape(-1, N_FEATURES), dtype=np.float64)
    if not np.isfinite(a2).all():
        i, j = np.argwhere(~np.isfinite(a2))[0]
        raise ValueError(f"raw must be finite, got {a2[i, j]} at row {i}, feature {FEATURES[j].name}")
    if out is None:
        out = np.empty(a.shape, np.float64)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != a.shape \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous float64 array of shape {a.shape}")
    _to_unit(a2, SQUASH_CODES, SCALES, out.reshape(-1, N_FEATURES))
    return out
