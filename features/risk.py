"""Entity risk: a decayed maximum of the scores of the events a node took part in.

Per event and for both ends: ``RISK = max(score, RISK * 2 ** (-dt / RISK_HALF_LIFE))``
and ``RISK_TS`` moves to the event time. As for the features, the clock never runs
backwards: a late event decays nothing (dt clamps at 0) and leaves ``RISK_TS`` where it
is. A fresh row (``layout.init_rows``) has RISK 0 and RISK_TS NaN.

>>> from riskgraph.features.layout import NodeArrays, init_rows
>>> t = NodeArrays.empty(3); init_rows(t, np.arange(3))
>>> update_entity_risk(t, [0], [1], [100.0], [0.8])
>>> entity_risk(t, [0, 1, 2], now=100.0 + RISK_HALF_LIFE).tolist()
[0.4, 0.4, 0.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from riskgraph.features.checks import as_float_array, as_index_array, check_table, refresh_stale_cache
from riskgraph.features.layout import HALF_LIVES, Acc, NodeArrays

#: Half-life of entity risk, seconds (one day).
RISK_HALF_LIFE: float = HALF_LIVES[2]
_RISK, _RISK_TS = int(Acc.RISK), int(Acc.RISK_TS)
_K = math.log(2.0) / RISK_HALF_LIFE
_LAYOUT = (_RISK, _RISK_TS, _K)


@njit(cache=True)
def _baked_layout() -> tuple:
    return (_RISK, _RISK_TS, _K)


@njit(cache=True)
def _bump(acc: np.ndarray, x: int, t: float, score: float) -> None:
    last = acc[x, _RISK_TS]
    risk = acc[x, _RISK]
    if math.isnan(last):
        acc[x, _RISK_TS] = t
    elif t > last:
        risk *= math.exp(-(t - last) * _K)
        acc[x, _RISK_TS] = t
    acc[x, _RISK] = max(score, risk)


@njit(cache=True)
def _update_entity_risk(acc: np.ndarray, src_slot: np.ndarray, dst_slot: np.ndarray, ts: np.ndarray,
                        score: np.ndarray) -> None:
    for i in range(ts.shape[0]):
        _bump(acc, src_slot[i], ts[i], score[i])
        _bump(acc, dst_slot[i], ts[i], score[i])  # a self loop bumps the same row twice: same result


@njit(cache=True)
def _entity_risk(acc: np.ndarray, slots: np.ndarray, now: float, out: np.ndarray) -> None:
    for i in range(slots.shape[0]):
        last = acc[slots[i], _RISK_TS]
        if math.isnan(last):
            out[i] = 0.0
        else:
            out[i] = acc[slots[i], _RISK] * math.exp(-max(now - last, 0.0) * _K)


def update_entity_risk(t: NodeArrays, src_slot: Any, dst_slot: Any, ts: Any, score: Any) -> None:
    """Fold each event's ``score`` (in [0, 1]) into the risk of both its ends, in order.

    Raises ValueError on bad shapes, dtypes, slots, non-finite times or scores outside [0, 1].
    """
    check_table(t)
    ts = as_float_array(ts, "ts", None)
    n = ts.shape[0]
    src_slot = as_index_array(src_slot, "src_slot", n, t.capacity)
    dst_slot = as_index_array(dst_slot, "dst_slot", n, t.capacity)
    score = as_float_array(score, "score", n, lo=0.0, hi=1.0)
    _update_entity_risk(t.acc, src_slot, dst_slot, ts, score)


def entity_risk(t: NodeArrays, slots: Any, now: float) -> np.ndarray:
    """Risk (float64[len(slots)], in [0, 1]) of rows ``slots`` decayed to time ``now``.

    A row whose risk clock is ahead of ``now`` is not decayed (dt clamps at 0).
    """
    check_table(t)
    slots = as_index_array(slots, "slots", None, t.capacity)
    try:
        now_f = float(now)
    except (TypeError, ValueError):
        raise ValueError(f"now must be a finite number, got {now!r}") from None
    if not math.isfinite(now_f):
        raise ValueError(f"now must be finite, got {now}")
    out = np.empty(slots.shape[0], np.float64)
    _entity_risk(t.acc, slots, now_f, out)
    return out


refresh_stale_cache(_baked_layout, _LAYOUT, (_bump, _update_entity_risk, _entity_risk))
