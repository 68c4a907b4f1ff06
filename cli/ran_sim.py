"""``netgpt ran-sim``: replay a mobility trace against the core and drive requests from the moving UEs.

The simulator and its report are :mod:`appkit.ran_sim`; this module parses the command's flags and prints
the report's summary (exit status 1 when any request failed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from appkit.ran_sim import DEFAULT_PROMPT, SimSettings, read_trace, run_trace
from cli.common import Subparsers, add_core_flag, quiet, sync
from netgpt.errors import StartupError


def add_commands(sub: Subparsers) -> None:
    sim = sub.add_parser("ran-sim", help="replay a mobility trace (CSV: time,ue,cell,event) and drive UE traffic")
    sim.add_argument("trace", type=Path, help="CSV with header time,ue,cell,event[,slice,five_qi]")
    add_core_flag(sim)
    sim.add_argument("--speed", type=float, default=1.0, help="trace seconds per wall-clock second")
    sim.add_argument("--prompt", default=DEFAULT_PROMPT, help="the concise prompt every UE sends")
    sim.add_argument("--max-new-tokens", type=int, default=8)
    sim.add_argument("--pause", type=float, default=0.0, metavar="S", help="pause between one UE's requests")
    sim.add_argument("--ue-pki", type=Path, default=None, metavar="DIR",
                     help="a CA folder (`netgpt pki init`) to issue each UE a certificate of its own; without it "
                          "the UEs call with this command's identity (an operator certificate)")
    sim.add_argument("--report", type=Path, default=None, metavar="JSON", help="also write the report here")
    sim.set_defaults(run=quiet(sync(_ran_sim)))


async def _ran_sim(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        raise StartupError("--speed must be > 0")
    events = read_trace(args.trace)
    settings = SimSettings(core=args.core, prompt=args.prompt, max_new_tokens=args.max_new_tokens,
                           speed=args.speed, pause_s=args.pause)
    if args.ue_pki is not None:
        from netgpt.tls import LocalPki

        pki = LocalPki(args.ue_pki)
        settings.ue_transport = lambda ue_id: pki.identity("ue", ue_id)
    report = await run_trace(events, settings)
    document = report.as_json()
    print(json.dumps(document["summary"], indent=2))
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if report.requests_failed == 0 else 1
