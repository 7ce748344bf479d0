"""How every Kafka client of the package reaches the cluster: bootstrap list and security.

One description, ``KafkaAccess``, read from the environment by ``config.py``, serves the
Faust app (``broker`` and ``broker_credentials``), the admin client that creates the
topics, and the tooling's own producers and consumers (chaos, bench), so a cluster that
needs TLS or SASL (every managed Kafka: Confluent Cloud, MSK, Aiven, Redpanda Cloud) is
reached the same way by all of them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Final

from aiokafka.helpers import create_ssl_context
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

__all__ = ["PROTOCOLS", "SASL_MECHANISMS", "KafkaAccess"]

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaAccess:
    #: ``host:port`` of each bootstrap broker.
    bootstrap: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    #: PEM files: the CA that signed the brokers' certificates (None: the system's CAs,
    #: as a managed service with a public certificate needs), and a client certificate
    #: and key for clusters that authenticate clients by TLS.
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def bootstrap_servers(self) -> str:
        """For aiokafka's ``bootstrap_servers``: ``h1:9092,h2:9092``."""
        return ",".join(self.bootstrap)

    @property
    def broker_url(self) -> str:
        """For Faust's ``broker``: ``kafka://h1:9092;kafka://h2:9092``."""
        return ";".join(f"kafka://{address}" for address in self.bootstrap)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context verifying the brokers' certificates; None without TLS."""
        if not self.uses_tls:
            return None
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
        )
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (admin, producer, consumer)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return kwargs

    def faust_credentials(self) -> CredentialsT | None:
        """Faust's ``broker_credentials``: SASL (over TLS or not), TLS alone, or None."""
        if self.uses_sasl:
            return SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),  # None for SASL_PLAINTEXT
            )
        if self.uses_tls:
            return SSLCredentials(self.ssl_context())
        return None
