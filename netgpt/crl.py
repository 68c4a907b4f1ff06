"""Certificates that can be revoked: the CA's revocation list (CRL), written by ``netgpt pki revoke``
and checked by every daemon's access interceptor (:mod:`netgpt.access`).

The CA side (:func:`revoke`) adds serials to ``ca.crl`` (an X.509 v2 CRL, PEM, signed with the CA
key, its CRL number one higher each time). Serials come from ``--serial`` or from the names
``netgpt pki issue`` recorded in ``issued.jsonl`` beside the CA (or the ``NAME.crt`` there).

The daemon side (:class:`RevokedCertificates`) holds the newest list a daemon has seen: from its
``tls_crl`` file at start (the core re-reads the file when it changes) and, on nodes, from the core
(``NodeCommand.certificate_revocations``). A list is installed only if the deployment's CA signed it
and its number is higher than the one held, so neither a stale nor a forged list can un-revoke.
gRPC Python's TLS stack takes no CRL, so the check is per call, by the peer certificate's serial; a
daemon's channels check the servers they call against the same list (:mod:`netgpt.server_check`). A
list is checked against every CA of the daemon's bundle (``tls_ca`` may hold the old and the new CA
while a deployment moves to a new one), but one list is held, and only a higher number replaces it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netgpt.errors import InvalidArgument, StartupError
from netgpt.v1 import control_plane_pb2 as cp_pb2

log = structlog.get_logger(__name__)

CRL_FILE = "ca.crl"
INDEX_FILE = "issued.jsonl"  # one {"serial", "name", "role", "not_after"} per certificate issued
CRL_DAYS = 397  # nextUpdate; daemons do not expire a list (an old list still revokes what it lists)


@dataclass(frozen=True)
class Revoked:
    path: Path
    number: int
    serials: tuple[int, ...]  # the ones this call added
    total: int


def record_issued(ca_dir: Path, cert: x509.Certificate, name: str, role: str) -> None:
    """Append ``cert`` to the CA folder's index, so ``pki revoke --name`` finds its serial."""
    entry = {"serial": cert.serial_number, "name": name, "role": role,
             "not_after": cert.not_valid_after_utc.isoformat()}
    with (ca_dir / INDEX_FILE).open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, sort_keys=True) + "\n")


def serials_of(ca_dir: Path, name: str) -> list[int]:
    """Every serial issued to ``name``: from the index, else from ``NAME.crt`` in the CA folder."""
    found: list[int] = []
    index = ca_dir / INDEX_FILE
    if index.exists():
        for line in index.read_text(encoding="utf-8").splitlines():
            if line.strip() and json.loads(line).get("name") == name:
                found.append(int(json.loads(line)["serial"]))
    cert = ca_dir / f"{name}.crt"
    if cert.exists():
        found.append(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)
    if not found:
        raise StartupError(f"no certificate issued to {name!r} is recorded in {ca_dir} ({INDEX_FILE} or "
                           f"{name}.crt); revoke it by --serial")
    return list(dict.fromkeys(found))


def read_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes; InvalidArgument when it is neither."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise InvalidArgument(f"not a certificate revocation list: {exc}") from exc


def crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def revoke(ca_dir: Path, serials: Iterable[int], now: dt.datetime | None = None) -> Revoked:
    """Add ``serials`` to ``ca_dir/ca.crl`` (made on first use), signed by the CA, number + 1."""
    cert_path, key_path = ca_dir / "ca.crt", ca_dir / "ca.key"
    if not cert_path.exists() or not key_path.exists():
        raise StartupError(f"no CA in {ca_dir} (ca.crt + ca.key): revoking needs the CA's key")
    ca = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StartupError(f"{key_path}: expected an EC private key")
    now = now or dt.datetime.now(dt.UTC)
    path = ca_dir / CRL_FILE
    entries: dict[int, x509.RevokedCertificate] = {}
    number = 0
    if path.exists():
        old = read_crl(path.read_bytes())
        if not old.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
            raise StartupError(f"{path} is not signed by {cert_path}; move it away to start a new list")
        number = crl_number(old)
        entries = {r.serial_number: r for r in old}
    added = tuple(s for s in dict.fromkeys(serials) if s not in entries)
    for serial in added:
        if serial <= 0:
            raise StartupError(f"serial {serial}: certificate serials are positive")
        entries[serial] = (x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
                           .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now)
               .next_update(now + dt.timedelta(days=CRL_DAYS))
               .add_extension(x509.CRLNumber(number + 1), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False))
    for entry in entries.values():
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(key, hashes.SHA256())
    scratch = path.with_suffix(".crl.tmp")
    scratch.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    scratch.replace(path)  # a daemon watching the file never reads half of it
    return Revoked(path, number + 1, added, len(entries))


class RevokedCertificates:
    """The serials the newest CA-signed list revokes; safe from several threads."""

    def __init__(self, ca_pem: bytes) -> None:
        self._cas = x509.load_pem_x509_certificates(ca_pem)
        self._lock = threading.Lock()
        self._serials: frozenset[int] = frozenset()
        self.number = 0
        self.der = b""

    def install(self, data: bytes, source: str) -> bool:
        """Take the list in ``data`` (PEM or DER) if the CA signed it and it is newer; whether it was taken."""
        crl = read_crl(data)
        if not any(crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
                   for ca in self._cas):
            raise InvalidArgument(f"the revocation list from {source} is not signed by this deployment's CA")
        number = crl_number(crl)
        with self._lock:
            if number <= self.number:
                return False
            self._serials = frozenset(r.serial_number for r in crl)
            self.number = number
            self.der = crl.public_bytes(serialization.Encoding.DER)
        log.info("crl.installed", source=source, number=number, revoked=len(self._serials))
        return True

    def trust(self, ca_pem: bytes) -> None:
        """Check later lists against this CA bundle (a daemon reloaded its ``tls_ca``); the list held stays."""
        self._cas = x509.load_pem_x509_certificates(ca_pem)

    def load_file(self, path: Path) -> bool:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StartupError(f"tls_crl {path}: cannot read: {exc}") from exc
        try:
            return self.install(data, str(path))
        except InvalidArgument as exc:
            raise StartupError(f"tls_crl {path}: {exc}") from exc

    def revoked(self, serial: int | None) -> bool:
        return serial is not None and serial in self._serials


def revocations_command(revoked: RevokedCertificates) -> cp_pb2.NodeCommand:
    """The command that hands a node the list ``revoked`` holds."""
    return cp_pb2.NodeCommand(certificate_revocations=cp_pb2.CertificateRevocations(crl=revoked.der,
                                                                                      number=revoked.number))


def command_handler(revoked: RevokedCertificates | None) -> Callable[[cp_pb2.NodeCommand], None]:
    """A node's handler of ``NodeCommand.certificate_revocations``: install the list if it is the CA's and newer."""

    def handle(command: cp_pb2.NodeCommand) -> None:
        if revoked is None:  # a plaintext node checks no certificates
            return
        try:
            revoked.install(command.certificate_revocations.crl, "the core")
        except InvalidArgument as exc:
            log.warning("crl.refused", reason=str(exc))

    return handle
