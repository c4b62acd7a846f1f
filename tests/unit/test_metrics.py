"""
Tests for L{obproxy_tx.metrics}: the figures a scrape reads from a session
manager, the text format, the endpoint resource, and the per-worker merge.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from obproxy_tx import metrics
from obproxy_tx.config import parse_config
from obproxy_tx.ha.congestion import CongestionEntry
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.session.stats import LATENCY_BUCKETS, RequestStats, command_name
from obproxy_tx.wire.packets import ComPing, ComQuery, ComStmtExecute

CONFIG = """
clusters:
  - name: c1
    type: mysql
    servers: ["127.0.0.1:3306", "127.0.0.1:3307"]
"""


def make_manager() -> SessionManager:
    return SessionManager(parse_config(CONFIG), Clock())


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a text exposition: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(manager: SessionManager) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(metrics.render(metrics.manager_figures(manager)()))


def test_command_names() -> None:
    assert command_name(ComQuery) == "query"
    assert command_name(ComStmtExecute) == "stmt_execute"
    assert command_name(ComPing) == "ping"


def test_request_stats_buckets() -> None:
    """
    Each request lands in the first bucket whose bound is at least its
    time; errors and sums are per command.
    """
    stats = RequestStats()
    stats.add(ComQuery, False, 0.0002)
    stats.add(ComQuery, True, 0.001)  # on a bound: that bucket (le is inclusive)
    stats.add(ComQuery, False, 99.0)
    entry = stats.by_command["query"]
    assert entry[:2] == [3, 1]
    assert abs(entry[2] - 99.0012) < 1e-9
    buckets = entry[3:]
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    assert buckets[0] == 1 and buckets[1] == 1 and buckets[-1] == 1
    assert sum(buckets) == 3


def test_proxystat_counters_are_the_same() -> None:
    """
    Every SHOW PROXYSTAT counter is a Prometheus counter with its value.
    """
    manager = make_manager()
    manager.stats.client_logins = 7
    manager.stats.server_connect_failures = 3
    manager.stats.client_bytes_received = 1234
    found = scrape(manager)
    for name, value in manager.stats.rows():
        assert found[(f"obproxy_{name}_total", ())] == value
    assert found[("obproxy_client_logins_total", ())] == 7


def test_requests_latency_and_errors_by_command() -> None:
    """
    What the client session reports at the end of each answered request is
    counted by command, with errors and a histogram whose buckets add up.
    """
    manager = make_manager()
    clock = manager.reactor

    class Session:
        last_command_at = 0.0

    class Server:
        pass

    session = Session()
    for elapsed, failed, command in [
        (0.003, False, ComQuery(b"SELECT 1")),
        (0.2, True, ComQuery(b"SELECT nope")),
        (0.0001, False, ComStmtExecute(1, 0, 1, b"")),
    ]:
        session.last_command_at = clock.seconds()
        clock.advance(elapsed)
        manager.requests.finished(session, Server(), command, failed)
    found = scrape(manager)
    query = (("command", "query"),)
    assert found[("obproxy_requests_total", query)] == 2
    assert found[("obproxy_request_errors_total", query)] == 1
    assert found[("obproxy_request_duration_seconds_count", query)] == 2
    assert abs(found[("obproxy_request_duration_seconds_sum", query)] - 0.203) < 1e-6
    assert found[("obproxy_request_duration_seconds_bucket", (*query, ("le", "0.0025")))] == 0
    assert found[("obproxy_request_duration_seconds_bucket", (*query, ("le", "0.005")))] == 1
    assert found[("obproxy_request_duration_seconds_bucket", (*query, ("le", "0.25")))] == 2
    assert found[("obproxy_request_duration_seconds_bucket", (*query, ("le", "+Inf")))] == 2
    execute = (("command", "stmt_execute"),)
    assert found[("obproxy_requests_total", execute)] == 1
    assert found[("obproxy_request_errors_total", execute)] == 0


def test_sessions_by_state_and_server() -> None:
    """
    Client sessions are counted by MCS state (every state listed, 0 when
    none); server sessions by server and MSS state.
    """
    manager = make_manager()

    class Machine:
        def __init__(self, state: str) -> None:
            self.state = type("S", (), {"value": state})()

    class SS:
        def __init__(self, address: str, state: str) -> None:
            self.server = type("B", (), {"address": address})()
            self.machine = Machine(state)

    class CS:
        def __init__(self, state: str, server_sessions: list[Any]) -> None:
            self.machine = Machine(state)
            self.server_sessions = server_sessions

    manager.client_sessions = {  # type: ignore[assignment]
        1: CS("MCS_ACTIVE_READER", [SS("127.0.0.1:3306", "MSS_ACTIVE")]),
        2: CS(
            "MCS_ACTIVE_READER",
            [SS("127.0.0.1:3306", "MSS_KA_CLIENT_SLAVE"), SS("127.0.0.1:3307", "MSS_KA_SHARED")],
        ),
        3: CS("MCS_INIT", []),
    }
    found = scrape(manager)
    assert found[("obproxy_client_sessions", (("state", "MCS_ACTIVE_READER"),))] == 2
    assert found[("obproxy_client_sessions", (("state", "MCS_INIT"),))] == 1
    assert found[("obproxy_client_sessions", (("state", "MCS_KEEP_ALIVE"),))] == 0
    server = "obproxy_server_sessions"
    assert found[(server, (("server", "127.0.0.1:3306"), ("state", "MSS_ACTIVE")))] == 1
    assert found[(server, (("server", "127.0.0.1:3306"), ("state", "MSS_KA_CLIENT_SLAVE")))] == 1
    assert found[(server, (("server", "127.0.0.1:3307"), ("state", "MSS_KA_SHARED")))] == 1
    assert found[("obproxy_shared_pool_sessions", ())] == 0


def test_congestion_figures() -> None:
    """
    The congestion table is read as it is: a dead-congested server shows
    1 for dead, its connect failures as a counter.
    """
    manager = make_manager()
    table = manager.health.table
    now = manager.reactor.seconds()
    for _ in range(10):
        table.connect_failed("c1", "127.0.0.1:3307", now)
    entry: CongestionEntry = table.entry("c1", "127.0.0.1:3307")
    assert entry.dead_congested
    found = scrape(manager)
    labels = (("cluster", "c1"), ("server", "127.0.0.1:3307"))
    assert found[("obproxy_server_congested", (labels[0], ("kind", "dead"), labels[1]))] == 1
    assert found[("obproxy_server_congested", (labels[0], ("kind", "alive"), labels[1]))] == 0
    assert found[("obproxy_congestion_connect_failures_total", labels)] == 10
    other = (("cluster", "c1"), ("server", "127.0.0.1:3306"))
    assert found[("obproxy_server_congested", (other[0], ("kind", "dead"), other[1]))] == 0


def test_managers_have_their_own_figures() -> None:
    """
    No process-wide registry: two managers in one process count apart.
    """
    first, second = make_manager(), make_manager()
    first.stats.client_logins = 5
    assert scrape(first)[("obproxy_client_logins_total", ())] == 5
    assert scrape(second)[("obproxy_client_logins_total", ())] == 0


def test_workers_labelled() -> None:
    """
    The parent's scrape labels each worker's samples with its number and
    leaves out a worker that failed to answer.
    """
    one, two = make_manager(), make_manager()
    one.stats.client_logins = 1
    two.stats.client_logins = 2

    class Member:
        def __init__(self, manager: Any) -> None:
            self.manager = manager

        def list_rows(self, caller: Any, command: str, args: Any) -> Any:
            assert command == metrics.CHANNEL_COMMAND
            if self.manager is None:
                return defer.fail(RuntimeError("worker gone"))
            return defer.succeed(metrics.metric_rows(self.manager))

    class Router:
        workers = [Member(one), Member(None), Member(two)]

    clock = Clock()
    result = metrics.workers_figures(Router(), 1.0, clock)()
    families = result.result
    found = samples(metrics.render(families))
    assert found[("obproxy_client_logins_total", (("worker", "0"),))] == 1
    assert found[("obproxy_client_logins_total", (("worker", "2"),))] == 2
    assert ("obproxy_client_logins_total", (("worker", "1"),)) not in found
    assert found[("obproxy_workers_answering", ())] == 2


def test_resource_answers_synchronously_and_later() -> None:
    """
    The resource writes the text format at once when the figures are at
    hand, and once they arrive when they come from workers.
    """
    manager = make_manager()
    resource = metrics.MetricsResource(metrics.manager_figures(manager))
    request = DummyRequest([b"metrics"])
    body = resource.render_GET(request)
    assert b"obproxy_client_logins_total 0.0" in body
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain")

    waiting: defer.Deferred[Any] = defer.Deferred()
    later = metrics.MetricsResource(lambda: waiting)
    request = DummyRequest([b"metrics"])
    assert later.render_GET(request) is NOT_DONE_YET
    waiting.callback(metrics.manager_figures(manager)())
    assert request.finished
    assert b"obproxy_client_logins_total 0.0" in b"".join(request.written)


def test_resource_failure_is_500() -> None:
    resource = metrics.MetricsResource(lambda: defer.fail(RuntimeError("boom")))
    request = DummyRequest([b"metrics"])
    body = resource.render_GET(request)
    assert request.responseCode == 500
    assert b"cannot collect" in body


def test_uptime() -> None:
    manager = make_manager()
    manager.started_at = time.time() - 100
    assert scrape(manager)[("obproxy_uptime_seconds", ())] >= 100
