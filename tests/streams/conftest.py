"""Shared fixtures of the stream-layer tests: one small simulated stream and engine runs over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from riskgraph.models.scoring import ScoringModel
from riskgraph.simulators.transactions import SimConfig, SimResult, simulate
from riskgraph.state.store import GraphStore
from riskgraph.streams.alerts import Alert
from riskgraph.streams.engine import Engine
from riskgraph.streams.events import Event, encode_many

#: Small enough to score in a fraction of a second, large enough to raise alerts
#: (about 4 300 events, ~190 alerts with the default model).
SIM = SimConfig(n_persons=1500, n_merchants=200, days=2, seed=3)
MODEL_SEED = 3


@pytest.fixture(scope="session")
def sim() -> SimResult:
    return simulate(SIM)


@pytest.fixture(scope="session")
def sim_raw(sim: SimResult) -> list[bytes]:
    """The simulated events as they would arrive on topic ``events``."""
    return encode_many(sim.events)


@pytest.fixture
def make_event() -> Callable[..., Event]:
    """``make_event(i, **overrides)``: a valid payment event with id ``e<i>``."""

    def make(i: int = 0, **kw) -> Event:
        base = dict(id=f"e{i}", ts=1000.0 + i, src=f"s{i % 5}", dst=f"d{i % 7}", kind="payment", amount=10.0 + i)
        base.update(kw)
        return Event(**base)

    return make


@dataclass
class Run:
    """What a sequence of ``Engine.process`` calls produced, concatenated."""

    scores: np.ndarray
    alerts: list[Alert]
    event_ids: list[str]

    @property
    def alert_ids(self) -> list[str]:
        return [a.alert_id for a in self.alerts]


def _feed(engine: Engine, raw: list[bytes], batch_size: int, *, start: int = 0, stop: int | None = None,
          key: str = "events/0") -> Run:
    """Process ``raw[start:stop]`` in batches, committing the next offset with each batch."""
    stop = len(raw) if stop is None else stop
    scores, alerts, ids = [], [], []
    for lo in range(start, stop, batch_size):
        hi = min(lo + batch_size, stop)
        r = engine.process(raw[lo:hi], topic="events", partition=0, offsets=list(range(lo, hi)),
                           positions={key: hi})
        assert not r.dead
        scores.append(r.scores)
        alerts.extend(r.alerts)
        ids.extend(e.id for e in r.events)
    return Run(np.concatenate(scores) if scores else np.zeros(0), alerts, ids)


@pytest.fixture
def feed() -> Callable[..., Run]:
    """``feed(engine, raw, batch_size, start=, stop=, key=)``: see :func:`_feed`."""
    return _feed


@pytest.fixture(scope="session")
def reference_run(sim_raw: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The whole simulated stream through one engine, batches of 250: what every variant must equal."""
    path: Path = tmp_path_factory.mktemp("reference-store")
    with GraphStore(path) as store:
        engine = Engine(store, ScoringModel.default(seed=MODEL_SEED))
        run = _feed(engine, sim_raw, 250)
    assert len(run.alerts) > 20, "the reference stream must raise alerts for the comparisons to mean anything"
    return run
