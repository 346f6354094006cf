"""Streaming TGN scoring throughput: our runtime vs PyG's reference TGN, same events, same run.

Both sides stream the same seeded synthetic event log (``models.tgn.synthetic``) in
batches of ``--batch`` events, with the same dimensions (memory, time encoding,
embedding), ``k`` temporal neighbours, identity messages and last-message aggregation,
untrained weights, eval mode, ``torch.no_grad()``. Per batch:

* **ours**: ``features.kernels.compute_features`` (writes the rings and the 24 edge
  features, as the Engine does) -> ``TGNRuntime.score_batch`` (link + risk + top
  neighbours) -> ``TGNRuntime.update_batch``, over a ``NodeArrays`` table;
* **pyg**: PyG's ``examples/tgn.py`` evaluation step without negatives:
  ``LastNeighborLoader`` -> ``TGNMemory`` -> ``TransformerConv`` attention embedding ->
  link predictor, then ``memory.update_state`` and ``neighbor_loader.insert``; the edge
  features are precomputed (not timed).

Repeats alternate the order of the two sides; rates are medians over repeats. The first
``--warmup`` events run untimed on each side first (numba and torch warm-up).

Run: ``.venv/bin/python benchmarks/bench_tgn.py`` (prints one JSON object).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from riskgraph.features.kernels import compute_features  # noqa: E402
from riskgraph.features.layout import NodeArrays, init_rows  # noqa: E402
from riskgraph.features.unit import to_unit  # noqa: E402
from riskgraph.models.tgn.model import TGN, TGNConfig  # noqa: E402
from riskgraph.models.tgn.runtime import TGNRuntime  # noqa: E402
from riskgraph.models.tgn.synthetic import SyntheticStream, synthetic_stream  # noqa: E402
from common import emit, machine  # noqa: E402


def run_ours(s: SyntheticStream, cfg: TGNConfig, batch: int, lo: int, hi: int, seed: int) -> list[float]:
    """Stream events [0, hi) (times only batches starting at >= lo); seconds per timed batch."""
    model = TGN.from_config(cfg, seed=seed).eval()
    rt = TGNRuntime(model, "cpu")
    table = NodeArrays.empty(s.n_nodes, model.row_width)
    init_rows(table, np.arange(s.n_nodes))
    ident: Callable[[np.ndarray], np.ndarray] = lambda ids: ids  # noqa: E731
    out = []
    for b in range(0, hi, batch):
        t0 = time.perf_counter()
        sl = slice(b, min(b + batch, hi))
        src, dst, ts = s.src[sl], s.dst[sl], s.ts[sl]
        feats = to_unit(compute_features(table, src, dst, src, dst, ts, s.amount[sl]))
        scores = rt.score_batch(table, src, dst, ts, feats, ident)
        rt.update_batch(table, scores)
        if b >= lo:
            out.append(time.perf_counter() - t0)
    return out


def run_pyg(s: SyntheticStream, feats: np.ndarray, cfg: TGNConfig, batch: int, lo: int, hi: int,
            seed: int) -> list[float]:
    from torch_geometric.nn import TGNMemory, TransformerConv
    from torch_geometric.nn.models.tgn import IdentityMessage, LastAggregator, LastNeighborLoader

    class GraphAttentionEmbedding(torch.nn.Module):  # as in PyG's examples/tgn.py
        def __init__(self, in_channels: int, out_channels: int, msg_dim: int, time_enc: torch.nn.Module) -> None:
            super().__init__()
            self.time_enc = time_enc
            self.conv = TransformerConv(in_channels, out_channels // cfg.heads, heads=cfg.heads,
                                        dropout=cfg.dropout, edge_dim=msg_dim + time_enc.out_channels)

        def forward(self, x, last_update, edge_index, t, msg):
            rel_t = last_update[edge_index[0]] - t
            edge_attr = torch.cat([self.time_enc(rel_t.to(x.dtype)), msg], dim=-1)
            return self.conv(x, edge_index, edge_attr)

    class LinkPredictor(torch.nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.lin_src, self.lin_dst, self.lin_final = (torch.nn.Linear(d, d), torch.nn.Linear(d, d),
                                                          torch.nn.Linear(d, 1))

        def forward(self, z_src, z_dst):
            return self.lin_final((self.lin_src(z_src) + self.lin_dst(z_dst)).relu())

    torch.manual_seed(seed)
    n, e_dim = s.n_nodes, feats.shape[1]
    memory = TGNMemory(n, e_dim, cfg.mem_dim, cfg.time_dim, message_module=IdentityMessage(e_dim, cfg.mem_dim, cfg.time_dim),
                       aggregator_module=LastAggregator())
    gnn = GraphAttentionEmbedding(cfg.mem_dim, cfg.emb_dim, e_dim, memory.time_enc)
    link = LinkPredictor(cfg.emb_dim)
    loader = LastNeighborLoader(n, size=cfg.k)
    for m in (memory, gnn, link):
        m.eval()
    assoc = torch.empty(n, dtype=torch.long)
    src_all, dst_all = torch.from_numpy(s.src), torch.from_numpy(s.dst)
    t_all = torch.from_numpy(s.ts.astype(np.int64))
    msg_all = torch.from_numpy(feats.astype(np.float32))
    out = []
    with torch.no_grad():
        for b in range(0, hi, batch):
            t0 = time.perf_counter()
            sl = slice(b, min(b + batch, hi))
            src, dst, t, msg = src_all[sl], dst_all[sl], t_all[sl], msg_all[sl]
            n_id, edge_index, e_id = loader(torch.cat([src, dst]).unique())
            assoc[n_id] = torch.arange(n_id.size(0))
            z, last_update = memory(n_id)
            z = gnn(z, last_update, edge_index, t_all[e_id], msg_all[e_id])
            link(z[assoc[src]], z[assoc[dst]]).sigmoid()
            memory.update_state(src, dst, t, msg)
            loader.insert(src, dst)
            if b >= lo:
                out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--nodes", type=int, default=2_000)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--mem", type=int, default=64)
    p.add_argument("--time", type=int, default=16)
    p.add_argument("--emb", type=int, default=64)
    p.add_argument("--warmup", type=int, default=2_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both sides)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    s = synthetic_stream(n_nodes=a.nodes, n_events=a.warmup + a.events, seed=a.seed)
    cfg = TGNConfig(mem_dim=a.mem, time_dim=a.time, emb_dim=a.emb, k=a.k)
    pre = NodeArrays.empty(s.n_nodes)
    init_rows(pre, np.arange(s.n_nodes))
    feats = to_unit(compute_features(pre, s.src, s.dst, s.src, s.dst, s.ts, s.amount))
    hi = a.warmup + a.events
    runs: dict[str, list[list[float]]] = {"ours": [], "pyg": []}
    for r in range(a.repeats):
        order = ("ours", "pyg") if r % 2 == 0 else ("pyg", "ours")
        for side in order:
            if side == "ours":
                runs[side].append(run_ours(s, cfg, a.batch, a.warmup, hi, a.seed))
            else:
                runs[side].append(run_pyg(s, feats, cfg, a.batch, a.warmup, hi, a.seed))

    def summary(side: str) -> dict[str, float]:
        rates = [a.events / sum(x) for x in runs[side]]
        ms = np.concatenate(runs[side]) * 1e3
        return {"events_per_s": float(np.median(rates)), "events_per_s_runs": [round(x, 1) for x in rates],
                "batch_ms_p50": float(np.percentile(ms, 50)), "batch_ms_p99": float(np.percentile(ms, 99))}

    ours, pyg = summary("ours"), summary("pyg")
    result = {
        "benchmark": "tgn_streaming_scoring_cpu",
        "workload": {"generator": "riskgraph.models.tgn.synthetic.synthetic_stream", "seed": a.seed, "nodes": a.nodes,
                     "events_timed": a.events, "warmup_events": a.warmup, "batch": a.batch},
        "model": {"mem_dim": a.mem, "time_dim": a.time, "emb_dim": a.emb, "k": a.k, "heads": cfg.heads,
                  "edge_dim": int(feats.shape[1]), "message": "identity", "aggregator": "last"},
        "machine": machine(), "torch": torch.__version__, "threads": a.threads, "repeats": a.repeats,
        "ours": ours, "pyg_reference": pyg,
        "ratio_ours_over_pyg": ours["events_per_s"] / pyg["events_per_s"],
        "ours_includes": "feature kernels + ring writes, link + risk + top neighbours, memory write-back",
        "pyg_includes": "neighbour loader, memory, attention, link predictor, update_state, loader insert",
    }
    emit(result, None)
    return result


if __name__ == "__main__":
    main()
