"""All settings in one typed, frozen place, with their environment variable names.

Every field can be set from the environment as ``RISKGRAPH_<FIELD>`` (upper case);
command-line flags override the environment. Nothing here is a module-level global
built from arguments: the CLI builds one ``Settings`` and passes it down.

>>> s = Settings.from_env({"RISKGRAPH_BATCH_SIZE": "500", "RISKGRAPH_EVENTS_TOPIC": "tx"})
>>> s.batch_size, s.events_topic, s.alerts_topic
(500, 'tx', 'alerts')
>>> Settings.from_env({"RISKGRAPH_BATCH_SIZE": "many"})
Traceback (most recent call last):
...
ValueError: RISKGRAPH_BATCH_SIZE: expected int, got 'many'
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

from riskgraph.state.options import COMPACTIONS, COMPRESSIONS, DIRECT_IO_MODES, StoreOptions

ENV_PREFIX = "RISKGRAPH_"


@dataclass(frozen=True)
class Settings:
    """Runtime settings for the engine, the worker and the tools."""

    # -- Kafka ---------------------------------------------------------------
    broker: str = "kafka://127.0.0.1:9092"  # Faust-style URL; several: "kafka://h1:9092;h2:9092"
    events_topic: str = "events"
    alerts_topic: str = "alerts"
    dlq_topic: str = "events.dlq"
    feedback_topic: str = "feedback"
    partitions: int = 1  # partitions of the topics the worker creates
    replication: int = 1
    app_id: str = "riskgraph"  # Faust app id, also the consumer group
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    session_timeout_s: float = 10.0  # the broker declares a silent worker dead after this (Faust's default: 60)
    group_instance_id: str = "auto"  # static group membership: "auto" (from app id, host and state dir), a name, or "off"
    # -- micro-batching -------------------------------------------------------
    batch_size: int = 1000  # events per micro-batch (Faust take(N, within=T))
    batch_window_s: float = 0.01  # the T of take(N, within=T): latency bound of a partial batch
    event_loop: str = "uvloop"  # "uvloop" (faster asyncio, Linux/macOS) or "asyncio"
    fetch_max_wait_ms: int = 20  # longest the broker holds a fetch (Faust hard-codes 1500: stalls, see streams/batching.py)
    fetch_max_bytes: int = 256 * 1024  # per-partition fetch size; larger fetches were slower (benchmarks/README.md, bench_kafka)
    consume: str = "batch"  # "batch" (bulk drain of Faust's channel queue) or "stream" (a Faust agent, take_events)
    # -- engine ---------------------------------------------------------------
    state_dir: str = "./state-data"  # RocksDB store (one per worker)
    model_dir: str = ""  # model artifact directory; empty: the built-in unsupervised detector
    cache_capacity: int = 1_000_000  # node rows kept hot in memory (1,184 bytes each with the default TGN)
    store_compression: str = "none"  # RocksDB block compression: "none" (faster random reads) or "lz4" (~27 % less disk)
    mem_cache_capacity: int = 1_000_000  # TGN memories of nodes outside the row cache, for neighbour reads (256 bytes each with a 64-float memory; filled on demand)
    store_compaction: str = "universal"  # RocksDB compaction style: "universal" (rewrites records fewer times) or "level" (less free disk needed)
    store_direct_io: str = "off"  # RocksDB flushes and compactions bypass the page cache: "off", "auto" (where the file system allows), "on"
    pin_scoring_cpu: int = -1  # >= 0: scoring thread on this CPU, RocksDB's background threads on the others (Linux; one CPU per worker)
    commit_every: int = 10  # micro-batches per RocksDB commit; a crash replays at most this many
    max_event_bytes: int = 16 * 1024
    dlq_raw_max_bytes: int = 4096  # raw bytes a dead letter keeps; a longer record keeps its head, size and SHA-256
    dedupe_window: int = 100_000  # recent event ids remembered; a repeat within them is a dead letter (0: off)
    # -- feedback -------------------------------------------------------------
    feedback_secret: str = ""  # shared HMAC key: feedback must carry a valid signature (empty: unsigned accepted)
    feedback_max_bytes: int = 4096  # a larger feedback record is a dead letter
    feedback_note_max_bytes: int = 1024  # a longer note (UTF-8 bytes) is a dead letter
    feedback_window: int = 100_000  # alert ids whose feedback was decided on, remembered: a later label is not applied
    feedback_max_steps_per_minute: int = 10  # threshold steps by feedback per minute of wall time (0: no limit)
    feedback_max_steps_per_1k_events: int = 10  # threshold steps by feedback per 1,000 scored events (0: no limit)
    learn: bool = True  # detectors keep learning from the stream
    seed: int = 0
    # -- metrics --------------------------------------------------------------
    metrics_port: int = 9108  # 0 disables the /metrics endpoint
    metrics_host: str = "127.0.0.1"  # address /metrics binds to; "0.0.0.0" for a scraper on another host (the container sets it)

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then ``RISKGRAPH_*`` variables, then explicit (non-None) overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = _parse(key, env[key], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def scoring_cpu(self) -> int | None:
        """``pin_scoring_cpu`` as ``StoreOptions.pin_scoring_cpu`` takes it: None when off (< 0)."""
        return self.pin_scoring_cpu if self.pin_scoring_cpu >= 0 else None

    def store_options(self, *, mem_dim: int = 0, mem_cache_width: int | None = None) -> StoreOptions:
        """The graph store's options from these settings; the one place a store is configured from them.

        ``mem_dim`` and ``mem_cache_width`` are the model's (``ScoringModel.mem_dim``,
        ``.mem_cache_width``), not settings.

        >>> o = Settings(cache_capacity=500, store_compression="lz4").store_options(mem_dim=8)
        >>> o.mem_dim, o.cache_capacity, o.compression, o.pin_scoring_cpu
        (8, 500, 'lz4', None)
        """
        return StoreOptions(mem_dim=mem_dim, cache_capacity=self.cache_capacity,
                            mem_cache_capacity=self.mem_cache_capacity, compression=self.store_compression,
                            mem_cache_width=mem_cache_width, pin_scoring_cpu=self.scoring_cpu,
                            direct_io=self.store_direct_io, compaction=self.store_compaction)

    def engine_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The ``streams.engine.Engine`` keywords these settings decide, with ``overrides`` on top.

        A dict of the Engine's own keywords rather than an options object: the Engine
        checks them itself, and every other caller (tests, benchmarks) keeps passing them
        by name. A new Engine keyword with a setting is added here, and only here
        (``tests/cli/test_settings_wiring.py`` fails until it is).

        >>> Settings(commit_every=5, learn=False).engine_kwargs(commit_every=1)["commit_every"]
        1
        """
        kwargs: dict[str, Any] = {"learn": self.learn, "max_event_bytes": self.max_event_bytes,
                                  "commit_every": self.commit_every, "dedupe_window": self.dedupe_window,
                                  "dlq_raw_max_bytes": self.dlq_raw_max_bytes}
        unknown = sorted(set(overrides) - set(kwargs))
        if unknown:  # a typo would otherwise be a TypeError deep in Engine, or silently a new keyword
            raise TypeError(f"engine_kwargs: {', '.join(unknown)} is not an engine setting")
        kwargs.update(overrides)
        return kwargs

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` list for kafka-python, from the Faust-style URL."""
        url = self.broker.split("://", 1)[-1]
        return [h.strip() for h in url.replace(",", ";").split(";") if h.strip()]


def _parse(key: str, raw: str, typ: Any) -> Any:
    name = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if name == "int":
            return int(raw)
        if name == "float":
            return float(raw)
        if name == "bool":
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return raw
    except ValueError:
        raise ValueError(f"{key}: expected {name}, got {raw!r}") from None


#: (low, high, what the user should know) of the numeric settings, inclusive; None: unbounded.
_RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "partitions": (1, None, "partitions of the topics the worker creates"),
    "replication": (1, None, "replicas of the topics the worker creates"),
    # the broker's group.min.session.timeout.ms / group.max.session.timeout.ms defaults
    "session_timeout_s": (6, 300, "seconds; the broker accepts 6 to 300 by default"),
    "batch_size": (1, None, "events per micro-batch"),
    "batch_window_s": (0, 3600, "seconds a partial batch waits"),
    "fetch_max_wait_ms": (0, 60_000, "milliseconds"),
    "fetch_max_bytes": (1, None, "bytes per partition per fetch"),
    "cache_capacity": (1, None, "node rows kept in memory"),
    "mem_cache_capacity": (0, None, "0 turns it off"),
    "pin_scoring_cpu": (-1, None, "a CPU number, or -1 for no pinning"),
    "commit_every": (1, None, "micro-batches per commit"),
    "max_event_bytes": (1, None, "bytes"),
    "dlq_raw_max_bytes": (0, None, "bytes"),
    "dedupe_window": (0, None, "event ids; 0 turns it off"),
    "feedback_max_bytes": (1, None, "bytes"),
    "feedback_note_max_bytes": (0, None, "bytes"),
    "feedback_window": (1, None, "alert ids"),
    "feedback_max_steps_per_minute": (0, None, "0: no limit"),
    "feedback_max_steps_per_1k_events": (0, None, "0: no limit"),
    "seed": (0, 2**32 - 1, "a non-negative integer"),
    "metrics_port": (0, 65535, "a TCP port, or 0 to turn /metrics off"),
}
#: allowed values of the settings that are one of a few words
_CHOICES: dict[str, tuple[str, ...]] = {
    # security_protocol and sasl_mechanism: checked (case-insensitively) by streams.security
    "event_loop": ("uvloop", "asyncio"),
    "consume": ("batch", "stream"),
    "store_compression": COMPRESSIONS,
    "store_compaction": COMPACTIONS,
    "store_direct_io": DIRECT_IO_MODES,
}
#: string settings that must not be empty
_NON_EMPTY = ("broker", "events_topic", "alerts_topic", "dlq_topic", "feedback_topic", "app_id", "state_dir",
              "metrics_host")


def validate(settings: "Settings") -> None:
    """Raise ValueError naming the environment variable of the first setting out of range.

    Settings are validated here, in one place, when they are built (``Settings(...)``,
    ``from_env`` and ``replace`` all come through ``__post_init__``).

    >>> Settings.from_env({"RISKGRAPH_BATCH_SIZE": "0"})
    Traceback (most recent call last):
    ...
    ValueError: RISKGRAPH_BATCH_SIZE must be at least 1 (events per micro-batch), got 0
    >>> Settings(metrics_port=70000)
    Traceback (most recent call last):
    ...
    ValueError: RISKGRAPH_METRICS_PORT must be between 0 and 65535 (a TCP port, or 0 to turn /metrics off), got 70000
    """
    for f in fields(settings):
        key = ENV_PREFIX + f.name.upper()
        value = getattr(settings, f.name)
        name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if name == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
            continue
        if name in ("int", "float"):
            ok = isinstance(value, int) if name == "int" else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok:
                raise ValueError(f"{key} must be {'an integer' if name == 'int' else 'a number'}, got {value!r}")
            if name == "float" and not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
            if f.name in _RANGES:
                lo, hi, what = _RANGES[f.name]
                if (lo is not None and value < lo) or (hi is not None and value > hi):
                    bound = (f"between {lo} and {hi}" if lo is not None and hi is not None
                             else f"at least {lo}" if lo is not None else f"at most {hi}")
                    raise ValueError(f"{key} must be {bound} ({what}), got {value!r}")
            continue
        if name == "str":
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string, got {value!r}")
            if f.name in _CHOICES and value not in _CHOICES[f.name]:
                allowed = ", ".join(repr(c) for c in _CHOICES[f.name])
                raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
            if f.name in _NON_EMPTY and not value.strip():
                raise ValueError(f"{key} must not be empty")
    protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")  # = streams.security.PROTOCOLS (a test checks)
    if settings.security_protocol.strip().upper() not in protocols:
        raise ValueError(f"RISKGRAPH_SECURITY_PROTOCOL must be one of {', '.join(protocols)} (any case), "
                         f"got {settings.security_protocol!r}")
    if not settings.bootstrap_servers:
        raise ValueError(f"RISKGRAPH_BROKER names no host, got {settings.broker!r} (e.g. kafka://127.0.0.1:9092)")
    for hostport in settings.bootstrap_servers:  # "host" alone means port 9092 to both clients
        host, sep, port = hostport.rpartition(":")
        if sep and not hostport.endswith("]") and (not host or not port.isdigit() or not 0 < int(port) <= 65535):
            raise ValueError(f"RISKGRAPH_BROKER: {hostport!r} is not host:port (e.g. kafka://127.0.0.1:9092), "
                             f"got {settings.broker!r}")


def env_table() -> list[tuple[str, str, str]]:
    """(environment variable, default, type) for every setting: the README's table."""
    return [(ENV_PREFIX + f.name.upper(), repr(f.default), str(f.type)) for f in fields(Settings)]
