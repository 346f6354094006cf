"""Labelled synthetic transaction streams: background traffic plus injected attacks.

``simulate(SimConfig(...))`` draws a population (:mod:`simulators.background`),
its normal traffic over ``days`` days, and attack incidents of five typologies
(:mod:`simulators.typologies`, where each typology and its event and entity
label semantics are documented; see also ``simulators/TYPOLOGIES.md``). The
result is in chronological order with ids ``tx-000000000``, ``tx-000000001``...

Label semantics in one place:

* ``Event.label`` is 1 exactly for events created by an attack incident, and
  ``SimResult.typology[i]`` names that incident's typology (None otherwise).
  Background events of attackers or victims keep label 0.
* ``SimResult.entity_labels[e]`` is 1 for the malicious or compromised roles
  of each typology (the stolen card, the taken-over account and the attacker's
  device and receivers, mules, ring members, the low-and-slow sender and its
  receivers) and 0 for every other entity appearing as ``src`` or ``dst``.

Determinism: the seed fixes everything. Background, naming and each typology
draw from their own child generators (``numpy.random.SeedSequence.spawn``), so
changing an incident count leaves the background traffic unchanged (same
entities, times, amounts and attrs; only the ``tx-`` numbering shifts).

>>> r = simulate(SimConfig(seed=3, n_persons=600, n_merchants=150, n_atms=20, days=7,
...                        card_testing=2, account_takeover=2, mule_chain=1,
...                        collusion_ring=1, low_and_slow=1))
>>> all(a.ts <= b.ts for a, b in zip(r.events, r.events[1:]))
True
>>> all((e.label == 1) == (t is not None) for e, t in zip(r.events, r.typology))
True
>>> sorted({t for t in r.typology if t})
['account_takeover', 'card_testing', 'collusion_ring', 'low_and_slow', 'mule_chain']
>>> r.events[0].id, sorted(r.events[0].attrs)[:2]
('tx-000000000', ['channel', 'country'])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import numpy as np

from riskgraph.simulators import catalog as C
from riskgraph.simulators.background import EventColumns, World, background
from riskgraph.simulators.typologies import (EVENTS_PER_INCIDENT, INJECTORS, MALICIOUS_ROLES, OPT_IN, TYPOLOGIES,
                                             Attacks)
from riskgraph.simulators.writers import write_entity_labels, write_events  # re-exported: simulate, then write
from riskgraph.streams.events import TS_MAX, TS_MIN, Event

__all__ = ["HARD", "Incident", "SimConfig", "SimResult", "hard_config", "simulate", "write_entity_labels",
           "write_events"]


#: Incidents per typology in the reference world (10 000 persons, 14 days, 1.4 % attacks):
#: the mix in which ``attack_rate`` is spread over the typologies.
REFERENCE_MIX: dict[str, int] = {
    "card_testing": 25, "account_takeover": 60, "mule_chain": 25, "collusion_ring": 15, "low_and_slow": 25,
    "bust_out": 20,  # opt-in (OPT_IN): in the mix only when its count is derived (None)
}


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Defaults: about 200k events over 14 days, ~1.4 % of them attacks.

    The typology fields are incident counts. Those left None are derived
    from ``attack_rate`` (the share of attack events, 1.4 % by default) in the
    reference mix, at least one incident each while the rate is positive, so
    that any world size gets every typology at about that share. ``bust_out`` is
    opt-in: 0 unless set or None.

    The last three fields make the data harder (all 0 by default; :data:`HARD` is
    the preset, see ``simulators/TYPOLOGIES.md``): ``label_noise`` is the share of
    positives whose label is wrong (as many malicious entities and attack events
    labelled 0 as benign ones labelled 1); ``camouflage`` and ``late_fraud`` the
    chance of each incident to be camouflaged (ordinary-looking accounts, amounts and
    pace) or late (the window's last quarter, persons with long histories).
    """

    seed: int = 0
    n_persons: int = 10_000
    n_merchants: int = 2_000
    n_atms: int = 300
    days: float = 14  # may be fractional; at least 2 so that multi-day typologies fit
    #: Event time of the first simulated midnight (hours of day are counted from it).
    start_ts: float = 1_704_067_200.0  # 2024-01-01 00:00 UTC, a Monday
    #: Mean background events per person per day.
    mean_daily_events: float = 1.4
    #: Lognormal sigma of per-person activity: larger means a heavier tail.
    activity_sigma: float = 1.0
    card_testing: int | None = None
    account_takeover: int | None = None
    mule_chain: int | None = None
    collusion_ring: int | None = None
    low_and_slow: int | None = None
    bust_out: int | None = 0
    attack_rate: float = 0.014
    label_noise: float = 0.0
    camouflage: float = 0.0
    late_fraud: float = 0.0

    def __post_init__(self) -> None:
        for name in ("seed", "n_persons", "n_merchants", "n_atms", *TYPOLOGIES):
            v = getattr(self, name)
            if v is None and name in TYPOLOGIES:
                continue
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"SimConfig.{name} must be a non-negative int, got {v!r}")
        if self.n_persons < 100 or self.n_merchants < 50 or self.n_atms < 1:
            raise ValueError("SimConfig needs n_persons >= 100, n_merchants >= 50 and n_atms >= 1, got "
                             f"{self.n_persons}, {self.n_merchants}, {self.n_atms}")
        d = self.days
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d < 2:
            raise ValueError(f"SimConfig.days must be a number of days, at least 2, got {d!r}")
        if not (math.isfinite(self.start_ts) and TS_MIN <= self.start_ts
                and self.start_ts + self.days * 86400.0 <= TS_MAX):
            raise ValueError(f"SimConfig.start_ts={self.start_ts!r} puts events outside [{TS_MIN}, {TS_MAX}]")
        for name in ("mean_daily_events", "activity_sigma"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"SimConfig.{name} must be a positive number, got {v!r}")
        r = self.attack_rate
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r < 0.5:
            raise ValueError(f"SimConfig.attack_rate must be a number in [0, 0.5), got {r!r}")
        for name, hi in (("label_noise", 0.5), ("camouflage", 1.0), ("late_fraud", 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= hi or (hi < 1 and v == hi):
                raise ValueError(f"SimConfig.{name} must be a number in [0, {hi}{')' if hi < 1 else ']'}, got {v!r}")

    def incident_counts(self) -> dict[str, int]:
        """Incidents per typology: the ones set, the others derived from ``attack_rate``.

        >>> SimConfig().incident_counts()
        {'card_testing': 25, 'account_takeover': 59, 'mule_chain': 25, 'collusion_ring': 15, 'low_and_slow': 25, 'bust_out': 0}
        >>> SimConfig(attack_rate=0.0, mule_chain=2).incident_counts()["mule_chain"]
        2
        >>> SimConfig(n_persons=1000, days=3).incident_counts()
        {'card_testing': 1, 'account_takeover': 1, 'mule_chain': 1, 'collusion_ring': 1, 'low_and_slow': 1, 'bust_out': 0}
        >>> hard_config().incident_counts()
        {'card_testing': 23, 'account_takeover': 55, 'mule_chain': 23, 'collusion_ring': 14, 'low_and_slow': 23, 'bust_out': 18}
        """
        mix = {t: REFERENCE_MIX[t] * EVENTS_PER_INCIDENT[t] for t in TYPOLOGIES}  # attack events per typology
        # an opt-in typology takes its share only when asked to (None), so that the default
        # counts of the others are what they were before it existed
        total = sum(v for t, v in mix.items() if t not in OPT_IN or getattr(self, t) is None)
        bg = self.n_persons * self.days * self.mean_daily_events
        attack_events = bg * self.attack_rate / (1.0 - self.attack_rate)
        out = {}
        for t in TYPOLOGIES:
            set_count = getattr(self, t)
            if set_count is not None:
                out[t] = int(set_count)
            elif self.attack_rate == 0:
                out[t] = 0
            else:
                out[t] = max(1, int(round(attack_events * mix[t] / total / EVENTS_PER_INCIDENT[t])))
        return out


#: The hard preset (:func:`hard_config`): every harder mechanism on, bust-outs included.
HARD: dict[str, object] = {"label_noise": 0.1, "camouflage": 0.5, "late_fraud": 0.3, "bust_out": None}


def hard_config(**overrides: object) -> SimConfig:
    """:data:`HARD` with ``overrides`` (seed, sizes ...): the simulator as an exam, not a drill.

    >>> c = hard_config(seed=8, n_persons=2000)
    >>> (c.seed, c.label_noise, c.camouflage, c.late_fraud, c.bust_out)
    (8, 0.1, 0.5, 0.3, None)
    """
    return SimConfig(**{**HARD, **overrides})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Incident:
    """One attack occurrence: its typology, entities per role, and its events' ids."""

    number: int
    typology: str
    roles: dict[str, tuple[str, ...]]
    malicious_roles: tuple[str, ...]
    event_ids: tuple[str, ...]
    camouflaged: bool = False
    late: bool = False


@dataclass
class SimResult:
    """Events in time order, with their typology, the incidents and the entity labels.

    ``Event.label`` and ``entity_labels`` are what a bank would know (wrong for a share
    ``config.label_noise`` of the positives); ``typology`` and ``true_entity_labels`` are
    the truth."""

    config: SimConfig
    events: list[Event]
    typology: list[str | None]
    entity_labels: dict[str, int]
    incidents: list[Incident]
    true_entity_labels: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def attack_share(self) -> float:
        """Fraction of events that belong to an attack."""
        return sum(t is not None for t in self.typology) / max(1, len(self.events))


def simulate(config: SimConfig) -> SimResult:
    """Generate a labelled event stream for ``config`` (deterministic by ``config.seed``)."""
    root = np.random.SeedSequence(config.seed)
    # the fifth child (variants and label noise) leaves the first four's streams as they were
    world_ss, bg_ss, name_ss, attack_ss, hard_ss = root.spawn(5)
    variant_rng, noise_rng, camo_rng = (np.random.default_rng(s) for s in hard_ss.spawn(3))
    world = World.build(np.random.default_rng(world_ss), n_persons=config.n_persons,
                        n_merchants=config.n_merchants, n_atms=config.n_atms,
                        mean_daily_events=config.mean_daily_events, activity_sigma=config.activity_sigma)
    bg = background(world, np.random.default_rng(bg_ss), start_ts=config.start_ts, days=config.days)
    attacks = Attacks(world, bg, config.start_ts, config.days)
    counts = config.incident_counts()
    for typ, ss in zip(TYPOLOGIES, attack_ss.spawn(len(TYPOLOGIES))):
        rng = np.random.default_rng(ss)
        for _ in range(counts[typ]):
            camo, late = variant_rng.uniform(size=2) < (config.camouflage, config.late_fraud)
            attacks.variant(camouflaged=bool(camo), late=bool(late), rng=camo_rng)
            INJECTORS[typ](attacks, rng)
    cols = EventColumns.concat([bg, attacks.columns()])
    # millisecond resolution, then a stable sort: ties keep background-before-attack order
    cols.ts = np.round(cols.ts * 1000.0) / 1000.0
    cols = cols.take(np.argsort(cols.ts, kind="stable"))
    names = world.names(np.random.default_rng(name_ss))
    label = (cols.typology >= 0).astype(np.int64)
    if config.label_noise:
        label = _noisy_events(cols, label, config.label_noise, noise_rng)
    events, typology = _events(cols, names, label)
    incidents = _incidents(attacks, cols, names, events)
    truth = _entity_labels(cols, names, incidents)
    labels = _noisy_entities(truth, config.label_noise, noise_rng) if config.label_noise else truth
    return SimResult(config=config, events=events, typology=typology, entity_labels=labels, incidents=incidents,
                     true_entity_labels=dict(truth) if config.label_noise else truth)


def _flips(n_pos: int, rate: float) -> int:
    return int(round(rate * n_pos))


def _noisy_events(cols: EventColumns, label: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A share ``rate`` of the attack events labelled 0 (never reported) and as many ordinary
    payments and transfers labelled 1 (disputed by mistake)."""
    out = label.copy()
    pos = np.flatnonzero(label == 1)
    k = _flips(len(pos), rate)
    benign = np.flatnonzero((label == 0) & np.isin(cols.kind, (C.KIND_PAYMENT, C.KIND_TRANSFER)))
    k = min(k, len(benign))
    out[rng.choice(pos, k, replace=False)] = 0
    out[rng.choice(benign, k, replace=False)] = 1
    return out


def _noisy_entities(truth: dict[str, int], rate: float, rng: np.random.Generator) -> dict[str, int]:
    """A share ``rate`` of the malicious entities labelled 0 (never caught) and as many
    benign customer accounts labelled 1 (reported by mistake)."""
    pos = sorted(e for e, v in truth.items() if v == 1)
    benign = sorted(e for e, v in truth.items() if v == 0 and e.startswith("p-"))
    k = min(_flips(len(pos), rate), len(benign))
    out = dict(truth)
    for e in rng.choice(np.array(pos, dtype=object), k, replace=False).tolist():
        out[e] = 0
    for e in rng.choice(np.array(benign, dtype=object), k, replace=False).tolist():
        out[e] = 1
    return out


def _events(cols: EventColumns, names: list[str], label_arr: np.ndarray) -> tuple[list[Event], list[str | None]]:
    names_arr = np.array(names, dtype=object)
    src = names_arr[cols.src].tolist()
    dst = names_arr[cols.dst].tolist()
    dev = np.where(cols.device >= 0, names_arr[np.maximum(cols.device, 0)], None).tolist()
    kinds = np.array(C.KINDS, dtype=object)[cols.kind].tolist()
    chan = np.array(C.CHANNELS, dtype=object)[cols.channel].tolist()
    country = np.array(C.COUNTRIES, dtype=object)[cols.country].tolist()
    mcc = np.where(cols.mcc >= 0, np.array(C.MCCS, dtype=object)[np.maximum(cols.mcc, 0)], None).tolist()
    amount = np.where(np.isnan(cols.amount), None, cols.amount).tolist()
    label = label_arr.tolist()
    typ_names = np.array((None, *TYPOLOGIES), dtype=object)[cols.typology.astype(np.int64) + 1].tolist()
    events = []
    for i, (ts, s, d, k, a, lab, ch, co, m, dv) in enumerate(
            zip(cols.ts.tolist(), src, dst, kinds, amount, label, chan, country, mcc, dev)):
        attrs = {"channel": ch, "country": co}
        if m is not None:
            attrs["mcc"] = m
        if dv is not None:
            attrs["device"] = dv
        events.append(Event(id=f"tx-{i:09d}", ts=ts, src=s, dst=d, kind=k, amount=a, label=lab, attrs=attrs))
    return events, typ_names


def _incidents(attacks: Attacks, cols: EventColumns, names: list[str], events: list[Event]) -> list[Incident]:
    pos = np.flatnonzero(cols.incident >= 0)
    by_incident: list[list[str]] = [[] for _ in attacks.drafts]
    for p, inc in zip(pos.tolist(), cols.incident[pos].tolist()):
        by_incident[inc].append(events[p].id)
    return [
        Incident(number=i, typology=d.typology,
                 roles={role: tuple(names[e] for e in ents) for role, ents in d.roles.items()},
                 malicious_roles=MALICIOUS_ROLES[d.typology], event_ids=tuple(by_incident[i]),
                 camouflaged=d.camouflaged, late=d.late)
        for i, d in enumerate(attacks.drafts)
    ]


def _entity_labels(cols: EventColumns, names: list[str], incidents: list[Incident]) -> dict[str, int]:
    seen = np.unique(np.concatenate([cols.src, cols.dst]))
    labels = {names[e]: 0 for e in seen.tolist()}
    for inc in incidents:
        for role in inc.malicious_roles:
            for name in inc.roles.get(role, ()):
                if name in labels:  # roles that never act (none today) stay out
                    labels[name] = 1
    return labels
