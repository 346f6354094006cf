"""The alert policy: what to raise, given scores. Scorers score; this decides.

An :class:`AlertPolicy` is a frozen :class:`PolicyConfig` plus a little mutable state
(the threshold in force and counters), saved with every micro-batch like a detector's.

* **Threshold**: calibrated offline on held-out scores, either to a target alert rate
  (:func:`calibrate_threshold`) or to a target precision on labelled scores
  (:func:`calibrate_threshold_precision`).
* **Dedupe**: an event alerts when its score is at or above the threshold and its source
  has not alerted within ``cooldown_s`` (event time, either side, so late events cannot
  slip through); otherwise it counts as suppressed. The last alert time lives in the node
  table (``Acc.LAST_ALERT_TS``), so it is persisted and restored with the node.
* **Severity**: from how much of the headroom above the threshold the score uses,
  ``z = (score - threshold) / (1 - threshold)``: ``low`` below the first cut, ``medium``,
  ``high``, ``critical`` from the last (defaults 0.25 / 0.5 / 0.75). Relative headroom,
  not an absolute margin, because the detectors' scores crowd near 1 at different
  places: a threshold of 0.95 leaves 0.05 to spread the four levels over.
* **Online adaptation** (off unless ``target_alert_rate`` is set): after each event,
  ``threshold += adapt_step * (above - target_alert_rate)`` where ``above`` is 1 when the
  score reached the threshold. This is the Robbins-Monro quantile tracker: it settles
  where the above-threshold rate equals the target. It tracks the rate *before* dedupe
  (the score quantile, what calibration sets), since dedupe depends on traffic per
  source, which the threshold does not control. Per event rather than per batch, so
  the alerts do not depend on how the stream was cut into micro-batches.
* **Analyst feedback** (:meth:`AlertPolicy.apply_feedback`): a false positive (label 0,
  score still at or above the threshold) raises the threshold by ``feedback_step``; a
  confirmed miss (label 1, score below the threshold) lowers it by ``feedback_step``.
  Labels the current threshold already agrees with change nothing, so a late burst of
  feedback on old alerts cannot push the threshold past the scores it is about.

Adaptation keeps the threshold within ``threshold +- max_shift`` of the calibrated value
(and within [0, 1]): a slow, bounded drift, never a runaway. Feedback is bounded more
tightly (:attr:`PolicyConfig.feedback_bounds`): also within ``feedback_max_factor`` of
the calibrated threshold's distance to 0 below it and to 1 above it. An absolute shift
alone lets a low threshold (0.039, say, for a TGN model) be driven to 0, where everything
alerts; a relative one never reaches 0 or 1 (factor 0.5: 0.039 stays in [0.0195, 0.139],
0.878 in [0.778, 0.939]).

>>> import numpy as np
>>> p = AlertPolicy(threshold=0.8, cooldown_s=60.0)
>>> last = np.full(2, np.nan)  # the node table's LAST_ALERT_TS column for two sources
>>> d = p.decide(np.array([0.88, 0.95, 0.5, 0.99]), np.array([0.0, 10.0, 20.0, 100.0]),
...              np.array([0, 0, 1, 0]), last)
>>> d.idx.tolist(), d.severity, d.suppressed, last.tolist()
([0, 3], ['medium', 'critical'], 1, [100.0, nan])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numba import njit

from riskgraph.models.alert_id import alert_id
from riskgraph.models.hst import StateMismatchError

__all__ = [
    "SEVERITIES", "PolicyConfig", "Decision", "AlertPolicy", "alert_id",
    "calibrate_threshold", "calibrate_threshold_precision", "StateMismatchError",
]

#: Severity levels, from the least to the most urgent.
SEVERITIES: tuple[str, str, str, str] = ("low", "medium", "high", "critical")

_MAGIC = b"RPOL"
_FORMAT = 1
#: Configuration fields added after format 1 (with their defaults then implied): left out
#: of the configuration fingerprint while at that default, so that states written before
#: they existed still load under the same configuration.
_ADDED_FIELDS: dict[str, Any] = {"feedback_max_factor": 0.5}
# magic, format, config fingerprint, threshold, then the counters of AlertPolicy.counters
_STATE = struct.Struct("<4sB8sd6q")
_COUNTERS = ("events", "above", "alerts", "suppressed", "false_positives", "misses")


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's fixed configuration (see the module docstring for each mechanism)."""

    threshold: float = 0.8  # calibrated threshold; alert when score >= threshold
    cooldown_s: float = 300.0  # a source alerts at most once per cooldown (event time); 0: no dedupe
    severity_cuts: tuple[float, float, float] = (0.25, 0.5, 0.75)  # on z, see SEVERITIES
    max_shift: float = 0.1  # adaptation and feedback stay within threshold +- max_shift
    target_alert_rate: float | None = None  # None: no online adaptation
    adapt_step: float = 1e-4  # threshold change per event and unit of rate error
    feedback_step: float = 0.005  # threshold change per false positive / confirmed miss
    # feedback also stays within this fraction of the calibrated threshold's distance to 0 / to 1
    feedback_max_factor: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity_cuts", tuple(float(c) for c in self.severity_cuts))
        checks = (
            ("threshold", 0.0 <= self.threshold <= 1.0, "in [0, 1]"),
            ("cooldown_s", 0.0 <= self.cooldown_s < math.inf, "finite and >= 0"),
            ("max_shift", 0.0 <= self.max_shift <= 1.0, "in [0, 1]"),
            ("adapt_step", 0.0 <= self.adapt_step < math.inf, "finite and >= 0"),
            ("feedback_step", 0.0 <= self.feedback_step < math.inf, "finite and >= 0"),
            ("feedback_max_factor", 0.0 <= self.feedback_max_factor < 1.0, "in [0, 1)"),
            ("target_alert_rate", self.target_alert_rate is None or 0.0 < self.target_alert_rate < 1.0,
             "None or in (0, 1)"),
        )
        for name, ok, what in checks:
            if not ok:
                raise ValueError(f"PolicyConfig.{name} must be {what}, got {getattr(self, name)!r}")
        c = self.severity_cuts
        if len(c) != 3 or not 0.0 < c[0] < c[1] < c[2] < 1.0:
            raise ValueError(f"PolicyConfig.severity_cuts must be 3 increasing values in (0, 1), got {c}")

    @property
    def bounds(self) -> tuple[float, float]:
        """The range the threshold may drift in."""
        return max(0.0, self.threshold - self.max_shift), min(1.0, self.threshold + self.max_shift)

    @property
    def feedback_bounds(self) -> tuple[float, float]:
        """The range feedback may move the threshold in: :attr:`bounds`, and within
        ``feedback_max_factor`` of the calibrated threshold's distance to 0 and to 1.

        >>> PolicyConfig(threshold=0.04).feedback_bounds
        (0.02, 0.14)
        """
        t, f = self.threshold, self.feedback_max_factor
        lo, hi = self.bounds
        return max(lo, t - f * t), min(hi, t + f * (1.0 - t))


@dataclass(frozen=True)
class Decision:
    """Alerted events of a batch, in event order."""

    idx: np.ndarray  # int64 indexes of the alerted events in the batch
    severity: list[str]  # one of SEVERITIES per alert
    threshold: np.ndarray  # float64, the threshold in force at each alerted event
    suppressed: int  # events at or above the threshold withheld by dedupe


@njit(cache=True)
def _decide(scores, ts, src_slot, last_alert_ts, thr_state, lo, hi, cooldown, adapt, target, step,
            out_idx, out_thr, counts):
    thr = thr_state[0]
    n_alert = 0
    n_supp = 0
    n_above = 0
    for i in range(scores.shape[0]):
        hit = scores[i] >= thr
        if hit:
            n_above += 1
            slot = src_slot[i]
            last = last_alert_ts[slot]
            if cooldown > 0.0 and not np.isnan(last) and abs(ts[i] - last) < cooldown:
                n_supp += 1
            else:
                # keep the latest alert time: a late event must not move it backwards
                if np.isnan(last) or ts[i] > last:
                    last_alert_ts[slot] = ts[i]
                out_idx[n_alert] = i
                out_thr[n_alert] = thr
                n_alert += 1
        if adapt:
            thr += step * ((1.0 if hit else 0.0) - target)
            thr = min(max(thr, lo), hi)
    thr_state[0] = thr
    counts[0] = n_alert
    counts[1] = n_supp
    counts[2] = n_above


class AlertPolicy:
    """Threshold, dedupe, severity, adaptation and reasons (see the module docstring).

    ``AlertPolicy(config, **overrides)`` or ``AlertPolicy(threshold=0.9, cooldown_s=60)``.
    """

    @staticmethod
    def calibrate_threshold(scores: np.ndarray, target_alert_rate: float) -> float:
        """See the module function :func:`calibrate_threshold`."""
        return calibrate_threshold(scores, target_alert_rate)

    @staticmethod
    def calibrate_threshold_precision(scores: np.ndarray, labels: np.ndarray, target_precision: float) -> float:
        """See the module function :func:`calibrate_threshold_precision`."""
        return calibrate_threshold_precision(scores, labels, target_precision)

    def __init__(self, config: PolicyConfig | None = None, /, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or PolicyConfig(), **overrides)
        fp = {k: v for k, v in self.to_dict().items() if k not in _ADDED_FIELDS or v != _ADDED_FIELDS[k]}
        self._fingerprint = hashlib.blake2b(json.dumps(fp, sort_keys=True).encode(), digest_size=8).digest()
        self._thr = np.zeros(1, np.float64)
        self._counts = np.zeros(3, np.int64)
        self.reset_state()

    # -- state --------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        """The threshold in force (the calibrated one, moved by adaptation and feedback)."""
        return float(self._thr[0])

    @property
    def counters(self) -> dict[str, int]:
        """Events decided, above threshold, alerted, suppressed; false positives and misses fed back."""
        return dict(zip(_COUNTERS, self._ctr))

    def reset_state(self) -> None:
        """Back to the calibrated threshold, counters at zero."""
        self._thr[0] = self.config.threshold
        self._ctr = [0] * len(_COUNTERS)

    def state_bytes(self) -> bytes:
        return _STATE.pack(_MAGIC, _FORMAT, self._fingerprint, self.threshold, *self._ctr)

    def load_state_bytes(self, data: bytes) -> None:
        """Restore what :meth:`state_bytes` wrote; :class:`StateMismatchError` if it does not fit."""
        if len(data) != _STATE.size:
            raise StateMismatchError(f"policy state must be {_STATE.size} bytes, got {len(data)}")
        magic, fmt, fp, thr, *ctr = _STATE.unpack(bytes(data))
        if magic != _MAGIC or fmt != _FORMAT:
            raise StateMismatchError(f"not a policy state of format {_FORMAT} (magic {magic!r}, format {fmt})")
        if fp != self._fingerprint:
            raise StateMismatchError(f"policy state was written under another configuration (this one: {self.to_dict()})")
        lo, hi = self.config.bounds
        if not lo <= thr <= hi or min(ctr) < 0:
            raise StateMismatchError(f"inconsistent policy state: threshold {thr} outside [{lo}, {hi}] or negative counters")
        self._thr[0] = thr
        self._ctr = list(ctr)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict (the mutable state is in :meth:`state_bytes`)."""
        d = dataclasses.asdict(self.config)
        d["severity_cuts"] = list(self.config.severity_cuts)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AlertPolicy":
        known = {f.name for f in dataclasses.fields(PolicyConfig)}
        if not set(data) <= known:
            raise ValueError(f"unknown AlertPolicy keys: {sorted(set(data) - known)}")
        return cls(PolicyConfig(**data))

    # -- deciding -----------------------------------------------------------------

    def decide(self, scores: np.ndarray, ts: np.ndarray, src_slot: np.ndarray,
               last_alert_ts: np.ndarray) -> Decision:
        """Alerts of one batch, in order; updates ``last_alert_ts[src_slot]`` in place.

        ``last_alert_ts`` is the node table's column ``t.acc[:, Acc.LAST_ALERT_TS]`` (a
        strided view: it is written through, never copied); NaN means never alerted.
        """
        scores = _vector("scores", scores, -1)
        n = scores.shape[0]
        ts = _vector("ts", ts, n)
        src = np.asarray(src_slot)
        if src.ndim != 1 or src.shape[0] != n or src.dtype.kind not in "iu":
            raise ValueError(f"src_slot must be a 1-D integer array of length {n}, got {src.dtype} {src.shape}")
        src = src.astype(np.int64, copy=False)
        if (not isinstance(last_alert_ts, np.ndarray) or last_alert_ts.ndim != 1
                or last_alert_ts.dtype != np.float64 or not last_alert_ts.flags.writeable):
            raise ValueError("last_alert_ts must be a writeable 1-D float64 array (the node table column)")
        if n and (src.min() < 0 or src.max() >= last_alert_ts.shape[0]):
            raise ValueError(f"src_slot out of range [0, {last_alert_ts.shape[0]})")
        cfg = self.config
        lo, hi = cfg.bounds
        adapt = cfg.target_alert_rate is not None
        out_idx = np.empty(n, np.int64)
        out_thr = np.empty(n, np.float64)
        _decide(scores, ts, src, last_alert_ts, self._thr, lo, hi, cfg.cooldown_s, adapt,
                cfg.target_alert_rate or 0.0, cfg.adapt_step, out_idx, out_thr, self._counts)
        k, supp, above = (int(v) for v in self._counts)
        idx, thr = out_idx[:k].copy(), out_thr[:k].copy()
        for j, v in enumerate((n, above, k, supp)):
            self._ctr[j] += v
        return Decision(idx=idx, severity=self.severity(scores[idx], thr), threshold=thr, suppressed=supp)

    def severity(self, scores: np.ndarray, thresholds: np.ndarray | float) -> list[str]:
        """Severity of each score above its threshold (see the module docstring).

        >>> AlertPolicy().severity(np.array([0.8, 0.86, 0.91, 0.96, 1.0]), 0.8)
        ['low', 'medium', 'high', 'critical', 'critical']
        """
        thr = np.broadcast_to(np.asarray(thresholds, np.float64), np.shape(scores))
        z = (np.asarray(scores, np.float64) - thr) / np.maximum(1.0 - thr, 1e-12)
        level = np.searchsorted(np.asarray(self.config.severity_cuts), z, side="right")
        return [SEVERITIES[i] for i in level.tolist()]

    def apply_feedback(self, score: float, label: int) -> float:
        """Take an analyst's label on a scored event; return the threshold now in force.

        The threshold stays within :attr:`PolicyConfig.feedback_bounds`; one that
        adaptation took outside them is never pushed further out by feedback (nor pulled
        in past the step).

        >>> p = AlertPolicy(threshold=0.8, feedback_step=0.01)
        >>> p.apply_feedback(0.9, 0), p.apply_feedback(0.7, 1), p.apply_feedback(0.95, 1)
        (0.81, 0.8, 0.8)
        """
        new = self.feedback_threshold(score, label)
        thr = self.threshold
        if label == 0 and score >= thr:
            self._ctr[4] += 1
        elif label == 1 and score < thr:
            self._ctr[5] += 1
        self._thr[0] = new
        return self.threshold

    def feedback_threshold(self, score: float, label: int) -> float:
        """The threshold :meth:`apply_feedback` would leave (nothing changes here): lets a
        caller tell a label that moves the threshold from one that does not.

        >>> p = AlertPolicy(threshold=0.8, feedback_step=0.01)
        >>> p.feedback_threshold(0.9, 0), p.feedback_threshold(0.5, 0), p.threshold
        (0.81, 0.8, 0.8)
        """
        if isinstance(label, bool):
            label = int(label)
        if label not in (0, 1) or not isinstance(label, (int, np.integer)):
            raise ValueError(f"label must be 0 or 1, got {label!r}")
        if not math.isfinite(score):
            raise ValueError(f"score must be finite, got {score!r}")
        lo, hi = self.config.feedback_bounds
        thr = self.threshold
        step = self.config.feedback_step
        if label == 0 and score >= thr:
            return max(thr, min(thr + step, hi))  # up, never past hi; never down
        if label == 1 and score < thr:
            return min(thr, max(thr - step, lo))  # down, never past lo; never up
        return thr

    # -- explaining ---------------------------------------------------------------

    @staticmethod
    def reasons(contributions: np.ndarray, names: Sequence[str], values: np.ndarray,
                k: int = 3) -> list[dict[str, Any]]:
        """The ``k`` largest positive contributions, largest first (ties: catalogue order).

        ``value`` is the raw feature value (None when not finite, to stay valid JSON).

        >>> AlertPolicy.reasons(np.array([0.1, 0.0, 0.6, 0.3]), ["a", "b", "c", "d"],
        ...                     np.array([1.0, 2.0, 3.5, np.nan]), k=3)
        [{'feature': 'c', 'value': 3.5, 'share': 0.6}, {'feature': 'd', 'value': None, 'share': 0.3}, {'feature': 'a', 'value': 1.0, 'share': 0.1}]
        """
        c = np.asarray(contributions, np.float64)
        v = np.asarray(values, np.float64)
        if c.ndim != 1 or v.shape != c.shape or len(names) != c.shape[0]:
            raise ValueError(f"contributions {c.shape}, names ({len(names)},) and values {v.shape} must align")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if not np.isfinite(c).all():
            raise ValueError("contributions must be finite")
        order = np.argsort(-c, kind="stable")[:k]
        return [
            {"feature": str(names[i]), "value": float(v[i]) if math.isfinite(v[i]) else None, "share": float(c[i])}
            for i in order.tolist() if c[i] > 0.0
        ]


def _vector(name: str, a: Any, n: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or (n >= 0 and a.shape[0] != n) or a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a 1-D real array of length {n}, got {a.dtype} {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values at {np.flatnonzero(~np.isfinite(a))[:5].tolist()}")
    return a


# -- calibration on held-out scores --------------------------------------------------


def calibrate_threshold(scores: np.ndarray, target_alert_rate: float) -> float:
    """The lowest threshold at which at most ``target_alert_rate`` of ``scores`` alert.

    It is one of the scores (or just above the largest, when even one alert is too
    many), so ties cannot push the held-out rate past the target.

    >>> calibrate_threshold(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]), 0.2)
    0.9
    >>> calibrate_threshold(np.array([0.1, 0.5, 0.5, 0.5]), 0.5)  # 0.5 would alert 3 of 4
    0.5000000000000001
    """
    s = np.sort(_vector("scores", scores, -1))
    if s.size == 0:
        raise ValueError("cannot calibrate on no scores")
    if not 0.0 < target_alert_rate <= 1.0:
        raise ValueError(f"target_alert_rate must be in (0, 1], got {target_alert_rate!r}")
    n = s.size
    k = int(math.floor(target_alert_rate * n + 1e-9))  # alerts allowed
    if k >= n:
        return float(s[0])
    if k == 0:
        return float(np.nextafter(s[-1], np.inf))
    t = s[n - k]
    if n - np.searchsorted(s, t, side="left") > k:  # ties at t: step just above them
        t = np.nextafter(t, np.inf)
    return float(t)


def calibrate_threshold_precision(scores: np.ndarray, labels: np.ndarray, target_precision: float) -> float:
    """The lowest threshold (one of the scores) whose alerts reach ``target_precision``.

    Lowest, because it catches the most positives among those that are precise enough.
    Raises ValueError when no threshold reaches the target on these scores.

    >>> calibrate_threshold_precision(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 1, 0, 1, 0]), 0.75)
    0.6
    """
    s = _vector("scores", scores, -1)
    y = np.asarray(labels)
    if y.shape != s.shape or y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0/1 values aligned with scores {s.shape}, got {y.dtype} {y.shape}")
    if s.size == 0:
        raise ValueError("cannot calibrate on no scores")
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision!r}")
    order = np.argsort(-s, kind="stable")
    s_desc, tp = s[order], np.cumsum(y[order].astype(np.float64))
    # only the last position of each run of equal scores is a threshold one can set
    ends = np.flatnonzero(np.append(s_desc[1:] != s_desc[:-1], True))
    precision = tp[ends] / (ends + 1)
    ok = np.flatnonzero(precision >= target_precision - 1e-12)
    if ok.size == 0:
        best = int(np.argmax(precision))
        raise ValueError(f"no threshold reaches precision {target_precision}: the best is "
                         f"{precision[best]:.4f} at threshold {s_desc[ends[best]]}")
    return float(s_desc[ends[ok[-1]]])
