"""Train a TGN on an event log: the streaming runtime, replayed batch by batch, with autograd.

Each epoch replays the training events in time order over a fresh in-memory node table,
exactly as the Engine would serve them: features (``features.kernels``, which also write
the rings), then :meth:`TGNRuntime.forward`, then :meth:`TGNRuntime.update_batch`. The
loss is the self-supervised link objective (each event against one random destination,
as in PyG's ``examples/tgn.py``) plus, when labels are given, a class-weighted risk loss.
The stream then continues over the validation events (the chronologically last
``val_fraction``) without learning; early stopping keeps the weights with the best
validation AP -- of the risk scores when the validation events hold both classes,
of the link scores otherwise.

>>> from riskgraph.models.tgn.synthetic import synthetic_stream
>>> s = synthetic_stream(n_nodes=40, n_events=400, seed=0)
>>> cfg = TrainConfig(model=TGNConfig(mem_dim=8, time_dim=4, emb_dim=8), epochs=1, batch_size=100)
>>> model, metrics = train(s.src, s.dst, s.ts, amount=s.amount, labels=s.labels, config=cfg, progress=False)
>>> metrics["epochs_run"], metrics["risk_trained"], metrics["seed"], model.training
(1, True, 0, False)
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch.nn import functional as F
from tqdm.auto import tqdm

from riskgraph.features.catalogue import N_FEATURES
from riskgraph.features.kernels import compute_features
from riskgraph.features.layout import NodeArrays, init_rows
from riskgraph.features.unit import to_unit
from riskgraph.models.tgn.model import TGN, TGNConfig
from riskgraph.models.tgn.runtime import BatchForward, TGNRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``model`` is the architecture."""

    model: TGNConfig = field(default_factory=TGNConfig)
    epochs: int = 10
    batch_size: int = 200
    lr: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.15
    patience: int = 3  # epochs without a better validation AP before stopping
    risk_weight: float = 1.0  # weight of the risk loss next to the link loss
    max_pos_weight: float = 100.0  # cap of the positive-class weight n_neg / n_pos
    grad_clip: float = 1.0  # max gradient norm (0: off)
    seed: int = 0
    device: str | None = None  # None: CUDA when available

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.risk_weight < 0 or self.max_pos_weight < 1 or self.grad_clip < 0:
            raise ValueError("need lr > 0, risk_weight >= 0, max_pos_weight >= 1, grad_clip >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


def ranking_metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float | None, float | None]:
    """(AP, ROC AUC) of scores against 0/1 labels; None when only one class is present."""
    if len(labels) == 0 or labels.min() == labels.max():
        return None, None
    return float(average_precision_score(labels, scores)), float(roc_auc_score(labels, scores))


def _check_events(src, dst, ts, amount, edge_feats, labels, edge_dim: int):
    src = np.asarray(src)
    n = src.shape[0]
    for name, a in (("src", src), ("dst", np.asarray(dst))):
        if a.shape != (n,) or (n and not np.issubdtype(a.dtype, np.integer)) or (n and a.min() < 0):
            raise ValueError(f"{name} must be a 1-D array of internal node ids >= 0 of length {n}")
    src, dst = src.astype(np.int64), np.asarray(dst, np.int64)
    ts = np.asarray(ts, np.float64)
    if ts.shape != (n,) or not np.isfinite(ts).all():
        raise ValueError(f"ts must be {n} finite times")
    if n and (np.diff(ts) < 0).any():
        i = int(np.flatnonzero(np.diff(ts) < 0)[0]) + 1
        raise ValueError(f"events must be in time order: ts[{i}] = {ts[i]} < ts[{i - 1}] = {ts[i - 1]}")
    amount = np.full(n, np.nan) if amount is None else np.asarray(amount, np.float64)
    if amount.shape != (n,):
        raise ValueError(f"amount must have length {n}, got {amount.shape}")
    if edge_feats is None:
        if edge_dim != N_FEATURES:
            raise ValueError(f"without edge_feats the feature kernels give {N_FEATURES} features, "
                             f"but the model's edge_dim is {edge_dim}")
    else:
        edge_feats = np.asarray(edge_feats, np.float32)
        if edge_feats.shape != (n, edge_dim) or not np.isfinite(edge_feats).all():
            raise ValueError(f"edge_feats must be finite of shape ({n}, {edge_dim}), got {edge_feats.shape}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,) or not np.isin(labels, (0, 1)).all():
            raise ValueError(f"labels must be {n} values in {{0, 1}}")
        labels = labels.astype(np.float32)
    return src, dst, ts, amount, edge_feats, labels


class _Replay:
    """One pass of the stream over a fresh node table (the Engine's order per batch)."""

    def __init__(self, runtime: TGNRuntime, n_nodes: int, src, dst, ts, amount, edge_feats) -> None:
        self.rt = runtime
        self.table = NodeArrays.empty(n_nodes, runtime.model.row_width)
        init_rows(self.table, np.arange(n_nodes))
        self.src, self.dst, self.ts, self.amount, self.edge = src, dst, ts, amount, edge_feats

    def step(self, lo: int, hi: int, neg: np.ndarray) -> BatchForward:
        s, d, t = self.src[lo:hi], self.dst[lo:hi], self.ts[lo:hi]
        raw = compute_features(self.table, s, d, s, d, t, self.amount[lo:hi])  # also writes the rings
        e = to_unit(raw) if self.edge is None else self.edge[lo:hi]
        return self.rt.forward(self.table, s, d, t, e, _identity, neg_slot=neg)


def _identity(ids: np.ndarray) -> np.ndarray:
    return ids  # in the training table a node's slot is its internal id


def train(src: np.ndarray, dst: np.ndarray, ts: np.ndarray, *, amount: np.ndarray | None = None,
          edge_feats: np.ndarray | None = None, labels: np.ndarray | None = None,
          config: TrainConfig | None = None, progress: bool = True) -> tuple[TGN, dict[str, Any]]:
    """Train on events in time order; returns the model (best weights, eval mode) and metrics.

    ``src``/``dst`` are dense internal ids (``[0, n_nodes)``), ``ts`` non-decreasing
    seconds, ``amount`` optional (NaN: none), ``edge_feats`` optional float[n, edge_dim]
    (default: the feature kernels' squashed rows, computed as the stream is replayed),
    ``labels`` optional 0/1 per event (enables the risk loss).
    """
    cfg = config or TrainConfig()
    src, dst, ts, amount, edge_feats, labels = _check_events(src, dst, ts, amount, edge_feats, labels,
                                                             cfg.model.edge_dim)
    n = src.shape[0]
    n_val = int(round(n * cfg.val_fraction))
    n_train = n - n_val
    if n_train < 1 or n_val < 1:
        raise ValueError(f"{n} events cannot be split into training and validation with val_fraction "
                         f"{cfg.val_fraction}")
    n_nodes = int(max(src.max(), dst.max())) + 1
    log.info("TGN training: seed=%d, %d nodes, %d train / %d val events", cfg.seed, n_nodes, n_train, n_val)
    torch.manual_seed(cfg.seed)
    model = TGN.from_config(cfg.model, seed=cfg.seed)
    rt = TGNRuntime(model, cfg.device, fold_on_write=False)  # fold on read: the GRU learns
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    dst_pool = np.unique(dst)

    use_risk = labels is not None and 0 < labels[:n_train].sum() < n_train and cfg.risk_weight > 0
    pos_weight = None
    if use_risk:
        pos = float(labels[:n_train].sum())
        pos_weight = float(min(max((n_train - pos) / pos, 1.0), cfg.max_pos_weight))
    risk_val = labels is not None and 0 < labels[n_train:].sum() < n_val
    select = "val_risk_ap" if risk_val else "val_link_ap"

    metrics: dict[str, Any] = {
        "seed": cfg.seed, "n_nodes": n_nodes, "n_train": n_train, "n_val": n_val,
        "risk_trained": use_risk, "pos_weight": pos_weight, "select_metric": select,
        "val_risk_base_rate": float(labels[n_train:].mean()) if labels is not None else None,
        "config": cfg.to_dict(), "history": [],
    }
    best, best_state, stale = -math.inf, None, 0
    bs = cfg.batch_size
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch])
        replay = _Replay(rt, n_nodes, src, dst, ts, amount, edge_feats)
        model.train()
        sums = np.zeros(3)
        batches = range(0, n_train, bs)
        for lo in tqdm(batches, desc=f"tgn epoch {epoch}", disable=not progress, leave=False):
            hi = min(lo + bs, n_train)
            fwd = replay.step(lo, hi, rng.choice(dst_pool, size=hi - lo))
            link_loss = F.binary_cross_entropy_with_logits(fwd.link_logit, torch.ones_like(fwd.link_logit)) \
                + F.binary_cross_entropy_with_logits(fwd.neg_logit, torch.zeros_like(fwd.neg_logit))
            loss = link_loss
            risk_loss = torch.zeros(())
            if use_risk:
                y = torch.from_numpy(labels[lo:hi]).to(rt.device)
                risk_loss = F.binary_cross_entropy_with_logits(
                    fwd.risk_logit, y, pos_weight=torch.tensor(pos_weight, device=rt.device))
                loss = loss + cfg.risk_weight * risk_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            rt.update_batch(replay.table, fwd)
            sums += (float(loss.detach()) * (hi - lo), float(link_loss.detach()) * (hi - lo),
                     float(risk_loss.detach()) * (hi - lo))
        row = {"epoch": epoch, "train_loss": float(sums[0] / n_train), "train_link_loss": float(sums[1] / n_train),
               "train_risk_loss": float(sums[2] / n_train) if use_risk else None}
        row.update(_validate(replay, n_train, n, bs, dst_pool, labels, cfg.seed))
        row["seconds"] = time.perf_counter() - t0
        metrics["history"].append(row)
        log.info("TGN epoch %d: %s", epoch, {k: v for k, v in row.items() if k != "epoch"})
        score = row[select] if row[select] is not None else -math.inf
        if score > best or best_state is None:
            best, stale = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            metrics["best_epoch"] = epoch
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    metrics["epochs_run"] = len(metrics["history"])
    metrics.update({k: v for k, v in metrics["history"][metrics["best_epoch"] - 1].items()
                    if k.startswith("val_")})
    metrics["chance_link_ap"] = 0.5  # one negative per positive
    return model, metrics


def _validate(replay: _Replay, lo0: int, hi0: int, bs: int, dst_pool: np.ndarray,
              labels: np.ndarray | None, seed: int) -> dict[str, float | None]:
    """Continue the replay over events [lo0, hi0) without learning; link and risk AP/AUC."""
    rng = np.random.default_rng([seed, 0])  # the same negatives every epoch: comparable APs
    pos, neg, risk = [], [], []
    model = replay.rt.model
    model.eval()
    with torch.no_grad():
        for lo in range(lo0, hi0, bs):
            hi = min(lo + bs, hi0)
            fwd = replay.step(lo, hi, rng.choice(dst_pool, size=hi - lo))
            replay.rt.update_batch(replay.table, fwd)
            pos.append(torch.sigmoid(fwd.link_logit).cpu().numpy())
            neg.append(torch.sigmoid(fwd.neg_logit).cpu().numpy())
            risk.append(torch.sigmoid(fwd.risk_logit).cpu().numpy())
    p, q = np.concatenate(pos), np.concatenate(neg)
    link_ap, link_auc = ranking_metrics(np.concatenate([p, q]), np.r_[np.ones(len(p)), np.zeros(len(q))])
    out = {"val_link_ap": link_ap, "val_link_auc": link_auc, "val_risk_ap": None, "val_risk_auc": None}
    if labels is not None:
        out["val_risk_ap"], out["val_risk_auc"] = ranking_metrics(np.concatenate(risk), labels[lo0:hi0])
    return out


def offline_scores(model: TGN, src: np.ndarray, dst: np.ndarray, ts: np.ndarray, *,
                   amount: np.ndarray | None = None, batch_size: int = 200) -> dict[str, np.ndarray]:
    """The offline evaluation of ``model`` over a whole stream: the training code path
    (fold on read, forward in eval mode) replayed batch by batch with no learning.

    Returns ``risk`` and ``link_surprise`` per event; the Engine streaming the same
    events in batches of the same size must give the same numbers (train/serve parity).
    """
    src, dst, ts, amount, edge_feats, _ = _check_events(src, dst, ts, amount, None, None, model.config.edge_dim)
    n_nodes = int(max(src.max(), dst.max())) + 1
    rt = TGNRuntime(model, fold_on_write=False)
    replay = _Replay(rt, n_nodes, src, dst, ts, amount, edge_feats)
    risk, link = [], []
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(src), batch_size):
            hi = min(lo + batch_size, len(src))
            fwd = replay.step(lo, hi, None)
            rt.update_batch(replay.table, fwd)
            risk.append(torch.sigmoid(fwd.risk_logit).double().cpu().numpy())
            link.append(1.0 - torch.sigmoid(fwd.link_logit).double().cpu().numpy())
    return {"risk": np.concatenate(risk), "link_surprise": np.concatenate(link)}
