"""UE tokens: short-lived JWTs (ES256) the core signs for a UE the RAN attached, and that edges accept
instead of a client certificate (shared/DESIGN.md: "a UE is authenticated by the network that
attached it").

- The core holds the signing key (:class:`UeTokenSigner`, a P-256 key in its store dir, made on
  first start); nodes get the public keys from the core with their registration and check tokens
  offline (:class:`UeTokenVerifier`): no call to the core per request.
- Claims: ``sub`` (the UE id), ``cell``, ``slice``, ``iat``, ``exp``, ``iss``, ``jti``. A lifetime is
  at most :data:`MAX_TTL_S`, which is what keeps the revocation list bounded.
- Revocation (:class:`Revocations`) is per UE, not per token: a detach refuses every token of the UE
  issued up to then, including those `netgpt token issue` made that the core never saw. An entry
  is dropped once every token it could refuse has expired; past :data:`MAX_REVOKED_UES` entries the
  oldest are folded into one "everything issued before" time (fail closed: some UEs attach again).

Only ES256 is accepted (no ``none``, no HMAC with a public key as secret), and every refusal is an
:class:`Unauthenticated` naming the reason, never a generic error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netgpt.errors import InvalidArgument, StartupError, Unauthenticated, Unavailable, excerpt
from netgpt.validate import check_id

log = structlog.get_logger(__name__)

ALGORITHM = "ES256"
ISSUER = "netgpt-core"
KEY_FILE = "ue-token-key.pem"  # in the core's store dir unless ``ue_token_key`` names another file
DEFAULT_TTL_S = 3600.0
MAX_TTL_S = 24 * 3600.0
LEEWAY_S = 10.0  # clock skew tolerated between the core that signs and the node that checks
MAX_TOKEN_CHARS = 4096  # a token of ours is ~400 characters; anything far longer is not one
MAX_REVOKED_UES = 10_000  # revocation entries kept (and sent to a node that registers)


@dataclass(frozen=True)
class UeClaims:
    """What a verified token says: whose it is, where the UE was attached, and its lifetime (unix s)."""

    ue_id: str
    cell_id: str
    slice_id: str
    issued_at: float
    expires_at: float
    token_id: str
    issuer: str = ISSUER


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: UeClaims


def _utc(unix_s: float) -> str:
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The ``kid`` of a key: the start of the sha256 of its SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def public_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("a UE token key must be an ECDSA P-256 public key")
    return key


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never clobber a key another process made
    with os.fdopen(fd, "wb") as out:
        out.write(data)


class UeTokenSigner:
    """The core's signing key, and the one way a token is made."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str = ISSUER,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise StartupError("a UE token signing key must be ECDSA P-256 (ES256)")
        self._key = key
        self.issuer = issuer
        self._clock = clock
        self.key_id = key_id(key.public_key())
        self.public_pem = public_pem(key.public_key())

    @classmethod
    def from_file(cls, path: Path, create: bool = False) -> UeTokenSigner:
        """The key in ``path`` (PEM, PKCS#8); with ``create``, a new one is written there (0600) when absent."""
        if create and not path.exists():
            try:
                _write_private_key(path, ec.generate_private_key(ec.SECP256R1()))
                log.info("ue_tokens.key_created", path=str(path))
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError as exc:
                raise StartupError(f"UE token key {path}: cannot create: {exc.strerror or exc}") from exc
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise StartupError(f"UE token key {path}: {exc.strerror or exc} (the core makes it in its store dir "
                               "on first start; or pass the core's key with --key)") from exc
        except ValueError as exc:
            raise StartupError(f"UE token key {path}: not a PEM private key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise StartupError(f"UE token key {path}: an ECDSA P-256 key is needed, not {type(key).__name__}")
        return cls(key)

    def issue(self, ue_id: str, cell_id: str, slice_id: str = "", ttl_s: float = DEFAULT_TTL_S,
              now: float | None = None) -> IssuedToken:
        """A signed token for ``ue_id`` attached in ``cell_id``, valid for ``ttl_s`` from ``now``."""
        check_id(ue_id, "ue_id", required=True)
        check_id(cell_id, "cell_id", required=True)
        check_id(slice_id, "slice_id")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise InvalidArgument(f"a UE token lives more than 0 s and at most {MAX_TTL_S:g} s; got {ttl_s:g} s")
        issued = round(self._clock() if now is None else now, 3)  # ms: a re-attach right after a detach is newer
        claims = UeClaims(ue_id, cell_id, slice_id, issued, round(issued + ttl_s, 3), uuid.uuid4().hex, self.issuer)
        payload = {"sub": claims.ue_id, "cell": claims.cell_id, "slice": claims.slice_id, "iat": claims.issued_at,
                   "exp": claims.expires_at, "iss": claims.issuer, "jti": claims.token_id}
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self.key_id})
        return IssuedToken(token, claims)


@dataclass
class Revocations:
    """UEs whose tokens issued up to a time are refused; bounded in entries and in age (see module doc)."""

    capacity: int = MAX_REVOKED_UES
    max_ttl_s: float = MAX_TTL_S
    revoked_before: float = 0.0  # every token issued at or before this is refused (0: none)
    _by_ue: dict[str, float] = field(default_factory=dict)  # ue id -> issued at or before; oldest first

    def __len__(self) -> int:
        return len(self._by_ue)

    def entries(self) -> dict[str, float]:
        return dict(self._by_ue)

    def revoke(self, ue_id: str, issued_before: float) -> None:
        known = self._by_ue.pop(ue_id, None)
        self._by_ue[ue_id] = max(issued_before, known or 0.0)  # re-inserted: the newest entry
        while len(self._by_ue) > self.capacity:  # fold the oldest into the all-UEs time: refuse more, never less
            oldest = next(iter(self._by_ue))
            self.revoked_before = max(self.revoked_before, self._by_ue.pop(oldest))
            log.warning("ue_tokens.revocations_full", capacity=self.capacity, revoked_before=self.revoked_before)

    def replace(self, entries: Mapping[str, float], revoked_before: float) -> None:
        self._by_ue, self.revoked_before = {}, revoked_before
        for ue_id, issued_before in sorted(entries.items(), key=lambda item: item[1]):  # oldest first
            self.revoke(ue_id, issued_before)

    def refuses(self, claims: UeClaims) -> bool:
        return claims.issued_at <= max(self.revoked_before, self._by_ue.get(claims.ue_id, 0.0))

    def horizon(self, now: float) -> float:
        """Entries older than this can refuse no live token: everything they covered has expired."""
        return now - self.max_ttl_s - LEEWAY_S

    def prune(self, now: float) -> None:
        """Forget what no live token can be refused for any more."""
        horizon = self.horizon(now)
        for ue_id in [ue for ue, at in self._by_ue.items() if at < horizon]:
            del self._by_ue[ue_id]
        if self.revoked_before < horizon:
            self.revoked_before = 0.0


@dataclass(frozen=True)
class TokenState:
    """What the core tells a node about UE tokens (``NodeCommand.ue_tokens``): trusted keys (kid → PEM),
    revocations (UE → issued at or before), and whether it replaces what the node holds."""

    keys: Mapping[str, str] = field(default_factory=dict)
    revocations: Mapping[str, float] = field(default_factory=dict)
    revoked_before: float = 0.0
    snapshot: bool = False


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; None without one."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(f"authorization must be 'Bearer <UE token>'; got scheme {excerpt(scheme, 16)}")
    return token.strip()


class UeTokenVerifier:
    """Checks UE tokens against the keys and revocations the core sent (or, at the core, its own)."""

    def __init__(self, revocations: Revocations | None = None, clock: Callable[[], float] = time.time) -> None:
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self.revocations = revocations if revocations is not None else Revocations()
        self._clock = clock

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def trust(self, keys: Mapping[str, str]) -> None:
        """Verify with exactly these keys (kid → PEM); a key that is not P-256 is skipped and logged."""
        trusted = {}
        for kid, pem in keys.items():
            try:
                trusted[kid] = load_public_key(pem)
            except ValueError as exc:
                log.warning("ue_tokens.key_refused", key_id=kid, reason=str(exc))
        self._keys = trusted

    def apply(self, state: TokenState) -> None:
        """Take the core's word: a snapshot replaces keys and revocations, an addition merges."""
        if state.snapshot:
            self.trust(state.keys)
            self.revocations.replace(state.revocations, state.revoked_before)
        else:
            if state.keys:
                self.trust({**{kid: public_pem(key) for kid, key in self._keys.items()}, **state.keys})
            for ue_id, issued_before in state.revocations.items():
                self.revocations.revoke(ue_id, issued_before)
            self.revocations.revoked_before = max(self.revocations.revoked_before, state.revoked_before)
        self.revocations.prune(self._clock())
        log.info("ue_tokens.state", snapshot=state.snapshot, keys=self.key_ids, revoked=len(self.revocations),
                 added=list(state.revocations)[:8])

    def verify(self, token: str) -> UeClaims:
        """The claims of a valid token; Unauthenticated saying why it is not (Unavailable: no keys yet)."""
        if not self._keys:
            raise Unavailable("this node has no UE token keys yet (it gets them from the core when it registers); "
                              "retry shortly")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"the UE token is {len(token)} characters; not a token of ours")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the UE token is malformed ({exc}); present the token the RAN gave at attach") \
                from exc
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated(f"the UE token is signed by a key this network does not trust (kid "
                                  f"{excerpt(str(kid), 20)}); attach again for a new token")
        claims = self._decode(token, key)
        if claims.expires_at - claims.issued_at > MAX_TTL_S + 1:
            raise Unauthenticated(f"the UE token lives longer than the {MAX_TTL_S:g} s limit")
        if self.revocations.refuses(claims):
            raise Unauthenticated(f"the UE token of {excerpt(claims.ue_id)} was revoked (the UE detached); "
                                  "attach again for a new token")
        return claims

    def _decode(self, token: str, key: ec.EllipticCurvePublicKey) -> UeClaims:
        try:
            payload = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER, leeway=LEEWAY_S,
                                 options={"require": ["sub", "exp", "iat", "iss", "jti"]})
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated(f"the UE token expired at {_utc(_expiry_of(token))}; attach again for a new "
                                  "token") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthenticated("the UE token's signature does not verify: altered, or signed by another key") \
                from exc
        except jwt.InvalidTokenError as exc:  # malformed, missing or wrong claims, issued in the future
            raise Unauthenticated(f"the UE token is not valid: {exc}") from exc
        try:
            claims = UeClaims(ue_id=check_id(str(payload["sub"]), "the token's sub", required=True),
                              cell_id=check_id(str(payload.get("cell", "")), "the token's cell"),
                              slice_id=check_id(str(payload.get("slice", "")), "the token's slice"),
                              issued_at=float(payload["iat"]), expires_at=float(payload["exp"]),
                              token_id=str(payload["jti"])[:64], issuer=str(payload["iss"]))
        except (InvalidArgument, TypeError, ValueError) as exc:
            raise Unauthenticated(f"the UE token's claims are not valid: {exc}") from exc
        return claims


def _expiry_of(token: str) -> float:
    exp = jwt.decode(token, options={"verify_signature": False}).get("exp", 0)  # only to word the refusal
    return float(exp) if isinstance(exp, int | float) else 0.0
