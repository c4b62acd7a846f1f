"""
Pins that end, against a real server: a user lock, a temporary table and
LOCK TABLES keep a client on its server session while they last, and once
released a forced route (C{SET @obproxy_route_addr}) moves it.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.integration.test_proxy_relay import Proxy, start_proxy, stop_proxy

pytestmark = pytest.mark.integration


@pytest.fixture
def maria_proxy(mariadb: Any) -> Iterator[Proxy]:
    """A proxy in front of MariaDB."""
    started = start_proxy(mariadb)
    yield started
    stop_proxy(started)


@pytest_twisted.inlineCallbacks
def test_lock_pins_until_released_then_forced_route_moves(maria_proxy: Proxy) -> Iterator[Any]:
    """
    GET_LOCK pins (a forced route waits), RELEASE_LOCK unpins, and then the
    forced route opens a second server session; temporary tables and LOCK
    TABLES pin and unpin the same way.
    """
    proxy = maria_proxy
    backend = proxy.backend

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with proxy.connect() as connection, connection.cursor() as cursor:
            session = proxy.only_client_session()

            def backend_id() -> int:
                return proxy.backend_id(cursor)

            first = backend_id()
            cursor.execute("DROP TABLE IF EXISTS proxy_pins")
            cursor.execute("CREATE TABLE proxy_pins (a INT)")
            cursor.execute("CREATE TEMPORARY TABLE proxy_tmp (a INT)")
            out["temp_pins"] = set(session.pin_reasons)
            cursor.execute("DROP TEMPORARY TABLE proxy_tmp")
            cursor.execute("LOCK TABLES proxy_pins READ")
            out["lock_tables_pins"] = set(session.pin_reasons)
            cursor.execute("UNLOCK TABLES")
            out["after_unlock"] = set(session.pin_reasons)
            cursor.execute("SELECT GET_LOCK('proxy_h9', 5)")
            out["got"] = cursor.fetchone()[0]
            out["lock_pins"] = set(session.pin_reasons)
            cursor.execute(f"SET @obproxy_route_addr = 'localhost:{backend.port}'")
            cursor.execute("SELECT 1")
            out["pinned_same"] = backend_id() == first
            cursor.execute("SELECT RELEASE_LOCK('proxy_h9')")
            out["released"] = cursor.fetchone()[0]
            out["after_release"] = set(session.pin_reasons)
            cursor.execute("SELECT 1")  # free: goes where the forced route says
            second = backend_id()
            out["moved"] = second != first
            out["count"] = session.server_session_count
            cursor.execute("SELECT IS_FREE_LOCK('proxy_h9')")
            out["free"] = cursor.fetchone()[0]
            cursor.execute("DROP TABLE proxy_pins")
        return out

    out = yield threads.deferToThread(run)
    assert out["temp_pins"] == {"temporary table"}
    assert out["lock_tables_pins"] == {"LOCK TABLES"}
    assert out["after_unlock"] == set()
    assert out["got"] == 1
    assert out["lock_pins"] == {"user lock GET_LOCK()"}
    assert out["pinned_same"]
    assert out["released"] == 1
    assert out["after_release"] == set()
    assert out["moved"]
    assert out["count"] == 2
    assert out["free"] == 1
