"""Connection security for both Kafka clients: Faust (aiokafka) in the worker, kafka-python in the tools.

One module turns the ``RISKGRAPH_SECURITY_PROTOCOL`` / ``SASL_*`` / ``SSL_*`` settings into
what each client library takes, so that the worker and every tool reach the same cluster
the same way.
"""

from __future__ import annotations

from typing import Any

import faust


def faust_credentials(settings: Any) -> Any:
    """Faust credentials from the security settings (None for PLAINTEXT)."""
    proto = settings.security_protocol.upper()
    if proto == "PLAINTEXT":
        return None
    ssl_context = None
    if proto in ("SSL", "SASL_SSL"):
        ssl_context = faust.ssl.create_default_context(
            purpose=faust.ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile or None)
        if settings.ssl_certfile:
            ssl_context.load_cert_chain(settings.ssl_certfile, keyfile=settings.ssl_keyfile or None)
    if proto.startswith("SASL"):
        mech = settings.sasl_mechanism.upper() or "PLAIN"
        if mech.startswith("SCRAM"):
            return faust.auth.SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                                              ssl_context=ssl_context, mechanism=mech)
        return faust.auth.SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                                          ssl_context=ssl_context)
    return faust.auth.SSLCredentials(ssl_context)


def client_kwargs(settings: Any) -> dict[str, Any]:
    """kafka-python connection arguments (bootstrap and security) from Settings."""
    kw: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                          "security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        kw.update(sasl_mechanism=settings.sasl_mechanism or "PLAIN", sasl_plain_username=settings.sasl_username,
                  sasl_plain_password=settings.sasl_password)
    if settings.ssl_cafile:
        kw["ssl_cafile"] = settings.ssl_cafile
    if settings.ssl_certfile:
        kw.update(ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile or None)
    return kw


