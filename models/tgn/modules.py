"""The TGN building blocks (Rossi et al. 2020): small modules, each injected into ``TGN``.

* :class:`TimeEncoder` -- ``cos(w * dt + b)``, TGAT's functional time encoding;
* :class:`MessageFunction` -- the message of one interaction from
  ``[mem_self, mem_other, edge_feats, time_enc(dt)]``: identity (concatenation, as
  PyG's ``IdentityMessage``) or a two-layer MLP;
* :class:`MemoryUpdater` -- a ``GRUCell`` from message to new memory;
* :class:`TemporalAttentionEmbedding` -- one graph-attention layer over the ``k`` most
  recent temporal neighbours, the math of PyG's ``TransformerConv`` (heads concatenated,
  root weight) written over a dense ``[queries, k]`` neighbour block with a mask, so a
  batch needs no edge index and no scatter;
* :class:`LinkDecoder` -- PyG's ``LinkPredictor``: ``lin(relu(lin_src z_s + lin_dst z_d))``;
* :class:`RiskDecoder` -- an MLP from ``[z_src, z_dst, edge_feats]`` to the event risk logit.

Every module has ``reset_parameters()``; none holds stream state.

>>> import torch
>>> _ = torch.manual_seed(0)
>>> enc = TimeEncoder(4)
>>> enc(torch.zeros(3)).shape, bool((enc(torch.zeros(1)) == 1).all())
(torch.Size([3, 4]), True)
>>> att = TemporalAttentionEmbedding(in_dim=8, edge_dim=5, out_dim=6, heads=2)
>>> z, a = att(torch.randn(2, 8), torch.randn(2, 3, 8), torch.randn(2, 3, 5),
...            torch.tensor([[True, True, False], [False, False, False]]))
>>> z.shape, a.shape, [round(float(s), 4) for s in a.detach().sum(dim=(1, 2))]
(torch.Size([2, 6]), torch.Size([2, 2, 3]), [2.0, 0.0])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _np_ok(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


class _Cos(torch.autograd.Function):
    """``cos`` whose CPU kernel is NumPy's.

    PyTorch's CPU ``cos`` (SLEEF) leaves its fast path once an argument exceeds a few
    hundred radians and takes a Payne-Hanek reduction above ~4e4 for the whole SIMD
    vector: a time encoder's highest frequency (``w = 1``) times gaps of hours on a
    large graph hit it on every row. On 20,000 x 16 arguments here: 0.43-0.50 ms with
    arguments below 5,000, 2.0-2.4 ms above; NumPy's 0.17-0.18 ms for either, both
    within one float32 ulp of the float64 result. Used in training and serving alike
    (backward is ``-sin``, the same way), so the two compute the same encoding.

    >>> x = torch.tensor([0.0, 1.0, 5e4], requires_grad=True)
    >>> y = _Cos.apply(x); y.sum().backward()
    >>> bool(torch.allclose(y, torch.cos(x.detach()))), bool(torch.allclose(x.grad, -torch.sin(x.detach())))
    (True, True)
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        if _np_ok(x):
            return torch.from_numpy(np.cos(x.detach().numpy()))
        return torch.cos(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if _np_ok(x):
            return grad * torch.from_numpy(np.sin(x.detach().numpy())).neg_()
        return grad * -torch.sin(x)


class TimeEncoder(nn.Module):
    """``cos(w * dt + b)`` for a vector of time differences (seconds) -> ``[n, dim]``.

    ``w`` starts at ``10 ** -linspace(0, 9, dim)`` (TGN/TGAT's initialisation) rather than
    PyTorch's default Linear init: event-time gaps span seconds to months, and a
    geometric spread of frequencies resolves all of them from the first step.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"time encoding dim must be >= 1, got {dim}")
        self.out_channels = dim
        self.lin = nn.Linear(1, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            freq = 10.0 ** -torch.linspace(0.0, 9.0, self.out_channels)
            self.lin.weight.copy_(freq.view(-1, 1))
            self.lin.bias.zero_()

    def forward(self, dt: Tensor) -> Tensor:
        return _Cos.apply(self.lin(dt.reshape(-1, 1)))


class MessageFunction(nn.Module):
    """Message of one interaction seen from one end: ``f([mem_self, mem_other, edge, t_enc])``.

    ``kind="identity"`` concatenates (``out_channels = 2 * mem_dim + edge_dim + time_dim``);
    ``kind="mlp"`` applies ``Linear -> ReLU -> Linear`` to ``out_channels = msg_dim``.
    """

    def __init__(self, mem_dim: int, edge_dim: int, time_dim: int, kind: str = "identity",
                 msg_dim: int | None = None) -> None:
        super().__init__()
        self.in_channels = 2 * mem_dim + edge_dim + time_dim
        self.kind = kind
        if kind == "identity":
            self.out_channels = self.in_channels
            self.mlp: nn.Sequential | None = None
        elif kind == "mlp":
            self.out_channels = int(msg_dim or mem_dim)
            self.mlp = nn.Sequential(nn.Linear(self.in_channels, self.out_channels), nn.ReLU(),
                                     nn.Linear(self.out_channels, self.out_channels))
        else:
            raise ValueError(f"message kind must be 'identity' or 'mlp', got {kind!r}")

    def reset_parameters(self) -> None:
        if self.mlp is not None:
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()

    def forward(self, mem_self: Tensor, mem_other: Tensor, edge: Tensor, t_enc: Tensor) -> Tensor:
        x = torch.cat([mem_self, mem_other, edge, t_enc], dim=-1)
        return x if self.mlp is None else self.mlp(x)


class MemoryUpdater(nn.Module):
    """New memory from (message, old memory) with a ``GRUCell``."""

    def __init__(self, msg_dim: int, mem_dim: int) -> None:
        super().__init__()
        self.gru = nn.GRUCell(msg_dim, mem_dim)

    def reset_parameters(self) -> None:
        self.gru.reset_parameters()

    def forward(self, msg: Tensor, memory: Tensor) -> Tensor:
        return self.gru(msg, memory)


class TemporalAttentionEmbedding(nn.Module):
    """Node embedding by multi-head attention over its ``k`` most recent neighbours.

    For query node ``i`` with memory ``x_i`` and neighbours ``j`` (memory ``x_j``, edge
    attributes ``e_ij`` = time encoding of ``t - t_j`` and the interaction's features),
    per head ``h`` of width ``C = out_dim // heads``::

        q = W_q x_i,  k_j = W_k x_j + W_e e_ij,  v_j = W_v x_j + W_e e_ij
        a_ij = softmax_j(q . k_j / sqrt(C))      (over valid neighbours only)
        z_i = concat_h(sum_j a_ij v_j) + W_skip x_i

    exactly PyG's ``TransformerConv(in_dim, C, heads, edge_dim=..., root_weight=True)``
    (same parameter names, so its ``state_dict`` loads here). A node without valid
    neighbours gets ``W_skip x_i`` and all-zero attention.
    """

    def __init__(self, in_dim: int, edge_dim: int, out_dim: int, heads: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if heads < 1 or out_dim % heads:
            raise ValueError(f"out_dim ({out_dim}) must be a positive multiple of heads ({heads})")
        self.heads, self.head_dim, self.dropout = heads, out_dim // heads, float(dropout)
        self.lin_query = nn.Linear(in_dim, out_dim)
        self.lin_key = nn.Linear(in_dim, out_dim)
        self.lin_value = nn.Linear(in_dim, out_dim)
        self.lin_edge = nn.Linear(edge_dim, out_dim, bias=False)
        self.lin_skip = nn.Linear(in_dim, out_dim)

    def reset_parameters(self) -> None:
        for lin in (self.lin_query, self.lin_key, self.lin_value, self.lin_edge, self.lin_skip):
            lin.reset_parameters()

    def forward(self, x: Tensor, x_nbr: Tensor, edge: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` [Q, in], ``x_nbr`` [Q, k, in], ``edge`` [Q, k, edge_dim], ``mask`` bool [Q, k].

        Returns the embeddings [Q, out_dim] and the attention weights [Q, heads, k]
        (0 where ``mask`` is False).

        Computed without projecting the neighbours: ``q . (W_k x_j + b_k)`` is
        ``(W_k^T q) . x_j + q . b_k``, and ``sum_j a_ij W_v x_j`` is ``W_v sum_j a_ij x_j``,
        so the key and value weights meet the Q queries, not the Q * k neighbour rows
        (PyG's ``TransformerConv`` projects every neighbour; the results agree to float
        rounding, see tests/tgn/test_tgn_modules.py). The cost no longer depends on how
        many distinct neighbours a batch has: 7.4-7.9 ms instead of 12.0-12.9 ms for
        2,000 queries with 10 neighbours each, one CPU thread.
        """
        q_n, k = mask.shape
        h, c = self.heads, self.head_dim
        d = x.shape[-1]
        query = self.lin_query(x).view(q_n, h, c)
        e = self.lin_edge(edge).view(q_n, k, h, c)
        # per head: the query mapped back into node space, [Q, h, in]
        q_in = torch.bmm(query.transpose(0, 1), self.lin_key.weight.view(h, c, d)).transpose(0, 1)
        logits = torch.bmm(x_nbr, q_in.transpose(1, 2))  # [Q, k, h]
        logits = logits + (query * self.lin_key.bias.view(h, c)).sum(-1).unsqueeze(1) \
            + (e * query.unsqueeze(1)).sum(-1)
        logits = logits / math.sqrt(c)
        m = mask.view(q_n, k, 1)
        logits = logits.masked_fill(~m, float("-inf"))
        # a row without any neighbour would softmax to NaN: give it zeros instead
        alpha = torch.softmax(logits, dim=1).masked_fill(~m, 0.0)
        attn = F.dropout(alpha, p=self.dropout, training=self.training)
        mixed = torch.bmm(attn.transpose(1, 2), x_nbr)  # [Q, h, in]: attention-weighted neighbours
        out = torch.bmm(mixed.transpose(0, 1), self.lin_value.weight.view(h, c, d).transpose(1, 2)).transpose(0, 1)
        out = out + self.lin_value.bias.view(1, h, c) * attn.sum(1).unsqueeze(-1) + (attn.unsqueeze(-1) * e).sum(1)
        return out.reshape(q_n, h * c) + self.lin_skip(x), alpha.transpose(1, 2)

    def forward_indexed(self, nodes: Tensor, q_idx: Tensor, nbr_idx: Tensor, edge: Tensor,
                        mask: Tensor) -> tuple[Tensor, Tensor]:
        """``forward(nodes[q_idx], nodes[nbr_idx], edge, mask)``: ``nodes`` [U, in] holds each
        distinct node read once, ``q_idx`` [Q] and ``nbr_idx`` [Q, k] index it."""
        return self.forward(nodes[q_idx], nodes[nbr_idx], edge, mask)


class LinkDecoder(nn.Module):
    """Logit that ``src`` interacts with ``dst`` now, from their embeddings."""

    def __init__(self, emb_dim: int) -> None:
        super().__init__()
        self.lin_src = nn.Linear(emb_dim, emb_dim)
        self.lin_dst = nn.Linear(emb_dim, emb_dim)
        self.lin_final = nn.Linear(emb_dim, 1)

    def reset_parameters(self) -> None:
        for lin in (self.lin_src, self.lin_dst, self.lin_final):
            lin.reset_parameters()

    def forward(self, z_src: Tensor, z_dst: Tensor) -> Tensor:
        return self.lin_final(torch.relu(self.lin_src(z_src) + self.lin_dst(z_dst))).squeeze(-1)


class RiskDecoder(nn.Module):
    """Logit that the event is risky, from ``[z_src, z_dst, edge_feats]``."""

    def __init__(self, emb_dim: int, edge_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = int(hidden or emb_dim)
        self.mlp = nn.Sequential(nn.Linear(2 * emb_dim + edge_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def reset_parameters(self) -> None:
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def forward(self, z_src: Tensor, z_dst: Tensor, edge: Tensor) -> Tensor:
        return self.mlp(torch.cat([z_src, z_dst, edge], dim=-1)).squeeze(-1)
