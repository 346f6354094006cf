"""Each typology has its characteristic shape (see simulators/TYPOLOGIES.md)."""

from __future__ import annotations

from collections import Counter

import numpy as np


def _mode(values):
    return Counter(values).most_common(1)[0][0]


def test_card_testing_is_a_burst_of_tiny_payments_to_many_merchants(incidents_of, history_of):
    found = incidents_of("card_testing")
    assert len(found) == 4
    for inc, evs in found:
        (card,) = inc.roles["card"]
        assert 15 <= len(evs) <= 40
        assert {e.src for e in evs} == {card}
        assert all(e.kind == "payment" and e.attrs["channel"] == "online" for e in evs)
        assert all(0.5 <= e.amount <= 3.0 for e in evs)
        merchants = [e.dst for e in evs]
        assert len(set(merchants)) == len(evs) and set(merchants) == set(inc.roles["merchants"])
        assert evs[-1].ts - evs[0].ts < 30 * 60  # minutes, not hours
        (device,) = {e.attrs["device"] for e in evs}
        assert device not in {e.attrs.get("device") for e in history_of(card, evs[0].ts)}


def test_account_takeover_new_device_and_country_then_large_transfers(incidents_of, history_of, small_sim):
    found = incidents_of("account_takeover")
    assert len(found) == 6
    bg_transfer = np.median([e.amount for e in small_sim.events if e.kind == "transfer" and e.label == 0])
    for inc, evs in found:
        (victim,) = inc.roles["victim"]
        (device,) = inc.roles["device"]
        login, transfers = evs[0], evs[1:]
        assert login.kind == "login" and login.src == victim and login.dst == device
        past = history_of(victim, login.ts)
        assert past, "a takeover needs an account with history"
        assert device not in {e.attrs.get("device") for e in past} | {e.dst for e in past}
        assert login.attrs["country"] != _mode(e.attrs["country"] for e in past if e.src == victim)
        assert 2 <= len(transfers) <= 5
        assert all(e.kind == "transfer" and e.src == victim for e in transfers)
        assert all(e.attrs["device"] == device and e.attrs["country"] == login.attrs["country"] for e in transfers)
        assert min(e.amount for e in transfers) >= 500 and np.median([e.amount for e in transfers]) > 5 * bg_transfer
        assert {e.dst for e in transfers} == set(inc.roles["receivers"])
        assert not {e.dst for e in transfers} & ({e.dst for e in past} | {e.src for e in past})
        assert transfers[-1].ts - login.ts < 3 * 3600


def test_mule_chain_fans_in_then_fans_out_fast_to_cash(incidents_of, small_sim):
    found = incidents_of("mule_chain")
    assert len(found) == 3
    first_seen: dict[str, float] = {}
    for e in small_sim.events:
        first_seen.setdefault(e.src, e.ts)
        first_seen.setdefault(e.dst, e.ts)
    for inc, evs in found:
        (collector,) = inc.roles["collector"]
        victims, mules, cashout = set(inc.roles["victims"]), set(inc.roles["mules"]), set(inc.roles["cashout"])
        fan_in = [e for e in evs if e.dst == collector]
        assert len(fan_in) == len(victims) >= 8 and {e.src for e in fan_in} == victims
        out = [e for e in evs if e.src == collector]
        assert len(out) == 2 and {e.dst for e in out} <= mules
        assert max(e.ts for e in fan_in) < min(e.ts for e in out)  # fan-in, then fan-out
        received = sum(e.amount for e in fan_in)
        assert 0.9 * received <= sum(e.amount for e in out) < received  # minus a commission
        # every mule forwards what it got, later and within hours
        for m in mules:
            got = [e for e in evs if e.dst == m]
            sent = [e for e in evs if e.src == m]
            assert len(got) == 1 and sent
            assert min(e.ts for e in sent) > got[0].ts and max(e.ts for e in sent) - got[0].ts < 6 * 3600
            assert sum(e.amount for e in sent) < got[0].amount
        # depth: collector -> layer 1 -> layer 2 at least
        layer1 = {e.dst for e in out}
        assert any(e.src in layer1 and e.dst in mules for e in evs)
        # cash-out accounts are new, receive once from a mule and withdraw at ATMs
        for c in cashout:
            assert first_seen[c] >= min(e.ts for e in out)
            got = [e for e in evs if e.dst == c]
            cash = [e for e in evs if e.src == c]
            assert len(got) == 1 and got[0].src in mules
            assert cash and all(e.kind == "withdrawal" and e.dst.startswith("atm-") for e in cash)
            assert got[0].amount - 20 < sum(e.amount for e in cash) <= got[0].amount
        assert evs[-1].ts - min(e.ts for e in out) < 24 * 3600


def test_collusion_ring_cycles_money_within_a_dense_group(incidents_of):
    found = incidents_of("collusion_ring")
    assert len(found) == 3
    for inc, evs in found:
        members = list(inc.roles["members"])
        k = len(members)
        assert 4 <= k <= 7
        assert all(e.kind == "transfer" and e.src in members and e.dst in members for e in evs)
        sends, gets = Counter(e.src for e in evs), Counter(e.dst for e in evs)
        assert min(sends[m] for m in members) >= 4 and min(gets[m] for m in members) >= 4
        pairs = Counter((e.src, e.dst) for e in evs)
        ring = [(members[i], members[(i + 1) % k]) for i in range(k)]
        assert all(pairs[p] >= 4 for p in ring)  # the same edges again and again
        big = [e.amount for e in evs if (e.src, e.dst) in set(ring)]
        assert max(big) / min(big) < 1.15  # about the same amount each hop
        assert evs[-1].ts - evs[0].ts > 86400  # repeated over days


def test_low_and_slow_many_new_counterparties_at_a_normal_pace(incidents_of, small_sim, history_of):
    found = incidents_of("low_and_slow")
    assert len(found) == 3
    for inc, evs in found:
        (sender,) = inc.roles["sender"]
        assert 15 <= len(evs) <= 30
        assert {e.src for e in evs} == {sender}
        receivers = [e.dst for e in evs]
        assert len(set(receivers)) == len(evs) and set(receivers) == set(inc.roles["receivers"])
        assert not set(receivers) & {x for e in history_of(sender, evs[-1].ts) for x in (e.src, e.dst)}
        ts = np.array([e.ts for e in evs])
        assert np.min(np.diff(ts)) >= 1800 and ts[-1] - ts[0] > 3 * 86400
        assert all(50 <= e.amount <= 1500 for e in evs)
        # per-hour velocity of the sender, background included, stays low
        all_ts = np.array([e.ts for e in small_sim.events if e.src == sender])
        per_hour = max(int(np.sum((all_ts >= t) & (all_ts < t + 3600))) for t in all_ts)
        assert per_hour <= 5
        # its usual device and country
        usual = [e for e in small_sim.events if e.src == sender and e.label == 0 and "device" in e.attrs]
        assert {e.attrs["device"] for e in evs} <= {e.attrs["device"] for e in usual}
        assert {e.attrs["country"] for e in evs} == {_mode(e.attrs["country"] for e in usual)}
