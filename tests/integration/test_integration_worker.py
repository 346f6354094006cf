"""The Faust worker as a real subprocess against the real broker.

* One stream of simulated traffic with malformed records mixed in at known offsets goes
  through one worker (the module fixture ``stream_run``). Every valid event is scored
  exactly once, every malformed record is on the dead-letter topic exactly once (raw
  bytes, reason, category, original offset), and the alerts on the alerts topic are the
  alerts ``riskgraph replay`` writes in embedded mode for the same valid events: same
  ids, scores, thresholds, severities and reasons, although the two cut the stream into
  different micro-batches (500 vs 1000). The final stream state (detector, policy, every
  node record) is byte-identical too. /metrics reports what happened.
* SIGTERM in the middle of a backlog, then a restart on the same state and group: no
  event lost, no alert duplicated, state identical to the embedded replay's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest

from riskgraph.broker import free_ports
from riskgraph.cli import main as cli_main
from riskgraph.settings import Settings
from riskgraph.simulators.transactions import SimConfig, SimResult, simulate, write_events
from riskgraph.state.store import GraphStore
from riskgraph.streams.alerts import Alert, decode_alert
from riskgraph.streams.events import DeadLetter
from .worker_proc import (WorkerConfig, WorkerProcess, clean_environ, metric, metric_sum, read_topic,
                          send_all)

SIM = SimConfig(seed=11, n_persons=1500, n_merchants=200, days=2)

_GOOD = {"id": "bad-0", "ts": 1704067300.0, "src": "p-bad", "dst": "m-bad", "kind": "payment", "amount": 5.0}


def _variant(**changes: Any) -> bytes:
    """A JSON event like ``_GOOD`` with fields changed (``...`` removes one)."""
    d = {**_GOOD, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


#: (value, expected dead-letter category): every way a record can be bad, one each.
MALFORMED: list[tuple[bytes | None, str]] = [
    (b"not json at all", "malformed_json"),
    (b'{"id":"x","ts":1', "malformed_json"),  # truncated
    (b"", "malformed_json"),
    (None, "malformed_json"),  # a tombstone (null value)
    (b"\xff\xfe\x00", "malformed_json"),  # not UTF-8
    (b'{"id":"a","ts":NaN}', "malformed_json"),
    (_variant(src=...), "missing_field"),
    (_variant(ts=...), "missing_field"),
    (_variant(amount="12.5"), "wrong_type"),
    (_variant(ts="2024-01-01T00:00:00"), "wrong_type"),
    (_variant(src=17), "wrong_type"),
    (b"[1,2,3]", "wrong_type"),
    (b"null", "wrong_type"),
    (_variant(features={"f": "x"}), "wrong_type"),
    (_variant(ts=-1.0), "ts_out_of_range"),
    (_variant(ts=5e9), "ts_out_of_range"),
    (_variant(pad="x" * 17_000), "oversized"),  # valid but for its size (> 16 KiB)
    (_variant(label=5), "invalid_value"),
    (_variant(id=""), "invalid_value"),
    (_variant(kind="k" * 65), "invalid_value"),
    (b'{"id":"a","ts":1.0,"src":"a","dst":"b","kind":"payment","amount":1e999}', "non_finite"),
]

def _comparable(a: Alert, *, reasons: bool = True) -> Alert:
    """The alert without ``latency_ms`` (wall-clock time); without ``reasons`` if asked."""
    return msgspec.structs.replace(a, latency_ms=0.0, **({} if reasons else {"reasons": []}))


@pytest.fixture(scope="module")
def sim() -> SimResult:
    return simulate(SIM)


def interleave(events_bytes: list[tuple[bytes, bytes]], bad: list[tuple[bytes | None, str]]
               ) -> tuple[list[tuple[bytes, bytes | None]], dict[int, tuple[bytes | None, str]]]:
    """Valid records with the bad ones spread evenly between them; returns the records in
    send order and ``{offset: (value, category)}`` of the bad ones (one partition: offset =
    position)."""
    records: list[tuple[bytes, bytes | None]] = []
    bad_at: dict[int, tuple[bytes | None, str]] = {}
    step = max(1, len(events_bytes) // (len(bad) + 1))
    queue = list(bad)
    for i, kv in enumerate(events_bytes):
        if queue and i and i % step == 0:
            value, cat = queue.pop(0)
            bad_at[len(records)] = (value, cat)
            records.append((f"bad-{len(records)}".encode(), value))
        records.append(kv)
    for value, cat in queue:  # fewer events than slots: the rest at the end
        bad_at[len(records)] = (value, cat)
        records.append((f"bad-{len(records)}".encode(), value))
    return records, bad_at


def event_records(sim: SimResult) -> list[tuple[bytes, bytes]]:
    from riskgraph.streams.events import encode

    return [(e.src.encode(), encode(e)) for e in sim.events]


def embedded_replay(sim: SimResult, tmp: Path) -> tuple[list[Alert], Path]:
    """``riskgraph replay`` (in process) over the same valid events: its alerts and state dir."""
    events_path, alerts_path, state = tmp / "events.jsonl", tmp / "replay-alerts.jsonl", tmp / "replay-state"
    write_events(sim, events_path)
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()) as out:
        for k in list(os.environ):
            if k not in clean_environ():
                mp.delenv(k)  # defaults: built-in model, seed 0, the same as the worker's
        rc = cli_main(["replay", str(events_path), "--alerts", str(alerts_path), "--entities", "",
                       "--no-progress", "--state", str(state)])
    assert rc == 0, out.getvalue()
    summary = json.loads(out.getvalue())
    assert summary["events"] == len(sim.events) and summary["dead_letters"] == 0
    alerts = [decode_alert(line) for line in alerts_path.read_bytes().splitlines()]
    assert summary["alerts"] == len(alerts)
    return alerts, state


@dataclass
class StoreSnapshot:
    positions: dict[str, int]
    detector: bytes | None
    policy: bytes | None
    records: dict[str, dict[str, Any]]  # external id -> node record, neighbours by external id


def snapshot(state_dir: Path | str) -> StoreSnapshot:
    """The committed stream state of a (closed) store.

    Internal node ids are assigned in the order a batch resolves its entities (all
    sources, then all destinations), so they depend on batch boundaries; the state they
    hold must not. Records are keyed by external id, neighbours translated to theirs."""
    with GraphStore(state_dir) as store:
        rows = [(nid, ext, rec.copy()) for nid, ext, rec in store.iter_records()]
        ext_of = {nid: ext for nid, ext, _ in rows}
        recs: dict[str, dict[str, Any]] = {}
        for _, ext, rec in rows:
            fields = {name: rec[name].tobytes() for name in rec.dtype.names if name != "ring_nbr"}
            fields["ring_nbr"] = [ext_of.get(int(n)) for n in rec["ring_nbr"]]
            recs[ext] = fields
        return StoreSnapshot(store.positions(), store.blob("detector"), store.blob("policy"), recs)


# -- one stream through one worker ------------------------------------------------------------


@dataclass
class StreamRun:
    cfg: WorkerConfig
    n_valid: int
    records: list[tuple[bytes, bytes | None]]
    bad_at: dict[int, tuple[bytes | None, str]]
    final: dict  # /metrics once everything was processed
    settled: dict  # /metrics again, a while later
    alerts: list[Alert]
    dead: list[Any]  # ConsumerRecords of the DLQ topic
    replay_alerts: list[Alert]
    worker_state: StoreSnapshot
    replay_state: StoreSnapshot
    exit_code: int


@pytest.fixture(scope="module", params=["batch", "stream"])
def stream_run(request: pytest.FixtureRequest, kafka_bootstrap: str, sim: SimResult,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamRun]:
    """The whole stream through one worker, once per consumption path (``RISKGRAPH_CONSUME``)."""
    tmp = tmp_path_factory.mktemp(f"stream-run-{request.param}")
    cfg = WorkerConfig.fresh(kafka_bootstrap, tmp / "state", metrics_port=free_ports(1)[0], tag="once",
                             batch_size=500, extra={"RISKGRAPH_CONSUME": request.param})
    records, bad_at = interleave(event_records(sim), MALFORMED)
    n_valid = len(sim.events)
    worker = WorkerProcess(cfg, tmp / "worker.log")
    with worker:
        # /metrics answers once the worker created its topics: produce into the live worker
        worker.wait_for("the metrics endpoint", lambda s: True, timeout=60)
        send_all(kafka_bootstrap, cfg.events_topic, records)
        final = worker.wait_scored(n_valid, dead=len(MALFORMED), timeout=90)
        alerts = [decode_alert(r.value) for r in read_topic(kafka_bootstrap, cfg.alerts_topic)]
        dead = read_topic(kafka_bootstrap, cfg.dlq_topic)
        time.sleep(1.5)  # anything processed twice would show up now
        settled = worker.metrics()
        exit_code = worker.terminate()
    replay_alerts, replay_dir = embedded_replay(sim, tmp)
    yield StreamRun(cfg, n_valid, records, bad_at, final, settled, alerts, dead, replay_alerts,
                    snapshot(cfg.state_dir), snapshot(replay_dir), exit_code)


@pytest.mark.kafka
@pytest.mark.slow
def test_every_valid_event_is_scored_exactly_once(stream_run: StreamRun) -> None:
    r = stream_run
    for samples in (r.final, r.settled):
        assert metric(samples, "riskgraph_events_total", outcome="scored") == r.n_valid
        assert metric(samples, "riskgraph_events_total", outcome="dead_letter") == len(MALFORMED)
        assert metric(samples, "riskgraph_events_total", outcome="skipped_replayed") == 0
    # the store's position is the end of the topic: valid and bad records all consumed
    assert r.worker_state.positions == {f"{r.cfg.events_topic}/0": len(r.records)}
    # the detector learned each event once, in order: its state is the embedded run's, byte for byte
    assert r.worker_state.detector == r.replay_state.detector
    assert r.worker_state.policy == r.replay_state.policy
    assert r.worker_state.records == r.replay_state.records
    assert r.exit_code == 0


@pytest.mark.kafka
@pytest.mark.slow
def test_malformed_records_are_dead_lettered_once_with_reason_and_offset(stream_run: StreamRun) -> None:
    r = stream_run
    letters = [(rec, msgspec.json.decode(rec.value, type=DeadLetter)) for rec in r.dead]
    offsets = [d.offset for _, d in letters]
    assert sorted(offsets) == sorted(r.bad_at), "each bad record once, no valid one"
    assert len(set(offsets)) == len(offsets)
    for rec, d in letters:
        value, category = r.bad_at[d.offset]
        assert d.category == category, (value, d.reason)
        value = value or b""
        if len(value) <= Settings().dlq_raw_max_bytes:
            assert d.raw == value and d.raw_size is None
        else:  # bounded: the head, the full size and the digest
            assert d.raw == value[:Settings().dlq_raw_max_bytes] and d.raw_size == len(value)
            assert d.raw_sha256 == hashlib.sha256(value).hexdigest()
        assert d.reason
        assert (d.topic, d.partition) == (r.cfg.events_topic, 0)
        assert rec.key == r.records[d.offset][0]  # keyed like the original record
    by_cat: dict[str, int] = {}
    for _, cat in MALFORMED:
        by_cat[cat] = by_cat.get(cat, 0) + 1
    for cat, n in by_cat.items():
        assert metric(r.settled, "riskgraph_dead_letters_total", category=cat) == n, cat
    oversized = next(d for _, d in letters if d.category == "oversized")
    assert "exceeds the 16384-byte limit" in oversized.reason


@pytest.mark.kafka
@pytest.mark.slow
def test_alerts_are_those_of_the_embedded_replay(stream_run: StreamRun) -> None:
    r = stream_run
    assert r.replay_alerts, "the stream must raise alerts for the comparison to mean anything"
    ids = [a.alert_id for a in r.alerts]
    assert len(ids) == len(set(ids))
    # ids, events, scores, thresholds, severities, model version, in the same order
    assert ([_comparable(a, reasons=False) for a in r.alerts]
            == [_comparable(a, reasons=False) for a in r.replay_alerts])
    assert metric_sum(r.settled, "riskgraph_alerts_total") == len(r.alerts)


@pytest.mark.kafka
@pytest.mark.slow
def test_alert_reasons_are_those_of_the_embedded_replay(stream_run: StreamRun) -> None:
    # An alert replayed after a crash must be the same alert, explanation included.
    r = stream_run
    differ = [(a.event_id, a.reasons, b.reasons) for a, b in zip(r.alerts, r.replay_alerts) if a.reasons != b.reasons]
    assert not differ, f"{len(differ)} of {len(r.alerts)} alerts explained differently, first: {differ[0]}"


@pytest.mark.kafka
@pytest.mark.slow
def test_metrics_scrape_after_traffic(stream_run: StreamRun) -> None:
    s, r = stream_run.settled, stream_run
    n_records = len(r.records)
    names = {name for name, _ in s}
    for needed in ("riskgraph_events_total", "riskgraph_alerts_total", "riskgraph_dead_letters_total",
                   "riskgraph_end_to_end_latency_seconds_bucket", "riskgraph_batch_processing_seconds_count",
                   "riskgraph_model_inference_seconds_count", "riskgraph_batch_size_events_count",
                   "riskgraph_consumer_lag_records", "riskgraph_alert_threshold", "riskgraph_model_info"):
        assert needed in names, needed
    # every record went through exactly one batch
    assert metric(s, "riskgraph_batch_size_events_sum") == n_records
    n_batches = metric(s, "riskgraph_batch_size_events_count")
    assert n_batches >= n_records / r.cfg.batch_size
    assert metric(s, "riskgraph_batch_processing_seconds_count") == n_batches
    assert metric(s, "riskgraph_model_inference_seconds_count") == n_batches
    assert 0 < metric(s, "riskgraph_model_inference_seconds_sum") < metric(s, "riskgraph_batch_processing_seconds_sum")
    # biggest batch at most batch_size: the +Inf bucket equals the batch_size bucket
    assert metric(s, "riskgraph_batch_size_events_bucket", le=f"{float(r.cfg.batch_size)}") == n_batches
    # one end-to-end observation per alert, each positive and below a minute
    n_alerts = len(r.alerts)
    assert metric(s, "riskgraph_end_to_end_latency_seconds_count") == n_alerts
    assert metric(s, "riskgraph_end_to_end_latency_seconds_bucket", le="+Inf") == n_alerts
    assert metric(s, "riskgraph_end_to_end_latency_seconds_bucket", le="30.0") == n_alerts
    assert 0 < metric(s, "riskgraph_end_to_end_latency_seconds_sum") < 60 * n_alerts
    by_sev = {dict(lbl)["severity"]: v for (name, lbl), v in s.items() if name == "riskgraph_alerts_total"}
    assert by_sev == {sev: float(sum(a.severity == sev for a in r.alerts)) for sev in {a.severity for a in r.alerts}}
    assert metric(s, "riskgraph_consumer_lag_records", topic=r.cfg.events_topic, partition="0") == 0
    assert metric(s, "riskgraph_alert_threshold") == pytest.approx(r.replay_alerts[-1].threshold, abs=0.05)
    version = r.replay_alerts[0].model_version
    assert metric(s, "riskgraph_model_info", version=version) == 1


def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    """The consumer group's committed offset on partition 0 (0 when none)."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:  # reads the group's offset without joining it
        return reader.committed(TopicPartition(topic, 0)) or 0
    finally:
        reader.close()


# -- SIGTERM and restart ------------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.slow
def test_sigterm_mid_backlog_then_restart_loses_and_duplicates_nothing(
        kafka_bootstrap: str, sim: SimResult, tmp_path: Path) -> None:
    # small batches: the backlog takes long enough to be interrupted in the middle
    cfg = WorkerConfig.fresh(kafka_bootstrap, tmp_path / "state", metrics_port=free_ports(1)[0], tag="term",
                             batch_size=25)
    n = len(sim.events)
    first = WorkerProcess(cfg, tmp_path / "worker-1.log")
    with first:
        first.wait_for("the metrics endpoint", lambda s: True, timeout=60)
        send_all(kafka_bootstrap, cfg.events_topic, event_records(sim))
        at_stop = first.wait_for("a third of the backlog",
                                 lambda s: metric(s, "riskgraph_events_total", outcome="scored") >= n // 3,
                                 timeout=60, interval=0.02)
        assert first.terminate(timeout=60) == 0, first.log_tail()
    scored_before = metric(at_stop, "riskgraph_events_total", outcome="scored")
    stopped_at = snapshot(cfg.state_dir).positions[f"{cfg.events_topic}/0"]
    assert scored_before <= stopped_at < n, "SIGTERM must land in the middle of the backlog"
    committed = committed_offset(kafka_bootstrap, cfg.app_id, cfg.events_topic)
    assert committed <= stopped_at, "Kafka's committed offset must never pass the store's"

    second = WorkerProcess(cfg, tmp_path / "worker-2.log")
    with second:
        done = second.wait_scored(n - stopped_at, timeout=90)
        alerts = [decode_alert(r.value) for r in read_topic(kafka_bootstrap, cfg.alerts_topic)]
        time.sleep(1.0)
        settled = second.metrics()
        assert second.terminate() == 0, second.log_tail()
    # the restart scored exactly what the first run had not committed
    assert metric(done, "riskgraph_events_total", outcome="scored") == n - stopped_at
    assert metric(settled, "riskgraph_events_total", outcome="scored") == n - stopped_at
    # redelivered records below the store's position were recognised and skipped
    assert metric(settled, "riskgraph_events_total", outcome="skipped_replayed") == stopped_at - committed
    after = snapshot(cfg.state_dir)
    assert after.positions == {f"{cfg.events_topic}/0": n}

    replay_alerts, replay_dir = embedded_replay(sim, tmp_path)
    ids = [a.alert_id for a in alerts]
    assert len(ids) == len(set(ids)), "an alert was sent twice"
    assert set(ids) == {a.alert_id for a in replay_alerts}
    assert ([_comparable(a, reasons=False) for a in alerts]
            == [_comparable(a, reasons=False) for a in replay_alerts])
    ref = snapshot(replay_dir)
    assert (after.detector, after.policy) == (ref.detector, ref.policy)
    assert after.records == ref.records


@pytest.mark.kafka
@pytest.mark.slow
def test_sigkill_mid_backlog_then_restart_replays_at_most_the_batch_in_flight(
        kafka_bootstrap: str, sim: SimResult, tmp_path: Path) -> None:
    # A hard crash: Kafka's committed offset trails the store's, so the restart is handed
    # records the store already holds; it must skip them, and may only re-send the alerts of
    # a batch that was sent but not committed: the same alerts (ids, scores), never new ones.
    # Faust's own variables: the killed member's session expires in 6 s, not the default 60 s
    cfg = WorkerConfig.fresh(kafka_bootstrap, tmp_path / "state", metrics_port=free_ports(1)[0], tag="kill",
                             batch_size=25, extra={"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"})
    n = len(sim.events)
    first = WorkerProcess(cfg, tmp_path / "worker-1.log")
    with first:
        first.wait_for("the metrics endpoint", lambda s: True, timeout=60)
        send_all(kafka_bootstrap, cfg.events_topic, event_records(sim))
        first.wait_for("a third of the backlog",
                       lambda s: metric(s, "riskgraph_events_total", outcome="scored") >= n // 3,
                       timeout=60, interval=0.02)
        first.proc.kill()
        first.proc.wait(10)
    stopped_at = snapshot(cfg.state_dir).positions[f"{cfg.events_topic}/0"]
    committed = committed_offset(kafka_bootstrap, cfg.app_id, cfg.events_topic)
    assert committed <= stopped_at < n

    second = WorkerProcess(cfg, tmp_path / "worker-2.log")
    with second:
        second.wait_scored(n - stopped_at, timeout=90)
        alerts = [decode_alert(r.value) for r in read_topic(kafka_bootstrap, cfg.alerts_topic)]
        time.sleep(1.0)
        settled = second.metrics()
        assert second.terminate() == 0, second.log_tail()
    assert metric(settled, "riskgraph_events_total", outcome="scored") == n - stopped_at
    assert metric(settled, "riskgraph_events_total", outcome="skipped_replayed") == stopped_at - committed
    after = snapshot(cfg.state_dir)
    assert after.positions == {f"{cfg.events_topic}/0": n}

    replay_alerts, replay_dir = embedded_replay(sim, tmp_path)
    first_seen: dict[str, Alert] = {}
    for a in alerts:
        if a.alert_id in first_seen:  # re-sent after the crash: must be the very same alert
            assert _comparable(a, reasons=False) == _comparable(first_seen[a.alert_id], reasons=False)
        first_seen.setdefault(a.alert_id, a)
    assert len(alerts) - len(first_seen) <= cfg.batch_size, "more re-sent than one batch can hold"
    assert ([_comparable(a, reasons=False) for a in first_seen.values()]
            == [_comparable(a, reasons=False) for a in replay_alerts])
    ref = snapshot(replay_dir)
    assert (after.detector, after.policy) == (ref.detector, ref.policy)
    assert after.records == ref.records


# -- the cause, without a broker -----------------------------------------------------------------


def test_embedded_alerts_do_not_depend_on_micro_batch_size(sim: SimResult, tmp_path: Path) -> None:
    """The worker's batches are whatever Faust hands over; replay's are fixed. The alerts,
    reasons included, must not depend on where the stream was cut.

    Reasons come from ``model.contributions`` over the detector's reference mass, which the
    Engine reads after the whole batch was scored and learned: when a window pivot falls
    inside a batch, alerts scored before it are explained with the next window's mass.
    """
    from riskgraph.models.scoring import ScoringModel
    from riskgraph.streams.engine import Engine
    from riskgraph.streams.runner import chunk_events, run_batches

    def run(batch: int) -> list[Alert]:
        with GraphStore(tmp_path / f"b{batch}") as store:
            eng = Engine(store, ScoringModel.default(seed=0))
            return run_batches(eng, chunk_events(sim.events, batch), progress=False).alerts

    a, b = run(500), run(1000)
    assert [_comparable(x, reasons=False) for x in a] == [_comparable(x, reasons=False) for x in b]
    differ = [x.event_id for x, y in zip(a, b) if x.reasons != y.reasons]
    assert not differ, f"{len(differ)} of {len(a)} alerts have other reasons with batches of 500 vs 1000"
