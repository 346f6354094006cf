"""Per-node state layout: the contract between the feature kernels and the store.

Every node (entity) owns one row in a set of preallocated NumPy arrays, the
*node table*. The feature kernels (``features.kernels``) read and update those
rows in place; the store (``state.store``) loads rows from RocksDB into free
slots, and writes dirty rows back as one record per node. Neither side knows
anything else of the other.

A row holds:

* ``acc[slot, :]`` -- float64 accumulators, columns named by :class:`Acc`;
* a ring of the ``RING`` most recent interactions of the node, both directions:
  ``ring_nbr`` (internal id of the counterparty), ``ring_ts`` (event time),
  ``ring_amt`` (amount, NaN when the event had none), ``ring_dir``
  (``OUT`` when the node was the source, ``IN`` when it was the destination) and
  ``ring_n`` (how many interactions were ever written; the next write goes to
  ``ring_n % RING``);
* ``mem[slot, :]`` (float32, ``mem_dim`` wide, may be 0) and ``mem_ts[slot]``:
  the learned model's per-node state (TGN memory and, packed after it, the
  pending raw message) and its last update time. The model decides the width.

The entity columns (``IN_TOT`` onwards) are the per-entity summary the entity models read
(``features.entity``): totals and negative parts of the amounts either way, reciprocity,
the moments of the log inter-event gaps, an incremental REV2 fairness/goodness pair and
the counterparties' goodness and activity. All are updated in the same pass as the event features.

Bytes per node are fixed by ``(N_ACC, RING, mem_dim)``: nothing grows per event.

>>> t = NodeArrays.empty(4)
>>> t.capacity, t.acc.shape == (4, N_ACC)
(4, True)
>>> init_rows(t, np.array([0, 2]))
>>> bool(np.isnan(t.acc[0, Acc.FIRST_SEEN])), int(t.ring_n[0])
(True, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

#: Half-lives (seconds) of the exponentially decayed counts and sums: 1 min, 1 h, 1 day.
HALF_LIVES: tuple[float, float, float] = (60.0, 3600.0, 86400.0)
#: Size of each node's ring of recent interactions.
RING: int = 16
#: Direction codes in ``ring_dir``.
OUT: int = 0
IN: int = 1


class Acc(IntEnum):
    """Columns of ``NodeArrays.acc`` (float64)."""

    OUT_CNT_0 = 0  # decayed count of events sent, half-life HALF_LIVES[0]
    OUT_CNT_1 = 1
    OUT_CNT_2 = 2
    IN_CNT_0 = 3  # decayed count of events received
    IN_CNT_1 = 4
    IN_CNT_2 = 5
    OUT_AMT_0 = 6  # decayed sum of amounts sent
    OUT_AMT_1 = 7
    OUT_AMT_2 = 8
    IN_AMT_0 = 9  # decayed sum of amounts received
    IN_AMT_1 = 10
    IN_AMT_2 = 11
    DECAY_TS = 12  # time the decayed columns above are valid at (NaN: never)
    LAST_OUT_TS = 13  # last time the node sent (NaN: never)
    LAST_IN_TS = 14  # last time the node received (NaN: never)
    FIRST_SEEN = 15  # first event time involving the node (NaN: never)
    AMT_N = 16  # number of amounts sent (for the sender's own amount profile)
    AMT_MEAN = 17  # running mean of log1p(amount sent)
    AMT_M2 = 18  # running sum of squared deviations of log1p(amount sent)
    N_OUT = 19  # total events sent (not decayed)
    N_IN = 20  # total events received (not decayed)
    RISK = 21  # entity risk: decayed max of event scores the node took part in
    RISK_TS = 22  # time RISK is valid at (NaN: never)
    LAST_ALERT_TS = 23  # last time an alert was raised with this node as source (dedupe)
    # -- entity state (``features.entity`` reads it; not decayed, totals since first seen) --
    IN_TOT = 24  # sum of amounts received
    OUT_TOT = 25  # sum of amounts sent
    IN_AMT_N = 26  # number of amounts received
    IN_NEG_N = 27  # number of negative amounts received
    IN_NEG_SUM = 28  # sum of negative amounts received (<= 0)
    OUT_NEG_N = 29  # number of negative amounts sent
    OUT_NEG_SUM = 30  # sum of negative amounts sent (<= 0)
    REC_OUT = 31  # sends to a counterparty found in the ring as having sent to this node
    REC_IN = 32  # receipts from a counterparty found in the ring as having been sent to by this node
    GAP_N = 33  # inter-event gaps seen (events after the first)
    GAP_MEAN = 34  # running mean of log1p(seconds since the node's previous event)
    GAP_M2 = 35  # running sum of squared deviations of those log gaps
    GOOD_SUM = 36  # REV2 goodness numerator: sum of fairness(sender) * normalised amount received
    GOOD_W = 37  # REV2 goodness denominator: sum of fairness(sender) over amounts received
    FAIR_ERR = 38  # REV2 fairness: sum of |normalised amount sent - goodness(receiver)| / 2
    NBR_RISK = 39  # reserved (0): the counterparties' event risk is only known after a batch is scored
    NBR_GOOD = 40  # mean goodness of the recent counterparties (moving average over ~RING events)
    ENT_SCORE = 41  # reserved for a stored entity score (0); the entity model scores on demand (models.entity)
    NBR_LOG_DEG = 42  # mean log1p(events so far) of the recent counterparties (same average as NBR_GOOD)


N_ACC: int = len(Acc)
#: Columns that start as NaN ("never") in a fresh row; every other column starts at 0.
NAN_COLUMNS: tuple[int, ...] = (
    Acc.DECAY_TS,
    Acc.LAST_OUT_TS,
    Acc.LAST_IN_TS,
    Acc.FIRST_SEEN,
    Acc.RISK_TS,
    Acc.LAST_ALERT_TS,
)


@dataclass
class NodeArrays:
    """Structure-of-arrays node table; row ``slot`` is one node."""

    acc: np.ndarray  # float64 [C, N_ACC]
    ring_nbr: np.ndarray  # int64 [C, RING]
    ring_ts: np.ndarray  # float64 [C, RING]
    ring_amt: np.ndarray  # float32 [C, RING]
    ring_dir: np.ndarray  # int8 [C, RING]
    ring_n: np.ndarray  # int64 [C]
    mem: np.ndarray  # float32 [C, mem_dim]
    mem_ts: np.ndarray  # float64 [C]

    @classmethod
    def empty(cls, capacity: int, mem_dim: int = 0) -> "NodeArrays":
        """A table of ``capacity`` uninitialised rows (call :func:`init_rows` before use)."""
        if capacity < 1 or mem_dim < 0:
            raise ValueError(f"capacity must be >= 1 and mem_dim >= 0, got {capacity}, {mem_dim}")
        return cls(
            acc=np.zeros((capacity, N_ACC), np.float64),
            ring_nbr=np.full((capacity, RING), -1, np.int64),
            ring_ts=np.zeros((capacity, RING), np.float64),
            ring_amt=np.zeros((capacity, RING), np.float32),
            ring_dir=np.zeros((capacity, RING), np.int8),
            ring_n=np.zeros(capacity, np.int64),
            mem=np.zeros((capacity, mem_dim), np.float32),
            mem_ts=np.zeros(capacity, np.float64),
        )

    @property
    def capacity(self) -> int:
        return int(self.acc.shape[0])

    @property
    def mem_dim(self) -> int:
        return int(self.mem.shape[1])

    def grow(self, capacity: int) -> None:
        """Enlarge the table to ``capacity`` rows in place, keeping existing rows."""
        if capacity <= self.capacity:
            return
        bigger = NodeArrays.empty(capacity, self.mem_dim)
        n = self.capacity
        for name in ("acc", "ring_nbr", "ring_ts", "ring_amt", "ring_dir", "ring_n", "mem", "mem_ts"):
            getattr(bigger, name)[:n] = getattr(self, name)
            setattr(self, name, getattr(bigger, name))


def init_rows(t: NodeArrays, slots: np.ndarray) -> None:
    """Reset rows ``slots`` to the state of a node never seen before."""
    t.acc[slots] = 0.0
    t.acc[np.ix_(slots, np.asarray(NAN_COLUMNS))] = np.nan
    t.ring_nbr[slots] = -1
    t.ring_ts[slots] = 0.0
    t.ring_amt[slots] = np.nan
    t.ring_dir[slots] = 0
    t.ring_n[slots] = 0
    t.mem[slots] = 0.0
    t.mem_ts[slots] = np.nan
