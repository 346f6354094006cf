"""Entity risk as a model: a supervised tree head over the entity features, or, without
labels, a directional evidence score.

The entity features (``features.entity``) summarise each entity's history in its node
record. :class:`EntityModel` turns a row of them into a risk in [0, 1]:

* **trained** (``riskgraph train --entity-labels``): gradient-boosted trees
  (``models.head.TreeHead``, the event head's machinery) fitted on a seeded stratified
  part of the labelled entities at the end of the training replay, and measured on the
  rest (:func:`fit_entity_model`); the held-out ids are kept so that ``evaluate
  --model`` scores the same held-out entities;
* **unsupervised** (the default): :func:`evidence_score`, a fixed weighted mean of signals
  whose direction is known -- low REV2 goodness (what others say of the entity, weighted
  by how fair they are), low goodness of its counterparties, low fairness (its ratings
  disagree with the consensus) and little history. An anomaly detector over the same
  features was not chosen: on trust networks the unusual entities are the old, busy,
  well-rated ones (degree is heavy-tailed), so "unusual" ranks the wrong way round; the
  direction of each signal is what REV2 and the naive rules rest on.

Both score from the node record on demand: for every entity at the end of a replay or
evaluation. The Engine does not store a score per batch: a score taken after each batch
would depend on where the stream was cut, and the node records, alerts and replays must not.

>>> from riskgraph.features.entity import ENTITY_FEATURE_NAMES
>>> x = np.zeros((2, len(ENTITY_FEATURE_NAMES)))
>>> x[:, ENTITY_FEATURE_NAMES.index("fairness")] = 1.0
>>> x[0, ENTITY_FEATURE_NAMES.index("goodness")] = -0.8  # rated badly
>>> x[1, ENTITY_FEATURE_NAMES.index("goodness")] = 0.8
>>> s = EntityModel().score_features(x)
>>> bool(s[0] > s[1]), bool(((0 <= s) & (s <= 1)).all())
(True, True)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from riskgraph.features.entity import ENTITY_FEATURE_NAMES, entity_features
from riskgraph.features.layout import NodeArrays
from riskgraph.models.evaluation import rank_metrics
from riskgraph.models.head import TreeHead

FORMAT = 1
#: TreeHead settings of the entity head: entity tables are small (thousands of rows), so
#: shallower trees and a lower rate than the event head's.
ENTITY_HEAD_PARAMS: dict[str, Any] = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15,
                                      "l2_regularization": 1.0}
#: Share of the labelled entities held out of the fit (stratified, seeded).
HELD_OUT_FRACTION: float = 0.3
#: Weights of :func:`evidence_score`'s signals (they sum to 1).
EVIDENCE_WEIGHTS: dict[str, float] = {"goodness": 0.4, "nbr_good": 0.2, "fairness": 0.2, "history": 0.2}
_COL = {n: i for i, n in enumerate(ENTITY_FEATURE_NAMES)}


def evidence_score(x: np.ndarray) -> np.ndarray:
    """The unsupervised entity risk in [0, 1] of entity feature rows ``x``.

    ``0.4 (1 - goodness) / 2 + 0.2 (1 - nbr_good) / 2 + 0.2 (1 - fairness)
    + 0.2 / (1 + log_n_in + log_n_out)``. Without amounts goodness and fairness are
    constant (0 and 1), and the ranking is by history alone.
    """
    x = np.asarray(x, np.float64)
    w = EVIDENCE_WEIGHTS
    good = np.clip(x[:, _COL["goodness"]], -1.0, 1.0)
    nbr = np.clip(x[:, _COL["nbr_good"]], -1.0, 1.0)
    fair = np.clip(x[:, _COL["fairness"]], 0.0, 1.0)
    hist = 1.0 / (1.0 + np.maximum(x[:, _COL["log_n_in"]] + x[:, _COL["log_n_out"]], 0.0))
    return (w["goodness"] * (1.0 - good) / 2.0 + w["nbr_good"] * (1.0 - nbr) / 2.0
            + w["fairness"] * (1.0 - fair) + w["history"] * hist)


class EntityModel:
    """Entity risk from entity features: ``head`` when trained, else :func:`evidence_score`.

    ``held_out``: the labelled entities the head was not fitted on (their metrics are in
    ``metrics``), for evaluating it again on the same ones.
    """

    def __init__(self, head: TreeHead | None = None, *, held_out: Sequence[str] = (),
                 metrics: dict[str, Any] | None = None) -> None:
        if head is not None and tuple(head.inputs) != ENTITY_FEATURE_NAMES:
            raise ValueError("the entity head was fitted on other entity features than this version computes")
        self.head = head
        self.held_out = tuple(held_out)
        self.metrics = dict(metrics or {})

    @property
    def kind(self) -> str:
        return "trees" if self.head is not None else "evidence"

    def digest(self) -> str:
        return "evidence-v1" if self.head is None else self.head.digest()

    def score_features(self, x: np.ndarray) -> np.ndarray:
        """Risk in [0, 1] of entity feature rows ``x`` (float64[n, N_ENTITY_FEATURES])."""
        x = np.ascontiguousarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != len(ENTITY_FEATURE_NAMES):
            raise ValueError(f"entity features must be [n, {len(ENTITY_FEATURE_NAMES)}], got {x.shape}")
        if self.head is not None:
            return self.head.predict(x)
        return evidence_score(x)

    def score(self, table: NodeArrays, slots: Any, now: float) -> np.ndarray:
        """Risk of node rows ``slots`` at time ``now``."""
        return self.score_features(entity_features(table, slots, now))

    # -- artifact ---------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """``path/head.npz`` + ``head.json`` (the trees, ``TreeHead.save``) and ``path/entity.json``."""
        if self.head is None:
            raise ValueError("only a trained entity model is saved (the evidence score has no parameters)")
        out = self.head.save(path)
        meta = {"format": FORMAT, "features": list(ENTITY_FEATURE_NAMES), "held_out": list(self.held_out),
                "metrics": self.metrics}
        (out / "entity.json").write_text(json.dumps(meta, indent=2, default=float))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EntityModel":
        """Read what :meth:`save` wrote (no pickle); ValueError if it is not that."""
        p = Path(path)
        try:
            meta = json.loads((p / "entity.json").read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p}: not an entity model ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != FORMAT or list(meta.get("features", [])) != list(ENTITY_FEATURE_NAMES):
            raise ValueError(f"{p}: entity model of another format or feature set than this version has: "
                             "train it again")
        return cls(TreeHead.load(p), held_out=[str(e) for e in meta.get("held_out", [])],
                   metrics=meta.get("metrics") or {})


def split_entities(labels: np.ndarray, seed: int = 0,
                   fraction: float = HELD_OUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of entity indices: (fit, held_out); each class contributes
    ``round(fraction * count)`` held-out entities (at least one when it has two).

    >>> fit, held = split_entities(np.array([0] * 10 + [1] * 4), seed=0)
    >>> len(held), int(np.array([0] * 10 + [1] * 4)[held].sum())
    (4, 1)
    """
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        k = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        held.append(rng.permutation(idx)[:k])
    h = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(y)), h), h


def fit_entity_model(x: np.ndarray, labels: np.ndarray, ids: Sequence[str], *, seed: int = 0,
                     fraction: float = HELD_OUT_FRACTION) -> EntityModel:
    """Fit the entity head on a stratified part of the labelled entities, measure it and the
    evidence score on the rest.

    Parameters
    ----------
    x : ndarray of shape (n, N_ENTITY_FEATURES)
        Entity features of the labelled entities (at the end of the training replay).
    labels : ndarray of shape (n,)
        0/1 labels.
    ids : sequence of str
        The entities' external ids (the held-out ones are kept in the model).

    Raises ValueError when either class has fewer than 2 entities (nothing to hold out).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, len(ENTITY_FEATURE_NAMES)))
    >>> y = (x[:, 0] + 0.3 * rng.normal(size=400) > 1.0).astype(int)
    >>> m = fit_entity_model(x, y, [str(i) for i in range(400)], seed=0)
    >>> m.kind, len(m.held_out), m.metrics["held_out"]["head"]["entity_auc"] > 0.9
    ('trees', 120, True)
    """
    y = np.asarray(labels).astype(np.int64)
    if min(int((y == 1).sum()), int((y == 0).sum())) < 2:
        raise ValueError(f"entity labels: {int((y == 1).sum())} risky and {int((y == 0).sum())} other entities "
                         "are in the file; the entity head needs at least 2 of each")
    t0 = time.perf_counter()
    fit, held = split_entities(y, seed, fraction)
    head = TreeHead.fit(x[fit], y[fit], ENTITY_FEATURE_NAMES, seed=seed, **ENTITY_HEAD_PARAMS)
    metrics = {
        "fit_entities": int(len(fit)), "fit_positives": int(y[fit].sum()), "seed": seed,
        "held_out_fraction": fraction, "params": ENTITY_HEAD_PARAMS, "trees": head.n_trees,
        "held_out": {"head": rank_metrics(head.predict(x[held]), y[held], "entity_", seed=seed),
                     "evidence": rank_metrics(evidence_score(x[held]), y[held], "entity_", seed=seed)},
        "seconds": time.perf_counter() - t0,
    }
    ids = list(ids)
    return EntityModel(head, held_out=[str(ids[i]) for i in held], metrics=metrics)
