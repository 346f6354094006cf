"""numba's on-disk cache must not outlive an edit of features/layout.py (slow: compiles twice)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import riskgraph.features

PROBE = """
import numpy as np
from riskgraph.features.layout import NodeArrays, init_rows
from riskgraph.features.kernels import compute_features
t = NodeArrays.empty(2); init_rows(t, np.arange(2))
x = compute_features(t, [0, 0], [1, 1], [0, 0], [1, 1], [0.0, 60.0], [1.0, 1.0])
print(x[1, 0])
"""


def probe(root: Path) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


@pytest.mark.slow
def test_layout_edit_recompiles_cached_kernels(tmp_path: Path) -> None:
    pkg = Path(riskgraph.features.__file__).parent
    # features/ imports nothing else of riskgraph: a bare parent package is enough
    (tmp_path / "riskgraph").mkdir()
    (tmp_path / "riskgraph" / "__init__.py").write_text("")
    shutil.copytree(pkg, tmp_path / "riskgraph" / "features", ignore=shutil.ignore_patterns("__pycache__"))
    # 1-min count one minute after one event: 2 ** (-60 / 60)
    assert probe(tmp_path) == 0.5
    assert any((tmp_path / "riskgraph" / "features" / "__pycache__").glob("kernels.*.nbi"))  # the cache exists
    layout = tmp_path / "riskgraph" / "features" / "layout.py"
    text = layout.read_text()
    assert "(60.0, 3600.0, 86400.0)" in text
    layout.write_text(text.replace("(60.0, 3600.0, 86400.0)", "(30.0, 3600.0, 86400.0)"))
    assert probe(tmp_path) == 0.25  # 2 ** (-60 / 30): the cached code saw the new half-life
    assert probe(tmp_path) == 0.25  # and the rewritten cache stays right
