"""
The framework's L{MySQLServerProtocol} (the example server's factory) with a
client that pipelines: several commands written before the first answer. The
server connection keeps them buffered until it is the client's turn; the
protocol must ask for them once each answer is out, synchronous or not.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from obproxy_tx.protocol.interfaces import OK
from obproxy_tx.wire import packets as p
from obproxy_tx.wire import scramble
from obproxy_tx.wire.connection import ClientConnection, Phase, RowData
from obproxy_tx.wire.constants import Capability

_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "server.py"

CLIENT_CAPS = (
    Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_MULTI_RESULTS
)


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("obproxy_tx_example_server_p", _EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


class PipeliningClient:
    """
    Plays a client against a server protocol on a L{StringTransport}: logs in,
    writes several commands at once and splits the answers per command.
    """

    def __init__(self) -> None:
        self.protocol = example.make_factory(Clock()).buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.client = ClientConnection(capabilities=CLIENT_CAPS)
        self.pending: list[Any] = []
        self.answers: list[list[Any]] = []
        self.current: list[Any] = []
        self.buffer = b""
        (greeting,) = self.client.receive_data(self.transport.value())
        self.transport.clear()
        login = p.HandshakeResponse41(
            capabilities=CLIENT_CAPS & greeting.capabilities,
            max_packet_size=1 << 24,
            character_set=45,
            username="demo",
            auth_response=scramble.native_password_response(b"demo_pw", greeting.auth_plugin_data),
            auth_plugin_name="mysql_native_password",
        )
        self.protocol.dataReceived(self.client.send(login))
        self.read()
        assert [[type(e) for e in a] for a in self.answers] == [[p.OKPacket]]
        self.answers = []

    def write(self, *packets: Any) -> None:
        """Write C{packets} in one piece, each a new command (sequence id 0)."""
        data = self.client.send(packets[0])
        for packet in packets[1:]:
            payload = packet.encode(self.client.capabilities)
            data += len(payload).to_bytes(3, "little") + b"\x00" + payload
        self.pending.extend(packets[1:])
        self.protocol.dataReceived(data)
        self.read()

    def read(self) -> None:
        """Split what the server wrote into one answer per command."""
        self.buffer += self.transport.value()
        self.transport.clear()
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


def _rows(answer: list[Any]) -> list[bytes]:
    return [event.payload for event in answer if isinstance(event, RowData)]


def test_pipelined_queries_and_ping_are_all_answered_in_order() -> None:
    """Two queries and a ping written at once get three answers, in order."""
    peer = PipeliningClient()
    peer.write(p.ComQuery(b"SELECT 1"), p.ComPing(), p.ComQuery(b"SELECT 2"))
    assert len(peer.answers) == 3
    assert _rows(peer.answers[0]) == [b"\x011"]
    assert isinstance(peer.answers[1][0], p.OKPacket)
    assert _rows(peer.answers[2]) == [b"\x012"]


def test_pipelined_commands_wait_for_an_asynchronous_answer() -> None:
    """
    While the application answers a query later (a Deferred), the commands
    pipelined behind it wait, then are served once the answer is written.
    """
    peer = PipeliningClient()
    waiting: list[Deferred[Any]] = []
    session = peer.protocol.session
    synchronous = session.query

    def query(sql: str) -> Any:
        if sql == "SELECT later":
            waiting.append(Deferred())
            return waiting[-1]
        return synchronous(sql)

    session.query = query
    peer.write(p.ComQuery(b"SELECT later"), p.ComQuery(b"SELECT 3"), p.ComPing())
    assert peer.answers == [] and len(waiting) == 1
    waiting[0].callback(OK(affected_rows=7))
    peer.read()
    assert len(peer.answers) == 3
    assert peer.answers[0][0].affected_rows == 7
    assert _rows(peer.answers[1]) == [b"\x013"]
    assert isinstance(peer.answers[2][0], p.OKPacket)


def test_many_pipelined_commands_do_not_recurse() -> None:
    """Thousands of commands answered at once, written in one piece, all get their answer."""
    peer = PipeliningClient()
    count = 3000
    peer.write(*([p.ComQuery(b"SELECT 1")] * count))
    assert len(peer.answers) == count
    assert all(_rows(answer) == [b"\x011"] for answer in peer.answers)
