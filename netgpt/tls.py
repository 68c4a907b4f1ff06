"""Transport security of one process: its identity (CA + certificate + key) or explicit plaintext.

Secure is the default: a daemon or client without TLS material refuses to start unless it is
told ``insecure`` — and plaintext is allowed only on loopback, for development, with a warning.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from netgpt.config import DaemonSettings
from netgpt.errors import StartupError
from netgpt.pki import Issued, check_pair, init_ca, issue, subject_of

log = structlog.get_logger(__name__)

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Identity:
    """PEM bytes of the CA every peer must chain to, and of this party's certificate and key."""

    ca: bytes
    cert: bytes
    key: bytes
    name: str
    role: str

    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS: every caller must present a certificate from the same CA."""
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    def token_server_credentials(self) -> grpc.ServerCredentials:
        """Server-authenticated TLS only (the ``token_listen`` port): no client certificate is asked for."""
        return grpc.ssl_server_credentials([(self.key, self.cert)])

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


@dataclass(frozen=True)
class Bearer:
    """A client without a certificate (a UE): TLS that checks the server against ``ca``, and a UE token
    in every call's ``authorization: Bearer`` metadata. It calls a daemon's ``token_listen`` port."""

    ca: bytes
    token: str

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.composite_channel_credentials(grpc.ssl_channel_credentials(root_certificates=self.ca),
                                                  grpc.access_token_call_credentials(self.token))


@dataclass(frozen=True)
class Plaintext:
    """No TLS, no identity: loopback development only (``--insecure``)."""


PLAINTEXT = Plaintext()
Transport = Identity | Plaintext


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise StartupError(f"{what} {path}: {exc.strerror or exc}") from exc


def load_identity(ca: str, cert: str, key: str) -> Identity:
    """Read and check the three PEM files: the certificate must chain to ``ca`` and be valid now."""
    missing = [name for name, value in (("tls_ca", ca), ("tls_cert", cert), ("tls_key", key)) if not value]
    if missing:
        raise StartupError(f"incomplete TLS material: {', '.join(missing)} not set")
    ca_pem, cert_pem, key_pem = _read(ca, "tls_ca"), _read(cert, "tls_cert"), _read(key, "tls_key")
    check_pair(ca_pem, cert_pem, cert)
    name, role = subject_of(cert_pem)
    if not name or not role:
        raise StartupError(f"{cert}: no name (CN) or role (OU); issue certificates with `netgpt pki issue`")
    return Identity(ca=ca_pem, cert=cert_pem, key=key_pem, name=name, role=role)


def is_loopback(address: str) -> bool:
    """``127.0.0.1:50051``, ``[::1]:0``, ``localhost:8080`` — but not ``0.0.0.0`` or a routable host; a
    comma-separated list (core replicas) when every one of them is."""
    if "," in address:
        return all(is_loopback(part.strip()) for part in address.split(","))
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(ca: str, cert: str, key: str, insecure: bool, address: str, what: str,
            roles: frozenset[str] | None = None) -> Transport:
    """The transport of a daemon listening on (or a client calling) ``address``.

    ``insecure`` wins only on loopback; without it, TLS material is required. ``roles``, when
    given, are the certificate roles this party may run as (an edge daemon needs an edge cert).
    """
    if insecure:
        if any((ca, cert, key)):
            raise StartupError(f"{what}: both --insecure and TLS material given; choose one")
        if not is_loopback(address):
            raise StartupError(f"{what}: --insecure is for loopback development only, and {address} is not "
                               "loopback; give --tls-ca/--tls-cert/--tls-key (see `netgpt pki`)")
        log.warning("tls.insecure", what=what, address=address,
                    hint="plaintext and unauthenticated: development on loopback only")
        return PLAINTEXT
    if not any((ca, cert, key)):
        raise StartupError(f"{what}: no TLS material; give --tls-ca, --tls-cert and --tls-key (create them with "
                           "`netgpt pki init` and `netgpt pki issue`), or --insecure for loopback development")
    identity = load_identity(ca, cert, key)
    if roles is not None and identity.role not in roles:
        raise StartupError(f"{what}: certificate {cert} is for role {identity.role!r}; this needs "
                           f"{' or '.join(sorted(roles))}")
    return identity


def daemon_transport(settings: DaemonSettings, what: str, role: str) -> Transport:
    """A daemon's transport from its settings; its certificate must be for ``role``."""
    return resolve(settings.tls_ca, settings.tls_cert, settings.tls_key, settings.insecure,
                   getattr(settings, "listen", ""), what, roles=frozenset({role}))


class LocalPki:
    """A throw-away CA in a folder that issues on demand: the all-in-one cluster and the test suite
    run the secure path with it, so that it is the tested path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not (folder / "ca.crt").exists():
            init_ca(folder, name="netgpt-local-ca")
        self._identities: dict[tuple[str, str], Identity] = {}

    def files(self, role: str, name: str) -> Issued:
        cert, key = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        if cert.exists() and key.exists() and subject_of(cert.read_bytes()) == (name, role):
            return Issued(cert=cert, key=key, ca=self.folder / "ca.crt")
        return issue(self.folder, role, name)

    def settings(self, role: str, name: str) -> dict[str, str]:
        """The ``tls_*`` config fields of a daemon that runs as ``name`` in ``role``."""
        issued = self.files(role, name)
        return {"tls_ca": str(issued.ca), "tls_cert": str(issued.cert), "tls_key": str(issued.key)}

    def identity(self, role: str, name: str) -> Identity:
        key = (role, name)
        if key not in self._identities:
            issued = self.files(role, name)
            self._identities[key] = load_identity(str(issued.ca), str(issued.cert), str(issued.key))
        return self._identities[key]
