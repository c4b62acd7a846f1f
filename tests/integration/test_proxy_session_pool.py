"""
The shared server session pool against real MariaDB and seekdb: a client that
quits leaves its backend connection to the next client of the same user, reset
so that nothing of the first client's session shows; other users, clients that
quit inside a transaction and killed clients never leave one; KILL and SHOW
PROXYSESSION name the connection's new owner.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pymysql
import pytest
import pytest_twisted

from tests.proxy_fixtures import (
    BACKENDS,
    Proxy,
    in_thread,
    start_proxy,
    stop_proxy,
    stop_proxy_later,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def proxy(request: pytest.FixtureRequest) -> Iterator[Proxy]:
    """A fresh proxy (an empty pool) in front of seekdb, then MariaDB."""
    backend = request.getfixturevalue(request.param)
    started = start_proxy(backend)
    yield started
    stop_proxy(started)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll C{condition} (from a client thread) until it holds."""
    for _ in range(200):
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def idle_pooled(proxy: Proxy) -> int:
    return proxy.manager.session_pool.idle_count


def query(connection: Any, sql: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def attribute(connection: Any, name: str) -> Any:
    rows = query(connection, f"SHOW PROXYSESSION ATTRIBUTE LIKE '{name}'")
    return [row[1] for row in rows]


def backend_ids(proxy: Proxy) -> set[int]:
    """The backend's own list of connections of the proxy's native user."""
    with proxy.direct() as admin:
        rows = query(admin, "SHOW PROCESSLIST")
    return {int(row[0]) for row in rows if str(row[1]).split("@")[0] == proxy.user}


@pytest_twisted.inlineCallbacks
def test_next_client_gets_the_connection_without_the_state(proxy: Proxy) -> Iterator[Any]:
    """B, logged in after A quit, runs on A's backend connection (same backend id and ss_id)
    with none of A's user variables, session variables or database; SHOW PROXYSESSION
    ATTRIBUTE names the connection in B's session."""
    database = proxy.backend.database

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        first = proxy.connect()
        with first.cursor() as cursor:
            out["a_backend"] = proxy.backend_id(cursor)
        out["a_ss_id"] = proxy.only_client_session().bound.ss_id
        query(first, "SET @p4_secret = 42")
        query(first, "SET SESSION sql_mode = 'ANSI_QUOTES'")
        query(first, "SET SESSION time_zone = '+03:00'")
        query(first, "USE information_schema")
        first.close()
        wait_for(lambda: idle_pooled(proxy) == 1, "the reset session in the pool")
        second = proxy.connect()
        with second.cursor() as cursor:
            out["b_backend"] = proxy.backend_id(cursor)
        out["state"] = query(
            second,
            "SELECT @p4_secret, @@SESSION.sql_mode = @@GLOBAL.sql_mode, "
            "@@SESSION.time_zone = @@GLOBAL.time_zone, DATABASE()",
        )
        out["server_sessid"] = attribute(second, "server_sessid")
        out["ss_id"] = attribute(second, "ss_id")
        out["state_name"] = attribute(second, "state")
        out["pooled_after_login"] = idle_pooled(proxy)
        second.close()
        return out

    out = yield in_thread(run)
    assert out["b_backend"] == out["a_backend"]
    assert out["state"] == ((None, 1, 1, database),)
    assert out["server_sessid"] == [str(out["a_backend"])]
    assert out["ss_id"] == [str(out["a_ss_id"])]
    assert out["state_name"] == ["MSS_KA_CLIENT_SLAVE"]
    assert out["pooled_after_login"] == 0
    assert proxy.manager.stats.server_sessions_reused == 1


@pytest_twisted.inlineCallbacks
def test_another_user_never_gets_it(proxy: Proxy) -> Iterator[Any]:
    """The admin account logs in on a backend connection of its own while the native
    user's pooled one waits."""

    def run() -> tuple[int, int, int]:
        first = proxy.connect()
        with first.cursor() as cursor:
            pooled = proxy.backend_id(cursor)
        first.close()
        wait_for(lambda: idle_pooled(proxy) == 1, "the reset session in the pool")
        admin = proxy.backend.accounts["admin"]
        other = proxy.connect(user=admin.user, password=admin.password)
        with other.cursor() as cursor:
            theirs = proxy.backend_id(cursor)
        other.close()
        return pooled, theirs, idle_pooled(proxy)

    pooled, theirs, left = yield in_thread(run)
    assert theirs != pooled
    assert left >= 1
    assert pooled in {ss.backend_id for ss in proxy.manager.session_pool}


@pytest_twisted.inlineCallbacks
def test_a_transaction_at_quit_closes_the_connection(proxy: Proxy) -> Iterator[Any]:
    """A client that quits inside a transaction: its backend connection is closed (the
    backend lists it no more), and the next client gets another one."""

    def run() -> tuple[int, int, set[int]]:
        first = proxy.connect()
        with first.cursor() as cursor:
            pinned = proxy.backend_id(cursor)
        first.begin()
        query(first, "SELECT 1")
        assert "transaction" in proxy.only_client_session().pin_reasons
        first.close()
        wait_for(lambda: pinned not in backend_ids(proxy), "the backend to drop it")
        second = proxy.connect()
        with second.cursor() as cursor:
            fresh = proxy.backend_id(cursor)
        second.close()
        return pinned, fresh, backend_ids(proxy)

    pinned, fresh, listed = yield in_thread(run)
    assert fresh != pinned
    assert pinned not in listed
    assert proxy.manager.stats.server_sessions_pooled == 1  # the second client's only


@pytest_twisted.inlineCallbacks
def test_kill_names_the_new_owner(proxy: Proxy) -> Iterator[Any]:
    """After reuse, KILL <backend id> from another session of the user kills B, the
    connection's owner now; a killed client's connection is closed, not pooled."""

    def run() -> tuple[int, int, Any, int]:
        first = proxy.connect()
        with first.cursor() as cursor:
            backend_id = proxy.backend_id(cursor)
        first.close()
        wait_for(lambda: idle_pooled(proxy) == 1, "the reset session in the pool")
        second = proxy.connect()
        with second.cursor() as cursor:
            assert proxy.backend_id(cursor) == backend_id
        cs_id = second.thread_id()
        killer = proxy.connect()
        query(killer, f"KILL {backend_id}")
        with pytest.raises(pymysql.err.OperationalError) as caught:
            query(second, "SELECT 1")
        wait_for(lambda: backend_id not in backend_ids(proxy), "the backend to drop it")
        killer.close()
        return cs_id, backend_id, caught.value.args[0], idle_pooled(proxy)

    cs_id, backend_id, code, pooled = yield in_thread(run)
    assert code in (2013, 2006, 1927, 1053)
    assert proxy.manager.find_client_session(cs_id) is None
    assert backend_id not in {ss.backend_id for ss in proxy.manager.session_pool}


@pytest_twisted.inlineCallbacks
def test_database_is_the_new_clients(proxy: Proxy) -> Iterator[Any]:
    """A client without a database never lands in the one another client left; a client
    with one gets it applied on the reused connection."""
    database = proxy.backend.database

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        first = proxy.connect()
        with first.cursor() as cursor:
            out["pooled"] = proxy.backend_id(cursor)
        query(first, "USE information_schema")
        first.close()
        wait_for(lambda: idle_pooled(proxy) == 1, "the reset session in the pool")
        bare = proxy.connect(database=None)
        with bare.cursor() as cursor:
            out["bare"] = proxy.backend_id(cursor)
        out["bare_db"] = query(bare, "SELECT DATABASE()")
        bare.close()
        with_db = proxy.connect()
        out["with_db_db"] = query(with_db, "SELECT DATABASE()")
        with with_db.cursor() as cursor:
            out["with_db"] = proxy.backend_id(cursor)
        with_db.close()
        return out

    out = yield in_thread(run)
    assert out["bare_db"] == ((None,),)
    assert out["bare"] != out["pooled"]
    assert out["with_db_db"] == ((database,),)
    # Both connections were pooled by then (the bare one too): either will do.
    assert out["with_db"] in (out["pooled"], out["bare"])


@pytest_twisted.inlineCallbacks
def test_prepared_temporary_table_is_gone(mariadb: Any) -> Iterator[Any]:
    """A temporary table made through a binary prepared statement (which the proxy does not
    read, so it does not pin) does not survive into the next client's session: the reset
    drops it."""
    import mysql.connector

    proxy = start_proxy(mariadb)
    native = mariadb.accounts["native"]

    def connect() -> Any:
        # The same driver both times: its capabilities are part of the pool key.
        return mysql.connector.connect(
            host="127.0.0.1",
            port=proxy.port,
            user=native.user,
            password=native.password,
            database=mariadb.database,
            use_pure=True,
            autocommit=True,
        )

    def run() -> tuple[int, int, Any]:
        first = connect()
        prepared = first.cursor(prepared=True)
        prepared.execute("CREATE TEMPORARY TABLE p4_pool_tmp (a INT)")
        plain = first.cursor()
        plain.execute("SELECT CONNECTION_ID()")
        plain.fetchall()
        before = int(proxy.only_client_session().bound.backend_id)
        first.close()
        wait_for(lambda: idle_pooled(proxy) == 1, "the reset session in the pool")
        second = connect()
        cursor = second.cursor()
        after = proxy.backend_id(cursor)
        with pytest.raises(mysql.connector.errors.ProgrammingError) as caught:
            cursor.execute("SELECT * FROM p4_pool_tmp")
        second.close()
        return before, after, caught.value.errno

    try:
        before, after, code = yield in_thread(run)
    finally:
        yield stop_proxy_later(proxy)
    assert code == 1146
    # Today the table does not pin, so the connection was reused, reset in between.
    assert after == before
