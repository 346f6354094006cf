"""The simulated population and its normal (background) traffic, vectorised with numpy.

All entities share one integer index space while generating: persons first,
then merchants, ATMs, two device slots per person, and finally the entities
that attacks create (fresh accounts and devices, appended in creation order).
Names are given only at the end (:meth:`World.names`): person and device
numbers are drawn at random, so an id says nothing about the entity's role.

Background traffic, per person ``i`` with activity rate ``r_i`` (events/day,
lognormal: a few very busy accounts, many quiet ones):

* ``Poisson(r_i * days)`` events at times drawn from the hour-of-day and
  weekday profiles in :mod:`simulators.catalog` (few events at night);
* a per-person kind mix: payments to merchants (mostly the person's six
  favourite merchants), transfers to persons (mostly four regular contacts),
  cash withdrawals at the person's two usual ATMs, and logins from one of the
  person's one or two devices;
* amounts lognormal per merchant category, round-ish transfers, fixed ATM notes.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> w = World.build(rng, n_persons=50, n_merchants=20, n_atms=5, mean_daily_events=2.0)
>>> cols = background(w, rng, start_ts=0.0, days=3)
>>> bool(np.all((cols.ts >= 0) & (cols.ts < 3 * 86400))), len(cols) > 100
(True, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from riskgraph.simulators import catalog as C

N_FAVOURITES = 6
FAVOURITE_WEIGHTS = 0.55 ** np.arange(N_FAVOURITES) / (0.55 ** np.arange(N_FAVOURITES)).sum()
P_FAVOURITE = 0.8
N_CONTACTS = 4
CONTACT_WEIGHTS = np.array([0.45, 0.25, 0.18, 0.12])
P_CONTACT = 0.88
P_HOME_ATM = 0.85
P_LOGIN = 0.06
#: Person and device numbers are drawn from these spaces (ids "p-%07d", "d-%08d").
ACCOUNT_SPACE = 10**7
DEVICE_SPACE = 10**8


@dataclass
class EventColumns:
    """Events as parallel numpy columns (codes index the tables in :mod:`simulators.catalog`).

    ``amount`` is NaN for events without an amount; ``mcc``, ``device``,
    ``typology`` and ``incident`` are -1 where they do not apply.
    """

    ts: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    kind: np.ndarray
    amount: np.ndarray
    channel: np.ndarray
    country: np.ndarray
    mcc: np.ndarray
    device: np.ndarray
    typology: np.ndarray
    incident: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def concat(cls, parts: list[EventColumns]) -> EventColumns:
        """All rows of ``parts``, in order."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in dataclasses.fields(cls)})

    def take(self, order: np.ndarray) -> EventColumns:
        """The rows at positions ``order``."""
        return EventColumns(**{f.name: getattr(self, f.name)[order] for f in dataclasses.fields(self)})


def diurnal_times(rng: np.random.Generator, n: int, lo: float, hi: float, start_ts: float) -> np.ndarray:
    """``n`` sorted times in ``[lo, hi)`` following the hour-of-day and weekday profiles.

    Rejection sampling against the profile's peak: exact for any window, and
    vectorised (about two candidates per accepted time).

    >>> t = diurnal_times(np.random.default_rng(1), 1000, 0.0, 86400.0, 0.0)
    >>> int(np.sum(t < 5 * 3600)) < int(np.sum((t >= 12 * 3600) & (t < 17 * 3600)))
    True
    """
    if hi <= lo:
        raise ValueError(f"empty time window [{lo}, {hi})")
    dow0 = datetime.fromtimestamp(start_ts, tz=timezone.utc).weekday()
    peak = float(C.HOURLY.max() * C.WEEKDAY.max())
    out: list[np.ndarray] = []
    got = 0
    while got < n:
        m = 2 * (n - got) + 16
        t = rng.uniform(lo, hi, m)
        rel = t - start_ts
        hour = (np.floor(rel / 3600.0) % 24).astype(np.int64)
        dow = (np.floor(rel / 86400.0).astype(np.int64) + dow0) % 7
        keep = rng.uniform(0.0, peak, m) < C.HOURLY[hour] * C.WEEKDAY[dow]
        out.append(t[keep])
        got += int(keep.sum())
    return np.sort(np.concatenate(out)[:n])


@dataclass
class World:
    """The static population: persons, merchants, ATMs, devices and their habits."""

    n_persons: int
    n_merchants: int
    n_atms: int
    person_rate: np.ndarray  # mean events per day
    person_country: np.ndarray
    person_ndev: np.ndarray  # 1 or 2 devices
    p_transfer: np.ndarray
    p_withdrawal: np.ndarray
    favourites: np.ndarray  # (P, N_FAVOURITES) merchant numbers
    contacts: np.ndarray  # (P, N_CONTACTS) person numbers
    home_atms: np.ndarray  # (P, 2) ATM numbers
    merchant_cat: np.ndarray
    merchant_country: np.ndarray
    merchant_pop: np.ndarray  # probabilities
    atm_country: np.ndarray
    extra: list[str] = field(default_factory=list)  # "account" / "device" per created entity

    @classmethod
    def build(cls, rng: np.random.Generator, *, n_persons: int, n_merchants: int, n_atms: int,
              mean_daily_events: float = 1.0, activity_sigma: float = 1.0) -> World:
        """Draw a population (habits only; no events)."""
        P, M = n_persons, n_merchants
        # lognormal rates with mean exactly mean_daily_events: heavy right tail
        rate = mean_daily_events * rng.lognormal(-activity_sigma**2 / 2, activity_sigma, P)
        pc = _countries(rng, P, C.HOME_SHARE_PERSONS)
        ndev = 1 + (rng.uniform(size=P) < 0.35)
        cat = rng.choice(len(C.CATEGORIES), M, p=C.CAT_SHARE)
        pop = rng.pareto(1.2, M) + 0.05
        pop /= pop.sum()
        fav = rng.choice(M, (P, N_FAVOURITES), p=pop)
        # contacts: any other person (shift by 1..P-1 avoids paying oneself)
        contacts = (np.arange(P)[:, None] + rng.integers(1, P, (P, N_CONTACTS))) % P
        return cls(
            n_persons=P, n_merchants=M, n_atms=n_atms, person_rate=rate, person_country=pc,
            person_ndev=ndev.astype(np.int64), p_transfer=rng.beta(2.0, 12.0, P),
            p_withdrawal=rng.beta(1.2, 18.0, P), favourites=fav, contacts=contacts,
            home_atms=rng.integers(0, n_atms, (P, 2)), merchant_cat=cat,
            merchant_country=_countries(rng, M, C.HOME_SHARE_MERCHANTS), merchant_pop=pop,
            atm_country=_countries(rng, n_atms, C.HOME_SHARE_ATMS),
        )

    # -- the shared index space -------------------------------------------
    @property
    def merchant_base(self) -> int:
        return self.n_persons

    @property
    def atm_base(self) -> int:
        return self.n_persons + self.n_merchants

    @property
    def device_base(self) -> int:
        return self.atm_base + self.n_atms

    @property
    def n_static(self) -> int:
        return self.device_base + 2 * self.n_persons

    def device_of(self, person: np.ndarray | int, slot: np.ndarray | int) -> np.ndarray | int:
        """Entity index of a person's device in ``slot`` (0 or 1)."""
        return self.device_base + 2 * person + slot

    def new_entity(self, kind: str) -> int:
        """Create an account or device used only by an attack; return its entity index."""
        if kind not in ("account", "device"):
            raise ValueError(f"unknown entity kind {kind!r}")
        self.extra.append(kind)
        return self.n_static + len(self.extra) - 1

    def names(self, rng: np.random.Generator) -> list[str]:
        """Names of all entities by index; accounts ``p-``, merchants ``m-``, ATMs ``atm-``, devices ``d-``."""
        extra = np.array(self.extra, dtype=object)
        # the population's numbers first, then the attack entities' from the same
        # space: a number does not reveal that an attack made the entity, and
        # changing the attacks does not rename the population
        acc = rng.choice(ACCOUNT_SPACE, self.n_persons, replace=False)
        dev = rng.choice(DEVICE_SPACE, 2 * self.n_persons, replace=False)
        acc = np.concatenate([acc, _fresh_codes(rng, int(np.sum(extra == "account")), ACCOUNT_SPACE, acc)])
        dev = np.concatenate([dev, _fresh_codes(rng, int(np.sum(extra == "device")), DEVICE_SPACE, dev)])
        names = [f"p-{a:07d}" for a in acc[: self.n_persons].tolist()]
        names += [f"m-{i:05d}" for i in range(self.n_merchants)]
        names += [f"atm-{i:04d}" for i in range(self.n_atms)]
        names += [f"d-{d:08d}" for d in dev[: 2 * self.n_persons].tolist()]
        ia, idv = self.n_persons, 2 * self.n_persons
        for kind in self.extra:
            if kind == "account":
                names.append(f"p-{acc[ia]:07d}")
                ia += 1
            else:
                names.append(f"d-{dev[idv]:08d}")
                idv += 1
        return names


def _fresh_codes(rng: np.random.Generator, n: int, space: int, taken: np.ndarray) -> np.ndarray:
    """``n`` distinct numbers in ``[0, space)`` not in ``taken``, in draw order."""
    out = np.empty(0, dtype=np.int64)
    while out.shape[0] < n:
        cand = np.concatenate([out, rng.integers(0, space, 2 * n + 8)])
        cand = cand[~np.isin(cand, taken)]
        _, first = np.unique(cand, return_index=True)
        out = cand[np.sort(first)][:n]
    return out


def _countries(rng: np.random.Generator, n: int, home_share: float) -> np.ndarray:
    foreign = rng.integers(1, len(C.COUNTRIES), n)
    return np.where(rng.uniform(size=n) < home_share, C.HOME_COUNTRY, foreign).astype(np.int16)


def background(w: World, rng: np.random.Generator, *, start_ts: float, days: float) -> EventColumns:
    """Normal traffic of the whole population over ``days`` days (unsorted)."""
    P = w.n_persons
    counts = rng.poisson(w.person_rate * days)
    src = np.repeat(np.arange(P), counts)
    n = src.shape[0]
    ts = diurnal_times(rng, n, start_ts, start_ts + days * 86400.0, start_ts)
    rng.shuffle(ts)  # times independent of who acts

    u = rng.uniform(size=n)
    pt, pw = w.p_transfer[src], w.p_withdrawal[src]
    kind = np.full(n, C.KIND_PAYMENT, dtype=np.int8)
    kind[u < pt + pw + P_LOGIN] = C.KIND_LOGIN
    kind[u < pt + pw] = C.KIND_WITHDRAWAL
    kind[u < pt] = C.KIND_TRANSFER

    dst = np.empty(n, dtype=np.int64)
    amount = np.full(n, np.nan)
    channel = np.empty(n, dtype=np.int8)
    country = w.person_country[src].copy()
    travel = rng.uniform(size=n) < C.TRAVEL_PROB
    country[travel] = rng.integers(1, len(C.COUNTRIES), int(travel.sum()))
    mcc = np.full(n, -1, dtype=np.int16)
    dev_slot = rng.integers(0, 2, n) % w.person_ndev[src]
    device = np.asarray(w.device_of(src, dev_slot), dtype=np.int64)

    # payments: favourite merchants mostly, otherwise any merchant by popularity
    m = kind == C.KIND_PAYMENT
    k = int(m.sum())
    fav = w.favourites[src[m], rng.choice(N_FAVOURITES, k, p=FAVOURITE_WEIGHTS)]
    merchant = np.where(rng.uniform(size=k) < P_FAVOURITE, fav, rng.choice(w.n_merchants, k, p=w.merchant_pop))
    cat = w.merchant_cat[merchant]
    dst[m] = w.merchant_base + merchant
    amount[m] = np.maximum(0.01, np.round(rng.lognormal(C.CAT_MU[cat], C.CAT_SIGMA[cat]), 2))
    online = rng.uniform(size=k) < C.CAT_ONLINE[cat]
    channel[m] = np.where(online, C.CH_ONLINE, C.CH_POS)
    country[m] = w.merchant_country[merchant]
    mcc[m] = cat
    dm = device[m]
    dm[~online] = -1  # card-present payments carry no device
    device[m] = dm

    # transfers: regular contacts mostly; round amounts half of the time
    t = kind == C.KIND_TRANSFER
    k = int(t.sum())
    contact = w.contacts[src[t], rng.choice(N_CONTACTS, k, p=CONTACT_WEIGHTS)]
    anyone = (src[t] + rng.integers(1, P, k)) % P
    dst[t] = np.where(rng.uniform(size=k) < P_CONTACT, contact, anyone)
    raw = rng.lognormal(np.log(60.0), 1.0, k)
    amount[t] = np.where(rng.uniform(size=k) < 0.5, np.maximum(5.0, np.round(raw / 10.0) * 10.0),
                         np.round(raw, 2))
    channel[t] = np.where(rng.uniform(size=k) < 0.7, C.CH_APP, C.CH_WEB)

    # withdrawals: usual ATMs, banknote amounts
    a = kind == C.KIND_WITHDRAWAL
    k = int(a.sum())
    atm = np.where(rng.uniform(size=k) < P_HOME_ATM, w.home_atms[src[a], rng.integers(0, 2, k)],
                   rng.integers(0, w.n_atms, k))
    dst[a] = w.atm_base + atm
    amount[a] = rng.choice(C.CASH_AMOUNTS, k, p=C.CASH_PROBS)
    channel[a] = C.CH_ATM
    country[a] = w.atm_country[atm]
    device[a] = -1

    # logins: the session's device is the destination entity
    g = kind == C.KIND_LOGIN
    dst[g] = device[g]
    channel[g] = np.where(rng.uniform(size=int(g.sum())) < 0.7, C.CH_APP, C.CH_WEB)

    neg = np.full(n, -1)
    return EventColumns(ts=ts, src=src.astype(np.int64), dst=dst, kind=kind, amount=amount,
                        channel=channel, country=country, mcc=mcc, device=device,
                        typology=neg.astype(np.int8), incident=neg.astype(np.int32))
