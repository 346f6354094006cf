"""Connection security for both Kafka clients: Faust (aiokafka) in the worker, kafka-python in the tools.

One module turns the ``RISKGRAPH_SECURITY_PROTOCOL`` / ``SASL_*`` / ``SSL_*`` settings into
what each client library takes, so that the worker and every tool reach the same cluster
the same way: the same validation, the same TLS context (system CAs or
``RISKGRAPH_SSL_CAFILE``, host name checked), the same SASL user.

Protocols (any case): ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``. SASL
mechanisms (any case; default ``PLAIN``): ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``
with ``RISKGRAPH_SASL_USERNAME`` and ``RISKGRAPH_SASL_PASSWORD``; ``GSSAPI`` (Kerberos: the
principal comes from the ticket cache or keytab, service name ``kafka``; needs the
``gssapi`` package). ``OAUTHBEARER`` is not supported yet and is refused. Settings that
the chosen protocol would silently ignore (a password without SASL, a CA file without TLS)
are refused too, so that a typo in the protocol does not pass for a working setup.

Every problem is a ``ValueError`` naming the ``RISKGRAPH_*`` variable and what to do, raised
before any connection is made:

>>> from riskgraph.settings import Settings
>>> kafka_python_kwargs(Settings(broker="kafka://h1:9096", security_protocol="SASL_PLAINTEXT",
...                              sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p"))
{'bootstrap_servers': ['h1:9096'], 'security_protocol': 'SASL_PLAINTEXT', 'sasl_mechanism': 'SCRAM-SHA-512', 'sasl_plain_username': 'u', 'sasl_plain_password': 'p'}
>>> faust_credentials(Settings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p"))
<SASLCredentials: username=u>
>>> faust_credentials(Settings()) is None
True

:func:`resolve` takes any object with the setting names as attributes:

>>> from types import SimpleNamespace
>>> def settings(**kw):
...     base = dict(security_protocol="PLAINTEXT", sasl_mechanism="", sasl_username="", sasl_password="",
...                 ssl_cafile="", ssl_certfile="", ssl_keyfile="")
...     return SimpleNamespace(**{**base, **kw})
>>> resolve(settings(security_protocol="sasl_plaintext", sasl_mechanism="scram-sha-256",
...                  sasl_username="u", sasl_password="p"))
Security(protocol='SASL_PLAINTEXT', mechanism='SCRAM-SHA-256', username='u', cafile='', certfile='', keyfile='')
>>> resolve(settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="u"))
Traceback (most recent call last):
...
ValueError: RISKGRAPH_SECURITY_PROTOCOL=SASL_SSL with RISKGRAPH_SASL_MECHANISM=SCRAM-SHA-256 needs RISKGRAPH_SASL_PASSWORD: set it
>>> resolve(settings(security_protocol="TLS"))
Traceback (most recent call last):
...
ValueError: RISKGRAPH_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL (any case), got 'TLS'
>>> resolve(settings(security_protocol="SSL", ssl_cafile="/no/such/ca.pem"))
Traceback (most recent call last):
...
ValueError: RISKGRAPH_SSL_CAFILE=/no/such/ca.pem: no such file (the PEM certificate of the CA that signed the broker's certificate)
>>> resolve(settings(security_protocol="SASL_SSL", sasl_mechanism="oauthbearer"))
Traceback (most recent call last):
...
ValueError: RISKGRAPH_SASL_MECHANISM=OAUTHBEARER is not supported yet (it needs a token provider, not a password): use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or GSSAPI
>>> resolve(settings(security_protocol="SSL", sasl_password="p"))
Traceback (most recent call last):
...
ValueError: RISKGRAPH_SASL_PASSWORD is set but RISKGRAPH_SECURITY_PROTOCOL=SSL does not use SASL: set RISKGRAPH_SECURITY_PROTOCOL to SASL_SSL or SASL_PLAINTEXT, or unset RISKGRAPH_SASL_PASSWORD

The kafka-python tools go through :func:`client_kwargs`, which on a secured protocol also
makes one test connection per process (:func:`check_access`): a wrong password or an
untrusted certificate then fails at once with one :class:`BrokerSecurityError` (a
``ValueError``) saying so, where kafka-python itself would retry until its bootstrap
timeout and then report only "Unable to bootstrap".
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from faust.auth import GSSAPICredentials, SASLCredentials, SSLCredentials

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MECHANISMS = (*PASSWORD_MECHANISMS, "GSSAPI", "OAUTHBEARER")
CHECK_TIMEOUT_S = 10.0  # the whole test connection of check_access, all bootstrap servers

_P = "RISKGRAPH_"


class BrokerSecurityError(ValueError):
    """The broker refused this client's security settings (credentials, certificates, mechanism).

    A ``ValueError`` on purpose: it is a settings problem, reported as one line by the CLI.
    """


@dataclass(frozen=True)
class Security:
    """The validated, normalised security settings (protocol and mechanism upper case)."""

    protocol: str
    mechanism: str = ""  # "" without SASL
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def describe(self) -> str:
        """For messages: ``SASL_SSL/SCRAM-SHA-256 as 'alice'``, never the password."""
        if not self.sasl:
            return self.protocol
        who = f" as {self.username!r}" if self.username else ""
        return f"{self.protocol}/{self.mechanism}{who}"


def resolve(settings: Any) -> Security:
    """Validate the security settings; ``ValueError`` naming the variable on any problem."""
    raw_proto = str(settings.security_protocol or "PLAINTEXT").strip()
    proto = raw_proto.upper().replace("-", "_")
    if proto not in PROTOCOLS:
        raise ValueError(f"{_P}SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)} (any case), got {raw_proto!r}")
    mech = str(settings.sasl_mechanism or "").strip().upper().replace("_", "-")
    user, password = settings.sasl_username or "", settings.sasl_password or ""
    cafile, certfile, keyfile = settings.ssl_cafile or "", settings.ssl_certfile or "", settings.ssl_keyfile or ""
    where = f"{_P}SECURITY_PROTOCOL={proto}"

    if proto.startswith("SASL_"):
        mech = mech or "PLAIN"
        if mech not in MECHANISMS:
            raise ValueError(f"{_P}SASL_MECHANISM must be one of {', '.join(PASSWORD_MECHANISMS)} or GSSAPI "
                             f"(any case), got {settings.sasl_mechanism!r}")
        if mech == "OAUTHBEARER":
            raise ValueError(f"{_P}SASL_MECHANISM=OAUTHBEARER is not supported yet (it needs a token provider, "
                             f"not a password): use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or GSSAPI")
        if mech == "GSSAPI":
            for var, value in (("SASL_USERNAME", user), ("SASL_PASSWORD", password)):
                if value:
                    raise ValueError(f"{_P}{var} is not used with {_P}SASL_MECHANISM=GSSAPI (Kerberos takes the "
                                     f"principal from the ticket cache or keytab: kinit): unset it")
            if importlib.util.find_spec("gssapi") is None:
                raise ValueError(f"{_P}SASL_MECHANISM=GSSAPI needs the Python package 'gssapi' "
                                 f"(pip install gssapi) and a Kerberos ticket (kinit)")
        else:
            missing = [f"{_P}{var}" for var, value in (("SASL_USERNAME", user), ("SASL_PASSWORD", password))
                       if not value]
            if missing:
                raise ValueError(f"{where} with {_P}SASL_MECHANISM={mech} needs {' and '.join(missing)}: set "
                                 + ("it" if len(missing) == 1 else "them"))
    else:
        for var, value in (("SASL_MECHANISM", mech), ("SASL_USERNAME", user), ("SASL_PASSWORD", password)):
            if value:
                raise ValueError(f"{_P}{var} is set but {where} does not use SASL: set {_P}SECURITY_PROTOCOL "
                                 f"to SASL_SSL or SASL_PLAINTEXT, or unset {_P}{var}")
        mech = ""

    files = (("SSL_CAFILE", cafile, "the PEM certificate of the CA that signed the broker's certificate"),
             ("SSL_CERTFILE", certfile, "this client's PEM certificate"),
             ("SSL_KEYFILE", keyfile, "the PEM private key of RISKGRAPH_SSL_CERTFILE"))
    for var, value, what in files:
        if not value:
            continue
        if proto not in ("SSL", "SASL_SSL"):
            raise ValueError(f"{_P}{var} is set but {where} does not use TLS: set {_P}SECURITY_PROTOCOL "
                             f"to SSL or SASL_SSL, or unset {_P}{var}")
        if not os.path.isfile(value):
            raise ValueError(f"{_P}{var}={value}: no such file ({what})")
    if keyfile and not certfile:
        raise ValueError(f"{_P}SSL_KEYFILE is set without {_P}SSL_CERTFILE: set both (client certificate and "
                         f"its key) or neither")
    return Security(proto, mech, user, password, cafile, certfile, keyfile)


def ssl_context(sec: Security) -> ssl.SSLContext | None:
    """The client TLS context for SSL and SASL_SSL (None otherwise): verifies the broker's
    certificate against ``RISKGRAPH_SSL_CAFILE`` (or the system's CAs) and its host name,
    and presents ``RISKGRAPH_SSL_CERTFILE`` when set."""
    if not sec.tls:
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=sec.cafile or None)
    except ssl.SSLError as exc:
        raise ValueError(f"{_P}SSL_CAFILE={sec.cafile}: not a PEM CA certificate ({exc})") from None
    if sec.certfile:
        try:
            ctx.load_cert_chain(sec.certfile, keyfile=sec.keyfile or None)
        except ssl.SSLError as exc:
            key = sec.keyfile or "(none: the key must be in the certificate file)"
            raise ValueError(f"{_P}SSL_CERTFILE={sec.certfile} / {_P}SSL_KEYFILE={key}: cannot load the client "
                             f"certificate and its key ({exc})") from None
    return ctx


def faust_credentials(settings: Any) -> Any:
    """Faust ``broker_credentials`` from the security settings (None for PLAINTEXT).

    Faust hands them to aiokafka (``credentials_to_aiokafka_auth``): SSLCredentials for
    SSL, SASLCredentials (SASL_SSL when it carries a TLS context) for the password
    mechanisms, GSSAPICredentials for Kerberos.
    """
    sec = resolve(settings)
    if sec.protocol == "PLAINTEXT":
        return None
    ctx = ssl_context(sec)
    if sec.protocol == "SSL":
        return SSLCredentials(ctx)
    if sec.mechanism == "GSSAPI":
        return GSSAPICredentials(kerberos_service_name="kafka", ssl_context=ctx)
    return SASLCredentials(username=sec.username, password=sec.password, ssl_context=ctx, mechanism=sec.mechanism)


def kafka_python_kwargs(settings: Any) -> dict[str, Any]:
    """kafka-python connection arguments (bootstrap and security) from Settings; no I/O."""
    sec = resolve(settings)
    kw: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers, "security_protocol": sec.protocol}
    if sec.sasl:
        kw["sasl_mechanism"] = sec.mechanism
        if sec.mechanism == "GSSAPI":
            kw["sasl_kerberos_service_name"] = "kafka"
        else:
            kw.update(sasl_plain_username=sec.username, sasl_plain_password=sec.password)
    if sec.tls:
        kw["ssl_context"] = ssl_context(sec)
    return kw


def client_kwargs(settings: Any) -> dict[str, Any]:
    """kafka-python connection arguments, after :func:`check_access` on a secured protocol."""
    kw = kafka_python_kwargs(settings)
    if kw["security_protocol"] != "PLAINTEXT":
        check_access(settings)
    return kw


_checked: set[tuple[tuple[str, ...], Security]] = set()
_checked_lock = threading.Lock()


def check_access(settings: Any, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """One test connection (TLS handshake, SASL authentication, an ApiVersions request) to
    the first bootstrap server that answers; raises :class:`BrokerSecurityError` when the
    broker refuses these settings. A server that cannot be reached is no verdict: the
    clients' own retries deal with that. A success is remembered for the process.

    Done with aiokafka, the worker's client, on a thread of its own (so it also works
    where an event loop is already running).
    """
    sec = resolve(settings)
    if sec.protocol == "PLAINTEXT":
        return
    key = (tuple(settings.bootstrap_servers), sec)
    with _checked_lock:
        if key in _checked:
            return
    box: list[BaseException | bool | None] = []

    def run() -> None:
        try:
            box.append(asyncio.run(_probe_servers(key[0], sec, timeout_s)))
        except BaseException as exc:  # handed to the calling thread
            box.append(exc)

    # aiokafka logs what the check finds (and "Sending username and password in the clear"
    # for PLAIN without TLS); the outcome is reported here instead, once.
    # (`disabled` is per logger, not inherited: the connection module's own logger.)
    aio_log = logging.getLogger("aiokafka.conn")
    was_disabled, aio_log.disabled = aio_log.disabled, True
    try:
        t = threading.Thread(target=run, name="riskgraph-security-check", daemon=True)
        t.start()
        t.join(timeout_s + 5)
    finally:
        aio_log.disabled = was_disabled

    outcome = box[0] if box else None
    if isinstance(outcome, BaseException):
        raise outcome
    if outcome:
        with _checked_lock:
            _checked.add(key)


async def _probe_servers(servers: tuple[str, ...], sec: Security, timeout_s: float) -> bool | None:
    """True: a server let us in. None: none could be reached. Raises BrokerSecurityError."""
    from aiokafka.conn import create_conn

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    ctx = ssl_context(sec)
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host:
            host, port = port, "9092"
        left = deadline - loop.time()
        if left <= 0:
            return None
        conn = None
        try:
            conn = await asyncio.wait_for(create_conn(
                host, int(port), client_id="riskgraph-security-check", request_timeout_ms=int(left * 1000),
                ssl_context=ctx, security_protocol=sec.protocol, sasl_mechanism=sec.mechanism or None,
                sasl_plain_username=sec.username or None, sasl_plain_password=sec.password or None), left)
            return True
        except Exception as exc:
            err = _refusal(server, sec, exc)
            if err is not None:
                raise err from None
        finally:
            if conn is not None:
                conn.close()
    return None


def _refusal(server: str, sec: Security, exc: BaseException) -> BrokerSecurityError | None:
    """The security failure ``exc`` stands for, or None when it says nothing about security."""
    from aiokafka import errors as aioerrors

    # aiokafka reports a TLS alert that arrives after the handshake (TLS 1.3: "certificate
    # required" comes with the first response) as a closed connection caused by it.
    cause = exc.__cause__ or exc.__context__
    if not isinstance(exc, ssl.SSLError) and isinstance(cause, ssl.SSLError):
        exc = cause
    at = f"the broker at {server} ({sec.describe()})"
    if isinstance(exc, (aioerrors.SaslAuthenticationFailed, aioerrors.AuthenticationFailedError)):
        return BrokerSecurityError(f"{at} rejected the credentials ({_reason(exc)}): check {_P}SASL_USERNAME, "
                                   f"{_P}SASL_PASSWORD and {_P}SASL_MECHANISM")
    if isinstance(exc, (aioerrors.UnsupportedSaslMechanismError, aioerrors.IllegalSaslStateError,
                        aioerrors.AuthenticationMethodNotSupported)):
        return BrokerSecurityError(f"{at} does not take this SASL mechanism ({_reason(exc)}): "
                                   f"check {_P}SASL_MECHANISM")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return BrokerSecurityError(f"{at}: its TLS certificate is not trusted ({exc.verify_message}): set "
                                   f"{_P}SSL_CAFILE to the CA certificate that signed it")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = (f"the listener wants a client certificate: set {_P}SSL_CERTFILE and {_P}SSL_KEYFILE"
                if "CERTIFICATE" in reason.upper() and not sec.certfile else
                f"check {_P}SECURITY_PROTOCOL (is this a TLS listener?) and the {_P}SSL_* files")
        return BrokerSecurityError(f"{at}: the TLS handshake failed ({reason}): {hint}")
    return None


def _reason(exc: BaseException) -> str:
    """The broker's own words, on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
