"""
Regression tests for the bugs the fuzz tests found, each reduced to the
smallest conversation that showed it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from obproxy_tx.protocol.client import MySQLClientProtocol, QueryResult, ServerError
from obproxy_tx.protocol.server import PIPELINE_HOLD
from obproxy_tx.wire.connection import Phase
from obproxy_tx.wire.errors import ErrorCode
from obproxy_tx.wire.framing import frame_payload
from obproxy_tx.wire.packets import ERRPacket
from tests.fuzz.test_conversations import example


def _connected() -> tuple[Any, Any, Any]:
    clock = Clock()
    factory = example.make_factory(clock)
    protocol = MySQLClientProtocol(clock, "demo", "demo_pw", database="demo")
    client, server, pump = connectedServerAndClient(
        lambda: factory.buildProtocol(None), lambda: protocol, clock=clock
    )
    pump.flush()
    assert client.ready.called
    return client, server, pump


def _outcome(deferred: Any) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results
    return results[0]


def test_client_ignores_bytes_after_a_protocol_error() -> None:
    """
    The server's answer arriving after bytes that broke the protocol (the
    client's conversation is in ERROR, its transport closing) is dropped: it
    used to reach the conversation, which raised LocalProtocolError, logged
    as an unexpected failure. The pending query fails with the ServerError.
    """
    failures: list[LogEvent] = []
    observer = lambda event: failures.append(event) if "log_failure" in event else None  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        client, _server, pump = _connected()
        pending = client.query("SELECT * FROM fruits")
        pump.pump()  # the query reaches the server; its answer is on the way
        client.dataReceived(b"\x00\x00\x00\x00")  # an empty packet, sequence id 0: out of order
        assert client.connection.phase is Phase.ERROR
        pump.flush()
        result = _outcome(pending)
        assert isinstance(result, Failure) and isinstance(result.value, ServerError)
        assert result.value.code == ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER
        later = _outcome(client.ping())
        assert isinstance(later.value, ServerError)
        assert later.value.code == ErrorCode.CR_SERVER_GONE_ERROR
    finally:
        globalLogPublisher.removeObserver(observer)
    assert not failures, [event.get("log_format") for event in failures]


def test_command_after_server_closing_err_is_server_gone() -> None:
    """
    A command issued after the server's ERR that ends the conversation (an
    idle server only speaks to say why it closes) fails with 2006 "MySQL server
    has gone away", a ServerError like every failed command: it used to fail
    with the conversation's LocalProtocolError ("ComPing may not be sent by
    the client in phase CLOSED").
    """
    client, server, pump = _connected()
    err = server.connection.send(
        ERRPacket(4031, "The client was disconnected by the server because of inactivity.")
    )
    client.dataReceived(err)
    assert client.connection.phase is Phase.CLOSED
    result = _outcome(client.ping())
    assert isinstance(result, Failure) and isinstance(result.value, ServerError)
    assert result.value.code == ErrorCode.CR_SERVER_GONE_ERROR
    pump.flush()


def test_quit_after_a_protocol_error_waits_for_the_close() -> None:
    """quit() on a connection already closing after a protocol error fires when it is closed."""
    client, _server, pump = _connected()
    client.dataReceived(b"\x00\x00\x00\x00")
    done = client.quit()
    pump.flush()
    assert _outcome(done) is None


def test_bytes_after_a_refused_command_are_ignored() -> None:
    """
    A command the conversation refuses (the server had ended it with an ERR)
    closes the client: bytes the server still sends are dropped instead of
    reaching the conversation, now in ERROR (an unexpected failure before).
    """
    failures: list[LogEvent] = []
    observer = lambda event: failures.append(event) if "log_failure" in event else None  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        client, server, pump = _connected()
        client.dataReceived(server.connection.send(ERRPacket(1053, "Server shutdown in progress")))
        assert isinstance(_outcome(client.ping()).value, ServerError)
        assert client.transport.disconnecting
        client.dataReceived(b"\x00")
        pump.flush()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert not failures, [event.get("log_format") for event in failures]


def test_proxy_bounds_what_a_pipelining_client_makes_it_hold() -> None:
    """
    A client that pipelines commands while its first one runs on a backend
    that does not answer: the proxy must stop reading it (as a MySQL server,
    which reads one command at a time, lets TCP hold the rest) instead of
    buffering everything it sends (it held all of it, 18 MB here, before
    ClientSession paused reading past PIPELINE_HOLD).
    """
    from tests.fuzz.test_proxy_conversations import ProxyConversation

    machine = ProxyConversation()
    try:
        machine.two_clients()
        for backend, _ in machine.backends:
            backend._answer = lambda packet: None  # type: ignore[method-assign]
        machine.clients[0].query("SELECT 'held'").addErrback(lambda failure: None)
        machine.flush()
        side = machine.proxy_sides[0]
        paused: list[bool] = []
        side.transport.pauseProducing = lambda: paused.append(True)  # iosim's does nothing
        packet = frame_payload(b"\x03" + b"SELECT 1 " * 100, 0)[0]
        sent = 0
        while sent < 16 << 20 and not side.transport.disconnecting and not paused:
            side.dataReceived(packet)
            sent += len(packet)
        assert side.conn._framer.buffered <= 4 << 20, f"{side.conn._framer.buffered} bytes held"
    finally:
        machine.teardown()


def test_server_stops_reading_a_client_pipelining_too_much() -> None:
    """
    MySQLServerProtocol read a client without limit while one of its commands
    ran (a session answering with a Deferred): every pipelined byte was held.
    Past PIPELINE_HOLD bytes it now pauses the transport, and resumes once the
    command is done and the pipelined commands are served.
    """
    from twisted.cred.portal import Portal
    from twisted.internet.defer import Deferred

    from obproxy_tx.auth import MySQLRealm
    from obproxy_tx.protocol.interfaces import OK
    from obproxy_tx.protocol.server import PIPELINE_HOLD, MySQLServerFactory

    held: list[Deferred[Any]] = []

    class HoldingSession(example.DemoSession):  # type: ignore[misc,name-defined]
        def query(self, sql: str) -> Any:
            if sql == "HOLD":
                held.append(Deferred())
                return held[-1]
            return super().query(sql)

    clock = Clock()
    checker = example.make_checker()
    database = example.DemoDatabase(checker)
    portal = Portal(MySQLRealm(lambda user, info: HoldingSession(database, info)), [checker])
    factory = MySQLServerFactory(portal, clock, auth_plugin_for=checker.plugin_for)
    client, server, pump = connectedServerAndClient(
        lambda: factory.buildProtocol(None),
        lambda: MySQLClientProtocol(clock, "demo", "demo_pw"),
        clock=clock,
    )
    pump.flush()
    assert _outcome(client.ready) is client
    states: list[str] = []
    server.transport.pauseProducing = lambda: states.append("paused")
    server.transport.resumeProducing = lambda: states.append("resumed")
    pending = client.query("HOLD")
    pump.flush()
    assert held
    # Commands a hostile client writes behind it (COM_STMT_SEND_LONG_DATA for
    # no statement: 64 KiB each, no answer).
    packet = frame_payload(b"\x18" + b"\x09\x00\x00\x00\x00\x00" + b"x" * 65536, 0)[0]
    sent = 0
    while not states and sent < 64 << 20:
        server.dataReceived(packet)
        sent += len(packet)
    assert states == ["paused"], (states, sent)
    assert server.connection.buffered_bytes <= PIPELINE_HOLD + len(packet)
    held[0].callback(OK())
    assert states == ["paused", "resumed"]
    assert server.connection.buffered_bytes == 0
    pump.flush()
    assert isinstance(_outcome(pending), QueryResult)


def test_server_session_ignores_bytes_once_broken() -> None:
    """
    A backend's bytes arriving after its server session broke (its
    conversation in ERROR, the connection being aborted) reached the
    conversation, which raised LocalProtocolError out of dataReceived into
    the reactor. Now they are dropped; the proxy goes on serving.
    """
    from tests.fuzz.test_proxy_conversations import ProxyConversation

    machine = ProxyConversation()
    try:
        machine.two_clients()
        machine.garbage_from_backend(b"\x00", which=2, query=False)
        machine.garbage_from_backend(b"\x00\x00\x00\x00", which=8, query=True)
        machine.a_new_client_is_served()
        machine.nothing_unexpected_logged()
    finally:
        machine.teardown()


def test_set_of_a_variable_named_in_invalid_utf8_keeps_the_session() -> None:
    """
    The proxy reads back variables a SET changed that the server did not
    report; it built that SELECT from the client's text (read with
    surrogateescape) and encoded it strictly: a name in invalid UTF-8 raised
    UnicodeEncodeError and the client session died with an internal error.
    Found by the atheris proxy target.
    """
    from fuzz.proxy import ProxyHarness
    from obproxy_tx.wire.packets import ComQuery, OKPacket

    failures: list[LogEvent] = []
    observer = lambda event: failures.append(event) if "log_failure" in event else None  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        harness = ProxyHarness()
        client = harness.raw_client()
        client.session.dataReceived(client.conn.send(ComQuery(b"SET autocommi\xfd = OFF")))
        harness.flush()
        assert [type(e) for e in client.read()] == [OKPacket]
        assert client.conn.phase is Phase.COMMAND_IDLE
        assert harness.backends[-1][0].conn.command is None
    finally:
        globalLogPublisher.removeObserver(observer)
    assert not failures, [event.get("log_format") for event in failures]


def test_a_variable_no_set_can_restore_is_not_tracked() -> None:
    """
    A system variable the server took under a name that is no plain
    identifier (``SET aut\\xa7commit = OFF`` answered OK by a lenient backend,
    read back by the proxy) was tracked; syncing another server session then
    raised ValueError building its SET, and the client session died. Such a
    name is not tracked now (no SET could restore it). Found by the atheris
    proxy target.
    """
    from obproxy_tx.session.sync import SessionVarVersions
    from obproxy_tx.session.tracking import SessionState

    state = SessionState()
    state.set_sys_vars([("aut\udca7commit", "OFF"), ("wait_timeout", "10")])
    assert state.sys_vars == {"wait_timeout": "10"}
    plan = state.plan(SessionVarVersions())
    assert plan.statement is not None and "wait_timeout" in plan.statement


def test_proxy_reads_a_held_pipelining_client_again_once_served() -> None:
    """
    The other half of the bound above: once the command that was running is
    answered and the backlog is served below PIPELINE_HOLD, the proxy reads
    the client again.
    """
    from tests.fuzz.test_proxy_conversations import ProxyConversation

    machine = ProxyConversation()
    try:
        machine.two_clients()
        held: list[tuple[Any, Any]] = []
        for backend, _ in machine.backends:
            backend._answer = lambda packet, b=backend: held.append((b, packet))  # type: ignore[method-assign]
        machine.clients[0].query("SELECT 'held'").addErrback(lambda failure: None)
        machine.flush()
        side = machine.proxy_sides[0]
        calls: list[str] = []
        side.transport.pauseProducing = lambda: calls.append("pause")
        side.transport.resumeProducing = lambda: calls.append("resume")
        packet = frame_payload(b"\x03" + b"SELECT 1 " * 100, 0)[0]
        while "pause" not in calls:
            side.dataReceived(packet)
        assert calls == ["pause"]
        for backend, _ in machine.backends:
            del backend._answer  # the class's own again
        for backend, packet_held in held:
            backend._answer(packet_held)
        for _ in range(100):
            machine.flush()
            if "resume" in calls:
                break
        assert calls == ["pause", "resume"]
        assert side.conn.buffered_bytes <= PIPELINE_HOLD
    finally:
        machine.teardown()
