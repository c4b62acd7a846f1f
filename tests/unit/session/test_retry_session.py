"""
Safe retries in the client session, with in-memory transports (see test_client_session): a
request refused by a server that cannot serve now goes to the other server; a plain read whose
server session is lost is sent again; a lost write gets a clear error and is never sent again.
"""

from __future__ import annotations

from typing import Any, Dict, List, cast

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from fuzz.proxy import join_new_backends
from obproxy_tx.config import parse_config
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.wire.connection import ClientConnection, RowData, ServerConnection
from obproxy_tx.wire.constants import ColumnFlag, ColumnType, ServerStatus
from obproxy_tx.wire.packets import (
    ColumnCount,
    ColumnDefinition41,
    ComQuery,
    ComQuit,
    EOFPacket,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
    TextRow,
)
from obproxy_tx.wire.scramble import native_password_response, native_password_verifier
from tests.unit.session.test_client_session import BACKEND_CAPS, CLIENT_CAPS, PASSWORD

SERVERS = ["127.0.0.1", "127.0.0.2"]
IN_TRANS = ServerStatus.SERVER_STATUS_AUTOCOMMIT | ServerStatus.SERVER_STATUS_IN_TRANS


class Backend(Protocol):
    """
    A scripted server: C{script} maps a query prefix to what it does with it: C{"die"} (close
    the connection without an answer), an error code (answer ERR), else rows or OK.
    """

    transport: Any
    next_id = 900

    def __init__(self, host: str, script: Dict[bytes, Any]) -> None:
        self.host = host
        self.script = script
        self.conn = ServerConnection(BACKEND_CAPS)
        self.queries: List[bytes] = []
        self.in_transaction = False

    def connectionMade(self) -> None:  # noqa: N802
        Backend.next_id += 1
        greeting = HandshakeV10(
            "10.11-fake", Backend.next_id, b"B" * 20, BACKEND_CAPS, 45, ServerStatus(2)
        )
        self.transport.write(self.conn.send(greeting))

    def _status(self) -> ServerStatus:
        return IN_TRANS if self.in_transaction else ServerStatus(2)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.conn.receive_data(data):
            if isinstance(event, ComQuit):
                self.transport.loseConnection()
                return
            if not isinstance(event, ComQuery):
                self.transport.write(self.conn.send(OKPacket(status_flags=self._status())))
                continue
            query = event.query
            self.queries.append(query)
            action = next((a for p, a in self.script.items() if query.startswith(p)), None)
            if action == "die":
                self.transport.loseConnection()
                return
            if isinstance(action, int):
                self.transport.write(self.conn.send(ERRPacket(action, "cannot serve", "HY000")))
                continue
            if query == b"BEGIN":
                self.in_transaction = True
            elif query == b"COMMIT":
                self.in_transaction = False
            if query.startswith(b"SELECT"):
                column = ColumnDefinition41(
                    schema=b"",
                    table=b"",
                    org_table=b"",
                    name=b"host",
                    org_name=b"",
                    character_set=45,
                    column_length=40,
                    column_type=ColumnType.MYSQL_TYPE_VAR_STRING,
                    flags=ColumnFlag(0),
                    decimals=0,
                )
                packets: List[Any] = [ColumnCount(1), column]
                packets.append(EOFPacket(status_flags=ServerStatus(2)))
                packets.append(TextRow((self.host.encode(),)))
                packets.append(self.conn.end_of_rows(self._status()))
                self.transport.write(self.conn.send_many(packets))
            else:
                ok = OKPacket(affected_rows=1, status_flags=self._status())
                self.transport.write(self.conn.send(ok))


class Harness:
    """A proxy with a two-server cluster on a memory reactor, and one client."""

    def __init__(
        self, scripts: Dict[str, Dict[bytes, Any]], servers: List[str] = SERVERS, extra: str = ""
    ) -> None:
        self.reactor = MemoryReactorClock()
        verifier = native_password_verifier(PASSWORD).hex().upper()
        addresses = ", ".join(f'"{host}:3306"' for host in servers)
        config = parse_config(
            f"""
{extra}
clusters:
  - name: c1
    type: mysql
    servers: [{addresses}]
    users:
      - {{name: app, tenant: sys, verifier: "*{verifier}"}}
"""
        )
        self.manager = SessionManager(config, self.reactor)
        self.scripts = scripts
        self.backends: List[Backend] = []
        self.pumps: List[iosim.IOPump] = []
        self.client = ClientConnection(CLIENT_CAPS)
        self.events: List[Any] = []
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        self.session: Any = cast(Any, self.manager.listener_factory().buildProtocol(peer))
        self.transport = iosim.FakeTransport(self.session, isServer=True, peerAddress=peer)
        self.session.makeConnection(self.transport)

    def accept_backends(self) -> None:
        for backend, _, pump in join_new_backends(
            self.reactor, len(self.backends), lambda host: Backend(host, self.scripts.get(host, {}))
        ):
            self.backends.append(backend)
            self.pumps.append(pump)

    def flush(self) -> None:
        for _ in range(30):
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

    def login(self) -> None:
        self.flush()
        greeting = self.events.pop(0)
        assert isinstance(greeting, HandshakeV10)
        self.ask(
            HandshakeResponse41(
                CLIENT_CAPS,
                1 << 24,
                45,
                "app",
                native_password_response(PASSWORD, greeting.auth_plugin_data),
                auth_plugin_name="mysql_native_password",
            )
        )
        assert isinstance(self.events.pop(0), OKPacket)

    def ask(self, packet: Any) -> List[Any]:
        """Send a client packet; return what the client got for it."""
        self.events.clear()
        self.session.dataReceived(self.client.send(packet))
        self.flush()
        return list(self.events)

    def queries(self, host: str) -> List[bytes]:
        """Every query the backends of C{host} received."""
        return [q for b in self.backends if b.host == host for q in b.queries]

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting or self.session._closed)


def _rows(events: List[Any]) -> List[bytes]:
    return [e.payload for e in events if isinstance(e, RowData)]


def test_lost_plain_read_is_sent_again_to_the_other_server() -> None:
    """The first server dies under a SELECT: the client gets the second server's rows."""
    harness = Harness({"127.0.0.1": {b"SELECT host": "die"}})
    harness.login()
    answer = harness.ask(ComQuery(b"SELECT host FROM t WHERE id = 1"))
    assert _rows(answer) == [b"\x09127.0.0.2"]
    assert not any(isinstance(e, ERRPacket) for e in answer)
    assert harness.queries("127.0.0.1") == [b"SELECT host FROM t WHERE id = 1"]
    assert harness.queries("127.0.0.2") == [b"SELECT host FROM t WHERE id = 1"]
    assert harness.manager.stats.lost_reads_resent == 1
    assert not harness.closed


def test_lost_read_is_not_sent_again_when_turned_off() -> None:
    """retry_lost_reads off: the lost read gets an error, like a write."""
    harness = Harness({"127.0.0.1": {b"SELECT host": "die"}}, extra="retry_lost_reads: false")
    harness.login()
    answer = harness.ask(ComQuery(b"SELECT host FROM t"))
    assert isinstance(answer[-1], ERRPacket)
    assert harness.queries("127.0.0.2") == []


def test_lost_locking_read_and_write_are_never_sent_again() -> None:
    """
    A write (or a locking read) lost mid-request gets an error saying it may have run; outside
    a transaction the client session goes on with a new server session.
    """
    harness = Harness({"127.0.0.1": {b"INSERT": "die", b"SELECT host FROM t FOR": "die"}})
    harness.login()
    answer = harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))
    assert isinstance(answer[-1], ERRPacket)
    assert answer[-1].error_code == 1158
    assert "may or may not have run" in answer[-1].message
    assert not harness.closed
    assert all(not q.startswith(b"INSERT") for q in harness.queries("127.0.0.2"))
    assert harness.manager.stats.lost_requests_reported == 1
    # The session goes on: the next statement gets a server session of its own.
    answer = harness.ask(ComQuery(b"SELECT host FROM u"))
    assert len(_rows(answer)) == 1
    assert not harness.closed


def test_lost_locking_read_is_not_resent() -> None:
    """SELECT ... FOR UPDATE is not a plain read."""
    harness = Harness({"127.0.0.1": {b"SELECT host FROM t FOR": "die"}})
    harness.login()
    answer = harness.ask(ComQuery(b"SELECT host FROM t FOR UPDATE"))
    assert isinstance(answer[-1], ERRPacket)
    assert harness.queries("127.0.0.2") == []
    assert harness.manager.stats.lost_reads_resent == 0


def test_lost_request_inside_a_transaction_disconnects() -> None:
    """Inside a transaction: an error, then the connection closes (as ODP); nothing resent."""
    harness = Harness({"127.0.0.1": {b"SELECT host": "die"}})
    harness.login()
    assert isinstance(harness.ask(ComQuery(b"BEGIN"))[-1], OKPacket)
    answer = harness.ask(ComQuery(b"SELECT host FROM t"))
    assert isinstance(answer[-1], ERRPacket)
    assert harness.closed
    assert harness.queries("127.0.0.2") == []


def test_lost_read_with_no_other_server_is_not_resent() -> None:
    """A request is never sent again to the server that lost it."""
    harness = Harness({"127.0.0.1": {b"SELECT host": "die"}}, servers=["127.0.0.1"])
    harness.login()
    answer = harness.ask(ComQuery(b"SELECT host FROM t"))
    assert isinstance(answer[-1], ERRPacket)
    assert harness.queries("127.0.0.1") == [b"SELECT host FROM t"]


def test_refused_write_goes_to_the_other_server() -> None:
    """ERR 8002 (server stopping) as the whole answer: the INSERT runs on the other server."""
    harness = Harness({"127.0.0.1": {b"INSERT": 8002}})
    harness.login()
    answer = harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))
    assert len(answer) == 1 and isinstance(answer[0], OKPacket)
    assert harness.queries("127.0.0.2") == [b"INSERT INTO ledger VALUES (1)"]
    assert harness.manager.stats.refused_requests_retried == 1
    # The session goes on with the server that answered.
    answer = harness.ask(ComQuery(b"SELECT host FROM t"))
    assert _rows(answer) == [b"\x09127.0.0.2"]


def test_other_errors_reach_the_client() -> None:
    """A duplicate key (1062) is an answer, not a refusal: relayed, nothing retried."""
    harness = Harness({"127.0.0.1": {b"INSERT": 1062}})
    harness.login()
    answer = harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))
    assert isinstance(answer[-1], ERRPacket) and answer[-1].error_code == 1062
    assert harness.queries("127.0.0.2") == []


def test_refused_inside_a_transaction_is_relayed() -> None:
    """Inside a transaction a refusal is the client's answer: it cannot move."""
    harness = Harness({"127.0.0.1": {b"INSERT": 8002}})
    harness.login()
    harness.ask(ComQuery(b"BEGIN"))
    answer = harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))
    assert isinstance(answer[-1], ERRPacket) and answer[-1].error_code == 8002
    assert harness.queries("127.0.0.2") == []


def test_refusals_everywhere_end_with_the_last_error() -> None:
    """Every server refuses: bounded retries, then the refusal reaches the client."""
    harness = Harness({"127.0.0.1": {b"INSERT": 8002}, "127.0.0.2": {b"INSERT": 8002}})
    harness.login()
    answer = harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))
    assert isinstance(answer[-1], ERRPacket) and answer[-1].error_code == 8002
    total = len(harness.queries("127.0.0.1")) + len(harness.queries("127.0.0.2"))
    assert total == harness.manager.config.connect_observer_max_retries


def test_lost_begin_is_sent_again_and_the_transaction_lives_there() -> None:
    """A bare BEGIN lost mid-request opened nothing that survives: the other server gets it."""
    harness = Harness({"127.0.0.1": {b"BEGIN": "die"}})
    harness.login()
    answer = harness.ask(ComQuery(b"BEGIN"))
    assert len(answer) == 1 and isinstance(answer[0], OKPacket)
    assert answer[0].status_flags & ServerStatus.SERVER_STATUS_IN_TRANS
    answer = harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))
    assert isinstance(answer[-1], OKPacket)
    assert harness.queries("127.0.0.2") == [b"BEGIN", b"INSERT INTO ledger VALUES (1)"]
    assert harness.session.pin_reasons == {"transaction"}


def test_server_session_lost_while_syncing_moves_to_the_next_server() -> None:
    """
    A new server session that dies while being synced (before the request went out) is
    replaced on the next server, where the session's state is synced and the request runs.
    """
    harness = Harness({"127.0.0.2": {b"SET @v": "die"}})
    harness.login()
    harness.ask(ComQuery(b"SET @v = 5"))
    (first,) = [b for b in harness.backends if b.queries]
    assert first.host == "127.0.0.1"
    first.transport.loseConnection()
    harness.flush()
    assert harness.session.bound is None
    answer = harness.ask(ComQuery(b"SELECT host FROM t"))
    assert _rows(answer) == [b"\x09127.0.0.1"]
    assert harness.queries("127.0.0.2") == [b"SET @v = 5"]
    assert harness.queries("127.0.0.1")[-2:] == [b"SET @v = 5", b"SELECT host FROM t"]
    assert not harness.closed


def test_lost_multi_statement_disconnects() -> None:
    """Several statements in one request: which of them ran is unknown; the client is closed."""
    harness = Harness({"127.0.0.1": {b"INSERT": "die"}})
    harness.login()
    answer = harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1); INSERT INTO ledger VALUES (2)"))
    assert isinstance(answer[-1], ERRPacket)
    assert "may or may not" not in answer[-1].message
    assert harness.closed
    assert harness.queries("127.0.0.2") == []


def test_shutdown_error_moves_a_read_but_not_a_write() -> None:
    """MariaDB's 1053 may follow part of a write: the read moves, the write's error stays."""
    harness = Harness({"127.0.0.1": {b"INSERT": 1053, b"SELECT host": 1053}})
    harness.login()
    answer = harness.ask(ComQuery(b"SELECT host FROM t"))
    assert _rows(answer) == [b"\x09127.0.0.2"]
    # The next new server session goes to the first server again (in turn).
    harness.session.bound.close(quit=True)
    harness.flush()
    answer = harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))
    assert isinstance(answer[-1], ERRPacket) and answer[-1].error_code == 1053
    assert harness.queries("127.0.0.1")[-1] == b"INSERT INTO ledger VALUES (1)"
    assert not any(q.startswith(b"INSERT") for q in harness.queries("127.0.0.2"))
    assert harness.manager.stats.refused_requests_retried == 1


def test_refusals_of_requests_count_toward_congestion() -> None:
    """A refusal after login counts like one at login: at the threshold the server is congested."""
    harness = Harness({"127.0.0.1": {b"INSERT": 8002}}, extra="congestion_failure_threshold: 1")
    harness.login()
    entry = harness.manager.health.table.entry("c1", "127.0.0.1:3306")
    assert not entry.congested
    harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))
    assert harness.queries("127.0.0.2") == [b"INSERT INTO ledger VALUES (1)"]
    assert harness.manager.health.table.entry("c1", "127.0.0.1:3306").congested
