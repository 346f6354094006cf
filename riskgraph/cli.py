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
                   help="column mapping, e.g. src=sender,dst=receiver,ts=time,amount=value,label=is_fraud")
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
    from simulators.replay import parse_mapping

    return FileSpec(a.file, parse_mapping(a.mapping) if a.mapping else None, a.fmt, a.order, a.rate)


def _settings(a: argparse.Namespace) -> Settings:
    return Settings.from_env(batch_size=getattr(a, "batch_size", None), model_dir=getattr(a, "model", None),
                             seed=getattr(a, "seed", None))


def cmd_simulate(a: argparse.Namespace) -> int:
    from simulators.transactions import SimConfig, simulate, write_entity_labels, write_events

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


def cmd_replay(a: argparse.Namespace) -> int:
    from riskgraph.jobs import replay

    summary = replay(_settings(a), _file_spec(a), alerts_path=a.alerts, entities_path=a.entities,
                     state_dir=a.state, progress=not a.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from riskgraph.jobs import evaluate, summary_lines

    m = evaluate(_settings(a), _file_spec(a), out_dir=a.out, entity_labels_path=a.entity_labels,
                 eval_after=a.eval_after, eval_fraction=a.eval_fraction, state_dir=a.state,
                 progress=not a.no_progress)
    print(f"evaluation of {a.file} -> {a.out}/metrics.json, {a.out}/report.md")
    for line in summary_lines(m):
        print(line)
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from riskgraph.demo import run_demo

    return run_demo(_settings(a), out_dir=a.out, sim_kwargs=_sim_kwargs(a), progress=not a.no_progress)


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
    e.add_argument("--entity-labels", default=None, help="CSV of entity,label")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--eval-after", type=float, default=None, help="only score events after this event time")
    g.add_argument("--eval-fraction", type=float, default=None,
                   help="only evaluate the trailing fraction of the stream (the rest still builds state)")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="simulate -> score -> evaluate, embedded (no broker)")
    d.add_argument("--out", default="demo-out", help="output directory")
    d.add_argument("--no-progress", action="store_true")
    _add_sim_args(d)
    d.set_defaults(func=cmd_demo)
    return p


def _add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--days", type=float, default=None, help="simulated days")
    p.add_argument("--persons", dest="n_persons", type=int, default=None, help="number of persons")
    p.add_argument("--merchants", dest="n_merchants", type=int, default=None, help="number of merchants")
    p.add_argument("--attack-rate", type=float, default=None, help="share of attack events (e.g. 0.015)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # user errors (bad mapping, missing file, out-of-order data ...): one clear line, exit 2
        print(f"riskgraph {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
