"""``riskgraph train``: TGN training, score stacking and threshold calibration -> an artifact.

1. read the event log (any format, ``--map``), give entities dense ids in order of
   first sight;
2. train the TGN (``models.tgn.train``): chronological split, the last
   ``val_fraction`` held out; self-supervised link objective, plus the risk objective
   when the file has labels;
3. replay the whole file through the Engine with the trained TGN and a fresh detector
   (exactly what serving does) and, on the held-out part only: fit the logistic stack
   of the components (when labels exist; otherwise the mean of detector and link
   surprise) and calibrate the threshold to a target alert rate (or precision);
4. write the artifact (``models.artifact``) with training and held-out metrics.
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

from models.artifact import save_model
from models.evaluation import event_metrics
from models.policy import calibrate_threshold, calibrate_threshold_precision
from models.scoring import ScoringModel, combine, fit_combiner
from riskgraph.jobs import FileSpec, file_batches
from riskgraph.settings import Settings
from state.store import GraphStore
from streams.engine import Engine
from streams.events import Event
from streams.runner import run_batches

log = logging.getLogger("riskgraph.train")


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
              progress: bool = True) -> dict[str, Any]:
    import torch

    from models.tgn.model import TGNConfig
    from models.tgn.runtime import TGNRuntime
    from models.tgn.train import TrainConfig, train

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
    tmp = tempfile.mkdtemp(prefix="riskgraph-train-")
    try:
        with GraphStore(tmp, mem_dim=draft.mem_dim) as store:
            from streams.runner import chunk_events

            run = run_batches(Engine(store, draft, commit_every=settings.commit_every),
                              chunk_events(events, batch_size), progress=progress, total_events=len(events),
                              desc="calibrate")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_val = int(round(len(events) * val_fraction))
    val = slice(len(events) - n_val, len(events))
    comps = {k: v[val] for k, v in run.components.items()}
    if labelled:
        combiner = fit_combiner(comps, lab[val], seed=settings.seed)
    else:
        combiner = {"kind": "mean", "inputs": ["detector", "tgn_link"]}
    final = combine(comps, combiner)
    if labelled and target_precision is not None:
        thr = calibrate_threshold_precision(final, lab[val], target_precision)
    else:
        thr = calibrate_threshold(final, target_alert_rate)
    model = ScoringModel(ScoringModel.default(seed=settings.seed).detector, tgn=TGNRuntime(tgn, fold_on_write=True),
                         combiner=combiner, policy_config={"threshold": float(thr)})
    held_out: dict[str, Any] = {"threshold": float(thr), "combiner": combiner}
    if labelled:
        held_out["final"] = event_metrics(final, lab[val], thr)
        held_out["components"] = {k: event_metrics(v, lab[val]) for k, v in comps.items()}
    metrics = {"tgn": tgn_metrics, "held_out": held_out, "events": len(events), "entities": len(ids),
               "seconds": time.perf_counter() - t0}
    save_model(model, out_dir, metrics=metrics)
    print(f"artifact {model.version} -> {out_dir} ({metrics['seconds']:.0f}s)")
    if labelled:
        f = held_out["final"]
        print(f"  held-out event AP {f['event_ap']:.3f}, AUC {f['event_auc']:.3f}, threshold {thr:.4f}")
        for k, v in held_out["components"].items():
            print(f"    component {k:<10} AP {v['event_ap']:.3f}  AUC {v['event_auc']:.3f}")
    Path(out_dir, "training.json").write_text(json.dumps({"file": spec.path, "epochs": epochs,
                                                           "val_fraction": val_fraction}, indent=2))
    return metrics
