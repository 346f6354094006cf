"""``riskgraph demo``: simulate labelled traffic, train a small TGN, the supervised head and the entity head
on its first part, score the whole stream embedded and evaluate the rest, then print a
summary with the ablation of the score's components (detector, TGN risk and link
surprise, head, final).

Everything runs in-process on the embedded Engine (no broker): the same code the
Kafka worker runs. Outputs land in one directory: the simulated file and its first
part, entity labels, the model artifact, alerts, metrics.json, report.md and plots.
``--no-train`` skips the TGN and evaluates the unsupervised detector alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from riskgraph.jobs import FileSpec, evaluate, summary_lines
from riskgraph.settings import Settings

#: Share of the stream (its end) that is evaluated; the model trains on the rest.
EVAL_FRACTION = 0.4


def run_demo(settings: Settings, *, out_dir: str, sim_kwargs: dict[str, Any], progress: bool = True,
             train: bool = True, epochs: int = 3) -> int:
    from riskgraph.simulators.transactions import SimConfig, simulate, write_entity_labels, write_events

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = 4 if train else 3
    cfg = SimConfig(**sim_kwargs)
    print(f"[1/{steps}] simulating traffic (seed {cfg.seed}) ...", flush=True)
    sim = simulate(cfg)
    events_path, labels_path = out / "events.parquet", out / "entities.csv"
    write_events(sim, str(events_path))
    write_entity_labels(sim.entity_labels, str(labels_path))
    n_pos = sum(e.label or 0 for e in sim.events)
    print(f"      {len(sim.events):,} events, {n_pos:,} labelled risky, "
          f"{len(sim.entity_labels):,} entities -> {events_path} ({time.perf_counter() - t0:.1f}s)")

    model = None
    if train:
        from riskgraph.models.artifact import load_model
        from riskgraph.train import train_job

        n_train = int(round(len(sim.events) * (1 - EVAL_FRACTION)))
        train_path = out / "train.parquet"
        write_events(sim.events[:n_train], str(train_path), typology=sim.typology[:n_train])
        print(f"[2/{steps}] training a TGN ({epochs} epochs) and a supervised head on the first "
              f"{1 - EVAL_FRACTION:.0%} ({n_train:,} events) ...", flush=True)
        train_job(settings, FileSpec(str(train_path)), out_dir=str(out / "model"), epochs=epochs,
                  progress=progress, entity_labels_path=str(labels_path))
        model = load_model(out / "model")

    print(f"[{steps - 1}/{steps}] scoring the whole stream embedded, evaluating the last {EVAL_FRACTION:.0%} ...",
          flush=True)
    metrics = evaluate(settings, FileSpec(str(events_path)), out_dir=str(out),
                       entity_labels_path=str(labels_path), eval_after=None, eval_fraction=EVAL_FRACTION,
                       state_dir=None, progress=progress, model=model)
    print(f"[{steps}/{steps}] results ({time.perf_counter() - t0:.1f}s in all); report: {out / 'report.md'}")
    for line in summary_lines(metrics):
        print(line)
    comps = metrics.get("components")
    if comps:
        print("\n  ablation (evaluated part)  event AP   AUC   AP mule_chain  AP collusion_ring")
        for name, r in comps.items():
            f = lambda v: "  n/a" if v is None else f"{v:.3f}"  # noqa: E731
            print(f"  {name:<24} {f(r['event_ap']):>9} {f(r['event_auc']):>6} {f(r.get('ap_mule_chain')):>14} "
                  f"{f(r.get('ap_collusion_ring')):>17}")
    return 0
