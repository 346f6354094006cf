"""Shared fixtures for the simulator tests: one small simulation per session."""

from __future__ import annotations

import pytest

from riskgraph.simulators.transactions import Incident, SimConfig, SimResult, simulate
from riskgraph.streams.events import Event

#: Small but with every typology several times; generates in well under a second.
SMALL = SimConfig(seed=11, n_persons=2500, n_merchants=300, n_atms=40, days=12,
                  card_testing=4, account_takeover=6, mule_chain=3, collusion_ring=3, low_and_slow=3)


@pytest.fixture(scope="session")
def small_config() -> SimConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_sim() -> SimResult:
    return simulate(SMALL)


@pytest.fixture(scope="session")
def by_id(small_sim: SimResult) -> dict[str, Event]:
    return {e.id: e for e in small_sim.events}


@pytest.fixture(scope="session")
def incidents_of(small_sim: SimResult, by_id: dict[str, Event]):
    """``incidents_of(typology)``: (incident, its events in time order) per incident."""

    def get(typology: str) -> list[tuple[Incident, list[Event]]]:
        return [(inc, [by_id[i] for i in inc.event_ids]) for inc in small_sim.incidents
                if inc.typology == typology]

    return get


@pytest.fixture(scope="session")
def history_of(small_sim: SimResult):
    """``history_of(entity, before)``: background events of ``entity`` (either side) before a time."""

    def get(entity: str, before: float) -> list[Event]:
        return [e for e in small_sim.events if e.ts < before and e.label == 0 and entity in (e.src, e.dst)]

    return get
