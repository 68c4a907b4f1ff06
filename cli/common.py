"""What every ``netgpt`` command module shares: the core's address, enum choices taken from the
protos, one way to call the core, and one way to turn an error into a message and an exit status.

Keep this module light (no torch, no onnxruntime, no plane or node packages): ``netgpt --help``
imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import TypeAlias, TypeVar, cast

import grpc
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from netgpt.channels import DEFAULT_TIMEOUT_S, open_channel, set_default_transport
from netgpt.config import NodeConfig
from netgpt.errors import StartupError
from netgpt.logs import configure_logging
from netgpt.tls import resolve
from netgpt.words import enum_word

__all__ = ["DEFAULT_CORE", "DEFAULT_TIMEOUT_S", "Run", "Subparsers", "add_core_flag", "call_core", "core_actions",
           "enum_choices", "enum_list", "label", "on_core", "quiet", "report_error", "sync", "usage_error",
           "add_identity_flags", "use_client_identity"]

# The client commands default to where a node looks for the core: one definition, in the config.
DEFAULT_CORE: str = NodeConfig.core

Run = Callable[[argparse.Namespace], int]
# what ``add_subparsers`` returns; each module adds its commands to it (a string: not subscriptable at run time)
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

S = TypeVar("S")
T = TypeVar("T")
E = TypeVar("E", bound=int)  # a protobuf enum's value type (``common_pb2.NodeRole``)


def add_core_flag(parser: argparse.ArgumentParser) -> None:
    """``--core`` and the client's identity flags (every command that calls a daemon has them)."""
    parser.add_argument("--core", default=DEFAULT_CORE,
                        help=f"core controller address, or several replicas comma-separated (a:50051,b:50051): "
                             f"calls go to the first that answers (default: {DEFAULT_CORE})")
    add_identity_flags(parser)


CLIENT_ENV = {"tls_ca": "NETGPT_TLS_CA", "tls_cert": "NETGPT_TLS_CERT", "tls_key": "NETGPT_TLS_KEY"}


def add_identity_flags(parser: argparse.ArgumentParser) -> None:
    """Who this command calls as: PEM files from ``netgpt pki`` (flags, else NETGPT_TLS_* env), or
    ``--insecure`` (NETGPT_INSECURE=1) for a loopback development cluster."""
    group = parser.add_argument_group("identity (mutual TLS)")
    for dest, env in CLIENT_ENV.items():
        flag = "--" + dest.replace("_", "-")
        group.add_argument(flag, dest=dest, default=None, metavar="PEM", help=f"default: ${env}")
    group.add_argument("--insecure", action="store_true", default=None,
                       help="plaintext to a loopback development cluster (default: $NETGPT_INSECURE)")
    parser.set_defaults(client_identity=True)


def use_client_identity(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> None:
    """Make the command's identity the process default (what every ``open_channel`` here uses).

    Nothing given leaves it unset: a command that never dials (``train start --local``) runs, and
    one that dials stops at its first call with the one-line "no client identity" error."""
    env = os.environ if env is None else env
    files = {dest: getattr(args, dest, None) or env.get(name, "") for dest, name in CLIENT_ENV.items()}
    insecure = bool(getattr(args, "insecure", None)) or env.get("NETGPT_INSECURE", "") in ("1", "true", "yes")
    if not insecure and not any(files.values()):
        return
    set_default_transport(resolve(files["tls_ca"], files["tls_cert"], files["tls_key"], insecure,
                                  getattr(args, "core", DEFAULT_CORE), "netgpt client"))


# --- enum choices from the protos ---------------------------------------------------------


def enum_choices(enum: type[E], unspecified: str | None = None,
                 exclude: Collection[str] = ()) -> dict[str, E]:
    """``{word: value}`` for an enum's values, words as :func:`netgpt.words.enum_word` writes them
    with ``-`` (``MODEL_KIND_ONNX_EDGE`` → ``onnx-edge``). ``*_UNSPECIFIED`` is left out unless
    ``unspecified`` names the word that selects it (``auto``, ``all``); ``exclude`` drops words."""
    # The generated stubs declare an enum as an int subclass (``common_pb2.NodeRole``) whose metaclass is
    # EnumTypeWrapper, and type its values() as plain int: the casts only restore the enum's own value type.
    wrapper = cast(EnumTypeWrapper, enum)
    choices: dict[str, E] = {}
    for value in wrapper.values():
        word = enum_word(wrapper, value, sep="-")
        if value == 0:
            if unspecified:
                choices[unspecified] = cast(E, value)
        elif word not in exclude:
            choices[word] = cast(E, value)
    return choices


def enum_list(choices: Mapping[str, E]) -> Callable[[str], list[E]]:
    """An argparse ``type`` for comma-separated words of ``choices`` (``lookup,chat`` → ``[2, 1]``)."""

    def parse(text: str) -> list[E]:
        words = [w.strip().lower().replace("_", "-") for w in text.split(",") if w.strip()]
        unknown = [w for w in words if w not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))}; "
                                             f"choose from {', '.join(choices)}")
        return [choices[w] for w in words]

    return parse


# --- calling the core ---------------------------------------------------------------------


async def on_core(core: str, stub_type: Callable[[grpc.aio.Channel], S], call: Callable[[S], Awaitable[T]]) -> T:
    """Open a channel to the core (the project's channel factory), run ``call(stub)``, close it.

    For a conversation of several calls; each call inside sets its own deadline."""
    async with open_channel(core) as channel:
        return await call(stub_type(channel))


async def call_core(core: str, stub_type: Callable[[grpc.aio.Channel], S],
                    rpc: Callable[[S], Callable[..., Awaitable[T]]], request: object,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> T:
    """One unary call to the core with a deadline: ``call_core(addr, Stub, lambda s: s.ListNodes, req)``."""
    return await on_core(core, stub_type, lambda stub: rpc(stub)(request, timeout=timeout_s))


def quiet(run: Run) -> Run:
    """Warnings only, on stderr: the command's own output is what the operator reads."""

    def quiet_run(args: argparse.Namespace) -> int:
        configure_logging(json=False, level="warning")
        return run(args)

    return quiet_run


def core_actions(sub: Subparsers, name: str, text: str) -> Callable[[str, Run, str], argparse.ArgumentParser]:
    """A command group (``netgpt NAME ACTION``) whose actions each talk to the core: returns
    ``action(name, run, text)``, which adds one with ``--core`` and quiet logging."""
    actions = sub.add_parser(name, help=text).add_subparsers(dest="action", required=True)

    def action(action_name: str, run: Run, action_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(action_name, help=action_text, description=action_text)
        add_core_flag(parser)
        parser.set_defaults(run=quiet(run))
        return parser

    return action


def sync(command: Callable[[argparse.Namespace], Coroutine[object, object, int]]) -> Run:
    """A command written as a coroutine, run on an event loop of its own."""
    return lambda args: asyncio.run(command(args))


# --- errors -------------------------------------------------------------------------------


def label(args: argparse.Namespace) -> str:
    """``netgpt workflow apply``: the command (and action) an error message starts with."""
    words = [getattr(args, "command", None), getattr(args, "action", None)]
    return " ".join(["netgpt", *(w for w in words if w)])


def report_error(args: argparse.Namespace, exc: BaseException) -> int:
    """The one place an error becomes a line on stderr and an exit status: a refusal to start or
    a bad input → 2 (``netgpt edge: error: ...``), a failed call → 1 (``netgpt ask: UNAVAILABLE: ...``)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        details = " ".join((exc.details() or "").split())  # one line, whatever the transport wrote
        print(f"{label(args)}: {exc.code().name}: {details}", file=sys.stderr)
        return 1
    if isinstance(exc, StartupError):
        return usage_error(args, str(exc))
    raise exc


def usage_error(args: argparse.Namespace, message: str) -> int:
    print(f"{label(args)}: error: {message}", file=sys.stderr)
    return 2
