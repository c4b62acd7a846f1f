"""
Worker processes and proxy nodes, end to end: C{twistd obproxy} subprocesses
in front of the MariaDB test bed, real clients (PyMySQL).

  - One proxy with C{work_thread_num: 2}: clients connect until sessions live
    on both workers; C{SHOW PROXYSESSION} from one lists all of them; C{KILL}
    of a session owned by the other worker closes it (the victim gets 2013);
    C{KILL QUERY} of a C{SLEEP} there stops it (1317); the privilege answers
    (1094, 1095) are those of one process; C{ALTER PROXYCONFIG} reaches the
    other worker; C{SHOW PROXYSTAT} counts both; a killed worker comes back.
  - Two proxy processes on different ports, peers of each other: C{SHOW
    PROXYSESSION} on node A lists node B's sessions and C{KILL} on A reaches
    B; a node with another secret is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

import pymysql  # type: ignore[import-untyped, unused-ignore]
import pytest

from obproxy_tx.session.ids import ClientSessionIdLayout
from tests.integration.test_twistd import free_port, spawn, twistd_command, wait_for_port
from tests.proxy_fixtures import verifier
from tests.testbed import Server

SECRET = "integration-secret"


@pytest.fixture
def processes() -> Iterator[List[subprocess.Popen[str]]]:
    """
    Proxy processes a test starts; stopped (SIGTERM, then SIGKILL) at the end.
    """
    started: List[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate(timeout=10)


class Node:
    """
    A C{twistd obproxy} process in front of MariaDB.

    @ivar port: its SQL port.
    @ivar channel: its channel port (C{proxy_peer_listen}), or 0.
    @ivar proxy_id: its C{proxy_id}.
    @ivar workers: its C{work_thread_num}.
    """

    def __init__(
        self,
        processes: List[subprocess.Popen[str]],
        mariadb: Server,
        tmp_path: Path,
        name: str,
        *,
        workers: int = 1,
        proxy_id: int = 0,
        channel: int = 0,
        peers: Sequence[int] = (),
        secret: str = SECRET,
    ) -> None:
        self.mariadb = mariadb
        self.port = free_port()
        self.channel = channel
        self.proxy_id = proxy_id
        self.workers = workers
        native = mariadb.account("native")
        admin = mariadb.account("admin")
        conf = tmp_path / f"{name}.yaml"
        conf.write_text(
            f"""
clusters:
  - name: cl
    type: mysql
    servers: ['{mariadb.host}:{mariadb.port}']
    users:
      - {{name: {native.user}, tenant: sys, verifier: '{verifier(native.password)}'}}
      - {{name: {native.user}, tenant: t1, verifier: '{verifier(native.password)}'}}
      - {{name: {admin.user}, tenant: sys, verifier: '{verifier(admin.password)}'}}
""",
            encoding="utf-8",
        )
        options = [
            "local_bound_ip=127.0.0.1",
            f"work_thread_num={workers}",
            f"proxy_id={proxy_id}",
        ]
        if channel:
            options.append(f"proxy_peer_listen=tcp:{channel}:interface=127.0.0.1")
        if peers:
            options.append("proxy_peers=" + ";".join(f"127.0.0.1:{port}" for port in peers))
        if channel or peers:
            options.append(f"proxy_cluster_secret={secret}")
        self.process = spawn(
            processes,
            twistd_command(
                "-n",
                "--pidfile=",
                "obproxy",
                "-c",
                str(conf),
                "-p",
                str(self.port),
                "-o",
                ",".join(options),
            ),
        )
        wait_for_port(self.process, self.port)
        self.layout = ClientSessionIdLayout(2, proxy_id=proxy_id, worker_count=workers)

    def connect(self, role: str = "native", tenant: str = "sys") -> Any:
        """
        A client logged in through this node (C{role} of the test bed, or
        C{"proxysys"} for the local admin).
        """
        if role == "proxysys":
            user, password = "root@proxysys", ""
        else:
            account = self.mariadb.account(role)
            user, password = f"{account.user}@{tenant}", account.password
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            database=None if role == "proxysys" else self.mariadb.database,
            autocommit=True,
            connect_timeout=10,
            read_timeout=60,
        )

    def worker_of(self, cs_id: int) -> int:
        """The worker a cs_id of this node names."""
        return self.layout.decode(cs_id).worker

    def stop(self) -> str:
        """Stop the node; its output."""
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=30)
        return output


def query(connection: Any, sql: str) -> List[Tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def cs_id(connection: Any) -> int:
    """The client session id of a connection (the local admin cannot SELECT)."""
    rows = query(connection, "SHOW PROXYSESSION ATTRIBUTE LIKE 'cs_id'")
    return int(rows[0][1])


def error_of(action: Callable[[], Any]) -> Tuple[int, str]:
    with pytest.raises(pymysql.err.MySQLError) as raised:
        action()
    code, message = raised.value.args[0], raised.value.args[1]
    return int(code), str(message)


def on_worker(node: Node, worker: int, connect: Callable[[], Any]) -> Any:
    """
    Connect until the session lands on C{worker} (the kernel picks the
    worker that accepts); the other connections are closed.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        connection = connect()
        if node.worker_of(cs_id(connection)) == worker:
            return connection
        connection.close()
        time.sleep(0.05)
    pytest.fail(f"no connection landed on worker {worker} in 30s")


def spread(node: Node, count: int) -> Dict[int, List[Tuple[int, Any]]]:
    """
    Native clients, at least C{count} of them and until both workers hold
    some: C{{worker: [(cs_id, connection)]}}.
    """
    by_worker: Dict[int, List[Tuple[int, Any]]] = {0: [], 1: []}
    for attempt in range(80):
        connection = node.connect()
        number = query(connection, "SELECT CONNECTION_ID()")[0][0]
        by_worker[node.worker_of(number)].append((number, connection))
        if attempt + 1 >= count and all(by_worker.values()):
            return by_worker
    pytest.fail(f"sessions did not spread over both workers: {by_worker}")


def sleep_in_thread(connection: Any, seconds: int) -> Tuple[threading.Thread, Dict[str, Any]]:
    """
    Run C{SELECT SLEEP(seconds)} on C{connection} in a thread.
    """
    outcome: Dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["rows"] = query(connection, f"SELECT SLEEP({seconds})")
        except pymysql.err.MySQLError as e:
            outcome["error"] = e.args

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_running(admin: Any, victim: int) -> None:
    """
    Wait until SHOW FULL PROCESSLIST (from any worker) shows C{victim}
    running a statement.
    """
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = {row[0]: row for row in query(admin, "SHOW FULL PROCESSLIST")}
        if victim in rows and rows[victim][4] == "Query":
            return
        time.sleep(0.1)
    pytest.fail(f"session {victim} never ran its statement")


# --------------------------------------------------------------------------------------
# Worker processes


@pytest.fixture
def two_workers(processes: List[subprocess.Popen[str]], mariadb: Server, tmp_path: Path) -> Node:
    return Node(processes, mariadb, tmp_path, "workers", workers=2, proxy_id=5)


def test_show_proxysession_lists_both_workers(two_workers: Node) -> None:
    """
    From either worker, SHOW PROXYSESSION and SHOW PROCESSLIST list every
    worker's sessions, each row with the pid of the worker holding it.
    """
    node = two_workers
    clients = spread(node, 4)
    ids = {number for sessions in clients.values() for number, _ in sessions}
    for worker in (0, 1):
        admin = on_worker(node, worker, lambda: node.connect("proxysys"))
        listed = query(admin, "SHOW PROXYSESSION")
        assert ids | {cs_id(admin)} == {row[1] for row in listed}
        pids = {node.worker_of(row[1]): row[11] for row in listed}
        assert len(set(pids.values())) == 2
        admin.close()
    # The id forms of a session on the other worker are computed there.
    admin = on_worker(node, 0, lambda: node.connect("proxysys"))
    other = clients[1][0][0]
    variables = query(admin, f"SHOW PROXYSESSION VARIABLES ALL {other} LIKE 'autocommit'")
    assert [row[0] for row in variables] == ["autocommit"]
    stats = dict(query(admin, f"SHOW PROXYSESSION STAT {other} LIKE 'client_requests'"))
    assert stats["client_requests"] >= 1
    # A user sees its own user's sessions, on every worker.
    mine = clients[0][0][1]
    assert ids == {row[0] for row in query(mine, "SHOW PROCESSLIST")}
    full = {row[0]: row for row in query(mine, "SHOW FULL PROCESSLIST")}
    assert full[clients[0][0][0]][7] == "SHOW FULL PROCESSLIST"


def test_kill_a_session_of_the_other_worker(two_workers: Node) -> None:
    """
    KILL, from a session on one worker, of a session on the other: OK, and
    the victim's next statement finds its connection gone (2013).
    """
    node = two_workers
    clients = spread(node, 2)
    admin = on_worker(node, 0, lambda: node.connect("proxysys"))
    victim_id, victim = clients[1][0]
    assert query(admin, f"KILL {victim_id}") == []
    code, _ = error_of(lambda: query(victim, "SELECT 1"))
    assert code == 2013
    listed = {row[1] for row in query(admin, "SHOW PROXYSESSION")}
    assert victim_id not in listed


def test_kill_query_on_the_other_worker(two_workers: Node) -> None:
    """
    KILL QUERY of a SLEEP running on the other worker stops it: the victim
    gets 1317 and its connection stays usable.
    """
    node = two_workers
    clients = spread(node, 2)
    admin = on_worker(node, 1, lambda: node.connect("proxysys"))
    victim_id, victim = clients[0][0]
    thread, outcome = sleep_in_thread(victim, 60)
    wait_running(admin, victim_id)
    began = time.monotonic()
    assert query(admin, f"KILL QUERY {victim_id}") == []
    thread.join(30)
    assert not thread.is_alive()
    assert outcome.get("error", (None,))[0] == 1317, outcome
    assert time.monotonic() - began < 30
    assert query(victim, "SELECT 1") == [(1,)]


def test_privileges_across_workers(two_workers: Node) -> None:
    """
    The answers are one process's: another tenant's user is told the session
    does not exist (1094), a sys tenant user that is not root that it is not
    its to kill (1095), the same user may kill it.
    """
    node = two_workers
    clients = spread(node, 2)
    victim_id, victim = clients[1][0]
    stranger = on_worker(node, 0, lambda: node.connect("native", tenant="t1"))
    assert error_of(lambda: query(stranger, f"KILL {victim_id}")) == (
        1094,
        f"Unknown thread id: {victim_id}",
    )
    assert error_of(lambda: query(stranger, f"SHOW PROXYSESSION ATTRIBUTE {victim_id}")) == (
        1094,
        f"Unknown thread id: {victim_id}",
    )
    sys_user = on_worker(node, 0, lambda: node.connect("admin"))
    assert error_of(lambda: query(sys_user, f"KILL {victim_id}")) == (
        1095,
        f"You are not owner of thread {victim_id}",
    )
    attributes = dict(
        (row[0], row[1]) for row in query(sys_user, f"SHOW PROXYSESSION ATTRIBUTE {victim_id}")
    )
    assert attributes["cs_id"] == str(victim_id)
    same_user = clients[0][0][1]
    assert query(same_user, f"KILL {victim_id}") == []
    assert error_of(lambda: query(victim, "SELECT 1"))[0] == 2013


def test_config_and_counters_are_the_nodes(two_workers: Node) -> None:
    """
    ALTER PROXYCONFIG on one worker is applied on the other, and SHOW
    PROXYSTAT counts the sessions of both.
    """
    node = two_workers
    clients = spread(node, 2)
    first = on_worker(node, 0, lambda: node.connect("proxysys"))
    second = on_worker(node, 1, lambda: node.connect("proxysys"))
    assert query(first, "ALTER PROXYCONFIG SET client_login_timeout = '25s'") == []
    shown = query(second, "SHOW PROXYCONFIG LIKE 'client_login_timeout'")
    assert shown[0][1] == "25s"
    stats = dict((row[0], row[1]) for row in query(second, "SHOW PROXYSTAT"))
    total = sum(len(sessions) for sessions in clients.values()) + 2
    assert stats["current_client_connections"] == total


def test_a_killed_worker_comes_back(two_workers: Node) -> None:
    """
    A worker that dies is started again and serves; the other worker's
    sessions live on, and the view is whole again.
    """
    node = two_workers
    clients = spread(node, 2)
    admin = on_worker(node, 0, lambda: node.connect("proxysys"))
    pids = {node.worker_of(row[1]): row[11] for row in query(admin, "SHOW PROXYSESSION")}
    os.kill(pids[1], signal.SIGKILL)
    back = on_worker(node, 1, node.connect)
    assert query(back, "SELECT 1") == [(1,)]
    assert query(clients[0][0][1], "SELECT 1") == [(1,)]
    listed = {row[1] for row in query(admin, "SHOW PROXYSESSION")}
    assert cs_id(back) in listed
    for _, lost in clients[1]:
        assert error_of(lambda lost=lost: query(lost, "SELECT 1"))[0] in (2006, 2013)
    output = node.stop()
    assert "worker 1 died" in output
    assert "Traceback" not in output, output


# --------------------------------------------------------------------------------------
# Proxy nodes


def test_peer_nodes_share_one_view(
    processes: List[subprocess.Popen[str]], mariadb: Server, tmp_path: Path
) -> None:
    """
    Node A (one process) and node B (two workers) list each other (and
    themselves, as every node may share one list): on A, SHOW PROXYSESSION
    lists B's sessions, KILL reaches them, KILL QUERY stops their statement,
    and a user sees its own user's sessions on both.
    """
    channels = [free_port(), free_port()]
    a = Node(processes, mariadb, tmp_path, "a", proxy_id=1, channel=channels[0], peers=channels)
    b = Node(
        processes,
        mariadb,
        tmp_path,
        "b",
        workers=2,
        proxy_id=2,
        channel=channels[1],
        peers=channels,
    )
    on_b = [b.connect() for _ in range(3)]
    b_ids = [query(connection, "SELECT CONNECTION_ID()")[0][0] for connection in on_b]
    admin = a.connect("proxysys")
    listed = {row[1]: row for row in query(admin, "SHOW PROXYSESSION")}
    assert set(b_ids) <= set(listed)
    assert cs_id(admin) in listed
    mine = a.connect()
    mine_id = query(mine, "SELECT CONNECTION_ID()")[0][0]
    assert set(b_ids) | {mine_id} == {row[0] for row in query(mine, "SHOW PROCESSLIST")}
    attributes = dict(
        (row[0], row[1]) for row in query(admin, f"SHOW PROXYSESSION ATTRIBUTE {b_ids[0]}")
    )
    assert attributes["cs_id"] == str(b_ids[0])
    assert query(admin, f"KILL {b_ids[0]}") == []
    assert error_of(lambda: query(on_b[0], "SELECT 1"))[0] == 2013
    thread, outcome = sleep_in_thread(on_b[1], 60)
    wait_running(admin, b_ids[1])
    assert query(admin, f"KILL QUERY {b_ids[1]}") == []
    thread.join(30)
    assert outcome.get("error", (None,))[0] == 1317, outcome
    # And the other way round: B's admin kills a session of A.
    b_admin = b.connect("proxysys")
    assert query(b_admin, f"KILL {mine_id}") == []
    assert error_of(lambda: query(mine, "SELECT 1"))[0] == 2013
    for node in (a, b):
        assert "Traceback" not in node.stop()


def test_peer_with_another_secret_is_refused(
    processes: List[subprocess.Popen[str]], mariadb: Server, tmp_path: Path
) -> None:
    """
    A node that does not know this node's secret is not used: its sessions
    are not listed, and a KILL of one says the node was not asked.
    """
    channels = [free_port(), free_port()]
    a = Node(processes, mariadb, tmp_path, "a", proxy_id=1, channel=channels[0], peers=channels)
    c = Node(
        processes,
        mariadb,
        tmp_path,
        "c",
        proxy_id=3,
        channel=channels[1],
        peers=channels,
        secret="not-the-secret",
    )
    on_c = c.connect()
    c_id = query(on_c, "SELECT CONNECTION_ID()")[0][0]
    admin = a.connect("proxysys")
    listed = {row[1] for row in query(admin, "SHOW PROXYSESSION")}
    assert c_id not in listed
    code, message = error_of(lambda: query(admin, f"KILL {c_id}"))
    assert code == 1105
    assert f"127.0.0.1:{channels[1]}" in message
    assert query(on_c, "SELECT 1") == [(1,)]
    c_admin = c.connect("proxysys")
    assert cs_id(admin) not in {row[1] for row in query(c_admin, "SHOW PROXYSESSION")}
    output = a.stop()
    assert "proof is wrong" in output
    c.stop()
