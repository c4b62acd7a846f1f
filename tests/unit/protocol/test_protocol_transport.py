"""
The server and client protocols driven byte by byte through a
L{StringTransport}, the other side played by the sans-IO connection objects.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from obproxy_tx.auth import InMemoryMySQLChecker
from obproxy_tx.protocol.client import MySQLClientProtocol, ServerError
from obproxy_tx.protocol.server import SERVER_CAPABILITIES, MySQLServerProtocol
from obproxy_tx.wire import packets as p
from obproxy_tx.wire import scramble
from obproxy_tx.wire.connection import ClientConnection, LocalInfileData, ServerConnection
from obproxy_tx.wire.constants import Capability, ColumnType, ServerStatus

_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "server.py"


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("obproxy_tx_example_server", _EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()

CLIENT_CAPS = (
    Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_MULTI_RESULTS
)


def server_on_transport(
    clock: Clock, factory: Any = None, **settings: Any
) -> tuple[MySQLServerProtocol, StringTransport]:
    """An example-server protocol connected to a StringTransport."""
    factory = factory or example.make_factory(clock)
    for name, value in settings.items():
        setattr(factory, name, value)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def login_bytes(
    transport: StringTransport, user: str = "demo", password: bytes = b"demo_pw"
) -> tuple[ClientConnection, bytes]:
    """Read the greeting from C{transport}; return a client connection and its login bytes."""
    client = ClientConnection(capabilities=CLIENT_CAPS)
    (greeting,) = client.receive_data(transport.value())
    transport.clear()
    assert isinstance(greeting, p.HandshakeV10)
    response = p.HandshakeResponse41(
        capabilities=CLIENT_CAPS & greeting.capabilities,
        max_packet_size=1 << 24,
        character_set=45,
        username=user,
        auth_response=scramble.native_password_response(password, greeting.auth_plugin_data),
        auth_plugin_name="mysql_native_password",
    )
    return client, client.send(response)


def test_greeting_on_connect() -> None:
    """On connection the server sends a protocol-10 greeting with a fresh 20-byte scramble."""
    clock = Clock()
    factory = example.make_factory(clock)
    _, first = server_on_transport(clock, factory)
    _, second = server_on_transport(clock, factory)
    client = ClientConnection(capabilities=CLIENT_CAPS)
    (greeting,) = client.receive_data(first.value())
    (other,) = ClientConnection(capabilities=CLIENT_CAPS).receive_data(second.value())
    assert len(greeting.auth_plugin_data) == 20
    assert greeting.auth_plugin_data != other.auth_plugin_data
    assert greeting.connection_id != other.connection_id


def test_login_byte_at_a_time() -> None:
    """A login fed one byte at a time succeeds and a query is answered."""
    protocol, transport = server_on_transport(Clock())
    client, data = login_bytes(transport)
    for index in range(len(data)):
        protocol.dataReceived(data[index : index + 1])
    events = client.receive_data(transport.value())
    assert isinstance(events[-1], p.OKPacket)
    transport.clear()
    query = client.send(p.ComQuery(b"SELECT 1"))
    for index in range(len(query)):
        protocol.dataReceived(query[index : index + 1])
    events = client.receive_data(transport.value())
    assert [type(e).__name__ for e in events][0] == "ColumnCount"
    assert isinstance(events[-1], (p.OKPacket, p.EOFPacket))


def test_malformed_login_gets_err_and_close() -> None:
    """A malformed handshake response gets an ERR packet, then that connection alone closes."""
    clock = Clock()
    protocol, transport = server_on_transport(clock)
    bystander, bystander_transport = server_on_transport(clock)
    transport.clear()
    protocol.dataReceived(b"\x02\x00\x00\x01\x01\x02")
    assert transport.disconnecting
    payload = transport.value()[4:]
    assert payload[:1] == b"\xff"
    assert not bystander_transport.disconnecting
    _, data = login_bytes(bystander_transport)
    bystander.dataReceived(data)
    assert b"\x00\x00\x00\x02\x00" in bystander_transport.value()


@pytest.mark.parametrize("seed", range(5))
def test_garbage_never_raises(seed: int) -> None:
    """Random bytes, one at a time, never raise out of dataReceived; the connection closes."""
    protocol, transport = server_on_transport(Clock())
    rng = random.Random(seed)
    body = bytes(rng.randrange(256) for _ in range(200))
    # a 20-byte packet (too short for any login packet), then more garbage
    garbage = b"\x14\x00\x00\x01" + body if seed else b"\xff" * 200
    for index in range(len(garbage)):
        protocol.dataReceived(garbage[index : index + 1])
    assert transport.disconnecting


def test_malformed_command_after_login() -> None:
    """A malformed command after login is answered with ERR and closes the connection."""
    protocol, transport = server_on_transport(Clock())
    _, data = login_bytes(transport)
    protocol.dataReceived(data)
    transport.clear()
    protocol.dataReceived(b"\x01\x00\x00\x00\x17")  # COM_STMT_EXECUTE without a statement id
    assert transport.value()[4:5] == b"\xff"
    assert transport.disconnecting


def test_handshake_timeout_sends_err() -> None:
    """A client silent after the greeting gets ERR 1043 when the handshake timeout fires."""
    clock = Clock()
    protocol, transport = server_on_transport(clock, handshake_timeout=3)
    transport.clear()
    clock.advance(2)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting
    assert transport.value()[4:7] == b"\xff\x13\x04"


def test_connection_lost_logs_out() -> None:
    """When the connection drops, the session is logged out and timers are cancelled."""
    clock = Clock()
    protocol, transport = server_on_transport(clock, idle_timeout=60)
    _, data = login_bytes(transport)
    protocol.dataReceived(data)
    assert protocol.session is not None
    protocol.connectionLost()
    assert protocol.session is None
    assert clock.getDelayedCalls() == []


# -- client side ------------------------------------------------------------------


def client_logged_in(
    **kwargs: Any,
) -> tuple[MySQLClientProtocol, StringTransport, ServerConnection]:
    """Our client on a StringTransport, logged in to a scripted sans-IO server."""
    server = ServerConnection(capabilities=SERVER_CAPABILITIES | Capability.CLIENT_LOCAL_FILES)
    client = MySQLClientProtocol(Clock(), "u", "pw", **kwargs)
    transport = StringTransport()
    client.makeConnection(transport)
    salt = scramble.generate_scramble()
    client.dataReceived(
        server.send(p.HandshakeV10("8.0.0", 1, salt, server.capabilities, 45, ServerStatus(2)))
    )
    (response,) = server.receive_data(transport.value())
    transport.clear()
    verifier = scramble.native_password_verifier(b"pw")
    assert scramble.check_native_password(salt, response.auth_response, verifier)
    client.dataReceived(server.send(p.OKPacket(status_flags=ServerStatus(2))))
    assert client.ready.called
    return client, transport, server


def test_client_pauses_transport_for_slow_consumer() -> None:
    """A row callback's unfired Deferred pauses the transport; firing it resumes reading."""
    gates: list[Deferred[None]] = []

    def slow(row: tuple[Any, ...]) -> Deferred[None]:
        gate: Deferred[None] = Deferred()
        gates.append(gate)
        return gate

    client, transport, server = client_logged_in()
    done = client.query("SELECT n", on_row=slow)
    server.receive_data(transport.value())
    column = p.ColumnDefinition41(name=b"n", column_type=ColumnType.MYSQL_TYPE_LONGLONG)
    rows = [p.TextRow((str(i).encode(),)) for i in range(3)]
    client.dataReceived(
        server.send_many([p.ColumnCount(1), column, p.EOFPacket(), *rows, server.end_of_rows()])
    )
    assert transport.producerState == "paused"
    assert len(gates) == 1
    gates[0].callback(None)
    assert len(gates) == 2
    gates[1].callback(None)
    gates[2].callback(None)
    assert transport.producerState == "producing"
    assert done.called


def test_client_load_data_local() -> None:
    """LOAD DATA LOCAL: the client reads the file through its reader and sends it in chunks."""
    files = {"data.csv": b"1,a\n" * 10}
    client, transport, server = client_logged_in(local_infile=lambda name: files[name])
    done = client.query("LOAD DATA LOCAL INFILE 'data.csv' INTO TABLE t")
    server.receive_data(transport.value())
    transport.clear()
    client.dataReceived(server.send(p.LocalInfileRequest(b"data.csv")))
    events = server.receive_data(transport.value())
    assert b"".join(e.data for e in events if isinstance(e, LocalInfileData)) == files["data.csv"]
    assert events[-1] == LocalInfileData(b"")
    client.dataReceived(server.send(p.OKPacket(affected_rows=10, status_flags=ServerStatus(2))))
    results: list[Any] = []
    done.addBoth(results.append)
    assert results[0].affected_rows == 10


def test_client_refuses_local_infile_without_reader() -> None:
    """Without a reader the client sends an empty file and the server's error comes back."""
    client, transport, server = client_logged_in()
    done = client.query("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t")
    server.receive_data(transport.value())
    transport.clear()
    client.dataReceived(server.send(p.LocalInfileRequest(b"/etc/passwd")))
    assert server.receive_data(transport.value()) == [LocalInfileData(b"")]
    client.dataReceived(server.send(p.ERRPacket(1148, "not allowed", "42000")))
    results: list[Any] = []
    done.addBoth(results.append)
    assert isinstance(results[0].value, ServerError) and results[0].value.code == 1148


def test_client_commands_are_queued() -> None:
    """Commands issued together are sent one at a time, each after the previous answer."""
    client, transport, server = client_logged_in()
    first = client.ping()
    second = client.ping()
    assert len(server.receive_data(transport.value())) == 1
    transport.clear()
    client.dataReceived(server.send(p.OKPacket(status_flags=ServerStatus(2))))
    assert first.called and not second.called
    assert len(server.receive_data(transport.value())) == 1
    client.dataReceived(server.send(p.OKPacket(status_flags=ServerStatus(2))))
    assert second.called


def test_client_connection_lost_fails_pending() -> None:
    """Losing the connection fails the running and queued commands with CR_SERVER_LOST."""
    client, transport, server = client_logged_in()
    first = client.ping()
    second = client.query("SELECT 1")
    client.connectionLost()
    for deferred in (first, second):
        results: list[Any] = []
        deferred.addBoth(results.append)
        assert results[0].value.code == 2013


def test_checker_is_independent_of_transport() -> None:
    """The example checker's users are the documented ones."""
    checker: InMemoryMySQLChecker = example.make_checker()
    assert checker.plugin_for("demo") == "mysql_native_password"
    assert checker.plugin_for("sha2") == "caching_sha2_password"
    assert checker.plugin_for("root") == "mysql_native_password"
