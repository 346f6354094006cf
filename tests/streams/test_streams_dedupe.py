"""Repeated event ids and poison records at the Engine, over a real RocksDB store.

A repeated id would give a second alert with the same ``alert_id`` (consumers that
deduplicate on it would drop a distinct alert, or count one twice): the engine scores an
id once and dead-letters repeats within its window, which is committed with the state.
A dead letter is bounded in size whatever the record's.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from riskgraph.models.scoring import ScoringModel
from riskgraph.state.store import GraphStore
from riskgraph.streams.engine import Engine
from riskgraph.streams.events import DeadLetter, Event, encode
from riskgraph.streams.runner import StreamBatch, run_batches


def ev(i: int, eid: str | None = None, amount: float = 10.0) -> Event:
    return Event(id=eid or f"e{i}", ts=1000.0 + i, src=f"a{i % 7}", dst=f"m{i % 3}", kind="payment", amount=amount)


def test_repeats_within_a_batch_and_across_batches_are_dead_letters(tmp_path):
    with GraphStore(tmp_path) as store:
        eng = Engine(store, ScoringModel.default(seed=1))
        values = [encode(ev(0)), encode(ev(1, "dup")), encode(ev(2, "dup")), b"{", encode(ev(3, "dup"))]
        r = eng.process(values, topic="events", partition=0, offsets=[10, 11, 12, 13, 14],
                        positions={"events/0": 15})
        assert [e.id for e in r.events] == ["e0", "dup"] and r.index == [0, 1]
        assert [(d.category, d.index, d.offset) for d in r.dead] == [
            ("duplicate_id", 2, 12), ("malformed_json", 3, 13), ("duplicate_id", 4, 14)]
        assert "'dup' was already processed" in r.dead[0].reason and r.dead[0].raw == values[2]
        assert r.scores.shape == (2,)
        r2 = eng.process([encode(ev(4, "e0")), encode(ev(5))], positions={"events/0": 17})
        assert [e.id for e in r2.events] == ["e5"] and r2.index == [1]
        assert [(d.category, d.index) for d in r2.dead] == [("duplicate_id", 0)]


def test_the_window_is_committed_with_the_state_and_bounded(tmp_path):
    with GraphStore(tmp_path) as store:
        eng = Engine(store, ScoringModel.default(seed=1), dedupe_window=3)
        eng.process([encode(ev(i)) for i in range(4)], positions={"events/0": 4})  # e0 falls out of 3
        eng.process([encode(ev(9))], positions={"events/0": 5}, commit=False)  # never committed
    with GraphStore(tmp_path) as store:
        eng = Engine(store, ScoringModel.default(seed=1), dedupe_window=3)
        r = eng.process([encode(ev(i)) for i in (1, 0, 9)], positions={"events/0": 8})
        # e1 is remembered, e0 was evicted, e9's batch was never committed (a crash replays it as new)
        assert [e.id for e in r.events] == ["e0", "e9"] and [d.category for d in r.dead] == ["duplicate_id"]


def test_dedupe_off_scores_every_repeat(tmp_path):
    with GraphStore(tmp_path) as store:
        r = Engine(store, ScoringModel.default(seed=1), dedupe_window=0).process([encode(ev(0)), encode(ev(1, "e0"))])
        assert r.n_valid == 2 and r.dead == []


def test_embedded_runs_dead_letter_repeats_and_keep_extras_aligned(tmp_path):
    events = [ev(0), ev(1), ev(2, "e0"), ev(3)]
    with GraphStore(tmp_path) as store:
        run = run_batches(Engine(store, ScoringModel.default(seed=1)),
                          [StreamBatch(events, {"typology": ["a", "b", "c", "d"]})], progress=False)
    assert run.event_ids == ["e0", "e1", "e3"] and run.typology == ["a", "b", "d"]
    assert [d.category for d in run.dead] == ["duplicate_id"] and run.scores.shape == (3,)


@pytest.mark.parametrize("size", [20_000, 900_000])
def test_a_poison_record_gives_a_bounded_dead_letter(tmp_path, size):
    raw = json.dumps({"id": "p", "note": "x" * size}).encode()
    with GraphStore(tmp_path) as store:
        r = Engine(store, ScoringModel.default(seed=1), dlq_raw_max_bytes=1024).process(
            [raw], topic="events", partition=0, offsets=[77])
    (d,) = r.dead
    assert d.category == "oversized" and d.offset == 77 and d.raw == raw[:1024]
    assert d.raw_size == len(raw) and len(d.raw_sha256) == 64
    wire = msgspec.json.encode(d)
    assert len(wire) < 2048 and msgspec.json.decode(wire, type=DeadLetter) == d
