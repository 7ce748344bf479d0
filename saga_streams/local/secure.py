"""Secure mode of the local broker: a SASL_SSL listener, its TLS files and SCRAM user.

Made on the spot into ``<data dir>/secure/`` the first time, and reused after (the user
and its password must stay what the storage was formatted with):

    ca.pem            the CA certificate clients trust (PEM: aiokafka, kcat, Python)
    ca.p12            the CA's key and certificate (PKCS12), kept to sign again
    broker.p12        the brokers' key and certificate chain, signed by the CA, for
                      ``IP:127.0.0.1`` and ``DNS:localhost`` (PKCS12)
    store.password    the password of both PKCS12 files
    <user>.password   the SCRAM-SHA-512 password of the user (``saga``)

The files come from Java's ``keytool`` (Java is needed for the broker anyway, so no other
tool is), with P-256 keys: RSA key generation in a cold JVM costs seconds, EC a fraction.
The SCRAM user is added when the storage is formatted (``StorageTool format --add-scram``,
KIP-900), so the broker knows it before it serves its first client and uses it for its
own inter-broker connections too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from aiokafka.helpers import create_ssl_context

from saga_streams.local.errors import LocalKafkaError, require_tool
from saga_streams.local.jvm import run_tool

__all__ = ["SCRAM_MECHANISM", "SECURITY_PROTOCOL", "SecureListener"]

SECURITY_PROTOCOL: Final = "SASL_SSL"
SCRAM_MECHANISM: Final = "SCRAM-SHA-512"

#: The broker certificate is valid for these names (clients connect to 127.0.0.1).
_SAN: Final = "san=ip:127.0.0.1,dns:localhost"
_VALIDITY_DAYS: Final = "3650"
_KEYTOOL_TIMEOUT_S: Final = 60.0
#: keytool is a fresh JVM per call: the C1 compiler alone starts and finishes sooner.
_KEYTOOL_JVM: Final = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC")
_USERNAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SecureListener:
    """The TLS material and SCRAM credentials of a local cluster's SASL_SSL listener."""

    def __init__(self, directory: Path, username: str = "saga") -> None:
        if not _USERNAME.fullmatch(username):
            raise ValueError(f"SCRAM user name {username!r}: use 1-64 of A-Z a-z 0-9 _ -")
        self.directory = Path(directory).expanduser().resolve()
        self.username = username
        self.ca_file = self.directory / "ca.pem"
        self.ca_keystore = self.directory / "ca.p12"
        self.keystore = self.directory / "broker.p12"
        self.store_password_path = self.directory / "store.password"
        self.password_path = self.directory / f"{username}.password"

    # -- the files ----------------------------------------------------------------------

    def _files(self) -> tuple[Path, ...]:
        return (
            self.ca_file,
            self.ca_keystore,
            self.keystore,
            self.store_password_path,
            self.password_path,
        )

    def exists(self) -> bool:
        """True once every file is in place (they are made together, then renamed in)."""
        return all(path.is_file() for path in self._files())

    def ensure(self) -> None:
        """Make the CA, the broker's certificate and the SCRAM password if missing.

        Built in a temporary sibling directory and renamed into place, so an interrupted
        run never leaves a half-made set behind.
        """
        if self.exists():
            return
        if self.directory.exists():
            raise LocalKafkaError(
                f"{self.directory} is incomplete (one of ca.pem, ca.p12, broker.p12, "
                f"store.password, {self.password_path.name} is missing): remove it, or the "
                "whole data directory, to make it again"
            )
        keytool = require_tool("keytool", "to make the TLS certificates of --secure (Java)")
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".secure-", dir=self.directory.parent))
        try:
            _make_material(keytool, tmp, self.username)
            os.rename(tmp, self.directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @property
    def password(self) -> str:
        """The SCRAM password of :attr:`username`."""
        return self.password_path.read_text().strip()

    def fingerprint(self) -> str:
        """``<user> sha256:<16 hex>`` of the SCRAM credentials, kept beside formatted
        storage to tell whether that storage knows this user and password."""
        digest = hashlib.sha256(f"{self.username}:{self.password}".encode()).hexdigest()
        return f"{self.username} sha256:{digest[:16]}"

    @property
    def store_password(self) -> str:
        return self.store_password_path.read_text().strip()

    # -- the broker's side --------------------------------------------------------------

    def broker_properties(self, listener: str = SECURITY_PROTOCOL) -> dict[str, str]:
        """``server.properties`` keys for a SASL_SSL listener named ``listener``."""
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{self.username}" password="{self.password}";'
        )
        store_password = self.store_password
        return {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            # The brokers reach each other over the same listener, as the same user.
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.{listener.lower()}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": store_password,
            "ssl.key.password": store_password,
            # The broker as a client of another broker trusts our CA (PEM truststores
            # need no password, KIP-651).
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.client.auth": "none",
        }

    def format_args(self) -> list[str]:
        """``StorageTool format`` arguments that add the SCRAM user to fresh storage."""
        return [
            "--add-scram",
            f"{SCRAM_MECHANISM}=[name={self.username},password={self.password}]",
        ]

    # -- the clients' side --------------------------------------------------------------

    def client_env(self) -> dict[str, str]:
        """The worker environment variables for this listener (beside KAFKA_BROKER)."""
        return {
            "KAFKA_SECURITY_PROTOCOL": SECURITY_PROTOCOL,
            "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "KAFKA_SASL_USERNAME": self.username,
            "KAFKA_SASL_PASSWORD": self.password,
            "KAFKA_SSL_CAFILE": str(self.ca_file),
        }

    def client_kwargs(self, password: str | None = None) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client (a fresh TLS context each call)."""
        return {
            "security_protocol": SECURITY_PROTOCOL,
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password if password is None else password,
            "ssl_context": create_ssl_context(cafile=str(self.ca_file)),
        }

    def kcat_args(self) -> list[str]:
        """kcat (librdkafka) flags for this listener, to put after ``-b <bootstrap>``."""
        return [
            "-X",
            f"security.protocol={SECURITY_PROTOCOL}",
            "-X",
            f"sasl.mechanisms={SCRAM_MECHANISM}",
            "-X",
            f"sasl.username={self.username}",
            "-X",
            f"sasl.password={self.password}",
            "-X",
            f"ssl.ca.location={self.ca_file}",
        ]


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    with contextlib.suppress(OSError):
        path.chmod(0o600)


class _Keytool:
    """keytool calls in one folder, on PKCS12 stores that share one password."""

    def __init__(self, keytool: str, into: Path, store_password: str) -> None:
        self.keytool = keytool
        self.into = into
        self.store = ("-storetype", "PKCS12", "-storepass", store_password)

    def run(self, *args: str) -> None:
        run_tool(
            [self.keytool, *_KEYTOOL_JVM, *args, *self.store],
            f"keytool {args[0]}",
            _KEYTOOL_TIMEOUT_S,
            cwd=self.into,
        )

    def in_parallel(self, *calls: Sequence[str]) -> None:
        # Each keytool call is a JVM start: two at once use both cores of a small machine.
        with ThreadPoolExecutor(len(calls)) as pool:
            for future in [pool.submit(self.run, *call) for call in calls]:
                future.result()


_NEW_KEY: Final = ("-genkeypair", "-keyalg", "EC", "-groupname", "secp256r1")


def _new_ca() -> list[str]:
    """The CA's key pair and self-signed certificate, allowed to sign others."""
    return [
        *_NEW_KEY,
        "-alias",
        "ca",
        "-dname",
        "CN=saga-streams local CA",
        "-ext",
        "bc:c",
        "-ext",
        "ku:c=keyCertSign,cRLSign",
        "-validity",
        _VALIDITY_DAYS,
        "-keystore",
        "ca.p12",
    ]


def _new_broker_key() -> list[str]:
    """The brokers' key pair, with a self-signed certificate until the CA signs one."""
    return [
        *_NEW_KEY,
        "-alias",
        "broker",
        "-dname",
        "CN=localhost",
        "-ext",
        _SAN,
        "-validity",
        _VALIDITY_DAYS,
        "-keystore",
        "broker.p12",
    ]


def _sign_broker_request() -> list[str]:
    """The CA signs the broker's request: a server (and client) certificate for _SAN."""
    return [
        "-gencert",
        "-rfc",
        "-alias",
        "ca",
        "-keystore",
        "ca.p12",
        "-infile",
        "broker.csr",
        "-outfile",
        "broker.pem",
        "-validity",
        _VALIDITY_DAYS,
        "-ext",
        _SAN,
        "-ext",
        "ku:c=digitalSignature",
        "-ext",
        "eku=serverAuth,clientAuth",
    ]


def _make_material(keytool: str, into: Path, username: str) -> None:
    """The CA, the broker's key and certificate signed by it, and both passwords."""
    store_password = secrets.token_hex(16)
    _write_secret(into / "store.password", store_password)
    _write_secret(into / f"{username}.password", secrets.token_hex(16))
    tool = _Keytool(keytool, into, store_password)
    tool.in_parallel(_new_ca(), _new_broker_key())
    tool.in_parallel(
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-file", "ca.pem"],
        ["-certreq", "-alias", "broker", "-keystore", "broker.p12", "-file", "broker.csr"],
    )
    tool.run(*_sign_broker_request())
    # The signed certificate and the CA's, as the chain replacing the self-signed one.
    chain = into / "chain.pem"
    chain.write_text((into / "broker.pem").read_text() + (into / "ca.pem").read_text())
    tool.run(
        "-importcert",
        "-noprompt",
        "-alias",
        "broker",
        "-keystore",
        "broker.p12",
        "-file",
        "chain.pem",
    )
    for leftover in ("broker.csr", "broker.pem", "chain.pem"):
        (into / leftover).unlink()
