"""
The replica monitor: the pure reading and judging of C{SHOW SLAVE STATUS}, the table of
replicas, and the poller driven by a clock and a scripted metadata connection.
"""

from __future__ import annotations

from typing import Any, List

import attrs
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from obproxy_tx.config import BackendServer, ClusterConfig, ClusterType, parse_server
from obproxy_tx.ha.replicas import (
    ReplicaMonitor,
    ReplicaTable,
    ReplicationStatus,
    Verdict,
    judge,
    parse_status,
)
from obproxy_tx.session.stats import ProxyStats


def test_parse_status_slave_and_replica_names() -> None:
    """
    MariaDB's C{SHOW SLAVE STATUS} names and MySQL 8's C{SHOW REPLICA STATUS} ones read the
    same; C{NULL} lag is unknown; the first non-empty error is kept; no row: not a replica.
    """
    assert parse_status(
        {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": "0"}
    ) == ReplicationStatus(True, True, 0.0)
    assert parse_status(
        {
            "Replica_IO_Running": b"Connecting",
            "Replica_SQL_Running": b"Yes",
            "Seconds_Behind_Source": None,
            "Last_IO_Error": b"error connecting to master",
        }
    ) == ReplicationStatus(False, True, None, "error connecting to master")
    assert parse_status(None) is None
    assert parse_status({}) is None


@pytest.mark.parametrize(
    ("status", "max_lag", "usable", "reason"),
    [
        (ReplicationStatus(True, True, 0.0), 5.0, True, ""),
        (ReplicationStatus(True, True, 5.0), 5.0, True, ""),
        (ReplicationStatus(True, True, 6.0), 5.0, False, "6 s behind its primary"),
        (ReplicationStatus(True, True, 600.0), 0.0, True, ""),
        (ReplicationStatus(True, True, None), 5.0, False, "lag unknown"),
        (ReplicationStatus(True, False, None), 5.0, False, "SQL thread not running"),
        (ReplicationStatus(False, False, None), 5.0, False, "IO and SQL threads not running"),
        (
            ReplicationStatus(False, True, 0.0, "error reconnecting"),
            5.0,
            False,
            "IO thread not running: error reconnecting",
        ),
        (None, 5.0, False, "not replicating"),
    ],
)
def test_judge(status: ReplicationStatus | None, max_lag: float, usable: bool, reason: str) -> None:
    """
    Usable only with both threads running and a known lag within C{max_replica_lag} (0: any).
    """
    verdict = judge(status, max_lag)
    assert verdict.usable is usable
    assert reason in verdict.reason
    if usable:
        assert verdict.reason == ""


def _servers(*ports: int) -> List[BackendServer]:
    return [parse_server(f"127.0.0.1:{port}") for port in ports]


def test_table_records_and_chooses() -> None:
    """
    A replica is out until judged usable; C{record} says when usability flips; C{choose}
    prefers the given replica while usable, else takes usable ones in turn, else none.
    """
    table = ReplicaTable()
    a, b, c = _servers(1, 2, 3)
    replicas = [a, b, c]
    assert table.choose(replicas) is None
    assert table.health(a.address).reason == "not checked yet"
    assert table.record(a.address, Verdict(True), 1.0) is True
    assert table.record(a.address, Verdict(True), 2.0) is False
    assert table.record(b.address, Verdict(True), 2.0) is True
    assert table.record(c.address, Verdict(False, "stopped"), 2.0) is False
    assert table.health(a.address).changed_at == 1.0
    assert table.health(a.address).checks == 2
    assert table.choose(replicas, prefer=b.address) is b
    assert table.choose(replicas, prefer=c.address) in (a, b)
    chosen = {table.choose(replicas).address for _ in range(4)}
    assert chosen == {a.address, b.address}
    assert table.record(a.address, Verdict(False, "lag"), 3.0) is True
    assert table.record(b.address, Verdict(False, "lag"), 3.0) is True
    assert table.choose(replicas, prefer=a.address) is None


@attrs.define
class _Transport:
    aborted: int = 0

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted += 1


@attrs.define
class _Result:
    column_names: List[str]
    rows: List[tuple[Any, ...]]


class _Connection:
    """A metadata connection whose answers the test gives."""

    def __init__(self) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.transport = _Transport()
        self.queries: List[tuple[str, defer.Deferred[Any]]] = []

    def query(self, sql: str) -> defer.Deferred[Any]:
        waiting: defer.Deferred[Any] = defer.Deferred()
        self.queries.append((sql, waiting))
        return waiting

    def answer(self, **row: Any) -> None:
        _sql, waiting = self.queries[-1]
        waiting.callback(_Result(list(row), [tuple(row.values())] if row else []))


def _status(io: str = "Yes", sql: str = "Yes", lag: Any = "0") -> dict[str, Any]:
    return {"Slave_IO_Running": io, "Slave_SQL_Running": sql, "Seconds_Behind_Master": lag}


@attrs.define
class _Config:
    clusters: tuple[ClusterConfig, ...]
    replica_check_interval: float = 1.0
    max_replica_lag: float = 5.0
    short_async_task_timeout: float = 2.0


class _Harness:
    def __init__(self, cluster_type: ClusterType = ClusterType.MYSQL) -> None:
        self.clock = Clock()
        self.replica = parse_server("127.0.0.1:3307")
        self.cluster = ClusterConfig(
            "c", cluster_type, servers=tuple(_servers(3306)), replicas=(self.replica,)
        )
        self.config = _Config((self.cluster,))
        self.stats = ProxyStats()
        self.connects: List[defer.Deferred[Any]] = []
        self.connections: List[_Connection] = []
        self.monitor = ReplicaMonitor(self.clock, lambda: self.config, self.stats, self.connect)

    def connect(self, server: Any) -> defer.Deferred[Any]:
        assert server is self.replica
        waiting: defer.Deferred[Any] = defer.Deferred()
        self.connects.append(waiting)
        return waiting

    def connected(self) -> _Connection:
        connection = _Connection()
        self.connections.append(connection)
        self.connects[-1].callback(connection)
        return connection

    @property
    def usable(self) -> bool:
        return self.monitor.table.usable(self.replica.address)

    @property
    def reason(self) -> str:
        return self.monitor.table.health(self.replica.address).reason


def test_monitor_polls_and_follows_the_replica() -> None:
    """
    The first check runs at start over a new connection; later ones reuse it every
    C{replica_check_interval} (read at each check); a stopped thread takes the replica out and
    a good reading puts it back; the changes are counted.
    """
    h = _Harness()
    h.monitor.start()
    assert not h.usable
    h.clock.advance(0)
    connection = h.connected()
    assert connection.queries[0][0] == "SHOW SLAVE STATUS"
    connection.answer(**_status())
    assert h.usable
    assert h.monitor.choose(h.cluster) is h.replica
    h.clock.advance(0.5)
    assert len(connection.queries) == 1
    h.clock.advance(0.5)
    assert len(connection.queries) == 2
    connection.answer(**_status(sql="No"))
    assert not h.usable
    assert "SQL thread not running" in h.reason
    h.config.replica_check_interval = 0.2
    h.clock.advance(1.0)  # the interval in force when the last check was scheduled
    connection.answer(**_status(lag="9"))
    assert not h.usable
    assert "9 s behind" in h.reason
    h.clock.advance(0.2)
    connection.answer(**_status(lag="1"))
    assert h.usable
    assert len(h.connects) == 1
    assert h.stats.replica_state_changes == 2
    h.monitor.stop()
    h.clock.advance(10)
    assert len(connection.queries) == 4
    assert connection.transport.aborted == 1


def test_monitor_failures_take_the_replica_out() -> None:
    """
    No answer within C{short_async_task_timeout}, a refused connection and a lost monitor
    connection each take the replica out; a lost connection is followed by a new check at
    once, so a restarted replica is back as soon as it answers.
    """
    h = _Harness()
    h.monitor.start()
    h.clock.advance(0)
    connection = h.connected()
    connection.answer(**_status())
    assert h.usable
    h.clock.advance(1.0)
    h.clock.advance(2.0)  # the query is not answered
    assert not h.usable
    assert "timed out" in h.reason
    assert connection.transport.aborted == 1
    h.clock.advance(1.0)
    h.connects[-1].errback(ConnectionRefusedError("refused"))
    assert not h.usable
    assert "refused" in h.reason
    h.clock.advance(1.0)
    second = h.connected()
    second.answer(**_status())
    assert h.usable
    second.closed.callback(None)  # the replica went away
    assert not h.usable
    assert "lost" in h.reason
    h.clock.advance(0)  # checked again at once
    assert len(h.connects) == 4
    third = h.connected()
    third.answer(**_status())
    assert h.usable
    h.monitor.stop()


def test_monitor_not_a_replica_and_oceanbase() -> None:
    """
    An empty C{SHOW SLAVE STATUS} means the server replicates nothing: out. On OceanBase
    clusters the check is C{SELECT 1}: answering is enough.
    """
    h = _Harness()
    h.monitor.start()
    h.clock.advance(0)
    h.connected().answer()
    assert not h.usable
    assert "not replicating" in h.reason
    h.monitor.stop()
    ob = _Harness(ClusterType.OCEANBASE)
    ob.monitor.start()
    ob.clock.advance(0)
    connection = ob.connected()
    assert connection.queries[0][0] == "SELECT 1"
    connection.answer(**{"1": 1})
    assert ob.usable
    ob.monitor.stop()
