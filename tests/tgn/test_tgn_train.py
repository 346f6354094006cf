"""TGN training (it learns, it is reproducible, it validates its input) and artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import riskgraph.models.tgn.train  # noqa: E402
from riskgraph.models.tgn.artifact import TGNArtifactError, load_tgn, model_version, save_tgn  # noqa: E402
from riskgraph.models.tgn.model import TGN, TGNConfig  # noqa: E402
from riskgraph.models.tgn.runtime import TGNRuntime  # noqa: E402
from riskgraph.models.tgn.synthetic import synthetic_stream  # noqa: E402
from riskgraph.models.tgn.train import TrainConfig, ranking_metrics, train  # noqa: E402

TINY = TGNConfig(mem_dim=16, time_dim=8, emb_dim=16, dropout=0.0)


def test_train_doctest() -> None:
    import doctest

    res = doctest.testmod(riskgraph.models.tgn.train)
    assert res.attempted > 0 and res.failed == 0


def test_tiny_training_run_learns() -> None:
    s = synthetic_stream(n_nodes=60, n_events=4000, seed=0)
    cfg = TrainConfig(model=TINY, epochs=6, batch_size=100, lr=5e-3, patience=6, seed=0)
    model, m = train(s.src, s.dst, s.ts, amount=s.amount, labels=s.labels, config=cfg, progress=False)
    assert m["risk_trained"] and m["select_metric"] == "val_risk_ap" and not model.training
    history = m["history"]
    # chance: one negative per positive. The kept weights are chosen by risk AP, so their
    # link AP is incidental (0.58-0.70 over training seeds 0-7 with one thread); learning
    # shows in the best epoch's.
    assert max(h["val_link_ap"] for h in history) > m["chance_link_ap"] + 0.1
    assert m["val_link_ap"] > m["chance_link_ap"] + 0.05
    assert m["val_risk_ap"] > 5 * m["val_risk_base_rate"]
    assert m["val_risk_ap"] == max(h["val_risk_ap"] for h in history) == history[m["best_epoch"] - 1]["val_risk_ap"]
    assert history[-1]["train_link_loss"] < history[0]["train_link_loss"]
    json.dumps(m)  # metrics are plain JSON


def test_training_is_reproducible_and_keeps_the_best_weights() -> None:
    s = synthetic_stream(n_nodes=30, n_events=600, seed=3)
    cfg = TrainConfig(model=TGNConfig(mem_dim=8, time_dim=4, emb_dim=8), epochs=2, batch_size=100, seed=11)
    a, ma = train(s.src, s.dst, s.ts, amount=s.amount, config=cfg, progress=False)
    b, mb = train(s.src, s.dst, s.ts, amount=s.amount, config=cfg, progress=False)
    assert ma["history"] == [dict(h, seconds=h2["seconds"]) for h, h2 in zip(mb["history"], ma["history"])]
    assert model_version(a) == model_version(b)
    assert ma["select_metric"] == "val_link_ap" and ma["val_risk_ap"] is None  # no labels: link AP decides
    c, _ = train(s.src, s.dst, s.ts, amount=s.amount, config=TrainConfig(**{**cfg.__dict__, "seed": 12}),
                 progress=False)
    assert model_version(c) != model_version(a)


def test_explicit_edge_features() -> None:
    s = synthetic_stream(n_nodes=30, n_events=400, seed=2)
    feats = np.random.default_rng(0).random((400, 5))
    cfg = TrainConfig(model=TGNConfig(mem_dim=8, time_dim=4, emb_dim=8, edge_dim=5), epochs=1, batch_size=100)
    model, m = train(s.src, s.dst, s.ts, edge_feats=feats, config=cfg, progress=False)
    assert model.config.edge_dim == 5 and m["epochs_run"] == 1


def test_input_validation() -> None:
    s = synthetic_stream(n_nodes=20, n_events=100, seed=0)
    cfg = TrainConfig(model=TGNConfig(mem_dim=8, time_dim=4, emb_dim=8), epochs=1)
    with pytest.raises(ValueError, match="time order"):
        train(s.src, s.dst, s.ts[::-1], config=cfg, progress=False)
    with pytest.raises(ValueError, match="labels"):
        train(s.src, s.dst, s.ts, labels=np.full(100, 2), config=cfg, progress=False)
    with pytest.raises(ValueError, match="edge_feats"):
        train(s.src, s.dst, s.ts, edge_feats=np.zeros((100, 3)), config=cfg, progress=False)
    with pytest.raises(ValueError, match="edge_dim"):
        bad = TrainConfig(model=TGNConfig(mem_dim=8, time_dim=4, emb_dim=8, edge_dim=3), epochs=1)
        train(s.src, s.dst, s.ts, config=bad, progress=False)
    with pytest.raises(ValueError, match="node ids"):
        train(s.src - 100, s.dst, s.ts, config=cfg, progress=False)
    with pytest.raises(ValueError, match="cannot be split"):
        train(s.src[:1], s.dst[:1], s.ts[:1], config=cfg, progress=False)
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=1.0)


def test_ranking_metrics() -> None:
    assert ranking_metrics(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 0])) == (1.0, 1.0)
    ap, auc = ranking_metrics(np.array([0.9, 0.8, 0.1]), np.array([0, 1, 0]))
    assert ap == pytest.approx(0.5) and auc == pytest.approx(0.5)
    assert ranking_metrics(np.array([0.3, 0.2]), np.array([0, 0])) == (None, None)


def test_artifact_round_trip(tmp_path, make_table, ident) -> None:
    model = TGN.from_config(TGNConfig(mem_dim=8, time_dim=4, emb_dim=8, edge_dim=3), seed=5).eval()
    d = save_tgn(model, tmp_path / "tgn", metrics={"val_link_ap": np.float64(0.75)})
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "metrics.json", "weights.pt"]
    art = load_tgn(d)
    assert art.version == model_version(model) == json.loads((d / "config.json").read_text())["version"]
    assert art.metrics == {"val_link_ap": 0.75} and art.config["edge_features"] is None
    t1, t2 = make_table(4, model.row_width), make_table(4, model.row_width)
    args = ([0, 2], [1, 3], [1.0, 2.0], np.full((2, 3), 0.5), ident)
    s1 = TGNRuntime(model, "cpu").score_batch(t1, *args)
    s2 = TGNRuntime(art.model, "cpu").score_batch(t2, *args)
    np.testing.assert_array_equal(s1.link_prob, s2.link_prob)
    np.testing.assert_array_equal(s1.risk, s2.risk)


def test_artifact_errors(tmp_path) -> None:
    model = TGN.from_config(TGNConfig(mem_dim=8, time_dim=4, emb_dim=8), seed=1)
    with pytest.raises(TGNArtifactError, match="config.json is missing"):
        load_tgn(tmp_path)
    d = save_tgn(model, tmp_path / "a")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "kind": "hst"}))
    with pytest.raises(TGNArtifactError, match="kind"):
        load_tgn(d)
    (d / "config.json").write_text(json.dumps({**cfg, "edge_features": ["x"]}))
    with pytest.raises(TGNArtifactError, match="edge features"):
        load_tgn(d)
    (d / "config.json").write_text(json.dumps(cfg))
    other = TGN.from_config(model.config, seed=2)
    torch.save(other.state_dict(), d / "weights.pt")
    with pytest.raises(TGNArtifactError, match="do not match the recorded version"):
        load_tgn(d)
    torch.save({"x": object()}, d / "weights.pt")  # not loadable with weights_only=True
    with pytest.raises(TGNArtifactError, match="cannot load weights"):
        load_tgn(d)
    (d / "config.json").write_text("{")
    with pytest.raises(TGNArtifactError, match="invalid JSON"):
        load_tgn(d)
