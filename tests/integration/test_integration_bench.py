"""``benchmarks/bench_kafka.py`` still runs end to end against the test broker, on tiny inputs.

The README's Kafka numbers come from it; this keeps it runnable (rates are not checked).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.kafka
@pytest.mark.slow
def test_bench_kafka_measures_throughput_latency_and_cpu(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "kafka.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_kafka.py"), "--bootstrap", kafka_bootstrap,
         "--events", "3000", "--rate", "500", "--duration", "2", "--warmup", "300", "--sweep", "1000",
         "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["broker"] == "given" and r["throughput"]["events"] == 3000
    assert r["worker_events_per_second"] > 0 and r["embedded_events_per_second"] > 0
    lat = r["latency"]
    assert lat["paced_events"] == 1000 and lat["timed_alerts"] > 0
    assert lat["latency_p50_ms"] <= lat["latency_p99_ms"]
    assert lat["cpu_cores_used"]["worker"] > 0 and "broker" not in lat["cpu_cores_used"]  # a given broker
    assert [s["offered_rate"] for s in r["latency_sweep"]] == [1000.0]
    assert out.with_suffix(".png").stat().st_size > 0
