"""Attack typologies injected into the background traffic.

Each incident is one occurrence of a typology. Every event an incident
creates has ``label`` 1 and ``typology`` set to the typology's name; all
background events have label 0 and typology None, even when they involve an
attacker or a victim. Entity labels are 1 for the *malicious or compromised*
roles listed below and 0 for every other entity that appears in the data
(victims who pay a fraudster, merchants and ATMs used by an attack included).
Attack-only accounts and devices are drawn from the same id space as everyone
else's, and attrs carry only what a bank would see (channel, country, mcc,
device): nothing in an event names its label.

``card_testing`` -- a stolen card (an existing customer's account: role
``card``, compromised, label 1) makes 15-40 tiny card-not-present payments
(0.50-3.00, a third exactly 1.00) to as many distinct online merchants, about
20 s apart (the burst lasts minutes), from one attacker device.

``account_takeover`` -- a quiet or ordinary customer (``victim``, compromised,
label 1; activity below the median) logs in from a new device (``device``,
label 1) in a foreign country, then within about an hour sends 2-5 large
transfers (median 2 500) to 1-3 accounts it never paid (``receivers``, label 1).

``mule_chain`` -- 8-16 customers (``victims``, label 0: deceived, not
compromised) each transfer a few hundred to one ``collector`` over one to three
days (fan-in); hours after the last one the collector splits the money across
two mules, and each layer forwards within minutes (keeping a 2-5 %
commission) to one or two further mules, two or three layers deep
(``mules``); the last layer pays fresh ``cashout`` accounts, which withdraw it
at an ATM. Collector, mules and cash-out accounts are label 1.

``collusion_ring`` -- 4-7 customers (``members``, label 1) repeatedly cycle one
amount (about 3 000, a 1 % fee per hop) around the same ring, 4-7 rounds over
several days, with occasional chords between non-adjacent members.

``low_and_slow`` -- one customer's account (``sender``, label 1) sends 15-30
moderate transfers (about 250) over 5-10 days, at daytime hours and never two
within 30 minutes, each to a different new account (``receivers``, label 1),
from its usual device and country: per-hour velocity looks normal.

``bust_out`` (opt-in: none unless counted or derived, see ``SimConfig.bust_out``) -- an
established, busier-than-median customer (``sender``, label 1) who behaved normally for
most of the window, then in its last 30 % spends 6-14 large amounts within one or two
days: online payments at electronics, airline and lodging merchants (``merchants``,
label 0) and transfers to 1-3 accounts it never paid (``receivers``, label 1).

Harder variants (``SimConfig.camouflage``, ``SimConfig.late_fraud``; see
``simulators/TYPOLOGIES.md``) change an incident, not its labels: a *camouflaged*
incident takes its otherwise fresh accounts (receivers, cash-out accounts) from the
population, so that they have the history of ordinary customers, and moves its amounts
and pace towards normal traffic; a *late* incident happens in the last quarter of the
window and takes its persons among those with at least the median history.

>>> TYPOLOGIES.index("mule_chain"), sorted(MALICIOUS_ROLES["mule_chain"])
(2, ['cashout', 'collector', 'mules'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from riskgraph.simulators import catalog as C
from riskgraph.simulators.background import EventColumns, World, diurnal_times

TYPOLOGIES: tuple[str, ...] = (
    "card_testing", "account_takeover", "mule_chain", "collusion_ring", "low_and_slow", "bust_out",
)
#: Typologies that are off unless a config asks for them (their count defaults to 0, not
#: to a share of ``attack_rate``): the default simulation stays what it was.
OPT_IN: tuple[str, ...] = ("bust_out",)
#: Roles whose entities get entity label 1; other roles are recorded with label 0.
MALICIOUS_ROLES: dict[str, tuple[str, ...]] = {
    "card_testing": ("card",),
    "account_takeover": ("victim", "device", "receivers"),
    "mule_chain": ("collector", "mules", "cashout"),
    "collusion_ring": ("members",),
    "low_and_slow": ("sender", "receivers"),
    "bust_out": ("sender", "receivers"),
}
#: Approximate mean number of events per incident (measured over many seeds); used to
#: turn an attack rate into incident counts.
EVENTS_PER_INCIDENT: dict[str, float] = {
    "card_testing": 27.5,
    "account_takeover": 4.5,
    "mule_chain": 32.0,
    "collusion_ring": 33.0,
    "low_and_slow": 22.5,
    "bust_out": 10.0,
}
DAY = 86400.0
#: A late incident starts in the last quarter of the window.
LATE_START = 0.75


@dataclass
class Draft:
    """One incident while it is generated: entity indices per role."""

    typology: str
    roles: dict[str, list[int]] = field(default_factory=dict)
    camouflaged: bool = False
    late: bool = False


class Attacks:
    """Collects attack events row by row (incidents are few) and the incident drafts."""

    def __init__(self, world: World, bg: EventColumns, start_ts: float, days: float) -> None:
        self.w = world
        self.start = start_ts
        self.end = start_ts + days * DAY
        self.days = days
        P = world.n_persons
        person_rows = bg.src < P
        self.history = np.bincount(bg.src[person_rows], minlength=P)
        self.used = np.zeros(P, dtype=bool)
        self.rows: list[tuple] = []
        self.drafts: list[Draft] = []
        self._first_row = 0
        # the variant of the next incident (set by the caller, see ``variant``) and the
        # generator camouflage draws its accounts from: not the typology's, so that a
        # variant never shifts the random stream of the plain incidents
        self._camouflaged = False
        self._late = False
        self._hard_rng = np.random.default_rng(0)
        self.median_history = float(np.median(self.history))

    # -- bookkeeping ---------------------------------------------------------
    def variant(self, *, camouflaged: bool, late: bool, rng: np.random.Generator) -> None:
        """Make the next incident camouflaged and/or late; ``rng`` draws camouflage accounts."""
        self._camouflaged, self._late, self._hard_rng = camouflaged, late, rng

    @property
    def camouflaged(self) -> bool:
        return self.drafts[-1].camouflaged

    def begin(self, typology: str) -> Draft:
        self._first_row = len(self.rows)
        d = Draft(typology, camouflaged=self._camouflaged, late=self._late)
        self.drafts.append(d)
        return d

    def finish(self) -> None:
        """Shift the incident back into the window if its random delays overran the end."""
        rows = self.rows[self._first_row:]
        if not rows:
            return
        over = max(r[0] for r in rows) - (self.end - 1.0)
        if over > 0:
            self.rows[self._first_row:] = [(r[0] - over,) + r[1:] for r in rows]
        if min(r[0] for r in self.rows[self._first_row:]) < self.start:
            raise ValueError(f"a {self.drafts[-1].typology} incident does not fit in {self.days} days")

    def add(self, ts: float, src: int, dst: int, kind: int, amount: float, channel: int,
            country: int, mcc: int = -1, device: int = -1) -> None:
        typ = TYPOLOGIES.index(self.drafts[-1].typology)
        self.rows.append((float(ts), int(src), int(dst), kind, float(amount), channel, int(country),
                          int(mcc), int(device), typ, len(self.drafts) - 1))

    def columns(self) -> EventColumns:
        dt = [np.float64, np.int64, np.int64, np.int8, np.float64, np.int8, np.int16, np.int16,
              np.int64, np.int8, np.int32]
        cols = list(zip(*self.rows)) if self.rows else [()] * len(dt)
        arrays = [np.asarray(c, dtype=t) for c, t in zip(cols, dt)]
        return EventColumns(*arrays)

    def when(self, rng: np.random.Generator, lo: float, hi: float) -> float:
        """A start time in ``[lo, hi)``; for a late incident in the window's last quarter
        (or as late as the incident's length allows)."""
        if self.drafts[-1].late:
            lo = min(max(lo, self.start + LATE_START * self.days * DAY), hi)
        return float(rng.uniform(lo, hi))

    # -- role sampling -------------------------------------------------------
    def pick(self, rng: np.random.Generator, n: int, role: str, *, min_events: int = 3,
             max_rate: float | None = None, min_rate: float | None = None) -> list[int]:
        """``n`` distinct persons with some history, each used in at most one role overall."""
        if self.drafts[-1].late:  # late in the entity's life: a long ordinary history first
            min_events = max(min_events, int(np.ceil(self.median_history)))
        ok = ~self.used & (self.history >= min_events)
        if max_rate is not None:
            ok &= self.w.person_rate <= max_rate
        if min_rate is not None:
            ok &= self.w.person_rate >= min_rate
        pool = np.flatnonzero(ok)
        if pool.shape[0] < n:
            raise ValueError(
                f"not enough unused persons for role {role!r} of {self.drafts[-1].typology} "
                f"(need {n}, have {pool.shape[0]}): raise n_persons or lower the incident counts")
        chosen = rng.choice(pool, n, replace=False)
        self.used[chosen] = True
        self.drafts[-1].roles.setdefault(role, []).extend(chosen.tolist())
        return chosen.tolist()

    def fresh(self, kind: str, role: str) -> int:
        """A new account or device; in a camouflaged incident an account is an unused
        customer with its own ordinary history instead (a device stays new)."""
        if kind == "account" and self.drafts[-1].camouflaged:
            pool = np.flatnonzero(~self.used & (self.history >= 1))
            if pool.shape[0] == 0:
                raise ValueError(f"not enough unused persons for camouflaged role {role!r}: raise n_persons")
            e = int(self._hard_rng.choice(pool))
            self.used[e] = True
            self.drafts[-1].roles.setdefault(role, []).append(e)
            return e
        e = self.w.new_entity(kind)
        self.drafts[-1].roles.setdefault(role, []).append(e)
        return e

    def own_device(self, person: int) -> int:
        return int(self.w.device_of(person, 0))

    def home(self, person: int) -> int:
        return int(self.w.person_country[person])


def card_testing(a: Attacks, rng: np.random.Generator) -> None:
    a.begin("card_testing")
    card = a.pick(rng, 1, "card")[0]
    n = int(rng.integers(15, 41))
    online = np.flatnonzero(C.CAT_ONLINE[a.w.merchant_cat] >= 0.5)
    pool = online if online.shape[0] >= n else np.arange(a.w.n_merchants)
    merchants = rng.choice(pool, n, replace=False)
    a.drafts[-1].roles["merchants"] = (a.w.merchant_base + merchants).tolist()
    device = a.w.new_entity("device")
    if a.camouflaged:  # paced over hours, ordinary tickets of the merchants' categories
        t = a.when(rng, a.start, max(a.start + 1.0, a.end - 2 * DAY)) + np.cumsum(60.0 + rng.exponential(3600.0, n))
        cat = a.w.merchant_cat[merchants]
        amount = np.maximum(0.5, np.round(rng.lognormal(C.CAT_MU[cat], C.CAT_SIGMA[cat]), 2))
    else:
        t = a.when(rng, a.start, a.end - 3600.0) + np.cumsum(2.0 + rng.exponential(18.0, n))
        amount = np.where(rng.uniform(size=n) < 1 / 3, 1.0, np.round(rng.uniform(0.5, 3.0, n), 2))
    for i in range(n):
        m = int(merchants[i])
        a.add(t[i], card, a.w.merchant_base + m, C.KIND_PAYMENT, amount[i], C.CH_ONLINE,
              a.w.merchant_country[m], a.w.merchant_cat[m], device)
    a.finish()


def account_takeover(a: Attacks, rng: np.random.Generator) -> None:
    a.begin("account_takeover")
    victim = a.pick(rng, 1, "victim", min_events=2, max_rate=float(np.median(a.w.person_rate)))[0]
    device = a.fresh("device", "device")
    foreign = [c for c in range(len(C.COUNTRIES)) if c not in (a.home(victim), C.HOME_COUNTRY)]
    country = int(rng.choice(foreign))
    if a.camouflaged:  # through a proxy in the victim's own country
        country = a.home(victim)
    channel = C.CH_WEB if rng.uniform() < 0.5 else C.CH_APP
    t0 = a.when(rng, a.start + DAY, a.end - 4 * 3600.0)  # a day of history first
    a.add(t0, victim, device, C.KIND_LOGIN, np.nan, channel, country, device=device)
    n_tx = int(rng.integers(2, 6))
    receivers = [a.fresh("account", "receivers") for _ in range(int(rng.integers(1, min(3, n_tx) + 1)))]
    t = t0 + 120.0 + np.cumsum(60.0 + rng.exponential(600.0, n_tx))
    if a.camouflaged:  # amounts of an ordinary transfer, not a drain
        amount = np.maximum(20.0, np.round(rng.lognormal(np.log(150.0), 0.5, n_tx), -1))
    else:
        amount = np.maximum(500.0, np.round(rng.lognormal(np.log(2500.0), 0.5, n_tx), -1))
    for i in range(n_tx):
        a.add(t[i], victim, receivers[i % len(receivers)], C.KIND_TRANSFER, amount[i], channel,
              country, device=device)
    a.finish()


def mule_chain(a: Attacks, rng: np.random.Generator) -> None:
    a.begin("mule_chain")
    collector = a.pick(rng, 1, "collector")[0]
    victims = a.pick(rng, int(rng.integers(8, 17)), "victims", min_events=1)
    window = min(rng.uniform(1.0, 3.0), 0.3 * a.days) * DAY
    t_first = a.when(rng, a.start, a.end - window - DAY / 2)
    t_in = diurnal_times(rng, len(victims), t_first, t_first + window, a.start)
    amount = np.maximum(50.0, np.round(rng.lognormal(np.log(600.0), 0.6, len(victims)), -1))
    for v, t, x in zip(victims, t_in, amount):
        ch = C.CH_APP if rng.uniform() < 0.7 else C.CH_WEB
        a.add(t, v, collector, C.KIND_TRANSFER, x, ch, a.home(v), device=a.own_device(v))
    # fan-out: a tree of mules, each forwarding within minutes minus a commission
    frontier = [(collector, float(amount.sum()), float(t_in[-1]) + 600.0 + rng.exponential(5400.0))]
    hold = 6.0 if a.camouflaged else 1.0  # camouflaged mules hold the money for hours, not minutes
    for layer in range(int(rng.integers(2, 4))):
        nxt: list[tuple[int, float, float]] = []
        for m, balance, t in frontier:
            fan = 2 if layer == 0 else int(rng.integers(1, 3))
            mules = a.pick(rng, fan, "mules")
            send = balance * (1.0 - rng.uniform(0.02, 0.05))
            for mule, share in zip(mules, rng.dirichlet(np.full(fan, 4.0))):
                tt = t + 120.0 + rng.exponential(900.0 * hold)
                x = round(send * float(share), 2)
                a.add(tt, m, mule, C.KIND_TRANSFER, x, C.CH_APP, a.home(m), device=a.own_device(m))
                nxt.append((mule, x, tt))
        frontier = nxt
    for m, balance, t in frontier:
        co = a.fresh("account", "cashout")
        tt = t + 120.0 + rng.exponential(900.0 * hold)
        x = round(balance * (1.0 - rng.uniform(0.02, 0.05)), 2)
        a.add(tt, m, co, C.KIND_TRANSFER, x, C.CH_APP, a.home(m), device=a.own_device(m))
        atm = int(rng.integers(0, a.w.n_atms))
        left = np.floor(x / 20.0) * 20.0
        while left >= 20.0:
            cash = min(left, 1000.0)
            tt += 300.0 + rng.exponential(1200.0)
            a.add(tt, co, a.w.atm_base + atm, C.KIND_WITHDRAWAL, cash, C.CH_ATM, a.w.atm_country[atm])
            left -= cash
    a.finish()


def collusion_ring(a: Attacks, rng: np.random.Generator) -> None:
    a.begin("collusion_ring")
    k = int(rng.integers(4, 8))
    members = a.pick(rng, k, "members")
    rounds = int(rng.integers(4, 8))
    span = min(rng.uniform(4.0, 9.0), 0.7 * a.days) * DAY
    t_first = a.when(rng, a.start, a.end - span - DAY / 4)
    starts = diurnal_times(rng, rounds, t_first, t_first + span, a.start)
    base = max(500.0, round(rng.lognormal(np.log(3000.0), 0.4), -2))
    if a.camouflaged:  # the size of an ordinary transfer between friends
        base = max(10.0, round(base / 3000.0 * 80.0, 1))
    for r, t in enumerate(starts):
        amt = base * rng.uniform(0.97, 1.03)
        hops = t + np.cumsum(300.0 + rng.exponential(1500.0, k))
        for h in range(k):
            s, d = members[(r + h) % k], members[(r + h + 1) % k]
            a.add(hops[h], s, d, C.KIND_TRANSFER, round(amt * 0.99**h, 2), C.CH_APP, a.home(s),
                  device=a.own_device(s))
        if rng.uniform() < 0.6:  # a chord between non-adjacent members keeps the group dense
            i = int(rng.integers(0, k))
            j = (i + int(rng.integers(2, k))) % k
            a.add(rng.uniform(t, hops[-1]), members[i], members[j], C.KIND_TRANSFER,
                  round(amt * rng.uniform(0.2, 0.5), 2), C.CH_APP, a.home(members[i]),
                  device=a.own_device(members[i]))
    a.finish()


def low_and_slow(a: Attacks, rng: np.random.Generator) -> None:
    a.begin("low_and_slow")
    q25, q90 = np.quantile(a.w.person_rate, [0.25, 0.9])
    sender = a.pick(rng, 1, "sender", min_events=5, min_rate=float(q25), max_rate=float(q90))[0]
    n = int(rng.integers(15, 31))
    span = min(rng.uniform(5.0, 10.0), 0.85 * a.days) * DAY
    t0 = a.when(rng, a.start, a.end - span)
    t = diurnal_times(rng, n, t0, t0 + span, a.start)
    for i in range(1, n):  # never two within 30 minutes: nothing for a velocity rule to catch
        t[i] = max(t[i], t[i - 1] + 1800.0)
    raw = rng.lognormal(np.log(250.0), 0.3, n)
    amount = np.where(rng.uniform(size=n) < 0.6, np.round(raw, -1), np.round(raw, 2))
    for i in range(n):
        r = a.fresh("account", "receivers")
        a.add(t[i], sender, r, C.KIND_TRANSFER, amount[i], C.CH_APP, a.home(sender),
              device=a.own_device(sender))
    a.finish()


def bust_out(a: Attacks, rng: np.random.Generator) -> None:
    a.begin("bust_out")
    sender = a.pick(rng, 1, "sender", min_events=5, min_rate=float(np.median(a.w.person_rate)))[0]
    n = int(rng.integers(6, 15))
    span = rng.uniform(0.5, 1.5) * DAY
    lo = a.start + 0.7 * a.days * DAY
    t0 = a.when(rng, min(lo, a.end - span), a.end - span)
    t = diurnal_times(rng, n, t0, t0 + span, a.start)
    big = np.flatnonzero(np.isin(np.array([c.name for c in C.CATEGORIES]), ("electronics", "airlines", "lodging")))
    pool = np.flatnonzero(np.isin(a.w.merchant_cat, big))
    pool = pool if pool.shape[0] else np.arange(a.w.n_merchants)
    receivers = [a.fresh("account", "receivers") for _ in range(int(rng.integers(1, 4)))]
    merchants: list[int] = []
    for i in range(n):
        if rng.uniform() < 0.6:
            m = int(rng.choice(pool))
            merchants.append(a.w.merchant_base + m)
            amount = round(float(rng.lognormal(np.log(900.0), 0.5)), 2)
            a.add(t[i], sender, a.w.merchant_base + m, C.KIND_PAYMENT, amount, C.CH_ONLINE,
                  a.w.merchant_country[m], a.w.merchant_cat[m], a.own_device(sender))
        else:
            amount = float(np.round(rng.lognormal(np.log(1500.0), 0.5), -1))
            a.add(t[i], sender, receivers[i % len(receivers)], C.KIND_TRANSFER, amount, C.CH_APP, a.home(sender),
                  device=a.own_device(sender))
    a.drafts[-1].roles["merchants"] = sorted(set(merchants))
    a.finish()


INJECTORS = {
    "card_testing": card_testing,
    "account_takeover": account_takeover,
    "mule_chain": mule_chain,
    "collusion_ring": collusion_ring,
    "low_and_slow": low_and_slow,
    "bust_out": bust_out,
}
