"""``riskgraph train``: TGN training, score stacking and threshold calibration -> an artifact.

1. read the event log (any format, ``--map``), give entities dense ids in order of
   first sight;
2. train the TGN (``models.tgn.train``): chronological split, the last
   ``val_fraction`` held out; self-supervised link objective, plus the risk objective
   when the file has labels;
3. replay the whole file through the Engine with the trained TGN and a fresh detector
   (exactly what serving does), recording each event's head inputs (the squashed
   features and the graph features, ``models.scoring.HEAD_INPUTS``);
4. with labels: fit the supervised head (``models.head``, gradient-boosted trees) on
   the events the TGN trained on, and on the held-out part only -- where the TGN's
   outputs and the head's are both out of sample -- fit the logistic stack of
   ``head``, ``tgn_risk`` and ``tgn_link`` and calibrate the threshold to a target
   alert rate (or precision); then refit the head, with the same number of trees, on
   every labelled event (the stack and the threshold stay). Without labels the final
   score is the mean of detector and link surprise, calibrated the same way;
5. write the artifact (``models.artifact``) with training and held-out metrics.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from riskgraph.models.artifact import save_model
from riskgraph.models.evaluation import event_metrics
from riskgraph.models.policy import calibrate_threshold, calibrate_threshold_precision
from riskgraph.models.head import TreeHead
from riskgraph.models.scoring import HEAD_INPUTS, ScoringModel, combine, fit_combiner
from riskgraph.jobs import FileSpec, file_batches
from riskgraph.settings import Settings
from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore
from riskgraph.streams.engine import Engine
from riskgraph.streams.events import Event
from riskgraph.streams.runner import run_batches

log = logging.getLogger("riskgraph.train")

#: The supervised head's boosting settings (``models.head.TreeHead.fit``): small trees,
#: early stopping on a seeded 10 % of the fitting rows, one thread -- on a shared
#: machine OpenMP threads that wait for a busy core spin (demo-sized fit under load:
#: 1.5-2.6 s on one thread, 1.3-8.5 s on two).
#: L2 on leaf values keeps boosting from diverging on rare positives (see ``TreeHead.fit``).
HEAD_PARAMS: dict[str, Any] = {"max_iter": 300, "learning_rate": 0.1, "max_leaf_nodes": 15,
                               "l2_regularization": 1.0, "n_threads": 1}

#: A refit on every row is kept only if its log-loss on those rows is at most this
#: factor of the first fit's (which saw fewer of them and should do no better).
REFIT_TOLERANCE = 1.10


def read_all(spec: FileSpec, batch_size: int = 50_000) -> tuple[list[Event], list[Any]]:
    events: list[Event] = []
    typ: list[Any] = []
    for b in file_batches(spec, batch_size):
        events.extend(b.events)
        typ.extend(b.extras.get("typology") or [None] * len(b.events))
    return events, typ


def train_job(settings: Settings, spec: FileSpec, *, out_dir: str, epochs: int = 5, val_fraction: float = 0.2,
              target_alert_rate: float = 0.01, target_precision: float | None = None,
              mem_dim: int = 64, emb_dim: int = 64, k: int = 10, batch_size: int = 200,
              head: bool = True, progress: bool = True) -> dict[str, Any]:
    import torch

    from riskgraph.models.tgn.model import TGNConfig
    from riskgraph.models.tgn.runtime import TGNRuntime
    from riskgraph.models.tgn.train import TrainConfig, train

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    events, _ = read_all(spec)
    if len(events) < 100:
        raise ValueError(f"{spec.path}: {len(events)} valid events are too few to train on")
    ids: dict[str, int] = {}
    src = np.fromiter((ids.setdefault(e.src, len(ids)) for e in events), np.int64, len(events))
    dst = np.fromiter((ids.setdefault(e.dst, len(ids)) for e in events), np.int64, len(events))
    ts = np.fromiter((e.ts for e in events), np.float64, len(events))
    amount = np.fromiter((np.nan if e.amount is None else e.amount for e in events), np.float64, len(events))
    lab = np.fromiter((-1 if e.label is None else e.label for e in events), np.int64, len(events))
    labelled = bool((lab >= 0).all() and 0 < lab.sum() < len(lab))
    cfg = TrainConfig(model=TGNConfig(mem_dim=mem_dim, emb_dim=emb_dim, k=k), epochs=epochs, batch_size=batch_size,
                      val_fraction=val_fraction, seed=settings.seed)
    print(f"training TGN on {len(events):,} events, {len(ids):,} entities "
          f"({'with' if labelled else 'without'} labels), seed {settings.seed}", flush=True)
    tgn, tgn_metrics = train(src, dst, ts, amount=amount, labels=lab.astype(np.float32) if labelled else None,
                             config=cfg, progress=progress)

    # replay through the serving path; stack and calibrate on the held-out part only
    draft = ScoringModel(ScoringModel.default(seed=settings.seed).detector, tgn=TGNRuntime(tgn, fold_on_write=True),
                         version="calibration")
    n_val = int(round(len(events) * val_fraction))
    n_fit = len(events) - n_val
    use_head = head and labelled and 0 < lab[:n_fit].sum() < n_fit
    draft.recorder = [] if use_head else None
    tmp = tempfile.mkdtemp(prefix="riskgraph-train-")
    try:
        with GraphStore(tmp, StoreOptions(mem_dim=draft.mem_dim)) as store:
            from riskgraph.streams.runner import chunk_events

            run = run_batches(Engine(store, draft, commit_every=settings.commit_every),
                              chunk_events(events, batch_size), progress=progress, total_events=len(events),
                              desc="calibrate")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    val = slice(n_fit, len(events))
    comps = {k: v[val] for k, v in run.components.items()}
    fitted_head = head_metrics = None
    if use_head:
        X = np.concatenate(draft.recorder)
        draft.recorder = None
        if X.shape != (len(events), len(HEAD_INPUTS)):
            raise RuntimeError(f"recorded head inputs {X.shape} do not match {len(events)} events")
        fitted_head, head_metrics, comps["head"] = _fit_head(X, lab, n_fit, settings.seed)
    val_labelled = labelled and 0 < lab[val].sum() < n_val
    if use_head and val_labelled:
        # not class-balanced: the head is a calibrated probability already, and so stays the final score
        combiner = fit_combiner(comps, lab[val], seed=settings.seed, inputs=("head", "tgn_risk", "tgn_link"),
                                balanced=False)
    elif use_head:  # no held-out positives to weigh the components with: the head alone
        combiner = {"kind": "logistic", "inputs": ["head"], "coef": [1.0], "intercept": 0.0}
    elif val_labelled:
        combiner = fit_combiner(comps, lab[val], seed=settings.seed)
    else:
        combiner = {"kind": "mean", "inputs": ["detector", "tgn_link"]}
    final = combine(comps, combiner)
    if val_labelled and target_precision is not None:
        thr = calibrate_threshold_precision(final, lab[val], target_precision)
    else:
        thr = calibrate_threshold(final, target_alert_rate)
    model = ScoringModel(ScoringModel.default(seed=settings.seed).detector, tgn=TGNRuntime(tgn, fold_on_write=True),
                         head=fitted_head, combiner=combiner, policy_config={"threshold": float(thr)})
    held_out: dict[str, Any] = {"threshold": float(thr), "combiner": combiner}
    if head_metrics is not None:
        held_out["head"] = head_metrics
    if val_labelled:
        held_out["final"] = event_metrics(final, lab[val], thr)
        held_out["components"] = {k: event_metrics(v, lab[val]) for k, v in comps.items()}
    metrics = {"tgn": tgn_metrics, "held_out": held_out, "events": len(events), "entities": len(ids),
               "seconds": time.perf_counter() - t0}
    save_model(model, out_dir, metrics=metrics)
    print(f"artifact {model.version} -> {out_dir} ({metrics['seconds']:.0f}s)")
    if val_labelled:
        f = held_out["final"]
        print(f"  held-out event AP {f['event_ap']:.3f}, AUC {f['event_auc']:.3f}, threshold {thr:.4f}")
        for k, v in held_out["components"].items():
            print(f"    component {k:<10} AP {v['event_ap']:.3f}  AUC {v['event_auc']:.3f}")
    Path(out_dir, "training.json").write_text(json.dumps({"file": spec.path, "epochs": epochs,
                                                           "val_fraction": val_fraction}, indent=2))
    return metrics


def _fit_head(X: np.ndarray, lab: np.ndarray, n_fit: int, seed: int) -> tuple[TreeHead, dict[str, Any], np.ndarray]:
    """Fit the head on events ``[0, n_fit)``, score the held-out rest with it, refit on all.

    Returns the head to ship, its metrics and the held-out part's scores from the
    first fit (out of sample, like the TGN's: what the stack is fitted on). The refit
    ships only if :func:`choose_refit` accepts it; else the first fit does.
    """
    t0 = time.perf_counter()
    y = lab.astype(np.int64)
    first = TreeHead.fit(X[:n_fit], y[:n_fit], HEAD_INPUTS, seed=seed, **HEAD_PARAMS)
    held = first.predict(X[n_fit:])
    refit = TreeHead.fit(X, y, HEAD_INPUTS, seed=seed, **{**HEAD_PARAMS, "max_iter": first.n_trees,
                                                          "early_stopping": False})
    head, check = choose_refit(first, refit, X, y)
    metrics = {"trees": head.n_trees, "fit_rows": int(n_fit), "refit_rows": int(len(y)), "refit": check,
               "params": HEAD_PARAMS, "seconds": time.perf_counter() - t0}
    head.metrics.update(metrics)
    return head, metrics, held


def choose_refit(first: TreeHead, refit: TreeHead, X: np.ndarray, y: np.ndarray,
                 tolerance: float = REFIT_TOLERANCE) -> tuple[TreeHead, dict[str, Any]]:
    """The refit (trained on every row of ``X``) unless it fits those rows worse than the
    first fit (trained on a prefix of them) by more than ``tolerance``: a sign that
    boosting diverged, seen with unregularised leaves. Returns the head and what was
    compared (logged, and kept in the artifact's metrics).

    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(600, 2)); y = (X[:, 0] > 0.7).astype(int)
    >>> good = TreeHead.fit(X, y, ("a", "b"), max_iter=20, early_stopping=False)
    >>> bad = TreeHead.fit(X, 1 - y, ("a", "b"), max_iter=20, early_stopping=False)
    >>> choose_refit(good, bad, X, y)[1]["kept"], choose_refit(bad, good, X, y)[1]["kept"]
    ('first', 'refit')
    """
    first_loss, refit_loss = first.log_loss(X, y), refit.log_loss(X, y)
    ok = refit_loss <= tolerance * first_loss
    check = {"first_log_loss": first_loss, "refit_log_loss": refit_loss, "kept": "refit" if ok else "first"}
    if not ok:
        log.warning("head refit on all rows fits them worse than the first fit (log-loss %.5f > %.5f): "
                    "keeping the first fit", refit_loss, first_loss)
    return (refit if ok else first), check
