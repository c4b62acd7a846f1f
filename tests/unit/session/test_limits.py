"""
Limits and timeouts (issue 6, H3): the pure rules of
L{obproxy_tx.session.limits} and L{obproxy_tx.session.timeouts}, the slot
waits on a clock, and the client session's use of them with in-memory
transports (the harness of C{test_client_session}).
"""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
import pytest
from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from obproxy_tx.config import ConfigError, parse_config
from obproxy_tx.session.limits import (
    ClientCounts,
    ServerBusyError,
    ServerSlots,
    Slot,
    SlotTable,
    admit_client,
    worker_share,
)
from obproxy_tx.session.stats import ProxyStats
from obproxy_tx.session.timeouts import Watch, query_timeout, session_seconds
from obproxy_tx.wire.errors import LocalProtocolError
from obproxy_tx.wire.packets import (
    ComChangeUser,
    ComQuery,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
)
from obproxy_tx.wire.scramble import native_password_response
from tests.unit.session import test_client_session as base
from tests.unit.session.test_client_session import CLIENT_CAPS, PASSWORD, Harness

# -- pure rules ----------------------------------------------------------------------------


def test_admit_over_client_max_connections_is_odps_1203() -> None:
    """More open connections than the cap (this one counted) gets ODP's answer."""
    assert (
        admit_client(open_connections=3, max_connections=3, user_sessions=0, user_cap=0, user="a")
        is None
    )
    refusal = admit_client(
        open_connections=4, max_connections=3, user_sessions=0, user_cap=0, user="a"
    )
    assert refusal is not None
    assert (refusal.error_code, refusal.sqlstate, refusal.message) == (
        1203,
        "42000",
        "Too many sessions",
    )
    # No cap, and the local admin, are always let in.
    assert (
        admit_client(open_connections=9, max_connections=0, user_sessions=0, user_cap=0, user="a")
        is None
    )
    assert (
        admit_client(
            open_connections=9,
            max_connections=3,
            user_sessions=0,
            user_cap=0,
            user="a",
            exempt=True,
        )
        is None
    )


def test_admit_over_a_user_cap_is_mysqls_max_user_connections_error() -> None:
    refusal = admit_client(
        open_connections=1, max_connections=0, user_sessions=2, user_cap=2, user="app"
    )
    assert refusal is not None
    assert refusal.error_code == 1203
    assert refusal.message == (
        "User app already has more than 'max_user_connections' active connections"
    )
    assert (
        admit_client(open_connections=1, max_connections=0, user_sessions=1, user_cap=2, user="x")
        is None
    )


def test_client_counts_follow_sessions_once() -> None:
    counts = ClientCounts()
    counts.add(1, "u")
    counts.add(2, "u")
    counts.add(2, "u")  # counted once
    assert counts.of("u") == 2
    counts.remove(1)
    counts.remove(1)  # a second removal changes nothing
    counts.remove(99)
    assert counts.of("u") == 1
    counts.remove(2)
    assert counts.of("u") == 0
    assert counts.per_user == {}


def test_slot_table_grants_in_order_up_to_the_cap() -> None:
    caps = {"a": 2}
    table = SlotTable(lambda address: caps.get(address, 0))
    first, second = table.try_acquire("a"), table.try_acquire("a")
    assert first is not None and second is not None
    assert table.try_acquire("a") is None
    granted: list[tuple[str, Slot]] = []
    table.enqueue("a", lambda slot: granted.append(("w1", slot)))
    table.enqueue("a", lambda slot: granted.append(("w2", slot)))
    # Someone waits: even with room a newcomer does not jump the queue.
    assert table.count("a") == 2
    first.release()
    first.release()  # twice: one slot back only
    assert [name for name, _ in granted] == ["w1"]
    assert table.count("a") == 2
    # A raised cap lets the next waiter in at once.
    caps["a"] = 3
    table.wake_all()
    assert [name for name, _ in granted] == ["w1", "w2"]
    assert table.count("a") == 3
    # Other addresses have no cap here.
    assert all(table.try_acquire("b") is not None for _ in range(5))


def test_slot_table_cancel_and_lowered_cap() -> None:
    caps = {"a": 1}
    table = SlotTable(lambda address: caps["a"])
    held = table.try_acquire("a")
    assert held is not None
    granted: list[Slot] = []
    waiter = granted.append
    table.enqueue("a", waiter)
    assert table.cancel("a", waiter)
    assert not table.cancel("a", waiter)
    # Two more held than a lowered cap: releases grant nothing until under it.
    caps["a"] = 2
    more = table.try_acquire("a")
    assert more is not None
    caps["a"] = 1
    table.enqueue("a", waiter)
    held.release()
    assert table.count("a") == 1 and table.waiting["a"]
    more.release()
    assert table.count("a") == 1 and "a" not in table.waiting


def test_session_seconds_prefers_the_sessions_own_value() -> None:
    assert session_seconds({"net_read_timeout": "7"}, "net_read_timeout", 30.0) == 7.0
    assert session_seconds({"net_read_timeout": "0"}, "net_read_timeout", 30.0) == 30.0
    assert session_seconds({"net_read_timeout": "x"}, "net_read_timeout", 30.0) == 30.0
    assert session_seconds({}, "net_write_timeout", 60.0) == 60.0


def test_query_timeout_per_cluster_type() -> None:
    config = parse_config(
        "observer_query_timeout_delta: 20s\nquery_response_timeout: 3s\n"
        "clusters: [{name: c, type: mysql, servers: ['127.0.0.1:1']}]\n"
    )
    # OceanBase: ob_query_timeout (us; 10 s unknown) + the delta.
    assert query_timeout(True, {}, config) == 30.0
    assert query_timeout(True, {"ob_query_timeout": "2000000"}, config) == 22.0
    # MySQL: the item (0: off).
    assert query_timeout(False, {"ob_query_timeout": "2000000"}, config) == 3.0
    assert query_timeout(False, {}, attrs.evolve(config, query_response_timeout=0.0)) == 0.0


def test_watch_acts_only_when_the_same_thing_stays_stuck() -> None:
    watch = Watch()
    watch.start("r1", 0.0)
    watch.armed = True
    # Fired early (re-armed for what is left), then at the deadline.
    assert watch.fired("r1", 4.0, 10.0) == 6.0
    assert not watch.armed
    assert watch.fired("r1", 10.0, 10.0) == 0.0
    # Another request started meanwhile: its own clock.
    watch.start("r1", 0.0)
    assert watch.fired("r2", 8.0, 10.0) == 10.0
    # Progress restarts the clock; nothing watched: no timer.
    watch.progress(9.0)
    assert watch.fired("r2", 12.0, 10.0) == 7.0
    assert watch.fired(None, 30.0, 10.0) is None
    assert watch.marker is None
    assert watch.fired("r3", 30.0, 0.0) is None


# -- slot waits on a clock -----------------------------------------------------------------


class _Pool:
    def __init__(self, idle: int) -> None:
        self.idle = idle
        self.asked: list[str] = []

    def close_idle(self, address: str) -> bool:
        self.asked.append(address)
        if self.idle:
            self.idle -= 1
            return True
        return False


def _slots(cap: int, wait: float = 2.0, idle: int = 0) -> tuple[ServerSlots, task.Clock, Any]:
    clock = task.Clock()
    config = parse_config(
        f"server_max_connections: {cap}\nserver_session_wait_timeout: {wait}s\n"
        "clusters: [{name: c, type: mysql, servers: ['127.0.0.1:1']}]\n"
    )
    pool = _Pool(idle)
    stats = ProxyStats()
    slots = ServerSlots(clock, lambda: config, pool.close_idle, stats)
    return slots, clock, pool


def test_server_slots_wait_then_get_a_released_slot() -> None:
    slots, clock, pool = _slots(cap=1, idle=1)
    first: list[Slot] = []
    slots.acquire("s1").addCallback(first.append)
    assert first and slots.count("s1") == 1
    assert pool.asked == []
    second: list[Slot] = []
    slots.acquire("s1").addCallback(second.append)
    # At the cap: an idle shared-pool session of that server was closed to make room.
    assert pool.asked == ["s1"] and not second
    assert slots.stats.server_sessions_closed_for_cap == 1
    clock.advance(1.0)
    first[0].release()  # that session's connection ended
    assert second and slots.count("s1") == 1
    clock.advance(5.0)  # the wait timer was cancelled: nothing fails later
    assert slots.stats.server_session_wait_timeouts == 0


def test_server_slots_time_out_with_a_clear_1040() -> None:
    slots, clock, _ = _slots(cap=1, wait=2.0)
    held: list[Slot] = []
    slots.acquire("s1").addCallback(held.append)
    failures: list[Any] = []
    slots.acquire("s1").addErrback(failures.append)
    clock.advance(1.9)
    assert not failures
    clock.advance(0.2)
    assert len(failures) == 1
    error = failures[0].value
    assert isinstance(error, ServerBusyError)
    assert error.packet.error_code == 1040 and error.packet.sqlstate == "08004"
    assert "server_max_connections (1)" in error.packet.message
    assert slots.stats.server_session_waits == 1
    assert slots.stats.server_session_wait_timeouts == 1
    # The gone waiter does not take the next free slot.
    held[0].release()
    assert slots.count("s1") == 0


def test_server_slots_cancelled_wait_leaves_the_queue() -> None:
    slots, clock, _ = _slots(cap=1)
    held: list[Slot] = []
    slots.acquire("s1").addCallback(held.append)
    waiting = slots.acquire("s1")
    waiting.addErrback(lambda failure: failure.trap(defer.CancelledError))
    waiting.cancel()
    held[0].release()
    assert slots.count("s1") == 0
    assert not slots.table.waiting


# -- the client session ---------------------------------------------------------------------


def _login_as(harness: Harness, user: str, password: bytes = PASSWORD) -> Any:
    harness.flush()
    greeting = harness.events.pop(0)
    assert isinstance(greeting, HandshakeV10)
    harness.send(
        HandshakeResponse41(
            CLIENT_CAPS,
            1 << 24,
            45,
            user,
            native_password_response(password, greeting.auth_plugin_data),
            auth_plugin_name="mysql_native_password",
        )
    )
    return harness.events.pop(0)


def test_client_max_connections_refuses_at_login_with_1203_and_closes() -> None:
    harness = Harness()
    harness.configure(client_max_connections=1)
    harness.another_client()  # connected, not logged in: it counts, as in ODP
    answer = harness.login()
    assert isinstance(answer, ERRPacket)
    assert (answer.error_code, answer.sqlstate, answer.message) == (
        1203,
        "42000",
        "Too many sessions",
    )
    assert harness.transport.disconnecting
    # Refused before any backend login (the only backend connection greeted the proxy).
    assert all(not backend.logins for backend in harness.backends)
    assert harness.manager.stats.client_connections_refused == 1


def test_local_admin_gets_into_a_full_proxy() -> None:
    harness = Harness()
    harness.configure(client_max_connections=1)
    harness.another_client()
    assert isinstance(_login_as(harness, "root@proxysys", b""), OKPacket)


def test_user_cap_counts_logged_in_sessions_of_the_user() -> None:
    harness = Harness()
    harness.configure(user_max_connections=1)
    assert isinstance(harness.login(), OKPacket)
    second = harness.another_client()
    answer = second.login()
    assert isinstance(answer, ERRPacket) and answer.error_code == 1203
    assert "max_user_connections" in answer.message
    assert harness.manager.stats.user_cap_refusals == 1
    # Once the first quits, the user has room again.
    harness.session.connectionLost(Failure(ConnectionDone()))
    third = harness.another_client()
    assert isinstance(third.login(), OKPacket)


def test_a_users_own_max_connections_beats_the_default() -> None:
    harness = Harness()
    cluster = harness.manager.config.clusters[0]
    users = tuple(attrs.evolve(u, max_connections=2) for u in cluster.users)
    harness.configure(user_max_connections=1, clusters=(attrs.evolve(cluster, users=users),))
    assert isinstance(harness.login(), OKPacket)
    assert isinstance(harness.another_client().login(), OKPacket)
    assert isinstance(harness.another_client().login(), ERRPacket)


def test_user_entry_max_connections_is_read_and_checked() -> None:
    text = (
        "clusters: [{name: c, type: mysql, servers: ['127.0.0.1:1'], "
        "users: [{name: a, verifier: '', max_connections: 3}]}]\n"
    )
    assert parse_config(text).clusters[0].users[0].max_connections == 3
    with pytest.raises(Exception, match="max_connections"):
        parse_config(text.replace("max_connections: 3", "max_connections: -1"))


def _quiet_after_quit(monkeypatch: pytest.MonkeyPatch) -> None:
    received = base.FakeBackend.dataReceived

    def quiet_after_quit(self: Any, data: bytes) -> None:
        # The scripted backend answers every other command, COM_QUIT (a closed
        # server session's last word) included: no answer once it is closed.
        with contextlib.suppress(LocalProtocolError):
            received(self, data)

    monkeypatch.setattr(base.FakeBackend, "dataReceived", quiet_after_quit)


def test_query_timeout_answers_1317_kills_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = base.FakeBackend._answer

    def hang(self: Any, query: bytes) -> None:
        if not query.startswith(b"SELECT hang"):
            answer(self, query)

    _quiet_after_quit(monkeypatch)
    monkeypatch.setattr(base.FakeBackend, "_answer", hang)
    harness = Harness()
    harness.configure(query_response_timeout=5.0)
    assert isinstance(harness.login(), OKPacket)
    harness.send(ComQuery(b"SELECT 1"))
    assert isinstance(harness.events.pop(0), OKPacket)
    harness.reactor.advance(4.0)  # idle time does not count
    harness.send(ComQuery(b"SELECT hang"))
    harness.reactor.advance(4.9)
    harness.flush()
    assert harness.events == [] and not harness.transport.disconnecting
    harness.reactor.advance(0.2)
    harness.flush()
    error = harness.events.pop(0)
    assert isinstance(error, ERRPacket)
    assert (error.error_code, error.sqlstate) == (1317, "70100")
    assert "did not answer within 5s" in error.message
    assert harness.transport.disconnecting
    assert harness.manager.stats.query_timeouts == 1
    # The statement is killed on the server, over a side connection.
    killed = [c for b in harness.backends for c in b.commands if isinstance(c, ComQuery)]
    assert any(c.query.startswith(b"KILL ") for c in killed)


def test_query_timeout_is_off_by_default_on_mysql_clusters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base.FakeBackend, "_answer", lambda self, query: None)
    harness = Harness()
    assert isinstance(harness.login(), OKPacket)
    harness.send(ComQuery(b"SELECT hang"))
    harness.reactor.advance(3600.0)
    harness.flush()
    assert not harness.transport.disconnecting


def test_net_read_timeout_closes_a_client_stalled_mid_packet() -> None:
    harness = Harness()
    harness.configure(net_read_timeout=3.0)
    assert isinstance(harness.login(), OKPacket)
    packet = harness.client.send(ComQuery(b"SELECT 1"))
    harness.session.dataReceived(packet[:6])
    harness.reactor.advance(2.0)
    harness.session.dataReceived(packet[6:8])  # progress: the clock starts again
    harness.reactor.advance(2.5)
    assert not harness.transport.disconnecting
    harness.reactor.advance(0.6)
    assert harness.transport.disconnecting
    assert harness.manager.stats.client_net_read_timeouts == 1


def test_net_read_timeout_leaves_whole_packets_alone() -> None:
    harness = Harness()
    harness.configure(net_read_timeout=3.0)
    assert isinstance(harness.login(), OKPacket)
    packet = harness.client.send(ComQuery(b"SELECT 1"))
    harness.session.dataReceived(packet[:6])
    harness.session.dataReceived(packet[6:])
    harness.flush()
    assert isinstance(harness.events.pop(0), OKPacket)
    harness.reactor.advance(10.0)
    assert not harness.transport.disconnecting


def test_net_write_timeout_closes_a_client_that_does_not_read() -> None:
    harness = Harness()
    harness.configure(net_write_timeout=4.0)
    assert isinstance(harness.login(), OKPacket)
    session = harness.session
    session._client_write_blocked(True)
    harness.reactor.advance(3.0)
    session._client_write_blocked(False)  # it read: fine
    harness.reactor.advance(3.0)
    assert not harness.transport.disconnecting
    session._client_write_blocked(True)
    harness.reactor.advance(3.9)
    assert not harness.transport.disconnecting
    harness.reactor.advance(0.2)
    assert harness.transport.disconnecting
    assert harness.manager.stats.client_net_write_timeouts == 1


def test_session_net_write_timeout_variable_wins() -> None:
    harness = Harness()
    harness.configure(net_write_timeout=60.0)
    assert isinstance(harness.login(), OKPacket)
    harness.session.state.set_sys_vars([("net_write_timeout", "2")])
    harness.session._client_write_blocked(True)
    harness.reactor.advance(2.1)
    assert harness.transport.disconnecting


def test_login_timeout_is_counted() -> None:
    harness = Harness()
    harness.flush()
    harness.reactor.advance(harness.manager.config.client_login_timeout + 0.1)
    assert harness.transport.disconnecting
    assert harness.manager.stats.client_login_timeouts == 1


def test_server_slot_is_held_until_the_server_connection_ends() -> None:
    harness = Harness()
    harness.configure(server_max_connections=1, server_session_wait_timeout=2.0)
    assert isinstance(harness.login(), OKPacket)
    slots = harness.manager.server_slots
    assert slots.count("127.0.0.1:3306") == 1
    # A second client waits for the only slot and, at the timeout, is refused clearly.
    second = harness.another_client()
    second.flush()
    greeting = second.events.pop(0)
    second.send(
        HandshakeResponse41(
            CLIENT_CAPS,
            1 << 24,
            45,
            "app",
            native_password_response(PASSWORD, greeting.auth_plugin_data),
            auth_plugin_name="mysql_native_password",
        )
    )
    assert second.events == []
    harness.reactor.advance(2.1)
    second.flush()
    refused = second.events.pop(0)
    assert isinstance(refused, ERRPacket) and refused.error_code == 1040
    # The first client quits: its server session's end gives the slot back.
    harness.session.connectionLost(Failure(ConnectionDone()))
    harness.flush()
    assert slots.count("127.0.0.1:3306") == 0


def test_alter_of_query_response_timeout_reaches_logged_in_sessions() -> None:
    harness = Harness()
    assert isinstance(harness.login(), OKPacket)
    assert harness.session._query_limit == 0.0
    harness.manager.reconfigure(attrs.evolve(harness.manager.config, query_response_timeout=7.0))
    assert harness.session._query_limit == 7.0
    harness.manager.reconfigure(attrs.evolve(harness.manager.config, server_max_connections=5))
    assert harness.manager.server_slots._cap("x") == 5


def test_a_waiting_login_gets_the_slot_a_quitting_client_frees() -> None:
    harness = Harness()
    harness.configure(server_max_connections=1, server_session_wait_timeout=5.0)
    assert isinstance(harness.login(), OKPacket)
    second = harness.another_client()
    second.flush()
    greeting = second.events.pop(0)
    second.send(
        HandshakeResponse41(
            CLIENT_CAPS,
            1 << 24,
            45,
            "app",
            native_password_response(PASSWORD, greeting.auth_plugin_data),
            auth_plugin_name="mysql_native_password",
        )
    )
    harness.reactor.advance(1.0)
    second.flush()
    assert second.events == []  # waiting for the only slot
    harness.session.connectionLost(Failure(ConnectionDone()))
    for _ in range(3):
        harness.reactor.advance(0.1)
        second.flush()
    assert isinstance(second.events.pop(0), OKPacket)
    assert harness.manager.server_slots.count("127.0.0.1:3306") == 1
    assert harness.manager.stats.server_session_waits == 1
    assert harness.manager.stats.server_session_wait_timeouts == 0


def test_net_read_timeout_sees_a_partial_packet_behind_a_whole_one() -> None:
    harness = Harness()
    harness.configure(net_read_timeout=3.0)
    assert isinstance(harness.login(), OKPacket)
    first = harness.client.send(ComQuery(b"SELECT 1"))
    second = ComQuery(b"SELECT 2")
    # The second command's framing (sequence 0 again), cut short, in the same read.
    payload = b"\x03" + second.query
    partial = len(payload).to_bytes(3, "little") + b"\x00" + payload[:4]
    harness.session.dataReceived(first + partial)
    harness.flush()
    assert isinstance(harness.events.pop(0), OKPacket)
    harness.reactor.advance(3.1)
    assert harness.transport.disconnecting
    assert harness.manager.stats.client_net_read_timeouts == 1


def test_change_user_respects_the_new_users_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    COM_CHANGE_USER to a user at its cap is refused with the cap's 1203 (a
    MySQL cluster keeps the connection and the old user); changing to the same
    user does not count the session twice.
    """
    _quiet_after_quit(monkeypatch)
    harness = Harness()
    cluster = harness.manager.config.clusters[0]
    bob = attrs.evolve(cluster.users[0], name="bob")
    harness.configure(
        user_max_connections=1,
        clusters=(attrs.evolve(cluster, users=(*cluster.users, bob)),),
    )
    assert isinstance(harness.login(), OKPacket)
    other = harness.another_client()
    other.flush()
    scramble = other.events[0].auth_plugin_data
    assert isinstance(_login_as(other, "bob"), OKPacket)

    def change_to(user: str) -> Any:
        other.send(
            ComChangeUser(
                user,
                native_password_response(PASSWORD, scramble),
                None,
                45,
                "mysql_native_password",
            )
        )
        return other.events.pop(0)

    refused = change_to("app")
    assert isinstance(refused, ERRPacket) and refused.error_code == 1203
    assert "max_user_connections" in refused.message
    assert not other.transport.disconnecting
    assert isinstance(change_to("bob"), OKPacket)  # the same user again: fine
    harness.session.connectionLost(Failure(ConnectionDone()))
    assert isinstance(change_to("app"), OKPacket)
    # Now bob has no session left: a new bob gets in, another app does not.
    assert isinstance(_login_as(harness.another_client(), "bob"), OKPacket)
    assert isinstance(_login_as(harness.another_client(), "app"), ERRPacket)


def test_a_changed_net_read_timeout_reaches_a_pending_timer() -> None:
    """
    The session's net_read_timeout learnt while a partial packet is already
    watched (the proxy reads a SET's value back after answering it) applies
    to that packet.
    """
    harness = Harness()
    harness.configure(net_read_timeout=30.0)
    assert isinstance(harness.login(), OKPacket)
    packet = harness.client.send(ComQuery(b"SELECT 1"))
    harness.session.dataReceived(packet[:6])
    harness.reactor.advance(0.5)
    harness.session.state.set_sys_vars([("net_read_timeout", "1")])
    harness.session.follow_wait_timeout()
    harness.reactor.advance(0.6)
    assert harness.transport.disconnecting


def test_worker_shares_add_up_to_the_cap() -> None:
    """With workers each holds its share of server_max_connections: together the cap."""
    for total in (0, 4, 5, 7, 100):
        for workers in (1, 2, 3, 4):
            if 0 < total < workers:
                continue  # refused by check_config
            shares = [worker_share(total, workers, w) for w in range(workers)]
            assert sum(shares) == total
            assert max(shares) - min(shares) <= 1
            assert total == 0 or min(shares) >= 1


def test_each_worker_grants_only_its_share() -> None:
    config = parse_config(
        "server_max_connections: 5\nwork_thread_num: 2\n"
        "clusters: [{name: c, type: mysql, servers: ['127.0.0.1:1']}]\n"
    )
    granted = []
    for worker in (0, 1):
        slots = ServerSlots(task.Clock(), lambda: config, _Pool(0).close_idle, ProxyStats(), worker)
        held: list[Slot] = []
        for _ in range(5):
            slots.acquire("s1").addCallbacks(held.append, lambda failure: None)
        granted.append(len(held))
    assert granted == [3, 2]


def test_a_cap_below_the_worker_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="server_max_connections"):
        parse_config(
            "server_max_connections: 1\nwork_thread_num: 2\n"
            "clusters: [{name: c, type: mysql, servers: ['127.0.0.1:1']}]\n"
        )
