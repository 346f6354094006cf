"""A local single-node Apache Kafka broker for development and tests.

The broker's life cycle (fetch jars, render the config, format KRaft storage, start, wait
until it answers, stop) is implemented once, in ``deploy/kafka/kafka.sh``; this module
drives that script so that ``riskgraph kafka up|down|status`` and the integration-test
fixture share it. It needs a source checkout (the script is not part of the wheel) or
``RISKGRAPH_KAFKA_HOME`` pointing at a copy of ``deploy/kafka``.

>>> b = LocalBroker("/tmp/rg-kafka-doc", port=19092, controller_port=19093)
>>> b.bootstrap
'127.0.0.1:19092'
>>> LocalBroker("/tmp/x", port=9092, controller_port=9092)
Traceback (most recent call last):
...
ValueError: port and controller_port must differ, both are 9092
>>> BrokerStatus.parse("running pid=42 bootstrap=127.0.0.1:9092 data_dir=/d version=4.4.0")
BrokerStatus(running=True, bootstrap='127.0.0.1:9092', data_dir=PosixPath('/d'), version='4.4.0', pid=42, listeners={}, sasl_user='')

``secure=True`` adds SASL_SSL, SSL (client certificate required) and SASL_PLAINTEXT
listeners next to the PLAINTEXT one, with a CA and certificates made at start-up and one
SASL user (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); :meth:`LocalBroker.client_env` gives the
``RISKGRAPH_*`` settings that reach one of them:

>>> s = LocalBroker("/tmp/rg-kafka-doc", port=19092, controller_port=19093, secure=True,
...                 sasl_ssl_port=19094, ssl_port=19095, sasl_plaintext_port=19096)
>>> s.listeners
{'PLAINTEXT': '127.0.0.1:19092', 'SASL_SSL': '127.0.0.1:19094', 'SSL': '127.0.0.1:19095', 'SASL_PLAINTEXT': '127.0.0.1:19096'}
>>> BrokerStatus.parse("running pid=7 bootstrap=127.0.0.1:9092 data_dir=/d version=4.4.0 "
...                    "sasl_ssl=127.0.0.1:9094 ssl=127.0.0.1:9095 sasl_plaintext=127.0.0.1:9096 sasl_user=rg").listeners
{'SASL_SSL': '127.0.0.1:9094', 'SSL': '127.0.0.1:9095', 'SASL_PLAINTEXT': '127.0.0.1:9096'}
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Sequence

DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_START_TIMEOUT_S = 90.0
DEFAULT_STOP_TIMEOUT_S = 30.0
DEFAULT_SASL_SSL_PORT = 9094
DEFAULT_SSL_PORT = 9095
DEFAULT_SASL_PLAINTEXT_PORT = 9096
SECURE_LISTENERS = ("SASL_SSL", "SSL", "SASL_PLAINTEXT")  # what --secure adds, in kafka.sh's order
HOME_ENV = "RISKGRAPH_KAFKA_HOME"  # a directory holding kafka.sh, pom.xml, server.properties

# kafka.sh's exit code for "status: not running" (LSB convention).
_STATUS_STOPPED = 3


class BrokerError(RuntimeError):
    """The local broker could not be started, stopped or queried; the message says why."""


def kafka_home() -> Path:
    """The ``deploy/kafka`` directory: ``$RISKGRAPH_KAFKA_HOME`` or the source checkout's."""
    env = os.environ.get(HOME_ENV)
    home = Path(env) if env else Path(__file__).resolve().parents[1] / "deploy" / "kafka"
    if not (home / "kafka.sh").is_file():
        raise BrokerError(
            f"no kafka.sh in {home}: the local broker needs a riskgraph source checkout "
            f"or {HOME_ENV} set to a copy of deploy/kafka"
        )
    return home


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now.

    All sockets stay bound until every port is chosen, so the ports are distinct; another
    process may still take one before the broker binds it (kafka.sh then fails clearly).

    >>> a, b = free_ports(2)
    >>> a != b and 0 < a < 65536 and 0 < b < 65536
    True
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class BrokerStatus:
    """What ``kafka.sh status`` reports."""

    running: bool
    bootstrap: str
    data_dir: Path
    version: str
    pid: int | None = None
    listeners: dict[str, str] = field(default_factory=dict)  # secured listener name -> host:port
    sasl_user: str = ""  # the SASL user of a secured broker

    @classmethod
    def parse(cls, line: str) -> "BrokerStatus":
        """Parse ``running|stopped key=value ...`` (the script's status line)."""
        state, *pairs = line.split()
        if state not in ("running", "stopped"):
            raise BrokerError(f"unexpected status line from kafka.sh: {line!r}")
        kv = dict(p.split("=", 1) for p in pairs if "=" in p)
        try:
            return cls(
                running=state == "running",
                bootstrap=kv["bootstrap"],
                data_dir=Path(kv["data_dir"]),
                version=kv.get("version", ""),
                pid=int(kv["pid"]) if "pid" in kv else None,
                listeners={name: kv[name.lower()] for name in SECURE_LISTENERS if name.lower() in kv},
                sasl_user=kv.get("sasl_user", ""),
            )
        except (KeyError, ValueError) as exc:
            raise BrokerError(f"unexpected status line from kafka.sh: {line!r}") from exc


def _check_port(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{name} must be an int in 1..65535, got {value!r}")


class LocalBroker:
    """One single-node KRaft broker on 127.0.0.1, its data and logs in ``data_dir``.

    ``data_dir=None`` means kafka.sh's default, ``.kafka/`` in the repository root.

    ``python`` is the interpreter kafka.sh uses for its readiness probe (it needs
    kafka-python); by default the one running this code.

    ``secure=True``: also the SASL_SSL, SSL and SASL_PLAINTEXT listeners (kafka.sh
    ``--secure``) on their ports; ``sasl_user``/``sasl_password`` choose the one SASL user
    when the storage is first formatted (default ``riskgraph`` and a random password; read
    them back with :meth:`sasl_credentials`).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        port: int = DEFAULT_PORT,
        controller_port: int = DEFAULT_CONTROLLER_PORT,
        *,
        heap: str = "512m",
        python: str | None = None,
        home: str | os.PathLike[str] | None = None,
        secure: bool = False,
        sasl_ssl_port: int = DEFAULT_SASL_SSL_PORT,
        ssl_port: int = DEFAULT_SSL_PORT,
        sasl_plaintext_port: int = DEFAULT_SASL_PLAINTEXT_PORT,
        sasl_user: str | None = None,
        sasl_password: str | None = None,
    ) -> None:
        _check_port("port", port)
        _check_port("controller_port", controller_port)
        if port == controller_port:
            raise ValueError(f"port and controller_port must differ, both are {port}")
        if secure:
            ports = {"port": port, "controller_port": controller_port, "sasl_ssl_port": sasl_ssl_port,
                     "ssl_port": ssl_port, "sasl_plaintext_port": sasl_plaintext_port}
            for name, value in ports.items():
                _check_port(name, value)
            if len(set(ports.values())) != len(ports):
                raise ValueError(f"the five ports of a secure broker must differ, got {ports}")
        elif sasl_user is not None or sasl_password is not None:
            raise ValueError("sasl_user and sasl_password need secure=True")
        if not heap or not heap[:-1].isdigit() or heap[-1].lower() not in "kmg":
            raise ValueError(f"heap must look like '512m' or '1g', got {heap!r}")
        self._home = Path(home) if home is not None else None
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.python = python or sys.executable
        self.secure = secure
        self.sasl_ssl_port, self.ssl_port, self.sasl_plaintext_port = sasl_ssl_port, ssl_port, sasl_plaintext_port
        self._sasl_user, self._sasl_password = sasl_user, sasl_password

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients (``bootstrap_servers``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def listeners(self) -> dict[str, str]:
        """Listener name (= its security protocol) -> ``host:port``; PLAINTEXT alone unless secure."""
        out = {"PLAINTEXT": self.bootstrap}
        if self.secure:
            out.update(SASL_SSL=f"127.0.0.1:{self.sasl_ssl_port}", SSL=f"127.0.0.1:{self.ssl_port}",
                       SASL_PLAINTEXT=f"127.0.0.1:{self.sasl_plaintext_port}")
        return out

    @property
    def home(self) -> Path:
        return self._home if self._home is not None else kafka_home()

    def _data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.status().data_dir

    @property
    def tls_dir(self) -> Path:
        """``<data dir>/tls``: ca.pem, client.pem and client.key of a secure broker."""
        return self._data_dir() / "tls"

    def sasl_credentials(self) -> tuple[str, str]:
        """(user, password) of a secure broker, as its storage was formatted with."""
        path = self._data_dir() / "sasl.credentials"
        try:
            kv = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        except FileNotFoundError:
            raise BrokerError(f"no {path}: this broker was never started with secure=True (--secure)") from None
        return kv["user"], kv["password"]

    def client_env(self, protocol: str, mechanism: str = "SCRAM-SHA-256", *,
                   password: str | None = None) -> dict[str, str]:
        """The ``RISKGRAPH_*`` settings that reach this broker's ``protocol`` listener: the
        SASL user (``password`` overrides its password: for tests of a wrong one) with
        ``mechanism`` on SASL listeners, the CA on TLS ones, the client certificate on SSL."""
        protocol = protocol.upper()
        if protocol not in self.listeners:
            raise ValueError(f"no {protocol} listener on this broker (has {', '.join(self.listeners)})")
        env = {"RISKGRAPH_BROKER": f"kafka://{self.listeners[protocol]}", "RISKGRAPH_SECURITY_PROTOCOL": protocol}
        if protocol.startswith("SASL_"):
            user, stored = self.sasl_credentials()
            env.update(RISKGRAPH_SASL_MECHANISM=mechanism, RISKGRAPH_SASL_USERNAME=user,
                       RISKGRAPH_SASL_PASSWORD=stored if password is None else password)
        if protocol in ("SSL", "SASL_SSL"):
            env["RISKGRAPH_SSL_CAFILE"] = str(self.tls_dir / "ca.pem")
        if protocol == "SSL":
            env.update(RISKGRAPH_SSL_CERTFILE=str(self.tls_dir / "client.pem"),
                       RISKGRAPH_SSL_KEYFILE=str(self.tls_dir / "client.key"))
        return env

    def ensure_jars(self) -> Path:
        """Fetch the pinned Kafka jars with Maven unless present; return the lib directory."""
        self._run("jars", timeout=None)
        return self.home / "lib"

    def up(self, timeout: float = DEFAULT_START_TIMEOUT_S) -> BrokerStatus:
        """Start the broker (a no-op if it already runs here) and wait until it answers.

        ``timeout`` bounds the wait for the broker to answer a metadata request; fetching
        the jars on first use (Maven) comes on top of it.
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self._run("up", "--timeout", str(math.ceil(timeout)), timeout=None)
        return self.status()

    def down(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout`` seconds. No-op if stopped."""
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
        self._run("down", timeout=timeout + 30, stop_timeout=math.ceil(timeout))

    def status(self) -> BrokerStatus:
        """Running or stopped, with the bootstrap address and data dir."""
        out = self._run("status", timeout=30, ok=(0, _STATUS_STOPPED))
        return BrokerStatus.parse(out.strip().splitlines()[-1])

    def __enter__(self) -> "LocalBroker":
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def __repr__(self) -> str:
        return f"LocalBroker(data_dir={str(self.data_dir)!r}, port={self.port}, controller_port={self.controller_port})"

    def _run(
        self,
        command: str,
        *extra: str,
        timeout: float | None,
        ok: tuple[int, ...] = (0,),
        stop_timeout: int | None = None,
    ) -> str:
        """Run ``kafka.sh command`` for this broker; raise BrokerError with its output on failure."""
        argv = ["bash", str(self.home / "kafka.sh"), command, "--port", str(self.port),
                "--controller-port", str(self.controller_port)]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
        if self.secure:
            argv += ["--secure", "--sasl-ssl-port", str(self.sasl_ssl_port), "--ssl-port", str(self.ssl_port),
                     "--sasl-plaintext-port", str(self.sasl_plaintext_port)]
        # The environment must not choose what the arguments leave out (kafka.sh reads both).
        env = {k: v for k, v in os.environ.items()
               if k not in ("KAFKA_SECURE", "KAFKA_SCRAM_USER", "KAFKA_SCRAM_PASSWORD")}
        env.update(KAFKA_PYTHON=self.python, KAFKA_HEAP=self.heap)
        if self._sasl_user is not None:
            env["KAFKA_SCRAM_USER"] = self._sasl_user
        if self._sasl_password is not None:
            env["KAFKA_SCRAM_PASSWORD"] = self._sasl_password
        if stop_timeout is not None:
            env["KAFKA_STOP_TIMEOUT"] = str(stop_timeout)
        try:
            proc = subprocess.run([*argv, *extra], env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"kafka.sh {command} did not finish within {timeout}s") from exc
        if proc.returncode not in ok:
            detail = (proc.stderr.strip() or proc.stdout.strip() or "(no output)")
            raise BrokerError(f"kafka.sh {command} failed (exit {proc.returncode}):\n{detail}")
        return proc.stdout


def main(argv: Sequence[str] | None = None) -> int:
    """``riskgraph kafka up|down|status|jars``; returns the exit code (status: 0 running, 3 stopped)."""
    parser = argparse.ArgumentParser(
        prog="riskgraph kafka",
        description="A single-node Kafka broker on 127.0.0.1 for development (deploy/kafka/kafka.sh).",
    )
    parser.add_argument("command", choices=("up", "down", "status", "jars"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="client port (default %(default)s)")
    parser.add_argument("--controller-port", type=int, default=DEFAULT_CONTROLLER_PORT,
                        help="KRaft controller port (default %(default)s)")
    parser.add_argument("--data-dir", default=None, help="data, logs and pid file (default: <repo>/.kafka)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT_S,
                        help="seconds to wait for the broker to answer on up (default %(default)s)")
    parser.add_argument("--heap", default="512m", help="JVM max heap (default %(default)s)")
    parser.add_argument("--secure", action="store_true",
                        help="also SASL_SSL, SSL (client certificate) and SASL_PLAINTEXT listeners, with "
                             "certificates and a SASL user made in the data dir (see deploy/kafka/kafka.sh --help)")
    parser.add_argument("--sasl-ssl-port", type=int, default=DEFAULT_SASL_SSL_PORT,
                        help="with --secure: SASL_SSL port (default %(default)s)")
    parser.add_argument("--ssl-port", type=int, default=DEFAULT_SSL_PORT,
                        help="with --secure: SSL port (default %(default)s)")
    parser.add_argument("--sasl-plaintext-port", type=int, default=DEFAULT_SASL_PLAINTEXT_PORT,
                        help="with --secure: SASL_PLAINTEXT port (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        broker = LocalBroker(args.data_dir, port=args.port, controller_port=args.controller_port,
                             heap=args.heap, secure=args.secure, sasl_ssl_port=args.sasl_ssl_port,
                             ssl_port=args.ssl_port, sasl_plaintext_port=args.sasl_plaintext_port)
        if args.command == "jars":
            print(f"Kafka jars in {broker.ensure_jars()}")
            return 0
        if args.command == "up":
            st = broker.up(timeout=args.timeout)
        elif args.command == "down":
            broker.down()
            st = broker.status()
        else:
            st = broker.status()
    except (BrokerError, ValueError) as exc:
        print(f"riskgraph kafka {args.command}: {exc}", file=sys.stderr)
        return 1
    state = f"running pid={st.pid}" if st.running else "stopped"
    extra = "".join(f" {name.lower()}={addr}" for name, addr in st.listeners.items())
    if st.sasl_user:
        extra += f" sasl_user={st.sasl_user} (password in {st.data_dir / 'sasl.credentials'})"
    print(f"kafka {st.version} {state} bootstrap={st.bootstrap} data_dir={st.data_dir}{extra}")
    return 0 if st.running or args.command == "down" else _STATUS_STOPPED


if __name__ == "__main__":
    raise SystemExit(main())
