"""What the Engine scores with: the feature detector, optionally a TGN, and how they combine.

A ``ScoringModel`` is the in-memory form of a model artifact (``models.artifact``).
It owns the detectors' stream state (saved with every micro-batch by the Engine),
names its version (alerts carry it), and builds the alert policy with the
artifact's calibrated threshold.

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
from typing import Any

import numpy as np

from features.catalogue import N_FEATURES
from models.hst import HalfSpaceTrees
from models.policy import AlertPolicy

#: Policy of a model nobody calibrated yet: start at a threshold typical of Half-Space
#: Trees' scores and let the online quantile tracker settle it at a 1 % alert rate.
DEFAULT_POLICY: dict[str, Any] = {"threshold": 0.8, "target_alert_rate": 0.01}


@dataclass
class Scored:
    scores: np.ndarray  # float64[n], final combined score in [0, 1]
    components: dict[str, np.ndarray] = field(default_factory=dict)


class ScoringModel:
    """Feature detector (+ later TGN) with a version and a policy configuration."""

    def __init__(
        self,
        detector: HalfSpaceTrees,
        *,
        version: str | None = None,
        policy_config: dict[str, Any] | None = None,
    ) -> None:
        if detector.n_features != N_FEATURES:
            raise ValueError(f"detector expects {detector.n_features} features, catalogue has {N_FEATURES}")
        self.detector = detector
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
        return 0

    def _fingerprint(self) -> str:
        cfg = json.dumps({"detector": self.detector.to_config(), "policy": self.policy_config},
                         sort_keys=True, default=str)
        return "hst-" + hashlib.blake2b(cfg.encode(), digest_size=6).hexdigest()

    def make_policy(self) -> AlertPolicy:
        return AlertPolicy.from_dict(self.policy_config)

    def score(self, unit: np.ndarray, *, learn: bool = True) -> Scored:
        """Scores of each row of squashed features, learning from them when ``learn``."""
        det = self.detector.score_learn_many(unit) if learn else self.detector.score_many(unit)
        return Scored(scores=det, components={"detector": det})

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return self.detector.contributions(x)

    def state_bytes(self) -> bytes:
        return self.detector.state_bytes()

    def load_state_bytes(self, data: bytes) -> None:
        self.detector.load_state_bytes(data)

    def reset_state(self) -> None:
        self.detector.reset_state()
