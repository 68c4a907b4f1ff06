"""A small PKI for one NetGPT deployment: a CA, and certificates that carry a role and a name.

Every party presents a certificate issued here (mutual TLS, as 3GPP TS 33.501 asks between
network functions). The certificate says *who* (common name: the node id, the operator's or the
UE's id) and *what* (organisational unit: the role), and the servers authorise by those two
(``netgpt.access``). Keys are ECDSA P-256: small, fast to make, and what gRPC's BoringSSL likes.

Files: ``ca.crt``/``ca.key`` for the CA, ``<name>.crt``/``<name>.key`` per identity, all PEM;
private keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netgpt.crl import record_issued
from netgpt.errors import StartupError

ROLES = ("core", "edge", "cloud", "operator", "ue", "ran")  # ran: a testbed, RIC xApp or simulator (UE mobility)
NODE_ROLES = frozenset({"edge", "cloud"})
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")  # loopback always works; add real hosts with --host
CA_DAYS = 3650
LEAF_DAYS = 397  # the CA/Browser limit; a network function's certificate should be rotated yearly
URI_PREFIX = "netgpt://"  # the role/name again as a URI SAN (SPIFFE-like), for tools that read SANs only


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    ca: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def init_ca(out: Path, name: str = "netgpt-ca", force: bool = False) -> Issued:
    """Create ``out/ca.crt`` and ``out/ca.key``; refuses to overwrite an existing CA unless ``force``."""
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / "ca.crt", out / "ca.key"
    if cert_path.exists() and not force:
        raise StartupError(f"{cert_path} exists; a second CA would orphan every certificate it issued "
                           "(use --force to replace it)")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "NetGPT")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return Issued(cert=cert_path, key=key_path, ca=cert_path)


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = folder / "ca.crt", folder / "ca.key"
    if not cert_path.exists() or not key_path.exists():
        raise StartupError(f"no CA in {folder} (ca.crt + ca.key); create one with `netgpt pki init --out {folder}`")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StartupError(f"{key_path}: expected an EC private key")
    return cert, key


def _san(name: str, role: str, hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}/{name}")]
    for host in dict.fromkeys([*hosts, *DEFAULT_HOSTS]):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def check_name(name: str) -> str:
    """Names become node ids, UE ids and file names: a short, plain charset only."""
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise StartupError(f"name {name!r}: use 1-64 letters, digits, '-', '_' or '.' (not starting with '.')")
    return name


def issue(ca_dir: Path, role: str, name: str, hosts: list[str] | None = None, out: Path | None = None,
          days: int = LEAF_DAYS) -> Issued:
    """Issue ``<name>.crt``/``<name>.key`` for ``role`` into ``out`` (default: ``ca_dir``).

    The certificate is good for both ends of a connection (server and client auth): a node
    serves its own port and calls the core and its peers with the same identity.
    """
    if role not in ROLES:
        raise StartupError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    check_name(name)
    ca_cert, ca_key = _load_ca(ca_dir)
    out = out or ca_dir
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "NetGPT")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(_san(name, role, hosts or []), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = out / f"{name}.crt", out / f"{name}.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    record_issued(ca_dir, cert, name, role)  # so `pki revoke --name` finds the serial
    ca_copy = out / "ca.crt"
    if not ca_copy.exists():
        ca_copy.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert=cert_path, key=key_path, ca=ca_copy)


def subject_of(cert_pem: bytes) -> tuple[str, str]:
    """(name, role) a certificate was issued for: its common name and organisational unit."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return _attribute(cert, NameOID.COMMON_NAME), _attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME)


def serial_of(cert_pem: bytes) -> int:
    return int(x509.load_pem_x509_certificate(cert_pem).serial_number)


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def check_pair(ca_pem: bytes, cert_pem: bytes, where: str) -> x509.Certificate:
    """Refuse, with one clear line, a certificate no CA of the bundle ``ca_pem`` signed or that is not
    valid now. A bundle holds several CAs while a deployment moves to a new one (old + new)."""
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise StartupError(f"{where}: not a PEM certificate ({exc})") from exc
    if not any(_issued_by(cert, ca) for ca in cas):
        raise StartupError(f"{where}: not issued by the configured CA")
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise StartupError(f"{where}: certificate not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                           f"{cert.not_valid_after_utc:%Y-%m-%d})")
    return cert


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # InvalidSignature has no common base with ValueError
        return False
    return True


def check_key(cert_pem: bytes, key_pem: bytes, where: str) -> None:
    """Refuse a private key that is not a PEM key or not the one of ``cert_pem`` (a half-written file,
    or a certificate replaced before its key)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise StartupError(f"{where}: not an unencrypted PEM private key ({exc})") from exc
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    if key.public_key() != public:
        raise StartupError(f"{where}: the key does not belong to the certificate")
