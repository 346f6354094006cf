"""Column mappings and the conversion of one file row into a validated Event.

A mapping says which file column holds each of our fields (``--map
src=sender,ts=time``). Fields are the Event's scalar fields ``id ts src dst
kind amount label``, ``attr.<name>`` / ``feature.<name>`` for one attribute or
feature, and ``attrs`` / ``features`` for a column holding a whole object
(JSONL). A field not in the mapping is read from the column of the same name
when there is one; columns named ``attr.<name>`` / ``feature.<name>`` are
picked up automatically, as :func:`simulators.writers.write_events` writes them.

Values are converted leniently where file formats differ (CSV gives text,
Parquet typed values): numbers in text are parsed, ``ts`` may be an ISO date
time (naive ones are UTC), labels may be ``true``/``false``/``1.0``. Anything
still wrong is left for :func:`streams.events.from_mapping` to reject with its
field-naming reason.

>>> parse_mapping("src=sender, dst=receiver,ts=time,label=is_fraud")
{'src': 'sender', 'dst': 'receiver', 'ts': 'time', 'label': 'is_fraud'}
>>> plan = RowPlan.resolve(["time", "sender", "receiver", "type", "attr.channel"],
...                        parse_mapping("ts=time,src=sender,dst=receiver,kind=type"))
>>> plan.convert({"time": "2024-01-01T00:00:01", "sender": "a", "receiver": "b",
...               "type": "payment", "attr.channel": "web"}, 7)
Event(id='row-7', ts=1704067201.0, src='a', dst='b', kind='payment', amount=None, features=None, label=None, attrs={'channel': 'web'})
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Mapping, Sequence

from riskgraph.streams.events import Event, EventError, from_mapping

SCALAR_FIELDS: tuple[str, ...] = ("id", "ts", "src", "dst", "kind", "amount", "label")
OBJECT_FIELDS: tuple[str, ...] = ("attrs", "features")
REQUIRED_FIELDS: tuple[str, ...] = ("ts", "src", "dst", "kind")
_FIELD_HELP = "id, ts, src, dst, kind, amount, label, attrs, features, attr.<name>, feature.<name>"


class MappingError(ValueError):
    """A column mapping does not fit the fields or the file."""


def check_field(name: str) -> None:
    """Raise :class:`MappingError` unless ``name`` is a field a column can map to."""
    if name in SCALAR_FIELDS or name in OBJECT_FIELDS:
        return
    for prefix in ("attr.", "feature."):
        if name.startswith(prefix) and len(name) > len(prefix):
            return
    raise MappingError(f"unknown field {name!r} in the column mapping; fields are {_FIELD_HELP} "
                       "(the syntax is field=column, e.g. src=sender)")


def parse_mapping(spec: str | None) -> dict[str, str]:
    """Parse ``"field=column,field=column"`` into ``{field: column}``.

    >>> parse_mapping("sender=src")
    Traceback (most recent call last):
    ...
    riskgraph.simulators.rows.MappingError: unknown field 'sender' in the column mapping; fields are id, ts, src, dst, kind, amount, label, attrs, features, attr.<name>, feature.<name> (the syntax is field=column, e.g. src=sender)
    """
    out: dict[str, str] = {}
    if spec is None or not spec.strip():
        return out
    for part in spec.split(","):
        if not part.strip():
            continue
        field, sep, column = part.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise MappingError(f"bad mapping item {part.strip()!r}: expected field=column")
        check_field(field)
        if field in out:
            raise MappingError(f"field {field!r} is mapped twice ({out[field]!r} and {column!r})")
        out[field] = column
    return out


def _ts(v: Any) -> Any:
    if isinstance(v, str):
        s = v.strip()
        try:
            return float(s)
        except ValueError:
            pass
        try:
            v = datetime.fromisoformat(s)
        except ValueError:
            return v  # from_mapping names the field in its error
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc).timestamp()
    return v


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


_CONVERT = {"ts": _ts, "amount": _num, "label": _label}


@dataclass(frozen=True)
class RowPlan:
    """Which column feeds which field, resolved once per file."""

    scalar: tuple[tuple[str, str], ...]  # (field, column)
    attr_cols: tuple[tuple[str, str], ...]  # (attr name, column)
    feature_cols: tuple[tuple[str, str], ...]
    attrs_col: str | None
    features_col: str | None
    id_from_row: bool

    @property
    def columns(self) -> list[str]:
        """The file columns this plan reads."""
        cols = [c for _, c in self.scalar] + [c for _, c in self.attr_cols] + [c for _, c in self.feature_cols]
        cols += [c for c in (self.attrs_col, self.features_col) if c]
        return list(dict.fromkeys(cols))

    @classmethod
    def resolve(cls, columns: Sequence[str], mapping: Mapping[str, str] | None = None, *,
                id_column_missing: str = "row", open_schema: bool = False, source: str = "the file") -> RowPlan:
        """Match fields to ``columns``; MappingError names what is missing and lists the columns.

        ``open_schema`` (JSONL) means objects may omit keys, so unmapped fields are
        always looked up by their own name even when the sampled keys lack them.
        """
        mapping = dict(mapping or {})
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
        return cls(scalar=tuple(scalar), attr_cols=tuple(attr_cols), feature_cols=tuple(feat_cols),
                   attrs_col=objs["attrs"], features_col=objs["features"], id_from_row=id_from_row)

    def convert(self, row: Mapping[str, Any], row_number: int) -> Event:
        """The validated Event of one row; :class:`EventError` if it is not one."""
        get = row.get  # this runs per row: locals and exact type checks keep it cheap
        data: dict[str, Any] = {"id": f"row-{row_number}"} if self.id_from_row else {}
        for field, col in self.scalar:
            v = get(col)
            if v is not None:
                conv = _CONVERT.get(field)
                data[field] = v if conv is None else conv(v)
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
