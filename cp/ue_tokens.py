"""The core's side of UE tokens (:mod:`netgpt.ue_tokens`): it signs a token for each UE the RAN attaches
or hands over, revokes a UE's tokens when it detaches, and keeps every edge's copy of the keys and
revocations current through the heartbeat stream.

Revocations are also written to the core's state file (:mod:`cp.ue_token_store`), so a detached
UE's token stays refused after a core restart.

Key distribution: an edge gets the public keys with the snapshot queued when it registers (also after
a core restart), over the mutually authenticated channel it already trusts for sessions, policies
and deployments: nothing to copy between hosts, and a new core key reaches every edge when it
registers again. Revocation: a detach is queued to every edge as an addition, delivered with the
edge's next heartbeat, so a detached UE's tokens stop working everywhere within one heartbeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from cp.registry import NodeRegistry
from cp.ue_token_store import ALL_UES, MemoryRevocations, RevocationStore
from netgpt.ue_tokens import DEFAULT_TTL_S, IssuedToken, TokenState, UeTokenSigner, UeTokenVerifier
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2

log = structlog.get_logger(__name__)

TOKEN_ROLES = (common_pb2.NODE_ROLE_EDGE,)  # the nodes UEs call (clouds take calls from edges only)


def _seconds(timestamp: Timestamp) -> float:
    return timestamp.ToNanoseconds() / 1e9


def encode_state(state: TokenState) -> cp_pb2.UeTokenState:
    keys = [cp_pb2.UeTokenKey(key_id=kid, public_key_pem=pem) for kid, pem in state.keys.items()]
    message = cp_pb2.UeTokenState(snapshot=state.snapshot, keys=keys)
    for ue_id, issued_before in state.revocations.items():
        entry = message.revocations.add(ue_id=ue_id)
        entry.issued_before.FromNanoseconds(round(issued_before * 1e9))
    if state.revoked_before:
        message.revoked_before.FromNanoseconds(round(state.revoked_before * 1e9))
    return message


def decode_state(message: cp_pb2.UeTokenState) -> TokenState:
    return TokenState(keys={key.key_id: key.public_key_pem for key in message.keys},
                      revocations={r.ue_id: _seconds(r.issued_before) for r in message.revocations},
                      revoked_before=_seconds(message.revoked_before) if message.HasField("revoked_before") else 0.0,
                      snapshot=message.snapshot)


class UeTokenAuthority:
    """Issues and revokes UE tokens, and checks them for the core's own server (``verifier``)."""

    def __init__(self, signer: UeTokenSigner, registry: NodeRegistry, ttl_s: float = DEFAULT_TTL_S,
                 store: RevocationStore | None = None, clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.ttl_s = ttl_s
        self._registry = registry
        self._store: RevocationStore = store if store is not None else MemoryRevocations()
        self._clock = clock
        self.verifier = UeTokenVerifier(clock=clock)
        self.verifier.trust({signer.key_id: signer.public_pem})
        kept = self._store.load()  # what a previous run revoked
        self.verifier.revocations.replace({ue: at for ue, at in kept.items() if ue != ALL_UES}, kept.get(ALL_UES, 0.0))
        self.verifier.revocations.prune(clock())

    def issue(self, ue_id: str, cell_id: str, slice_id: str = "") -> IssuedToken:
        issued = self.signer.issue(ue_id, cell_id, slice_id, self.ttl_s)
        log.info("ue_tokens.issued", ue_id=ue_id, cell_id=cell_id, token_id=issued.claims.token_id,
                 expires_at=issued.claims.expires_at)
        return issued

    def revoke(self, ue_id: str) -> None:
        """Refuse every token of ``ue_id`` issued until now, here and (with their next heartbeat) at every edge."""
        now = self._clock()
        revocations = self.verifier.revocations
        revocations.revoke(ue_id, now)
        revocations.prune(now)
        self._store.put(ue_id, now)  # before the reply: a restart must not bring the token back
        if revocations.revoked_before:
            self._store.put(ALL_UES, revocations.revoked_before)
        self._store.prune(revocations.horizon(now))
        addition = encode_state(TokenState(revocations={ue_id: now}, revoked_before=revocations.revoked_before))
        edges = [s.info.node_id for s in self._registry.statuses() if s.info.role in TOKEN_ROLES]
        for node_id in edges:
            self._registry.queue_command(node_id, cp_pb2.NodeCommand(ue_tokens=addition))
        log.info("ue_tokens.revoked", ue_id=ue_id, edges=edges, revoked=len(revocations))

    def snapshot(self) -> TokenState:
        revocations = self.verifier.revocations
        revocations.prune(self._clock())
        return TokenState(keys={self.signer.key_id: self.signer.public_pem}, revocations=revocations.entries(),
                          revoked_before=revocations.revoked_before, snapshot=True)

    def on_register(self, node_id: str) -> None:
        """A (re-)registered edge gets the keys and every live revocation, before anything else of the kind."""
        if self._registry.get(node_id).info.role in TOKEN_ROLES:
            self._registry.queue_replacing(node_id, cp_pb2.NodeCommand(ue_tokens=encode_state(self.snapshot())))
