"""A slow scorer for the fault tier: put this directory on ``PYTHONPATH`` and set
``FAULT_SCORE_DELAY_S`` to make every ``Engine.process`` call take that much longer.

Python imports ``sitecustomize`` at start-up, so the worker under test is the real
``python -m riskgraph.cli worker``, only slower at scoring (the event loop is blocked
while it scores, as with a heavy model on a CPU): the condition under which the
channel queue between Faust's consumer and the engine fills up.
"""

import os
import time

_delay = float(os.environ.get("FAULT_SCORE_DELAY_S", "0") or 0)
if _delay > 0:
    from riskgraph.streams.engine import Engine

    _process = Engine.process

    def _slow_process(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(_delay)
        return _process(self, *args, **kwargs)

    Engine.process = _slow_process
