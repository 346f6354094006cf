"""StoreOptions: the store's tuning, validated once when built, varied with dataclasses.replace."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from riskgraph.state.options import COMPACTIONS, COMPRESSIONS, DIRECT_IO_MODES, StoreOptions
from riskgraph.state.store import GraphStore

#: (changes, the message they raise), one for each way an option can be wrong
BAD = [
    ({"mem_dim": -1}, "mem_dim must be an int >= 0, got -1"),
    ({"mem_dim": 1.5}, "mem_dim must be an int >= 0, got 1.5"),
    ({"mem_dim": True}, "mem_dim must be an int >= 0, got True"),
    ({"cache_capacity": 0}, "cache_capacity must be an int >= 1, got 0"),
    ({"cache_capacity": "10"}, "cache_capacity must be an int >= 1, got '10'"),
    ({"id_cache_capacity": 0}, "id_cache_capacity must be None or an int >= 1, got 0"),
    ({"sync": 1}, "sync must be True or False, got 1"),
    ({"block_cache_mb": 0}, "block_cache_mb must be an int >= 1, got 0"),
    ({"mem_cache_capacity": -1}, "mem_cache_capacity must be an int >= 0, got -1"),
    ({"compression": "zstd"}, "compression must be one of ['none', 'lz4'], got 'zstd'"),
    ({"mem_dim": 4, "mem_cache_width": 0}, "mem_cache_width must be an int in [1, mem_dim=4], got 0"),
    ({"mem_dim": 4, "mem_cache_width": 5}, "mem_cache_width must be an int in [1, mem_dim=4], got 5"),
    ({"mem_cache_width": 1}, "mem_cache_width must be an int in [1, mem_dim=0], got 1"),
    ({"pin_scoring_cpu": "0"}, "pin_scoring_cpu must be None or a CPU number, got '0'"),
    ({"direct_io": "yes"}, "direct_io must be one of ['off', 'auto', 'on'], got 'yes'"),
    ({"compaction": "fifo"}, "compaction must be one of ['universal', 'level'], got 'fifo'"),
]


@pytest.mark.parametrize("changes,message", BAD, ids=[m.split(" ")[0] + "-" + str(i) for i, (_, m) in enumerate(BAD)])
def test_each_bad_value_is_refused_with_its_message(changes, message, tmp_path):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        StoreOptions(**changes)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):  # a variant is checked again
        dataclasses.replace(StoreOptions(mem_dim=changes.get("mem_dim", 0)), **changes)
    assert not (tmp_path / "never").exists()


def test_every_option_has_a_bad_value_above():
    # an option added without a check (or a test of it) fails here; the strings' lists are their own check
    checked = {k for changes, _ in BAD for k in changes}
    assert checked == {f.name for f in dataclasses.fields(StoreOptions)}


def test_the_defaults_are_the_stores_and_valid():
    o = StoreOptions()
    assert (o.mem_dim, o.cache_capacity, o.id_cache_capacity, o.sync, o.block_cache_mb, o.mem_cache_capacity,
            o.compression, o.mem_cache_width, o.pin_scoring_cpu, o.direct_io, o.compaction) == (
        0, 1_000_000, None, False, 256, 0, "none", None, None, "off", "universal")
    assert (o.compression, o.direct_io, o.compaction) == (COMPRESSIONS[0], DIRECT_IO_MODES[0], COMPACTIONS[0])
    assert o.id_capacity == 1_000_000
    assert StoreOptions(cache_capacity=10, mem_cache_capacity=50).id_capacity == 50
    assert StoreOptions(cache_capacity=10, id_cache_capacity=3).id_capacity == 3


def test_frozen_and_numpy_integers_become_ints():
    o = StoreOptions(mem_dim=np.int64(8), mem_cache_width=np.int32(4), cache_capacity=np.uint16(9))
    assert (o.mem_dim, o.mem_cache_width, o.cache_capacity) == (8, 4, 9)
    assert all(type(v) is int for v in (o.mem_dim, o.mem_cache_width, o.cache_capacity))
    assert o == StoreOptions(mem_dim=8, mem_cache_width=4, cache_capacity=9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.mem_dim = 3  # type: ignore[misc]


def test_the_store_keeps_and_applies_its_options(tmp_path):
    opts = StoreOptions(mem_dim=6, cache_capacity=7, mem_cache_capacity=9, mem_cache_width=2, block_cache_mb=16,
                        compaction="level")
    with GraphStore(tmp_path / "s", opts) as st:
        assert st.options is opts
        assert (st.mem_dim, st.cache_capacity, st.mem_cache_capacity, st.compaction) == (6, 7, 9, "level")
        assert st.block_cache_capacity == 16 << 20
    with GraphStore(tmp_path / "d") as st:  # None: the defaults
        assert st.options == StoreOptions() and st.cache_capacity == 1_000_000
    with pytest.raises(TypeError, match="options must be a StoreOptions, got dict"):
        GraphStore(tmp_path / "s", {"mem_dim": 6})  # type: ignore[arg-type]
