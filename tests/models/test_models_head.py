"""The supervised head (``models.head``), alone and inside a scoring model, an artifact and
``riskgraph train`` (its graph features: ``tests/features/test_features_graph.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from riskgraph.models.head import TreeHead


# -- the tree head ------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 4))
    y = ((X[:, 0] > 0.3) ^ (X[:, 1] * X[:, 2] > 0.5) | (rng.uniform(size=3000) < 0.02)).astype(int)
    X[rng.uniform(size=X.shape) < 0.05] = np.nan  # missing values take the side learned for them
    clf = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=7, random_state=0).fit(X, y)
    return X, y, clf


def test_tree_head_predicts_what_scikit_learn_does(fitted) -> None:
    X, _, clf = fitted
    head = TreeHead.from_sklearn(clf, ("a", "b", "c", "d"))
    assert head.n_trees == clf.n_iter_
    # to the last bit or two: scikit-learn's sigmoid and ours may round differently (seen on one CPU)
    np.testing.assert_allclose(head.predict(X), clf.predict_proba(X)[:, 1], rtol=1e-14, atol=0)
    np.testing.assert_allclose(head.logit(X), clf.decision_function(X), rtol=0, atol=1e-12)


def test_predict_saturates_quietly_at_extreme_logits(fitted) -> None:
    import warnings

    X, _, clf = fitted
    head = TreeHead.from_sklearn(clf, ("a", "b", "c", "d"))
    head.baseline = -1000.0  # every logit far below exp's range
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (head.predict(X) == 0.0).all()


def test_contributions_add_up_to_the_logit(fitted) -> None:
    X, _, clf = fitted
    head = TreeHead.from_sklearn(clf, ("a", "b", "c", "d"))
    contrib, bias = head.contributions(X)
    np.testing.assert_allclose(head.baseline + bias + contrib.sum(1), head.logit(X), rtol=0, atol=1e-9)
    assert np.abs(bias).max() < 1e-12  # scikit-learn's roots carry no value
    with pytest.raises(ValueError, match=r"\[n, 4\]"):
        head.contributions(np.zeros((1, 3)))


def test_contributions_credit_the_input_that_decides() -> None:
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(3000, 3))
    y = (X[:, 1] > 0.7).astype(int)  # only "b" matters
    head = TreeHead.fit(X, y, ("a", "b", "c"), seed=0, max_iter=30, n_threads=1)
    contrib, _ = head.contributions(np.array([[0.5, 0.95, 0.5], [0.5, 0.05, 0.5]]))
    assert contrib[0].argmax() == 1 and contrib[0, 1] > 0  # pushed up by b
    assert contrib[1].argmin() == 1 and contrib[1, 1] < 0  # pulled down by b
    assert np.abs(contrib[:, [0, 2]]).max() < 0.1 * np.abs(contrib[:, 1]).min()


def test_tree_head_round_trips_without_pickle(fitted, tmp_path) -> None:
    X, _, clf = fitted
    head = TreeHead.from_sklearn(clf, ("a", "b", "c", "d"))
    head.save(tmp_path)
    back = TreeHead.load(tmp_path)
    assert back.inputs == head.inputs and back.digest() == head.digest()
    np.testing.assert_array_equal(back.predict(X), head.predict(X))
    with np.load(tmp_path / "head.npz", allow_pickle=False) as z:  # plain numeric arrays only
        assert all(z[k].dtype != object for k in z.files)


def test_tree_head_refuses_tampered_or_foreign_files(fitted, tmp_path) -> None:
    _, _, clf = fitted
    head = TreeHead.from_sklearn(clf, ("a", "b", "c", "d"))
    head.save(tmp_path)
    meta = json.loads((tmp_path / "head.json").read_text())
    arrays = dict(np.load(tmp_path / "head.npz"))
    arrays["value"] = arrays["value"] * 2
    np.savez(tmp_path / "head.npz", **arrays)
    with pytest.raises(ValueError, match="digest"):
        TreeHead.load(tmp_path)
    np.savez(tmp_path / "head.npz", **{**arrays, "value": np.array([object()] * len(arrays["value"]))})
    with pytest.raises(ValueError, match="not a tree head"):
        TreeHead.load(tmp_path)
    (tmp_path / "head.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ValueError):
        TreeHead.load(tmp_path)


def test_tree_head_validates_its_arrays(fitted) -> None:
    _, _, clf = fitted
    head = TreeHead.from_sklearn(clf, ("a", "b", "c", "d"))
    fields = {k: getattr(head, k) for k in ("feature", "threshold", "left", "right", "value", "is_leaf",
                                            "missing_left", "roots")}
    loop = fields["left"].copy()
    loop[head.roots[0]] = head.roots[0]  # a node pointing at itself would never end
    with pytest.raises(ValueError, match="point forward"):
        TreeHead(inputs=head.inputs, baseline=head.baseline, **{**fields, "left": loop})
    with pytest.raises(ValueError, match="inputs"):
        TreeHead(inputs=("a", "b"), baseline=head.baseline, **fields)
    with pytest.raises(ValueError, match=r"\[n, 4\]"):
        head.predict(np.zeros((2, 3)))


def test_tree_head_fit_and_refit_with_a_fixed_size() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(4000, 3))
    y = (X[:, 0] > 0.8).astype(int)
    first = TreeHead.fit(X, y, ("a", "b", "c"), seed=0, max_iter=100, n_threads=1)
    again = TreeHead.fit(X, y, ("a", "b", "c"), seed=0, max_iter=first.n_trees, early_stopping=False)
    assert again.n_trees == first.n_trees == first.metrics["n_trees"]
    assert ((first.predict(X) > 0.5) == y).mean() > 0.99
    with pytest.raises(ValueError, match="both classes"):
        TreeHead.fit(X, np.zeros(len(X), int), ("a", "b", "c"))


# -- in a scoring model, an artifact, and riskgraph train -------------------------------

def test_a_head_needs_a_tgn_and_the_current_inputs(fitted) -> None:
    from riskgraph.models.scoring import HEAD_INPUTS, ScoringModel

    _, _, clf = fitted
    det = ScoringModel.default(seed=0).detector
    with pytest.raises(ValueError, match="other inputs"):
        ScoringModel(det, head=TreeHead.from_sklearn(clf, ("a", "b", "c", "d")))
    head = TreeHead.from_sklearn(clf, ("a", "b", "c", "d"))
    head.inputs = HEAD_INPUTS
    with pytest.raises(ValueError, match="needs a TGN"):
        ScoringModel(det, head=head)


@pytest.mark.slow
def test_train_job_fits_a_head_that_serving_loads_and_uses(tmp_path, capsys) -> None:
    torch = pytest.importorskip("torch")
    from riskgraph.models.artifact import load_model
    from riskgraph.models.scoring import HEAD_INPUTS, combine
    from riskgraph.jobs import FileSpec, evaluate
    from riskgraph.settings import Settings
    from riskgraph.train import train_job
    from riskgraph.simulators.transactions import SimConfig, simulate, write_events
    from riskgraph.state.options import StoreOptions
    from riskgraph.state.store import GraphStore
    from riskgraph.streams.engine import Engine
    from riskgraph.streams.runner import chunk_events, run_batches

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sim = simulate(SimConfig(seed=3, n_persons=400, n_merchants=80, n_atms=10, days=4, attack_rate=0.05))
        path = tmp_path / "tx.parquet"
        write_events(sim, str(path))
        settings = Settings()
        metrics = train_job(settings, FileSpec(str(path)), out_dir=str(tmp_path / "model"), epochs=1,
                            mem_dim=8, emb_dim=8, k=4, batch_size=100, progress=False)
        held = metrics["held_out"]
        assert held["combiner"]["inputs"] == ["head", "tgn_risk", "tgn_link"]
        assert held["head"]["trees"] >= 1 and "head" in held["components"]
        model = load_model(tmp_path / "model")
        assert model.head is not None and model.head.inputs == HEAD_INPUTS
        assert (tmp_path / "model" / "head" / "head.npz").is_file()
        out = evaluate(settings, FileSpec(str(path)), out_dir=str(tmp_path / "eval"), entity_labels_path=None,
                       eval_after=None, eval_fraction=0.5, state_dir=None, progress=False, model=model)
        assert set(out["components"]) == {"detector", "tgn_risk", "tgn_link", "head", "final"}
        # the Engine's final score is the saved stack of its components; a fresh load scores the same
        runs = []
        for m in (load_model(tmp_path / "model"), load_model(tmp_path / "model")):
            with GraphStore(str(tmp_path / f"state{len(runs)}"), StoreOptions(mem_dim=m.mem_dim)) as store:
                runs.append(run_batches(Engine(store, m), chunk_events(sim.events, 300), progress=False))
        r = runs[0]
        np.testing.assert_allclose(r.scores, combine(r.components, model.combiner), rtol=0, atol=1e-12)
        for k in r.components:
            np.testing.assert_array_equal(runs[1].components[k], r.components[k])
        assert [a.alert_id for a in runs[1].alerts] == [a.alert_id for a in r.alerts]
        # a trained head decides the score, so the alerts' feature reasons explain the head
        assert r.alerts
        for a in r.alerts:
            feats = [x for x in a.reasons if "feature" in x]
            assert feats and all(x["feature"] in HEAD_INPUTS and 0 < x["share"] <= 1 for x in feats)
            assert sum(x["share"] for x in feats) <= 1 + 1e-9
    finally:
        torch.set_num_threads(threads)
