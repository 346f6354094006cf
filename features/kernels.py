"""Hot-path event features: one numba pass over a micro-batch, node state updated in place.

For each event, in the given order, :func:`compute_features` decays both ends' accumulators
to the event time, writes the event's feature row (``features.catalogue.FEATURES``) from
that state *before* the event, then adds the event to both ends: decayed counts and
amount sums, last/first-seen times, the sender's amount profile, totals, and one entry
in each end's ring, and the entity state (``features.layout``: totals and negative parts of
the amounts, reciprocity, log-gap moments, REV2 fairness/goodness, the counterparties'
goodness and activity). Work per event is bounded (two rows and two 16-entry rings).

Semantics the tests pin down:

* time never runs backwards inside a node: a late event (older than the node's decay
  clock ``Acc.DECAY_TS``) decays by nothing and is added at the clock's time; last-seen
  times keep their maximum, first-seen its minimum; "seconds since" clamp at 0;
* a missing amount is NaN: counts and rings update, amount sums and the profile do not,
  amount features are 0 and ``has_amount`` is 0; +-inf or ``|amount| > AMOUNT_MAX`` is
  rejected with ValueError (``streams.events`` already dead-letters non-finite amounts);
* the same node may appear many times in a batch, as either end; a self loop (src == dst)
  reads the row once, then adds an OUT and an IN interaction to it;
* with finite inputs and rows from ``layout.init_rows``, outputs are finite.

Splitting a batch anywhere gives bit-identical features and state (incremental == batch).

>>> from riskgraph.features.layout import NodeArrays, init_rows
>>> from riskgraph.features.catalogue import FEATURE_INDEX as F
>>> t = NodeArrays.empty(2); init_rows(t, np.arange(2))
>>> x = compute_features(t, [0, 0], [1, 1], [10, 10], [11, 11], [0.0, 60.0], [5.0, np.nan])
>>> [float(x[1, F[k]]) for k in ("src_out_cnt_1m", "new_counterparty", "has_amount")]
[0.5, 0.0, 0.0]
>>> int(t.ring_n[1]), t.ring_nbr[1, :2].tolist()
(2, [10, 10])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from riskgraph.features.catalogue import (AMOUNT_MAX, FAN_WINDOW_S, FEATURE_NAMES, GOODNESS_SCALE, N_FEATURES,
                                         NEVER_LOG_S, Z_MIN_HISTORY, Z_STD_FLOOR)
from riskgraph.features.checks import as_float_array, as_index_array, as_out_array, check_table, refresh_stale_cache
from riskgraph.features.layout import HALF_LIVES, IN, OUT, RING, Acc, NodeArrays
from riskgraph.features.prefetch import prefetch
from riskgraph.features.rings import SOURCE_DIGEST, held, next_column

# Column constants frozen into the kernels (see ``refresh_stale_cache`` for layout edits).
_OUT_CNT, _IN_CNT, _OUT_AMT, _IN_AMT = int(Acc.OUT_CNT_0), int(Acc.IN_CNT_0), int(Acc.OUT_AMT_0), int(Acc.IN_AMT_0)
_DECAYED = (_OUT_CNT, _IN_CNT, _OUT_AMT, _IN_AMT)
for _base, _name in zip(_DECAYED, ("OUT_CNT", "IN_CNT", "OUT_AMT", "IN_AMT")):
    if [int(Acc[f"{_name}_{k}"]) for k in range(3)] != [_base, _base + 1, _base + 2]:
        raise RuntimeError(f"features.kernels expects Acc.{_name}_0..2 to be consecutive columns")
_DECAY_TS, _FIRST = int(Acc.DECAY_TS), int(Acc.FIRST_SEEN)
_LAST_OUT, _LAST_IN = int(Acc.LAST_OUT_TS), int(Acc.LAST_IN_TS)
_AMT_N, _AMT_MEAN, _AMT_M2 = int(Acc.AMT_N), int(Acc.AMT_MEAN), int(Acc.AMT_M2)
_N_OUT, _N_IN = int(Acc.N_OUT), int(Acc.N_IN)
_RING, _OUT, _IN = int(RING), int(OUT), int(IN)
# entity state columns (features.layout: IN_TOT onwards)
_ENT = tuple(int(Acc[c]) for c in ("IN_TOT", "OUT_TOT", "IN_AMT_N", "IN_NEG_N", "IN_NEG_SUM", "OUT_NEG_N",
                                   "OUT_NEG_SUM", "REC_OUT", "REC_IN", "GAP_N", "GAP_MEAN", "GAP_M2", "GOOD_SUM",
                                   "GOOD_W", "FAIR_ERR", "NBR_RISK", "NBR_GOOD", "RISK", "RISK_TS", "NBR_LOG_DEG"))
(_IN_TOT, _OUT_TOT, _IN_AMT_N, _IN_NEG_N, _IN_NEG_SUM, _OUT_NEG_N, _OUT_NEG_SUM, _REC_OUT, _REC_IN, _GAP_N,
 _GAP_MEAN, _GAP_M2, _GOOD_SUM, _GOOD_W, _FAIR_ERR, _NBR_RISK, _NBR_GOOD, _RISK, _RISK_TS, _NBR_DEG) = _ENT
_GSCALE = float(GOODNESS_SCALE)
# Decay factor over dt seconds is exp(-dt * ln2 / h) = 2 ** (-dt / h).
_K0, _K1, _K2 = (math.log(2.0) / h for h in HALF_LIVES)
# Burst: the 1-day decayed count scaled to the 1-min half-life's window.
_BURST_SCALE = HALF_LIVES[0] / HALF_LIVES[2]
_NEVER, _WINDOW, _ZMIN, _ZFLOOR = float(NEVER_LOG_S), float(FAN_WINDOW_S), float(Z_MIN_HISTORY), float(Z_STD_FLOOR)
_NF = int(N_FEATURES)
# The order in which _write_row fills a row; the catalogue must list the same names.
_ROW_ORDER = (
    "src_out_cnt_1m", "src_out_cnt_1h", "src_out_cnt_1d", "dst_in_cnt_1m", "dst_in_cnt_1h", "dst_in_cnt_1d",
    "src_out_amt_1m", "src_out_amt_1h", "src_out_amt_1d", "dst_in_amt_1m", "dst_in_amt_1h", "dst_in_amt_1d",
    "src_log_since_out", "dst_log_since_in", "src_amt_z", "log_amount", "has_amount", "new_counterparty",
    "src_fan_out_1h", "dst_fan_in_1h", "src_distinct_cp", "src_burst", "src_log_age", "dst_log_age",
)
if _ROW_ORDER != FEATURE_NAMES:
    raise RuntimeError("features.kernels._write_row and catalogue.FEATURES disagree on the feature order")
#: Events ahead whose node rows are prefetched (2..16 measured alike).
_AHEAD = 4
_RINGS = SOURCE_DIGEST  # the ring arithmetic inlined from features.rings
_LAYOUT = (_OUT_CNT, _IN_CNT, _OUT_AMT, _IN_AMT, _DECAY_TS, _LAST_OUT, _LAST_IN, _FIRST, _AMT_N, _AMT_MEAN,
           _AMT_M2, _N_OUT, _N_IN, _RING, _OUT, _IN, _K0, _K1, _K2, _BURST_SCALE, _NEVER, _WINDOW, _ZMIN,
           _ZFLOOR, _NF, _AHEAD, _RINGS, _ENT, _GSCALE)


@njit(cache=True)
def _baked_layout() -> tuple:
    return (_OUT_CNT, _IN_CNT, _OUT_AMT, _IN_AMT, _DECAY_TS, _LAST_OUT, _LAST_IN, _FIRST, _AMT_N, _AMT_MEAN,
            _AMT_M2, _N_OUT, _N_IN, _RING, _OUT, _IN, _K0, _K1, _K2, _BURST_SCALE, _NEVER, _WINDOW, _ZMIN,
            _ZFLOOR, _NF, _AHEAD, _RINGS, _ENT, _GSCALE)


@njit(cache=True)
def _decay_to(acc: np.ndarray, s: int, t: float) -> None:
    """Bring row ``s``'s decayed columns to time ``t``; never backwards (late events: dt = 0)."""
    last = acc[s, _DECAY_TS]
    if math.isnan(last):  # nothing accumulated yet: all decayed columns are 0
        acc[s, _DECAY_TS] = t
        return
    dt = t - last
    if dt > 0.0:
        f0, f1, f2 = math.exp(-dt * _K0), math.exp(-dt * _K1), math.exp(-dt * _K2)
        for base in _DECAYED:
            acc[s, base] *= f0
            acc[s, base + 1] *= f1
            acc[s, base + 2] *= f2
        acc[s, _DECAY_TS] = t


@njit(cache=True)
def _log_since(then: float, t: float, never: float) -> float:
    if math.isnan(then):
        return never
    return math.log1p(max(t - then, 0.0))


@njit(cache=True)
def _ring_scan(nbrs: np.ndarray, tss: np.ndarray, dirs: np.ndarray, k: int, t: float, want_dir: int,
               other: int, all_too: bool) -> tuple:
    """Over the first ``k`` columns of one node's ring (those holding entries, ``features.rings.held``):
    (0 if ``other`` is among them else 1, distinct neighbours of entries with direction ``want_dir``
    at most _WINDOW old at ``t``, distinct neighbours of all entries, counted only when ``all_too``).

    Bitmasks over the (at most 16) entries keep the pairwise comparisons branch-free, which
    beats both a list of distinct values and a small hash table on full rings.
    """
    absent, u_dir, u_all = 1, 0, 0
    recent = 0  # bit m: entry m counts for the windowed count
    for j in range(k):
        nb = nbrs[j]
        if nb == other:
            absent = 0
        rec = dirs[j] == want_dir and t - tss[j] <= _WINDOW
        if rec or all_too:
            same = 0  # bit m: entry m < j has the same neighbour
            for m in range(j):
                same |= (nbrs[m] == nb) << m
            if same == 0:
                u_all += 1
            if rec:
                if same & recent == 0:
                    u_dir += 1
                recent |= 1 << j
    return absent, u_dir, u_all


@njit(cache=True)
def _prefetch_row(acc, ring_nbr, ring_ts, ring_amt, ring_dir, ring_n, x) -> None:
    """Ask for the cache lines of node row ``x`` that the kernel will touch."""
    for c in (0, 8, 16, 24, 32, 40):  # acc columns 0..42 span 344 bytes: at most 6 lines
        prefetch(acc, x, c)
    for c in (0, 8, 15):
        prefetch(ring_nbr, x, c)
        prefetch(ring_ts, x, c)
    prefetch(ring_amt, x, 0)
    prefetch(ring_amt, x, _RING - 1)
    prefetch(ring_dir, x, 0)
    prefetch(ring_dir, x, _RING - 1)
    prefetch(ring_n, x, 0)


@njit(cache=True)
def _write_row(acc, ring_nbr, ring_ts, ring_dir, ring_n, s, d, dst_id, t, la, row) -> None:
    """Feature row of event s -> d at ``t`` (``la``: slog(amount), NaN when missing) from the
    (already decayed) state before it."""
    for k in range(3):
        row[k] = acc[s, _OUT_CNT + k]
        row[3 + k] = acc[d, _IN_CNT + k]
        row[6 + k] = acc[s, _OUT_AMT + k]
        row[9 + k] = acc[d, _IN_AMT + k]
    row[12] = _log_since(acc[s, _LAST_OUT], t, _NEVER)
    row[13] = _log_since(acc[d, _LAST_IN], t, _NEVER)
    if math.isnan(la):
        row[14], row[15], row[16] = 0.0, 0.0, 0.0
    else:
        z = 0.0
        nh = acc[s, _AMT_N]
        if nh >= _ZMIN:
            std = math.sqrt(max(acc[s, _AMT_M2] / (nh - 1.0), 0.0))
            z = (la - acc[s, _AMT_MEAN]) / max(std, _ZFLOOR)
        row[14], row[15], row[16] = z, la, 1.0
    # counts do not depend on the order of the entries: scan the columns that hold one in
    # column order (walking them newest first with features.rings.newest_first, as the
    # readers of a ring in time do, makes this kernel markedly slower)
    absent, fan_out, distinct = _ring_scan(ring_nbr[s], ring_ts[s], ring_dir[s], held(ring_n[s]), t, _OUT,
                                           dst_id, True)
    row[17] = absent
    row[18] = fan_out
    row[19] = _ring_scan(ring_nbr[d], ring_ts[d], ring_dir[d], held(ring_n[d]), t, _IN, -1, False)[1]
    row[20] = distinct
    row[21] = acc[s, _OUT_CNT] / (1.0 + acc[s, _OUT_CNT + 2] * _BURST_SCALE)
    first = acc[s, _FIRST]
    row[22] = 0.0 if math.isnan(first) else math.log1p(max(t - first, 0.0))
    first = acc[d, _FIRST]
    row[23] = 0.0 if math.isnan(first) else math.log1p(max(t - first, 0.0))


@njit(cache=True)
def _add_event(acc, ring_nbr, ring_ts, ring_amt, ring_dir, ring_n, x, other_id, direction, t, a, la) -> None:
    """Add one interaction of node row ``x`` (``direction`` OUT or IN) to its state."""
    has = not math.isnan(a)
    if direction == _OUT:
        cnt, amt, last, tot = _OUT_CNT, _OUT_AMT, _LAST_OUT, _N_OUT
        amt_tot, neg_n, neg_sum, rec, back = _OUT_TOT, _OUT_NEG_N, _OUT_NEG_SUM, _REC_OUT, _IN
    else:
        cnt, amt, last, tot = _IN_CNT, _IN_AMT, _LAST_IN, _N_IN
        amt_tot, neg_n, neg_sum, rec, back = _IN_TOT, _IN_NEG_N, _IN_NEG_SUM, _REC_IN, _OUT
    # reciprocity: the counterparty is in the ring in the other direction
    for j in range(held(ring_n[x])):
        if ring_nbr[x, j] == other_id and ring_dir[x, j] == back:
            acc[x, rec] += 1.0
            break
    # burstiness: Welford moments of log1p(gap since the node's previous event)
    prev_any = acc[x, _LAST_OUT]
    if math.isnan(prev_any) or acc[x, _LAST_IN] > prev_any:
        prev_any = acc[x, _LAST_IN]
    if not math.isnan(prev_any):
        lg = math.log1p(max(t - prev_any, 0.0))
        ng = acc[x, _GAP_N] + 1.0
        delta = lg - acc[x, _GAP_MEAN]
        acc[x, _GAP_N] = ng
        acc[x, _GAP_MEAN] += delta / ng
        acc[x, _GAP_M2] += delta * (lg - acc[x, _GAP_MEAN])
    if has:
        acc[x, amt_tot] += a
        if direction == _IN:
            acc[x, _IN_AMT_N] += 1.0
        if a < 0.0:
            acc[x, neg_n] += 1.0
            acc[x, neg_sum] += a
    for k in range(3):
        acc[x, cnt + k] += 1.0
        if has:
            acc[x, amt + k] += a
    prev = acc[x, last]
    if math.isnan(prev) or t > prev:
        acc[x, last] = t
    prev = acc[x, _FIRST]
    if math.isnan(prev) or t < prev:
        acc[x, _FIRST] = t
    acc[x, tot] += 1.0
    if has and direction == _OUT:  # Welford update of the sender's profile of slog(amount)
        nh = acc[x, _AMT_N] + 1.0
        delta = la - acc[x, _AMT_MEAN]
        acc[x, _AMT_N] = nh
        acc[x, _AMT_MEAN] += delta / nh
        acc[x, _AMT_M2] += delta * (la - acc[x, _AMT_MEAN])
    j = next_column(ring_n[x])
    ring_nbr[x, j] = other_id
    ring_ts[x, j] = t
    ring_amt[x, j] = a
    ring_dir[x, j] = direction
    ring_n[x] += 1


@njit(cache=True)
def _goodness(acc: np.ndarray, x: int) -> float:
    """REV2 goodness of row ``x``: fairness-weighted mean of its normalised amounts received,
    shrunk to 0 by one unit of prior weight."""
    return acc[x, _GOOD_SUM] / (acc[x, _GOOD_W] + 1.0)


@njit(cache=True)
def _fairness(acc: np.ndarray, x: int) -> float:
    """REV2 fairness of row ``x``: 1 - mean |normalised amount sent - receiver's goodness| / 2,
    with one prior amount of error 0 (a new sender is fair)."""
    return 1.0 - acc[x, _FAIR_ERR] / (acc[x, _AMT_N] + 1.0)


@njit(cache=True)
def _entity_pair(acc: np.ndarray, s: int, d: int, t: float, a: float) -> None:
    """The pair state of event s -> d, from both ends' state before it: the counterparties'
    moving averages (not of their event risk: that is folded in after the batch is scored,
    so reading it here would depend on where the stream was cut), then one REV2 step (the sender's fairness error against the
    receiver's goodness, the receiver's goodness weighted by the sender's fairness)."""
    good_s, good_d = _goodness(acc, s), _goodness(acc, d)
    fair_s = _fairness(acc, s)
    deg_s = math.log1p(acc[s, _N_OUT] + acc[s, _N_IN])
    deg_d = math.log1p(acc[d, _N_OUT] + acc[d, _N_IN])
    # the i-th interaction of a node (from 0) weighs 1 / min(i + 1, RING); a self loop is two
    for x, good_c, deg_c, later in ((s, good_d, deg_d, 0.0), (d, good_s, deg_s, 1.0 if s == d else 0.0)):
        w = 1.0 / min(acc[x, _N_OUT] + acc[x, _N_IN] + 1.0 + later, float(_RING))
        acc[x, _NBR_GOOD] += w * (good_c - acc[x, _NBR_GOOD])
        acc[x, _NBR_DEG] += w * (deg_c - acc[x, _NBR_DEG])
    if not math.isnan(a):
        r = min(max(a / _GSCALE, -1.0), 1.0)
        acc[s, _FAIR_ERR] += abs(r - good_d) * 0.5
        acc[d, _GOOD_SUM] += fair_s * r
        acc[d, _GOOD_W] += fair_s


@njit(cache=True)
def _update_features(acc, ring_nbr, ring_ts, ring_amt, ring_dir, ring_n,
                     src_slot, dst_slot, src_id, dst_id, ts, amount, out) -> None:
    """Features of each event into ``out[i]``, then the event into both ends' rows, in order."""
    n = ts.shape[0]
    for i in range(n):
        if i + _AHEAD < n:  # memory for a later event loads while this one computes
            _prefetch_row(acc, ring_nbr, ring_ts, ring_amt, ring_dir, ring_n, src_slot[i + _AHEAD])
            _prefetch_row(acc, ring_nbr, ring_ts, ring_amt, ring_dir, ring_n, dst_slot[i + _AHEAD])
        s, d, t, a = src_slot[i], dst_slot[i], ts[i], amount[i]
        la = math.copysign(math.log1p(abs(a)), a)  # slog(amount); NaN stays NaN
        _decay_to(acc, s, t)
        _decay_to(acc, d, t)  # a no-op for a self loop
        _write_row(acc, ring_nbr, ring_ts, ring_dir, ring_n, s, d, dst_id[i], t, la, out[i])
        _entity_pair(acc, s, d, t, a)
        _add_event(acc, ring_nbr, ring_ts, ring_amt, ring_dir, ring_n, s, dst_id[i], _OUT, t, a, la)
        _add_event(acc, ring_nbr, ring_ts, ring_amt, ring_dir, ring_n, d, src_id[i], _IN, t, a, la)


@njit(cache=True)
def _first_loop_mismatch(src_slot, dst_slot, src_id, dst_id) -> int:
    """Index of the first event that is a self loop by slot but not by id, or the reverse; -1."""
    for i in range(src_slot.shape[0]):
        if (src_slot[i] == dst_slot[i]) != (src_id[i] == dst_id[i]):
            return i
    return -1


def compute_features(t: NodeArrays, src_slot: Any, dst_slot: Any, src_id: Any, dst_id: Any, ts: Any,
                     amount: Any, out: np.ndarray | None = None) -> np.ndarray:
    """Feature rows (float64[n, N_FEATURES]) of ``n`` events, updating ``t``'s rows in place.

    ``src_slot``/``dst_slot`` are rows of ``t``; ``src_id``/``dst_id`` the internal entity
    ids (>= 0) stored in the rings; ``ts`` finite event times (seconds); ``amount`` finite
    or NaN (missing), ``|amount| <= AMOUNT_MAX``. Events are applied in the given order.
    Raises ValueError on bad shapes, dtypes or values, before touching the table.
    """
    check_table(t)
    ts = as_float_array(ts, "ts", None)
    n = ts.shape[0]
    src_slot = as_index_array(src_slot, "src_slot", n, t.capacity)
    dst_slot = as_index_array(dst_slot, "dst_slot", n, t.capacity)
    src_id = as_index_array(src_id, "src_id", n)
    dst_id = as_index_array(dst_id, "dst_id", n)
    amount = as_float_array(amount, "amount", n, allow_nan=True, lo=-AMOUNT_MAX, hi=AMOUNT_MAX)
    i = _first_loop_mismatch(src_slot, dst_slot, src_id, dst_id)
    if i >= 0:
        raise ValueError(f"event {i}: src_slot == dst_slot must hold exactly when src_id == dst_id")
    out = as_out_array(out, (n, N_FEATURES))
    _update_features(t.acc, t.ring_nbr, t.ring_ts, t.ring_amt, t.ring_dir, t.ring_n,
                     src_slot, dst_slot, src_id, dst_id, ts, amount, out)
    return out


refresh_stale_cache(_baked_layout, _LAYOUT,
                    (_decay_to, _log_since, _ring_scan, _prefetch_row, _write_row, _add_event, _goodness, _fairness,
                     _entity_pair, _update_features))
