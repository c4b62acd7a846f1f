"""
Our client against our server, in memory (L{twisted.test.iosim}), with a
L{Clock} for time: logins with every auth method, TLS, queries, streaming,
prepared statements, timeouts and limits.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from zope.interface.verify import verifyObject

from obproxy_tx.auth import CachingSHA2Credentials, InMemoryMySQLChecker
from obproxy_tx.protocol.client import MySQLClientProtocol, QueryResult, ServerError
from obproxy_tx.protocol.interfaces import IMySQLSession
from obproxy_tx.protocol.server import MySQLServerFactory, MySQLServerProtocol
from obproxy_tx.wire import scramble
from obproxy_tx.wire.constants import (
    CACHING_SHA2_PASSWORD,
    MYSQL_CLEAR_PASSWORD,
    MYSQL_NATIVE_PASSWORD,
)

_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "server.py"


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("obproxy_tx_example_server", _EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()


class FakeTLSOptions:
    """TLS options for iosim's pretend TLS (it only asks both sides to agree)."""

    def iosimVerify(self, other: object) -> bool:  # noqa: N802
        """Accept the peer."""
        return True


@attrs.define
class Pair:
    """A client and server joined in memory."""

    client: MySQLClientProtocol
    server: MySQLServerProtocol
    pump: IOPump
    clock: Clock
    factory: MySQLServerFactory


def make_pair(
    user: str = "demo",
    password: str = "demo_pw",
    *,
    checker: InMemoryMySQLChecker | None = None,
    factory: MySQLServerFactory | None = None,
    clock: Clock | None = None,
    client_tls: bool = False,
    **client_kwargs: Any,
) -> Pair:
    """Connect a client to the example server and pump until quiet."""
    clock = clock or Clock()
    if factory is None:
        factory = example.make_factory(clock, checker)
    protocol = MySQLClientProtocol(
        clock, user, password, tls=FakeTLSOptions() if client_tls else None, **client_kwargs
    )
    client, server, pump = connectedServerAndClient(
        lambda: factory.buildProtocol(None), lambda: protocol, clock=clock
    )
    pump.flush()
    return Pair(client, server, pump, clock, factory)


def tls_factory(clock: Clock, checker: InMemoryMySQLChecker | None = None, **kw: Any) -> Any:
    """An example-server factory offering (pretend) TLS."""
    return MySQLServerFactory(
        example.Portal(
            example.MySQLRealm(lambda u, i: example.DemoSession(example.DemoDatabase(), i)),
            [checker or example.make_checker()],
        ),
        clock,
        tls_options=FakeTLSOptions(),
        auth_plugin_for=(checker or example.make_checker()).plugin_for,
        **kw,
    )


def outcome(deferred: Deferred[Any]) -> Any:
    """What a fired Deferred holds (a Failure if it failed)."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def run(pair: Pair, deferred: Deferred[Any]) -> Any:
    """Pump until quiet, then return the Deferred's outcome."""
    pair.pump.flush()
    return outcome(deferred)


def error_of(result: Any) -> ServerError:
    """The ServerError inside a Failure."""
    assert isinstance(result, Failure), result
    assert isinstance(result.value, ServerError), result
    return result.value


# -- login ---------------------------------------------------------------------


def test_native_login_and_query() -> None:
    """A native-password user logs in and gets the in-memory table."""
    pair = make_pair(database="demo")
    assert outcome(pair.client.ready) is pair.client
    assert pair.server.info.auth_plugin == MYSQL_NATIVE_PASSWORD
    assert verifyObject(IMySQLSession, pair.server.session)
    result = run(pair, pair.client.query("SELECT * FROM fruits"))
    assert result.column_names == ["id", "name", "price"]
    assert result.rows[:2] == [(1, "apple", 1.25), (2, "banana", 0.5)]


def test_native_login_recovers_stage1() -> None:
    """After a native login the server knows SHA1(password) for proxying."""
    pair = make_pair()
    assert pair.server.info.stage1 is not None
    assert (
        scramble.native_password_verifier(b"demo_pw")
        == __import__("hashlib").sha1(pair.server.info.stage1).digest()
    )


def test_bad_password_is_1045() -> None:
    """A wrong password fails with MySQL's 1045 message and closes the connection."""
    pair = make_pair("demo", "wrong")
    error = error_of(outcome(pair.client.ready))
    assert error.code == 1045
    assert error.sqlstate == "28000"
    assert error.message.startswith("Access denied for user 'demo'@'")
    assert error.message.endswith("(using password: YES)")
    assert pair.server.transport.disconnecting


def test_no_password_is_reported() -> None:
    """A missing password for a user that has one says 'using password: NO'."""
    pair = make_pair("demo", "")
    assert error_of(outcome(pair.client.ready)).message.endswith("(using password: NO)")


def test_empty_password_user() -> None:
    """root with an empty password logs in."""
    pair = make_pair("root", "")
    assert outcome(pair.client.ready) is pair.client


def test_auth_switch_to_caching_sha2_fast_path() -> None:
    """The server switches a native-answering client to caching_sha2, which passes the fast path."""
    pair = make_pair("sha2", "sha2_pw")
    assert outcome(pair.client.ready) is pair.client
    assert pair.server.info.auth_plugin == CACHING_SHA2_PASSWORD
    assert pair.server.info.stage1 is None


def test_auth_switch_to_native() -> None:
    """A server announcing caching_sha2 switches a native user back to native."""
    clock = Clock()
    checker = example.make_checker()
    factory = MySQLServerFactory(
        example.Portal(
            example.MySQLRealm(lambda u, i: example.DemoSession(example.DemoDatabase(), i)),
            [checker],
        ),
        clock,
        default_auth_plugin=CACHING_SHA2_PASSWORD,
        auth_plugin_for=checker.plugin_for,
    )
    pair = make_pair("demo", "demo_pw", factory=factory, clock=clock)
    assert outcome(pair.client.ready) is pair.client
    assert pair.server.info.auth_plugin == MYSQL_NATIVE_PASSWORD
    bad = make_pair("demo", "nope", factory=factory, clock=clock)
    assert error_of(outcome(bad.client.ready)).code == 1045


def test_caching_sha2_full_auth_with_rsa() -> None:
    """Without TLS and an empty cache the client fetches the RSA key; the next login is fast."""
    checker = InMemoryMySQLChecker(prefill_sha2_cache=False)
    checker.add_user("sha2", "sha2_pw", plugin=CACHING_SHA2_PASSWORD)
    clock = Clock()
    factory = example.make_factory(clock, checker)
    pair = make_pair("sha2", "sha2_pw", factory=factory, clock=clock)
    assert outcome(pair.client.ready) is pair.client
    assert pair.client._server_public_key is not None
    fast = CachingSHA2Credentials(
        "sha2", b"x" * 20, scramble.caching_sha2_scramble(b"sha2_pw", b"x" * 20)
    )
    assert outcome(checker.requestAvatarId(fast)) == "sha2"
    second = make_pair("sha2", "sha2_pw", factory=factory, clock=clock)
    assert outcome(second.client.ready) is second.client


def test_caching_sha2_full_auth_wrong_password() -> None:
    """Full authentication with a wrong password is refused with 1045."""
    checker = InMemoryMySQLChecker(prefill_sha2_cache=False)
    checker.add_user("sha2", "sha2_pw", plugin=CACHING_SHA2_PASSWORD)
    pair = make_pair("sha2", "bad", checker=checker)
    assert error_of(outcome(pair.client.ready)).code == 1045


def test_caching_sha2_full_auth_over_tls() -> None:
    """Over TLS, caching_sha2 full authentication sends the password itself."""
    checker = InMemoryMySQLChecker(prefill_sha2_cache=False)
    checker.add_user("sha2", "sha2_pw", plugin=CACHING_SHA2_PASSWORD)
    clock = Clock()
    pair = make_pair(
        "sha2", "sha2_pw", factory=tls_factory(clock, checker), clock=clock, client_tls=True
    )
    assert outcome(pair.client.ready) is pair.client
    assert pair.server.info.secure and pair.client.secure
    assert pair.client._server_public_key is None


def test_clear_password_refused_without_tls() -> None:
    """mysql_clear_password is refused without TLS, before the password is sent."""
    checker = InMemoryMySQLChecker()
    checker.add_user("clear", "pw", plugin=MYSQL_CLEAR_PASSWORD)
    pair = make_pair("clear", "pw", checker=checker)
    assert error_of(outcome(pair.client.ready)).code == 3159


def test_clear_password_over_tls() -> None:
    """mysql_clear_password works over TLS (the server switches the client to it)."""
    checker = InMemoryMySQLChecker()
    checker.add_user("clear", "pw", plugin=MYSQL_CLEAR_PASSWORD)
    clock = Clock()
    pair = make_pair(
        "clear", "pw", factory=tls_factory(clock, checker), clock=clock, client_tls=True
    )
    assert outcome(pair.client.ready) is pair.client
    assert pair.server.info.auth_plugin == MYSQL_CLEAR_PASSWORD


def test_tls_required() -> None:
    """A server requiring TLS refuses a plain client with ER_SECURE_TRANSPORT_REQUIRED."""
    clock = Clock()
    factory = tls_factory(clock, require_tls=True)
    plain = make_pair(factory=factory, clock=clock)
    assert error_of(outcome(plain.client.ready)).code == 3159
    secure = make_pair(factory=factory, clock=clock, client_tls=True)
    assert outcome(secure.client.ready) is secure.client


def test_client_requires_tls() -> None:
    """A client asking for TLS fails when the server does not offer it."""
    pair = make_pair(client_tls=True)
    assert error_of(outcome(pair.client.ready)).code == 2026


def test_unknown_database_at_login() -> None:
    """Logging in with an unknown default schema fails with 1049."""
    pair = make_pair(database="nope")
    assert error_of(outcome(pair.client.ready)).code == 1049


# -- commands --------------------------------------------------------------------


def test_query_errors_and_ok() -> None:
    """Unknown SQL gives 1064; INSERT gives an OK with affected rows and insert id."""
    pair = make_pair(database="demo")
    error = error_of(run(pair, pair.client.query("FROB the widgets")))
    assert (error.code, error.sqlstate) == (1064, "42000")
    ok = run(pair, pair.client.query("INSERT INTO fruits VALUES (10, 'kiwi', 2.5)"))
    assert (ok.affected_rows, ok.last_insert_id, ok.columns) == (1, 10, [])
    rows = run(pair, pair.client.query("SELECT name FROM fruits")).rows
    assert ("kiwi",) in rows


def test_multi_results() -> None:
    """Several statements in one query give one result each, in order."""
    pair = make_pair()
    results = run(pair, pair.client.query_multi("SELECT 1; SET @a = 2; SELECT @a"))
    assert [r.rows for r in results] == [[(1,)], [], [(2,)]]


def test_session_functions() -> None:
    """DATABASE(), CONNECTION_ID() and USE reflect the connection."""
    pair = make_pair()
    result = run(pair, pair.client.query("SELECT DATABASE(), CONNECTION_ID()"))
    assert result.rows == [(None, pair.server.info.connection_id)]
    run(pair, pair.client.init_db("demo"))
    assert run(pair, pair.client.query("SELECT DATABASE()")).rows == [("demo",)]
    assert error_of(run(pair, pair.client.init_db("missing"))).code == 1049


def test_ping_reset_statistics_quit() -> None:
    """Ping, reset and statistics are answered; quit closes the connection."""
    pair = make_pair()
    assert isinstance(run(pair, pair.client.ping()), QueryResult)
    assert isinstance(run(pair, pair.client.reset_connection()), QueryResult)
    assert "Uptime" in run(pair, pair.client.statistics())
    quit_result = pair.client.quit()
    pair.pump.flush()
    assert outcome(quit_result) is None
    assert pair.server.session is None


def test_change_user() -> None:
    """COM_CHANGE_USER logs in as another user; a wrong password fails with 1045 and closes."""
    pair = make_pair()
    assert isinstance(run(pair, pair.client.change_user("root", "")), QueryResult)
    assert pair.server.info.user == "root"
    result = run(pair, pair.client.change_user("sha2", "sha2_pw", "demo"))
    assert isinstance(result, QueryResult)
    assert pair.server.info.auth_plugin == CACHING_SHA2_PASSWORD
    assert error_of(run(pair, pair.client.change_user("demo", "bad"))).code == 1045
    assert pair.server.transport.disconnecting, "a refused change of user leaves no session"


def test_prepared_statements() -> None:
    """Prepare, execute with parameters (binary rows), close."""
    pair = make_pair(database="demo")
    statement = run(pair, pair.client.prepare("SELECT ?, ?, ?"))
    assert len(statement.params) == 3
    result = run(pair, statement.execute(7, "it's", None))
    assert result.rows == [(7, "it's", None)]
    assert outcome(statement.close()) is None
    error = error_of(run(pair, statement.execute(1, 2, 3)))
    assert error.code == 1243


def test_streaming_rows_with_server_pause() -> None:
    """The server pulls rows lazily and writes none while its transport has paused it."""
    pair = make_pair()
    seen: list[int] = []
    done = pair.client.query("SELECT * FROM seq_1_to_5000", on_row=lambda row: seen.append(row[0]))
    pair.pump.pump(advanceClock=False)
    producer = pair.server.transport.producer
    assert producer is not None, "the row streamer registers as the transport's producer"
    producer.pauseProducing()
    pair.pump.flush()
    assert seen == []
    assert not done.called
    producer.resumeProducing()
    result = run(pair, done)
    assert seen == list(range(1, 5001))
    assert result.row_count == 5000 and result.rows == []
    assert pair.server.transport.producer is None


def test_streaming_writes_in_batches() -> None:
    """Each reactor turn writes one batch of rows, so other connections get their turn."""
    pair = make_pair()
    done = pair.client.query("SELECT * FROM seq_1_to_1000", on_row=lambda row: None)
    pair.pump.pump(advanceClock=False)
    written_before = len(pair.server.transport.stream)
    calls = pair.clock.getDelayedCalls()
    assert len(calls) == 1
    calls[0].func()  # type: ignore[attr-defined]
    first_batch = b"".join(pair.server.transport.stream[written_before:])
    assert first_batch.endswith(b"\x03256")
    assert b"\x03257" not in first_batch
    result = run(pair, done)
    assert result.row_count == 1000


def test_slow_consumer_holds_rows() -> None:
    """A row callback returning an unfired Deferred holds the following rows until it fires."""
    pair = make_pair()
    gates: list[Deferred[None]] = []
    seen: list[int] = []

    def slow(row: tuple[Any, ...]) -> Deferred[None]:
        seen.append(row[0])
        gate: Deferred[None] = Deferred()
        gates.append(gate)
        return gate

    done = pair.client.query("SELECT * FROM seq_1_to_3", on_row=slow)
    pair.pump.flush()
    assert seen == [1]
    assert not done.called
    gates[0].callback(None)
    assert seen == [1, 2]
    gates[1].callback(None)
    gates[2].callback(None)
    assert outcome(done).row_count == 3


# -- timeouts and limits ---------------------------------------------------------


def test_idle_timeout() -> None:
    """An idle client gets ERR 4031 and is disconnected."""
    clock = Clock()
    factory = example.make_factory(clock)
    factory.idle_timeout = 30
    pair = make_pair(factory=factory, clock=clock)
    assert outcome(pair.client.ready) is pair.client
    clock.advance(29)
    assert not pair.server.transport.disconnecting
    run(pair, pair.client.ping())
    clock.advance(29)
    assert not pair.server.transport.disconnecting
    clock.advance(2)
    pair.pump.flush()
    assert pair.server.transport.disconnecting
    assert outcome(pair.client.closed) is None


def test_handshake_timeout() -> None:
    """A client that never answers the greeting is sent an ERR and disconnected."""
    clock = Clock()
    factory = example.make_factory(clock)
    factory.handshake_timeout = 5
    protocol = MySQLClientProtocol(clock, "demo", "demo_pw")
    protocol.dataReceived = lambda data: None  # type: ignore[method-assign]
    _client, server, pump = connectedServerAndClient(
        lambda: factory.buildProtocol(None), lambda: protocol, clock=clock
    )
    pump.flush()
    clock.advance(6)
    assert server.transport.disconnecting


def test_max_packet_size() -> None:
    """A packet larger than the server's limit gets ERR 1153 and closes that connection only."""
    clock = Clock()
    factory = example.make_factory(clock)
    factory.max_packet_size = 1024
    big = make_pair(factory=factory, clock=clock)
    other = make_pair(factory=factory, clock=clock)
    query = big.client.query("SELECT '" + "x" * 2000 + "'")
    big.pump.pump()
    written = b"".join(big.server.transport.stream)
    big.pump.flush()
    assert b"\xff\x81\x04#08S01" in written, "ERR 1153 with SQLSTATE 08S01"
    error = error_of(outcome(query))
    assert isinstance(error, ServerError)
    # Sequence id 1 after the client's 0: the client reads 1153, not "packets out of order".
    assert error.code == 1153
    assert big.server.transport.disconnecting
    assert run(other, other.client.query("SELECT 1")).rows == [(1,)]


@pytest.mark.parametrize("user", ["demo", "sha2"])
def test_login_each_user(user: str) -> None:
    """Each example user logs in with its password."""
    pair = make_pair(user, f"{user}_pw")
    assert outcome(pair.client.ready) is pair.client


def test_field_list() -> None:
    """COM_FIELD_LIST collects the column definitions up to the terminator (none here)."""
    pair = make_pair(database="demo")
    assert run(pair, pair.client.field_list("t")) == []
    assert isinstance(run(pair, pair.client.ping()), QueryResult)
