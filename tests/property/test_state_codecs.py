"""Property tests of the state codecs and keys (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from riskgraph.features.layout import N_ACC, RING, NodeArrays
from riskgraph.state.codecs import (
    READABLE_VERSIONS,
    CorruptRecordError,
    TABLE_FIELDS,
    decode_ext,
    decode_id,
    decode_ids,
    decode_position,
    decode_records,
    decode_rows_into,
    encode_ext,
    encode_id,
    encode_position,
    encode_rows,
    record_size,
)
from riskgraph.state.keys import BLOB, POS, blob_key, ext_key, name_of, node_key, node_keys, position_key

INT64_MAX = (1 << 63) - 1
floats64 = st.floats(allow_nan=True, allow_infinity=True)
floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@st.composite
def tables(draw):
    """A small node table with arbitrary contents (NaN, +-inf, extreme ints) and a slot order."""
    n = draw(st.integers(1, 5))
    mem_dim = draw(st.integers(0, 9))
    t = NodeArrays(
        acc=draw(hnp.arrays(np.float64, (n, N_ACC), elements=floats64)),
        ring_nbr=draw(hnp.arrays(np.int64, (n, RING))),
        ring_ts=draw(hnp.arrays(np.float64, (n, RING), elements=floats64)),
        ring_amt=draw(hnp.arrays(np.float32, (n, RING), elements=floats32)),
        ring_dir=draw(hnp.arrays(np.int8, (n, RING))),
        ring_n=draw(hnp.arrays(np.int64, (n,))),
        mem=draw(hnp.arrays(np.float32, (n, mem_dim), elements=floats32)),
        mem_ts=draw(hnp.arrays(np.float64, (n,), elements=floats64)),
    )
    slots = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n))
    return t, np.array(slots, dtype=np.int64)


def _rows(t: NodeArrays, slots: np.ndarray) -> list[bytes]:
    return [b"".join(getattr(t, f)[s].tobytes() for f in TABLE_FIELDS) for s in slots.tolist()]


@settings(max_examples=60, deadline=None)
@given(tables())
def test_rows_round_trip_bit_for_bit(data):
    t, slots = data
    values = encode_rows(t, slots)
    assert all(len(v) == record_size(t.mem_dim) for v in values)
    out = NodeArrays.empty(len(slots), t.mem_dim)
    dest = np.arange(len(slots))[::-1].copy()  # land in other slots than they came from
    decode_rows_into(out, dest, values)
    assert _rows(out, dest) == _rows(t, slots)
    assert encode_rows(out, dest) == values  # encoding is deterministic


@st.composite
def trimmable(draw):
    """A table whose rows end in zero mem columns (some of them), a slot order and a trim width."""
    t, slots = draw(tables())
    trim = draw(st.integers(0, t.mem_dim))
    for r in range(t.mem.shape[0]):
        if draw(st.booleans()):
            t.mem[r, trim:] = 0.0
    return t, slots, trim


@settings(max_examples=80, deadline=None)
@given(trimmable())
def test_trimmed_records_round_trip_bit_for_bit(data):
    t, slots, trim = data
    values = encode_rows(t, slots, trim=trim)
    tail = t.mem[slots, trim:].view(np.uint32)
    cut = ~tail.any(axis=1)  # -0.0 and NaN are not zero: those rows stay whole
    full = record_size(t.mem_dim)
    assert [len(v) for v in values] == [full - 4 * (t.mem_dim - trim) if c else full for c in cut.tolist()]
    out = NodeArrays.empty(len(slots), t.mem_dim)
    dest = np.arange(len(slots))[::-1].copy()
    decode_rows_into(out, dest, values)
    assert _rows(out, dest) == _rows(t, slots)
    # a store written before trimming existed (v1, all whole) still reads, mixed with trimmed records
    v1 = [(1).to_bytes(4, "little") + v[4:] for v in encode_rows(t, slots)]
    mixed = [a if k % 2 else b for k, (a, b) in enumerate(zip(values, v1))]
    decode_rows_into(out, dest, mixed)
    assert _rows(out, dest) == _rows(t, slots)


def test_trimmed_record_damage_is_caught() -> None:
    t = NodeArrays.empty(1, mem_dim=6)
    t.mem[0] = [1, 2, 0, 0, 0, 0]
    v = encode_rows(t, np.array([0]), trim=2)[0]
    assert len(v) == record_size(6) - 16
    for bad in (v[:-4], v + bytes(4), (1).to_bytes(4, "little") + v[4:], v[:4] + (3).to_bytes(4, "little") + v[8:]):
        with pytest.raises(CorruptRecordError, match="record 1"):
            decode_records([v, bad], 6)
    with pytest.raises(ValueError, match="trim"):
        encode_rows(t, np.array([0]), trim=7)


@settings(max_examples=60, deadline=None)
@given(tables(), st.data())
def test_damaged_records_are_rejected_with_their_index(data, draw):
    t, slots = data
    values = encode_rows(t, slots)
    i = draw.draw(st.integers(0, len(values) - 1))
    v = values[i]
    kind = draw.draw(st.sampled_from(["truncate", "extend", "version", "mem_dim", "none"]))
    if kind == "truncate":
        values[i] = v[: draw.draw(st.integers(0, len(v) - 1))]
    elif kind == "extend":
        values[i] = v + draw.draw(st.binary(min_size=1, max_size=20))
    elif kind == "version":
        values[i] = draw.draw(st.integers(0, 2**32 - 1).filter(lambda x: x not in READABLE_VERSIONS)
                              ).to_bytes(4, "little") + v[4:]
    elif kind == "mem_dim":
        other = draw.draw(st.integers(0, 2**32 - 1).filter(lambda m: m != t.mem_dim))
        values[i] = v[:4] + other.to_bytes(4, "little") + v[8:]
    else:
        values[i] = None
    with pytest.raises(CorruptRecordError) as exc:
        decode_records(values, t.mem_dim)
    assert exc.value.index == i and f"record {i}" in str(exc.value)


@given(st.integers(0, INT64_MAX))
def test_id_codec_round_trips(i):
    assert decode_id(encode_id(i)) == i
    assert decode_ids([encode_id(i), encode_id(0)]).tolist() == [i, 0]


@given(st.integers(0, INT64_MAX), st.integers(0, INT64_MAX))
def test_node_keys_sort_like_ids(a, b):
    assert (node_key(a) < node_key(b)) == (a < b)
    assert node_keys(np.array([a, b])) == [node_key(a), node_key(b)]


@given(st.integers(max_value=-1) | st.integers(min_value=INT64_MAX + 1))
def test_out_of_range_ids_and_positions_are_refused(v):
    with pytest.raises(ValueError):
        encode_id(v)
    with pytest.raises(ValueError):
        encode_position(v)


@given(st.integers(0, INT64_MAX))
def test_position_codec_round_trips(p):
    assert decode_position(encode_position(p)) == p


@given(st.binary().filter(lambda b: len(b) != 8))
def test_wrong_length_ids_and_positions_are_corrupt(b):
    with pytest.raises(CorruptRecordError):
        decode_id(b)
    with pytest.raises(CorruptRecordError):
        decode_position(b)


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300)


@given(texts)
def test_external_ids_and_names_round_trip(s):
    assert decode_ext(encode_ext(s)) == s
    assert name_of(position_key(s), POS) == s
    assert name_of(blob_key(s), BLOB) == s
    assert ext_key(s)[1:].decode("utf-8") == s


@given(texts, texts)
def test_text_keys_are_injective(a, b):
    assert (ext_key(a) == ext_key(b)) == (a == b)
    assert (position_key(a) == blob_key(b)) is False  # prefixes keep the kinds apart
