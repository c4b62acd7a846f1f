"""
A TCP relay that can be paused: the soak test (L{tests.soak.soak}) puts one in front of a backend
so that the network between the proxy and that server can stall and come back.

While paused, the relay accepts nothing new into the pipe: bytes already read from either side
are held, nothing more is read, so both ends see a connection that simply stops moving (as a
congested or partitioned link does), without a reset. L{PausableRelay.resume} lets everything
go on where it stopped. It runs an asyncio loop in its own thread, so the driver's threads can
call L{PausableRelay.pause} and L{PausableRelay.resume} directly.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable, List, Set


class PausableRelay:
    """
    Relay 127.0.0.1:L{port} to C{target_host}:C{target_port}, one upstream connection per
    accepted connection.

    @ivar port: the port the relay listens on (chosen by the system), set by L{start}.
    @ivar connections: how many connections were accepted so far.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="soak-relay", daemon=True)
        self._open: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: Set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._listen())
        self._ready.set()
        self._loop.run_forever()

    async def _listen(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def start(self) -> PausableRelay:
        """Start listening (returns when L{port} is known)."""
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection, and end the thread."""

        async def close() -> None:
            assert self._server is not None and self._open is not None
            self._open.set()
            self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def pause(self) -> None:
        """Stall every relayed connection (and new ones) until L{resume}; applied on return."""
        self._in_loop(self._event().clear)

    def resume(self) -> None:
        """Let the relayed bytes flow again; applied on return."""
        self._in_loop(self._event().set)

    def _in_loop(self, action: Callable[[], None]) -> None:
        async def call() -> None:
            action()

        asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def _event(self) -> asyncio.Event:
        assert self._open is not None, "not started"
        return self._open

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        # A stalled link also holds connection attempts: the proxy's connect timeout sees it.
        await self._event().wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        pair: List[asyncio.StreamWriter] = [writer, up_writer]
        self._writers.update(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for one in pair:
                self._writers.discard(one)
                one.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._event().wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            # Either side ending ends both (a half-close is not what MySQL peers do).
            writer.close()
