"""
The side-by-side benchmark, in one command:

    python -m bench.run [options]        (make bench, with BENCH_ARGS='options')

For each backend (MariaDB and seekdb from the test bed, started if not running) it starts every
target (direct, the bare Twisted relay, HAProxy, obproxy_tx with one worker and with one per
core, and the Python ones again under PyPy with C{--pypy}), then runs every workload cell on
each target in turn, so that whatever else the machine does in that minute affects every target
alike.  It prints a line per measurement, then the table; writes it to C{OUT/latest.md} and
C{OUT/latest.json} and plots point_select to C{OUT/latest.png}.

The defaults fit in about ten minutes on a 2-core machine; C{--time 10 --stream-mib 1024
--idle-clients 10000} is the long run.  See docs/performance.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import attrs

from bench import report, targets, workloads
from bench.report import Row
from bench.targets import ROOT, Backend, Running, Target

#: Where C{scripts/install-bench-deps.sh} puts PyPy's virtual environment.
DEFAULT_PYPY = Path.home() / ".cache" / "obproxy_tx" / "bench-pypy" / "bin" / "pypy3"

#: Every workload, in the order they run (idle first, while the targets' memory is fresh).
WORKLOADS = ("idle", "churn", "point_select", "read_only", "stream")

BACKENDS = ("mariadb", "seekdb")


def _csv(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> List[int]:
    return [int(part) for part in _csv(text)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The command line (see C{--help}).
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--backends", type=_csv, default=list(BACKENDS), help="mariadb,seekdb (default both)")
    add("--targets", type=_csv, default=None, help="only these targets (default: all available)")
    add("--workloads", type=_csv, default=list(WORKLOADS), help=",".join(WORKLOADS))
    add("--threads", type=_ints, default=[1, 8, 32, 128], help="sysbench threads (1,8,32,128)")
    add("--modes", type=_csv, default=["text", "ps"], help="text,ps (ps: --db-ps-mode=auto)")
    add("--time", type=float, default=2.0, help="seconds per sysbench cell (2)")
    add(
        "--rounds",
        type=int,
        default=1,
        help="rounds of every cell, the median kept (1; idle sessions run once, on fresh targets)",
    )
    add("--warmup", type=float, default=1.0, help="unmeasured seconds per target and workload (1)")
    add("--pypy-warmup", type=float, default=4.0, help="the same for PyPy targets: the JIT (4)")
    add("--table-size", type=int, default=10000, help="rows of sbtest1 (10000)")
    add("--churn-threads", type=int, default=8, help="concurrent clients for churn (8)")
    add("--churn-time", type=float, default=2.0, help="seconds of churn per target (2)")
    add(
        "--stream-mib", type=int, default=256, help="MiB of the streamed result (256; 1024 = 1 GiB)"
    )
    add("--idle-clients", type=int, default=1000, help="idle sessions held at once (1000)")
    add("--workers", type=int, default=os.cpu_count() or 1, help="workers of obproxy-Nw (cores)")
    add(
        "--pypy",
        nargs="?",
        const=str(DEFAULT_PYPY),
        default=None,
        help=f"add the PyPy targets, with this interpreter (default {DEFAULT_PYPY})",
    )
    add("--out", type=Path, default=ROOT / "bench" / "results", help="where latest.* go")
    add("--name", default="latest", help="file name stem in --out (latest)")
    add("--keep-servers", action="store_true", help="leave test bed servers it started running")
    add("--workdir", type=Path, default=None, help="configs and logs (default: a temp dir)")
    return parser.parse_args(argv)


# -- the run's surroundings --------------------------------------------------------------------


def raise_file_limit(want: int) -> int:
    """
    Raise this process's open-file limit (inherited by the targets and clients) to C{want}, or
    as far as allowed; return the soft limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))  # root may
        return want
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _output(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            list(command), capture_output=True, text=True, timeout=30, check=False, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    return "unknown"


def commit_description() -> str:
    """
    The commit measured, and the files of the proxy and the benchmark that differ from it (others
    may be editing the same checkout while it runs).
    """
    commit = _output(["git", "log", "-1", "--format=%h %s"])[:72] or "unknown"
    dirty = _output(["git", "diff", "HEAD", "--name-only", "--", "obproxy_tx", "bench", "twisted"])
    files = dirty.split()
    if not files:
        return commit
    shown = ", ".join(files[:6]) + (f" and {len(files) - 6} more" if len(files) > 6 else "")
    return f"{commit} (+ uncommitted changes to {shown})"


def describe_machine() -> str:
    """
    Cores, CPU model and kernel.
    """
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model or platform.processor()}, Linux {platform.release()}"


def pypy_works(python: str) -> str:
    """
    PyPy's version line if C{python} runs and imports Twisted and the proxy, else C{""}.
    """
    code = "import sys, twisted, obproxy_tx.tap; print(sys.version.split(chr(10))[-1])"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def backend_of(server: Any) -> Backend:
    """
    The benchmark's view of a test bed server: its C{native} account for the clients.
    """
    native = server.accounts["native"]
    admin = server.accounts["admin"]
    return Backend(
        kind=server.kind,
        host=server.host,
        port=server.port,
        pid=server.pid,
        user=native.user,
        password=native.password,
        database=server.database,
        admin_user=admin.user,
        admin_password=admin.password,
    )


def allow_connections(backend: Backend, clients: int) -> str | None:
    """
    Let MariaDB take C{clients} connections at once (the relay and HAProxy open one per
    client); returns a note if it could not.
    """
    if backend.kind != "mariadb":
        return None
    from tests.testbed import wireclient

    try:
        wireclient.run_sql(
            backend.host,
            backend.port,
            backend.admin_user,
            backend.admin_password,
            [f"SET GLOBAL max_connections = {max(2000, clients + 200)}"],
        )
    except (OSError, wireclient.WireError) as exc:
        return f"could not raise mariadb max_connections: {exc}"
    return None


# -- the cells ---------------------------------------------------------------------------------


@attrs.frozen
class Group:
    """
    Cells that share a warm-up: one workload (and mode), any number of variants.
    """

    name: str
    cells: List[Any]


def groups(args: argparse.Namespace) -> List[Group]:
    """
    The workload cells of this run, in order.
    """
    chosen: List[Group] = []
    for workload in args.workloads:
        if workload == "idle":
            chosen.append(Group("idle", [workloads.Idle(args.idle_clients)]))
        elif workload == "churn":
            chosen.append(Group("churn", [workloads.Churn(args.churn_threads, args.churn_time)]))
        elif workload in ("point_select", "read_only"):
            for mode in args.modes:
                cells = [
                    workloads.Sysbench(f"oltp_{workload}", mode, n, args.time, args.table_size)
                    for n in args.threads
                ]
                chosen.append(Group(f"{workload} {mode}", cells))
        elif workload == "stream":
            chosen.append(Group("stream", [workloads.Stream(args.stream_mib)]))
        else:
            raise SystemExit(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    return chosen


def missing_tools(group: Group) -> str | None:
    """
    Why C{group} cannot run here (a client program is missing), or C{None}.
    """
    cell = group.cells[0]
    if isinstance(cell, (workloads.Sysbench, workloads.Churn)) and not workloads.sysbench_path():
        return "sysbench is not installed (scripts/install-bench-deps.sh)"
    if isinstance(cell, workloads.Stream) and not workloads.mariadb_cli_path():
        return "the mariadb client is not installed"
    return None


def progress(row: Row) -> str:
    """
    One line per measurement, as it is made.
    """
    if row.failed:
        where = f"  {row.backend:8} {row.workload:12} {row.variant:10} {row.target:18}"
        return f"{where} FAILED: {row.error}"
    extra = ""
    if row.kib_per_session is not None:
        extra = f"  {row.kib_per_session:.1f} KiB/session"
    if row.rss_growth_mib is not None:
        extra = f"  +{row.rss_growth_mib:.1f} MiB RSS"
    return (
        f"  {row.backend:8} {row.workload:12} {row.variant:10} {row.target:18}"
        f" {report.fmt(row.rate):>9} {row.unit:8} p95 {report.fmt(row.p95_ms, 2):>6} ms"
        f"  proxy {report.fmt(row.cpu_us):>6} us  db {report.fmt(row.db_cpu_us):>6} us"
        f"{extra}{f'  errors {row.errors}: {row.error}' if row.errors else ''}"
    )


def run_backend(
    kind: str,
    args: argparse.Namespace,
    chosen: Sequence[Target],
    workdir: Path,
    skipped: Dict[str, str],
    notes: List[str],
) -> List[Row]:
    """
    Every cell against one backend: start it and the targets, run, stop what was started.
    """
    from tests import testbed

    print(f"== {kind}: starting the server", flush=True)
    server = testbed.start(kind)
    backend = backend_of(server)
    rows: List[Row] = []
    running: Dict[str, Running] = {}
    try:
        plan = groups(args)
        if any(isinstance(g.cells[0], workloads.Idle) for g in plan):
            note = allow_connections(backend, args.idle_clients)
            if note:
                notes.append(note)
        if (
            any(isinstance(g.cells[0], workloads.Sysbench) for g in plan)
            and workloads.sysbench_path()
        ):
            print(f"== {kind}: sysbench prepare ({args.table_size} rows)", flush=True)
            workloads.prepare_sysbench(backend, args.table_size)
        if any(isinstance(g.cells[0], workloads.Stream) for g in plan):
            workloads.prepare_stream(backend, args.stream_mib)
        print(f"== {kind}: starting {', '.join(t.name for t in chosen)}", flush=True)
        running, failed = targets.start_all(chosen, backend, workdir / kind, args.max_clients)
        for name, reason in failed.items():
            skipped.setdefault(name, reason)
            print(f"  {name}: skipped: {reason.splitlines()[0]}", flush=True)
        for group in plan:
            why = missing_tools(group)
            if why:
                notes.append(f"{group.name} not run: {why}")
                print(f"== {kind}: {group.name}: not run: {why}", flush=True)
                continue
            print(f"== {kind}: {group.name}", flush=True)
            rows += run_group(group, running, backend, args)
    finally:
        targets.stop_all(running)
        if server.started_here and not args.keep_servers:
            testbed.stop(kind)
    return rows


def run_group(
    group: Group, running: Dict[str, Running], backend: Backend, args: argparse.Namespace
) -> List[Row]:
    """
    Warm every target up once, then each cell on each target in turn.
    """
    rows: List[Row] = []
    # Idle sessions measure a proxy's memory: the direct connection has none to measure.
    measured = [
        each
        for each in running.values()
        if each.target.is_proxy or not isinstance(group.cells[0], workloads.Idle)
    ]
    for each in measured:
        seconds = args.pypy_warmup if each.target.interpreter == "pypy" else args.warmup
        if seconds > 0 and each.alive():
            with contextlib.suppress(Exception):
                group.cells[0].warm(each, backend, seconds)
    rounds: Dict[Tuple[str, str], List[Row]] = {}
    # Idle sessions run once: a later round would measure memory freed by the first one.
    repeat = 1 if isinstance(group.cells[0], workloads.Idle) else args.rounds
    for _ in range(repeat):
        for cell in group.cells:
            for each in measured:
                if not each.alive():
                    row = Row(backend.kind, cell.workload, cell.variant, each.target.name, "")
                    row = attrs.evolve(row, error=f"target has exited: {each.log_tail(3)}")
                else:
                    row = cell.run(each, backend)
                print(progress(row), flush=True)
                rounds.setdefault((cell.variant, each.target.name), []).append(row)
    rows += [report.combine(each) for each in rounds.values()]
    return rows


@contextlib.contextmanager
def work_directory(given: Path | None) -> Iterator[Path]:
    """
    C{given}, or a temporary directory removed afterwards.
    """
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="obproxy-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the benchmark; return the exit status (0 unless nothing could be measured).
    """
    args = parse_args(argv)
    began = time.monotonic()
    load_before = _load()
    # A relaying process holds two sockets per client (client and backend side).
    limit = raise_file_limit(2 * args.idle_clients + 1024)
    # HAProxy checks at start that it has two descriptors for each connection it may accept.
    args.max_clients = max(256, min(args.idle_clients + 1000, (limit - 64) // 2))
    notes: List[str] = []
    if limit < 2 * args.idle_clients + 100:
        notes.append(
            f"open-file limit {limit} (hard limit; raising it needs CAP_SYS_RESOURCE): a process"
            f" holding a client and a backend socket per session holds at most ~{limit // 2 - 50}"
            f" of the {args.idle_clients} idle clients"
        )

    pypy = ""
    if args.pypy:
        pypy = pypy_works(args.pypy)
        if not pypy:
            notes.append(
                f"PyPy targets skipped: {args.pypy} cannot run the proxy"
                " (BENCH_PYPY=1 make bench installs it)"
            )
    chosen = targets.standard_targets(args.pypy if pypy else None, args.workers)
    skipped: Dict[str, str] = {}
    if args.targets:
        unknown = set(args.targets) - {t.name for t in chosen}
        if unknown:
            raise SystemExit(
                f"unknown targets {sorted(unknown)}; known: {[t.name for t in chosen]}"
            )
        chosen = [t for t in chosen if t.name in args.targets]
    haproxy = shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists()
    if not haproxy and any(t.kind == "haproxy" for t in chosen):
        skipped["haproxy"] = "haproxy is not installed (scripts/install-bench-deps.sh)"
    chosen = [t for t in chosen if t.name not in skipped]

    meta: Dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit_description(),
        "machine": describe_machine(),
        "python": f"CPython {platform.python_version()}" + (f"; PyPy {pypy}" if pypy else ""),
        "tools": "; ".join(
            filter(
                None,
                [
                    _output(["sysbench", "--version"]),
                    _output(["haproxy", "-v"]).splitlines()[0] if shutil.which("haproxy") else "",
                ],
            )
        ),
        "settings": (
            f"{args.rounds} round(s), {args.time:g} s per sysbench cell, "
            f"threads {','.join(map(str, args.threads))}, modes "
            f"{','.join(args.modes)}, warm-up {args.warmup:g} s (PyPy {args.pypy_warmup:g} s), "
            f"churn {args.churn_threads} clients {args.churn_time:g} s, "
            f"stream {args.stream_mib} MiB, {args.idle_clients} idle clients, "
            f"table {args.table_size} rows"
        ),
        "skipped": skipped,
        "notes": notes,
    }
    interpreters = {t.name: t.interpreter for t in chosen}
    rows: List[Row] = []
    with work_directory(args.workdir) as workdir:
        for kind in args.backends:
            try:
                rows += run_backend(kind, args, chosen, workdir, skipped, notes)
            except Exception as exc:  # one backend failing must not lose the other's rows
                notes.append(
                    f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                )
                print(f"== {kind}: FAILED: {exc}", flush=True)
    meta["duration"] = f"{time.monotonic() - began:.0f} s"
    # Other work on the machine moves every figure; the load says how much there was.
    meta["load average"] = f"{load_before} at the start, {_load()} at the end"
    rows = report.with_ratios(rows, interpreters)
    text = report.markdown(rows, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(text + "\n")
    (args.out / f"{args.name}.json").write_text(report.to_json(rows, meta) + "\n")
    title = f"obproxy_tx at {meta['commit'].split()[0]}, {meta['date']}, {meta['machine']}"
    plotted = report.plot(rows, args.out / f"{args.name}.png", title)
    print()
    print(text)
    print()
    print(
        f"written: {args.out / (args.name + '.md')}, .json"
        + (", .png" if plotted else " (no plot: matplotlib missing or no point_select rows)")
    )
    return 0 if any(not r.failed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
