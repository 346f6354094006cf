"""Bootstrap intervals of AUC and AP: exact at unit weights, seeded, shrinking with data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from riskgraph.models.evaluation import Bootstrap, entity_metrics, rank_metrics


def _data(n: int, pos_rate: float = 0.1, seed: int = 0, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(np.int64)
    s = rng.normal(size=n) + 1.2 * y
    if ties:
        s = np.round(s, 1)  # many tied scores, across the classes too
    return s, y


@pytest.mark.parametrize("ties", [False, True])
def test_unit_weights_equal_sklearn(ties):
    s, y = _data(3000, ties=ties)
    b = Bootstrap(s, y)
    auc, ap = b.auc_ap(np.ones(b.P), np.ones(b.N))
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_integer_weights_equal_sklearn_on_the_repeated_sample():
    s, y = _data(400, ties=True)
    rng = np.random.default_rng(1)
    b = Bootstrap(s, y)
    wp, wn = rng.integers(0, 3, b.P).astype(float), rng.integers(0, 3, b.N).astype(float)
    pos = np.sort(s[y == 1])[::-1]
    neg = np.sort(s[y == 0])
    rs = np.concatenate([np.repeat(pos, wp.astype(int)), np.repeat(neg, wn.astype(int))])
    ry = np.concatenate([np.ones(int(wp.sum())), np.zeros(int(wn.sum()))])
    auc, ap = b.auc_ap(wp, wn)
    assert auc == pytest.approx(roc_auc_score(ry, rs), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(ry, rs), abs=1e-12)


def test_interval_contains_the_estimate_is_seeded_and_shrinks():
    small = rank_metrics(*_data(500, seed=2), "x_", seed=0)
    again = rank_metrics(*_data(500, seed=2), "x_", seed=0)
    assert small == again  # same seed, same intervals
    for k in ("x_auc", "x_ap"):
        lo, hi = small[f"{k}_ci90"]
        assert lo <= small[k] <= hi
    other = rank_metrics(*_data(500, seed=2), "x_", seed=1)
    assert other["x_auc"] == small["x_auc"] and other["x_auc_ci90"] != small["x_auc_ci90"]
    large = rank_metrics(*_data(20_000, seed=2), "x_", seed=0)
    width = lambda m, k: m[f"{k}_ci90"][1] - m[f"{k}_ci90"][0]  # noqa: E731
    assert width(large, "x_auc") < width(small, "x_auc") / 3
    assert width(large, "x_ap") < width(small, "x_ap") / 3
    assert (small["x_positives"], small["x_negatives"]) == (int(_data(500, seed=2)[1].sum()),
                                                           500 - int(_data(500, seed=2)[1].sum()))


def test_one_class_has_no_metric_and_no_interval():
    m = rank_metrics(np.array([0.1, 0.2]), np.array([0, 0]), "e_")
    assert m == {"e_auc": None, "e_ap": None, "e_positives": 0, "e_negatives": 2}


def test_entity_metrics_per_component_and_precision_at_k():
    ents = [f"e{i}" for i in range(200)]
    labels = {e: int(i < 20) for i, e in enumerate(ents)}
    perfect = {e: 1.0 - i / 200 for i, e in enumerate(ents)}
    reverse = {e: i / 200 for i, e in enumerate(ents)}
    m = entity_metrics({"entity_risk": perfect, "other": reverse}, labels, ents)
    assert m["entity_auc"] == 1.0 and m["entity_precision_at_k"] == 1.0 and m["entity_precision_at_100"] == 0.2
    assert m["entity_components"]["other"]["entity_auc"] == 0.0
    assert m["entity_components"]["other"]["entity_precision_at_k"] == 0.0
