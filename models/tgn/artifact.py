"""TGN model artifacts: a directory with the weights, the architecture, metrics and a version.

Layout::

    DIR/weights.pt     torch.save(model.state_dict()), loaded with weights_only=True
    DIR/metrics.json   training/validation metrics (optional)
    DIR/config.json    format, kind "tgn", version, architecture (TGNConfig), row width,
                       the edge features' names, torch version -- written last, so a
                       reader that sees it sees a complete artifact

The version is ``tgn-`` plus a digest of the architecture and the weights' bytes: the
same model always gets the same version (alert ids derive from it), and loading checks
that the weights are the ones the config names.

>>> import tempfile
>>> from riskgraph.models.tgn.model import TGN, TGNConfig
>>> m = TGN.from_config(TGNConfig(mem_dim=8, time_dim=4, emb_dim=8), seed=0)
>>> d = save_tgn(m, tempfile.mkdtemp(), metrics={"val_link_ap": 0.7})
>>> art = load_tgn(d)
>>> art.version == model_version(m), art.metrics["val_link_ap"], art.model.training
(True, 0.7, False)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from riskgraph.features.catalogue import FEATURE_NAMES, N_FEATURES
from riskgraph.models.tgn.model import TGN, TGNConfig

FORMAT = 1
KIND = "tgn"


class TGNArtifactError(ValueError):
    """The directory is not a loadable TGN artifact (the message says why)."""


@dataclass
class TGNArtifact:
    model: TGN  # in eval mode
    version: str
    config: dict[str, Any]  # the parsed config.json
    metrics: dict[str, Any] | None


def _edge_feature_names(cfg: TGNConfig) -> list[str] | None:
    return list(FEATURE_NAMES) if cfg.edge_dim == N_FEATURES else None


def model_version(model: TGN) -> str:
    """``tgn-`` + 12 hex digits over the architecture and the weights (deterministic)."""
    h = hashlib.blake2b(digest_size=6)
    h.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return "tgn-" + h.hexdigest()


def save_tgn(model: TGN, path: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as an artifact directory (created if needed); returns the path."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    version = model_version(model)
    cfg = {
        "format": FORMAT,
        "kind": KIND,
        "version": version,
        "model": model.config.to_dict(),
        "row_width": model.row_width,
        "edge_features": _edge_feature_names(model.config),
        "torch": torch.__version__,
    }
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    torch.save(state, out / "weights.pt")
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(dict(metrics), indent=2, default=float))
    tmp = out / "config.json.tmp"
    tmp.write_text(json.dumps(cfg, indent=2))
    tmp.replace(out / "config.json")
    return out


def load_tgn(path: str | os.PathLike, device: str | torch.device | None = None) -> TGNArtifact:
    """Load an artifact written by :func:`save_tgn`; raises :class:`TGNArtifactError` if it is not one."""
    p = Path(path)
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise TGNArtifactError(f"{p} is not a TGN artifact: config.json is missing")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise TGNArtifactError(f"{cfg_path}: invalid JSON ({exc})") from None
    if cfg.get("kind") != KIND or cfg.get("format") != FORMAT:
        raise TGNArtifactError(f"{cfg_path}: expected kind {KIND!r} format {FORMAT}, "
                               f"got {cfg.get('kind')!r} format {cfg.get('format')!r}")
    try:
        arch = TGNConfig.from_dict(cfg["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TGNArtifactError(f"{cfg_path}: bad architecture ({exc})") from None
    if cfg.get("edge_features") != _edge_feature_names(arch):
        raise TGNArtifactError(f"{cfg_path}: trained on other edge features than this version computes")
    weights = p / "weights.pt"
    if not weights.is_file():
        raise TGNArtifactError(f"{p}: weights.pt is missing")
    model = TGN.from_config(arch)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # unpickling refused, truncated file, wrong shapes: all mean "not this model"
        raise TGNArtifactError(f"{weights}: cannot load weights ({type(exc).__name__}: {exc})") from None
    version = model_version(model)
    if version != cfg.get("version"):
        raise TGNArtifactError(f"{p}: weights do not match the recorded version "
                               f"({version} != {cfg.get('version')})")
    if model.row_width != cfg.get("row_width"):
        raise TGNArtifactError(f"{cfg_path}: row width {cfg.get('row_width')} != the model's {model.row_width}")
    metrics = None
    mpath = p / "metrics.json"
    if mpath.is_file():
        metrics = json.loads(mpath.read_text())
    model.eval()
    if device is not None:
        model.to(device)
    return TGNArtifact(model=model, version=version, config=cfg, metrics=metrics)
