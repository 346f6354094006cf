"""Hypothesis: random event sequences through the kernels equal the twins, in any split."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from riskgraph.features.catalogue import FEATURE_NAMES
from riskgraph.features.kernels import compute_features
from riskgraph.features.risk import entity_risk, update_entity_risk
from riskgraph.features.unit import to_unit
from .twins import twin_batch, twin_risk, twin_update_risk

AMT_SUMS = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith(("src_out_amt", "dst_in_amt"))]
OTHERS = [i for i in range(len(FEATURE_NAMES)) if i not in AMT_SUMS]
N_IDS = 5  # few nodes, so that rings wrap, nodes repeat and self loops happen

amounts = st.one_of(st.just(float("nan")), st.floats(-1e6, 1e6, allow_nan=False),
                    st.sampled_from([0.0, -0.0, 1e15, -1e15, 5e-324]))
steps = st.one_of(st.just(0.0), st.floats(-300.0, 300.0), st.floats(0.0, 3e5))
event = st.tuples(st.integers(0, N_IDS - 1), st.integers(0, N_IDS - 1), steps, amounts,
                  st.floats(0.0, 1.0))
streams = st.lists(event, min_size=1, max_size=60)


def arrays(stream, t0: float = 1.6e9):
    src = np.array([e[0] for e in stream], np.int64)
    dst = np.array([e[1] for e in stream], np.int64)
    ts = t0 + np.cumsum([e[2] for e in stream])
    amount = np.array([e[3] for e in stream], np.float64)
    score = np.array([e[4] for e in stream], np.float64)
    return src, dst, ts, amount, score


@settings(max_examples=200, deadline=None)
@given(stream=streams, cut=st.integers(0, 60))
def test_kernels_equal_twins_in_any_split(table, stream, cut: int) -> None:
    src, dst, ts, amount, score = arrays(stream)
    slots_of = np.array([3, 0, 4, 1, 2])  # ids and slots differ on purpose
    t = table(N_IDS)
    cut = min(cut, len(stream))
    parts = [slice(0, cut), slice(cut, len(stream))]
    x = np.vstack([compute_features(t, slots_of[src[p]], slots_of[dst[p]], src[p] + 100, dst[p] + 100, ts[p],
                                    amount[p]) for p in parts])
    for p in parts:
        update_entity_risk(t, slots_of[src[p]], slots_of[dst[p]], ts[p], score[p])

    nodes: dict = {}
    events = [(int(s) + 100, int(d) + 100, float(w), float(a)) for s, d, w, a in zip(src, dst, ts, amount)]
    want = np.array(twin_batch(nodes, events))
    assert np.isfinite(x).all()
    # sums of amounts up to 1e15 of both signs cancel: their rounding scales with the amounts
    scale = max(1.0, float(np.nanmax(np.abs(amount), initial=0.0)))
    np.testing.assert_allclose(x[:, AMT_SUMS], want[:, AMT_SUMS], rtol=1e-9, atol=1e-13 * len(stream) * scale)
    np.testing.assert_allclose(x[:, OTHERS], want[:, OTHERS], rtol=1e-9, atol=1e-7)
    u = to_unit(x)
    assert ((u >= 0.0) & (u <= 1.0)).all()

    risk_nodes: dict = {}
    for s, d, w, sc in zip(src, dst, ts, score):
        twin_update_risk(risk_nodes, int(s), int(d), float(w), float(sc))
    for now in (ts.min() - 10.0, ts.max(), ts.max() + 5e4):
        got = entity_risk(t, slots_of, now)
        exp = [twin_risk(risk_nodes.get(i), float(now)) for i in range(N_IDS)]
        np.testing.assert_allclose(got, exp, rtol=1e-9, atol=1e-12)
        assert ((got >= 0.0) & (got <= 1.0)).all()


@settings(max_examples=100, deadline=None)
@given(stream=streams)
def test_one_batch_equals_event_by_event(table, stream) -> None:
    src, dst, ts, amount, _ = arrays(stream, t0=0.0)
    t_all, t_one = table(N_IDS), table(N_IDS)
    x_all = compute_features(t_all, src, dst, src, dst, ts, amount)
    x_one = np.vstack([compute_features(t_one, src[i:i + 1], dst[i:i + 1], src[i:i + 1], dst[i:i + 1],
                                        ts[i:i + 1], amount[i:i + 1]) for i in range(len(stream))])
    np.testing.assert_array_equal(x_all, x_one)
    for name in ("acc", "ring_nbr", "ring_ts", "ring_amt", "ring_dir", "ring_n"):
        np.testing.assert_array_equal(getattr(t_all, name), getattr(t_one, name), err_msg=name)
