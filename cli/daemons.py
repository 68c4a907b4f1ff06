"""``netgpt core|cloud|edge``: the daemons. Their packages (and torch / ONNX Runtime) are imported
inside the run functions, so ``netgpt --help`` stays fast."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from cli.common import Run, Subparsers
from netgpt import config as cfg
from netgpt.logs import configure_logging
from netgpt.tracing import configure_tracing


def add_commands(sub: Subparsers) -> None:
    for name, cls, run, text in (  # each run is typed with its own settings class
        ("core", cfg.CoreConfig, _daemon("core", cfg.CoreConfig, _serve_core),
         "core controller: control plane + compute plane"),
        ("cloud", cfg.CloudConfig, _daemon("cloud", cfg.CloudConfig, _serve_cloud),
         "cloud node: LLaMA (+LoRA) on torch"),
        ("edge", cfg.EdgeConfig, _daemon("edge", cfg.EdgeConfig, _serve_edge),
         "edge node: GPT-2 on ONNX Runtime, personalisation, routing"),
    ):
        daemon = sub.add_parser(name, help=text, description=f"{text}. Settings: defaults < --config [{name}] "
                                f"< NETGPT_{name.upper()}_<KEY> env < flags.")
        cfg.add_flags(daemon, cls)
        daemon.set_defaults(run=run)


class _Settings(Protocol):
    """What running a daemon reads of its settings (CoreConfig, CloudConfig, EdgeConfig)."""

    log_level: str
    otlp_endpoint: str


C = TypeVar("C", bound=_Settings)


def _daemon(section: str, cls: type[C], serve: Callable[[C], Coroutine[Any, Any, None]]) -> Run:
    def run(args: argparse.Namespace) -> int:
        config = cfg.load(cls, section, args)
        configure_logging(json=True, level=config.log_level)
        configure_tracing(f"netgpt-{section}", config.otlp_endpoint)
        asyncio.run(serve(config))
        return 0

    return run


async def _serve_core(config: cfg.CoreConfig) -> None:
    from core.daemon import start_core
    from netgpt.server import serve_until_signalled

    handle = await start_core(config)
    await serve_until_signalled(handle, config.grace_s)


async def _serve_cloud(config: cfg.CloudConfig) -> None:
    from cloud_node.daemon import load_cloud_model, start_cloud
    from netgpt.server import serve_until_signalled

    model = await asyncio.to_thread(load_cloud_model, config)
    await serve_until_signalled(await start_cloud(config, model), config.grace_s)


async def _serve_edge(config: cfg.EdgeConfig) -> None:
    from edge_node.daemon import load_edge_model, load_knowledge, start_edge
    from netgpt.server import serve_until_signalled

    knowledge = load_knowledge(config)
    model = await asyncio.to_thread(load_edge_model, config)
    await serve_until_signalled(await start_edge(config, model, knowledge), config.grace_s)
