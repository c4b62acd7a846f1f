"""
Through the proxy: a client's own C{wait_timeout} closes it when idle, as the server
would, and a long-running statement is not idleness.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pymysql
import pytest
import pytest_twisted

from tests.proxy_fixtures import (
    BACKENDS,
    in_thread_then_stop,
    start_proxy,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", BACKENDS)
@pytest_twisted.inlineCallbacks
def test_wait_timeout_closes_an_idle_client(request: Any, backend: str) -> Iterator[Any]:
    """
    After SET SESSION wait_timeout=1, the next statement after 2.5 s idle fails with a lost
    connection (the proxy closed the client, instead of quietly replacing the server session
    the backend timed out), whether or not another statement ran in between; a statement that
    runs 2 s is not idleness.
    """
    server = request.getfixturevalue(backend)
    proxy = start_proxy(server)

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SET SESSION wait_timeout = 1")
            time.sleep(2.5)
            try:
                cursor.execute("SELECT 1")
                out["right_after_set"] = cursor.fetchone()
            except pymysql.err.OperationalError as error:
                out["right_after_set"] = error.args[0]
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SET SESSION wait_timeout = 1")
            cursor.execute("SELECT SLEEP(2), 'still here'")
            out["long"] = cursor.fetchone()[1]
            time.sleep(2.5)
            try:
                cursor.execute("SELECT 1")
                out["after"] = cursor.fetchone()
            except pymysql.err.OperationalError as error:
                out["after"] = error.args[0]
        return out

    out: Any = yield in_thread_then_stop(proxy, run)
    assert out["right_after_set"] in (2006, 2013)
    assert out["long"] == "still here"
    assert out["after"] in (2006, 2013)
