"""
mysql-connector-python's C extension (libmysqlclient 8.4) through the proxy
to seekdb and MariaDB, and a client that pipelines its commands.

The C extension runs in a subprocess: in this process it would deadlock with
the in-process proxy, since it keeps the GIL while it waits for an answer
(C{mysql_autocommit}), so the reactor could never read its query. Its login
sends C{SET NAMES ... COLLATE ...} then C{SET NAMES ...} while the proxy reads
back the variables the server did not report, the case that once stalled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Generator, Iterator

import pytest
import pytest_twisted

from tests.proxy_fixtures import BACKENDS, Proxy, in_thread, start_proxy, stop_proxy
from tests.testbed import wireclient

pytestmark = pytest.mark.integration

_SCRIPT = r"""
import json, sys
args = json.loads(sys.argv[1])
import _mysql_connector  # noqa: F401  (first, before ssl: see tests/testbed/clients.py)
import mysql.connector

out = {}
conn = mysql.connector.connect(use_pure=False, charset="utf8mb4",
                               collation="utf8mb4_general_ci", **args["connect"])
out["class"] = type(conn).__name__
cur = conn.cursor()
for sql in ("SET NAMES utf8mb4", "SET @t = NOW()"):
    cur.execute(sql)
cur.execute("SELECT 1 + 1, @t IS NOT NULL, @@character_set_client")
out["plain"] = [list(r) for r in cur.fetchall()]
prepared = conn.cursor(prepared=True)
sql = "SELECT ?, ? + 1, CONCAT(?, 'x')"
prepared.execute(sql, ("a", 1, "b"))
out["first"] = [list(r) for r in prepared.fetchall()]
prepared.execute(sql, ("c", 2, None))
out["second"] = [list(r) for r in prepared.fetchall()]
cur.execute("SET @obproxy_route_addr = '%s'" % args["route"])
prepared.execute(sql, ("d", 3, "e"))
out["rerouted"] = [list(r) for r in prepared.fetchall()]
prepared.close()
cur.execute("SELECT @t IS NOT NULL, 'done'")
out["last"] = [list(r) for r in cur.fetchall()]
conn.close()
def plain(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode()
    return v
print(json.dumps({k: v if isinstance(v, str) else [[plain(x) for x in r] for r in v]
                  for k, v in out.items()}))
"""


@pytest.fixture(params=BACKENDS)
def proxy(request: pytest.FixtureRequest) -> Iterator[Proxy]:
    """A proxy in front of seekdb, then MariaDB."""
    backend = request.getfixturevalue(request.param)
    started = start_proxy(backend)
    yield started
    stop_proxy(started)


@pytest_twisted.inlineCallbacks
def test_connector_c_extension_through_the_proxy(proxy: Proxy) -> Generator[Any, Any, None]:
    """
    The C extension logs in (its two SET NAMES), sets variables, runs queries
    and prepared statements, also after a forced route to a second server session.
    """
    backend = proxy.backend
    args = {
        "connect": {
            "host": "127.0.0.1",
            "port": proxy.port,
            "user": proxy.user,
            "password": proxy.password,
            "database": backend.database,
            "connection_timeout": 30,
        },
        "route": f"localhost:{backend.port}",
    }

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _SCRIPT, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    done = yield in_thread(run)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["class"] == "CMySQLConnection"
    assert out["plain"] == [[2, 1, "utf8mb4"]]
    assert out["first"] == [["a", 2, "bx"]]
    assert out["second"] == [["c", 3, None]]
    assert out["rerouted"] == [["d", 4, "ex"]]
    assert out["last"] == [[1, "done"]]


@pytest_twisted.inlineCallbacks
def test_pipelined_queries_through_the_proxy(proxy: Proxy) -> Generator[Any, Any, None]:
    """
    Statements written back to back in one piece (including ones the proxy
    reads variables back after) each get their answer, in order.
    """
    backend = proxy.backend
    statements = [
        "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'",
        "SET NAMES utf8mb4",
        "SET @t = NOW(), @n = 41 + 1",
        "SELECT 1",
        "SELECT @t IS NOT NULL, @n",
        "SELECT CONNECTION_ID() > 0",
        "SELECT 'last'",
    ]

    def run() -> list[Any]:
        client = wireclient.connect("127.0.0.1", proxy.port, timeout=30)
        try:
            client.login(proxy.user, proxy.password, backend.database)
            data = b""
            for sql in statements:
                payload = b"\x03" + sql.encode()
                data += len(payload).to_bytes(3, "little") + b"\x00" + payload
            client._sock.sendall(data)
            return [client._read_result()[1] for _ in statements]
        finally:
            client.close()

    results = yield in_thread(run)
    assert results[:3] == [[], [], []]
    assert results[3] == [(b"1",)]
    assert results[4] == [(b"1", b"42")]
    assert results[5] == [(b"1",)]
    assert results[6] == [(b"last",)]
