"""What the Engine scores with: the feature detector, optionally a TGN, and how they combine.

A ``ScoringModel`` is the in-memory form of a model artifact (``models.artifact``).
It owns the detector's stream state (saved with every commit by the Engine), names
its version (alerts carry it), and builds the alert policy with the artifact's
calibrated threshold.

Components, each in [0, 1] and reported separately by ``evaluate`` (ablation):
``detector`` (Half-Space Trees over the squashed features), and with a TGN
``tgn_risk`` (supervised event-risk decoder) and ``tgn_link`` (link surprise,
1 - P(interaction), self-supervised), and with a supervised head ``head``
(``models.head``: gradient-boosted trees over the squashed features and the graph
features of ``features.graph``, :data:`HEAD_INPUTS`). The final score is a
logistic stack of (some of) the components' logits, fitted on held-out events by
``riskgraph train`` (:func:`fit_combiner`); without a fitted stack it is the
detector's score, or the mean of the available components.

>>> import numpy as np
>>> m = ScoringModel.default(seed=7)
>>> s = m.score(np.full((3, m.n_features), 0.5), learn=True)
>>> s.scores.shape, sorted(s.components)
((3,), ['detector'])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from riskgraph.features.catalogue import FEATURE_NAMES, N_FEATURES
from riskgraph.features.graph import GRAPH_FEATURE_NAMES, amount_from_unit, graph_features
from riskgraph.models.hst import HalfSpaceTrees, References
from riskgraph.models.policy import AlertPolicy

from riskgraph.models.entity import EntityModel

if TYPE_CHECKING:  # torch stays out of the import path of detector-only models
    from riskgraph.models.head import TreeHead
    from riskgraph.models.tgn.runtime import TGNRuntime
    from riskgraph.state.batch import BatchRows

#: Policy of a model nobody calibrated yet: start at a threshold typical of Half-Space
#: Trees' scores and let the online quantile tracker settle it at a 1 % alert rate.
DEFAULT_POLICY: dict[str, Any] = {"threshold": 0.8, "target_alert_rate": 0.01}
_EPS = 1e-6
#: Columns of the supervised head's input rows (:meth:`ScoringModel.head_inputs`).
HEAD_INPUTS: tuple[str, ...] = (*FEATURE_NAMES, *GRAPH_FEATURE_NAMES)


@dataclass
class Scored:
    scores: np.ndarray  # float64[n], final combined score in [0, 1]
    components: dict[str, np.ndarray] = field(default_factory=dict)
    neighbours: np.ndarray | None = None  # int64[n, 2, top_k] most attended neighbour ids (-1: none)
    attention: np.ndarray | None = None  # float32[n, 2, top_k] their attention weights
    references: "References | None" = None  # the detector masses each row was scored against
    head_inputs: np.ndarray | None = None  # float64[n, len(HEAD_INPUTS)] what the supervised head read

    def reference(self, i: int) -> np.ndarray | None:
        """The detector's reference masses row ``i`` was scored against (None: the current ones)."""
        return None if self.references is None else self.references.for_row(i)


@dataclass(frozen=True)
class BatchContext:
    """What a graph model needs of the batch beyond its feature rows: the batch's rows in the
    store (``state.batch``: the table as it is now, and neighbour rows on demand) and its events'
    ends and times."""

    rows: "BatchRows"
    src_slot: np.ndarray
    dst_slot: np.ndarray
    ts: np.ndarray


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def combine(components: Mapping[str, np.ndarray], combiner: Mapping[str, Any] | None) -> np.ndarray:
    """Final score from the components: logistic stack when fitted, else detector or mean."""
    if combiner and combiner.get("kind") == "logistic":
        z = np.full(len(next(iter(components.values()))), float(combiner["intercept"]))
        for name, w in zip(combiner["inputs"], combiner["coef"]):
            z += float(w) * _logit(components[name])
        return 1.0 / (1.0 + np.exp(-z))
    if combiner and combiner.get("kind") == "mean":
        return np.mean(np.stack([components[n] for n in combiner["inputs"]]), axis=0)
    if "detector" in components and len(components) == 1:
        return components["detector"]
    return np.mean(np.stack(list(components.values())), axis=0)


def fit_combiner(components: Mapping[str, np.ndarray], labels: np.ndarray, seed: int = 0,
                 inputs: Sequence[str] | None = None, balanced: bool = True) -> dict[str, Any]:
    """Logistic regression of labels on the components' logits, over ``inputs`` when
    given (else every component); class-balanced unless ``balanced`` is False, in which
    case the final score estimates the probability that the event is risky."""
    from sklearn.linear_model import LogisticRegression

    names = sorted(components) if inputs is None else list(inputs)
    X = np.column_stack([_logit(components[n]) for n in names])
    lr = LogisticRegression(class_weight="balanced" if balanced else None, C=1.0, max_iter=1000,
                            random_state=seed).fit(X, labels)
    return {"kind": "logistic", "inputs": names, "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0])}


class ScoringModel:
    """Feature detector, optional TGN runtime, their combination, version and policy."""

    def __init__(
        self,
        detector: HalfSpaceTrees,
        *,
        tgn: "TGNRuntime | None" = None,
        head: "TreeHead | None" = None,
        combiner: dict[str, Any] | None = None,
        version: str | None = None,
        policy_config: dict[str, Any] | None = None,
        entity: EntityModel | None = None,
    ) -> None:
        if detector.n_features != N_FEATURES:
            raise ValueError(f"detector expects {detector.n_features} features, catalogue has {N_FEATURES}")
        if head is not None:
            if tuple(head.inputs) != HEAD_INPUTS:
                raise ValueError("the head was fitted on other inputs than this version computes")
            if tgn is None:  # the Engine hands the batch context (rings) to graph models only
                raise ValueError("a supervised head needs a TGN model: its graph features read the batch context")
        self.detector = detector
        self.tgn = tgn
        self.head = head
        #: Entity risk (``models.entity``): the trained entity head, or the evidence score.
        self.entity = entity if entity is not None else EntityModel()
        #: Training hook: when a list, :meth:`score` appends each batch's head input rows to it.
        self.recorder: list[np.ndarray] | None = None
        self.combiner = combiner
        self.policy_config = dict(policy_config or DEFAULT_POLICY)
        self.version = version or self._fingerprint()

    @classmethod
    def default(cls, seed: int = 0, **detector_kwargs: Any) -> "ScoringModel":
        """A fresh, unsupervised model: Half-Space Trees over the feature catalogue."""
        return cls(HalfSpaceTrees(n_features=N_FEATURES, seed=seed, **detector_kwargs))

    @property
    def n_features(self) -> int:
        return self.detector.n_features

    @property
    def mem_dim(self) -> int:
        """Width of the per-node model state this model keeps in the store (0: none)."""
        return 0 if self.tgn is None else int(self.tgn.model.row_width)

    @property
    def mem_cache_width(self) -> int | None:
        """Leading columns of the per-node state a store's memory cache needs to keep for
        this model (its TGN's memory, see ``StoreOptions.mem_cache_width``); None: no TGN."""
        return None if self.tgn is None else int(self.tgn.model.config.mem_dim)

    def _fingerprint(self) -> str:
        cfg = {"detector": self.detector.to_config(), "policy": self.policy_config, "combiner": self.combiner}
        if self.tgn is not None:
            from riskgraph.models.tgn.artifact import model_version

            cfg["tgn"] = model_version(self.tgn.model)
        if self.head is not None:
            cfg["head"] = self.head.digest()
        if self.entity.head is not None:  # the evidence score leaves the versions of untrained models as they were
            cfg["entity"] = self.entity.digest()
        text = json.dumps(cfg, sort_keys=True, default=str)
        prefix = "hst-" if self.tgn is None else "tgn+hst-"
        return prefix + hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

    def make_policy(self) -> AlertPolicy:
        return AlertPolicy.from_dict(self.policy_config)

    def head_inputs(self, unit: np.ndarray, ctx: BatchContext) -> np.ndarray:
        """The head's input rows (float64[n, len(HEAD_INPUTS)]): squashed features, then graph features."""
        g = graph_features(ctx.rows.table, ctx.src_slot, ctx.dst_slot, ctx.ts, amount_from_unit(unit))
        return np.concatenate([np.asarray(unit, np.float64), g], axis=1)

    def score(self, unit: np.ndarray, *, learn: bool = True, ctx: BatchContext | None = None) -> Scored:
        """Scores of each row of squashed features, learning from them when ``learn``.

        With a TGN, ``ctx`` is required: the runtime reads memory and neighbours through the
        batch's rows (``ctx.rows``, which loads neighbour rows on demand), scores, then writes
        the batch ends' new memory into their rows. The head's graph features read the same
        table's rings first.
        """
        refs = None
        traced = getattr(self.detector, "score_learn_many_traced", None)
        if learn and traced is not None:  # keep what each row was scored against: reasons then
            det, refs = traced(unit)       # do not depend on batch cuts (HalfSpaceTrees)
        elif learn:  # any other models.protocol.Scorer
            det = self.detector.score_learn_many(unit)
        else:
            det = self.detector.score_many(unit)
        comps = {"detector": det}
        nbrs = attn = None
        if self.head is not None or (self.recorder is not None and ctx is not None):
            if ctx is None:
                raise ValueError("a supervised head needs the batch context (its rows and slots)")
            x = self.head_inputs(unit, ctx)
            if self.recorder is not None:
                self.recorder.append(x)
        if self.tgn is not None:
            if ctx is None:
                raise ValueError("a TGN model needs the batch context (its rows and slots)")
            rows = ctx.rows
            # neighbours' memory: resident rows, else the store's compact cache (if it keeps one)
            lead_of = rows.lead_reader(*self.tgn.lead_columns)
            out = self.tgn.score_batch(rows.table, ctx.src_slot, ctx.dst_slot, ctx.ts, unit, rows.peek,
                                       lead_of=lead_of)
            self.tgn.update_batch(rows.table, out)
            comps["tgn_risk"] = out.risk
            comps["tgn_link"] = out.link_surprise
            nbrs, attn = out.top_ids, out.top_attn
        if self.head is not None:
            comps["head"] = self.head.predict(x)
        return Scored(scores=combine(comps, self.combiner), components=comps, neighbours=nbrs, attention=attn,
                      references=refs, head_inputs=x if self.head is not None else None)

    def contributions(self, x: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """Per-feature shares of the detector's score of ``x`` (see ``Scored.reference``)."""
        if reference is None:  # the protocol's one-argument form: any Scorer
            return self.detector.contributions(x)
        return self.detector.contributions(x, reference)

    def head_shares(self, x: np.ndarray) -> np.ndarray:
        """Shares (float64[len(HEAD_INPUTS)], summing to 1 over the positive ones) of the
        head's log-odds push of one input row ``x``: what made it call the event risky."""
        if self.head is None:
            raise ValueError("this model has no supervised head")
        c = self.head.contributions(np.asarray(x, np.float64)[None, :])[0][0]
        pos = c[c > 0].sum()
        return np.where(c > 0, c / pos, 0.0) if pos > 0 else np.zeros_like(c)

    def state_bytes(self) -> bytes:
        return self.detector.state_bytes()

    def load_state_bytes(self, data: bytes) -> None:
        self.detector.load_state_bytes(data)

    def reset_state(self) -> None:
        self.detector.reset_state()
