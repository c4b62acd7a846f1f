"""
The compressed protocol (C{CLIENT_COMPRESS}) end to end, with real peers.

What each peer offers (read from their greetings):

  - MariaDB 10.11 offers C{CLIENT_COMPRESS} (zlib) only; it has no zstd
    protocol compression (C{CLIENT_ZSTD_COMPRESSION_ALGORITHM} is MySQL 8's).
  - OceanBase seekdb offers C{CLIENT_COMPRESS} (zlib) only as well.
  - Our client asks for zlib with C{compression=True} and for zstd with
    C{compression="zstd"} (falling back to zlib when the server does not offer
    zstd, as with both servers here); so zstd is covered by the unit tests only.
  - mysql-connector-python (pure and C extension) asks for zlib with
    C{compress=True}; the C{mariadb} CLI with C{--compress}; PyMySQL has no
    compression support at all.

  1. Our client with compression against real MariaDB and seekdb: login,
     queries, errors, a result of several MiB (many compressed packets, and
     far fewer bytes on the wire than in the rows: the server really
     compressed), a 20 MiB blob both ways (client to server as a prepared
     statement's parameter and as a query text, back as text and binary rows),
     prepared statements, LOAD DATA LOCAL. Negotiation is checked on our side
     (negotiated capabilities, C{connection.compression}) and, on MariaDB, on
     the server's (C{SHOW SESSION STATUS LIKE 'Compression'} is C{ON}); seekdb
     has no such status, so the byte count is its proof. Compression inside
     TLS too (MariaDB).
  2. Real clients with compression against C{examples/server.py --compress}
     (run as a subprocess, as in L{tests.integration.test_framework_clients}):
     mysql-connector-python pure and C extension (each in a fresh interpreter,
     see L{tests.testbed.clients}), the C{mariadb} CLI; the example server
     reports C{Compression} C{ON} in C{SHOW STATUS} exactly when the
     connection negotiated it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from obproxy_tx.protocol.client import MySQLClientProtocol, ServerError, connect
from obproxy_tx.protocol.tls import client_tls_options
from obproxy_tx.wire.constants import Capability

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KINDS = ["mariadb", "seekdb"]
MIB = 1024 * 1024


# -- our client against real servers ---------------------------------------------------


async def _open(
    server: Any, account: str = "native", compression: bool | str = True, **kwargs: Any
) -> MySQLClientProtocol:
    credentials = server.accounts[account]
    endpoint = TCP4ClientEndpoint(_reactor, server.host, server.port)
    return await connect(
        _reactor,
        endpoint,
        credentials.user,
        credentials.password,
        kwargs.pop("database", server.database),
        compression=compression,
        timeout=60.0,
        **kwargs,
    )


def _count_received(connection: MySQLClientProtocol) -> list[int]:
    """
    Count the bytes the transport hands to C{connection} from now on (what
    travelled on the wire, compressed or not); the returned list's one item
    is the running total.
    """
    total = [0]
    original = connection.dataReceived

    def counting(data: bytes) -> None:
        total[0] += len(data)
        original(data)

    connection.dataReceived = counting  # type: ignore[method-assign]
    return total


async def _big_packets_allowed(server: Any, connection: MySQLClientProtocol) -> MySQLClientProtocol:
    """
    Make sure the server accepts 64 MiB packets (as the 32 MiB blob test of
    test_framework_clients does), reconnecting when the global had to change.
    """
    packet = await connection.query("SELECT @@max_allowed_packet")
    if packet.rows[0][0] >= 64 * MIB:
        return connection
    admin = await _open(server, "admin")
    await admin.query("SET GLOBAL max_allowed_packet = 134217728")
    await admin.quit()
    await connection.quit()
    return await _open(server)


def _assert_compressed(server: Any, connection: MySQLClientProtocol) -> None:
    assert server.accounts  # the fixture is a test bed server
    assert connection.server_capabilities & Capability.CLIENT_COMPRESS
    assert not connection.server_capabilities & Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM
    assert connection.capabilities & Capability.CLIENT_COMPRESS
    assert connection.compression == "zlib"


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_compressed_login_queries_errors(request: pytest.FixtureRequest, kind: str) -> None:
    """With compression our client logs in, queries, gets errors, pings, resets; MariaDB agrees."""
    server = request.getfixturevalue(kind)
    connection = await _open(server)
    try:
        _assert_compressed(server, connection)
        if kind == "mariadb":
            status = await connection.query("SHOW SESSION STATUS LIKE 'Compression'")
            assert status.rows == [("Compression", "ON")]
        result = await connection.query("SELECT 1 AS one, 'x' AS two, NULL AS three")
        assert result.rows == [(1, "x", None)]
        assert (await connection.query("SELECT VERSION()")).rows[0][0] == server.version
        with pytest.raises(ServerError) as raised:
            await connection.query("SELECT * FROM no_such_table_here")
        assert (raised.value.code, raised.value.sqlstate) == (1146, "42S02")
        results = await connection.query_multi("SELECT 1; SELECT 2, 3; DO 1")
        assert [r.rows for r in results] == [[(1,)], [(2, 3)], []]
        await connection.ping()
        await connection.reset_connection()
        assert (await connection.query("SELECT 2")).rows == [(2,)]
    finally:
        await connection.quit()
    if kind == "mariadb":
        plain = await _open(server, compression=False)
        try:
            assert plain.compression is None
            status = await plain.query("SHOW SESSION STATUS LIKE 'Compression'")
            assert status.rows == [("Compression", "OFF")]
        finally:
            await plain.quit()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_compressed_zstd_request_falls_back_to_zlib(
    request: pytest.FixtureRequest, kind: str
) -> None:
    """Asking for zstd from a server that offers only zlib gives a working zlib connection."""
    server = request.getfixturevalue(kind)
    connection = await _open(server, compression="zstd")
    try:
        _assert_compressed(server, connection)
        assert not connection.capabilities & Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM
        assert (await connection.query("SELECT REPEAT('z', 1000)")).rows == [("z" * 1000,)]
    finally:
        await connection.quit()


@pytest_twisted.ensureDeferred
async def test_compressed_over_tls(mariadb: Any) -> None:
    """Compression inside TLS: MariaDB reports both, and a 20 MB value comes back intact."""
    connection = await _open(mariadb, "tls", tls=client_tls_options(mariadb.host, mariadb.tls.ca))
    try:
        assert connection.secure
        _assert_compressed(mariadb, connection)
        status = await connection.query(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Compression', 'Ssl_cipher')"
        )
        facts = dict(status.rows)
        assert facts["Compression"] == "ON" and facts["Ssl_cipher"]
        result = await connection.query("SELECT REPEAT('ab', 10000000)")
        assert result.rows == [("ab" * 10000000,)]
    finally:
        await connection.quit()


#: Rows 1..{n} with a second column {expr} (where C{i} is the row number).
_SEQUENCE = {
    "mariadb": "SELECT i, {expr} FROM (SELECT seq AS i FROM seq_1_to_{n}) AS s",
    "seekdb": (
        "WITH RECURSIVE s (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
        "SELECT i, {expr} FROM s"
    ),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_compressed_result_of_several_mib(request: pytest.FixtureRequest, kind: str) -> None:
    """A result of several MiB arrives intact, in far fewer bytes than its rows hold."""
    server = request.getfixturevalue(kind)
    connection = await _open(server)
    try:
        _assert_compressed(server, connection)
        n = 30000
        if kind == "seekdb":
            await connection.query("SET SESSION cte_max_recursion_depth = 1000000")
        received = _count_received(connection)
        result = await connection.query(_SEQUENCE[kind].format(n=n, expr="REPEAT('x', 200)"))
        assert [row[0] for row in result.rows] == list(range(1, n + 1))
        assert all(row[1] == "x" * 200 for row in result.rows)
        row_bytes = sum(len(str(row[0])) + 200 + 2 for row in result.rows)
        assert row_bytes > 5 * MIB
        assert 1000 < received[0] < row_bytes // 10, (received[0], row_bytes)
        # Entropy too: 64-byte hex digests compress only about 2:1.
        digests = await connection.query(
            _SEQUENCE[kind].format(n=n, expr="SHA2(CONCAT('r', i), 256)")
        )
        expected = [hashlib.sha256(f"r{i}".encode()).hexdigest() for i in range(1, n + 1)]
        assert [row[1] for row in digests.rows] == expected
    finally:
        await connection.quit()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_compressed_20mib_blob(request: pytest.FixtureRequest, kind: str) -> None:
    """
    A 20 MiB blob (17 MiB random, sent as is; 3 MiB compressible) goes in as a prepared
    statement's parameter and comes back intact as a text and a binary row;
    a 20 MiB query text goes in too.
    """
    server = request.getfixturevalue(kind)
    connection = await _big_packets_allowed(server, await _open(server))
    blob = os.urandom(17 * MIB) + os.urandom(1024) * (3 * 1024)
    table = f"h12_zblob_{os.getpid()}"
    try:
        _assert_compressed(server, connection)
        await connection.query(f"DROP TABLE IF EXISTS {table}")
        await connection.query(f"CREATE TABLE {table} (id INT PRIMARY KEY, b LONGBLOB)")
        insert = await connection.prepare(f"INSERT INTO {table} VALUES (?, ?)")
        assert (await insert.execute(1, blob)).affected_rows == 1
        await insert.close()
        text = await connection.query(f"SELECT b, LENGTH(b), MD5(b) FROM {table} WHERE id = 1")
        assert text.rows[0][1] == len(blob) == 20 * MIB
        assert text.rows[0][2] == hashlib.md5(blob).hexdigest()  # noqa: S324
        assert text.rows[0][0] == blob
        select = await connection.prepare(f"SELECT b FROM {table} WHERE id = ?")
        binary = await select.execute(1)
        assert binary.rows[0][0] == blob
        await select.close()
        literal = "ab" * (10 * MIB)
        echoed = await connection.query(f"SELECT LENGTH('{literal}') AS n")
        assert echoed.rows == [(20 * MIB,)]
        assert (await connection.query("SELECT 'still in step'")).rows == [("still in step",)]
    finally:
        await connection.query(f"DROP TABLE IF EXISTS {table}")
        await connection.quit()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_compressed_prepared_statements(request: pytest.FixtureRequest, kind: str) -> None:
    """Prepare, execute with parameters (binary rows, several MiB of them), close."""
    server = request.getfixturevalue(kind)
    connection = await _open(server)
    try:
        _assert_compressed(server, connection)
        statement = await connection.prepare("SELECT ? + 1, ?, CAST(? AS CHAR)")
        assert len(statement.params) == 3
        assert (await statement.execute(41, "hello", None)).rows == [(42, "hello", None)]
        assert (await statement.execute(1, "", 7)).rows == [(2, "", "7")]
        await statement.close()
        if kind == "seekdb":
            await connection.query("SET SESSION cte_max_recursion_depth = 1000000")
        many = await connection.prepare(_SEQUENCE[kind].format(n=20000, expr="REPEAT('x', ?)"))
        result = await many.execute(150)
        assert len(result.rows) == 20000
        assert result.rows[-1] == (20000, "x" * 150)
        await many.close()
    finally:
        await connection.quit()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_compressed_load_data_local(request: pytest.FixtureRequest, kind: str) -> None:
    """LOAD DATA LOCAL INFILE sends a file of several MiB through the compressed protocol."""
    server = request.getfixturevalue(kind)
    rows = 100000
    content = "".join(f"{i},name{i:030d}\n" for i in range(1, rows + 1)).encode()
    assert len(content) > 3 * MIB
    asked: list[str] = []

    def reader(name: str) -> bytes:
        asked.append(name)
        return content

    connection = await _open(server, local_infile=reader)
    table = f"h12_zinfile_{os.getpid()}"
    try:
        _assert_compressed(server, connection)
        await connection.query(f"DROP TABLE IF EXISTS {table}")
        await connection.query(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(40))")
        loaded = await connection.query(
            f"LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE {table} "
            "FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n'"
        )
        assert asked == ["rows.csv"]
        assert loaded.affected_rows == rows
        count = await connection.query(f"SELECT COUNT(*), MAX(name) FROM {table}")
        assert count.rows == [(rows, f"name{rows:030d}")]
    finally:
        await connection.query(f"DROP TABLE IF EXISTS {table}")
        await connection.quit()


# -- real clients against the example server -------------------------------------------


@attrs.frozen
class ExampleServer:
    """The example server running in a subprocess, offering compression."""

    host: str
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def compressing_server() -> Iterator[ExampleServer]:
    """Run C{python examples/server.py --port 0 --compress}."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "server.py"), "--port", "0", "--compress"],
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
        yield ExampleServer(match.group(1), int(match.group(2)), process)
    finally:
        process.terminate()
        process.wait(10)


#: Run in a fresh interpreter (the C extension must load before C{ssl}: see
#: L{tests.testbed.clients}); prints one JSON object.
_CONNECTOR_SCRIPT = r"""
import hashlib, json, sys
args = json.loads(sys.argv[1])
if not args["use_pure"]:
    import _mysql_connector  # noqa: F401
import mysql.connector

out = {}
conn = mysql.connector.connect(**args)
out["class"] = type(conn).__name__
cur = conn.cursor()
cur.execute("SHOW STATUS LIKE 'Compression'")
out["status"] = cur.fetchall()
cur.execute("SELECT * FROM fruits")
out["fruits"] = cur.fetchall()[:1]
cur.execute("SELECT * FROM seq_1_to_200000")
out["seq"] = [row[0] for row in cur.fetchall()] == list(range(1, 200001))
big = "ab" * (10 * 1024 * 1024)
cur.execute("SELECT '" + big + "' AS s")
value = cur.fetchall()[0][0]
out["big"] = [len(value), value == big]
try:
    cur.execute("SELECT FROM WHERE")
except mysql.connector.Error as exc:
    out["error"] = exc.errno
prepared = conn.cursor(prepared=True)
prepared.execute("SELECT ?, ?", (41, "hello"))
out["prepared"] = [list(row) for row in prepared.fetchall()]
cur.execute("SELECT 'still in step'")
out["after"] = cur.fetchall()
conn.close()
print(json.dumps(out))
"""


def _connector(server: ExampleServer, pure: bool, compress: bool) -> dict[str, Any]:
    args = {
        "host": server.host,
        "port": server.port,
        "user": "demo",
        "password": "demo_pw",
        "database": "demo",
        "use_pure": pure,
        "compress": compress,
        "ssl_disabled": True,
    }
    done = subprocess.run(
        [sys.executable, "-c", _CONNECTOR_SCRIPT, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "cext"])
def test_mysql_connector_compressed(compressing_server: ExampleServer, pure: bool) -> None:
    """
    mysql-connector-python (pure and C extension) with C{compress=True}
    negotiates compression with the example server and runs queries, a
    200,000-row result, a 20 MiB query and row, an error and a prepared
    statement over it.
    """
    seen = _connector(compressing_server, pure, compress=True)
    assert seen["class"] == ("MySQLConnection" if pure else "CMySQLConnection")
    assert seen["status"] == [["Compression", "ON"]]
    assert seen["fruits"] == [[1, "apple", 1.25]]
    assert seen["seq"] is True
    assert seen["big"] == [20 * MIB, True]
    assert seen["error"] == 1064
    assert seen["prepared"] == [[41, "hello"]]
    assert seen["after"] == [["still in step"]]


def test_mysql_connector_uncompressed_against_compressing_server(
    compressing_server: ExampleServer,
) -> None:
    """A client that does not ask for compression gets an uncompressed connection."""
    seen = _connector(compressing_server, True, compress=False)
    assert seen["status"] == [["Compression", "OFF"]]
    assert seen["big"] == [20 * MIB, True]


def test_pymysql_has_no_compression(compressing_server: ExampleServer) -> None:
    """
    PyMySQL cannot use the compressed protocol (it never asks for
    C{CLIENT_COMPRESS}); it still logs in to a server offering it, uncompressed.
    """
    import pymysql  # type: ignore[import-untyped]

    connection = pymysql.connect(
        host=compressing_server.host,
        port=compressing_server.port,
        user="demo",
        password="demo_pw",
        database="demo",
    )
    try:
        assert not connection.client_flag & Capability.CLIENT_COMPRESS
        with connection.cursor() as cursor:
            cursor.execute("SHOW STATUS LIKE 'Compression'")
            assert cursor.fetchall() == (("Compression", "OFF"),)
    finally:
        connection.close()


def _mariadb_cli(
    server: ExampleServer, *options: str, sql: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        "mariadb",
        "--no-defaults",
        f"-h{server.host}",
        "--protocol=TCP",
        f"-P{server.port}",
        "-udemo",
        "-pdemo_pw",
        "--skip-ssl",
        "--batch",
        *options,
    ]
    if sql is not None:
        command += ["-e", sql]
    command.append("demo")
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)


def test_mariadb_cli_compressed(compressing_server: ExampleServer) -> None:
    """
    The mariadb CLI with C{--compress} negotiates compression and reads the
    table, 100,000 streamed rows and a 20 MiB value it sent as a 20 MiB query.
    """
    done = _mariadb_cli(
        compressing_server,
        "--compress",
        sql="SHOW STATUS LIKE 'Compression'; SELECT * FROM fruits; SELECT * FROM seq_1_to_100000",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == [
        "Variable_name\tValue",
        "Compression\tON",
        "id\tname\tprice",
        "1\tapple\t1.25",
    ]
    assert lines[-100000:] == [str(i) for i in range(1, 100001)]
    literal = "ab" * (10 * MIB)
    big = _mariadb_cli(
        compressing_server,
        "--compress",
        "--max-allowed-packet=64M",
        stdin=f"SELECT '{literal}' AS s; SHOW STATUS LIKE 'Compression';\n",
    )
    assert big.returncode == 0, big.stderr
    assert big.stdout.splitlines() == ["s", literal, "Variable_name\tValue", "Compression\tON"]
    plain = _mariadb_cli(compressing_server, sql="SHOW STATUS LIKE 'Compression'")
    assert plain.stdout.splitlines()[1:] == ["Compression\tOFF"]
