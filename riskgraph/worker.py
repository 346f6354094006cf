"""``riskgraph worker``: compose store, model, engine, metrics and the Faust app, and run.

One worker process owns one RocksDB state directory. It commits the store after
every micro-batch (after the batch's alerts are acknowledged by the broker), so a
restart replays nothing that was acknowledged and loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterator

from prometheus_client import start_http_server

from riskgraph.jobs import load_scoring_model
from riskgraph.settings import Settings


def run_worker(settings: Settings, *, loglevel: str = "warning") -> int:
    from riskgraph.models.artifact import load_model
    from riskgraph.state.store import GraphStore
    from riskgraph.streams.app import Worker
    from riskgraph.streams.engine import Engine
    from riskgraph.streams.kafka_io import ensure_topics
    from riskgraph.streams.logs import RateLimitedWorker, rate_limit_handlers
    from riskgraph.streams.metrics import EngineMetrics

    use_event_loop(settings.event_loop)
    logging.basicConfig(level=getattr(logging, loglevel.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rate_limit_handlers(logging.getLogger())
    model = load_scoring_model(settings)
    metrics = EngineMetrics()
    start_metrics_server(settings, metrics.registry)  # a port in use fails here, before the broker is asked
    with quiet_logger("kafka"):  # kafka-python's retries; an unreachable broker is one error line instead
        created = ensure_topics(settings)
    if created:
        print(f"riskgraph worker: created topics {', '.join(created)}", file=sys.stderr)
    store = GraphStore(settings.state_dir,
                       settings.store_options(mem_dim=model.mem_dim, mem_cache_width=model.mem_cache_width))
    try:
        # commit_every=1: the worker commits each batch once the broker acknowledged its alerts
        engine = Engine(store, model, **settings.engine_kwargs(commit_every=1))
        worker = Worker(settings, engine, metrics, model_loader=load_model)
        print(f"riskgraph worker: model {model.version}, state {settings.state_dir}, "
              f"broker {settings.broker}, topics {settings.events_topic} -> {settings.alerts_topic} "
              f"(dead letters: {settings.dlq_topic}), metrics "
              + (f"{settings.metrics_host}:{settings.metrics_port}" if settings.metrics_port else "off")
              + (f", scoring thread on CPU {settings.scoring_cpu}" if store.pinning else ""),
              file=sys.stderr, flush=True)
        quiet_gc()
        RateLimitedWorker(worker.app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        store.close()  # the engine committed every delivered batch; nothing else is pending
    return 0


def start_metrics_server(settings: Settings, registry: Any) -> Any:
    """Serve ``/metrics`` on ``settings.metrics_host:metrics_port`` (nothing when the port is 0);
    returns the HTTP server (None when off).

    A port another process listens on, or a host that is not an address of this machine,
    is a ValueError naming the setting to change, not an OSError traceback.
    """
    if not settings.metrics_port:
        return None
    try:
        server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
        return server
    except OSError as exc:
        raise ValueError(
            f"cannot serve /metrics on {settings.metrics_host}:{settings.metrics_port}: "
            f"{exc.strerror or exc}; choose a free port with --metrics-port or RISKGRAPH_METRICS_PORT "
            "(0 turns /metrics off), or an address of this host with RISKGRAPH_METRICS_HOST") from None


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Only CRITICAL records of logger ``name`` for the duration (the caller reports failures)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def quiet_gc() -> None:
    """Keep the cyclic garbage collector off the latency tail.

    Everything built at start-up (modules, numba dispatchers, the Faust app, the model)
    lives as long as the process: ``gc.freeze`` moves it out of the collector's sight,
    so a full collection no longer walks it. The worker allocates a few objects per
    record and frees them by reference counting, so young collections can be rarer.
    Measured with ``benchmarks/bench_kafka.py``, the p99 gain was within run-to-run
    noise (``benchmarks/README.md``).
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def use_event_loop(name: str) -> None:
    """Make ``name`` ("uvloop" or "asyncio") the event loop Faust runs on.

    uvloop cuts the cost of the tasks and futures Faust creates for every record
    (the measurement: ``benchmarks/README.md``, bench_kafka).
    """
    if name == "asyncio":
        return
    if name != "uvloop":
        raise ValueError(f"RISKGRAPH_EVENT_LOOP must be 'uvloop' or 'asyncio', got {name!r}")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        raise ValueError("RISKGRAPH_EVENT_LOOP=uvloop but uvloop is not installed "
                         "(pip install uvloop, or set RISKGRAPH_EVENT_LOOP=asyncio)") from None
    import mode.loop

    mode.loop.use("uvloop")
