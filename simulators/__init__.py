"""Labelled transaction simulation and event-file replay (depends only on ``streams.events``).

See ``simulators/TYPOLOGIES.md`` for the attack typologies and label semantics.
"""

from riskgraph.simulators.replay import EventFile, FileBatch, MappingError, OrderError, pace, parse_mapping, read_entity_labels
from riskgraph.simulators.transactions import Incident, SimConfig, SimResult, simulate
from riskgraph.simulators.typologies import TYPOLOGIES
from riskgraph.simulators.writers import write_entity_labels, write_events

__all__ = [
    "EventFile", "FileBatch", "Incident", "MappingError", "OrderError", "SimConfig", "SimResult",
    "TYPOLOGIES", "pace", "parse_mapping", "read_entity_labels", "simulate", "write_entity_labels",
    "write_events",
]
