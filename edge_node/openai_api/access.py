"""Who calls the HTTP API and what they may do: the edge's gRPC rules, applied to HTTP.

With TLS the caller is the client certificate it presented (verified against the deployment's CA
at the handshake; none → 401), and each step of a call is checked against
:func:`netgpt.access_rules.edge_http_rules` (a wrong role or another UE's session → 403). A
plaintext edge (``--insecure``, loopback development) checks nobody, as its gRPC server does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netgpt.access import DEVELOPMENT, Principal, Rule, authorize, certificate_principal
from netgpt.http_server import peer_certificate


@dataclass(frozen=True)
class HttpAccess:
    rules: Mapping[str, Rule]
    secure: bool

    def caller(self, scope: Mapping[str, Any]) -> Principal:
        """The principal behind the connection of ``scope`` (Unauthenticated without a certificate)."""
        if not self.secure:
            return DEVELOPMENT
        return certificate_principal(peer_certificate(scope))

    async def check(self, caller: Principal, method: str, request: Any) -> None:
        """PermissionDenied unless ``caller`` may make the call ``method`` names about ``request``."""
        if self.secure:
            await authorize(self.rules, caller, method, request)
