"""An emulated WAN link for benchmarks: a loopback TCP proxy adding one-way delay and a bandwidth cap.

Each direction is serialised at ``mbit_s`` and delivered ``rtt_ms / 2`` later, in order,
which is what a shaped link (tc netem + tbf) does to a TCP stream, without needing
root or network namespaces. Bytes are counted per direction.

``python -m bench.link`` runs two links in a process of their own (``serve``), for benches whose
daemons are separate processes, so the proxy's timing does not share an event loop with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass


@dataclass
class LinkStats:
    bytes_up: int = 0  # client → server (e.g. edge → cloud)
    bytes_down: int = 0


class EmulatedLink:
    def __init__(self, upstream: str, rtt_ms: float = 40.0, mbit_s: float = 50.0) -> None:
        self.upstream = upstream
        self.one_way_s = rtt_ms / 2000.0
        self.bytes_per_s = mbit_s * 1e6 / 8
        self.stats = LinkStats()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.upstream.rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pump(reader, up_writer, up=True), self._pump(up_reader, writer, up=False),
                                 return_exceptions=True)
        except asyncio.CancelledError:  # the benchmark is closing the link
            writer.close()
            up_writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(queue, writer))
        line_free_at = 0.0
        try:
            while data := await reader.read(65536):
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                now = time.monotonic()
                line_free_at = max(now, line_free_at) + len(data) / self.bytes_per_s
                await queue.put((line_free_at + self.one_way_s, data))
        finally:
            await queue.put(None)
            await deliver

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter) -> None:
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the peer went away or the benchmark is shutting the link down
        finally:
            writer.close()


async def serve(rtt_ms: float, mbit_s: float) -> None:
    """Two links in this process, for benches whose daemons run as separate processes: prints
    ``{"edge_side": ..., "ue_side": ...}`` (the addresses to dial) as a JSON line, then answers one
    JSON line per stdin command — ``upstream HOST:PORT`` (both links' far end), ``stats`` (bytes per
    link and direction) — until stdin closes."""
    links = {"edge_side": EmulatedLink("", rtt_ms, mbit_s), "ue_side": EmulatedLink("", rtt_ms, mbit_s)}
    sides = {name: await link.start() for name, link in links.items()}
    print(json.dumps(sides), flush=True)
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            command, _, argument = line.strip().partition(" ")
            if command == "upstream":
                for link in links.values():
                    link.upstream = argument
                print(json.dumps({"upstream": argument}), flush=True)
            elif command == "stats":
                print(json.dumps({name: vars(link.stats) for name, link in links.items()}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    finally:
        for link in links.values():
            await link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="emulated links in their own process (see serve())")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--mbit-s", type=float, default=50.0)
    args = parser.parse_args()
    asyncio.run(serve(args.rtt_ms, args.mbit_s))


if __name__ == "__main__":
    main()
