"""
Whole conversations between our Twisted client (L{MySQLClientProtocol}) and
the example server built on L{MySQLServerProtocol}, in memory
(L{twisted.test.iosim}) with a L{Clock}, driven by a hypothesis state machine:
logins (native, an auth switch to caching_sha2, a wrong password, compression),
queries checked against a model of the table, result sets, multiple results,
prepared statements, pipelined commands, and hostile bytes to either side at
any point of a command. Whatever happens, every request ends (its Deferred
fires once the pump is quiet), a broken connection is closed, and neither
adapter ever logs an unexpected exception.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from obproxy_tx.protocol.client import MySQLClientProtocol, QueryResult, ServerError
from obproxy_tx.wire.errors import ErrorCode
from obproxy_tx.wire.framing import frame_payload
from tests.fuzz.budget import examples

_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "server.py"


def _load_example() -> Any:
    name = "obproxy_tx_example_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()

#: (user, password, whether the login succeeds).
LOGINS = [
    ("demo", "demo_pw", True),
    ("sha2", "sha2_pw", True),  # the server switches the client to caching_sha2
    ("root", "", True),
    ("demo", "wrong", False),
    ("sha2", "", False),
]
_KNOWN_CODES = {int(code) for code in ErrorCode}
#: Hostile bytes: random, or a packet framed with sequence id 0 (a command's)
#: around a random payload (so it gets past the framing into the readers).
hostile = st.one_of(
    st.binary(min_size=1, max_size=80),
    st.builds(lambda p, s: frame_payload(p, s)[0], st.binary(max_size=80), st.integers(0, 3)),
    st.builds(
        lambda command, body: frame_payload(bytes((command,)) + body, 0)[0],
        st.sampled_from([0x03, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C, 0x11, 0x04, 0x02, 0x0C, 0xFF]),
        st.binary(max_size=40),
    ),
)
sql_values = st.one_of(
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
    st.none(),
)


def _outcome(deferred: Deferred[Any]) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "a request was left without an answer"
    return results[0]


class Conversation(RuleBasedStateMachine):
    """
    One client and one server in memory; the model: whether the connection
    should be usable, and the fruits inserted so far.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[LogEvent] = []
        globalLogPublisher.addObserver(self._observe)
        self.usable = False
        self.broken = False
        self.inserted: list[str] = []
        self.next_id = 100
        self.requests: list[Deferred[Any]] = []

    def _observe(self, event: LogEvent) -> None:
        if "log_failure" in event:
            self.failures.append(event)

    def teardown(self) -> None:
        globalLogPublisher.removeObserver(self._observe)
        if getattr(self, "pump", None) is not None:
            self.client.transport.loseConnection()
            self.pump.flush()

    @initialize(login=st.sampled_from(LOGINS), compress=st.booleans(), database=st.booleans())
    def connect(self, login: tuple[str, str, bool], compress: bool, database: bool) -> None:
        user, password, succeeds = login
        self.clock = Clock()
        factory = example.make_factory(self.clock, compression=compress)
        protocol = MySQLClientProtocol(
            self.clock, user, password, database="demo" if database else None, compression=compress
        )
        self.client, self.server, self.pump = connectedServerAndClient(
            lambda: factory.buildProtocol(None), lambda: protocol, clock=self.clock
        )
        self.pump.flush()
        result = _outcome(self.client.ready)
        if succeeds:
            assert result is self.client, result
            self.usable = True
            if not database:
                self._run(self.client.init_db("demo"))
        else:
            assert isinstance(result, Failure) and isinstance(result.value, ServerError)
            assert result.value.code == 1045
            assert self.server.transport.disconnecting

    # -- helpers --------------------------------------------------------------

    def _run(self, deferred: Deferred[Any]) -> Any:
        self.pump.flush()
        result = _outcome(deferred)
        if self.usable and isinstance(result, Failure):
            raise AssertionError(f"a usable connection failed: {result.value!r}")
        return result

    def _settle(self, deferred: Deferred[Any]) -> Any:
        """
        After hostile bytes: the request ends, well or with a ServerError; at
        the latest when the connection closes (hostile bytes may announce a
        packet longer than anything that follows: the reader then waits for
        it, as any MySQL reader does, until a timeout closes the connection).
        """
        self.pump.flush()
        if not deferred.called:
            self.client.transport.loseConnection()
            self.pump.flush()
        result = _outcome(deferred)
        if isinstance(result, Failure):
            assert isinstance(result.value, ServerError), result
            assert result.value.code in _KNOWN_CODES or result.value.code >= 1000
        return result

    # -- well-behaved commands ------------------------------------------------

    @precondition(lambda self: self.usable)
    @rule(name=st.text(alphabet="abcdefghij", min_size=1, max_size=12))
    def insert_then_select(self, name: str) -> None:
        ok = self._run(
            self.client.query(f"INSERT INTO fruits VALUES ({self.next_id}, '{name}', 1.5)")
        )
        assert (ok.affected_rows, ok.last_insert_id) == (1, self.next_id)
        self.next_id += 1
        self.inserted.append(name)
        result = self._run(self.client.query("SELECT name FROM fruits"))
        names = [row[0] for row in result.rows]
        assert names[-len(self.inserted) :] == self.inserted

    @precondition(lambda self: self.usable)
    @rule()
    def bad_sql(self) -> None:
        result = self.client.query("FROB the widgets")
        self.pump.flush()
        failure = _outcome(result)
        assert isinstance(failure, Failure) and failure.value.code == 1064
        # The connection goes on.
        assert isinstance(self._run(self.client.ping()), QueryResult)

    @precondition(lambda self: self.usable)
    @rule()
    def multi_results(self) -> None:
        results = self._run(self.client.query_multi("SELECT 1; SET @a = 2; SELECT @a"))
        assert [r.rows for r in results] == [[(1,)], [], [(2,)]]

    @precondition(lambda self: self.usable)
    @rule(values=st.lists(sql_values, min_size=1, max_size=4))
    def prepared(self, values: list[Any]) -> None:
        marks = ", ".join("?" for _ in values)
        statement = self._run(self.client.prepare(f"SELECT {marks}"))
        result = self._run(statement.execute(*values))
        (row,) = result.rows
        assert [str(v) if isinstance(v, int) else v for v in row] == [
            str(v) if isinstance(v, int) else v for v in values
        ]
        self._run(statement.close())

    @precondition(lambda self: self.usable)
    @rule(count=st.integers(2, 5))
    def pipelined(self, count: int) -> None:
        # Several commands written before any answer: answered in order.
        deferreds = [self.client.query(f"SELECT {i}") for i in range(count)]
        self.pump.flush()
        assert [_outcome(d).rows for d in deferreds] == [[(i,)] for i in range(count)]

    @precondition(lambda self: self.usable)
    @rule()
    def simple_commands(self) -> None:
        assert isinstance(self._run(self.client.ping()), QueryResult)
        assert "Uptime" in self._run(self.client.statistics())
        assert isinstance(self._run(self.client.field_list("fruits")), list)

    @rule(seconds=st.floats(0, 5))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.pump.flush()

    # -- hostile bytes ------------------------------------------------------------

    @precondition(lambda self: self.usable or self.broken)
    @rule(data=hostile, steps=st.integers(0, 4), query=st.booleans())
    def garbage_to_server(self, data: bytes, steps: int, query: bool) -> None:
        """Bytes the client library never wrote reach the server, possibly mid-command."""
        pending = self.client.query("SELECT * FROM fruits") if query else None
        for _ in range(steps):
            self.pump.pump()
        if not self.server.transport.disconnecting:
            self.server.dataReceived(data)
        self._after_garbage(pending)

    @precondition(lambda self: self.usable or self.broken)
    @rule(data=hostile, steps=st.integers(0, 4), query=st.booleans())
    def garbage_to_client(self, data: bytes, steps: int, query: bool) -> None:
        """Bytes the server never wrote reach the client, possibly mid-answer."""
        pending = self.client.query("SELECT * FROM fruits") if query else None
        for _ in range(steps):
            self.pump.pump()
        if not self.client.transport.disconnecting:
            self.client.dataReceived(data)
        self._after_garbage(pending)

    def _after_garbage(self, pending: Deferred[Any] | None) -> None:
        self.usable = False
        self.broken = True
        if pending is not None:
            self._settle(pending)
        # Whatever the bytes did, a new request ends too: answered, or failed
        # because the connection was closed.
        self._settle(self.client.ping())

    # -- invariants ---------------------------------------------------------

    @invariant()
    def nothing_unexpected_logged(self) -> None:
        assert not self.failures, [e.get("log_format") for e in self.failures]


Conversation.TestCase.settings = settings(
    max_examples=examples(40),
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_conversations = Conversation.TestCase
