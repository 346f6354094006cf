"""IdCache against the dict it replaced: same answers, same first-in first-out trimming."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskgraph.state.idcache import IdCache

# short names from a small alphabet collide in table slots; non-ASCII and lone surrogates too
names = st.text(alphabet=st.sampled_from(["a", "b", "é", "中", "\x00", "\ud800"]), min_size=0, max_size=4)


class DictModel:
    """The id cache as IdMap kept it before: a dict trimmed to 3/4 of capacity, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.d = capacity, {}

    def put(self, ks, vs) -> None:
        self.d.update(zip(ks, vs))
        if len(self.d) > self.capacity:
            for k in list(islice(self.d, len(self.d) - (3 * self.capacity) // 4)):
                del self.d[k]

    def get(self, ks) -> list[int]:
        return [self.d.get(k, -1) for k in ks]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.lists(st.tuples(st.booleans(), st.lists(names, max_size=30)), max_size=25))
def test_behaves_like_the_dict_it_replaced(capacity, ops):
    c, m = IdCache(capacity), DictModel(capacity)
    nxt = 0
    for is_put, ks in ops:
        if is_put:
            first = list(dict.fromkeys(ks))  # IdMap puts distinct names
            vs = list(range(nxt, nxt + len(first)))
            nxt += len(first)
            c.put(first, np.array(vs, np.int64))
            m.put(first, vs)
        assert c.get(ks).tolist() == m.get(ks)
        assert len(c) == len(m.d)


def test_many_ids_grow_and_trim_exactly() -> None:
    c = IdCache(100_000)
    ks = [f"acct-{i}" for i in range(250_000)]
    for lo in range(0, len(ks), 5_000):
        c.put(ks[lo:lo + 5_000], np.arange(lo, lo + 5_000))
    got = c.get(ks)
    held = got >= 0
    assert len(c) == int(held.sum()) <= 100_000
    # FIFO: exactly the newest ones are held, each with its own id
    first = int(np.argmax(held))
    assert held[first:].all() and not held[:first].any()
    assert (got[held] == np.flatnonzero(held)).all()


def test_duplicates_and_known_names_in_one_put() -> None:
    c = IdCache(10)
    c.put(["x", "y", "x"], np.array([1, 2, 3]))  # the first of a repeated new name wins
    assert c.get(["x", "y"]).tolist() == [1, 2] and len(c) == 2
    c.put(["y", "z"], np.array([5, 6]))  # a known name takes the new id, keeps its place
    assert c.get(["x", "y", "z"]).tolist() == [1, 5, 6] and len(c) == 3


def test_bad_input() -> None:
    c = IdCache(4)
    with pytest.raises(ValueError, match="non-empty str, got int 5"):
        c.get(["a", 5])
    with pytest.raises(ValueError, match="one id per name"):
        c.put(["a"], np.array([1, 2]))
    with pytest.raises(ValueError, match="capacity"):
        IdCache(0)
