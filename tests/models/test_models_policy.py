"""Alert policy: dedupe against the node table, severity, calibration, adaptation, feedback, ids."""

from __future__ import annotations

import hashlib
import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskgraph.features.layout import Acc, NodeArrays, init_rows
from riskgraph.models.policy import (
    AlertPolicy,
    PolicyConfig,
    StateMismatchError,
    alert_id,
    calibrate_threshold,
    calibrate_threshold_precision,
)


def _twin_decide(cfg: PolicyConfig, thr: float, scores, ts, slots, last):
    """Plain-Python twin of the numba decide kernel: (alerted, thresholds, suppressed, final threshold)."""
    lo, hi = cfg.bounds
    idx, used, supp = [], [], 0
    for i, (s, t, k) in enumerate(zip(scores, ts, slots)):
        if s >= thr:
            if cfg.cooldown_s > 0 and not math.isnan(last[k]) and abs(t - last[k]) < cfg.cooldown_s:
                supp += 1
            else:
                last[k] = t if math.isnan(last[k]) else max(last[k], t)
                idx.append(i)
                used.append(thr)
        if cfg.target_alert_rate is not None:
            thr = min(max(thr + cfg.adapt_step * ((s >= thr) - cfg.target_alert_rate), lo), hi)
    return idx, used, supp, thr


def _table(n: int) -> NodeArrays:
    t = NodeArrays.empty(n)
    init_rows(t, np.arange(n))
    return t


def test_decide_dedupes_sequentially_and_writes_the_node_table_in_place():
    table = _table(3)
    policy = AlertPolicy(threshold=0.8, cooldown_s=60.0)
    col = table.acc[:, Acc.LAST_ALERT_TS]
    d = policy.decide(np.array([0.9, 0.99, 0.1, 0.85, 0.97]), np.array([10.0, 20.0, 30.0, 40.0, 71.0]),
                      np.array([0, 0, 1, 2, 0]), col)
    assert d.idx.dtype == np.int64 and d.idx.tolist() == [0, 3, 4]
    assert d.suppressed == 1  # event 1: same source 10 s after its alert
    np.testing.assert_array_equal(table.acc[:, Acc.LAST_ALERT_TS], [71.0, np.nan, 40.0])
    np.testing.assert_array_equal(d.threshold, [0.8, 0.8, 0.8])
    # the next batch still sees the alert times (they live in the table, not the policy)
    d2 = policy.decide(np.array([0.95, 0.95]), np.array([100.0, 100.0]), np.array([0, 2]),
                       table.acc[:, Acc.LAST_ALERT_TS])
    assert d2.idx.tolist() == [1] and d2.suppressed == 1
    assert policy.counters == {"events": 7, "above": 6, "alerts": 4, "suppressed": 2,
                               "false_positives": 0, "misses": 0}


def test_late_events_cannot_slip_past_the_cooldown_or_move_it_back():
    last = np.array([1000.0])
    policy = AlertPolicy(threshold=0.5, cooldown_s=300.0)
    d = policy.decide(np.array([0.9, 0.9, 0.9]), np.array([800.0, 600.0, 1250.0]), np.array([0, 0, 0]), last)
    assert d.idx.tolist() == [1] and d.suppressed == 2  # 800 is 200 s before the last alert
    assert last[0] == 1000.0  # the alert at 600 is older than the one recorded


def test_zero_cooldown_means_no_dedupe():
    d = AlertPolicy(threshold=0.5, cooldown_s=0.0).decide(np.full(3, 0.7), np.zeros(3), np.zeros(3, np.int32), np.full(1, np.nan))
    assert d.idx.tolist() == [0, 1, 2] and d.suppressed == 0


def test_severity_cut_points():
    p = AlertPolicy(threshold=0.6, severity_cuts=(0.2, 0.5, 0.9))
    # z = (score - 0.6) / 0.4: 0.05, 0.3, 0.75, 0.95 and 1.0
    assert p.severity(np.array([0.62, 0.72, 0.9, 0.98, 1.0]), 0.6) == ["low", "medium", "high", "critical", "critical"]
    assert p.severity(np.array([1.0]), 1.0) == ["low"]  # no headroom: at the threshold exactly
    d = p.decide(np.array([0.62, 0.98]), np.array([0.0, 0.0]), np.array([0, 1]), np.full(2, np.nan))
    assert d.severity == ["low", "critical"]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), adapt=st.booleans(), cooldown=st.sampled_from([0.0, 5.0, 50.0]),
       n=st.integers(0, 80))
def test_decide_kernel_equals_its_python_twin(seed, adapt, cooldown, n):
    rng = np.random.default_rng(seed)
    cfg = PolicyConfig(threshold=0.7, cooldown_s=cooldown, max_shift=0.05,
                       target_alert_rate=0.1 if adapt else None, adapt_step=0.01)
    scores = np.round(rng.uniform(size=n), 2)  # rounded: ties with the threshold happen
    ts = np.sort(rng.uniform(0, 200, n)) - rng.uniform(0, 3, n) * (rng.random(n) < 0.2)  # some late
    slots = rng.integers(0, 4, n)
    last_k = np.where(rng.random(4) < 0.5, np.nan, rng.uniform(0, 100, 4))
    last_t = list(last_k)
    policy = AlertPolicy(cfg)
    d = policy.decide(scores, ts, slots, last_k)
    idx, used, supp, thr = _twin_decide(cfg, 0.7, scores, ts, slots, last_t)
    assert d.idx.tolist() == idx and d.threshold.tolist() == used and d.suppressed == supp
    assert policy.threshold == thr
    np.testing.assert_array_equal(last_k, last_t)


def test_adaptation_tracks_the_target_rate_independently_of_batching():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=40_000)
    cfg = PolicyConfig(threshold=0.8, cooldown_s=0.0, max_shift=0.2, target_alert_rate=0.05, adapt_step=1e-3)
    whole, cut = AlertPolicy(cfg), AlertPolicy(cfg)
    a = whole.decide(scores, np.zeros_like(scores), np.zeros(scores.size, np.int64), np.full(1, np.nan))
    parts = [cut.decide(scores[i:i + 777], np.zeros(scores[i:i + 777].size), np.zeros(scores[i:i + 777].size, np.int64),
                        np.full(1, np.nan)).idx + i for i in range(0, scores.size, 777)]
    np.testing.assert_array_equal(a.idx, np.concatenate(parts))
    assert whole.threshold == cut.threshold
    assert abs(whole.threshold - 0.95) < 0.02  # the 95th percentile of uniform scores
    assert abs(len(a.idx[a.idx >= 20_000]) / 20_000 - 0.05) < 0.005
    # bounded: a target the bounds cannot reach pins the threshold at the bound
    pinned = AlertPolicy(cfg, target_alert_rate=0.9)
    pinned.decide(scores, np.zeros_like(scores), np.zeros(scores.size, np.int64), np.full(1, np.nan))
    assert 0.6 <= pinned.threshold <= 0.6 + 1e-3  # at the lower bound, within one step
    # off by default
    still = AlertPolicy(threshold=0.8)
    still.decide(scores, np.zeros_like(scores), np.zeros(scores.size, np.int64), np.full(1, np.nan))
    assert still.threshold == 0.8


def test_feedback_moves_the_threshold_in_bounded_steps():
    p = AlertPolicy(threshold=0.8, feedback_step=0.02, max_shift=0.05)
    assert p.apply_feedback(0.9, 0) == pytest.approx(0.82)  # false positive: up
    assert p.apply_feedback(0.81, 0) == pytest.approx(0.82)  # already below the threshold: no change
    assert p.apply_feedback(0.95, 1) == pytest.approx(0.82)  # a caught positive: no change
    assert p.apply_feedback(0.5, 0) == pytest.approx(0.82)  # an agreed negative: no change
    for _ in range(5):
        p.apply_feedback(0.99, 0)
    assert p.threshold == pytest.approx(0.85)  # capped at threshold + max_shift
    for _ in range(10):
        p.apply_feedback(0.1, 1)  # confirmed misses: down
    assert p.threshold == pytest.approx(0.75)
    assert p.counters["false_positives"] == 6 and p.counters["misses"] == 10
    for bad in ((0.9, 2), (0.9, 0.5), (math.nan, 1), (0.9, "1")):
        with pytest.raises(ValueError):
            p.apply_feedback(*bad)


def test_feedback_bounds_are_relative_to_the_calibrated_threshold():
    # a TGN-like calibrated threshold of 0.039: an absolute max_shift of 0.1 would reach 0
    low = AlertPolicy(threshold=0.039, feedback_step=0.005)
    for _ in range(100):
        low.apply_feedback(0.0, 1)  # confirmed misses at score 0
    assert low.threshold == pytest.approx(0.039 / 2)  # floor: half the distance to 0
    for _ in range(100):
        low.apply_feedback(1.0, 0)
    assert low.threshold == pytest.approx(0.139)  # ceiling: the absolute max_shift is the tighter here
    high = AlertPolicy(threshold=0.97, feedback_step=0.005)
    for _ in range(100):
        high.apply_feedback(1.0, 0)
    assert high.threshold == pytest.approx(0.985) and high.threshold < 1.0  # half the distance to 1
    for t in (0.0, 1e-6, 0.039, 0.5, 0.878, 0.999999, 1.0):
        lo, hi = PolicyConfig(threshold=t).feedback_bounds
        b_lo, b_hi = PolicyConfig(threshold=t).bounds
        assert b_lo <= lo <= t <= hi <= b_hi
        assert (lo > 0.0 or t == 0.0) and (hi < 1.0 or t == 1.0)
    with pytest.raises(ValueError, match="feedback_max_factor"):
        PolicyConfig(feedback_max_factor=1.0)


def test_feedback_never_pushes_an_adapted_threshold_further_out():
    # adaptation may take the threshold past the feedback ceiling (max_shift 0.15: up to 0.95)
    p = AlertPolicy(threshold=0.8, max_shift=0.15, target_alert_rate=0.5, adapt_step=0.01, cooldown_s=0.0)
    p.decide(np.full(24, 0.999), np.arange(24.0), np.zeros(24, np.int64), np.full(1, np.nan))
    assert p.threshold == pytest.approx(0.92) and p.config.feedback_bounds[1] == pytest.approx(0.9)
    assert p.feedback_threshold(0.999, 0) == p.threshold  # a false positive: not further up
    assert p.apply_feedback(0.999, 0) == pytest.approx(0.92)  # ... nor down to the ceiling
    assert p.counters["false_positives"] == 1
    assert p.apply_feedback(0.5, 1) == pytest.approx(0.915)  # a miss: down by one step, towards the range


def test_policy_state_written_before_feedback_max_factor_existed_still_loads():
    # a state of format 1 whose fingerprint was taken over the configuration without the field
    p = AlertPolicy(threshold=0.7, target_alert_rate=0.2)
    old = {k: v for k, v in p.to_dict().items() if k != "feedback_max_factor"}
    fp = hashlib.blake2b(json.dumps(old, sort_keys=True).encode(), digest_size=8).digest()
    state = struct.pack("<4sB8sd6q", b"RPOL", 1, fp, 0.75, 10, 2, 1, 1, 0, 1)
    p.load_state_bytes(state)
    assert p.threshold == 0.75 and p.counters["events"] == 10 and p.counters["misses"] == 1
    # another factor is another configuration: its state starts afresh (the engine resets it)
    with pytest.raises(StateMismatchError, match="another configuration"):
        AlertPolicy(threshold=0.7, target_alert_rate=0.2, feedback_max_factor=0.25).load_state_bytes(state)
    assert AlertPolicy.from_dict(old).config == p.config  # old artifacts' policy dicts still read


def test_state_round_trip_and_mismatch():
    p = AlertPolicy(threshold=0.7, target_alert_rate=0.2, adapt_step=0.01)
    p.decide(np.linspace(0, 1, 50), np.arange(50.0), np.zeros(50, np.int64), np.full(1, np.nan))
    p.apply_feedback(0.99, 0)
    q = AlertPolicy.from_dict(p.to_dict())
    q.load_state_bytes(p.state_bytes())
    assert (q.threshold, q.counters) == (p.threshold, p.counters) and q.threshold != 0.7
    q.reset_state()
    assert q.threshold == 0.7 and set(q.counters.values()) == {0}
    with pytest.raises(StateMismatchError, match="another configuration"):
        AlertPolicy(threshold=0.75, target_alert_rate=0.2, adapt_step=0.01).load_state_bytes(p.state_bytes())
    with pytest.raises(StateMismatchError, match="bytes"):
        q.load_state_bytes(p.state_bytes()[:-1])
    with pytest.raises(StateMismatchError, match="not a policy state"):
        q.load_state_bytes(b"XXXX" + p.state_bytes()[4:])


def test_dict_round_trip_and_config_validation():
    p = AlertPolicy(threshold=0.9, cooldown_s=30.0, severity_cuts=(0.1, 0.2, 0.3))
    d = p.to_dict()
    assert d["severity_cuts"] == [0.1, 0.2, 0.3] and AlertPolicy.from_dict(d).config == p.config
    assert AlertPolicy.from_dict({"threshold": 0.8}).config == PolicyConfig()
    with pytest.raises(ValueError, match="unknown"):
        AlertPolicy.from_dict({"threshold": 0.8, "cooldown": 5})
    for bad in ({"threshold": 1.5}, {"cooldown_s": -1.0}, {"severity_cuts": (0.5, 0.2, 0.9)},
                {"target_alert_rate": 0.0}, {"max_shift": math.nan}, {"threshold": math.nan}):
        with pytest.raises(ValueError):
            PolicyConfig(**bad)


def test_decide_rejects_bad_inputs():
    p = AlertPolicy()
    ok = dict(scores=np.array([0.9]), ts=np.array([1.0]), src_slot=np.array([0]), last_alert_ts=np.full(2, np.nan))
    for change, msg in (({"scores": np.array([np.nan])}, "non-finite"),
                        ({"ts": np.array([1.0, 2.0])}, "length 1"),
                        ({"src_slot": np.array([2])}, "out of range"),
                        ({"src_slot": np.array([0.0])}, "integer"),
                        ({"last_alert_ts": np.full(2, np.nan, np.float32)}, "float64")):
        with pytest.raises(ValueError, match=msg):
            p.decide(**{**ok, **change})
    assert p.counters["events"] == 0


def test_calibrate_threshold_exact_values():
    s = np.arange(1, 101) / 100.0
    assert calibrate_threshold(s, 0.1) == 0.91  # exactly 10 of 100 at or above
    assert calibrate_threshold(s, 1.0) == 0.01
    assert calibrate_threshold(s, 0.001) > 1.0  # not even one alert fits
    tied = np.array([0.2, 0.5, 0.5, 0.5, 0.5, 0.9])
    t = calibrate_threshold(tied, 0.5)  # 0.5 would alert 5 of 6: step above the ties
    assert 0.5 < t <= 0.9 and (tied >= t).mean() <= 0.5
    assert AlertPolicy.calibrate_threshold(s, 0.1) == 0.91
    with pytest.raises(ValueError):
        calibrate_threshold(s, 0.0)
    with pytest.raises(ValueError):
        calibrate_threshold(np.array([]), 0.1)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.55, 0.9, 1.0]) | st.floats(0, 1), min_size=1, max_size=60),
       st.floats(0.01, 1.0))
def test_calibrated_rate_is_the_largest_at_most_the_target(scores, rate):
    s = np.array(scores)
    t = calibrate_threshold(s, rate)
    assert (s >= t).mean() <= rate + 1e-9
    lower = s[s < t]
    if lower.size:  # the next lower score would exceed the target
        assert (s >= lower.max()).mean() > rate + 1e-9


def test_calibrate_threshold_precision():
    s = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 0, 1, 1, 0, 0])
    assert calibrate_threshold_precision(s, y, 0.8) == 0.6  # 4 of 5
    assert calibrate_threshold_precision(s, y, 1.0) == 0.9
    assert AlertPolicy.calibrate_threshold_precision(s, y, 0.5) == 0.4  # 4 of 7 >= 0.5
    with pytest.raises(ValueError, match="no threshold reaches"):
        calibrate_threshold_precision(s, 1 - y, 0.9)
    with pytest.raises(ValueError, match="0/1"):
        calibrate_threshold_precision(s, y * 2, 0.9)
    # ties: a threshold cannot split equal scores
    assert calibrate_threshold_precision(np.array([0.9, 0.5, 0.5]), np.array([1, 1, 0]), 0.7) == 0.9


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), st.integers(0, 1)), min_size=1, max_size=40),
       st.sampled_from([0.3, 0.5, 0.8, 1.0]))
def test_precision_calibration_is_the_lowest_precise_enough_threshold(pairs, target):
    s = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    precise = [t for t in np.unique(s) if y[s >= t].mean() >= target]
    if not precise:
        with pytest.raises(ValueError):
            calibrate_threshold_precision(s, y, target)
    else:
        assert calibrate_threshold_precision(s, y, target) == min(precise)


def test_reasons_top_k():
    names = ["amount_z", "fan_out", "new_counterparty", "age"]
    r = AlertPolicy.reasons(np.array([0.2, 0.5, 0.0, 0.3]), names, np.array([4.2, 17.0, 1.0, np.inf]), k=3)
    assert r == [{"feature": "fan_out", "value": 17.0, "share": 0.5},
                 {"feature": "age", "value": None, "share": 0.3},
                 {"feature": "amount_z", "value": 4.2, "share": 0.2}]
    assert [x["feature"] for x in AlertPolicy.reasons(np.array([0.5, 0.0, 0.5, 0.0]), names, np.zeros(4), k=5)] == [
        "amount_z", "new_counterparty"]  # ties in catalogue order, zero shares left out
    assert AlertPolicy.reasons(np.zeros(4), names, np.zeros(4)) == []
    with pytest.raises(ValueError, match="align"):
        AlertPolicy.reasons(np.zeros(4), names[:3], np.zeros(4))
    with pytest.raises(ValueError, match="k must"):
        AlertPolicy.reasons(np.zeros(4), names, np.zeros(4), k=0)


def test_alert_id_is_deterministic_and_distinct():
    a = alert_id("evt-42", "hst-abc123")
    assert a == "d83ca7d798c50603a1be5be30a9af657"  # fixed forever: replays must reproduce it
    assert a != alert_id("evt-42", "hst-abc124") and a != alert_id("evt-43", "hst-abc123")
    assert alert_id("ab", "c") != alert_id("a", "bc")
    with pytest.raises(ValueError):
        alert_id("", "v1")
    with pytest.raises(ValueError):
        alert_id("e1", None)  # type: ignore[arg-type]
