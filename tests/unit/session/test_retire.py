"""
Clusters changed by a reload (L{obproxy_tx.session.retire}), over real client
sessions with in-memory transports, a clock, and scripted backends that keep
transactions: servers added are used at once, an idle server session to a
removed server is closed and replaced, a transaction there finishes first, a
removed cluster's clients are closed like a drain closes them, the deadline
closes the rest, a reload that lists a server again stops its retirement,
users follow, congestion entries and replica checks follow.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.test import iosim

from obproxy_tx.config import ClusterConfig, ProxyConfig, parse_server, set_item
from obproxy_tx.session.retire import TICK, ClusterReload, cluster_removed_error
from obproxy_tx.wire.connection import ClientConnection
from obproxy_tx.wire.packets import (
    ComQuery,
    ComQuit,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
)
from obproxy_tx.wire.scramble import native_password_response
from tests.unit.session import test_client_session as harness_module
from tests.unit.session.test_client_session import Harness
from tests.unit.session.test_drain import _TransactionalBackend

OLD = "127.0.0.1:3306"
NEW = "127.0.0.2:3306"


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    """A logged-in session of cluster c1 (one server, OLD); its backends keep transactions."""
    monkeypatch.setattr(harness_module, "FakeBackend", _TransactionalBackend)
    made = Harness()
    made.manager.reconfigure(
        set_item(made.manager.config, "short_async_task_timeout", "1s", origin="test")
    )
    made.login()
    made.events.clear()
    # The session's own backend (the first connection was the greeting probe).
    made.old = made.backends[-1]  # type: ignore[attr-defined]
    return made


def with_servers(config: ProxyConfig, *addresses: str, name: str = "c1") -> ProxyConfig:
    """C{config} whose cluster C{name} has these servers."""
    clusters = tuple(
        attrs.evolve(c, servers=tuple(parse_server(a) for a in addresses)) if c.name == name else c
        for c in config.clusters
    )
    return attrs.evolve(config, clusters=clusters)


def connected_to(harness: Harness) -> list[str]:
    """Where each backend connection the proxy opened went."""
    return [f"{host}:{port}" for host, port, *_ in harness.reactor.tcpClients]


def quit_sent(backend: Any) -> bool:
    return any(isinstance(c, ComQuit) for c in backend.commands)


def settle(harness: Harness, seconds: float) -> None:
    """Let the clock run, moving bytes at each tick."""
    steps = int(round(seconds / TICK))
    for _ in range(steps):
        harness.reactor.advance(TICK)
        harness.flush()


def test_an_added_server_is_used_and_an_idle_session_to_a_removed_one_is_replaced(
    harness: Harness,
) -> None:
    manager = harness.manager
    old_cluster = harness.session.cluster
    manager.reconfigure(with_servers(manager.config, OLD, NEW))
    # The client session follows the new cluster object (its servers).
    assert harness.session.cluster is manager.config.clusters[0]
    assert harness.session.cluster is not old_cluster
    assert [e.server for e in manager.health.table.entries("c1")] == [OLD, NEW]
    # Nothing retired: no retirement runs, the bound session stays.
    assert manager.cluster_reload.retirements == []
    harness.flush()
    assert not quit_sent(harness.old)

    manager.reconfigure(with_servers(manager.config, NEW))
    harness.flush()
    # Idle and unpinned: closed at once with COM_QUIT.
    assert quit_sent(harness.old)
    assert [e.server for e in manager.health.table.entries("c1")] == [NEW]
    harness.send(ComQuery(b"SELECT 1"))
    assert connected_to(harness)[-1] == NEW
    assert NEW not in connected_to(harness)[:-1]
    assert isinstance(harness.events[-1], OKPacket)
    assert harness.backends[-1].commands[-1].query == b"SELECT 1"
    # The retirement ends once settled (connects under way at the reload are over).
    settle(harness, 2.0)
    assert manager.cluster_reload.retirements == []
    assert [ss.server.address for ss in harness.session.server_sessions] == [NEW]


def test_a_transaction_on_a_removed_server_commits_there_then_moves(harness: Harness) -> None:
    manager = harness.manager
    harness.send(ComQuery(b"BEGIN"))
    harness.send(ComQuery(b"INSERT INTO t VALUES (1)"))
    manager.reconfigure(with_servers(manager.config, NEW))
    settle(harness, 1.0)
    old = harness.old
    assert not quit_sent(old)
    harness.events.clear()
    harness.send(ComQuery(b"INSERT INTO t VALUES (2)"))
    harness.send(ComQuery(b"COMMIT"))
    assert [c.query for c in old.commands[-3:]] == [
        b"INSERT INTO t VALUES (1)",
        b"INSERT INTO t VALUES (2)",
        b"COMMIT",
    ]
    assert all(isinstance(e, OKPacket) for e in harness.events)
    settle(harness, TICK)
    assert quit_sent(old)
    harness.send(ComQuery(b"SELECT 2"))
    assert connected_to(harness)[-1] == NEW
    assert harness.backends[-1].commands[-1].query == b"SELECT 2"


def test_the_deadline_closes_a_transaction_left_open(harness: Harness) -> None:
    manager = harness.manager
    manager.reconfigure(set_item(manager.config, "graceful_shutdown_timeout", "2s", origin="test"))
    harness.send(ComQuery(b"BEGIN"))
    manager.reconfigure(with_servers(manager.config, NEW))
    settle(harness, 1.9)
    assert not quit_sent(harness.old)
    settle(harness, 0.2)
    assert quit_sent(harness.old)
    # The client learns on its next command that its transaction is gone.
    harness.events.clear()
    harness.send(ComQuery(b"COMMIT"))
    assert isinstance(harness.events[-1], ERRPacket)
    assert "transaction" in harness.events[-1].message
    assert manager.cluster_reload.retirements == []


def test_listing_the_server_again_stops_its_retirement(harness: Harness) -> None:
    manager = harness.manager
    harness.send(ComQuery(b"BEGIN"))
    before = manager.config
    manager.reconfigure(with_servers(before, NEW))
    retirement = manager.cluster_reload.retirements[0]
    manager.reconfigure(with_servers(before, OLD, NEW))
    assert retirement.finished
    assert manager.cluster_reload.retirements == []
    harness.send(ComQuery(b"COMMIT"))
    settle(harness, 5.0)
    assert not quit_sent(harness.old)
    assert [e.server for e in manager.health.table.entries("c1")] == [OLD, NEW]


def _removed(config: ProxyConfig) -> ProxyConfig:
    other = ClusterConfig("c2", config.clusters[0].type, servers=(parse_server(NEW),))
    return attrs.evolve(config, clusters=(other,))


def test_a_removed_clusters_idle_client_is_closed_with_an_error(harness: Harness) -> None:
    manager = harness.manager
    manager.reconfigure(_removed(manager.config))
    # Nothing was pending: the message is the whole output, then the connection closes.
    data = b"".join(harness.transport.stream)
    assert data == cluster_removed_error("c1", int(harness.session.conn.capabilities))
    assert harness.transport.disconnecting
    error = ERRPacket.decode(data[4:], harness.session.conn.capabilities)
    assert error.error_code == 1053
    assert error.message == "Cluster 'c1' was removed from the proxy's configuration"
    assert manager.health.table.entries("c1") == []
    assert [e.server for e in manager.health.table.entries()] == [NEW]
    assert "c1" not in manager.greetings


def test_a_removed_clusters_transaction_commits_then_its_client_is_closed(
    harness: Harness,
) -> None:
    manager = harness.manager
    harness.send(ComQuery(b"BEGIN"))
    manager.reconfigure(_removed(manager.config))
    settle(harness, 0.5)
    assert not harness.transport.disconnecting
    harness.events.clear()
    harness.send(ComQuery(b"COMMIT"))
    assert isinstance(harness.events[0], OKPacket)
    settle(harness, TICK)
    assert harness.transport.disconnecting
    retirement = manager.cluster_reload.retirements[0]
    assert retirement.closed_clients == 1


def test_users_follow_new_logins_and_logged_in_sessions_go_on(harness: Harness) -> None:
    manager = harness.manager
    cluster = manager.config.clusters[0]
    entry = attrs.evolve(cluster.users[0], verifier=b"\x01" * 20)
    added = attrs.evolve(entry, name="second")
    new = attrs.evolve(manager.config, clusters=(attrs.evolve(cluster, users=(entry, added)),))
    manager.reconfigure(new)
    assert manager.cluster_reload.retirements == []

    def verifier(user: str) -> Any:
        found: list[Any] = []
        defer.ensureDeferred(
            manager.lookup_verifier(harness.session.cluster, user, "sys")
        ).addCallback(found.append)
        return found[0]

    assert verifier("app") == b"\x01" * 20
    assert verifier("second") == b"\x01" * 20
    harness.send(ComQuery(b"SELECT 3"))
    assert isinstance(harness.events[-1], OKPacket)
    assert harness.backends[-1] is harness.old


def test_the_shared_pool_keeps_nothing_for_a_gone_address(harness: Harness) -> None:
    manager = harness.manager
    harness.send(ComQuery(b"BEGIN"))
    manager.reconfigure(with_servers(manager.config, NEW))
    pool = manager.session_pool
    assert pool.wanted is not None and pool.wanted(OLD) and not pool.wanted(NEW)
    settle(harness, 0.2)
    harness.send(ComQuery(b"COMMIT"))
    settle(harness, 3.0)
    # Once the retirement is over, releases pay nothing for it again.
    assert manager.cluster_reload.retirements == []
    assert pool.wanted == manager.server_slots.wanted


def test_reload_without_cluster_changes_does_nothing_for_clusters(harness: Harness) -> None:
    manager = harness.manager
    calls: list[Any] = []
    reload = manager.cluster_reload
    assert isinstance(reload, ClusterReload)
    original = reload.apply
    reload.apply = lambda *args: calls.append(args) or original(*args)  # type: ignore[method-assign]
    manager.reconfigure(set_item(manager.config, "client_max_connections", "9", origin="t"))
    assert calls == []


class _SecondClient:
    """Another client of the harness's manager, logging in by hand."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.client = ClientConnection(harness_module.CLIENT_CAPS)
        self.session: Any = harness.manager.listener_factory().buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 40001)
        )
        self.transport = iosim.FakeTransport(
            self.session, isServer=True, peerAddress=IPv4Address("TCP", "127.0.0.1", 40001)
        )
        self.session.makeConnection(self.transport)
        self.events: list[Any] = []

    def read(self) -> None:
        self.harness.flush()
        data = b"".join(self.transport.stream)
        self.transport.stream = []
        if data:
            self.events.extend(self.client.receive_data(data))

    def log_in(self, user: str = "app") -> None:
        """Send the login (the answer is read later)."""
        self.read()
        greeting = self.events.pop(0)
        assert isinstance(greeting, HandshakeV10)
        response = native_password_response(harness_module.PASSWORD, greeting.auth_plugin_data)
        self.session.dataReceived(
            self.client.send(
                HandshakeResponse41(
                    harness_module.CLIENT_CAPS,
                    1 << 24,
                    45,
                    user,
                    response,
                    auth_plugin_name="mysql_native_password",
                )
            )
        )


def test_a_login_under_way_at_the_reload_gets_the_new_cluster(harness: Harness) -> None:
    """
    The reload happens while the login's verifier is being looked up (an await):
    the session is admitted with the cluster as configured now, so it uses the new servers.
    """
    manager = harness.manager
    looked_up: defer.Deferred[Any] = defer.Deferred()
    original = manager.lookup_verifier

    async def slow_lookup(*args: Any, **kwargs: Any) -> Any:
        found = await original(*args, **kwargs)
        await looked_up
        return found

    manager.lookup_verifier = slow_lookup  # type: ignore[method-assign]
    second = _SecondClient(harness)
    second.log_in()
    second.read()
    assert second.events == [] and second.session.cluster is None
    manager.reconfigure(with_servers(manager.config, NEW))
    looked_up.callback(None)
    second.read()
    assert isinstance(second.events[-1], OKPacket)
    assert second.session.cluster is manager.config.clusters[0]
    assert connected_to(harness)[-1] == NEW


def test_a_login_naming_a_removed_cluster_is_refused(harness: Harness) -> None:
    manager = harness.manager
    manager.reconfigure(_removed(manager.config))
    second = _SecondClient(harness)
    second.log_in("app@sys#c1")
    second.read()
    refusal = second.events[-1]
    assert isinstance(refusal, ERRPacket) and refusal.error_code == 1045
    assert "cluster 'c1' is not configured" in refusal.message
