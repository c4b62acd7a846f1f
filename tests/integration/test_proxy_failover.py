"""
The proxy when backends die, and KILL through the proxy, against real seekdb and MariaDB.

Backend deaths are made by killing the proxy's backend connection from a
direct admin connection (the server then closes it, as when it restarts).
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any, Iterator

import pymysql
import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater

from obproxy_tx.config import parse_config
from obproxy_tx.session.manager import SessionManager
from tests.integration.test_proxy_relay import BACKENDS, Proxy, start_proxy, stop_proxy

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def proxy(request: pytest.FixtureRequest) -> Iterator[Proxy]:
    """A proxy in front of seekdb, then MariaDB."""
    backend = request.getfixturevalue(request.param)
    started = start_proxy(backend)
    yield started
    stop_proxy(started)


def _kill_backend(proxy: Proxy, backend_id: int) -> None:
    with proxy.direct() as admin, admin.cursor() as cursor:
        cursor.execute(f"KILL {backend_id}")


def _wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest_twisted.inlineCallbacks
def test_backend_killed_between_statements_is_transparent(proxy: Proxy) -> Iterator[Any]:
    """An idle server session that dies is replaced on the next statement; state survives."""

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SET @kept = 'still here'")
            cursor.execute("USE mysql")
            first = proxy.backend_id(cursor)
            session = proxy.only_client_session()
            _kill_backend(proxy, first)
            _wait_until(lambda: session.bound is None)
            cursor.execute("SELECT @kept, DATABASE()")
            out["state"] = cursor.fetchone()
            out["ids"] = (first, proxy.backend_id(cursor))
        return out

    out = yield threads.deferToThread(run)
    assert out["state"] == ("still here", "mysql")
    assert out["ids"][0] != out["ids"][1]


@pytest_twisted.inlineCallbacks
def test_backend_killed_inside_transaction_closes_cleanly(proxy: Proxy) -> Iterator[Any]:
    """A server session that dies inside a transaction: the next statement errors, then EOF."""

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        connection = proxy.connect()
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS proxy_fo")
            cursor.execute("CREATE TABLE proxy_fo (id INT PRIMARY KEY)")
            connection.begin()
            cursor.execute("INSERT INTO proxy_fo VALUES (1)")
            backend_id = proxy.backend_id(cursor)
            session = proxy.only_client_session()
            _kill_backend(proxy, backend_id)
            _wait_until(lambda: session.bound is None)
            with pytest.raises(pymysql.err.OperationalError) as caught:
                cursor.execute("INSERT INTO proxy_fo VALUES (2)")
            out["error"] = caught.value.args
            with pytest.raises(pymysql.err.Error):
                cursor.execute("SELECT 1")
        with proxy.connect() as other, other.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM proxy_fo")
            out["rows"] = cursor.fetchone()[0]
            cursor.execute("DROP TABLE proxy_fo")
        return out

    out = yield threads.deferToThread(run)
    assert out["error"][0] == 1158
    assert "transaction" in out["error"][1]
    assert out["rows"] == 0


@pytest_twisted.inlineCallbacks
def test_backend_killed_mid_query_gives_an_error(proxy: Proxy) -> Iterator[Any]:
    """A server session that dies while a query runs: the client gets an error, not a hang."""

    def run() -> Any:
        connection = proxy.connect()
        with connection.cursor() as cursor:
            backend_id = proxy.backend_id(cursor)

            def killer() -> None:
                time.sleep(0.5)
                _kill_backend(proxy, backend_id)

            import threading

            thread = threading.Thread(target=killer)
            thread.start()
            started = time.monotonic()
            with pytest.raises(pymysql.err.OperationalError) as caught:
                cursor.execute("SELECT SLEEP(8)")
            thread.join()
            return caught.value.args[0], time.monotonic() - started

    code, elapsed = yield threads.deferToThread(run)
    assert code in (1158, 2013, 1317, 5066, 1927)
    assert elapsed < 6


@pytest_twisted.inlineCallbacks
def test_kill_query_and_kill_connection_by_cs_id(proxy: Proxy) -> Iterator[Any]:
    """KILL QUERY <cs_id> from another connection stops that query; KILL <cs_id> ends it."""

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        victim = proxy.connect()
        with victim.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            cs_id = cursor.fetchone()[0]
        assert cs_id == victim.thread_id()

        def killer(statement: str) -> None:
            time.sleep(0.7)
            with proxy.connect() as other, other.cursor() as cursor:
                cursor.execute(statement)

        import threading

        thread = threading.Thread(target=killer, args=(f"KILL QUERY {cs_id}",))
        thread.start()
        started = time.monotonic()
        with victim.cursor() as cursor:
            try:
                cursor.execute("SELECT SLEEP(8)")
                out["query"] = cursor.fetchall()
            except pymysql.err.OperationalError as exc:
                out["query"] = exc.args[0]
        out["elapsed"] = time.monotonic() - started
        thread.join()
        with victim.cursor() as cursor:
            cursor.execute("SELECT 'alive'")
            out["alive"] = cursor.fetchone()[0]
        killer(f"KILL {cs_id}")
        with pytest.raises(pymysql.err.Error), victim.cursor() as cursor:
            cursor.execute("SELECT 1")
        with proxy.connect() as other, other.cursor() as cursor:
            with pytest.raises(pymysql.err.OperationalError) as caught:
                cursor.execute("KILL 987654")
            out["unknown"] = caught.value.args[0]
        return out

    out = yield threads.deferToThread(run)
    assert out["elapsed"] < 6
    assert out["alive"] == "alive"
    assert out["unknown"] == 1094


@pytest_twisted.inlineCallbacks
def test_no_backend_reachable_names_the_cluster() -> Iterator[Any]:
    """
    With no server answering, the login fails with an ERR naming the cluster, which PyMySQL
    and the mariadb CLI both show.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config = parse_config(
        f"""
short_async_task_timeout: 2s
clusters:
  - name: nowhere
    type: mysql
    servers: ["127.0.0.1:{dead_port}"]
    users:
      - {{name: u, tenant: sys, verifier: ""}}
"""
    )
    manager = SessionManager(config, reactor)
    manager.startService()
    listener = reactor.listenTCP(0, manager.listener_factory(), interface="127.0.0.1")
    try:

        def run() -> Any:
            with pytest.raises(pymysql.err.OperationalError) as caught:
                pymysql.connect(host="127.0.0.1", port=listener.getHost().port, user="u")
            return caught.value.args

        def run_cli() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    "mariadb",
                    "--no-defaults",
                    "-h127.0.0.1",
                    f"-P{listener.getHost().port}",
                    "-uu",
                    "-e",
                    "SELECT 1",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
                check=False,
            )

        args = yield threads.deferToThread(run)
        cli = yield threads.deferToThread(run_cli)
    finally:
        yield listener.stopListening()
        manager.stopService()
        yield deferLater(reactor, 0, lambda: None)
    assert args[0] == 1105
    assert "cluster 'nowhere'" in args[1]
    # libmariadb shows the proxy's message (a client-range code would read as "malformed").
    assert cli.returncode == 1
    assert cli.stderr.startswith(
        "ERROR 1105 (08001): Cannot connect to any server of cluster 'nowhere'"
    )
