"""
The framework against real peers.

  1. Real clients against C{examples/server.py} (run as a subprocess, the way a
     user runs it): PyMySQL, mysql-connector-python (pure Python and the C
     extension) and the C{mariadb} command-line client, without and with TLS
     (certificate and hostname verified), with C{mysql_native_password} and
     C{caching_sha2_password} (fast path, and full authentication after
     C{FLUSH PRIVILEGES}: RSA without TLS, the password itself over TLS).
  2. Our client against real MariaDB 10.11 and OceanBase seekdb from the test
     bed: plain and TLS logins, large and streamed results, a 32 MiB blob,
     prepared statements, multi-results, LOAD DATA LOCAL, relayed errors.
  3. C{examples/client.py} against MariaDB.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater

from obproxy_tx.protocol.client import MySQLClientProtocol, ServerError, connect
from obproxy_tx.protocol.tls import client_tls_options

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("OBPROXY_REQUIRE_SERVERS") == "1"
USERS = [("demo", "demo_pw"), ("sha2", "sha2_pw")]


@attrs.frozen
class ExampleServer:
    """The example server running in a subprocess."""

    host: str
    port: int
    ca: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def example_server(tls_certs: Any) -> Iterator[ExampleServer]:
    """Run C{python examples/server.py --port 0 --tls-cert .. --tls-key ..}."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "examples" / "server.py"),
            "--port",
            "0",
            "--tls-cert",
            tls_certs.cert,
            "--tls-key",
            tls_certs.key,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    match = re.search(r"listening on ([\d.]+):(\d+)", line)
    assert match, f"example server did not start: {line!r}"
    try:
        yield ExampleServer(match.group(1), int(match.group(2)), tls_certs.ca, process)
    finally:
        process.terminate()
        process.wait(10)


def _ssl_cipher(rows: Any) -> str:
    return str(dict(rows).get("Ssl_cipher", ""))


# -- real clients against the example server ---------------------------------------


def _pymysql(server: ExampleServer, user: str, password: str, tls: bool) -> Any:
    import pymysql  # type: ignore[import-untyped]

    kwargs: dict[str, Any] = {"ssl_disabled": True}
    if tls:
        kwargs = {"ssl_ca": server.ca, "ssl_verify_cert": True, "ssl_verify_identity": True}
    return pymysql.connect(
        host="localhost" if tls else server.host,
        port=server.port,
        user=user,
        password=password,
        database="demo",
        **kwargs,
    )


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("user,password", USERS)
def test_pymysql(example_server: ExampleServer, user: str, password: str, tls: bool) -> None:
    """PyMySQL logs in (native or caching_sha2, plain or verified TLS) and reads the table."""
    connection = _pymysql(example_server, user, password, tls)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM fruits")
            assert cursor.fetchall()[:1] == ((1, "apple", 1.25),)
            cursor.execute("SELECT @@version_comment, DATABASE()")
            assert cursor.fetchone() == ("obproxy_tx example server", "demo")
            cursor.execute("SHOW STATUS LIKE 'Ssl_cipher'")
            assert bool(_ssl_cipher(cursor.fetchall())) == tls
            assert isinstance(connection._sock, ssl.SSLSocket) == tls
            with pytest.raises(pymysql_error()) as raised:
                cursor.execute("SELECT FROM WHERE")
            assert raised.value.args[0] == 1064
    finally:
        connection.close()


def pymysql_error() -> type[Exception]:
    """PyMySQL's exception for server errors."""
    import pymysql

    return pymysql.err.ProgrammingError


def _flush_sha2_cache(server: ExampleServer) -> None:
    connection = _pymysql(server, "root", "", False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("FLUSH PRIVILEGES")
    finally:
        connection.close()


@pytest.mark.parametrize("tls", [False, True], ids=["rsa", "tls"])
def test_pymysql_caching_sha2_full_auth(example_server: ExampleServer, tls: bool) -> None:
    """With an empty cache PyMySQL does caching_sha2 full auth (RSA key request, or TLS)."""
    _flush_sha2_cache(example_server)
    connection = _pymysql(example_server, "sha2", "sha2_pw", tls)
    connection.close()
    import pymysql

    _flush_sha2_cache(example_server)
    with pytest.raises(pymysql.err.OperationalError) as raised:
        _pymysql(example_server, "sha2", "wrong", tls)
    assert raised.value.args[0] == 1045
    _warm_sha2_cache(example_server)


def _warm_sha2_cache(server: ExampleServer) -> None:
    """Log in as sha2 with PyMySQL (full authentication if needed) so the fast path works."""
    _pymysql(server, "sha2", "sha2_pw", False).close()


def _connector(server: ExampleServer, user: str, password: str, tls: bool, pure: bool) -> Any:
    import mysql.connector

    if not pure and not mysql.connector.HAVE_CEXT:
        message = "mysql-connector-python's C extension cannot be loaded here"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    kwargs: dict[str, Any] = {"ssl_disabled": True}
    if tls:
        kwargs = {"ssl_ca": server.ca, "ssl_verify_cert": True, "ssl_verify_identity": True}
    return mysql.connector.connect(
        host="localhost" if tls else server.host,
        port=server.port,
        user=user,
        password=password,
        database="demo",
        use_pure=pure,
        **kwargs,
    )


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "cext"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("user,password", USERS)
def test_mysql_connector(
    example_server: ExampleServer, user: str, password: str, tls: bool, pure: bool
) -> None:
    """mysql-connector-python (pure and C) logs in and queries, plain and over TLS."""
    import mysql.connector

    _warm_sha2_cache(example_server)
    connection = _connector(example_server, user, password, tls, pure)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT * FROM fruits")
        assert cursor.fetchall()[:1] == [(1, "apple", 1.25)]
        cursor.execute("SELECT CONNECTION_ID(), 1")
        assert cursor.fetchone()[0] > 0
        cursor.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        assert bool(_ssl_cipher(cursor.fetchall())) == tls
        with pytest.raises(mysql.connector.Error) as raised:
            cursor.execute("SELECT FROM WHERE")
        assert raised.value.errno == 1064
        cursor.close()
    finally:
        connection.close()


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "cext"])
def test_mysql_connector_caching_sha2_full_auth_over_tls(
    example_server: ExampleServer, pure: bool
) -> None:
    """mysql-connector does caching_sha2 full authentication over TLS."""
    _flush_sha2_cache(example_server)
    _connector(example_server, "sha2", "sha2_pw", True, pure).close()


def _mariadb_cli(
    server: ExampleServer, user: str, password: str, tls: bool, sql: str
) -> subprocess.CompletedProcess[str]:
    command = [
        "mariadb",
        "--no-defaults",
        f"-h{'localhost' if tls else server.host}",
        "--protocol=TCP",
        f"-P{server.port}",
        f"-u{user}",
        f"-p{password}",
        "--batch",
        "-e",
        sql,
        "demo",
    ]
    if tls:
        command[2:2] = ["--ssl", f"--ssl-ca={server.ca}", "--ssl-verify-server-cert"]
    else:
        command[2:2] = ["--skip-ssl"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("user,password", USERS)
def test_mariadb_cli(example_server: ExampleServer, user: str, password: str, tls: bool) -> None:
    """The mariadb command-line client logs in and prints the table, plain and over TLS."""
    done = _mariadb_cli(
        example_server,
        user,
        password,
        tls,
        "SELECT * FROM fruits; SHOW STATUS LIKE 'Ssl_cipher'; SHOW DATABASES",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["id\tname\tprice", "1\tapple\t1.25"]
    cipher = [line for line in lines if line.startswith("Ssl_cipher")]
    assert (cipher[0].split("\t")[1] != "") == tls
    assert "information_schema" in lines


@pytest.mark.parametrize("tls", [False, True], ids=["rsa", "tls"])
def test_mariadb_cli_caching_sha2_full_auth(example_server: ExampleServer, tls: bool) -> None:
    """With an empty cache the mariadb CLI does caching_sha2 full auth (RSA key, or over TLS)."""
    _flush_sha2_cache(example_server)
    done = _mariadb_cli(example_server, "sha2", "sha2_pw", tls, "SELECT CURRENT_USER()")
    assert done.returncode == 0, done.stderr
    assert "sha2@%" in done.stdout


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "cext"])
def test_mysql_connector_full_auth_without_tls_is_refused(
    example_server: ExampleServer, pure: bool
) -> None:
    """
    mysql-connector cannot do caching_sha2 full authentication without TLS
    (it does not ask for the RSA key by default; the C extension says so, the pure one sends
    the password in clear, which the server refuses), so the login fails.
    """
    import mysql.connector

    _flush_sha2_cache(example_server)
    try:
        with pytest.raises(mysql.connector.Error):
            _connector(example_server, "sha2", "sha2_pw", False, pure).close()
    finally:
        _warm_sha2_cache(example_server)


def test_mariadb_cli_errors(example_server: ExampleServer) -> None:
    """The mariadb CLI shows our 1064 and 1045 errors as MySQL's."""
    done = _mariadb_cli(example_server, "demo", "demo_pw", False, "FROB")
    assert done.returncode == 1 and "ERROR 1064 (42000)" in done.stderr
    denied = _mariadb_cli(example_server, "demo", "nope", False, "SELECT 1")
    assert "ERROR 1045 (28000): Access denied for user 'demo'@'127.0.0.1'" in denied.stderr


# -- our client against real servers ----------------------------------------------------


def _server(request: pytest.FixtureRequest, kind: str) -> Any:
    return request.getfixturevalue(kind)


async def _open(
    server: Any, account: str = "native", tls: bool = False, **kwargs: Any
) -> MySQLClientProtocol:
    credentials = server.accounts[account]
    options = None
    if tls:
        # No client certificate: seekdb with ssl_client_authentication=TRUE
        # refuses password logins that present one (1045).
        options = client_tls_options(server.host, server.tls.ca)
    endpoint = TCP4ClientEndpoint(_reactor, server.host, server.port)
    return await connect(
        _reactor,
        endpoint,
        credentials.user,
        credentials.password,
        kwargs.pop("database", server.database),
        tls=options,
        **kwargs,
    )


KINDS = ["mariadb", "seekdb"]


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_client_login_query_error(request: pytest.FixtureRequest, kind: str) -> None:
    """Our client logs in, queries, and relays a server error as ServerError."""
    server = _server(request, kind)
    connection = await _open(server)
    try:
        result = await connection.query("SELECT 1 AS one, 'x' AS two, NULL AS three")
        assert result.column_names == ["one", "two", "three"]
        assert result.rows == [(1, "x", None)]
        version = await connection.query("SELECT VERSION()")
        assert version.rows[0][0] == server.version
        with pytest.raises(ServerError) as raised:
            await connection.query("SELECT * FROM no_such_table_here")
        assert raised.value.code == 1146
        assert raised.value.sqlstate == "42S02"
        await connection.ping()
        await connection.reset_connection()
        assert (await connection.query("SELECT 2")).rows == [(2,)]
    finally:
        await connection.quit()


@pytest_twisted.ensureDeferred
async def test_client_bad_password(mariadb: Any) -> None:
    """A wrong password fails with the server's 1045."""
    endpoint = TCP4ClientEndpoint(_reactor, mariadb.host, mariadb.port)
    with pytest.raises(ServerError) as raised:
        await connect(_reactor, endpoint, mariadb.accounts["native"].user, "wrong")
    assert raised.value.code == 1045


@pytest_twisted.ensureDeferred
async def test_client_tls_refused_by_plain_server(seekdb: Any, tls_certs: Any) -> None:
    """A client that asked for TLS refuses to log in to a server without TLS (2026)."""
    endpoint = TCP4ClientEndpoint(_reactor, seekdb.host, seekdb.port)
    account = seekdb.accounts["native"]
    with pytest.raises(ServerError) as refused:
        await connect(
            _reactor,
            endpoint,
            account.user,
            account.password,
            tls=client_tls_options(seekdb.host, tls_certs.ca),
        )
    assert refused.value.code == 2026


@pytest.mark.parametrize("kind", ["mariadb", "seekdb_tls"])
@pytest_twisted.ensureDeferred
async def test_client_tls(request: pytest.FixtureRequest, kind: str) -> None:
    """Our client logs in over TLS with the certificate and IP address verified."""
    server = _server(request, kind)
    assert server.tls is not None, f"{kind} of the test bed has no TLS"
    account = "tls" if "tls" in server.accounts else "native"
    connection = await _open(server, account, tls=True)
    try:
        assert connection.secure
        assert connection.transport.getHandle().get_cipher_name()
        result = await connection.query("SELECT 1, 'tls'")
        assert result.rows == [(1, "tls")]
        if kind == "mariadb":
            status = await connection.query("SHOW STATUS LIKE 'Ssl_cipher'")
            assert status.rows and status.rows[0][1]
    finally:
        await connection.quit()


@pytest_twisted.ensureDeferred
async def test_client_tls_required_account_refused_plain(mariadb: Any) -> None:
    """MariaDB's REQUIRE SSL account refuses our client without TLS."""
    with pytest.raises(ServerError) as raised:
        await _open(mariadb, "tls")
    assert raised.value.code == 1045


_SEQUENCE = {
    "mariadb": "SELECT seq, REPEAT('x', 100) FROM seq_1_to_{n}",
    "seekdb": (
        "WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) "
        "SELECT n, REPEAT('x', 100) FROM s"
    ),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_client_large_result_streamed(request: pytest.FixtureRequest, kind: str) -> None:
    """A 100,000-row result streams to a slow callback; the socket is paused meanwhile."""
    server = _server(request, kind)
    connection = await _open(server)
    pauses = 0
    original = connection.transport.pauseProducing

    def counting_pause() -> None:
        nonlocal pauses
        pauses += 1
        original()

    connection.transport.pauseProducing = counting_pause
    seen = 0

    def on_row(row: tuple[Any, ...]) -> Deferred[None] | None:
        nonlocal seen
        seen += 1
        assert row[0] == seen
        if seen % 20000 == 0:
            return deferLater(_reactor, 0.01, lambda: None)
        return None

    try:
        n = 100000 if kind == "mariadb" else 20000
        if kind == "seekdb":
            await connection.query("SET SESSION cte_max_recursion_depth = 1000000")
        result = await connection.query(_SEQUENCE[kind].format(n=n), on_row=on_row)
        assert result.row_count == n == seen
        assert pauses >= 1
        collected = await connection.query(_SEQUENCE[kind].format(n=5000))
        assert len(collected.rows) == 5000
    finally:
        await connection.quit()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_client_prepared_statements(request: pytest.FixtureRequest, kind: str) -> None:
    """Prepare, execute (binary protocol) with parameters, close."""
    server = _server(request, kind)
    connection = await _open(server)
    try:
        statement = await connection.prepare("SELECT ? + 1, ?, CAST(? AS CHAR)")
        assert len(statement.params) == 3
        result = await statement.execute(41, "hello", None)
        assert result.rows == [(42, "hello", None)]
        again = await statement.execute(1, "", 7)
        assert again.rows[0][0] == 2
        await statement.close()
    finally:
        await connection.quit()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_client_multi_results(request: pytest.FixtureRequest, kind: str) -> None:
    """Several statements in one query give several results."""
    server = _server(request, kind)
    connection = await _open(server)
    try:
        results = await connection.query_multi("SELECT 1; SELECT 2, 3; DO 1")
        assert [r.rows for r in results] == [[(1,)], [(2, 3)], []]
    finally:
        await connection.quit()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_client_32mib_blob(request: pytest.FixtureRequest, kind: str) -> None:
    """A 32 MiB blob goes in through a prepared statement and comes back intact."""
    server = _server(request, kind)
    connection = await _open(server)
    blob = os.urandom(1024) * (32 * 1024)
    table = f"h4_blob_{os.getpid()}"
    try:
        packet = await connection.query("SELECT @@max_allowed_packet")
        if packet.rows[0][0] < 64 * 1024 * 1024:
            admin = await _open(server, "admin")
            await admin.query("SET GLOBAL max_allowed_packet = 134217728")
            await admin.quit()
            await connection.quit()
            connection = await _open(server)
        await connection.query(f"DROP TABLE IF EXISTS {table}")
        await connection.query(f"CREATE TABLE {table} (id INT PRIMARY KEY, b LONGBLOB)")
        statement = await connection.prepare(f"INSERT INTO {table} VALUES (?, ?)")
        inserted = await statement.execute(1, blob)
        assert inserted.affected_rows == 1
        await statement.close()
        result = await connection.query(f"SELECT b, LENGTH(b) FROM {table} WHERE id = 1")
        assert result.rows[0][1] == len(blob)
        assert result.rows[0][0] == blob
    finally:
        await connection.query(f"DROP TABLE IF EXISTS {table}")
        await connection.quit()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_client_load_data_local(request: pytest.FixtureRequest, kind: str) -> None:
    """LOAD DATA LOCAL INFILE sends the file through the reader we give the client."""
    server = _server(request, kind)
    content = "".join(f"{i},name{i}\n" for i in range(1, 1001)).encode()
    asked: list[str] = []

    def reader(name: str) -> bytes:
        asked.append(name)
        return content

    connection = await _open(server, local_infile=reader)
    table = f"h4_infile_{os.getpid()}"
    try:
        await connection.query(f"DROP TABLE IF EXISTS {table}")
        await connection.query(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20))")
        loaded = await connection.query(
            f"LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE {table} "
            "FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n'"
        )
        assert asked == ["rows.csv"]
        assert loaded.affected_rows == 1000
        count = await connection.query(f"SELECT COUNT(*), MAX(name) FROM {table}")
        assert count.rows[0][0] == 1000
    finally:
        await connection.query(f"DROP TABLE IF EXISTS {table}")
        await connection.quit()


@pytest_twisted.ensureDeferred
async def test_client_change_user_and_init_db(mariadb: Any) -> None:
    """COM_CHANGE_USER and COM_INIT_DB on MariaDB."""
    connection = await _open(mariadb)
    try:
        await connection.change_user(mariadb.accounts["nopw"].user, "", mariadb.database)
        who = await connection.query("SELECT CURRENT_USER()")
        assert who.rows[0][0].startswith(mariadb.accounts["nopw"].user + "@")
        with pytest.raises(ServerError) as raised:
            await connection.change_user(mariadb.accounts["native"].user, "wrong")
        assert raised.value.code == 1045
    finally:
        await connection.quit()
    connection = await _open(mariadb)
    try:
        await connection.init_db("information_schema")
        assert (await connection.query("SELECT DATABASE()")).rows == [("information_schema",)]
    finally:
        await connection.quit()


def test_example_client_against_mariadb(mariadb: Any) -> None:
    """examples/client.py prints a real server's rows and exits 0; a server error exits 1."""
    account = mariadb.accounts["native"]
    base = [
        sys.executable,
        str(REPO / "examples" / "client.py"),
        "--host",
        mariadb.host,
        "--port",
        str(mariadb.port),
        "--user",
        account.user,
        "--password",
        account.password,
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [*base, "SELECT 1 + 1, 'hello'"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "2\thello" in done.stdout
    tls = subprocess.run(
        [*base, "--tls", "--tls-ca", mariadb.tls.ca, "SHOW STATUS LIKE 'Ssl_version'"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert tls.returncode == 0, tls.stderr
    assert "Ssl_version\tTLS" in tls.stdout
    failed = subprocess.run(
        [*base, "SELECT * FROM nowhere.nothing"], capture_output=True, text=True, env=env
    )
    assert failed.returncode == 1
    assert "ERROR 1" in failed.stderr
