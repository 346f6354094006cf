"""Quality metrics of a scored, labelled stream: events, entities, typologies, ablation.

Ranking metrics come from scikit-learn (``roc_auc_score``, ``average_precision_score``),
which handles ties and degenerate cases the way the literature does; what is ours
is which scores are compared with which labels.

>>> import numpy as np
>>> m = event_metrics(np.array([0.9, 0.2, 0.8, 0.1]), np.array([1, 0, 1, 0]), threshold=0.5)
>>> m["event_auc"], m["event_ap"], m["precision_at_k"], m["alert_rate"]
(1.0, 1.0, 1.0, 0.5)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def _rank_metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float | None, float | None]:
    """(AUC, AP), or None where only one class is present."""
    if len(labels) == 0 or labels.min() == labels.max():
        return None, None
    return float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores))


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int | None = None) -> float | None:
    """Precision among the k highest scores; k defaults to the number of positives."""
    k = int(labels.sum()) if k is None else k
    if k <= 0:
        return None
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean())


def event_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float | None = None) -> dict[str, float | None]:
    """Event-level AUC, AP, precision@k, alert rate and recall at ``threshold``."""
    mask = labels >= 0
    s, y = scores[mask], labels[mask].astype(np.int64)
    auc, ap = _rank_metrics(s, y)
    out: dict[str, float | None] = {
        "event_auc": auc,
        "event_ap": ap,
        "precision_at_k": precision_at_k(s, y),
        "positives": int(y.sum()),
        "labelled_events": int(len(y)),
    }
    if threshold is not None:
        alerted = s >= threshold
        out["alert_rate"] = float(alerted.mean()) if len(s) else None
        out["recall_at_threshold"] = float(alerted[y == 1].mean()) if y.sum() else None
        out["precision_at_threshold"] = float(y[alerted].mean()) if alerted.any() else None
    return out


def typology_metrics(
    scores: np.ndarray, labels: np.ndarray, typology: Sequence[str | None], threshold: float
) -> dict[str, dict[str, float | int | None]]:
    """Per attack typology: its events against all benign events (AUC, AP) and recall at the threshold."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(typology):
        if t:
            groups[t].append(i)
    benign = np.flatnonzero(labels == 0)
    out: dict[str, dict[str, float | int | None]] = {}
    for name, idx in sorted(groups.items()):
        idx_a = np.asarray(idx)
        sel = np.concatenate([idx_a, benign])
        y = np.concatenate([np.ones(len(idx_a), np.int64), np.zeros(len(benign), np.int64)])
        auc, ap = _rank_metrics(scores[sel], y)
        out[name] = {
            "events": int(len(idx_a)),
            "auc": auc,
            "ap": ap,
            "recall_at_threshold": float((scores[idx_a] >= threshold).mean()),
            "median_score": float(np.median(scores[idx_a])),
        }
    return out


def entity_metrics(entity_scores: Mapping[str, float], entity_labels: Mapping[str, int]) -> dict[str, float | None]:
    """Entity AUC and AP over the labelled entities (unscored entities count as 0 risk)."""
    ents = list(entity_labels)
    y = np.fromiter((entity_labels[e] for e in ents), np.int64, len(ents))
    s = np.fromiter((entity_scores.get(e, 0.0) for e in ents), np.float64, len(ents))
    auc, ap = _rank_metrics(s, y)
    return {"entity_auc": auc, "entity_ap": ap, "labelled_entities": len(ents), "entity_positives": int(y.sum())}


def latency_summary(latency_ms: np.ndarray) -> dict[str, float | None]:
    if len(latency_ms) == 0:
        return {"latency_p50_ms": None, "latency_p99_ms": None}
    p50, p99 = np.percentile(latency_ms, [50, 99])
    return {"latency_p50_ms": float(p50), "latency_p99_ms": float(p99)}


def ablation(components: Mapping[str, np.ndarray], labels: np.ndarray,
             typology: Sequence[str | None] | None = None,
             focus: Iterable[str] = ()) -> dict[str, dict[str, float | None]]:
    """AUC/AP of each score component alone (what each part of the model contributes)."""
    mask = labels >= 0
    out: dict[str, dict[str, float | None]] = {}
    for name, s in components.items():
        auc, ap = _rank_metrics(s[mask], labels[mask].astype(np.int64))
        row: dict[str, float | None] = {"event_auc": auc, "event_ap": ap}
        if typology is not None:
            for t in focus:
                idx = [i for i, v in enumerate(typology) if v == t]
                if idx:
                    sel = np.concatenate([np.asarray(idx), np.flatnonzero(labels == 0)])
                    y = (np.arange(len(sel)) < len(idx)).astype(np.int64)
                    row[f"ap_{t}"] = _rank_metrics(s[sel], y)[1]
        out[name] = row
    return out
