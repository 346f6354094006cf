"""Public-style logs through the CLI as a user calls it: no kind, no id, signed ratings,
timestamps in s / ms / us / ISO, entity label files of any common spelling, and
``evaluate`` for every labelling (events, entities, both, none)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from riskgraph.cli import main
from tests.cli.test_cli_e2e import one_error_line

MAP = "src=rater,dst=ratee,amount=rating,ts=time"
T0 = 1_600_000_000


def trust_network(n_rows: int = 1500, n_users: int = 120, n_bad: int = 12, seed: int = 3,
                  event_labels: bool = False) -> tuple[list[tuple], set[str]]:
    """A signed rating log: bad raters (u0..) receive mostly negative ratings."""
    rng = np.random.default_rng(seed)
    bad = {f"u{i}" for i in range(n_bad)}
    rows, t = [], T0
    for _ in range(n_rows):
        t += int(rng.integers(1, 600))
        a, b = rng.choice(n_users, 2, replace=False)
        ratee = f"u{b}"
        rating = int(rng.integers(-10, -2)) if ratee in bad and rng.random() < 0.8 else int(rng.integers(-1, 11))
        rows.append((f"u{a}", ratee, rating, t, int(ratee in bad) if event_labels else None))
    return rows, bad


def write_log(path: Path, rows: list[tuple], ts=lambda t: str(t), label: bool = False) -> Path:
    head = "rater,ratee,rating,time" + (",is_bad" if label else "")
    lines = [head] + [f"{a},{b},{r},{ts(t)}" + (f",{y}" if label else "") for a, b, r, t, y in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_labels(path: Path, users: int, bad: set[str], header: str = "id,is_fraud",
                 pos: str = "1", neg: str = "-1", extra: tuple[str, ...] = ()) -> Path:
    lines = [header] if header else []
    lines += [f"u{i},{pos if f'u{i}' in bad else neg}" for i in range(users)]
    lines += [f"{e},{pos}" for e in extra]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("net")
    rows, bad = trust_network()
    return d, rows, bad, write_log(d / "trust.csv", rows), write_labels(d / "labels.csv", 120, bad)


def evaluate(args: list[str], out: Path, capsys) -> tuple[dict, str]:
    rc = main(["evaluate", *args, "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    return json.loads((out / "metrics.json").read_text()), printed


def test_signed_trust_network_with_entity_labels_in_one_command(net, tmp_path, capsys):
    d, rows, bad, log, labels = net
    m, printed = evaluate([str(log), "--map", MAP, "--entity-labels", str(labels)], tmp_path / "ev", capsys)
    assert m["events_total"] == len(rows) and m["dead_letters"] == 0
    assert "epoch seconds (detected" in m["timestamps"]
    assert m["entity_positives"] == len(bad) and m["entity_negatives"] == 120 - len(bad)
    lo, hi = m["entity_auc_ci90"]
    assert lo <= m["entity_auc"] <= hi and 0 <= lo <= hi <= 1
    assert set(m["entity_components"]) >= {"entity_model", "entity_risk", "max_event_score"}
    # the entity model reads the negative ratings the bad users receive; the decayed event risk does not
    comps = m["entity_components"]
    assert m["entity_headline"] == "entity_model" and m["entity_auc"] == comps["entity_model"]["entity_auc"]
    assert comps["entity_model"]["entity_auc"] > max(comps["entity_risk"]["entity_auc"], 0.9)
    for row in m["entity_components"].values():
        assert {"entity_auc", "entity_auc_ci90", "entity_ap_ci90", "entity_precision_at_k",
                "entity_precision_at_100"} <= set(row)
    assert m["entity_precision_at_100"] is not None  # 120 labelled entities
    assert "no event quality metric" in m["quality"] and "entity metrics above" in m["quality"]
    assert "90% CI" in printed and "entity_auc" in printed
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "## Entity scores" in report and f"[{lo:.4f}, {hi:.4f}]" in report
    # kind and id were derived: the events are there, with the default kind
    rc = main(["replay", str(log), "--map", MAP, "--alerts", str(tmp_path / "a.jsonl"),
               "--entities", str(tmp_path / "ent.csv"), "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["events"] == len(rows) and summary["dead_letters"] == 0
    assert "epoch seconds" in summary["timestamps"]


@pytest.mark.parametrize("unit,fmt", [
    ("ms", lambda t: str(t * 1000 + 250)),
    ("us", lambda t: str(t * 1_000_000)),
    ("iso", lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ("iso", lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
])
def test_each_timestamp_unit_is_detected_and_stated(net, tmp_path, capsys, unit, fmt):
    d, rows, bad, _, labels = net
    log = write_log(tmp_path / "log.csv", rows[:300], ts=fmt)
    m, printed = evaluate([str(log), "--map", MAP], tmp_path / "ev", capsys)
    words = {"ms": "epoch milliseconds", "us": "epoch microseconds", "iso": "ISO-8601"}[unit]
    assert m["dead_letters"] == 0 and m["events_total"] == 300
    assert words in m["timestamps"] and "detected" in m["timestamps"] and words in printed
    forced, _ = evaluate([str(log), "--map", MAP, "--ts-unit", unit], tmp_path / "ev2", capsys)
    assert "as given" in forced["timestamps"] and forced["events_total"] == 300


def test_timestamps_read_the_same_in_every_unit(net, tmp_path):
    from riskgraph.simulators.replay import EventFile

    _, rows, _, _, _ = net
    fmts = {"s": str, "ms": lambda t: str(t * 1000), "us": lambda t: str(t * 10**6),
            "iso": lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()}
    got = {}
    for unit, fmt in fmts.items():
        f = EventFile(write_log(tmp_path / f"{unit}.csv", rows[:50], ts=fmt), MAP)
        assert f.plan.ts_unit == unit
        got[unit] = [e.ts for b in f.batches(20) for e in b.events]
    assert got["s"] == got["ms"] == got["us"] == got["iso"] == [float(r[3]) for r in rows[:50]]


def test_ids_and_kind_are_derived_stably(tmp_path):
    from riskgraph.simulators.replay import EventFile

    log = tmp_path / "dup.csv"
    log.write_text("rater,ratee,rating,time\na,b,5,100\na,b,5,100\nb,c,-3,101\n")
    read = lambda **kw: [e for b in EventFile(log, MAP, **kw).batches(2) for e in b.events]  # noqa: E731
    first, again = read(), read()
    assert [e.id for e in first] == [e.id for e in again]
    assert len({e.id for e in first}) == 3  # a repeated line is not made a duplicate event
    assert {e.kind for e in first} == {"event"} and {e.kind for e in read(kind="rating")} == {"rating"}
    assert [e.amount for e in first] == [5.0, 5.0, -3.0]
    skipped = [e.id for b in EventFile(log, MAP).batches(2, skip=1) for e in b.events]
    assert skipped == [e.id for e in first[1:]]  # a resumed read gives the same ids


def test_attrs_spelling_and_numeric_ids(tmp_path):
    from riskgraph.simulators.replay import EventFile

    log = tmp_path / "a.csv"
    log.write_text("rater,ratee,rating,time,device_id,ip\n17,42,-1,100,d1,1.2.3.4\n")
    [e] = [e for b in EventFile(log, MAP + ",attrs.device=device_id,attr.ip=ip").batches(5) for e in b.events]
    assert (e.src, e.dst, e.attrs) == ("17", "42", {"device": "d1", "ip": "1.2.3.4"})


def test_negative_amounts_are_scored_like_any_other(net, tmp_path, capsys):
    _, rows, _, _, _ = net
    negative = [(a, b, -abs(r) - 1, t, y) for a, b, r, t, y in rows[:400]]
    log = write_log(tmp_path / "neg.csv", negative)
    rc = main(["replay", str(log), "--map", MAP, "--alerts", str(tmp_path / "a.jsonl"),
               "--entities", str(tmp_path / "e.csv"), "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["events"] == 400 and summary["dead_letters"] == 0
    m, _ = evaluate([str(log), "--map", MAP], tmp_path / "ev", capsys)
    q = m["score_quantiles"]
    assert all(0.0 <= v <= 1.0 for v in q.values()) and q["p99"] > 0


@pytest.mark.parametrize("header,pos,neg,extra_args", [
    ("entity,label", "1", "0", []),
    ("id,is_fraud", "1", "-1", []),
    ("node,y", "true", "false", []),
    ("user,banned", "yes", "no", []),
    ("", "1", "-1", []),  # no header at all
    ("who,what,note", "1", "0", ["--entity-map", "entity=who,label=what"]),
    ("id,is_fraud", "-1", "1", ["--entity-positive", "-1"]),  # REV2's convention: -1 marks the fraudsters
])
def test_each_label_spelling(net, tmp_path, capsys, header, pos, neg, extra_args):
    d, rows, bad, log, _ = net
    labels = tmp_path / "l.csv"
    if header.count(",") == 2:
        labels.write_text("\n".join([header] + [f"u{i},{pos if f'u{i}' in bad else neg},x" for i in range(120)]))
    else:
        write_labels(labels, 120, bad, header=header, pos=pos, neg=neg)
    m, _ = evaluate([str(log), "--map", MAP, "--entity-labels", str(labels), *extra_args], tmp_path / "ev", capsys)
    assert (m["entity_positives"], m["entity_negatives"]) == (len(bad), 120 - len(bad))
    assert f"{len(bad)} risky" in m["entity_label_file"]


def test_labelled_entities_missing_from_the_file_are_counted_not_scored(net, tmp_path, capsys):
    d, rows, bad, log, _ = net
    labels = write_labels(tmp_path / "l.csv", 120, bad, extra=("ghost1", "ghost2"))
    m, printed = evaluate([str(log), "--map", MAP, "--entity-labels", str(labels)], tmp_path / "ev", capsys)
    assert m["entity_labels_not_in_file"] == 2 and m["entity_labels_not_in_file_positives"] == 2
    assert m["entity_positives"] == len(bad) and "entity_labels_not_in_file 2" in printed


def test_unlabelled_entities_are_left_out_unless_asked(net, tmp_path, capsys):
    d, rows, bad, log, _ = net
    labels = write_labels(tmp_path / "l.csv", 60, bad)  # u60..u119 unlabelled
    m, _ = evaluate([str(log), "--map", MAP, "--entity-labels", str(labels)], tmp_path / "ev", capsys)
    assert m["entity_negatives"] == 60 - len(bad) and m["entities_unlabelled"] == 60
    assert m["unlabelled_entities_are"] == "left out"
    m, _ = evaluate([str(log), "--map", MAP, "--entity-labels", str(labels), "--unlabelled-negative"],
                    tmp_path / "ev2", capsys)
    assert m["entity_negatives"] == 120 - len(bad)


@pytest.mark.parametrize("events,entities", [(False, False), (True, False), (False, True), (True, True)])
def test_evaluate_for_every_labelling(tmp_path, capsys, events, entities):
    rows, bad = trust_network(n_rows=800, event_labels=events)
    log = write_log(tmp_path / "log.csv", rows, label=events)
    args = [str(log), "--map", MAP + (",label=is_bad" if events else "")]
    if entities:
        args += ["--entity-labels", str(write_labels(tmp_path / "l.csv", 120, bad))]
    m, printed = evaluate(args, tmp_path / "ev", capsys)
    assert ("event_auc" in m) == events and ("entity_auc" in m) == entities
    if events:
        assert m["event_auc_ci90"][0] <= m["event_auc"] <= m["event_auc_ci90"][1]
        assert m["event_positives"] + m["event_negatives"] == len(rows)
    if not events and not entities:
        assert "no quality metric is possible" in m["quality"]
        assert m["alert_rate"] is not None and "score quantiles" in printed and m["events_per_second"] > 0
    assert "bootstrap" in m


def test_errors_are_one_line_exit_2(net, tmp_path, capsys):
    d, rows, bad, log, labels = net
    bad_labels = tmp_path / "bad.csv"
    ms_log = write_log(tmp_path / "ms.csv", rows[:20], ts=lambda t: str(t * 1000))
    cases = [
        ([str(log), "--map", MAP, "--ts-unit", "iso"], None, "row 0: ts '1600000"),
        ([str(ms_log), "--map", MAP, "--ts-unit", "s"], None, "outside 1970..2100; give the unit with --ts-unit"),
        ([str(log), "--map", MAP, "--kind", "k" * 65], None, "--kind must be a name of 1 to 64 characters"),
        ([str(log), "--map", MAP, "--entity-labels", str(tmp_path / "none.csv")], None, "no such entity label file"),
        ([str(log), "--map", MAP, "--entity-labels", str(bad_labels)], "a,b,c\nx,1,2\n",
         "name them with --entity-map entity=COLUMN,label=COLUMN"),
        ([str(log), "--map", MAP, "--entity-labels", str(bad_labels)], "id,y\nx,maybe\n",
         "line 2: label 'maybe' of 'x' is not a label"),
        ([str(log), "--map", MAP, "--entity-labels", str(bad_labels)], "id,y\nx,1\nz,0\nw,-1\n",
         "the labels mix 0 and -1"),
        ([str(log), "--map", MAP, "--entity-labels", str(labels), "--entity-positive", "2"], None,
         "--entity-positive '2' is not one of the file's label values"),
        ([str(log), "--map", MAP, "--entity-labels", str(labels), "--entity-map", "node=id"], None,
         "bad --entity-map item 'node=id'"),
        ([str(log), "--map", MAP, "--entity-labels", str(labels), "--entity-map", "entity=nope"], None,
         "column 'nope' (--entity-map entity=) is not in the file"),
        ([str(log), "--map", MAP, "--unlabelled-negative"], None, "give one with --entity-labels FILE"),
        ([str(log), "--map", "src=rater,dst=ratee"], None, "no column for required field 'ts'"),
    ]
    for args, text, needle in cases:
        if text is not None:
            bad_labels.write_text(text)
        rc = main(["evaluate", *args, "--out", str(tmp_path / "ev"), "--no-progress"])
        captured = capsys.readouterr()
        assert rc == 2, (args, captured)
        assert needle in one_error_line(captured.err, "evaluate"), (needle, captured.err)


def test_an_unreadable_time_in_a_row_is_a_dead_letter_naming_it(tmp_path, capsys):
    log = tmp_path / "t.csv"
    log.write_text("rater,ratee,rating,time\na,b,1,100\na,c,1,soon\nb,c,1,102\n")
    m, printed = evaluate([str(log), "--map", MAP], tmp_path / "ev", capsys)
    assert m["dead_letters"] == 1
    assert m["first_dead_letter"] == ("row 1: ts 'soon' is not a number (epoch seconds) or an ISO-8601 date time "
                                      "- at `$.ts`")
    assert "first dead letter" in printed
