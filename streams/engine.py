"""The Engine: one micro-batch from raw bytes (or decoded events) to alerts.

``Engine.process`` is the whole per-batch pipeline of ARCHITECTURE.md:

1. decode + validate      (``streams.events``; bad records become dead letters)
2. load node state        (``state.store.GraphStore``: ids, hot rows from RocksDB)
3. features               (``features.kernels``: one numba pass, updates rows in place)
4. score                  (``models.scoring.ScoringModel``: detector, later TGN)
5. decide + explain       (``models.policy.AlertPolicy``; reasons from contributions)
6. update + persist       (entity risk, detector/policy stream state and the input
                           position, all in one RocksDB write batch)

The Faust agents (``streams.app``) and the embedded runner (``streams.runner``)
are two thin drivers around it. The engine is single-threaded by design: one
engine per partition set, as Kafka partitions are the unit of parallelism.

>>> import tempfile
>>> from streams.events import Event, encode
>>> from state.store import GraphStore
>>> from models.scoring import BatchContext, ScoringModel, Scored
>>> d = tempfile.mkdtemp()
>>> with GraphStore(d) as store:
...     eng = Engine(store, ScoringModel.default(seed=1))
...     r = eng.process([encode(Event(id="e1", ts=10.0, src="a", dst="b", kind="payment", amount=5.0)), b"{"])
...     (r.n_valid, len(r.dead), r.dead[0].category, store.positions())
(1, 1, 'malformed_json', {})
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from features.catalogue import FEATURE_NAMES, N_FEATURES
from features.kernels import compute_features
from features.risk import update_entity_risk
from features.unit import to_unit
from features.layout import Acc
from models.hst import StateMismatchError
from models.policy import AlertPolicy, alert_id
from models.scoring import HEAD_INPUTS, BatchContext, ScoringModel, Scored
from state.store import GraphStore
from streams.alerts import Alert
from streams.events import MAX_EVENT_BYTES, DeadLetter, Event, decode_batch

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
    ) -> None:
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {commit_every}")
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
            values, topic=topic, partition=partition, offsets=offsets, max_bytes=self.max_event_bytes
        )
        t1 = time.perf_counter()
        result = self.process_events(decoded.events, positions=positions, received_at=received, _t0=t0,
                                     commit=commit)
        result.index = decoded.index
        result.dead = decoded.dead
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
        """Process already validated events (file replay, simulators), in order."""
        self._apply_pending()
        t0 = _t0 if _t0 is not None else time.perf_counter()
        received = received_at if received_at is not None else time.time()
        events = list(events)
        n = len(events)
        timings: dict[str, float] = {}
        self._uncommitted += 1
        if positions:
            self._positions.update(positions)
        if n == 0:
            if commit:
                self.commit_if_due()
            return BatchResult(events, [], np.zeros(0), {}, [], [], timings=timings)

        ts = np.fromiter((e.ts for e in events), np.float64, n)
        amount = np.fromiter((np.nan if e.amount is None else e.amount for e in events), np.float64, n)
        ext = [e.src for e in events]
        ext.extend(e.dst for e in events)

        ta = time.perf_counter()
        store = self.store
        ids = store.resolve(ext)
        slots = store.slots(ids)  # may grow the table: read store.table only after this
        table = store.table
        src_id, dst_id = ids[:n], ids[n:]
        src_slot, dst_slot = slots[:n], slots[n:]
        tb = time.perf_counter()
        timings["state"] = tb - ta

        raw = compute_features(table, src_slot, dst_slot, src_id, dst_id, ts, amount)
        unit = to_unit(raw)
        tc = time.perf_counter()
        timings["features"] = tc - tb

        ctx = BatchContext(store, src_slot, dst_slot, ts) if self.model.tgn is not None else None
        scored = self.model.score(unit, learn=self.learn, ctx=ctx)
        table = store.table  # a graph model may have loaded neighbour rows (and grown the table)
        scores = scored.scores
        td = time.perf_counter()
        timings["score"] = td - tc

        update_entity_risk(table, src_slot, dst_slot, ts, scores)
        decision = self.policy.decide(scores, ts, src_slot, table.acc[:, Acc.LAST_ALERT_TS])
        alerts = self._alerts(events, decision, scored, unit, raw, received, src_slot, dst_slot)
        te = time.perf_counter()
        timings["decide"] = te - td

        if commit:
            self.commit_if_due()
        timings["persist"] = time.perf_counter() - te
        timings["total"] = time.perf_counter() - t0
        return BatchResult(
            events=events,
            index=list(range(n)),
            scores=scores,
            components=scored.components,
            alerts=alerts,
            dead=[],
            suppressed=decision.suppressed,
            timings=timings,
        )

    def _alerts(self, events, decision, scored: Scored, unit, raw, received: float,
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
                reasons.extend(self._neighbour_reasons(scored, i, (int(src_slot[i]), int(dst_slot[i])), ev.ts))
            out.append(
                Alert(
                    alert_id=alert_id(ev.id, version),
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

    def _neighbour_reasons(self, scored: Scored, i: int, slots: tuple[int, int], ts: float) -> list[dict]:
        """The temporal neighbours that carried the most attention, for each end of event i."""
        out = []
        table = self.store.table
        for side, name in ((0, "src"), (1, "dst")):
            ids = scored.neighbours[i, side]
            for nid, w in zip(ids.tolist(), scored.attention[i, side].tolist()):
                if nid < 0:
                    continue
                ring = table.ring_nbr[slots[side]]
                times = table.ring_ts[slots[side]][(ring == nid) & (table.ring_ts[slots[side]] < ts)]
                out.append({"neighbour_of": name, "entity": self.store.external_id(nid),
                            "time": float(times.max()) if times.size else None, "attention": round(float(w), 4)})
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
