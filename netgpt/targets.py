"""Addresses with fail-over: ``host:port`` or a comma-separated list of core replicas.

A list becomes one gRPC target over every address (``ipv4:a:p,b:q``) with gRPC's own ``pick_first``
policy: the channel connects to the first address that answers, and when that connection drops it
re-connects through the list again, so calls move to the next replica without the caller noticing.
Host names are resolved when the channel is made (a node's agent re-makes its channel when the core
stops answering, which resolves them again).

TLS checks every replica's certificate against the *first* host of the list (a channel has one
authority): issue each replica's certificate with every replica's host (``netgpt pki issue core
core-b --host core-a --host core-b``), or give the replicas one shared service name.
"""

from __future__ import annotations

import ipaddress
import socket

from netgpt.errors import StartupError

AUTHORITY_OPTION = "grpc.default_authority"


def split_addresses(spec: str) -> list[str]:
    """``"a:1, b:2"`` → ``["a:1", "b:2"]``; each must be ``host:port``; duplicates are dropped."""
    addresses = list(dict.fromkeys(part.strip() for part in spec.split(",") if part.strip()))
    if not addresses:
        raise StartupError(f"address {spec!r}: give host:port (or several, comma-separated)")
    for address in addresses:
        host_port(address)
    return addresses


def host_port(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) as (host without brackets, port); StartupError naming it when not."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StartupError(f"address {address!r}: expected host:port (e.g. 10.0.0.5:50051 or [::1]:50051)")
    return host, int(port)


def rotated(addresses: list[str], by: int) -> list[str]:
    """The list starting at its ``by``-th address (wrapping): the order a re-made channel tries."""
    shift = by % len(addresses)
    return addresses[shift:] + addresses[:shift]


def channel_target(spec: str) -> tuple[str, list[tuple[str, object]]]:
    """The gRPC target for ``spec`` and the channel options it needs (none for one address)."""
    addresses = split_addresses(spec)
    if len(addresses) == 1:
        return addresses[0], []
    resolved = [ip for address in addresses for ip in _resolve(address)]
    v4 = [ip for ip in resolved if not ip.startswith("[")]
    v6 = [ip for ip in resolved if ip.startswith("[")]
    if not resolved:
        raise StartupError(f"none of the addresses {', '.join(addresses)} resolves")
    target = f"ipv4:{','.join(v4)}" if v4 else f"ipv6:{','.join(v6)}"
    return target, [(AUTHORITY_OPTION, host_port(addresses[0])[0])]


def _resolve(address: str) -> list[str]:
    """``address`` as ``ip:port`` entries (IPv6 in brackets); a host that does not resolve gives none."""
    host, port = host_port(address)
    try:
        ip = ipaddress.ip_address(host)
        return [f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    found = dict.fromkeys(info[4][0] for info in infos)
    return [f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}" for ip in found]
