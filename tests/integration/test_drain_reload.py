"""
Graceful drain and configuration reload end to end: C{twistd -n obproxy -c
conf.yaml} in a subprocess in front of real MariaDB, real clients (PyMySQL,
mysql-connector, the C{mariadb} CLI), real signals.

  - C{SIGTERM} while one client is inside a transaction, one runs
    C{SELECT SLEEP(2)} and one is idle: new connections are refused at once,
    the idle client is closed (its next command fails), the transaction goes
    on and commits (its rows are on the server), the sleep finishes with its
    result, then the process exits;
  - at C{graceful_shutdown_timeout} an open transaction is rolled back (its
    row is not on the server) and a long statement is stopped on the server;
  - C{SIGHUP} after the file changed: the new value shows in C{SHOW
    PROXYCONFIG}, a restart-only change does not, the session and its
    transaction are kept; a broken file changes nothing;
  - the same with two worker processes: every worker reloads, and a
    transaction on a worker commits during the drain.

The figures (time until new connections are refused, until the process
exits) are printed.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import mysql.connector  # type: ignore[import-untyped, unused-ignore]
import pymysql  # type: ignore[import-untyped, unused-ignore]
import pytest

from obproxy_tx.session.ids import ClientSessionIdLayout
from tests.integration.admin_cli import _command, _environment
from tests.integration.test_twistd import free_port, spawn, twistd_command, wait_for_port
from tests.proxy_fixtures import verifier
from tests.testbed import Server

pytestmark = pytest.mark.integration

TABLE = "h4_drain"


@contextlib.contextmanager
def tag_table(mariadb: Server, name: str) -> Iterator[str]:
    """An empty table C{NAME(tag)} in the test database, dropped afterwards."""
    with direct(mariadb) as connection:
        run(connection, f"DROP TABLE IF EXISTS {name}")
        run(connection, f"CREATE TABLE {name} (tag VARCHAR(20) PRIMARY KEY) ENGINE=InnoDB")
    yield name
    with direct(mariadb) as connection:
        run(connection, f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def table(mariadb: Server) -> Iterator[str]:
    """An empty table C{h4_drain(tag)} in the test database, dropped afterwards."""
    with tag_table(mariadb, TABLE) as name:
        yield name


def direct(mariadb: Server) -> Any:
    """A connection straight to MariaDB as the test bed's admin."""
    admin = mariadb.account("admin")
    return pymysql.connect(
        host=mariadb.host,
        port=mariadb.port,
        user=admin.user,
        password=admin.password,
        database=mariadb.database,
        autocommit=True,
    )


def run(connection: Any, sql: str) -> List[Tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def tags(mariadb: Server) -> List[str]:
    """The rows of the table, as the server has them."""
    with direct(mariadb) as connection:
        return [row[0] for row in run(connection, f"SELECT tag FROM {TABLE} ORDER BY tag")]


def catches(pid: int, signum: int) -> bool:
    """Whether process C{pid} handles C{signum} (its C{SigCgt} mask)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    except OSError:
        return True
    return True


def wait_until(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"{what}: not after {timeout}s")


class Proxy:
    """A twistd proxy process with its config file."""

    def __init__(
        self,
        processes: List[subprocess.Popen[str]],
        mariadb: Server,
        tmp_path: Path,
        *,
        extra: str = "",
        workers: int = 1,
    ) -> None:
        self.mariadb = mariadb
        self.port = free_port()
        self.workers = workers
        self.conf = tmp_path / "conf.yaml"
        self.write(extra)
        self.process = spawn(
            processes,
            twistd_command(
                "-n", f"--pidfile={tmp_path / 'twistd.pid'}", "obproxy", "-c", str(self.conf)
            ),
        )
        wait_for_port(self.process, self.port)
        wait_until(lambda: catches(self.process.pid, signal.SIGHUP), "the SIGHUP handler")
        self.layout = ClientSessionIdLayout(2, proxy_id=0, worker_count=workers)

    def write(self, extra: str) -> None:
        native = self.mariadb.account("native")
        self.conf.write_text(
            f"""\
listen: "tcp:{self.port}:interface=127.0.0.1"
work_thread_num: {self.workers}
{extra}
clusters:
  - name: mdb
    type: mysql
    servers: ["{self.mariadb.host}:{self.mariadb.port}"]
    users:
      - {{name: {native.user}, tenant: sys, verifier: "{verifier(native.password)}"}}
""",
            encoding="utf-8",
        )

    def connect(self, **kwargs: Any) -> Any:
        native = self.mariadb.account("native")
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=native.user,
            password=native.password,
            database=self.mariadb.database,
            connect_timeout=5,
            read_timeout=60,
            **kwargs,
        )

    def admin(self) -> Any:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root@proxysys", password="", connect_timeout=5
        )

    def item(self, connection: Any, name: str) -> str:
        rows = run(connection, f"SHOW PROXYCONFIG LIKE '{name}'")
        assert len(rows) == 1, rows
        return str(rows[0][1])

    def worker_of(self, connection: Any) -> int:
        rows = run(connection, "SHOW PROXYSESSION ATTRIBUTE LIKE 'cs_id'")
        return self.layout.decode(int(rows[0][1])).worker

    def refuses(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return False
        except OSError:
            return True

    def exited(self, timeout: float = 30) -> str:
        output, _ = self.process.communicate(timeout=timeout)
        return output


def failure_code(action: Any) -> int:
    """The MySQL error code C{action} fails with (client libraries' own included)."""
    with pytest.raises((pymysql.err.MySQLError, mysql.connector.Error)) as raised:
        action()
    error = raised.value
    if isinstance(error, mysql.connector.Error):
        return int(error.errno or 0)
    return int(error.args[0])


LOST = {1053, 2013, 2006, 2055}
"""What a client closed by the drain reports on its next command: MariaDB's
shutdown packet (1053) or a lost connection, as each library words it."""


def test_sigterm_drains(
    processes: List[subprocess.Popen[str]], mariadb: Server, table: str, tmp_path: Path
) -> None:
    """
    SIGTERM: new connections refused, idle clients closed, the running
    statement finishes, the open transaction commits, then the process exits.
    """
    proxy = Proxy(processes, mariadb, tmp_path, extra="graceful_shutdown_timeout: 20s")
    in_tx = proxy.connect(autocommit=True)
    run(in_tx, "BEGIN")
    run(in_tx, f"INSERT INTO {table} VALUES ('tx-1')")
    idle = proxy.connect(autocommit=True)
    native = mariadb.account("native")
    idle_connector = mysql.connector.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=native.user,
        password=native.password,
        database=mariadb.database,
        use_pure=True,
    )
    cli = subprocess.Popen(
        _command("127.0.0.1", proxy.port, native.user, mariadb.database, ["-B", "--unbuffered"]),
        env=_environment(native.password),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stdin is not None and cli.stdout is not None
    cli.stdin.write("SELECT 'before';\n")
    cli.stdin.flush()
    assert [cli.stdout.readline(), cli.stdout.readline()] == ["before\n", "before\n"]
    sleeper = proxy.connect(autocommit=True)
    slept: Dict[str, Any] = {}

    def sleep() -> None:
        try:
            slept["rows"] = run(sleeper, "SELECT SLEEP(2)")
        except Exception as e:  # noqa: BLE001 (reported by the assertion below)
            slept["error"] = e
        slept["at"] = time.monotonic()

    thread = threading.Thread(target=sleep)
    thread.start()
    with direct(mariadb) as connection:
        wait_until(
            lambda: any(
                "SLEEP(2)" in str(row[7] or "") for row in run(connection, "SHOW FULL PROCESSLIST")
            ),
            "SELECT SLEEP(2) running on the server",
        )

    signalled = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    wait_until(proxy.refuses, "new connections refused", timeout=5)
    refused_after = time.monotonic() - signalled

    # The idle clients were closed: their next command fails, with the shutdown
    # packet or as a lost connection.
    idle_codes = [
        failure_code(lambda: run(idle, "SELECT 1")),
        failure_code(lambda: idle_connector.cmd_query("SELECT 1")),
    ]
    assert all(code in LOST for code in idle_codes), idle_codes
    cli_out, cli_err = cli.communicate("SELECT 'after';\n", timeout=30)
    assert cli.returncode == 1 and "after" not in cli_out, (cli_out, cli_err)
    cli_error = cli_err.strip().splitlines()[-1]
    assert re.match(r"ERROR (1053|2013|2006)", cli_error), cli_err

    # The transaction goes on and commits.
    run(in_tx, f"INSERT INTO {table} VALUES ('tx-2')")
    in_tx.commit()
    # ...and its session closes after the COMMIT.
    assert failure_code(lambda: run(in_tx, "SELECT 1")) in LOST

    thread.join(timeout=30)
    assert "error" not in slept, slept
    assert slept["rows"] == [(0,)]
    output = proxy.exited()
    exited_after = time.monotonic() - signalled
    assert proxy.process.returncode == -signal.SIGTERM, output
    assert tags(mariadb) == ["tx-1", "tx-2"]
    assert re.search(r"draining \d+ client session\(s\), up to 20s", output), output
    assert "drained in" in output
    print(
        f"\ndrain: new connections refused {refused_after * 1000:.0f} ms after SIGTERM; "
        f"idle clients got {idle_codes}, the mariadb CLI {cli_error!r}; SELECT SLEEP(2) answered "
        f"{(slept['at'] - signalled) * 1000:.0f} ms after it; process exited after "
        f"{exited_after:.2f} s"
    )


def test_deadline_rolls_back_and_stops_statements(
    processes: List[subprocess.Popen[str]], mariadb: Server, table: str, tmp_path: Path
) -> None:
    """
    At graceful_shutdown_timeout an open transaction is closed (rolled back
    on the server) and a long statement is killed there.
    """
    proxy = Proxy(processes, mariadb, tmp_path, extra="graceful_shutdown_timeout: 1s")
    in_tx = proxy.connect(autocommit=True)
    run(in_tx, "BEGIN")
    run(in_tx, f"INSERT INTO {table} VALUES ('never')")
    sleeper = proxy.connect(autocommit=True)
    slept: Dict[str, Any] = {}

    def sleep() -> None:
        try:
            slept["rows"] = run(sleeper, "SELECT SLEEP(60)")
        except Exception as e:  # noqa: BLE001 (checked below)
            slept["error"] = e

    thread = threading.Thread(target=sleep)
    thread.start()
    with direct(mariadb) as connection:
        wait_until(
            lambda: any(
                "SLEEP(60)" in str(row[7] or "") for row in run(connection, "SHOW FULL PROCESSLIST")
            ),
            "SELECT SLEEP(60) running on the server",
        )
    signalled = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    output = proxy.exited(timeout=20)
    exited_after = time.monotonic() - signalled
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert exited_after < 10, output
    assert "graceful_shutdown_timeout (1s) reached" in output, output
    assert "1 statement(s) killed" in output, output
    assert tags(mariadb) == []
    with direct(mariadb) as connection:
        wait_until(
            lambda: (
                not any(
                    "SLEEP(60)" in str(row[7] or "")
                    for row in run(connection, "SHOW FULL PROCESSLIST")
                )
            ),
            "the statement stopped on the server",
            timeout=5,
        )
    # The transaction's client sees its connection gone.
    assert failure_code(lambda: run(in_tx, "COMMIT")) in LOST
    print(f"\ndeadline 1s: process exited {exited_after:.2f} s after SIGTERM; sleeper: {slept}")


def test_sighup_reloads_and_keeps_sessions(
    processes: List[subprocess.Popen[str]], mariadb: Server, table: str, tmp_path: Path
) -> None:
    """
    SIGHUP applies a changed runtime item, holds a restart-only one, keeps
    the session with its transaction; a broken file changes nothing.
    """
    proxy = Proxy(processes, mariadb, tmp_path, extra="client_max_connections: 100")
    admin = proxy.admin()
    assert proxy.item(admin, "client_max_connections") == "100"
    client = proxy.connect(autocommit=True)
    before_id = run(client, "SELECT CONNECTION_ID()")[0][0]
    run(client, "BEGIN")
    run(client, f"INSERT INTO {table} VALUES ('kept-1')")

    proxy.write("client_max_connections: 77\nproxy_id: 9")
    signalled = time.monotonic()
    proxy.process.send_signal(signal.SIGHUP)
    wait_until(lambda: proxy.item(admin, "client_max_connections") == "77", "the reload")
    reloaded_after = time.monotonic() - signalled
    assert proxy.item(admin, "proxy_id") == "0"

    run(client, f"INSERT INTO {table} VALUES ('kept-2')")
    client.commit()
    assert run(client, "SELECT CONNECTION_ID()")[0][0] == before_id
    assert tags(mariadb) == ["kept-1", "kept-2"]

    proxy.conf.write_text(proxy.conf.read_text() + "clusters: [oops\n", encoding="utf-8")
    proxy.process.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert proxy.item(admin, "client_max_connections") == "77"
    assert run(client, "SELECT 1") == [(1,)]
    admin.close()
    client.close()
    proxy.process.send_signal(signal.SIGTERM)
    output = proxy.exited()
    assert "changes to proxy_id take effect at the next restart" in output
    assert "configuration not reloaded, nothing changed" in output
    assert str(proxy.conf) in output
    print(
        f"\nSIGHUP: new value in SHOW PROXYCONFIG {reloaded_after * 1000:.0f} ms after the signal"
    )


def test_workers_reload_and_drain(
    processes: List[subprocess.Popen[str]], mariadb: Server, table: str, tmp_path: Path
) -> None:
    """
    work_thread_num 2: SIGHUP to the parent reaches both workers; SIGTERM to
    the parent drains each worker (a transaction commits) before the exit.
    """
    proxy = Proxy(processes, mariadb, tmp_path, extra="client_max_connections: 100", workers=2)
    admins: Dict[int, Any] = {}
    clients: Dict[int, Any] = {}
    deadline = time.monotonic() + 30
    while (len(admins) < 2 or len(clients) < 2) and time.monotonic() < deadline:
        admin = proxy.admin()
        worker = proxy.worker_of(admin)
        if worker in admins:
            admin.close()
        else:
            admins[worker] = admin
        client = proxy.connect(autocommit=True)
        worker = proxy.worker_of(client)
        if worker in clients:
            client.close()
        else:
            clients[worker] = client
    assert sorted(admins) == sorted(clients) == [0, 1]

    proxy.write("client_max_connections: 55")
    hup = time.monotonic()
    proxy.process.send_signal(signal.SIGHUP)
    for admin in admins.values():
        wait_until(lambda a=admin: proxy.item(a, "client_max_connections") == "55", "reload")
    reloaded_after = time.monotonic() - hup

    for worker, client in clients.items():
        run(client, "BEGIN")
        run(client, f"INSERT INTO {table} VALUES ('w{worker}-1')")
    signalled = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    wait_until(proxy.refuses, "new connections refused", timeout=5)
    for worker, client in clients.items():
        run(client, f"INSERT INTO {table} VALUES ('w{worker}-2')")
        client.commit()
    output = proxy.exited()
    exited_after = time.monotonic() - signalled
    assert proxy.process.returncode == -signal.SIGTERM, output
    assert tags(mariadb) == ["w0-1", "w0-2", "w1-1", "w1-2"]
    assert output.count("drained in") >= 2, output
    print(
        f"\nworkers: both reloaded {reloaded_after * 1000:.0f} ms after SIGHUP; "
        f"process exited {exited_after:.2f} s after SIGTERM"
    )


def test_a_second_sigterm_closes_at_once(
    processes: List[subprocess.Popen[str]], mariadb: Server, table: str, tmp_path: Path
) -> None:
    """
    With two workers and graceful_shutdown_timeout 60s: a second SIGTERM to
    the parent while a transaction is open closes everything at once (the
    transaction is rolled back).
    """
    proxy = Proxy(processes, mariadb, tmp_path, extra="graceful_shutdown_timeout: 60s", workers=2)
    client = proxy.connect(autocommit=True)
    run(client, "BEGIN")
    run(client, f"INSERT INTO {table} VALUES ('rolled-back')")
    signalled = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    wait_until(proxy.refuses, "new connections refused", timeout=5)
    # Let the workers take the first SIGTERM (they then treat a second one as "now").
    time.sleep(1)
    proxy.process.send_signal(signal.SIGTERM)
    output = proxy.exited(timeout=30)
    exited_after = time.monotonic() - signalled
    assert exited_after < 15, output
    assert "stopping at once: closing every client session now" in output, output
    assert tags(mariadb) == []
    assert failure_code(lambda: run(client, "COMMIT")) in LOST
    print(f"\nsecond SIGTERM: process exited {exited_after:.2f} s after the first")
