"""
Closing a server session or a client session whose transport still has a
producer registered: Twisted's C{loseConnection} waits for that producer (a
TLS transport does not close at all while one is registered; a TCP one whose
producer is paused resumes it instead of closing), so the close must let go
of it first, else the backend connection and its slot under
C{server_max_connections} would stay for ever.
"""

from __future__ import annotations

import hashlib
from typing import Any

from obproxy_tx.config import parse_server
from obproxy_tx.session.client_session import _ReadPauser
from obproxy_tx.session.server_session import BackendLogin, ServerSession
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.scramble import native_password_verifier


class _WaitingTransport:
    """
    A transport with the rule of Twisted's TLS transport: C{loseConnection}
    closes only once no producer is registered (at C{unregisterProducer}).
    """

    def __init__(self) -> None:
        self.producer: Any = None
        self.disconnecting = False
        self.closed = False
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        assert self.producer is None, "a producer is registered already"
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        assert self.producer is not None, "no producer to unregister"
        self.producer = None
        if self.disconnecting:
            self.closed = True

    def loseConnection(self) -> None:  # noqa: N802
        self.disconnecting = True
        if self.producer is None:
            self.closed = True

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass


def _server_session() -> ServerSession:
    login = BackendLogin(
        username="app",
        stage1=hashlib.sha1(b"pw").digest(),
        verifier=native_password_verifier(b"pw"),
        capabilities=Capability(0x009FF7FF),
        character_set=45,
        database=None,
    )
    return ServerSession(1, parse_server("127.0.0.1:3306"), "app@sys#c1", login)


def test_server_session_close_lets_go_of_the_clients_pauser() -> None:
    """
    A server session a client was attached to (the client's read pauser is
    its transport's producer) closes when closed, with or without COM_QUIT.
    """
    for quit in (True, False):
        ss = _server_session()
        transport = _WaitingTransport()
        ss.transport = transport
        transport.registerProducer(_ReadPauser(_WaitingTransport()), True)
        ss.close(quit=quit)
        assert transport.closed, quit
        assert transport.producer is None


def test_server_session_close_without_producer() -> None:
    """
    Nothing registered: closed as before (no unregisterProducer call).
    """
    ss = _server_session()
    transport = _WaitingTransport()
    ss.transport = transport
    ss.close(quit=True)
    assert transport.closed
