"""
What a reload that changes the clusters does to the replica monitor
(L{ReplicaMonitor.reconfigured}) and the congestion table
(L{Health.forget<obproxy_tx.ha.health.Health.forget>}): removed replicas and
servers are no longer checked and their entries go; new replicas are checked
at once; a check under way when its server was removed leaves no entry.
"""

from __future__ import annotations

from typing import Any, List

import attrs
from twisted.internet import defer
from twisted.internet.task import Clock

from obproxy_tx.config import ClusterConfig, ClusterType, parse_server
from obproxy_tx.ha.health import Health
from tests.unit.ha.test_replicas import _Harness, _status


def test_removed_replica_is_forgotten_and_a_new_one_checked_at_once() -> None:
    h = _Harness()
    h.monitor.start()
    h.clock.advance(0)
    connection = h.connected()
    connection.answer(**_status())
    assert h.usable
    other = parse_server("127.0.0.1:3308")
    asked: List[Any] = []

    def connect(server: Any) -> defer.Deferred[Any]:
        asked.append(server)
        return defer.Deferred()

    h.monitor._connect = connect
    h.config.clusters = (attrs.evolve(h.cluster, replicas=(other,)),)
    h.monitor.reconfigured()
    # The removed replica: its connection closed, no entry, no more checks.
    assert connection.transport.aborted == 1
    assert [e.address for e in h.monitor.table] == [other.address]
    assert h.monitor.choose(h.config.clusters[0]) is None
    h.clock.advance(0)
    assert asked == [other]
    h.clock.advance(10)
    assert len(connection.queries) == 1
    h.monitor.stop()


def test_a_check_under_way_for_a_removed_replica_leaves_no_entry() -> None:
    h = _Harness()
    h.monitor.start()
    h.clock.advance(0)
    connection = h.connected()
    h.config.clusters = (attrs.evolve(h.cluster, replicas=()),)
    h.monitor.reconfigured()
    connection.answer(**_status())
    assert list(h.monitor.table) == []
    h.clock.advance(10)
    assert len(connection.queries) == 1
    h.monitor.stop()


@attrs.define
class _Config:
    clusters: tuple[ClusterConfig, ...]
    server_detect_mode: int = 2
    server_detect_refresh_interval: float = 1.0
    enable_congestion: bool = True
    congestion_failure_threshold: int = 1
    congestion_fail_window: float = 120.0
    congestion_retry_interval: float = 20.0
    min_keep_congestion_interval: float = 20.0
    server_detect_fail_threshold: int = 1


def test_congestion_entries_follow_and_a_probe_under_way_leaves_none() -> None:
    clock = Clock()
    a, b = parse_server("10.0.0.1:1"), parse_server("10.0.0.2:1")
    config = _Config((ClusterConfig("c", ClusterType.MYSQL, servers=(a, b)),))
    probes: List[defer.Deferred[Any]] = []

    def probe(reactor: Any, server: Any, config: Any) -> defer.Deferred[Any]:
        waiting: defer.Deferred[Any] = defer.Deferred()
        probes.append(waiting)
        return waiting

    health = Health(clock, lambda: config)
    health.checker._probe = probe
    health.known(config.clusters)
    health.connect_failed("c", a.address, "refused")
    assert health.table.has_congestion
    health.checker.start()
    clock.advance(0)
    assert len(probes) == 2
    config.clusters = (ClusterConfig("c", ClusterType.MYSQL, servers=(b,)),)
    health.forget("c", a.address)
    assert [e.server for e in health.table.entries()] == [b.address]
    assert not health.table.has_congestion
    probes[0].callback((False, "refused"))
    probes[1].callback((True, ""))
    assert [e.server for e in health.table.entries()] == [b.address]
    health.checker.stop()
