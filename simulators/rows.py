"""Column mappings and the conversion of one file row into a validated Event.

A mapping says which file column holds each of our fields (``--map
src=sender,ts=time``). Fields are the Event's scalar fields ``id ts src dst
kind amount label``, ``attr.<name>`` / ``feature.<name>`` for one attribute or
feature (``attrs.<name>`` / ``features.<name>`` are the same fields), and
``attrs`` / ``features`` for a column holding a whole object (JSONL). A field
not in the mapping is read from the column of the same name when there is one;
columns named ``attr.<name>`` / ``feature.<name>`` are picked up automatically,
as :func:`simulators.writers.write_events` writes them.

Only ``ts``, ``src`` and ``dst`` are required. Without a ``kind`` column every
event gets the plan's default kind (:data:`DEFAULT_KIND`, or ``kind=`` of
:meth:`RowPlan.resolve`); an empty kind cell gets it too. Without an ``id``
column an event's id is derived from its row: ``<row number>-<hash of the
row's values>``, the same in every replay of the file, distinct for distinct
rows (two identical rows still differ in their number: a file's repeated line
is not turned into a duplicate event), and unlikely to collide with the ids of
another file replayed into the same state.

Values are converted leniently where file formats differ (CSV gives text,
Parquet typed values): numbers in text are parsed, labels may be
``true``/``false``/``1.0``. ``ts`` is read in the plan's unit (:data:`TS_UNITS`):
epoch seconds, milliseconds, microseconds or nanoseconds, or ISO-8601 text
(naive times are UTC); :func:`detect_ts_unit` picks the unit from the values'
magnitude. Amounts may be negative (a refund, a negative rating). Anything
still wrong is left for :func:`streams.events.from_mapping` to reject with its
field-naming reason.

>>> parse_mapping("src=sender, dst=receiver,ts=time,label=is_fraud,attrs.device=dev")
{'src': 'sender', 'dst': 'receiver', 'ts': 'time', 'label': 'is_fraud', 'attr.device': 'dev'}
>>> plan = RowPlan.resolve(["time", "sender", "receiver", "type", "attr.channel"],
...                        parse_mapping("ts=time,src=sender,dst=receiver,kind=type"))
>>> plan.convert({"time": "2024-01-01T00:00:01", "sender": "a", "receiver": "b",
...               "type": "payment", "attr.channel": "web"}, 7)
Event(id='7-f5667a722b981113', ts=1704067201.0, src='a', dst='b', kind='payment', amount=None, features=None, label=None, attrs={'channel': 'web'})
>>> plan = RowPlan.resolve(["rater", "ratee", "rating", "time"], parse_mapping("src=rater,dst=ratee,amount=rating,ts=time"),
...                        ts_unit="ms")
>>> e = plan.convert({"rater": "7", "ratee": "12", "rating": "-10", "time": "1700000000123"}, 0)
>>> e.kind, e.amount, e.ts
('event', -10.0, 1700000000.123)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from riskgraph.streams.events import TS_MAX, TS_MIN, Event, EventError, from_mapping

SCALAR_FIELDS: tuple[str, ...] = ("id", "ts", "src", "dst", "kind", "amount", "label")
OBJECT_FIELDS: tuple[str, ...] = ("attrs", "features")
REQUIRED_FIELDS: tuple[str, ...] = ("ts", "src", "dst")
#: The kind of an event whose file has no kind column (or an empty cell).
DEFAULT_KIND = "event"
#: Timestamp units: units per second of a numeric ``ts``; ``iso`` is ISO-8601 text.
TS_UNITS: dict[str, float | None] = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9, "iso": None}
_UNIT_WORDS = {"s": "epoch seconds", "ms": "epoch milliseconds", "us": "epoch microseconds",
               "ns": "epoch nanoseconds", "iso": "ISO-8601 date times"}
_FIELD_HELP = ("id, ts, src, dst, kind, amount, label, attrs, features, attr.<name> (or attrs.<name>), "
               "feature.<name> (or features.<name>)")
_ALIASES = (("attrs.", "attr."), ("features.", "feature."))


class MappingError(ValueError):
    """A column mapping does not fit the fields or the file."""


def _canonical(name: str) -> str:
    for alias, prefix in _ALIASES:
        if name.startswith(alias):
            return prefix + name[len(alias):]
    return name


def check_field(name: str) -> None:
    """Raise :class:`MappingError` unless ``name`` is a field a column can map to."""
    name = _canonical(name)
    if name in SCALAR_FIELDS or name in OBJECT_FIELDS:
        return
    for prefix in ("attr.", "feature."):
        if name.startswith(prefix) and len(name) > len(prefix):
            return
    raise MappingError(f"unknown field {name!r} in the column mapping; fields are {_FIELD_HELP} "
                       "(the syntax is field=column, e.g. src=sender)")


def parse_mapping(spec: str | None) -> dict[str, str]:
    """Parse ``"field=column,field=column"`` into ``{field: column}``.

    ``attrs.<name>`` and ``features.<name>`` come back as ``attr.<name>`` and ``feature.<name>``.

    >>> parse_mapping("sender=src")
    Traceback (most recent call last):
    ...
    riskgraph.simulators.rows.MappingError: unknown field 'sender' in the column mapping; fields are id, ts, src, dst, kind, amount, label, attrs, features, attr.<name> (or attrs.<name>), feature.<name> (or features.<name>) (the syntax is field=column, e.g. src=sender)
    """
    out: dict[str, str] = {}
    if spec is None or not spec.strip():
        return out
    for part in spec.split(","):
        if not part.strip():
            continue
        field, sep, column = part.partition("=")
        field, column = _canonical(field.strip()), column.strip()
        if not sep or not field or not column:
            raise MappingError(f"bad mapping item {part.strip()!r}: expected field=column")
        check_field(field)
        if field in out:
            raise MappingError(f"field {field!r} is mapped twice ({out[field]!r} and {column!r})")
        out[field] = column
    return out


def _number(v: Any) -> float | None:
    """``v`` as a float when it is a number or numeric text, else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def _iso(v: Any) -> float | None:
    """Epoch seconds of a datetime, a date or ISO-8601 text (naive: UTC), else None."""
    if isinstance(v, str):
        s = v.strip()
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            v = datetime.fromisoformat(s)
        except ValueError:
            return None
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc).timestamp()
    return None


def ts_reader(unit: str) -> Callable[[Any], Any]:
    """The converter of one ``ts`` value in ``unit`` (a key of :data:`TS_UNITS`).

    Numbers (and numeric text) are scaled to seconds; datetimes (typed Parquet columns)
    are read in any unit; ISO text too, except that ``iso`` does not take numbers.
    A value that is none of these raises :class:`EventError` (the row's dead letter).

    >>> [ts_reader("ms")(v) for v in ("1700000000500", 1700000000500, "2024-01-01T00:00:00Z")]
    [1700000000.5, 1700000000.5, 1704067200.0]
    >>> ts_reader("iso")("1700000000")
    Traceback (most recent call last):
    ...
    riskgraph.streams.events.EventError: ts '1700000000' is not an ISO-8601 date time - at `$.ts`
    """
    if unit not in TS_UNITS:
        raise MappingError(f"unknown timestamp unit {unit!r}: use one of {', '.join(TS_UNITS)}")
    scale = TS_UNITS[unit]

    def read(v: Any) -> Any:
        if scale is not None:
            x = _number(v)
            if x is not None:
                return x if scale == 1.0 else x / scale  # a division: 1700000000123 ms is 1700000000.123 s
        t = _iso(v)
        if t is None:
            raise EventError(f"ts {v!r} is not {what} - at `$.ts`", "wrong_type")
        return t
    what = "an ISO-8601 date time" if scale is None else f"a number ({_UNIT_WORDS[unit]}) or an ISO-8601 date time"
    return read


def detect_ts_unit(values: Iterable[Any]) -> str:
    """The unit of a sample of ``ts`` values: ``iso`` for date-time text, else from the
    magnitude of the largest number (event times after 1973 are above 1e11 in ms).

    >>> detect_ts_unit(["1700000000", "1700000060"]), detect_ts_unit([1.7e12]), detect_ts_unit([1.7e15])
    ('s', 'ms', 'us')
    >>> detect_ts_unit(["2024-01-01 10:00:00"]), detect_ts_unit([0.5, 3600.0])
    ('iso', 's')
    """
    top = -math.inf
    texts = 0
    for v in values:
        x = _number(v)
        if x is not None and math.isfinite(x):
            top = max(top, abs(x))
        elif v is not None:
            texts += 1
    if top == -math.inf:
        return "iso" if texts else "s"
    for unit, limit in (("s", 1e11), ("ms", 1e14), ("us", 1e17)):
        if top < limit:
            return unit
    return "ns"


def describe_ts_unit(unit: str) -> str:
    """Words for a unit, as the jobs print them: ``'epoch milliseconds'``."""
    return _UNIT_WORDS[unit]


def check_ts(value: Any, unit: str, *, row: int, column: str, source: str, detected: bool) -> None:
    """Raise :class:`MappingError` unless ``value`` reads as an event time in ``unit``:
    the file-level check of its first time, which says how to fix the unit."""
    try:
        t = ts_reader(unit)(value)
    except EventError:
        t = None
    how = "detected from its values" if detected else "given with --ts-unit"
    other = ", ".join(u for u in TS_UNITS if u != unit)
    if t is None:
        raise MappingError(f"{source}: row {row}: ts {value!r} (column {column!r}) cannot be read as "
                           f"{_UNIT_WORDS[unit]} ({how}); give the unit with --ts-unit {other}, or map "
                           "another column with ts=<column>")
    if not TS_MIN <= t <= TS_MAX:
        raise MappingError(f"{source}: row {row}: ts {value!r} (column {column!r}) read as {_UNIT_WORDS[unit]} "
                           f"({how}) is {t:g} s, outside 1970..2100; give the unit with --ts-unit {other}")


def _num(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


_LABEL_TEXT = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


def _label(v: Any) -> Any:
    if isinstance(v, str):
        return _LABEL_TEXT.get(v.strip().lower(), v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # a numeric code column (mcc 5411) read as float
    return str(v)


def row_id(row_number: int, values: Sequence[Any]) -> str:
    """The derived id of a row without an id column: its number and a hash of its values.

    >>> row_id(3, ["a", "b", "10"]) == row_id(3, ["a", "b", "10"]) != row_id(4, ["a", "b", "10"])
    True
    """
    text = "\x1f".join("" if v is None else str(v) for v in values)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return f"{row_number}-{digest}"


@dataclass(frozen=True)
class RowPlan:
    """Which column feeds which field, resolved once per file."""

    scalar: tuple[tuple[str, str], ...]  # (field, column)
    attr_cols: tuple[tuple[str, str], ...]  # (attr name, column)
    feature_cols: tuple[tuple[str, str], ...]
    attrs_col: str | None
    features_col: str | None
    id_from_row: bool
    kind: str = DEFAULT_KIND  # the kind of events without one
    ts_unit: str = "s"

    @property
    def columns(self) -> list[str]:
        """The file columns this plan reads."""
        cols = [c for _, c in self.scalar] + [c for _, c in self.attr_cols] + [c for _, c in self.feature_cols]
        cols += [c for c in (self.attrs_col, self.features_col) if c]
        return list(dict.fromkeys(cols))

    @property
    def ts_column(self) -> str:
        return dict(self.scalar)["ts"]

    def with_ts_unit(self, unit: str) -> RowPlan:
        """This plan reading ``ts`` in ``unit``."""
        ts_reader(unit)  # checks the name
        return replace(self, ts_unit=unit)

    @classmethod
    def resolve(cls, columns: Sequence[str], mapping: Mapping[str, str] | None = None, *,
                id_column_missing: str = "row", open_schema: bool = False, source: str = "the file",
                kind: str | None = None, ts_unit: str = "s") -> RowPlan:
        """Match fields to ``columns``; MappingError names what is missing and lists the columns.

        ``open_schema`` (JSONL) means objects may omit keys, so unmapped fields are
        always looked up by their own name even when the sampled keys lack them.
        ``kind``: the kind of events without one (default :data:`DEFAULT_KIND`).
        """
        mapping = {_canonical(f): c for f, c in (mapping or {}).items()}
        if kind is not None and not (isinstance(kind, str) and 1 <= len(kind.strip()) <= 64):
            raise MappingError(f"--kind must be a name of 1 to 64 characters, got {kind!r}")
        have = set(columns)
        listing = ", ".join(repr(c) for c in columns)
        for field, col in mapping.items():
            check_field(field)
            if col not in have:
                raise MappingError(f"{source}: column {col!r} (mapped to {field}) is not in the file; "
                                   f"its columns are: {listing}")
        scalar = []
        for field in SCALAR_FIELDS:
            col = mapping.get(field) or (field if field in have else None)
            if col is None and open_schema and field not in REQUIRED_FIELDS and field != "id":
                col = field
            if col is None and field in REQUIRED_FIELDS:
                raise MappingError(f"{source}: no column for required field {field!r}: name a column "
                                   f"{field!r} or map one with {field}=<column>; its columns are: {listing}")
            if col is not None:
                scalar.append((field, col))
        id_from_row = not any(f == "id" for f, _ in scalar)
        if id_from_row and id_column_missing != "row":
            raise MappingError(f"{source}: no 'id' column (map one with id=<column>, or let ids come "
                               f"from row numbers with id_column_missing='row'); its columns are: {listing}")
        used = set(mapping.values()) | {c for _, c in scalar}
        attr_cols = [(f[5:], c) for f, c in mapping.items() if f.startswith("attr.")]
        attr_cols += [(c[5:], c) for c in columns if c.startswith("attr.") and c not in used and len(c) > 5]
        feat_cols = [(f[8:], c) for f, c in mapping.items() if f.startswith("feature.")]
        feat_cols += [(c[8:], c) for c in columns if c.startswith("feature.") and c not in used and len(c) > 8]
        objs = {}
        for field in OBJECT_FIELDS:
            objs[field] = mapping.get(field) or (field if field in have or open_schema else None)
        ts_reader(ts_unit)
        return cls(scalar=tuple(scalar), attr_cols=tuple(attr_cols), feature_cols=tuple(feat_cols),
                   attrs_col=objs["attrs"], features_col=objs["features"], id_from_row=id_from_row,
                   kind=(kind or DEFAULT_KIND).strip(), ts_unit=ts_unit)

    def __post_init__(self) -> None:
        # the per-row converters, built once (a frozen dataclass: set through object)
        conv = {"ts": ts_reader(self.ts_unit), "amount": _num, "label": _label}
        object.__setattr__(self, "_convert", tuple((f, c, conv.get(f)) for f, c in self.scalar))
        object.__setattr__(self, "_id_columns", tuple(self.columns))

    def convert(self, row: Mapping[str, Any], row_number: int) -> Event:
        """The validated Event of one row; :class:`EventError` if it is not one."""
        get = row.get  # this runs per row: locals and exact type checks keep it cheap
        data: dict[str, Any] = {}
        if self.id_from_row:
            data["id"] = row_id(row_number, [get(c) for c in self._id_columns])  # type: ignore[attr-defined]
        for field, col, conv in self._convert:  # type: ignore[attr-defined]
            v = get(col)
            if v is not None:
                data[field] = v if conv is None else conv(v)
        if "kind" not in data:
            data["kind"] = self.kind
        attrs = {} if self.attrs_col is None else self._object(row, self.attrs_col, "attrs")
        for name, col in self.attr_cols:
            v = get(col)
            if v is not None:
                attrs[name] = v if type(v) is str else _text(v)
        if attrs:
            data["attrs"] = attrs
        if self.features_col is not None or self.feature_cols:
            feats = {} if self.features_col is None else self._object(row, self.features_col, "features")
            for name, col in self.feature_cols:
                v = get(col)
                if v is not None:
                    feats[name] = _num(v)
            if feats:
                data["features"] = feats
        return from_mapping(data)

    @staticmethod
    def _object(row: Mapping[str, Any], col: str | None, field: str) -> dict[str, Any]:
        if col is None:
            return {}
        v = row.get(col)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise EventError(f"Expected `object`, got `{type(v).__name__}` - at `$.{field}`", "wrong_type")
        return dict(v)
