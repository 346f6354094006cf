"""Graph features of an event from its two ends' rings: money flowing *through* a node.

The 24 catalogue features (``features.catalogue``) describe each end's activity in
one direction at a time: what the sender sent, what the receiver received. Laundering
shapes are about both directions of one node: a mule receives and forwards about the
same amount within minutes; a collector receives from many senders over days and then
pays out; a ring member passes on what the previous member paid it. These features
read the ``RING`` most recent interactions of both ends (``features.layout``), in the
same node table the TGN reads its temporal neighbours from:

* ``src_log_since_in`` -- log1p(seconds since the sender last *received*);
  ``NEVER_LOG_S`` when its ring holds no earlier inflow;
* ``src_in_match`` -- min over the sender's inflows of the last day of
  ``|log(amount / inflow amount)|`` (0: forwards exactly what it got), capped at
  ``MATCH_CAP`` (also when there is no amount or no such inflow);
* ``src_out_over_in_1d`` -- ``log(amount / sum of the sender's inflows of the last day)``,
  clipped to ``[-MATCH_CAP, MATCH_CAP]``; ``MATCH_CAP`` without inflow or amount;
* ``src_fan_in_3d`` -- distinct counterparties that paid the sender in the last 3 days;
* ``src_in_share`` -- share of inflows among the sender's earlier ring entries (0 if none);
* ``dst_fan_in_3d`` -- distinct counterparties that paid the receiver in the last 3 days;
* ``dst_out_n`` -- the receiver's earlier outflows in its ring (a fresh cash-out account: 0).

Only ring entries strictly older than the event count (as for the TGN's neighbours,
``models.tgn.neighbours``; both walk the rings with ``features.rings``): the Engine
writes a batch's interactions into the rings before scoring it, so this excludes the
event itself and everything after it. Like the TGN's neighbour sets, the features of a node with more than ``RING`` interactions
inside one micro-batch depend on where the batch is cut (the ring then no longer
holds all of its older entries). Work per event is bounded: two rings of ``RING``.

The event's amount comes back from its squashed ``log_amount`` feature
(:func:`amount_from_unit`, the exact inverse of the ``signed`` squash).

>>> from riskgraph.features.layout import NodeArrays, init_rows
>>> t = NodeArrays.empty(3); init_rows(t, np.arange(3))
>>> t.ring_nbr[1, 0], t.ring_ts[1, 0], t.ring_amt[1, 0], t.ring_dir[1, 0] = 0, 100.0, 1000.0, 1  # 0 paid 1
>>> t.ring_n[1] = 1
>>> g = graph_features(t, np.array([1]), np.array([2]), np.array([700.0]), np.array([970.0]))
>>> dict(zip(GRAPH_FEATURE_NAMES, g[0].round(3).tolist()))["src_in_match"]
0.03
>>> round(float(g[0, GRAPH_FEATURE_INDEX["src_log_since_in"]]), 3), int(g[0, GRAPH_FEATURE_INDEX["src_fan_in_3d"]])
(6.399, 1)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from riskgraph.features.catalogue import FEATURE_INDEX, FEATURES, NEVER_LOG_S
from riskgraph.features.checks import check_table, refresh_stale_cache
from riskgraph.features.layout import IN, RING, NodeArrays
from riskgraph.features.rings import SOURCE_DIGEST, held, newest_column, older_than

GRAPH_FEATURE_NAMES: tuple[str, ...] = (
    "src_log_since_in", "src_in_match", "src_out_over_in_1d", "src_fan_in_3d", "src_in_share",
    "dst_fan_in_3d", "dst_out_n",
)
GRAPH_FEATURE_INDEX: dict[str, int] = {n: i for i, n in enumerate(GRAPH_FEATURE_NAMES)}
N_GRAPH_FEATURES: int = len(GRAPH_FEATURE_NAMES)
#: Cap of the log amount ratios (|log| of e**5 ~ 150x).
MATCH_CAP: float = 5.0
_DAY = 86400.0
_IN, _RING = int(IN), int(RING)
_NEVER = float(NEVER_LOG_S)
_LOG_AMOUNT, _HAS_AMOUNT = FEATURE_INDEX["log_amount"], FEATURE_INDEX["has_amount"]
_LOG_AMOUNT_SPEC = FEATURES[_LOG_AMOUNT]
if _LOG_AMOUNT_SPEC.squash != "signed":  # pragma: no cover - guards edits of the catalogue
    raise RuntimeError("features.graph inverts the 'signed' squash of log_amount")
_LAYOUT = (_IN, _RING, _NEVER, MATCH_CAP, _DAY, SOURCE_DIGEST)


@njit(cache=True)
def _baked_layout() -> tuple:
    return (_IN, _RING, _NEVER, MATCH_CAP, _DAY, SOURCE_DIGEST)


def amount_from_unit(unit: np.ndarray) -> np.ndarray:
    """Amounts (NaN: none) of squashed feature rows, inverting ``log_amount``'s squash.

    >>> from riskgraph.features.unit import to_unit
    >>> raw = np.zeros((3, len(FEATURES)))
    >>> raw[:, _LOG_AMOUNT] = np.sign([-5.0, 250.0, 1e6]) * np.log1p([5.0, 250.0, 1e6])
    >>> raw[:2, _HAS_AMOUNT] = 1.0
    >>> amount_from_unit(to_unit(raw)).round(6).tolist()
    [-5.0, 250.0, nan]
    """
    u = np.asarray(unit, np.float64)
    y = u[:, _LOG_AMOUNT]
    s = _LOG_AMOUNT_SPEC.scale
    with np.errstate(divide="ignore"):
        # signed squash: y = 1 - s/2 / (x + s) for x >= 0 (y >= 0.5), y = s/2 / (s - x) below
        x = np.where(y >= 0.5, 0.5 * s / np.maximum(1.0 - y, 1e-300) - s, s - 0.5 * s / np.maximum(y, 1e-300))
    a = np.sign(x) * np.expm1(np.abs(x))
    return np.where(u[:, _HAS_AMOUNT] >= 0.5, a, np.nan)


@njit(cache=True, inline="always")
def _add_distinct(seen, n, value):
    """Append ``value`` to ``seen[:n]`` unless it is there; returns the new count."""
    for j in range(n):
        if seen[j] == value:
            return n
    seen[n] = value
    return n + 1


@njit(cache=True)
def _graph_features(ring_nbr, ring_ts, ring_amt, ring_dir, ring_n, src_slot, dst_slot, ts, amount, out):
    seen = np.empty(_RING, np.int64)
    for i in range(ts.shape[0]):
        s, d, t, a = src_slot[i], dst_slot[i], ts[i], amount[i]
        has_a = not math.isnan(a) and a > 0.0
        # -- the sender's ring
        last_in = -1.0
        have_in = False
        match = MATCH_CAP
        in_1d = 0.0
        n_in = 0
        fan = 0
        n_valid = 0
        for back in range(held(ring_n[s])):  # the ring newest first (features.rings)
            c = newest_column(ring_n[s], back)
            if not older_than(ring_nbr, ring_ts, s, c, t):
                continue
            n_valid += 1
            if ring_dir[s, c] != _IN:
                continue
            n_in += 1
            age = t - ring_ts[s, c]
            if not have_in or ring_ts[s, c] > last_in:
                last_in = ring_ts[s, c]
                have_in = True
            x = ring_amt[s, c]
            if age < _DAY and not math.isnan(x) and x > 0.0:
                in_1d += x
                if has_a:
                    match = min(match, abs(math.log(a / x)))
            if age < 3 * _DAY:
                fan = _add_distinct(seen, fan, ring_nbr[s, c])
        out[i, 0] = math.log1p(t - last_in) if have_in else _NEVER
        out[i, 1] = match
        if has_a and in_1d > 0.0:
            out[i, 2] = min(max(math.log(a / in_1d), -MATCH_CAP), MATCH_CAP)
        else:
            out[i, 2] = MATCH_CAP
        out[i, 3] = fan
        out[i, 4] = n_in / n_valid if n_valid else 0.0
        # -- the receiver's ring
        fan = 0
        n_out = 0
        for back in range(held(ring_n[d])):
            c = newest_column(ring_n[d], back)
            if not older_than(ring_nbr, ring_ts, d, c, t):
                continue
            if ring_dir[d, c] != _IN:
                n_out += 1
            elif t - ring_ts[d, c] < 3 * _DAY:
                fan = _add_distinct(seen, fan, ring_nbr[d, c])
        out[i, 5] = fan
        out[i, 6] = n_out


def graph_features(table: NodeArrays, src_slot: np.ndarray, dst_slot: np.ndarray, ts: np.ndarray,
                   amount: np.ndarray) -> np.ndarray:
    """float64[n, N_GRAPH_FEATURES] for events ``src_slot[i] -> dst_slot[i]`` at ``ts[i]``
    with ``amount[i]`` (NaN: none), from the rings of ``table`` (see the module docstring)."""
    check_table(table)
    ts = np.ascontiguousarray(ts, np.float64)
    n = ts.shape[0]
    s = np.ascontiguousarray(src_slot, np.int64)
    d = np.ascontiguousarray(dst_slot, np.int64)
    a = np.ascontiguousarray(amount, np.float64)
    if ts.ndim != 1 or s.shape != (n,) or d.shape != (n,) or a.shape != (n,):
        raise ValueError(f"src_slot, dst_slot, ts and amount must be 1-D of one length, got "
                         f"{s.shape}, {d.shape}, {ts.shape}, {a.shape}")
    if n and (min(s.min(), d.min()) < 0 or max(s.max(), d.max()) >= table.capacity):
        raise ValueError(f"slots must be in [0, {table.capacity})")
    if not np.isfinite(ts).all():
        raise ValueError("ts must be finite")
    if table.ring_nbr.shape[1] != RING:
        raise ValueError(f"table rings must have {RING} columns, got {table.ring_nbr.shape[1]}")
    out = np.empty((n, N_GRAPH_FEATURES), np.float64)
    _graph_features(table.ring_nbr, table.ring_ts, table.ring_amt, table.ring_dir, table.ring_n, s, d, ts, a, out)
    return out


refresh_stale_cache(_baked_layout, _LAYOUT, (_add_distinct, _graph_features))
