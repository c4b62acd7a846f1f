"""
ClientSession, ServerSession and SessionManager with in-memory transports:
a MemoryReactorClock records the proxy's connection attempts, iosim pumps
bytes between the proxy and a scripted backend built on L{ServerConnection},
and the test plays the client with a sans-IO L{ClientConnection}.
"""

from __future__ import annotations

from typing import Any, cast

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim

from fuzz.proxy import app_config, join_new_backends
from obproxy_tx.config import parse_config
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.session.states import ClientSessionState, ServerSessionState
from obproxy_tx.wire.connection import ClientConnection, RowData, ServerConnection
from obproxy_tx.wire.constants import Capability, ColumnFlag, ColumnType, ServerStatus
from obproxy_tx.wire.packets import (
    ColumnCount,
    ColumnDefinition41,
    ComPing,
    ComQuery,
    EOFPacket,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
    TextRow,
)
from obproxy_tx.wire.scramble import native_password_response, native_password_verifier

BACKEND_CAPS = Capability(0x009FF7FF) | Capability.CLIENT_DEPRECATE_EOF
CLIENT_CAPS = (
    Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_LONG_PASSWORD
)
PASSWORD = b"secret"


class FakeBackend(Protocol):
    """A scripted MySQL server: accepts any login, answers a few queries."""

    transport: Any
    next_id = 500

    def __init__(self, die_on_query: bool = False) -> None:
        self.die_on_query = die_on_query
        self.conn = ServerConnection(BACKEND_CAPS)
        self.commands: list[Any] = []
        self.logins: list[HandshakeResponse41] = []

    def connectionMade(self) -> None:  # noqa: N802
        FakeBackend.next_id += 1
        self.transport.write(
            self.conn.send(
                HandshakeV10(
                    "5.7.25-fake",
                    FakeBackend.next_id,
                    b"B" * 20,
                    BACKEND_CAPS,
                    45,
                    ServerStatus.SERVER_STATUS_AUTOCOMMIT,
                )
            )
        )

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.conn.receive_data(data):
            if isinstance(event, HandshakeResponse41):
                self.logins.append(event)
                self.transport.write(self.conn.send(OKPacket(status_flags=ServerStatus(2))))
            elif isinstance(event, ComQuery):
                self.commands.append(event)
                if self.die_on_query:
                    self.transport.loseConnection()
                    return
                self._answer(event.query)
            else:
                self.commands.append(event)
                self.transport.write(self.conn.send(OKPacket(status_flags=ServerStatus(2))))

    def _answer(self, query: bytes) -> None:
        if query.startswith(b"SELECT rows"):
            column = ColumnDefinition41(
                schema=b"",
                table=b"",
                org_table=b"",
                name=b"n",
                org_name=b"",
                character_set=63,
                column_length=11,
                column_type=ColumnType.MYSQL_TYPE_LONG,
                flags=ColumnFlag(0),
                decimals=0,
            )
            packets: list[Any] = [ColumnCount(1), column, EOFPacket(status_flags=ServerStatus(2))]
            packets += [TextRow((str(i).encode(),)) for i in range(3)]
            packets.append(self.conn.end_of_rows(ServerStatus(2)))
            self.transport.write(self.conn.send_many(packets))
        else:
            self.transport.write(
                self.conn.send(OKPacket(affected_rows=1, status_flags=ServerStatus(2)))
            )


class Harness:
    """A manager on a memory reactor, a client session, and backends connected on demand."""

    def __init__(self, verifier: bytes = native_password_verifier(PASSWORD)) -> None:
        self.reactor = MemoryReactorClock()
        self.manager = SessionManager(app_config(verifier), self.reactor)
        self.backends: list[FakeBackend] = []
        self.dying_backends = 0
        self.pumps: list[iosim.IOPump] = []
        self.client = ClientConnection(CLIENT_CAPS)
        self.events: list[Any] = []
        built = self.manager.listener_factory().buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 40000)
        )
        self.session: Any = cast(Any, built)
        self.transport = iosim.FakeTransport(
            self.session, isServer=True, peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)
        )
        self.session.makeConnection(self.transport)

    def accept_backends(self) -> None:
        """Connect every pending proxy connection attempt to a new fake backend."""

        def make(host: str) -> FakeBackend:
            backend = FakeBackend(die_on_query=self.dying_backends > 0)
            self.dying_backends = max(0, self.dying_backends - 1)
            return backend

        for backend, _, pump in join_new_backends(self.reactor, len(self.backends), make):
            self.backends.append(backend)
            self.pumps.append(pump)

    def configure(self, **items: Any) -> None:
        """Change config items of the proxy, as a reload would."""
        self.manager.config = attrs.evolve(self.manager.config, **items)

    def another_client(self, host: str = "127.0.0.1", port: int = 40001) -> Harness:
        """A second client of the same proxy (same manager, reactor and backends) from C{host}."""
        other = cast(Harness, Harness.__new__(Harness))
        other.reactor = self.reactor
        other.manager = self.manager
        other.backends = self.backends
        other.pumps = self.pumps
        other.dying_backends = 0
        other.client = ClientConnection(CLIENT_CAPS)
        other.events = []
        peer = IPv4Address("TCP", host, port)
        other.session = cast(Any, self.manager.listener_factory().buildProtocol(peer))
        other.transport = iosim.FakeTransport(other.session, isServer=True, peerAddress=peer)
        other.session.makeConnection(other.transport)
        return other

    def flush(self) -> None:
        """Move bytes everywhere until nothing moves."""
        for _ in range(20):
            self.accept_backends()
            for pump in self.pumps:
                pump.flush()
            data = self.transport.stream
            if data:
                self.transport.stream = []
                self.events.extend(self.client.receive_data(b"".join(data)))
            self.reactor.advance(0)
            idle = not any(p.clientIO.stream or p.serverIO.stream for p in self.pumps)
            if idle and not data and len(self.reactor.tcpClients) == len(self.backends):
                break

    def send(self, packet: Any) -> None:
        """Send a client packet to the proxy."""
        self.session.dataReceived(self.client.send(packet))
        self.flush()

    def login(self, password: bytes = PASSWORD) -> Any:
        """Log in as app; return the proxy's answer."""
        self.flush()
        greeting = self.events.pop(0)
        assert isinstance(greeting, HandshakeV10)
        self.send(
            HandshakeResponse41(
                CLIENT_CAPS,
                1 << 24,
                45,
                "app",
                native_password_response(password, greeting.auth_plugin_data),
                auth_plugin_name="mysql_native_password",
            )
        )
        return self.events.pop(0)


def test_handshake_carries_the_cs_id_and_the_backend_version() -> None:
    """The greeting's connection id is the cs_id; the version was learned from a probe."""
    harness = Harness()
    harness.flush()
    greeting = harness.events[0]
    assert isinstance(greeting, HandshakeV10)
    assert greeting.connection_id == harness.session.cs_id
    assert greeting.server_version == "5.7.25-fake"
    assert not greeting.capabilities & Capability.CLIENT_SSL
    assert not greeting.capabilities & Capability.CLIENT_COMPRESS


def test_login_logs_in_to_a_backend_with_its_own_scramble() -> None:
    """A right password gets OK after a backend login answered from the recovered SHA1(pw)."""
    harness = Harness()
    answer = harness.login()
    assert isinstance(answer, OKPacket)
    backend_login = harness.backends[-1].logins[0]
    assert backend_login.auth_response == native_password_response(PASSWORD, b"B" * 20)
    assert backend_login.username == "app"
    session = harness.session
    assert session.machine.state is ClientSessionState.MCS_ACTIVE_READER
    assert session.bound.machine.state is ServerSessionState.MSS_KA_CLIENT_SLAVE


def test_wrong_password_is_1045_without_a_backend_login() -> None:
    """A wrong password gets 1045 and no server session logs in."""
    harness = Harness()
    answer = harness.login(b"wrong")
    assert isinstance(answer, ERRPacket)
    assert answer.error_code == 1045
    assert all(not backend.logins for backend in harness.backends)


def test_rows_are_relayed_and_the_session_binds_again() -> None:
    """A result set reaches the client row by row and the server session is bound again."""
    harness = Harness()
    harness.login()
    harness.send(ComQuery(b"SELECT rows"))
    rows = [event.payload for event in harness.events if isinstance(event, RowData)]
    assert rows == [b"\x010", b"\x011", b"\x012"]
    assert harness.session.bound.machine.state is ServerSessionState.MSS_KA_CLIENT_SLAVE


def test_ping_and_connection_id_are_answered_locally() -> None:
    """COM_PING and SELECT CONNECTION_ID() never reach the backend."""
    harness = Harness()
    harness.login()
    backend = harness.backends[-1]
    harness.send(ComPing())
    harness.send(ComQuery(b"SELECT CONNECTION_ID()"))
    assert backend.commands == []
    rows = [event.payload for event in harness.events if isinstance(event, RowData)]
    cs_id = str(harness.session.cs_id).encode()
    assert rows == [bytes([len(cs_id)]) + cs_id]


def test_forced_route_opens_a_second_server_session_and_syncs() -> None:
    """SET @obproxy_route_addr makes a second server session, synced with one SET first."""
    harness = Harness()
    harness.login()
    harness.send(ComQuery(b"SET @v = 5"))
    harness.send(ComQuery(b"SET @obproxy_route_addr = '127.0.0.2:3306'"))
    harness.send(ComQuery(b"INSERT INTO t VALUES (1)"))
    session = harness.session
    assert session.server_session_count == 2
    assert harness.manager.server_session_count == 2
    second = harness.backends[-1]
    queries = [c.query for c in second.commands if isinstance(c, ComQuery)]
    assert queries[-1] == b"INSERT INTO t VALUES (1)"
    pooled = [ss for ss in session.pool]
    assert [ss.machine.state for ss in pooled] == [ServerSessionState.MSS_KA_SHARED]


def test_client_disconnect_closes_its_server_sessions() -> None:
    """When the client goes away, every server session of it closes."""
    harness = Harness()
    harness.login()
    server_sessions = harness.session.server_sessions
    harness.session.connectionLost(Failure(ConnectionDone()))
    for pump in harness.pumps:
        pump.flush()
    assert harness.session.machine.state is ClientSessionState.MCS_CLOSED
    assert all(ss.machine.state is ServerSessionState.MSS_CLOSED for ss in server_sessions)
    assert harness.manager.client_sessions == {}


def test_show_processlist_lists_proxy_ids() -> None:
    """SHOW PROCESSLIST is answered by the proxy with cs_ids and MCS states."""
    harness = Harness()
    harness.login()
    harness.events.clear()
    harness.send(ComQuery(b"SHOW PROCESSLIST"))
    rows = [event.payload for event in harness.events if isinstance(event, RowData)]
    assert len(rows) == 1
    assert rows[0].startswith(
        bytes([len(str(harness.session.cs_id))]) + str(harness.session.cs_id).encode()
    )
    assert b"MCS_ACTIVE_READER" in rows[0]
    assert harness.backends[-1].commands == []


def test_new_server_sessions_spread_across_servers() -> None:
    """pick_server hands out a cluster's servers in turn."""
    harness = Harness()
    cluster = parse_config(
        """
clusters:
  - name: two
    servers: ["10.0.0.1:1", "10.0.0.2:1"]
"""
    ).clusters[0]
    picked = [harness.manager.pick_server(cluster).address for _ in range(4)]
    assert picked == ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.1:1", "10.0.0.2:1"]
    assert harness.manager.find_client_session(harness.session.cs_id) is harness.session
    assert harness.manager.find_client_session(999) is None


def test_server_session_dying_during_sync_is_replaced() -> None:
    """A new server session that dies while being synced is replaced before the request goes out."""
    harness = Harness()
    harness.login()
    harness.send(ComQuery(b"SET @v = 5"))
    harness.send(ComQuery(b"SET @obproxy_route_addr = '127.0.0.2:3306'"))
    harness.dying_backends = 1
    harness.events.clear()
    harness.send(ComQuery(b"INSERT INTO t VALUES (1)"))
    dead, replacement = harness.backends[-2:]
    assert [c.query for c in dead.commands] == [b"SET @v = 5"]
    assert [c.query for c in replacement.commands] == [b"SET @v = 5", b"INSERT INTO t VALUES (1)"]
    assert isinstance(harness.events[-1], OKPacket)
