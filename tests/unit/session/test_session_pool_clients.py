"""
Client sessions and the shared pool: what a quitting client leaves behind and
what a later client of the same backend user gets, with in-memory transports
and scripted backends (the fakes of L{test_client_session}).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim

from fuzz.proxy import join_new_backends
from obproxy_tx.config import parse_config
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.session.states import ServerSessionState
from obproxy_tx.wire.connection import ClientConnection
from obproxy_tx.wire.constants import Capability, ServerStatus
from obproxy_tx.wire.packets import (
    ComChangeUser,
    ComInitDB,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
)
from obproxy_tx.wire.scramble import native_password_response, native_password_verifier
from tests.unit.session.test_client_session import CLIENT_CAPS, PASSWORD, FakeBackend

VERIFIER = native_password_verifier(PASSWORD).hex().upper()


class Backend(FakeBackend):
    """FakeBackend that also opens transactions and refuses the database C{gone}."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.conn.receive_data(data):
            if isinstance(event, HandshakeResponse41):
                self.logins.append(event)
                self.transport.write(self.conn.send(OKPacket(status_flags=ServerStatus(2))))
                continue
            self.commands.append(event)
            if isinstance(event, ComQuery) and event.query == b"BEGIN":
                status = ServerStatus.SERVER_STATUS_AUTOCOMMIT | ServerStatus.SERVER_STATUS_IN_TRANS
                self.transport.write(self.conn.send(OKPacket(status_flags=status)))
            elif isinstance(event, ComQuery):
                self._answer(event.query)
            elif isinstance(event, ComInitDB) and event.schema == b"gone":
                self.transport.write(
                    self.conn.send(ERRPacket(1049, "Unknown database 'gone'", "42000"))
                )
            elif isinstance(event, ComQuit):
                self.transport.loseConnection()
            else:
                self.transport.write(self.conn.send(OKPacket(status_flags=ServerStatus(2))))


class Client:
    """One client connection to the proxy, played with a sans-IO ClientConnection."""

    def __init__(self, proxy: Proxy, port: int) -> None:
        self.proxy = proxy
        addr = IPv4Address("TCP", "127.0.0.1", port)
        self.session: Any = cast(Any, proxy.manager.listener_factory().buildProtocol(addr))
        self.transport = iosim.FakeTransport(self.session, isServer=True, peerAddress=addr)
        self.conn = ClientConnection(CLIENT_CAPS | Capability.CLIENT_CONNECT_WITH_DB)
        self.events: list[Any] = []
        self.session.makeConnection(self.transport)
        proxy.clients.append(self)

    def read(self) -> None:
        data = self.transport.stream
        if data:
            self.transport.stream = []
            self.events.extend(self.conn.receive_data(b"".join(data)))

    def send(self, packet: Any) -> None:
        self.session.dataReceived(self.conn.send(packet))
        self.proxy.flush()

    def login(self, user: str = "app", database: str | None = None) -> Any:
        self.proxy.flush()
        greeting = self.events.pop(0)
        assert isinstance(greeting, HandshakeV10)
        caps = CLIENT_CAPS | (Capability.CLIENT_CONNECT_WITH_DB if database else 0)
        self.send(
            HandshakeResponse41(
                Capability(caps),
                1 << 24,
                45,
                user,
                native_password_response(PASSWORD, greeting.auth_plugin_data),
                database=database,
                auth_plugin_name="mysql_native_password",
            )
        )
        return self.events.pop(0)

    def quit(self) -> None:
        """COM_QUIT; the proxy closes the connection, which Twisted then reports lost."""
        self.send(ComQuit())
        self.gone()

    def gone(self) -> None:
        self.session.connectionLost(Failure(ConnectionDone()))
        self.proxy.flush()


class Proxy:
    """A manager on a memory reactor; backends connected on demand."""

    def __init__(self, backend: type[FakeBackend] = Backend, kind: str = "mysql") -> None:
        self.reactor = MemoryReactorClock()
        config = parse_config(
            f"""
clusters:
  - name: c1
    type: {kind}
    servers: ["127.0.0.1:3306"]
    users:
      - {{name: app, tenant: sys, verifier: "*{VERIFIER}"}}
      - {{name: bob, tenant: sys, verifier: "*{VERIFIER}"}}
"""
        )
        self.manager = SessionManager(config, self.reactor)
        self.backend_class = backend
        self.backends: list[FakeBackend] = []
        self.pumps: list[iosim.IOPump] = []
        self.clients: list[Client] = []

    def client(self) -> Client:
        return Client(self, 40000 + len(self.clients))

    @property
    def logged_in(self) -> list[FakeBackend]:
        """The backends a server session logged in to (not the greeting probe)."""
        return [backend for backend in self.backends if backend.logins]

    def flush(self) -> None:
        for _ in range(20):
            for backend, _, pump in join_new_backends(
                self.reactor, len(self.backends), lambda host: self.backend_class()
            ):
                self.backends.append(backend)
                self.pumps.append(pump)
            for pump in self.pumps:
                pump.flush()
            for client in self.clients:
                client.read()
            self.reactor.advance(0)
            if len(self.reactor.tcpClients) == len(self.backends) and not any(
                p.clientIO.stream or p.serverIO.stream for p in self.pumps
            ):
                break


def test_quit_pools_the_server_session_and_the_next_client_gets_it() -> None:
    """After COM_QUIT the server session is reset and pooled; the next client of the same
    user is logged in on it (same ss_id, same backend id) without a backend login."""
    proxy = Proxy()
    first = proxy.client()
    assert isinstance(first.login(), OKPacket)
    ss = first.session.bound
    first.send(ComQuery(b"SET @v = 5"))
    first.quit()
    backend = proxy.logged_in[0]
    assert isinstance(backend.commands[-1], ComResetConnection)
    assert ss.machine.state is ServerSessionState.MSS_KA_SHARED
    assert proxy.manager.stats.server_sessions_pooled == 1
    assert proxy.manager.server_session_count == 1
    second = proxy.client()
    assert isinstance(second.login(), OKPacket)
    assert len(proxy.logged_in) == 1 and len(backend.logins) == 1
    assert second.session.bound is ss
    assert ss.machine.state is ServerSessionState.MSS_KA_CLIENT_SLAVE
    assert ss.key == ("127.0.0.1:3306", second.session.login.full_name)
    assert proxy.manager.stats.server_sessions_reused == 1
    assert proxy.manager.server_session_count == 1
    # Nothing of the first client's state is replayed on it.
    before = len(backend.commands)
    second.send(ComQuery(b"SELECT rows"))
    assert [c.query for c in backend.commands[before:]] == [b"SELECT rows"]


def test_another_user_never_gets_it() -> None:
    """A pooled session of app is not bob's: bob gets his own backend connection."""
    proxy = Proxy()
    first = proxy.client()
    first.login()
    first.quit()
    other = proxy.client()
    assert isinstance(other.login("bob"), OKPacket)
    assert len(proxy.logged_in) == 2
    assert other.session.bound is not None
    assert proxy.logged_in[1].logins[0].username == "bob"
    assert len(proxy.manager.session_pool) == 1


def test_a_transaction_at_quit_closes_the_session() -> None:
    """A client that quits inside a transaction: its server session is closed, not pooled."""
    proxy = Proxy()
    client = proxy.client()
    client.login()
    client.send(ComQuery(b"BEGIN"))
    ss = client.session.bound
    assert "transaction" in client.session.pin_reasons
    client.quit()
    assert ss.machine.state is ServerSessionState.MSS_CLOSED
    assert len(proxy.manager.session_pool) == 0
    assert not any(isinstance(c, ComResetConnection) for c in proxy.logged_in[0].commands)


def test_only_com_quit_pools() -> None:
    """A client gone without COM_QUIT, or closed by the proxy (KILL, timeout), leaves no
    pooled session."""
    proxy = Proxy()
    vanished = proxy.client()
    vanished.login()
    sessions = [vanished.session.bound]
    vanished.gone()
    killed = proxy.client()
    killed.login()
    sessions.append(killed.session.bound)
    killed.session.close()
    killed.gone()
    assert len(proxy.manager.session_pool) == 0
    assert proxy.manager.stats.server_sessions_pooled == 0
    assert all(ss.machine.is_closed for ss in sessions)


def test_database_of_the_next_client() -> None:
    """A pooled session already in the client's database is used as it is; one in another
    database gets COM_INIT_DB first; a refused database refuses the login."""
    proxy = Proxy()
    first = proxy.client()
    first.login(database="db1")
    ss = first.session.bound
    first.quit()
    backend = proxy.logged_in[0]
    assert isinstance(backend.commands[-1], ComResetConnection)
    same = proxy.client()
    before = len(backend.commands)
    assert isinstance(same.login(database="db1"), OKPacket)
    assert backend.commands[before:] == []
    same.quit()
    other = proxy.client()
    before = len(backend.commands)
    assert isinstance(other.login(database="db2"), OKPacket)
    assert backend.commands[before:] == [ComInitDB(b"db2")]
    assert other.session.bound is ss
    other.quit()
    refused = proxy.client()
    answer = refused.login(database="gone")
    assert isinstance(answer, ERRPacket) and answer.error_code == 1049
    assert refused.session._closing
    assert len(proxy.manager.session_pool) == 0
    assert len(proxy.logged_in) == 1


def test_a_client_without_a_database_does_not_get_one_with_a_database() -> None:
    """No database at login cannot be had on a session left in one: a new one is made."""
    proxy = Proxy()
    first = proxy.client()
    first.login(database="db1")
    first.quit()
    second = proxy.client()
    second.login()
    assert len(proxy.logged_in) == 2


def test_oceanbase_sessions_are_reset_with_change_user_to_the_bare_user() -> None:
    """On OceanBase clusters the reset is COM_CHANGE_USER naming the user without its
    tenant (the connection's tenant stays), with the session's database."""
    proxy = Proxy(kind="oceanbase")
    first = proxy.client()
    first.login(database="db1")
    ss = first.session.bound
    first.quit()
    backend = proxy.logged_in[0]
    assert backend.logins[0].username == "app@sys"
    change = backend.commands[-1]
    assert isinstance(change, ComChangeUser)
    assert (change.username, change.database) == ("app", "db1")
    second = proxy.client()
    assert isinstance(second.login(database="db1"), OKPacket)
    assert second.session.bound is ss
