"""What every benchmark script does with its result: describe the machine, print, write.

The scripts in ``benchmarks/`` each end with a JSON result that the README quotes; this
module is the one place that says what goes around the numbers (``machine``), that keeps
paths of the machine that ran it out of the committed files (``config``), and that writes
the file (``emit``). Scripts run as ``python benchmarks/<script>.py`` import it as a
sibling (``from common import emit``).

>>> import argparse, json, os, tempfile
>>> a = argparse.Namespace(events=10, out="/somewhere/x.json", workdir="/tmp/w")
>>> config(a)
{'events': 10}
>>> {'cpu', 'cpus', 'load_avg', 'python'} <= set(machine())
True
>>> path = os.path.join(tempfile.mkdtemp(), "sub", "r.json")
>>> text = emit({"rate": 1.5}, path, echo=False)
>>> json.load(open(path)) == {"rate": 1.5} == json.loads(text)
True
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any, Callable

#: Options that only say where files go on the machine that ran the script: never part
#: of a committed result (the README gives the command; the paths would be someone's disk).
LOCAL_OPTIONS = frozenset({"out", "plot", "workdir", "keep", "child", "copy_to", "store"})


#: Environment variables that change how the process runs (and so the numbers) without
#: being an option of the script: recorded in ``machine()`` when set.
RUNTIME_ENV = ("GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "OMP_NUM_THREADS")


def machine() -> dict[str, Any]:
    """Python, CPU model, CPU count, load average now and the :data:`RUNTIME_ENV` that is
    set: enough to tell two runs' machines apart."""
    out: dict[str, Any] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                           "cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]}
    env = {k: os.environ[k] for k in RUNTIME_ENV if k in os.environ}
    if env:
        out["env"] = env
    return out


def config(args: argparse.Namespace, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The script's options as a dict, without :data:`LOCAL_OPTIONS` and ``drop``."""
    return {k: v for k, v in vars(args).items() if k not in LOCAL_OPTIONS and k not in drop}


def emit(result: dict[str, Any], out: str | None, echo: bool = True,
         default: Callable[[Any], Any] | None = None) -> str:
    """Print ``result`` as indented JSON (``echo``) and write it to ``out`` (parent folders
    created; nothing written when ``out`` is empty). ``default`` as in :func:`json.dumps`."""
    text = json.dumps(result, indent=2, default=default)
    if echo:
        print(text)
        sys.stdout.flush()
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(text + "\n")
    return text
