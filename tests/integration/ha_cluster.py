"""
Three MariaDB instances (L{tests.testbed.instances}) for the high-availability tests that kill
and restart backends under the proxy, shared by the test modules of one pytest session.

Import the fixture into a test module: C{from tests.integration.ha_cluster import ha_instances}.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List

import pymysql
import pytest

from tests.testbed import Server
from tests.testbed.instances import start_instance, stop_instance

#: The instances' names (directories under <testbed>/instances).
NAMES = ("ledger1", "ledger2", "ledger3")
#: Rows of the sbtest table each instance gets.
ROWS = 1000


def direct(server: Server, **kwargs: Any) -> Any:
    """
    A PyMySQL connection straight to C{server} (admin account, its database, autocommit).
    """
    admin = server.accounts["admin"]
    return pymysql.connect(
        host=server.host,
        port=server.port,
        user=admin.user,
        password=admin.password,
        database=server.database,
        autocommit=True,
        **kwargs,
    )


def prepare(server: Server) -> None:
    """
    Give C{server} a fresh, empty C{ledger} table and a C{sbtest} table of L{ROWS} rows
    (C{c} is C{row-<id>}), as L{tests.integration.ledger_load} expects.
    """
    with direct(server) as connection, connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS ledger")
        cursor.execute(
            "CREATE TABLE ledger (id BIGINT PRIMARY KEY, client INT NOT NULL, "
            "kind VARCHAR(16) NOT NULL, amount INT NOT NULL) ENGINE=InnoDB"
        )
        cursor.execute("DROP TABLE IF EXISTS sbtest")
        cursor.execute("CREATE TABLE sbtest (id INT PRIMARY KEY, c VARCHAR(32) NOT NULL)")
        cursor.executemany(
            "INSERT INTO sbtest VALUES (%s, %s)", [(i, f"row-{i}") for i in range(1, ROWS + 1)]
        )


def start_cluster() -> Dict[str, Server]:
    """
    Start the three instances (or reuse running ones) and L{prepare} each; by name.
    """
    # One after the other: mariadb-install-db runs of the same moment collide on /tmp.
    servers = {name: start_instance(name) for name in NAMES}
    with ThreadPoolExecutor(len(NAMES)) as pool:
        list(pool.map(prepare, servers.values()))
    return servers


def stop_cluster(servers: Dict[str, Server]) -> None:
    """Stop those of L{start_cluster}'s instances that it started itself."""
    for name, server in servers.items():
        if server.started_here:
            stop_instance(name)


def ledger_ids(server: Server) -> List[int]:
    """Every id in C{server}'s C{ledger} table."""
    with direct(server) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id FROM ledger")
        return [int(row[0]) for row in cursor.fetchall()]


@pytest.fixture(scope="session")
def ha_instances() -> Iterator[Dict[str, Server]]:
    """
    The three instances by name, each with a fresh C{ledger} table and a C{sbtest} table of
    L{ROWS} rows; stopped at the end of the session if this session started them.
    """
    servers = start_cluster()
    yield servers
    stop_cluster(servers)
