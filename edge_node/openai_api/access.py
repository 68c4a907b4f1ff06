"""Who calls the HTTP API and what they may do: the edge's gRPC rules, applied to HTTP.

With TLS the caller is the client certificate it presented (verified against the deployment's CA
at the handshake) or, without one, the UE token in ``Authorization: Bearer`` (a UE, as the token
names it; :mod:`netgpt.ue_tokens`); neither, or a token that is expired, revoked, altered or signed
by another key → 401. Each step of a call is checked against
:func:`netgpt.access_rules.edge_http_rules` (a wrong role or another UE's session → 403). A
plaintext edge (``--insecure``, loopback development) checks nobody, as its gRPC server does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netgpt.access import DEVELOPMENT, Principal, Rule, authorize, caller_principal, check_not_revoked
from netgpt.crl import RevokedCertificates
from netgpt.http_server import peer_certificate
from netgpt.ue_tokens import UeTokenVerifier


def _authorization(scope: Mapping[str, Any]) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    return None


@dataclass(frozen=True)
class HttpAccess:
    rules: Mapping[str, Rule]
    secure: bool
    tokens: UeTokenVerifier | None = None  # None: UE tokens are refused (401)
    revoked: RevokedCertificates | None = None  # the CA's revocation list, as the edge's gRPC server holds it

    def caller(self, scope: Mapping[str, Any]) -> Principal:
        """The principal behind the request of ``scope`` (Unauthenticated without a certificate or valid token,
        or with a revoked certificate)."""
        if not self.secure:
            return DEVELOPMENT
        principal = caller_principal(peer_certificate(scope), _authorization(scope), self.tokens)
        check_not_revoked(principal, self.revoked)
        return principal

    async def check(self, caller: Principal, method: str, request: Any) -> None:
        """PermissionDenied unless ``caller`` may make the call ``method`` names about ``request``."""
        if self.secure:
            await authorize(self.rules, caller, method, request)
