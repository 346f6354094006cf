"""The alert contract (topic ``alerts``) and its JSON codec.

>>> a = Alert(alert_id="ab", event_id="e1", ts=1.0, src="a", dst="b", score=0.93,
...           threshold=0.8, severity="high", model_version="hst-1", reasons=[], latency_ms=1.5)
>>> decode_alert(encode_alert(a)) == a
True
"""

from __future__ import annotations

from typing import Any

import msgspec


class Alert(msgspec.Struct, frozen=True, omit_defaults=False):
    """A scored event the policy decided to raise (see ARCHITECTURE.md, "Alert")."""

    alert_id: str  # deterministic from (event_id, model_version): replays give the same id
    event_id: str
    ts: float  # event time
    src: str
    dst: str
    score: float  # 0..1, higher is riskier
    threshold: float
    severity: str  # low | medium | high | critical
    model_version: str
    reasons: list[dict[str, Any]]  # top features ({"feature", "value", "share"}) and neighbours
    latency_ms: float  # from the batch's arrival at the engine to the alert's creation
    kind: str | None = None
    amount: float | None = None


class Feedback(msgspec.Struct, frozen=True):
    """An analyst's label on an alert (topic ``feedback``)."""

    alert_id: str
    label: int  # 1: confirmed risky, 0: false positive
    score: float | None = None
    event_id: str | None = None
    analyst: str | None = None
    ts: float | None = None
    note: str | None = None


_enc = msgspec.json.Encoder()
_alert_dec = msgspec.json.Decoder(Alert)
_feedback_dec = msgspec.json.Decoder(Feedback)


def encode_alert(a: Alert) -> bytes:
    return _enc.encode(a)


def decode_alert(raw: bytes) -> Alert:
    return _alert_dec.decode(raw)


def encode_feedback(f: Feedback) -> bytes:
    return _enc.encode(f)


def decode_feedback(raw: bytes) -> Feedback:
    return _feedback_dec.decode(raw)
