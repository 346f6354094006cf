"""Entity risk: the decayed max, late events, self loops, the twin, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from riskgraph.features.layout import Acc
from riskgraph.features.risk import RISK_HALF_LIFE, entity_risk, update_entity_risk
from .twins import twin_risk, twin_update_risk


def test_decayed_max_by_hand(table) -> None:
    t = table(3)
    update_entity_risk(t, [0, 1], [1, 1], [0.0, RISK_HALF_LIFE], [0.8, 0.3])
    # node 1: max(0.3, 0.8 / 2) = 0.4 at one half-life; node 0 still holds 0.8 from t = 0
    np.testing.assert_allclose(t.acc[:2, Acc.RISK], [0.8, 0.4], rtol=1e-12)
    assert t.acc[0, Acc.RISK_TS] == 0.0 and t.acc[1, Acc.RISK_TS] == RISK_HALF_LIFE
    np.testing.assert_allclose(entity_risk(t, [0, 1, 2], 2 * RISK_HALF_LIFE), [0.2, 0.2, 0.0], rtol=1e-12)
    update_entity_risk(t, [1], [1], [2 * RISK_HALF_LIFE], [0.9])  # self loop
    assert t.acc[1, Acc.RISK] == 0.9


def test_late_events_and_past_now_never_inflate(table) -> None:
    t = table(2)
    update_entity_risk(t, [0, 0], [1, 1], [1000.0, 10.0], [0.5, 0.1])
    assert t.acc[0, Acc.RISK] == 0.5 and t.acc[0, Acc.RISK_TS] == 1000.0
    np.testing.assert_array_equal(entity_risk(t, [0, 1], now=0.0), [0.5, 0.5])


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_twin(table, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    src, dst = rng.integers(0, 6, n), rng.integers(0, 6, n)
    ts = np.cumsum(rng.choice([-50.0, 0.0, 600.0, 40000.0], n))
    score = rng.random(n) ** 4
    t = table(6)
    for lo in range(0, n, 37):
        update_entity_risk(t, src[lo:lo + 37], dst[lo:lo + 37], ts[lo:lo + 37], score[lo:lo + 37])
    nodes: dict = {}
    for s, d, w, sc in zip(src, dst, ts, score):
        twin_update_risk(nodes, int(s), int(d), float(w), float(sc))
    for now in (ts.max(), ts.max() + 1e5):
        np.testing.assert_allclose(entity_risk(t, np.arange(6), now),
                                   [twin_risk(nodes.get(i), now) for i in range(6)], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("kwargs,message", [
    (dict(score=[1.5]), r"score must be in \[0, 1\]"),
    (dict(score=[math.nan]), "score must be finite"),
    (dict(ts=[math.inf]), "ts must be finite"),
    (dict(src_slot=[3]), r"src_slot must be in \[0, 3\)"),
    (dict(dst_slot=[0, 1]), "dst_slot must have length 1"),
])
def test_bad_inputs_raise(table, kwargs, message: str) -> None:
    args = dict(src_slot=[0], dst_slot=[1], ts=[1.0], score=[0.5]) | kwargs
    t = table(3)
    with pytest.raises(ValueError, match=message):
        update_entity_risk(t, **args)
    assert (t.acc[:, Acc.RISK] == 0.0).all()


def test_entity_risk_errors(table) -> None:
    t = table(2)
    with pytest.raises(ValueError, match="now must be finite"):
        entity_risk(t, [0], math.nan)
    with pytest.raises(ValueError, match="now must be a finite number"):
        entity_risk(t, [0], "soon")
    with pytest.raises(ValueError, match="slots must be >= 0"):
        entity_risk(t, [-1], 0.0)
