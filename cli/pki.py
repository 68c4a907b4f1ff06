"""``netgpt pki``: the deployment's CA and the certificates of its daemons, operators and UEs."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import Subparsers
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


def _init(args: argparse.Namespace) -> int:
    made = init_ca(args.out, name=args.name, force=args.force)
    print(f"CA: {made.cert} (give it to every party as --tls-ca)\nkey: {made.key} (only `netgpt pki issue` needs it)")
    return 0


def _issue(args: argparse.Namespace) -> int:
    made = issue(args.ca, args.role, args.name, hosts=args.host, out=args.out, days=args.days)
    print(f"{args.role} {args.name}: --tls-ca {made.ca} --tls-cert {made.cert} --tls-key {made.key}")
    return 0
