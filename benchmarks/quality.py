"""Quality table: riskgraph's event and entity scores beside one-line rules, per dataset.

For each dataset (the simulator at several seeds, its hard preset at several seeds, and
any event file given with ``--file``) this script

1. trains a model on the first ``split`` of the events (``riskgraph train``; skipped with
   ``--no-train``: the built-in unsupervised detector then scores);
2. scores the whole file and evaluates the rest (``riskgraph evaluate --eval-fraction``,
   with the entity labels when there are any) and reads every component that
   ``metrics.json`` reports: the event ablation (``components``, or the single score) and
   the entity scores (``entity_components``, or ``entity_risk``), whatever their names;
3. computes naive baselines from the same file in the same run, each with the direction
   declared here before any result was seen (:data:`EVENT_BASELINES`,
   :data:`ENTITY_BASELINES`), on the same items as the evaluation: event baselines on the
   evaluated events, entity baselines on the labelled entities of the file;
4. writes one JSON (``--out``) and one Markdown table (the same name, ``.md``): every
   AUC / AP with its stratified bootstrap 90 % interval and the number of positives
   (``models.evaluation.rank_metrics``, the intervals ``evaluate`` uses).

The headline comparison is declared too: the shipped score (``final`` for events, or the
only score without a trained model; ``entity_risk`` for entities) against the best
declared baseline. Choosing the best baseline after the fact favours the baselines;
``auc_flipped`` (a baseline read in the other direction) is reported as optimistic and
never enters the verdict.

Run as ``python benchmarks/quality.py`` (see ``benchmarks/README.md``); a file is added
with its own options after ``--file``::

    python benchmarks/quality.py --file trust.csv --name otc --map src=rater,dst=ratee,amount=rating,ts=time \\
        --entity-labels gt.csv --entity-positive -1 --split 0.7

>>> events = [_Ev("a", "b", 1.0, 5.0), _Ev("a", "c", 2.0, -1.0), _Ev("c", "a", 3.0, None)]
>>> b = event_baseline_scores(events)
>>> b["src_prior_events"].tolist(), b["src_degree"].tolist(), (-b["src_age"]).tolist()
([0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0])
>>> b["amount"].tolist()  # the event without an amount scores below every amount
[5.0, -1.0, -2.0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from common import config, emit, machine

from riskgraph.models.evaluation import bootstrap_info, rank_metrics

ROOT = Path(__file__).resolve().parents[1]

#: Event-level rules: name -> (direction, what it is). Directions are declared, not fitted.
EVENT_BASELINES: dict[str, tuple[str, str]] = {
    "src_prior_events": ("higher is riskier", "events the source took part in before this one (velocity)"),
    "src_degree": ("higher is riskier", "distinct counterparties of the source before this event (fan-out)"),
    "src_age": ("younger is riskier", "seconds since the source was first seen (new account); scored as -age"),
    "amount": ("higher is riskier", "the event's amount; events without one score lowest"),
}
#: Entity-level rules, over the whole file (as evaluate's entity metrics).
ENTITY_BASELINES: dict[str, tuple[str, str]] = {
    "first_seen": ("later is riskier", "time of the entity's first event (newcomers)"),
    "degree": ("higher is riskier", "distinct counterparties, either direction"),
    "event_count": ("higher is riskier", "events the entity took part in, either end"),
    "neg_share_received": ("higher is riskier", "share of the events it received with a negative amount"),
}
#: The shipped score of each level, compared with the best declared baseline.
HEADLINE = {"event": ("final", "score"), "entity": ("entity_risk",)}


class _Ev(NamedTuple):
    """The fields of an event the baselines read (an Event has them too)."""

    src: str
    dst: str
    ts: float
    amount: float | None


def event_baseline_scores(events: Sequence[Any]) -> dict[str, np.ndarray]:
    """Each event's score under every :data:`EVENT_BASELINES` rule, from the events before it
    (file order). ``amount`` is left out when no event has one."""
    n = len(events)
    prior = np.zeros(n)
    degree = np.zeros(n)
    age = np.zeros(n)
    amount = np.full(n, np.nan)
    count: dict[str, int] = {}
    nbrs: dict[str, set[str]] = {}
    first: dict[str, float] = {}
    for i, e in enumerate(events):
        s, d = e.src, e.dst
        prior[i] = count.get(s, 0)
        degree[i] = len(nbrs.get(s, ()))
        age[i] = e.ts - first.get(s, e.ts)
        if e.amount is not None:
            amount[i] = e.amount
        for a, b in ((s, d), (d, s)):
            count[a] = count.get(a, 0) + 1
            nbrs.setdefault(a, set()).add(b)
            first.setdefault(a, e.ts)
    out = {"src_prior_events": prior, "src_degree": degree, "src_age": -age}
    if not np.isnan(amount).all():
        lowest = np.nanmin(amount) - 1.0
        out["amount"] = np.where(np.isnan(amount), lowest, amount)
    return out


def entity_baseline_scores(events: Sequence[Any]) -> dict[str, dict[str, float]]:
    """Every entity's score under every :data:`ENTITY_BASELINES` rule over all ``events``;
    ``neg_share_received`` only when some event has an amount.

    >>> b = entity_baseline_scores([_Ev("a", "b", 1.0, 5.0), _Ev("a", "b", 2.0, -1.0), _Ev("b", "c", 3.0, 2.0)])
    >>> b["first_seen"]["c"], b["degree"]["b"], b["event_count"]["a"], b["neg_share_received"]["b"]
    (3.0, 2.0, 2.0, 0.5)
    """
    first: dict[str, float] = {}
    count: dict[str, float] = {}
    nbrs: dict[str, set[str]] = {}
    received: dict[str, int] = {}
    negative: dict[str, int] = {}
    any_amount = False
    for e in events:
        for a, b in ((e.src, e.dst), (e.dst, e.src)):
            first.setdefault(a, float(e.ts))
            count[a] = count.get(a, 0.0) + 1.0
            nbrs.setdefault(a, set()).add(b)
        if e.amount is not None:
            any_amount = True
            received[e.dst] = received.get(e.dst, 0) + 1
            if e.amount < 0:
                negative[e.dst] = negative.get(e.dst, 0) + 1
    out = {"first_seen": first, "degree": {k: float(len(v)) for k, v in nbrs.items()}, "event_count": count}
    if any_amount:
        out["neg_share_received"] = {k: negative.get(k, 0) / received[k] if k in received else 0.0 for k in first}
    return out


def _row(m: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A metrics entry with its level's prefix taken off: auc, auc_ci90, ap, ap_ci90, positives, negatives."""
    keys = ("auc", "auc_ci90", "ap", "ap_ci90", "positives", "negatives")
    return {k: m.get(prefix + k) for k in keys}


def baseline_rows(scores: dict[str, np.ndarray], labels: np.ndarray, rules: dict[str, tuple[str, str]],
                  seed: int) -> dict[str, dict[str, Any]]:
    """AUC/AP with intervals of each rule; ``auc_flipped``: the rule read backwards (optimistic)."""
    out = {}
    for name, s in scores.items():
        row = _row(rank_metrics(s, labels, "", seed=seed), "")
        direction, what = rules[name]
        row.update(direction=direction, description=what,
                   auc_flipped_optimistic=None if row["auc"] is None else 1.0 - row["auc"])
        out[name] = row
    return out


def riskgraph_rows(metrics: dict[str, Any], level: str) -> dict[str, dict[str, Any]]:
    """Every component ``metrics.json`` reports for ``level``, whatever its name."""
    prefix = f"{level}_"
    if level == "event":
        if metrics.get("event_auc") is None:
            return {}
        comps = metrics.get("components") or {"score": metrics}
    else:
        if "entity_positives" not in metrics and "entity_components" not in metrics:
            return {}
        comps = metrics.get("entity_components") or {"entity_risk": metrics}
    return {name: _row(m, prefix) for name, m in comps.items()}


def verdict(rg: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    """``ahead``/``behind`` when the two 90 % intervals of AUC do not overlap, else ``within intervals``."""
    if not rg or not base or rg.get("auc") is None or base.get("auc") is None:
        return "n/a"
    r, b = rg.get("auc_ci90"), base.get("auc_ci90")
    if r and b and r[0] > b[1]:
        return "ahead"
    if r and b and r[1] < b[0]:
        return "behind"
    return "within intervals"


def compare(level: str, baselines: dict[str, dict[str, Any]], rg: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The declared headline score against the best declared baseline (by AUC)."""
    head = next((n for n in HEADLINE[level] if n in rg), None)
    scored = {k: v for k, v in baselines.items() if v["auc"] is not None}
    best = max(scored, key=lambda k: scored[k]["auc"]) if scored else None
    optimistic = max((max(v["auc"], v["auc_flipped_optimistic"]) for v in scored.values()), default=None)
    return {"headline": head, "best_baseline": best, "best_baseline_either_direction_auc_optimistic": optimistic,
            "verdict": verdict(rg.get(head) if head else None, scored.get(best) if best else None)}


# -- datasets -------------------------------------------------------------------------------

@dataclass
class Dataset:
    """One file to evaluate, and how to read it and its labels."""

    name: str
    path: str
    mapping: str | None = None
    entity_labels: str | None = None
    entity_map: str | None = None
    entity_positive: str | None = None
    split: float = 0.7
    kind: str | None = None
    ts_unit: str | None = None
    order: str = "error"
    about: dict[str, Any] = field(default_factory=dict)

    def file_args(self) -> list[str]:
        out = [self.path]
        for opt, v in (("--map", self.mapping), ("--kind", self.kind), ("--ts-unit", self.ts_unit)):
            if v:
                out += [opt, v]
        return out + ["--order", self.order]


def simulated(name: str, seed: int, hard: bool, args: argparse.Namespace, workdir: Path) -> Dataset:
    """Simulate one world (the default or the hard preset) into ``workdir``."""
    from riskgraph.simulators.transactions import SimConfig, hard_config, simulate, write_entity_labels, write_events

    kw = dict(seed=seed, n_persons=args.persons, n_merchants=max(50, args.persons // 5),
              n_atms=max(1, args.persons * 3 // 100), days=args.days)
    cfg = hard_config(**kw) if hard else SimConfig(**kw)
    sim = simulate(cfg)
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    write_events(sim, d / "events.parquet")
    write_entity_labels(sim.entity_labels, d / "entities.csv")
    about = {"simulator": "hard preset" if hard else "defaults", "seed": seed, "persons": args.persons,
             "days": args.days, "events_labelled_risky": sum(e.label or 0 for e in sim.events)}
    return Dataset(name, str(d / "events.parquet"), entity_labels=str(d / "entities.csv"), split=args.split,
                   about=about)


def read_events(ds: Dataset) -> list[Any]:
    """The file's valid events in file order, read exactly as evaluate reads them."""
    from riskgraph.jobs import FileSpec, file_batches
    from riskgraph.simulators.replay import parse_mapping

    spec = FileSpec(ds.path, parse_mapping(ds.mapping) if ds.mapping else None, order=ds.order, kind=ds.kind,
                    ts_unit=ds.ts_unit)
    return [e for b in file_batches(spec, 50_000) for e in b.events]


def riskgraph(*argv: str, log: Path) -> None:
    """Run the CLI as a user does; its output goes to ``log``, its error line to ours."""
    with log.open("a") as f:
        proc = subprocess.run([sys.executable, "-m", "riskgraph.cli", *argv], stdout=f, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT)
        f.write(proc.stderr)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SystemExit(f"quality.py: riskgraph {argv[0]} failed on {argv[1]}: {last}")


def run_dataset(ds: Dataset, args: argparse.Namespace, workdir: Path, say) -> dict[str, Any]:
    """Train, evaluate and compute the baselines of one dataset; its entry of the JSON."""
    from riskgraph.simulators.labels import load_entity_labels
    from riskgraph.simulators.writers import write_events

    t0 = time.perf_counter()
    d = workdir / ds.name
    d.mkdir(parents=True, exist_ok=True)
    log = d / "riskgraph.log"
    events = read_events(ds)
    n = len(events)
    n_train = int(round(n * ds.split))
    train = None
    model_args: list[str] = []
    if ds.split > 0 and not args.no_train:
        say(f"{ds.name}: training on the first {n_train:,} of {n:,} events ({args.epochs} epochs)")
        write_events(events[:n_train], d / "train.parquet", typology=[None] * n_train)
        t1 = time.perf_counter()
        riskgraph("train", str(d / "train.parquet"), "--out", str(d / "model"), "--epochs", str(args.epochs),
                  "--no-progress", log=log)
        train = {"events": n_train, "epochs": args.epochs, "seconds": round(time.perf_counter() - t1, 1)}
        model_args = ["--model", str(d / "model")]
    eval_fraction = 1.0 - ds.split if ds.split > 0 else 1.0
    say(f"{ds.name}: evaluating the last {eval_fraction:.0%} of the events"
        + (" and the labelled entities" if ds.entity_labels else ""))
    ent_args: list[str] = []
    if ds.entity_labels:
        ent_args = ["--entity-labels", ds.entity_labels]
        ent_args += ["--entity-map", ds.entity_map] if ds.entity_map else []
        ent_args += ["--entity-positive", ds.entity_positive] if ds.entity_positive is not None else []
    riskgraph("evaluate", *ds.file_args(), *model_args, *ent_args, "--eval-fraction", f"{eval_fraction:.6g}",
              "--out", str(d / "evaluation"), "--no-progress", log=log)
    metrics = json.loads((d / "evaluation" / "metrics.json").read_text())
    if metrics["events_total"] != n:
        raise SystemExit(f"quality.py: {ds.name}: evaluate read {metrics['events_total']} events, "
                         f"the baselines {n}: the two readers disagree")
    seed = metrics.get("bootstrap", {}).get("seed", 0)
    out: dict[str, Any] = {"name": ds.name, "file": Path(ds.path).name, **ds.about,
                           "events": n, "split": ds.split, "train": train,
                           "events_evaluated": metrics["events_evaluated"]}

    say(f"{ds.name}: baselines")
    start = n - metrics["events_evaluated"]
    labels = np.fromiter((-1 if e.label is None else e.label for e in events[start:]), np.int64, n - start)
    level: dict[str, Any] = {}
    if (labels >= 0).any():
        keep = labels >= 0
        scores = {k: v[start:][keep] for k, v in event_baseline_scores(events).items()}
        base = baseline_rows(scores, labels[keep], EVENT_BASELINES, seed)
        rg = riskgraph_rows(metrics, "event")
        level["event"] = {"positives": int(labels[keep].sum()), "items": int(keep.sum()), "baselines": base,
                          "riskgraph": rg, **compare("event", base, rg)}
    if ds.entity_labels:
        lab = load_entity_labels(ds.entity_labels, ds.entity_map, positive=ds.entity_positive).labels
        ent = entity_baseline_scores(events)
        names = [e for e in lab if e in ent["first_seen"]]  # labelled entities of the file, as evaluate
        y = np.fromiter((lab[e] for e in names), np.int64, len(names))
        scores = {k: np.fromiter((v.get(e, 0.0) for e in names), np.float64, len(names)) for k, v in ent.items()}
        base = baseline_rows(scores, y, ENTITY_BASELINES, seed)
        rg = riskgraph_rows(metrics, "entity")
        level["entity"] = {"positives": int(y.sum()), "items": len(names), "baselines": base, "riskgraph": rg,
                           **compare("entity", base, rg)}
    out.update(level)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    say(f"{ds.name}: done in {out['seconds']:.0f}s " + "; ".join(
        f"{lv} {v['headline']} AUC {_f(v['riskgraph'].get(v['headline'], {}).get('auc'))} vs "
        f"{v['best_baseline']} {_f(v['baselines'][v['best_baseline']]['auc']) if v['best_baseline'] else 'n/a'}: "
        f"{v['verdict']}" for lv, v in level.items()))
    return out


# -- the table --------------------------------------------------------------------------------

def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _ci(r: dict[str, Any], key: str) -> str:
    ci = r.get(f"{key}_ci90")
    return f"{_f(r.get(key))} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else _f(r.get(key))


def markdown(result: dict[str, Any]) -> str:
    """The summary table (headline against the best declared baseline) and one detail table."""
    lines = ["# Quality: riskgraph against one-line rules", "",
             "Generated by `benchmarks/quality.py`; AUC and AP with stratified bootstrap 90 % intervals "
             "(`models/evaluation.py`). Baseline directions are declared in the script, not fitted; "
             "*either direction* is the best baseline read either way, optimistic for the baselines.", "",
             "| dataset | level | positives / items | riskgraph headline: AUC [90 % CI] | best declared baseline: "
             "AUC [90 % CI] | verdict | best baseline either direction (optimistic) |",
             "|---|---|---|---|---|---|---|"]
    for ds in result["datasets"]:
        for lv in ("event", "entity"):
            v = ds.get(lv)
            if not v:
                continue
            head = v["riskgraph"].get(v["headline"], {}) if v["headline"] else {}
            best = v["baselines"].get(v["best_baseline"], {}) if v["best_baseline"] else {}
            lines.append(f"| {ds['name']} | {lv} | {v['positives']:,} / {v['items']:,} | "
                         f"{v['headline'] or 'n/a'} {_ci(head, 'auc')} | {v['best_baseline'] or 'n/a'} "
                         f"{_ci(best, 'auc')} | {v['verdict']} | "
                         f"{_f(v['best_baseline_either_direction_auc_optimistic'])} |")
    lines += ["", "## Every score", "",
              "| dataset | level | score | kind | direction | AUC [90 % CI] | AP [90 % CI] | positives |",
              "|---|---|---|---|---|---|---|---|"]
    for ds in result["datasets"]:
        for lv in ("event", "entity"):
            v = ds.get(lv)
            if not v:
                continue
            for name, r in v["baselines"].items():
                lines.append(f"| {ds['name']} | {lv} | {name} | baseline | {r['direction']} | {_ci(r, 'auc')} | "
                             f"{_ci(r, 'ap')} | {r['positives']:,} |")
            for name, r in v["riskgraph"].items():
                mark = f"**{name}**" if name == v["headline"] else name
                pos = "n/a" if r.get("positives") is None else f"{r['positives']:,}"
                lines.append(f"| {ds['name']} | {lv} | {mark} | riskgraph | | {_ci(r, 'auc')} | {_ci(r, 'ap')} | "
                             f"{pos} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: str | Path) -> None:
    """AUC with its 90 % interval of the headline score and the best declared baseline, one
    line per dataset and level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{ds['name']} {lv}", ds[lv]) for ds in result["datasets"] for lv in ("event", "entity") if ds.get(lv)]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.2))
    seen: set[str] = set()
    for i, (_, v) in enumerate(rows):
        pairs = (("riskgraph headline score", v["riskgraph"].get(v["headline"] or "", {}), "tab:blue", -0.12),
                 ("best declared baseline", v["baselines"].get(v["best_baseline"] or "", {}), "tab:orange", 0.12))
        for name, r, colour, dy in pairs:
            if r.get("auc") is None:
                continue
            lo, hi = r.get("auc_ci90") or (r["auc"], r["auc"])
            ax.errorbar(r["auc"], i + dy, xerr=[[r["auc"] - lo], [hi - r["auc"]]], fmt="o", color=colour,
                        capsize=3, label=None if name in seen else name)
            seen.add(name)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("AUC (90 % bootstrap interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line -----------------------------------------------------------------------------

def _file_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quality.py --file", add_help=False)
    p.add_argument("path")
    p.add_argument("--name", default=None, help="the dataset's name in the table (default: the file's stem)")
    p.add_argument("--map", dest="mapping", default=None, help="column mapping, as riskgraph evaluate --map")
    p.add_argument("--entity-labels", default=None)
    p.add_argument("--entity-map", default=None)
    p.add_argument("--entity-positive", default=None)
    p.add_argument("--split", type=float, default=None, help="share trained on (default: the global --split)")
    p.add_argument("--kind", default=None)
    p.add_argument("--ts-unit", choices=("s", "ms", "us", "ns", "iso"), default=None)
    p.add_argument("--order", choices=("error", "sort", "allow"), default="error")
    return p


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[Dataset]]:
    """Global options, then one group per ``--file PATH [its options]``."""
    argv = list(argv)
    cut = [i for i, a in enumerate(argv) if a == "--file"]
    head, groups = (argv[:cut[0]], [argv[i + 1:j] for i, j in zip(cut, cut[1:] + [len(argv)])]) if cut \
        else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="then, repeatable: --file PATH [--name N] [--map M] [--entity-labels L] "
                                       "[--entity-map EM] [--entity-positive V] [--split S] [--kind K] "
                                       "[--ts-unit U] [--order O]")
    p.add_argument("--seeds", default="7,8,9", help="simulator seeds, defaults (7: the seed the defaults were "
                                                     "tuned on); '' for none")
    p.add_argument("--hard-seeds", default="7,8,9", help="simulator seeds, hard preset; '' for none")
    p.add_argument("--persons", type=int, default=3000, help="simulated persons (merchants: a fifth, ATMs 3 %%)")
    p.add_argument("--days", type=float, default=10.0, help="simulated days")
    p.add_argument("--split", type=float, default=0.7, help="share of each file's events trained on; the rest "
                                                             "is evaluated (0: no training, evaluate all)")
    p.add_argument("--epochs", type=int, default=2, help="TGN training epochs")
    p.add_argument("--no-train", action="store_true", help="score with the built-in detector, no training")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"),
                   help="JSON result; the Markdown table goes next to it (.md)")
    p.add_argument("--workdir", default=None, help="keep the files, models and evaluations here")
    a = p.parse_args(head)
    if not 0 <= a.split < 1:
        p.error(f"--split must be in [0, 1), got {a.split}")
    files = []
    fp = _file_parser()
    for g in groups:
        try:
            f = fp.parse_args(g)
        except SystemExit:
            p.error(f"cannot read the options of --file {' '.join(g)}")
        split = a.split if f.split is None else f.split
        if not 0 <= split < 1:
            p.error(f"--split must be in [0, 1), got {split} for {f.path}")
        if not Path(f.path).is_file():
            p.error(f"no such event file: {f.path}")
        files.append(Dataset(f.name or Path(f.path).name.split(".")[0], f.path, f.mapping, f.entity_labels,
                             f.entity_map, f.entity_positive, split, f.kind, f.ts_unit, f.order))
    a.files = [dict(vars(d)) for d in files]
    return a, files


def _seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args, files = parse_args(sys.argv[1:] if argv is None else argv)
    say = lambda msg: print(f"[quality {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="riskgraph-quality-"))
    t0 = time.perf_counter()
    try:
        plan: list[Any] = [(f"sim-seed{s}", s, False) for s in _seeds(args.seeds)]
        plan += [(f"sim-hard-seed{s}", s, True) for s in _seeds(args.hard_seeds)]
        plan += files
        results = []
        for i, item in enumerate(plan, 1):
            ds = simulated(*item, args, workdir) if isinstance(item, tuple) else item
            say(f"dataset {i}/{len(plan)}: {ds.name}")
            results.append(run_dataset(ds, args, workdir, say))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    cfg = config(args, drop=("files",))
    cfg["files"] = [{k: (Path(v).name if k in ("path", "entity_labels") and v else v)
                     for k, v in f.items() if k != "about"} for f in args.files]
    result = {"config": cfg, "machine": machine(), "bootstrap": bootstrap_info(0),
              "baselines": {"event": {k: {"direction": d, "description": w} for k, (d, w) in EVENT_BASELINES.items()},
                            "entity": {k: {"direction": d, "description": w}
                                       for k, (d, w) in ENTITY_BASELINES.items()}},
              "datasets": results, "seconds": round(time.perf_counter() - t0, 1)}
    emit(result, args.out, echo=False)
    if args.out:
        Path(args.out).with_suffix(".md").write_text(markdown(result))
        plot(result, Path(args.out).with_suffix(".png"))
    print(markdown(result))
    say(f"wrote {args.out} and its .md and .png in {result['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
