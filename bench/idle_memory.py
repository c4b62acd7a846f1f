"""
The proxy's memory per idle client session: RSS of the C{twistd obproxy}
process before and after C{N} clients logged in and stayed idle.

    python bench/idle_memory.py [--clients 10000] [--python EXE] [--concurrency 20] [--trace]

It starts MariaDB with the test bed (C{OBPROXY_TESTBED_DIR}, default
C{/tmp/tb-p1}), raises its C{max_connections}, starts the proxy in its own
process (C{client_max_connections: 0}), logs one client in and out (lazy
imports and first-use caches), reads the proxy's RSS, then opens C{N}
connections from this one process with asyncio (the sans-IO
L{obproxy_tx.wire.connection.ClientConnection} speaks the protocol), logs each
in and leaves it idle. Once all are in it reads the RSS again and prints

    clients N  errors E  rss before/after MiB  per session KiB

where a session is one idle client session together with the idle server
session the proxy logged in for it (ODP completes every login on a server).
Then every client pings (each must get its OK) and all disconnect.

Each client costs the proxy two file descriptors; the process's limit is
raised to its hard limit, and C{N} is lowered to what fits (with a note).
The numbers are printed, never asserted.

C{--trace} runs the proxy under tracemalloc (its RSS is then not the figure)
and prints where the Python allocations per session come from.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import resource
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hotpath import rss_kib, start_proxy  # noqa: E402
from obproxy_tx.wire.connection import ClientConnection  # noqa: E402
from obproxy_tx.wire.constants import Capability  # noqa: E402
from obproxy_tx.wire.packets import (  # noqa: E402
    ComPing,
    ComQuit,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
)
from obproxy_tx.wire.scramble import native_password_response  # noqa: E402

CAPABILITIES = (
    Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_CONNECT_WITH_DB
    | Capability.CLIENT_MULTI_RESULTS
    | Capability.CLIENT_DEPRECATE_EOF
)


class Client:
    """
    One idle client: a socket and its sans-IO conversation.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = ClientConnection(CAPABILITIES)

    async def next_event(self) -> object:
        while True:
            events = self.conn.next_events()
            if events:
                (event,) = events
                return event
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed by the proxy")
            events = self.conn.receive_data(data)
            if events:
                (event,) = events
                return event

    async def login(self, user: str, password: str, database: str) -> None:
        greeting = await self.next_event()
        assert isinstance(greeting, HandshakeV10), greeting
        response = HandshakeResponse41(
            CAPABILITIES & greeting.capabilities,
            1 << 24,
            45,
            user,
            native_password_response(password.encode(), greeting.auth_plugin_data),
            database=database,
            auth_plugin_name="mysql_native_password",
        )
        self.writer.write(self.conn.send(response))
        answer = await self.next_event()
        if not isinstance(answer, OKPacket):
            raise ConnectionError(f"login refused: {answer}")

    async def ping(self) -> None:
        self.writer.write(self.conn.send(ComPing()))
        answer = await self.next_event()
        if not isinstance(answer, OKPacket):
            raise ConnectionError(f"ping answered {answer}")

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing anyway
            self.writer.write(self.conn.send(ComQuit()))
        self.writer.close()


async def open_clients(
    port: int, credentials: Tuple[str, str, str], count: int, concurrency: int
) -> Tuple[List[Client], List[str]]:
    """
    Log C{count} clients in, at most C{concurrency} at a time.
    """
    clients: List[Client] = []
    errors: List[str] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                client = Client(reader, writer)
                await asyncio.wait_for(client.login(*credentials), 60)
                clients.append(client)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one() for _ in range(count)))
    return clients, errors


async def ping_all(clients: List[Client]) -> List[str]:
    errors: List[str] = []

    async def one(client: Client) -> None:
        try:
            await asyncio.wait_for(client.ping(), 60)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(client) for client in clients))
    return errors


#: Installed in the proxy with --trace: SIGUSR2 dumps a tracemalloc snapshot.
SNAPSHOT_HOOK = """
import os, signal, tracemalloc

def _dump(signum, frame):
    path = os.environ["IDLE_MEMORY_SNAPSHOT"] + "." + str(_dump.count)
    _dump.count += 1
    tracemalloc.take_snapshot().dump(path + ".tmp")
    os.rename(path + ".tmp", path)

_dump.count = 0
signal.signal(signal.SIGUSR2, _dump)
"""


def snapshot(pid: int, base: Path, index: int) -> tracemalloc.Snapshot:
    """
    Have the traced proxy dump a snapshot; load it.
    """
    os.kill(pid, signal.SIGUSR2)
    path = Path(f"{base}.{index}")
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the proxy wrote no tracemalloc snapshot")
        time.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


def print_allocations(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, held: int) -> None:
    """
    Bytes per session by allocating line (the innermost obproxy_tx frame when
    there is one, else the innermost frame).
    """
    sites: collections.Counter[str] = collections.Counter()
    total = 0
    for stat in after.compare_to(before, "traceback"):
        total += stat.size_diff
        frames = list(stat.traceback)
        ours = [f for f in frames if "/obproxy_tx/" in f.filename]
        frame = ours[-1] if ours else frames[-1]
        short = frame.filename.split("/obproxy_tx/")[-1].split("site-packages/")[-1]
        sites[f"{short}:{frame.lineno}"] += stat.size_diff
    print(f"python allocations: {total / held:.0f} bytes per session; by line:")
    for site, size in sites.most_common(30):
        print(f"  {size / held:7.0f}  {site}")


def raise_file_limit() -> int:
    """
    Raise this process's open-file limit to its hard limit; return it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--python", default=sys.executable, help="the proxy's interpreter")
    parser.add_argument("--proxy-options", default="", help="extra top-level YAML for the proxy")
    parser.add_argument("--trace", action="store_true", help="where the allocations come from")
    args = parser.parse_args()
    os.environ.setdefault("OBPROXY_TESTBED_DIR", "/tmp/tb-p1")
    # The proxy (a child) inherits the raised limit.
    limit = raise_file_limit()
    count = args.clients
    fits = (limit - 200) // 2
    if count > fits:
        print(
            f"note: {count} clients need {2 * count} descriptors in the proxy (one to the client,"
            f" one to the server each), its limit is {limit}: measuring {fits}"
        )
        count = fits

    from tests import testbed
    from tests.testbed import wireclient

    server = testbed.start("mariadb")
    admin = server.account("admin")
    wireclient.run_sql(
        server.host,
        server.port,
        admin.user,
        admin.password,
        [f"SET GLOBAL max_connections = {max(2000, count + 500)}"],
    )
    account = server.account("native")
    credentials = (account.user, account.password, server.database)
    workdir = Path(tempfile.mkdtemp(prefix="idle-memory-"))
    snapshots = workdir / "snapshot"
    if args.trace:
        hook = workdir / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SNAPSHOT_HOOK)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(hook), os.environ.get("PYTHONPATH")])
        )
        os.environ["PYTHONTRACEMALLOC"] = "10"
        os.environ["IDLE_MEMORY_SNAPSHOT"] = str(snapshots)
    proxy = start_proxy(
        args.python,
        (server.host, server.port),
        account.user,
        account.password,
        workdir,
        "client_max_connections: 0\n" + args.proxy_options,
    )
    assert proxy.pid is not None
    try:
        loop = asyncio.new_event_loop()
        # Warm up: one login, a ping, a quit.
        warm, errors = loop.run_until_complete(open_clients(proxy.port, credentials, 1, 1))
        if errors:
            raise SystemExit(f"warm-up login failed: {errors[0]}")
        loop.run_until_complete(ping_all(warm))
        for client in warm:
            client.close()
        time.sleep(1.0)
        before = rss_kib(proxy.pid)
        traced_before = snapshot(proxy.pid, snapshots, 0) if args.trace else None
        began = time.monotonic()
        clients, errors = loop.run_until_complete(
            open_clients(proxy.port, credentials, count, args.concurrency)
        )
        took = time.monotonic() - began
        time.sleep(1.0)
        after = rss_kib(proxy.pid)
        traced_after = snapshot(proxy.pid, snapshots, 1) if args.trace else None
        held = len(clients)
        per = (after - before) / held if held else float("nan")
        print(
            f"clients {held}  errors {len(errors)}  rss before {before / 1024:.1f} MiB"
            f"  after {after / 1024:.1f} MiB  per session {per:.1f} KiB"
            f"  (logins took {took:.1f} s)"
        )
        if errors:
            print(f"  first error: {errors[0]}")
        if traced_before is not None and traced_after is not None and held:
            print_allocations(traced_before, traced_after, held)
        ping_errors = loop.run_until_complete(ping_all(clients))
        print(f"pinged {held - len(ping_errors)} of {held}, errors {len(ping_errors)}")
        if ping_errors:
            print(f"  first error: {ping_errors[0]}")
        for client in clients:
            client.close()
        loop.run_until_complete(asyncio.sleep(0.5))
        loop.close()
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
