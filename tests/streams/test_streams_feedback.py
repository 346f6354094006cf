"""FeedbackIntake against a real store and engine: provenance, size, signature, once per
alert, rate, bounds, persistence across a restart, and a full replay of the topic."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import msgspec
import pytest

from riskgraph.models.policy import AlertPolicy
from riskgraph.models.scoring import ScoringModel
from riskgraph.settings import Settings
from riskgraph.state.store import GraphStore
from riskgraph.streams.alerts import Alert, Feedback, encode_feedback, sign_feedback
from riskgraph.streams.engine import Engine
from riskgraph.streams.events import DeadLetter
from riskgraph.streams.feedback import FeedbackIntake, StepLimiter
from riskgraph.streams.metrics import EngineMetrics

from .conftest import MODEL_SEED, _feed

NO_LIMITS = dict(feedback_max_steps_per_minute=0, feedback_max_steps_per_1k_events=0)


@dataclass
class Msg:
    """The attributes of a Kafka message the intake reads."""

    offset: int = 0
    topic: str = "feedback"
    partition: int = 0
    key: bytes | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Deployment:
    """One worker's store, engine and feedback intake, and what it sent."""

    root: Path
    raw: list[bytes]
    store: GraphStore
    engine: Engine
    alerts: list[Alert]
    settings: Settings
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    dead: list[DeadLetter] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)
    intake: FeedbackIntake | None = None
    offset: int = 0

    def make_intake(self, lock: asyncio.Lock | None = None) -> FeedbackIntake:
        async def send_dead(key: bytes | None, d: DeadLetter) -> None:  # a sink: collects what would be sent
            self.dead.append(d)
        self.intake = FeedbackIntake(self.settings, self.engine, self.metrics, send_dead=send_dead, lock=lock,
                                     clock=self.clock)
        return self.intake

    def send(self, *records: bytes | Feedback | dict | None) -> None:
        asyncio.run(self._send(records))

    async def _send(self, records: tuple[Any, ...]) -> None:
        for r in records:
            if isinstance(r, Feedback):
                r = encode_feedback(r)
            elif isinstance(r, dict):
                r = json.dumps(r).encode()
            await self.intake.handle(r, Msg(offset=self.offset))
            self.offset += 1

    @property
    def threshold(self) -> float:
        return self.engine.policy.threshold

    def rejected(self, reason: str) -> float:
        return self.metrics.feedback_rejected.labels(reason=reason)._value.get()

    def applied(self, label: int) -> float:
        return self.metrics.feedback.labels(label=str(label))._value.get()

    def log(self) -> list[dict]:
        p = Path(self.settings.state_dir) / "feedback.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def above(self) -> list[Alert]:
        """Alerts scored at or above the threshold in force, highest first."""
        return sorted((a for a in self.alerts if a.score >= self.threshold), key=lambda a: -a.score)

    def below(self) -> list[Alert]:
        return sorted((a for a in self.alerts if a.score < self.threshold), key=lambda a: a.score)


def _open(root: Path, raw: list[bytes], *, seed: int = MODEL_SEED, policy: AlertPolicy | None = None,
          **settings: Any) -> Deployment:
    store = GraphStore(root / "store")
    engine = Engine(store, ScoringModel.default(seed=seed), policy=policy)
    s = Settings(state_dir=str(root), **{**NO_LIMITS, **settings})
    return Deployment(root, raw, store, engine, [], s)


@pytest.fixture
def make_dep(tmp_path: Path, sim_raw: list[bytes]) -> Iterator[Callable[..., Deployment]]:
    """``make_dep(policy=None, **settings)``: a deployment that scored the simulated stream
    (188 alerts with the default policy), with no rate limits unless ``settings`` set them."""
    made: list[Deployment] = []

    def make(*, policy: AlertPolicy | None = None, **settings: Any) -> Deployment:
        d = _open(tmp_path / f"d{len(made)}", sim_raw, policy=policy, **settings)
        made.append(d)
        d.alerts = _feed(d.engine, sim_raw, 250).alerts
        assert len(d.alerts) > 50 and d.above() and d.below()
        d.make_intake()
        return d

    yield make
    for d in made:
        d.store.close()


@pytest.fixture
def dep(make_dep: Callable[..., Deployment]) -> Deployment:
    return make_dep()


def _forged(n: int, label: int, score: float) -> list[dict]:
    return [{"alert_id": secrets.token_hex(16), "label": label, "score": score} for _ in range(n)]


# -- provenance ------------------------------------------------------------------------


def test_forged_alert_ids_move_nothing_and_are_dead_lettered(dep: Deployment) -> None:
    thr = dep.threshold
    dep.send(*_forged(40, 0, 0.99), *_forged(80, 1, 0.0))
    assert dep.threshold == thr
    assert len(dep.dead) == 120 and {d.category for d in dep.dead} == {"unknown_alert"}
    assert all(d.reason.startswith("unknown alert id") and d.topic == "feedback" and d.offset is not None
               for d in dep.dead)
    assert dep.rejected("unknown_alert") == 120 and dep.applied(0) == dep.applied(1) == 0
    assert dep.log() == []  # not training data: the dead-letter topic has them


def test_the_recorded_score_is_used_never_the_sent_one(dep: Deployment) -> None:
    hi, lo = dep.above()[0], dep.below()[0]
    thr = dep.threshold
    # a "miss" at 0.0 on an alert recorded above the threshold: a caught positive, no change
    dep.send({"alert_id": hi.alert_id, "label": 1, "score": 0.0})
    assert dep.threshold == thr
    # a "false positive" claimed at 0.01 on an alert recorded above the threshold: up
    hi2 = dep.above()[1]
    dep.send({"alert_id": hi2.alert_id, "label": 0, "score": 0.01})
    assert dep.threshold == pytest.approx(thr + 0.005)
    # a label without a score uses the record's too (a confirmed miss below the threshold: down)
    dep.send({"alert_id": lo.alert_id, "label": 1})
    assert dep.threshold == pytest.approx(thr)
    log = dep.log()
    assert [(r["alert_id"], r["score"], r["sent_score"], r["applied"], r["reason"]) for r in log] == [
        (hi.alert_id, hi.score, 0.0, True, None), (hi2.alert_id, hi2.score, 0.01, True, None),
        (lo.alert_id, lo.score, None, True, None)]
    assert all(r["model_version"] == dep.engine.model.version for r in log)
    assert dep.applied(0) == 1 and dep.applied(1) == 2 and dep.dead == []


def test_alerts_of_another_model_version_are_kept_but_not_applied(dep: Deployment) -> None:
    old = dep.above()[:3]
    dep.engine.swap_model(ScoringModel.default(seed=MODEL_SEED + 1))
    dep.engine.process_events([])  # the swap happens at the batch boundary
    assert dep.engine.model.version != old[0].model_version
    thr = dep.threshold
    dep.send(*({"alert_id": a.alert_id, "label": 0} for a in old))
    assert dep.threshold == thr
    assert dep.rejected("model_version") == 3 and dep.dead == []
    assert [(r["alert_id"], r["applied"], r["reason"], r["model_version"]) for r in dep.log()] == [
        (a.alert_id, False, "model_version", a.model_version) for a in old]
    dep.send({"alert_id": old[0].alert_id, "label": 0})  # decided on already
    assert dep.rejected("repeated") == 1 and len(dep.log()) == 3


# -- once per alert, rate, bounds ------------------------------------------------------


def test_a_second_label_on_an_alert_does_not_move_the_threshold_again(dep: Deployment) -> None:
    a = dep.above()[0]
    thr = dep.threshold
    dep.send(*[{"alert_id": a.alert_id, "label": 0}] * 6)
    assert dep.threshold == pytest.approx(thr + 0.005)
    assert dep.applied(0) == 1 and dep.rejected("repeated") == 5
    assert len(dep.log()) == 1  # the same label again adds nothing to the training data
    dep.send({"alert_id": a.alert_id, "label": 1})  # a correction: kept, not applied
    assert dep.threshold == pytest.approx(thr + 0.005)
    assert [(r["label"], r["applied"], r["reason"]) for r in dep.log()] == [(0, True, None), (1, False, "repeated")]


def test_at_most_n_threshold_steps_per_minute(make_dep: Callable[..., Deployment]) -> None:
    dep = make_dep(feedback_max_steps_per_minute=3)
    thr = dep.threshold
    top = dep.above()[:8]
    dep.send(*({"alert_id": a.alert_id, "label": 0} for a in top[:6]))
    assert dep.threshold == pytest.approx(thr + 3 * 0.005)
    assert dep.applied(0) == 3 and dep.rejected("rate_limited") == 3
    assert [r["reason"] for r in dep.log()] == [None] * 3 + ["rate_limited"] * 3
    # labels that do not move the threshold are not limited
    dep.send({"alert_id": dep.below()[0].alert_id, "label": 0})
    assert dep.applied(0) == 4
    dep.clock.now += 61.0
    # a limited label was decided on: sent again, even after the minute, it is a repeat
    dep.send({"alert_id": top[3].alert_id, "label": 0})
    assert dep.threshold == pytest.approx(thr + 3 * 0.005) and dep.rejected("repeated") == 1
    dep.send({"alert_id": top[6].alert_id, "label": 0})  # a new one after the minute: applied
    assert dep.threshold == pytest.approx(thr + 4 * 0.005) and dep.applied(0) == 5


def test_at_most_n_threshold_steps_per_thousand_scored_events(make_dep: Callable[..., Deployment],
                                                               sim_raw: list[bytes]) -> None:
    dep = make_dep(feedback_max_steps_per_1k_events=2)
    top = [a.alert_id for a in dep.above()[:5]]
    thr = dep.threshold
    dep.send(*({"alert_id": a, "label": 0} for a in top[:3]))
    assert dep.threshold == pytest.approx(thr + 2 * 0.005) and dep.rejected("rate_limited") == 1
    dep.clock.now += 3600.0  # wall time alone does not refill this budget
    dep.send({"alert_id": top[3], "label": 0})
    assert dep.rejected("rate_limited") == 2
    # 1,000 more scored events do (the same events again, under new ids)
    more = [msgspec.json.encode({**json.loads(r), "id": "again-" + json.loads(r)["id"]}) for r in sim_raw[:1000]]
    dep.engine.process(more)
    thr = dep.threshold
    assert dep.engine.alert_record(top[4]).score >= thr + 0.005, "the label below must be one that moves"
    dep.send({"alert_id": top[4], "label": 0})
    assert dep.rejected("rate_limited") == 2 and dep.applied(0) == 3
    assert dep.threshold == pytest.approx(thr + 0.005)


def test_feedback_cannot_push_the_threshold_past_its_relative_bounds(make_dep: Callable[..., Deployment]) -> None:
    # calibrated 0.8 with an absolute max_shift of 0.15: adaptation may reach 0.95, feedback only
    # 0.8 + 0.5 * (1 - 0.8) = 0.9 (and, below, 0.8 - 0.15 = 0.65: the tighter of the two)
    dep = make_dep(policy=AlertPolicy(threshold=0.8, target_alert_rate=0.01, max_shift=0.15, feedback_step=0.05))
    lo, hi = dep.engine.policy.config.feedback_bounds
    assert (lo, hi) == pytest.approx((0.65, 0.9)) and dep.engine.policy.config.bounds[1] == pytest.approx(0.95)
    assert dep.threshold < hi
    dep.send(*({"alert_id": a.alert_id, "label": 0} for a in dep.above()))  # highest first
    assert dep.threshold == pytest.approx(hi)  # 0.9, though alerts scored up to 0.94 were called false positives


# -- size, shape, signature ------------------------------------------------------------


def test_oversized_records_and_notes_are_dead_letters(dep: Deployment) -> None:
    a, b = dep.above()[:2]
    thr = dep.threshold
    big = {"alert_id": a.alert_id, "label": 0, "analyst": "x" * 200, "event_id": "e" * 200, "note": "n" * 1000}
    padded = json.dumps({**big, "note": None}).encode() + b" " * 5000  # valid JSON, 5 KB
    dep.send(padded, {"alert_id": a.alert_id, "label": 0, "note": "é" * 513})  # 1,026 bytes of note
    assert dep.threshold == thr
    assert [d.category for d in dep.dead] == ["oversized", "oversized"]
    assert "5," in dep.dead[0].reason and "4,096" in dep.dead[0].reason and "note is 1,026 bytes" in dep.dead[1].reason
    assert dep.dead[0].raw_size == len(padded) and len(dep.dead[0].raw) == 4096  # the dead letter is bounded too
    assert dep.rejected("too_large") == 2
    dep.send({"alert_id": b.alert_id, "label": 0, "note": "n" * 1024})  # at the limit: fine
    assert dep.threshold > thr and dep.log()[0]["note"] == "n" * 1024


def test_malformed_feedback_is_dead_lettered_and_the_next_record_still_applies(dep: Deployment) -> None:
    thr = dep.threshold
    dep.send(None, b"{not json", {"alert_id": "a1", "label": 2}, {"label": 0},
             {"alert_id": dep.alerts[0].alert_id, "label": 0, "score": 7.0}, {"alert_id": "", "label": 0},
             {"alert_id": dep.alerts[0].alert_id, "label": True})
    assert [d.category for d in dep.dead] == ["malformed_json", "malformed_json"] + ["invalid_value"] * 5
    assert all(d.reason.startswith("bad feedback: ") for d in dep.dead)
    assert dep.threshold == thr and dep.rejected("invalid") == 7
    dep.send({"alert_id": dep.above()[0].alert_id, "label": 0})
    assert dep.threshold > thr


SECRET = "s3cret-feedback-key"


def test_with_a_secret_only_correctly_signed_feedback_counts(make_dep: Callable[..., Deployment],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    dep = make_dep(feedback_secret=SECRET)
    caplog.set_level(logging.DEBUG)
    a, b = dep.above()[:2]
    thr = dep.threshold
    fb = Feedback(alert_id=a.alert_id, label=0, analyst="ana", ts=1.7e9)
    forged = sign_feedback(Feedback(alert_id=b.alert_id, label=0), "a-guessed-key")
    tampered = msgspec.structs.replace(sign_feedback(fb, SECRET), label=1)
    dep.send(fb, forged, tampered)
    assert dep.threshold == thr
    assert [d.category for d in dep.dead] == ["bad_signature"] * 3
    assert all(d.reason.startswith("bad signature") for d in dep.dead)
    assert dep.rejected("bad_signature") == 3
    dep.send(sign_feedback(fb, SECRET))
    assert dep.threshold == pytest.approx(thr + 0.005) and dep.applied(0) == 1
    everything = caplog.text + repr(dep.intake) + "".join(d.reason for d in dep.dead) + json.dumps(dep.log())
    assert SECRET not in everything


def test_without_a_secret_unsigned_feedback_is_accepted(dep: Deployment) -> None:
    thr = dep.threshold
    dep.send(Feedback(alert_id=dep.above()[0].alert_id, label=0))
    assert dep.threshold > thr and dep.dead == []


# -- concurrency, persistence, replay --------------------------------------------------


def test_feedback_waits_for_the_engine_lock(dep: Deployment) -> None:
    a = dep.above()[0]
    thr = dep.threshold

    async def scenario() -> None:
        lock = asyncio.Lock()
        intake = dep.make_intake(lock=lock)
        await lock.acquire()  # a batch in flight
        task = asyncio.create_task(intake.handle(json.dumps({"alert_id": a.alert_id, "label": 0}).encode(), Msg()))
        await asyncio.sleep(0.05)
        assert not task.done() and dep.threshold == thr
        lock.release()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert dep.threshold == pytest.approx(thr + 0.005)


def test_the_moved_threshold_and_the_applied_ids_survive_a_restart(dep: Deployment, sim_raw: list[bytes]) -> None:
    top = [a.alert_id for a in dep.above()[:3]]
    dep.send(*({"alert_id": a, "label": 0} for a in top))  # no batch after: only the intake commits
    moved = dep.threshold
    dep.store.close()
    again = _open(dep.root, sim_raw)
    try:
        assert again.threshold == moved
        again.make_intake()
        again.send(*({"alert_id": a, "label": 0} for a in top))
        assert again.threshold == moved and again.rejected("repeated") == 3
    finally:
        again.store.close()
        dep.store = GraphStore(dep.root / "store")  # for the fixture's close


def test_a_fresh_consumer_group_replaying_all_past_feedback_does_not_move_the_threshold(
        dep: Deployment, sim_raw: list[bytes]) -> None:
    # the topic's history: forged labels, labels on an older model's alerts, genuine labels
    history: list[dict] = [*_forged(300, 1, 0.0), *_forged(100, 0, 1.0)]
    old = dep.above()[:10]
    dep.engine.swap_model(ScoringModel.default(seed=MODEL_SEED + 1))
    new = _feed(dep.engine, [msgspec.json.encode({**json.loads(r), "id": "v2-" + json.loads(r)["id"]})
                             for r in sim_raw], 250).alerts
    dep.alerts = new
    history += [{"alert_id": a.alert_id, "label": 1, "score": 0.0} for a in old]
    history += [{"alert_id": a.alert_id, "label": 0} for a in dep.above()[:5]]
    history += [{"alert_id": a.alert_id, "label": 1} for a in dep.below()[:5]]
    dep.send(*history)  # as the worker's first consumer group read it
    thr = dep.threshold
    moves = dep.applied(0) + dep.applied(1)
    assert moves == 10
    dep.store.close()
    # a restarted worker in a fresh consumer group: every record again, from the start
    again = _open(dep.root, sim_raw, seed=MODEL_SEED + 1)
    try:
        assert again.threshold == thr
        again.make_intake()
        again.send(*history)
        assert again.threshold == thr
        assert again.applied(0) == again.applied(1) == 0
        assert (again.rejected("unknown_alert"), again.rejected("repeated")) == (400, 20)
        assert len(again.log()) == len(dep.log()) == 20  # nothing new for the training log either
    finally:
        again.store.close()
    # and a brand-new deployment (a fresh store) fed the same history: nothing is its own
    fresh = _open(dep.root / "fresh", sim_raw)
    try:
        calibrated = fresh.threshold
        fresh.make_intake()
        fresh.send(*history)
        assert fresh.threshold == calibrated and fresh.rejected("unknown_alert") == len(history)
    finally:
        fresh.store.close()
        dep.store = GraphStore(dep.root / "store")


def test_step_limiter_validates_its_limits() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            StepLimiter(bad, 0)
    lim = StepLimiter(0, 0)  # both off
    for t in range(100):
        assert lim.allow(now=float(t), events=0)
        lim.record(now=float(t), events=0)


def test_out_of_range_feedback_settings_are_refused(dep: Deployment) -> None:
    # refused by the settings themselves or, at the latest, by the intake: never a window of 0
    for bad in (dict(feedback_window=0), dict(feedback_max_bytes=0), dict(feedback_max_steps_per_minute=-1),
                dict(feedback_note_max_bytes=-1)):
        with pytest.raises(ValueError, match="RISKGRAPH_FEEDBACK_"):
            dep.settings = Settings(state_dir=str(dep.root), **{**NO_LIMITS, **bad})
            dep.make_intake()
