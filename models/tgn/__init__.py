"""Temporal Graph Network (Rossi et al. 2020) over the node table: modules, runtime, training, artifacts.

Importing the package loads torch but not the training stack (``models.tgn.train``:
scikit-learn, tqdm), which a serving worker does not need.

``models.tgn.model`` fixes the per-node row layout and composes the modules of
``models.tgn.modules``; ``models.tgn.runtime`` scores and updates micro-batches (the one
code path for serving and training); ``models.tgn.train`` replays an event log to
train; ``models.tgn.artifact`` saves and loads trained models.
"""

from riskgraph.models.tgn.artifact import TGNArtifact, TGNArtifactError, load_tgn, model_version, save_tgn
from riskgraph.models.tgn.model import TGN, RowLayout, TGNConfig
from riskgraph.models.tgn.runtime import BatchForward, MemoryUpdate, TGNRuntime, TGNScores

__all__ = [
    "TGN", "TGNConfig", "RowLayout", "TGNRuntime", "TGNScores", "BatchForward", "MemoryUpdate",
    "TGNArtifact", "TGNArtifactError", "save_tgn", "load_tgn", "model_version",
]
