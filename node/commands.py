"""One dispatcher for the ``NodeCommand``s the core sends on the heartbeat stream."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from netgpt.v1 import control_plane_pb2 as cp_pb2

log = structlog.get_logger(__name__)

COMMAND_KINDS = frozenset(f.name for f in cp_pb2.NodeCommand.DESCRIPTOR.oneofs_by_name["command"].fields)

Handler = Callable[[cp_pb2.NodeCommand], object]  # what a handler returns (a training agent's bool) is ignored


class CommandDispatcher:
    """Routes each command by its ``command`` oneof to the handler registered for that kind."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def on(self, kind: str, handler: Handler) -> CommandDispatcher:
        if kind not in COMMAND_KINDS:
            raise ValueError(f"NodeCommand has no command {kind!r}")
        self._handlers[kind] = handler
        return self

    def __call__(self, command: cp_pb2.NodeCommand) -> None:
        kind = command.WhichOneof("command")
        handler = self._handlers.get(kind or "")
        if handler is None:
            log.warning("node.command_ignored", command_id=command.command_id, kind=kind)
            return
        handler(command)
