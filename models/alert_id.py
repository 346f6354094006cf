"""Deterministic alert ids: the same (event, model version) always gives the same id.

A worker that crashes after publishing an alert but before committing its state
replays the batch; the replayed alert then carries the id already published, so
consumers can drop the duplicate. The id is the 128-bit BLAKE2b hash of both
strings, each length-prefixed so that no two different pairs can be spelled the
same (``("ab", "c")`` and ``("a", "bc")`` differ), under a personalisation string
that keeps these hashes apart from any other use of BLAKE2b in the project.

>>> alert_id("e1", "hst-1") == alert_id("e1", "hst-1")
True
>>> len(alert_id("e1", "hst-1")), alert_id("ab", "c") != alert_id("a", "bc")
(32, True)
"""

from __future__ import annotations

import hashlib
import struct

_PERSON = b"riskgraph.alert"


def alert_id(event_id: str, model_version: str) -> str:
    """32 lowercase hex characters identifying the alert of ``event_id`` under ``model_version``."""
    for name, v in (("event_id", event_id), ("model_version", model_version)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"{name} must be a non-empty string, got {v!r}")
    h = hashlib.blake2b(digest_size=16, person=_PERSON)
    for part in (event_id, model_version):
        b = part.encode("utf-8")
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    return h.hexdigest()
