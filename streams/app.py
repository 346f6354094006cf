"""The Faust worker: topics, agents, and the commit protocol around the Engine.

Topics (names and partition counts from ``Settings``): ``events`` in (raw JSON bytes),
``alerts`` out (keyed by source entity), ``events.dlq`` out (dead letters with raw bytes,
reason, topic, partition and offset), ``feedback`` in (analyst labels).

Scoring reads ``events`` in micro-batches of up to N records, at most T seconds after
the first (``batch_size``, ``batch_window_s``). By default (``consume="batch"``) a task
drains the topic's Faust channel queue in bulk (``streams.batching``: Faust still owns
the group, fetching, back-pressure, offset commits and the producer, but not the
per-record ``Stream``, which cost the worker two thirds of its throughput);
``consume="stream"`` runs the classic Faust agent over ``take_events(N, within=T)``.
Both then do, per partition in the batch:

1. drops records below the partition's position in the RocksDB store (already
   reflected in state: they come back after a crash because Kafka's committed offset
   trails the store's);
2. ``Engine.process`` (decode, state, features, score, decide) without committing;
3. sends the alerts and dead letters and waits for the broker's acknowledgements;
4. commits the store: node rows, detector and policy state and the partition's next
   offset in one RocksDB write batch.

The batch's messages are acknowledged to Faust only after that, so Kafka's committed offset
never passes the store's. A crash between 3 and 4 replays the batch: the same alerts
(same ids, same scores, the state being the same) are sent again; consumers that key
on ``alert_id`` see no difference. SIGTERM lets the batch in flight finish (the send and
commit are shielded from cancellation), so a graceful restart duplicates nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import faust
from faust.types import TP

from riskgraph.streams.security import faust_credentials
from riskgraph.streams.batching import (BatchTopic, ack_all, check_private_members, install_fast_handoff, next_batch,
                              set_fetch_max_wait)
from riskgraph.streams.alerts import encode_alert
from riskgraph.streams.feedback import FeedbackIntake
from riskgraph.streams.engine import BatchResult, Engine
from riskgraph.streams.events import DeadLetter
from riskgraph.streams.metrics import EngineMetrics

import msgspec

log = logging.getLogger("riskgraph.worker")
_dead_enc = msgspec.json.Encoder()
_MAX_DLQ_KEY_BYTES = 1024


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The key a dead letter is sent with: the record's own, or for a poison key (over 1 KiB)
    its digest, so that the dead letter stays far below the producer's size limit.

    >>> dead_letter_key(b"acct-1"), dead_letter_key(b"k" * 5000)[:7]
    (b'acct-1', b'sha256:')
    """
    if key is not None and len(key) > _MAX_DLQ_KEY_BYTES:
        return b"sha256:" + hashlib.sha256(key).hexdigest().encode()
    return key


def group_instance_id(settings: Any) -> str | None:
    """The static group membership id (``group_instance_id``): None when "off".

    "auto" names the member after the app id, the host and the state directory: a state
    directory belongs to one worker, so a worker restarted on it is the same member and
    the broker gives its partitions back at once, instead of after the dead member's
    session times out.

    >>> from riskgraph.settings import Settings
    >>> group_instance_id(Settings(group_instance_id="off")) is None
    True
    >>> group_instance_id(Settings(group_instance_id="w1"))
    'w1'
    >>> group_instance_id(Settings(app_id="rg")).startswith("rg-")
    True
    """
    gid = settings.group_instance_id.strip()
    if gid.lower() == "off":
        return None
    if gid.lower() != "auto":
        return gid
    host = socket.gethostname()
    where = f"{host}:{os.path.abspath(settings.state_dir)}"
    return f"{settings.app_id}-{host[:40]}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


class Worker:
    """Owns the Faust app, the Engine and the metrics of one worker process."""

    def __init__(self, settings: Any, engine: Engine, metrics: EngineMetrics,
                 model_loader: Callable[[str], Any] | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.model_loader = model_loader
        self._model_stamp = self._artifact_stamp()
        self._positions = dict(engine.store.positions())
        # one batch or one feedback update at a time: feedback commits the policy state, which
        # must not happen while a batch waits for its alerts' acknowledgements (its rows and
        # position would be committed before the alerts are safe)
        self.engine_lock = asyncio.Lock()
        self.feedback = FeedbackIntake(settings, engine, metrics, send_dead=self._send_dead, lock=self.engine_lock)
        for problem in check_private_members():
            log.warning("riskgraph worker: %s; the consumer hand-off may not work as tested", problem)
        self.app = faust.App(
            settings.app_id,
            broker=settings.broker,
            broker_credentials=faust_credentials(settings),
            value_serializer="raw",
            key_serializer="raw",
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication,
            web_enabled=False,
            store="memory://",
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            stream_buffer_maxsize=max(4 * settings.batch_size, 4096),
            datadir=str(Path(settings.state_dir) / "faust"),  # not ./{app_id}-data in the working directory
            consumer_max_fetch_size=settings.fetch_max_bytes,
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
            consumer_group_instance_id=group_instance_id(settings),
        )
        s = settings
        if s.consume not in ("batch", "stream"):
            raise ValueError(f"RISKGRAPH_CONSUME must be 'batch' or 'stream', got {s.consume!r}")
        self.alerts_topic = self.app.topic(s.alerts_topic, partitions=s.partitions)
        self.dlq_topic = self.app.topic(s.dlq_topic, partitions=s.partitions)
        self.feedback_topic = self.app.topic(s.feedback_topic, partitions=1)
        set_fetch_max_wait(self.app.consumer, s.fetch_max_wait_ms)
        if s.consume == "batch":
            self.events_topic = BatchTopic(self.app, topics=[s.events_topic], partitions=s.partitions)
            self.app.topics.add(self.events_topic)  # the conductor subscribes it and fills its queue
            install_fast_handoff(self.app.consumer)
            self.app.task(self._score_batches)
        else:
            self.events_topic = self.app.topic(s.events_topic, partitions=s.partitions)
            self.app.agent(self.events_topic, name="riskgraph.score")(self._score_agent)
        self.app.agent(self.feedback_topic, name="riskgraph.feedback")(self._feedback_agent)
        self.app.timer(interval=2.0)(self._watch_model)
        metrics.model_info.labels(version=engine.model.version).set(1)
        metrics.threshold.set(engine.policy.threshold)

    # -- scoring ------------------------------------------------------------------

    async def _score_agent(self, stream: Any) -> None:
        s = self.settings
        async for batch in stream.take_events(s.batch_size, within=s.batch_window_s):
            by_tp: dict[TP, list[Any]] = {}
            for ev in batch:
                by_tp.setdefault(ev.message.tp, []).append(ev.message)
            for tp, msgs in by_tp.items():
                await self._handle_shielded(tp, msgs)

    async def _score_batches(self) -> None:
        """The ``batch`` path: bulk micro-batches from the topic's channel queue (``streams.batching``)."""
        s, app = self.settings, self.app
        queue = self.events_topic.queue
        try:
            while not app.should_stop:
                msgs = await next_batch(queue, s.batch_size, within=s.batch_window_s)
                generation = app.consumer_generation_id
                by_tp: dict[TP, list[Any]] = {}
                for m in msgs:
                    if m.generation_id == generation:  # else fetched before a rebalance: Kafka sends it again
                        by_tp.setdefault(m.tp, []).append(m)
                for tp, part in by_tp.items():
                    await self._handle_shielded(tp, part)
                    ack_all(part, app.consumer)
        except Exception as exc:  # a store or broker failure (not a stop): restart from the commit
            log.exception("scoring failed; stopping the worker (state and offsets are at the last commit)")
            await app.crash(exc)
            raise

    async def _handle_shielded(self, tp: TP, msgs: list[Any]) -> None:
        # the send + commit must not be cut by a shutdown: finish it, then stop
        task = asyncio.ensure_future(self._handle(tp, msgs))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    async def _handle(self, tp: TP, msgs: list[Any]) -> None:
        async with self.engine_lock:
            await self._handle_locked(tp, msgs)

    async def _handle_locked(self, tp: TP, msgs: list[Any]) -> None:
        key = f"{tp.topic}/{tp.partition}"
        known = key in self._positions
        start = self._positions.get(key, 0)
        fresh = [m for m in msgs if m.offset >= start]
        skipped = len(msgs) - len(fresh)
        if skipped:
            self.metrics.events.labels(outcome="skipped_replayed").inc(skipped)
        if not fresh:
            return
        self._check_gaps(tp, fresh, start if known else fresh[0].offset)
        t0 = time.perf_counter()
        next_pos = fresh[-1].offset + 1
        result = self.engine.process([m.value for m in fresh], topic=tp.topic, partition=tp.partition,
                                     offsets=[m.offset for m in fresh], positions={key: next_pos},
                                     commit=False)
        await self._emit(result, fresh)
        self.engine.flush()
        self._positions[key] = next_pos
        self._observe(result, fresh, tp, time.perf_counter() - t0)

    def _check_gaps(self, tp: TP, msgs: list[Any], expected: int) -> None:
        """Count and report offsets between ``expected`` and the batch's last that never came."""
        missing, first_gap, prev = 0, None, expected - 1
        for m in msgs:
            if m.offset > prev + 1:
                missing += m.offset - prev - 1
                first_gap = first_gap or (prev + 1, m.offset)
            prev = m.offset
        if missing:
            self.metrics.offset_gaps.labels(topic=tp.topic, partition=str(tp.partition)).inc(missing)
            log.warning("%s/%d: %d offsets never reached the engine (first: %d..%d); expected only for "
                        "transactional producers or compacted topics", tp.topic, tp.partition, missing,
                        first_gap[0], first_gap[1] - 1)

    async def _emit(self, result: BatchResult, msgs: list[Any]) -> None:
        producer = self.app.producer
        futs = []
        for a in result.alerts:
            futs.append(await producer.send(self.settings.alerts_topic, a.src.encode(), encode_alert(a),
                                            None, None, None))
        for d in result.dead:
            key = dead_letter_key(msgs[d.index].key if d.index is not None else None)
            futs.append(await producer.send(self.settings.dlq_topic, key, _dead_enc.encode(d), None, None, None))
        if futs:
            await asyncio.gather(*futs)  # the broker has them (acks=all) before the store commits

    async def _send_dead(self, key: bytes | None, dead: DeadLetter) -> None:
        """Send one dead letter and wait for the broker's acknowledgement."""
        await self.app.producer.send_and_wait(self.settings.dlq_topic, dead_letter_key(key), _dead_enc.encode(dead),
                                              None, None, None)

    def _observe(self, result: BatchResult, msgs: list[Any], tp: TP, seconds: float) -> None:
        m = self.metrics
        now = time.time()
        m.events.labels(outcome="scored").inc(result.n_valid)
        if result.dead:
            m.events.labels(outcome="dead_letter").inc(len(result.dead))
            for d in result.dead:
                m.dead_letters.labels(category=d.category).inc()
        for a in result.alerts:
            m.alerts.labels(severity=a.severity).inc()
        if result.suppressed:
            m.suppressed.inc(result.suppressed)
        # end to end: the record's Kafka timestamp (set by the producer) to alert sent
        idx_of = {e.id: i for i, e in zip(result.index, result.events)} if result.alerts else {}
        for a in result.alerts:
            i = idx_of.get(a.event_id)
            if i is not None and msgs[i].timestamp:
                m.end_to_end.observe(max(0.0, now - msgs[i].timestamp))
        m.processing.observe(seconds)
        m.inference.observe(result.timings.get("score", 0.0))
        m.batch_size.observe(len(msgs))
        m.threshold.set(self.engine.policy.threshold)
        try:
            hw = self.app.consumer.highwater(tp)
            if hw is not None:
                m.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, hw - msgs[-1].offset - 1))
        except Exception:  # lag is informative only; a consumer in rebalance may not know it
            pass

    # -- feedback -----------------------------------------------------------------

    async def _feedback_agent(self, stream: Any) -> None:
        async for event in stream.events():
            await self.feedback.handle(event.value, event.message)

    # -- hot reload ---------------------------------------------------------------

    def _artifact_stamp(self) -> float | None:
        d = self.settings.model_dir
        if not d:
            return None
        try:
            return os.stat(Path(d) / "config.json").st_mtime
        except FileNotFoundError:
            return None

    async def _watch_model(self) -> None:
        stamp = self._artifact_stamp()
        if stamp is None or stamp == self._model_stamp or self.model_loader is None:
            return
        try:
            model = self.model_loader(self.settings.model_dir)
        except Exception as exc:  # a half-written or bad artifact: keep serving the current one
            log.warning("model reload from %s failed, keeping %s: %s", self.settings.model_dir,
                        self.engine.model.version, exc)
            return
        self._model_stamp = stamp
        old = self.engine.model.version
        self.engine.swap_model(model)
        self.metrics.model_info.labels(version=old).set(0)
        self.metrics.model_info.labels(version=model.version).set(1)
        log.info("model swapped: %s -> %s (from the next batch)", old, model.version)
