"""Wiring of the embedded jobs: replay, evaluate, demo. The CLI parses; this composes.

Each job builds a store, a model and an Engine, drives the embedded runner over a
file or a simulator, and writes its outputs. No scoring logic lives here.
"""

from __future__ import annotations

import csv
import errno
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import numpy as np

from riskgraph.features.entity import ENTITY_FEATURE_NAMES, entity_features
from riskgraph.features.risk import entity_risk
from riskgraph.models.artifact import ArtifactError, load_model
from riskgraph.models.evaluation import (ablation, bootstrap_info, entity_metrics, event_metrics, latency_summary,
                                        typology_metrics)
from riskgraph.models.report import plot_curves, plot_scores, plot_throughput, write_report
from riskgraph.models.scoring import ScoringModel
from riskgraph.settings import Settings
from riskgraph.simulators.labels import EntityLabels, load_entity_labels
from riskgraph.simulators.replay import CorruptFileError, EventFile, pace
from riskgraph.state.store import GraphStore
from riskgraph.streams.engine import Engine
from riskgraph.streams.runner import RunResult, StreamBatch, resume_position, run_batches


@dataclass(frozen=True)
class FileSpec:
    """An input event file and how to read it."""

    path: str
    mapping: dict[str, str] | None = None
    fmt: str | None = None
    order: str = "error"
    rate: float | None = None  # None: as fast as possible; k: event time at k times real time
    kind: str | None = None  # the kind of events without a kind column (None: "event")
    ts_unit: str | None = None  # s, ms, us, ns or iso; None: detected from the first rows

    def open(self, order: str | None = None) -> EventFile:
        """The file as an :class:`~simulators.replay.EventFile`, read as this spec says."""
        return EventFile(self.path, self.mapping, fmt=self.fmt, order=order or self.order,
                         extra_columns=("typology",), kind=self.kind, ts_unit=self.ts_unit)


class OutputError(ValueError):
    """An output file cannot be written (a directory, a full disk, no permission)."""


def load_scoring_model(settings: Settings) -> ScoringModel:
    """The artifact in ``settings.model_dir``, or the built-in unsupervised detector.

    A ``config.json`` of the wrong shape (a list, a missing key, a wrong type) is an
    :class:`~models.artifact.ArtifactError` naming the file, not whatever the loader
    tripped over.
    """
    if not settings.model_dir:
        return ScoringModel.default(seed=settings.seed)
    try:
        return load_model(settings.model_dir)
    except ArtifactError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        what = f"missing key {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else \
            " ".join(str(exc).split()) or type(exc).__name__
        raise ArtifactError(
            f"{Path(settings.model_dir) / 'config.json'}: not a valid model config ({what}); point --model "
            "(RISKGRAPH_MODEL_DIR) at a directory written by `riskgraph train`") from None


def file_batches(spec: FileSpec, batch_size: int, skip: int = 0, *,
                 ends: dict[str, tuple[str, str]] | None = None) -> Iterator[StreamBatch]:
    """The file as StreamBatches, leaving out its first ``skip`` records (a resumed run).
    ``ends``, when given, is filled with ``{event id: (src, dst)}`` of the valid events."""
    f = spec.open()
    for fb in pace(f.batches(batch_size, skip=skip), spec.rate):
        if ends is not None:
            for e in fb.events:
                ends[e.id] = (e.src, e.dst)
        yield StreamBatch(fb.events, fb.extras, fb.dead)


def _ts_note(spec: FileSpec) -> str:
    """Open the file once before scoring (mapping and time errors come first); how ts is read.
    The note goes into the job's output, not onto stderr: there an error stays the only line."""
    return spec.open().ts_note


def output_error(what: str, path: str | Path, exc: OSError, fix: str = "choose another path") -> OutputError:
    """One line for a failed write of ``what`` to ``path``, with what to do about it."""
    if exc.errno == errno.ENOSPC:
        fix = f"free some space or {fix}"
    return OutputError(f"cannot write {what} to {str(path)!r}: {exc.strerror or exc}; {fix}")


class _Output:
    """A binary output file whose write errors name the file (``OutputError``)."""

    def __init__(self, path: str | Path, what: str) -> None:
        self.path, self.what = str(path), what
        try:
            self._f: IO[bytes] = open(path, "wb")
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> OutputError:
        return output_error(self.what, self.path, exc)

    def write(self, b: bytes) -> int:
        try:
            return self._f.write(b)
        except OSError as exc:
            raise self._error(exc) from None

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            raise self._error(exc) from None

    def __enter__(self) -> "_Output":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self._f.close()
        except OSError as e:
            if exc_type is None:  # else the error already on its way says what went wrong
                raise self._error(e) from None


def _resume(store: GraphStore, spec: FileSpec, state_dir: str | None, say: Callable[[str], None] | None,
            total: int | None) -> int:
    """Records of the file the kept store already reflects; says that they are skipped."""
    skip = resume_position(store)
    if skip and say is not None:
        of = "" if total is None else f" of the {total:,}"
        then = ("nothing new to score" if total is not None and skip >= total
                else "skipping them" + ("" if total is None else f", scoring the {total - skip:,} after them"))
        say(f"--state {state_dir} already reflects the first {skip:,}{of} records of {spec.path}: {then} "
            "(a new --state directory scores the file from the start)")
    return skip


def _corrupt(exc: CorruptFileError, alerts_path: str | Path) -> CorruptFileError:
    """The reader's error, saying what happened to the rows read before the damage."""
    done = (f"the rows before it were scored and their alerts written to {alerts_path}, nothing else was written"
            if exc.rows else "nothing was scored")
    exc.args = (f"{exc.args[0]}; {done}",)
    return exc


def count_rows(spec: FileSpec) -> int | None:
    """Rows in the file, for the progress bar (cheap for Parquet; None when unknown)."""
    try:
        return spec.open(order="allow").count_rows()
    except Exception:  # the count only feeds a progress bar: never fail a job for it
        return None


def open_store(settings: Settings, model: ScoringModel, state_dir: str | None) -> tuple[GraphStore, str | None]:
    """A store at ``state_dir``, or in a temporary directory removed by the caller."""
    tmp = None
    if state_dir is None:
        tmp = tempfile.mkdtemp(prefix="riskgraph-state-")
        state_dir = tmp
    options = settings.store_options(mem_dim=model.mem_dim, mem_cache_width=model.mem_cache_width)
    return GraphStore(state_dir, options), tmp


def _each_entity(store: GraphStore, fn: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """``fn(slots)`` over every entity of the store, in chunks, by external id."""
    out: dict[str, float] = {}
    chunk = 50_000
    all_ids = np.arange(store.node_count, dtype=np.int64)
    for i in range(0, len(all_ids), chunk):
        part = all_ids[i:i + chunk]
        slots = store.peek_slots(part)
        for ext, r in zip(store.external_ids(part), np.asarray(fn(slots)).tolist()):
            out[ext] = r
    return out


def entity_scores(store: GraphStore, now: float) -> dict[str, float]:
    """Current (decayed) event-score risk of every entity in the store (``features.risk``)."""
    return _each_entity(store, lambda slots: entity_risk(store.table, slots, now))


def entity_model_scores(store: GraphStore, model: ScoringModel, now: float) -> dict[str, float]:
    """The entity model's risk (``models.entity``) of every entity in the store at ``now``."""
    return _each_entity(store, lambda slots: model.entity.score(store.table, slots, now))


def entity_feature_table(store: GraphStore, now: float) -> tuple[list[str], np.ndarray]:
    """External ids and entity features (``features.entity``) of every entity in the store."""
    ids: list[str] = []
    rows: list[np.ndarray] = []
    chunk = 50_000
    all_ids = np.arange(store.node_count, dtype=np.int64)
    for i in range(0, len(all_ids), chunk):
        part = all_ids[i:i + chunk]
        rows.append(entity_features(store.table, store.peek_slots(part), now))
        ids.extend(store.external_ids(part))
    return ids, (np.concatenate(rows) if rows else np.zeros((0, len(ENTITY_FEATURE_NAMES))))


def replay(settings: Settings, spec: FileSpec, *, alerts_path: str, entities_path: str | None,
           state_dir: str | None, progress: bool = True, say: Callable[[str], None] | None = None
           ) -> dict[str, Any]:
    """Score a file: alerts as JSON lines, entity risk as CSV; returns a summary.

    With a kept ``state_dir`` the run resumes: records the store already reflects (its
    position) are skipped, and ``say`` is told so."""
    ts_note = _ts_note(spec)
    model = load_scoring_model(settings)
    store, tmp = open_store(settings, model, state_dir)
    try:
        with store, _Output(alerts_path, "alerts") as out:
            engine = Engine(store, model, **settings.engine_kwargs())
            total = count_rows(spec)
            skip = _resume(store, spec, state_dir, say, total)
            try:
                run = run_batches(engine, file_batches(spec, settings.batch_size, skip), progress=progress,
                                  total_events=None if total is None else max(total - skip, 0), alerts_out=out,
                                  desc="replay")
            except CorruptFileError as exc:
                raise _corrupt(exc, alerts_path) from None
            if entities_path:
                now = float(run.ts.max()) if len(run.ts) else 0.0
                write_entity_csv(entity_model_scores(store, model, now), entities_path, entity_scores(store, now))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "events": run.n_events,
        "skipped_already_in_state": run.resumed_from,
        "dead_letters": len(run.dead),
        "alerts": len(run.alerts),
        "suppressed": run.suppressed,
        "events_per_second": run.events_per_second,
        "model_version": model.version,
        "timestamps": ts_note,
        "dead_letter_reasons": _reason_counts(run),
        **_first_dead(run),
    }


def _first_dead(run: RunResult) -> dict[str, str]:
    """The first dead letter's row and reason: what a user fixes first."""
    if not run.dead:
        return {}
    d = run.dead[0]
    return {"first_dead_letter": f"row {d.index}: {d.reason}"}


def _reason_counts(run: RunResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in run.dead:
        out[d.category] = out.get(d.category, 0) + 1
    return out


def write_entity_csv(scores: dict[str, float], path: str, event_risk: dict[str, float] | None = None) -> None:
    """``entity,risk[,event_risk]`` rows, riskiest first: ``risk`` is the entity model's,
    ``event_risk`` the decayed maximum of the entity's event scores."""
    try:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["entity", "risk"] + ([] if event_risk is None else ["event_risk"]))
            for ent, r in sorted(scores.items(), key=lambda kv: -kv[1]):
                w.writerow([ent, f"{r:.6f}"] + ([] if event_risk is None else [f"{event_risk.get(ent, 0.0):.6f}"]))
    except OSError as exc:
        raise output_error("entity risk", path, exc, "choose another --entities path ('' skips the file)") from None


def evaluate_run(run: RunResult, threshold: float, *, eval_after: float | None = None,
                 eval_fraction: float | None = None, entity_labels: dict[str, int] | None = None,
                 entity_components: dict[str, dict[str, float]] | None = None,
                 entities_seen: Iterable[str] | None = None, unlabelled_negative: bool = False,
                 entity_risk_scores: dict[str, float] | None = None, seed: int = 0) -> dict[str, Any]:
    """metrics.json content for one run; event metrics are restricted to the trailing part
    when asked (entity metrics cover the whole file: labels are per entity, not per time).

    ``entity_components``: ``{name: {entity: score}}``, ``entity_risk`` the headline one
    (``entity_risk_scores`` alone stands for it); ``entities_seen``: the file's entities
    (default: those of the components); ``seed``: of the bootstrap intervals."""
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
    labelled = bool(n - start) and bool((labels >= 0).any())
    if labelled:
        m.update(event_metrics(scores, labels, threshold, seed=seed))
    else:
        m["labelled_events"] = 0
        m["alert_rate"] = float((scores >= threshold).mean()) if len(scores) else None
    if len(scores):
        m["score_quantiles"] = {f"p{q}": float(v) for q, v in
                                zip((1, 10, 50, 90, 99), np.percentile(scores, (1, 10, 50, 90, 99)))}
    if entity_components is None and entity_risk_scores is not None:
        entity_components = {"entity_risk": entity_risk_scores}
    if entity_labels is not None and entity_components is not None:
        seen = entities_seen if entities_seen is not None else {e for c in entity_components.values() for e in c}
        main = "entity_model" if "entity_model" in entity_components else "entity_risk"
        m.update(entity_metrics(entity_components, entity_labels, seen, unlabelled_negative=unlabelled_negative,
                               main=main, seed=seed))
        if main != "entity_risk":
            m["entity_headline"] = main
    if not labelled:
        if m.get("entity_auc") is not None:
            entity = "the entity metrics above rest on the entity labels"
        elif "entity_positives" in m:
            entity = (f"nor an entity one: the labelled entities of the file are {m['entity_positives']} risky and "
                      f"{m['entity_negatives']} not ({m['entity_labels_not_in_file']} labelled entities are not in "
                      "the file), and both classes are needed")
        else:
            entity = ("no quality metric is possible: map a 0/1 event label column with --map label=COLUMN, "
                      "or give entity labels with --entity-labels FILE")
        m["quality"] = ("no labels among the evaluated events: no event quality metric (AUC, AP, precision, "
                        f"recall); {entity}")
    m["events_per_second"] = run.events_per_second
    m.update(latency_summary(run.latency_ms()))
    m["threshold"] = threshold
    m["alerts"] = len(run.alerts)
    m["dead_letters"] = len(run.dead)
    if run.dead:
        m.update(_first_dead(run))
    if any(typ) and labelled:
        m["typologies"] = typology_metrics(scores, labels, typ, threshold, seed=seed)
    if len(run.components) > 1 and labelled:
        comps = {k: v[sl] for k, v in run.components.items()}
        comps["final"] = scores
        m["components"] = ablation(comps, labels, typ, focus=("mule_chain", "collusion_ring"), seed=seed)
    m["bootstrap"] = bootstrap_info(seed)
    return m


def entity_component_scores(run: RunResult, ends: dict[str, tuple[str, str]], stored: dict[str, float],
                            model_scores: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Entity scores to compare: the entity model's (``model_scores``, when given), the
    store's decayed event-score risk, and per event score component the maximum of its
    scores over the events the entity took part in (either end)."""
    comps = {"score": run.scores, **{k: v for k, v in run.components.items() if len(run.components) > 1}}
    out: dict[str, dict[str, float]] = {} if model_scores is None else {"entity_model": model_scores}
    out["entity_risk"] = stored
    if not run.n_events:
        return out
    codes: dict[str, int] = {}
    src = np.empty(run.n_events, np.int64)
    dst = np.empty(run.n_events, np.int64)
    for i, eid in enumerate(run.event_ids):
        s, d = ends[eid]
        src[i] = codes.setdefault(s, len(codes))
        dst[i] = codes.setdefault(d, len(codes))
    names = list(codes)
    for name, v in comps.items():
        best = np.full(len(codes), -np.inf)
        np.maximum.at(best, src, v)
        np.maximum.at(best, dst, v)
        out[f"max_event_{name}"] = dict(zip(names, best.tolist()))
    return out


def evaluate(settings: Settings, spec: FileSpec, *, out_dir: str, entity_labels_path: str | None,
             eval_after: float | None, eval_fraction: float | None, state_dir: str | None,
             progress: bool = True, model: ScoringModel | None = None,
             say: Callable[[str], None] | None = None, entity_map: str | None = None,
             entity_positive: str | None = None, unlabelled_negative: bool = False) -> dict[str, Any]:
    """Score a file and write metrics.json, report.md and plots into ``out_dir``.

    Event labels (a mapped ``label`` column) give event metrics, entity labels
    (``entity_labels_path``, read by :func:`simulators.labels.load_entity_labels` with
    ``entity_map`` and ``entity_positive``) entity metrics; with neither, the run gets
    throughput, alert rate and the score distribution, and a ``quality`` entry saying
    why there is no quality metric. A kept ``state_dir`` resumes as in :func:`replay`
    (the metrics then cover the records after its position)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {str(out)!r} is a file; evaluate writes a directory (metrics.json, report.md, "
                          "plots): name a new or existing directory")
    out.mkdir(parents=True, exist_ok=True)
    ts_note = _ts_note(spec)
    label_file: EntityLabels | None = None
    if entity_labels_path:
        label_file = load_entity_labels(entity_labels_path, entity_map, positive=entity_positive)
    elif entity_map or entity_positive is not None or unlabelled_negative:
        raise ValueError("--entity-map, --entity-positive and --unlabelled-negative describe an entity label "
                         "file: give one with --entity-labels FILE")
    ent_labels = None if label_file is None else label_file.labels
    model = model or load_scoring_model(settings)
    held_note = None
    held: set[str] | None = None
    if ent_labels is not None and model.entity.held_out:
        # a trained entity head is measured on the entities it was not fitted on
        held = set(model.entity.held_out)
        ent_labels = {e: y for e, y in ent_labels.items() if e in held}
        held_note = (f"the {len(held)} entities the entity head held out in training (it was fitted on the "
                     "other labelled ones); every entity score here is measured on them")
    ends: dict[str, tuple[str, str]] | None = {} if ent_labels is not None else None
    store, tmp = open_store(settings, model, state_dir)
    t0 = time.perf_counter()
    try:
        with store, _Output(out / "alerts.jsonl", "alerts") as alerts_out:
            engine = Engine(store, model, **settings.engine_kwargs())
            total = count_rows(spec)
            skip = _resume(store, spec, state_dir, say, total)
            try:
                run = run_batches(engine, file_batches(spec, settings.batch_size, skip, ends=ends),
                                  progress=progress, total_events=None if total is None else max(total - skip, 0),
                                  alerts_out=alerts_out, desc="evaluate")
            except CorruptFileError as exc:
                raise _corrupt(exc, out / "alerts.jsonl") from None
            threshold = float(engine.policy.threshold)
            ent_comps = None
            if ends is not None:
                now = float(run.ts.max()) if len(run.ts) else 0.0
                ent_comps = entity_component_scores(run, ends, entity_scores(store, now),
                                                    entity_model_scores(store, model, now))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    metrics = evaluate_run(run, threshold, eval_after=eval_after, eval_fraction=eval_fraction,
                           entity_labels=ent_labels, entity_components=ent_comps,
                           entities_seen=None if ent_comps is None else
                           [e for e in ent_comps["entity_risk"] if held is None or e in held],
                           unlabelled_negative=unlabelled_negative, seed=settings.seed)
    metrics["timestamps"] = ts_note
    if label_file is not None:
        metrics["entity_label_file"] = label_file.note
    if held_note is not None:
        metrics["entity_evaluated_on"] = held_note
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


def _ci(metrics: dict[str, Any], key: str) -> str:
    ci = metrics.get(f"{key}_ci90")
    return f"  [{ci[0]:.4f}, {ci[1]:.4f}] 90% CI" if ci else ""


def summary_lines(metrics: dict[str, Any]) -> Iterable[str]:
    """The printed summary of evaluate and demo."""
    for k in ("timestamps", "entity_label_file", "entity_evaluated_on", "entity_headline"):
        if k in metrics:
            yield f"  {metrics[k]}"
    keys = ("events_total", "events_evaluated", "event_auc", "event_ap", "event_positives", "event_negatives",
            "precision_at_k", "precision_at_100", "entity_auc", "entity_ap", "entity_positives", "entity_negatives",
            "entity_precision_at_k", "entity_precision_at_100", "entity_labels_not_in_file", "entities_unlabelled",
            "alert_rate", "recall_at_threshold", "precision_at_threshold", "threshold", "events_per_second",
            "latency_p50_ms", "latency_p99_ms", "dead_letters")
    for k in keys:
        if k in metrics:
            v = metrics[k]
            yield (f"  {k:<24} {v:,.4f}{_ci(metrics, k)}" if isinstance(v, float) else f"  {k:<24} {v}")
    if "entities_unlabelled" in metrics:
        yield f"  {'unlabelled entities':<24} {metrics['unlabelled_entities_are']}"
    if metrics.get("first_dead_letter"):
        yield f"  {'first dead letter':<24} {metrics['first_dead_letter']}"
    q = metrics.get("score_quantiles")
    if q and "event_auc" not in metrics:  # unlabelled: the distribution is what there is to see
        yield f"  {'score quantiles':<24} " + "  ".join(f"{k} {v:.4f}" for k, v in q.items())
    if "quality" in metrics:
        yield f"  {metrics['quality']}"
    if "bootstrap" in metrics and any(k.endswith("_ci90") for k in metrics):
        b = metrics["bootstrap"]
        yield (f"  intervals: {b['level']:.0%} percentile bootstrap, {b['resamples']} stratified resamples "
               f"(fewer above {b['shrinks_above']:,} items), seed {b['seed']}")
    comps = metrics.get("entity_components")
    if comps:
        yield ""
        yield f"  {'entity score':<28} {'AUC':>7} {'90% CI':>17} {'AP':>7} {'90% CI':>17} {'P@k':>6}"
        for name, r in comps.items():
            yield f"  {name:<28} {_num(r.get('entity_auc')):>7} {_pair(r.get('entity_auc_ci90')):>17} " \
                  f"{_num(r.get('entity_ap')):>7} {_pair(r.get('entity_ap_ci90')):>17} " \
                  f"{_num(r.get('entity_precision_at_k')):>6}"
    typ = metrics.get("typologies")
    if typ:
        yield ""
        yield f"  {'typology':<16} {'events':>7} {'AUC':>7} {'90% CI':>17} {'AP':>7} {'recall@thr':>11}"
        for name, r in typ.items():
            yield (f"  {name:<16} {r['events']:>7} {_num(r['auc']):>7} {_pair(r.get('auc_ci90')):>17} "
                   f"{_num(r['ap']):>7} {r['recall_at_threshold']:>11.3f}")


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _pair(ci: Any) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
