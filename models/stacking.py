"""How ``riskgraph train`` turns scored components into a shipped final score and threshold.

Training replays the whole event log through the Engine and records, per event, the
score components (``detector``, ``tgn_risk``, ``tgn_link``) and, with labels, the head's
inputs (:data:`~riskgraph.models.scoring.HEAD_INPUTS`). The log is split in time: the
first ``n_fit`` events are what the TGN trained on, the rest is held out. This module
decides, from those arrays alone, what the artifact ships:

- **the supervised head** (:func:`fit_head`): gradient-boosted trees fitted on the
  first ``n_fit`` events, used to score the held-out rest (out of sample, like the TGN's
  outputs there), then refitted with the same number of trees on every event; the refit
  ships only if :func:`choose_refit` accepts it;
- **the stack** (:func:`fit_stack`), fitted on the held-out part only, where every
  component is out of sample:

  ======================  ===================  =====================================
  head fitted             held-out labels      final score
  ======================  ===================  =====================================
  yes                     both classes         logistic stack of ``head``,
                                               ``tgn_risk``, ``tgn_link``, not
                                               class-balanced (a probability, as
                                               the head's is)
  yes                     one class only       ``head`` alone
  no                      both classes         class-balanced logistic stack of
                                               every component
  no                      none                 mean of ``detector`` and ``tgn_link``
                                               (the unsupervised scores)
  ======================  ===================  =====================================

- **the threshold**: the held-out final score's quantile at a target alert rate, or,
  when a target precision is asked for and the held-out part has labels, the lowest
  threshold that reaches it (``models.policy``).

>>> rng = np.random.default_rng(0)
>>> n, n_fit = 400, 300
>>> y = (rng.uniform(size=n) < 0.1).astype(np.int64)
>>> comps = {"detector": rng.uniform(size=n), "tgn_link": rng.uniform(size=n),
...          "tgn_risk": 0.05 + 0.5 * y + rng.uniform(0, 0.4, n)}
>>> stack = fit_stack(comps, y, n_fit, target_alert_rate=0.1)
>>> stack.combiner["kind"], stack.combiner["inputs"], stack.head is None
('logistic', ['detector', 'tgn_link', 'tgn_risk'], True)
>>> stack.final.shape, float((stack.final >= stack.threshold).mean()) <= 0.1
((100,), True)
>>> sorted(stack.metrics), stack.metrics["final"]["event_ap"] > 0.9
(['combiner', 'components', 'final', 'threshold'], True)
>>> unlabelled = fit_stack(comps, None, n_fit, target_alert_rate=0.05)
>>> unlabelled.combiner, sorted(unlabelled.metrics)
({'kind': 'mean', 'inputs': ['detector', 'tgn_link']}, ['combiner', 'threshold'])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from riskgraph.models.evaluation import event_metrics
from riskgraph.models.head import TreeHead
from riskgraph.models.policy import calibrate_threshold, calibrate_threshold_precision
from riskgraph.models.scoring import HEAD_INPUTS, combine, fit_combiner

log = logging.getLogger("riskgraph.models.stacking")

#: The supervised head's boosting settings (``models.head.TreeHead.fit``): small trees,
#: early stopping on a seeded 10 % of the fitting rows, one thread -- on a shared
#: machine OpenMP threads that wait for a busy core spin, which slows the fit.
#: L2 on leaf values keeps boosting from diverging on rare positives (see ``TreeHead.fit``).
HEAD_PARAMS: dict[str, Any] = {"max_iter": 300, "learning_rate": 0.1, "max_leaf_nodes": 15,
                               "l2_regularization": 1.0, "n_threads": 1}

#: A refit on every row is kept only if its log-loss on those rows is at most this
#: factor of the first fit's (which saw fewer of them and should do no better).
REFIT_TOLERANCE = 1.10

#: The components the stack weighs when a head was fitted; ``detector`` is not among
#: them: the head reads the same features the detector scores.
HEAD_STACK_INPUTS: tuple[str, ...] = ("head", "tgn_risk", "tgn_link")

#: The components whose mean is the final score without labels: the unsupervised ones.
UNLABELLED_INPUTS: tuple[str, ...] = ("detector", "tgn_link")


def _both_classes(y: np.ndarray) -> bool:
    return bool(0 < y.sum() < len(y))


def is_labelled(labels: np.ndarray) -> bool:
    """Whether ``labels`` (``-1`` where an event has none) can train on: every event has a
    label, and both classes occur.

    >>> is_labelled(np.array([0, 1, 0])), is_labelled(np.array([0, -1, 1])), is_labelled(np.zeros(3))
    (True, False, False)
    """
    y = np.asarray(labels)
    return bool((y >= 0).all() and _both_classes(y))


def can_fit_head(labels: np.ndarray | None, n_fit: int) -> bool:
    """Whether :func:`fit_head` can fit on events ``[0, n_fit)``: labelled, and both
    classes among them (the training job records the head's inputs only then).

    >>> y = np.array([0, 1, 0, 0, 0, 1])
    >>> can_fit_head(y, 4), can_fit_head(y, 1), can_fit_head(None, 4)
    (True, False, False)
    """
    return labels is not None and is_labelled(labels) and _both_classes(np.asarray(labels)[:n_fit])


def fit_head(X: np.ndarray, labels: np.ndarray, n_fit: int, seed: int = 0, *,
             inputs: Sequence[str] = HEAD_INPUTS,
             params: Mapping[str, Any] | None = None) -> tuple[TreeHead, dict[str, Any], np.ndarray]:
    """Fit the head on events ``[0, n_fit)``, score the held-out rest with it, refit on all.

    Parameters
    ----------
    X : ndarray of shape (n_events, len(inputs))
        The head's inputs of every event, in stream order.
    labels : ndarray of shape (n_events,)
        0/1 labels; both classes must occur in the first ``n_fit``.
    n_fit : int
        Events ``[0, n_fit)`` are fitted on; the rest is held out.
    seed : int
        Seed of the boosting (its early-stopping split).
    inputs : sequence of str
        Names of ``X``'s columns, kept in the head.
    params : mapping, optional
        ``TreeHead.fit`` settings; :data:`HEAD_PARAMS` when None.

    Returns
    -------
    head : TreeHead
        The head to ship: the refit on every event if :func:`choose_refit` accepts it,
        else the first fit.
    metrics : dict
        Trees, rows, the refit check, the settings and the seconds taken (also put
        into ``head.metrics``).
    held_out : ndarray of shape (n_events - n_fit,)
        The first fit's scores of the held-out events: what the stack is fitted on.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> X = rng.uniform(size=(500, 2)); y = (X[:, 0] + rng.normal(0, 0.1, 500) > 0.8).astype(np.int64)
    >>> head, metrics, held = fit_head(X, y, 400, inputs=("a", "b"))
    >>> held.shape, metrics["fit_rows"], metrics["refit_rows"], metrics["refit"]["kept"]
    ((100,), 400, 500, 'refit')
    """
    params = dict(HEAD_PARAMS if params is None else params)
    t0 = time.perf_counter()
    y = np.asarray(labels).astype(np.int64)
    first = TreeHead.fit(X[:n_fit], y[:n_fit], inputs, seed=seed, **params)
    held = first.predict(X[n_fit:])
    refit = TreeHead.fit(X, y, inputs, seed=seed, **{**params, "max_iter": first.n_trees, "early_stopping": False})
    head, check = choose_refit(first, refit, X, y)
    metrics = {"trees": head.n_trees, "fit_rows": int(n_fit), "refit_rows": int(len(y)), "refit": check,
               "params": params, "seconds": time.perf_counter() - t0}
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


@dataclass(frozen=True)
class Stack:
    """What :func:`fit_stack` decided: the parts of the artifact, and the held-out view."""

    head: TreeHead | None  #: the supervised head to ship, or None
    combiner: dict[str, Any]  #: how the final score combines the components (``models.scoring.combine``)
    threshold: float  #: the calibrated alert threshold of the final score
    components: dict[str, np.ndarray]  #: held-out component scores, ``head`` included when fitted
    final: np.ndarray  #: held-out final scores
    metrics: dict[str, Any]  #: the artifact's ``held_out`` block: threshold, combiner, and what could be measured


def fit_stack(components: Mapping[str, np.ndarray], labels: np.ndarray | None, n_fit: int, *,
              head_inputs: np.ndarray | None = None, seed: int = 0, target_alert_rate: float = 0.01,
              target_precision: float | None = None) -> Stack:
    """Fit the head (when given its inputs), the stack and the threshold, from the
    replayed components of every event.

    Parameters
    ----------
    components : mapping of str to ndarray of shape (n_events,)
        Every event's component scores from the replay, in stream order.
    labels : ndarray of shape (n_events,) or None
        0/1 labels (``-1`` where an event has none), or None: then, as whenever
        :func:`is_labelled` says no, the final score is the unlabelled fallback
        (the mean of :data:`UNLABELLED_INPUTS`).
    n_fit : int
        Events ``[0, n_fit)`` are what the TGN trained on; the stack and threshold are
        fitted on the rest only.
    head_inputs : ndarray of shape (n_events, len(HEAD_INPUTS)), optional
        The head's recorded inputs; a head is fitted only with them, and only where
        :func:`can_fit_head` holds.
    seed : int
        Seed of the head's boosting and of the logistic stack.
    target_alert_rate : float
        Share of held-out events the threshold lets alert.
    target_precision : float, optional
        When given and the held-out part has both classes: the threshold is the lowest
        that reaches this precision there (``target_alert_rate`` is then unused).

    Returns
    -------
    Stack
        See the module docstring for which combiner each case gets.

    Examples
    --------
    With a head the stack weighs ``head``, ``tgn_risk`` and ``tgn_link``:

    >>> rng = np.random.default_rng(2)
    >>> n, n_fit = 600, 450
    >>> y = (rng.uniform(size=n) < 0.1).astype(np.int64)
    >>> X = np.column_stack([y + rng.normal(0, 0.3, n), *rng.uniform(size=(len(HEAD_INPUTS) - 1, n))])
    >>> comps = {k: rng.uniform(0.01, 0.99, n) for k in ("detector", "tgn_risk", "tgn_link")}
    >>> stack = fit_stack(comps, y, n_fit, head_inputs=X, target_precision=0.9)
    >>> stack.combiner["inputs"], list(stack.components), stack.metrics["head"]["fit_rows"]
    (['head', 'tgn_risk', 'tgn_link'], ['detector', 'tgn_risk', 'tgn_link', 'head'], 450)
    >>> stack.metrics["final"]["event_ap"] > 0.9
    True
    """
    n = len(next(iter(components.values())))
    n_val = n - n_fit
    val = slice(n_fit, n)
    comps = {k: np.asarray(v)[val] for k, v in components.items()}
    labelled = labels is not None and is_labelled(labels)
    lab = np.asarray(labels) if labelled else None
    head = head_metrics = None
    if head_inputs is not None and can_fit_head(labels, n_fit):
        if head_inputs.shape != (n, len(HEAD_INPUTS)):
            raise ValueError(f"head inputs {head_inputs.shape} do not match {n} events of {len(HEAD_INPUTS)} inputs")
        head, head_metrics, comps["head"] = fit_head(head_inputs, lab, n_fit, seed)
    val_labelled = lab is not None and n_val > 0 and _both_classes(lab[val])
    if head is not None and val_labelled:
        # not class-balanced: the head is a calibrated probability already, and so stays the final score
        combiner = fit_combiner(comps, lab[val], seed=seed, inputs=HEAD_STACK_INPUTS, balanced=False)
    elif head is not None:  # no held-out positives to weigh the components with: the head alone
        combiner = {"kind": "logistic", "inputs": ["head"], "coef": [1.0], "intercept": 0.0}
    elif val_labelled:
        combiner = fit_combiner(comps, lab[val], seed=seed)
    else:
        combiner = {"kind": "mean", "inputs": list(UNLABELLED_INPUTS)}
    final = combine(comps, combiner)
    if val_labelled and target_precision is not None:
        thr = float(calibrate_threshold_precision(final, lab[val], target_precision))
    else:
        thr = float(calibrate_threshold(final, target_alert_rate))
    metrics: dict[str, Any] = {"threshold": thr, "combiner": combiner}
    if head_metrics is not None:
        metrics["head"] = head_metrics
    if val_labelled:
        metrics["final"] = event_metrics(final, lab[val], thr)
        metrics["components"] = {k: event_metrics(v, lab[val]) for k, v in comps.items()}
    return Stack(head=head, combiner=combiner, threshold=thr, components=comps, final=final, metrics=metrics)
