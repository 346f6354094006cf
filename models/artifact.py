"""Model artifacts: a directory a worker can load, and swap to while running.

Layout (see ARCHITECTURE.md, "Model artifact")::

    DIR/config.json          version, detector config, policy (calibrated threshold), score
                             combiner, feature names
    DIR/detector_state.bin   the detector's initial stream state
    DIR/tgn/                 the TGN (weights.pt, config.json, metrics.json), when there is one
    DIR/head/                the supervised head's trees (head.npz, head.json; ``models.head``),
                             when there is one
    DIR/metrics.json         training/validation metrics (optional)

>>> import tempfile
>>> from riskgraph.models.scoring import ScoringModel
>>> d = tempfile.mkdtemp()
>>> m = ScoringModel.default(seed=3)
>>> _ = save_model(m, d, metrics={"val_ap": 0.5})
>>> load_model(d).version == m.version
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from riskgraph.features.catalogue import FEATURE_NAMES
from riskgraph.models.hst import HalfSpaceTrees
from riskgraph.models.scoring import ScoringModel

FORMAT = 1


class ArtifactError(ValueError):
    """The directory is not a loadable model artifact (the message says why)."""


def save_model(model: ScoringModel, path: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as an artifact directory (created if needed); returns the path."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "format": FORMAT,
        "version": model.version,
        "detector": model.detector.to_config(),
        "policy": model.policy_config,
        "combiner": model.combiner,
        "tgn": None,
        "head": None,
        "entity": None,
        "features": list(FEATURE_NAMES),
    }
    (out / "detector_state.bin").write_bytes(model.state_bytes())
    if model.tgn is not None:
        from riskgraph.models.tgn.artifact import save_tgn

        save_tgn(model.tgn.model, out / "tgn")
        cfg["tgn"] = "tgn"
    if model.head is not None:
        model.head.save(out / "head")
        cfg["head"] = "head"
    if model.entity.head is not None:
        model.entity.save(out / "entity")
        cfg["entity"] = "entity"
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(dict(metrics), indent=2))
    # config last: a reader that sees config.json sees a complete artifact
    tmp = out / "config.json.tmp"
    tmp.write_text(json.dumps(cfg, indent=2))
    tmp.replace(out / "config.json")
    return out


def load_model(path: str | os.PathLike, device: str | None = None) -> ScoringModel:
    """Load an artifact directory written by :func:`save_model` (TGN on ``device``:
    CUDA when available by default)."""
    p = Path(path)
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise ArtifactError(f"{p} is not a model artifact: {cfg_path.name} is missing")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{cfg_path}: invalid JSON ({exc})") from None
    if cfg.get("format") != FORMAT:
        raise ArtifactError(f"{cfg_path}: unsupported artifact format {cfg.get('format')!r} (expected {FORMAT})")
    if list(cfg.get("features", [])) != list(FEATURE_NAMES):
        raise ArtifactError(f"{cfg_path}: trained on a different feature catalogue than this version has")
    tgn = None
    if cfg.get("tgn"):
        from riskgraph.models.tgn.artifact import TGNArtifactError, load_tgn
        from riskgraph.models.tgn.runtime import TGNRuntime

        try:
            tgn = TGNRuntime(load_tgn(p / cfg["tgn"]).model, device=device, fold_on_write=True)
        except TGNArtifactError as exc:
            raise ArtifactError(str(exc)) from None
    head = None
    if cfg.get("head"):
        from riskgraph.models.head import TreeHead

        try:
            head = TreeHead.load(p / cfg["head"])
        except ValueError as exc:
            raise ArtifactError(str(exc)) from None
    entity = None
    if cfg.get("entity"):
        from riskgraph.models.entity import EntityModel

        try:
            entity = EntityModel.load(p / cfg["entity"])
        except ValueError as exc:
            raise ArtifactError(str(exc)) from None
    try:
        model = ScoringModel(HalfSpaceTrees.from_config(cfg["detector"]), tgn=tgn, head=head, entity=entity,
                             combiner=cfg.get("combiner"), version=cfg["version"], policy_config=cfg.get("policy"))
    except ValueError as exc:  # e.g. a head fitted on other inputs than this version computes
        raise ArtifactError(f"{cfg_path}: {exc}") from None
    state = p / "detector_state.bin"
    if state.is_file():
        model.load_state_bytes(state.read_bytes())
    return model
