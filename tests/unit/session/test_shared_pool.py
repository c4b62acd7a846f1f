"""
The proxy-wide pool of idle server sessions (L{SharedSessionPool}): keys,
bounds, the reset before reuse (swallowed; a failure closes the session),
idle timeout, loss, drain. Real L{ServerSession}s talk to a scripted backend
over iosim; a Clock runs the pool's deadlines.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import pytest
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim

from obproxy_tx.config import ProxyConfig, parse_server
from obproxy_tx.session.pool import SharedSessionPool, login_key
from obproxy_tx.session.server_session import BackendLogin, ServerSession
from obproxy_tx.session.states import ServerSessionState
from obproxy_tx.session.stats import ProxyStats
from obproxy_tx.session.sync import SessionVarVersions
from obproxy_tx.wire.connection import ServerConnection
from obproxy_tx.wire.constants import Capability, ServerStatus
from obproxy_tx.wire.errors import ErrorCode
from obproxy_tx.wire.packets import (
    AuthSwitchRequest,
    AuthSwitchResponse,
    ComChangeUser,
    ComQuit,
    ComResetConnection,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
)
from obproxy_tx.wire.scramble import native_password_response, native_password_verifier

CAPS = Capability(0x009FF7FF) | Capability.CLIENT_DEPRECATE_EOF
STAGE1_PASSWORD = b"pw"
SERVER = parse_server("127.0.0.1:3306")
OTHER_SERVER = parse_server("127.0.0.2:3306")


class Backend(Protocol):
    """
    A scripted server: accepts the login; answers both reset commands as
    C{reset} says (C{"ok"}, C{"error"}, C{"unsupported"} or C{"silent"}), or
    only C{COM_RESET_CONNECTION} that way with C{reset_only}. A
    C{COM_CHANGE_USER} it accepts gets an auth switch to a new scramble first
    (as MariaDB and seekdb do), then OK.
    """

    transport: Any

    def __init__(self, reset: str = "ok", reset_only: bool = False) -> None:
        self.reset = reset
        self.reset_only = reset_only
        self.conn = ServerConnection(CAPS)
        self.commands: list[Any] = []
        self.change_user_ok = False

    def connectionMade(self) -> None:  # noqa: N802
        greeting = HandshakeV10("10.11-fake", 77, b"S" * 20, CAPS, 45, ServerStatus(2))
        self.transport.write(self.conn.send(greeting))

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.conn.receive_data(data):
            ok = OKPacket(status_flags=ServerStatus(2))
            if isinstance(event, HandshakeResponse41):
                self.transport.write(self.conn.send(ok))
                continue
            self.commands.append(event)
            how = self.reset
            if isinstance(event, ComChangeUser) and self.reset_only:
                how = "ok"
            if isinstance(event, (ComResetConnection, ComChangeUser)) and how != "ok":
                if how == "error":
                    self.transport.write(
                        self.conn.send(ERRPacket(ErrorCode.ER_NET_READ_ERROR, "no", "08S01"))
                    )
                elif how == "unsupported":
                    self.transport.write(
                        self.conn.send(
                            ERRPacket(ErrorCode.ER_UNKNOWN_COM_ERROR, "Unknown command", "08S01")
                        )
                    )
            elif isinstance(event, ComResetConnection):
                self.transport.write(self.conn.send(ok))
            elif isinstance(event, ComChangeUser):
                request = AuthSwitchRequest.for_scramble("mysql_native_password", b"N" * 20)
                self.transport.write(self.conn.send(request))
            elif isinstance(event, AuthSwitchResponse):
                self.change_user_ok = event.data == native_password_response(
                    STAGE1_PASSWORD, b"N" * 20
                )
                self.transport.write(self.conn.send(ok))
            elif isinstance(event, ComQuit):
                self.transport.loseConnection()


def backend_login(
    username: str = "app", database: str | None = "test", charset: int = 45
) -> BackendLogin:
    stage1 = hashlib.sha1(STAGE1_PASSWORD).digest()
    return BackendLogin(
        username=username,
        stage1=stage1,
        verifier=native_password_verifier(STAGE1_PASSWORD),
        capabilities=CAPS,
        character_set=charset,
        database=database,
    )


class Fixture:
    """A pool on a Clock, and server sessions connected to scripted backends."""

    def __init__(self, **items: Any) -> None:
        self.clock = Clock()
        self.config = attrs.evolve(ProxyConfig(), **items)
        self.stats = ProxyStats()
        self.pool = SharedSessionPool(self.clock, lambda: self.config, self.stats)
        self.pumps: list[iosim.IOPump] = []
        self.lost: list[ServerSession] = []
        self.next_id = 1

    def session(
        self, backend: Backend | None = None, server: Any = SERVER, login: Any = None
    ) -> tuple[ServerSession, Backend]:
        """A logged-in server session, idle and bound as a client leaves it."""
        backend = backend or Backend()
        ss = ServerSession(
            self.next_id, server, "app@sys#c1", login or backend_login(), on_lost=self._lost
        )
        self.next_id += 1
        pump = iosim.connect(
            backend,
            iosim.makeFakeServer(backend),
            ss,
            iosim.makeFakeClient(ss),
            greet=True,
        )
        self.pumps.append(pump)
        pump.flush()
        assert ss.logged_in.called and ss.alive
        ss.machine.activate()
        ss.machine.bind()
        return ss, backend

    def _lost(self, ss: ServerSession, reason: Any) -> None:
        self.lost.append(ss)

    def flush(self) -> None:
        for pump in self.pumps:
            pump.flush()

    def release(self, ss: ServerSession, database: str | None = "test", known: bool = True) -> bool:
        taken = self.pool.release(ss, login_key("c1", ss.login), database, known)
        self.flush()
        return taken

    def take(self, database: str | None = "test", server: Any = SERVER, login: Any = None) -> Any:
        key = login_key("c1", login or backend_login())
        return self.pool.take(server.address, key, database, self._lost)


def test_login_key_is_what_the_login_established() -> None:
    """User, cluster, capabilities, charset, packet size and attrs matter; the database not."""
    base = login_key("c1", backend_login())
    assert base is not None
    assert login_key("c1", backend_login(database="other")) == base
    assert login_key("c1", backend_login(database=None)) == base
    assert login_key("c2", backend_login()) != base
    assert login_key("c1", backend_login(username="bob")) != base
    assert login_key("c1", backend_login(charset=33)) != base
    changed_caps = backend_login()
    changed_caps.capabilities = CAPS & ~Capability.CLIENT_FOUND_ROWS
    assert login_key("c1", changed_caps) != base
    without_db_bit = backend_login()
    without_db_bit.capabilities = CAPS & ~Capability.CLIENT_CONNECT_WITH_DB
    assert login_key("c1", without_db_bit) == base
    packet = backend_login()
    packet.max_packet_size = 1 << 24
    assert login_key("c1", packet) != base
    with_attrs = backend_login()
    with_attrs.connect_attrs = {"_pid": "1"}
    other_attrs = backend_login()
    other_attrs.connect_attrs = {"_pid": "2"}
    assert login_key("c1", with_attrs) != base
    assert login_key("c1", with_attrs) == login_key("c1", other_attrs)
    replayed = backend_login()
    replayed.replay = lambda greeting, caps, ss_id: None  # type: ignore[assignment,return-value]
    assert login_key("c1", replayed) is None


@pytest.mark.parametrize(
    ("method", "commands"),
    [
        ("change_user", [ComChangeUser, AuthSwitchResponse]),
        ("reset_connection", [ComResetConnection]),
    ],
)
def test_release_resets_then_pools_and_take_hands_it_over(
    method: str, commands: list[type]
) -> None:
    """The reset goes out at once, its answer is swallowed; the session waits shared."""
    fixture = Fixture(session_pool_reset_command=method)
    ss, backend = fixture.session()
    ss.statements[1] = 7
    ss.versions = SessionVarVersions(user_var_version=3, db_name_version=2)
    assert fixture.release(ss)
    assert [type(c) for c in backend.commands] == commands
    assert ss.machine.state is ServerSessionState.MSS_KA_SHARED
    assert ss.sink is None
    assert ss.statements == {}
    assert ss.versions == SessionVarVersions()
    assert len(fixture.pool) == 1 and fixture.stats.server_sessions_pooled == 1
    taken = fixture.take()
    assert taken == (ss, True)
    assert len(fixture.pool) == 0 and fixture.stats.server_sessions_reused == 1
    assert ss.machine.state is ServerSessionState.MSS_KA_SHARED
    assert fixture.take() is None


def test_change_user_is_to_the_same_user_with_the_known_database() -> None:
    """COM_CHANGE_USER answers the greeting's scramble, then the switch's, and names the
    session's database when it is known, none when it is not."""
    fixture = Fixture(session_pool_reset_command="change_user")
    ss, backend = fixture.session()
    assert fixture.release(ss, "shop", True)
    change = backend.commands[0]
    assert isinstance(change, ComChangeUser)
    assert change.username == "app" and change.database == "shop"
    assert change.character_set == 45
    assert change.auth_response == native_password_response(STAGE1_PASSWORD, b"S" * 20)
    assert backend.change_user_ok
    assert fixture.take(database="shop") == (ss, True)
    other, backend = fixture.session()
    assert fixture.release(other, "x", False)
    assert backend.commands[0].database is None
    assert fixture.take(database=None) == (other, True)


def test_the_method_and_user_a_client_session_gives() -> None:
    """The releasing client session may choose the command and the bare user name."""
    fixture = Fixture()
    ss, backend = fixture.session(login=backend_login(username="app@sys"))
    assert fixture.pool.release(ss, login_key("c1", ss.login), "test", True, "app", "change_user")
    fixture.flush()
    assert backend.commands[0].username == "app"
    assert fixture.take(login=backend_login(username="app@sys")) == (ss, True)
    ss, backend = fixture.session()
    assert fixture.release(ss)
    assert [type(c) for c in backend.commands] == [ComResetConnection]


def test_a_session_being_reset_is_not_handed_out() -> None:
    """Until the server answered the reset, nobody gets the session."""
    fixture = Fixture()
    ss, _backend = fixture.session()
    assert fixture.pool.release(ss, login_key("c1", ss.login), "test", True)
    assert ss.machine.state is ServerSessionState.MSS_ACTIVE
    assert fixture.take() is None
    fixture.flush()
    assert fixture.take() == (ss, True)


def test_keys_keep_servers_users_and_logins_apart() -> None:
    """Another server, another user or another login never gets the session."""
    fixture = Fixture()
    ss, _ = fixture.session()
    assert fixture.release(ss)
    assert fixture.take(server=OTHER_SERVER) is None
    assert fixture.take(login=backend_login(username="bob")) is None
    assert fixture.take(login=backend_login(charset=33)) is None
    assert fixture.take() == (ss, True)


def test_database_preference() -> None:
    """The session already in the client's database first; none for a client without one
    unless known to have none; another database will do when the client applies its own.
    (COM_RESET_CONNECTION keeps whichever database the session had.)"""
    fixture = Fixture(session_pool_reset_command="reset_connection")
    in_test, _ = fixture.session()
    unknown, _ = fixture.session()
    assert fixture.release(in_test, "test", True)
    assert fixture.release(unknown, "x", False)
    assert fixture.take(database=None) is None
    assert fixture.take(database="test") == (in_test, True)
    assert fixture.take(database="test") == (unknown, False)
    no_db, _ = fixture.session(login=backend_login(database=None))
    assert fixture.release(no_db, None, True)
    assert fixture.take(database=None) == (no_db, True)


def test_bounds_per_key_and_in_all() -> None:
    """Beyond session_pool_default_max_conn per key or session_pool_max_total_conn in all,
    a released session is refused (the client session closes it)."""
    fixture = Fixture(session_pool_default_max_conn=2, session_pool_max_total_conn=3)
    sessions = [fixture.session()[0] for _ in range(3)]
    assert [fixture.release(ss) for ss in sessions] == [True, True, False]
    bob = fixture.session(login=backend_login(username="bob"))[0]
    carol = fixture.session(login=backend_login(username="carol"))[0]
    assert fixture.release(bob)
    assert not fixture.release(carol)
    assert len(fixture.pool) == 3


@pytest.mark.parametrize(
    "items",
    [
        {"enable_session_pool_for_no_sharding": False},
        {"session_pool_default_max_conn": 0},
        {"session_pool_max_total_conn": 0},
        {"session_pool_default_idle_timeout": 0.0},
    ],
)
def test_pool_off(items: dict[str, Any]) -> None:
    """Each item can switch the pool off."""
    fixture = Fixture(**items)
    ss, backend = fixture.session()
    assert not fixture.release(ss)
    assert backend.commands == []


def test_unshareable_login_and_busy_session_are_refused() -> None:
    """ODP's replayed logins are never shared, nor a session carrying a request."""
    fixture = Fixture()
    ss, _ = fixture.session()
    assert not fixture.pool.release(ss, None, "test", True)
    ss.machine.activate()
    assert not fixture.release(ss)


def test_idle_timeout_closes_pooled_sessions() -> None:
    """After session_pool_default_idle_timeout a pooled session is closed with COM_QUIT."""
    fixture = Fixture(session_pool_default_idle_timeout=60.0)
    first, backend = fixture.session()
    assert fixture.release(first)
    fixture.clock.advance(30)
    second, _ = fixture.session()
    assert fixture.release(second)
    fixture.clock.advance(31)
    fixture.flush()
    assert not first.alive and first.machine.state is ServerSessionState.MSS_CLOSED
    assert isinstance(backend.commands[-1], ComQuit)
    assert second.alive and len(fixture.pool) == 1
    fixture.clock.advance(30)
    fixture.flush()
    assert not second.alive and len(fixture.pool) == 0
    assert fixture.clock.getDelayedCalls() == []


@pytest.mark.parametrize("method", ["change_user", "reset_connection"])
def test_reset_error_closes_the_session(method: str) -> None:
    """A reset the server refuses: the session is closed, never handed out."""
    fixture = Fixture(session_pool_reset_command=method)
    ss, _ = fixture.session(Backend(reset="error"))
    assert fixture.release(ss)
    assert not ss.alive
    assert len(fixture.pool) == 0 and fixture.take() is None
    assert fixture.stats.server_session_resets_failed == 1


@pytest.mark.parametrize("method", ["change_user", "reset_connection"])
def test_unanswered_reset_closes_the_session(method: str) -> None:
    """A reset without an answer in short_async_task_timeout closes the session."""
    fixture = Fixture(short_async_task_timeout=5.0, session_pool_reset_command=method)
    ss, _ = fixture.session(Backend(reset="silent"))
    assert fixture.release(ss)
    fixture.clock.advance(4)
    assert ss.alive and fixture.take() is None
    fixture.clock.advance(2)
    fixture.flush()
    assert not ss.alive and len(fixture.pool) == 0
    assert fixture.stats.server_session_resets_failed == 1


def test_a_server_without_the_reset_command_gets_the_other_one() -> None:
    """A server that does not know COM_RESET_CONNECTION: that session closes, later ones
    are reset with COM_CHANGE_USER; and the other way round."""
    fixture = Fixture(session_pool_reset_command="reset_connection")
    first, _ = fixture.session(Backend(reset="unsupported", reset_only=True))
    assert fixture.release(first)
    assert not first.alive and fixture.stats.server_session_resets_failed == 1
    second, backend = fixture.session(Backend(reset="unsupported", reset_only=True))
    assert fixture.release(second)
    assert [type(c) for c in backend.commands] == [ComChangeUser, AuthSwitchResponse]
    assert fixture.take() == (second, True)
    fixture = Fixture(session_pool_reset_command="change_user")
    first, _ = fixture.session(Backend(reset="unsupported"))
    assert fixture.release(first)
    assert not first.alive
    second, backend = fixture.session()
    assert fixture.release(second)
    assert [type(c) for c in backend.commands] == [ComResetConnection]


def test_a_pooled_session_the_server_closes_is_forgotten() -> None:
    """The server closing an idle pooled session removes it from the pool."""
    fixture = Fixture()
    ss, backend = fixture.session()
    assert fixture.release(ss)
    backend.transport.loseConnection()
    fixture.flush()
    assert len(fixture.pool) == 0 and fixture.take() is None
    assert fixture.lost == []  # the client that left it hears nothing


def test_the_taker_hears_of_the_loss() -> None:
    """Once taken, the session's end goes to the taker's handler."""
    fixture = Fixture()
    ss, backend = fixture.session()
    assert fixture.release(ss)
    assert fixture.take() == (ss, True)
    backend.transport.loseConnection()
    fixture.flush()
    assert fixture.lost == [ss]


def test_close_drains_and_refuses_more() -> None:
    """Stopping the proxy closes every pooled session; later releases are refused."""
    fixture = Fixture()
    idle, _ = fixture.session()
    resetting, _ = fixture.session(Backend(reset="silent"))
    assert fixture.release(idle) and fixture.release(resetting)
    fixture.pool.close()
    fixture.flush()
    assert not idle.alive and not resetting.alive
    assert len(fixture.pool) == 0
    late, _ = fixture.session()
    assert not fixture.release(late)
    assert fixture.clock.getDelayedCalls() == []


def test_reconfigured_follows_new_bounds_and_timeout() -> None:
    """Lower bounds close the longest idle sessions; a shorter timeout applies at once."""
    fixture = Fixture()
    sessions = []
    for _ in range(3):
        ss, _ = fixture.session()
        assert fixture.release(ss)
        sessions.append(ss)
        fixture.clock.advance(10)
    fixture.config = attrs.evolve(fixture.config, session_pool_default_max_conn=2)
    fixture.pool.reconfigured()
    fixture.flush()
    assert [ss.alive for ss in sessions] == [False, True, True]
    fixture.config = attrs.evolve(fixture.config, session_pool_default_idle_timeout=15.0)
    fixture.pool.reconfigured()
    fixture.flush()
    assert [ss.alive for ss in sessions] == [False, False, True]
    fixture.clock.advance(10)
    fixture.flush()
    assert not sessions[2].alive and len(fixture.pool) == 0
    fixture.config = attrs.evolve(fixture.config, enable_session_pool_for_no_sharding=False)
    fixture.pool.reconfigured()
    assert not fixture.release(fixture.session()[0])
