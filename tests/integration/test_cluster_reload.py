"""
Clusters changed by C{SIGHUP} (issue 6, reload; L{obproxy_tx.session.retire}):
C{twistd -n obproxy -c conf.yaml} in a subprocess, the test bed's MariaDB (X)
and a second MariaDB instance (Y, L{tests.testbed.instances}), real clients.

  1. The file adds Y to the cluster, a user entry and a second cluster; SIGHUP:
     new logins reach Y (C{@@port}), the new user logs in (refused before), the
     new cluster serves, C{SHOW PROXYCONGESTION ALL} lists Y; sessions opened
     before keep going.
  2. The file removes X and the second cluster; SIGHUP, with one client inside a
     transaction on X, one idle client on X (a user variable set) and one idle
     client of the removed cluster: C{SHOW PROXYCONGESTION ALL} drops X at
     once; the idle client's next statement runs on Y with its variable; the
     removed cluster's client is told (1053, or a lost connection as its library
     words it); the transaction goes on on X and commits, its rows are on X;
     the same client's next statement runs on Y; finally no connection of the
     proxy is left on X.

The figures (SIGHUP to the first login on Y, to X out of SHOW PROXYCONGESTION,
to the last session on X closed) are printed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, List, Set, Tuple

import pymysql  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests.integration.test_drain_reload import catches, direct, run, tag_table, wait_until
from tests.integration.test_twistd import free_port, spawn, twistd_command, wait_for_port
from tests.proxy_fixtures import verifier
from tests.testbed import Server
from tests.testbed.instances import start_instance, stop_instance

pytestmark = pytest.mark.integration

TABLE = "r6_reload"
SECOND = "r6-second"


@pytest.fixture
def second() -> Iterator[Server]:
    """A second MariaDB instance (stopped afterwards if this test started it)."""
    server = start_instance(SECOND)
    yield server
    if server.started_here:
        stop_instance(SECOND)


@pytest.fixture
def table(mariadb: Server) -> Iterator[str]:
    """An empty table C{r6_reload(tag)} in the test database, dropped afterwards."""
    with tag_table(mariadb, TABLE) as name:
        yield name


def _conf(port: int, servers: List[Server], users: List[Tuple[str, str]], spare: bool) -> str:
    listed = ", ".join(f'"{s.host}:{s.port}"' for s in servers)
    entries = "".join(
        f'      - {{name: {user}, tenant: sys, verifier: "{verifier(password)}"}}\n'
        for user, password in users
    )
    text = f"""\
listen: "tcp:{port}:interface=127.0.0.1"
graceful_shutdown_timeout: 20s
short_async_task_timeout: 2s
clusters:
  - name: mdb
    type: mysql
    servers: [{listed}]
    users:
{entries}"""
    if spare:
        text += f"""\
  - name: spare
    type: mysql
    servers: [{listed}]
    users:
{entries}"""
    return text


def _connect(port: int, account: Any, cluster: str = "", **kwargs: Any) -> Any:
    user = f"{account.user}@sys#{cluster}" if cluster else account.user
    return pymysql.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        password=account.password,
        database="test",
        connect_timeout=5,
        read_timeout=30,
        autocommit=True,
        **kwargs,
    )


def _port_of(connection: Any) -> int:
    return int(run(connection, "SELECT @@port")[0][0])


def _congested_servers(port: int) -> List[Tuple[str, str]]:
    admin = pymysql.connect(host="127.0.0.1", port=port, user="root@proxysys", password="")
    try:
        with admin.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute("SHOW PROXYCONGESTION ALL")
            return sorted((row["cluster_name"], row["server_ip"]) for row in cursor.fetchall())
    finally:
        admin.close()


def _connections_on(server: Server, user: str) -> Set[int]:
    """The ids of C{user}'s connections on C{server}."""
    with direct(server) as connection:
        rows = run(
            connection, f"SELECT id FROM information_schema.processlist WHERE user = '{user}'"
        )
    return {int(row[0]) for row in rows}


def test_sighup_adds_and_removes_servers_users_and_clusters(
    processes: List[subprocess.Popen[str]],
    mariadb: Server,
    second: Server,
    table: str,
    tmp_path: Path,
) -> None:
    x, y = mariadb, second
    native, admin = x.account("native"), x.account("admin")
    x_addr, y_addr = f"{x.host}:{x.port}", f"{y.host}:{y.port}"
    # Connections on X that are not this proxy's (earlier tests' pools, if any).
    before = _connections_on(x, native.user)
    port = free_port()
    conf = tmp_path / "conf.yaml"
    conf.write_text(_conf(port, [x], [(native.user, native.password)], spare=False))
    process = spawn(
        processes,
        twistd_command("-n", f"--pidfile={tmp_path / 'twistd.pid'}", "obproxy", "-c", str(conf)),
    )
    wait_for_port(process, port)
    wait_until(lambda: catches(process.pid, signal.SIGHUP), "the SIGHUP handler")
    assert _congested_servers(port) == [("mdb", x_addr)]
    early = _connect(port, native)
    assert _port_of(early) == x.port
    with pytest.raises(pymysql.err.OperationalError) as refused:
        _connect(port, admin)
    assert refused.value.args[0] == 1045

    # 1. Y, a user and a cluster added.
    users = [(native.user, native.password), (admin.user, admin.password)]
    conf.write_text(_conf(port, [x, y], users, spare=True))
    hup = time.monotonic()
    process.send_signal(signal.SIGHUP)
    wait_until(lambda: ("spare", y_addr) in _congested_servers(port), "reload")
    first_on_y = None
    ports = []
    held = []
    # Held open: a login takes the shared pool's idle session first, else the next server.
    for _ in range(4):
        held.append(_connect(port, native))
        ports.append(_port_of(held[-1]))
        if first_on_y is None and ports[-1] == y.port:
            first_on_y = time.monotonic() - hup
    assert sorted(set(ports)) == sorted({x.port, y.port}), ports
    for connection in held:
        connection.close()
    assert _congested_servers(port) == sorted(
        [("mdb", x_addr), ("mdb", y_addr), ("spare", x_addr), ("spare", y_addr)]
    )
    newcomer = _connect(port, admin)
    assert run(newcomer, "SELECT CURRENT_USER()")[0][0].startswith(admin.user + "@")
    newcomer.close()
    assert _port_of(early) == x.port  # kept, on its server

    # Clients on X: one in a transaction, one idle with a variable; one of the spare cluster.
    in_tx = _connect(port, native)
    while _port_of(in_tx) != x.port:  # new logins take the servers in turn
        in_tx.close()
        in_tx = _connect(port, native)
    run(in_tx, "BEGIN")
    run(in_tx, f"INSERT INTO {table} VALUES ('tx-1')")
    idle = early
    run(idle, "SET @kept = 42")
    spare = _connect(port, native, cluster="spare")
    assert run(spare, "SELECT 1") == [(1,)]

    # 2. X and the spare cluster removed.
    conf.write_text(_conf(port, [y], users, spare=False))
    hup = time.monotonic()
    process.send_signal(signal.SIGHUP)
    wait_until(lambda: _congested_servers(port) == [("mdb", y_addr)], "X out of the table")
    out_of_table = time.monotonic() - hup
    # The idle client moved to Y transparently, its variable with it.
    assert run(idle, "SELECT @@port, @kept") == [(y.port, 42)]
    # The removed cluster's client is told on its next statement.
    with pytest.raises(pymysql.err.MySQLError) as told:
        run(spare, "SELECT 1")
    assert told.value.args[0] in {1053, 2013, 2006}, told.value.args
    # The transaction goes on where it began and commits there.
    run(in_tx, f"INSERT INTO {table} VALUES ('tx-2')")
    assert _port_of(in_tx) == x.port
    run(in_tx, "COMMIT")
    with direct(x) as connection:
        assert run(connection, f"SELECT tag FROM {table} ORDER BY tag") == [("tx-1",), ("tx-2",)]
    # Free of its transaction, its server session to X is closed at the retirement's next
    # look (every 0.1 s), so the statement right after the COMMIT may still find it there.
    wait_until(lambda: not _connections_on(x, native.user) - before, "no session left on X")
    all_closed = time.monotonic() - hup
    assert _port_of(in_tx) == y.port
    assert _congested_servers(port) == [("mdb", y_addr)]
    for connection in (idle, in_tx):
        connection.close()
    print(
        f"\nreload figures: SIGHUP to the first login on Y {first_on_y:.2f}s; "
        f"SIGHUP to X out of SHOW PROXYCONGESTION {out_of_table:.2f}s; "
        f"to the last session on X closed {all_closed:.2f}s (after the COMMIT); "
        f"the removed cluster's client got {told.value.args[0]}"
    )
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert "clusters changed" in output
    assert "was removed" in output
