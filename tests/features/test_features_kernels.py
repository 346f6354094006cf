"""compute_features: hand-computed rows, the twin, incremental == batch, edge inputs, validation."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import riskgraph.features.catalogue
import riskgraph.features.checks
import riskgraph.features.kernels
import riskgraph.features.prefetch
import riskgraph.features.risk
import riskgraph.features.unit
from riskgraph.features.catalogue import FEATURE_INDEX as F
from riskgraph.features.catalogue import N_FEATURES, NEVER_LOG_S
from riskgraph.features.kernels import _LAYOUT, _baked_layout, compute_features
from riskgraph.features.layout import HALF_LIVES, IN, OUT, RING, Acc, NodeArrays, init_rows
from .twins import twin_batch

TABLE_FIELDS = ("acc", "ring_nbr", "ring_ts", "ring_amt", "ring_dir", "ring_n")


def run(t: NodeArrays, ev, lo: int = 0, hi: int | None = None) -> np.ndarray:
    hi = len(ev) if hi is None else hi
    return compute_features(t, ev.src_slot[lo:hi], ev.dst_slot[lo:hi], ev.src_id[lo:hi], ev.dst_id[lo:hi],
                            ev.ts[lo:hi], ev.amount[lo:hi])


def snapshot(t: NodeArrays) -> dict[str, np.ndarray]:
    return {k: getattr(t, k).copy() for k in TABLE_FIELDS}


def assert_tables_equal(a: dict[str, np.ndarray], b: NodeArrays) -> None:
    for k in TABLE_FIELDS:
        np.testing.assert_array_equal(a[k], getattr(b, k), err_msg=k)


def test_hand_computed_rows(table, events_from) -> None:
    # A=1 sends B=2 10.0 at t=0, again without amount at t=60, B pays A 100.0 at t=120
    ev = events_from([1, 1, 2], [2, 2, 1], [0.0, 60.0, 120.0], [10.0, np.nan, 100.0])
    t = table(2)
    x = run(t, ev)
    first = np.zeros(N_FEATURES)
    first[[F["src_log_since_out"], F["dst_log_since_in"]]] = NEVER_LOG_S
    first[[F["log_amount"], F["has_amount"], F["new_counterparty"]]] = [math.log1p(10.0), 1.0, 1.0]
    np.testing.assert_allclose(x[0], first, rtol=1e-12, atol=0)

    h0, h1, h2 = HALF_LIVES
    dec = [2.0 ** (-60.0 / h) for h in HALF_LIVES]
    second = {
        "src_out_cnt_1m": 0.5, "src_out_cnt_1h": dec[1], "src_out_cnt_1d": dec[2],
        "dst_in_cnt_1m": 0.5, "dst_in_cnt_1h": dec[1], "dst_in_cnt_1d": dec[2],
        "src_out_amt_1m": 5.0, "src_out_amt_1h": 10.0 * dec[1], "src_out_amt_1d": 10.0 * dec[2],
        "dst_in_amt_1m": 5.0, "dst_in_amt_1h": 10.0 * dec[1], "dst_in_amt_1d": 10.0 * dec[2],
        "src_log_since_out": math.log1p(60.0), "dst_log_since_in": math.log1p(60.0),
        "src_amt_z": 0.0, "log_amount": 0.0, "has_amount": 0.0, "new_counterparty": 0.0,
        "src_fan_out_1h": 1.0, "dst_fan_in_1h": 1.0, "src_distinct_cp": 1.0,
        "src_burst": 0.5 / (1.0 + dec[2] * h0 / h2),
        "src_log_age": math.log1p(60.0), "dst_log_age": math.log1p(60.0),
    }
    np.testing.assert_allclose(x[1], [second[n] for n in riskgraph.features.catalogue.FEATURE_NAMES], rtol=1e-12)

    # B never sent and A never received before the third event
    assert x[2, F["src_log_since_out"]] == NEVER_LOG_S and x[2, F["dst_log_since_in"]] == NEVER_LOG_S
    assert x[2, F["new_counterparty"]] == 0.0  # A is in B's ring, as a sender
    assert x[2, F["src_fan_out_1h"]] == 0.0 and x[2, F["dst_fan_in_1h"]] == 0.0
    assert x[2, F["src_distinct_cp"]] == 1.0
    np.testing.assert_allclose(x[2, F["src_log_age"]], math.log1p(120.0), rtol=1e-12)

    a, b = ev.slot_of[1], ev.slot_of[2]
    assert t.acc[a, Acc.N_OUT] == 2 and t.acc[a, Acc.N_IN] == 1 and t.acc[a, Acc.AMT_N] == 1
    assert t.acc[b, Acc.LAST_OUT_TS] == 120.0 and t.acc[b, Acc.FIRST_SEEN] == 0.0
    np.testing.assert_allclose(t.acc[a, Acc.OUT_AMT_0], 10.0 * 0.25, rtol=1e-12)
    assert t.ring_n[a] == 3 and t.ring_dir[a, :3].tolist() == [OUT, OUT, IN]
    assert t.ring_nbr[a, :3].tolist() == [2, 2, 2] and math.isnan(t.ring_amt[a, 1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_twin(table, seeded_events, state_matches, seed: int) -> None:
    ev = seeded_events(seed, n=400, n_nodes=4 + 6 * seed)
    t = table(len(ev.slot_of))
    x = run(t, ev)
    nodes: dict = {}
    want = np.array(twin_batch(nodes, ev.tuples()))
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x, want, rtol=1e-9, atol=1e-7)
    for entity, node in nodes.items():
        state_matches(t, ev.slot_of[entity], node)


@pytest.mark.parametrize("seed", [10, 11])
def test_incremental_equals_batch(table, seeded_events, seed: int) -> None:
    ev = seeded_events(seed, n=600, n_nodes=12)
    cap = len(ev.slot_of)
    t_all = table(cap)
    x_all = run(t_all, ev)

    t_one = table(cap)
    x_one = np.vstack([run(t_one, ev, i, i + 1) for i in range(len(ev))])

    rng = np.random.default_rng(seed)
    cuts = np.unique(np.r_[0, np.sort(rng.integers(0, len(ev), 25)), len(ev)])
    t_rand = table(cap)
    x_rand = np.vstack([run(t_rand, ev, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])])

    np.testing.assert_array_equal(x_one, x_all)
    np.testing.assert_array_equal(x_rand, x_all)
    assert_tables_equal(snapshot(t_all), t_one)
    assert_tables_equal(snapshot(t_all), t_rand)


def test_repeated_nodes_and_self_loops(table, events_from, state_matches) -> None:
    src = [7, 7, 8, 7, 8, 8, 7] + [7] * 20
    dst = [7, 8, 7, 7, 8, 7, 8] + list(range(100, 120))
    ts = [5.0] * 7 + [6.0 + i for i in range(20)]
    ev = events_from(src, dst, ts, [1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 7.0] + [3.0] * 20)
    t = table(len(ev.slot_of))
    x = run(t, ev)
    nodes: dict = {}
    np.testing.assert_allclose(x, twin_batch(nodes, ev.tuples()), rtol=1e-9, atol=1e-7)
    for entity, node in nodes.items():
        state_matches(t, ev.slot_of[entity], node)
    # first event, a self loop on a new node: it is its own new counterparty, and gets two entries
    assert x[0, F["new_counterparty"]] == 1.0 and x[3, F["new_counterparty"]] == 0.0
    s7 = ev.slot_of[7]
    assert t.ring_n[s7] == 2 * 2 + 4 + 20 and t.acc[s7, Acc.N_OUT] == 4 + 20
    # the ring keeps only the RING most recent interactions: sends to 103..118 before the last
    assert x[-1, F["src_fan_out_1h"]] == RING and x[-1, F["src_distinct_cp"]] == RING
    assert x[-1, F["new_counterparty"]] == 1.0 and x[-2, F["new_counterparty"]] == 1.0


def test_missing_amount_updates_counts_only(table, events_from) -> None:
    ev = events_from([1] * 5, [2] * 5, [0.0, 1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, np.nan, 40.0])
    t = table(2)
    x = run(t, ev)
    a = ev.slot_of[1]
    assert x[3, F["log_amount"]] == 0.0 and x[3, F["src_amt_z"]] == 0.0 and x[3, F["has_amount"]] == 0.0
    assert x[4, F["src_amt_z"]] != 0.0  # three amounts of history by then
    assert t.acc[a, Acc.N_OUT] == 5 and t.acc[a, Acc.AMT_N] == 4
    want = sum(v * 2.0 ** (-(4.0 - w) / HALF_LIVES[2]) for v, w in ((10.0, 0), (20.0, 1), (30.0, 2), (40.0, 4)))
    np.testing.assert_allclose(t.acc[a, Acc.OUT_AMT_2], want, rtol=1e-12)
    assert np.isnan(t.ring_amt[a, 3]) and np.isfinite(x).all()


@pytest.mark.parametrize("bad", [np.inf, -np.inf, 2e15, -1e16])
def test_out_of_range_amount_rejected_before_any_update(table, events_from, bad: float) -> None:
    ev = events_from([1, 1], [2, 2], [0.0, 1.0], [5.0, bad])
    t = table(2)
    before = snapshot(t)
    with pytest.raises(ValueError, match="amount"):
        run(t, ev)
    assert_tables_equal(before, t)


def test_extreme_amounts_stay_finite(table, events_from) -> None:
    amounts = [1e15, -1e15, 1e15, 5e-324, 0.0, -0.0, 1e-300, 1e15] * 50
    ev = events_from([1, 2] * 200, [2, 1] * 200, [10.0] * 400, amounts)
    t = table(2)
    x = run(t, ev)
    assert np.isfinite(x).all() and np.isfinite(t.acc[:, :Acc.DECAY_TS]).all()
    assert np.isfinite(riskgraph.features.unit.to_unit(x)).all()


def test_backwards_time_never_inflates(table, events_from) -> None:
    ev = events_from([1, 1, 1, 3], [2, 2, 2, 1], [1000.0, 900.0, 1060.0, 500.0], [1.0, 1.0, 1.0, 1.0])
    t = table(3)
    x = run(t, ev)
    a = ev.slot_of[1]
    assert x[1, F["src_out_cnt_1m"]] == 1.0  # not 2 ** (100 / 60): the late event decays nothing
    assert x[1, F["src_log_since_out"]] == 0.0 and x[1, F["src_log_age"]] == 0.0
    np.testing.assert_allclose(x[2, F["src_out_cnt_1m"]], 2.0 * 0.5, rtol=1e-12)
    np.testing.assert_allclose(x[2, F["src_log_age"]], math.log1p(160.0), rtol=1e-12)
    assert x[3, F["dst_log_since_in"]] == NEVER_LOG_S and x[3, F["dst_log_age"]] == 0.0  # 500 < 900
    assert t.acc[a, Acc.DECAY_TS] == 1060.0 and t.acc[a, Acc.LAST_OUT_TS] == 1060.0
    assert t.acc[a, Acc.FIRST_SEEN] == 500.0 and t.acc[a, Acc.LAST_IN_TS] == 500.0
    assert np.isfinite(x).all()


def test_out_empty_batch_and_grown_table(table, events_from) -> None:
    t = table(2)
    ev = events_from([1], [2], [3.0], [4.0])
    out = np.full((1, N_FEATURES), -1.0)
    assert run_out(t, ev, out) is out and out[0, F["has_amount"]] == 1.0
    before = snapshot(t)
    empty = compute_features(t, [], [], [], [], [], [])
    assert empty.shape == (0, N_FEATURES)
    assert_tables_equal(before, t)
    t.grow(5)  # grown rows still need init_rows
    init_rows(t, np.arange(2, 5))
    x = compute_features(t, [4], [ev.slot_of[2]], [9], [2], [5.0], [1.0])
    assert x[0, F["dst_in_cnt_1d"]] > 0.9 and x[0, F["src_log_since_out"]] == NEVER_LOG_S


def run_out(t: NodeArrays, ev, out: np.ndarray) -> np.ndarray:
    return compute_features(t, ev.src_slot, ev.dst_slot, ev.src_id, ev.dst_id, ev.ts, ev.amount, out=out)


GOOD = dict(src_slot=[0, 1], dst_slot=[1, 1], src_id=[5, 6], dst_id=[6, 6], ts=[1.0, 2.0], amount=[1.0, np.nan])


@pytest.mark.parametrize("field,value,message", [
    ("src_slot", [0, 2], r"src_slot must be in \[0, 2\)"),
    ("dst_slot", [-1, 1], "dst_slot must be >= 0"),
    ("src_slot", [0.0, 1.0], "src_slot must be integers"),
    ("dst_slot", [1], "dst_slot must have length 2"),
    ("src_id", [[5, 6]], "src_id must be 1-D"),
    ("dst_id", [-6, 6], "dst_id must be >= 0"),
    ("ts", [1.0, np.nan], "ts must be finite"),
    ("ts", [np.inf, 1.0], "ts must be finite"),
    ("ts", ["a", "b"], "ts must be real numbers"),
    ("amount", [1.0, 2.0, 3.0], "amount must have length 2"),
    ("dst_id", [6, 7], "src_slot == dst_slot must hold exactly when src_id == dst_id"),
    ("src_id", [6, 6], "src_slot == dst_slot must hold exactly when src_id == dst_id"),
])
def test_bad_inputs_raise(table, field: str, value, message: str) -> None:
    t = table(2)
    args = dict(GOOD, **{field: value})
    with pytest.raises(ValueError, match=message):
        compute_features(t, **args)


def test_bad_table_and_out_raise(table) -> None:
    t = table(2)
    with pytest.raises(ValueError, match="out must be float64"):
        compute_features(t, **GOOD, out=np.zeros((2, N_FEATURES), np.float32))
    with pytest.raises(ValueError, match="out must be float64"):
        compute_features(t, **GOOD, out=np.zeros((2, N_FEATURES - 1)))
    with pytest.raises(ValueError, match="C-contiguous"):
        compute_features(t, **GOOD, out=np.zeros((N_FEATURES, 2)).T)
    t.ring_amt = t.ring_amt.astype(np.float64)
    with pytest.raises(ValueError, match="table.ring_amt must be float32"):
        compute_features(t, **GOOD)
    with pytest.raises(ValueError, match="NodeArrays"):
        compute_features(object(), **GOOD)


def test_cached_kernels_match_layout() -> None:
    assert _baked_layout() == _LAYOUT
    assert riskgraph.features.risk._baked_layout() == riskgraph.features.risk._LAYOUT


@pytest.mark.parametrize("module", [riskgraph.features.catalogue, riskgraph.features.checks, riskgraph.features.kernels, riskgraph.features.unit,
                                    riskgraph.features.risk, riskgraph.features.prefetch])
def test_doctests(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_entity_state_hand_computed(table, events_from) -> None:
    # A=1 rates B=2 -10 at t=0; B rates A +5 at t=100 (reciprocal); A rates B +10 at t=1100
    ev = events_from([1, 2, 1], [2, 1, 2], [0.0, 100.0, 1100.0], [-10.0, 5.0, 10.0])
    t = table(2)
    run(t, ev)
    a, b = t.acc[ev.slot_of[1]], t.acc[ev.slot_of[2]]
    assert (b[Acc.IN_TOT], b[Acc.IN_AMT_N], b[Acc.IN_NEG_N], b[Acc.IN_NEG_SUM]) == (0.0, 2.0, 1.0, -10.0)
    assert (a[Acc.OUT_TOT], a[Acc.OUT_NEG_N], a[Acc.OUT_NEG_SUM], a[Acc.IN_NEG_N]) == (0.0, 1.0, -10.0, 0.0)
    # B's send answers A's; A's second send answers B's; B's receipt from A at 1100 answers its own send
    assert (b[Acc.REC_OUT], a[Acc.REC_OUT], b[Acc.REC_IN], a[Acc.REC_IN]) == (1.0, 1.0, 1.0, 1.0)
    gaps = [math.log1p(100.0), math.log1p(1000.0)]  # both nodes: events at 0, 100, 1100
    assert a[Acc.GAP_N] == 2.0
    np.testing.assert_allclose([a[Acc.GAP_MEAN], a[Acc.GAP_M2]], [np.mean(gaps), np.var(gaps) * 2], rtol=1e-12)
    # REV2 steps: B's goodness after A's -1 (A fair: 1) is -1 / 2; A's error on its +1 against it is 0.75
    np.testing.assert_allclose(a[Acc.FAIR_ERR], 0.5 * abs(-1.0 - 0.0) + 0.5 * abs(1.0 - (-0.5)), rtol=1e-12)
    fair_a = 1.0 - 0.5 / 2.0  # before the third event: one amount sent, error 0.5
    np.testing.assert_allclose([b[Acc.GOOD_SUM], b[Acc.GOOD_W]], [-1.0 + fair_a, 1.0 + fair_a], rtol=1e-12)
