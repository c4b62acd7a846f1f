"""
The proxy in front of real seekdb and MariaDB, driven by real clients.

The proxy runs in this process on the test reactor (pytest-twisted); the
blocking clients (PyMySQL, mysql-connector-python) run in worker threads
(C{deferToThread}) and the C{mariadb} CLI in subprocesses, so the reactor
keeps serving the proxy while they wait.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from typing import Any, Iterator

import pymysql
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import LoopingCall

from tests.proxy_fixtures import (  # noqa: F401 - BACKENDS, Proxy, ... are re-exported
    BACKENDS,
    Proxy,
    in_thread,
    start_proxy,
    stop_proxy,
    verifier,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def proxy(request: pytest.FixtureRequest) -> Iterator[Proxy]:
    """A proxy in front of seekdb, then MariaDB."""
    backend = request.getfixturevalue(request.param)
    started = start_proxy(backend)
    yield started
    stop_proxy(started)


@pytest_twisted.inlineCallbacks
def test_login_and_bad_password(proxy: Proxy) -> Iterator[Any]:
    """A right password logs in and runs a query; a wrong one gets 1045 like a direct login."""

    def run() -> tuple[Any, Any, Any]:
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1 + 1, DATABASE()")
            rows = cursor.fetchall()
            cursor.execute("SELECT CONNECTION_ID()")
            (cs_id,) = cursor.fetchone()
            thread_id = connection.thread_id()
        errors = []
        for port in (proxy.port, proxy.backend.port):
            with pytest.raises(pymysql.err.OperationalError) as caught:
                pymysql.connect(host="127.0.0.1", port=port, user=proxy.user, password="wrong")
            errors.append(caught.value.args[0])
        return rows, (cs_id, thread_id), errors

    rows, ids, errors = yield in_thread(run)
    assert rows == ((2, proxy.backend.database),)
    assert ids[0] == ids[1]
    assert errors == [1045, 1045]


@pytest_twisted.inlineCallbacks
def test_mariadb_cli(proxy: Proxy) -> Iterator[Any]:
    """The mariadb command-line client logs in, runs statements and sees errors as usual."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                "-h127.0.0.1",
                f"-P{proxy.port}",
                f"-u{proxy.user}",
                f"-p{proxy.password}",
                "-N",
                "-e",
                "select 40 + 2; use test; select database(); select * from no_such_table",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = yield in_thread(run)
    assert done.stdout.split() == ["42", "test"]
    assert "1146" in done.stderr


@pytest_twisted.inlineCallbacks
def test_transactions_multi_results_and_load_data(proxy: Proxy, tmp_path: Any) -> Iterator[Any]:
    """Commit and rollback work, multi-statement results all arrive, LOAD DATA LOCAL loads."""
    data = tmp_path / "rows.csv"
    data.write_text("1,one\n2,two\n3,three\n")

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with (
            proxy.connect(
                local_infile=True, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute("DROP TABLE IF EXISTS proxy_tx")
            cursor.execute("CREATE TABLE proxy_tx (id INT PRIMARY KEY, v VARCHAR(20))")
            connection.begin()
            cursor.execute("INSERT INTO proxy_tx VALUES (100, 'x')")
            out["in_tx_pins"] = proxy.only_client_session().pin_reasons
            connection.rollback()
            connection.begin()
            cursor.execute("INSERT INTO proxy_tx VALUES (101, 'y')")
            connection.commit()
            cursor.execute(
                f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE proxy_tx FIELDS TERMINATED BY ','"
            )
            out["loaded"] = cursor.rowcount
            cursor.execute("SELECT 1; SELECT id FROM proxy_tx ORDER BY id; SELECT 3")
            results = [cursor.fetchall()]
            while cursor.nextset():
                results.append(cursor.fetchall())
            out["results"] = results
            cursor.execute("DROP TABLE proxy_tx")
        return out

    out = yield in_thread(run)
    assert "transaction" in out["in_tx_pins"]
    assert out["loaded"] == 3
    assert out["results"] == [((1,),), ((1,), (2,), (3,), (101,)), ((3,),)]


@pytest_twisted.inlineCallbacks
def test_forced_switch_keeps_session_state(proxy: Proxy) -> Iterator[Any]:
    """After SET @obproxy_route_addr forces a second server session, variables and db match."""
    backend = proxy.backend

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SET @u1 = 42, @u2 = 'text', @u3 = 1.5, @u4 = NULL")
            cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
            cursor.execute("SET @@session.time_zone = '+03:00'")
            cursor.execute("USE mysql")
            probe = "SELECT @u1, @u2, @u3, @u4, @@session.sql_mode, @@session.time_zone, DATABASE()"
            cursor.execute(probe)
            out["before"] = cursor.fetchall()
            out["backend_before"] = proxy.backend_id(cursor)
            # Another spelling of the same server: a second pool key, so a second server session.
            cursor.execute(f"SET @obproxy_route_addr = 'localhost:{backend.port}'")
            cursor.execute(probe)
            out["after"] = cursor.fetchall()
            out["backend_after"] = proxy.backend_id(cursor)
            out["count"] = proxy.only_client_session().server_session_count
            cursor.execute("SELECT CONNECTION_ID()")
            out["cs_id"] = cursor.fetchone()[0]
            out["thread_id"] = connection.thread_id()
        return out

    out = yield in_thread(run)
    assert out["after"] == out["before"]
    assert out["before"][0][:2] == (42, "text")
    assert out["backend_after"] != out["backend_before"]
    assert out["count"] == 2
    assert out["cs_id"] == out["thread_id"]


@pytest_twisted.inlineCallbacks
def test_prepared_statements_reprepared_on_second_session(proxy: Proxy) -> Iterator[Any]:
    """mysql-connector prepared statements keep working after a switch (prepared again there)."""
    import mysql.connector

    backend = proxy.backend

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        # Pure Python: in this process the C extension would deadlock with the
        # proxy (it keeps the GIL while it waits for an answer, e.g. in
        # mysql_autocommit). test_proxy_connector_cext runs it in a subprocess.
        connection = mysql.connector.connect(
            host="127.0.0.1",
            port=proxy.port,
            user=proxy.user,
            password=proxy.password,
            database=backend.database,
            use_pure=True,
        )
        try:
            cursor = connection.cursor(prepared=True)
            sql = "SELECT ?, ? + 1, CONCAT(?, 'x')"
            cursor.execute(sql, ("a", 1, "b"))
            out["first"] = cursor.fetchall()
            plain = connection.cursor()
            plain.execute(f"SET @obproxy_route_addr = 'localhost:{backend.port}'")
            cursor.execute(sql, ("c", 2, None))
            out["second"] = cursor.fetchall()
            session = proxy.only_client_session()
            out["mapped"] = sum(1 for ss in session.server_sessions if ss.statements)
            cursor.close()
            plain.execute("SELECT 1")
            plain.fetchall()
            out["after_close"] = [dict(ss.statements) for ss in session.server_sessions]
        finally:
            connection.close()
        return out

    out = yield in_thread(run)
    assert [tuple(row) for row in out["first"]] == [("a", 2, "bx")]
    assert [tuple(row) for row in out["second"]] == [("c", 3, None)]
    assert out["mapped"] == 2
    assert out["after_close"] == [{}, {}]


@pytest_twisted.inlineCallbacks
def test_blob_32mib_round_trip(proxy: Proxy) -> Iterator[Any]:
    """A 32 MiB blob (payloads over 16 MiB both ways) goes in and comes back intact."""
    blob = os.urandom(32 * 1024 * 1024)

    def run() -> bytes:
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS proxy_blob")
            cursor.execute("CREATE TABLE proxy_blob (id INT PRIMARY KEY, b LONGBLOB)")
            cursor.execute("INSERT INTO proxy_blob VALUES (1, %s)", (blob,))
            cursor.execute("SELECT b FROM proxy_blob WHERE id = 1")
            (value,) = cursor.fetchone()
            cursor.execute("DROP TABLE proxy_blob")
            return bytes(value)

    value = yield in_thread(run)
    assert value == blob


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@pytest_twisted.inlineCallbacks
def test_million_rows_streamed_with_bounded_memory(proxy: Proxy) -> Iterator[Any]:
    """1 000 000 rows reach a slow client while the proxy's memory grows by less than 64 MiB."""

    def prepare() -> None:
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS proxy_ten")
            cursor.execute("CREATE TABLE proxy_ten (d INT PRIMARY KEY)")
            cursor.execute("INSERT INTO proxy_ten VALUES " + ",".join(f"({i})" for i in range(10)))

    yield in_thread(prepare)
    peak = [_rss()]
    baseline = peak[0]

    def sample() -> None:
        peak[0] = max(peak[0], _rss())

    sampler = LoopingCall(sample)
    sampler.clock = reactor
    sampler.start(0.05)
    query = (
        "SELECT a.d, b.d, c.d, e.d, f.d, g.d, 'padding-padding-padding' FROM proxy_ten a, "
        "proxy_ten b, proxy_ten c, proxy_ten e, proxy_ten f, proxy_ten g"
    )

    def run() -> tuple[int, float]:
        started = time.monotonic()
        # The CLI streams (--quick); the pipe's reader sleeps first, so the
        # client stops reading and the proxy must stop reading the server.
        shell = (
            f"mariadb --no-defaults --quick -N -h127.0.0.1 -P{proxy.port} -u{proxy.user} "
            f'-p{proxy.password} {proxy.backend.database} -e "{query}" '
            "| (sleep 3; wc -l)"
        )
        done = subprocess.run(
            ["bash", "-c", shell], capture_output=True, text=True, timeout=300, check=True
        )
        return int(done.stdout.split()[0]), time.monotonic() - started

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        count, _elapsed = yield in_thread(run)
    finally:
        sampler.stop()
    sample()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    print(
        f"1M rows: proxy RSS growth {(peak[0] - baseline) / 2**20:.1f} MiB, "
        f"proxy CPU {cpu:.2f} s ({cpu:.2f} us/row)"
    )
    assert count == 1_000_000
    assert peak[0] - baseline < 64 * 1024 * 1024, (peak[0] - baseline) / 2**20
