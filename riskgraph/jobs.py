"""Wiring of the embedded jobs: replay, evaluate, demo. The CLI parses; this composes.

Each job builds a store, a model and an Engine, drives the embedded runner over a
file or a simulator, and writes its outputs. No scoring logic lives here.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from features.risk import entity_risk
from models.artifact import load_model
from models.evaluation import ablation, entity_metrics, event_metrics, latency_summary, typology_metrics
from models.report import plot_curves, plot_scores, plot_throughput, write_report
from models.scoring import ScoringModel
from riskgraph.settings import Settings
from simulators.replay import EventFile, pace, read_entity_labels
from state.store import GraphStore
from streams.engine import Engine
from streams.runner import RunResult, StreamBatch, run_batches


@dataclass(frozen=True)
class FileSpec:
    """An input event file and how to read it."""

    path: str
    mapping: dict[str, str] | None = None
    fmt: str | None = None
    order: str = "error"
    rate: float | None = None  # None: as fast as possible; k: event time at k times real time


def load_scoring_model(settings: Settings) -> ScoringModel:
    """The artifact in ``settings.model_dir``, or the built-in unsupervised detector."""
    if settings.model_dir:
        return load_model(settings.model_dir)
    return ScoringModel.default(seed=settings.seed)


def file_batches(spec: FileSpec, batch_size: int) -> Iterator[StreamBatch]:
    f = EventFile(spec.path, spec.mapping, fmt=spec.fmt, order=spec.order, extra_columns=("typology",))
    for fb in pace(f.batches(batch_size), spec.rate):
        yield StreamBatch(fb.events, fb.extras, fb.dead)


def count_rows(spec: FileSpec) -> int | None:
    """Rows in the file, for the progress bar (cheap for Parquet; None when unknown)."""
    try:
        return EventFile(spec.path, spec.mapping, fmt=spec.fmt, order="allow").count_rows()
    except Exception:  # the count only feeds a progress bar: never fail a job for it
        return None


def open_store(settings: Settings, model: ScoringModel, state_dir: str | None) -> tuple[GraphStore, str | None]:
    """A store at ``state_dir``, or in a temporary directory removed by the caller."""
    tmp = None
    if state_dir is None:
        tmp = tempfile.mkdtemp(prefix="riskgraph-state-")
        state_dir = tmp
    return GraphStore(state_dir, mem_dim=model.mem_dim, cache_capacity=settings.cache_capacity,
                      mem_cache_capacity=settings.mem_cache_capacity, compression=settings.store_compression,
                      mem_cache_width=model.mem_cache_width, pin_scoring_cpu=settings.scoring_cpu,
                      direct_io=settings.store_direct_io, compaction=settings.store_compaction), tmp


def entity_scores(store: GraphStore, now: float) -> dict[str, float]:
    """Current (decayed) risk of every entity in the store."""
    ids: list[str] = []
    slots_list: list[int] = []
    out: dict[str, float] = {}
    chunk = 50_000
    all_ids = np.arange(store.node_count, dtype=np.int64)
    for i in range(0, len(all_ids), chunk):
        part = all_ids[i:i + chunk]
        slots = store.peek_slots(part)
        risk = entity_risk(store.table, slots, now)
        for ext, r in zip(store.external_ids(part), risk.tolist()):
            out[ext] = r
    del ids, slots_list
    return out


def replay(settings: Settings, spec: FileSpec, *, alerts_path: str, entities_path: str | None,
           state_dir: str | None, progress: bool = True) -> dict[str, Any]:
    """Score a file: alerts as JSON lines, entity risk as CSV; returns a summary."""
    model = load_scoring_model(settings)
    store, tmp = open_store(settings, model, state_dir)
    try:
        with store, open(alerts_path, "wb") as out:
            engine = Engine(store, model, learn=settings.learn, max_event_bytes=settings.max_event_bytes,
                            dedupe_window=settings.dedupe_window, dlq_raw_max_bytes=settings.dlq_raw_max_bytes,
                            commit_every=settings.commit_every)
            run = run_batches(engine, file_batches(spec, settings.batch_size), progress=progress,
                              total_events=count_rows(spec), alerts_out=out, desc="replay")
            if entities_path:
                now = float(run.ts.max()) if len(run.ts) else 0.0
                write_entity_csv(entity_scores(store, now), entities_path)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "events": run.n_events,
        "dead_letters": len(run.dead),
        "alerts": len(run.alerts),
        "suppressed": run.suppressed,
        "events_per_second": run.events_per_second,
        "model_version": model.version,
        "dead_letter_reasons": _reason_counts(run),
    }


def _reason_counts(run: RunResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in run.dead:
        out[d.category] = out.get(d.category, 0) + 1
    return out


def write_entity_csv(scores: dict[str, float], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["entity", "risk"])
        for ent, r in sorted(scores.items(), key=lambda kv: -kv[1]):
            w.writerow([ent, f"{r:.6f}"])


def evaluate_run(run: RunResult, threshold: float, *, eval_after: float | None = None,
                 eval_fraction: float | None = None, entity_labels: dict[str, int] | None = None,
                 entity_risk_scores: dict[str, float] | None = None) -> dict[str, Any]:
    """metrics.json content for one run; metrics are restricted to the trailing part when asked."""
    n = run.n_events
    start = 0
    if eval_fraction is not None:
        if not 0 < eval_fraction <= 1:
            raise ValueError(f"--eval-fraction must be in (0, 1], got {eval_fraction}")
        start = int(round(n * (1 - eval_fraction)))
    if eval_after is not None:
        start = max(start, int(np.searchsorted(run.ts, eval_after, side="right")))
    sl = slice(start, n)
    scores, labels, typ = run.scores[sl], run.labels[sl], run.typology[sl]
    m: dict[str, Any] = {"events_total": n, "events_evaluated": n - start}
    if n - start and labels.max(initial=-1) >= 0:
        m.update(event_metrics(scores, labels, threshold))
    else:
        m["alert_rate"] = float((scores >= threshold).mean()) if len(scores) else None
    if entity_labels is not None and entity_risk_scores is not None:
        m.update(entity_metrics(entity_risk_scores, entity_labels))
    m["events_per_second"] = run.events_per_second
    m.update(latency_summary(run.latency_ms()))
    m["threshold"] = threshold
    m["alerts"] = len(run.alerts)
    m["dead_letters"] = len(run.dead)
    if any(typ):
        m["typologies"] = typology_metrics(scores, labels, typ, threshold)
    if len(run.components) > 1:
        comps = {k: v[sl] for k, v in run.components.items()}
        comps["final"] = scores
        m["components"] = ablation(comps, labels, typ, focus=("mule_chain", "collusion_ring"))
    return m


def evaluate(settings: Settings, spec: FileSpec, *, out_dir: str, entity_labels_path: str | None,
             eval_after: float | None, eval_fraction: float | None, state_dir: str | None,
             progress: bool = True, model: ScoringModel | None = None) -> dict[str, Any]:
    """Score a labelled file and write metrics.json, report.md and plots into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model or load_scoring_model(settings)
    ent_labels = read_entity_labels(entity_labels_path) if entity_labels_path else None
    store, tmp = open_store(settings, model, state_dir)
    t0 = time.perf_counter()
    try:
        with store, open(out / "alerts.jsonl", "wb") as alerts_out:
            engine = Engine(store, model, learn=settings.learn, max_event_bytes=settings.max_event_bytes,
                            dedupe_window=settings.dedupe_window, dlq_raw_max_bytes=settings.dlq_raw_max_bytes,
                            commit_every=settings.commit_every)
            run = run_batches(engine, file_batches(spec, settings.batch_size), progress=progress,
                              total_events=count_rows(spec), alerts_out=alerts_out, desc="evaluate")
            threshold = float(engine.policy.threshold)
            ent_scores = entity_scores(store, float(run.ts.max())) if ent_labels is not None and len(run.ts) else None
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    metrics = evaluate_run(run, threshold, eval_after=eval_after, eval_fraction=eval_fraction,
                           entity_labels=ent_labels, entity_risk_scores=ent_scores)
    metrics["model_version"] = model.version
    metrics["wall_seconds"] = time.perf_counter() - t0
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    comps = dict(run.components) if len(run.components) > 1 else {"score": run.scores}
    if len(run.components) > 1:
        comps["final"] = run.scores
    plot_curves(comps, run.labels, out / "roc_pr.png")
    plot_scores(run.scores, run.labels, threshold, out / "scores.png", run.typology)
    plot_throughput(run.batch_sizes, run.batch_seconds, run.batch_wall, out / "throughput.png")
    write_report(out, metrics)
    return metrics


def summary_lines(metrics: dict[str, Any]) -> Iterable[str]:
    """The printed summary of evaluate and demo."""
    keys = ("events_total", "events_evaluated", "event_auc", "event_ap", "precision_at_k", "entity_auc",
            "entity_ap", "alert_rate", "recall_at_threshold", "precision_at_threshold", "threshold",
            "events_per_second", "latency_p50_ms", "latency_p99_ms")
    for k in keys:
        if k in metrics:
            v = metrics[k]
            yield f"  {k:<24} {v:,.4f}" if isinstance(v, float) else f"  {k:<24} {v}"
    typ = metrics.get("typologies")
    if typ:
        yield ""
        yield f"  {'typology':<16} {'events':>7} {'AUC':>7} {'AP':>7} {'recall@thr':>11}"
        for name, r in typ.items():
            auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f}"
            ap = "n/a" if r["ap"] is None else f"{r['ap']:.3f}"
            yield f"  {name:<16} {r['events']:>7} {auc:>7} {ap:>7} {r['recall_at_threshold']:>11.3f}"
