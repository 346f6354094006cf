"""The harder simulator (simulators/TYPOLOGIES.md, "Harder data"): each mechanism is there and
does what it says, and the defaults are what they were before any of it existed."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from riskgraph.simulators.transactions import HARD, SimConfig, SimResult, hard_config, simulate
from riskgraph.simulators.typologies import LATE_START

DAY = 86400.0
BASE = dict(seed=5, n_persons=3000, n_merchants=300, n_atms=40, days=12)
COUNTS = dict(card_testing=5, account_takeover=8, mule_chain=4, collusion_ring=3, low_and_slow=4)


@pytest.fixture(scope="module")
def hard() -> SimResult:
    return simulate(hard_config(**BASE, **COUNTS, bust_out=4))


def test_default_output_is_unchanged():
    # digest of the default simulation written before the hard mechanisms existed: adding
    # them (a fifth seed child, opt-in typology, variant draws) must not move one event
    r = simulate(SimConfig(seed=3, n_persons=600, n_merchants=150, n_atms=20, days=7))
    h = hashlib.sha256()
    for e in r.events:
        h.update(f"{e.id}|{e.ts!r}|{e.src}|{e.dst}|{e.kind}|{e.amount!r}|{e.label}\n".encode())
    h.update(repr(sorted(r.entity_labels.items())).encode())
    assert h.hexdigest()[:16] == DEFAULT_DIGEST
    assert r.true_entity_labels == r.entity_labels and not any(i.camouflaged or i.late for i in r.incidents)


DEFAULT_DIGEST = "c6299b065c87a226"  # the code before the hard mechanisms (0825c4c) gives the same


def test_hard_preset_and_validation():
    c = hard_config(seed=1)
    assert {k: getattr(c, k) for k in HARD} == HARD
    assert simulate(hard_config(**BASE, **COUNTS)).events == simulate(hard_config(**BASE, **COUNTS)).events
    for bad in (dict(label_noise=0.5), dict(camouflage=1.5), dict(late_fraud=-0.1), dict(label_noise=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SimConfig(**bad)


def test_label_noise_flips_the_stated_share_both_ways(hard):
    truth, seen = hard.true_entity_labels, hard.entity_labels
    n_pos = sum(truth.values())
    k = round(0.1 * n_pos)
    missed = [e for e in truth if truth[e] == 1 and seen[e] == 0]
    false = [e for e in truth if truth[e] == 0 and seen[e] == 1]
    assert k > 0 and len(missed) == len(false) == k
    assert all(e.startswith("p-") for e in false)  # a false report names a customer
    assert sum(seen.values()) == n_pos  # as many positives as in truth
    attack = [e for e, t in zip(hard.events, hard.typology) if t is not None]
    unreported = [e for e in attack if e.label == 0]
    disputed = [e for e, t in zip(hard.events, hard.typology) if t is None and e.label == 1]
    assert len(unreported) == len(disputed) == round(0.1 * len(attack))
    assert {e.kind for e in disputed} <= {"payment", "transfer"}


def _history(r: SimResult) -> tuple[dict[str, float], dict[str, int]]:
    """First-seen time and number of events of every entity over the whole file."""
    first: dict[str, float] = {}
    count: dict[str, int] = {}
    for e in r.events:
        for x in (e.src, e.dst):
            first.setdefault(x, e.ts)
            count[x] = count.get(x, 0) + 1
    return first, count


def _receiver_rule_aucs(r: SimResult) -> tuple[float, float, int]:
    """AUC of the rules 'seen late' and 'few events' separating the receivers and cash-out
    accounts of the incidents from ordinary customers."""
    first, count = _history(r)
    bad = {x for inc in r.incidents for role in ("receivers", "cashout") for x in inc.roles.get(role, ())}
    normal = [x for x in first if x.startswith("p-") and r.true_entity_labels.get(x) == 0]
    ents = sorted(bad) + normal
    y = np.r_[np.ones(len(bad)), np.zeros(len(normal))]
    return (roc_auc_score(y, [first[x] for x in ents]), roc_auc_score(y, [-count[x] for x in ents]), len(bad))


def test_camouflaged_accounts_have_the_history_of_ordinary_ones():
    plain = simulate(SimConfig(**BASE, **COUNTS))
    camo = simulate(SimConfig(**BASE, **COUNTS, camouflage=1.0))
    assert all(i.camouflaged for i in camo.incidents) and not any(i.camouflaged for i in plain.incidents)
    seen_late, few, n = _receiver_rule_aucs(plain)
    assert n > 50 and seen_late > 0.95 and few > 0.9  # fresh accounts: one-line rules catch them
    seen_late, few, n = _receiver_rule_aucs(camo)
    assert n > 50 and 0.3 < seen_late < 0.7 and 0.25 < few < 0.7  # camouflaged: the rules are near chance


def test_camouflage_moves_amounts_and_pace_towards_normal():
    plain = simulate(SimConfig(**BASE, **COUNTS))
    camo = simulate(SimConfig(**BASE, **COUNTS, camouflage=1.0))

    def card_testing(r: SimResult) -> tuple[float, float]:
        ev = [e for e, t in zip(r.events, r.typology) if t == "card_testing"]
        return float(np.median([e.amount for e in ev])), float(np.median(np.diff([e.ts for e in ev])))

    (a0, gap0), (a1, gap1) = card_testing(plain), card_testing(camo)
    assert a0 <= 3.0 < 5.0 < a1 and gap0 < 60.0 < 600.0 < gap1


def test_late_fraud_comes_late_in_a_long_life():
    r = simulate(SimConfig(**BASE, **COUNTS, late_fraud=1.0))
    cfg = r.config
    late_lo = cfg.start_ts + LATE_START * cfg.days * DAY
    first, _ = _history(r)
    by_id = {e.id: e for e in r.events}
    short = [i for i in r.incidents if i.typology in ("card_testing", "account_takeover")]
    assert short and all(i.late for i in r.incidents)
    for inc in short:
        t0 = min(by_id[x].ts for x in inc.event_ids)
        assert t0 >= late_lo
        actor = inc.roles["card" if inc.typology == "card_testing" else "victim"][0]
        assert first[actor] <= t0 - 2 * DAY  # an old customer, not a newcomer
    plain = simulate(SimConfig(**BASE, **COUNTS))
    starts = [min(by_id[x].ts for x in i.event_ids) for i in r.incidents]
    plain_by_id = {e.id: e for e in plain.events}
    plain_starts = [min(plain_by_id[x].ts for x in i.event_ids) for i in plain.incidents]
    assert np.median(starts) > np.median(plain_starts) + cfg.days * DAY / 5


def test_bust_out_is_an_established_customer_spending_big_at_the_end(hard):
    busts = [i for i in hard.incidents if i.typology == "bust_out"]
    assert len(busts) == 4
    first, count = _history(hard)
    by_id = {e.id: e for e in hard.events}
    for inc in busts:
        ev = [by_id[x] for x in inc.event_ids]
        sender = inc.roles["sender"][0]
        assert {e.src for e in ev} == {sender} and 6 <= len(ev) <= 14
        assert min(e.ts for e in ev) >= hard.config.start_ts + 0.7 * hard.config.days * DAY - 1.0
        assert first[sender] < min(e.ts for e in ev) - 3 * DAY and count[sender] > len(ev)
        assert np.median([e.amount for e in ev]) > 500.0
        assert hard.true_entity_labels[sender] == 1
        assert all(hard.true_entity_labels[m] == 0 for m in inc.roles.get("merchants", ()))


def test_the_default_config_has_no_bust_out_but_a_derived_one_has():
    assert SimConfig().incident_counts()["bust_out"] == 0
    c = dataclasses.replace(SimConfig(n_persons=3000, days=10), bust_out=None)
    assert c.incident_counts()["bust_out"] >= 1
