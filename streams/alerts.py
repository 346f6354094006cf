"""The alert contract (topic ``alerts``) and its JSON codec.

>>> a = Alert(alert_id="ab", event_id="e1", ts=1.0, src="a", dst="b", score=0.93,
...           threshold=0.8, severity="high", model_version="hst-1", reasons=[], latency_ms=1.5)
>>> decode_alert(encode_alert(a)) == a
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated, Any

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


_Text = Annotated[str, msgspec.Meta(max_length=256)]


class Feedback(msgspec.Struct, frozen=True):
    """An analyst's label on an alert (topic ``feedback``).

    ``score`` is what the sender believes the alert scored: kept in the training log as
    ``sent_score``, never used to move the threshold (the worker uses the score it
    recorded when it raised the alert). ``sig``: see :func:`feedback_signature`.
    """

    alert_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    label: int  # 1: confirmed risky, 0: false positive
    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    event_id: _Text | None = None
    analyst: _Text | None = None
    ts: Annotated[float, msgspec.Meta(ge=0.0, le=1e11)] | None = None  # when the label was given (Unix s)
    note: str | None = None  # bounded in bytes by the worker (``feedback_note_max_bytes``)
    sig: Annotated[str, msgspec.Meta(max_length=128)] | None = None  # hex HMAC-SHA256, when signed


_SIG_DOMAIN = b"riskgraph.feedback.v1\n"


def feedback_signing_bytes(fb: Feedback) -> bytes:
    """The canonical content a feedback signature covers: every field but ``sig``, as
    compact JSON with sorted keys, ASCII escapes and ``null`` for absent fields (so a
    missing field and an explicit null sign the same), after a domain prefix.

    >>> feedback_signing_bytes(Feedback(alert_id="ab", label=0))
    b'riskgraph.feedback.v1\\n{"alert_id":"ab","analyst":null,"event_id":null,"label":0,"note":null,"score":null,"ts":null}'
    """
    content = {f: getattr(fb, f) for f in fb.__struct_fields__ if f != "sig"}
    return _SIG_DOMAIN + json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                                    allow_nan=False).encode()


def feedback_signature(fb: Feedback, secret: str) -> str:
    """Hex HMAC-SHA256 of :func:`feedback_signing_bytes` under ``secret`` (UTF-8)."""
    return hmac.new(secret.encode("utf-8"), feedback_signing_bytes(fb), hashlib.sha256).hexdigest()


def sign_feedback(fb: Feedback, secret: str) -> Feedback:
    """``fb`` with its ``sig`` set (``riskgraph feedback`` signs when ``RISKGRAPH_FEEDBACK_SECRET`` is set).

    >>> f = sign_feedback(Feedback(alert_id="ab", label=1), "k")
    >>> verify_feedback(f, "k"), verify_feedback(f, "other"), verify_feedback(msgspec.structs.replace(f, label=0), "k")
    (True, False, False)
    """
    return msgspec.structs.replace(fb, sig=feedback_signature(fb, secret))


def verify_feedback(fb: Feedback, secret: str) -> bool:
    """True when ``fb.sig`` is the signature of its content under ``secret`` (constant time)."""
    if not fb.sig:
        return False
    return hmac.compare_digest(fb.sig.lower().encode("ascii", "replace"), feedback_signature(fb, secret).encode())


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
