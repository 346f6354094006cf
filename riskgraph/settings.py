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
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

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
    fetch_max_bytes: int = 256 * 1024  # per-partition fetch size; 1 MB fetches halved throughput (bench_kafka, with a 1.5 s fetch wait)
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
    metrics_host: str = "0.0.0.0"  # address /metrics binds to

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
        """``pin_scoring_cpu`` as ``GraphStore(pin_scoring_cpu=)`` takes it: None when off (< 0)."""
        return self.pin_scoring_cpu if self.pin_scoring_cpu >= 0 else None

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


def env_table() -> list[tuple[str, str, str]]:
    """(environment variable, default, type) for every setting: the README's table."""
    return [(ENV_PREFIX + f.name.upper(), repr(f.default), str(f.type)) for f in fields(Settings)]
