"""The ``riskgraph`` command line. Parses arguments, builds Settings, calls a job.

Run ``riskgraph --help`` or ``riskgraph COMMAND --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from riskgraph.settings import Settings

EPILOG = "Every setting can also come from the environment as RISKGRAPH_<NAME>; see the README."


def _add_file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="event log: .csv, .parquet or .jsonl")
    p.add_argument("--map", dest="mapping", default=None,
                   help="column mapping, e.g. src=sender,dst=receiver,ts=time,amount=value,label=is_fraud,"
                        "attrs.device=device_id (only ts, src and dst are required)")
    p.add_argument("--kind", default=None,
                   help="kind of the events when the file has no kind column (default: event)")
    p.add_argument("--ts-unit", choices=("s", "ms", "us", "ns", "iso"), default=None,
                   help="unit of ts: epoch s, ms, us, ns or ISO-8601 text (default: detected from the values)")
    p.add_argument("--format", dest="fmt", choices=("csv", "parquet", "jsonl"), default=None,
                   help="file format (default: from the suffix)")
    p.add_argument("--order", choices=("error", "sort", "allow"), default="error",
                   help="out-of-order timestamps: stop with an error (default), sort the file first, or allow")
    p.add_argument("--rate", type=float, default=None,
                   help="replay at K times real time by event time (default: as fast as possible)")
    p.add_argument("--model", default=None, help="model artifact directory (default: built-in detector)")
    p.add_argument("--state", default=None, help="RocksDB state directory to keep (default: a temporary one)")
    p.add_argument("--batch-size", type=int, default=None, help="events per micro-batch (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _file_spec(a: argparse.Namespace):
    from riskgraph.jobs import FileSpec
    from riskgraph.simulators.replay import parse_mapping

    return FileSpec(a.file, parse_mapping(a.mapping) if a.mapping else None, a.fmt, a.order, a.rate,
                    kind=a.kind, ts_unit=a.ts_unit)


def _settings(a: argparse.Namespace) -> Settings:
    return Settings.from_env(batch_size=getattr(a, "batch_size", None), model_dir=getattr(a, "model", None),
                             seed=getattr(a, "seed", None))


def cmd_simulate(a: argparse.Namespace) -> int:
    from riskgraph.simulators.transactions import SimConfig, simulate, write_entity_labels, write_events

    cfg = SimConfig(**_sim_kwargs(a))
    t0 = time.perf_counter()
    res = simulate(cfg)
    write_events(res, a.out)
    labels_path = a.entity_labels or str(Path(a.out).with_suffix("")) + ".entities.csv"
    write_entity_labels(res.entity_labels, labels_path)
    n_pos = sum(e.label or 0 for e in res.events)
    print(f"wrote {len(res.events):,} events ({n_pos:,} labelled risky) to {a.out} "
          f"and {len(res.entity_labels):,} entity labels to {labels_path} in {time.perf_counter() - t0:.1f}s")
    return 0


def _sim_kwargs(a: argparse.Namespace) -> dict:
    kw = {"seed": a.seed}
    for name in ("days", "n_persons", "n_merchants", "attack_rate"):
        v = getattr(a, name, None)
        if v is not None:
            kw[name] = v
    return kw


def _say(a: argparse.Namespace):
    """A note to the user on stderr, prefixed like the command's errors."""
    return lambda msg: print(f"riskgraph {a.command}: {msg}", file=sys.stderr, flush=True)


def cmd_replay(a: argparse.Namespace) -> int:
    from riskgraph.jobs import replay

    summary = replay(_settings(a), _file_spec(a), alerts_path=a.alerts, entities_path=a.entities,
                     state_dir=a.state, progress=not a.no_progress, say=_say(a))
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from riskgraph.jobs import evaluate, summary_lines

    m = evaluate(_settings(a), _file_spec(a), out_dir=a.out, entity_labels_path=a.entity_labels,
                 eval_after=a.eval_after, eval_fraction=a.eval_fraction, state_dir=a.state,
                 progress=not a.no_progress, say=_say(a), entity_map=a.entity_map,
                 entity_positive=a.entity_positive, unlabelled_negative=a.unlabelled_negative)
    print(f"evaluation of {a.file} -> {a.out}/metrics.json, {a.out}/report.md")
    for line in summary_lines(m):
        print(line)
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from riskgraph.train import train_job

    train_job(_settings(a), _file_spec(a), out_dir=a.out, epochs=a.epochs, val_fraction=a.val_fraction,
              target_alert_rate=a.target_alert_rate, target_precision=a.target_precision, mem_dim=a.mem_dim,
              emb_dim=a.emb_dim, k=a.neighbours, progress=not a.no_progress, entity_labels_path=a.entity_labels,
              entity_map=a.entity_map, entity_positive=a.entity_positive)
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from riskgraph.demo import run_demo

    return run_demo(_settings(a), out_dir=a.out, sim_kwargs=_sim_kwargs(a), progress=not a.no_progress,
                    train=not a.no_train, epochs=a.epochs)


def _add_kafka_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default=None, help="Kafka URL (default kafka://127.0.0.1:9092)")


def _kafka_settings(a: argparse.Namespace) -> Settings:
    return Settings.from_env(broker=getattr(a, "broker", None), model_dir=getattr(a, "model", None),
                             state_dir=getattr(a, "state", None), batch_size=getattr(a, "batch_size", None),
                             metrics_port=getattr(a, "metrics_port", None), seed=getattr(a, "seed", None),
                             partitions=getattr(a, "partitions", None))


def cmd_worker(a: argparse.Namespace) -> int:
    from riskgraph.worker import run_worker

    return run_worker(_kafka_settings(a), loglevel=a.loglevel)


def cmd_produce(a: argparse.Namespace) -> int:
    from riskgraph.streams.kafka_io import ensure_topics, produce

    settings = _kafka_settings(a)
    ensure_topics(settings)
    if a.file:
        from riskgraph.simulators.replay import EventFile, parse_mapping

        f = EventFile(a.file, parse_mapping(a.mapping) if a.mapping else None, order=a.order)
        total = f.count_rows()
        events = (e for b in f.batches(10_000) for e in b.events)
    else:
        from riskgraph.simulators.transactions import SimConfig, simulate

        sim = simulate(SimConfig(**_sim_kwargs(a)))
        events = sim.events[: a.limit] if a.limit else sim.events
        total = len(events)
    t0 = time.perf_counter()
    n = produce(settings, events, rate=a.rate, total=total, progress=not a.no_progress)
    dt = time.perf_counter() - t0
    print(f"produced {n:,} events to {settings.events_topic} in {dt:.1f}s ({n / max(dt, 1e-9):,.0f}/s)")
    return 0


def cmd_alerts(a: argparse.Namespace) -> int:
    from riskgraph.streams.kafka_io import tail

    tail(_kafka_settings(a), sys.stdout, fmt=a.format, from_beginning=a.from_beginning,
         min_severity=a.severity, entity=a.entity, limit=a.limit, idle_timeout_s=a.idle_timeout)
    return 0


def cmd_feedback(a: argparse.Namespace) -> int:
    from riskgraph.streams.alerts import Feedback
    from riskgraph.streams.kafka_io import send_feedback

    fb = Feedback(alert_id=a.alert_id, label=a.label, score=a.score, analyst=a.analyst, note=a.note, ts=time.time())
    send_feedback(_kafka_settings(a), fb)
    print(f"feedback sent: alert {a.alert_id} label {a.label}")
    return 0


def cmd_kafka(a: argparse.Namespace) -> int:
    from riskgraph.broker import main as broker_main

    return broker_main(a.kafka_args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="riskgraph", description="Streaming risk and anomaly detection on "
                                "temporal interaction graphs.", epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="generate labelled transaction traffic into a file")
    s.add_argument("--out", required=True, help="output file: .csv, .parquet or .jsonl")
    s.add_argument("--entity-labels", default=None, help="entity label CSV (default: OUT.entities.csv)")
    _add_sim_args(s)
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("replay", help="score a file: alerts as JSON lines, entity risk as CSV")
    _add_file_args(r)
    r.add_argument("--alerts", default="alerts.jsonl", help="alerts output (JSON lines)")
    r.add_argument("--entities", default="entities.csv", help="entity risk output CSV ('' to skip)")
    r.set_defaults(func=cmd_replay)

    e = sub.add_parser("evaluate", help="score a labelled file; write metrics.json, a report and plots")
    _add_file_args(e)
    e.add_argument("--out", default="evaluation", help="output directory")
    e.add_argument("--entity-labels", default=None,
                   help="CSV of entity ids and 0/1, -1/1, true/false or yes/no labels (columns detected)")
    e.add_argument("--entity-map", default=None,
                   help="columns of the entity label file, e.g. entity=node,label=is_fraud (default: detected)")
    e.add_argument("--entity-positive", default=None,
                   help="the label value that marks a risky entity (default: 1, true or yes)")
    e.add_argument("--unlabelled-negative", action="store_true",
                   help="count entities of the file that the label file does not list as negatives "
                        "(default: leave them out: an unlabelled entity is unknown, not benign)")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--eval-after", type=float, default=None, help="only score events after this event time")
    g.add_argument("--eval-fraction", type=float, default=None,
                   help="only evaluate the trailing fraction of the stream (the rest still builds state)")
    e.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser("train", help="train a TGN on an event log and write a model artifact")
    _add_file_args(tr)
    tr.add_argument("--out", required=True, help="artifact directory")
    tr.add_argument("--epochs", type=int, default=5)
    tr.add_argument("--val-fraction", type=float, default=0.2, help="chronological hold-out for early stopping, "
                    "score stacking and threshold calibration")
    tr.add_argument("--target-alert-rate", type=float, default=0.01)
    tr.add_argument("--target-precision", type=float, default=None, help="calibrate to a precision instead")
    tr.add_argument("--mem-dim", type=int, default=64)
    tr.add_argument("--emb-dim", type=int, default=64)
    tr.add_argument("--neighbours", type=int, default=10, help="temporal neighbours attended (k)")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--entity-labels", default=None,
                    help="entity label CSV: also fit the entity head on the entity features, measured on a "
                         "seeded stratified 30%% of the labelled entities held out")
    tr.add_argument("--entity-map", default=None,
                    help="columns of the entity label file, e.g. entity=node,label=is_fraud (default: detected)")
    tr.add_argument("--entity-positive", default=None,
                    help="the label value that marks a risky entity (default: 1, true or yes)")
    tr.set_defaults(func=cmd_train)

    d = sub.add_parser("demo", help="simulate -> score -> evaluate, embedded (no broker)")
    d.add_argument("--out", default="demo-out", help="output directory")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--no-train", action="store_true", help="skip the TGN: the unsupervised detector alone")
    d.add_argument("--epochs", type=int, default=3, help="TGN training epochs (default 3)")
    _add_sim_args(d)
    d.set_defaults(func=cmd_demo)

    w = sub.add_parser("worker", help="run a Faust worker: events -> engine -> alerts (Kafka)")
    _add_kafka_args(w)
    w.add_argument("--model", default=None, help="model artifact directory (hot-reloaded when it changes)")
    w.add_argument("--state", default=None, help="RocksDB state directory (default ./state-data)")
    w.add_argument("--batch-size", type=int, default=None, help="micro-batch size (default 1000)")
    w.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (default 9108; 0: off)")
    w.add_argument("--partitions", type=int, default=None, help="partitions of topics the worker creates")
    w.add_argument("--loglevel", default="warning")
    w.set_defaults(func=cmd_worker)

    pr = sub.add_parser("produce", help="send simulated traffic or a file into the events topic")
    _add_kafka_args(pr)
    pr.add_argument("--file", default=None, help="replay this file instead of simulating")
    pr.add_argument("--map", dest="mapping", default=None, help="column mapping for --file")
    pr.add_argument("--order", choices=("error", "sort", "allow"), default="error")
    pr.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    pr.add_argument("--limit", type=int, default=None, help="send only the first N simulated events")
    pr.add_argument("--no-progress", action="store_true")
    _add_sim_args(pr)
    pr.set_defaults(func=cmd_produce)

    al = sub.add_parser("alerts", help="read the alerts topic")
    al_sub = al.add_subparsers(dest="alerts_command", required=True)
    t = al_sub.add_parser("tail", help="print alerts as they arrive")
    _add_kafka_args(t)
    t.add_argument("--from-beginning", action="store_true", help="start at the oldest alert")
    t.add_argument("--format", choices=("table", "json"), default="table")
    t.add_argument("--severity", choices=("low", "medium", "high", "critical"), default=None,
                   help="only this severity and above")
    t.add_argument("--entity", default=None, help="only alerts whose source or destination is this entity")
    t.add_argument("--limit", type=int, default=None, help="stop after N alerts")
    t.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    t.set_defaults(func=cmd_alerts)

    fb = sub.add_parser("feedback", help="label an alert (1: risky, 0: false positive)")
    _add_kafka_args(fb)
    fb.add_argument("alert_id")
    fb.add_argument("--label", type=int, choices=(0, 1), required=True)
    fb.add_argument("--score", type=float, default=None, help="the score you saw (kept for training only: the worker decides by the score it recorded)")
    fb.add_argument("--analyst", default=None)
    fb.add_argument("--note", default=None)
    fb.set_defaults(func=cmd_feedback)

    k = sub.add_parser("kafka", help="a local single-node Kafka broker: up | down | status | jars",
                       add_help=False)
    k.add_argument("kafka_args", nargs=argparse.REMAINDER)
    k.set_defaults(func=cmd_kafka)
    return p


def _add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--days", type=float, default=None, help="simulated days")
    p.add_argument("--persons", dest="n_persons", type=int, default=None, help="number of persons")
    p.add_argument("--merchants", dest="n_merchants", type=int, default=None, help="number of merchants")
    p.add_argument("--attack-rate", type=float, default=None, help="share of attack events (e.g. 0.015)")


def _broker_of(a: argparse.Namespace) -> str:
    try:
        return _kafka_settings(a).broker
    except ValueError:
        return getattr(a, "broker", None) or "the configured broker"


def user_error(exc: BaseException, a: argparse.Namespace) -> str | None:
    """The one line that explains a user-caused error (bad input, settings, files, broker),
    or None for anything else: a bug, which keeps its traceback."""
    if type(exc).__module__.split(".")[0] == "kafka":  # kafka-python's errors, without importing it here
        broker = _broker_of(a)
        name = type(exc).__name__
        if "Authentication" in name or "Authorization" in name:
            return (f"the Kafka broker {broker} refused the client ({exc}); check RISKGRAPH_SECURITY_PROTOCOL, "
                    "RISKGRAPH_SASL_* and RISKGRAPH_SSL_*")
        if name in ("KafkaTimeoutError", "NoBrokersAvailable", "KafkaConnectionError"):
            return (f"cannot reach the Kafka broker {broker} ({exc}); start one (riskgraph kafka up) or point "
                    "--broker / RISKGRAPH_BROKER at a running one")
        return f"Kafka broker {broker}: {name}: {exc}"
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}" if exc.args else "missing key"
    if isinstance(exc, OSError):  # a file or directory that cannot be read or written, a full disk ...
        where = exc.filename if exc.filename is not None else None
        what = exc.strerror or str(exc) or type(exc).__name__
        return f"{where}: {what}" if where is not None else what
    if isinstance(exc, ValueError):
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["kafka"]:
        # the broker tool parses its own arguments, --help included (argparse.REMAINDER
        # cannot take an option as its first word)
        from riskgraph.broker import main as broker_main

        return broker_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"riskgraph {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # user errors (bad mapping, missing file, out-of-order data, bad settings, a locked or
        # corrupt store, an unreachable broker ...): one clear line, exit 2
        msg = user_error(exc, args)
        if msg is None:
            raise
        print(f"riskgraph {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
