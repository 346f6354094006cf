"""The embedded driver: feed batches of events to an Engine without Kafka.

Used by ``riskgraph replay``, ``evaluate`` and ``demo``; the Faust worker is the
other driver around the same Engine. Collects what evaluation needs (scores,
labels, typologies, per-batch timings) in compact arrays and writes alerts as
JSON lines as they come.

>>> import tempfile
>>> from riskgraph.streams.events import Event
>>> from riskgraph.state.store import GraphStore
>>> from riskgraph.models.scoring import ScoringModel
>>> from riskgraph.streams.engine import Engine
>>> evs = [Event(id=f"e{i}", ts=float(i), src="a", dst=f"m{i % 3}", kind="payment", amount=10.0, label=0)
...        for i in range(50)]
>>> with GraphStore(tempfile.mkdtemp()) as store:
...     run = run_batches(Engine(store, ScoringModel.default()), [StreamBatch(evs[:20]), StreamBatch(evs[20:])],
...                       progress=False)
>>> run.n_events, run.scores.shape, int(run.labels.sum())
(50, (50,), 0)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from riskgraph.streams.alerts import Alert, encode_alert
from riskgraph.streams.engine import Engine
from riskgraph.streams.events import DeadLetter, Event


@dataclass
class StreamBatch:
    """A batch of validated events, plus optional per-event extras (e.g. typology)."""

    events: list[Event]
    extras: dict[str, list[Any]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass
class RunResult:
    """Everything one embedded run produced, aligned per valid event."""

    event_ids: list[str]
    ts: np.ndarray
    scores: np.ndarray
    components: dict[str, np.ndarray]
    labels: np.ndarray  # int8: 1, 0, or -1 when the event had no label
    typology: list[str | None]
    alerts: list[Alert]
    dead: list[DeadLetter]
    batch_sizes: np.ndarray  # events per batch
    batch_seconds: np.ndarray  # engine time per batch
    batch_wall: np.ndarray  # wall-clock time each batch finished, relative to the start
    suppressed: int = 0
    resumed_from: int = 0  # input records the store already reflected when the run began (its position)

    @property
    def n_events(self) -> int:
        return len(self.event_ids)

    @property
    def events_per_second(self) -> float:
        total = float(self.batch_seconds.sum())
        return self.n_events / total if total > 0 else float("nan")

    def latency_ms(self) -> np.ndarray:
        """Per-event processing latency: the time of the batch the event was in, in ms."""
        return np.repeat(self.batch_seconds * 1e3, self.batch_sizes)


def run_batches(
    engine: Engine,
    batches: Iterable[StreamBatch],
    *,
    progress: bool = True,
    total_events: int | None = None,
    alerts_out: IO[bytes] | None = None,
    position_key: str = "file/0",
    desc: str = "scoring",
) -> RunResult:
    """Run every batch through the engine, in order; the position committed with each
    batch is the count of input records consumed so far (valid or dead).

    The count starts at the store's position under ``position_key``: ``batches`` must
    begin after the records it already reflects (:func:`resume_position` says how many;
    ``EventFile.batches(skip=)`` leaves them out), or a store kept between runs takes
    the same records twice."""
    ids: list[str] = []
    ts_parts: list[np.ndarray] = []
    score_parts: list[np.ndarray] = []
    comp_parts: dict[str, list[np.ndarray]] = {}
    labels: list[int] = []
    typ: list[str | None] = []
    alerts: list[Alert] = []
    dead: list[DeadLetter] = []
    sizes: list[int] = []
    secs: list[float] = []
    wall: list[float] = []
    suppressed = 0
    consumed = resumed_from = resume_position(engine.store, position_key)
    start = time.perf_counter()
    bar = tqdm(total=total_events, unit="ev", desc=desc, disable=not progress, mininterval=0.5, smoothing=0.1)
    try:
        for b in batches:
            consumed += len(b.events) + len(b.dead)
            t0 = time.perf_counter()
            # commit only once the batch's alerts are written: a crash in between replays it
            r = engine.process_events(b.events, positions={position_key: consumed}, commit=False)
            t1 = time.perf_counter()
            n = r.n_valid
            sizes.append(n)
            secs.append(t1 - t0)
            wall.append(t1 - start)
            # r.events: the events scored (a repeated id is a dead letter instead), r.index their
            # positions in b.events
            ids.extend(e.id for e in r.events)
            ts_parts.append(np.fromiter((e.ts for e in r.events), np.float64, n))
            labels.extend(-1 if e.label is None else e.label for e in r.events)
            tl = b.extras.get("typology")
            typ.extend([tl[k] for k in r.index] if tl is not None else [None] * n)
            score_parts.append(r.scores)
            for k, v in r.components.items():
                comp_parts.setdefault(k, []).append(v)
            alerts.extend(r.alerts)
            dead.extend(b.dead)
            dead.extend(r.dead)
            suppressed += r.suppressed
            if alerts_out is not None:
                for a in r.alerts:
                    alerts_out.write(encode_alert(a) + b"\n")
                if r.alerts:
                    alerts_out.flush()
            engine.commit_if_due()
            bar.update(n + len(b.dead))
            if progress and r.alerts:
                bar.set_postfix(alerts=len(alerts), refresh=False)
        engine.flush()
    finally:
        bar.close()
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)  # noqa: E731
    return RunResult(
        event_ids=ids,
        ts=cat(ts_parts, np.float64),
        scores=cat(score_parts, np.float64),
        components={k: np.concatenate(v) for k, v in comp_parts.items()},
        labels=np.asarray(labels, np.int8),
        typology=typ,
        alerts=alerts,
        dead=dead,
        batch_sizes=np.asarray(sizes, np.int64),
        batch_seconds=np.asarray(secs, np.float64),
        batch_wall=np.asarray(wall, np.float64),
        suppressed=suppressed,
        resumed_from=resumed_from,
    )


def resume_position(store: Any, position_key: str = "file/0") -> int:
    """Input records ``store`` already reflects under ``position_key`` (0 for a new store):
    a resumed run starts after them."""
    return int(store.positions().get(position_key, 0))


def chunk_events(events: Sequence[Event], batch_size: int, extras: dict[str, Sequence[Any]] | None = None
                 ) -> Iterable[StreamBatch]:
    """Split an in-memory event list into StreamBatches of ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i in range(0, len(events), batch_size):
        ex = {k: list(v[i:i + batch_size]) for k, v in (extras or {}).items()}
        yield StreamBatch(list(events[i:i + batch_size]), ex)
