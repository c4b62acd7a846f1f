"""
Congestion control and active health checks against real MariaDB instances
(L{tests.integration.ha_cluster}) that are SIGKILLed or SIGSTOPped under the proxy, with new
PyMySQL connections arriving one after the other:

  - passive, a crashed server (its port refuses): no client sees an error (each login that
    meets the dead server moves on to the next), after C{congestion_failure_threshold}
    refused connects the server is avoided, C{SHOW PROXYCONGESTION} lists it dead, and after
    its restart the proxy's trial connection finds it and traffic comes back;
  - passive, a hung server (SIGSTOP: TCP connects, nothing answers): each of the first
    logins that meets it waits C{short_async_task_timeout}, then moves on; after the
    threshold it is avoided;
  - active (C{server_detect_mode 2}): the hung server is found by the checker alone, its
    server sessions are aborted, no new login goes there; after SIGCONT it is back.

Each test prints its figures (times from the signal to the server being avoided, to traffic
coming back); docs/high-availability.md quotes them.
"""

from __future__ import annotations

import contextlib
import signal
import time
from typing import Any, Dict, Iterator, List, Tuple

import pymysql
import pytest
import pytest_twisted

from tests.integration.ha_cluster import NAMES, ha_instances
from tests.proxy_fixtures import Proxy, in_thread, start_proxy_for, stop_proxy_later, verifier
from tests.testbed import Server
from tests.testbed.instances import kill_instance, restart_instance

pytestmark = pytest.mark.integration

__all__ = ["ha_instances"]  # the fixture, imported for pytest

PROXYSYS_PASSWORD = "proxysys_pw"
#: The instance these tests take down (restarted or resumed before each test ends).
VICTIM = NAMES[2]


def _proxy(instances: Dict[str, Server], extra: str) -> Proxy:
    """
    A proxy in front of the three instances, without the shared pool: each new client gets a
    new server session, from the round robin (a pooled one would hide which server is next).
    """
    native = instances[NAMES[0]].accounts["native"]
    return start_proxy_for(
        [f"{server.host}:{server.port}" for server in instances.values()],
        "mysql",
        [(native.user, native.password)],
        name="cl_congestion",
        extra=f"obproxy_sys_password: '{verifier(PROXYSYS_PASSWORD)}'\n"
        f"enable_session_pool_for_no_sharding: false\n{extra}",
        backend=instances[NAMES[0]],
    )


def _one_connection(proxy: Proxy) -> Tuple[float, Any]:
    """
    Connect, read the backend's port, quit: C{(seconds taken, port or the error)}.
    """
    began = time.monotonic()
    try:
        connection = proxy.connect(connect_timeout=20, read_timeout=20)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@port")
                port = int(cursor.fetchone()[0])
        finally:
            connection.close()
    except pymysql.MySQLError as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, port


def _connections(proxy: Proxy, count: int) -> List[Tuple[float, Any]]:
    return [_one_connection(proxy) for _ in range(count)]


def _congestion(proxy: Proxy, everything: bool = False) -> List[Dict[str, Any]]:
    connection = pymysql.connect(
        host="127.0.0.1", port=proxy.port, user="root@proxysys", password=PROXYSYS_PASSWORD
    )
    try:
        with connection.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute("SHOW PROXYCONGESTION ALL" if everything else "SHOW PROXYCONGESTION")
            return list(cursor.fetchall())
    finally:
        connection.close()


def _wait(predicate: Any, timeout: float) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"condition not reached within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - began


@pytest.fixture
def victim(ha_instances: Dict[str, Server]) -> Iterator[Server]:
    """
    The instance the test takes down; running again (resumed, or restarted on its port and
    data) when the test ends, for the other tests of the session.
    """
    server = ha_instances[VICTIM]
    yield server
    with contextlib.suppress(Exception):  # not running: restarted below
        kill_instance(VICTIM, signal.SIGCONT)
    restart_instance(VICTIM)


@pytest_twisted.inlineCallbacks
def test_crashed_server_is_avoided_then_comes_back(
    ha_instances: Dict[str, Server], victim: Server
) -> Iterator[Any]:
    """
    SIGKILL: no client error; three refused connects, then the server is avoided (listed by
    SHOW PROXYCONGESTION); after the restart it gets clients again.
    """
    proxy = _proxy(
        ha_instances,
        "congestion_failure_threshold: 3\ncongestion_retry_interval: 1s\n"
        "min_keep_congestion_interval: 1s\nshort_async_task_timeout: 2s",
    )
    try:
        health = proxy.manager.health
        entry = health.table.entry("cl_congestion", f"127.0.0.1:{victim.port}")
        before = yield in_thread(_connections, proxy, 6)
        assert victim.port in {port for _, port in before}  # the round robin reaches it

        killed_at = time.time()
        yield in_thread(kill_instance, VICTIM, signal.SIGKILL)
        during = yield in_thread(_connections, proxy, 24)
        errors = [outcome for _, outcome in during if not isinstance(outcome, int)]
        assert errors == []
        assert victim.port not in {port for _, port in during}
        assert entry.dead_congested
        detected = entry.last_dead_congested - killed_at
        # Each login that met the dead server moved on; once dead, only trials go there.
        wasted = entry.stat_conn_failures
        assert 3 <= wasted <= 3 + int((time.time() - killed_at) / 1.0) + 1
        rows = yield in_thread(_congestion, proxy)
        assert [(r["server_ip"], r["dead_congested"]) for r in rows] == [
            (f"127.0.0.1:{victim.port}", 1)
        ]
        assert rows[0]["stat_conn_failures"] >= 3 and rows[0]["last_dead_congested"] != "0"
        assert len((yield in_thread(_congestion, proxy, True))) == 3

        restarted_at = time.time()
        yield in_thread(restart_instance, VICTIM)
        up = time.time() - restarted_at

        def comes_back() -> float:
            began = time.monotonic()
            while True:
                _, port = _one_connection(proxy)
                assert isinstance(port, int), port
                if port == victim.port:
                    return time.monotonic() - began
                if time.monotonic() - began > 15:
                    raise AssertionError("the restarted server never got a client")

        back = yield in_thread(comes_back)
        assert not entry.dead_congested
        print(
            f"\ncongestion (passive, SIGKILL): avoided {detected * 1000:.0f} ms after the kill, "
            f"after {wasted} refused connects (24 sequential logins, 0 errors); restart took "
            f"{up:.2f} s; first client on it {back:.2f} s after the restart "
            f"(congestion_retry_interval 1 s)"
        )
    finally:
        yield stop_proxy_later(proxy)


@pytest_twisted.inlineCallbacks
def test_hung_server_passive(ha_instances: Dict[str, Server], victim: Server) -> Iterator[Any]:
    """
    SIGSTOP without active checks: the logins that meet the hung server wait
    short_async_task_timeout and move on (no error); after the threshold it is avoided.
    """
    proxy = _proxy(
        ha_instances,
        "congestion_failure_threshold: 2\ncongestion_retry_interval: 60s\n"
        "short_async_task_timeout: 1s",
    )
    try:
        entry = proxy.manager.health.table.entry("cl_congestion", f"127.0.0.1:{victim.port}")
        stopped_at = time.time()
        yield in_thread(kill_instance, VICTIM, signal.SIGSTOP)
        during = yield in_thread(_connections, proxy, 9)
        assert [o for _, o in during if not isinstance(o, int)] == []
        assert victim.port not in {port for _, port in during}
        assert entry.dead_congested and entry.stat_conn_failures == 2
        detected = entry.last_dead_congested - stopped_at
        slow = sorted((seconds for seconds, _ in during), reverse=True)
        print(
            f"\ncongestion (passive, SIGSTOP): avoided {detected:.2f} s after the stop, after "
            f"2 logins waited short_async_task_timeout (1 s); slowest logins "
            f"{', '.join(f'{s:.2f}' for s in slow[:3])} s, the others at most {slow[2]:.3f} s"
        )
    finally:
        yield stop_proxy_later(proxy)


@pytest_twisted.inlineCallbacks
def test_hung_server_found_by_active_checks(
    ha_instances: Dict[str, Server], victim: Server
) -> Iterator[Any]:
    """
    server_detect_mode 2: a SIGSTOPped server is taken out by the checker alone (no login
    waits on it); the server session an idle client held there is aborted, and that client's
    next statement runs on another server without an error; new logins avoid the server;
    after SIGCONT the checker puts it back.
    """
    proxy = _proxy(
        ha_instances,
        "server_detect_mode: 2\nserver_detect_refresh_interval: 200ms\n"
        "server_detect_fail_threshold: 2\ndetect_server_timeout: 500ms\n"
        "short_async_task_timeout: 2s",
    )
    held: List[Any] = []
    try:
        entry = proxy.manager.health.table.entry("cl_congestion", f"127.0.0.1:{victim.port}")

        def hold_three() -> Any:
            # Three new server sessions in turn: one of them on each server.
            found = None
            for _ in range(3):
                connection = proxy.connect()
                held.append(connection)
                with connection.cursor() as cursor:
                    cursor.execute("SELECT @@port")
                    if int(cursor.fetchone()[0]) == victim.port:
                        found = connection
            assert found is not None
            return found

        on_victim = yield in_thread(hold_three)
        yield in_thread(kill_instance, VICTIM, signal.SIGSTOP)
        detected = yield in_thread(_wait, lambda: entry.detect_congested, 10.0)
        assert entry.server_state == "DETECT_DEAD"

        def next_statement() -> int:
            with on_victim.cursor() as cursor:
                cursor.execute("SELECT @@port")
                return int(cursor.fetchone()[0])

        moved_to = yield in_thread(next_statement)
        assert moved_to != victim.port
        during = yield in_thread(_connections, proxy, 9)
        assert [o for _, o in during if not isinstance(o, int)] == []
        assert victim.port not in {port for _, port in during}
        assert entry.stat_conn_failures == 0  # no login ever tried it
        rows = yield in_thread(_congestion, proxy)
        assert [(r["server_ip"], r["detect_congested"], r["server_state"]) for r in rows] == [
            (f"127.0.0.1:{victim.port}", 1, "DETECT_DEAD")
        ]
        yield in_thread(kill_instance, VICTIM, signal.SIGCONT)
        back = yield in_thread(_wait, lambda: not entry.congested, 10.0)
        after = yield in_thread(_connections, proxy, 6)
        assert victim.port in {port for _, port in after}
        print(
            f"\ncongestion (active, SIGSTOP, interval 200 ms, threshold 2, timeout 500 ms): "
            f"avoided {detected:.2f} s after the stop, 0 logins waited on it, the idle client "
            f"there went on on another server; back {back:.2f} s after SIGCONT"
        )
    finally:
        for connection in held:
            connection.close()
        yield stop_proxy_later(proxy)
