"""The event contract: schema, fast decoding and validation, dead letters.

Validation uses `msgspec`: one compiled decoder checks JSON syntax, types and
bounds in a single pass in C (about a microsecond for a typical event), and its
error messages name the offending path (``$.ts``), which we keep verbatim in the
dead-letter reason. What msgspec cannot express (non-finite numbers arriving
through file rows rather than JSON) is checked here in Python.

>>> raw = b'{"id":"e1","ts":1700000000.5,"src":"alice","dst":"bob","kind":"payment","amount":12.5}'
>>> ev = decode_one(raw)
>>> ev.src, ev.amount
('alice', 12.5)
>>> decode_one(encode(ev)) == ev
True
>>> batch = decode_batch([raw, b'{"id":"e2","src":"a"}', b"not json"])
>>> len(batch.events), [d.category for d in batch.dead]
(1, ['missing_field', 'malformed_json'])
>>> batch.dead[0].reason
'Object missing required field `ts`'
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Annotated, Any, Iterable, Mapping, Sequence

import msgspec

#: Event time bounds in seconds since the epoch: 0 .. 2100-01-01. Relative clocks
#: (simulation steps, seconds since start) are valid; negative or far-future times are not.
TS_MIN: float = 0.0
TS_MAX: float = 4102444800.0
#: Largest accepted encoded event, in bytes.
MAX_EVENT_BYTES: int = 16 * 1024

#: Raw bytes a dead letter keeps by default. A poison record can be as large as the
#: broker allows; its dead letter must stay far below the producer's request limit
#: (base64 in JSON adds a third), or sending it fails and the partition is stuck.
DLQ_RAW_MAX_BYTES: int = 4096

#: Largest accepted |amount|: keeps float32 neighbour rings and decayed sums finite.
AMOUNT_MAX: float = 1e15

EntityId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Timestamp = Annotated[float, msgspec.Meta(ge=TS_MIN, le=TS_MAX)]


class Event(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One interaction between two entities (see ARCHITECTURE.md, "Event")."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    ts: Timestamp
    src: EntityId
    dst: EntityId
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    amount: Annotated[float, msgspec.Meta(ge=-AMOUNT_MAX, le=AMOUNT_MAX)] | None = None
    features: Annotated[dict[str, float], msgspec.Meta(max_length=64)] | None = None
    label: Annotated[int, msgspec.Meta(ge=0, le=1)] | None = None
    attrs: Annotated[dict[str, Annotated[str, msgspec.Meta(max_length=256)]], msgspec.Meta(max_length=32)] | None = None


class DeadLetter(msgspec.Struct, frozen=True, omit_defaults=True):
    """A record that could not be accepted, with the reason and where it came from."""

    raw: bytes  # the record as received (base64 in JSON), its first ``raw_max_bytes`` when longer
    reason: str  # human-readable, names the field when there is one
    category: str  # one of CATEGORIES
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    index: int | None = None  # position within the batch or the file row number
    received_at: float = 0.0
    raw_size: int | None = None  # the record's full size in bytes, when ``raw`` holds only its head
    raw_sha256: str | None = None  # hex SHA-256 of the full record, when ``raw`` holds only its head


CATEGORIES = (
    "oversized",
    "malformed_json",
    "malformed_record",  # a file row that cannot be parsed at all (field count, encoding)
    "missing_field",
    "wrong_type",
    "ts_out_of_range",
    "non_finite",
    "invalid_value",
    "duplicate_id",  # an event id already processed (within the engine's dedupe window)
    "bad_signature",  # feedback without a valid HMAC while RISKGRAPH_FEEDBACK_SECRET is set
    "unknown_alert",  # feedback on an alert this deployment did not raise (or no longer remembers)
)


def dead_letter(raw: bytes | None, reason: str, category: str, *, raw_max_bytes: int = DLQ_RAW_MAX_BYTES,
                **where: Any) -> DeadLetter:
    """A dead letter whose size is bounded whatever the record's: up to ``raw_max_bytes``
    of it are kept as they are; past that, its head, full size and SHA-256.

    >>> d = dead_letter(b"x" * 10_000, "too big", "oversized", raw_max_bytes=8, offset=7)
    >>> d.raw, d.raw_size, d.raw_sha256[:12], d.offset
    (b'xxxxxxxx', 10000, 'e4ee97ec2527', 7)
    >>> dead_letter(b"{", "bad", "malformed_json").raw_size is None
    True
    """
    raw = bytes(raw or b"")
    if len(raw) <= raw_max_bytes:
        return DeadLetter(raw=raw, reason=reason, category=category, **where)
    return DeadLetter(raw=raw[:raw_max_bytes], reason=reason, category=category, raw_size=len(raw),
                      raw_sha256=hashlib.sha256(raw).hexdigest(), **where)


class EventError(ValueError):
    """An event failed validation; ``category`` is one of :data:`CATEGORIES`."""

    def __init__(self, reason: str, category: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category


class DecodedBatch(msgspec.Struct):
    """Valid events in input order, their input indexes, and the dead letters."""

    events: list[Event]
    index: list[int]
    dead: list[DeadLetter]


_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def _classify(msg: str, exc: Exception) -> str:
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return "malformed_json"
    if "missing required field" in msg:
        return "missing_field"
    if "Number out of range" in msg or "non-finite" in msg:
        return "non_finite"
    if msg.endswith("`$.ts`") and ("<=" in msg or ">=" in msg):
        return "ts_out_of_range"
    if "<=" in msg or ">=" in msg:
        return "invalid_value"
    if "Expected" in msg and ", got" in msg:
        return "wrong_type"
    return "invalid_value"


def _check_finite(ev: Event) -> None:
    # JSON cannot carry NaN/inf (msgspec rejects 1e999 as out of range), but file
    # rows and in-process callers can: check the numeric fields once here.
    if not math.isfinite(ev.ts):
        raise EventError("non-finite number - at `$.ts`", "non_finite")
    if ev.amount is not None and not math.isfinite(ev.amount):
        raise EventError("non-finite number - at `$.amount`", "non_finite")
    if ev.amount is not None and abs(ev.amount) > AMOUNT_MAX:
        raise EventError(f"Expected |amount| <= {AMOUNT_MAX:g} - at `$.amount`", "invalid_value")
    if ev.features:
        for k, v in ev.features.items():
            if not math.isfinite(v):
                raise EventError(f"non-finite number - at `$.features.{k}`", "non_finite")


def decode_one(raw: bytes, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Decode and validate one JSON-encoded event; raise :class:`EventError` if invalid."""
    if len(raw) > max_bytes:
        raise EventError(f"record of {len(raw)} bytes exceeds the {max_bytes}-byte limit", "oversized")
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        msg = str(exc)
        raise EventError(msg, _classify(msg, exc)) from None


def decode_batch(
    values: Sequence[bytes],
    *,
    topic: str | None = None,
    partition: int | None = None,
    offsets: Sequence[int] | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
    raw_max_bytes: int = DLQ_RAW_MAX_BYTES,
) -> DecodedBatch:
    """Decode a micro-batch; invalid records become dead letters, never exceptions.

    ``offsets``, when given, must hold one offset per value (ValueError otherwise): a
    dead letter carries the offset of its own record.
    """
    if offsets is not None and len(offsets) != len(values):
        raise ValueError(f"offsets must align with values: {len(offsets)} offsets for {len(values)} values")
    events: list[Event] = []
    index: list[int] = []
    dead: list[DeadLetter] = []
    decode = _decoder.decode
    for i, raw in enumerate(values):
        if raw is None or len(raw) > max_bytes:
            reason = "record is empty (null value)" if raw is None else (
                f"record of {len(raw)} bytes exceeds the {max_bytes}-byte limit"
            )
            cat = "malformed_json" if raw is None else "oversized"
            dead.append(_dead(raw or b"", reason, cat, topic, partition, offsets, i, raw_max_bytes))
            continue
        try:
            ev = decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            msg = str(exc)
            dead.append(_dead(raw, msg, _classify(msg, exc), topic, partition, offsets, i, raw_max_bytes))
            continue
        events.append(ev)
        index.append(i)
    return DecodedBatch(events=events, index=index, dead=dead)


def _dead(raw: bytes, reason: str, category: str, topic: str | None, partition: int | None,
          offsets: Sequence[int] | None, i: int, raw_max_bytes: int = DLQ_RAW_MAX_BYTES) -> DeadLetter:
    return dead_letter(raw, reason, category, raw_max_bytes=raw_max_bytes, topic=topic, partition=partition,
                       offset=None if offsets is None else int(offsets[i]), index=i, received_at=time.time())


def from_mapping(row: Mapping[str, Any]) -> Event:
    """Build a validated event from a dict (a file row after column mapping).

    Types are converted strictly except that ids given as numbers become strings
    and ``label`` may be a bool or a 0/1 float, as CSV readers produce them.

    >>> from_mapping({"id": 7, "ts": 10, "src": 1, "dst": "b", "kind": "payment", "label": 1.0}).label
    1
    """
    data = dict(row)
    for key in ("id", "src", "dst", "kind"):
        v = data.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            data[key] = str(int(v)) if float(v).is_integer() else str(v)
    lab = data.get("label")
    if isinstance(lab, bool):
        data["label"] = int(lab)
    elif isinstance(lab, float):
        if math.isnan(lab):
            data["label"] = None
        elif lab in (0.0, 1.0):
            data["label"] = int(lab)
    amt = data.get("amount")
    if isinstance(amt, float) and math.isnan(amt):
        # an empty CSV cell reads as NaN: the event simply has no amount
        data["amount"] = None
    for key in ("ts", "amount"):
        v = data.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            raise EventError(f"non-finite number - at `$.{key}`", "non_finite")
    try:
        ev = msgspec.convert(data, Event, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        raise EventError(msg, _classify(msg, exc)) from None
    _check_finite(ev)
    return ev


def validate(ev: Event) -> Event:
    """Re-check an event built in process (bounds and finiteness); return it unchanged.

    Constructing a ``Event(...)`` directly skips msgspec's checks; this applies them.
    """
    try:  # first: a NaN time is not "out of range", it is not a number
        _check_finite(ev)
    except TypeError:
        pass  # not a number at all: msgspec's check below names the field and the type
    try:
        msgspec.convert(msgspec.to_builtins(ev), Event)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        raise EventError(msg, _classify(msg, exc)) from None
    return ev


def encode(ev: Event) -> bytes:
    """JSON bytes of an event (the wire format of topic ``events``)."""
    return _encoder.encode(ev)


def encode_many(events: Iterable[Event]) -> list[bytes]:
    """JSON bytes of each event."""
    enc = _encoder.encode
    return [enc(e) for e in events]
