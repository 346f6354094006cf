"""The supervised head: gradient-boosted trees over an event's features, stored as plain arrays.

The unsupervised detector ranks what is *unusual*; with labels, a supervised model of
the same 24 features (plus the graph features of ``features.graph``) ranks what
is *risky* -- far better on the simulated typologies (``riskgraph demo`` prints the
ablation). Trees suit these inputs: mixed units, flags, heavy tails, thresholds that
matter (an amount of exactly 1.00, an account seen for the first time).

Fitting uses scikit-learn's ``HistGradientBoostingClassifier``; the fitted trees are
then copied into flat arrays (:class:`TreeHead`), which is all that serving and the
artifact need: ``head.npz`` (numbers only, read with ``allow_pickle=False``) and
``head.json`` (input names, metrics). Scoring is a numba walk of the trees, the same
rule as scikit-learn's predictor: a missing (NaN) value goes the side learned for it,
else ``x <= threshold`` goes left.

>>> rng = np.random.default_rng(0)
>>> X = rng.uniform(size=(2000, 3)); y = (X[:, 0] + 0.3 * X[:, 1] > 0.9).astype(int)
>>> head = TreeHead.fit(X, y, ("a", "b", "c"), seed=0, max_iter=50)
>>> p = head.predict(X)
>>> p.shape, bool(((p > 0.5) == y).mean() > 0.95), head.n_trees <= 50
((2000,), True, True)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from numba import njit

FORMAT = 2  # 2: inner nodes' values are shrunk like the leaves' (contributions)
_ARRAYS = ("feature", "threshold", "left", "right", "value", "is_leaf", "missing_left", "roots")


@njit(cache=True, inline="always")
def _child(node, x, threshold, left, right, missing_left):
    """The child a value ``x`` goes to at an inner node (scikit-learn's rule)."""
    if np.isnan(x):
        return left[node] if missing_left[node] else right[node]
    return left[node] if x <= threshold[node] else right[node]


@njit(cache=True)
def _predict(X, feature, threshold, left, right, value, is_leaf, missing_left, roots, baseline, out):
    for i in range(X.shape[0]):
        z = baseline
        for r in range(roots.shape[0]):
            node = roots[r]
            while not is_leaf[node]:
                node = _child(node, X[i, feature[node]], threshold, left, right, missing_left)
            z += value[node]
        out[i] = z


@njit(cache=True)
def _contributions(X, feature, threshold, left, right, value, is_leaf, missing_left, roots, out, bias):
    for i in range(X.shape[0]):
        b = 0.0
        for r in range(roots.shape[0]):
            node = roots[r]
            b += value[node]
            while not is_leaf[node]:
                f = feature[node]
                nxt = _child(node, X[i, f], threshold, left, right, missing_left)
                out[i, f] += value[nxt] - value[node]
                node = nxt
        bias[i] = b


@dataclass
class TreeHead:
    """An additive ensemble of binary trees: ``logit = baseline + sum of each tree's leaf``.

    Nodes of all trees live in one set of arrays; ``roots[t]`` is tree ``t``'s root and
    ``left``/``right`` are absolute node indices.
    """

    inputs: tuple[str, ...]
    baseline: float
    feature: np.ndarray  # int64 [N]
    threshold: np.ndarray  # float64 [N]
    left: np.ndarray  # int64 [N]
    right: np.ndarray  # int64 [N]
    value: np.ndarray  # float64 [N], the leaf's contribution to the logit
    is_leaf: np.ndarray  # bool [N]
    missing_left: np.ndarray  # bool [N]
    roots: np.ndarray  # int64 [T]
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.feature.shape[0]
        self.inputs = tuple(self.inputs)
        for name, dt in (("feature", np.int64), ("threshold", np.float64), ("left", np.int64),
                         ("right", np.int64), ("value", np.float64), ("is_leaf", np.bool_),
                         ("missing_left", np.bool_), ("roots", np.int64)):
            a = np.ascontiguousarray(getattr(self, name), dt)
            if a.ndim != 1 or (name != "roots" and a.shape[0] != n):
                raise ValueError(f"tree array {name!r} must be 1-D with {n} entries, got {a.shape}")
            setattr(self, name, a)
        inner = ~self.is_leaf
        if n == 0 or self.roots.size == 0:
            raise ValueError("a tree head needs at least one tree")
        if self.roots.min() < 0 or self.roots.max() >= n:
            raise ValueError("tree roots out of range")
        for name in ("left", "right"):
            c = getattr(self, name)[inner]
            if c.size and (c.min() < 0 or c.max() >= n or (c <= np.flatnonzero(inner)).any()):
                raise ValueError(f"tree {name} children must point forward inside the arrays")
        f = self.feature[inner]
        if f.size and (f.min() < 0 or f.max() >= len(self.inputs)):
            raise ValueError(f"split features must index the {len(self.inputs)} inputs")
        if not (np.isfinite(self.value).all() and np.isfinite(self.baseline)):
            raise ValueError("tree values must be finite")

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    # -- fitting ----------------------------------------------------------------

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, inputs: Sequence[str], *, seed: int = 0, max_iter: int = 300,
            learning_rate: float = 0.1, max_leaf_nodes: int = 31, l2_regularization: float = 1.0,
            early_stopping: bool = True, class_weight: str | None = None,
            n_threads: int | None = None) -> "TreeHead":
        """Fit gradient-boosted trees (scikit-learn) to 0/1 labels and copy them out.

        With ``early_stopping`` a seeded 10 % of the rows is held out inside the fit and
        boosting stops when its loss stops improving; the number of trees kept is
        ``metrics["n_trees"]`` (pass it as ``max_iter`` with ``early_stopping=False``
        to refit the same size of model on more rows). ``n_threads`` caps the OpenMP
        threads of the fit (None: scikit-learn's default, every core).

        ``l2_regularization`` (default 1.0, scikit-learn's is 0) keeps leaf values finite
        where a leaf's hessians are tiny: with rare positives and near-pure leaves,
        unregularised log-loss boosting can diverge (the run that showed it:
        ``benchmarks/README.md``, "Moved from code comments").
        """
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        X = np.asarray(X, np.float64)
        y = np.asarray(y).astype(np.int64)
        if X.ndim != 2 or X.shape[1] != len(inputs) or y.shape != (X.shape[0],):
            raise ValueError(f"X must be [n, {len(inputs)}] and y [n], got {X.shape} and {y.shape}")
        if not np.isin(y, (0, 1)).all() or y.min() == y.max():
            raise ValueError("y must hold both classes, as 0/1")
        clf = HistGradientBoostingClassifier(
            max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
            l2_regularization=l2_regularization, early_stopping=early_stopping, class_weight=class_weight,
            random_state=seed,
        )
        with threadpool_limits(limits=n_threads):
            clf.fit(X, y)
        head = cls.from_sklearn(clf, inputs)
        head.metrics = {"n_trees": head.n_trees, "rows": int(X.shape[0]), "positives": int(y.sum()),
                        "learning_rate": learning_rate, "max_leaf_nodes": max_leaf_nodes,
                        "l2_regularization": l2_regularization, "class_weight": class_weight, "seed": seed}
        return head

    @classmethod
    def from_sklearn(cls, clf: Any, inputs: Sequence[str]) -> "TreeHead":
        """Copy a fitted binary ``HistGradientBoostingClassifier``'s trees into arrays."""
        preds = getattr(clf, "_predictors", None)
        if preds is None or getattr(clf, "n_trees_per_iteration_", None) != 1:
            raise ValueError("expected a fitted binary HistGradientBoostingClassifier")
        parts, roots, offset = [], [], 0
        for (tree,) in preds:
            nodes = tree.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            parts.append((nodes, offset))
            roots.append(offset)
            offset += nodes.shape[0]

        def cat(col: str) -> np.ndarray:
            return np.concatenate([nodes[col] for nodes, _ in parts])

        def child(col: str) -> np.ndarray:  # node indices made absolute
            return np.concatenate([nodes[col].astype(np.int64) + o for nodes, o in parts])

        is_leaf = cat("is_leaf").astype(bool)
        value = cat("value").astype(np.float64)
        # scikit-learn shrinks only the leaves by the learning rate; shrinking the inner
        # nodes' values too makes each path's steps add up to its leaf (contributions)
        value[~is_leaf] *= float(clf.learning_rate)
        left, right = child("left"), child("right")
        left[is_leaf] = -1
        right[is_leaf] = -1
        return cls(inputs=tuple(inputs), baseline=float(np.ravel(clf._baseline_prediction)[0]),
                   feature=cat("feature_idx"), threshold=cat("num_threshold"), left=left, right=right,
                   value=value, is_leaf=is_leaf, missing_left=cat("missing_go_to_left").astype(bool),
                   roots=np.asarray(roots, np.int64))

    # -- scoring ----------------------------------------------------------------

    def logit(self, X: np.ndarray) -> np.ndarray:
        """Log-odds (float64[n]) of rows ``X`` [n, n_inputs]."""
        X = np.ascontiguousarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must be [n, {self.n_inputs}], got {X.shape}")
        out = np.empty(X.shape[0], np.float64)
        _predict(X, self.feature, self.threshold, self.left, self.right, self.value, self.is_leaf,
                 self.missing_left, self.roots, self.baseline, out)
        return out

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-input contributions to the log-odds of rows ``X`` (Saabas: each split on a
        row's path credits its feature with the change of the expected value).

        Returns ``(contrib float64[n, n_inputs], bias float64[n])`` with
        ``baseline + bias + contrib.sum(1) == logit(X)`` (up to rounding); ``bias`` is
        the sum of the trees' root values. Exact for the path taken, cheap (one walk),
        and what an alert's reasons use; not Shapley values.
        """
        X = np.ascontiguousarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must be [n, {self.n_inputs}], got {X.shape}")
        out = np.zeros(X.shape, np.float64)
        bias = np.empty(X.shape[0], np.float64)
        _contributions(X, self.feature, self.threshold, self.left, self.right, self.value, self.is_leaf,
                       self.missing_left, self.roots, out, bias)
        return out, bias

    def log_loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean log-loss of rows ``X`` against 0/1 labels ``y`` (computed from the logits,
        stable for any margin).

        >>> h = TreeHead(("a",), 0.0, feature=np.zeros(3), threshold=np.array([0.5, 0, 0]),
        ...              left=np.array([1, -1, -1]), right=np.array([2, -1, -1]),
        ...              value=np.array([0.0, -2.0, 2.0]), is_leaf=np.array([False, True, True]),
        ...              missing_left=np.zeros(3, bool), roots=np.array([0]))
        >>> round(h.log_loss(np.array([[0.0], [1.0]]), np.array([0, 1])), 4)
        0.1269
        """
        z = self.logit(X)
        y = np.asarray(y, np.float64)
        if y.shape != z.shape:
            raise ValueError(f"y must have {z.shape[0]} labels, got {y.shape}")
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (float64[n]) of rows ``X``."""
        with np.errstate(over="ignore"):  # exp(-z) overflows to inf for z < -709: p = 0, as it should
            return 1.0 / (1.0 + np.exp(-self.logit(X)))

    # -- persistence ------------------------------------------------------------

    def digest(self) -> str:
        """Hex digest of the inputs and every tree array (part of the model version)."""
        h = hashlib.blake2b(digest_size=6)
        h.update(json.dumps([list(self.inputs), self.baseline]).encode())
        for name in _ARRAYS:
            h.update(getattr(self, name).tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """``path/head.npz`` (the arrays) and ``path/head.json`` (inputs, digest, metrics)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "head.npz", **{name: getattr(self, name) for name in _ARRAYS})
        meta = {"format": FORMAT, "kind": "trees", "inputs": list(self.inputs), "baseline": self.baseline,
                "digest": self.digest(), "metrics": self.metrics}
        (out / "head.json").write_text(json.dumps(meta, indent=2, default=float))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TreeHead":
        """Read what :meth:`save` wrote (no pickle); raises ValueError if it is not that."""
        p = Path(path)
        try:
            meta = json.loads((p / "head.json").read_text())
            with np.load(p / "head.npz", allow_pickle=False) as z:
                arrays = {name: z[name] for name in _ARRAYS}
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{p}: not a tree head ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != FORMAT or meta.get("kind") != "trees":
            raise ValueError(f"{p}: unsupported head format {meta.get('format')!r} / kind {meta.get('kind')!r}")
        head = cls(inputs=tuple(meta["inputs"]), baseline=float(meta["baseline"]), metrics=meta.get("metrics") or {},
                   **arrays)
        if head.digest() != meta.get("digest"):
            raise ValueError(f"{p}: the trees do not match the recorded digest")
        return head
