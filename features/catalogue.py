"""The feature catalogue: names, units, meaning and the squash into [0, 1] of every feature.

``features.kernels.compute_features`` writes one row of ``N_FEATURES`` raw values per
event, in the order of :data:`FEATURES`. Every feature describes the event with the
state of its two ends *before* the event (the event itself then updates that state),
decayed to the event time. "src" is the sender, "dst" the receiver.

Raw values are in the unit named here. ``features.unit.to_unit`` maps them into
[0, 1] for the detectors with a fixed monotone squash, chosen per feature by
``squash`` and ``scale`` (see :data:`SQUASHES`).

>>> N_FEATURES == len(FEATURE_NAMES) == len(FEATURES)
True
>>> FEATURE_NAMES[0], FEATURES[0].unit
('src_out_cnt_1m', 'count')
>>> FEATURE_INDEX["new_counterparty"] == FEATURE_NAMES.index("new_counterparty")
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from riskgraph.features.layout import HALF_LIVES, RING

#: Value of the "log seconds since last active" features when the node never was:
#: log1p of ~300 years, above log1p of any span of valid event times (0 .. 2100-01-01).
NEVER_LOG_S: float = 23.0
#: Window of the fan-out / fan-in features, in seconds.
FAN_WINDOW_S: float = 3600.0
#: Amounts the sender must have sent before its amount z-score is computed (else 0).
Z_MIN_HISTORY: int = 3
#: Floor of the sender's standard deviation of log amounts in the z-score: a sender that
#: always sends the same amount has std 0, and any change would be an infinite z.
Z_STD_FLOOR: float = 0.1
#: Amounts are normalised to ``clip(amount / GOODNESS_SCALE, -1, 1)`` for the REV2-style
#: fairness/goodness state (``features.layout.Acc.GOOD_SUM``): ratings on -10..10 map onto
#: [-1, 1]; on payment-like data (all amounts positive and large) every amount saturates at
#: +1, and goodness then measures how much of a node's history is fairness-weighted.
GOODNESS_SCALE: float = 10.0
#: Largest accepted |amount|. Keeps the float32 ring amounts and the decayed sums finite.
AMOUNT_MAX: float = 1e15

#: Squash kinds, each monotone non-decreasing in x with values in [0, 1], built only from
#: +, -, *, / and sqrt so that monotonicity holds exactly in floating point too:
#:
#: * ``ratio``: ``1 - s / (max(x, 0) + s)`` for non-negative features (x = s gives 0.5);
#: * ``linear``: ``clip(x / s, 0, 1)`` for bounded features (s is the bound);
#: * ``signed``: ``1 - 0.5 s / (x + s)`` for x >= 0, ``0.5 s / (s - x)`` below (x = 0 gives 0.5);
#: * ``signed_sqrt``: as ``signed`` on u = sqrt(|x| / s) with scale 1, for heavy-tailed
#:   signed sums (amounts can be negative: refunds, sensor readings);
#: * ``flag``: ``clip(x, 0, 1)``.
SQUASHES: tuple[str, ...] = ("ratio", "linear", "signed", "signed_sqrt", "flag")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its name, unit, meaning, and how ``to_unit`` squashes it into [0, 1]."""

    name: str
    unit: str
    description: str
    squash: str = "ratio"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.squash not in SQUASHES:
            raise ValueError(f"{self.name}: squash must be one of {SQUASHES}, got {self.squash!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"{self.name}: scale must be finite and > 0, got {self.scale}")


def _hl(i: int) -> str:
    return f"half-life {HALF_LIVES[i]:g} s"


_TAGS = ("1m", "1h", "1d")
# Scales put the squash midpoint at a plausible "busy" level for each half-life: a decayed
# count with half-life h of a steady rate r is r * h / ln 2.
_CNT_SCALES = (1.0, 4.0, 16.0)
_AMT_SCALES = (100.0, 1000.0, 10000.0)

FEATURES: tuple[FeatureSpec, ...] = (
    *(
        FeatureSpec(f"src_out_cnt_{_TAGS[i]}", "count", f"decayed count of events the sender sent, {_hl(i)}",
                    "ratio", _CNT_SCALES[i])
        for i in range(3)
    ),
    *(
        FeatureSpec(f"dst_in_cnt_{_TAGS[i]}", "count", f"decayed count of events the receiver received, {_hl(i)}",
                    "ratio", _CNT_SCALES[i])
        for i in range(3)
    ),
    *(
        FeatureSpec(f"src_out_amt_{_TAGS[i]}", "currency", f"decayed sum of amounts the sender sent, {_hl(i)}",
                    "signed_sqrt", _AMT_SCALES[i])
        for i in range(3)
    ),
    *(
        FeatureSpec(f"dst_in_amt_{_TAGS[i]}", "currency", f"decayed sum of amounts the receiver received, {_hl(i)}",
                    "signed_sqrt", _AMT_SCALES[i])
        for i in range(3)
    ),
    FeatureSpec("src_log_since_out", "log-seconds",
                f"log1p(seconds since the sender last sent); {NEVER_LOG_S:g} when it never did",
                "linear", NEVER_LOG_S),
    FeatureSpec("dst_log_since_in", "log-seconds",
                f"log1p(seconds since the receiver last received); {NEVER_LOG_S:g} when it never did",
                "linear", NEVER_LOG_S),
    FeatureSpec("src_amt_z", "z-score",
                "z-score of slog(amount) against the sender's running mean/std of slog(amounts sent); "
                f"std floored at {Z_STD_FLOOR:g}; 0 with fewer than {Z_MIN_HISTORY} amounts or no amount",
                "signed", 2.0),
    FeatureSpec("log_amount", "log-currency",
                "slog(amount) = sign(a) * log1p(|a|); 0 when the event has no amount", "signed", 5.0),
    FeatureSpec("has_amount", "flag", "1 when the event has an amount, else 0", "flag", 1.0),
    FeatureSpec("new_counterparty", "flag",
                f"1 when the receiver is not among the {RING} most recent counterparties of the sender "
                "(either direction)", "flag", 1.0),
    FeatureSpec("src_fan_out_1h", "count",
                f"distinct receivers among the sender's {RING} most recent interactions that it sent "
                f"within the last {FAN_WINDOW_S:g} s", "linear", float(RING)),
    FeatureSpec("dst_fan_in_1h", "count",
                f"distinct senders among the receiver's {RING} most recent interactions that it received "
                f"within the last {FAN_WINDOW_S:g} s", "linear", float(RING)),
    FeatureSpec("src_distinct_cp", "count",
                f"distinct counterparties among the sender's {RING} most recent interactions (both directions)",
                "linear", float(RING)),
    FeatureSpec("src_burst", "ratio",
                "sender's 1-min decayed count over its 1-day decayed count scaled to a minute, "
                "c_1m / (1 + c_1d * 60 / 86400): about 1 or less at a steady rate, k for k sends "
                "within a minute by a quiet sender", "ratio", 2.0),
    FeatureSpec("src_log_age", "log-seconds", "log1p(seconds since the sender was first seen); 0 when new",
                "linear", NEVER_LOG_S),
    FeatureSpec("dst_log_age", "log-seconds", "log1p(seconds since the receiver was first seen); 0 when new",
                "linear", NEVER_LOG_S),
)

N_FEATURES: int = len(FEATURES)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
#: Column of each feature by name.
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}

if len(FEATURE_INDEX) != N_FEATURES:  # pragma: no cover - guards edits of the tuple above
    raise RuntimeError("duplicate feature names in FEATURES")


@dataclass(frozen=True)
class EntityFeatureSpec:
    """One entity feature (``features.entity``): its name, unit and meaning."""

    name: str
    unit: str
    description: str


#: The entity features: one row per entity, read from its node record at a time ``now``
#: (``features.entity.entity_features``). Totals are since the entity was first seen.
ENTITY_FEATURES: tuple[EntityFeatureSpec, ...] = (
    EntityFeatureSpec("log_age", "log-seconds", "log1p(seconds from first seen to now)"),
    EntityFeatureSpec("log_since_last", "log-seconds", "log1p(seconds from the last event, either direction, to now)"),
    EntityFeatureSpec("log_n_out", "log-count", "log1p(events sent)"),
    EntityFeatureSpec("log_n_in", "log-count", "log1p(events received)"),
    EntityFeatureSpec("out_share", "ratio", "events sent / all events of the entity"),
    EntityFeatureSpec("distinct_cp", "count", f"distinct counterparties among its {RING} most recent interactions"),
    EntityFeatureSpec("in_amt_mean", "currency", "mean amount received (0 when none)"),
    EntityFeatureSpec("out_amt_mean", "currency", "mean amount sent (0 when none)"),
    EntityFeatureSpec("in_neg_share", "ratio", "share of the amounts received that are negative"),
    EntityFeatureSpec("out_neg_share", "ratio", "share of the amounts sent that are negative"),
    EntityFeatureSpec("in_neg_slog", "log-currency", "slog(sum of negative amounts received), <= 0"),
    EntityFeatureSpec("out_neg_slog", "log-currency", "slog(sum of negative amounts sent), <= 0"),
    EntityFeatureSpec("recip_out", "ratio", "share of sends to a counterparty that had sent to the entity "
                      f"(found among its {RING} most recent interactions)"),
    EntityFeatureSpec("recip_in", "ratio", "share of receipts from a counterparty the entity had sent to"),
    EntityFeatureSpec("gap_mean", "log-seconds", "mean log1p(seconds between consecutive events of the entity)"),
    EntityFeatureSpec("gap_std", "log-seconds", "standard deviation of those log gaps (0 with fewer than 2)"),
    EntityFeatureSpec("goodness", "score", "REV2-style goodness in [-1, 1]: fairness-weighted mean of the "
                      f"normalised amounts received (clip(amount / {GOODNESS_SCALE:g}, -1, 1)), one unit of "
                      "prior weight at 0"),
    EntityFeatureSpec("fairness", "score", "REV2-style fairness in [0, 1]: 1 - mean |normalised amount sent - "
                      "receiver's goodness| / 2, one prior amount of error 0"),
    EntityFeatureSpec("nbr_good", "score", "mean goodness of its recent counterparties (moving average over "
                      f"about {RING} interactions)"),
    EntityFeatureSpec("nbr_log_deg", "log-count", "mean log1p(events so far) of its recent counterparties at the "
                      "time of each interaction (same average)"),
    EntityFeatureSpec("event_risk", "score", "decayed maximum of the scores of the events it took part in "
                      "(features.risk, one-day half-life)"),
)
ENTITY_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in ENTITY_FEATURES)
