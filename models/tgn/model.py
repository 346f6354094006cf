"""The TGN model: its configuration, its per-node row layout, and the composed modules.

A node's row in the node table (``features.layout.NodeArrays.mem``, float32) holds the
TGN memory followed by the node's *pending raw message* -- the last interaction it took
part in that has not been folded into its memory yet (see ``models.tgn.runtime`` for
when it is)::

    [ memory (M) | other end's memory at the event (M) | edge feats (E) | dt | kind ]

``dt`` is the event time minus the node's previous update time (the time encoding's
input) and ``kind`` is 0 (no pending message), 1 (the node was the source) or 2 (the
destination). The other end's memory is stored by value, so folding a message in never
reads another node's row: the mail is self-contained, as APAN's mailbox is, which is
what lets the two ends of an edge live in different partitions. ``mem_ts`` holds the
time of the latest event folded into the row (memory or pending message).

>>> cfg = TGNConfig(mem_dim=4, time_dim=2, emb_dim=4, edge_dim=3, k=2)
>>> lay = RowLayout(cfg.mem_dim, cfg.edge_dim)
>>> lay.width, lay.dt, lay.kind
(13, 11, 12)
>>> m = TGN.from_config(cfg, seed=0)
>>> m.row_width
13
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from riskgraph.features.catalogue import N_FEATURES
from riskgraph.features.layout import RING
from riskgraph.models.tgn.modules import (LinkDecoder, MemoryUpdater, MessageFunction, RiskDecoder,
                                TemporalAttentionEmbedding, TimeEncoder)

#: Pending-message kinds stored in the row's ``kind`` column.
NO_MESSAGE, AS_SOURCE, AS_DESTINATION = 0, 1, 2
#: Width of a neighbour interaction's attributes read from the ring, before the time encoding:
#: signed log amount / 10, "has amount" flag, direction (0 OUT, 1 IN).
RING_EDGE_DIM = 3


@dataclass(frozen=True)
class TGNConfig:
    """Architecture of a TGN (what an artifact must record to rebuild it)."""

    mem_dim: int = 64
    time_dim: int = 16
    emb_dim: int = 64
    edge_dim: int = N_FEATURES  # per-event features: the raw message and the risk decoder's input
    k: int = 10  # temporal neighbours attended to, at most features.layout.RING
    heads: int = 2
    message: str = "identity"  # or "mlp"
    msg_dim: int | None = None  # output width of the "mlp" message function (default mem_dim)
    dropout: float = 0.1
    risk_hidden: int | None = None  # risk decoder's hidden width (default emb_dim)

    def __post_init__(self) -> None:
        for name in ("mem_dim", "time_dim", "emb_dim", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.edge_dim < 0:
            raise ValueError(f"edge_dim must be >= 0, got {self.edge_dim}")
        if not 1 <= self.k <= RING:
            raise ValueError(f"k must be in [1, {RING}] (the ring size), got {self.k}")
        if self.emb_dim % self.heads:
            raise ValueError(f"emb_dim ({self.emb_dim}) must be a multiple of heads ({self.heads})")
        if self.message not in ("identity", "mlp"):
            raise ValueError(f"message must be 'identity' or 'mlp', got {self.message!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TGNConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TGNConfig fields: {sorted(unknown)}")
        return cls(**dict(d))


@dataclass(frozen=True)
class RowLayout:
    """Column positions inside a node's ``mem`` row (see the module docstring)."""

    mem_dim: int
    edge_dim: int

    @property
    def other(self) -> slice:
        return slice(self.mem_dim, 2 * self.mem_dim)

    @property
    def edge(self) -> slice:
        return slice(2 * self.mem_dim, 2 * self.mem_dim + self.edge_dim)

    @property
    def dt(self) -> int:
        return 2 * self.mem_dim + self.edge_dim

    @property
    def kind(self) -> int:
        return self.dt + 1

    @property
    def width(self) -> int:
        return self.dt + 2


def ring_edge_attr(amt: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Attributes (float32[..., RING_EDGE_DIM]) of ring interactions from their amount and direction.

    >>> ring_edge_attr(np.array([np.nan, -99.0], np.float32), np.array([0, 1], np.int8)).astype(float).round(3).tolist()
    [[0.0, 0.0, 0.0], [-0.461, 1.0, 1.0]]
    """
    a = np.asarray(amt, np.float64)
    has = ~np.isnan(a)
    slog = np.where(has, np.sign(a) * np.log1p(np.abs(np.where(has, a, 0.0))), 0.0) / 10.0
    return np.stack([slog, has.astype(np.float64), np.asarray(direction, np.float64)], axis=-1).astype(np.float32)


class TGN(nn.Module):
    """Memory (message functions + GRU updater), attention embedding and two decoders.

    Modules are injected; :meth:`from_config` builds the default set. The time encoder
    is shared by the messages and the attention, as in PyG's ``examples/tgn.py``.
    """

    def __init__(self, config: TGNConfig, time_enc: TimeEncoder, msg_src: MessageFunction,
                 msg_dst: MessageFunction, updater: MemoryUpdater, embedding: TemporalAttentionEmbedding,
                 link: LinkDecoder, risk: RiskDecoder) -> None:
        super().__init__()
        if msg_src.out_channels != msg_dst.out_channels:
            raise ValueError("source and destination message functions must have the same output width")
        self.config = config
        self.layout = RowLayout(config.mem_dim, config.edge_dim)
        self.time_enc, self.msg_src, self.msg_dst = time_enc, msg_src, msg_dst
        self.updater, self.embedding, self.link, self.risk = updater, embedding, link, risk

    @classmethod
    def from_config(cls, config: TGNConfig, seed: int | None = None) -> "TGN":
        """The default modules for ``config``; ``seed`` fixes their initial weights."""
        gen_state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(seed)
        try:
            c = config
            msg_src = MessageFunction(c.mem_dim, c.edge_dim, c.time_dim, c.message, c.msg_dim)
            msg_dst = MessageFunction(c.mem_dim, c.edge_dim, c.time_dim, c.message, c.msg_dim)
            return cls(
                c, TimeEncoder(c.time_dim), msg_src, msg_dst,
                MemoryUpdater(msg_src.out_channels, c.mem_dim),
                TemporalAttentionEmbedding(c.mem_dim, c.time_dim + RING_EDGE_DIM, c.emb_dim, c.heads, c.dropout),
                LinkDecoder(c.emb_dim), RiskDecoder(c.emb_dim, c.edge_dim, c.risk_hidden),
            )
        finally:
            if seed is not None:  # building a model must not move the caller's global RNG
                torch.random.set_rng_state(gen_state)

    @property
    def row_width(self) -> int:
        """Width of the ``mem`` column of the node table this model needs."""
        return self.layout.width

    def reset_parameters(self) -> None:
        for m in (self.time_enc, self.msg_src, self.msg_dst, self.updater, self.embedding, self.link, self.risk):
            m.reset_parameters()

    def apply_pending(self, rows: Tensor) -> Tensor:
        """Memory [U, M] of node rows [U, width] after folding in their pending message.

        Rows without one keep their memory. Differentiable in the module weights
        (the rows themselves are state: constants to autograd).
        """
        lay = self.layout
        memory = rows[:, : lay.mem_dim]
        kind = rows[:, lay.kind]
        idx = torch.nonzero(kind != NO_MESSAGE).squeeze(1)
        if idx.numel() == 0:
            return memory
        r = rows.index_select(0, idx)
        own = r[:, : lay.mem_dim]
        t_enc = self.time_enc(r[:, lay.dt])
        as_src = r[:, lay.kind] == AS_SOURCE
        msg = own.new_empty((idx.numel(), self.msg_src.out_channels))
        for sel, fn in ((as_src, self.msg_src), (~as_src, self.msg_dst)):
            j = torch.nonzero(sel).squeeze(1)
            if j.numel():
                msg = msg.index_copy(0, j, fn(own[j], r[j, lay.other], r[j, lay.edge], t_enc[j]))
        return memory.index_copy(0, idx, self.updater(msg, own))

    def embed(self, memory: Tensor, q_idx: Tensor, nbr_idx: Tensor, rel_t: Tensor, ring_edge: Tensor,
              mask: Tensor) -> tuple[Tensor, Tensor]:
        """Embeddings [Q, emb] and attention [Q, heads, k] of queries ``memory[q_idx]``.

        ``memory`` [U, M] holds every row read; ``nbr_idx`` [Q, k] the neighbours' rows in
        it, ``rel_t`` [Q, k] the query time minus the interaction time, ``ring_edge``
        [Q, k, RING_EDGE_DIM] the interactions' attributes, ``mask`` bool [Q, k] which
        entries are real.
        """
        q_n, k = mask.shape
        t_enc = self.time_enc(rel_t).view(q_n, k, self.time_enc.out_channels)
        return self.embedding.forward_indexed(memory, q_idx, nbr_idx, torch.cat([t_enc, ring_edge], dim=-1), mask)
