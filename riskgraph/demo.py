"""``riskgraph demo``: simulate labelled traffic, score it embedded, evaluate, print a summary.

Everything runs in-process on the embedded Engine (no broker): the same code the
Kafka worker runs. Outputs land in one directory: the simulated file, entity
labels, alerts, metrics.json, report.md and plots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from riskgraph.jobs import FileSpec, evaluate, summary_lines
from riskgraph.settings import Settings

#: Share of the stream (its end) that is evaluated; the beginning warms up state and detector.
EVAL_FRACTION = 0.5


def run_demo(settings: Settings, *, out_dir: str, sim_kwargs: dict[str, Any], progress: bool = True) -> int:
    from simulators.transactions import SimConfig, simulate, write_entity_labels, write_events

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = SimConfig(**sim_kwargs)
    print(f"[1/3] simulating traffic (seed {cfg.seed}) ...", flush=True)
    sim = simulate(cfg)
    events_path = out / "events.parquet"
    labels_path = out / "entities.csv"
    write_events(sim, str(events_path))
    write_entity_labels(sim.entity_labels, str(labels_path))
    n_pos = sum(e.label or 0 for e in sim.events)
    print(f"      {len(sim.events):,} events, {n_pos:,} labelled risky, "
          f"{len(sim.entity_labels):,} entities -> {events_path} ({time.perf_counter() - t0:.1f}s)")

    print(f"[2/3] scoring embedded (evaluating the last {EVAL_FRACTION:.0%}) ...", flush=True)
    metrics = evaluate(settings, FileSpec(str(events_path)), out_dir=str(out),
                       entity_labels_path=str(labels_path), eval_after=None, eval_fraction=EVAL_FRACTION,
                       state_dir=None, progress=progress)
    print(f"[3/3] results ({time.perf_counter() - t0:.1f}s in all); report: {out / 'report.md'}")
    for line in summary_lines(metrics):
        print(line)
    return 0
