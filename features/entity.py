"""Entity features: one row per entity from its node record, for the entity models.

The node record (``features.layout``) keeps, besides the event features' decayed state,
a bounded per-entity summary updated in the same pass (``features.kernels``): totals
and negative parts of the amounts either way, reciprocity, the moments of the log
inter-event gaps, a REV2-style fairness/goodness pair (Kumar et al., WSDM 2018) and the
counterparties' goodness and activity. :func:`entity_features` turns rows of it into the
features of ``catalogue.ENTITY_FEATURES`` as seen at a time ``now``: ratios instead of
raw counts, logs of heavy-tailed counts and spans, so that a model fitted on one file
reads another at the same scale.

>>> from riskgraph.features.kernels import compute_features
>>> from riskgraph.features.layout import NodeArrays, init_rows
>>> t = NodeArrays.empty(3); init_rows(t, np.arange(3))
>>> # 0 and 1 rate 2 at -10; 2 rates 0 at +10
>>> _ = compute_features(t, [0, 1, 2], [2, 2, 0], [0, 1, 2], [2, 2, 0], [0.0, 60.0, 120.0], [-10.0, -10.0, 10.0])
>>> x = entity_features(t, [0, 1, 2], now=120.0)
>>> x.shape == (3, len(ENTITY_FEATURE_NAMES))
True
>>> col = ENTITY_FEATURE_NAMES.index
>>> x[:, col("in_neg_share")].tolist(), x[:, col("recip_out")].tolist()
([0.0, 0.0, 1.0], [0.0, 0.0, 1.0])
>>> [round(g, 3) for g in x[:, col("goodness")].tolist()]  # 2 got two -1s from fair raters, 0 one +1
[0.5, 0.0, -0.667]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from riskgraph.features.catalogue import ENTITY_FEATURE_NAMES, ENTITY_FEATURES
from riskgraph.features.checks import as_index_array, check_table
from riskgraph.features.layout import HALF_LIVES, Acc, NodeArrays

__all__ = ["ENTITY_FEATURES", "ENTITY_FEATURE_NAMES", "N_ENTITY_FEATURES", "entity_features"]

N_ENTITY_FEATURES: int = len(ENTITY_FEATURE_NAMES)
_RISK_K = math.log(2.0) / HALF_LIVES[2]  # features.risk's half-life


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _slog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _distinct(ring_nbr: np.ndarray) -> np.ndarray:
    """Distinct non-negative values per row."""
    s = np.sort(ring_nbr, axis=1)
    valid = s >= 0
    new = np.ones_like(valid)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    return (valid & new).sum(axis=1).astype(np.float64)


def entity_features(table: NodeArrays, slots: Any, now: float) -> np.ndarray:
    """Entity features (float64[len(slots), N_ENTITY_FEATURES], finite) of rows ``slots`` at ``now``.

    Columns are ``ENTITY_FEATURE_NAMES``; a row never touched by an event reads as an
    entity with no history (age 0, no events, goodness 0, fairness 1). Times after
    ``now`` count as ``now`` (spans clamp at 0). Raises ValueError on bad slots or a
    non-finite ``now``.
    """
    check_table(table)
    slots = as_index_array(slots, "slots", None, table.capacity)
    try:
        now_f = float(now)
    except (TypeError, ValueError):
        raise ValueError(f"now must be a finite number, got {now!r}") from None
    if not math.isfinite(now_f):
        raise ValueError(f"now must be finite, got {now}")
    a = table.acc[slots]
    c = {name: a[:, int(Acc[name])] for name in Acc.__members__}

    def since(then: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(then), 0.0, np.log1p(np.maximum(now_f - np.nan_to_num(then, nan=now_f), 0.0)))

    last = np.fmax(c["LAST_OUT_TS"], c["LAST_IN_TS"])
    n_out, n_in = c["N_OUT"], c["N_IN"]
    gap_n = c["GAP_N"]
    risk = np.where(np.isnan(c["RISK_TS"]), 0.0,
                    c["RISK"] * np.exp(-np.maximum(now_f - np.nan_to_num(c["RISK_TS"], nan=now_f), 0.0) * _RISK_K))
    cols = {
        "log_age": since(c["FIRST_SEEN"]),
        "log_since_last": since(last),
        "log_n_out": np.log1p(n_out),
        "log_n_in": np.log1p(n_in),
        "out_share": _ratio(n_out, n_out + n_in),
        "distinct_cp": _distinct(table.ring_nbr[slots]),
        "in_amt_mean": _ratio(c["IN_TOT"], c["IN_AMT_N"]),
        "out_amt_mean": _ratio(c["OUT_TOT"], c["AMT_N"]),
        "in_neg_share": _ratio(c["IN_NEG_N"], c["IN_AMT_N"]),
        "out_neg_share": _ratio(c["OUT_NEG_N"], c["AMT_N"]),
        "in_neg_slog": _slog(c["IN_NEG_SUM"]),
        "out_neg_slog": _slog(c["OUT_NEG_SUM"]),
        "recip_out": _ratio(c["REC_OUT"], n_out),
        "recip_in": _ratio(c["REC_IN"], n_in),
        "gap_mean": c["GAP_MEAN"],
        "gap_std": np.sqrt(np.maximum(_ratio(c["GAP_M2"], gap_n - 1.0), 0.0)),
        "goodness": c["GOOD_SUM"] / (c["GOOD_W"] + 1.0),
        "fairness": 1.0 - c["FAIR_ERR"] / (c["AMT_N"] + 1.0),
        "nbr_good": c["NBR_GOOD"],
        "nbr_log_deg": c["NBR_LOG_DEG"],
        "event_risk": risk,
    }
    if tuple(cols) != ENTITY_FEATURE_NAMES:  # pragma: no cover - guards edits of the catalogue
        raise RuntimeError("features.entity and catalogue.ENTITY_FEATURES disagree on the features")
    out = np.column_stack([cols[name] for name in ENTITY_FEATURE_NAMES]) if len(slots) else \
        np.zeros((0, N_ENTITY_FEATURES))
    return np.ascontiguousarray(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), dtype=np.float64)
