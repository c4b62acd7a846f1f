"""
A client that pipelines commands (sends the next ones before the previous
answer is complete) through the proxy, with in-memory transports: every
command is served, in order, whatever finished the one before it (a relayed
answer, a local one, a read-back of variables the proxy runs on its own).

The proxy's L{ServerConnection} keeps pipelined packets buffered until it is
the client's turn again; these tests hold the proxy to asking for them.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from fuzz.proxy import app_config, join_new_backends
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.wire.connection import ClientConnection, Phase, RowData, ServerConnection
from obproxy_tx.wire.constants import Capability, ColumnFlag, ColumnType, ServerStatus
from obproxy_tx.wire.packets import (
    ColumnCount,
    ColumnDefinition41,
    ComPing,
    ComQuery,
    ComStmtExecute,
    ComStmtPrepare,
    EOFPacket,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
    StmtPrepareOK,
    TextRow,
)
from obproxy_tx.wire.scramble import native_password_response, native_password_verifier

BACKEND_CAPS = Capability(0x009FF7FF)
CLIENT_CAPS = (
    Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_LONG_PASSWORD
)
PASSWORD = b"secret"
AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT


def _column(name: bytes) -> ColumnDefinition41:
    return ColumnDefinition41(
        schema=b"",
        table=b"",
        org_table=b"",
        name=name,
        org_name=b"",
        character_set=45,
        column_length=80,
        column_type=ColumnType.MYSQL_TYPE_VAR_STRING,
        flags=ColumnFlag(0),
        decimals=0,
    )


class Backend(Protocol):
    """
    A scripted server: an OK whose info is the query for most queries, a
    one-row result for C{SELECT @...} (the proxy's read-back), prepared
    statements without parameters. Queries starting with L{hold} wait for
    L{release}.
    """

    transport: Any

    def __init__(self) -> None:
        self.conn = ServerConnection(BACKEND_CAPS)
        self.commands: list[Any] = []
        self.hold: bytes | None = None
        self.held: list[Any] = []

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(
            self.conn.send(HandshakeV10("5.7.25-fake", 7, b"B" * 20, BACKEND_CAPS, 45, AUTOCOMMIT))
        )

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.conn.receive_data(data):
            if isinstance(event, HandshakeResponse41):
                self.transport.write(self.conn.send(OKPacket(status_flags=AUTOCOMMIT)))
                continue
            self.commands.append(event)
            if self.hold is not None and getattr(event, "query", b"").startswith(self.hold):
                self.held.append(event)
            else:
                self._answer(event)

    def release(self) -> None:
        """Answer the held commands."""
        self.hold = None
        held, self.held = self.held, []
        for event in held:
            self._answer(event)

    def _answer(self, event: Any) -> None:
        conn = self.conn
        if isinstance(event, ComQuery) and event.query.startswith(b"SELECT @"):
            packets: list[Any] = [ColumnCount(1), _column(event.query[7:])]
            packets.append(EOFPacket(0, AUTOCOMMIT))
            packets += [TextRow((b"2026-01-01 00:00:00",)), conn.end_of_rows(AUTOCOMMIT)]
            self.transport.write(conn.send_many(packets))
        elif isinstance(event, ComQuery):
            self.transport.write(conn.send(OKPacket(status_flags=AUTOCOMMIT, info=event.query)))
        elif isinstance(event, ComStmtPrepare):
            self.transport.write(conn.send(StmtPrepareOK(40 + len(self.commands), 0, 0, 0)))
        elif isinstance(event, ComStmtExecute):
            info = b"executed %d" % event.statement_id
            self.transport.write(conn.send(OKPacket(status_flags=AUTOCOMMIT, info=info)))
        else:
            self.transport.write(conn.send(OKPacket(status_flags=AUTOCOMMIT)))


class Harness:
    """
    The proxy on a memory reactor with one client session; the test plays a
    client that may write several commands at once.
    """

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.manager = SessionManager(app_config(native_password_verifier(PASSWORD)), self.reactor)
        self.backends: list[Backend] = []
        self.pumps: list[iosim.IOPump] = []
        self.client = ClientConnection(CLIENT_CAPS)
        self.pending: list[Any] = []
        self.answers: list[list[Any]] = []
        self.current: list[Any] = []
        self.buffer = b""
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        self.session: Any = cast(Any, self.manager.listener_factory().buildProtocol(address))
        self.transport = iosim.FakeTransport(self.session, isServer=True, peerAddress=address)
        self.session.makeConnection(self.transport)

    def flush(self) -> None:
        """Move bytes everywhere until nothing moves; read the client's answers."""
        for _ in range(30):
            for backend, _, pump in join_new_backends(
                self.reactor, len(self.backends), lambda host: Backend()
            ):
                self.backends.append(backend)
                self.pumps.append(pump)
            for pump in self.pumps:
                pump.flush()
            data = b"".join(self.transport.stream)
            self.transport.stream = []
            if data:
                self._read(data)
            self.reactor.advance(0)
            moving = any(p.clientIO.stream or p.serverIO.stream for p in self.pumps)
            if not moving and not data and len(self.reactor.tcpClients) == len(self.backends):
                break

    def _read(self, data: bytes) -> None:
        # Packet by packet: the client's conversation reads an answer only
        # after its command went out, so a pipelined command is "sent" to it
        # when the answer before it is complete.
        self.buffer += data
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:3], "little")
            if len(self.buffer) < 4 + size:
                return
            packet, self.buffer = self.buffer[: 4 + size], self.buffer[4 + size :]
            if self.client.phase is Phase.COMMAND_IDLE and self.pending:
                self.client.send(self.pending.pop(0))
            self.current.extend(self.client.receive_data(packet))
            if self.client.phase is Phase.COMMAND_IDLE:
                self.answers.append(self.current)
                self.current = []

    def write(self, *packets: Any) -> None:
        """Write C{packets} to the proxy in one piece, each a new command (seq 0)."""
        first, rest = packets[0], packets[1:]
        data = self.client.send(first)
        for packet in rest:
            payload = packet.encode(self.client.capabilities)
            data += len(payload).to_bytes(3, "little") + b"\x00" + payload
        self.pending.extend(rest)
        self.session.dataReceived(data)
        self.flush()

    def login(self) -> None:
        """Log in as app."""
        self.flush()
        greeting = self.current[0]
        assert isinstance(greeting, HandshakeV10)
        self.current = []
        self.session.dataReceived(
            self.client.send(
                HandshakeResponse41(
                    CLIENT_CAPS,
                    1 << 24,
                    45,
                    "app",
                    native_password_response(PASSWORD, greeting.auth_plugin_data),
                    auth_plugin_name="mysql_native_password",
                )
            )
        )
        self.flush()
        assert [[type(e) for e in a] for a in self.answers] == [[OKPacket]], self.answers
        self.answers = []


def _infos(answers: list[list[Any]]) -> list[Any]:
    """The info of each one-OK answer, or the answer itself."""
    return [a[0].info if len(a) == 1 and isinstance(a[0], OKPacket) else a for a in answers]


def test_two_queries_written_back_to_back_are_both_answered_in_order() -> None:
    """Two COM_QUERYs in one write get their answers in order and reach the server in order."""
    harness = Harness()
    harness.login()
    harness.write(ComQuery(b"UPDATE one"), ComQuery(b"UPDATE two"))
    assert _infos(harness.answers) == [b"UPDATE one", b"UPDATE two"]
    backend = harness.backends[-1]
    assert [c.query for c in backend.commands] == [b"UPDATE one", b"UPDATE two"]
    assert not harness.session._busy


def test_three_commands_mixing_local_and_relayed_answers() -> None:
    """A ping, a relayed query and a locally answered CONNECTION_ID() in one write: all answered."""
    harness = Harness()
    harness.login()
    harness.write(ComPing(), ComQuery(b"UPDATE t"), ComQuery(b"SELECT CONNECTION_ID()"))
    assert len(harness.answers) == 3
    assert isinstance(harness.answers[0][0], OKPacket)
    assert harness.answers[1][0].info == b"UPDATE t"
    rows = [e.payload for e in harness.answers[2] if isinstance(e, RowData)]
    cs_id = str(harness.session.cs_id).encode()
    assert rows == [bytes([len(cs_id)]) + cs_id]


def test_prepare_and_execute_pipelined() -> None:
    """COM_STMT_PREPARE then COM_STMT_EXECUTE of its (proxy) id in one write: both answered."""
    harness = Harness()
    harness.login()
    harness.write(ComStmtPrepare(b"UPDATE t SET a = 1"), ComStmtExecute(1, raw_parameters=b""))
    assert len(harness.answers) == 2
    prepared = harness.answers[0][0]
    assert isinstance(prepared, StmtPrepareOK) and prepared.statement_id == 1
    # The server's own id (41) went to the server: the proxy translated it.
    assert harness.answers[1][0].info == b"executed 41"


def test_commands_pipelined_while_a_read_back_runs() -> None:
    """
    Commands that arrive while the proxy reads back a variable the server did
    not report wait for it, then are all answered in order.
    """
    harness = Harness()
    harness.login()
    backend = harness.backends[-1]
    backend.hold = b"SELECT @"
    harness.write(ComQuery(b"SET @t = NOW()"))
    assert _infos(harness.answers) == [b"SET @t = NOW()"]
    assert backend.held, "the read-back is in flight"
    harness.write(ComQuery(b"UPDATE a"), ComQuery(b"UPDATE b"), ComQuery(b"UPDATE c"))
    assert len(harness.answers) == 1
    backend.release()
    harness.flush()
    assert _infos(harness.answers)[1:] == [b"UPDATE a", b"UPDATE b", b"UPDATE c"]
    queries = [c.query for c in backend.commands]
    assert queries == [b"SET @t = NOW()", b"SELECT @t", b"UPDATE a", b"UPDATE b", b"UPDATE c"]
    assert harness.session.state.user_vars["t"] == "2026-01-01 00:00:00"
    assert not harness.session._busy


def test_queries_pipelined_behind_a_statement_that_needs_a_read_back() -> None:
    """A SET needing a read-back and two queries in one write: the queries follow the read-back."""
    harness = Harness()
    harness.login()
    harness.write(ComQuery(b"SET @t = NOW()"), ComQuery(b"UPDATE a"), ComQuery(b"UPDATE b"))
    assert _infos(harness.answers) == [b"SET @t = NOW()", b"UPDATE a", b"UPDATE b"]
    queries = [c.query for c in harness.backends[-1].commands]
    assert queries == [b"SET @t = NOW()", b"SELECT @t", b"UPDATE a", b"UPDATE b"]


def test_commands_pipelined_behind_a_sync() -> None:
    """
    Commands written at once after a forced route: the new server session is
    synced first (answer swallowed), then every command is answered in order.
    """
    harness = Harness()
    harness.login()
    harness.write(ComQuery(b"SET @v = 5"))
    harness.write(
        ComQuery(b"SET @obproxy_route_addr = '127.0.0.2:3306'"),
        ComQuery(b"UPDATE a"),
        ComQuery(b"UPDATE b"),
    )
    answers = harness.answers[1:]
    assert isinstance(answers[0][0], OKPacket)
    assert _infos(answers[1:]) == [b"UPDATE a", b"UPDATE b"]
    # (the first backend is the manager's greeting probe)
    first, second = harness.backends[1:]
    assert [c.query for c in first.commands] == [b"SET @v = 5"]
    assert [c.query for c in second.commands] == [b"SET @v = 5", b"UPDATE a", b"UPDATE b"]


def test_error_answer_then_pipelined_commands() -> None:
    """An ERR answered locally (unknown statement) does not strand the commands behind it."""
    harness = Harness()
    harness.login()
    harness.write(ComStmtExecute(99, raw_parameters=b""), ComQuery(b"UPDATE a"))
    assert isinstance(harness.answers[0][0], ERRPacket)
    assert _infos(harness.answers[1:]) == [b"UPDATE a"]
