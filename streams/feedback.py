"""Analyst feedback in: validate a ``feedback`` record, apply it to the alert policy, keep it.

The worker's feedback agent hands every record of the ``feedback`` topic to
:meth:`FeedbackIntake.handle`. A record that cannot be read becomes a dead letter with
the reason; a readable one may move the policy's threshold and is appended to
``<state_dir>/feedback.jsonl`` for the next training run.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgspec

from streams.alerts import Feedback, decode_feedback
from streams.engine import Engine
from streams.events import DeadLetter
from streams.metrics import EngineMetrics

SendDead = Callable[[bytes | None, DeadLetter], Awaitable[None]]


class FeedbackIntake:
    """Turns feedback records into policy updates and training data."""

    def __init__(self, settings: Any, engine: Engine, metrics: EngineMetrics, *, send_dead: SendDead) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.send_dead = send_dead
        self.path = Path(settings.state_dir) / "feedback.jsonl"
        self._recent: OrderedDict[str, float] = OrderedDict()  # alert_id -> score

    def remember(self, alert_id: str, score: float) -> None:
        """Note an alert this worker sent, so that feedback without a score can use its score."""
        self._recent[alert_id] = score
        if len(self._recent) > 100_000:
            self._recent.popitem(last=False)

    async def handle(self, raw: bytes | None, msg: Any) -> None:
        """Process one record of the feedback topic (``msg``: its Kafka message)."""
        try:
            if raw is None:
                raise ValueError("record is empty (null value)")
            fb: Feedback = decode_feedback(raw)
            if fb.label not in (0, 1):
                raise ValueError(f"label must be 0 or 1, got {fb.label}")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            not_json = isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError)
            cat = "malformed_json" if raw is None or not_json else "invalid_value"
            d = DeadLetter(raw=bytes(raw or b""), reason=f"bad feedback: {exc}", category=cat,
                           topic=msg.topic, partition=msg.partition, offset=msg.offset,
                           received_at=time.time())
            await self.send_dead(msg.key, d)
            self.metrics.dead_letters.labels(category=cat).inc()
            return
        score = fb.score if fb.score is not None else self._recent.get(fb.alert_id)
        if score is not None:
            self.engine.policy.apply_feedback(score, fb.label)
            self.metrics.threshold.set(self.engine.policy.threshold)
        # kept for the next training run, whether or not it moved the threshold
        with open(self.path, "ab") as f:
            f.write(json.dumps({**msgspec.to_builtins(fb), "score": score, "received_at": time.time()}).encode()
                    + b"\n")
        self.metrics.feedback.labels(label=str(fb.label)).inc()
