"""
The proxy's own adapters (its client sessions and server sessions) under a
hypothesis state machine, in memory: two clients (our L{MySQLClientProtocol})
log in through the proxy (L{SessionManager} on a memory reactor) to scripted
backends; they query, prepare and execute, pipeline; and hostile bytes reach
the proxy from a client or from a backend at any point of a command.

Whatever happens: every request ends (answered, or failed with a
L{ServerError}, at the latest when its connection closes); the proxy never
logs an unexpected exception; and it keeps serving: a client that sent
nothing hostile keeps working, a new client can log in and query.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test import iosim

from fuzz.proxy import PASSWORD, ProxyHarness
from obproxy_tx.protocol.client import MySQLClientProtocol, QueryResult, ServerError
from tests.fuzz.budget import examples
from tests.fuzz.test_conversations import hostile


def _note(what: str) -> None:
    """Count an outcome in hypothesis's statistics (when run by hypothesis)."""
    with contextlib.suppress(InvalidArgument):
        event(what)


def _outcome(deferred: Deferred[Any]) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "a request was left without an answer"
    return results[0]


class ProxyConversation(RuleBasedStateMachine):
    """
    Clients and backends around one proxy; the model: which clients were
    sent or received hostile bytes (their connection may be gone).
    """

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[LogEvent] = []
        globalLogPublisher.addObserver(self._observe)
        # The proxy and its in-memory backends, as the atheris proxy target has them.
        self.harness = ProxyHarness()
        self.reactor = self.harness.reactor
        self.manager = self.harness.manager
        self.backends = self.harness.backends
        self.pumps = self.harness.pumps
        self.clients: list[MySQLClientProtocol] = []
        self.client_pumps: list[iosim.IOPump] = []
        self.proxy_sides: list[Any] = []
        self.tainted: set[int] = set()

    def _observe(self, event: LogEvent) -> None:
        if "log_failure" in event:
            self.failures.append(event)

    def teardown(self) -> None:
        globalLogPublisher.removeObserver(self._observe)
        for client in self.clients:
            if client.transport is not None:
                client.transport.loseConnection()
        self.flush()

    # -- plumbing ---------------------------------------------------------

    def flush(self) -> None:
        """Move bytes everywhere, connect the proxy's new backend connections."""
        self.harness.flush()

    def connect_client(self) -> int:
        """A new client logs in through the proxy; its index."""
        client = MySQLClientProtocol(self.reactor, "app", PASSWORD)
        address = IPv4Address("TCP", "127.0.0.1", 40000 + len(self.clients))
        proxy_side = self.manager.listener_factory().buildProtocol(address)
        pump = iosim.connect(
            proxy_side,
            iosim.makeFakeServer(proxy_side),
            client,
            iosim.makeFakeClient(client),
            greet=True,
        )
        self.pumps.append(pump)
        self.client_pumps.append(pump)
        self.clients.append(client)
        self.proxy_sides.append(proxy_side)
        self.flush()
        result = _outcome(client.ready)
        assert result is client, result
        return len(self.clients) - 1

    def run(self, index: int, deferred: Deferred[Any]) -> Any:
        if index in self.tainted:
            # Its backend may hold part of a hostile packet: the answer
            # can wait for bytes that never come, as with a hung server.
            return self.settle(index, deferred)
        self.flush()
        result = _outcome(deferred)
        if index not in self.tainted and isinstance(result, Failure):
            raise AssertionError(f"client {index} (nothing hostile) failed: {result.value!r}")
        return result

    def settle(self, index: int, deferred: Deferred[Any]) -> Any:
        """
        A tainted client's request ends, well or with a ServerError, at the
        latest when the client gives up (closes, as on a timeout).
        """
        self.flush()
        if not deferred.called:
            self.clients[index].transport.loseConnection()
            self.flush()
        result = _outcome(deferred)
        if isinstance(result, Failure):
            assert isinstance(result.value, ServerError), result
            _note(f"failed with {result.value.code}")
        else:
            _note("answered")
        return result

    # -- rules --------------------------------------------------------------

    @initialize()
    def two_clients(self) -> None:
        self.connect_client()
        self.connect_client()

    @rule(which=st.integers(0, 1), text=st.text(alphabet="abcxyz ", max_size=12))
    def query(self, which: int, text: str) -> None:
        select = self.run(which, self.clients[which].query(f"SELECT '{text}'"))
        update = self.run(which, self.clients[which].query(f"UPDATE t SET a = '{text}'"))
        if which not in self.tainted:
            assert select.rows == [(f"SELECT '{text}'",)]
            assert update.affected_rows == 0

    @rule(which=st.integers(0, 1))
    def prepared(self, which: int) -> None:
        if which in self.tainted:
            return
        statement = self.run(which, self.clients[which].prepare("UPDATE t SET a = 1"))
        result = self.run(which, statement.execute())
        assert isinstance(result, QueryResult)

    @rule(which=st.integers(0, 1), count=st.integers(2, 4))
    def pipelined(self, which: int, count: int) -> None:
        if which in self.tainted:
            return
        deferreds = [self.clients[which].query(f"SELECT {i}") for i in range(count)]
        self.flush()
        assert [_outcome(d).rows for d in deferreds] == [[(f"SELECT {i}",)] for i in range(count)]

    @rule(data=hostile, query=st.booleans(), steps=st.integers(0, 3))
    def garbage_from_client(self, data: bytes, query: bool, steps: int) -> None:
        """Client 0 writes bytes its library never would, possibly mid-command."""
        self.tainted.add(0)
        client = self.clients[0]
        pending = client.query("SELECT 'x'") if query else None
        for _ in range(steps):
            self.client_pumps[0].pump()
        if client.transport is not None and not client.transport.disconnecting:
            client.transport.write(data)
        if pending is not None:
            self.settle(0, pending)
        self.settle(0, client.ping())

    @precondition(lambda self: self.backends)
    @rule(data=hostile, which=st.integers(0, 10), query=st.booleans())
    def garbage_from_backend(self, data: bytes, which: int, query: bool) -> None:
        """A backend sends bytes no server would: its client may fail; the proxy goes on."""
        backend, _proxy_side = self.backends[which % len(self.backends)]
        self.tainted.update(range(len(self.clients)))  # which client it serves is not known
        pending = self.clients[1].query("SELECT 'y'") if query else None
        if backend.transport is not None and not backend.transport.disconnecting:
            backend.transport.write(data)
        if pending is not None:
            self.settle(1, pending)
        for index in range(len(self.clients)):
            self.settle(index, self.clients[index].ping())

    @rule()
    def a_new_client_is_served(self) -> None:
        """Whatever happened, a new client logs in and queries."""
        index = self.connect_client()
        result = self.run(index, self.clients[index].query("SELECT 'fresh'"))
        assert result.rows == [("SELECT 'fresh'",)]

    @invariant()
    def nothing_unexpected_logged(self) -> None:
        assert not self.failures, [
            (e.get("log_format"), e["log_failure"].getTraceback()) for e in self.failures
        ]


ProxyConversation.TestCase.settings = settings(
    max_examples=examples(25),
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_proxy_conversations = ProxyConversation.TestCase
