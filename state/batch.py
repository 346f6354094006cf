"""The node rows of one micro-batch: what every layer of the pipeline reads and writes through.

:meth:`GraphStore.batch <riskgraph.state.store.GraphStore.batch>` loads the rows of a
batch's nodes and returns a :class:`BatchRows`. The layers (features, scoring, the TGN,
the alert reasons) get this handle, never a table of their own:

* :attr:`BatchRows.slots` are the batch's rows, marked for the next commit; a dirty row is
  never evicted, so they stay where they are whatever else is loaded.
* :attr:`BatchRows.table` is the store's node table *now*. Loading more rows (a TGN's
  temporal neighbours, :meth:`BatchRows.peek`) may grow it, and growing replaces its
  arrays; the handle holds no array, so nothing read through it is from before a growth.
  Kernels get the arrays at the call (``compute_features(rows.table, ...)``).
* after the store's next commit the batch is over: its rows may be evicted, and using the
  handle raises instead of reading another node's row.

>>> import tempfile
>>> from riskgraph.state.store import GraphStore
>>> from riskgraph.state.options import StoreOptions
>>> with GraphStore(tempfile.mkdtemp(), StoreOptions(cache_capacity=2)) as st:
...     rows = st.batch(st.resolve(["a", "b"]))
...     rows.table.acc[rows.slots, 0] = [1.0, 2.0]
...     before = rows.table.capacity
...     _ = rows.peek(st.resolve(["c", "d", "e"]))  # neighbours: the batch's rows stay, the table grows
...     rows.table.capacity > before, rows.table.acc[rows.slots, 0].tolist()
(True, [1.0, 2.0])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from riskgraph.features.layout import NodeArrays

if TYPE_CHECKING:
    from riskgraph.state.store import GraphStore, LeadRows


class BatchOverError(RuntimeError):
    """A :class:`BatchRows` was used after the store committed: its rows may be elsewhere now."""


class BatchRows:
    """The rows of one micro-batch's nodes in the store's node table (see the module docstring).

    ``ids``: the internal ids the batch was opened with (int64, duplicates allowed);
    ``slots``: their rows, aligned with ``ids``. Made by :meth:`GraphStore.batch`.
    """

    __slots__ = ("_store", "_commits", "ids", "slots")

    def __init__(self, store: "GraphStore", ids: np.ndarray, slots: np.ndarray, commits: int) -> None:
        self._store = store
        self._commits = commits
        self.ids = ids
        self.slots = slots

    def _live(self) -> "GraphStore":
        if self._store.commits != self._commits:
            raise BatchOverError("this batch's rows were committed and may have been evicted since: "
                                 "open a new batch with GraphStore.batch")
        return self._store

    @property
    def table(self) -> NodeArrays:
        """The node table as it is now (after any growth); hand its arrays to a kernel at the call."""
        return self._live().table

    def peek(self, ids: np.ndarray) -> np.ndarray:
        """Rows of other nodes, read only (a TGN's temporal neighbours), loaded if need be.

        Loading may grow the table (read it again through :attr:`table`, as everything
        does) and may evict clean rows, never the batch's own. The slots returned are valid
        until the next :meth:`peek` (``GraphStore.peek_slots``).
        """
        return self._live().peek_slots(ids)

    def lead_reader(self, width: int, flag: int | None) -> Callable[[np.ndarray], "LeadRows"] | None:
        """``ids -> GraphStore.peek_lead(ids, width, flag)`` when the store keeps a memory cache
        (neighbours' memory without loading their rows), else None: read them via :meth:`peek`."""
        store = self._live()
        if not store.mem_cache_capacity:
            return None

        def lead(ids: np.ndarray) -> "LeadRows":
            return self._live().peek_lead(ids, width, flag)
        return lead

    def external_id(self, node_id: int) -> str:
        """External id of one internal id (for explaining a score)."""
        return self._live().external_id(node_id)

    def __len__(self) -> int:
        return int(self.slots.shape[0])

    def __repr__(self) -> str:
        return f"BatchRows({len(self)} rows of {self._store!r})"
