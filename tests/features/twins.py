"""Plain-Python twins of the feature kernels, written from the spec, not from the kernels.

State is a dict of per-node records keyed by entity id. Where the kernels keep running
aggregates (decayed sums folded step by step, Welford moments, a circular ring), the
twins keep the raw history and recompute from it at every query: every contribution
with the time it was added, the full list of amounts, a ``deque`` of recent
interactions. The two agree up to rounding, which is what the differential tests check.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from riskgraph.features.catalogue import (AMOUNT_MAX, FAN_WINDOW_S, FEATURE_NAMES, GOODNESS_SCALE, NEVER_LOG_S,
                                         Z_MIN_HISTORY, Z_STD_FLOOR)
from riskgraph.features.layout import HALF_LIVES, IN, OUT, RING

DAY = 86400.0


def slog(a: float) -> float:
    """sign(a) * log1p(|a|)."""
    return math.copysign(math.log1p(abs(a)), a)


@dataclass
class Node:
    clock: float | None = None  # time the node's decayed view is at: max event time seen
    sent: list[tuple[float, float]] = field(default_factory=list)  # (time added, amount or nan)
    received: list[tuple[float, float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # every event time involving the node
    sent_times: list[float] = field(default_factory=list)
    received_times: list[float] = field(default_factory=list)
    sent_logs: list[float] = field(default_factory=list)  # slog of every amount sent
    ring: deque = field(default_factory=lambda: deque(maxlen=RING))  # (nbr, ts, amount, dir)
    risk_clock: float | None = None
    risks: list[tuple[float, float]] = field(default_factory=list)  # (time added, score)
    # entity state, kept as raw history
    amounts_in: list[float] = field(default_factory=list)  # every amount received
    amounts_out: list[float] = field(default_factory=list)
    rec_out: int = 0
    rec_in: int = 0
    gaps: list[float] = field(default_factory=list)  # log1p of every inter-event gap
    rated: list[tuple[float, float]] = field(default_factory=list)  # (sender fairness, r) received
    errors: list[float] = field(default_factory=list)  # |r - receiver goodness| / 2 of each amount sent
    nbr: list[tuple[float, float]] = field(default_factory=list)  # counterparty (goodness, log activity)

    def goodness(self) -> float:
        return sum(w * r for w, r in self.rated) / (sum(w for w, _ in self.rated) + 1.0)

    def fairness(self) -> float:
        return 1.0 - sum(self.errors) / (len(self.errors) + 1.0)

    def nbr_mean(self, k: int) -> float:
        """The moving average the kernels keep: weight 1 / min(i + 1, RING) for the i-th value."""
        m = 0.0
        for i, v in enumerate(self.nbr):
            m += (v[k] - m) / min(i + 1, RING)
        return m

    def view_time(self, t: float) -> float:
        return t if self.clock is None else max(self.clock, t)

    def decayed(self, items: list[tuple[float, float]], at: float, h: float, amounts: bool) -> float:
        total = 0.0
        for added, a in items:
            if amounts and math.isnan(a):
                continue
            total += (a if amounts else 1.0) * 2.0 ** (-(at - added) / h)
        return total


def twin_features(nodes: dict[int, Node], src: int, dst: int, t: float, amount: float) -> list[float]:
    """Feature row of one event from the twin state, then the event applied to that state."""
    if math.isinf(amount) or abs(amount) > AMOUNT_MAX:
        raise ValueError("twin: amount out of range")
    s = nodes.setdefault(src, Node())
    d = nodes.setdefault(dst, Node())
    ts_, td = s.view_time(t), d.view_time(t)
    f: dict[str, float] = {}
    for tag, h in zip(("1m", "1h", "1d"), HALF_LIVES):
        f[f"src_out_cnt_{tag}"] = s.decayed(s.sent, ts_, h, False)
        f[f"dst_in_cnt_{tag}"] = d.decayed(d.received, td, h, False)
        f[f"src_out_amt_{tag}"] = s.decayed(s.sent, ts_, h, True)
        f[f"dst_in_amt_{tag}"] = d.decayed(d.received, td, h, True)
    f["src_log_since_out"] = math.log1p(max(0.0, t - max(s.sent_times))) if s.sent_times else NEVER_LOG_S
    f["dst_log_since_in"] = math.log1p(max(0.0, t - max(d.received_times))) if d.received_times else NEVER_LOG_S
    missing = math.isnan(amount)
    z = 0.0
    if not missing and len(s.sent_logs) >= Z_MIN_HISTORY:
        std = max(math.sqrt(statistics.variance(s.sent_logs)), Z_STD_FLOOR)
        z = (slog(amount) - statistics.fmean(s.sent_logs)) / std
    f["src_amt_z"] = z
    f["log_amount"] = 0.0 if missing else slog(amount)
    f["has_amount"] = 0.0 if missing else 1.0
    f["new_counterparty"] = 0.0 if any(nbr == dst for nbr, _, _, _ in s.ring) else 1.0
    f["src_fan_out_1h"] = len({nbr for nbr, when, _, di in s.ring if di == OUT and t - when <= FAN_WINDOW_S})
    f["dst_fan_in_1h"] = len({nbr for nbr, when, _, di in d.ring if di == IN and t - when <= FAN_WINDOW_S})
    f["src_distinct_cp"] = len({nbr for nbr, _, _, _ in s.ring})
    f["src_burst"] = f["src_out_cnt_1m"] / (1.0 + f["src_out_cnt_1d"] * HALF_LIVES[0] / HALF_LIVES[2])
    f["src_log_age"] = math.log1p(max(0.0, t - min(s.times))) if s.times else 0.0
    f["dst_log_age"] = math.log1p(max(0.0, t - min(d.times))) if d.times else 0.0
    row = [float(f[name]) for name in FEATURE_NAMES]
    assert len(f) == len(FEATURE_NAMES)

    # the event updates both ends; for a self loop s is d, and both halves apply to it
    good_s, good_d, fair_s = s.goodness(), d.goodness(), s.fairness()
    deg_s, deg_d = math.log1p(len(s.sent) + len(s.received)), math.log1p(len(d.sent) + len(d.received))
    s.nbr.append((good_d, deg_d))
    d.nbr.append((good_s, deg_s))
    if not missing:
        r = min(max(amount / GOODNESS_SCALE, -1.0), 1.0)
        s.errors.append(abs(r - good_d) / 2.0)
        d.rated.append((fair_s, r))
    for node, other, di in ((s, dst, OUT), (d, src, IN)):
        back = IN if di == OUT else OUT
        if any(nbr == other and dd == back for nbr, _, _, dd in node.ring):
            if di == OUT:
                node.rec_out += 1
            else:
                node.rec_in += 1
        if node.times:
            node.gaps.append(math.log1p(max(0.0, t - max(node.times))))
        if not missing:
            (node.amounts_out if di == OUT else node.amounts_in).append(amount)
        if di == OUT:
            _apply_out(s, dst, t, ts_, amount, missing)
    _apply_in(d, src, t, amount)
    return row


def _apply_out(s: Node, dst: int, t: float, ts_: float, amount: float, missing: bool) -> None:
    s.clock = ts_
    s.sent.append((ts_, amount))
    s.times.append(t)
    s.sent_times.append(t)
    if not missing:
        s.sent_logs.append(slog(amount))
    s.ring.append((dst, t, amount, OUT))


def _apply_in(d: Node, src: int, t: float, amount: float) -> None:
    d.clock = d.view_time(t)
    d.received.append((d.clock, amount))
    d.times.append(t)
    d.received_times.append(t)
    d.ring.append((src, t, amount, IN))


def twin_batch(nodes: dict[int, Node], events: list[tuple[int, int, float, float]]) -> list[list[float]]:
    """Rows of ``events`` ((src, dst, ts, amount) tuples) applied one by one."""
    return [twin_features(nodes, *ev) for ev in events]


def twin_state(node: Node) -> dict[str, object]:
    """The twin's node as the values the kernels keep in ``acc`` and the ring, oldest first."""
    at = node.clock
    n_amt = len(node.sent_logs)
    return {
        "out_cnt": [node.decayed(node.sent, at, h, False) if at is not None else 0.0 for h in HALF_LIVES],
        "in_cnt": [node.decayed(node.received, at, h, False) if at is not None else 0.0 for h in HALF_LIVES],
        "out_amt": [node.decayed(node.sent, at, h, True) if at is not None else 0.0 for h in HALF_LIVES],
        "in_amt": [node.decayed(node.received, at, h, True) if at is not None else 0.0 for h in HALF_LIVES],
        "decay_ts": math.nan if at is None else at,
        "last_out": max(node.sent_times) if node.sent_times else math.nan,
        "last_in": max(node.received_times) if node.received_times else math.nan,
        "first_seen": min(node.times) if node.times else math.nan,
        "amt_n": float(n_amt),
        "amt_mean": statistics.fmean(node.sent_logs) if n_amt else 0.0,
        "amt_m2": statistics.variance(node.sent_logs) * (n_amt - 1) if n_amt > 1 else 0.0,
        "n_out": float(len(node.sent)),
        "n_in": float(len(node.received)),
        "ring_n": len(node.sent) + len(node.received),
        "ring": list(node.ring),
        "in_tot": math.fsum(node.amounts_in),
        "out_tot": math.fsum(node.amounts_out),
        "in_amt_n": float(len(node.amounts_in)),
        "in_neg_n": float(sum(a < 0 for a in node.amounts_in)),
        "in_neg_sum": math.fsum(a for a in node.amounts_in if a < 0),
        "out_neg_n": float(sum(a < 0 for a in node.amounts_out)),
        "out_neg_sum": math.fsum(a for a in node.amounts_out if a < 0),
        "rec_out": float(node.rec_out),
        "rec_in": float(node.rec_in),
        "gap_n": float(len(node.gaps)),
        "gap_mean": statistics.fmean(node.gaps) if node.gaps else 0.0,
        "gap_m2": statistics.variance(node.gaps) * (len(node.gaps) - 1) if len(node.gaps) > 1 else 0.0,
        "goodness": node.goodness(),
        "fairness": node.fairness(),
        "nbr_good": node.nbr_mean(0),
        "nbr_log_deg": node.nbr_mean(1),
    }


def twin_update_risk(nodes: dict[int, Node], src: int, dst: int, t: float, score: float) -> None:
    """Fold one event's score into both ends' risk history."""
    for x in (src, dst):
        node = nodes.setdefault(x, Node())
        node.risk_clock = t if node.risk_clock is None else max(node.risk_clock, t)
        node.risks.append((node.risk_clock, score))


def twin_risk(node: Node | None, now: float) -> float:
    """Decayed max of the node's scores at ``now`` (never before its risk clock)."""
    if node is None or node.risk_clock is None:
        return 0.0
    at = max(now, node.risk_clock)
    return max(score * 2.0 ** (-(at - added) / DAY) for added, score in node.risks)


def twin_to_unit(x: float, squash: str, s: float) -> float:
    """One raw value squashed as ``catalogue.SQUASHES`` describes."""
    if squash == "ratio":
        x = max(x, 0.0)
        return x / (x + s)
    if squash == "linear":
        return min(1.0, max(0.0, x / s))
    if squash == "signed":
        return 0.5 + 0.5 * x / (abs(x) + s)
    if squash == "signed_sqrt":
        u = math.copysign(math.sqrt(abs(x) / s), x)
        return 0.5 + 0.5 * u / (abs(u) + 1.0)
    if squash == "flag":
        return min(1.0, max(0.0, x))
    raise ValueError(squash)
