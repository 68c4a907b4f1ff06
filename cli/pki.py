"""``netgpt pki``: the deployment's CA and the certificates of its daemons, operators and UEs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import Subparsers
from netgpt.crl import revoke, serials_of
from netgpt.pki import ROLES, init_ca, issue


def add_commands(sub: Subparsers) -> None:
    actions = sub.add_parser("pki", help="create a CA and issue certificates (mutual TLS between every party)")
    pki = actions.add_subparsers(dest="action", required=True)
    init = pki.add_parser("init", help="create a CA: DIR/ca.crt and DIR/ca.key (keep ca.key offline)")
    init.add_argument("--out", type=Path, required=True, metavar="DIR")
    init.add_argument("--name", default="netgpt-ca", help="the CA's common name")
    init.add_argument("--force", action="store_true", help="replace an existing CA (orphans its certificates)")
    init.set_defaults(run=_init)
    cert = pki.add_parser("issue", help="issue NAME.crt + NAME.key for a role; the name is the node, "
                                        "operator or UE id the holder acts as")
    cert.add_argument("--ca", type=Path, required=True, metavar="DIR", help="folder of ca.crt + ca.key")
    cert.add_argument("--role", required=True, choices=ROLES)
    cert.add_argument("--name", required=True, help="node id (edge-1), operator id or UE id")
    cert.add_argument("--host", action="append", default=[], metavar="HOST",
                      help="DNS name or IP the holder serves on (repeatable; loopback is always included)")
    cert.add_argument("--out", type=Path, default=None, metavar="DIR", help="default: the CA folder")
    cert.add_argument("--days", type=int, default=397)
    cert.set_defaults(run=_issue)
    revoke = pki.add_parser("revoke", help="revoke certificates: add them to DIR/ca.crl, the CA's revocation list "
                                           "(the core's tls_crl; it hands the list to every node)")
    revoke.add_argument("--ca", type=Path, required=True, metavar="DIR", help="folder of ca.crt + ca.key")
    revoke.add_argument("--serial", type=serial, action="append", default=[], metavar="N",
                        help="certificate serial, decimal or 0x-hex (repeatable)")
    revoke.add_argument("--name", action="append", default=[], metavar="NAME",
                        help="every certificate `pki issue` made for NAME (repeatable)")
    revoke.set_defaults(run=_revoke)


def serial(text: str) -> int:
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a serial (decimal, or hex with 0x)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: serials are positive")
    return value


def _init(args: argparse.Namespace) -> int:
    made = init_ca(args.out, name=args.name, force=args.force)
    print(f"CA: {made.cert} (give it to every party as --tls-ca)\nkey: {made.key} (only `netgpt pki issue` needs it)")
    return 0


def _issue(args: argparse.Namespace) -> int:
    made = issue(args.ca, args.role, args.name, hosts=args.host, out=args.out, days=args.days)
    print(f"{args.role} {args.name}: --tls-ca {made.ca} --tls-cert {made.cert} --tls-key {made.key}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if not args.serial and not args.name:
        print("netgpt pki revoke: give --serial or --name", file=sys.stderr)
        return 2
    serials = [*args.serial, *(found for name in args.name for found in serials_of(args.ca, name))]
    made = revoke(args.ca, serials)
    added = ", ".join(f"{s:#x}" for s in made.serials) or "none new"
    print(f"{made.path}: revocation list {made.number}, {made.total} revoked ({added}); the core re-reads its "
          "tls_crl within a heartbeat and hands the list to every node")
    return 0
