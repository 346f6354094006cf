"""``riskgraph train``: an event log -> a trained TGN, stack and threshold -> an artifact.

1. read the event log (any format, ``--map``), give entities dense ids in order of
   first sight;
2. train the TGN (``models.tgn.train``): chronological split, the last
   ``val_fraction`` held out; self-supervised link objective, plus the risk objective
   when the file has labels;
3. replay the whole file through the Engine with the trained TGN and a fresh detector
   (exactly what serving does), recording each event's head inputs (the squashed
   features and the graph features, ``models.scoring.HEAD_INPUTS``);
4. hand the replayed components (and head inputs) to ``models.stacking.fit_stack``,
   which decides what ships: with labels, the supervised head (``models.head``) and
   the logistic stack fitted on the held-out part, without them the mean of the
   unsupervised components, and the threshold calibrated to a target alert rate (or
   precision);
5. with entity labels (``--entity-labels``), fit the entity head (``models.entity``) on
   the entity features of the labelled entities at the end of that replay, measured on a
   seeded stratified part held out;
6. write the artifact (``models.artifact``) with training and held-out metrics.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from riskgraph.models.artifact import save_model
from riskgraph.models.entity import EntityModel, fit_entity_model
from riskgraph.models.scoring import ScoringModel
from riskgraph.models.stacking import can_fit_head, fit_stack, is_labelled
from riskgraph.jobs import FileSpec, entity_feature_table, file_batches
from riskgraph.simulators.labels import load_entity_labels
from riskgraph.settings import Settings
from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore
from riskgraph.streams.engine import Engine
from riskgraph.streams.events import Event
from riskgraph.streams.runner import run_batches


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
              head: bool = True, progress: bool = True, entity_labels_path: str | None = None,
              entity_map: str | None = None, entity_positive: str | None = None) -> dict[str, Any]:
    import torch

    from riskgraph.models.tgn.model import TGNConfig
    from riskgraph.models.tgn.runtime import TGNRuntime
    from riskgraph.models.tgn.train import TrainConfig, train

    t0 = time.perf_counter()
    label_file = None
    if entity_labels_path:  # read first: a bad label file fails before any training
        label_file = load_entity_labels(entity_labels_path, entity_map, positive=entity_positive)
    elif entity_map or entity_positive is not None:
        raise ValueError("--entity-map and --entity-positive describe an entity label file: give one with "
                         "--entity-labels FILE")
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
    labelled = is_labelled(lab)
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
    use_head = head and can_fit_head(lab, n_fit)
    draft.recorder = [] if use_head else None
    tmp = tempfile.mkdtemp(prefix="riskgraph-train-")
    try:
        with GraphStore(tmp, StoreOptions(mem_dim=draft.mem_dim)) as store:
            from riskgraph.streams.runner import chunk_events

            run = run_batches(Engine(store, draft, commit_every=settings.commit_every),
                              chunk_events(events, batch_size), progress=progress, total_events=len(events),
                              desc="calibrate")
            entity_model = EntityModel()
            if label_file is not None:
                ids_all, x_all = entity_feature_table(store, float(ts.max()))
                keep = [i for i, e in enumerate(ids_all) if e in label_file.labels]
                entity_model = fit_entity_model(x_all[keep], np.array([label_file.labels[ids_all[i]] for i in keep]),
                                                [ids_all[i] for i in keep], seed=settings.seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head_inputs = None
    if use_head:
        head_inputs = np.concatenate(draft.recorder)
        draft.recorder = None
    stack = fit_stack(run.components, lab if labelled else None, n_fit, head_inputs=head_inputs, seed=settings.seed,
                      target_alert_rate=target_alert_rate, target_precision=target_precision)
    thr, held_out = stack.threshold, stack.metrics
    model = ScoringModel(ScoringModel.default(seed=settings.seed).detector, tgn=TGNRuntime(tgn, fold_on_write=True),
                         head=stack.head, combiner=stack.combiner, policy_config={"threshold": thr},
                         entity=entity_model)
    metrics = {"tgn": tgn_metrics, "held_out": held_out, "events": len(events), "entities": len(ids),
               "seconds": time.perf_counter() - t0}
    if entity_model.head is not None:
        metrics["entity_head"] = entity_model.metrics
    save_model(model, out_dir, metrics=metrics)
    print(f"artifact {model.version} -> {out_dir} ({metrics['seconds']:.0f}s)")
    if "final" in held_out:
        f = held_out["final"]
        print(f"  held-out event AP {f['event_ap']:.3f}, AUC {f['event_auc']:.3f}, threshold {thr:.4f}")
        for k, v in held_out["components"].items():
            print(f"    component {k:<10} AP {v['event_ap']:.3f}  AUC {v['event_auc']:.3f}")
    if entity_model.head is not None:
        em = entity_model.metrics
        print(f"  entity head: {em['trees']} trees on {em['fit_entities']} labelled entities "
              f"({em['fit_positives']} risky); held out {len(entity_model.held_out)}:")
        for name, r in em["held_out"].items():
            print(f"    {name:<9} entity AUC {_f(r['entity_auc'])} {_ci(r.get('entity_auc_ci90'))}  "
                  f"AP {_f(r['entity_ap'])} {_ci(r.get('entity_ap_ci90'))}  "
                  f"({r['entity_positives']} risky, {r['entity_negatives']} not)")
    Path(out_dir, "training.json").write_text(json.dumps({"file": spec.path, "epochs": epochs,
                                                           "val_fraction": val_fraction}, indent=2))
    return metrics



def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _ci(ci: Any) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
