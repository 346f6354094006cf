"""models.entity: the evidence score, the stratified split, the entity head's fit, save/load and training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from riskgraph.features.entity import ENTITY_FEATURE_NAMES
from riskgraph.models.entity import EntityModel, evidence_score, fit_entity_model, split_entities

COL = ENTITY_FEATURE_NAMES.index


def features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Entity rows where the risky ones are rated badly (noisy) and have less history."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(np.int64)
    x = np.zeros((n, len(ENTITY_FEATURE_NAMES)))
    x[:, COL("goodness")] = np.clip(np.where(y == 1, -0.3, 0.4) + rng.normal(0, 0.3, n), -1, 1)
    x[:, COL("fairness")] = np.clip(1 - np.abs(rng.normal(0, 0.1, n)), 0, 1)
    x[:, COL("log_n_in")] = rng.gamma(2.0, 1.0, n) * np.where(y == 1, 0.7, 1.0)
    return x, y


def test_evidence_score_is_bounded_and_directional() -> None:
    x, y = features(2000, 0)
    s = evidence_score(x)
    assert ((0 <= s) & (s <= 1)).all()
    assert s[y == 1].mean() > s[y == 0].mean() + 0.05
    worse = x.copy()
    worse[:, COL("goodness")] -= 0.1
    assert (evidence_score(worse) >= s).all()


def test_split_is_stratified_seeded_and_disjoint() -> None:
    y = np.array([0] * 70 + [1] * 30)
    fit, held = split_entities(y, seed=3)
    assert len(held) == 30 and int(y[held].sum()) == 9 and not set(fit) & set(held)
    assert sorted([*fit, *held]) == list(range(100))
    assert split_entities(y, seed=3)[1].tolist() == held.tolist() != split_entities(y, seed=4)[1].tolist()


def test_fit_measures_on_held_out_and_round_trips(tmp_path) -> None:
    x, y = features(1500, 1)
    ids = [f"e{i}" for i in range(len(y))]
    m = fit_entity_model(x, y, ids, seed=0)
    held = m.metrics["held_out"]
    assert held["head"]["entity_positives"] + held["head"]["entity_negatives"] == len(m.held_out) == 450
    assert held["head"]["entity_auc"] > 0.75 and len(held["head"]["entity_auc_ci90"]) == 2
    m.save(tmp_path / "entity")
    back = EntityModel.load(tmp_path / "entity")
    assert back.held_out == m.held_out and back.digest() == m.digest()
    np.testing.assert_array_equal(back.score_features(x), m.score_features(x))
    meta = json.loads((tmp_path / "entity" / "entity.json").read_text())
    meta["features"] = meta["features"][:-1]
    (tmp_path / "entity" / "entity.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="train it again"):
        EntityModel.load(tmp_path / "entity")


def test_fit_needs_both_classes_and_untrained_model_is_not_saved(tmp_path) -> None:
    x, _ = features(50, 2)
    with pytest.raises(ValueError, match="at least 2 of each"):
        fit_entity_model(x, np.r_[1, np.zeros(49, np.int64)], [str(i) for i in range(50)])
    with pytest.raises(ValueError, match="only a trained"):
        EntityModel().save(tmp_path / "e")
    with pytest.raises(ValueError, match=r"\[n, "):
        EntityModel().score_features(np.zeros((3, 2)))


@pytest.mark.slow
def test_train_with_entity_labels_ships_a_head_that_evaluate_uses_on_held_out_entities(tmp_path) -> None:
    pytest.importorskip("torch")
    from riskgraph.jobs import FileSpec, evaluate
    from riskgraph.models.artifact import load_model
    from riskgraph.settings import Settings
    from riskgraph.train import train_job

    rng = np.random.default_rng(5)
    users = 300
    bad = {f"u{i}" for i in rng.choice(users, 45, replace=False)}
    lines = ["rater,ratee,rating,time"]
    for k in range(6000):
        a, b = rng.choice(users, 2, replace=False)
        ratee = f"u{b}"
        r = int(rng.integers(-10, -2)) if ratee in bad and rng.random() < 0.7 else int(rng.integers(-1, 11))
        lines.append(f"u{a},{ratee},{r},{1_400_000_000 + 60 * k}")
    (tmp_path / "net.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.csv").write_text("id,is_fraud\n" + "".join(
        f"u{i},{1 if f'u{i}' in bad else -1}\n" for i in range(users)))
    spec = FileSpec(str(tmp_path / "net.csv"), mapping={"src": "rater", "dst": "ratee", "amount": "rating", "ts": "time"})
    metrics = train_job(Settings(), spec, out_dir=str(tmp_path / "model"), epochs=1, mem_dim=8, emb_dim=8, k=4,
                        batch_size=200, progress=False, entity_labels_path=str(tmp_path / "labels.csv"))
    held = metrics["entity_head"]["held_out"]["head"]
    assert held["entity_positives"] == 14 and held["entity_auc"] > 0.8
    model = load_model(tmp_path / "model")
    assert model.entity.head is not None and len(model.entity.held_out) == 90
    out = evaluate(Settings(), spec, out_dir=str(tmp_path / "eval"), entity_labels_path=str(tmp_path / "labels.csv"),
                   eval_after=None, eval_fraction=None, state_dir=None, progress=False, model=model)
    assert out["entity_positives"] + out["entity_negatives"] == 90 and "held out" in out["entity_evaluated_on"]
    assert out["entity_headline"] == "entity_model"
    # the same entities; the event-score inputs (event_risk, nbr_risk) come from the shipped model now
    assert out["entity_auc"] > 0.8
