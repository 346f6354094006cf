"""One Faust worker against a real Kafka broker: throughput, latency, and the embedded reference.

(a) **Sustained throughput**: ``--events`` simulated events are loaded into a fresh topic
    first, then one worker (``python -m riskgraph.cli worker``, a real subprocess) starts
    on an empty state; events/s from the first scored event to the last, by polling its
    /metrics (``riskgraph_events_total{outcome="scored"}``) every 20 ms.
(b) **Latency at a fixed offered rate**: a fresh worker; a paced producer (aiokafka, see
    ``paced_send``) sends ``--rate`` events/s for ``--duration`` s; a consumer of the
    alerts topic (its own process, so it does not share a GIL with the producer) notes
    when each alert arrives. Latency = alert received minus the event's send time (one
    clock: same host), split per alert into send -> broker append, append -> alert sent
    (the worker) and alert sent -> received, from the records' timestamps. Only events
    that raise an alert can be timed (about 1 %); their batch-mates wait as long.
    The cores each process used over the paced part are recorded (``cpu_cores_used``).
    ``--sweep RATE ...`` repeats (b) at each rate, each with a fresh worker, and plots
    p50/p90/p99 and the cores used against the offered rate.
(c) **Embedded reference**: ``streams.engine.Engine`` (``commit_every=1``, as the worker)
    over the same JSON bytes in micro-batches of the worker's size, no Kafka.

Where the time goes comes from the worker's own histograms: engine + send + commit time
per batch (``batch_processing_seconds``), scoring (``model_inference_seconds``), records
per batch (``batch_size_events``), record timestamp to alert sent (``end_to_end``; in the latency run the events topic uses
LogAppendTime, so that is broker append to alert sent: the worker's share).

Uses the broker at ``--bootstrap`` or starts one (riskgraph.broker.LocalBroker) on free
loopback ports in a temporary directory. Seeded; prints one JSON object.

Run:  .venv/bin/python benchmarks/bench_kafka.py [--bootstrap HOST:PORT] [--events 100000]
          [--rate 5000] [--duration 30] [--batch-size 1000] [--sweep RATE ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from riskgraph.broker import LocalBroker, free_ports  # noqa: E402
from riskgraph.settings import Settings  # noqa: E402
from riskgraph.simulators.transactions import SimConfig, simulate  # noqa: E402
from riskgraph.streams.events import Event, encode  # noqa: E402
from common import emit, machine  # noqa: E402

SEED = 7
#: ``--set KEY=VALUE`` settings for every worker of the run (e.g. RISKGRAPH_BATCH_WINDOW_S=0.01)
WORKER_ENV: dict[str, str] = {}
POLL_S = 0.25  # /metrics polling interval while the throughput run drains
EVENTS_PER_PERSON_DAY = 1.35  # what the simulator produces, roughly: sizes the world


# -- a worker subprocess ---------------------------------------------------------------------


class Worker:
    """``riskgraph worker`` with its own topics, group, state and metrics port."""

    def __init__(self, bootstrap: str, workdir: Path, tag: str, batch_size: int, consume: str = "batch",
                 extra_env: dict[str, str] | None = None) -> None:
        sfx = f"{tag}-{uuid.uuid4().hex[:8]}"
        self.port = free_ports(1)[0]
        self.env = {
            "RISKGRAPH_BROKER": f"kafka://{bootstrap}",
            "RISKGRAPH_EVENTS_TOPIC": f"bench-events-{sfx}",
            "RISKGRAPH_ALERTS_TOPIC": f"bench-alerts-{sfx}",
            "RISKGRAPH_DLQ_TOPIC": f"bench-dlq-{sfx}",
            "RISKGRAPH_FEEDBACK_TOPIC": f"bench-feedback-{sfx}",
            "RISKGRAPH_APP_ID": f"bench-app-{sfx}",
            "RISKGRAPH_STATE_DIR": str(workdir / f"state-{sfx}"),
            "RISKGRAPH_METRICS_PORT": str(self.port),
            "RISKGRAPH_BATCH_SIZE": str(batch_size),
            "RISKGRAPH_CONSUME": consume,
            **(WORKER_ENV if extra_env is None else extra_env),
        }
        self.settings = Settings.from_env(self.env)
        self.log = workdir / f"worker-{sfx}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKGRAPH_")}
        env.update(self.env, PYTHONPATH=str(REPO))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "riskgraph.cli", "worker", "--loglevel", "warning"],
                                         env=env, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def scored(self, m: dict | None = None) -> float:
        m = self.metrics() if m is None else m
        return m.get(("riskgraph_events_total", (("outcome", "scored"),)), 0.0)

    def wait(self, what: str, predicate, timeout: float, interval: float = 0.05) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited while waiting for {what}:\n{self.log.read_text()[-4000:]}")
            try:
                m = self.metrics()
                if predicate(m):
                    return m
            except OSError:
                pass
            time.sleep(interval)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def histogram(m: dict, name: str) -> dict[str, Any]:
    """count, sum, mean and bucket-interpolated p50/p99 of one worker histogram."""
    buckets = sorted(((float(dict(lbl)["le"]), v) for (n, lbl), v in m.items() if n == f"{name}_bucket"),
                     key=lambda b: b[0])
    count = m.get((f"{name}_count", ()), 0.0)
    total = m.get((f"{name}_sum", ()), 0.0)

    def q(p: float) -> float | None:
        if not count:
            return None
        target, prev_le, prev_c = p * count, 0.0, 0.0
        for le, c in buckets:
            if c >= target:
                if le == float("inf"):
                    return prev_le
                return prev_le + (le - prev_le) * (target - prev_c) / max(c - prev_c, 1e-12)
            prev_le, prev_c = le, c
        return None

    return {"count": count, "sum": round(total, 4), "mean": round(total / count, 6) if count else None,
            "p50": q(0.5), "p99": q(0.99)}


# -- producing and consuming ------------------------------------------------------------------


def preload(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    from kafka import KafkaProducer

    t0 = time.perf_counter()
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=1 << 20,
                      max_in_flight_requests_per_connection=1)
    try:
        for k, v in records:
            p.send(topic, key=k, value=v)
        p.flush(timeout=120)
    finally:
        p.close()
    return time.perf_counter() - t0


def paced_send(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], ids: list[str],
               rate: float) -> tuple[dict[str, float], float]:
    """Send at ``rate``/s on a fixed schedule; returns event id -> send time and the achieved rate.

    The load generator is aiokafka (acks=all, linger 1 ms), not kafka-python: on this
    2-core machine kafka-python's producer costs about 118 us of CPU per record (59 % of
    a core at 5,000/s, measured) against aiokafka's 24 us, and a load generator that
    takes a core away from the broker and the worker measures itself. Every record
    due by now is sent, then the loop sleeps 1 ms; a record's send time is when
    ``send`` was called for it.
    """
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def run() -> tuple[dict[str, float], float]:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
        await p.start()
        sent: dict[str, float] = {}
        futs = []
        try:
            n = len(records)
            start = time.perf_counter()
            wall0 = time.time() - start  # one clock for send and receive times: time.time() via perf_counter
            i = 0
            while i < n:
                due = min(n, int((time.perf_counter() - start) * rate) + 1)
                while i < due:
                    k, v = records[i]
                    sent[ids[i]] = wall0 + time.perf_counter()
                    futs.append(await p.send(topic, v, key=k))
                    i += 1
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - start
            await asyncio.gather(*futs)
        finally:
            await p.stop()
        return sent, n / elapsed

    return asyncio.run(run())


def _alerts_reader(bootstrap: str, topic: str, ready: Any, stop: Any, out: Any) -> None:
    """In a child process: (event id, receive time, alert record timestamp) of every alert
    until ``stop`` is set. The alert's timestamp is its CreateTime: when the worker's
    producer took it, i.e. when the worker sent it."""
    import msgspec
    from kafka import KafkaConsumer

    # a fetch returns as soon as an alert is appended (fetch.min.bytes 1): a long wait adds no
    # latency, and a 5 ms one cost this process a fifth of a core in empty fetches
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                      fetch_max_wait_ms=100, enable_auto_commit=False)
    dec = msgspec.json.Decoder()
    got: list[tuple[str, float]] = []
    try:
        c.poll(timeout_ms=100)  # join: metadata and assignment before the clock starts
        ready.set()
        idle_since = None
        while True:
            batches = c.poll(timeout_ms=100)
            now = time.time()
            for recs in batches.values():
                for r in recs:
                    got.append((dec.decode(r.value)["event_id"], now, r.timestamp / 1e3))
            if stop.is_set():
                idle_since = idle_since or time.monotonic()
                if batches:
                    idle_since = time.monotonic()
                if time.monotonic() - idle_since > 2.0:
                    break
    finally:
        c.close()
        out.send(got)
        out.close()


# -- the three measurements -------------------------------------------------------------------


def bench_throughput(bootstrap: str, workdir: Path, records: list[tuple[bytes, bytes]], batch_size: int,
                     consume: str) -> dict:
    from riskgraph.streams.kafka_io import ensure_topics

    w = Worker(bootstrap, workdir, "tput", batch_size, consume)
    ensure_topics(w.settings)
    load_s = preload(bootstrap, w.settings.events_topic, records)
    n = len(records)
    w.start()
    try:
        t_start = time.perf_counter()
        first = w.wait("the first scored event", lambda m: w.scored(m) > 0, timeout=120, interval=0.02)
        t_first, n_first = time.perf_counter(), w.scored(first)
        # every scrape costs the worker GIL time (20 ms polling took ~15 % of its samples): poll
        # slowly; the end is seen up to POLL_S late, which can only understate the rate
        last = w.wait(f"{n} scored events", lambda m: w.scored(m) >= n, timeout=600, interval=POLL_S)
        t_last = time.perf_counter()
    finally:
        w.stop()
    rate = (n - n_first) / (t_last - t_first)
    proc = histogram(last, "riskgraph_batch_processing_seconds")
    return {
        "consume": consume,
        "worker_events_per_second": round(rate, 1),
        "events": n,
        "preload_seconds": round(load_s, 2),
        "startup_to_first_scored_s": round(t_first - t_start, 2),
        "first_to_last_scored_s": round(t_last - t_first, 3),
        "poll_interval_s": POLL_S,
        "batches": proc["count"],
        "mean_batch_events": round(n / proc["count"], 1) if proc["count"] else None,
        # the engine + send + commit share of the wall time; the rest is Faust, aiokafka, polling
        "batch_processing_share_of_wall": round(proc["sum"] / (t_last - t_first), 3),
        "batch_processing_seconds": proc,
        "model_inference_seconds": histogram(last, "riskgraph_model_inference_seconds"),
        "alerts": sum(v for (nm, _), v in last.items() if nm == "riskgraph_alerts_total"),
    }


def append_times(bootstrap: str, topic: str, wanted: set[str]) -> dict[str, float]:
    """Broker append time (LogAppendTime, seconds) of the events whose id is in ``wanted``."""
    import msgspec
    from kafka import KafkaConsumer, TopicPartition

    dec = msgspec.json.Decoder()
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    out: dict[str, float] = {}
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        deadline = time.monotonic() + 120
        while any(c.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500, max_records=50_000).values():
                for r in recs:
                    eid = dec.decode(r.value).get("id")
                    if eid in wanted:
                        out[eid] = r.timestamp / 1e3
    finally:
        c.close()
    return out


def segments(sent: dict[str, float], got: list[tuple[str, float, float]], appended: dict[str, float]) -> dict:
    """Where each timed alert's latency went, ms percentiles per segment: producer send ->
    broker append of the event (the load generator and the broker), append -> alert sent
    (the worker), alert sent -> received (the broker and the alert reader). The three add up
    to the end-to-end number per alert (the segment percentiles do not add up)."""
    rows = np.array([(appended[e] - sent[e], t_alert - appended[e], t_recv - t_alert)
                     for e, t_recv, t_alert in got if e in sent and e in appended]) * 1e3
    if not len(rows):
        return {}
    return {name: {"p50": round(float(np.percentile(rows[:, i], 50)), 2),
                   "p99": round(float(np.percentile(rows[:, i], 99)), 2),
                   "max": round(float(rows[:, i].max()), 2)}
            for i, name in enumerate(("send_to_append", "append_to_alert_sent", "alert_sent_to_received"))}


def cpu_seconds(pids: dict[str, int | None], with_children: tuple[str, ...] = ("broker",)) -> dict[str, float]:
    """User+system CPU seconds so far of each named process, and ``machine``: every core's
    busy time. Names in ``with_children`` count their child processes too (the broker's
    JVM runs under its launcher; the load generator's children are the worker and the
    reader, counted on their own)."""
    import psutil

    out: dict[str, float] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        try:
            procs = [psutil.Process(pid)]
            if name in with_children:
                procs += procs[0].children(recursive=True)
            out[name] = sum(t.user + t.system for t in (q.cpu_times() for q in procs))
        except psutil.Error:
            pass
    t = psutil.cpu_times()
    out["machine"] = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return out


def cpu_shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores used per process over ``seconds`` (1.0 = one core busy the whole time)."""
    shares = {k: round((after[k] - before[k]) / seconds, 3) for k in after if k in before}
    named = sum(v for k, v in shares.items() if k != "machine")
    if "machine" in shares:
        shares["other"] = round(shares["machine"] - named, 3)
    return shares


def log_append_time(bootstrap: str, topic: str) -> None:
    """Stamp the topic's records with the broker's append time instead of the producer's.

    The worker's ``end_to_end`` histogram reads the record timestamp, so in the latency
    run it measures broker append -> alert sent (the worker's share), while the bench's
    own numbers measure producer send -> alert received (everything).
    """
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={"message.timestamp.type": "LogAppendTime"})])
    finally:
        admin.close()


def bench_latency(bootstrap: str, workdir: Path, records: list[tuple[bytes, bytes]], ids: list[str],
                  batch_size: int, rate: float, warmup: int, consume: str, broker_pid: int | None = None) -> dict:
    from riskgraph.streams.kafka_io import ensure_topics

    w = Worker(bootstrap, workdir, "lat", batch_size, consume)
    ensure_topics(w.settings)
    log_append_time(bootstrap, w.settings.events_topic)
    w.start()
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    recv_end, send_end = ctx.Pipe(duplex=False)
    reader = ctx.Process(target=_alerts_reader, args=(bootstrap, w.settings.alerts_topic, ready, stop, send_end))
    reader.start()
    try:
        # warm up: the worker has joined its group and scored, the detector is past its first window
        preload(bootstrap, w.settings.events_topic, records[:warmup])
        w.wait("the warm-up events", lambda m: w.scored(m) >= warmup, timeout=120)
        if not ready.wait(60):
            raise RuntimeError("the alerts reader did not start")
        base = w.metrics()
        pids = {"worker": w.proc.pid if w.proc else None, "broker": broker_pid,
                "load_generator": os.getpid(), "alerts_reader": reader.pid}
        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        sent, achieved = paced_send(bootstrap, w.settings.events_topic, records[warmup:], ids[warmup:], rate)
        cpu = cpu_shares(cpu0, cpu_seconds(pids), time.perf_counter() - t0)
        total = len(records)
        end = w.wait("the paced events", lambda m: w.scored(m) >= total, timeout=120)
        stop.set()
        got = recv_end.recv()
        reader.join(30)
    finally:
        stop.set()
        if reader.is_alive():
            reader.terminate()
        w.stop()
    lat = np.array([(t - sent[e]) * 1e3 for e, t, _ in got if e in sent])
    appended = append_times(bootstrap, w.settings.events_topic, {e for e, _, _ in got if e in sent})
    n_alerts_paced = int(len(lat))
    # worker-side end_to_end (producer timestamp to alert sent), paced part only
    e2e = {k: v - base.get(k, 0.0) for k, v in end.items() if k[0].startswith("riskgraph_end_to_end")}
    proc = {k: v - base.get(k, 0.0) for k, v in end.items() if k[0].startswith("riskgraph_batch_")}
    sizes = histogram(proc, "riskgraph_batch_size_events")
    return {
        "offered_rate": rate,
        "achieved_send_rate": round(achieved, 1),
        "paced_events": len(records) - warmup,
        "timed_alerts": n_alerts_paced,
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 2) if n_alerts_paced else None,
        "latency_p90_ms": round(float(np.percentile(lat, 90)), 2) if n_alerts_paced else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 2) if n_alerts_paced else None,
        "latency_max_ms": round(float(lat.max()), 2) if n_alerts_paced else None,
        # per alert, from record timestamps (one clock: every process runs on this machine)
        "latency_segments_ms": segments(sent, got, appended),
        # broker append time -> alert sent (the events topic uses LogAppendTime here)
        "worker_append_to_alert_seconds": histogram(e2e, "riskgraph_end_to_end_latency_seconds"),
        "worker_batch_processing_seconds": histogram(proc, "riskgraph_batch_processing_seconds"),
        "worker_mean_batch_events": round(sizes["mean"], 1) if sizes["mean"] else None,
        # cores used while the paced events were sent (load_generator: this process;
        # broker: absent when --bootstrap names one; other: the rest of the machine, which
        # has read a few hundredths below zero: /proc/stat and the per-process counters
        # are kept separately and did not quite agree here)
        "cpu_cores_used": cpu,
    }


def bench_embedded(values: list[bytes], batch_size: int) -> dict:
    from riskgraph.models.scoring import ScoringModel
    from riskgraph.state.store import GraphStore
    from riskgraph.streams.engine import Engine

    def run(vals: list[bytes]) -> float:
        d = tempfile.mkdtemp(prefix="bench-kafka-embedded-")
        try:
            with GraphStore(d) as store:
                eng = Engine(store, ScoringModel.default(seed=0), commit_every=1)
                t0 = time.perf_counter()
                for i in range(0, len(vals), batch_size):
                    chunk = vals[i:i + batch_size]
                    eng.process(chunk, topic="events", partition=0, offsets=range(i, i + len(chunk)),
                                positions={"events/0": i + len(chunk)})
                return time.perf_counter() - t0
        finally:
            shutil.rmtree(d, ignore_errors=True)

    run(values[: 2 * batch_size])  # numba caches, imports
    secs = run(values)
    return {"embedded_events_per_second": round(len(values) / secs, 1), "embedded_seconds": round(secs, 3)}


def simulate_records(n: int, seed: int) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    days = 7
    persons = int(n / (EVENTS_PER_PERSON_DAY * days) * 1.15) + 500
    while True:
        events: list[Event] = simulate(SimConfig(seed=seed, n_persons=persons, n_merchants=max(200, persons // 15),
                                                 days=days)).events
        if len(events) >= n:
            break
        persons = int(persons * 1.3)
    events = events[:n]
    return [(e.src.encode(), encode(e)) for e in events], [e.id for e in events]


def main(argv: list[str] | None = None) -> dict:
    # SIGTERM (e.g. from `timeout`) must unwind through the finally that stops the broker
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=None, help="an existing broker (default: start one on free ports)")
    ap.add_argument("--events", type=int, default=100_000, help="events pre-loaded for the throughput run")
    ap.add_argument("--rate", type=float, default=5000.0, help="offered rate of the latency run (events/s)")
    ap.add_argument("--sweep", type=float, nargs="+", default=None, metavar="RATE",
                    help="also run the latency measurement at each of these offered rates "
                         "(latency_sweep; a fresh worker each) and plot p50/p99 against the rate")
    ap.add_argument("--plot", default=None, help="where to write the sweep's plot (default: --out with .png)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of the latency run")
    ap.add_argument("--warmup", type=int, default=2000, help="events before the paced part of the latency run")
    ap.add_argument("--batch-size", type=int, default=Settings().batch_size, help="worker micro-batch size")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--consume", choices=("batch", "stream"), default=Settings().consume,
                    help="the worker's consumption path (RISKGRAPH_CONSUME)")
    ap.add_argument("--compare", action="store_true",
                    help="also measure throughput with the other consumption path (throughput_other)")
    ap.add_argument("--set", action="append", default=[], metavar="RISKGRAPH_KEY=VALUE",
                    help="a worker setting for this run (repeatable)")
    ap.add_argument("--skip", nargs="*", default=[], choices=("throughput", "latency", "embedded"))
    ap.add_argument("--out", default=None, help="also write the JSON here")
    a = ap.parse_args(argv)

    for kv in a.set:
        key, sep, value = kv.partition("=")
        if not sep or not key.startswith("RISKGRAPH_"):
            ap.error(f"--set expects RISKGRAPH_KEY=VALUE, got {kv!r}")
        WORKER_ENV[key] = value
    Settings.from_env(WORKER_ENV)  # a bad value fails here, not in the worker
    n_lat = a.warmup + int(a.rate * a.duration)
    n_most = a.warmup + int(max([a.rate, *(a.sweep or [])]) * a.duration)
    records, ids = simulate_records(max(a.events, n_most), a.seed)
    workdir = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    broker = None
    result: dict[str, Any] = {"seed": a.seed, "batch_size": a.batch_size, "consume": a.consume, "worker_settings": dict(WORKER_ENV), "machine": machine(),
                              "load_avg_before": os.getloadavg()}
    try:
        bootstrap = a.bootstrap
        if bootstrap is None:
            port, ctl = free_ports(2)
            broker = LocalBroker(workdir / "kafka", port=port, controller_port=ctl)
            broker.up(timeout=120)
            bootstrap = broker.bootstrap
        result["broker"] = "given" if a.bootstrap else "started (riskgraph.broker.LocalBroker)"
        if "embedded" not in a.skip:
            result.update(bench_embedded([v for _, v in records[: a.events]], a.batch_size))
        if "throughput" not in a.skip:
            result["throughput"] = bench_throughput(bootstrap, workdir, records[: a.events], a.batch_size, a.consume)
            result["worker_events_per_second"] = result["throughput"]["worker_events_per_second"]
            if a.compare:
                other = "stream" if a.consume == "batch" else "batch"
                result["throughput_other"] = bench_throughput(bootstrap, workdir, records[: a.events],
                                                              a.batch_size, other)
        broker_pid = broker.status().pid if broker is not None else None
        if "latency" not in a.skip:
            result["latency"] = bench_latency(bootstrap, workdir, records[:n_lat], ids[:n_lat], a.batch_size,
                                              a.rate, a.warmup, a.consume, broker_pid)
            for k in ("offered_rate", "latency_p50_ms", "latency_p99_ms"):
                result[k] = result["latency"][k]
        for rate in a.sweep or []:
            n = a.warmup + int(rate * a.duration)
            print(f"latency sweep: {rate:,.0f} events/s offered", file=sys.stderr, flush=True)
            result.setdefault("latency_sweep", []).append(
                bench_latency(bootstrap, workdir, records[:n], ids[:n], a.batch_size, rate, a.warmup, a.consume,
                              broker_pid))
        if "worker_events_per_second" in result and "embedded_events_per_second" in result:
            result["ratio_worker_vs_embedded"] = round(
                result["worker_events_per_second"] / result["embedded_events_per_second"], 3)
        result["load_avg_after"] = os.getloadavg()
    finally:
        if broker is not None:
            broker.down()
        shutil.rmtree(workdir, ignore_errors=True)
    emit(result, a.out, default=float)
    if result.get("latency_sweep") and (a.plot or a.out):
        plot_sweep(result, a.plot or str(Path(a.out).with_suffix(".png")))
    return result


def plot_sweep(result: dict[str, Any], path: str) -> None:
    """p50, p90 and p99 event-to-alert latency against the offered rate, with the worker's
    and the machine's CPU use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(result["latency_sweep"], key=lambda r: r["offered_rate"])
    rates = [r["offered_rate"] for r in runs]
    fig, (ax, cx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for q, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^-")):
        ax.plot(rates, [r[f"latency_{q}_ms"] for r in runs], style, label=q)
    ax.axhline(100, color="grey", lw=0.8, ls=":", label="p99 target (at 5,000/s)")
    ax.set(xlabel="offered events/s", ylabel="event -> alert received (ms)", title="Latency through Kafka")
    ax.legend()
    for key, label in (("machine", "machine (2 cores = 2.0)"), ("worker", "worker"), ("broker", "broker"),
                       ("load_generator", "load generator")):
        cx.plot(rates, [r["cpu_cores_used"].get(key, float("nan")) for r in runs], "o-", label=label)
    cx.set(xlabel="offered events/s", ylabel="cores used", title="CPU during the paced run", ylim=(0, 2.05))
    cx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
