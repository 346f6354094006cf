"""Half-Space Trees: prequential batch == row by row, River equivalence, state, explanations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from river.anomaly import HalfSpaceTrees as RiverHST
from sklearn.metrics import roc_auc_score

from riskgraph.models.hst import HalfSpaceTrees, StateMismatchError, build_structure
from riskgraph.models.protocol import Scorer


def _cluster(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return np.clip(rng.normal(0.5, 0.06, (n, d)), 0.0, 1.0)


def _river_prequential(model: RiverHST, X: np.ndarray) -> np.ndarray:
    out = np.empty(len(X))
    for i, x in enumerate(X):
        xd = dict(enumerate(x.tolist()))
        out[i] = model.score_one(xd)
        model.learn_one(xd)
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _river_contributions(model: RiverHST, x: np.ndarray) -> np.ndarray:
    """Plain-Python twin of ``HalfSpaceTrees.contributions`` over River's own tree objects."""
    out = np.zeros(len(x))
    for tree in model.trees:
        node = tree
        for _ in range(model.height):
            if node.r_mass < model.size_limit:
                break
            child = node.children[0] if x[node.feature] < node.threshold else node.children[1]
            out[node.feature] += math.log((node.r_mass + 1.0) / (child.r_mass + 1.0))
            node = child
    return out / out.sum() if out.sum() > 0 else out


def test_implements_the_scorer_protocol():
    assert isinstance(HalfSpaceTrees(n_features=4), Scorer)


def test_score_learn_many_equals_row_by_row_exactly():
    rng = np.random.default_rng(1)
    X = rng.beta(2.0, 5.0, size=(730, 5))  # two pivots and a partial window
    batch = HalfSpaceTrees(5, n_trees=7, height=5, window_size=100, seed=3)
    single = HalfSpaceTrees(5, n_trees=7, height=5, window_size=100, seed=3)
    got = np.concatenate([batch.score_learn_many(X[a:b]) for a, b in ((0, 1), (1, 99), (99, 333), (333, 730))])
    want = np.empty(len(X))
    for i, x in enumerate(X):
        want[i] = single.score_one(x)
        single.learn_one(x)
    np.testing.assert_array_equal(got, want)
    assert batch.state_bytes() == single.state_bytes()
    # score_many does not learn; learn_many then equals the learning half of score_learn_many
    probe = rng.uniform(size=(50, 5))
    before = batch.score_many(probe)
    np.testing.assert_array_equal(batch.score_many(probe), before)
    batch.learn_many(X[:120])
    single.score_learn_many(X[:120])
    np.testing.assert_array_equal(batch.score_many(probe), single.score_many(probe))


def test_first_window_scores_zero_then_pivots():
    rng = np.random.default_rng(2)
    hst = HalfSpaceTrees(3, n_trees=4, height=4, window_size=20, seed=0)
    s = hst.score_learn_many(rng.uniform(size=(41, 3)))
    assert (s[:20] == 0.0).all() and (s[20:] > 0.0).all()
    assert hst.windows_seen == 2


@pytest.mark.parametrize(("n_trees", "height", "window", "seed"), [(5, 3, 30, 42), (25, 8, 250, 7)])
def test_scores_equal_rivers_bit_for_bit(n_trees, height, window, seed):
    rng = np.random.default_rng(seed)
    X = rng.beta(2.0, 3.0, size=(3 * window + 17, 6))
    ours = HalfSpaceTrees(6, n_trees=n_trees, height=height, window_size=window, seed=seed)
    river = RiverHST(n_trees=n_trees, height=height, window_size=window, seed=seed)
    np.testing.assert_array_equal(ours.score_learn_many(X), _river_prequential(river, X))
    feat, thr = build_structure(6, n_trees, height, seed)
    assert (feat[0, 0], thr[0, 0]) == (river.trees[0].feature, river.trees[0].threshold)
    # explanations equal a plain-Python walk over River's trees and masses
    for x in (X[5], np.r_[X[5, :5], 0.99], np.full(6, 0.01)):
        np.testing.assert_allclose(ours.contributions(x), _river_contributions(river, x), rtol=1e-12, atol=0)


def test_agrees_with_river_on_planted_anomalies_with_independent_trees():
    rng = np.random.default_rng(11)
    n, d = 2000, 8
    X = _cluster(rng, n, d)
    planted = np.zeros(n, bool)
    planted[rng.choice(np.arange(500, n), 20, replace=False)] = True
    X[planted] = rng.uniform(size=(planted.sum(), d))
    ours = HalfSpaceTrees(d, seed=1).score_learn_many(X)
    theirs = _river_prequential(RiverHST(n_trees=25, height=8, window_size=250, seed=2), X)
    live = np.arange(n) >= 250  # after the first window
    assert roc_auc_score(planted[live], ours[live]) > 0.9
    assert roc_auc_score(planted[live], theirs[live]) > 0.9
    # different random trees: the inliers' order is partly noise, the anomalies' is not
    assert _spearman(ours[live], theirs[live]) > 0.5
    top = np.argsort(-ours[live])[:20]
    assert planted[live][top].sum() >= 18


def test_injected_outlier_scores_above_every_inlier_after_warm_up():
    rng = np.random.default_rng(5)
    hst = HalfSpaceTrees(10, seed=4)
    hst.learn_many(_cluster(rng, 750, 10))
    inliers = hst.score_many(_cluster(rng, 300, 10))
    outlier = hst.score_one(np.where(np.arange(10) % 2 == 0, 0.03, 0.97))
    assert outlier > inliers.max()


def test_contributions_point_at_the_displaced_features():
    rng = np.random.default_rng(6)
    hst = HalfSpaceTrees(6, seed=9)
    assert (hst.contributions(np.full(6, 0.5)) == 0.0).all()  # first window: nothing learned
    X = _cluster(rng, 500, 6)
    hst.learn_many(X)
    x = np.array([0.5, 0.5, 0.99, 0.5, 0.01, 0.5])
    c = hst.contributions(x)
    assert c.shape == (6,) and (c >= 0).all() and math.isclose(c.sum(), 1.0, rel_tol=1e-12)
    assert set(np.argsort(-c)[:2].tolist()) == {2, 4}
    twin = HalfSpaceTrees(6, seed=9)  # deterministic: same seed and rows, same explanation
    twin.learn_many(X)
    np.testing.assert_array_equal(twin.contributions(x), c)


def test_state_round_trip_gives_identical_subsequent_scores():
    rng = np.random.default_rng(7)
    X = rng.beta(2.0, 5.0, size=(900, 4))
    a = HalfSpaceTrees(4, n_trees=9, height=6, window_size=100, seed=5)
    a.score_learn_many(X[:437])
    blob = a.state_bytes()
    b = HalfSpaceTrees.from_config(a.to_config())
    b.load_state_bytes(blob)
    assert b.state_bytes() == blob
    np.testing.assert_array_equal(a.score_learn_many(X[437:]), b.score_learn_many(X[437:]))
    np.testing.assert_array_equal(a.contributions(X[0]), b.contributions(X[0]))


def test_reset_state_equals_a_fresh_detector():
    rng = np.random.default_rng(8)
    X = rng.uniform(size=(300, 3))
    used = HalfSpaceTrees(3, window_size=50, seed=2)
    used.learn_many(X)
    used.reset_state()
    np.testing.assert_array_equal(used.score_learn_many(X), HalfSpaceTrees(3, window_size=50, seed=2).score_learn_many(X))


def test_state_from_another_configuration_or_corrupted_is_refused():
    a = HalfSpaceTrees(4, window_size=50, seed=1)
    a.learn_many(np.random.default_rng(0).uniform(size=(120, 4)))
    blob = a.state_bytes()
    for other in (HalfSpaceTrees(4, window_size=50, seed=2), HalfSpaceTrees(4, window_size=60, seed=1),
                  HalfSpaceTrees(5, window_size=50, seed=1)):
        with pytest.raises(StateMismatchError, match="differently configured"):
            other.load_state_bytes(blob)
    with pytest.raises(StateMismatchError, match="too short"):
        a.load_state_bytes(blob[:10])
    with pytest.raises(StateMismatchError, match="not an HST state"):
        a.load_state_bytes(b"XXXX" + blob[4:])
    with pytest.raises(StateMismatchError, match="corrupted"):
        a.load_state_bytes(blob[:-20])
    fresh = HalfSpaceTrees(4, window_size=50, seed=1).state_bytes()
    with pytest.raises(StateMismatchError, match="inconsistent"):  # counters of one, masses of other
        a.load_state_bytes(blob[:30] + fresh[30:])


def test_default_state_stays_small():
    hst = HalfSpaceTrees(22, seed=0)  # the defaults the engine runs with
    hst.learn_many(np.random.default_rng(3).uniform(size=(600, 22)))  # uniform: the least compressible
    assert len(hst.state_bytes()) < 16_000


def test_config_round_trip_and_validation():
    hst = HalfSpaceTrees(5, n_trees=3, height=4, window_size=10, seed=8)
    assert hst.to_config() == {"kind": "hst", "n_features": 5, "n_trees": 3, "height": 4, "window_size": 10, "seed": 8}
    X = np.random.default_rng(4).uniform(size=(40, 5))
    np.testing.assert_array_equal(HalfSpaceTrees.from_config(hst.to_config()).score_learn_many(X), hst.score_learn_many(X))
    with pytest.raises(ValueError, match="unknown"):
        HalfSpaceTrees.from_config({**hst.to_config(), "limits": None})
    with pytest.raises(ValueError, match="kind"):
        HalfSpaceTrees.from_config({**hst.to_config(), "kind": "iforest"})
    for bad in ({"n_trees": 0}, {"height": 21}, {"window_size": 2.5}, {"seed": None}, {"n_features": True}):
        with pytest.raises(ValueError):
            HalfSpaceTrees(**{"n_features": 5, **bad})


def test_bad_rows_raise_clear_errors():
    hst = HalfSpaceTrees(3)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        hst.score_many(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        hst.score_one(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="row 1, column 2"):
        hst.score_learn_many(np.array([[0.1, 0.2, 0.3], [0.1, 0.2, np.nan]]))
    with pytest.raises(ValueError, match="real-valued"):
        hst.learn_many(np.array([["a", "b", "c"]]))
    assert hst.windows_seen == 0 and hst.score_learn_many(np.zeros((0, 3))).shape == (0,)
