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
BrokerStatus(running=True, bootstrap='127.0.0.1:9092', data_dir=PosixPath('/d'), version='4.4.0', pid=42)
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Sequence

DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_START_TIMEOUT_S = 90.0
DEFAULT_STOP_TIMEOUT_S = 30.0
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
    ) -> None:
        _check_port("port", port)
        _check_port("controller_port", controller_port)
        if port == controller_port:
            raise ValueError(f"port and controller_port must differ, both are {port}")
        if not heap or not heap[:-1].isdigit() or heap[-1].lower() not in "kmg":
            raise ValueError(f"heap must look like '512m' or '1g', got {heap!r}")
        self._home = Path(home) if home is not None else None
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.python = python or sys.executable

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients (``bootstrap_servers``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return self._home if self._home is not None else kafka_home()

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
        env = dict(os.environ, KAFKA_PYTHON=self.python, KAFKA_HEAP=self.heap)
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
    args = parser.parse_args(argv)
    try:
        broker = LocalBroker(args.data_dir, port=args.port, controller_port=args.controller_port,
                             heap=args.heap)
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
    print(f"kafka {st.version} {state} bootstrap={st.bootstrap} data_dir={st.data_dir}")
    return 0 if st.running or args.command == "down" else _STATUS_STOPPED


if __name__ == "__main__":
    raise SystemExit(main())
