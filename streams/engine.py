"""The Engine: one micro-batch from raw bytes (or decoded events) to alerts.

``Engine.process`` is the whole per-batch pipeline of ARCHITECTURE.md:

1. decode + validate      (``streams.events``; bad records become dead letters)
2. load node state        (``state.store.GraphStore``: ids, then the batch's rows from RocksDB
                           behind one handle, ``state.batch.BatchRows``, that every later
                           stage reads and writes through)
3. features               (``features.kernels``: one numba pass, updates rows in place)
4. score                  (``models.scoring.ScoringModel``: detector, later TGN)
5. decide + explain       (``models.policy.AlertPolicy``; reasons from contributions)
6. update + persist       (entity risk, node rows, detector/policy stream state and the input
                           position, all in one RocksDB write batch)

The Faust agents (``streams.app``) and the embedded runner (``streams.runner``)
are two thin drivers around it. The engine is single-threaded by design: one
engine per partition set, as Kafka partitions are the unit of parallelism.

>>> import tempfile
>>> from riskgraph.streams.events import Event, encode
>>> from riskgraph.state.store import GraphStore
>>> from riskgraph.models.scoring import BatchContext, ScoringModel, Scored
>>> d = tempfile.mkdtemp()
>>> with GraphStore(d) as store:
...     eng = Engine(store, ScoringModel.default(seed=1))
...     r = eng.process([encode(Event(id="e1", ts=10.0, src="a", dst="b", kind="payment", amount=5.0)), b"{"])
...     (r.n_valid, len(r.dead), r.dead[0].category, store.positions())
(1, 1, 'malformed_json', {})
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from msgspec.structs import replace as msgspec_replace

from riskgraph.features.catalogue import FEATURE_NAMES, N_FEATURES
from riskgraph.features.kernels import compute_features
from riskgraph.features.risk import update_entity_risk
from riskgraph.features.unit import to_unit
from riskgraph.features.layout import RING, Acc
from riskgraph.features.rings import newest_first
from riskgraph.models.hst import StateMismatchError
from riskgraph.models.policy import AlertPolicy, alert_id
from riskgraph.models.scoring import HEAD_INPUTS, BatchContext, ScoringModel, Scored
from riskgraph.state.batch import BatchRows
from riskgraph.state.store import GraphStore
from riskgraph.streams.alerts import Alert
from riskgraph.streams.events import DLQ_RAW_MAX_BYTES, MAX_EVENT_BYTES, DeadLetter, Event, decode_batch, dead_letter, encode

#: Names of the store windows (``state.window``) the engine keeps.
WINDOW_EVENT_IDS = "event_ids"
WINDOW_ALERTS = "alerts"
_ALERT_RECORD = struct.Struct("<dd")  # score, event time; then the model version (UTF-8)


class AlertRecord(NamedTuple):
    """What the engine remembers of an alert it raised (for checking feedback)."""

    score: float
    ts: float
    model_version: str


_BLOB_DETECTOR = "detector"
_BLOB_POLICY = "policy"
_BLOB_VERSION = "model_version"


@dataclass
class BatchResult:
    """What one micro-batch produced; arrays are aligned with ``events``."""

    events: list[Event]
    index: list[int]  # position of each valid event in the input batch
    scores: np.ndarray  # float64[n_valid]
    components: dict[str, np.ndarray]  # named score components (ablation), each float64[n_valid]
    alerts: list[Alert]
    dead: list[DeadLetter]
    suppressed: int = 0  # alerts withheld by dedupe
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def n_valid(self) -> int:
        return len(self.events)


class Engine:
    """Decode, score, decide and persist micro-batches over one graph store.

    ``learn`` controls whether the detector learns from the stream (prequential:
    each event is scored before it is learned). Stream state (node rows, detector
    and policy state, input positions) is restored from the store on start when it
    was written by the same model version, so a restart continues exactly.
    """

    def __init__(
        self,
        store: GraphStore,
        model: ScoringModel,
        policy: AlertPolicy | None = None,
        *,
        learn: bool = True,
        max_event_bytes: int = MAX_EVENT_BYTES,
        reasons_k: int = 3,
        commit_every: int = 1,
        dedupe_window: int = 100_000,
        alert_window: int = 100_000,
        dlq_raw_max_bytes: int = DLQ_RAW_MAX_BYTES,
    ) -> None:
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {commit_every}")
        for name, v in (("dedupe_window", dedupe_window), ("alert_window", alert_window),
                        ("dlq_raw_max_bytes", dlq_raw_max_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        # a repeated event id within the window is a dead letter (its alert id would collide)
        self._seen = store.id_window(WINDOW_EVENT_IDS, dedupe_window) if dedupe_window else None
        # alerts raised, so that feedback can be checked against what this deployment sent
        self._sent = store.window(WINDOW_ALERTS, alert_window) if alert_window else None
        self.dlq_raw_max_bytes = dlq_raw_max_bytes
        self.store = store
        self.commit_every = commit_every
        self._uncommitted = 0  # batches processed since the last store commit
        self._positions: dict[str, int] = {}  # input positions those batches reached
        self.learn = learn
        self.max_event_bytes = max_event_bytes
        self.reasons_k = reasons_k
        self._lock = threading.Lock()
        self.model = model
        self.policy = policy if policy is not None else model.make_policy()
        self._restore_stream_state()
        self._pending: tuple[ScoringModel, AlertPolicy | None] | None = None

    # -- model lifecycle -------------------------------------------------

    def _restore_stream_state(self) -> None:
        version = self.store.blob(_BLOB_VERSION)
        if version is None or version.decode() != self.model.version:
            return  # another model wrote the store: its detector state means nothing to this one
        det = self.store.blob(_BLOB_DETECTOR)
        if det is not None:
            self.model.load_state_bytes(det)
        pol = self.store.blob(_BLOB_POLICY)
        if pol is not None:
            try:
                self.policy.load_state_bytes(pol)
            except StateMismatchError:
                # same model, re-configured policy (e.g. a new threshold): start its state afresh
                self.policy.reset_state()

    def swap_model(self, model: ScoringModel, policy: AlertPolicy | None = None) -> None:
        """Switch to another model at the next batch boundary (hot reload).

        Safe to call from another thread: the batch in flight finishes with the
        old model; the next one starts with the new. Nothing is lost or scored twice,
        because the switch happens between two committed batches.
        """
        with self._lock:
            self._pending = (model, policy)

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.flush()  # the old model's state belongs to the batches it scored
            model, policy = pending
            self.model = model
            self.policy = policy if policy is not None else model.make_policy()

    # -- the pipeline ----------------------------------------------------

    def process(
        self,
        values: Sequence[bytes],
        *,
        topic: str | None = None,
        partition: int | None = None,
        offsets: Sequence[int] | None = None,
        positions: Mapping[str, int] | None = None,
        commit: bool = True,
    ) -> BatchResult:
        """Process raw JSON records; ``positions`` (e.g. {"events/0": next_offset}) are
        committed atomically with the state they produced.

        With ``commit=False`` the caller commits (``commit_if_due``/``flush``) once it
        has delivered the batch's alerts: a crash in between replays the batch, so an
        alert is never lost (and, ids being deterministic, a replayed one is the same).
        """
        t0 = time.perf_counter()
        received = time.time()
        decoded = decode_batch(
            values, topic=topic, partition=partition, offsets=offsets, max_bytes=self.max_event_bytes,
            raw_max_bytes=self.dlq_raw_max_bytes,
        )
        t1 = time.perf_counter()
        result = self.process_events(decoded.events, positions=positions, received_at=received, _t0=t0,
                                     commit=commit)
        # process_events indexed the events it kept (and its duplicates) by position in
        # decoded.events: map both back to positions in ``values``
        result.index = [decoded.index[k] for k in result.index]
        dups = [msgspec_replace(d, index=decoded.index[d.index], topic=topic, partition=partition,
                                offset=None if offsets is None else int(offsets[decoded.index[d.index]]))
                for d in result.dead]
        result.dead = sorted(decoded.dead + dups, key=lambda d: d.index) if dups else decoded.dead
        result.timings["decode"] = t1 - t0
        return result

    def process_events(
        self,
        events: Sequence[Event],
        *,
        positions: Mapping[str, int] | None = None,
        received_at: float | None = None,
        commit: bool = True,
        _t0: float | None = None,
    ) -> BatchResult:
        """Process already validated events (file replay, simulators), in order.

        An event whose id is in the dedupe window (an id seen before, here or earlier in
        the batch) is not scored: it becomes a dead letter ``duplicate_id``, and
        ``result.index`` lists the positions (in ``events``) of those that were scored.
        """
        self._apply_pending()
        t0 = _t0 if _t0 is not None else time.perf_counter()
        received = received_at if received_at is not None else time.time()
        events = list(events)
        kept, dups = self._dedupe(events, received)
        if dups:
            events = [events[k] for k in kept]
        n = len(events)
        timings: dict[str, float] = {}
        self._uncommitted += 1
        if positions:
            self._positions.update(positions)
        if n == 0:
            if commit:
                self.commit_if_due()
            return BatchResult(events, kept, np.zeros(0), {}, [], dups, timings=timings)

        ts = np.fromiter((e.ts for e in events), np.float64, n)
        amount = np.fromiter((np.nan if e.amount is None else e.amount for e in events), np.float64, n)
        ext = [e.src for e in events]
        ext.extend(e.dst for e in events)

        ta = time.perf_counter()
        ids = self.store.resolve(ext)
        rows = self.store.batch(ids)
        src_id, dst_id = ids[:n], ids[n:]
        src_slot, dst_slot = rows.slots[:n], rows.slots[n:]
        tb = time.perf_counter()
        timings["state"] = tb - ta

        raw = compute_features(rows.table, src_slot, dst_slot, src_id, dst_id, ts, amount)
        unit = to_unit(raw)
        tc = time.perf_counter()
        timings["features"] = tc - tb

        ctx = BatchContext(rows, src_slot, dst_slot, ts) if self.model.tgn is not None else None
        scored = self.model.score(unit, learn=self.learn, ctx=ctx)
        scores = scored.scores
        td = time.perf_counter()
        timings["score"] = td - tc

        update_entity_risk(rows.table, src_slot, dst_slot, ts, scores)
        decision = self.policy.decide(scores, ts, src_slot, rows.table.acc[:, Acc.LAST_ALERT_TS])
        alerts = self._alerts(events, decision, scored, unit, raw, received, rows, src_slot, dst_slot)
        te = time.perf_counter()
        timings["decide"] = te - td

        if commit:
            self.commit_if_due()
        timings["persist"] = time.perf_counter() - te
        timings["total"] = time.perf_counter() - t0
        return BatchResult(
            events=events,
            index=kept,
            scores=scores,
            components=scored.components,
            alerts=alerts,
            dead=dups,
            suppressed=decision.suppressed,
            timings=timings,
        )

    def _alerts(self, events, decision, scored: Scored, unit, raw, received: float, rows: BatchRows,
                src_slot: np.ndarray, dst_slot: np.ndarray) -> list[Alert]:
        if len(decision.idx) == 0:
            return []
        scores = scored.scores
        version = self.model.version
        out = []
        for j, i in enumerate(decision.idx.tolist()):
            ev = events[i]
            if scored.head_inputs is not None:  # a trained head decides: explain the head
                x = scored.head_inputs[i]
                values = np.concatenate([np.asarray(raw[i], np.float64), x[N_FEATURES:]])
                reasons = self.policy.reasons(self.model.head_shares(x), HEAD_INPUTS, values, k=self.reasons_k)
            else:
                contrib = self.model.contributions(unit[i], scored.reference(i))
                reasons = self.policy.reasons(contrib, FEATURE_NAMES, raw[i], k=self.reasons_k)
            if scored.neighbours is not None:
                reasons.extend(self._neighbour_reasons(rows, scored, i, (int(src_slot[i]), int(dst_slot[i])),
                                                       ev.ts))
            aid = alert_id(ev.id, version)
            if self._sent is not None:
                self._sent.add(bytes.fromhex(aid), _ALERT_RECORD.pack(float(scores[i]), ev.ts) + version.encode())
            out.append(
                Alert(
                    alert_id=aid,
                    event_id=ev.id,
                    ts=ev.ts,
                    src=ev.src,
                    dst=ev.dst,
                    score=float(scores[i]),
                    threshold=float(decision.threshold[j]),
                    severity=decision.severity[j],
                    model_version=version,
                    reasons=reasons,
                    latency_ms=(time.time() - received) * 1e3,
                    kind=ev.kind,
                    amount=ev.amount,
                )
            )
        return out

    def _dedupe(self, events: list[Event], received: float) -> tuple[list[int], list[DeadLetter]]:
        """Positions of the events to score, and dead letters for repeated ids."""
        seen = self._seen
        if seen is None:
            return list(range(len(events))), []
        kept = seen.add_many([ev.id for ev in events])
        if len(kept) == len(events):
            return kept, []
        dups: list[DeadLetter] = []
        fresh = set(kept)
        for k, ev in enumerate(events):
            if k not in fresh:
                dups.append(dead_letter(
                    encode(ev), f"event id {ev.id!r} was already processed (ids must be unique; this deployment "
                    f"remembers the last {seen.capacity:,}): not scored again", "duplicate_id",
                    index=k, received_at=received, raw_max_bytes=self.dlq_raw_max_bytes))
        return kept, dups

    def alert_record(self, alert_id_hex: str) -> AlertRecord | None:
        """Score, event time and model version of an alert this engine raised and still
        remembers (the last ``alert_window`` alerts, committed with the state); else None."""
        if self._sent is None:
            return None
        try:
            key = bytes.fromhex(alert_id_hex)
        except (ValueError, TypeError):
            return None
        rec = self._sent.get(key)
        if rec is None:
            return None
        score, ts = _ALERT_RECORD.unpack_from(rec)
        return AlertRecord(score, ts, rec[_ALERT_RECORD.size:].decode())

    def commit_state(self) -> None:
        """Commit stream state changed outside a batch (e.g. the threshold moved by feedback)
        now. Call it only between batches: it also commits what a batch left uncommitted."""
        self._uncommitted = max(self._uncommitted, 1)
        self.flush()

    @staticmethod
    def _neighbour_reasons(rows: BatchRows, scored: Scored, i: int, slots: tuple[int, int], ts: float) -> list[dict]:
        """The temporal neighbours that carried the most attention, for each end of event i,
        with the time of their last interaction before it."""
        out = []
        table = rows.table
        cols = np.empty(RING, np.int64)
        for side, name in ((0, "src"), (1, "dst")):
            s = slots[side]
            m = newest_first(table.ring_nbr, table.ring_ts, table.ring_n, s, ts, RING, cols)
            nbrs, times = table.ring_nbr[s, cols[:m]], table.ring_ts[s, cols[:m]]
            for nid, w in zip(scored.neighbours[i, side].tolist(), scored.attention[i, side].tolist()):
                if nid < 0:
                    continue
                seen = times[nbrs == nid]
                out.append({"neighbour_of": name, "entity": rows.external_id(nid),
                            "time": float(seen.max()) if seen.size else None, "attention": round(float(w), 4)})
        return out

    def commit_if_due(self) -> bool:
        """Commit when ``commit_every`` batches are pending; True if it committed."""
        if self._uncommitted >= self.commit_every:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Commit everything processed so far: node rows, ids, detector and policy
        state and input positions, in one RocksDB write batch."""
        if self._uncommitted == 0:
            return
        self.store.commit(
            positions=self._positions,
            blobs={
                _BLOB_DETECTOR: self.model.state_bytes(),
                _BLOB_POLICY: self.policy.state_bytes(),
                _BLOB_VERSION: self.model.version.encode(),
            },
        )
        self._uncommitted = 0
        self._positions = {}
