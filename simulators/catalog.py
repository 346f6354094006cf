"""Fixed vocabularies and shapes of the simulated world.

Codes are small integers in the generator's numpy columns; these tables turn
them into the strings that appear in events. The numbers are plausible rather
than calibrated: what matters is that they differ by merchant category and by
hour, so that detectors see realistic heterogeneity.

>>> KINDS[KIND_PAYMENT], CHANNELS[CH_ATM]
('payment', 'atm')
>>> round(float(HOURLY.sum()), 6), bool(HOURLY[3] < HOURLY[18] / 10)
(1.0, True)
>>> CATEGORIES[0].mcc, COUNTRIES[HOME_COUNTRY]
('5411', 'GB')
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

KINDS: tuple[str, ...] = ("payment", "transfer", "withdrawal", "login")
KIND_PAYMENT, KIND_TRANSFER, KIND_WITHDRAWAL, KIND_LOGIN = range(4)

CHANNELS: tuple[str, ...] = ("pos", "online", "app", "web", "atm")
CH_POS, CH_ONLINE, CH_APP, CH_WEB, CH_ATM = range(5)

#: Country codes; index HOME_COUNTRY is where the simulated bank operates.
COUNTRIES: tuple[str, ...] = (
    "GB", "IE", "FR", "DE", "ES", "NL", "IT", "PT", "PL", "RO", "US", "IN", "BR", "NG", "CN",
)
HOME_COUNTRY = 0
#: Share of customers and merchants based in the home country.
HOME_SHARE_PERSONS = 0.93
HOME_SHARE_MERCHANTS = 0.85
HOME_SHARE_ATMS = 0.97
#: Probability that a person's transfer or login happens while travelling abroad.
TRAVEL_PROB = 0.015


class Category(NamedTuple):
    """A merchant category: MCC, lognormal amount parameters, online share, merchant share."""

    name: str
    mcc: str
    median: float  # median ticket, currency units
    sigma: float  # lognormal shape of the ticket size
    online: float  # probability a payment at such a merchant is card-not-present
    share: float  # fraction of merchants in this category


CATEGORIES: tuple[Category, ...] = (
    Category("grocery", "5411", 35.0, 0.70, 0.10, 0.22),
    Category("restaurants", "5812", 25.0, 0.60, 0.15, 0.14),
    Category("fast_food", "5814", 9.0, 0.50, 0.10, 0.10),
    Category("fuel", "5541", 45.0, 0.40, 0.00, 0.07),
    Category("pharmacy", "5912", 15.0, 0.70, 0.10, 0.05),
    Category("clothing", "5651", 55.0, 0.80, 0.50, 0.07),
    Category("electronics", "5732", 120.0, 1.00, 0.60, 0.04),
    Category("general_online", "5399", 30.0, 1.00, 0.90, 0.09),
    Category("digital_goods", "5815", 6.0, 0.80, 1.00, 0.07),
    Category("airlines", "4511", 250.0, 0.80, 0.80, 0.02),
    Category("lodging", "7011", 180.0, 0.60, 0.70, 0.03),
    Category("utilities", "4900", 70.0, 0.50, 0.90, 0.04),
    Category("taxi", "4121", 18.0, 0.50, 0.70, 0.05),
)
CAT_MU = np.log(np.array([c.median for c in CATEGORIES]))
CAT_SIGMA = np.array([c.sigma for c in CATEGORIES])
CAT_ONLINE = np.array([c.online for c in CATEGORIES])
CAT_SHARE = np.array([c.share for c in CATEGORIES]) / sum(c.share for c in CATEGORIES)
MCCS: tuple[str, ...] = tuple(c.mcc for c in CATEGORIES)

#: Relative activity per hour of day (event time taken as local time from start_ts).
_HOURLY_RAW = np.array([
    0.60, 0.35, 0.25, 0.20, 0.25, 0.45, 1.00, 2.00, 3.20, 4.00, 4.50, 5.00,
    5.60, 5.40, 5.00, 5.00, 5.30, 5.90, 6.20, 5.80, 4.90, 3.80, 2.60, 1.40,
])
HOURLY: np.ndarray = _HOURLY_RAW / _HOURLY_RAW.sum()
#: Relative activity per weekday, Monday first.
WEEKDAY: np.ndarray = np.array([1.0, 1.0, 1.0, 1.02, 1.08, 1.12, 0.85])

#: ATM cash amounts and how often people pick them.
CASH_AMOUNTS = np.array([20.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0, 200.0, 300.0, 500.0])
CASH_PROBS = np.array([0.14, 0.12, 0.14, 0.10, 0.08, 0.18, 0.06, 0.10, 0.05, 0.03])
