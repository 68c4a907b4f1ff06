"""``netgpt token issue``: a UE token signed with the core's key, for operators and tests.

The RAN gets tokens from ``RanService.AttachUe``; this signs one offline with the core's key file
(:class:`netgpt.ue_tokens.UeTokenSigner`), so it runs on the core's host (or wherever the key is).
Detaching the UE revokes it like any other of the UE's tokens.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from cli.common import Subparsers, usage_error
from cmp.store import default_store_dir
from netgpt.errors import InvalidArgument
from netgpt.ue_tokens import DEFAULT_TTL_S, KEY_FILE, UeTokenSigner

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` → seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 1h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_commands(sub: Subparsers) -> None:
    actions = sub.add_parser("token", help="UE tokens: what a UE presents instead of a client certificate")
    token = actions.add_subparsers(dest="action", required=True)
    issue = token.add_parser("issue", help="sign a token for a UE with the core's key; prints the token")
    issue.add_argument("--ue", required=True, help="the UE id the token names")
    issue.add_argument("--cell", required=True, help="the UE's cell")
    issue.add_argument("--slice", default="", help="the UE's slice (S-NSSAI), optional")
    issue.add_argument("--ttl", type=parse_duration, default=DEFAULT_TTL_S, metavar="DURATION",
                       help="lifetime: 90s, 15m, 1h (default), up to 1d")
    issue.add_argument("--key", type=Path, default=None, metavar="PEM",
                       help=f"the core's signing key (default: {KEY_FILE} in the core's default store dir)")
    issue.add_argument("--json", action="store_true", help="print the token with its claims as JSON")
    issue.set_defaults(run=_issue)


def _issue(args: argparse.Namespace) -> int:
    signer = UeTokenSigner.from_file(args.key or default_store_dir() / KEY_FILE)
    try:
        issued = signer.issue(args.ue, args.cell, args.slice, args.ttl)
    except InvalidArgument as exc:
        return usage_error(args, str(exc))
    if args.json:
        claims = issued.claims
        print(json.dumps({"token": issued.token, "ue_id": claims.ue_id, "cell_id": claims.cell_id,
                          "slice_id": claims.slice_id, "token_id": claims.token_id, "issued_at": claims.issued_at,
                          "expires_at": claims.expires_at}))
    else:
        print(issued.token)
    return 0
