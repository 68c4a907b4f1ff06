"""The test suite's throw-away CA: every daemon in the suite runs with mutual TLS and certificate roles.

``tls("edge", "edge-7")`` gives the ``tls_*`` config fields of a daemon running as that node; the
process's default client identity (what ``open_channel(address)`` uses) is the operator.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from netgpt.tls import Identity, LocalPki

_FOLDER = Path(tempfile.mkdtemp(prefix="netgpt-test-pki-"))
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
TEST_PKI = LocalPki(_FOLDER)


def tls(role: str, name: str) -> dict[str, str]:
    return TEST_PKI.settings(role, name)


def identity(role: str, name: str) -> Identity:
    return TEST_PKI.identity(role, name)


def operator() -> Identity:
    return identity("operator", "operator")


def as_node(info: object) -> Identity:
    """The certificate of the node a ``NodeInfo`` describes (its role and node id)."""
    from netgpt.v1 import common_pb2

    role = {common_pb2.NODE_ROLE_EDGE: "edge", common_pb2.NODE_ROLE_CLOUD: "cloud"}[info.role]  # type: ignore[attr-defined]
    return identity(role, info.node_id)  # type: ignore[attr-defined]
