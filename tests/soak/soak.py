"""
The soak test with faults (issue 8, "Faults under load, and the ledger").

  python -m tests.soak --minutes 30          (or make soak SOAK_MINUTES=30)

It starts the three MariaDB instances of the high-availability tests
(L{tests.integration.ha_cluster}), a pausable relay (L{tests.soak.relay}) in front of the third,
and C{twistd -n obproxy} in a subprocess in front of all three. Client threads
(L{tests.integration.ledger_load}'s workers: point reads, slow reads, autocommit ledger inserts,
transactions of three inserts) run through the proxy while faults come on a fixed schedule, one
every C{--fault-interval} seconds, in turn:

  - C{stall}: the relay pauses for C{--stall-seconds} (the link to one backend stops moving);
  - C{kill_proxysession}: C{KILL PROXYSESSION cs ss} through the proxy's admin, for server
    sessions of a few busy client sessions;
  - C{client_dies_in_transaction}: a client closes its socket (RST) after two inserts of a
    transaction, without COMMIT (none of it may be on a server afterwards);
  - C{backend_kill}: the second instance is SIGKILLed and restarted;
  - C{client_dies_in_result}: a client closes its socket after reading a few rows of a large
    result (the proxy must stop that work and clean up).

Every client keeps a ledger of what it was told (acknowledged, failed, in doubt). At the end the
three servers must hold every acknowledged row exactly once, nothing of a failed transaction, in
doubt transactions all or nothing, and nothing twice. The proxy's RSS and open file descriptors
are taken at two quiet points (no client connected): after a warm-up run without faults, and
after the run; they must be flat within L{RSS_BOUND_MIB} MiB + L{RSS_BOUND_RATIO} and
L{FD_BOUND} descriptors; so must the connections of the clients' user on the three servers,
and at the end none of them may still be running a statement (a large result whose client died
must not go on running). The figures are printed, and with C{--json FILE} also written there.
The exit status is 0 when every check holds, 1 otherwise (the failures are printed).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import pymysql
import pymysql.cursors

from tests.integration.ha_cluster import (
    NAMES,
    ROWS,
    direct,
    ledger_ids,
    start_cluster,
    stop_cluster,
)
from tests.integration.ledger_load import Worker
from tests.proxy_fixtures import verifier
from tests.soak.relay import PausableRelay
from tests.testbed import REPO_ROOT, Server
from tests.testbed.instances import kill_instance, restart_instance

#: The instance SIGKILLed and restarted; the one behind the pausable relay.
KILLED = NAMES[1]
STALLED = NAMES[2]
#: The faults, in the order the schedule injects them.
FAULTS = (
    "stall",
    "kill_proxysession",
    "client_dies_in_transaction",
    "backend_kill",
    "client_dies_in_result",
)
#: Flat means: end RSS <= start RSS * (1 + RSS_BOUND_RATIO) + RSS_BOUND_MIB, and end fds <=
#: start fds + FD_BOUND, both taken with no client connected.
RSS_BOUND_MIB = 24
RSS_BOUND_RATIO = 0.25
FD_BOUND = 2
#: Proxy counters printed at the end (SHOW PROXYSTAT names), those that exist.
COUNTERS = (
    "server_sessions_lost",
    "lost_reads_resent",
    "refused_requests_retried",
    "lost_requests_reported",
    "server_connect_failures",
)

_RUN_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


def proc_figures(pid: int) -> Tuple[int, int]:
    """The resident set (KiB) and number of open file descriptors of process C{pid}."""
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def abort(connection: Any) -> None:
    """Close a PyMySQL connection's socket at once with a reset (a client that died)."""
    sock = connection._sock
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        connection._sock = None


class SoakWorker(Worker):
    """
    A ledger worker that runs until told to stop and obeys the fault schedule's orders to die
    (L{order}: C{"client_dies_in_transaction"} or C{"client_dies_in_result"}).
    """

    def __init__(
        self, number: int, options: argparse.Namespace, started: float, stop: threading.Event
    ) -> None:
        super().__init__(number, options, started)
        self.stop = stop
        self.order: str | None = None
        self.obeyed: List[Tuple[str, float]] = []
        self.crash: str | None = None

    def run(self) -> None:
        try:
            self.connect()
            while not self.stop.is_set():
                order, self.order = self.order, None
                if order == "client_dies_in_transaction":
                    self.die_in_transaction()
                    continue
                if order == "client_dies_in_result":
                    self.die_in_result()
                    continue
                self.step()
            self.connection.close()
        except Exception as exc:  # noqa: BLE001 (reported: a worker that stops is a failure)
            self.crash = f"{type(exc).__name__}: {exc}"

    def die_in_transaction(self) -> None:
        """Two inserts of a transaction, then the socket is reset: none of it may remain."""
        ids: List[int] = []
        try:
            self.connection.begin()
            with self.connection.cursor() as cursor:
                for _ in range(2):
                    ident = self.next_id()
                    ids.append(ident)
                    self._insert(cursor, ident, "died")
        except pymysql.err.MySQLError as exc:
            self.result["failed"].append(ids)
            self.record("transaction insert", exc, self.disconnected())
            return
        abort(self.connection)
        self.result["failed"].append(ids)
        self.obeyed.append(("client_dies_in_transaction", self.now()))
        self.connect()

    def die_in_result(self) -> None:
        """A large result read a little, then the socket is reset."""
        try:
            cursor = self.connection.cursor(pymysql.cursors.SSCursor)
            cursor.execute("SELECT a.id, a.c, b.c FROM sbtest a CROSS JOIN sbtest b")
            rows = cursor.fetchmany(20)
            if len(rows) != 20:
                raise AssertionError(f"large result gave {len(rows)} rows")
        except (pymysql.err.MySQLError, AssertionError) as exc:
            self.record("large read", exc, self.disconnected())
            return
        abort(self.connection)
        self.obeyed.append(("client_dies_in_result", self.now()))
        self.connect()


class Proxy:
    """C{twistd -n obproxy} in a subprocess, its output in a log file."""

    def __init__(self, workdir: Path, servers: Sequence[str], native: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.conf = workdir / "soak.yaml"
        self.log = workdir / "proxy.log"
        quoted = ", ".join(f'"{server}"' for server in servers)
        self.conf.write_text(
            f"""\
listen: "tcp:{self.port}:interface=127.0.0.1"
enable_prometheus: false
short_async_task_timeout: 2s
clusters:
  - name: soak
    type: mysql
    servers: [{quoted}]
    users:
      - {{name: {native.user}, tenant: sys, verifier: "{verifier(native.password)}"}}
""",
            encoding="utf-8",
        )
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self._output = open(self.log, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _RUN_TWISTD, "-n", f"--pidfile={workdir / 'twistd.pid'}"]
            + ["obproxy", "-c", str(self.conf)],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the proxy exited: {self.log.read_text()[-3000:]}")
            try:
                with self.admin():
                    return
            except pymysql.err.MySQLError:
                time.sleep(0.2)
        raise RuntimeError("the proxy does not answer")

    def admin(self) -> Any:
        """A connection to the proxy's local admin (C{root@proxysys})."""
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root@proxysys",
            password="",
            connect_timeout=5,
            read_timeout=30,
        )

    def query(self, sql: str) -> List[Tuple[Any, ...]]:
        """Run C{sql} as the admin and return its rows."""
        with self.admin() as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    def client_sessions(self) -> int:
        """Client sessions other than the admin's own asking."""
        return len(self.query("SHOW PROXYSESSION")) - 1

    def stats(self) -> Dict[str, int]:
        """SHOW PROXYSTAT as a mapping."""
        return {str(name): int(value) for name, value, *_ in self.query("SHOW PROXYSTAT")}

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 60 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._output.close()

    def log_problems(self) -> List[str]:
        """Lines of the proxy's log that mean a bug (tracebacks, unhandled errors)."""
        return [
            line.rstrip()
            for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines()
            if "Traceback" in line or "Unhandled" in line
        ]


class Faults:
    """The fault schedule: one fault every C{interval} seconds, in L{FAULTS} order, in a thread."""

    def __init__(
        self,
        proxy: Proxy,
        relay: PausableRelay,
        workers: Sequence[SoakWorker],
        options: argparse.Namespace,
        stop: threading.Event,
        started: float,
    ) -> None:
        self.proxy = proxy
        self.relay = relay
        self.workers = workers
        self.options = options
        self.stop = stop
        self.started = started
        self.random = random.Random(options.seed)
        self.injected: collections.Counter[str] = collections.Counter()
        self.problems: List[str] = []
        self.log: List[Tuple[float, str, str]] = []
        self.thread = threading.Thread(target=self.run, name="soak-faults", daemon=True)
        self.actions: Dict[str, Callable[[], str]] = {
            "stall": self.stall,
            "kill_proxysession": self.kill_proxysession,
            "client_dies_in_transaction": lambda: self.order("client_dies_in_transaction"),
            "backend_kill": self.backend_kill,
            "client_dies_in_result": lambda: self.order("client_dies_in_result"),
        }

    def run(self) -> None:
        step = 0
        while not self.stop.wait(self.options.fault_interval):
            kind = FAULTS[step % len(FAULTS)]
            step += 1
            at = time.monotonic() - self.started
            try:
                detail = self.actions[kind]()
                self.injected[kind] += 1
            except Exception as exc:  # noqa: BLE001 (a fault that cannot be injected is reported)
                detail = f"not injected: {type(exc).__name__}: {exc}"
                self.problems.append(f"{kind} at {at:.1f} s: {detail}")
            self.log.append((round(at, 2), kind, detail))

    def stall(self) -> str:
        self.relay.pause()
        try:
            self.stop.wait(self.options.stall_seconds)
        finally:
            self.relay.resume()
        return f"{STALLED} stalled {self.options.stall_seconds} s"

    def kill_proxysession(self) -> str:
        killed = []
        with self.proxy.admin() as admin, admin.cursor() as cursor:
            cursor.execute("SHOW PROXYSESSION")
            busy = [row for row in cursor.fetchall() if int(row[8]) > 0]
            self.random.shuffle(busy)
            for row in busy[:3]:
                cs_id = int(row[1])
                try:
                    cursor.execute(f"SHOW PROXYSESSION ATTRIBUTE {cs_id} LIKE 'ss_id'")
                    ss_ids = [int(found[1]) for found in cursor.fetchall()]
                    if ss_ids:
                        cursor.execute(f"KILL PROXYSESSION {cs_id} {self.random.choice(ss_ids)}")
                        killed.append(cs_id)
                except pymysql.err.MySQLError as exc:
                    # The session or its server session went meanwhile (1094): a race, not a bug.
                    if exc.args[0] != 1094:
                        raise
        if not killed:
            raise RuntimeError("no server session to kill")
        return f"server sessions of {len(killed)} client sessions"

    def order(self, kind: str) -> str:
        idle = [worker for worker in self.workers if worker.order is None]
        worker = self.random.choice(idle)
        worker.order = kind
        return f"client {worker.number}"

    def backend_kill(self) -> str:
        began = time.monotonic()
        kill_instance(KILLED, signal.SIGKILL)
        gone = time.monotonic()
        restart_instance(KILLED)
        return f"{KILLED} killed in {gone - began:.2f} s, back in {time.monotonic() - gone:.1f} s"


def run_clients(
    options: argparse.Namespace,
    seconds: float,
    proxy: Proxy,
    relay: PausableRelay | None,
    sample: Callable[[float], None],
    first: int = 1,
) -> Tuple[List[SoakWorker], Faults | None, float]:
    """
    Run the clients for C{seconds} (with the fault schedule if C{relay} is given) and return
    the workers, the schedule and the run's wall-clock start. The workers are numbered from
    C{first} (their ledger ids are unique by number).
    """
    stop = threading.Event()
    started = time.monotonic()
    wall_start = time.time()
    workers = [SoakWorker(first + n, options, started, stop) for n in range(options.threads)]
    for worker in workers:
        worker.start()
    faults = None
    if relay is not None:
        faults = Faults(proxy, relay, workers, options, stop, started)
        faults.thread.start()
    deadline = started + seconds
    next_sample = started
    while time.monotonic() < deadline:
        if time.monotonic() >= next_sample:
            sample(time.monotonic() - started)
            next_sample += options.sample_interval
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    stop.set()
    if faults is not None:
        # A restart in progress finishes first: the ledger is read from every server.
        faults.thread.join(300)
    for worker in workers:
        worker.join(120)
    return workers, faults, wall_start


def quiet_figures(proxy: Proxy, settle: float) -> Tuple[int, int, int]:
    """
    Wait until no client session is left (at most 30 s), then C{settle} seconds more; the
    proxy's RSS (KiB), open fds and client sessions.
    """
    deadline = time.monotonic() + 30
    while proxy.client_sessions() > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(settle)
    rss, fds = proc_figures(proxy.process.pid)
    return rss, fds, proxy.client_sessions()


def backend_sessions(servers: Dict[str, Server], user: str) -> Tuple[int, int]:
    """
    The connections of C{user} on the three servers together, and how many of them are running
    a statement (a query of a client that went away would still be running).
    """
    connections = running = 0
    for server in servers.values():
        with direct(server) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*), COALESCE(SUM(COMMAND = 'Query'), 0) "
                "FROM information_schema.PROCESSLIST WHERE USER = %s",
                (user,),
            )
            row = cursor.fetchone()
            connections += int(row[0])
            running += int(row[1])
    return connections, running


def check_ledger(
    servers: Dict[str, Server], workers: Sequence[SoakWorker]
) -> Tuple[Dict[str, int], List[str]]:
    """The ledger figures and what is wrong with it, from the servers' ledger tables."""
    found: collections.Counter[int] = collections.Counter()
    for server in servers.values():
        found.update(ledger_ids(server))
    return judge_ledger(
        found,
        [group for worker in workers for group in worker.result["acked"]],
        [group for worker in workers for group in worker.result["failed"]],
        [group for worker in workers for group in worker.result["unknown"]],
    )


def judge_ledger(
    found: collections.Counter[int],
    acked: List[List[int]],
    failed: List[List[int]],
    unknown: List[List[int]],
) -> Tuple[Dict[str, int], List[str]]:
    """
    Compare what the clients were told with the rows on the servers.

    @param found: how many times each id is on the servers (all three together).
    @param acked: the ids of each acknowledged commit (autocommit insert or transaction).
    @param failed: those of each transaction that failed before its COMMIT was sent.
    @param unknown: those of each commit whose answer was lost (in doubt).
    @return: the figures, and a description of each problem: a row more than once, an
        acknowledged commit not present exactly once, a failed transaction's row present, an
        in-doubt commit partly present, a row no client wrote.
    """
    problems = []
    twice = [ident for ident, count in found.items() if count > 1]
    if twice:
        problems.append(f"{len(twice)} rows on the servers more than once: {twice[:10]}")
    missing = [group for group in acked if any(found[i] != 1 for i in group)]
    if missing:
        problems.append(f"{len(missing)} acknowledged commits not present once: {missing[:10]}")
    present = [group for group in failed if any(found[i] for i in group)]
    if present:
        problems.append(f"{len(present)} failed transactions present: {present[:10]}")
    partial = [group for group in unknown if len({found[i] for i in group}) != 1]
    if partial:
        problems.append(f"{len(partial)} in-doubt commits partly present: {partial[:10]}")
    known = {i for group in acked + failed + unknown for i in group}
    strays = [ident for ident in found if ident not in known]
    if strays:
        problems.append(f"{len(strays)} rows no client wrote: {strays[:10]}")
    figures = {
        "acked_commits": len(acked),
        "acked_rows": sum(len(group) for group in acked),
        "acked_rows_found": sum(1 for group in acked for i in group if found[i] == 1),
        "failed_transactions": len(failed),
        "failed_rows_found": sum(1 for group in failed for i in group if found[i]),
        "in_doubt_commits": len(unknown),
        "in_doubt_commits_present": sum(1 for group in unknown if all(found[i] for i in group)),
        "rows_on_servers": sum(found.values()),
    }
    return figures, problems


def soak(options: argparse.Namespace) -> Dict[str, Any]:
    """Run the whole soak test; the figures, with C{"failures"} listing what went wrong."""
    servers = start_cluster()
    relay = PausableRelay(servers[STALLED].host, servers[STALLED].port).start()
    workdir = Path(tempfile.mkdtemp(prefix="obproxy-soak-"))
    addresses = [f"{server.host}:{server.port}" for server in servers.values()]
    addresses[NAMES.index(STALLED)] = f"127.0.0.1:{relay.port}"
    native = servers[NAMES[0]].accounts["native"]
    options.port, options.user, options.password = 0, native.user, native.password
    options.database, options.rows = servers[NAMES[0]].database, ROWS
    proxy = Proxy(workdir, addresses, native)
    options.port = proxy.port
    samples: List[Tuple[float, int, int]] = []
    failures: List[str] = []

    def sample(at: float) -> None:
        rss, fds = proc_figures(proxy.process.pid)
        samples.append((round(at, 1), rss, fds))

    try:
        started_figures = proc_figures(proxy.process.pid)
        warm_workers, _, _ = run_clients(options, options.warmup, proxy, None, lambda at: None)
        start_rss, start_fds, start_left = quiet_figures(proxy, options.settle)
        start_backend = backend_sessions(servers, native.user)
        workers, faults, wall_start = run_clients(
            options, options.minutes * 60, proxy, relay, sample, first=options.threads + 1
        )
        assert faults is not None
        end_rss, end_fds, end_left = quiet_figures(proxy, options.settle)
        end_backend = backend_sessions(servers, native.user)
        stats = proxy.stats()
        ledger, ledger_problems = check_ledger(servers, warm_workers + workers)
        failures.extend(ledger_problems)
        log_problems = proxy.log_problems()
    finally:
        proxy.stop()
        relay.stop()
        if not options.keep:
            stop_cluster(servers)

    every = warm_workers + workers
    ops = collections.Counter(kind for worker in every for kind, _ in worker.result["ops"])
    errors = collections.Counter(
        f"{error['kind']}: {error['code']}" for worker in every for error in worker.result["errors"]
    )
    injected = collections.Counter(faults.injected)
    for worker in workers:
        for kind, _ in worker.obeyed:
            injected[kind] += 0  # counted where ordered; the worker's obedience is checked below
    obeyed = collections.Counter(kind for worker in workers for kind, _ in worker.obeyed)
    crashes = [f"client {w.number}: {w.crash}" for w in every if w.crash]
    alive = [w.number for w in every if w.is_alive()]

    failures.extend(faults.problems)
    failures.extend(crashes)
    if alive:
        failures.append(f"client threads still running: {alive}")
    for kind in FAULTS:
        if injected[kind] == 0:
            failures.append(f"no {kind} fault was injected")
    for kind in ("client_dies_in_transaction", "client_dies_in_result"):
        if injected[kind] and obeyed[kind] == 0:
            failures.append(f"no client obeyed {kind}")
    last_fault = max((at for at, _, _ in faults.log), default=0.0)
    last_op = max((at for worker in workers for _, at in worker.result["ops"]), default=0.0)
    if last_op <= last_fault:
        failures.append(f"no work done after the last fault ({last_fault} s)")
    rss_bound = start_rss * (1 + RSS_BOUND_RATIO) + RSS_BOUND_MIB * 1024
    if end_rss > rss_bound:
        failures.append(f"RSS grew from {start_rss} KiB to {end_rss} KiB (bound {rss_bound:.0f})")
    if end_fds > start_fds + FD_BOUND:
        failures.append(f"open fds grew from {start_fds} to {end_fds} (bound +{FD_BOUND})")
    if end_backend[0] > start_backend[0] + FD_BOUND:
        failures.append(
            f"backend connections grew from {start_backend[0]} to {end_backend[0]} "
            f"(bound +{FD_BOUND})"
        )
    if end_backend[1]:
        failures.append(f"{end_backend[1]} statements still running on the backends at the end")
    if start_left or end_left:
        failures.append(f"client sessions left at the quiet points: {start_left}, {end_left}")
    if log_problems:
        failures.append(f"{len(log_problems)} traceback/unhandled lines in the proxy log")
    # A transaction is BEGIN, three INSERTs and COMMIT.
    statements = sum(count * (5 if kind == "transaction" else 1) for kind, count in ops.items())
    return {
        "minutes": options.minutes,
        "threads": options.threads,
        "statements": statements,
        "operations_total": sum(ops.values()),
        "operations": dict(ops),
        "faults_injected": dict(injected),
        "clients_died": dict(obeyed),
        "fault_log": faults.log,
        "errors": dict(sorted(errors.items())),
        "ledger": ledger,
        "proxy_counters": {name: stats[name] for name in COUNTERS if name in stats},
        "proxy_rss_kib": {"at_launch": started_figures[0], "start": start_rss, "end": end_rss},
        "proxy_fds": {"at_launch": started_figures[1], "start": start_fds, "end": end_fds},
        "backend_connections": {"start": start_backend[0], "end": end_backend[0]},
        "backend_statements_running_at_end": end_backend[1],
        "samples": samples,
        "proxy_log": str(proxy.log),
        "log_problems": log_problems[:20],
        "failures": failures,
        "wall_start": wall_start,
    }


def report(figures: Dict[str, Any]) -> str:
    """The figures as the text the soak test prints."""
    lines = [
        f"soak: {figures['minutes']:g} min, {figures['threads']} clients, "
        f"{figures['operations_total']} operations, {figures['statements']} statements",
        f"  operations: {figures['operations']}",
        f"  faults injected: {figures['faults_injected']} (clients that died: "
        f"{figures['clients_died']})",
        f"  errors by kind and code: {figures['errors']}",
        f"  ledger: {figures['ledger']}",
        f"  proxy counters: {figures['proxy_counters']}",
        f"  proxy RSS KiB: {figures['proxy_rss_kib']}, open fds: {figures['proxy_fds']} "
        f"(start/end: no client connected, start after the warm-up)",
        f"  backend connections of the clients' user: {figures['backend_connections']}, "
        f"statements running there at the end: {figures['backend_statements_running_at_end']}",
        "  samples under load (s, RSS KiB, fds): "
        + ", ".join(
            f"{at:g}/{rss}/{fds}"
            for at, rss, fds in figures["samples"][:: max(1, len(figures["samples"]) // 12)]
        ),
        f"  proxy log: {figures['proxy_log']}",
    ]
    for line in figures["log_problems"]:
        lines.append(f"  log: {line}")
    if figures["failures"]:
        lines.append("FAILED:")
        lines.extend(f"  - {failure}" for failure in figures["failures"])
    else:
        lines.append("OK: every check holds")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the faulty run")
    parser.add_argument("--threads", type=int, default=16, help="client threads")
    parser.add_argument("--fault-interval", type=float, default=6.0, help="seconds between faults")
    parser.add_argument("--stall-seconds", type=float, default=3.0, help="length of a stall")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the run")
    parser.add_argument("--settle", type=float, default=2.0, help="quiet seconds before measuring")
    parser.add_argument("--sample-interval", type=float, default=10.0, help="RSS/fd samples")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="leave the MariaDB instances running")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak test, print its figures; 0 if every check holds."""
    options = parse(argv)
    figures = soak(options)
    print(report(figures), flush=True)
    if options.json:
        Path(options.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 1 if figures["failures"] else 0
