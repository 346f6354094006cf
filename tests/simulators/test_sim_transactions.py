"""simulate(): determinism, order, labels, entity labels, background realism, config checks."""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter

import numpy as np
import pytest

from riskgraph.simulators.transactions import SimConfig, simulate
from riskgraph.simulators.typologies import MALICIOUS_ROLES, OPT_IN, TYPOLOGIES
from riskgraph.streams.events import validate


def test_same_seed_same_output(small_sim, small_config):
    cfg = small_config
    again = simulate(cfg)
    assert again.events == small_sim.events
    assert again.typology == small_sim.typology
    assert again.entity_labels == small_sim.entity_labels
    assert again.incidents == small_sim.incidents


def test_other_seed_other_output(small_sim, small_config):
    cfg = small_config
    other = simulate(dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert [e.src for e in other.events[:100]] != [e.src for e in small_sim.events[:100]]


def test_background_does_not_depend_on_attack_counts(small_sim, small_config):
    cfg = small_config
    fewer = simulate(dataclasses.replace(cfg, card_testing=0, mule_chain=1))

    def key(e):
        return e.ts, e.src, e.dst, e.kind, e.amount, tuple(sorted(e.attrs.items()))

    assert [key(e) for e in fewer.events if e.label == 0] == [key(e) for e in small_sim.events if e.label == 0]


def test_chronological_unique_ids_and_valid(small_sim, small_config):
    cfg = small_config
    ev = small_sim.events
    ts = np.array([e.ts for e in ev])
    assert np.all(np.diff(ts) >= 0)
    assert ts[0] >= cfg.start_ts and ts[-1] < cfg.start_ts + cfg.days * 86400
    assert [e.id for e in ev] == [f"tx-{i:09d}" for i in range(len(ev))]
    for e in ev[::7]:
        validate(e)


def test_event_labels_match_typology(small_sim):
    assert len(small_sim.typology) == len(small_sim.events)
    for e, t in zip(small_sim.events, small_sim.typology):
        assert e.label == (0 if t is None else 1)
        assert t is None or t in TYPOLOGIES
    ids = {i for inc in small_sim.incidents for i in inc.event_ids}
    assert ids == {e.id for e, t in zip(small_sim.events, small_sim.typology) if t is not None}


def test_attrs_do_not_leak_labels(small_sim):
    allowed = {"channel", "country", "mcc", "device"}
    names = set(TYPOLOGIES)
    for e in small_sim.events:
        assert set(e.attrs) <= allowed and {"channel", "country"} <= set(e.attrs)
        assert not names & set(e.attrs.values())
        assert e.features is None
    # ids of attack-only accounts look like everyone else's
    pattern = re.compile(r"^(p-\d{7}|m-\d{5}|atm-\d{4}|d-\d{8})$")
    assert all(pattern.match(x) for x in small_sim.entity_labels)


def test_entity_labels_follow_roles(small_sim):
    seen = {e.src for e in small_sim.events} | {e.dst for e in small_sim.events}
    labels = small_sim.entity_labels
    assert set(labels) == seen
    assert set(labels.values()) == {0, 1}
    bad = set()
    for inc in small_sim.incidents:
        assert inc.malicious_roles == MALICIOUS_ROLES[inc.typology]
        for role, ents in inc.roles.items():
            for ent in ents:
                if ent in labels:
                    assert labels[ent] == (1 if role in inc.malicious_roles else 0), (inc.typology, role)
            if role in inc.malicious_roles:
                bad.update(ents)
    assert {e for e, v in labels.items() if v == 1} == bad
    victims = [v for inc in small_sim.incidents for v in inc.roles.get("victims", ())]
    assert victims and all(labels[v] == 0 for v in victims)


def test_configured_incident_counts(small_sim, small_config):
    cfg = small_config
    got = Counter(inc.typology for inc in small_sim.incidents)
    assert got == {t: getattr(cfg, t) for t in TYPOLOGIES if getattr(cfg, t)}  # bust_out: opt-in, 0
    assert all(len(inc.event_ids) > 0 for inc in small_sim.incidents)


def test_attack_rate_sets_the_share_at_any_size():
    small = SimConfig(seed=2, n_persons=3000, n_merchants=300, days=10)
    assert 0.01 <= simulate(small).attack_share <= 0.02  # the default 1.4 %, not the reference counts
    r = simulate(dataclasses.replace(small, attack_rate=0.03))
    assert 0.02 < r.attack_share < 0.04
    assert all(n > 0 for t, n in r.config.incident_counts().items() if t not in OPT_IN)
    assert r.config.incident_counts()["bust_out"] == 0  # opt-in: the defaults are what they were
    only = simulate(SimConfig(seed=2, n_persons=300, n_merchants=60, days=3, attack_rate=0.0, mule_chain=2))
    assert Counter(inc.typology for inc in only.incidents) == {"mule_chain": 2}
    assert set(only.typology) == {None, "mule_chain"}


def test_default_demo_size_speed_and_share():
    t0 = time.perf_counter()
    r = simulate(SimConfig(seed=0))
    elapsed = time.perf_counter() - t0
    assert elapsed < 20.0
    assert 170_000 < len(r.events) < 230_000
    assert 0.01 <= r.attack_share <= 0.02


def test_background_is_realistic(small_sim, small_config):
    cfg = small_config
    bg = [e for e in small_sim.events if e.label == 0]
    hours = np.array([int((e.ts - cfg.start_ts) % 86400 // 3600) for e in bg])
    per_hour = np.bincount(hours, minlength=24)
    assert per_hour[1:5].sum() * 8 < per_hour[16:20].sum()  # quiet nights
    activity = np.array(sorted(Counter(e.src for e in bg if e.src.startswith("p-")).values()))[::-1]
    assert activity[: len(activity) // 10].sum() > 0.3 * activity.sum()  # heavy tail: top 10% > 30%
    kinds = Counter(e.kind for e in bg)
    assert set(kinds) == {"payment", "transfer", "withdrawal", "login"}
    assert all(e.dst.startswith("m-") for e in bg if e.kind == "payment")
    assert all(e.dst.startswith("p-") for e in bg if e.kind == "transfer")
    # recurring counterparties: most transfers go to a sender's top four payees
    pairs = Counter((e.src, e.dst) for e in bg if e.kind == "transfer")
    by_src: dict[str, list[int]] = {}
    for (s, _), n in pairs.items():
        by_src.setdefault(s, []).append(n)
    top4 = sum(sum(sorted(v)[-4:]) for v in by_src.values())
    assert top4 > 0.85 * sum(pairs.values())
    # amounts depend on the merchant category
    med = {m: np.median([e.amount for e in bg if e.attrs.get("mcc") == m]) for m in ("5815", "4511")}
    assert med["4511"] > 10 * med["5815"]


@pytest.mark.parametrize("kwargs, match", [
    ({"n_persons": 50}, "n_persons >= 100"),
    ({"days": 1}, "days must be a number of days, at least 2"),
    ({"days": float("nan")}, "days must be"),
    ({"mule_chain": -1}, "mule_chain must be a non-negative int"),
    ({"attack_rate": 0.7}, "attack_rate"),
    ({"attack_rate": None}, "attack_rate"),
    ({"mean_daily_events": 0.0}, "mean_daily_events"),
    ({"start_ts": -5.0}, "start_ts"),
])
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimConfig(**kwargs)


def test_too_few_persons_for_the_roles():
    with pytest.raises(ValueError, match="not enough unused persons"):
        simulate(SimConfig(n_persons=120, n_merchants=60, days=3, mule_chain=30))
