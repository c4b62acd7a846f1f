"""
The active health checker and the connect-path reports (L{obproxy_tx.ha.health}), on a
L{task.Clock} with a probe that answers what the test says; the greeting probe against
in-memory servers; and pick_server skipping a congested server.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactorClock, StringTransport

from obproxy_tx.config import parse_config
from obproxy_tx.ha.health import Health, drop_sessions_to, probe_server
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.session.stats import ProxyStats
from obproxy_tx.wire.constants import Capability, ServerStatus
from obproxy_tx.wire.packets import ERRPacket, HandshakeV10

A, B, C = "127.0.0.1:3301", "127.0.0.1:3302", "127.0.0.1:3303"


def config(extra: str = "") -> Any:
    return parse_config(
        f"""
listen_port: 0
{extra}
clusters:
  - name: cl
    type: mysql
    servers: ["{A}", "{B}", "{C}"]
    users:
      - {{name: u, verifier: ''}}
"""
    )


class Probes:
    """A probe whose answers the test sets per server address."""

    def __init__(self) -> None:
        self.alive: Dict[str, bool] = {}
        self.calls: List[str] = []
        self.pending: Dict[str, defer.Deferred[Tuple[bool, str]]] = {}
        self.hold = False

    async def __call__(self, reactor: Any, server: Any, cfg: Any) -> Tuple[bool, str]:
        self.calls.append(server.address)
        if self.hold:
            d: defer.Deferred[Tuple[bool, str]] = defer.Deferred()
            self.pending[server.address] = d
            return await d
        alive = self.alive.get(server.address, True)
        return alive, "" if alive else "refused"


def health(extra: str) -> Tuple[task.Clock, Health, Probes, ProxyStats]:
    clock = task.Clock()
    cfg = config(extra)
    stats = ProxyStats()
    h = Health(clock, lambda: cfg, stats)
    h.known(cfg.clusters)
    probes = Probes()
    h.checker._probe = probes
    return clock, h, probes, stats


def test_mode_zero_probes_nothing() -> None:
    clock, h, probes, _ = health("server_detect_mode: 0")
    h.checker.start()
    clock.advance(0)
    clock.advance(5)
    assert probes.calls == []


def test_mode_two_marks_dead_after_threshold_and_back() -> None:
    """
    Every server is probed each interval; three failures in a row take B out, one success
    puts it back; the stats count both changes.
    """
    clock, h, probes, stats = health(
        "server_detect_mode: 2\nserver_detect_refresh_interval: 1s\nserver_detect_fail_threshold: 3"
    )
    probes.alive[B] = False
    h.checker.start()
    clock.advance(0)
    assert sorted(probes.calls) == [A, B, C]
    assert not h.table.entry("cl", B).detect_congested
    clock.advance(1)
    clock.advance(1)
    assert h.table.entry("cl", B).detect_congested
    assert h.table.avoided("cl", B, clock.seconds())
    assert stats.servers_congested == 1
    probes.alive[B] = True
    clock.advance(1)
    assert not h.table.entry("cl", B).congested
    assert h.table.entry("cl", B).server_state == "DETECT_ALIVE"
    assert stats.servers_recovered == 1
    h.checker.stop()
    calls = len(probes.calls)
    clock.advance(10)
    assert len(probes.calls) == calls


def test_mode_one_probes_used_or_failing_servers() -> None:
    """
    Mode 1 probes the servers that got sessions since the last round, and failing ones.
    """
    clock, h, probes, _ = health("server_detect_mode: 1\nserver_detect_refresh_interval: 1s")
    h.checker.start()
    clock.advance(0)
    assert probes.calls == []
    h.connected("cl", A)
    h.connect_failed("cl", C, "refused")
    clock.advance(1)
    assert sorted(probes.calls) == [A]  # C failed once: not congested, no detect failure
    h.table.detect_failed("cl", C, clock.seconds())
    probes.calls.clear()
    clock.advance(1)
    assert probes.calls == [C]


def test_probe_in_flight_is_not_doubled() -> None:
    clock, h, probes, _ = health("server_detect_mode: 2\nserver_detect_refresh_interval: 1s")
    probes.hold = True
    h.checker.start()
    clock.advance(0)
    clock.advance(1)
    assert sorted(probes.calls) == [A, B, C]
    probes.pending[A].callback((False, "x"))
    clock.advance(1)
    assert sorted(probes.calls) == [A, A, B, C]


def test_connect_reports_and_refusals() -> None:
    """
    Connect failures make a server dead at the threshold; refusals count only for
    cannot-serve-now codes; the snapshot shows ODP's columns.
    """
    clock, h, _, stats = health("congestion_failure_threshold: 2")
    clock.advance(100)
    h.connect_failed("cl", A, "refused")
    h.connect_failed("cl", A, "refused")
    assert h.table.entry("cl", A).dead_congested
    assert not h.refused("cl", B, 1045, "Access denied")
    assert h.refused("cl", B, 1040, "Too many connections")
    assert h.refused("cl", B, 1053, "Server shutdown in progress")
    assert h.table.entry("cl", B).alive_congested
    assert stats.servers_congested == 2
    rows = {row["server_ip"]: row for row in h.snapshot("cl")}
    assert list(rows) == [A, B, C]
    assert rows[A]["dead_congested"] == 1 and rows[A]["stat_conn_failures"] == 2
    assert rows[A]["conn_failure_events"] == 2
    assert rows[B]["alive_congested"] == 1 and rows[B]["stat_alive_failures"] == 2
    assert rows[C]["last_dead_congested"] == "0"
    servers = list(config().default_cluster.servers)
    # A and B failed at the same time: in the given order, after the usable C
    assert [s.address for s in h.order("cl", servers)] == [C, A, B]


def test_pick_server_skips_congested_and_never_refuses() -> None:
    """
    The manager's round robin leaves a dead server out, and when all are dead still answers
    the one that failed longest ago.
    """
    clock = MemoryReactorClock()
    manager = SessionManager(config("congestion_failure_threshold: 1"), reactor=clock)
    cluster = manager.config.default_cluster
    manager.health.connect_failed("cl", B, "refused")
    picked = [manager.pick_server(cluster).address for _ in range(6)]
    assert B not in picked and set(picked) == {A, C}
    clock.advance(1)
    manager.health.connect_failed("cl", A, "refused")
    clock.advance(1)
    manager.health.connect_failed("cl", C, "refused")
    assert [manager.pick_server(cluster).address for _ in range(3)] == [B, B, B]


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def _probe(data: bytes) -> Tuple[bool, str]:
    """
    Run the greeting probe against an in-memory server that sends C{data} and then nothing.
    """
    cfg = config("detect_server_timeout: 2s")
    server = cfg.default_cluster.servers[0]
    reactor = MemoryReactorClock()
    result: List[Tuple[bool, str]] = []
    d = defer.Deferred.fromCoroutine(probe_server(reactor, server, cfg))
    d.addCallback(result.append)
    _host, _port, factory, _timeout, _bind = reactor.tcpClients[0]
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    if data:
        protocol.dataReceived(data)
    reactor.advance(3)
    assert result, "the probe never finished"
    return result[0]


def test_greeting_probe_in_memory() -> None:
    """
    The greeting probe passes on a handshake, fails on an ERR packet instead of one (1040, as
    a server out of connections sends) and on silence (after detect_server_timeout).
    """
    greeting = HandshakeV10(
        "10.11.0-MariaDB", 7, b"B" * 20, Capability.CLIENT_PROTOCOL_41, 45, ServerStatus(2)
    )
    assert _probe(_frame(greeting.encode())) == (True, "")
    refusal = ERRPacket(1040, "Too many connections", "08004")
    alive, why = _probe(_frame(refusal.encode(Capability.CLIENT_PROTOCOL_41)))
    assert not alive and "no greeting" in why
    alive, why = _probe(b"")
    assert not alive and "2 s" in why


class _SS:
    def __init__(self, address: str) -> None:
        self.server = type("S", (), {"address": address})()
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class _Pool:
    def __init__(self, idle: List[str]) -> None:
        self.idle = idle

    def close_idle(self, address: str) -> bool:
        if address in self.idle:
            self.idle.remove(address)
            return True
        return False


def test_detect_dead_drops_sessions_to_that_server_only() -> None:
    """
    When the checker takes a server out, the shared pool's idle sessions to it are closed and
    the client sessions' own are aborted (their loss is then handled as any lost session);
    sessions to other servers stay.
    """
    mine, other = _SS(B), _SS(A)
    client = type("CS", (), {"server_sessions": [mine, other]})()
    manager = type("M", (), {})()
    manager.session_pool = _Pool([B, B, A])
    manager.client_sessions = {1: client}
    clock, h, probes, _ = health("server_detect_mode: 2\nserver_detect_fail_threshold: 1")
    h._server_down = lambda address: drop_sessions_to(manager, address)
    probes.alive[B] = False
    h.checker.start()
    clock.advance(0)
    assert mine.aborted and not other.aborted
    assert manager.session_pool.idle == [A]
    assert drop_sessions_to(manager, C) == 0


def test_login_server_skips_pooled_session_of_congested_server() -> None:
    """
    Health.avoided is what the login path consults before taking a pooled session.
    """
    clock, h, _, _ = health("congestion_failure_threshold: 1\ncongestion_retry_interval: 5s")
    h.connect_failed("cl", B, "refused")
    assert h.avoided("cl", B) and not h.avoided("cl", A)
    clock.advance(5)
    assert not h.avoided("cl", B)  # its trial is due
