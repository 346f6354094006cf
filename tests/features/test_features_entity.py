"""entity_features: against the twin's entity state, fresh rows, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from riskgraph.features.entity import ENTITY_FEATURE_NAMES, entity_features
from riskgraph.features.kernels import compute_features
from .twins import twin_batch, twin_state

COL = {n: i for i, n in enumerate(ENTITY_FEATURE_NAMES)}


def test_matches_twin_state(table, seeded_events) -> None:
    ev = seeded_events(7, n=500, n_nodes=15)
    t = table(len(ev.slot_of))
    compute_features(t, ev.src_slot, ev.dst_slot, ev.src_id, ev.dst_id, ev.ts, ev.amount)
    nodes: dict = {}
    twin_batch(nodes, ev.tuples())
    now = float(ev.ts.max()) + 10.0
    ids = sorted(nodes)
    x = entity_features(t, [ev.slot_of[i] for i in ids], now)
    assert np.isfinite(x).all()
    for row, i in zip(x, ids):
        w, node = twin_state(nodes[i]), nodes[i]
        n_amt_in = w["in_amt_n"]
        want = {
            "log_age": math.log1p(now - w["first_seen"]),
            "log_n_out": math.log1p(w["n_out"]), "log_n_in": math.log1p(w["n_in"]),
            "in_neg_share": w["in_neg_n"] / n_amt_in if n_amt_in else 0.0,
            "recip_out": w["rec_out"] / w["n_out"] if w["n_out"] else 0.0,
            "gap_std": math.sqrt(w["gap_m2"] / (w["gap_n"] - 1)) if w["gap_n"] > 1 else 0.0,
            "goodness": w["goodness"], "fairness": w["fairness"],
            "distinct_cp": float(len({nbr for nbr, _, _, _ in node.ring})),
        }
        for name, v in want.items():
            assert row[COL[name]] == pytest.approx(v, rel=1e-9, abs=1e-7), name


def test_fresh_rows_and_validation(table) -> None:
    t = table(3)
    x = entity_features(t, [0, 2], now=1e9)
    assert x.shape == (2, len(ENTITY_FEATURE_NAMES))
    assert x[:, COL["fairness"]].tolist() == [1.0, 1.0] and np.count_nonzero(x) == 2
    assert entity_features(t, np.zeros(0, np.int64), 0.0).shape == (0, len(ENTITY_FEATURE_NAMES))
    with pytest.raises(ValueError, match="finite"):
        entity_features(t, [0], math.nan)
    with pytest.raises(ValueError):
        entity_features(t, [5], 0.0)
