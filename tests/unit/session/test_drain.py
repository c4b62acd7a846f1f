"""
The graceful drain (L{obproxy_tx.session.drain}): the pure decision, the
shutdown packet, the L{Drain} adapter over stand-in sessions and a clock, and
L{SessionManager.stopService} over real client sessions with in-memory
transports and a scripted backend that keeps transactions.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim

from obproxy_tx.config import ITEMS, parse_config, set_item
from obproxy_tx.session.drain import (
    CLOSE_WAIT,
    ER_SERVER_SHUTDOWN,
    KILL_WAIT,
    Drain,
    DrainStep,
    SessionView,
    decide,
    shutdown_error,
)
from obproxy_tx.wire.connection import Phase
from obproxy_tx.wire.constants import Capability, ServerStatus
from obproxy_tx.wire.packets import ComQuery, ComQuit, HandshakeResponse41, OKPacket
from tests.unit.session import test_client_session as harness_module
from tests.unit.session.test_client_session import FakeBackend, Harness

# -- the decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logged_in", "idle", "in_transaction", "past_deadline", "step"),
    [
        (True, True, False, False, DrainStep.CLOSE),
        (True, True, True, False, DrainStep.WAIT),
        (True, False, False, False, DrainStep.WAIT),
        (True, False, True, False, DrainStep.WAIT),
        (False, False, False, False, DrainStep.CLOSE),
        (False, True, False, False, DrainStep.CLOSE),
        (True, False, True, True, DrainStep.CLOSE),
        (True, True, True, True, DrainStep.CLOSE),
        (True, False, False, True, DrainStep.CLOSE),
    ],
)
def test_decide(
    logged_in: bool, idle: bool, in_transaction: bool, past_deadline: bool, step: DrainStep
) -> None:
    """Idle outside a transaction, or not logged in, closes; the deadline closes everything."""
    view = SessionView(logged_in=logged_in, idle=idle, in_transaction=in_transaction)
    assert decide(view, past_deadline) is step


def test_shutdown_error_is_mariadb_1053_with_sequence_zero() -> None:
    """The packet a server sends clients it disconnects at shutdown."""
    packet = shutdown_error(int(Capability.CLIENT_PROTOCOL_41))
    length = int.from_bytes(packet[:3], "little")
    assert length == len(packet) - 4
    assert packet[3] == 0
    payload = packet[4:]
    assert payload[0] == 0xFF
    assert int.from_bytes(payload[1:3], "little") == ER_SERVER_SHUTDOWN == 1053
    assert payload[3:9] == b"#08S01"
    assert payload[9:] == b"Server shutdown in progress"


def test_config_item() -> None:
    """graceful_shutdown_timeout: ODP's 30s graceful exit, changeable at run time, 0 allowed."""
    item = ITEMS["graceful_shutdown_timeout"]
    assert item.default == 30.0
    assert not item.need_reboot
    config = parse_config(
        'clusters: [{name: c, type: mysql, servers: ["127.0.0.1:1"]}]\n'
        "graceful_shutdown_timeout: 500ms\n"
    )
    assert config.graceful_shutdown_timeout == 0.5
    assert (
        set_item(config, "graceful_shutdown_timeout", "0", origin="t").graceful_shutdown_timeout
        == 0
    )


# -- the adapter over stand-ins -----------------------------------------------------------


class _Conn:
    def __init__(self, phase: Phase = Phase.COMMAND_IDLE) -> None:
        self.phase = phase
        self.capabilities = Capability.CLIENT_PROTOCOL_41
        self.compression: str | None = None

    def has_buffered(self) -> bool:
        return False


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted = True


class _Server:
    alive = True

    def __init__(self, backend_id: int) -> None:
        self.backend_id = backend_id
        self.server = "127.0.0.1:3306"


class _Session:
    """What the drain reads and calls on a client session."""

    def __init__(self, manager: _Manager, cs_id: int, **state: Any) -> None:
        self.manager = manager
        self.cs_id = cs_id
        self.conn = _Conn(state.get("phase", Phase.COMMAND_IDLE))
        self.login = "app" if state.get("logged_in", True) else None
        self.active = state.get("active")
        self.pin_reasons = (
            frozenset(["transaction"]) if state.get("in_transaction") else frozenset()
        )
        self.server_sessions = [_Server(9)]
        self.transport = _Transport()
        self.closed = False
        self.kills: list[bytes] = []
        self.kill_answers: list[defer.Deferred[Any]] = []
        manager.client_sessions[cs_id] = self

    def close(self) -> None:
        self.closed = True

    def gone(self) -> None:
        """The connection's loss, as the reactor reports it after a close."""
        del self.manager.client_sessions[self.cs_id]

    def side_query(self, sql: bytes, server: Any = None) -> defer.Deferred[Any]:
        self.kills.append(sql)
        answer: defer.Deferred[Any] = defer.Deferred()
        self.kill_answers.append(answer)
        return answer

    def shutdown_packets(self) -> int:
        return sum(1 for data in self.transport.written if data == shutdown_error())


class _Manager:
    def __init__(self) -> None:
        self.reactor = Clock()
        self.client_sessions: dict[int, _Session] = {}


def _done(deferred: defer.Deferred[Any]) -> list[Any]:
    fired: list[Any] = []
    deferred.addBoth(fired.append)
    return fired


def test_no_sessions_finishes_at_once() -> None:
    manager = _Manager()
    drain = Drain(manager, 30)
    fired = _done(drain.start())
    assert fired and fired[0].sessions_at_start == 0
    assert not manager.reactor.getDelayedCalls()


def test_idle_sessions_get_1053_and_close_at_once() -> None:
    manager = _Manager()
    idle = _Session(manager, 1)
    still_logging_in = _Session(manager, 2, logged_in=False, phase=Phase.HANDSHAKE_SENT)
    drain = Drain(manager, 30)
    fired = _done(drain.start())
    assert idle.closed and idle.shutdown_packets() == 1
    # Mid-handshake: closed, but no packet the client is not waiting for.
    assert still_logging_in.closed and still_logging_in.shutdown_packets() == 0
    assert not fired
    idle.gone()
    still_logging_in.gone()
    manager.reactor.advance(0.1)
    assert fired[0].closed_idle == 2 and fired[0].closed_at_deadline == 0
    assert not manager.reactor.getDelayedCalls()


def test_a_transaction_is_waited_for_and_closed_when_it_ends() -> None:
    manager = _Manager()
    in_transaction = _Session(manager, 1, in_transaction=True)
    busy = _Session(manager, 2, active=_Server(77), phase=Phase.RESULT_PENDING)
    drain = Drain(manager, 30)
    fired = _done(drain.start())
    manager.reactor.advance(5)
    assert not in_transaction.closed and not busy.closed
    # A statement inside the transaction ends: still in it, still waited for.
    drain.request_finished(in_transaction)
    manager.reactor.advance(0)
    assert not in_transaction.closed
    # COMMIT answered.
    in_transaction.pin_reasons = frozenset()
    drain.request_finished(in_transaction)
    manager.reactor.advance(0)
    assert in_transaction.closed and in_transaction.shutdown_packets() == 1
    in_transaction.gone()
    # The running statement's answer is out and it is idle again (seen by the
    # next full look, if no request end reported it).
    busy.active = None
    busy.conn.phase = Phase.COMMAND_IDLE
    manager.reactor.pump([0.1] * 10)
    assert busy.closed
    busy.gone()
    manager.reactor.advance(0.1)
    assert fired and fired[0].closed_idle == 2
    assert busy.kills == []


def test_the_deadline_kills_running_statements_and_closes_the_rest() -> None:
    manager = _Manager()
    in_transaction = _Session(manager, 1, in_transaction=True)
    busy = _Session(manager, 2, active=_Server(77), phase=Phase.RESULT_PENDING)
    drain = Drain(manager, 2)
    fired = _done(drain.start())
    manager.reactor.advance(1.9)
    assert not in_transaction.closed and not busy.closed
    manager.reactor.advance(0.1)
    assert drain.past_deadline
    assert busy.kills == [b"KILL QUERY 77"]
    assert in_transaction.kills == []
    assert in_transaction.closed and in_transaction.shutdown_packets() == 1
    # Mid-answer: no packet that could cut into it.
    assert busy.closed and busy.shutdown_packets() == 0
    in_transaction.gone()
    busy.gone()
    manager.reactor.advance(0.1)
    # The KILL has not been answered: the drain waits for it (so it is sent).
    assert not fired
    busy.kill_answers[0].callback([OKPacket()])
    assert fired and fired[0].closed_at_deadline == 2 and fired[0].statements_killed == 1


def test_an_unanswered_kill_is_given_up_after_a_while() -> None:
    manager = _Manager()
    busy = _Session(manager, 2, active=_Server(77), phase=Phase.RESULT_PENDING)
    drain = Drain(manager, 1)
    fired = _done(drain.start())
    manager.reactor.advance(1)
    busy.gone()
    manager.reactor.advance(KILL_WAIT - 0.01)
    assert not fired
    manager.reactor.advance(0.02)
    assert fired and fired[0].statements_killed == 1


def test_a_session_that_does_not_go_is_aborted() -> None:
    manager = _Manager()
    stuck = _Session(manager, 1, in_transaction=True)
    drain = Drain(manager, 0)
    fired = _done(drain.start())
    assert stuck.closed
    manager.reactor.advance(CLOSE_WAIT)
    assert stuck.transport.aborted
    stuck.gone()
    manager.reactor.advance(0.1)
    assert fired and fired[0].closed_at_deadline == 1


def test_compressed_clients_get_no_raw_packet() -> None:
    manager = _Manager()
    session = _Session(manager, 1)
    session.conn.compression = "zlib"
    Drain(manager, 30).start()
    assert session.closed and session.transport.written == []


# -- SessionManager.stopService over real client sessions ---------------------------------


class _TransactionalBackend(FakeBackend):
    """Keeps SERVER_STATUS_IN_TRANS from BEGIN to COMMIT; holds SELECT SLEEP's answer."""

    def __init__(self, die_on_query: bool = False) -> None:
        super().__init__(die_on_query)
        self.in_transaction = False
        self.held: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.conn.receive_data(data):
            if isinstance(event, HandshakeResponse41):
                self.logins.append(event)
                self.transport.write(self.conn.send(OKPacket(status_flags=ServerStatus(2))))
                continue
            self.commands.append(event)
            if isinstance(event, ComQuit):
                continue
            query = event.query.upper() if isinstance(event, ComQuery) else b""
            if query.startswith(b"SELECT SLEEP"):
                self.held.append(query)
                continue
            if query.startswith(b"BEGIN"):
                self.in_transaction = True
            elif query.startswith((b"COMMIT", b"ROLLBACK")):
                self.in_transaction = False
            self.answer()

    def answer(self) -> None:
        status = ServerStatus(2 | (1 if self.in_transaction else 0))
        self.transport.write(self.conn.send(OKPacket(affected_rows=0, status_flags=status)))


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setattr(harness_module, "FakeBackend", _TransactionalBackend)
    made = Harness()
    made.login()
    return made


def _client_bytes(harness: Harness) -> bytes:
    data = b"".join(harness.transport.stream)
    harness.transport.stream = []
    return data


def _connection_lost(harness: Harness) -> None:
    assert harness.transport.disconnecting
    harness.session.connectionLost(Failure(ConnectionDone()))


def test_stop_service_closes_an_idle_session_at_once(harness: Harness) -> None:
    fired = _done(harness.manager.stopService())
    assert _client_bytes(harness) == shutdown_error(int(harness.session.conn.capabilities))
    _connection_lost(harness)
    harness.reactor.advance(0.1)
    assert fired == [None]
    # Called again: the same drain, already over.
    assert _done(harness.manager.stopService()) == [None]


def test_stop_service_lets_a_transaction_commit(harness: Harness) -> None:
    harness.send(ComQuery(b"BEGIN"))
    harness.send(ComQuery(b"INSERT INTO t VALUES (1)"))
    assert "transaction" in harness.session.pin_reasons
    harness.events.clear()
    fired = _done(harness.manager.stopService())
    harness.reactor.advance(10)
    assert not harness.transport.disconnecting
    # The transaction goes on, then commits; the session closes after the answer.
    harness.session.dataReceived(harness.client.send(ComQuery(b"INSERT INTO t VALUES (2)")))
    harness.flush()
    assert isinstance(harness.events.pop(), OKPacket)
    harness.session.dataReceived(harness.client.send(ComQuery(b"COMMIT")))
    for _ in range(5):
        for pump in harness.pumps:
            pump.flush()
    harness.reactor.advance(0)
    data = _client_bytes(harness)
    assert harness.transport.disconnecting
    commit_ok = harness.client.receive_data(data[: -len(shutdown_error())])
    assert len(commit_ok) == 1 and isinstance(commit_ok[0], OKPacket)
    assert data.endswith(shutdown_error(int(harness.session.conn.capabilities)))
    backend = harness.backends[-1]
    assert [c.query for c in backend.commands if isinstance(c, ComQuery)][-1] == b"COMMIT"
    _connection_lost(harness)
    harness.reactor.advance(0.1)
    assert fired == [None]
    assert harness.manager.drain is not None
    assert harness.manager.drain.tally.closed_idle == 1


def test_stop_service_lets_a_running_statement_finish(harness: Harness) -> None:
    harness.send(ComQuery(b"SELECT SLEEP(2)"))
    backend = harness.backends[-1]
    assert backend.held
    fired = _done(harness.manager.stopService())
    harness.reactor.advance(1)
    assert not harness.transport.disconnecting
    backend.answer()
    for _ in range(5):
        for pump in harness.pumps:
            pump.flush()
    harness.reactor.advance(0)
    data = _client_bytes(harness)
    assert harness.transport.disconnecting
    answer = harness.client.receive_data(data[: -len(shutdown_error())])
    assert isinstance(answer[0], OKPacket)
    _connection_lost(harness)
    harness.reactor.advance(0.1)
    assert fired == [None]


def test_stop_service_closes_an_open_transaction_at_the_deadline(harness: Harness) -> None:
    harness.manager.reconfigure(
        set_item(harness.manager.config, "graceful_shutdown_timeout", "3s", origin="test")
    )
    harness.send(ComQuery(b"BEGIN"))
    harness.events.clear()
    fired = _done(harness.manager.stopService())
    harness.reactor.advance(2.9)
    assert not harness.transport.disconnecting
    harness.reactor.advance(0.1)
    assert harness.transport.disconnecting
    _connection_lost(harness)
    for pump in harness.pumps:
        pump.flush()
    harness.reactor.advance(0.1)
    assert fired == [None]
    assert harness.manager.drain is not None
    assert harness.manager.drain.tally.closed_at_deadline == 1
    # The server session quit (its server rolls the transaction back).
    backend = harness.backends[-1]
    assert isinstance(backend.commands[-1], ComQuit)


def test_hurry_reaches_the_deadline_now() -> None:
    manager = _Manager()
    in_transaction = _Session(manager, 1, in_transaction=True)
    busy = _Session(manager, 2, active=_Server(5), phase=Phase.RESULT_PENDING)
    drain = Drain(manager, 30)
    fired = _done(drain.start())
    manager.reactor.advance(1)
    assert not in_transaction.closed
    drain.hurry()
    assert drain.past_deadline
    assert in_transaction.closed and busy.closed and busy.kills == [b"KILL QUERY 5"]
    in_transaction.gone()
    busy.gone()
    busy.kill_answers[0].callback([])
    assert fired and fired[0].closed_at_deadline == 2
    # Nothing is left to fire later (the 30s deadline was cancelled).
    assert not manager.reactor.getDelayedCalls()
    drain.hurry()


def test_a_transaction_whose_server_session_died_is_not_waited_for() -> None:
    manager = _Manager()
    session = _Session(manager, 1, in_transaction=True)
    session.server_sessions[0].alive = False
    Drain(manager, 30).start()
    assert session.closed and session.shutdown_packets() == 1


def test_a_transaction_on_a_real_session_whose_backend_died(harness: Harness) -> None:
    harness.send(ComQuery(b"BEGIN"))
    harness.send(ComQuery(b"INSERT INTO t VALUES (1)"))
    assert "transaction" in harness.session.pin_reasons
    harness.pumps[-1].serverIO.loseConnection()
    for pump in harness.pumps:
        pump.flush()
    assert not any(ss.alive for ss in harness.session.server_sessions)
    harness.manager.stopService()
    assert harness.transport.disconnecting


def test_sessions_are_looked_at_again_once_a_second() -> None:
    manager = _Manager()
    _Session(manager, 1, in_transaction=True)
    Drain(manager, 30).start()
    # A session appearing later (the listener of an embedded manager still open): found
    # by the next full look, not at every tick.
    late = _Session(manager, 2, logged_in=False, phase=Phase.HANDSHAKE_SENT)
    manager.reactor.pump([0.1] * 9)
    assert not late.closed
    manager.reactor.pump([0.1] * 2)
    assert late.closed


def test_a_restarted_manager_drains_again(harness: Harness) -> None:
    manager = harness.manager
    first = _done(manager.stopService())
    _connection_lost(harness)
    harness.reactor.advance(0.1)
    assert first == [None]
    old = manager.drain
    manager.startService()
    peer = IPv4Address("TCP", "127.0.0.1", 40001)
    session = manager.listener_factory().buildProtocol(peer)
    transport = iosim.FakeTransport(session, isServer=True, peerAddress=peer)
    session.makeConnection(transport)
    _done(manager.stopService())
    assert manager.drain is not old
    assert manager.drain is not None and manager.drain.tally.sessions_at_start == 1
    # Still logging in: closed at once.
    assert transport.disconnecting
