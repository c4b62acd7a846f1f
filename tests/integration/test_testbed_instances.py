"""
The test bed's named MariaDB instances (L{tests.testbed.instances}): a SIGKILLed instance comes
back on the same port with its committed rows, a SIGSTOPped one stops answering and answers again
after SIGCONT.
"""

from __future__ import annotations

import signal
from typing import Iterator

import pymysql
import pytest

from tests.testbed import Server, instances, pid_alive

pytestmark = pytest.mark.integration

NAME = "tb_selftest"


@pytest.fixture
def instance() -> Iterator[Server]:
    server = instances.start_instance(NAME, reuse=False)
    try:
        yield server
    finally:
        instances.stop_instance(NAME)


def _connect(server: Server, **kwargs: object) -> pymysql.connections.Connection:
    admin = server.account("admin")
    return pymysql.connect(
        host=server.host,
        port=server.port,
        user=admin.user,
        password=admin.password,
        database=server.database,
        autocommit=True,
        **kwargs,
    )


def test_kill_and_restart_keeps_port_and_commits(instance: Server) -> None:
    """
    A commit acknowledged before a SIGKILL is there after the restart, on the same port; while
    the instance is dead its process is gone.
    """
    conn = _connect(instance)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        cur.execute("INSERT INTO t VALUES (1), (2)")
    instances.kill_instance(NAME, signal.SIGKILL)
    assert instances.instance_status(NAME) is None
    # Its process is gone, so nothing of it listens any more. (Connecting to the port would
    # not show that on a shared machine: any other process may have bound it since.)
    assert not pid_alive(instance.pid)
    back = instances.restart_instance(NAME)
    assert back.port == instance.port
    assert back.pid != instance.pid
    conn = _connect(back)
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM t ORDER BY id")
        assert cur.fetchall() == ((1,), (2,))
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone()[0].startswith("admin@")
    conn.close()


def test_sigstop_hangs_until_sigcont(instance: Server) -> None:
    """
    A SIGSTOPped instance accepts TCP (the kernel does) but answers nothing; SIGCONT resumes it.
    """
    instances.kill_instance(NAME, signal.SIGSTOP)
    try:
        assert instances.instance_status(NAME) is not None
        with pytest.raises(pymysql.err.OperationalError):
            _connect(instance, connect_timeout=1, read_timeout=1)
    finally:
        instances.kill_instance(NAME, signal.SIGCONT)
    conn = _connect(instance)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()
