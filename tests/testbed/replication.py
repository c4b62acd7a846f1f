"""
A real MariaDB primary -> replica pair on loopback, for the read/write split (issue 6).

Both servers live in C{<testbed>/replication/} (C{primary/} and C{replica/}: data, logs, socket)
and are set up like the test bed's C{mariadb} server (same accounts and database, see
L{tests.testbed.mariadb}) plus:

  - the primary writes a binary log (C{server_id} 1, row format, GTIDs as MariaDB always has
    them); its accounts are made with C{sql_log_bin=0} so that the replica, which makes its own,
    does not replay them;
  - the replica (C{server_id} 2, C{read_only}) replicates from the primary with
    C{MASTER_USE_GTID=slave_pos} as C{repl}/C{repl_pw};
  - both have C{monitor}/C{monitor_pw}, allowed C{SHOW SLAVE STATUS} (C{SLAVE MONITOR}) and
    nothing else: the proxy's metadata account for watching the replica.

L{start_replication} returns a running pair (reused when both answer and the replica
replicates), L{stop_replication} stops both, L{replication_status} reads the recorded pair.
On the command line: C{python -m tests.testbed replication start|stop|status|env|config}
(C{config}: a proxy configuration for the running pair, L{proxy_config}).

L{wait_replicated} waits until the replica has applied everything the primary has written (by
GTID position), which tests use before they read through the replica.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import attrs

from tests.testbed import (
    Account,
    Server,
    TestbedError,
    _locked,
    certificates,
    free_port,
    log_tail,
    mariadb,
    pid_alive,
    pid_matches,
    stop_pid,
    testbed_dir,
    wait_ready,
)

__all__ = [
    "MONITOR",
    "REPLICATION_USER",
    "Replication",
    "kill_replica",
    "proxy_config",
    "replication_dir",
    "replication_status",
    "restart_replica",
    "replication_main",
    "run",
    "slave_status",
    "start_replication",
    "stop_replication",
    "wait_replicated",
]

#: The account the replica replicates as.
REPLICATION_USER = Account("repl", "repl_pw")

#: The proxy's metadata account: may run SHOW SLAVE STATUS, nothing else.
MONITOR = Account("monitor", "monitor_pw")

#: The server ids of the two servers.
SERVER_IDS = {"primary": 1, "replica": 2}


@attrs.frozen
class Replication:
    """
    A running primary -> replica pair.

    @ivar primary: the primary server (binary log on).
    @ivar replica: the replica server, replicating from C{primary}.
    @ivar started_here: whether this process started (either of) them.
    """

    primary: Server
    replica: Server
    started_here: bool = attrs.field(default=False, eq=False)

    def env(self) -> Dict[str, str]:
        """
        Environment variables describing the pair (C{python -m tests.testbed replication env}):
        C{OBPROXY_REPL_PRIMARY_PORT}, C{OBPROXY_REPL_REPLICA_PORT}, the accounts.
        """
        env: Dict[str, str] = {}
        for role, server in (("PRIMARY", self.primary), ("REPLICA", self.replica)):
            env[f"OBPROXY_REPL_{role}_HOST"] = server.host
            env[f"OBPROXY_REPL_{role}_PORT"] = str(server.port)
            env[f"OBPROXY_REPL_{role}_SOCKET"] = server.unix_socket or ""
        env["OBPROXY_REPL_DATABASE"] = self.primary.database
        env["OBPROXY_REPL_USER"] = self.primary.user
        env["OBPROXY_REPL_PASSWORD"] = self.primary.password
        env["OBPROXY_REPL_MONITOR_USER"] = MONITOR.user
        env["OBPROXY_REPL_MONITOR_PASSWORD"] = MONITOR.password
        return env


def replication_dir() -> Path:
    """
    The pair's directory: C{<testbed>/replication}.
    """
    return testbed_dir() / "replication"


def _state_path() -> Path:
    return replication_dir() / "state.json"


def _accounts() -> Dict[str, Account]:
    accounts = dict(mariadb.ACCOUNTS)
    accounts["monitor"] = MONITOR
    return accounts


def _init_sql(role: str) -> str:
    lines = ["SET sql_log_bin = 0;", mariadb._init_sql()]
    lines.append(
        f"CREATE USER '{MONITOR.user}'@'%' IDENTIFIED VIA mysql_native_password "
        f"USING PASSWORD('{MONITOR.password}');"
    )
    lines.append(f"GRANT SLAVE MONITOR ON *.* TO '{MONITOR.user}'@'%';")
    if role == "primary":
        lines.append(
            f"CREATE USER '{REPLICATION_USER.user}'@'%' IDENTIFIED VIA mysql_native_password "
            f"USING PASSWORD('{REPLICATION_USER.password}');"
        )
        lines.append(f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER.user}'@'%';")
    lines.append("FLUSH PRIVILEGES;")
    return "\n".join(lines) + "\n"


def _args(role: str, base: Path, port: int) -> List[str]:
    certs = certificates()
    user_args: List[str] = ["--user=root"] if os.geteuid() == 0 else []
    args = [
        mariadb.find_program("mariadbd", "mysqld"),
        "--no-defaults",
        *user_args,
        f"--datadir={base / 'data'}",
        f"--socket={base / 'mysqld.sock'}",
        f"--pid-file={base / 'mysqld.pid'}",
        f"--log-error={base / 'error.log'}",
        "--bind-address=127.0.0.1",
        f"--port={port}",
        "--skip-name-resolve",
        "--max-connections=500",
        "--innodb-buffer-pool-size=64M",
        "--innodb-log-file-size=48M",
        "--innodb-flush-log-at-trx-commit=2",
        f"--server-id={SERVER_IDS[role]}",
        f"--log-bin={base / 'data' / 'binlog'}",
        "--binlog-format=ROW",
        "--max-allowed-packet=128M",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        f"--ssl-ca={certs.ca}",
        f"--ssl-cert={certs.cert}",
        f"--ssl-key={certs.key}",
        f"--init-file={base / 'init.sql'}",
    ]
    if role == "replica":
        # Clients of the replica may not write (the proxy's users have ALL, which bypasses it,
        # so the split is what keeps writes away); the replica does not connect by itself at
        # start until CHANGE MASTER ran once.
        args += ["--read-only=1", "--relay-log=relay", "--log-slave-updates=1"]
    return args


def _spawn(role: str, base: Path, port: int, args: Sequence[str]) -> Server:
    logs = [str(base / "error.log"), str(base / "mariadbd.out"), str(base / "install.log")]
    started = time.monotonic()
    with open(base / "mariadbd.out", "ab") as out:
        proc = subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=base,
            start_new_session=True,
            close_fds=True,
        )
    server = Server(
        kind=f"replication-{role}",
        host="127.0.0.1",
        port=port,
        pid=proc.pid,
        version="",
        handshake_version="",
        base_dir=str(base),
        log_files=tuple(logs),
        database=mariadb.DATABASE,
        accounts=_accounts(),
        unix_socket=str(base / "mysqld.sock"),
        tls=certificates(),
    )
    try:
        return wait_ready(server, proc, started, mariadb.START_TIMEOUT)
    except BaseException:
        stop_pid(proc.pid, str(base))
        raise


def _fresh(role: str) -> Server:
    base = replication_dir() / role
    mariadb.install_datadir(base, f"the replication {role}")
    (base / "init.sql").write_text(_init_sql(role))
    last = TestbedError("not started")
    for _attempt in range(3):  # the free port may be taken before the server binds it
        port = free_port()
        try:
            return _spawn(role, base, port, _args(role, base, port))
        except TestbedError as exc:
            last = exc
            if "already in use" not in exc.log_tail and "Bind on TCP/IP" not in exc.log_tail:
                raise
    raise last


def run(server: Server, statements: Sequence[str]) -> List[List[Tuple[bytes | None, ...]]]:
    """
    Run C{statements} on C{server} as its C{admin} account; return each one's rows.
    """
    from tests.testbed import wireclient

    admin = server.accounts["admin"]
    return wireclient.run_sql(
        server.host, server.port, admin.user, admin.password, list(statements), timeout=10
    )


def slave_status(replica: Server) -> Dict[str, str | None]:
    """
    The replica's C{SHOW SLAVE STATUS} row as a column -> text mapping (empty: not a replica).
    """
    from tests.testbed import wireclient

    admin = replica.accounts["admin"]
    client = wireclient.connect(replica.host, replica.port, timeout=10)
    try:
        client.login(admin.user, admin.password)
        client.command(b"\x03SHOW SLAVE STATUS")
        columns: List[str] = []
        first = client.read_packet()
        if first[:1] == b"\xff":
            raise wireclient.error_from_payload(first)
        if first[:1] == b"\x00":
            return {}
        count, _ = wireclient.lenenc_int(first, 0)
        for _ in range(count or 0):
            column = client.read_packet()
            pos = 0
            parts = []
            for _field in range(5):  # catalog, schema, table, org_table, name
                value, pos = wireclient.lenenc_bytes(column, pos)
                parts.append(value or b"")
            columns.append(parts[4].decode())
        client.read_packet()  # EOF after the columns (classic EOF: no DEPRECATE_EOF asked)
        values: List[bytes | None] = []
        while True:
            packet = client.read_packet()
            if packet[:1] == b"\xfe" and len(packet) < 9:
                break
            pos = 0
            values = []
            for _ in columns:
                if packet[pos : pos + 1] == b"\xfb":
                    values.append(None)
                    pos += 1
                else:
                    value, pos = wireclient.lenenc_bytes(packet, pos)
                    values.append(value)
    finally:
        client.close()
    if not values:
        return {}
    return {
        name: (value.decode("utf-8", "replace") if value is not None else None)
        for name, value in zip(columns, values)
    }


def _replicating(pair: Replication) -> bool:
    try:
        status = slave_status(pair.replica)
    except Exception:
        return False
    return status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"


def _connect_replica(primary: Server, replica: Server, timeout: float = 60.0) -> None:
    run(
        replica,
        [
            "STOP SLAVE",
            f"CHANGE MASTER TO MASTER_HOST='{primary.host}', MASTER_PORT={primary.port}, "
            f"MASTER_USER='{REPLICATION_USER.user}', "
            f"MASTER_PASSWORD='{REPLICATION_USER.password}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_DELAY=0",
            "START SLAVE",
        ],
    )
    deadline = time.monotonic() + timeout
    pair = Replication(primary, replica)
    while not _replicating(pair):
        if time.monotonic() > deadline:
            raise TestbedError(
                f"the replica does not replicate after {timeout:.0f} s: {slave_status(replica)!r}",
                log_tail(list(replica.log_files)),
            )
        time.sleep(0.1)


def _read_state() -> Replication | None:
    try:
        data = json.loads(_state_path().read_text())
        return Replication(Server.from_json(data["primary"]), Server.from_json(data["replica"]))
    except (OSError, ValueError, TypeError, KeyError, AssertionError):
        return None


def replication_status() -> Replication | None:
    """
    The recorded pair if both processes are alive, else C{None}.
    """
    pair = _read_state()
    if pair is None:
        return None
    if not all(pid_matches(s.pid, s.base_dir) for s in (pair.primary, pair.replica)):
        return None
    return pair


def start_replication(reuse: bool = True) -> Replication:
    """
    A running primary -> replica pair, replicating.

    @param reuse: keep a recorded pair whose replica replicates (C{started_here=False});
        otherwise (or when it does not) both are made afresh.
    @raise TestbedError: with the log tail, if either does not come up or the replica does not
        replicate within a minute.
    """
    with _locked("replication"):
        old = replication_status()
        if old is not None and reuse:
            if _replicating(old):
                return attrs.evolve(old, started_here=False)
            with contextlib.suppress(Exception):
                # Left stopped by a test that was interrupted: start it again.
                run(old.replica, ["START SLAVE"])
                _connect_replica(old.primary, old.replica, timeout=10)
                return attrs.evolve(old, started_here=False)
        _stop_recorded()
        primary = _fresh("primary")
        try:
            replica = _fresh("replica")
        except BaseException:
            stop_pid(primary.pid, primary.base_dir)
            raise
        pair = Replication(primary, replica)
        try:
            _connect_replica(primary, replica)
        except BaseException:
            stop_pid(replica.pid, replica.base_dir)
            stop_pid(primary.pid, primary.base_dir)
            raise
        _write_state(pair)
        return attrs.evolve(pair, started_here=True)


def _write_state(pair: Replication) -> None:
    path = _state_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {"primary": pair.primary.to_json(), "replica": pair.replica.to_json()},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    os.replace(tmp, path)


def kill_replica(pair: Replication, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
    """
    Send C{sig} to the replica's server (a crash by default) and wait until it is gone.

    @raise TestbedError: it still runs after C{timeout} seconds.
    """
    os.kill(pair.replica.pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pair.replica.pid):
        if time.monotonic() > deadline:
            raise TestbedError(f"the replica (pid {pair.replica.pid}) still runs after {sig}")
        time.sleep(0.02)


def restart_replica(pair: Replication) -> Replication:
    """
    Start the replica again on its port and data directory (after L{kill_replica}); it resumes
    replicating where it stopped.

    @return: the pair with the new replica process (also recorded).
    """
    with _locked("replication"):
        old = pair.replica
        stop_pid(old.pid, old.base_dir)
        base = Path(old.base_dir)
        # The accounts exist now: the init file would fail on its CREATE USERs.
        args = [a for a in _args("replica", base, old.port) if not a.startswith("--init-file=")]
        replica = _spawn("replica", base, old.port, args)
        restarted = Replication(pair.primary, replica, pair.started_here)
        _write_state(restarted)
        return restarted


def _stop_recorded() -> bool:
    pair = _read_state()
    if pair is None:
        return False
    stopped = False
    for server in (pair.replica, pair.primary):
        stopped = stop_pid(server.pid, server.base_dir) or stopped
    with contextlib.suppress(OSError):
        _state_path().unlink()
    return stopped


def stop_replication() -> bool:
    """
    Stop both servers of the recorded pair.

    @return: whether a running server was stopped.
    """
    with _locked("replication"):
        return _stop_recorded()


def wait_replicated(pair: Replication, timeout: float = 30.0) -> None:
    """
    Wait until the replica has applied every transaction the primary has written so far.

    @raise TestbedError: it has not after C{timeout} seconds.
    """
    (rows,) = run(pair.primary, ["SELECT @@gtid_binlog_pos"])
    target = (rows[0][0] or b"").decode()
    if not target:
        return
    (waited,) = run(pair.replica, [f"SELECT MASTER_GTID_WAIT('{target}', {timeout})"])
    if waited[0] != (b"0",):
        raise TestbedError(
            f"the replica did not reach {target} within {timeout:.0f} s: "
            f"{slave_status(pair.replica)!r}"
        )


def replication_main(action: str) -> int:
    """
    C{python -m tests.testbed replication {start,stop,status,env,config}}; return the exit
    status.
    """
    import shlex

    if action == "start":
        began = time.monotonic()
        try:
            pair = start_replication()
        except TestbedError as exc:
            print(f"replication: FAILED: {exc}", flush=True)
            return 1
        how = "started" if pair.started_here else "already running"
        print(
            f"replication: primary 127.0.0.1:{pair.primary.port} (pid {pair.primary.pid}) -> "
            f"replica 127.0.0.1:{pair.replica.port} (pid {pair.replica.pid}), "
            f"db={pair.primary.database} user={pair.primary.user}/{pair.primary.password} "
            f"monitor={MONITOR.user}/{MONITOR.password} "
            f"({how}, {time.monotonic() - began:.1f} s)"
        )
        return 0
    if action == "stop":
        print(f"replication: {'stopped' if stop_replication() else 'was not running'}")
        return 0
    running = replication_status()
    if running is None:
        print("replication: not running")
        return 1
    pair = running
    if action == "status":
        status = slave_status(pair.replica)
        print(
            f"replication: primary 127.0.0.1:{pair.primary.port} -> replica "
            f"127.0.0.1:{pair.replica.port}: IO {status.get('Slave_IO_Running')}, "
            f"SQL {status.get('Slave_SQL_Running')}, "
            f"{status.get('Seconds_Behind_Master')} s behind"
        )
        return 0
    if action == "config":
        print(proxy_config(pair), end="")
        return 0
    for name, value in pair.env().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def proxy_config(pair: Replication, listen_port: int = 2883) -> str:
    """
    A proxy configuration (YAML) for the pair: one MySQL cluster C{replication} with the
    primary and the replica (C{role: replica}), the test bed accounts (C{native_user} reads
    weakly by default, C{admin} strongly) and C{monitor} as the metadata account.
    """

    def verifier(password: str) -> str:
        import hashlib

        return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()

    native, admin = pair.primary.accounts["native"], pair.primary.accounts["admin"]
    return f"""# Written by tests.testbed.replication.proxy_config for the running pair.
listen_port: {listen_port}
metadata_user: {MONITOR.user}
metadata_password: {MONITOR.password}
max_replica_lag: 5s
replica_check_interval: 1s
clusters:
  - name: replication
    type: mysql
    servers:
      - '{pair.primary.host}:{pair.primary.port}'
      - {{address: '{pair.replica.host}:{pair.replica.port}', role: replica}}
    users:
      - {{name: {native.user}, verifier: '{verifier(native.password)}', read_consistency: weak}}
      - {{name: {admin.user}, verifier: '{verifier(admin.password)}'}}
"""
