"""Transport security of one process: its identity (CA + certificate + key) or explicit plaintext.

Secure is the default: a daemon or client without TLS material refuses to start unless it is
told ``insecure`` — and plaintext is allowed only on loopback, for development, with a warning.

A daemon's identity is *live* (:func:`daemon_transport`): its files are read again when they change
(every ``tls_reload_s``) or on SIGHUP (:mod:`netgpt.reloading`). Its servers take the new certificate
on their next handshake (grpcio's ``dynamic_ssl_server_credentials``, whose fetcher gRPC calls before
each one), its channels on their next call (:mod:`netgpt.reloading_channel`); connections and streams
already open are left as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from cryptography import x509

from netgpt.config import DaemonSettings
from netgpt.crl import RevokedCertificates
from netgpt.errors import StartupError
from netgpt.pki import Issued, check_key, check_pair, init_ca, issue, subject_of
from netgpt.reloading import Reloading

log = structlog.get_logger(__name__)

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Identity:
    """PEM bytes of the CA bundle every peer must chain to, and of this party's certificate and key.

    A daemon's identity also carries where newer versions come from (``source``, its files re-read) and
    the revocation list it checks peers against (``revoked``); a client's has neither."""

    ca: bytes
    cert: bytes
    key: bytes
    name: str
    role: str
    source: Reloading[Identity] | None = field(default=None, compare=False, repr=False)
    revoked: RevokedCertificates | None = field(default=None, compare=False, repr=False)

    def live(self) -> Identity:
        """The newest version of this identity (itself when its files are not watched)."""
        return self if self.source is None else self.source.value

    def server_credentials(self, client_certificates: bool = True) -> grpc.ServerCredentials:
        """Mutual TLS (every caller must present a certificate from the CA bundle), or with
        ``client_certificates=False`` (the ``token_listen`` port) server-authenticated TLS that asks for none.

        A watched identity serves through ``grpc.dynamic_ssl_server_credentials``: gRPC asks the fetcher
        before every handshake, and it hands over the files' newest version once per reload."""
        if self.source is None:
            if client_certificates:
                return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                                   require_client_auth=True)
            return grpc.ssl_server_credentials([(self.key, self.cert)])
        return grpc.dynamic_ssl_server_credentials(_certificate_configuration(self.live(), client_certificates),
                                                   _fetcher(self.source, client_certificates),
                                                   require_client_authentication=client_certificates)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)

    @functools.cached_property
    def ssl_client_context(self) -> ssl.SSLContext:
        """The same identity for Python's ``ssl`` (a TLS handshake outside gRPC, e.g. to read a server's
        certificate)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts nothing but the bundle loaded below
        context.check_hostname = False  # the gRPC connection checks the name; this reads the certificate
        context.set_alpn_protocols(["h2"])
        self.load_into(context)
        return context

    def load_into(self, context: ssl.SSLContext) -> None:
        """Present this certificate and key on ``context``'s next handshakes, and trust its CA bundle (in
        addition to what it trusts). ``ssl`` loads a key only from a file: a private (0600) one, deleted
        at once, so the pair loaded is the one checked here, whatever the files on disk hold by now."""
        with tempfile.TemporaryDirectory(prefix="netgpt-tls-") as folder:
            path = Path(folder) / "identity.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(self.cert + self.key)
            context.load_cert_chain(path)
        context.load_verify_locations(cadata=self.ca.decode())


def _certificate_configuration(identity: Identity, client_certificates: bool) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(identity.key, identity.cert)],
                                                     root_certificates=identity.ca if client_certificates else None)


def _fetcher(source: Reloading[Identity],
             client_certificates: bool) -> Callable[[], grpc.ServerCertificateConfiguration | None]:
    """What gRPC calls before each handshake of one port: the new configuration once after a reload,
    else None (keep the current one). It runs on gRPC's threads: it only compares a number."""
    served = [source.generation]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        generation = source.generation
        if generation == served[0]:
            return None
        served[0] = generation
        return _certificate_configuration(source.value, client_certificates)

    return fetch


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
    check_key(cert_pem, key_pem, key)
    name, role = subject_of(cert_pem)
    if not name or not role:
        raise StartupError(f"{cert}: no name (CN) or role (OU); issue certificates with `netgpt pki issue`")
    return Identity(ca=ca_pem, cert=cert_pem, key=key_pem, name=name, role=role)


def _described(identity: Identity) -> dict[str, object]:
    """What ``tls.reloaded`` says of the identity taken: whose certificate, its serial and expiry, the CAs trusted."""
    cert = x509.load_pem_x509_certificate(identity.cert)
    return {"name": identity.name, "role": identity.role, "serial": cert.serial_number,
            "not_after": cert.not_valid_after_utc.isoformat(), "cas": len(x509.load_pem_x509_certificates(identity.ca))}


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
    """A daemon's transport from its settings; its certificate must be for ``role``. With TLS, the identity
    is live: its files are read again when they change (``tls_reload_s``) or on SIGHUP."""
    transport = resolve(settings.tls_ca, settings.tls_cert, settings.tls_key, settings.insecure,
                        getattr(settings, "listen", ""), what, roles=frozenset({role}))
    if not isinstance(transport, Identity):
        return transport
    return _watched(transport, settings, what)


def _watched(first: Identity, settings: DaemonSettings, what: str) -> Identity:
    """``first``, with its files watched and a revocation list to check peers against (initially empty)."""
    if settings.tls_reload_s < 0:
        raise StartupError(f"tls_reload_s must be >= 0 (0: reload on SIGHUP only); got {settings.tls_reload_s:g}")
    revoked = RevokedCertificates(first.ca)

    def load() -> Identity:
        identity = load_identity(settings.tls_ca, settings.tls_cert, settings.tls_key)
        if (identity.name, identity.role) != (first.name, first.role):
            raise StartupError(f"{settings.tls_cert}: the new certificate is for {identity.role}:{identity.name}, "
                               f"this daemon runs as {first.role}:{first.name}")
        return dataclasses.replace(identity, source=source, revoked=revoked)

    paths = [Path(p).expanduser() for p in (settings.tls_ca, settings.tls_cert, settings.tls_key)]
    source = Reloading("tls", paths, load, settings.tls_reload_s, initial=first, describe=_described)
    source.value = dataclasses.replace(first, source=source, revoked=revoked)
    source.on_reload(lambda identity: revoked.trust(identity.ca))
    log.info("tls.watching", what=what, poll_s=settings.tls_reload_s, name=first.name, role=first.role)
    return source.value


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
