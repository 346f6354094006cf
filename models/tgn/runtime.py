"""Streaming TGN over a node table: score a micro-batch, then write the memory it produced.

Memory semantics (PyG's ``TGNMemory`` in training mode, with the raw message store
packed into each node's row, see ``models.tgn.model``):

1. **score** batch ``B``: every node the batch reads (both ends, their temporal
   neighbours, negatives in training) gets its memory by folding its pending message --
   its last interaction before ``B`` -- into its stored memory with the GRU. Embeddings
   attend over the ``k`` most recent ring entries strictly older than each event; the
   decoders give the link logit and the risk logit. So an event is scored with memory
   that reflects every earlier batch but not ``B`` itself, and all events of ``B``
   touching a node see the same memory (as in PyG, where memory changes per batch).
2. **update** after ``B``: each end's row gets the folded memory from step 1 and, as its
   new pending message, its *last* interaction in ``B`` (latest time; ties go to the later
   event, and within an event to the destination role) -- PyG's ``LastAggregator``.
   ``mem_ts`` becomes that interaction's time; it never moves backwards (a late event
   gets ``dt = 0``). A node's first message has ``dt = 0`` (PyG would use ``t - 0``).
   Only the rows of the batch's two ends are written -- neighbours' and negatives'
   folded memories are recomputed when needed, never stored -- so the store only has
   to persist the rows it already marks dirty.
3. **fold timing**: training folds a pending message when the row is next *read*
   (autograd then reaches the GRU and the message functions, as in PyG); serving
   folds it when the row is *written* (``fold_on_write``), which gives the same memory
   and leaves no GRU work for the rows read as neighbours.

Training and serving run the same :meth:`TGNRuntime.forward`: with autograd and
negatives in training, under ``torch.inference_mode()`` in :meth:`TGNRuntime.score_batch`.

>>> import numpy as np
>>> from riskgraph.features.layout import NodeArrays, init_rows
>>> from riskgraph.models.tgn.model import TGN, TGNConfig
>>> model = TGN.from_config(TGNConfig(mem_dim=8, time_dim=4, emb_dim=8, edge_dim=2, k=2), seed=0)
>>> rt = TGNRuntime(model, fold_on_write=False)
>>> t = NodeArrays.empty(3, model.row_width); init_rows(t, np.arange(3))
>>> ident = lambda ids: ids  # slots == internal ids in this in-memory table
>>> s = rt.score_batch(t, np.array([0, 1]), np.array([1, 2]), np.array([1.0, 2.0]), np.zeros((2, 2)), ident)
>>> s.risk.shape, bool(((s.link_surprise >= 0) & (s.link_surprise <= 1)).all())
((2,), True)
>>> rt.update_batch(t, s)
>>> t.mem_ts.tolist(), t.mem[:, model.layout.kind].tolist()
([1.0, 2.0, 2.0], [1.0, 1.0, 2.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from riskgraph.features.checks import check_table
from riskgraph.features.layout import NodeArrays
from riskgraph.models.tgn.model import AS_DESTINATION, AS_SOURCE, NO_MESSAGE, TGN, ring_edge_attr
from riskgraph.models.tgn.neighbours import Neighbours, recent_neighbours

#: Maps internal node ids to their rows in the table (-1: not resident). A micro-batch's
#: rows in the graph store provide one (``state.batch.BatchRows.peek``), which loads missing
#: rows and may grow the table in place (new arrays, same ``NodeArrays``): the runtime reads
#: the table's arrays only after it. An in-memory table whose slots are the ids uses identity.
SlotsOf = Callable[[np.ndarray], np.ndarray]
#: Optional: the memory of internal node ids read only (temporal neighbours), as
#: ``(lead, whole, rows)``: ``lead`` float32[n, mem_dim] the leading ``mem_dim`` columns of
#: each ``mem`` row, ``whole`` int64 positions of the rows whose message-kind column is
#: non-zero (a pending message to fold), ``rows`` float32[len(whole), row_width] those rows
#: in full (see :attr:`TGNRuntime.lead_columns`). The graph store provides one
#: (``GraphStore.peek_lead``) that serves rows not resident in the table from a compact
#: memory cache instead of loading them, and copies 64 instead of 154 floats per row.
LeadOf = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class MemoryUpdate:
    """Rows to write after a batch: full ``mem`` rows and ``mem_ts`` of the batch's ends."""

    slots: np.ndarray  # int64 [W], distinct
    rows: np.ndarray  # float32 [W, row_width]
    mem_ts: np.ndarray  # float64 [W]


@dataclass
class BatchForward:
    """One forward pass over a batch (tensors keep autograd history in training)."""

    link_logit: Tensor  # [n], src -> dst
    risk_logit: Tensor  # [n]
    neg_logit: Tensor | None  # [n], src -> negative destination (training)
    attn: Tensor  # [Q, heads, k], queries are src (n), dst (n), then negatives (n)
    nbr: Neighbours  # the queries' neighbours, aligned with ``attn``
    update: MemoryUpdate


@dataclass
class TGNScores:
    """Serving output for a batch of ``n`` events (numpy)."""

    risk: np.ndarray  # float64 [n], sigmoid of the risk logit
    link_prob: np.ndarray  # float64 [n], how expected the interaction was
    link_surprise: np.ndarray  # float64 [n], 1 - link_prob
    top_ids: np.ndarray  # int64 [n, 2, top_k]: most attended neighbours of src ([:, 0]) and dst ([:, 1]); -1: none
    top_attn: np.ndarray  # float32 [n, 2, top_k]: their attention weight (mean over heads), descending
    update: MemoryUpdate


def _index(x: np.ndarray, name: str, n: int, upper: int) -> np.ndarray:
    a = np.asarray(x)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if n and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, np.int64)
    if n and (a.min() < 0 or a.max() >= upper):
        raise ValueError(f"{name} must be in [0, {upper}), got values {a.min()}..{a.max()}")
    return a


class TGNRuntime:
    """Runs a :class:`~models.tgn.model.TGN` batch by batch over a ``NodeArrays`` table.

    The table's ``mem`` width must be ``model.row_width``; rows of nodes never seen
    come from ``features.layout.init_rows`` (zero memory, no pending message).

    ``fold_on_write`` (serving) folds each written row's new pending message into its
    memory right away, with the same :meth:`TGN.apply_pending`, and marks it consumed.
    The fold depends only on the row and the weights, so the memory a later batch
    reads is the same as when folding on read -- but the GRU then runs once per written
    row instead of once per row read (every neighbour of every event). Training must
    fold on read (``fold_on_write=False``): that is where the GRU and the message
    functions get their gradient. Tables written either way can be read by both.
    """

    def __init__(self, model: TGN, device: str | torch.device | None = None, top_k: int | None = None,
                 fold_on_write: bool = True) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        self.fold_on_write = fold_on_write
        top_k = min(3, model.config.k) if top_k is None else top_k
        if not 1 <= top_k <= model.config.k:
            raise ValueError(f"top_k must be in [1, k={model.config.k}], got {top_k}")
        self.top_k = top_k

    # -- inputs --------------------------------------------------------------

    def _check(self, table: NodeArrays, src_slot, dst_slot, ts, edge_feats):
        check_table(table)
        width = self.model.row_width
        if table.mem.dtype != np.float32 or table.mem.shape != (table.capacity, width):
            raise ValueError(f"table.mem must be float32 of shape ({table.capacity}, {width}) for this model, "
                             f"got {table.mem.dtype} {table.mem.shape}")
        ts = np.asarray(ts)
        if ts.ndim != 1 or not (np.issubdtype(ts.dtype, np.floating) or np.issubdtype(ts.dtype, np.integer)):
            raise ValueError(f"ts must be a 1-D array of numbers, got {ts.dtype} {ts.shape}")
        ts = np.ascontiguousarray(ts, np.float64)
        if not np.isfinite(ts).all():
            raise ValueError("ts must be finite")
        n = ts.shape[0]
        src_slot = _index(src_slot, "src_slot", n, table.capacity)
        dst_slot = _index(dst_slot, "dst_slot", n, table.capacity)
        e = np.asarray(edge_feats)
        if e.shape != (n, self.model.config.edge_dim):
            raise ValueError(f"edge_feats must have shape ({n}, {self.model.config.edge_dim}), got {e.shape}")
        if n and not (np.issubdtype(e.dtype, np.floating) or np.issubdtype(e.dtype, np.integer)):
            raise ValueError(f"edge_feats must be numbers, got dtype {e.dtype}")
        e = np.ascontiguousarray(e, np.float32)
        if not np.isfinite(e).all():
            raise ValueError("edge_feats must be finite")
        return src_slot, dst_slot, ts, e

    def neighbour_ids(self, table: NodeArrays, src_slot: np.ndarray, dst_slot: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Distinct internal ids of the temporal neighbours scoring this batch will read.

        ``slots_of`` must find their rows when the batch is scored. A batch's
        ``BatchRows.peek`` loads what is missing (see :data:`SlotsOf`); a slot function
        that only looks up resident rows needs these loaded first.
        """
        q = np.concatenate([np.asarray(src_slot), np.asarray(dst_slot)])
        nb = recent_neighbours(table, q, np.tile(np.asarray(ts, np.float64), 2), self.model.config.k)
        return np.unique(nb.ids[nb.valid])

    def _check_rows(self, rows: np.ndarray, q_u: np.ndarray, nbr_ids: np.ndarray, nbr_pos: np.ndarray) -> None:
        """Clear error for corrupt rows: ``rows`` are the query slots ``q_u``'s, then neighbours
        ``nbr_ids[nbr_pos]``'s."""
        bad = ~np.isin(rows[:, self.model.layout.kind], (NO_MESSAGE, AS_SOURCE, AS_DESTINATION)) \
            | ~np.isfinite(rows).all(axis=1)
        if bad.any():
            where = [f"slot {q_u[i]}" if i < q_u.shape[0] else f"node {nbr_ids[nbr_pos[i - q_u.shape[0]]]}"
                     for i in np.flatnonzero(bad)[:10]]
            raise ValueError("corrupt node rows (non-finite values, or a pending-message kind other than "
                             f"0, 1, 2) at {', '.join(where)}")

    @property
    def lead_columns(self) -> tuple[int, int]:
        """``(width, flag)`` for a :data:`LeadOf`: the memory's width, and the column whose
        non-zero value marks a row with a pending message (it needs the whole row)."""
        lay = self.model.layout
        return lay.mem_dim, lay.kind

    def _neighbour_lead(self, ids: np.ndarray, lead_of: LeadOf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``lead_of(ids)``, checked: shapes, dtypes, positions in range, finite memory."""
        n, (width, _) = ids.shape[0], self.lead_columns
        lead, whole, rows = (np.asarray(x) for x in lead_of(ids))
        if lead.shape != (n, width) or lead.dtype != np.float32:
            raise ValueError(f"lead_of must return float32 memory of shape ({n}, {width}), "
                             f"got {lead.dtype} {lead.shape}")
        if whole.ndim != 1 or (whole.size and (whole.dtype.kind not in "iu" or whole.min() < 0 or whole.max() >= n)) \
                or rows.shape != (whole.shape[0], self.model.row_width) or rows.dtype != np.float32:
            raise ValueError(f"lead_of must return positions in [0, {n}) and their float32 rows of width "
                             f"{self.model.row_width}, got {whole.dtype} {whole.shape} and {rows.dtype} {rows.shape}")
        bad = ~np.isfinite(lead).all(axis=1)
        if bad.any():
            raise ValueError(f"corrupt node rows (non-finite memory) at node(s) {ids[bad][:10].tolist()}")
        return lead, whole.astype(np.int64, copy=False), rows

    @staticmethod
    def _resolve(slots_of: SlotsOf, ids: np.ndarray, table: NodeArrays) -> np.ndarray:
        """Slots of distinct ``ids``, or a clear error if ``slots_of`` cannot find them."""
        s = np.asarray(slots_of(ids))
        capacity = table.capacity  # after the call (see SlotsOf)
        if s.shape != ids.shape or (s.size and not np.issubdtype(s.dtype, np.integer)):
            raise ValueError(f"slots_of must return one integer slot per id, got {s.dtype} {s.shape} "
                             f"for {ids.shape[0]} ids")
        missing = (s < 0) | (s >= capacity)
        if missing.any():
            bad = ids[missing][:10].tolist()
            raise ValueError(f"temporal neighbours not resident in the table (ids {bad}"
                             f"{' ...' if missing.sum() > 10 else ''}): load them before scoring "
                             f"(see TGNRuntime.neighbour_ids)")
        return s.astype(np.int64, copy=False)

    # -- the one forward pass -----------------------------------------------

    def forward(self, table: NodeArrays, src_slot: np.ndarray, dst_slot: np.ndarray, ts: np.ndarray,
                edge_feats: np.ndarray, slots_of: SlotsOf, neg_slot: np.ndarray | None = None,
                lead_of: LeadOf | None = None) -> BatchForward:
        """Logits, attention and the pending memory update of a batch of ``n`` events.

        ``src_slot``/``dst_slot`` rows of the events' ends, ``ts`` event times (seconds),
        ``edge_feats`` float[n, edge_dim] (finite), ``neg_slot`` optional negative
        destination rows (training). Temporal neighbours' memory comes from ``lead_of``
        (by id) when given, else from their rows in the table at ``slots_of`` (ids to slots). Autograd
        follows the caller's grad mode; the table is not modified (see :meth:`update_batch`).
        """
        model, dev = self.model, self.device
        src_slot, dst_slot, ts, edge = self._check(table, src_slot, dst_slot, ts, edge_feats)
        n = ts.shape[0]
        queries = [src_slot, dst_slot]
        if neg_slot is not None:
            queries.append(_index(neg_slot, "neg_slot", n, table.capacity))
        q_slot = np.concatenate(queries)
        q_ts = np.tile(ts, len(queries))
        nb = recent_neighbours(table, q_slot, q_ts, model.config.k)

        # fold pending messages once per distinct query row and once per distinct neighbour
        # (a node that is both is folded twice, from the same row: the same memory)
        nbr_ids, nbr_inv = np.unique(nb.ids[nb.valid], return_inverse=True)
        q_u, q_inv = np.unique(q_slot, return_inverse=True)
        if lead_of is None:
            nbr_slots = self._resolve(slots_of, nbr_ids, table)  # before reading table.mem (see SlotsOf)
            rows = np.concatenate([table.mem[q_u], table.mem[nbr_slots]])
            self._check_rows(rows, q_u, nbr_ids, np.arange(nbr_ids.shape[0]))
            memory = model.apply_pending(torch.from_numpy(rows).to(dev))
        else:  # neighbours' memory only, plus whole rows where a message is pending
            lead, whole, whole_rows = self._neighbour_lead(nbr_ids, lead_of)
            rows = np.concatenate([table.mem[q_u], whole_rows])
            self._check_rows(rows, q_u, nbr_ids, whole)
            folded = model.apply_pending(torch.from_numpy(rows).to(dev))
            nbr_mem = torch.from_numpy(lead).to(dev)
            if whole.size:
                nbr_mem = nbr_mem.index_copy(0, torch.from_numpy(whole).to(dev), folded[q_u.shape[0]:])
            memory = torch.cat([folded[: q_u.shape[0]], nbr_mem])
        inv = np.concatenate([q_inv, q_u.shape[0] + nbr_inv])
        q_n = q_slot.shape[0]
        nbr_u = np.zeros(nb.ids.shape, np.int64)
        nbr_u[nb.valid] = inv[q_n:]
        rel_t = np.where(nb.valid, q_ts[:, None] - nb.ts, 0.0).astype(np.float32)
        z, attn = model.embed(
            memory, torch.from_numpy(inv[:q_n]).to(dev), torch.from_numpy(nbr_u).to(dev),
            torch.from_numpy(rel_t).to(dev),
            torch.from_numpy(ring_edge_attr(nb.amt, nb.dir)).to(dev),
            torch.from_numpy(nb.valid).to(dev),
        )
        z_src, z_dst = z[:n], z[n: 2 * n]
        e = torch.from_numpy(edge).to(dev)
        return BatchForward(
            link_logit=model.link(z_src, z_dst),
            risk_logit=model.risk(z_src, z_dst, e),
            neg_logit=model.link(z_src, z[2 * n:]) if neg_slot is not None else None,
            attn=attn, nbr=nb,
            update=self._plan_update(table, src_slot, dst_slot, ts, edge, memory, inv[:n], inv[n: 2 * n]),
        )

    @staticmethod
    def _plan_update(table: NodeArrays, src_slot, dst_slot, ts, edge, memory: Tensor,
                     src_u: np.ndarray, dst_u: np.ndarray) -> MemoryUpdate:
        """Each end's folded memory plus its last interaction of the batch as pending message."""
        n = ts.shape[0]
        ar = np.arange(n)
        c_slot = np.concatenate([src_slot, dst_slot])
        c_t = np.concatenate([ts, ts])
        c_ord = np.concatenate([2 * ar, 2 * ar + 1])  # event order, source role before destination
        order = np.lexsort((c_ord, c_t, c_slot))  # by slot, then time, then order
        s_sorted = c_slot[order]
        last = np.ones(2 * n, bool)
        last[:-1] = s_sorted[1:] != s_sorted[:-1]
        pick = order[last]
        slots = c_slot[pick]
        self_u = np.concatenate([src_u, dst_u])[pick]
        other_u = np.concatenate([dst_u, src_u])[pick]
        mem = memory.detach().to("cpu", torch.float32).numpy()
        t_last = c_t[pick]
        old = table.mem_ts[slots]
        fresh = np.isnan(old)
        dt = np.where(fresh, 0.0, np.maximum(t_last - np.where(fresh, 0.0, old), 0.0))
        new_ts = np.where(fresh, t_last, np.fmax(old, t_last))
        kind = np.where(pick < n, AS_SOURCE, AS_DESTINATION)
        rows = np.concatenate([mem[self_u], mem[other_u], edge[pick % n], dt[:, None], kind[:, None]], axis=1)
        return MemoryUpdate(slots=slots, rows=rows.astype(np.float32, copy=False), mem_ts=new_ts)

    # -- serving -------------------------------------------------------------

    def score_batch(self, table: NodeArrays, src_slot: np.ndarray, dst_slot: np.ndarray, ts: np.ndarray,
                    edge_feats: np.ndarray, slots_of: SlotsOf, lead_of: LeadOf | None = None) -> TGNScores:
        """Scores of a batch (eval mode, ``torch.inference_mode``); pass the result to :meth:`update_batch`."""
        was_training = self.model.training
        if was_training:  # Module.train walks every submodule: skip it on the hot path
            self.model.eval()
        try:
            with torch.inference_mode():
                fwd = self.forward(table, src_slot, dst_slot, ts, edge_feats, slots_of, lead_of=lead_of)
        finally:
            if was_training:
                self.model.train()
        n = fwd.link_logit.shape[0]
        link = torch.sigmoid(fwd.link_logit).double().cpu().numpy()
        top_ids, top_attn = self._top(fwd, n)
        return TGNScores(risk=torch.sigmoid(fwd.risk_logit).double().cpu().numpy(), link_prob=link,
                         link_surprise=1.0 - link, top_ids=top_ids, top_attn=top_attn, update=fwd.update)

    def _top(self, fwd: BatchForward, n: int) -> tuple[np.ndarray, np.ndarray]:
        a = fwd.attn[: 2 * n].mean(dim=1).cpu().numpy()  # [2n, k]
        order = np.argsort(-a, axis=1, kind="stable")[:, : self.top_k]
        w = np.take_along_axis(a, order, axis=1)
        ids = np.take_along_axis(fwd.nbr.ids[: 2 * n], order, axis=1)
        ids = np.where(np.take_along_axis(fwd.nbr.valid[: 2 * n], order, axis=1), ids, -1)
        w = np.where(ids >= 0, w, 0.0).astype(np.float32)
        return np.stack([ids[:n], ids[n:]], axis=1), np.stack([w[:n], w[n:]], axis=1)

    def update_batch(self, table: NodeArrays, result: TGNScores | BatchForward | MemoryUpdate) -> None:
        """Write a scored batch's memory and pending messages into its ends' rows (see ``fold_on_write``)."""
        up = result if isinstance(result, MemoryUpdate) else result.update
        if up.rows.shape[1] != table.mem.shape[1]:
            raise ValueError(f"update rows are {up.rows.shape[1]} wide, table.mem is {table.mem.shape[1]}")
        if up.slots.size and up.slots.max() >= table.capacity:
            raise ValueError(f"update slots up to {up.slots.max()} exceed the table capacity {table.capacity}")
        rows = up.rows
        if self.fold_on_write and rows.shape[0]:
            with torch.inference_mode():
                mem = self.model.apply_pending(torch.from_numpy(rows).to(self.device))
            rows = np.zeros_like(rows)  # the message is consumed: its columns are cleared ...
            rows[:, : self.model.config.mem_dim] = mem.cpu().numpy()
            rows[:, self.model.layout.kind] = NO_MESSAGE  # ... (NO_MESSAGE is 0), so a memory
            # cache can keep just the first mem_dim columns (GraphStore mem_cache_width)
        table.mem[up.slots] = rows
        table.mem_ts[up.slots] = up.mem_ts

    def current_memory(self, table: NodeArrays, slots: np.ndarray) -> np.ndarray:
        """Memory (float32[len(slots), mem_dim]) of rows with their pending message folded in."""
        slots = _index(slots, "slots", len(np.asarray(slots)), table.capacity)
        with torch.inference_mode():
            mem = self.model.apply_pending(torch.from_numpy(table.mem[slots]).to(self.device))
        return mem.cpu().numpy()
