"""The scorer protocol every detector implements (River-style, batch-first).

A scorer maps feature rows to anomaly scores in [0, 1] (higher is riskier) and
learns from rows. Deciding what to alert on is *not* a scorer's job: that is the
policy's (``models.policy``). Stream state (what was learned from the stream)
can be saved and restored as bytes, so the Engine can persist it in the same
RocksDB write batch as the node state and the input offsets.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    """Online detector over fixed-width float feature rows in [0, 1]."""

    #: Width of the feature rows this scorer expects.
    n_features: int

    def score_one(self, x: np.ndarray) -> float:
        """Score one row (float64[n_features]) without learning from it."""
        ...

    def learn_one(self, x: np.ndarray) -> None:
        """Learn from one row."""
        ...

    def score_many(self, X: np.ndarray) -> np.ndarray:
        """Scores of each row of X (float64[n, n_features]) without learning."""
        ...

    def learn_many(self, X: np.ndarray) -> None:
        """Learn from each row of X in order."""
        ...

    def score_learn_many(self, X: np.ndarray) -> np.ndarray:
        """Score each row then learn from it, row by row (prequential), in one pass.

        Equal to ``[score_one(x); learn_one(x) for x in X]``, but fast.
        """
        ...

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature share (float64[n_features], sums to 1 or all 0) of why ``x`` scored high.

        A scorer whose scores depend on state that moves within a batch may also offer
        ``score_learn_many_traced(X) -> (scores, refs)`` and ``contributions(x, reference)``
        (as ``models.hst.HalfSpaceTrees`` does), so that an alert is explained against
        what it was scored with; ``models.scoring.ScoringModel`` uses them when present
        and only the methods above otherwise.
        """
        ...

    def reset_state(self) -> None:
        """Forget what was learned from the stream (keep the configuration and structure)."""
        ...

    def state_bytes(self) -> bytes:
        """Serialise the stream state."""
        ...

    def load_state_bytes(self, data: bytes) -> None:
        """Restore the stream state written by :meth:`state_bytes`."""
        ...
