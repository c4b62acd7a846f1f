"""
The cap on connections of one client address that have not logged in yet
(C{max_pending_logins_per_ip}, L{obproxy_tx.session.pending}): the pure
counting, and the proxy's use of it with in-memory transports (the harness of
C{test_client_session}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.test import iosim

from obproxy_tx.session.client_session import ClientSession
from obproxy_tx.session.pending import PendingLogins, RefusedConnection, too_many_pending_logins
from obproxy_tx.wire.packets import NO_CAPABILITIES, ERRPacket, OKPacket
from tests.unit.session.test_client_session import Harness

# -- pure counting ---------------------------------------------------------------------------


def test_pending_logins_are_counted_per_address_up_to_the_cap() -> None:
    table = PendingLogins()
    for session_id in range(3):
        assert table.admits("10.0.0.1", 3)
        table.add(session_id, "10.0.0.1")
    assert table.of("10.0.0.1") == 3
    assert not table.admits("10.0.0.1", 3)
    # Another address is not affected; 0 is no cap.
    assert table.admits("10.0.0.2", 3)
    assert table.admits("10.0.0.1", 0)


def test_done_drops_the_count_once() -> None:
    table = PendingLogins()
    table.add(1, "10.0.0.1")
    table.add(2, "10.0.0.1")
    table.add(2, "10.0.0.1")  # counted once
    assert table.of("10.0.0.1") == 2
    table.done(1)
    table.done(1)  # logged in, then closed: once
    table.done(99)  # never counted
    assert table.of("10.0.0.1") == 1
    assert table.admits("10.0.0.1", 2)
    table.done(2)
    assert table.per_address == {} and table.sessions == {}


def test_the_refusal_is_mysqls_1040_naming_the_cap() -> None:
    packet = too_many_pending_logins("10.0.0.1", 32)
    assert (packet.error_code, packet.sqlstate) == (1040, "08004")
    assert packet.message.startswith("Too many connections")
    assert "10.0.0.1" in packet.message and "32" in packet.message
    assert "max_pending_logins_per_ip" in packet.message


# -- the proxy -----------------------------------------------------------------------------


def _connect(harness: Harness, host: str, port: int) -> tuple[Any, iosim.FakeTransport]:
    """A new connection to C{harness}'s proxy from C{host}: (its protocol, transport)."""
    peer = IPv4Address("TCP", host, port)
    protocol = harness.manager.listener_factory().buildProtocol(peer)
    transport = iosim.FakeTransport(protocol, isServer=True, peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport


def test_over_the_cap_an_address_gets_1040_before_any_greeting_and_counts_nowhere() -> None:
    harness = Harness()  # one pending connection from 127.0.0.1
    harness.configure(max_pending_logins_per_ip=3, client_max_connections=4)
    held = [_connect(harness, "127.0.0.1", 41000 + n) for n in range(2)]
    assert all(isinstance(protocol, ClientSession) for protocol, _ in held)
    sessions = len(harness.manager.client_sessions)
    assert sessions == 3
    protocol, transport = _connect(harness, "127.0.0.1", 41999)
    assert isinstance(protocol, RefusedConnection)
    # The first packet (sequence id 0) is the error, without the SQLSTATE marker, then a close.
    data = b"".join(transport.stream)
    assert data[3] == 0
    assert ERRPacket.decode(data[4:], NO_CAPABILITIES) == ERRPacket(
        1040, too_many_pending_logins("127.0.0.1", 3).message, "HY000"
    )
    assert transport.disconnecting
    assert len(harness.manager.client_sessions) == sessions
    assert harness.manager.stats.pending_logins_refused == 1
    assert harness.manager.stats.client_connections == sessions
    # Another address still gets in, and logs in (client_max_connections 4 is not reached).
    other = harness.another_client("127.0.0.2", 42000)
    assert isinstance(other.login(), OKPacket)
    assert harness.manager.pending_logins.of("127.0.0.2") == 0


def test_a_login_or_a_close_makes_room_for_the_address() -> None:
    harness = Harness()
    harness.configure(max_pending_logins_per_ip=2)
    idle, _ = _connect(harness, "127.0.0.1", 41000)
    assert not isinstance(_connect(harness, "127.0.0.1", 41001)[0], ClientSession)
    # The harness's client logs in: no longer pending.
    assert isinstance(harness.login(), OKPacket)
    assert harness.manager.pending_logins.of("127.0.0.1") == 1
    second = harness.another_client("127.0.0.1", 41002)
    assert isinstance(second.session, ClientSession)
    assert not isinstance(_connect(harness, "127.0.0.1", 41003)[0], ClientSession)
    # One not logged in closes: room again.
    idle.connectionLost(Failure(ConnectionDone()))
    assert harness.manager.pending_logins.of("127.0.0.1") == 1
    assert isinstance(_connect(harness, "127.0.0.1", 41004)[0], ClientSession)
    # A logged-in session closing changes nothing of the count.
    harness.session.connectionLost(Failure(ConnectionDone()))
    assert harness.manager.pending_logins.of("127.0.0.1") == 2


def test_the_login_timeout_drops_the_count() -> None:
    harness = Harness()
    harness.configure(max_pending_logins_per_ip=1)
    assert not isinstance(_connect(harness, "127.0.0.1", 41000)[0], ClientSession)
    harness.reactor.advance(harness.manager.config.client_login_timeout + 0.1)
    assert harness.manager.stats.client_login_timeouts == 1
    # The aborted transport reports its loss.
    harness.session.connectionLost(Failure(ConnectionDone()))
    assert harness.manager.pending_logins.of("127.0.0.1") == 0
    assert isinstance(_connect(harness, "127.0.0.1", 41001)[0], ClientSession)


def test_zero_is_no_cap_and_addressless_connections_are_not_counted() -> None:
    harness = Harness()
    harness.configure(max_pending_logins_per_ip=0)
    assert all(
        isinstance(_connect(harness, "127.0.0.1", 41000 + n)[0], ClientSession) for n in range(40)
    )
    harness.configure(max_pending_logins_per_ip=1)
    protocol = harness.manager.listener_factory().buildProtocol(UNIXAddress("/tmp/proxy.sock"))
    assert isinstance(protocol, ClientSession)
