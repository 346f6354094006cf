"""The embedded driver: aligned run arrays, alerts as JSON lines, positions, delivery before commit."""

from __future__ import annotations

import io

import msgspec
import numpy as np
import pytest

from riskgraph.models.scoring import ScoringModel
from riskgraph.state.store import GraphStore
from riskgraph.streams.alerts import decode_alert
from riskgraph.streams.engine import Engine
from riskgraph.streams.events import decode_batch
from riskgraph.streams.runner import StreamBatch, chunk_events, run_batches

MODEL_SEED = 3


def _batches_with_dead_and_unlabelled(sim, size=400):
    """The simulated stream in StreamBatches; every 5th event unlabelled, two dead letters per batch."""
    events = [msgspec.structs.replace(e, label=None) if i % 5 == 0 else e for i, e in enumerate(sim.events)]
    out = []
    for k, b in enumerate(chunk_events(events, size, {"typology": sim.typology})):
        b.dead = decode_batch([b"{", b'{"id":"x"}'], offsets=[10 * k, 10 * k + 1]).dead
        out.append(b)
    return events, out


def test_run_collects_aligned_arrays_alerts_jsonl_and_positions(tmp_path, sim, reference_run):
    events, batches = _batches_with_dead_and_unlabelled(sim)
    out = io.BytesIO()
    with GraphStore(tmp_path / "store") as store:
        run = run_batches(Engine(store, ScoringModel.default(seed=MODEL_SEED)), batches, progress=False,
                          alerts_out=out, position_key="file/0")
        assert store.positions() == {"file/0": len(events) + 2 * len(batches)}
    n = len(events)
    assert run.n_events == n
    assert run.event_ids == [e.id for e in events]
    np.testing.assert_array_equal(run.ts, [e.ts for e in events])
    assert run.scores.shape == (n,) and run.components["detector"].shape == (n,)
    assert run.labels.dtype == np.int8
    np.testing.assert_array_equal(run.labels, [-1 if e.label is None else e.label for e in events])
    assert (run.labels == -1).sum() == len(range(0, n, 5))
    assert run.typology == sim.typology
    assert len(run.dead) == 2 * len(batches) and {d.category for d in run.dead} == {"malformed_json",
                                                                                  "missing_field"}
    assert run.batch_sizes.tolist() == [len(b.events) for b in batches]
    assert len(run.batch_seconds) == len(run.batch_wall) == len(batches)
    assert (np.diff(run.batch_wall) >= 0).all()
    assert run.latency_ms().shape == (n,)
    assert run.events_per_second > 0
    # labels are not features: the unlabelled copy scores exactly as the reference did
    np.testing.assert_array_equal(run.scores, reference_run.scores)
    lines = out.getvalue().splitlines()
    assert [decode_alert(line) for line in lines] == run.alerts
    assert [a.alert_id for a in run.alerts] == reference_run.alert_ids


def test_positions_continue_from_the_store(tmp_path, sim):
    evs = sim.events[:600]
    with GraphStore(tmp_path) as store:
        run_batches(Engine(store, ScoringModel.default()), chunk_events(evs[:250], 100), progress=False)
        assert store.positions() == {"file/0": 250}
    with GraphStore(tmp_path, create=False) as store:
        r = run_batches(Engine(store, ScoringModel.default()), chunk_events(evs[250:], 100), progress=False)
        assert store.positions() == {"file/0": 600}
    assert r.n_events == 350


def test_commit_every_batches_still_ends_committed(tmp_path, sim):
    with GraphStore(tmp_path) as store:
        run_batches(Engine(store, ScoringModel.default(), commit_every=50), chunk_events(sim.events[:500], 64),
                    progress=False, position_key="k")
        assert store.positions() == {"k": 500}
        assert store.n_dirty == 0


def test_empty_input_gives_empty_aligned_arrays(tmp_path):
    with GraphStore(tmp_path) as store:
        run = run_batches(Engine(store, ScoringModel.default()), [], progress=False)
    assert run.n_events == 0 and run.scores.shape == (0,) and run.labels.shape == (0,)
    assert run.alerts == [] and run.latency_ms().shape == (0,)


def test_chunk_events_slices_extras_with_events(sim):
    parts = list(chunk_events(sim.events[:25], 10, {"typology": sim.typology[:25]}))
    assert [len(p.events) for p in parts] == [10, 10, 5]
    assert [p.extras["typology"] for p in parts] == [sim.typology[0:10], sim.typology[10:20], sim.typology[20:25]]
    with pytest.raises(ValueError, match="batch_size"):
        list(chunk_events(sim.events, 0))


class FailingSink(io.BytesIO):
    """An alert sink that fails (disk full, closed pipe) from the ``fail_at``-th write on."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at, self.writes = fail_at, 0

    def write(self, b) -> int:
        self.writes += 1
        if self.writes >= self.fail_at:
            raise OSError(28, "No space left on device")
        return super().write(b)


def test_alerts_not_delivered_are_not_committed(tmp_path, sim):
    # Engine.process's contract: the driver commits once the batch's alerts are delivered, so
    # a crash in between replays the batch and no alert is lost. Here the sink fails on the
    # first alert: the batch that raised it must not count as consumed.
    batches = list(chunk_events(sim.events, 500))
    with GraphStore(tmp_path / "probe") as store:
        probe = run_batches(Engine(store, ScoringModel.default(seed=MODEL_SEED)), batches, progress=False)
    first_alert_row = probe.event_ids.index(probe.alerts[0].event_id)
    failing_batch = first_alert_row // 500
    with GraphStore(tmp_path / "store") as store:
        with pytest.raises(OSError):
            run_batches(Engine(store, ScoringModel.default(seed=MODEL_SEED)), batches, progress=False,
                        alerts_out=FailingSink(fail_at=1))
    with GraphStore(tmp_path / "store", create=False) as store:
        consumed = store.positions().get("file/0", 0)
    assert consumed <= failing_batch * 500, (
        f"the store says {consumed} events are done, but the alerts of rows "
        f"{failing_batch * 500}..{failing_batch * 500 + 499} were never delivered")
