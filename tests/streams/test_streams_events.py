"""The event contract: every dead-letter category, where dead letters come from, conversions, round trips."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskgraph.streams.events import (
    AMOUNT_MAX,
    CATEGORIES,
    MAX_EVENT_BYTES,
    TS_MAX,
    TS_MIN,
    DeadLetter,
    Event,
    EventError,
    decode_batch,
    decode_one,
    encode,
    encode_many,
    from_mapping,
    validate,
)

GOOD = b'{"id":"g","ts":10.5,"src":"a","dst":"b","kind":"payment","amount":3.0}'
BASE = '"id":"e1","ts":100.0,"src":"a","dst":"b","kind":"payment"'


def rec(extra: str = "", base: str = BASE) -> bytes:
    """A JSON event with ``extra`` members appended (which may override earlier ones)."""
    return ("{" + base + ("," + extra if extra else "") + "}").encode()


# (raw record, category, text the reason must contain: the field's path where there is one)
BAD_RECORDS = [
    (b"not json", "malformed_json", ""),
    (b'{"id":"e1","ts":', "malformed_json", "truncated"),
    (b"", "malformed_json", ""),
    (b'{"ts":1,"src":"a","dst":"b","kind":"payment"}', "missing_field", "`id`"),
    (b'{"id":"e","src":"a","dst":"b","kind":"payment"}', "missing_field", "`ts`"),
    (b'{"id":"e","ts":1,"dst":"b","kind":"payment"}', "missing_field", "`src`"),
    (b'{"id":"e","ts":1,"src":"a","kind":"payment"}', "missing_field", "`dst`"),
    (b'{"id":"e","ts":1,"src":"a","dst":"b"}', "missing_field", "`kind`"),
    (rec('"ts":"yesterday"'), "wrong_type", "`$.ts`"),
    (rec('"src":5'), "wrong_type", "`$.src`"),
    (rec('"amount":"12"'), "wrong_type", "`$.amount`"),
    (rec('"label":"1"'), "wrong_type", "`$.label`"),
    (rec('"features":{"x":"high"}'), "wrong_type", "$.features"),
    (rec('"attrs":{"channel":1}'), "wrong_type", "$.attrs"),
    (b"[1,2,3]", "wrong_type", "object"),
    (rec('"ts":-0.001'), "ts_out_of_range", "`$.ts`"),
    (rec(f'"ts":{TS_MAX + 1}'), "ts_out_of_range", "`$.ts`"),
    (rec('"amount":1e999'), "non_finite", "`$.amount`"),
    (rec('"ts":1e999'), "non_finite", "`$.ts`"),
    (rec('"features":{"x":-1e999}'), "non_finite", "$.features"),
    (rec('"label":3'), "invalid_value", "`$.label`"),
    (rec('"label":-1'), "invalid_value", "`$.label`"),
    (rec('"amount":2e15'), "invalid_value", "`$.amount`"),
    (rec('"amount":-2e15'), "invalid_value", "`$.amount`"),
    (rec('"src":""'), "invalid_value", "`$.src`"),
    (rec('"id":"' + "x" * 257 + '"'), "invalid_value", "`$.id`"),
    (rec('"kind":"' + "k" * 65 + '"'), "invalid_value", "`$.kind`"),
]


@pytest.mark.parametrize("raw,category,field", BAD_RECORDS, ids=[f"{c}-{i}" for i, (_, c, _) in
                                                                 enumerate(BAD_RECORDS)])
def test_bad_record_becomes_dead_letter_with_reason_raw_bytes_and_origin(raw, category, field):
    assert category in CATEGORIES
    values = [GOOD, raw, GOOD]
    batch = decode_batch(values, topic="events", partition=3, offsets=[700, 701, 702])
    assert batch.index == [0, 2]
    assert [e.id for e in batch.events] == ["g", "g"]
    (d,) = batch.dead
    assert d.category == category
    assert field in d.reason
    assert d.raw == raw and isinstance(d.raw, bytes)
    assert (d.topic, d.partition, d.offset, d.index) == ("events", 3, 701, 1)
    assert d.received_at > 0
    # the single-record decoder agrees with the batch decoder
    with pytest.raises(EventError) as exc:
        decode_one(raw)
    assert exc.value.category == category
    assert exc.value.reason == d.reason


def test_null_record_is_a_dead_letter_not_a_crash():
    batch = decode_batch([None, GOOD], offsets=[5, 6])  # a Kafka tombstone has a null value
    assert len(batch.events) == 1 and batch.index == [1]
    (d,) = batch.dead
    assert (d.category, d.raw, d.offset, d.index) == ("malformed_json", b"", 5, 0)
    assert "empty" in d.reason


def test_oversized_is_decided_by_byte_length_at_the_limit():
    ev = decode_one(GOOD)
    fits = len(GOOD)
    assert decode_batch([GOOD], max_bytes=fits).events == [ev]
    batch = decode_batch([GOOD], max_bytes=fits - 1, topic="t", partition=0, offsets=[9])
    (d,) = batch.dead
    assert d.category == "oversized" and d.raw == GOOD and d.offset == 9
    assert f"{fits} bytes" in d.reason and f"{fits - 1}-byte limit" in d.reason
    with pytest.raises(EventError) as exc:
        decode_one(GOOD, max_bytes=fits - 1)
    assert exc.value.category == "oversized"


def test_default_limit_rejects_a_record_just_over_max_event_bytes():
    pad = MAX_EVENT_BYTES - len(rec('"attrs":{"note":""}'))
    at_limit = rec('"attrs":{"note":"' + "n" * pad + '"}')
    assert len(at_limit) == MAX_EVENT_BYTES
    # the attribute is too long for the schema, but the size check must not be what rejects it
    assert decode_batch([at_limit]).dead[0].category != "oversized"
    over = rec('"attrs":{"note":"' + "n" * (pad + 1) + '"}')
    assert decode_batch([over]).dead[0].category == "oversized"


def test_dead_letters_without_origin_carry_none_and_batch_index():
    batch = decode_batch([b"{", GOOD, b"}"])
    assert [(d.index, d.offset, d.topic, d.partition) for d in batch.dead] == [(0, None, None, None),
                                                                              (2, None, None, None)]


def test_dead_letter_survives_json_with_raw_bytes_intact():
    raw = b'\xff\xfe not utf-8 {"id":'
    (d,) = decode_batch([raw], topic="events", partition=1, offsets=[42]).dead
    assert d.category == "malformed_json"
    back = msgspec.json.decode(msgspec.json.encode(d), type=DeadLetter)
    assert back == d and back.raw == raw


def test_offsets_must_align_with_values():
    # Misaligned offsets would attach the wrong offset to a dead letter (or crash on an
    # IndexError when the bad record lies past the end of ``offsets``): bad input, clear error.
    with pytest.raises(ValueError, match="offsets"):
        decode_batch([GOOD, b"{"], offsets=[1])


# -- from_mapping: what file rows turn into -------------------------------------------


def row(**kw):
    base = dict(id="r1", ts=100.0, src="a", dst="b", kind="payment")
    base.update(kw)
    return base


def test_from_mapping_turns_numeric_ids_into_strings():
    ev = from_mapping(row(id=7, src=12.0, dst=3.5, kind=4))
    assert (ev.id, ev.src, ev.dst, ev.kind) == ("7", "12", "3.5", "4")


def test_from_mapping_nan_amount_means_no_amount():
    ev = from_mapping(row(amount=float("nan")))
    assert ev.amount is None
    assert "amount" not in msgspec.json.decode(encode(ev))


@pytest.mark.parametrize("given_label,expected", [(0.0, 0), (1.0, 1), (True, 1), (False, 0), (0, 0), (1, 1),
                                                  (float("nan"), None), (None, None)])
def test_from_mapping_label_conversions(given_label, expected):
    ev = from_mapping(row(label=given_label))
    assert ev.label == expected
    assert ev.label is None or type(ev.label) is int


@pytest.mark.parametrize("kw,category,field", [
    (dict(label=3), "invalid_value", "`$.label`"),
    (dict(label=-1), "invalid_value", "`$.label`"),
    (dict(amount=2e15), "invalid_value", "`$.amount`"),
    (dict(amount=-1.5e15), "invalid_value", "`$.amount`"),
    (dict(ts=-5.0), "ts_out_of_range", "`$.ts`"),
    (dict(ts=TS_MAX * 2), "ts_out_of_range", "`$.ts`"),
    (dict(ts="noon"), "wrong_type", "`$.ts`"),
    (dict(src=""), "invalid_value", "`$.src`"),
    (dict(id=True), "wrong_type", "`$.id`"),
    (dict(features={"x": float("nan")}), "non_finite", "`$.features.x`"),
    (dict(features={"x": float("inf")}), "non_finite", "`$.features.x`"),
])
def test_from_mapping_rejects_with_category_and_field(kw, category, field):
    with pytest.raises(EventError) as exc:
        from_mapping(row(**kw))
    assert exc.value.category == category
    assert field in exc.value.reason
    assert str(exc.value) == exc.value.reason


@pytest.mark.parametrize("kw,field", [
    (dict(ts=float("nan")), "`$.ts`"),
    (dict(ts=float("inf")), "`$.ts`"),
    (dict(amount=float("inf")), "`$.amount`"),
    (dict(amount=float("-inf")), "`$.amount`"),
])
def test_from_mapping_non_finite_ts_and_amount_are_non_finite(kw, field):
    # A NaN time is not "before 1970" and an infinite amount is not "too large": the
    # category is non_finite, as for features, and the reason must not claim a bound.
    with pytest.raises(EventError) as exc:
        from_mapping(row(**kw))
    assert exc.value.category == "non_finite", exc.value.reason
    assert field in exc.value.reason


@pytest.mark.parametrize("kw", [dict(ts=float("nan")), dict(amount=float("nan")), dict(amount=float("inf"))])
def test_validate_flags_non_finite_fields_of_events_built_in_process(kw):
    ev = Event(**row(**kw))  # the constructor does not validate
    with pytest.raises(EventError) as exc:
        validate(ev)
    assert exc.value.category == "non_finite", exc.value.reason


def test_amount_bound_is_inclusive():
    assert from_mapping(row(amount=AMOUNT_MAX)).amount == AMOUNT_MAX
    assert from_mapping(row(amount=-AMOUNT_MAX)).amount == -AMOUNT_MAX
    assert decode_one(rec(f'"amount":{AMOUNT_MAX!r}')).amount == AMOUNT_MAX


def test_ts_bounds_are_inclusive():
    assert decode_one(rec(f'"ts":{TS_MIN!r}')).ts == TS_MIN
    assert decode_one(rec(f'"ts":{TS_MAX!r}')).ts == TS_MAX


# -- round trips ------------------------------------------------------------------------

_text = st.text(min_size=1, max_size=24)
events = st.builds(
    Event,
    id=_text,
    ts=st.floats(TS_MIN, TS_MAX, allow_nan=False),
    src=_text,
    dst=_text,
    kind=st.text(min_size=1, max_size=16),
    amount=st.none() | st.floats(-AMOUNT_MAX, AMOUNT_MAX, allow_nan=False),
    features=st.none() | st.dictionaries(_text, st.floats(allow_nan=False, allow_infinity=False), max_size=6),
    label=st.none() | st.sampled_from([0, 1]),
    attrs=st.none() | st.dictionaries(_text, st.text(max_size=24), max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(ev=events)
def test_encode_decode_round_trip(ev: Event):
    raw = encode(ev)
    assert decode_one(raw) == ev
    assert validate(ev) is ev
    assert from_mapping(msgspec.to_builtins(ev)) == ev


@settings(max_examples=50, deadline=None)
@given(evs=st.lists(events, max_size=12), bad_at=st.lists(st.integers(0, 12), max_size=3))
def test_decode_batch_keeps_order_and_indexes(evs: list[Event], bad_at: list[int]):
    values = encode_many(evs)
    for k, pos in enumerate(sorted(set(bad_at), reverse=True)):
        values.insert(min(pos, len(values)), b"{bad " + str(k).encode())
    batch = decode_batch(values)
    assert batch.events == evs
    assert [values[i] for i in batch.index] == encode_many(evs)
    assert sorted(batch.index + [d.index for d in batch.dead]) == list(range(len(values)))
    assert all(d.category == "malformed_json" and d.raw == values[d.index] for d in batch.dead)


def test_nan_literal_in_json_is_malformed_and_large_finite_values_pass():
    # json cannot spell NaN: a producer that writes it produces malformed JSON, a dead letter
    (d,) = decode_batch([rec('"features":{"x":NaN}')]).dead
    assert d.category == "malformed_json"
    assert math.isfinite(decode_one(rec('"features":{"x":1e308}')).features["x"])
