"""Quality metrics of a scored, labelled stream: events, entities, typologies, ablation.

Ranking metrics come from scikit-learn (``roc_auc_score``, ``average_precision_score``),
which handles ties and degenerate cases the way the literature does; what is ours
is which scores are compared with which labels.

Every AUC and AP comes with a bootstrap interval (``<name>_ci90``: the 5th and 95th
percentiles of the metric over :data:`BOOTSTRAP` resamples) and the numbers of
positives and negatives it rests on. The bootstrap is stratified: positives are
resampled among the positives and negatives among the negatives, so that every
resample has both classes and the counts of the original (with 50 positives, an
unstratified resample could hold 40 or 60; AUC is conditional on the counts). It is
seeded (``seed=``; the jobs pass ``Settings.seed``), so a run is reproducible; resamples are computed in O(P + N) each from one
sort (:class:`Bootstrap`), and above :data:`BOOTSTRAP_FULL_SIZE` labelled items their
number shrinks in proportion (never below 100; ``resamples`` says how many).

>>> import numpy as np
>>> m = event_metrics(np.array([0.9, 0.2, 0.8, 0.1]), np.array([1, 0, 1, 0]), threshold=0.5)
>>> m["event_auc"], m["event_ap"], m["precision_at_k"], m["alert_rate"], m["event_auc_ci90"]
(1.0, 1.0, 1.0, 0.5, [1.0, 1.0])
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


#: Bootstrap defaults: resamples, interval level, and the size above which resamples shrink.
BOOTSTRAP = 1000
LEVEL = 0.9
BOOTSTRAP_FULL_SIZE = 200_000


def bootstrap_info(seed: int = 0) -> dict[str, object]:
    """How the intervals were computed, for metrics.json."""
    return {"resamples": BOOTSTRAP, "level": LEVEL, "stratified": True, "seed": int(seed),
            "interval": "percentile", "shrinks_above": BOOTSTRAP_FULL_SIZE}


class Bootstrap:
    """Weighted AUC and AP of one (scores, labels) pair, for resampling weights.

    With all weights 1 they equal scikit-learn's ``roc_auc_score`` and
    ``average_precision_score`` (ties included: a tied negative counts one half in AUC,
    tied items share one threshold in AP).

    >>> b = Bootstrap(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0]))
    >>> b.auc_ap(np.ones(2), np.ones(2))
    (0.875, 0.8333333333333333)
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        pos = np.sort(np.asarray(scores[labels == 1], np.float64))[::-1]
        self.neg = np.sort(np.asarray(scores[labels == 0], np.float64))
        self.P, self.N = len(pos), len(self.neg)
        self.lo = np.searchsorted(self.neg, pos, "left")
        self.hi = np.searchsorted(self.neg, pos, "right")
        new = np.r_[True, pos[1:] != pos[:-1]] if self.P else np.zeros(0, bool)
        self.group = np.cumsum(new) - 1
        self.group_lo = self.lo[new]

    def auc_ap(self, wp: np.ndarray, wn: np.ndarray) -> tuple[float, float]:
        """(AUC, AP) with weight ``wp[i]`` on the i-th highest positive and ``wn[j]`` on the
        j-th lowest negative."""
        c = np.concatenate(([0.0], np.cumsum(wn, dtype=np.float64)))
        total_n, total_p = c[-1], float(wp.sum())
        below, ties = c[self.lo], c[self.hi] - c[self.lo]
        auc = float((wp * (below + 0.5 * ties)).sum() / (total_p * total_n))
        gsum = np.bincount(self.group, weights=wp)
        tp = np.cumsum(gsum)
        fp = total_n - c[self.group_lo]
        keep = gsum > 0
        ap = float((gsum[keep] * tp[keep] / (tp[keep] + fp[keep])).sum() / total_p)
        return auc, ap

    def intervals(self, resamples: int | None = None, seed: int = 0,
                  level: float = LEVEL) -> tuple[list[float], list[float], int]:
        """Percentile intervals of AUC and AP over stratified resamples, and their number."""
        if resamples is None:
            size = self.P + self.N
            resamples = BOOTSTRAP if size <= BOOTSTRAP_FULL_SIZE else max(100, BOOTSTRAP * BOOTSTRAP_FULL_SIZE // size)
        rng = np.random.default_rng(seed)
        out = np.empty((resamples, 2))
        for r in range(resamples):
            wp = np.bincount(rng.integers(0, self.P, self.P), minlength=self.P).astype(np.float64)
            wn = np.bincount(rng.integers(0, self.N, self.N), minlength=self.N).astype(np.float64)
            out[r] = self.auc_ap(wp, wn)
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        auc_ci, ap_ci = (np.percentile(out[:, j], q).tolist() for j in range(2))
        return [float(x) for x in auc_ci], [float(x) for x in ap_ci], resamples


def rank_metrics(scores: np.ndarray, labels: np.ndarray, prefix: str, *,
                 with_interval: bool = True, seed: int = 0) -> dict[str, object]:
    """``{prefix}auc``, ``{prefix}ap`` with their ``_ci90`` intervals, and the counts
    ``{prefix}positives`` / ``{prefix}negatives``; the metrics are None with one class."""
    y = np.asarray(labels)
    s = np.asarray(scores, np.float64)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    out: dict[str, object] = {f"{prefix}auc": None, f"{prefix}ap": None}
    if n_pos and n_neg:
        out[f"{prefix}auc"], out[f"{prefix}ap"] = _rank_metrics(s, y)
        if with_interval:
            auc_ci, ap_ci, _ = Bootstrap(s, y).intervals(seed=seed)
            out[f"{prefix}auc_ci90"], out[f"{prefix}ap_ci90"] = auc_ci, ap_ci
    out[f"{prefix}positives"], out[f"{prefix}negatives"] = n_pos, n_neg
    return out


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


def event_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float | None = None, *,
                  seed: int = 0) -> dict[str, object]:
    """Event-level AUC, AP (with intervals and counts), precision@k (k = positives, and
    100), alert rate and recall at ``threshold``."""
    mask = labels >= 0
    s, y = scores[mask], labels[mask].astype(np.int64)
    out: dict[str, object] = dict(rank_metrics(s, y, "event_", seed=seed))
    out["precision_at_k"] = precision_at_k(s, y)
    out["precision_at_100"] = precision_at_k(s, y, 100) if len(y) >= 100 else None
    out["positives"] = int(y.sum())
    out["labelled_events"] = int(len(y))
    if threshold is not None:
        alerted = s >= threshold
        out["alert_rate"] = float(alerted.mean()) if len(s) else None
        out["recall_at_threshold"] = float(alerted[y == 1].mean()) if y.sum() else None
        out["precision_at_threshold"] = float(y[alerted].mean()) if alerted.any() else None
    return out


def typology_metrics(
    scores: np.ndarray, labels: np.ndarray, typology: Sequence[str | None], threshold: float, *, seed: int = 0
) -> dict[str, dict[str, object]]:
    """Per attack typology: its events against all benign events (AUC, AP) and recall at the threshold."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(typology):
        if t:
            groups[t].append(i)
    benign = np.flatnonzero(labels == 0)
    out: dict[str, dict[str, object]] = {}
    for name, idx in sorted(groups.items()):
        idx_a = np.asarray(idx)
        sel = np.concatenate([idx_a, benign])
        y = np.concatenate([np.ones(len(idx_a), np.int64), np.zeros(len(benign), np.int64)])
        rm = rank_metrics(scores[sel], y, "", seed=seed)
        out[name] = {
            "events": int(len(idx_a)),
            "auc": rm["auc"], "auc_ci90": rm.get("auc_ci90"),
            "ap": rm["ap"], "ap_ci90": rm.get("ap_ci90"),
            "negatives": rm["negatives"],
            "recall_at_threshold": float((scores[idx_a] >= threshold).mean()),
            "median_score": float(np.median(scores[idx_a])),
        }
    return out


def entity_metrics(components: Mapping[str, Mapping[str, float]], entity_labels: Mapping[str, int],
                   seen: Iterable[str], *, unlabelled_negative: bool = False,
                   main: str = "entity_risk", seed: int = 0) -> dict[str, object]:
    """Entity AUC, AP (with intervals and counts) and precision at k (k = positives, and 100)
    of each entity score in ``components`` (``{name: {entity: score}}``), ``main``'s at the top.

    Evaluated are the labelled entities in ``seen`` (the entities of the file); labelled
    ones not in it are counted (``entity_labels_not_in_file``), never scored as 0. Entities
    of the file without a label are left out, or are negatives with ``unlabelled_negative``.
    An entity of the file that a component has no score for scores 0 in it.

    >>> m = entity_metrics({"entity_risk": {"a": 0.9, "b": 0.1, "c": 0.5}}, {"a": 1, "b": 0, "z": 1}, ["a", "b", "c"])
    >>> m["entity_auc"], m["entity_positives"], m["entity_negatives"], m["entity_labels_not_in_file"]
    (1.0, 1, 1, 1)
    >>> entity_metrics({"entity_risk": {"a": 0.9, "b": 0.1, "c": 0.5}}, {"a": 1, "b": 0}, ["a", "b", "c"],
    ...                unlabelled_negative=True)["entity_negatives"]
    2
    """
    seen_set = set(seen)
    ents = [e for e in entity_labels if e in seen_set]
    missing = [e for e in entity_labels if e not in seen_set]
    y_list = [entity_labels[e] for e in ents]
    unlabelled = [e for e in seen_set if e not in entity_labels]
    if unlabelled_negative:
        unlabelled.sort()
        ents += unlabelled
        y_list += [0] * len(unlabelled)
    y = np.asarray(y_list, np.int64)
    out: dict[str, object] = {
        "labelled_entities": len(entity_labels),
        "entity_labels_not_in_file": len(missing),
        "entity_labels_not_in_file_positives": int(sum(entity_labels[e] for e in missing)),
        "entities_in_file": len(seen_set),
        "entities_unlabelled": len(unlabelled),
        "unlabelled_entities_are": "negatives (--unlabelled-negative)" if unlabelled_negative else "left out",
    }
    table: dict[str, dict[str, object]] = {}
    for name, scores in components.items():
        s = np.fromiter((scores.get(e, 0.0) for e in ents), np.float64, len(ents))
        row = dict(rank_metrics(s, y, "entity_", seed=seed))
        row["entity_precision_at_k"] = precision_at_k(s, y) if len(y) else None
        row["entity_precision_at_100"] = precision_at_k(s, y, 100) if len(y) >= 100 else None
        table[name] = row
    if main in table:
        out.update(table[main])
    if len(table) > 1 or (table and main not in table):
        out["entity_components"] = table
    return out


def latency_summary(latency_ms: np.ndarray) -> dict[str, float | None]:
    if len(latency_ms) == 0:
        return {"latency_p50_ms": None, "latency_p99_ms": None}
    p50, p99 = np.percentile(latency_ms, [50, 99])
    return {"latency_p50_ms": float(p50), "latency_p99_ms": float(p99)}


def ablation(components: Mapping[str, np.ndarray], labels: np.ndarray,
             typology: Sequence[str | None] | None = None,
             focus: Iterable[str] = (), *, seed: int = 0) -> dict[str, dict[str, object]]:
    """AUC/AP (with intervals) of each score component alone (what each part of the model
    contributes); ``ap_<typology>`` for the ``focus`` typologies, without interval."""
    mask = labels >= 0
    out: dict[str, dict[str, object]] = {}
    for name, s in components.items():
        row: dict[str, object] = dict(rank_metrics(s[mask], labels[mask].astype(np.int64), "event_", seed=seed))
        if typology is not None:
            for t in focus:
                idx = [i for i, v in enumerate(typology) if v == t]
                if idx:
                    sel = np.concatenate([np.asarray(idx), np.flatnonzero(labels == 0)])
                    y = (np.arange(len(sel)) < len(idx)).astype(np.int64)
                    row[f"ap_{t}"] = _rank_metrics(s[sel], y)[1]
        out[name] = row
    return out
