"""Entity label files as users have them: their header, their label spelling.

A label file is a CSV with one row per entity: an id column and a label column.
Which is which comes from a mapping (``--entity-map entity=COL,label=COL``) or is
detected: a column named like an id (``entity``, ``id``, ``node``, ``user``,
``account`` ...) and one named like a label (``label``, ``is_fraud``, ``y``,
``fraud``, ``target`` ...), or, in a two-column file, the first and the second.
A file whose first row already holds a label (``17,-1``) has no header.

Labels are binary, in any of the usual spellings: ``0/1``, ``-1/1``,
``true/false``, ``yes/no``; the larger (``1``, ``true``, ``yes``) is the risky
class unless ``positive`` names the value that marks it (REV2's ground-truth
files mark the fraudsters with ``-1``). :attr:`EntityLabels.note` says what was
detected, for the jobs to print.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
>>> _ = p.write_text("id,is_fraud\\n7,1\\n8,-1\\nalice,-1\\n")
>>> lab = load_entity_labels(p)
>>> lab.labels
{'7': 1, '8': 0, 'alice': 0}
>>> lab.note
"gt.csv: 3 entities (1 risky, 2 not); entity column 'id', label column 'is_fraud' (detected; --entity-map entity=COL,label=COL chooses); labels 1/-1: 1 is risky (--entity-positive -1 if -1 marks the risky ones)"
>>> load_entity_labels(p, positive="-1").labels
{'7': 0, '8': 1, 'alice': 1}
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

__all__ = ["EntityLabels", "load_entity_labels", "parse_entity_map", "read_entity_labels"]

#: Header names taken for the entity id and the label column (compared in lower case).
ENTITY_NAMES = ("entity", "entity_id", "id", "node", "node_id", "user", "user_id", "account", "account_id",
                "customer", "customer_id", "name", "src")
LABEL_NAMES = ("label", "is_fraud", "fraud", "is_risky", "risky", "y", "target", "class", "is_bad", "bad",
               "malicious", "is_malicious", "banned", "is_banned", "gt")
_POSITIVE = {"1": "1", "true": "1", "yes": "1", "y": "1", "t": "1"}
_NEGATIVE = {"0": "0", "-1": "-1", "false": "0", "no": "0", "n": "0", "f": "0"}
_DATA_WORDS = {"0", "1", "-1", "+1", "0.0", "1.0", "-1.0", "true", "false", "yes", "no"}
#: The two binary codings: a file uses one (true/false and yes/no are 1/0).
_PAIRS = (("0", "1"), ("-1", "1"))
_HELP = "labels must be binary: 0/1, -1/1, true/false or yes/no"


class LabelFileError(ValueError):
    """An entity label file that cannot be read as one; the message says what to change."""


@dataclass(frozen=True)
class EntityLabels:
    """``labels``: ``{entity: 0 or 1}`` (1 risky); ``note``: what was read and how, in words."""

    labels: dict[str, int]
    note: str
    entity_column: str
    label_column: str


def parse_entity_map(spec: str | None) -> dict[str, str]:
    """``"entity=COL,label=COL"`` as a dict; LabelFileError for anything else.

    >>> parse_entity_map("entity=node, label=y")
    {'entity': 'node', 'label': 'y'}
    """
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        key, sep, col = (x.strip() for x in part.partition("="))
        if not sep or key not in ("entity", "label") or not col:
            raise LabelFileError(f"bad --entity-map item {part.strip()!r}: expected entity=COLUMN and/or "
                                 "label=COLUMN, e.g. --entity-map entity=node,label=is_fraud")
        if key in out:
            raise LabelFileError(f"--entity-map names {key} twice ({out[key]!r} and {col!r})")
        out[key] = col
    return out


def _token(text: str | None) -> str | None:
    """A label cell as one of the canonical tokens, or None."""
    t = (text or "").strip().lower()
    if t.endswith(".0") and t[:-2] in ("0", "1", "-1"):
        t = t[:-2]
    if t in ("+1",):
        t = "1"
    return t if t in _POSITIVE or t in _NEGATIVE else None


def _canonical(t: str) -> str:
    return _POSITIVE.get(t) or _NEGATIVE[t]


def _columns(header: list[str], mapping: Mapping[str, str], source: str) -> tuple[int, int, bool]:
    """(entity index, label index, whether they were detected)."""
    listing = ", ".join(repr(c) for c in header)
    for key, col in mapping.items():
        if col not in header:
            raise LabelFileError(f"{source}: column {col!r} (--entity-map {key}=) is not in the file; its columns "
                                 f"are: {listing}")
    lower = [c.strip().lower() for c in header]

    def find(names: tuple[str, ...], taken: int | None) -> int | None:
        for name in names:
            if name in lower and lower.index(name) != taken:
                return lower.index(name)
        return None

    ent = header.index(mapping["entity"]) if "entity" in mapping else None
    lab = header.index(mapping["label"]) if "label" in mapping else None
    detected = ent is None or lab is None
    if ent is None:
        ent = find(ENTITY_NAMES, lab)
    if lab is None:
        lab = find(LABEL_NAMES, ent)
    if len(header) == 2:  # two columns: whichever is not named is the other one
        if ent is None and lab is None:
            ent, lab = 0, 1
        elif ent is None:
            ent = 1 - lab
        elif lab is None:
            lab = 1 - ent
    if ent is None or lab is None or ent == lab:
        raise LabelFileError(f"{source}: cannot tell which columns hold the entity id and the label among "
                             f"{listing}; name them with --entity-map entity=COLUMN,label=COLUMN")
    return ent, lab, detected


def load_entity_labels(path: str | os.PathLike[str], mapping: Mapping[str, str] | str | None = None, *,
                       positive: str | None = None) -> EntityLabels:
    """Read an entity label CSV (see the module docstring); :class:`LabelFileError` names the
    line and the fix for an empty id, a label outside one binary spelling, or an entity
    labelled both ways."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such entity label file: {str(path)!r}")
    mapping = parse_entity_map(mapping) if isinstance(mapping, str) else dict(mapping or {})
    source = str(path)
    with path.open("r", encoding="utf-8", errors="replace", newline="") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise LabelFileError(f"{source}: the entity label file is empty; it needs one row per entity: id,label")
    first = rows[0]
    # a header may be named like a one-letter label ("node,y"): only full spellings mean data
    headerless = (not mapping and len(first) == 2 and first[1].strip().lower() in _DATA_WORDS
                  and _token(first[0]) is None)
    if headerless:  # "17,-1": the first row is data
        header, data, start = ["entity", "label"], rows, 1
    else:
        header, data, start = [c.strip() for c in first], rows[1:], 2
    ent_i, lab_i, detected = _columns(header, mapping, source)
    raw: dict[str, tuple[str, int]] = {}
    seen_tokens: dict[str, str] = {}
    width = len(header)
    for k, rec in enumerate(data):
        line = k + start
        if len(rec) != width:
            raise LabelFileError(f"{source}: line {line} has {len(rec)} fields, the header has {width}")
        entity, text = rec[ent_i].strip(), rec[lab_i]
        if not entity:
            raise LabelFileError(f"{source}: line {line}: empty entity id")
        tok = _token(text)
        if tok is None:
            raise LabelFileError(f"{source}: line {line}: label {text!r} of {entity!r} is not a label: {_HELP} "
                                 f"(the label column is {header[lab_i]!r}; --entity-map label=COLUMN picks another)")
        seen_tokens.setdefault(_canonical(tok), text.strip().lower())
        if entity in raw and raw[entity][0] != _canonical(tok):
            raise LabelFileError(f"{source}: line {line}: entity {entity!r} is labelled both "
                                 f"{seen_tokens[raw[entity][0]]!r} and {text.strip()!r}")
        raw.setdefault(entity, (_canonical(tok), line))
    values = set(seen_tokens)
    pair = next((p for p in _PAIRS if values <= set(p)), None)
    if pair is None:
        raise LabelFileError(f"{source}: the labels mix 0 and -1 as the other class of 1 "
                             f"({', '.join(sorted(set(seen_tokens.values())))}); {_HELP}, one of them per file")
    pos_tok = pair[1]
    if positive is not None:
        p = _token(str(positive))
        if p is None or _canonical(p) not in pair:
            raise LabelFileError(f"--entity-positive {positive!r} is not one of the file's label values "
                                 f"({' and '.join(pair)})")
        pos_tok = _canonical(p)
    labels = {e: int(t == pos_tok) for e, (t, _) in raw.items()}
    n_pos = sum(labels.values())
    how = ("detected; --entity-map entity=COL,label=COL chooses" if detected else "from --entity-map")
    cols = ("no header: first column the entity, second the label" if headerless else
            f"entity column {header[ent_i]!r}, label column {header[lab_i]!r} ({how})")
    spelled = f"labels {'/'.join(seen_tokens[t] for t in sorted(seen_tokens, key=lambda t: t != pos_tok))}: " \
              f"{seen_tokens.get(pos_tok, pos_tok)} is risky"
    if positive is None and pair == ("-1", "1"):  # both conventions exist in published label files
        spelled += " (--entity-positive -1 if -1 marks the risky ones)"
    note = f"{path.name}: {len(labels):,} entities ({n_pos:,} risky, {len(labels) - n_pos:,} not); {cols}; {spelled}"
    return EntityLabels(labels=labels, note=note, entity_column=header[ent_i], label_column=header[lab_i])


def read_entity_labels(path: str | os.PathLike[str], mapping: Mapping[str, str] | str | None = None, *,
                       positive: str | None = None) -> dict[str, int]:
    """``{entity: 0 or 1}`` of a label file (:func:`load_entity_labels` without the note)."""
    return load_entity_labels(path, mapping, positive=positive).labels
