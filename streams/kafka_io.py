"""Producer and consumer tools on ``kafka-python``: produce, tail alerts, send feedback.

These are the analyst- and operator-side tools (``riskgraph produce``, ``riskgraph
alerts tail``, ``riskgraph feedback``). They are synchronous on purpose: simple
blocking clients, no event loop, scriptable. The worker itself runs on Faust
(aiokafka) in ``streams.app``.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator

from kafka import KafkaConsumer, KafkaProducer
from tqdm import tqdm

from riskgraph.streams.alerts import Alert, Feedback, decode_alert, encode_feedback, sign_feedback
from riskgraph.streams.events import Event, encode
from riskgraph.streams.security import client_kwargs

SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def produce(settings: Any, events: Iterable[Event], *, rate: float | None = None, total: int | None = None,
            progress: bool = True, topic: str | None = None) -> int:
    """Send events to the events topic keyed by source entity, at ``rate`` events/s (None:
    as fast as possible). Returns the number sent; every send is acknowledged (acks=all)."""
    producer = KafkaProducer(acks="all", linger_ms=5, batch_size=256 * 1024, **client_kwargs(settings))
    topic = topic or settings.events_topic
    n = 0
    start = time.perf_counter()
    bar = tqdm(total=total, unit="ev", desc=f"produce -> {topic}", disable=not progress, mininterval=0.5)
    try:
        for ev in events:
            if rate:
                # pace by the schedule, not by sleeps per event: no drift, bursts catch up
                ahead = start + n / rate - time.perf_counter()
                if ahead > 0.002:
                    time.sleep(ahead)
            producer.send(topic, key=ev.src.encode(), value=encode(ev))
            n += 1
            if n % 1000 == 0:
                bar.update(1000)
        producer.flush()
        bar.update(n % 1000)
    finally:
        bar.close()
        producer.close()
    return n


def iter_alerts(settings: Any, *, from_beginning: bool = False, idle_timeout_s: float | None = None,
                group_id: str | None = None) -> Iterator[Alert]:
    """Alerts from the alerts topic; stops after ``idle_timeout_s`` without one (None: never)."""
    consumer = KafkaConsumer(
        settings.alerts_topic,
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group_id is not None,
        consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
        **client_kwargs(settings),
    )
    try:
        for msg in consumer:
            try:
                yield decode_alert(msg.value)
            except Exception as exc:  # a foreign record on the topic: say so, keep tailing
                print(f"# skipped undecodable record at {msg.partition}/{msg.offset}: {exc}", file=sys.stderr)
    finally:
        consumer.close()


def alert_matches(a: Alert, min_severity: str | None, entity: str | None) -> bool:
    if min_severity and SEVERITY_ORDER.get(a.severity, -1) < SEVERITY_ORDER[min_severity]:
        return False
    return entity is None or entity in (a.src, a.dst)


def format_alert(a: Alert) -> str:
    """One table row: time, severity, score, entities, top reason."""
    top = a.reasons[0]["feature"] if a.reasons and "feature" in a.reasons[0] else "-"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a.ts))
    return (f"{when}  {a.severity:<8} {a.score:6.3f}  {a.src:>14} -> {a.dst:<14} {top:<22} "
            f"{a.event_id}  {a.alert_id[:12]}")


def tail(settings: Any, out: IO[str], *, fmt: str = "table", from_beginning: bool = False,
         min_severity: str | None = None, entity: str | None = None, limit: int | None = None,
         idle_timeout_s: float | None = None) -> int:
    """Print alerts as a table or JSON lines; returns how many were printed."""
    import msgspec

    n = 0
    if fmt == "table":
        out.write(f"{'event time (UTC)':<19}  {'severity':<8} {'score':>6}  {'source':>14}    {'destination':<14} "
                  f"{'top reason':<22} event  alert\n")
    for a in iter_alerts(settings, from_beginning=from_beginning, idle_timeout_s=idle_timeout_s):
        if not alert_matches(a, min_severity, entity):
            continue
        out.write((msgspec.json.encode(a).decode() if fmt == "json" else format_alert(a)) + "\n")
        out.flush()
        n += 1
        if limit is not None and n >= limit:
            break
    return n


def send_feedback(settings: Any, fb: Feedback) -> None:
    """Send one analyst label to the feedback topic and wait for the broker's ack; signed
    (``sig``) when ``settings.feedback_secret`` is set, as the worker then requires."""
    secret = getattr(settings, "feedback_secret", "")
    if secret:
        fb = sign_feedback(fb, secret)
    producer = KafkaProducer(acks="all", **client_kwargs(settings))
    try:
        producer.send(settings.feedback_topic, key=fb.alert_id.encode(), value=encode_feedback(fb)).get(timeout=30)
    finally:
        producer.close()


def ensure_topics(settings: Any, timeout_s: float = 30.0) -> list[str]:
    """Create the worker's topics when missing (brokers here run without auto-creation);
    returns the names it created. Existing topics are left as they are."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    names = [settings.events_topic, settings.alerts_topic, settings.dlq_topic, settings.feedback_topic]
    admin = KafkaAdminClient(request_timeout_ms=int(timeout_s * 1000), **client_kwargs(settings))
    try:
        missing = [n for n in names if n not in set(admin.list_topics())]
        created = []
        for n in missing:
            parts = 1 if n == settings.feedback_topic else settings.partitions
            try:
                admin.create_topics([NewTopic(n, num_partitions=parts, replication_factor=settings.replication)])
                created.append(n)
            except TopicAlreadyExistsError:  # another worker won the race
                pass
        return created
    finally:
        admin.close()
