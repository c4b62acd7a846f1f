"""
Limits and timeouts against a real MariaDB with real clients (issue 6, H3):
each limit is hit and answered as specified, and each timeout closes only the
session concerned.

  - C{client_max_connections}: ODP's ERR 1203 "Too many sessions" at login
    (PyMySQL and the C{mariadb} CLI), the local admin still let in;
  - per-user caps: MySQL's max_user_connections error, other users unaffected;
  - C{server_max_connections}: never more server sessions on the server than
    the cap (sampled in its processlist), a waiting login fails with ERR 1040
    at C{server_session_wait_timeout}, an idle shared-pool session is closed
    to make room for another user's client;
  - login, net read, net write, backend connect and query-response timeouts.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Iterator

import pymysql
import pytest
import pytest_twisted

from tests.proxy_fixtures import (
    in_thread,
    in_thread_then_stop,
    start_proxy,
    start_proxy_for,
    stop_proxy_later,
)
from tests.testbed.clients import ClientError, connector_query, mariadb_cli

pytestmark = pytest.mark.integration


def _error_of(call: Any) -> tuple[int, str]:
    """The (errno, message) a PyMySQL call fails with."""
    try:
        connection = call()
    except pymysql.err.MySQLError as error:
        return int(error.args[0]), str(error.args[1]) if len(error.args) > 1 else ""
    connection.close()
    raise AssertionError("expected an error, the call succeeded")


def _closed_by_peer(sock: socket.socket, wait: float) -> bool:
    """Whether the peer closed C{sock} within C{wait} seconds (bytes before the end are read)."""
    sock.settimeout(wait)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _backend_ids(proxy: Any, *users: str) -> set[int]:
    """
    The ids of the connections of C{users} on the proxy's backend now (the
    asking connection excluded).
    """
    with proxy.direct() as direct, direct.cursor() as cursor:
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST "
            "WHERE USER IN %s AND ID <> CONNECTION_ID()",
            (users,),
        )
        return {int(row[0]) for row in cursor.fetchall()}


@pytest_twisted.inlineCallbacks
def test_client_max_connections_is_odps_1203_at_login(mariadb: Any) -> Iterator[Any]:
    """
    With two client connections open, a third gets ERR 1203 "Too many sessions"
    (PyMySQL, the mariadb CLI, mysql-connector); the local admin still gets in;
    once one closes, a new client is served.
    """
    proxy = start_proxy(mariadb, extra="client_max_connections: 2")

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        first, second = proxy.connect(), proxy.connect()
        out["pymysql"] = _error_of(proxy.connect)
        try:
            mariadb_cli("127.0.0.1", proxy.port, proxy.user, proxy.password, "SELECT 1")
        except ClientError as error:
            out["cli"] = (error.error_code, error.output)
        try:
            connector_query(
                "127.0.0.1",
                proxy.port,
                proxy.user,
                proxy.password,
                ["SELECT 1"],
                use_pure=True,
            )
        except ClientError as error:
            out["connector"] = (error.error_code, error.output)
        admin = pymysql.connect(host="127.0.0.1", port=proxy.port, user="root@proxysys")
        with admin.cursor() as cursor:
            cursor.execute("SHOW PROXYSTAT LIKE 'client_connections_refused'")
            out["refused"] = cursor.fetchall()
        admin.close()
        first.close()
        with proxy.connect() as again, again.cursor() as cursor:
            cursor.execute("SELECT 'served'")
            out["after"] = cursor.fetchone()[0]
        second.close()
        return out

    out: Any = yield in_thread_then_stop(proxy, run)
    assert out["pymysql"] == (1203, "Too many sessions")
    assert out["cli"][0] == 1203 and "Too many sessions" in out["cli"][1]
    assert out["connector"][0] == 1203 and "Too many sessions" in out["connector"][1]
    assert int(out["refused"][0][1]) == 3
    assert out["after"] == "served"


@pytest_twisted.inlineCallbacks
def test_user_cap_refuses_only_that_user(mariadb: Any) -> Iterator[Any]:
    """
    user_max_connections=1: the native user's second connection gets MySQL's
    max_user_connections error (1203); the admin user still connects.
    """
    proxy = start_proxy(mariadb, extra="user_max_connections: 1")
    admin = mariadb.accounts["admin"]

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        first = proxy.connect()
        out["second"] = _error_of(proxy.connect)
        other = proxy.connect(user=admin.user, password=admin.password)
        with other, other.cursor() as cursor:
            cursor.execute("SELECT CURRENT_USER()")
            out["other"] = cursor.fetchone()[0]
        first.close()
        return out

    out: Any = yield in_thread_then_stop(proxy, run)
    code, message = out["second"]
    assert code == 1203
    assert message == (
        f"User {proxy.user} already has more than 'max_user_connections' active connections"
    )
    assert out["other"].startswith(admin.user + "@")


@pytest_twisted.inlineCallbacks
def test_server_cap_is_never_exceeded(mariadb: Any) -> Iterator[Any]:
    """
    server_max_connections=2: the server never holds more than two sessions of
    the proxy's user (its processlist sampled all along); a third login waits
    and fails with ERR 1040 at server_session_wait_timeout; after a client
    quits (its server session idles in the shared pool, still counted), a
    client of another backend user gets in because that idle session is
    closed for it.
    """
    proxy = start_proxy(mariadb, extra="server_max_connections: 2\nserver_session_wait_timeout: 1s")
    address = f"{mariadb.host}:{mariadb.port}"
    admin = mariadb.accounts["admin"]
    seen: list[int] = []
    stop = threading.Event()

    def sample(before: set[int]) -> None:
        with proxy.direct() as direct, direct.cursor() as cursor:
            while not stop.is_set():
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST "
                    "WHERE USER IN (%s, %s) AND ID <> CONNECTION_ID()",
                    (proxy.user, admin.user),
                )
                seen.append(len({int(row[0]) for row in cursor.fetchall()} - before))
                time.sleep(0.02)

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        # Not this proxy's: connections an earlier test's proxy is still closing
        # (or left behind) on the shared test-bed server.
        before = _backend_ids(proxy, proxy.user, admin.user)
        out["before"] = len(before)
        sampler = threading.Thread(target=sample, args=(before,))
        sampler.start()
        try:
            first, second = proxy.connect(), proxy.connect()
            out["held"] = proxy.manager.server_slots.count(address)
            out["third"] = _error_of(proxy.connect)
            first.close()  # COM_QUIT: its server session goes to the shared pool
            time.sleep(0.3)
            out["pooled"] = len(proxy.manager.session_pool)
            # Another backend user, who cannot reuse that session: it is closed for them.
            with proxy.connect(user=admin.user, password=admin.password) as third:
                cursor = third.cursor()
                cursor.execute("SELECT 'in'")
                out["third_later"] = cursor.fetchone()[0]
            second.close()
        finally:
            stop.set()
            sampler.join()
        return out

    out: Any = yield in_thread_then_stop(proxy, run)
    assert out["held"] == 2
    code, message = out["third"]
    assert code == 1040
    assert "server_max_connections (2)" in message and "within 1s" in message
    assert out["pooled"] == 1
    assert out["third_later"] == "in"
    assert proxy.manager.stats.server_sessions_closed_for_cap >= 1
    assert proxy.manager.stats.server_session_wait_timeouts == 1
    print(f"cap 2: at most {max(seen) if seen else 0} seen ({out['before']} not ours excluded)")
    assert seen and max(seen) <= 2, seen


@pytest_twisted.inlineCallbacks
def test_query_response_timeout_answers_1317_and_kills(mariadb: Any) -> Iterator[Any]:
    """
    query_response_timeout=1s: SELECT SLEEP(30) gets ERR 1317 naming the
    timeout, the statement is gone from the server (killed), that client's
    connection is closed and other clients go on.
    """
    proxy = start_proxy(mariadb, extra="query_response_timeout: 1s")

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        bystander = proxy.connect()
        client = proxy.connect()
        cursor = client.cursor()
        try:
            cursor.execute("SELECT SLEEP(30)")
            out["answer"] = cursor.fetchall()
        except pymysql.err.MySQLError as error:
            out["answer"] = (error.args[0], error.args[1])
        with proxy.direct() as direct, direct.cursor() as check:
            for _ in range(100):
                check.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
                    ("SELECT SLEEP(30)%",),
                )
                out["still_running"] = int(check.fetchone()[0])
                if not out["still_running"]:
                    break
                time.sleep(0.05)
        try:
            cursor.execute("SELECT 1")
            out["next"] = cursor.fetchall()
        except pymysql.err.MySQLError as error:
            out["next"] = error.args[0]
        with bystander.cursor() as other:
            other.execute("SELECT 'fine'")
            out["bystander"] = other.fetchone()[0]
        bystander.close()
        return out

    out: Any = yield in_thread_then_stop(proxy, run)
    code, message = out["answer"]
    assert code == 1317
    assert "did not answer within 1s" in message
    assert out["still_running"] == 0
    assert out["next"] in (2006, 2013)
    assert out["bystander"] == "fine"
    assert proxy.manager.stats.query_timeouts == 1


@pytest_twisted.inlineCallbacks
def test_net_read_timeout_closes_a_client_stalled_mid_packet(mariadb: Any) -> Iterator[Any]:
    """
    After SET SESSION net_read_timeout = 1, a client that sends half a COM_QUERY
    and stops is closed by the proxy; another client is untouched.
    """
    proxy = start_proxy(mariadb)

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        bystander = proxy.connect()
        client = proxy.connect()
        with client.cursor() as cursor:
            cursor.execute("SET SESSION net_read_timeout = 1")
        sock = client._sock
        assert sock is not None
        # A 32-byte COM_QUERY announced, 7 bytes of it sent.
        sock.sendall(b"\x20\x00\x00\x00\x03SELECT")
        out["closed"] = _closed_by_peer(sock, 5.0)
        with bystander.cursor() as cursor:
            cursor.execute("SELECT 'fine'")
            out["bystander"] = cursor.fetchone()[0]
        bystander.close()
        return out

    out: Any = yield in_thread_then_stop(proxy, run)
    assert out["closed"]
    assert out["bystander"] == "fine"
    assert proxy.manager.stats.client_net_read_timeouts == 1


@pytest_twisted.inlineCallbacks
def test_net_write_timeout_closes_a_client_that_stops_reading(mariadb: Any) -> Iterator[Any]:
    """
    net_write_timeout=1s: a client that asks for ~100 MB and reads none of it
    is closed by the proxy (the server is not left streaming to nobody); the
    server's own net_write_timeout (60 s) plays no part.
    """
    proxy = start_proxy(mariadb, extra="net_write_timeout: 1s")

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        # Not this proxy's: connections an earlier test's proxy is still closing
        # (or left behind) on the shared test-bed server.
        before = _backend_ids(proxy, proxy.user)
        out["before"] = len(before)
        client = proxy.connect()
        sock = client._sock
        assert sock is not None
        sql = b"SELECT REPEAT('x', 1000000) FROM seq_1_to_100"
        payload = b"\x03" + sql
        sock.sendall(len(payload).to_bytes(3, "little") + b"\x00" + payload)
        deadline = time.monotonic() + 10
        while proxy.manager.stats.client_net_write_timeouts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        out["closed"] = _closed_by_peer(sock, 5.0)
        with proxy.direct() as direct, direct.cursor() as check:
            for _ in range(100):
                check.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s",
                    (proxy.user,),
                )
                out["backend_left"] = len({int(row[0]) for row in check.fetchall()} - before)
                if not out["backend_left"]:
                    break
                time.sleep(0.05)
        return out

    out: Any = yield in_thread_then_stop(proxy, run)
    assert proxy.manager.stats.client_net_write_timeouts == 1
    assert out["closed"]
    print(f"net_write_timeout: {out['backend_left']} left ({out['before']} not ours excluded)")
    assert out["backend_left"] == 0


@pytest_twisted.inlineCallbacks
def test_login_timeout_closes_a_silent_client(mariadb: Any) -> Iterator[Any]:
    """
    client_login_timeout=1s: a client that reads the greeting and says nothing
    is closed.
    """
    proxy = start_proxy(mariadb, extra="client_login_timeout: 1s")

    def run() -> bool:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.settimeout(5.0)
            greeting = sock.recv(4096)
            assert greeting[4] == 10  # protocol version 10
            return _closed_by_peer(sock, 5.0)

    closed: Any = yield in_thread_then_stop(proxy, run)
    assert closed
    assert proxy.manager.stats.client_login_timeouts == 1


@pytest_twisted.inlineCallbacks
def test_backend_connect_timeout(mariadb: Any) -> Iterator[Any]:
    """
    short_async_task_timeout=1s, a server that accepts TCP but never greets
    (a listening socket nobody accepts on): the login fails with the proxy's
    error naming the server, instead of hanging.
    """
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    native = mariadb.accounts["native"]
    proxy = start_proxy_for(
        [address],
        "mysql",
        [(native.user, native.password)],
        extra="short_async_task_timeout: 1s",
        backend=mariadb,
    )

    def run() -> tuple[int, str]:
        return _error_of(lambda: proxy.connect(connect_timeout=10))

    try:
        code, message = yield in_thread(run)
    finally:
        yield stop_proxy_later(proxy)
        silent.close()
    assert "Cannot connect to any server" in message and address in message
    assert code == 1105


@pytest_twisted.inlineCallbacks
def test_server_cap_queues_a_burst_of_clients(mariadb: Any) -> Iterator[Any]:
    """
    server_max_connections=4, 16 client threads at once, each connecting,
    running three statements and quitting: every client is served (they wait
    their turn for a slot; a quitting client's server session is closed rather
    than pooled while others wait), and the server never holds more than four
    sessions of the proxy's user.
    """
    proxy = start_proxy(
        mariadb, extra="server_max_connections: 4\nserver_session_wait_timeout: 20s"
    )
    seen: list[int] = []
    stop = threading.Event()

    def sample(before: set[int]) -> None:
        with proxy.direct() as direct, direct.cursor() as cursor:
            while not stop.is_set():
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s",
                    (proxy.user,),
                )
                seen.append(len({int(row[0]) for row in cursor.fetchall()} - before))
                time.sleep(0.02)

    def client(results: list[Any]) -> None:
        try:
            with proxy.connect() as connection, connection.cursor() as cursor:
                for _ in range(3):
                    cursor.execute("SELECT SLEEP(0.05), 'ok'")
                    row = cursor.fetchone()
                results.append(row[1])
        except pymysql.err.MySQLError as error:
            results.append(error.args)

    def run() -> list[Any]:
        results: list[Any] = []
        started = time.monotonic()
        # Not this proxy's: connections an earlier test's proxy is still closing
        # (or left behind) on the shared test-bed server.
        before = _backend_ids(proxy, proxy.user)
        sampler = threading.Thread(target=sample, args=(before,))
        sampler.start()
        threads = [threading.Thread(target=client, args=(results,)) for _ in range(16)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            stop.set()
            sampler.join()
        print(
            f"burst: 16 clients through server_max_connections=4 served in "
            f"{time.monotonic() - started:.2f}s, "
            f"{proxy.manager.stats.server_session_waits} waited for a slot, "
            f"at most {max(seen) if seen else 0} server sessions seen "
            f"({len(before)} not ours excluded)"
        )
        return results

    results: Any = yield in_thread_then_stop(proxy, run)
    assert results == ["ok"] * 16
    assert proxy.manager.stats.server_session_waits > 0
    assert proxy.manager.stats.server_session_wait_timeouts == 0
    assert seen and max(seen) <= 4, seen
