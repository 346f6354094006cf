"""Parsing of real logs: timestamp units, optional kind and id, label files as users have them."""

from __future__ import annotations

import pytest

from riskgraph.simulators.labels import LabelFileError, load_entity_labels, parse_entity_map
from riskgraph.simulators.replay import EventFile
from riskgraph.simulators.rows import (MappingError, RowPlan, check_ts, detect_ts_unit, parse_mapping, row_id,
                                       ts_reader)
from riskgraph.streams.events import EventError


@pytest.mark.parametrize("values,unit", [
    (["0", "59.5", "86400"], "s"),  # a relative clock
    (["1700000000", "1700000001.25"], "s"),
    ([1_700_000_000_000], "ms"),
    (["1700000000000000"], "us"),
    ([1.7e18], "ns"),
    (["2024-01-01", "2024-01-02T10:00:00+02:00"], "iso"),
    ([], "s"),
])
def test_detect_ts_unit(values, unit):
    assert detect_ts_unit(values) == unit


def test_ts_reader_units_agree():
    want = 1_700_000_000.5
    assert ts_reader("s")("1700000000.5") == want
    assert ts_reader("ms")(1_700_000_000_500) == want
    assert ts_reader("us")("1700000000500000") == want
    assert ts_reader("ns")(1_700_000_000_500_000_000) == want
    assert ts_reader("iso")("2023-11-14T22:13:20.5Z") == want
    assert ts_reader("s")("2023-11-14 22:13:20.5") == want  # ISO text reads in any unit
    with pytest.raises(EventError, match="ts 'later' is not a number"):
        ts_reader("s")("later")
    with pytest.raises(MappingError, match="unknown timestamp unit 'h'"):
        ts_reader("h")


def test_check_ts_names_the_row_and_the_fix():
    with pytest.raises(MappingError, match=r"f.csv: row 4: ts '1700000000000' \(column 'when'\) read as epoch "
                                           r"seconds \(given with --ts-unit\) is 1.7e\+12 s, outside 1970..2100"):
        check_ts("1700000000000", "s", row=4, column="when", source="f.csv", detected=False)


def test_kind_and_id_are_optional():
    plan = RowPlan.resolve(["a", "b", "t"], parse_mapping("src=a,dst=b,ts=t"), kind="edit")
    e = plan.convert({"a": "x", "b": "y", "t": "5"}, 9)
    assert (e.kind, e.id) == ("edit", row_id(9, ["5", "x", "y"]))
    assert plan.convert({"a": "x", "b": "y", "t": "5"}, 9).id == e.id
    assert plan.convert({"a": "x", "b": "y", "t": "5"}, 10).id != e.id
    typed = RowPlan.resolve(["a", "b", "t", "kind"], parse_mapping("src=a,dst=b,ts=t"))
    assert typed.convert({"a": "x", "b": "y", "t": "5", "kind": None}, 0).kind == "event"  # an empty cell
    assert typed.convert({"a": "x", "b": "y", "t": "5", "kind": "pay"}, 0).kind == "pay"


def test_attrs_and_features_spellings():
    assert parse_mapping("attrs.device=d,features.score=s") == {"attr.device": "d", "feature.score": "s"}
    with pytest.raises(MappingError, match="mapped twice"):
        parse_mapping("attrs.device=d,attr.device=e")


def test_ts_unit_detected_from_the_file_and_forced(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("src,dst,ts\na,b,1700000000000\na,c,1700000001000\n")
    f = EventFile(p)
    assert f.plan.ts_unit == "ms" and f.ts_detected and "epoch milliseconds" in f.ts_note
    assert [e.ts for b in f.batches() for e in b.events] == [1_700_000_000.0, 1_700_000_001.0]
    assert "as given" in EventFile(p, ts_unit="ms").ts_note
    with pytest.raises(MappingError, match="row 0: ts '1700000000000'.*cannot be read as ISO-8601"):
        EventFile(p, ts_unit="iso")


@pytest.mark.parametrize("text,kw,want", [
    ("entity,label\na,1\nb,0\n", {}, {"a": 1, "b": 0}),
    ("id,is_fraud\na,1\nb,-1\n", {}, {"a": 1, "b": 0}),
    ("id,is_fraud\na,1\nb,-1\n", {"positive": "-1"}, {"a": 0, "b": 1}),
    ("node,y\na,TRUE\nb,false\n", {}, {"a": 1, "b": 0}),
    ("account,banned\na,yes\nb,No\n", {}, {"a": 1, "b": 0}),
    ("a,1\nb,-1\n", {}, {"a": 1, "b": 0}),  # no header
    ("12,1.0\n13,0.0\n", {}, {"12": 1, "13": 0}),  # numeric ids, float labels, no header
    ("score,user\n0,a\n1,b\n", {}, {"a": 0, "b": 1}),  # two columns: the one named like an id is the id
    ("x,who,flag\n1,a,0\n2,b,1\n", {"mapping": "entity=who,label=flag"}, {"a": 0, "b": 1}),
    ("entity,label\n a ,1\na,1\n", {}, {"a": 1}),  # repeated with the same label
])
def test_label_files(tmp_path, text, kw, want):
    p = tmp_path / "l.csv"
    p.write_text(text)
    assert load_entity_labels(p, **kw).labels == want


def test_label_file_errors(tmp_path):
    p = tmp_path / "l.csv"
    for text, match in [
        ("", "the entity label file is empty"),
        ("entity,label\na\n", "line 2 has 1 fields, the header has 2"),
        ("entity,label\na,1\na,0\n", "entity 'a' is labelled both '1' and '0'"),
    ]:
        p.write_text(text)
        with pytest.raises(LabelFileError, match=match):
            load_entity_labels(p)
    with pytest.raises(LabelFileError, match="--entity-map names entity twice"):
        parse_entity_map("entity=a,entity=b")
