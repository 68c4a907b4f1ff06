"""Who may call what: certificate roles checked by one server interceptor, and the audit log.

The caller's identity is the certificate it presented in the mutual-TLS handshake (``netgpt.pki``:
common name = who, organisational unit = role) or, without one, a UE token in ``authorization:
Bearer`` (:mod:`netgpt.ue_tokens`: role ``ue``, the token's UE id as the name). Each daemon serves a
table of :class:`Rule` per method — deny by default — and the interceptor checks, before the servicer
runs: a verified peer or token (else UNAUTHENTICATED), a role the rule allows (else PERMISSION_DENIED),
and for roles bound to an identity (a node, a UE) that the request is about *that* identity
(its ``node_id``, ``ue_id``, ``user_id``, or the owner of the session it names). Operators are
not bound: they act for anyone, and every operator action is written to the audit log.
Health checks and reflection are open to any authenticated caller, health also to anonymous ones
unless configured otherwise (a probe on a daemon's ``token_listen`` port has no certificate).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message

from netgpt.crl import RevokedCertificates
from netgpt.errors import NetGptError, PermissionDenied, Unauthenticated
from netgpt.interceptors import Behaviour, WrappingInterceptor, rejection
from netgpt.pki import NODE_ROLES, serial_of, subject_of
from netgpt.status import status_code
from netgpt.tls import Identity, Transport
from netgpt.ue_tokens import UeClaims, UeTokenVerifier, bearer_token

log = structlog.get_logger(__name__)

OPERATOR = frozenset({"operator"})
NODES = frozenset(NODE_ROLES)
BOUND_ROLES = frozenset({*NODE_ROLES, "ue"})  # roles that may act only as themselves
HEALTH = "/grpc.health.v1."
REFLECTION = "/grpc.reflection."


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    token: UeClaims | None = field(default=None, compare=False, repr=False)  # a UE that called with a token
    serial: int | None = field(default=None, compare=False, repr=False)  # of the certificate it called with

    def __str__(self) -> str:
        return f"{self.role}:{self.name}" if self.role else "anonymous"


DEVELOPMENT = Principal("", "")  # plaintext loopback development: nobody is checked
ANONYMOUS = DEVELOPMENT  # an unauthenticated health probe
_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("netgpt_principal", default=DEVELOPMENT)


def current_principal() -> Principal:
    """The caller of the RPC being served (``DEVELOPMENT`` on an insecure server)."""
    return _current.get()


# request -> the identity it concerns: a name (held against the caller's name), or a whole
# Principal (name and role: a node registers only under its own id *and* role)
Owner = Callable[[Any], "str | Principal | Awaitable[str]"]


def field_owner(path: str) -> Owner:
    """The value of a (dotted) field of the request: ``field_owner("node.node_id")``."""

    def owner(request: Any) -> str:
        value = request
        for part in path.split("."):
            value = getattr(value, part)
        return str(value)

    return owner


@dataclass(frozen=True)
class Rule:
    """``roles`` may call; bound roles only about themselves (``owner``); ``audit``: log every call."""

    roles: frozenset[str]
    owner: Owner | None = None
    audit: bool = False
    bound: frozenset[str] = BOUND_ROLES  # the roles held to ``owner`` (a node reading a UE's session is not)


def operator_action(owner: Owner | None = None, roles: frozenset[str] = OPERATOR) -> Rule:
    return Rule(roles=roles, owner=owner, audit=True)


class AuditLog:
    """Append-only JSON lines, one per operator action, flushed and fsynced before the reply goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, entry: Mapping[str, object]) -> None:
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


@functools.lru_cache(maxsize=4096)
def _principal_of_cert(pem: bytes) -> Principal:
    name, role = subject_of(pem)
    return Principal(name, role, serial=serial_of(pem))


def certificate_principal(pem: bytes | None) -> Principal:
    """The (name, role) of a verified client certificate (PEM); the TLS handshake already checked it
    chains to our CA. Any server (gRPC, the edge's HTTP API) names its caller with this."""
    if not pem:
        raise Unauthenticated("no client certificate; call with the certificate and key `netgpt pki issue` "
                              "made for you")
    principal = _principal_of_cert(pem)
    if not principal.name or not principal.role:
        raise Unauthenticated("client certificate names no role; issue it with `netgpt pki`")
    return principal


def caller_principal(pem: bytes | None, authorization: str | None, tokens: UeTokenVerifier | None) -> Principal:
    """Who calls: the verified client certificate when there is one, else the UE token of an
    ``authorization: Bearer`` value (a ``ue`` named as the token says); Unauthenticated with neither.
    gRPC and the edge's HTTP API name their callers with this."""
    if pem:
        return certificate_principal(pem)
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("no client certificate and no UE token: call with the certificate and key "
                              "`netgpt pki issue` made for you, or as a UE with 'authorization: Bearer <token>' "
                              "(RanService.AttachUe hands the RAN one)")
    if tokens is None:
        raise Unauthenticated("this server takes no UE tokens; call with a client certificate")
    claims = tokens.verify(token)
    return Principal(claims.ue_id, "ue", claims)


def peer_principal(context: grpc.aio.ServicerContext, tokens: UeTokenVerifier | None = None) -> Principal:
    """The caller of a gRPC call: the certificate it presented, else its UE token."""
    pems = context.auth_context().get("x509_pem_cert") or []
    metadata = dict(context.invocation_metadata() or ())
    authorization = metadata.get("authorization")
    return caller_principal(bytes(pems[0]) if pems else None,
                            authorization if isinstance(authorization, str) else None, tokens)


def check_not_revoked(principal: Principal, revoked: RevokedCertificates | None) -> None:
    """Unauthenticated when the certificate ``principal`` called with is on the CA's revocation list."""
    if revoked is not None and revoked.revoked(principal.serial):
        raise Unauthenticated(f"the certificate of {principal} (serial {principal.serial}) is revoked "
                              f"(revocation list {revoked.number})")


def permitted_rule(rules: Mapping[str, Rule], principal: Principal, method: str) -> Rule:
    """``method``'s rule, once ``principal``'s role may call it (PermissionDenied otherwise; deny by default)."""
    rule = rules.get(method)
    if rule is None:
        raise PermissionDenied(f"{method} is not open to any caller on this server")
    if principal.role not in rule.roles:
        raise PermissionDenied(f"{principal} may not call {method}; it needs role "
                               f"{' or '.join(sorted(rule.roles))}")
    return rule


async def check_owner(principal: Principal, rule: Rule, request: Any, method: str) -> None:
    """PermissionDenied unless a bound ``principal`` (a node, a UE) is the identity ``request`` is about."""
    if rule.owner is None or principal.role not in rule.bound:
        return
    owner = rule.owner(request)
    if inspect.isawaitable(owner):
        owner = await owner
    if owner != (principal if isinstance(owner, Principal) else principal.name):
        raise PermissionDenied(f"{principal} may call {method} only as itself, not as {str(owner)[:64]!r}")


async def authorize(rules: Mapping[str, Rule], principal: Principal, method: str, request: Any) -> Rule:
    """Both checks of one call, for servers that are not gRPC (the edge's HTTP API): the role, then the owner."""
    rule = permitted_rule(rules, principal, method)
    await check_owner(principal, rule, request, method)
    return rule


def _target(request: Any, prefix: str = "", depth: int = 1) -> dict[str, str]:
    """The identifying fields of an audited request (names, versions, ids; one level of nesting,
    e.g. a publish's ``manifest.name``), without bulky payloads."""
    if not isinstance(request, Message):
        return {}
    out: dict[str, str] = {}
    for fd, value in request.ListFields():
        if fd.type == fd.TYPE_STRING:
            out[prefix + fd.name] = ",".join(value)[:200] if fd.is_repeated else value[:80]
        elif fd.type == fd.TYPE_MESSAGE and not fd.is_repeated and depth > 0:
            out.update(_target(value, f"{prefix}{fd.name}.", depth - 1))
    return out


class _FirstMessage:
    """A request stream that remembers its first message (what an audited upload names)."""

    def __init__(self, requests: AsyncIterator[Any]) -> None:
        self._requests = requests
        self.first: Any = None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        async for message in self._requests:
            if self.first is None:
                self.first = message
            yield message


PROBE = Rule(roles=frozenset())  # health and reflection: who may call is ProbeAccess's, not a role's


@dataclass(frozen=True)
class ProbeAccess:
    """Whether health checks and reflection answer callers without a certificate or token (on a
    ``token_listen`` port): health by default (load balancers, kubelets), reflection not (it lists
    the API)."""

    anonymous_health: bool = True
    anonymous_reflection: bool = False

    def anonymous(self, method: str) -> bool:
        return self.anonymous_health if method.startswith(HEALTH) else self.anonymous_reflection


@dataclass
class AccessInterceptor(WrappingInterceptor):
    """Checks every call of a TLS server: ``/netgpt.*`` against ``rules``, health and reflection as
    :class:`ProbeAccess` says; a plaintext server checks nobody."""

    rules: Mapping[str, Rule]
    transport: Transport
    audit: AuditLog | None = None
    tokens: UeTokenVerifier | None = None  # None: UE tokens are refused (UNAUTHENTICATED)
    probes: ProbeAccess = field(default_factory=ProbeAccess)
    revoked: RevokedCertificates | None = None  # the CA's revocation list as this daemon last got it
    _warned: bool = field(default=False, repr=False)

    def covers(self, method: str) -> bool:
        return isinstance(self.transport, Identity)

    async def _admit(self, method: str, context: grpc.aio.ServicerContext) -> tuple[Principal, Rule]:
        if method.startswith((HEALTH, REFLECTION)):
            if self.probes.anonymous(method):
                return ANONYMOUS, PROBE
            probe = peer_principal(context, self.tokens)
            self._check_revoked(probe)
            return probe, PROBE
        principal = peer_principal(context, self.tokens)
        self._check_revoked(principal)
        return principal, permitted_rule(self.rules, principal, method)

    def _check_revoked(self, principal: Principal) -> None:
        check_not_revoked(principal, self.revoked)

    async def _still_valid(self, principal: Principal, method: str, context: grpc.aio.ServicerContext) -> None:
        """Ends a stream in flight whose caller's certificate was revoked since it began."""
        try:
            self._check_revoked(principal)
        except Unauthenticated as exc:
            await self._deny(context, exc, method)

    def _audit(self, principal: Principal, method: str, request: Any, outcome: str, started: float) -> None:
        if self.audit is None:
            return
        if isinstance(request, _FirstMessage):
            request = request.first
        self.audit.write({"ts": round(time.time(), 3), "who": principal.name, "role": principal.role,
                          "method": method, "target": _target(request), "outcome": outcome,
                          "ms": round((time.monotonic() - started) * 1000, 1)})

    async def _deny(self, context: grpc.aio.ServicerContext, exc: NetGptError, method: str) -> None:
        code = status_code(exc)
        log.info("access.denied", method=method, code=code.name, reason=str(exc))
        await context.abort(code, str(exc))

    async def _enter(self, method: str, request: Any,
                     context: grpc.aio.ServicerContext) -> tuple[Principal, Rule, Any]:
        """Admit the call or abort it; returns the caller, its rule and the (checked) request."""
        try:
            principal, rule = await self._admit(method, context)
            if isinstance(request, Message):
                if rejection(request) is None:  # a body that failed validation is refused inside, with its reason
                    await check_owner(principal, rule, request, method)
            else:
                request = self._checked_stream(request, principal, rule, method, context)
                if rule.audit:
                    request = _FirstMessage(request)
        except NetGptError as exc:
            await self._deny(context, exc, method)
            raise  # abort raised already; this keeps the type checker honest
        return principal, rule, request

    @contextlib.contextmanager
    def _acting(self, principal: Principal, rule: Rule, method: str, request: Any,
                context: grpc.aio.ServicerContext) -> Iterator[None]:
        """The servicer runs as ``principal`` (``current_principal()``); audited calls are logged with
        their outcome when they end, however they end."""
        started = time.monotonic()
        token = _current.set(principal)
        outcome = "OK"
        try:
            yield
        except BaseException:
            outcome = _outcome(context)
            raise
        finally:
            _current.reset(token)
            if rule.audit:
                self._audit(principal, method, request, outcome, started)

    def wrap_unary(self, fn: Behaviour, method: str) -> Behaviour:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            principal, rule, request = await self._enter(method, request, context)
            with self._acting(principal, rule, method, request, context):
                return await fn(request, context)

        return unary

    def wrap_stream(self, fn: Behaviour, method: str) -> Behaviour:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            principal, rule, request = await self._enter(method, request, context)
            with self._acting(principal, rule, method, request, context):
                async for item in fn(request, context):
                    await self._still_valid(principal, method, context)  # a heartbeat stream: every beat
                    yield item

        return stream

    def _checked_stream(self, requests: AsyncIterator[Any], principal: Principal, rule: Rule,
                        method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """A request stream whose every message is checked for ownership (a heartbeat names its node),
        and, once a revocation list is held, that the caller's certificate is still not revoked."""
        owned = rule.owner is not None and principal.role in rule.bound
        if not owned and (self.revoked is None or principal.serial is None):
            return requests

        async def checked() -> AsyncIterator[Any]:
            async for message in requests:
                await self._still_valid(principal, method, context)
                if owned:
                    await check_owner(principal, rule, message, method)
                yield message

        return checked()


def _outcome(context: grpc.aio.ServicerContext) -> str:
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "ERROR" if code is None else str(code)
