"""The human side of ``riskgraph evaluate``: plots and a Markdown report.

Writes into an output directory: ``roc_pr.png`` (ROC and precision-recall curves
per score component), ``scores.png`` (score histograms by label, threshold marked),
``throughput.png`` (events/s and batch latency over the run) and ``report.md``
that embeds them with the headline metrics and the per-typology table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def plot_curves(components: Mapping[str, np.ndarray], labels: np.ndarray, path: Path) -> None:
    mask = labels >= 0
    y = labels[mask]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    if len(y) and y.min() != y.max():  # no curve without both labels (an unlabelled file: empty axes)
        for name, s in components.items():
            fpr, tpr, _ = roc_curve(y, s[mask])
            prec, rec, _ = precision_recall_curve(y, s[mask])
            ax1.plot(fpr, tpr, label=name)
            ax2.plot(rec, prec, label=name)
    ax1.plot([0, 1], [0, 1], ls=":", c="grey")
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (events)")
    ax2.axhline(float(y.mean()) if len(y) else 0, ls=":", c="grey", label="base rate")
    ax2.set(xlabel="recall", ylabel="precision", title="Precision-recall (events)", ylim=(0, 1.02))
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(loc="lower right")
    ax2.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scores(scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path,
                typology: list[str | None] | None = None) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins = np.linspace(0, 1, 51)
    if (labels == 0).any():
        ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="benign", density=True)
    if typology is not None and any(typology):
        names = sorted({t for t in typology if t})
        arr = np.asarray([t or "" for t in typology])
        for n in names:
            ax.hist(scores[arr == n], bins=bins, histtype="step", lw=1.6, label=n, density=True)
    elif (labels == 1).any():
        ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="risky", density=True)
    if (labels < 0).any():  # events without a label (all of them in an unlabelled file)
        ax.hist(scores[labels < 0], bins=bins, histtype="step", lw=1.6, label="unlabelled", density=True)
    ax.axvline(threshold, c="k", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="score", ylabel="density", title="Score distribution by label", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(batch_sizes: np.ndarray, batch_seconds: np.ndarray, batch_wall: np.ndarray, path: Path) -> None:
    fig, ax1 = plt.subplots(figsize=(8, 4.5))
    eps = np.where(batch_seconds > 0, batch_sizes / np.maximum(batch_seconds, 1e-12), np.nan)
    ax1.plot(batch_wall, eps, lw=0.8, c="tab:blue")
    ax1.set(xlabel="run time (s)", ylabel="events/s per batch", title="Throughput and batch latency")
    ax2 = ax1.twinx()
    ax2.plot(batch_wall, batch_seconds * 1e3, lw=0.8, c="tab:orange")
    ax2.set_ylabel("batch latency (ms)", color="tab:orange")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return "n/a" if v is None else str(v)


def _interval(ci: Any) -> str:
    return "" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def write_report(out_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """Write report.md next to the plots; returns its path."""
    lines = ["# riskgraph evaluation", "", "| metric | value | 90% interval |", "|---|---|---|"]
    for k, v in metrics.items():
        if not isinstance(v, (dict, list)):
            ci = metrics.get(f"{k}_ci90")
            lines.append(f"| {k} | {_fmt(v)} | {_interval(ci)} |")
    boot = metrics.get("bootstrap")
    if boot:
        lines += ["", f"Intervals: {boot['level']:.0%} percentile bootstrap over {boot['resamples']} stratified "
                  f"resamples (positives among positives, negatives among negatives; fewer above "
                  f"{boot['shrinks_above']:,} items), seed {boot['seed']}."]
    ent = metrics.get("entity_components") or {}
    if ent:
        lines += ["", "## Entity scores", "",
                  "| entity score | AUC | 90% interval | AP | 90% interval | positives | negatives | P@k | P@100 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in ent.items():
            lines.append(f"| {name} | {_fmt(r.get('entity_auc'))} | {_interval(r.get('entity_auc_ci90'))} | "
                         f"{_fmt(r.get('entity_ap'))} | {_interval(r.get('entity_ap_ci90'))} | "
                         f"{r.get('entity_positives')} | {r.get('entity_negatives')} | "
                         f"{_fmt(r.get('entity_precision_at_k'))} | {_fmt(r.get('entity_precision_at_100'))} |")
    typ = metrics.get("typologies") or {}
    if typ:
        lines += ["", "## Per typology (its events against all benign events)", "",
                  "| typology | events | AUC | 90% interval | AP | 90% interval | recall at threshold | median score |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, row in typ.items():
            lines.append(f"| {name} | {row['events']} | {_fmt(row['auc'])} | {_interval(row.get('auc_ci90'))} | "
                         f"{_fmt(row['ap'])} | {_interval(row.get('ap_ci90'))} | "
                         f"{_fmt(row['recall_at_threshold'])} | {_fmt(row['median_score'])} |")
    abl = metrics.get("components") or {}
    if abl:
        lines += ["", "## Score components (ablation)", "", "```json", json.dumps(abl, indent=2), "```"]
    lines += ["", "![ROC and PR](roc_pr.png)", "", "![scores](scores.png)", "", "![throughput](throughput.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
