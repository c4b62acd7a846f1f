"""
The proxy itself (L{SessionManager} with its client and server sessions) on a
memory reactor, with scripted backends, for the C{proxy} fuzz target and the
state machine of C{tests/fuzz/test_proxy_conversations.py}.
"""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.test import iosim

from fuzz.replay import CLIENT, parse_records
from obproxy_tx.config import ProxyConfig, parse_config
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.wire.connection import ClientConnection, Phase, ServerConnection
from obproxy_tx.wire.constants import Capability, ColumnFlag, ColumnType, ServerStatus
from obproxy_tx.wire.packets import (
    ColumnCount,
    ColumnDefinition41,
    ComQuery,
    ComStmtExecute,
    ComStmtPrepare,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
    StmtPrepareOK,
    TextRow,
)
from obproxy_tx.wire.scramble import native_password_response, native_password_verifier

__all__ = [
    "BACKEND_CAPS",
    "PASSWORD",
    "Backend",
    "ProxyHarness",
    "RawClient",
    "app_config",
    "join_new_backends",
    "run_proxy",
]

BACKEND_CAPS = Capability(0x009FF7FF)
AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT
#: The password of the proxy's user C{app}.
PASSWORD = "secret"
#: What a raw client asks for.
CLIENT_CAPS = (
    Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_MULTI_STATEMENTS
    | Capability.CLIENT_MULTI_RESULTS
    | Capability.CLIENT_LOCAL_FILES
)


class Backend(Protocol):
    """
    A scripted server that accepts any login: C{SELECT ...} gets a one-row
    result echoing the query, anything else an OK whose info is the query;
    a prepared statement takes no parameters and executes to an OK. What it
    cannot read closes it.
    """

    transport: Any

    def __init__(self) -> None:
        self.conn = ServerConnection(BACKEND_CAPS)
        self.statements = 0

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(
            self.conn.send(HandshakeV10("5.7.25-fake", 7, b"B" * 20, BACKEND_CAPS, 45, AUTOCOMMIT))
        )

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        try:
            events = self.conn.receive_data(data)
            for packet in events:
                self._answer(packet)
        except Exception:
            self.transport.loseConnection()

    def _answer(self, packet: Any) -> None:
        conn = self.conn
        if isinstance(packet, HandshakeResponse41):
            self.transport.write(conn.send(OKPacket(status_flags=AUTOCOMMIT)))
        elif isinstance(packet, ComQuery) and packet.query[:6].upper() == b"SELECT":
            column = ColumnDefinition41(
                name=b"q",
                character_set=45,
                column_length=80,
                column_type=ColumnType.MYSQL_TYPE_VAR_STRING,
                flags=ColumnFlag(0),
            )
            packets: List[Any] = [ColumnCount(1), column]
            packets.append(conn.end_of_rows(AUTOCOMMIT))  # the EOF after the columns
            packets += [TextRow((packet.query,)), conn.end_of_rows(AUTOCOMMIT)]
            self.transport.write(conn.send_many(packets))
        elif isinstance(packet, ComQuery):
            self.transport.write(conn.send(OKPacket(status_flags=AUTOCOMMIT, info=packet.query)))
        elif isinstance(packet, ComStmtPrepare):
            self.statements += 1
            self.transport.write(conn.send(StmtPrepareOK(self.statements, 0, 0, 0)))
        elif isinstance(packet, ComStmtExecute):
            self.transport.write(conn.send(OKPacket(status_flags=AUTOCOMMIT, info=b"executed")))
        elif conn.our_turn:
            self.transport.write(conn.send(OKPacket(status_flags=AUTOCOMMIT)))


class RawClient:
    """
    A client speaking bytes to one proxy client session (no library).

    @ivar conn: its conversation (what a well-behaved client would track).
    @ivar session: the proxy's client session.
    @ivar transport: the session's in-memory transport (its writes in C{stream}).
    """

    def __init__(self, session: Any, transport: Any) -> None:
        self.conn = ClientConnection(CLIENT_CAPS)
        self.session = session
        self.transport = transport

    def read(self) -> List[Any]:
        """The events of what the proxy wrote since the last read."""
        data = b"".join(self.transport.stream)
        self.transport.stream = []
        return self.conn.receive_data(data) if data else []


def app_config(verifier: bytes) -> ProxyConfig:
    """
    The configuration of the in-memory proxies: one MySQL cluster C{c1} on
    C{127.0.0.1:3306} with one user, C{app@sys}, whose password has C{verifier}
    (L{native_password_verifier}).
    """
    return parse_config(
        f"""
clusters:
  - name: c1
    type: mysql
    servers: ["127.0.0.1:3306"]
    users:
      - {{name: app, tenant: sys, verifier: "*{verifier.hex().upper()}"}}
"""
    )


def join_new_backends(
    reactor: MemoryReactorClock, joined: int, make: Callable[[str], Protocol]
) -> List[Tuple[Any, Any, iosim.IOPump]]:
    """
    Join each connection attempt the proxy made on C{reactor} after the first
    C{joined} ones to a new backend C{make(host)}, in memory (the backend
    greets first, as a MySQL server does).

    @return: C{(backend, the proxy's protocol, pump)} for each, in order.
    """
    joins = []
    for host, _port, factory, _timeout, _bind in reactor.tcpClients[joined:]:
        proxy_side = factory.buildProtocol(IPv4Address("TCP", host, 3306))
        backend = make(host)
        pump = iosim.connect(
            backend,
            iosim.makeFakeServer(backend),
            proxy_side,
            iosim.makeFakeClient(proxy_side),
            greet=True,
        )
        joins.append((backend, proxy_side, pump))
    return joins


class ProxyHarness:
    """
    A L{SessionManager} on a memory reactor; its backend connections are
    joined to L{Backend}s in memory.

    @ivar backends: C{(backend, proxy's server session)} pairs, in connect order.
    """

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.manager = SessionManager(
            app_config(native_password_verifier(PASSWORD.encode())), self.reactor
        )
        self.backends: List[Tuple[Backend, Any]] = []
        self.pumps: List[iosim.IOPump] = []
        self._clients = 0

    def flush(self) -> None:
        """Move bytes everywhere; connect the proxy's new backend connections."""
        for _ in range(50):
            for backend, proxy_side, pump in join_new_backends(
                self.reactor, len(self.backends), lambda host: Backend()
            ):
                self.backends.append((backend, proxy_side))
                self.pumps.append(pump)
            moved = False
            for pump in self.pumps:
                moved = pump.pump() or moved
            self.reactor.advance(0)
            if not moved and len(self.reactor.tcpClients) == len(self.backends):
                return

    def address(self) -> IPv4Address:
        """A new client address."""
        self._clients += 1
        return IPv4Address("TCP", "127.0.0.1", 40000 + self._clients)

    def raw_client(self, login: bool = True) -> RawClient:
        """
        A raw client connected to a new proxy client session, logged in as
        C{app} unless C{login} is false (then the greeting is read, no more).
        """
        address = self.address()
        session: Any = self.manager.listener_factory().buildProtocol(address)
        transport = iosim.FakeTransport(session, isServer=True, peerAddress=address)
        session.makeConnection(transport)
        self.flush()
        client = RawClient(session, transport)
        (greeting,) = client.read()
        if login:
            response = HandshakeResponse41(
                CLIENT_CAPS,
                1 << 24,
                45,
                "app",
                native_password_response(PASSWORD.encode(), greeting.auth_plugin_data),
                auth_plugin_name="mysql_native_password",
            )
            session.dataReceived(client.conn.send(response))
            self.flush()
            events = client.read()
            assert [type(e) for e in events] == [OKPacket], events
        return client

    def served(self) -> bool:
        """Whether a new client logs in and gets the answer to a query."""
        client = self.raw_client()
        client.session.dataReceived(client.conn.send(ComQuery(b"SELECT 'fresh'")))
        self.flush()
        events = client.read()
        client.transport.loseConnection()
        self.flush()
        return client.conn.phase is Phase.COMMAND_IDLE and any(
            getattr(e, "payload", None) == b"\x0eSELECT 'fresh'" for e in events
        )


def run_proxy(data: bytes) -> None:
    """
    The C{proxy} fuzz target: a mode byte and a recording (L{fuzz.replay});
    the client's records go into a logged-in client session, the server's
    come from that client's backend (the last one connected).

    @raise AssertionError: a failure was logged, or a new client is not
        served afterwards. Anything escaping the sessions propagates.
    """
    failures: List[Any] = []

    def observe(event: Any) -> None:
        if "log_failure" in event:
            failures.append(event["log_failure"])

    globalLogPublisher.addObserver(observe)  # type: ignore[arg-type]
    try:
        harness = ProxyHarness()
        client = harness.raw_client()
        for direction, chunk in parse_records(data[1:]):
            if direction == CLIENT:
                if not client.transport.disconnecting:
                    client.session.dataReceived(chunk)
            elif harness.backends:
                backend = harness.backends[-1][0]
                if not backend.transport.disconnecting:
                    backend.transport.write(chunk)
            harness.flush()
        client.transport.loseConnection()
        harness.flush()
        served = harness.served()
    finally:
        globalLogPublisher.removeObserver(observe)  # type: ignore[arg-type]
    if failures:
        raise AssertionError(f"unexpected failures logged: {failures!r}")
    if not served:
        raise AssertionError("a new client is not served after the input")
