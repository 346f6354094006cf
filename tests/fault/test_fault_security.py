"""The worker and every kafka-python tool against a secured broker: TLS, SASL (SCRAM, PLAIN).

One broker for this module (``secure_broker``), started by the project's own script
(``deploy/kafka/kafka.sh up --secure`` through riskgraph.broker) on free loopback ports in
a temporary directory: PLAINTEXT (used here only to read results back independently of
the path under test), SASL_SSL, SSL with a required client certificate, SASL_PLAINTEXT.
Its CA, certificates and SCRAM user are made when it starts.

The worker (``python -m riskgraph.cli worker``) scores over SASL_SSL with SCRAM-SHA-512;
``riskgraph produce`` (which creates the topics, ``ensure_topics``) runs over SASL_SSL with
SCRAM-SHA-256, ``riskgraph alerts tail`` over SSL with a client certificate, ``riskgraph
feedback`` over SASL_PLAINTEXT with lower-case settings. Wrong credentials, a missing
client certificate and an untrusted broker certificate must each give one line on stderr
and a non-zero exit, quickly, from the tools and from the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from riskgraph.broker import BrokerError, LocalBroker, free_ports
from tests.integration.worker_proc import REPO_ROOT, WorkerConfig, WorkerProcess, clean_environ, metric, metric_sum, read_topic

N_EVENTS = 600
# Generous for 2 busy cores; a client stuck in kafka-python's retry loop (30 s bootstrap
# timeout and a screen of log lines) is what these bounds are there to catch.
FAIL_FAST_S = 20.0


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    port, controller, sasl_ssl, ssl_port, sasl_plain = free_ports(5)
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-secure"), port=port, controller_port=controller,
                         secure=True, sasl_ssl_port=sasl_ssl, ssl_port=ssl_port, sasl_plaintext_port=sasl_plain)
    broker.up(timeout=120)
    try:
        yield broker
    finally:
        broker.down()


def run_cli(args: list[str], env: Mapping[str, str], timeout: float = 120.0) -> tuple[int, str, str, float]:
    """``python -m riskgraph.cli ARGS`` with exactly these RISKGRAPH_* settings: rc, stdout, stderr, seconds."""
    full = {**clean_environ(), **env}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), full.get("PYTHONPATH", "")) if p)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "riskgraph.cli", *args], env=full, cwd=str(REPO_ROOT),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def topics_env(cfg: WorkerConfig) -> dict[str, str]:
    return {k: v for k, v in cfg.env().items() if k.endswith("_TOPIC")}


def assert_one_line_error(rc: int, stderr: str, seconds: float, *needles: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert rc != 0, f"exit 0 with stderr {stderr!r}"
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert seconds < FAIL_FAST_S, f"took {seconds:.1f}s to fail: {lines[0]}"
    return lines[0]


# -- the broker itself --------------------------------------------------------------------------


@pytest.mark.kafka
def test_secure_broker_reports_its_listeners_and_refuses_a_plain_restart(secure_broker: LocalBroker) -> None:
    st = secure_broker.status()
    assert st.running and st.bootstrap == secure_broker.bootstrap
    assert st.listeners == {k: v for k, v in secure_broker.listeners.items() if k != "PLAINTEXT"}
    user, password = secure_broker.sasl_credentials()
    assert st.sasl_user == user == "riskgraph" and len(password) >= 16
    for name in ("ca.pem", "client.pem", "client.key", "broker.pem"):
        assert (secure_broker.tls_dir / name).stat().st_size > 0
    assert not (secure_broker.tls_dir / "ca.key").exists()  # nothing can sign another certificate
    # idempotent with the same listeners ...
    assert secure_broker.up(timeout=60).pid == st.pid
    # ... but the same data dir asked for without the secured listeners is another broker
    plain = LocalBroker(secure_broker.data_dir, port=secure_broker.port,
                        controller_port=secure_broker.controller_port)
    with pytest.raises(BrokerError, match="already running with the listeners"):
        plain.up(timeout=30)
    assert secure_broker.status().pid == st.pid


def test_secure_up_refuses_storage_formatted_without_users(tmp_path: Path) -> None:
    """Needs no Java: the check comes before the broker starts."""
    (tmp_path / "k" / "kraft-logs").mkdir(parents=True)
    (tmp_path / "k" / "kraft-logs" / "meta.properties").write_text("version=1\n")
    port, controller, a, b, c = free_ports(5)
    broker = LocalBroker(tmp_path / "k", port=port, controller_port=controller, secure=True,
                         sasl_ssl_port=a, ssl_port=b, sasl_plaintext_port=c)
    with pytest.raises(BrokerError, match="formatted without --secure"):
        broker.up(timeout=30)


def test_secure_up_refuses_a_password_it_cannot_render(tmp_path: Path) -> None:
    port, controller, a, b, c = free_ports(5)
    broker = LocalBroker(tmp_path / "k", port=port, controller_port=controller, secure=True,
                         sasl_ssl_port=a, ssl_port=b, sasl_plaintext_port=c, sasl_password='pass"word]')
    with pytest.raises(BrokerError, match="KAFKA_SCRAM_PASSWORD must be"):
        broker.up(timeout=30)


def test_secure_broker_argument_checks() -> None:
    with pytest.raises(ValueError, match="must differ"):
        LocalBroker("/tmp/x", port=9092, controller_port=9093, secure=True, ssl_port=9092)
    with pytest.raises(ValueError, match="need secure=True"):
        LocalBroker("/tmp/x", sasl_password="secret-pw")


# -- the worker and the tools -----------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.slow
def test_worker_and_tools_over_sasl_ssl_ssl_and_sasl_plaintext(secure_broker: LocalBroker, tmp_path: Path,
                                                               fault_table) -> None:
    sasl_ssl = secure_broker.client_env("SASL_SSL", "SCRAM-SHA-512")
    cfg = WorkerConfig.fresh(secure_broker.listeners["SASL_SSL"], tmp_path / "state",
                             metrics_port=free_ports(1)[0], tag="sec", extra=sasl_ssl)
    with WorkerProcess(cfg, tmp_path / "worker.log") as worker:
        worker.wait_for("the metrics endpoint", lambda s: True, timeout=90)

        # produce over SASL_SSL with the other SCRAM mechanism; it creates the topics first
        rc, out, err, _ = run_cli(["produce", "--limit", str(N_EVENTS), "--days", "2", "--persons", "400",
                                   "--merchants", "60", "--no-progress"],
                                  {**topics_env(cfg), **secure_broker.client_env("SASL_SSL", "SCRAM-SHA-256")})
        assert rc == 0, err
        assert f"produced {N_EVENTS:,} events" in out

        samples = worker.wait_scored(N_EVENTS, timeout=90)
        time.sleep(1.0)  # nothing more may arrive: produced == scored, exactly
        samples = worker.metrics()
        assert metric(samples, "riskgraph_events_total", outcome="scored") == N_EVENTS
        assert metric(samples, "riskgraph_events_total", outcome="dead_letter") == 0
        n_alerts = int(metric_sum(samples, "riskgraph_alerts_total"))
        events = read_topic(secure_broker.bootstrap, cfg.events_topic)  # PLAINTEXT: an independent read
        assert len(events) == N_EVENTS
        alert_records = read_topic(secure_broker.bootstrap, cfg.alerts_topic)
        assert len(alert_records) == n_alerts > 0
        fault_table("secured listeners: worker on SASL_SSL/SCRAM", N_EVENTS,
                    int(metric(samples, "riskgraph_events_total", outcome="scored")),
                    int(metric(samples, "riskgraph_events_total", outcome="dead_letter")), alerts=n_alerts)

        # alerts tail over SSL, authenticated by the client certificate alone
        ssl_env = secure_broker.client_env("SSL")
        assert "RISKGRAPH_SASL_PASSWORD" not in ssl_env
        rc, out, err, _ = run_cli(["alerts", "tail", "--from-beginning", "--format", "json",
                                   "--idle-timeout", "5"], {**topics_env(cfg), **ssl_env})
        assert rc == 0, err
        tailed = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert len(tailed) == n_alerts
        assert {a["alert_id"] for a in tailed} == {json.loads(r.value)["alert_id"] for r in alert_records}

        # feedback over SASL_PLAINTEXT; protocol and mechanism in lower case
        low = {k: (v.lower() if k in ("RISKGRAPH_SECURITY_PROTOCOL", "RISKGRAPH_SASL_MECHANISM") else v)
               for k, v in secure_broker.client_env("SASL_PLAINTEXT", "SCRAM-SHA-512").items()}
        assert low["RISKGRAPH_SECURITY_PROTOCOL"] == "sasl_plaintext"
        alert_id = tailed[0]["alert_id"]
        rc, out, err, _ = run_cli(["feedback", alert_id, "--label", "1", "--analyst", "sec-test"],
                                  {**topics_env(cfg), **low})
        assert rc == 0, err
        assert f"feedback sent: alert {alert_id}" in out
        fb = read_topic(secure_broker.bootstrap, cfg.feedback_topic)
        assert [json.loads(r.value)["alert_id"] for r in fb] == [alert_id]
        # the worker reads it over SASL_SSL and counts it, applied or rejected
        worker.wait_for("the feedback", lambda s: metric_sum(s, "riskgraph_feedback_total")
                        + metric_sum(s, "riskgraph_feedback_rejected_total") >= 1, timeout=60)
        assert worker.alive()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.log_tail()


@pytest.mark.kafka
@pytest.mark.parametrize("protocol, mechanism", [("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512"),
                                                 ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "PLAIN")])
def test_a_wrong_password_is_one_clear_line_from_each_tool(secure_broker: LocalBroker, tmp_path: Path,
                                                           protocol: str, mechanism: str) -> None:
    env = {**secure_broker.client_env(protocol, mechanism, password="not-the-password"),
           "RISKGRAPH_EVENTS_TOPIC": "sec-never", "RISKGRAPH_ALERTS_TOPIC": "sec-never-alerts",
           "RISKGRAPH_FEEDBACK_TOPIC": "sec-never-feedback", "RISKGRAPH_DLQ_TOPIC": "sec-never-dlq"}
    commands = {"produce": ["produce", "--limit", "5", "--no-progress"],
                "alerts": ["alerts", "tail", "--idle-timeout", "2"],
                "feedback": ["feedback", "some-alert", "--label", "0"]}
    if protocol != "SASL_SSL" or mechanism != "SCRAM-SHA-256":
        commands = {"produce": commands["produce"]}  # one tool per variant is enough beyond the first
    for name, args in commands.items():
        rc, out, err, took = run_cli(args, env)
        assert_one_line_error(rc, err, took, f"riskgraph {name}: error:", "rejected the credentials",
                              "RISKGRAPH_SASL_PASSWORD", mechanism)
        assert "not-the-password" not in err
    # nothing was created with the wrong password (produce creates topics first)
    from kafka import KafkaAdminClient

    with KafkaAdminClient(bootstrap_servers=secure_broker.bootstrap) as admin:
        assert "sec-never" not in admin.list_topics()


@pytest.mark.kafka
def test_tls_problems_are_one_clear_line(secure_broker: LocalBroker) -> None:
    no_cert = {k: v for k, v in secure_broker.client_env("SSL").items()
               if k not in ("RISKGRAPH_SSL_CERTFILE", "RISKGRAPH_SSL_KEYFILE")}
    rc, _, err, took = run_cli(["alerts", "tail", "--idle-timeout", "2"], no_cert)
    assert_one_line_error(rc, err, took, "riskgraph alerts: error:", "client certificate", "RISKGRAPH_SSL_CERTFILE")

    no_ca = {k: v for k, v in secure_broker.client_env("SASL_SSL").items() if k != "RISKGRAPH_SSL_CAFILE"}
    rc, _, err, took = run_cli(["produce", "--limit", "5", "--no-progress"], no_ca)
    assert_one_line_error(rc, err, took, "riskgraph produce: error:", "not trusted", "RISKGRAPH_SSL_CAFILE")

    # TLS to the plain-SASL port: the client waits for a TLS answer that never comes; that is
    # no verdict on security, so kafka-python's own timeout applies (not tested for time here)


@pytest.mark.kafka
@pytest.mark.slow
def test_worker_with_a_wrong_password_exits_with_one_line(secure_broker: LocalBroker, tmp_path: Path) -> None:
    env = secure_broker.client_env("SASL_SSL", "SCRAM-SHA-512", password="not-the-password")
    cfg = WorkerConfig.fresh(secure_broker.listeners["SASL_SSL"], tmp_path / "state",
                             metrics_port=free_ports(1)[0], tag="secbad", extra=env)
    worker = WorkerProcess(cfg, tmp_path / "worker.log").start()
    try:
        t0 = time.monotonic()
        assert worker.proc is not None
        rc = worker.proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        worker.terminate()
    log = worker.log_tail()
    line = assert_one_line_error(rc, log, took, "riskgraph worker: error:", "rejected the credentials",
                                 "RISKGRAPH_SASL_PASSWORD")
    assert "not-the-password" not in line


def test_bad_security_settings_are_one_line_before_any_connection(tmp_path: Path) -> None:
    """No broker needed: these are refused before a connection is tried."""
    base = {"RISKGRAPH_BROKER": "kafka://127.0.0.1:1"}
    cases = [
        ({"RISKGRAPH_SECURITY_PROTOCOL": "TLS"}, "RISKGRAPH_SECURITY_PROTOCOL"),
        ({"RISKGRAPH_SECURITY_PROTOCOL": "SASL_SSL", "RISKGRAPH_SASL_MECHANISM": "SCRAM-SHA-256",
          "RISKGRAPH_SASL_USERNAME": "u"}, "RISKGRAPH_SASL_PASSWORD"),
        ({"RISKGRAPH_SECURITY_PROTOCOL": "SSL", "RISKGRAPH_SSL_CAFILE": str(tmp_path / "missing-ca.pem")},
         "RISKGRAPH_SSL_CAFILE"),
        ({"RISKGRAPH_SECURITY_PROTOCOL": "SASL_SSL", "RISKGRAPH_SASL_MECHANISM": "OAUTHBEARER"},
         "not supported yet"),
    ]
    for extra, needle in cases:
        rc, _, err, took = run_cli(["produce", "--limit", "1", "--no-progress"], {**base, **extra})
        assert_one_line_error(rc, err, took, "riskgraph produce: error:", needle)
