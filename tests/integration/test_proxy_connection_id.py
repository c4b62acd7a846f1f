"""
Through the proxy on MariaDB: C{CONNECTION_ID()} is the id of the client's handshake wherever
it is called, and a killed idle backend connection that cannot be replaced looks lost.
"""

from __future__ import annotations

import socket
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

pytestmark = pytest.mark.integration


@pytest_twisted.inlineCallbacks
def test_connection_id_calls_answer_the_handshake_id(mariadb: Any) -> Iterator[Any]:
    """SELECT CONNECTION_ID(), 1 (text and prepared) gives the handshake's id, column named so."""
    proxy = start_proxy(mariadb)

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with proxy.connect() as connection, connection.cursor() as cursor:
            out["thread_id"] = connection.thread_id()
            cursor.execute("SELECT CONNECTION_ID(), 1")
            out["row"] = cursor.fetchone()
            out["names"] = [d[0] for d in cursor.description]
            cursor.execute("SELECT CONNECTION_ID() + 0 AS id, 'CONNECTION_ID()'")
            out["expr"] = cursor.fetchone()
        import mysql.connector

        native = mariadb.accounts["native"]
        other = mysql.connector.connect(
            host="127.0.0.1",
            port=proxy.port,
            user=native.user,
            password=native.password,
            use_pure=True,
        )
        try:
            prepared = other.cursor(prepared=True)
            prepared.execute("SELECT CONNECTION_ID(), ?", (7,))
            out["prepared"] = (other.connection_id, prepared.fetchone())
        finally:
            other.close()
        return out

    out: Any = yield in_thread_then_stop(proxy, run)
    assert out["row"] == (out["thread_id"], 1)
    assert out["names"] == ["CONNECTION_ID()", "1"]
    assert out["expr"] == (out["thread_id"], "CONNECTION_ID()")
    connection_id, row = out["prepared"]
    assert tuple(row) == (connection_id, 7)


@pytest_twisted.inlineCallbacks
def test_killed_idle_backend_of_a_dropped_user_looks_lost(mariadb: Any) -> Iterator[Any]:
    """Backend killed while idle, user dropped: the next query loses the connection (2013)."""
    admin = mariadb.accounts["admin"]
    user, password = "h13_gone", "gone_pw"

    def direct(statement: str) -> None:
        connection = pymysql.connect(
            host=mariadb.host,
            port=mariadb.port,
            user=admin.user,
            password=admin.password,
            autocommit=True,
        )
        with connection, connection.cursor() as cursor:
            cursor.execute(statement)

    yield in_thread(direct, f"DROP USER IF EXISTS '{user}'@'%'")
    yield in_thread(direct, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    proxy = start_proxy_for(
        [f"{mariadb.host}:{mariadb.port}"], "mysql", [(user, password)], backend=mariadb
    )

    def run() -> Any:
        connection = pymysql.connect(
            host="127.0.0.1", port=proxy.port, user=user, password=password, autocommit=True
        )
        with connection.cursor() as cursor:
            backend_id = proxy.backend_id(cursor)
            session = proxy.only_client_session()
            direct(f"KILL CONNECTION {backend_id}")
            direct(f"DROP USER '{user}'@'%'")
            for _ in range(200):
                if session.bound is None:
                    break
                time.sleep(0.05)
            with pytest.raises(pymysql.err.OperationalError) as caught:
                cursor.execute("SELECT 1")
            return caught.value.args[0]

    try:
        code: Any = yield in_thread(run)
    finally:
        yield stop_proxy_later(proxy)
        yield in_thread(direct, f"DROP USER IF EXISTS '{user}'@'%'")
    assert code in (2013, 2006)


@pytest_twisted.inlineCallbacks
def test_quit_and_abrupt_close_reach_the_backend_as_such(mariadb: Any) -> Iterator[Any]:
    """COM_QUIT leaves Aborted_clients alone; a client gone without it counts as aborted."""
    proxy = start_proxy(mariadb)

    def aborted() -> int:
        with proxy.direct() as admin, admin.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
            return int(cursor.fetchone()[1])

    def settle(expected: int) -> int:
        value = aborted()
        for _ in range(40):
            if value == expected:
                break
            time.sleep(0.05)
            value = aborted()
        return value

    def run() -> tuple[int, int, int]:
        before = aborted()
        polite = proxy.connect()
        polite.cursor().execute("SELECT 1")
        polite.close()
        time.sleep(0.3)
        after_quit = aborted()
        rude = proxy.connect()
        rude.cursor().execute("SELECT 1")
        rude._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        rude._sock.close()  # type: ignore[union-attr]
        return before, after_quit, settle(before + 1)

    counts: Any = yield in_thread_then_stop(proxy, run)
    before, after_quit, after_abort = counts
    assert after_quit == before
    assert after_abort == before + 1
