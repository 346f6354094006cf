"""Reserved key prefixes of the graph store: the one place that names them.

Everything lives in RocksDB's default column family, one record kind per
leading byte, so that a single ``WriteBatch`` and a single checkpoint cover
node rows, the id map, the input positions and the blobs together:

====================  =====================================  ======================
prefix                key after the prefix                   value (``state.codecs``)
====================  =====================================  ======================
``NODE``   ``b"N"``   internal id, int64 big-endian          node record
``EXT``    ``b"E"``   external id, UTF-8                     internal id
``INT``    ``b"I"``   internal id, int64 big-endian          external id, UTF-8
``META``   ``b"M"``   ASCII name (``META_*`` below)          see each name
``POS``    ``b"P"``   position name, UTF-8 (``events/0``)    int64 (next offset)
``BLOB``   ``b"B"``   blob name, UTF-8                       opaque bytes
``WINDOW`` ``b"W"``   window name, ``/``, seq (>u8)          key and payload (``state.window``)
====================  =====================================  ======================

Internal ids are dense int64 >= 0; big-endian keys make RocksDB's byte order
equal to id order, so a scan of ``NODE`` or ``INT`` keys walks ids in order.

>>> node_key(258)
b'N\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\x02'
>>> node_keys(np.array([0, 258])) == [node_key(0), node_key(258)]
True
>>> ext_key("alice"), position_key("events/0")
(b'Ealice', b'Pevents/0')
>>> name_of(position_key("events/0"), POS)
'events/0'
"""

from __future__ import annotations

import numpy as np

NODE: bytes = b"N"
EXT: bytes = b"E"
INT: bytes = b"I"
META: bytes = b"M"
POS: bytes = b"P"
BLOB: bytes = b"B"
WINDOW: bytes = b"W"
PREFIXES: tuple[bytes, ...] = (NODE, EXT, INT, META, POS, BLOB, WINDOW)

#: Meta record names (values: see ``GraphStore``'s opening checks).
META_SCHEMA: bytes = META + b"schema_version"  # int64, the record format version the store was written with
META_LAYOUT: bytes = META + b"layout"  # ASCII fingerprint of features.layout (see codecs)
META_MEM_DIM: bytes = META + b"mem_dim"  # int64, width of the learned per-node state
META_NEXT_ID: bytes = META + b"next_id"  # int64, the next internal id to assign

# An internal-id key is the prefix byte and the id as >i8 in one 9-byte record:
# viewing the records as opaque 9-byte items lets NumPy build all keys of a batch
# at once (tolist() of a void array yields bytes, trailing zeros kept).
_ID_KEY = np.dtype([("p", "S1"), ("id", ">i8")])
_ID_KEY_VOID = np.dtype((np.void, _ID_KEY.itemsize))


def _id_keys(prefix: bytes, ids: np.ndarray) -> list[bytes]:
    rec = np.empty(len(ids), _ID_KEY)
    rec["p"] = prefix
    rec["id"] = ids
    return rec.view(_ID_KEY_VOID).tolist()


def node_key(node_id: int) -> bytes:
    """Key of one node record."""
    return NODE + int(node_id).to_bytes(8, "big", signed=True)


def node_keys(ids: np.ndarray) -> list[bytes]:
    """Keys of the node records of ``ids`` (any integer array), in order."""
    return _id_keys(NODE, ids)


def int_key(node_id: int) -> bytes:
    """Key of the internal -> external id record of one node."""
    return INT + int(node_id).to_bytes(8, "big", signed=True)


def int_keys(ids: np.ndarray) -> list[bytes]:
    """Keys of the internal -> external id records of ``ids``."""
    return _id_keys(INT, ids)


def _text_key(prefix: bytes, what: str, name: str) -> bytes:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty str, got {name!r}")
    try:
        return prefix + name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} {name!r} is not encodable as UTF-8: {exc.reason}") from None


def ext_key(ext_id: str) -> bytes:
    """Key of the external -> internal id record of one entity."""
    return _text_key(EXT, "external id", ext_id)


def position_key(name: str) -> bytes:
    """Key of one input position (e.g. ``"events/0"``: topic/partition)."""
    return _text_key(POS, "position name", name)


def blob_key(name: str) -> bytes:
    """Key of one named blob (e.g. a detector's stream state)."""
    return _text_key(BLOB, "blob name", name)


def name_of(key: bytes, prefix: bytes) -> str:
    """The UTF-8 name after ``prefix`` in ``key`` (inverse of the text key builders)."""
    if not key.startswith(prefix):
        raise ValueError(f"key {key[:40]!r} does not start with prefix {prefix!r}")
    return key[len(prefix):].decode("utf-8")


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (scan bound).

    >>> prefix_end(b"P")
    b'Q'
    """
    if not prefix or prefix[-1] == 0xFF:
        raise ValueError(f"no simple upper bound for prefix {prefix!r}")
    return prefix[:-1] + bytes([prefix[-1] + 1])
