"""Write event logs (CSV, Parquet, JSONL) and entity label files.

Flat formats (CSV, Parquet) have the columns ``id, ts, src, dst, kind, amount,
label, typology``, then one ``attr.<name>`` column per attribute name found in
the events and one ``feature.<name>`` column per numeric feature, in sorted
order; missing values are empty (CSV) or null (Parquet). JSONL has one event
per line exactly as on the ``events`` topic plus a ``"typology"`` key.
A ``.gz`` suffix after ``.csv`` or ``.jsonl`` compresses the file.
:class:`simulators.replay.EventFile` reads all of them back.

>>> import tempfile, pathlib
>>> from riskgraph.streams.events import Event
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> evs = [Event(id="a", ts=1.0, src="x", dst="y", kind="payment", amount=2.5, label=0,
...              attrs={"channel": "pos"})]
>>> write_events(evs, d / "log.csv", typology=[None])
1
>>> (d / "log.csv").read_text().splitlines()[1]  # pyarrow quotes every string
'"a",1,"x","y","payment",2.5,0,,"pos"'
>>> write_entity_labels({"y": 0, "x": 1}, d / "labels.csv")
2
>>> (d / "labels.csv").read_text().split()
['entity,label', 'x,1', 'y,0']
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from riskgraph.streams.events import Event, encode

#: Supported file name endings, longest first (so ".csv.gz" wins over ".gz").
FORMATS: tuple[tuple[str, str], ...] = (
    (".csv.gz", "csv"), (".jsonl.gz", "jsonl"), (".ndjson", "jsonl"),
    (".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet"), (".jsonl", "jsonl"),
)
BASE_COLUMNS: tuple[str, ...] = ("id", "ts", "src", "dst", "kind", "amount", "label", "typology")
CHUNK = 65_536  # rows per Parquet row group / CSV write call


def format_of(path: str | os.PathLike[str]) -> str:
    """``"csv"``, ``"parquet"`` or ``"jsonl"`` from the file name; ValueError otherwise.

    >>> format_of("x/events.csv.gz"), format_of("E.PARQUET")
    ('csv', 'parquet')
    """
    name = Path(path).name.lower()
    for suffix, fmt in FORMATS:
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"cannot tell the format of {str(path)!r}: use one of the suffixes "
                     + ", ".join(s for s, _ in FORMATS) + " (or pass fmt=)")


def write_events(result_or_events: Any, path: str | os.PathLike[str],
                 typology: Sequence[str | None] | None = None) -> int:
    """Write events to ``path`` (format from the suffix); return the number written.

    ``result_or_events`` is a :class:`~simulators.transactions.SimResult`, which
    brings its own typology column unless ``typology`` is given, or any iterable
    of Events.
    """
    # duck-typed so that transactions can re-export this module's functions
    if hasattr(result_or_events, "events") and hasattr(result_or_events, "typology"):
        events = result_or_events.events
        typ = result_or_events.typology if typology is None else typology
    else:
        events = list(result_or_events)
        typ = typology if typology is not None else [None] * len(events)
    for i, e in enumerate(events):
        if not isinstance(e, Event):
            raise ValueError(f"item {i} is a {type(e).__name__}, not an Event")
    if len(typ) != len(events):
        raise ValueError(f"typology has {len(typ)} entries for {len(events)} events")
    fmt = format_of(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        _write_jsonl(events, typ, path)
    else:
        _write_flat(events, typ, path, fmt)
    return len(events)


def _open_out(path: Path) -> IO[bytes]:
    # the stdlib's gzip at level 6: several times faster than pyarrow's default level
    if path.name.lower().endswith(".gz"):
        return gzip.GzipFile(path, "wb", compresslevel=6, mtime=0)  # mtime=0: same bytes every run
    return path.open("wb")


def _write_jsonl(events: Sequence[Event], typ: Sequence[str | None], path: Path) -> None:
    enc = msgspec.json.Encoder()
    with _open_out(path) as out:
        for e, t in zip(events, typ):
            # splice the key into the object: the event bytes stay exactly as on the topic
            out.write(encode(e)[:-1] + b',"typology":' + enc.encode(t) + b"}\n")


def _schema(events: Sequence[Event]) -> tuple[list[str], list[str], pa.Schema]:
    attr_keys = sorted({k for e in events if e.attrs for k in e.attrs})
    feat_keys = sorted({k for e in events if e.features for k in e.features})
    fields = [pa.field("id", pa.string()), pa.field("ts", pa.float64()), pa.field("src", pa.string()),
              pa.field("dst", pa.string()), pa.field("kind", pa.string()), pa.field("amount", pa.float64()),
              pa.field("label", pa.int8()), pa.field("typology", pa.string())]
    fields += [pa.field(f"attr.{k}", pa.string()) for k in attr_keys]
    fields += [pa.field(f"feature.{k}", pa.float64()) for k in feat_keys]
    return attr_keys, feat_keys, pa.schema(fields)


def _table(events: Sequence[Event], typ: Sequence[str | None], attr_keys: list[str],
           feat_keys: list[str], schema: pa.Schema) -> pa.Table:
    cols: list[list] = [
        [e.id for e in events], [e.ts for e in events], [e.src for e in events],
        [e.dst for e in events], [e.kind for e in events], [e.amount for e in events],
        [e.label for e in events], list(typ),
    ]
    for k in attr_keys:
        cols.append([e.attrs.get(k) if e.attrs else None for e in events])
    for k in feat_keys:
        cols.append([e.features.get(k) if e.features else None for e in events])
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)], schema=schema)


def _write_flat(events: Sequence[Event], typ: Sequence[str | None], path: Path, fmt: str) -> None:
    attr_keys, feat_keys, schema = _schema(events)
    chunks = range(0, max(len(events), 1), CHUNK)
    if fmt == "parquet":
        with pq.ParquetWriter(str(path), schema) as w:
            for s in chunks:
                w.write_table(_table(events[s:s + CHUNK], typ[s:s + CHUNK], attr_keys, feat_keys, schema))
        return
    opts = pacsv.WriteOptions(quoting_style="needed")  # strings quoted, numbers and nulls bare
    with _open_out(path) as out, pacsv.CSVWriter(out, schema, write_options=opts) as w:
        for s in chunks:
            w.write_table(_table(events[s:s + CHUNK], typ[s:s + CHUNK], attr_keys, feat_keys, schema))


def write_entity_labels(labels: Mapping[str, int], path: str | os.PathLike[str]) -> int:
    """Write an ``entity,label`` CSV sorted by entity; return the number of rows."""
    rows = []
    for entity, label in labels.items():
        if not isinstance(entity, str) or not entity:
            raise ValueError(f"entity ids must be non-empty strings, got {entity!r}")
        if label not in (0, 1) or isinstance(label, float):
            raise ValueError(f"label of entity {entity!r} must be 0 or 1, got {label!r}")
        rows.append((entity, int(label)))
    rows.sort()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("entity", "label"))
        w.writerows(rows)
    return len(rows)
