"""
Two commits of obproxy_tx side by side, next to the bare Twisted relay, in one run:

    python -m bench.compare --before REV [--after REV] [--backends mariadb,seekdb]
                            [--workloads churn,point_select] [--modes text,ps] [--threads 8]
                            [--rounds 3] [--time 4] [--churn-threads 8] [--out FILE.md]

It extracts each commit with C{git archive} into a temporary directory (C{--after} defaults to
this checkout as it is, uncommitted changes included), starts MariaDB and seekdb with the test
bed (C{OBPROXY_TESTBED_DIR}), and runs one C{twistd obproxy} from each tree and
C{bench/relay.py} in front of each backend. Every cell (connection churn: connect, C{SELECT 1},
quit; sysbench point selects per mode and thread count) runs on the three targets in turn,
round after round, so that whatever else the machine does hits them alike; each figure is the
median over the rounds.

It prints, per backend and cell: the rate, the proxy process's CPU microseconds per connection
or query (the figure that holds on a small shared machine) and that CPU over the relay's in the
same run, which is how a change to the proxy's cost is shown: C{before} and C{after} are never
compared across runs. The numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import attrs

from bench import report, targets, workloads
from bench.report import Row
from bench.run import backend_of
from bench.targets import ROOT, Backend, Running, Target

#: The sysbench table's size (as make bench's default).
TABLE_SIZE = 10000


def _csv(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The command line (see C{--help}).
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--before", required=True, help="the commit to compare with (any git revision)")
    add("--after", default="", help="the commit to measure (default: this checkout as it is)")
    add("--backends", type=_csv, default=["mariadb", "seekdb"])
    add("--workloads", type=_csv, default=["churn", "point_select"], help="churn,point_select")
    add("--modes", type=_csv, default=["text", "ps"], help="point_select modes: text,ps")
    add("--threads", type=lambda t: [int(x) for x in _csv(t)], default=[8], help="8")
    add("--churn-threads", type=int, default=8)
    add("--rounds", type=int, default=3)
    add("--time", type=float, default=4.0, help="seconds per cell and target (4)")
    add("--warmup", type=float, default=1.0, help="unmeasured seconds per target and cell (1)")
    add("--python", default=sys.executable, help="the interpreter of all three targets")
    add("--out", type=Path, default=None, help="also write the table (Markdown) here")
    return parser.parse_args(argv)


def extract(revision: str, into: Path, repository: Path = ROOT) -> str:
    """
    Write the tree of C{revision} into the directory C{into}; return its commit id.

    @param repository: the git checkout to take it from (this one by default).
    @raise SystemExit: git does not know the revision.
    """
    done = subprocess.run(
        ["git", "-C", str(repository), "rev-parse", "--short", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"unknown revision {revision!r}: {done.stderr.strip()}")
    commit = done.stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(repository), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into)  # noqa: S202 (our own repository's tree)
    return commit


def cells(args: argparse.Namespace) -> List[Any]:
    """
    The workload cells to run, in order.
    """
    chosen: List[Any] = []
    for workload in args.workloads:
        if workload == "churn":
            chosen.append(workloads.Churn(args.churn_threads, args.time))
        elif workload == "point_select":
            for mode in args.modes:
                for threads in args.threads:
                    chosen.append(
                        workloads.Sysbench(
                            "oltp_point_select", mode, threads, args.time, TABLE_SIZE
                        )
                    )
        else:
            raise SystemExit(f"unknown workload {workload!r} (churn, point_select)")
    return chosen


def measure(
    backend: Backend, running: Dict[str, Running], chosen: List[Any], args: argparse.Namespace
) -> List[Row]:
    """
    Every cell on every target in turn, C{args.rounds} times; one row per cell and target,
    each figure the median of its rounds, with the CPU ratio to the relay's.
    """
    for cell in chosen:
        for target in running.values():
            cell.warm(target, backend, args.warmup)
    measured: Dict[Tuple[Any, ...], List[Row]] = {}
    for _round in range(args.rounds):
        for cell in chosen:
            for name, target in running.items():
                row = cell.run(target, backend)
                measured.setdefault((row.cell, name), []).append(row)
    return summarize(list(measured.values()))


def summarize(measured: Sequence[Sequence[Row]]) -> List[Row]:
    """
    One row per cell and target from its rounds (each figure the median, see
    L{report.combine}), with its rate and CPU per unit over the relay's of the same cell.

    @param measured: the rounds of each cell and target, in the order to print.
    """
    rows = [report.combine(rounds) for rounds in measured]
    relay = {row.cell: row for row in rows if row.target == "relay" and not row.failed}
    summarized = []
    for row in rows:
        base = relay.get(row.cell)
        summarized.append(
            attrs.evolve(
                row,
                cpu_x_relay=report.ratio(row.cpu_us, base.cpu_us) if base else None,
                x_relay=report.ratio(row.rate, base.rate) if base else None,
            )
        )
    return summarized


def table(rows: Sequence[Row], commits: Dict[str, str]) -> str:
    """
    The rows as Markdown: one line per backend, cell and target.
    """
    lines = [
        "| backend | workload | cell | target | rate | x relay | proxy CPU us | CPU x relay "
        "| db CPU us | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = row.target
        if name in commits:
            name = f"{name} ({commits[name]})"
        lines.append(
            f"| {row.backend} | {row.workload} | {row.variant} | {name} "
            f"| {report.fmt(row.rate)} {row.unit} | {report.fmt_ratio(row.x_relay)} "
            f"| {report.fmt(row.cpu_us, 1)} | {report.fmt_ratio(row.cpu_x_relay)} "
            f"| {report.fmt(row.db_cpu_us, 1)} | {row.errors or row.error or ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the comparison and print the table.
    """
    args = parse_args(argv)
    if workloads.sysbench_path() is None:
        raise SystemExit("sysbench is not installed (scripts/install-bench-deps.sh)")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("OBPROXY_TESTBED_DIR", str(ROOT / ".testbed"))
    from tests.testbed import start

    workdir = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    commits = {"before": extract(args.before, workdir / "before")}
    after_tree = ""
    if args.after:
        commits["after"] = extract(args.after, workdir / "after")
        after_tree = str(workdir / "after")
    else:
        commits["after"] = "this checkout"
    chosen_targets = [
        Target("relay", "relay", "cpython", args.python),
        Target("before", "obproxy", "cpython", args.python, 1, str(workdir / "before")),
        Target("after", "obproxy", "cpython", args.python, 1, after_tree),
    ]
    chosen = cells(args)
    rows: List[Row] = []
    try:
        for kind in args.backends:
            backend = backend_of(start(kind))
            if any(cell.workload == "point_select" for cell in chosen):
                workloads.prepare_sysbench(backend, TABLE_SIZE)
            running: Dict[str, Running] = {}
            try:
                for target in chosen_targets:
                    running[target.name] = targets.start(target, backend, workdir / "logs")
                rows.extend(measure(backend, running, chosen, args))
            finally:
                targets.stop_all(running)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = table(rows, commits)
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
