"""Analyst feedback in: check a ``feedback`` record, maybe apply it to the alert policy, keep it.

The worker's feedback agent hands every record of the ``feedback`` topic to
:meth:`FeedbackIntake.handle`. Anyone who can write to the topic can send a record, so
nothing in it is trusted:

1. **Size**: a record over ``feedback_max_bytes`` (4 KiB) or with a note over
   ``feedback_note_max_bytes`` (1 KiB of UTF-8) is a dead letter ``oversized``; one that
   cannot be read (not JSON, a label other than 0/1, a score outside [0, 1], ...) is a
   dead letter ``malformed_json`` / ``invalid_value``.
2. **Signature** (when ``feedback_secret`` is set): ``sig`` must be the HMAC-SHA256 of
   the record's content (:func:`streams.alerts.feedback_signature`), else a dead letter
   ``bad_signature`` (reason ``bad signature: ...``). ``riskgraph feedback`` signs.
3. **Provenance**: the alert must be one this deployment raised, looked up in the
   engine's bounded record of recent alerts (``Engine.alert_record``: in the store,
   committed with the state). An unknown id is a dead letter ``unknown_alert``: it is
   forged, mistyped or older than the record, and in any case there is nothing to apply
   it to; the dead-letter topic (bounded by Kafka's retention, unlike the training log)
   is where an operator can look at it and re-drive it. The score used is the one
   recorded with the alert; the record's own ``score`` is kept in the training log as
   ``sent_score`` and nothing else.
4. **Once per alert**: the first label on an alert is the only one decided on (applied or
   not); the alert ids decided are kept in the store window ``feedback_decided``
   (``feedback_window`` ids, committed with the threshold). A later label on one is not
   applied; it is kept for training when it changes the label (a correction), dropped
   when it repeats it.
5. **Model version**: a label on an alert of another model version than the one in force
   says nothing about this model's threshold: not applied, but kept for training.
6. **Rate**: at most ``feedback_max_steps_per_minute`` threshold steps per minute of wall
   time and ``feedback_max_steps_per_1k_events`` per 1,000 scored events (labels that do
   not move the threshold are not limited). A label over the limit is not applied, but
   kept for training; sending it again does not apply it either (4.), so a burst, or a
   replay of the whole topic, never turns into a delayed run of steps. The limiter
   lives in memory: a restart starts it afresh.
7. **Bounds**: the policy keeps the threshold within ``PolicyConfig.feedback_bounds``
   (relative to the calibrated threshold: never 0 or 1).

Every record not applied counts in ``feedback_rejected_total{reason}`` (reasons: invalid,
too_large, bad_signature, unknown_alert, model_version, repeated, rate_limited); an
applied one in ``feedback_total{label}``. Applying and committing happen under the
engine's lock (``lock``, held by the worker around each batch), and the threshold, the
window and the counters are committed at once (``Engine.commit_state``): a restart
keeps them. A fresh consumer group replaying the whole topic therefore moves nothing
that moved before. Kept records are appended to ``<state_dir>/feedback.jsonl`` with
``applied`` and ``reason``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgspec

from riskgraph.streams.alerts import Feedback, decode_feedback, verify_feedback
from riskgraph.streams.engine import AlertRecord, Engine
from riskgraph.streams.events import DeadLetter, dead_letter
from riskgraph.streams.metrics import EngineMetrics

SendDead = Callable[[bytes | None, DeadLetter], Awaitable[None]]

log = logging.getLogger("riskgraph.feedback")

#: The store window of the alert ids whose feedback was decided on (``state.window.RecentKeys``):
#: payload the label and 0 (applied) or 1 (not: model version, rate limit).
WINDOW_FEEDBACK = "feedback_decided"

#: Reasons of ``feedback_rejected_total``.
REASONS = ("invalid", "too_large", "bad_signature", "unknown_alert", "model_version", "repeated", "rate_limited")


class StepLimiter:
    """At most ``per_minute`` steps in any 60 s of ``clock`` and ``per_1k_events`` in any
    1,000 events of an event count (0: that limit is off).

    >>> lim = StepLimiter(per_minute=2, per_1k_events=0)
    >>> [lim.allow(now=t, events=0) and lim.record(now=t, events=0) is None for t in (0, 1, 2, 61)]
    [True, True, False, True]
    """

    def __init__(self, per_minute: int, per_1k_events: int) -> None:
        for name, v in (("per_minute", per_minute), ("per_1k_events", per_1k_events)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        self.per_minute = per_minute
        self.per_1k_events = per_1k_events
        self._times: deque[float] = deque()
        self._events: deque[int] = deque()

    def reset(self) -> None:
        self._times.clear()
        self._events.clear()

    def allow(self, *, now: float, events: int) -> bool:
        while self._times and self._times[0] <= now - 60.0:
            self._times.popleft()
        if self._events and self._events[-1] > events:  # the event count went back (another policy)
            self._events.clear()
        while self._events and self._events[0] <= events - 1000:
            self._events.popleft()
        if self.per_minute and len(self._times) >= self.per_minute:
            return False
        if self.per_1k_events and len(self._events) >= self.per_1k_events:
            return False
        return True

    def record(self, *, now: float, events: int) -> None:
        self._times.append(now)
        self._events.append(events)


class _Rejected(Exception):
    """A record that becomes a dead letter: ``reason`` (the metric's), ``category``, ``text``."""

    def __init__(self, reason: str, category: str, text: str) -> None:
        super().__init__(text)
        self.reason, self.category, self.text = reason, category, text


class FeedbackIntake:
    """Turns feedback records into bounded policy updates and training data (see the module docstring).

    ``lock``: the lock the worker holds around each batch (applying feedback and committing
    the state must not interleave with a batch in flight); None: one of its own.
    ``clock``: wall time in seconds for the per-minute limit (monotonic by default).
    """

    def __init__(self, settings: Any, engine: Engine, metrics: EngineMetrics, *, send_dead: SendDead,
                 lock: asyncio.Lock | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.send_dead = send_dead
        self.lock = lock if lock is not None else asyncio.Lock()
        self.clock = clock
        for name, least in (("feedback_max_bytes", 1), ("feedback_note_max_bytes", 0), ("feedback_window", 1)):
            v = getattr(settings, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"RISKGRAPH_{name.upper()} must be an integer >= {least}, got {v!r}")
        self.max_bytes = settings.feedback_max_bytes
        self.note_max_bytes = settings.feedback_note_max_bytes
        self.secret: str = settings.feedback_secret or ""
        try:
            self.limiter = StepLimiter(settings.feedback_max_steps_per_minute,
                                       settings.feedback_max_steps_per_1k_events)
        except ValueError as exc:
            raise ValueError(f"RISKGRAPH_FEEDBACK_MAX_STEPS_*: {exc}") from None
        self.decided = engine.store.window(WINDOW_FEEDBACK, settings.feedback_window)
        self.path = Path(settings.state_dir) / "feedback.jsonl"
        self._policy = engine.policy  # the limiter counts this policy's steps

    def __repr__(self) -> str:  # never the secret
        return f"FeedbackIntake(signed={bool(self.secret)}, path={str(self.path)!r})"

    async def handle(self, raw: bytes | None, msg: Any) -> None:
        """Process one record of the feedback topic (``msg``: its Kafka message)."""
        received = time.time()
        try:
            fb = self._check(raw)
        except _Rejected as r:
            await self._dead(raw, msg, r, received)
            return
        rejected: _Rejected | None = None
        async with self.lock:
            try:
                rec, reason, label_before = self._apply(fb)
            except _Rejected as r:
                rejected = r
        if rejected is not None:  # sent after the lock: a batch need not wait for the broker
            await self._dead(raw, msg, rejected, received)
            return
        if reason is None:
            self.metrics.feedback.labels(label=str(fb.label)).inc()
        else:
            self.metrics.feedback_rejected.labels(reason=reason).inc()
            if reason == "repeated" and label_before == fb.label:
                return  # the same label again: nothing new to keep
        self._keep(fb, rec, reason, received)

    # -- the checks ---------------------------------------------------------------

    def _check(self, raw: bytes | None) -> Feedback:
        """What needs no state: size, shape, signature."""
        if raw is None:
            raise _Rejected("invalid", "malformed_json", "bad feedback: record is empty (null value)")
        if len(raw) > self.max_bytes:
            raise _Rejected("too_large", "oversized", f"bad feedback: record is {len(raw):,} bytes, more than "
                            f"the {self.max_bytes:,} allowed (RISKGRAPH_FEEDBACK_MAX_BYTES)")
        try:
            fb: Feedback = decode_feedback(raw)
        except msgspec.ValidationError as exc:
            raise _Rejected("invalid", "invalid_value", f"bad feedback: {exc}") from None
        except msgspec.DecodeError as exc:
            raise _Rejected("invalid", "malformed_json", f"bad feedback: {exc}") from None
        if isinstance(fb.label, bool) or fb.label not in (0, 1):
            raise _Rejected("invalid", "invalid_value", f"bad feedback: label must be 0 or 1, got {fb.label}")
        if fb.note is not None:
            n = len(fb.note.encode("utf-8", "surrogatepass"))
            if n > self.note_max_bytes:
                raise _Rejected("too_large", "oversized", f"bad feedback: note is {n:,} bytes, more than the "
                                f"{self.note_max_bytes:,} allowed (RISKGRAPH_FEEDBACK_NOTE_MAX_BYTES)")
        if self.secret and not verify_feedback(fb, self.secret):
            what = "the record is not signed" if not fb.sig else "the signature does not match the content"
            raise _Rejected("bad_signature", "bad_signature",
                            f"bad signature: {what} (the worker requires feedback signed with RISKGRAPH_FEEDBACK_SECRET)")
        return fb

    def _apply(self, fb: Feedback) -> tuple[AlertRecord, str | None, int | None]:
        """Under the lock: the alert's record, why the label is not applied (None: it was),
        and the label decided on before for that alert (None: none)."""
        engine = self.engine
        rec = engine.alert_record(fb.alert_id)
        if rec is None:
            raise _Rejected("unknown_alert", "unknown_alert",
                            f"unknown alert id {fb.alert_id!r}: not one of the alerts this deployment raised "
                            "and still remembers (forged, mistyped, or too old): not applied")
        key = bytes.fromhex(fb.alert_id)
        before = self.decided.get(key)
        if before is not None:
            return rec, "repeated", before[0] if before else None
        reason: str | None = None
        policy = engine.policy
        if rec.model_version != engine.model.version:
            reason = "model_version"
        else:
            if policy is not self._policy:  # a model swap: a new threshold, a new budget
                self._policy = policy
                self.limiter.reset()
            if policy.feedback_threshold(rec.score, fb.label) != policy.threshold:  # a step
                now, events = self.clock(), policy.counters["events"]
                if self.limiter.allow(now=now, events=events):
                    self.limiter.record(now=now, events=events)
                else:
                    reason = "rate_limited"
            if reason is None:
                policy.apply_feedback(rec.score, fb.label)
        # one decision per alert: whatever it was, a later label (a replay) is a repeat
        self.decided.add(key, bytes((fb.label, 0 if reason is None else 1)))
        engine.commit_state()  # the threshold, the window and the counters, in one write batch
        self.metrics.threshold.set(policy.threshold)
        return rec, reason, None

    # -- outcomes -----------------------------------------------------------------

    async def _dead(self, raw: bytes | None, msg: Any, r: _Rejected, received: float) -> None:
        d = dead_letter(raw, r.text, r.category, raw_max_bytes=self.engine.dlq_raw_max_bytes,
                        topic=getattr(msg, "topic", None), partition=getattr(msg, "partition", None),
                        offset=getattr(msg, "offset", None), received_at=received)
        log.debug("feedback dead-lettered (%s): %s", r.reason, r.text)
        await self.send_dead(getattr(msg, "key", None), d)
        self.metrics.dead_letters.labels(category=r.category).inc()
        self.metrics.feedback_rejected.labels(reason=r.reason).inc()

    def _keep(self, fb: Feedback, rec: AlertRecord, reason: str | None, received: float) -> None:
        """Append the label to the training log, with the recorded score and whether it was applied."""
        line = {
            "alert_id": fb.alert_id, "label": fb.label, "score": rec.score, "sent_score": fb.score,
            "event_id": fb.event_id, "analyst": fb.analyst, "ts": fb.ts, "note": fb.note,
            "model_version": rec.model_version, "alert_ts": rec.ts,
            "applied": reason is None, "reason": reason, "received_at": received,
        }
        try:
            with open(self.path, "ab") as f:
                f.write(json.dumps(line, allow_nan=False).encode() + b"\n")
        except (OSError, ValueError) as exc:  # e.g. a full disk: the label still counted; say so and go on
            log.warning("could not append feedback on alert %s to %s: %s", fb.alert_id, self.path, exc)
