"""Damaged input files: a bad line is a dead letter naming it; a damaged .gz stops with one
clear error after yielding every row before the damage; a resumed read skips rows."""

from __future__ import annotations

import gzip
import json

import pytest

from riskgraph.simulators.replay import CorruptFileError, EventFile, OrderError


def _lines(n: int) -> list[bytes]:
    return [json.dumps({"id": f"e{i}", "ts": float(i), "src": "a", "dst": f"b{i % 3}", "kind": "payment"}).encode()
            for i in range(n)]


def test_a_line_that_is_not_utf8_is_a_dead_letter_naming_the_line(tmp_path):
    lines = _lines(10)
    lines[4] = lines[4].replace(b"payment", b"pay\xffment")
    p = tmp_path / "x.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    batches = list(EventFile(p).batches(3))
    dead = [d for b in batches for d in b.dead]
    assert sum(len(b.events) for b in batches) == 9  # the rest is read
    assert [(d.index, d.category) for d in dead] == [(4, "malformed_record")]
    assert "line 5 is not valid UTF-8" in dead[0].reason and "0xff" in dead[0].reason


def test_non_utf8_in_the_first_line_still_opens(tmp_path):
    lines = _lines(3)
    lines[0] = b'{"id": "\xfe"}'
    p = tmp_path / "x.jsonl"
    p.write_bytes(b"\n".join(lines))
    assert [len(b.dead) for b in EventFile(p).batches(10)] == [1]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_truncated_gz_yields_the_rows_before_it_then_one_error(tmp_path, fmt):
    n = 5000
    if fmt == "jsonl":
        raw = b"\n".join(_lines(n)) + b"\n"
    else:
        raw = ("id,ts,src,dst,kind\n" + "".join(f"e{i},{i},a,b{i % 3},payment\n" for i in range(n))).encode()
    data = gzip.compress(raw)
    p = tmp_path / f"x.{fmt}.gz"
    p.write_bytes(data[: len(data) // 2])
    f = EventFile(p)
    seen = []
    with pytest.raises(CorruptFileError, match=r"x\.\w+\.gz is truncated or corrupt .*reading stopped after") as ei:
        for b in f.batches(1000):
            seen += b.rows
    assert 0 < len(seen) < n
    assert seen == list(range(len(seen)))  # every row before the damage, the partial last batch included
    assert ei.value.rows == len(seen)
    with pytest.raises(CorruptFileError):
        f.count_rows()


def test_a_file_that_is_not_gzip_at_all(tmp_path):
    p = tmp_path / "x.csv.gz"
    p.write_text("id,ts,src,dst,kind\n")
    with pytest.raises(CorruptFileError, match="truncated or corrupt"):
        EventFile(p)


def test_empty_jsonl_and_a_directory_are_refused(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="empty JSONL file"):
        EventFile(tmp_path / "e.jsonl")
    with pytest.raises(IsADirectoryError, match="is a directory, not an event file"):
        EventFile(tmp_path)


def test_skip_leaves_out_the_first_rows_and_still_checks_their_order(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b"\n".join(_lines(10)))
    rows = [r for b in EventFile(p).batches(4, skip=6) for r in b.rows]
    assert rows == [6, 7, 8, 9]
    assert list(EventFile(p).batches(4, skip=10)) == []
    lines = _lines(10)
    lines[2], lines[7] = lines[7], lines[2]  # row 3 goes back in time: inside the skipped part
    p.write_bytes(b"\n".join(lines))
    with pytest.raises(OrderError):
        list(EventFile(p).batches(4, skip=5))
    with pytest.raises(ValueError, match="skip"):
        list(EventFile(p).batches(4, skip=-1))
