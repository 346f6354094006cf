"""Writers and replay: round trips, column mappings, dead letters, ordering, pacing, label files."""

from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from riskgraph.simulators.replay import EventFile, FileBatch, MappingError, OrderError, pace, parse_mapping, read_entity_labels
from riskgraph.simulators.writers import write_entity_labels, write_events
from riskgraph.streams.events import Event


def _read_all(f: EventFile, batch_size: int = 1000) -> tuple[list[Event], list[int], list, dict[str, list]]:
    events, rows, dead, extras = [], [], [], {}
    for b in f.batches(batch_size):
        assert len(b.events) + len(b.dead) <= batch_size
        assert len(b.rows) == len(b.events)
        events += b.events
        rows += b.rows
        dead += b.dead
        for k, v in b.extras.items():
            assert len(v) == len(b.events)
            extras.setdefault(k, []).extend(v)
    return events, rows, dead, extras


@pytest.mark.parametrize("name", ["ev.csv", "ev.parquet", "ev.jsonl", "ev.csv.gz"])
def test_round_trip_simulation(tmp_path, small_sim, name):
    path = tmp_path / name
    assert write_events(small_sim, path) == len(small_sim.events)
    events, rows, dead, extras = _read_all(EventFile(path), batch_size=4096)
    assert dead == []
    assert events == small_sim.events
    assert rows == list(range(len(events)))
    assert extras["typology"] == small_sim.typology


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_round_trip_features_and_missing_values(tmp_path, suffix):
    evs = [
        Event(id="1", ts=10.0, src="a", dst="b", kind="reading", features={"temp": 21.5}, label=0),
        Event(id="2", ts=11.25, src="a", dst="c", kind="payment", amount=3.0, attrs={"channel": "pos"}),
        Event(id="3", ts=12.0, src="007", dst="b", kind="login", attrs={"device": "d1", "channel": "app"}),
    ]
    path = tmp_path / f"mixed{suffix}"
    write_events(evs, path)
    got, _, dead, extras = _read_all(EventFile(path, extra_columns=("typology", "nope")))
    assert dead == [] and got == evs  # "007" stays a string, absent amount/label stay None
    assert extras == {"typology": [None] * 3, "nope": [None] * 3}


def test_write_rejects_bad_input(tmp_path):
    ev = Event(id="1", ts=1.0, src="a", dst="b", kind="k")
    with pytest.raises(ValueError, match="format"):
        write_events([ev], tmp_path / "x.txt")
    with pytest.raises(ValueError, match="typology has 2 entries for 1 events"):
        write_events([ev], tmp_path / "x.csv", typology=[None, None])
    with pytest.raises(ValueError, match="not an Event"):
        write_events([{"id": "1"}], tmp_path / "x.csv")


def test_entity_labels_round_trip_and_errors(tmp_path, small_sim):
    path = tmp_path / "labels.csv"
    assert write_entity_labels(small_sim.entity_labels, path) == len(small_sim.entity_labels)
    assert read_entity_labels(path) == small_sim.entity_labels
    cases = {
        "a,b,c\nx,1,2\n": "cannot tell which columns hold the entity id and the label among 'a', 'b', 'c'; "
                            "name them with --entity-map",
        "entity,label\na,2\n": "line 2: label '2' of 'a' is not a label: labels must be binary: 0/1, -1/1",
        "entity,label\na,1\nb,0\na,0\n": "line 4: entity 'a' is labelled both '1' and '0'",
        "entity,label\n,1\n": "line 2: empty entity",
        "entity,label\na,1\nb,0\nc,-1\n": "the labels mix 0 and -1",
    }
    for text, match in cases.items():
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_entity_labels(path)
    path.write_text("label,entity,note\ntrue,x,hi\n0.0,y,\n")
    assert read_entity_labels(path) == {"x": 1, "y": 0}
    with pytest.raises(ValueError, match="must be 0 or 1"):
        write_entity_labels({"a": 3}, path)


def test_mapping_with_renamed_columns_csv(tmp_path):
    path = tmp_path / "bank.csv"
    path.write_text("time,sender,receiver,value,is_fraud,type,cntry,fraud_kind\n"
                    "2024-01-01T00:00:00,A,B,10.5,0,PAYMENT,GB,\n"
                    "1704067260,A,C,99,True,TRANSFER,FR,ato\n")
    f = EventFile(path, "src=sender,dst=receiver,ts=time,amount=value,label=is_fraud,kind=type,"
                        "attr.country=cntry", extra_columns=["fraud_kind"])
    events, rows, dead, extras = _read_all(f)
    assert dead == [] and rows == [0, 1]
    assert events == [
        Event(id=events[0].id, ts=1704067200.0, src="A", dst="B", kind="PAYMENT", amount=10.5, label=0,
              attrs={"country": "GB"}),
        Event(id=events[1].id, ts=1704067260.0, src="A", dst="C", kind="TRANSFER", amount=99.0, label=1,
              attrs={"country": "FR"}),
    ]
    assert extras == {"fraud_kind": [None, "ato"]}


def test_mapping_with_typed_parquet_columns(tmp_path):
    path = tmp_path / "typed.parquet"
    t0 = dt.datetime(2024, 1, 1, 12, 0, 0)
    pq.write_table(pa.table({
        "tx": pa.array([1, 2], pa.int64()), "when": pa.array([t0, t0 + dt.timedelta(seconds=1)]),
        "from": pa.array([10, 11]), "to": ["x", "y"], "what": ["p", "p"],
        "fraud": pa.array([False, True]), "mcc": pa.array([5411, 5812]),
    }), path)
    events, _, dead, _ = _read_all(EventFile(path, {"id": "tx", "ts": "when", "src": "from", "dst": "to",
                                                    "kind": "what", "label": "fraud", "attr.mcc": "mcc"}))
    assert dead == []
    assert [(e.id, e.ts, e.src, e.label, e.attrs) for e in events] == [
        ("1", 1704110400.0, "10", 0, {"mcc": "5411"}), ("2", 1704110401.0, "11", 1, {"mcc": "5812"})]


def test_mapping_errors(tmp_path):
    with pytest.raises(MappingError, match="unknown field 'sender'"):
        parse_mapping("sender=src")
    with pytest.raises(MappingError, match="expected field=column"):
        parse_mapping("src")
    with pytest.raises(MappingError, match="mapped twice"):
        parse_mapping("src=a,src=b")
    assert parse_mapping(" ") == {}
    path = tmp_path / "t.csv"
    path.write_text("time,sender,receiver,type\n1,a,b,p\n")
    with pytest.raises(MappingError, match=r"column 'from' \(mapped to src\) is not in the file; "
                                           r"its columns are: 'time', 'sender', 'receiver', 'type'"):
        EventFile(path, "src=from")
    with pytest.raises(MappingError, match="no column for required field 'ts'.*'sender'"):
        EventFile(path, "src=sender,dst=receiver,kind=type")
    with pytest.raises(MappingError, match="no 'id' column"):
        EventFile(path, "ts=time,src=sender,dst=receiver,kind=type", id_column_missing="error")


def test_bad_csv_rows_become_dead_letters(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "id,ts,src,dst,kind,amount,label\n"
        "a,1,x,y,payment,5,0\n"
        "b,yesterday,x,y,payment,5,0\n"
        "c,2,,y,payment,5,0\n"
        "d,3,x,y,payment\n"
        "e,4,x,y,payment,5,3\n"
        "f,5,x,y,payment,inf,0\n"
        "g,-6,x,y,payment,1,0\n"
        "\n"
        "h,7,x,y,payment,,1\n")
    events, rows, dead, _ = _read_all(EventFile(path), batch_size=3)
    assert [e.id for e in events] == ["a", "h"] and rows == [0, 7]
    assert events[1].amount is None and events[1].label == 1
    got = [(d.index, d.category, d.reason) for d in dead]
    assert got == [
        (1, "wrong_type", "ts 'yesterday' is not a number (epoch seconds) or an ISO-8601 date time - at `$.ts`"),
        (2, "missing_field", "Object missing required field `src`"),
        (3, "malformed_record", "line 5 has 5 fields, the header has 7"),
        (4, "invalid_value", "Expected `int` <= 1 - at `$.label`"),
        (5, "non_finite", "non-finite number - at `$.amount`"),
        (6, "ts_out_of_range", "Expected `float` >= 0.0 - at `$.ts`"),
    ]
    assert b'"yesterday"' in dead[0].raw and dead[2].raw == b"d,3,x,y,payment"


def test_bad_jsonl_and_parquet_rows_become_dead_letters(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id":"a","ts":1,"src":"x","dst":"y","kind":"k"}\n'
                     b'{"id":"b","ts":2,"src":"x"\n'
                     b'[1,2]\n'
                     b'{"id":"c","ts":3,"src":"x","kind":"k"}\n'
                     b'{"id":"d","ts":4,"src":"x","dst":"y","kind":"k","attrs":"no"}\n'
                     b'{"id":"e","ts":5,"src":"x","dst":"y","kind":"k"}\n')
    events, rows, dead, _ = _read_all(EventFile(path))
    assert [e.id for e in events] == ["a", "e"] and rows == [0, 5]
    assert [(d.index, d.category) for d in dead] == [
        (1, "malformed_json"), (2, "wrong_type"), (3, "missing_field"), (4, "wrong_type")]
    assert dead[0].raw == b'{"id":"b","ts":2,"src":"x"'
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "ts": [1.0, 2.0], "src": [None, "x"], "dst": ["y", "y"],
                             "kind": ["k", "k"]}), path)
    events, rows, dead, _ = _read_all(EventFile(path))
    assert rows == [1] and [(d.index, d.reason) for d in dead] == [(0, "Object missing required field `src`")]


def _unordered(tmp_path):
    path = tmp_path / "order.csv"
    path.write_text("id,ts,src,dst,kind\na,1,x,y,k\nb,3,x,y,k\nc,2,x,y,k\nbad,zzz,x,y,k\nd,3,x,y,k\n")
    return path


def test_order_error_names_row_and_timestamps(tmp_path):
    with pytest.raises(OrderError, match=r"row 2 has ts 2\.0, earlier than ts 3\.0 at row 1"):
        _read_all(EventFile(_unordered(tmp_path)))


def test_order_sort_and_allow(tmp_path):
    events, rows, dead, _ = _read_all(EventFile(_unordered(tmp_path), order="sort"), batch_size=2)
    assert [e.id for e in events] == ["a", "c", "b", "d"] and rows == [0, 2, 1, 4]  # stable for ties
    assert [d.index for d in dead] == [3]
    first = next(EventFile(_unordered(tmp_path), order="sort").batches(2))
    assert [d.index for d in first.dead] == [3]  # rows without a usable time come first
    events, rows, _, _ = _read_all(EventFile(_unordered(tmp_path), order="allow"))
    assert [e.id for e in events] == ["a", "b", "c", "d"] and rows == [0, 1, 2, 4]
    with pytest.raises(ValueError, match="order must be one of"):
        EventFile(_unordered(tmp_path), order="loose")


def test_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        EventFile(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty CSV file"):
        EventFile(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("id,ts,src,dst,kind\n")
    assert list(EventFile(tmp_path / "header.csv").batches()) == []
    (tmp_path / "events.txt").write_text("id,ts,src,dst,kind\na,1,x,y,k\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        EventFile(tmp_path / "events.txt")
    assert len(_read_all(EventFile(tmp_path / "events.txt", fmt="csv"))[0]) == 1
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        EventFile(tmp_path / "fake.parquet")
    with pytest.raises(ValueError, match="batch_size"):
        next(EventFile(tmp_path / "events.txt", fmt="csv").batches(0))


def _batches(times: list[float]) -> list[FileBatch]:
    return [FileBatch([Event(id=str(i), ts=t, src="a", dst="b", kind="k")], [i], []) for i, t in enumerate(times)]


def test_pace_as_fast_as_possible_and_in_scaled_time():
    t0 = time.monotonic()
    assert len(list(pace(_batches([0.0, 100.0, 200.0])))) == 3
    assert time.monotonic() - t0 < 0.1
    t0 = time.monotonic()
    out = list(pace(_batches([1000.0, 1000.05, 1000.1, 1000.1]), rate=1.0))
    elapsed = time.monotonic() - t0
    assert len(out) == 4 and 0.095 <= elapsed < 0.6
    t0 = time.monotonic()
    list(pace(_batches([0.0, 0.4]), rate=4.0))  # 0.4 s of event time at 4x
    assert 0.095 <= time.monotonic() - t0 < 0.6
    t0 = time.monotonic()
    list(pace(_batches([5.0, 1.0, 2.0]) + [FileBatch([], [], [])], rate=1.0))  # late batches: no wait
    assert time.monotonic() - t0 < 0.1
    with pytest.raises(ValueError, match="rate must be a positive finite number"):
        list(pace(_batches([0.0]), rate=0.0))


@pytest.mark.parametrize("name", ["ev.csv", "ev.parquet", "ev.jsonl"])
def test_count_rows_matches_batches(tmp_path, name):
    evs = [Event(id=str(i), ts=float(i), src="a", dst="b", kind="k") for i in range(7)]
    path = tmp_path / name
    write_events(evs, path)
    if name.endswith(".csv"):
        with path.open("a") as f:
            f.write("\nbad,row\n")  # a blank line is no row; a short record is a dead row
    f = EventFile(path)
    events, rows, dead, _ = _read_all(f)
    assert f.count_rows() == len(events) + len(dead) == (8 if name.endswith(".csv") else 7)


def test_undecodable_and_oversized_csv_records_are_dead_rows(tmp_path):
    path = tmp_path / "bytes.csv"
    path.write_bytes(b"id,ts,src,dst,kind\na,1,x,y,k\nb,2,\xff\xfe,y,k\nc,3,x,\"" + b"z" * 200_000
                     + b"\",k\nd,4,x,y,k\n")
    f = EventFile(path)
    events, rows, dead, _ = _read_all(f)
    assert rows == [0, 3] and [e.id for e in events] == ["a", "d"]
    assert [(d.index, d.reason) for d in dead] == [
        (1, "line 3 is not valid UTF-8"),
        (2, "unreadable CSV record at line 4: field larger than field limit (131072)")]
    assert dead[0].raw == b"b,2,\xff\xfe,y,k"
    assert f.count_rows() == 4
