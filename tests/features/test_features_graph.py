"""Graph features (``features.graph``): the kernel against a plain-Python twin, what they
see of money passing through a node, input checks, and the amount read back from the squash."""

from __future__ import annotations

import math

import numpy as np
import pytest

from riskgraph.features.catalogue import FEATURE_INDEX, N_FEATURES, NEVER_LOG_S
from riskgraph.features.graph import (GRAPH_FEATURE_NAMES, MATCH_CAP, N_GRAPH_FEATURES, amount_from_unit,
                                      graph_features)
from riskgraph.features.kernels import compute_features
from riskgraph.features.layout import IN, RING, NodeArrays, init_rows
from riskgraph.features.unit import to_unit

DAY = 86400.0


def graph_features_twin(table: NodeArrays, s: int, d: int, t: float, a: float) -> list[float]:
    def entries(x: int):  # (nbr, ts, amt, dir) strictly older than t, newest first
        n = int(table.ring_n[x])
        out = []
        for back in range(min(n, RING)):
            c = (n - 1 - back) % RING
            if table.ring_nbr[x, c] >= 0 and table.ring_ts[x, c] < t:
                out.append((int(table.ring_nbr[x, c]), float(table.ring_ts[x, c]), float(table.ring_amt[x, c]),
                            int(table.ring_dir[x, c])))
        return out

    has_a = not math.isnan(a) and a > 0
    src = entries(s)
    ins = [e for e in src if e[3] == IN]
    recent = [e for e in ins if t - e[1] < DAY and not math.isnan(e[2]) and e[2] > 0]
    since = math.log1p(t - max(e[1] for e in ins)) if ins else NEVER_LOG_S
    match = min([MATCH_CAP] + [abs(math.log(a / e[2])) for e in recent]) if has_a else MATCH_CAP
    in_1d = sum(e[2] for e in recent)
    ratio = min(max(math.log(a / in_1d), -MATCH_CAP), MATCH_CAP) if has_a and in_1d > 0 else MATCH_CAP
    fan_src = len({e[0] for e in ins if t - e[1] < 3 * DAY})
    share = len(ins) / len(src) if src else 0.0
    dst = entries(d)
    fan_dst = len({e[0] for e in dst if e[3] == IN and t - e[1] < 3 * DAY})
    out_n = sum(1 for e in dst if e[3] != IN)
    return [since, match, ratio, fan_src, share, fan_dst, out_n]


def random_stream(rng: np.random.Generator, n_nodes: int, n: int):
    src = rng.integers(0, n_nodes, n)
    dst = rng.integers(0, n_nodes, n)
    ts = np.sort(rng.uniform(0, 6 * DAY, n))
    ts[1::7] = ts[0:-1:7][: len(ts[1::7])]  # ties: an event at the same instant as the one before
    amount = np.round(rng.lognormal(5, 1.5, n), 2)
    amount[rng.uniform(size=n) < 0.1] = np.nan
    return src, dst, ts, amount


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_features_equal_the_plain_python_twin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_nodes, n = 12, 600  # few nodes: rings wrap, self loops and repeated pairs happen
    src, dst, ts, amount = random_stream(rng, n_nodes, n)
    table = NodeArrays.empty(n_nodes)
    init_rows(table, np.arange(n_nodes))
    for lo in range(0, n, 50):  # as the Engine: features (which write the rings), then these
        sl = slice(lo, lo + 50)
        raw = compute_features(table, src[sl], dst[sl], src[sl], dst[sl], ts[sl], amount[sl])
        a = amount_from_unit(to_unit(raw))
        got = graph_features(table, src[sl], dst[sl], ts[sl], a)
        assert got.shape == (len(ts[sl]), N_GRAPH_FEATURES)
        for i in range(got.shape[0]):
            want = graph_features_twin(table, int(src[sl][i]), int(dst[sl][i]), float(ts[sl][i]), float(a[i]))
            np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-12, err_msg=f"event {lo + i}")


def test_graph_features_see_money_passing_through() -> None:
    # 0 pays 1 (1000) at t=0; 1 forwards 960 to 2 ten minutes later: a mule's hop
    table = NodeArrays.empty(3)
    init_rows(table, np.arange(3))
    src, dst, ts, amt = np.array([0, 1]), np.array([1, 2]), np.array([0.0, 600.0]), np.array([1000.0, 960.0])
    compute_features(table, src, dst, src, dst, ts, amt)
    g = dict(zip(GRAPH_FEATURE_NAMES, graph_features(table, src, dst, ts, amt)[1].tolist()))
    assert g["src_log_since_in"] == pytest.approx(math.log1p(600.0))
    assert g["src_in_match"] == pytest.approx(abs(math.log(0.96)))
    assert g["src_out_over_in_1d"] == pytest.approx(math.log(0.96))
    assert g["src_fan_in_3d"] == 1 and g["src_in_share"] == 1.0
    assert g["dst_fan_in_3d"] == 0 and g["dst_out_n"] == 0
    # the first event sees nothing: its own interaction is not older than itself
    g0 = graph_features(table, src, dst, ts, amt)[0]
    assert g0.tolist() == [NEVER_LOG_S, MATCH_CAP, MATCH_CAP, 0, 0.0, 0, 0]


def test_graph_features_validate_inputs() -> None:
    table = NodeArrays.empty(2)
    init_rows(table, np.arange(2))
    with pytest.raises(ValueError, match="slots"):
        graph_features(table, np.array([0]), np.array([2]), np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        graph_features(table, np.array([0]), np.array([1]), np.array([np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match="one length"):
        graph_features(table, np.array([0, 1]), np.array([1]), np.array([1.0]), np.array([1.0]))


def test_amount_from_unit_inverts_the_squash() -> None:
    amounts = np.array([0.0, 0.01, 1.0, 2.5, 999.99, 3e4, 1e9, -20.0, -7e5])
    raw = np.zeros((len(amounts) + 1, N_FEATURES))
    raw[:-1, FEATURE_INDEX["log_amount"]] = np.sign(amounts) * np.log1p(np.abs(amounts))
    raw[:-1, FEATURE_INDEX["has_amount"]] = 1.0
    got = amount_from_unit(to_unit(raw))
    np.testing.assert_allclose(got[:-1], amounts, rtol=1e-9, atol=1e-9)
    assert math.isnan(got[-1])
