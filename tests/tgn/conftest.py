"""Shared fixtures of the TGN tests: one torch thread, node tables, small models.

Nothing here imports torch at module level: each test module skips itself with
``pytest.importorskip("torch")`` when it is missing.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from riskgraph.features.layout import NodeArrays, init_rows


@pytest.fixture(autouse=True)
def one_thread():
    # the test machine is shared: intra-op threads only contend (and run ~10x slower)
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_config() -> Any:
    from riskgraph.models.tgn.model import TGNConfig

    return TGNConfig(mem_dim=8, time_dim=4, emb_dim=8, edge_dim=3, k=4, heads=2, dropout=0.0)


@pytest.fixture
def make_model(small_config) -> Callable[..., Any]:
    from riskgraph.models.tgn.model import TGN, TGNConfig

    def make(seed: int = 0, **changes) -> TGN:
        cfg = TGNConfig.from_dict({**small_config.to_dict(), **changes})
        return TGN.from_config(cfg, seed=seed).eval()
    return make


@pytest.fixture
def make_table() -> Callable[[int, int], NodeArrays]:
    """A table of ``n`` fresh rows whose slots are the internal ids."""
    def make(n: int, width: int) -> NodeArrays:
        t = NodeArrays.empty(n, width)
        init_rows(t, np.arange(n))
        return t
    return make


@pytest.fixture
def ident() -> Callable[[np.ndarray], np.ndarray]:
    return lambda ids: np.asarray(ids, np.int64)


def write_ring(table: NodeArrays, slot: int, entries: list[tuple[int, float, float, int]]) -> None:
    """Write interactions (nbr, ts, amount, dir) into ``slot``'s ring in order, as the kernels do."""
    ring = table.ring_nbr.shape[1]
    for nbr, ts, amt, d in entries:
        j = table.ring_n[slot] % ring
        table.ring_nbr[slot, j], table.ring_ts[slot, j] = nbr, ts
        table.ring_amt[slot, j], table.ring_dir[slot, j] = amt, d
        table.ring_n[slot] += 1


@pytest.fixture
def ring_writer() -> Callable[[NodeArrays, int, list], None]:
    return write_ring
