"""Replay event files (CSV, Parquet, JSONL) as batches of validated Events.

:class:`EventFile` streams a file in chunks and turns each row into an
:class:`~streams.events.Event` through a column mapping
(:func:`simulators.rows.parse_mapping`). A row that is not a valid event
becomes a :class:`~streams.events.DeadLetter` whose ``index`` is the row
number and whose ``raw`` is the row (the JSONL line itself; for CSV and
Parquet the row's columns as a JSON object); the replay goes on.

Rows are numbered from 0: the n-th record after the CSV header, the n-th
non-blank JSONL line, the n-th Parquet row. Files without an id column get
ids derived from the row (:func:`simulators.rows.row_id`), so a replay of the
same file yields the same ids; files without a kind column get a default kind.
The unit of ``ts`` is given (``ts_unit``) or detected from the first rows'
values (:func:`simulators.rows.detect_ts_unit`); :attr:`EventFile.ts_note`
says which, and a first time that cannot be read in it stops the file with an
error naming the row and the fix.

CSV is read with the standard library's streaming ``csv`` reader, everything
as text: a malformed line or a value of the wrong type is then one dead row,
where a typed reader that infers column types from the first block would stop
at it. Parquet is read with ``pyarrow`` ``iter_batches``, only the needed
columns; JSONL line by line with ``msgspec``. ``.gz`` CSV and JSONL work too.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
>>> _ = p.write_text("time,sender,receiver,type\\n5,a,b,payment\\nx,a,b,payment\\n7,b,c,transfer\\n")
>>> [(len(b.events), b.rows, [d.reason for d in b.dead])
...  for b in EventFile(p, "ts=time,src=sender,dst=receiver,kind=type").batches(2)]
[(1, [0], ["ts 'x' is not a number (epoch seconds) or an ISO-8601 date time - at `$.ts`"]), (1, [2], [])]
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from riskgraph.simulators.labels import read_entity_labels
from riskgraph.simulators.rows import MappingError, RowPlan, check_ts, describe_ts_unit, detect_ts_unit, parse_mapping
from riskgraph.simulators.writers import format_of
from riskgraph.streams.events import MAX_EVENT_BYTES, DeadLetter, Event, EventError

__all__ = ["CorruptFileError", "EventFile", "FileBatch", "MappingError", "OrderError", "pace", "parse_mapping",
           "read_entity_labels"]

ORDERS = ("error", "sort", "allow")
_CHUNK = 65_536  # Parquet rows per read
_JSONL_SAMPLE = 1000  # JSONL lines whose keys stand for "the file's columns"
_TS_SAMPLE = 1000  # rows whose times decide the unit of ts
_raw_encoder = msgspec.json.Encoder(enc_hook=str)  # dates, decimals... as text in dead letters


class OrderError(ValueError):
    """A file is not in time order and ``order="error"`` was asked for."""


class CorruptFileError(ValueError):
    """The file cannot be read on from some point: a truncated or damaged ``.gz``, a damaged
    Parquet page. ``rows``: rows read (and yielded) before it."""

    def __init__(self, path: Path, rows: int, detail: str) -> None:
        super().__init__(f"{path} is truncated or corrupt ({detail}): reading stopped after {rows:,} rows")
        self.path, self.rows = path, rows


#: what the decompressors and pyarrow raise for a file that ends early or is damaged
_CORRUPT = (EOFError, gzip.BadGzipFile, zlib.error, pa.ArrowException)


def _not_utf8(line: bytes, lineno: int) -> str:
    """The dead-letter reason of a line that is not UTF-8, naming the line and the first bad byte."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"line {lineno} is not valid UTF-8 (byte 0x{line[exc.start]:02x} at byte {exc.start + 1})"
    return f"line {lineno} is not valid UTF-8"


def _until_damage(lines: Iterable[bytes]) -> Iterator[bytes]:
    try:
        yield from lines
    except _CORRUPT:
        return


def _corrupt_detail(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the compressed stream ends early"
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass
class FileBatch:
    """Valid events with their source rows, dead rows, and extra columns of the valid rows."""

    events: list[Event]
    rows: list[int]
    dead: list[DeadLetter]
    extras: dict[str, list[Any]] = field(default_factory=dict)


# one source row: (row number, row dict or None, raw bytes or None, reason/category if unreadable)
_Row = tuple[int, "dict[str, Any] | None", "bytes | None", "tuple[str, str] | None"]


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _open_text(path: Path) -> IO[str]:
    # surrogateescape: a bad byte sequence becomes one dead row, not a crash mid-file
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")
    return path.open("r", encoding="utf-8", errors="surrogateescape", newline="")


class EventFile:
    """An event log on disk, read as :class:`FileBatch` es.

    ``mapping``: ``{field: column}`` or a ``"field=column,..."`` string.
    ``order``: ``"error"`` raises :class:`OrderError` at the first event older than
    the one before it, ``"sort"`` reads the whole file and sorts it by ``ts``
    (stable; dead rows come first since they have no usable time), ``"allow"``
    passes the file through as it is. ``extra_columns``: file columns returned
    per valid event in ``FileBatch.extras`` (None where absent), never put into
    the event. ``id_column_missing``: ``"row"`` (ids derived from the rows) or ``"error"``.
    ``kind``: the kind of events without one (default ``"event"``). ``ts_unit``: ``s``,
    ``ms``, ``us``, ``ns`` or ``iso``; None detects it from the first rows.
    """

    def __init__(self, path: str | os.PathLike[str], mapping: Mapping[str, str] | str | None = None, *,
                 fmt: str | None = None, order: str = "error", extra_columns: Sequence[str] = ("typology",),
                 id_column_missing: str = "row", kind: str | None = None, ts_unit: str | None = None) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if id_column_missing not in ("row", "error"):
            raise ValueError(f"id_column_missing must be 'row' or 'error', got {id_column_missing!r}")
        if fmt is not None and fmt not in ("csv", "parquet", "jsonl"):
            raise ValueError(f"fmt must be 'csv', 'parquet' or 'jsonl', got {fmt!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{str(self.path)!r} is a directory, not an event file: name one file "
                                    "(.csv, .parquet or .jsonl)")
        if not self.path.is_file():
            raise FileNotFoundError(f"no such event file: {str(self.path)!r}")
        self.fmt = fmt or format_of(self.path)
        self.order = order
        self.extra_columns = tuple(extra_columns)
        self.mapping = parse_mapping(mapping) if isinstance(mapping, str) else dict(mapping or {})
        self.columns = self._read_columns()
        self.plan = RowPlan.resolve(self.columns, self.mapping, id_column_missing=id_column_missing,
                                    open_schema=self.fmt == "jsonl", source=str(self.path), kind=kind,
                                    ts_unit=ts_unit or "s")
        self.ts_detected = ts_unit is None
        self.plan = self.plan.with_ts_unit(self._ts_unit(ts_unit))

    @property
    def ts_note(self) -> str:
        """How ``ts`` is read, in words: ``"ts (column 'time') read as epoch milliseconds (detected ...)"``."""
        how = "detected from its values; --ts-unit s, ms, us, ns or iso forces one" if self.ts_detected else "as given"
        return f"ts (column {self.plan.ts_column!r}) read as {describe_ts_unit(self.plan.ts_unit)} ({how})"

    def _ts_unit(self, given: str | None) -> str:
        """The unit of ts: ``given``, or detected from the first rows; the first time must read in it."""
        col = self.plan.ts_column
        sample: list[tuple[int, Any]] = []
        rows = self._guarded_rows()
        try:
            for n, row, _, _ in rows:
                if row is not None and row.get(col) is not None:
                    sample.append((n, row.get(col)))
                    if len(sample) >= _TS_SAMPLE:
                        break
        except CorruptFileError:
            pass  # the replay reports the damage where it is
        finally:
            rows.close()
        unit = given or detect_ts_unit(v for _, v in sample)
        if sample:
            check_ts(sample[0][1], unit, row=sample[0][0], column=col, source=str(self.path),
                     detected=given is None)
        return unit

    def __repr__(self) -> str:
        return f"EventFile({str(self.path)!r}, fmt={self.fmt!r}, order={self.order!r})"

    def count_rows(self) -> int:
        """Rows in the file, numbered as in :meth:`batches` (Parquet: from the footer, no scan)."""
        try:
            return self._count_rows()
        except _CORRUPT as exc:
            raise CorruptFileError(self.path, 0, _corrupt_detail(exc)) from None

    def _count_rows(self) -> int:
        if self.fmt == "parquet":
            return int(pq.ParquetFile(self.path).metadata.num_rows)
        if self.fmt == "jsonl":
            with _open_binary(self.path) as f:
                return sum(1 for line in f if line.strip())
        n = 0
        with _open_text(self.path) as f:
            reader = csv.reader(f)
            next(reader, None)
            while True:
                try:
                    rec = next(reader)
                except StopIteration:
                    return n
                except csv.Error:
                    rec = [""]  # an unreadable record is still a (dead) row
                n += bool(rec)

    # -- reading -------------------------------------------------------------
    def _read_columns(self) -> list[str]:
        try:
            return self._columns()
        except _CORRUPT as exc:
            raise CorruptFileError(self.path, 0, _corrupt_detail(exc)) from None

    def _columns(self) -> list[str]:
        if self.fmt == "parquet":
            try:
                return list(pq.ParquetFile(self.path).schema_arrow.names)
            except Exception as exc:  # pyarrow raises several types for a non-Parquet file
                raise ValueError(f"{self.path}: not a readable Parquet file ({exc})") from None
        if self.fmt == "csv":
            with _open_text(self.path) as f:
                header = next(csv.reader(f), None)
            if not header:
                raise ValueError(f"{self.path}: empty CSV file (no header row)")
            if len(set(header)) != len(header):
                dup = sorted({c for c in header if header.count(c) > 1})
                raise ValueError(f"{self.path}: duplicate CSV column names {dup}")
            return header
        keys: dict[str, None] = {}
        with _open_binary(self.path) as f:
            seen = 0
            for line in _until_damage(f):  # a truncated .gz: its readable head names the columns
                if seen >= _JSONL_SAMPLE:
                    break
                if not line.strip():
                    continue
                seen += 1
                try:
                    obj = msgspec.json.decode(line)
                except (msgspec.DecodeError, UnicodeDecodeError):  # a dead row when read
                    continue
                if isinstance(obj, dict):
                    keys.update(dict.fromkeys(obj))
        if not seen:
            raise ValueError(f"{self.path}: empty JSONL file (no records)")
        return list(keys)

    def _csv_rows(self) -> Iterator[_Row]:
        with _open_text(self.path) as f:
            reader = csv.reader(f)
            header = next(reader)
            width = len(header)
            n = 0
            while True:
                try:
                    rec = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield n, None, b"", (f"unreadable CSV record at line {reader.line_num}: {exc}", "malformed_record")
                    n += 1
                    continue
                if not rec:
                    continue  # a blank line is not a record
                line = "\x1f".join(rec)
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:
                    raw = line.replace("\x1f", ",").encode("utf-8", "surrogateescape")
                    yield n, None, raw, (f"line {reader.line_num} is not valid UTF-8", "malformed_record")
                    n += 1
                    continue
                if len(rec) != width:
                    raw = ",".join(rec).encode()
                    yield n, None, raw, (f"line {reader.line_num} has {len(rec)} fields, the header has {width}",
                                         "malformed_record")
                else:
                    yield n, {k: (v if v != "" else None) for k, v in zip(header, rec)}, None, None
                n += 1

    def _parquet_rows(self) -> Iterator[_Row]:
        pf = pq.ParquetFile(self.path)
        have = set(self.columns)
        wanted = [c for c in dict.fromkeys(self.plan.columns + list(self.extra_columns)) if c in have]
        n = 0
        for batch in pf.iter_batches(batch_size=_CHUNK, columns=wanted):
            names = batch.schema.names
            lists = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for vals in zip(*lists):
                yield n, dict(zip(names, vals)), None, None
                n += 1

    def _jsonl_rows(self) -> Iterator[_Row]:
        decode = msgspec.json.decode
        with _open_binary(self.path) as f:
            n = 0
            for lineno, line in enumerate(f, 1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if len(line) > MAX_EVENT_BYTES:
                    yield n, None, line, (f"record of {len(line)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit",
                                          "oversized")
                    n += 1
                    continue
                try:
                    obj = decode(line)
                except msgspec.DecodeError as exc:
                    yield n, None, line, (str(exc), "malformed_json")
                except UnicodeDecodeError:
                    yield n, None, line, (_not_utf8(line, lineno), "malformed_record")
                else:
                    if isinstance(obj, dict):
                        yield n, obj, line, None
                    else:
                        yield n, None, line, (f"Expected `object`, got `{type(obj).__name__}`", "wrong_type")
                n += 1

    def _guarded_rows(self) -> Iterator[_Row]:
        """The format's rows; a file that ends early or is damaged raises :class:`CorruptFileError`."""
        rows = {"csv": self._csv_rows, "parquet": self._parquet_rows, "jsonl": self._jsonl_rows}[self.fmt]()
        read = 0
        try:
            for r in rows:
                yield r
                read = r[0] + 1
        except _CORRUPT as exc:
            raise CorruptFileError(self.path, read, _corrupt_detail(exc)) from None

    def _items(self) -> Iterator[tuple[int, Event | DeadLetter, Sequence[Any]]]:
        convert = self.plan.convert
        extra = self.extra_columns
        for n, row, raw, problem in self._guarded_rows():
            if problem is None:
                try:
                    yield n, convert(row, n), [row.get(c) for c in extra] if extra else ()
                    continue
                except EventError as exc:
                    problem = (exc.reason, exc.category)
            if raw is None:
                raw = _raw_encoder.encode(row)
            yield n, DeadLetter(raw=raw, reason=problem[0], category=problem[1], index=n,
                                received_at=time.time()), ()

    def batches(self, batch_size: int = 10_000, *, skip: int = 0) -> Iterator[FileBatch]:
        """Batches of at most ``batch_size`` rows (valid and dead together), in file order.

        ``skip``: leave out the first ``skip`` rows of that order (a resumed replay: rows a
        store already reflects); they are still read, and still checked for time order.
        A file that turns out truncated or damaged yields the rows before the damage, then
        raises :class:`CorruptFileError`.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise ValueError(f"skip must be an int >= 0, got {skip!r}")
        items: Iterable[tuple[int, Event | DeadLetter, Sequence[Any]]] = self._items()
        if self.order == "sort":
            everything = list(items)
            dead = [it for it in everything if isinstance(it[1], DeadLetter)]
            good = [it for it in everything if isinstance(it[1], Event)]
            good.sort(key=lambda it: it[1].ts)  # list.sort is stable: ties keep file order
            items = dead + good
        check = self.order == "error"
        last_ts, last_row = -math.inf, -1
        out = self._empty()
        try:
            for i, (n, item, extras) in enumerate(items):
                if isinstance(item, DeadLetter):
                    if i >= skip:
                        out.dead.append(item)
                else:
                    if check and item.ts < last_ts:
                        raise OrderError(
                            f"{self.path}: row {n} has ts {item.ts!r}, earlier than ts {last_ts!r} at row "
                            f"{last_row}; the file is not in time order (order='sort' sorts it, "
                            "order='allow' passes it through)")
                    last_ts, last_row = item.ts, n
                    if i < skip:
                        continue
                    out.events.append(item)
                    out.rows.append(n)
                    for c, v in zip(self.extra_columns, extras):
                        out.extras[c].append(v)
                if len(out.events) + len(out.dead) >= batch_size:
                    yield out
                    out = self._empty()
        except CorruptFileError:
            if out.events or out.dead:
                yield out  # the rows before the damage are scored; then the error
            raise
        if out.events or out.dead:
            yield out

    def _empty(self) -> FileBatch:
        return FileBatch(events=[], rows=[], dead=[], extras={c: [] for c in self.extra_columns})


def pace(batches: Iterable[FileBatch], rate: float | None = None, *,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> Iterator[FileBatch]:
    """Yield ``batches`` as fast as possible (``rate=None``) or in event time scaled by ``rate``.

    With ``rate`` r, a batch whose first event is t seconds (event time) after
    the first batch's is yielded t / r wall-clock seconds after it: 1.0 is real
    time, 60.0 a minute of events per second. Batches without events, or late
    ones, go out at once.

    >>> b = [FileBatch([Event(id=str(i), ts=i * 0.02, src="a", dst="b", kind="p")], [i], []) for i in range(3)]
    >>> t0 = time.monotonic(); _ = list(pace(b, rate=1.0)); 0.035 < time.monotonic() - t0 < 0.5
    True
    """
    if rate is None:
        yield from batches
        return
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive finite number or None, got {rate!r}")
    t0_event: float | None = None
    t0_wall = 0.0
    for b in batches:
        if b.events:
            ts = b.events[0].ts
            if t0_event is None:
                t0_event, t0_wall = ts, clock()
            else:
                delay = t0_wall + (ts - t0_event) / rate - clock()
                if delay > 0:
                    sleep(delay)
        yield b
