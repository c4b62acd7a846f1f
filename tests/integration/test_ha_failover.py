"""
Transparent failover and safe retries against real MariaDB instances that are SIGKILLed under
the proxy (L{tests.integration.ha_cluster}), one client at a time, so that each behaviour is seen
on its own:

  - a server dying between statements outside a transaction: the client's next statements run
    on another server with its database, user and session variables and its prepared
    statements (re-prepared there), without an error;
  - a server dying under a plain read: the read is answered by another server;
  - a server dying under a write: a clear error saying it may or may not have run, the write is
    not sent again (and did not run), and the connection goes on.
"""

from __future__ import annotations

import select
import signal
import subprocess
import threading
import time
from typing import Any, Dict, Iterator

import mysql.connector
import pymysql
import pytest
import pytest_twisted
from twisted.internet import threads

from tests.integration.ha_cluster import NAMES, direct, ha_instances
from tests.proxy_fixtures import Proxy, start_proxy_for, stop_proxy
from tests.testbed import Server
from tests.testbed.instances import kill_instance, restart_instance

pytestmark = pytest.mark.integration

__all__ = ["ha_instances"]  # the fixture, imported for pytest


@pytest.fixture
def proxy(ha_instances: Dict[str, Server]) -> Iterator[Proxy]:
    """A proxy in front of the three instances."""
    native = ha_instances[NAMES[0]].accounts["native"]
    started = start_proxy_for(
        [f"{server.host}:{server.port}" for server in ha_instances.values()],
        "mysql",
        [(native.user, native.password)],
        name="cl_failover",
        extra="short_async_task_timeout: 2s",
        backend=ha_instances[NAMES[0]],
    )
    yield started
    stop_proxy(started)


def _name_of(instances: Dict[str, Server], port: int) -> str:
    return next(name for name, server in instances.items() if server.port == port)


def _wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def _kill_later(name: str, delay: float) -> threading.Thread:
    def kill() -> None:
        time.sleep(delay)
        kill_instance(name, signal.SIGKILL)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


@pytest_twisted.inlineCallbacks
def test_idle_death_keeps_database_variables_and_prepared_statements(
    ha_instances: Dict[str, Server], proxy: Proxy
) -> Iterator[Any]:
    """
    Connector/Python (pure, binary protocol) prepares a statement, sets variables and changes
    database; its server is SIGKILLed while it is idle; its next executes and queries run on
    another server, with the statement prepared there and everything else synced, no error.
    """
    native = ha_instances[NAMES[0]].accounts["native"]

    def run() -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        connection = mysql.connector.connect(
            host="127.0.0.1",
            port=proxy.port,
            user=native.user,
            password=native.password,
            database="test",
            use_pure=True,
            autocommit=True,
        )
        killed = None
        try:
            cursor = connection.cursor()
            cursor.execute("SET @kept = 'still here', SESSION time_zone = '+03:00'")
            cursor.execute("USE mysql")
            prepared = connection.cursor(prepared=True)
            prepared.execute("SELECT ? + 1, @@port", (41,))
            first = prepared.fetchall()
            out["before"] = first
            killed = _name_of(ha_instances, int(first[0][1]))
            session = proxy.only_client_session()
            kill_instance(killed, signal.SIGKILL)
            _wait_until(lambda: session.bound is None)
            prepared.execute("SELECT ? + 1, @@port", (99,))
            out["after"] = prepared.fetchall()
            cursor.execute("SELECT @kept, DATABASE(), @@session.time_zone")
            out["state"] = cursor.fetchall()
            out["statements"] = [len(ss.statements) for ss in session.server_sessions]
        finally:
            connection.close()
            if killed is not None:
                restart_instance(killed)
        return out

    out = yield threads.deferToThread(run)
    assert out["before"][0][0] == 42
    assert out["after"][0][0] == 100
    assert out["after"][0][1] != out["before"][0][1]
    assert out["state"] == [("still here", "mysql", "+03:00")]
    assert out["statements"] == [1]


@pytest_twisted.inlineCallbacks
def test_read_running_on_a_dying_server_is_answered_by_another(
    ha_instances: Dict[str, Server], proxy: Proxy
) -> Iterator[Any]:
    """A SELECT running when its server is SIGKILLed gets its rows from another server."""

    def run() -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        killed = None
        try:
            with proxy.connect() as connection, connection.cursor() as cursor:
                cursor.execute("SELECT @@port")
                port = int(cursor.fetchone()[0])
                killed = _name_of(ha_instances, port)
                killer = _kill_later(killed, 0.4)
                started = time.monotonic()
                cursor.execute("SELECT @@port, SLEEP(1), 'answer'")
                out["row"] = cursor.fetchone()
                out["elapsed"] = time.monotonic() - started
                killer.join()
                out["port"] = port
        finally:
            if killed is not None:
                restart_instance(killed)
        return out

    out = yield threads.deferToThread(run)
    assert out["row"][2] == "answer"
    assert int(out["row"][0]) != out["port"]
    assert proxy.manager.stats.lost_reads_resent == 1


@pytest_twisted.inlineCallbacks
def test_write_running_on_a_dying_server_is_reported_not_resent(
    ha_instances: Dict[str, Server], proxy: Proxy
) -> Iterator[Any]:
    """
    An INSERT running when its server is SIGKILLed: ERR 1158 saying it may or may not have run;
    it is not sent to another server (no row anywhere) and the connection goes on.
    """
    for server in ha_instances.values():
        with direct(server) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE OR REPLACE TABLE fo_write (id INT PRIMARY KEY, s INT)")

    def run() -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        killed = None
        try:
            connection = proxy.connect()
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@port")
                killed = _name_of(ha_instances, int(cursor.fetchone()[0]))
                killer = _kill_later(killed, 0.4)
                with pytest.raises(pymysql.err.OperationalError) as caught:
                    cursor.execute("INSERT INTO fo_write VALUES (1, SLEEP(1))")
                killer.join()
                out["error"] = caught.value.args
                cursor.execute("SELECT 'still connected'")
                out["after"] = cursor.fetchone()[0]
            connection.close()
        finally:
            if killed is not None:
                restart_instance(killed)
        rows = 0
        for server in ha_instances.values():
            with direct(server) as direct_connection, direct_connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM fo_write")
                rows += int(cursor.fetchone()[0])
                cursor.execute("DROP TABLE fo_write")
        out["rows"] = rows
        return out

    out = yield threads.deferToThread(run)
    assert out["error"][0] == 1158
    assert "may or may not have run" in out["error"][1]
    assert out["after"] == "still connected"
    assert out["rows"] == 0
    assert proxy.manager.stats.lost_requests_reported == 1
    assert proxy.manager.stats.lost_reads_resent == 0


@pytest_twisted.inlineCallbacks
def test_prepared_statements_lost_mid_execute(
    ha_instances: Dict[str, Server], proxy: Proxy
) -> Iterator[Any]:
    """
    The same with Connector/Python's binary protocol: a prepared plain read running when its
    server dies is prepared again on another server and executed there; a prepared INSERT
    running then gets 1158 "may or may not have run", is not sent again, and the connection
    goes on.
    """
    native = ha_instances[NAMES[0]].accounts["native"]
    for server in ha_instances.values():
        with direct(server) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE OR REPLACE TABLE fo_ps (id INT PRIMARY KEY, s INT)")

    def run() -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        connection = mysql.connector.connect(
            host="127.0.0.1",
            port=proxy.port,
            user=native.user,
            password=native.password,
            database="test",
            use_pure=True,
            autocommit=True,
        )
        killed = []
        try:
            prepared = connection.cursor(prepared=True)
            prepared.execute("SELECT @@port, ? + SLEEP(1)", (1,))
            port = int(prepared.fetchall()[0][0])
            killed.append(_name_of(ha_instances, port))
            killer = _kill_later(killed[-1], 0.4)
            prepared.execute("SELECT @@port, ? + SLEEP(1)", (2,))
            out["read"] = prepared.fetchall()[0]
            killer.join()
            out["read_port"] = port
            restart_instance(killed.pop())
            writer = connection.cursor(prepared=True)
            writer.execute("SELECT @@port")
            port = int(writer.fetchall()[0][0])
            killed.append(_name_of(ha_instances, port))
            killer = _kill_later(killed[-1], 0.4)
            with pytest.raises(mysql.connector.Error) as caught:
                writer.execute("INSERT INTO fo_ps VALUES (?, SLEEP(1))", (1,))
            killer.join()
            out["error"] = (caught.value.errno, caught.value.msg)
            prepared.execute("SELECT @@port, ? + 0", (3,))
            out["after"] = prepared.fetchall()[0]
        finally:
            connection.close()
            for name in killed:
                restart_instance(name)
        rows = 0
        for server in ha_instances.values():
            with direct(server) as direct_connection, direct_connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM fo_ps")
                rows += int(cursor.fetchone()[0])
                cursor.execute("DROP TABLE fo_ps")
        out["rows"] = rows
        return out

    out = yield threads.deferToThread(run)
    assert int(out["read"][0]) != out["read_port"]
    assert int(out["read"][1]) == 2
    assert out["error"][0] == 1158
    assert "may or may not have run" in out["error"][1]
    assert int(out["after"][1]) == 3
    assert out["rows"] == 0
    assert proxy.manager.stats.lost_reads_resent == 1
    assert proxy.manager.stats.lost_requests_reported == 1


@pytest_twisted.inlineCallbacks
def test_mariadb_cli_sees_a_lost_write_and_goes_on(
    ha_instances: Dict[str, Server], proxy: Proxy
) -> Iterator[Any]:
    """
    The `mariadb` CLI (--force, no reconnect) running a write when its server dies prints the
    proxy's error and runs its next statement on the same connection.
    """
    native = ha_instances[NAMES[0]].accounts["native"]
    for server in ha_instances.values():
        with direct(server) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE OR REPLACE TABLE fo_cli (id INT PRIMARY KEY, s INT)")
    ports = {server.port: name for name, server in ha_instances.items()}

    def run() -> Any:
        process = subprocess.Popen(
            [
                "mariadb",
                "--no-defaults",
                "-h127.0.0.1",
                f"-P{proxy.port}",
                f"-u{native.user}",
                f"-p{native.password}",
                "--force",
                "--skip-reconnect",
                "--unbuffered",
                "-N",
                "test",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("SELECT @@port;\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], 30)
        if not ready:
            process.kill()
            raise AssertionError("the mariadb CLI printed nothing in 30 s")
        killed = ports[int(process.stdout.readline())]
        try:
            killer = _kill_later(killed, 0.4)
            out, err = process.communicate(
                "INSERT INTO fo_cli VALUES (1, SLEEP(1));\nSELECT CONCAT('still ', 'here');\n",
                timeout=60,
            )
            killer.join()
        finally:
            restart_instance(killed)
        return process.returncode, out, err

    code, out, err = yield threads.deferToThread(run)
    assert "ERROR 1158 (08S01) at line 2: Lost connection to server" in err
    assert "may or may not have run" in err
    assert out.strip().splitlines()[-1] == "still here"
    assert code == 0  # --force: errors do not end the batch
