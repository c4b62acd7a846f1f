"""
The workloads, each run against one running target at a time.

  - L{Sysbench}: C{oltp_point_select} and C{oltp_read_only}, text or prepared statements
    (C{--db-ps-mode=auto}), at a number of client threads;
  - L{Churn}: connect, C{SELECT 1}, quit, as fast as C{threads} clients can (C{bench/churn.lua}
    under sysbench, whose C client keeps the client's own cost low);
  - L{Stream}: one large result read by the C{mariadb} command-line client in C{--quick} mode:
    MiB/s, and the proxy's RSS growth while it streams;
  - L{Idle}: C{clients} logged-in connections held open at once (C{python -m bench.idle}): RSS
    per idle client session, and whether every one of them still answers.

Each C{run} returns a L{bench.report.Row}; a failure becomes a row with its error, so one broken
target does not lose the rest of the run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Callable, List, Sequence

import attrs

from bench import procstat
from bench.report import Row
from bench.targets import ROOT, Backend, Running, Target

#: The churn script for sysbench.
CHURN_LUA = ROOT / "bench" / "churn.lua"

#: How long a sysbench run may overrun its --time before it is killed.
GRACE = 60.0


def sysbench_path() -> str | None:
    """
    The sysbench executable, if installed.
    """
    return shutil.which("sysbench")


def mariadb_cli_path() -> str | None:
    """
    The C{mariadb} (or C{mysql}) command-line client, if installed.
    """
    return shutil.which("mariadb") or shutil.which("mysql")


@attrs.frozen
class Sample:
    """
    The target's and the database's CPU seconds at one moment.
    """

    proxy: float | None
    db: float

    @classmethod
    def take(cls, running: Running, backend: Backend) -> Sample:
        return cls(running.cpu_seconds(), procstat.cpu_seconds(backend.pid))


def _per(delta: float | None, count: float, scale: float = 1e6) -> float | None:
    if delta is None or count <= 0:
        return None
    return delta * scale / count


def mysql_options(running: Running, backend: Backend) -> List[str]:
    """
    sysbench's connection options for a client of C{running}.
    """
    return [
        "--db-driver=mysql",
        f"--mysql-host={running.host}",
        f"--mysql-port={running.port}",
        f"--mysql-user={backend.user}",
        f"--mysql-password={backend.password}",
        f"--mysql-db={backend.database}",
    ]


@attrs.frozen
class SysbenchResult:
    """
    What a sysbench run printed.

    @ivar events: transactions (one per C{event()} call).
    @ivar queries: queries (BEGIN/COMMIT and prepared executions included).
    @ivar seconds: the run's measured time.
    @ivar p95_ms: the 95th percentile latency of an event, in milliseconds.
    @ivar errors: ignored errors plus reconnects.
    """

    events: int
    queries: int
    seconds: float
    p95_ms: float
    errors: int


_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def parse_sysbench(output: str) -> SysbenchResult:
    """
    Read the totals out of sysbench 1.0's report.

    @raise ValueError: if the report lacks them (sysbench failed).
    """

    def find(pattern: str) -> str:
        match = re.search(pattern, output)
        if match is None:
            raise ValueError(f"sysbench output has no {pattern!r}")
        return match.group(1)

    errors = int(find(r"ignored errors:\s+([0-9]+)"))
    reconnects = re.search(r"reconnects:\s+([0-9]+)", output)
    return SysbenchResult(
        events=int(find(r"transactions:\s+([0-9]+)")),
        queries=int(find(r"queries:\s+([0-9]+)")),
        seconds=float(find(r"total time:\s+" + _NUMBER + "s")),
        p95_ms=float(find(r"95th percentile:\s+" + _NUMBER)),
        errors=errors + (int(reconnects.group(1)) if reconnects else 0),
    )


def run_sysbench(
    args: Sequence[str], seconds: float, started: Callable[[], None] | None = None
) -> SysbenchResult:
    """
    Run sysbench with C{args} for C{seconds} and parse its report.

    @param started: called when every client thread has connected (sysbench's C{Threads
        started!}), so that CPU readings taken then leave the logins out of a per-query figure
        (at 128 threads they would add several microseconds per query).
    @raise ValueError: if it fails (the message has its output's tail).
    """
    sysbench = sysbench_path()
    if sysbench is None:
        raise ValueError("sysbench is not installed (scripts/install-bench-deps.sh)")
    command = [sysbench, *args, f"--time={max(1, round(seconds))}", "--percentile=95", "run"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    # A run that hangs is killed, so that one stuck target does not stop the benchmark.
    timer = threading.Timer(seconds + GRACE, process.kill)
    timer.start()
    lines: List[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if started is not None and line.startswith("Threads started!"):
                started()
        process.wait()
    finally:
        timer.cancel()
    output = "".join(lines)
    if process.returncode == -9:
        raise ValueError(f"sysbench did not finish within {seconds + GRACE:.0f} s")
    try:
        result = parse_sysbench(output)
    except ValueError:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise ValueError(f"sysbench failed (exit {process.returncode}): {tail}") from None
    if process.returncode != 0:
        raise ValueError(f"sysbench exited {process.returncode}: {output.strip()[-300:]}")
    return result


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else ""


def _failed(template: Row, exc: BaseException) -> Row:
    return attrs.evolve(template, error=_last_line(str(exc)) or type(exc).__name__)


@attrs.frozen
class Sysbench:
    """
    One sysbench OLTP cell.

    @ivar test: C{"oltp_point_select"} or C{"oltp_read_only"}.
    @ivar mode: C{"text"} (COM_QUERY) or C{"ps"} (C{--db-ps-mode=auto}: prepared statements).
    @ivar threads: client threads.
    @ivar seconds: how long it runs.
    @ivar table_size: rows of C{sbtest1}.
    """

    test: str
    mode: str
    threads: int
    seconds: float
    table_size: int

    @property
    def workload(self) -> str:
        return self.test.replace("oltp_", "")

    @property
    def variant(self) -> str:
        return f"{self.mode} {self.threads}thr"

    def args(self, running: Running, backend: Backend, threads: int | None = None) -> List[str]:
        return [
            self.test,
            *mysql_options(running, backend),
            "--tables=1",
            f"--table-size={self.table_size}",
            f"--threads={threads or self.threads}",
            f"--db-ps-mode={'auto' if self.mode == 'ps' else 'disable'}",
        ]

    def warm(self, running: Running, backend: Backend, seconds: float) -> None:
        """
        Run the same statements for C{seconds}, unmeasured (PyPy's JIT, caches, pools).
        """
        run_sysbench(self.args(running, backend, threads=8), seconds)

    def run(self, running: Running, backend: Backend) -> Row:
        row = Row(backend.kind, self.workload, self.variant, running.target.name, "q/s")
        samples = [Sample.take(running, backend)]

        def started() -> None:
            # Read again once every client is logged in: the logins are not queries.
            samples[0] = Sample.take(running, backend)

        try:
            result = run_sysbench(self.args(running, backend), self.seconds, started)
        except ValueError as exc:
            return _failed(row, exc)
        before = samples[0]
        after = Sample.take(running, backend)
        proxy = None if before.proxy is None or after.proxy is None else after.proxy - before.proxy
        return attrs.evolve(
            row,
            rate=result.queries / result.seconds,
            p95_ms=result.p95_ms,
            cpu_us=_per(proxy, result.queries),
            db_cpu_us=_per(after.db - before.db, result.queries),
            errors=result.errors,
        )


def prepare_sysbench(backend: Backend, table_size: int) -> None:
    """
    Make C{sbtest1} with C{table_size} rows on C{backend} (dropping an old one first).

    @raise ValueError: if sysbench fails.
    """
    sysbench = sysbench_path()
    if sysbench is None:
        raise ValueError("sysbench is not installed (scripts/install-bench-deps.sh)")
    direct = Running(Target("direct", "direct"), backend.host, backend.port)
    base = [*mysql_options(direct, backend), "--tables=1", f"--table-size={table_size}"]
    subprocess.run(
        [sysbench, "oltp_point_select", *base, "cleanup"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    done = subprocess.run(
        [sysbench, "oltp_point_select", *base, "prepare"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise ValueError(f"sysbench prepare failed: {(done.stdout + done.stderr).strip()[-300:]}")


@attrs.frozen
class Churn:
    """
    Connection churn: each event connects, runs C{SELECT 1} and quits.

    @ivar threads: concurrent clients.
    @ivar seconds: how long it runs.
    """

    threads: int
    seconds: float

    workload = "churn"

    @property
    def variant(self) -> str:
        return f"{self.threads}thr"

    def args(self, running: Running, backend: Backend) -> List[str]:
        return [str(CHURN_LUA), *mysql_options(running, backend), f"--threads={self.threads}"]

    def warm(self, running: Running, backend: Backend, seconds: float) -> None:
        run_sysbench(self.args(running, backend), seconds)

    def run(self, running: Running, backend: Backend) -> Row:
        row = Row(backend.kind, self.workload, self.variant, running.target.name, "conn/s")
        before = Sample.take(running, backend)
        try:
            result = run_sysbench(self.args(running, backend), self.seconds)
        except ValueError as exc:
            return _failed(row, exc)
        after = Sample.take(running, backend)
        proxy = None if before.proxy is None or after.proxy is None else after.proxy - before.proxy
        return attrs.evolve(
            row,
            rate=result.events / result.seconds,
            p95_ms=result.p95_ms,
            cpu_us=_per(proxy, result.events),
            db_cpu_us=_per(after.db - before.db, result.events),
            errors=result.errors,
        )


#: Bytes of one streamed row's payload: 1 KiB, so a result of N MiB is N * 1024 rows.
STREAM_ROW = 1024


def prepare_stream(backend: Backend, mib: int) -> None:
    """
    Make the streaming tables: C{bench_rows} (1024 rows of 1 KiB: one MiB) and C{bench_seq}
    (C{mib} numbered rows), so that their join is a result of C{mib} MiB made by the database
    without storing it.
    """
    from tests.testbed import wireclient

    client = wireclient.connect(backend.host, backend.port, timeout=120)
    try:
        client.login(backend.user, backend.password, backend.database)
        client.query("DROP TABLE IF EXISTS bench_rows")
        client.query("DROP TABLE IF EXISTS bench_seq")
        client.query("CREATE TABLE bench_rows (id INT PRIMARY KEY, payload VARCHAR(1024) NOT NULL)")
        client.query("CREATE TABLE bench_seq (n INT PRIMARY KEY)")
        client.query(
            "INSERT INTO bench_rows VALUES "
            + ",".join(f"({i}, REPEAT('x', {STREAM_ROW}))" for i in range(1, 1025))
        )
        for start in range(1, mib + 1, 1000):
            stop = min(mib, start + 999)
            client.query(
                "INSERT INTO bench_seq VALUES " + ",".join(f"({n})" for n in range(start, stop + 1))
            )
    finally:
        client.close()


class _RssSampler:
    """
    Samples a target's RSS in a thread until stopped; keeps the peak.
    """

    def __init__(self, read: Callable[[], int | None], interval: float = 0.05) -> None:
        self.read = read
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                value = self.read()
            except OSError:
                value = None
            if value is not None:
                self.peak = max(self.peak, value)
            self._stop.wait(self.interval)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@attrs.frozen
class Stream:
    """
    One large result, read with the C{mariadb} client in C{--quick} mode (row by row, nothing
    buffered on the client).

    @ivar mib: the result's payload in MiB.
    """

    mib: int

    workload = "stream"

    @property
    def variant(self) -> str:
        return f"{self.mib}MiB"

    def sql(self) -> str:
        return f"SELECT r.payload FROM bench_seq s JOIN bench_rows r WHERE s.n <= {self.mib}"

    def command(self, running: Running, backend: Backend) -> List[str]:
        cli = mariadb_cli_path()
        if cli is None:
            raise ValueError("the mariadb command-line client is not installed")
        return [
            cli,
            "--no-defaults",
            "--quick",
            "--batch",
            "--skip-column-names",
            "--raw",
            f"--host={running.host}",
            f"--port={running.port}",
            f"--user={backend.user}",
            f"--password={backend.password}",
            f"--database={backend.database}",
            "--skip-ssl",
            "-e",
            self.sql(),
        ]

    def warm(self, running: Running, backend: Backend, seconds: float) -> None:
        attrs.evolve(self, mib=1).run(running, backend)

    def run(self, running: Running, backend: Backend) -> Row:
        row = Row(backend.kind, self.workload, self.variant, running.target.name, "MiB/s")
        try:
            command = self.command(running, backend)
        except ValueError as exc:
            return _failed(row, exc)
        rss_before = running.rss_bytes()
        before = Sample.take(running, backend)
        began = time.monotonic()
        with _RssSampler(running.rss_bytes) as sampler:
            done = subprocess.run(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
                timeout=600 + self.mib,
            )
        elapsed = time.monotonic() - began
        after = Sample.take(running, backend)
        if done.returncode != 0:
            return _failed(
                row, ValueError(f"mariadb client exited {done.returncode}: {done.stderr.strip()}")
            )
        proxy = None if before.proxy is None or after.proxy is None else after.proxy - before.proxy
        growth = None if rss_before is None else max(0, sampler.peak - rss_before) / 2**20
        return attrs.evolve(
            row,
            rate=self.mib / elapsed,
            cpu_us=_per(proxy, self.mib),
            db_cpu_us=_per(after.db - before.db, self.mib),
            rss_growth_mib=growth,
        )


@attrs.frozen
class Idle:
    """
    C{clients} logged-in, idle connections at once.

    @ivar clients: how many.
    """

    clients: int

    workload = "idle"

    @property
    def variant(self) -> str:
        return f"{self.clients}cl"

    def warm(self, running: Running, backend: Backend, seconds: float) -> None:
        # One login and quit: lazily imported modules and first-use caches are in place before
        # the baseline RSS is read.
        from tests.testbed import wireclient

        client = wireclient.connect(running.host, running.port, timeout=30)
        try:
            client.login(backend.user, backend.password, backend.database)
            client.query("SELECT 1")
        finally:
            client.close()

    def run(self, running: Running, backend: Backend) -> Row:
        row = Row(backend.kind, self.workload, self.variant, running.target.name, "sessions")
        if running.pid is None:
            return attrs.evolve(row, error="no proxy process: nothing to measure")
        time.sleep(0.5)  # let the sessions of earlier runs go
        rss_before = running.rss_bytes()
        before = Sample.take(running, backend)
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.idle",
                running.host,
                str(running.port),
                backend.user,
                backend.password,
                backend.database,
                str(self.clients),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert driver.stdin is not None and driver.stdout is not None
        try:
            ready = driver.stdout.readline().split()  # "ready OK ERRORS SECONDS"
            if not ready or ready[0] != "ready":
                raise ValueError(
                    f"idle driver failed: {driver.stderr.read() if driver.stderr else ''}"
                )
            time.sleep(0.5)
            rss_after = running.rss_bytes()
            after = Sample.take(running, backend)
            driver.stdin.write("ping\n")
            driver.stdin.flush()
            pinged = driver.stdout.readline().split()  # "pinged OK ERRORS"
            driver.stdin.close()
            driver.wait(timeout=120)
        except (ValueError, OSError, subprocess.TimeoutExpired) as exc:
            driver.kill()
            driver.wait()
            return _failed(row, exc)
        held = int(ready[1])
        errors = int(ready[2]) + (int(pinged[2]) if len(pinged) > 2 else held)
        if held == 0 or rss_before is None or rss_after is None:
            return attrs.evolve(row, errors=errors, error="no session could be opened")
        proxy = None if before.proxy is None or after.proxy is None else after.proxy - before.proxy
        return attrs.evolve(
            row,
            rate=float(held),
            cpu_us=_per(proxy, held),
            kib_per_session=(rss_after - rss_before) / 1024 / held,
            errors=errors,
            error=_last_line(driver.stderr.read() if driver.stderr else "") if errors else "",
        )
