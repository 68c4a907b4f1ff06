"""The core's side of certificate revocation (:mod:`netgpt.crl`): it re-reads its ``tls_crl`` file
when the file changes (checked every heartbeat interval), installs a newer CA-signed list in its own
access check, and hands it to every registered node with the node's next heartbeat, and to every
node that registers later. A node refuses revoked peers as soon as it holds the list."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from cp.registry import NodeRegistry
from netgpt.crl import RevokedCertificates, revocations_command
from netgpt.errors import StartupError

log = structlog.get_logger(__name__)


class RevocationDistributor:
    def __init__(self, registry: NodeRegistry, revoked: RevokedCertificates | None, path: str = "") -> None:
        self._registry = registry
        self.revoked = revoked
        self.path = Path(path).expanduser() if path else None
        self._seen = self._stamp()  # the list was read at start (netgpt.server.revoked_certificates)

    def _stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def poll(self) -> bool:
        """Install the file's list if it changed and is newer; hand it to every node. Whether it was new."""
        stamp = self._stamp()
        if self.revoked is None or self.path is None or stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        try:
            installed = self.revoked.load_file(self.path)
        except StartupError as exc:  # a half-copied or foreign file: keep the list held, say why
            log.warning("crl.unreadable", path=str(self.path), reason=str(exc))
            return False
        if installed:
            for status in self._registry.statuses():
                self.on_register(status.info.node_id)
        return installed

    def on_register(self, node_id: str) -> None:
        """A (re-)registered node gets the list before anything else of the kind (an older one undelivered goes)."""
        if self.revoked is not None and self.revoked.number:
            self._registry.queue_replacing(node_id, revocations_command(self.revoked))
