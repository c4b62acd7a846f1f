"""
The read/write split on real MariaDB replication (issue 6): a primary -> replica pair from the
test bed (L{tests.testbed.replication}), the proxy in front with the replica listed as one, and
real clients (PyMySQL, the C{mariadb} command-line client).

Where a statement ran is told by C{@@server_id} (1: primary, 2: replica) read through the proxy.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any, Callable, Dict, Iterator, List

import pymysql
import pytest
import pytest_twisted

from obproxy_tx.config import parse_config
from obproxy_tx.session.manager import SessionManager
from tests.proxy_fixtures import (
    Proxy,
    in_thread,
    in_thread_then_stop,
    reactor,
    stop_proxy,
    verifier,
)
from tests.testbed import TestbedError
from tests.testbed.replication import (
    MONITOR,
    Replication,
    kill_replica,
    replication_status,
    restart_replica,
    run,
    start_replication,
    stop_replication,
    wait_replicated,
)

pytestmark = pytest.mark.integration

PRIMARY, REPLICA = 1, 2
#: The monitor's period here: small, so the tests see changes quickly.
CHECK_INTERVAL = 0.1


@pytest.fixture(scope="module")
def pair() -> Iterator[Replication]:
    """
    A replicating MariaDB pair, with table C{test.rs} holding one row (made on the primary,
    replicated).
    """
    try:
        started = start_replication()
    except TestbedError as exc:
        pytest.fail(f"the replication pair did not start: {exc}")
    run(
        started.primary,
        [
            "CREATE TABLE IF NOT EXISTS test.rs (id INT PRIMARY KEY, note VARCHAR(40))",
            "DELETE FROM test.rs",
            "INSERT INTO test.rs VALUES (0, 'seed')",
        ],
    )
    wait_replicated(started)
    yield started
    # A test that failed half-way may have left the replica stopped or delayed.
    current = replication_status()
    if current is not None:
        run(current.replica, ["STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=0", "START SLAVE"])
    if started.started_here:
        stop_replication()


def _proxy(pair: Replication, extra: str = "", read_consistency: str = "") -> Proxy:
    """
    A proxy whose cluster lists the primary as a plain string and the replica as a
    C{{address, role: replica}} entry; C{native} logs in (with C{read_consistency} in its user
    entry when given), C{admin} too.
    """
    native, admin = pair.primary.accounts["native"], pair.primary.accounts["admin"]
    own = f", read_consistency: {read_consistency}" if read_consistency else ""
    text = f"""
listen_port: 2883
metadata_user: {MONITOR.user}
metadata_password: {MONITOR.password}
replica_check_interval: {CHECK_INTERVAL}
{extra}
clusters:
  - name: cl_repl
    type: mysql
    servers:
      - '{pair.primary.host}:{pair.primary.port}'
      - {{address: '{pair.replica.host}:{pair.replica.port}', role: replica}}
    users:
      - {{name: {native.user}, tenant: sys, verifier: '{verifier(native.password)}'{own}}}
      - {{name: {admin.user}, tenant: sys, verifier: '{verifier(admin.password)}'}}
"""
    manager = SessionManager(parse_config(text), reactor)
    manager.startService()
    listener = reactor.listenTCP(0, manager.listener_factory(), interface="127.0.0.1")
    return Proxy(
        manager, listener.getHost().port, listener, pair.primary, native.user, native.password
    )


@pytest.fixture
def proxy(pair: Replication) -> Iterator[Proxy]:
    """A proxy in front of the pair, the replica usable once the monitor saw it."""
    started = _proxy(pair, extra="max_replica_lag: 1\n")
    yield started
    stop_proxy(started)


def _until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> float:
    """Wait (in a client thread) until C{predicate()} is true; return the seconds it took."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - began


def _usable(proxy: Proxy, pair: Replication) -> bool:
    return bool(proxy.manager.replica_monitor.table.usable(f"127.0.0.1:{pair.replica.port}"))


def _server_id(cursor: Any, sql: str = "SELECT @@server_id") -> int:
    cursor.execute(sql)
    return int(cursor.fetchone()[0])


@pytest_twisted.inlineCallbacks
def test_weak_reads_reach_the_replica_and_the_rest_the_primary(
    proxy: Proxy, pair: Replication
) -> Iterator[Any]:
    """
    Strong by default: everything on the primary. After C{SET ob_read_consistency = WEAK}
    (answered by the proxy: MariaDB has no such variable), plain reads go to the replica; writes,
    locking reads, reads in a transaction or with autocommit off, dependent statements and a
    C{STRONG} hint stay on the primary; a C{WEAK} hint sends one read of a strong session to
    the replica. Writes made through the proxy reach the replica by replication only.
    """

    def client() -> Dict[str, Any]:
        _until(lambda: _usable(proxy, pair), what="replica usable")
        out: Dict[str, Any] = {}
        with proxy.connect() as connection, connection.cursor() as cursor:
            out["strong"] = _server_id(cursor)
            out["hinted"] = _server_id(cursor, "SELECT /*+ READ_CONSISTENCY(WEAK) */ @@server_id")
            cursor.execute("SET ob_read_consistency = WEAK")
            out["weak"] = _server_id(cursor)
            out["weak_table"] = _server_id(cursor, "SELECT @@server_id FROM test.rs LIMIT 1")
            cursor.execute("INSERT INTO test.rs VALUES (1, 'through the proxy')")
            out["insert_id_on"] = _server_id(cursor, "SELECT @@server_id, ROW_COUNT()")
            out["strong_hint"] = _server_id(
                cursor, "SELECT /*+ READ_CONSISTENCY(STRONG) */ @@server_id"
            )
            out["locking"] = _server_id(
                cursor, "SELECT @@server_id FROM test.rs WHERE id = 1 FOR UPDATE"
            )
            cursor.execute("BEGIN")
            cursor.execute("INSERT INTO test.rs VALUES (2, 'in a transaction')")
            out["in_transaction"] = _server_id(cursor)
            cursor.execute("SELECT note FROM test.rs WHERE id = 2")
            out["own_write"] = cursor.fetchall()
            cursor.execute("COMMIT")
            cursor.execute("SET autocommit = 0")
            out["autocommit_off"] = _server_id(cursor)
            cursor.execute("COMMIT")
            cursor.execute("SET autocommit = 1")
            wait_replicated(pair)
            out["replicated"] = _server_id(cursor, "SELECT @@server_id FROM test.rs WHERE id = 2")
            cursor.execute("SELECT note FROM test.rs WHERE id = 2")
            out["replica_row"] = cursor.fetchall()
            cursor.execute("SET SESSION ob_read_consistency = 'strong'")
            out["strong_again"] = _server_id(cursor)
            with pytest.raises(pymysql.err.OperationalError) as bad:
                cursor.execute("SET ob_read_consistency = 'sometimes'")
            out["bad"] = bad.value.args
        return out

    out = yield in_thread(client)
    assert out["strong"] == PRIMARY
    assert out["hinted"] == REPLICA
    assert out["weak"] == REPLICA
    assert out["weak_table"] == REPLICA
    # ROW_COUNT() depends on the session that ran the INSERT: the primary.
    assert out["insert_id_on"] == PRIMARY
    assert out["strong_hint"] == PRIMARY
    assert out["locking"] == PRIMARY
    assert out["in_transaction"] == PRIMARY
    assert out["own_write"] == (("in a transaction",),)
    assert out["autocommit_off"] == PRIMARY
    assert out["replicated"] == REPLICA
    assert out["replica_row"] == (("in a transaction",),)
    assert out["strong_again"] == PRIMARY
    assert out["bad"][0] == 1231
    assert "ob_read_consistency" in out["bad"][1]
    assert proxy.manager.stats.replica_reads >= 4
    # Nothing was written on the replica itself: its binary log has only replicated events.
    ((gtids,),) = run(pair.replica, ["SELECT @@gtid_binlog_pos"])[0]
    assert b"-2-" not in (gtids or b"")


@pytest_twisted.inlineCallbacks
def test_user_default_and_the_mariadb_client(pair: Replication) -> Iterator[Any]:
    """
    A user entry's C{read_consistency: weak} makes its sessions weak from the start (the
    C{mariadb} command-line client's C{SELECT @@server_id} reads the replica), while the item
    C{default_read_consistency} (strong) keeps another user's on the primary.
    """
    mariadb_cli = shutil.which("mariadb") or shutil.which("mysql")
    assert mariadb_cli, "the mariadb client is part of the test bed (mariadb-client)"
    proxy = _proxy(pair, read_consistency="weak")
    native, admin = pair.primary.accounts["native"], pair.primary.accounts["admin"]

    def client() -> List[str]:
        _until(lambda: _usable(proxy, pair), what="replica usable")
        outputs = []
        for user, password in ((native.user, native.password), (admin.user, admin.password)):
            result = subprocess.run(
                [
                    mariadb_cli,
                    "-h127.0.0.1",
                    f"-P{proxy.port}",
                    f"-u{user}",
                    f"-p{password}",
                    "--skip-ssl",
                    "-N",
                    "-B",
                    "-e",
                    "SELECT @@server_id",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            outputs.append(result.stdout.strip())
        return outputs

    outputs = yield in_thread_then_stop(proxy, client)
    assert outputs == [str(REPLICA), str(PRIMARY)]


def _weak_reads_until(
    cursor: Any, want: int, timeout: float = 20.0, sql: str = "SELECT @@server_id"
) -> Dict[str, Any]:
    """
    Run weak reads through the proxy until one runs on server C{want}; every read must succeed.

    @return: the seconds it took, the reads made and the server ids seen.
    """
    began = time.monotonic()
    seen: List[int] = []
    while True:
        cursor.execute(sql)
        row = cursor.fetchone()
        seen.append(int(row[0]))
        if seen[-1] == want:
            return {"seconds": time.monotonic() - began, "reads": len(seen), "seen": seen}
        if time.monotonic() - began > timeout:
            raise AssertionError(f"reads never reached server {want}: {seen[-20:]}")
        time.sleep(0.01)


@pytest_twisted.inlineCallbacks
def test_stopped_replication_takes_the_replica_out_and_back(
    proxy: Proxy, pair: Replication
) -> Iterator[Any]:
    """
    C{STOP SLAVE} on the replica: the monitor takes it out and weak reads go to the primary
    without an error; C{START SLAVE} puts it back. The times are printed.
    """
    address = f"127.0.0.1:{pair.replica.port}"

    def client() -> Dict[str, Any]:
        _until(lambda: _usable(proxy, pair), what="replica usable")
        out: Dict[str, Any] = {}
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SET ob_read_consistency = WEAK")
            out["before"] = _server_id(cursor)
            run(pair.replica, ["STOP SLAVE"])
            try:
                out["out"] = _weak_reads_until(cursor, PRIMARY)
                # The read may move before the monitor records why (a lost server session
                # alone sends it to the primary); the monitor takes the replica out soon after.
                _until(
                    lambda: proxy.manager.replica_monitor.table.health(address).reason,
                    timeout=10,
                    what="the monitor taking the replica out",
                )
                out["reason"] = proxy.manager.replica_monitor.table.health(address).reason
            finally:
                run(pair.replica, ["START SLAVE"])
            out["back"] = _weak_reads_until(cursor, REPLICA)
        return out

    out = yield in_thread(client)
    assert out["before"] == REPLICA
    assert "not running" in out["reason"], out["reason"]
    assert proxy.manager.stats.replica_state_changes >= 2
    print(
        f"\nSTOP SLAVE -> weak reads on the primary after {out['out']['seconds'] * 1000:.0f} ms "
        f"({out['out']['reads']} reads, none failed); START SLAVE -> back on the replica after "
        f"{out['back']['seconds'] * 1000:.0f} ms (replica_check_interval {CHECK_INTERVAL} s)"
    )


@pytest_twisted.inlineCallbacks
def test_lagging_replica_is_skipped_until_it_catches_up(
    proxy: Proxy, pair: Replication
) -> Iterator[Any]:
    """
    Real lag: the replica applies events 3 s late (C{MASTER_DELAY=3}); after a write its
    C{Seconds_Behind_Master} climbs past C{max_replica_lag} (1 s here), so weak reads go to the
    primary (and see the write), until the replica has applied it and takes weak reads again
    (and sees it too).
    """
    address = f"127.0.0.1:{pair.replica.port}"
    sql = "SELECT @@server_id, COUNT(*) FROM test.rs WHERE id = 10"

    def client() -> Dict[str, Any]:
        run(pair.replica, ["STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=3", "START SLAVE"])
        out: Dict[str, Any] = {}
        try:
            _until(lambda: _usable(proxy, pair), what="replica usable")
            with proxy.connect() as connection, connection.cursor() as cursor:
                cursor.execute("SET ob_read_consistency = WEAK")
                cursor.execute("DELETE FROM test.rs WHERE id = 10")
                wait_replicated(pair)
                _weak_reads_until(cursor, REPLICA, sql=sql)
                cursor.execute("INSERT INTO test.rs VALUES (10, 'late')")
                written = time.monotonic()
                out["out"] = _weak_reads_until(cursor, PRIMARY, sql=sql)
                out["reason"] = proxy.manager.replica_monitor.table.health(address).reason
                cursor.execute(sql)
                out["primary_row"] = cursor.fetchone()
                out["back"] = _weak_reads_until(cursor, REPLICA, sql=sql)
                out["back_after_write"] = time.monotonic() - written
                cursor.execute(sql)
                out["replica_row"] = cursor.fetchone()
        finally:
            run(pair.replica, ["STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=0", "START SLAVE"])
        return out

    out = yield in_thread(client)
    assert "behind its primary" in out["reason"], out["reason"]
    assert out["primary_row"] == (PRIMARY, 1)
    assert out["replica_row"] == (REPLICA, 1)
    # Back only once the delayed write was applied: the first weak read on the replica sees it
    # (replica_row above). No bound on the time: MASTER_DELAY counts from the event's
    # whole-second timestamp, so it applies 2-3 s after the write.
    print(
        f"\nlag over 1 s -> weak reads on the primary {out['out']['seconds'] * 1000:.0f} ms "
        f"after the write; back on the replica {out['back_after_write']:.1f} s after it "
        "(MASTER_DELAY 3 s)"
    )


@pytest_twisted.inlineCallbacks
def test_crashed_replica_is_skipped_and_back_after_restart(
    proxy: Proxy, pair: Replication
) -> Iterator[Any]:
    """
    The replica is SIGKILLed under a weak-reading client: the monitor's connection to it is
    lost, so it is out at once and the client's next weak reads run on the primary without an
    error (its server session to the replica was idle); once the replica is restarted it takes
    weak reads again.
    """
    address = f"127.0.0.1:{pair.replica.port}"

    def client() -> Dict[str, Any]:
        _until(lambda: _usable(proxy, pair), what="replica usable")
        out: Dict[str, Any] = {}
        with proxy.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SET ob_read_consistency = WEAK")
            out["before"] = _server_id(cursor)
            kill_replica(pair)
            restarted = False
            try:
                out["out"] = _weak_reads_until(cursor, PRIMARY)
                # The read may move before the monitor records why (a lost server session
                # alone sends it to the primary); the monitor takes the replica out soon after.
                _until(
                    lambda: proxy.manager.replica_monitor.table.health(address).reason,
                    timeout=10,
                    what="the monitor taking the replica out",
                )
                out["reason"] = proxy.manager.replica_monitor.table.health(address).reason
                began = time.monotonic()
                restart_replica(pair)
                restarted = True
                out["restart"] = time.monotonic() - began
                out["back"] = _weak_reads_until(cursor, REPLICA, timeout=30)
            finally:
                if not restarted:
                    restart_replica(pair)
        return out

    out = yield in_thread(client)
    assert out["before"] == REPLICA
    assert out["out"]["seen"] == [PRIMARY]
    assert out["reason"], out["reason"]
    print(
        f"\nreplica SIGKILLed -> the next weak read ran on the primary ({out['reason']}); "
        f"restarted in {out['restart']:.1f} s -> back on the replica "
        f"{out['back']['seconds'] * 1000:.0f} ms later"
    )


@pytest_twisted.inlineCallbacks
def test_prepared_statements_follow_the_split(proxy: Proxy, pair: Replication) -> Iterator[Any]:
    """
    mysql-connector's server-side prepared statements: a prepared plain read of a weak session
    executes on the replica (prepared there by the proxy first), a prepared write on the
    primary, and the same read again on the replica.
    """
    import mysql.connector

    def client() -> List[int]:
        _until(lambda: _usable(proxy, pair), what="replica usable")
        connection = mysql.connector.connect(
            host="127.0.0.1",
            port=proxy.port,
            user=proxy.user,
            password=proxy.password,
            database="test",
            autocommit=True,
            ssl_disabled=True,
            use_pure=True,
        )
        try:
            plain = connection.cursor()
            plain.execute("SET ob_read_consistency = WEAK")
            cursor = connection.cursor(prepared=True)
            seen = []
            cursor.execute("SELECT @@server_id FROM test.rs WHERE id = ?", (0,))
            seen.append(int(cursor.fetchone()[0]))
            cursor.execute("UPDATE test.rs SET note = ? WHERE id = ?", ("prepared", 0))
            cursor.execute("SELECT @@server_id, ROW_COUNT()")
            seen.append(int(cursor.fetchone()[0]))
            cursor.execute("SELECT @@server_id FROM test.rs WHERE id = ?", (0,))
            seen.append(int(cursor.fetchone()[0]))
            return seen
        finally:
            connection.close()

    seen = yield in_thread(client)
    # The read, then the dependent ROW_COUNT() where the UPDATE ran, then the read again.
    assert seen == [REPLICA, PRIMARY, REPLICA]
