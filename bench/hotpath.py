"""
The proxy's CPU cost per query next to a bare Twisted relay's, measured the
way that holds on a small shared machine: the CPU time (utime + stime from
C{/proc/<pid>/stat}) each process spent during a run, divided by the queries
the run made.

    python bench/hotpath.py [--threads 8,32] [--seconds 10] [--rounds 2]
                            [--mode text|ps] [--driver sysbench|pymysql]
                            [--targets direct,relay,relay-lean,proxy] [--python EXE]
                            [--profile FILE.svg]

It starts MariaDB with the test bed (C{OBPROXY_TESTBED_DIR}, default
C{/tmp/tb-p1}), the proxy as C{twistd -n obproxy -c <conf>} in its own
process (C{PYTHONPATH} = the checkout) and C{bench/relay.py}, then drives
point selects (sysbench C{oltp_point_select} when installed, else PyMySQL in
threads) through each target in turn, round after round, so machine drift
hits all alike. It prints, per target and thread count: QPS, the target's CPU
µs per query, the database's, and the ratio of the proxy's to the relay's.

C{--profile FILE.svg} adds one run through the proxy under py-spy (flame graph
in FILE.svg) and prints the functions with the most samples of their own;
profiled runs are not part of the table. The numbers are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
RUN_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
TABLE_SIZE = 10000
CLK_TCK = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(ROOT))


def cpu_times(pid: int) -> Tuple[float, float]:
    """
    The user and system CPU time process C{pid} has used so far, in seconds.
    """
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # Fields 14 and 15 (utime, stime), counted from 1 with the command name as field 2.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """
    The CPU time (user + system) process C{pid} has used so far.
    """
    user, system = cpu_times(pid)
    return user + system


def rss_kib(pid: int) -> int:
    """
    The resident set size of process C{pid}, in KiB.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    """
    A loopback TCP port that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(process: subprocess.Popen, port: int, what: str, timeout: float = 30) -> None:
    """
    Wait until something accepts on C{port}; fail if C{process} exits first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what}: nothing listens on {port} after {timeout}s")


def verifier(password: str) -> str:
    """
    MySQL's C{*HEX} verifier of C{password}.
    """
    import hashlib

    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


class Target:
    """
    Somewhere the load can go: a port, and the process whose CPU is counted.
    """

    def __init__(self, name: str, port: int, process: subprocess.Popen | None) -> None:
        self.name = name
        self.port = port
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_relay(python: str, backend: Tuple[str, int], workdir: Path, lean: bool = False) -> Target:
    """
    The bare Twisted relay (C{bench/relay.py}) in front of C{backend}; with
    C{lean}, on the proxy's reactor (the C{relay-lean} target).
    """
    name = "relay-lean" if lean else "relay"
    port = free_port()
    log = open(workdir / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [python, str(ROOT / "bench" / "relay.py"), str(port), f"{backend[0]}:{backend[1]}"]
        + (["--lean-reactor"] if lean else []),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(process, port, name)
    return Target(name, port, process)


def start_proxy(
    python: str, backend: Tuple[str, int], user: str, password: str, workdir: Path, extra: str
) -> Target:
    """
    C{twistd -n obproxy} in front of C{backend}, with C{user} configured.
    """
    port = free_port()
    conf = workdir / "proxy.yaml"
    conf.write_text(
        f"""
listen_port: {port}
local_bound_ip: 127.0.0.1
{extra}
clusters:
  - name: bench
    type: mysql
    servers: ["{backend[0]}:{backend[1]}"]
    users:
      - {{name: {user}, tenant: sys, verifier: '{verifier(password)}'}}
"""
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [
            python,
            "-c",
            RUN_TWISTD,
            "-n",
            "--pidfile=",
            "-l",
            str(workdir / "proxy.log"),
            "obproxy",
            "-c",
            str(conf),
        ],
        cwd=str(workdir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "proxy.err", "w"),  # noqa: SIM115
    )
    wait_for_port(process, port, "proxy")
    return Target("proxy", port, process)


class Run:
    """
    One measured run: queries, seconds, p95 latency (ms), CPU seconds per process.
    """

    def __init__(self, queries: int, seconds: float, p95_ms: float) -> None:
        self.queries = queries
        self.seconds = seconds
        self.p95_ms = p95_ms
        self.cpu: Dict[str, float] = {}
        self.system: Dict[str, float] = {}


def sysbench_args(port: int, user: str, password: str, database: str) -> List[str]:
    return [
        "sysbench",
        "oltp_point_select",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={port}",
        f"--mysql-user={user}",
        f"--mysql-password={password}",
        f"--mysql-db={database}",
        "--tables=1",
        f"--table-size={TABLE_SIZE}",
        "--db-driver=mysql",
    ]


def prepare(backend: Tuple[str, int], user: str, password: str, database: str) -> None:
    """
    Create C{sbtest1} (sysbench's table) unless it is there.
    """
    import pymysql  # type: ignore[import-untyped, unused-ignore]

    conn = pymysql.connect(
        host=backend[0], port=backend[1], user=user, password=password, database=database
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW TABLES LIKE 'sbtest1'")
            if cursor.fetchall():
                cursor.execute("SELECT COUNT(*) FROM sbtest1")
                if cursor.fetchone()[0] == TABLE_SIZE:
                    return
                cursor.execute("DROP TABLE sbtest1")
    finally:
        conn.close()
    if shutil.which("sysbench"):
        subprocess.run(
            [*sysbench_args(backend[1], user, password, database), "prepare"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return
    conn = pymysql.connect(
        host=backend[0], port=backend[1], user=user, password=password, database=database
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE sbtest1 (id INT PRIMARY KEY AUTO_INCREMENT, k INT NOT NULL DEFAULT 0,"
                " c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '')"
            )
            for start in range(1, TABLE_SIZE + 1, 1000):
                cursor.executemany(
                    "INSERT INTO sbtest1 (id, k, c, pad) VALUES (%s, %s, %s, %s)",
                    [(i, i, "c" * 119, "p" * 59) for i in range(start, start + 1000)],
                )
        conn.commit()
    finally:
        conn.close()


def run_sysbench(
    port: int, user: str, password: str, database: str, threads: int, seconds: int, mode: str
) -> Run:
    args = [
        *sysbench_args(port, user, password, database),
        f"--threads={threads}",
        f"--time={seconds}",
        "--report-interval=0",
        "--percentile=95",
        f"--db-ps-mode={'disable' if mode == 'text' else 'auto'}",
        "run",
    ]
    started = time.monotonic()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    elapsed = time.monotonic() - started
    queries = int(re.search(r"queries:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    p95 = re.search(r"95th percentile:\s+([\d.]+)", out)
    errors = re.search(r"errors:\s+(\d+)", out)
    if errors and int(errors.group(1)):
        print(f"  !! sysbench reported {errors.group(1)} errors", file=sys.stderr)
    return Run(queries, elapsed, float(p95.group(1)) if p95 else 0.0)


def run_pymysql(
    port: int, user: str, password: str, database: str, threads: int, seconds: int, mode: str
) -> Run:
    import random

    import pymysql  # type: ignore[import-untyped, unused-ignore]

    counts = [0] * threads
    latencies: List[float] = []
    stop_at = time.monotonic() + seconds

    def worker(index: int) -> None:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=port,
            user=user,
            password=password,
            database=database,
            autocommit=True,
        )
        rng = random.Random(index)
        mine = []
        with conn.cursor() as cursor:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                cursor.execute("SELECT c FROM sbtest1 WHERE id=%s", (rng.randint(1, TABLE_SIZE),))
                cursor.fetchall()
                mine.append(time.perf_counter() - t0)
                counts[index] += 1
        conn.close()
        latencies.extend(mine)

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for each in workers:
        each.start()
    for each in workers:
        each.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)] * 1000 if latencies else 0.0
    return Run(sum(counts), elapsed, p95)


def measure(
    target: Target,
    server_pid: int,
    driver: str,
    credentials: Tuple[str, str, str],
    threads: int,
    seconds: int,
    mode: str,
) -> Run:
    """
    One run through C{target}, with the CPU its process and the server used.
    """
    pids = {"server": server_pid}
    if target.pid is not None:
        pids[target.name] = target.pid
    before = {name: cpu_times(pid) for name, pid in pids.items()}
    drive = run_sysbench if driver == "sysbench" else run_pymysql
    run = drive(target.port, *credentials, threads, seconds, mode)
    for name, pid in pids.items():
        user, system = cpu_times(pid)
        run.cpu[name] = user + system - sum(before[name])
        run.system[name] = system - before[name][1]
    return run


def profile(target: Target, out: Path, run_load: Callable[[], Run]) -> None:
    """
    Run the load once with py-spy recording C{target}; print the top own-time functions.
    """
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not installed (pip install py-spy): no profile")
        return
    raw = out.with_suffix(".txt")
    recorders = []
    for fmt, path in (("flamegraph", out), ("raw", raw)):
        recorders.append(
            subprocess.Popen(
                [spy, "record", "-r", "200", "-f", fmt, "-o", str(path), "--pid", str(target.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(1.0)
    run_load()
    for recorder in recorders:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(30)
    if not raw.exists():
        print("py-spy wrote nothing (ptrace not permitted?)")
        return
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        # Per function, not per line: "name (file:line)" -> "name (file)".
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"\nprofile of the proxy ({total} samples; flame graph {out})")
    print("  own%   incl%  function (by own time)")
    for frame, n in own.most_common(30):
        print(f"  {100 * n / total:5.1f}  {100 * inclusive[frame] / total:5.1f}  {frame}")
    print("  incl%  obproxy_tx function (by inclusive time)")
    ours = [(n, frame) for frame, n in inclusive.items() if "obproxy_tx/" in frame]
    for n, frame in sorted(ours, reverse=True)[:25]:
        print(f"  {100 * n / total:5.1f}  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="8,32", help="comma-separated thread counts")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", choices=("text", "ps"), default="text")
    parser.add_argument(
        "--driver",
        choices=("sysbench", "pymysql"),
        default="sysbench" if shutil.which("sysbench") else "pymysql",
    )
    parser.add_argument("--targets", default="direct,relay,proxy")
    parser.add_argument("--python", default=sys.executable, help="interpreter of proxy and relay")
    parser.add_argument("--proxy-options", default="", help="extra top-level YAML for the proxy")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy flame graph to write")
    args = parser.parse_args()
    os.environ.setdefault("OBPROXY_TESTBED_DIR", "/tmp/tb-p1")

    from tests import testbed

    server = testbed.start("mariadb")
    account = server.account("native")
    backend = (server.host, server.port)
    credentials = (account.user, account.password, server.database)
    server_pid = server.pid
    prepare(backend, *credentials)

    workdir = Path(tempfile.mkdtemp(prefix="hotpath-"))
    wanted = args.targets.split(",")
    targets: List[Target] = []
    try:
        if "direct" in wanted:
            targets.append(Target("direct", server.port, None))
        if "relay" in wanted:
            targets.append(start_relay(args.python, backend, workdir))
        if "relay-lean" in wanted:
            targets.append(start_relay(args.python, backend, workdir, lean=True))
        if "proxy" in wanted:
            targets.append(
                start_proxy(args.python, backend, *credentials[:2], workdir, args.proxy_options)
            )
        threads = [int(t) for t in args.threads.split(",")]
        interpreter = subprocess.run(
            [
                args.python,
                "-c",
                "import sys, platform; print(platform.python_implementation(),"
                " sys.version.split()[0])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(
            f"point select ({args.mode}), {args.driver}, {args.seconds}s x {args.rounds} rounds,"
            f" {interpreter}, MariaDB {server.version}"
        )
        # Warm-up: connections, caches, the proxy's first logins.
        for target in targets:
            measure(target, server_pid, args.driver, credentials, threads[0], 2, args.mode)
        results: Dict[Tuple[str, int], List[Run]] = collections.defaultdict(list)
        for _round in range(args.rounds):
            for count in threads:
                for target in targets:
                    results[target.name, count].append(
                        measure(
                            target,
                            server_pid,
                            args.driver,
                            credentials,
                            count,
                            args.seconds,
                            args.mode,
                        )
                    )
        print(
            f"{'target':8} {'thr':>4} {'qps':>9} {'p95 ms':>7} {'µs/q':>7} {'(sys)':>6}"
            f" {'db µs/q':>8} {'vs relay':>8} {'RSS MiB':>8}"
        )
        for count in threads:
            relay_us = None
            for target in targets:
                runs = results[target.name, count]
                queries = sum(r.queries for r in runs)
                seconds = sum(r.seconds for r in runs)
                own = sum(r.cpu.get(target.name, 0.0) for r in runs)
                system = sum(r.system.get(target.name, 0.0) for r in runs)
                db = sum(r.cpu["server"] for r in runs)
                us = 1e6 * own / queries if target.pid is not None else float("nan")
                sys_us = 1e6 * system / queries if target.pid is not None else float("nan")
                if target.name == "relay":
                    relay_us = us
                ratio = f"{us / relay_us:8.2f}" if relay_us and target.pid is not None else " " * 8
                rss = f"{rss_kib(target.pid) / 1024:8.1f}" if target.pid is not None else ""
                print(
                    f"{target.name:8} {count:4d} {queries / seconds:9.0f}"
                    f" {max(r.p95_ms for r in runs):7.2f} {us:7.1f} {sys_us:6.1f}"
                    f" {1e6 * db / queries:8.1f}"
                    f" {ratio} {rss}"
                )
        if args.profile is not None:
            proxy = next((t for t in targets if t.name == "proxy"), None)
            if proxy is not None:
                profile(
                    proxy,
                    args.profile,
                    lambda: measure(
                        proxy,
                        server_pid,
                        args.driver,
                        credentials,
                        threads[-1],
                        args.seconds,
                        args.mode,
                    ),
                )
    finally:
        for target in targets:
            target.stop()
        # The test bed server stays up for the next run (python -m tests.testbed mariadb stop).
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
