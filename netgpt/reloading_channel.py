"""A client channel that follows its identity's reloads (:mod:`netgpt.reloading`).

gRPC fixes a channel's credentials when it is made, and daemons keep channels for long (to the core, to
clouds, to peers that serve blobs) inside stubs made once. So the channel a daemon gets from
``open_channel`` is this stand-in: each call goes out on a channel made with the identity's newest
certificate, key and CA bundle; after a reload the next call makes a new one, and the one before is
retired: it takes no new calls, and is closed once the calls it carries end (a stream that never ends,
such as a heartbeat, is ended after ``RETIRED_GRACE_S`` and opened again by its owner on the new one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc

from netgpt.reloading import Reloading
from netgpt.tls import Identity

RETIRED_GRACE_S = 3600.0


class _Dispatch:
    """A multicallable (what a stub holds per method) that makes each call on the current channel."""

    def __init__(self, owner: ReloadingChannel, kind: str, method: str, kwargs: dict[str, Any]) -> None:
        self._owner, self._kind, self._method, self._kwargs = owner, kind, method, kwargs
        self._made: tuple[grpc.aio.Channel, Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._owner.current()
        if self._made is None or self._made[0] is not channel:
            self._made = (channel, getattr(channel, self._kind)(self._method, **self._kwargs))
        return self._made[1](*args, **kwargs)


class ReloadingChannel(grpc.aio.Channel):
    """Calls go out on ``build(newest identity)``; see the module's docstring."""

    def __init__(self, source: Reloading[Identity], build: Callable[[Identity], grpc.aio.Channel]) -> None:
        self._source = source
        self._build = build
        self._generation = source.generation
        self._channel = build(source.value)
        self._retired: dict[grpc.aio.Channel, asyncio.Task[None] | None] = {}

    def current(self) -> grpc.aio.Channel:
        """The channel new calls use, made anew after the identity was reloaded."""
        if self._source.generation != self._generation:
            old = self._channel
            self._generation = self._source.generation
            self._channel = self._build(self._source.value)
            self._retire(old)
        return self._channel

    def _retire(self, old: grpc.aio.Channel) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # asked outside a loop (get_state): it is closed with this channel
            self._retired[old] = None
            return
        task = loop.create_task(old.close(RETIRED_GRACE_S), name="retired-channel")
        self._retired[old] = task
        task.add_done_callback(lambda _done: self._retired.pop(old, None))

    def unary_unary(self, method: str, **kwargs: Any) -> Any:
        return _Dispatch(self, "unary_unary", method, kwargs)

    def unary_stream(self, method: str, **kwargs: Any) -> Any:
        return _Dispatch(self, "unary_stream", method, kwargs)

    def stream_unary(self, method: str, **kwargs: Any) -> Any:
        return _Dispatch(self, "stream_unary", method, kwargs)

    def stream_stream(self, method: str, **kwargs: Any) -> Any:
        return _Dispatch(self, "stream_stream", method, kwargs)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.current().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        """Close the current channel and the retired ones (their calls get ``grace`` too)."""
        retired = list(self._retired.items())
        for _channel, task in retired:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for channel, _task in retired:
            await channel.close(grace)
        await self._channel.close(grace)

    async def __aenter__(self) -> ReloadingChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(None)
