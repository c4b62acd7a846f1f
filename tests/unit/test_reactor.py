"""
Tests for L{obproxy_tx.reactor}: the epoll reactor's dispatch without the
legacy logging context, driven one poll at a time over socket pairs (the
reactor is made, never installed or run).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any, Iterator, List

import pytest
from twisted.internet import main
from twisted.internet.abstract import FileDescriptor
from twisted.python import context, log

from obproxy_tx import reactor as proxy_reactor

pytestmark = pytest.mark.skipif(proxy_reactor.EPollReactor is None, reason="epoll is Linux's")


class Reader(FileDescriptor):
    """
    A socket read by the reactor: C{doRead} reads what is there and returns
    (or raises) what the test asks.
    """

    def __init__(self, sock: socket.socket, reactor: Any, outcome: Any = None) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.outcome = outcome
        self.seen: List[bytes] = []
        self.systems: List[Any] = []
        self.lost: List[Any] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:  # noqa: N802
        return "reader"

    def doRead(self) -> Any:  # noqa: N802
        self.seen.append(self.sock.recv(100))
        self.systems.append(context.get(log.ILogContext, {}).get("system"))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self.lost.append(reason)


@pytest.fixture()
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


@pytest.fixture()
def poller() -> Iterator[Any]:
    made = proxy_reactor.ProxyReactor()
    yield made
    made._poller.close()


def test_read_event_calls_do_read_directly(pair: Any, poller: Any) -> None:
    """
    A readable socket is read by its C{doRead}, outside any legacy logging
    context, and stays connected.
    """
    ours, theirs = pair
    reader = Reader(ours, poller)
    poller.addReader(reader)
    theirs.sendall(b"hello")
    poller.doIteration(0)
    assert reader.seen == [b"hello"]
    assert reader.systems == ["-"]  # the base context: no per-event one
    assert reader.lost == []
    assert reader in poller.getReaders()


def test_returned_reason_disconnects(pair: Any, poller: Any) -> None:
    """
    What C{doRead} returns is a reason to disconnect, as in Twisted's own
    dispatch: the reader is removed and told why.
    """
    ours, theirs = pair
    reader = Reader(ours, poller, outcome=main.CONNECTION_DONE)
    poller.addReader(reader)
    theirs.sendall(b"x")
    poller.doIteration(0)
    assert len(reader.lost) == 1
    assert reader.lost[0].check(type(main.CONNECTION_DONE))
    assert reader not in poller.getReaders()


def test_exception_is_logged_with_context_and_disconnects(pair: Any, poller: Any) -> None:
    """
    An exception from C{doRead} is logged as a failure, with the reader's log
    prefix as its system, and the reader is disconnected with it.
    """
    ours, theirs = pair
    reader = Reader(ours, poller, outcome=ValueError("boom"))
    poller.addReader(reader)
    events: List[Any] = []
    log.addObserver(events.append)
    try:
        theirs.sendall(b"x")
        poller.doIteration(0)
    finally:
        log.removeObserver(events.append)
    failures = [event for event in events if event.get("isError")]
    assert len(failures) == 1
    assert failures[0]["failure"].check(ValueError)
    assert failures[0]["system"] == "reader"
    assert len(reader.lost) == 1
    assert reader.lost[0].check(ValueError)


def test_other_events_take_twisteds_path(pair: Any, poller: Any) -> None:
    """
    A socket that is writable (or hung up) goes through Twisted's own
    C{_doReadOrWrite}, inside the logging context.
    """
    ours, _ = pair
    reader = Reader(ours, poller)
    calls: List[Any] = []

    def do_read_or_write(selectable: Any, fd: int, event: int) -> None:
        calls.append((selectable, event, context.get(log.ILogContext, {}).get("system")))

    poller._doReadOrWrite = do_read_or_write
    poller.addWriter(reader)
    poller.doIteration(0)
    assert [(selectable, system) for selectable, _, system in calls] == [(reader, "reader")]
    assert reader.seen == []
    poller.removeWriter(reader)


def test_hang_up_is_connection_done(pair: Any, poller: Any) -> None:
    """
    A peer that closes (readable and hung up): the read sees the end and the
    reader is disconnected once, as with Twisted's reactor.
    """
    ours, theirs = pair
    reader = Reader(ours, poller)
    reader.outcome = main.CONNECTION_DONE
    poller.addReader(reader)
    theirs.close()
    poller.doIteration(0)
    assert reader.seen == [b""]
    # Readable and hung up: the direct read, outside the logging context.
    assert reader.systems == ["-"]
    assert len(reader.lost) == 1
    assert reader not in poller.getReaders()


def _installed_in_a_fresh_process(setup: str) -> str:
    """
    The class name of what L{install_default} returns in a new interpreter
    after running C{setup}.
    """
    code = f"{setup}from obproxy_tx.reactor import install_default; "
    code += "print(type(install_default()).__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_install_default_in_a_fresh_process() -> None:
    """
    In a process without a reactor, L{install_default} installs the proxy's
    reactor; with one installed already, it keeps that one.
    """
    assert _installed_in_a_fresh_process("") == "ProxyReactor"
    chosen = "from twisted.internet import pollreactor; pollreactor.install(); "
    assert _installed_in_a_fresh_process(chosen) == "PollReactor"
