"""
The benchmark's table arithmetic (L{bench.report}), sysbench report parsing
(L{bench.workloads.parse_sysbench}) and C{/proc} readings (L{bench.procstat}).

Only arithmetic and formats are checked: no figure the benchmark measures is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import procstat, report
from bench.report import Row
from bench.workloads import parse_sysbench

INTERPRETERS = {
    "direct": "",
    "relay": "cpython",
    "haproxy": "",
    "obproxy-1w": "cpython",
    "relay-pypy": "pypy",
    "obproxy-pypy-1w": "pypy",
}


def cell(**rates: tuple[float, float | None]) -> list[Row]:
    """
    One point_select cell: target name -> (QPS, proxy CPU us per query).
    """
    return [
        Row("mariadb", "point_select", "text 8thr", name.replace("_", "-"), "q/s", rate=r, cpu_us=c)
        for name, (r, c) in rates.items()
    ]


def by_target(rows: list[Row]) -> dict[str, Row]:
    return {row.target: row for row in rows}


def test_ratios_to_direct_and_to_the_relay_of_the_same_interpreter() -> None:
    rows = cell(
        direct=(1000.0, None),
        relay=(500.0, 20.0),
        haproxy=(800.0, 5.0),
        obproxy_1w=(250.0, 40.0),
        relay_pypy=(800.0, 8.0),
        obproxy_pypy_1w=(400.0, 12.0),
    )
    done = by_target(report.with_ratios(rows, INTERPRETERS))
    assert done["direct"].x_direct == 1.0
    assert done["direct"].x_relay == 2.0
    assert done["direct"].cpu_x_relay is None  # no proxy process, no CPU to compare
    assert done["relay"].x_relay == 1.0 and done["relay"].cpu_x_relay == 1.0
    assert done["obproxy-1w"].x_direct == 0.25
    assert done["obproxy-1w"].x_relay == 0.5
    assert done["obproxy-1w"].cpu_x_relay == 2.0
    # HAProxy is not Python: compared with the CPython relay.
    assert done["haproxy"].cpu_x_relay == 0.25
    # PyPy targets are compared with the relay under PyPy.
    assert done["obproxy-pypy-1w"].x_relay == 0.5
    assert done["obproxy-pypy-1w"].cpu_x_relay == 1.5
    assert done["obproxy-pypy-1w"].x_direct == 0.4


def test_ratios_stay_within_their_cell() -> None:
    rows = cell(direct=(1000.0, None), relay=(500.0, 20.0), obproxy_1w=(250.0, 40.0))
    other = [
        Row("mariadb", "point_select", "text 32thr", "relay", "q/s", rate=100.0, cpu_us=1.0),
        Row("seekdb", "point_select", "text 8thr", "direct", "q/s", rate=1.0),
    ]
    done = by_target(report.with_ratios(rows + other, INTERPRETERS)[:3])
    assert done["obproxy-1w"].x_relay == 0.5
    assert done["obproxy-1w"].x_direct == 0.25


def test_a_failed_baseline_gives_no_ratio() -> None:
    rows = cell(direct=(1000.0, None), obproxy_1w=(250.0, 40.0))
    rows.append(Row("mariadb", "point_select", "text 8thr", "relay", "q/s", error="exited"))
    done = by_target(report.with_ratios(rows, INTERPRETERS))
    assert done["obproxy-1w"].x_relay is None
    assert done["obproxy-1w"].cpu_x_relay is None
    assert done["obproxy-1w"].x_direct == 0.25


def test_idle_sessions_compare_memory_not_rates() -> None:
    rows = [
        Row("mariadb", "idle", "1000cl", "relay", "sessions", rate=1000.0, kib_per_session=4.0),
        Row(
            "mariadb", "idle", "1000cl", "obproxy-1w", "sessions", rate=1000.0, kib_per_session=10.0
        ),
    ]
    done = by_target(report.with_ratios(rows, INTERPRETERS))
    assert done["obproxy-1w"].mem_x_relay == 2.5
    assert done["obproxy-1w"].x_relay is None


@pytest.mark.parametrize(
    ("value", "base", "expected"),
    [(1.0, 2.0, 0.5), (None, 2.0, None), (1.0, None, None), (1.0, 0.0, None), (0.0, 4.0, 0.0)],
)
def test_ratio(value: float | None, base: float | None, expected: float | None) -> None:
    assert report.ratio(value, base) == expected


def test_markdown_has_headline_tables_and_failures() -> None:
    rows = cell(direct=(1000.0, None), relay=(500.0, 20.0), obproxy_1w=(250.0, 40.0))
    rows += cell(direct=(900.0, None), relay=(450.0, 21.0))
    rows[3:] = [
        Row("mariadb", "point_select", "text 1thr", r.target, "q/s", rate=r.rate, cpu_us=r.cpu_us)
        for r in rows[3:]
    ]
    rows.append(Row("mariadb", "point_select", "text 1thr", "obproxy-1w", "q/s", error="boom"))
    done = report.with_ratios(rows, INTERPRETERS)
    text = report.markdown(done, {"commit": "abc123 test", "skipped": {"haproxy": "missing"}})
    assert "- commit: abc123 test" in text
    assert "- skipped haproxy: missing" in text
    assert "## Headline" in text
    # The headline is the 8-32 thread text cell, not the 1-thread one.
    headline = text.split("## Headline")[1].split("## mariadb")[0]
    assert "text 8thr" in headline and "text 1thr" not in headline
    assert "| text 8thr | obproxy-1w | 250 | 0.25x | 0.50x |" in text
    assert "| text 1thr | obproxy-1w | failed: boom |" in text


def test_rounds_combine_into_medians() -> None:
    rounds = [
        Row("mariadb", "point_select", "text 8thr", "relay", "q/s", rate=r, cpu_us=c, errors=e)
        for r, c, e in [(100.0, 30.0, 0), (300.0, 10.0, 1), (200.0, None, 0)]
    ]
    rounds.append(Row("mariadb", "point_select", "text 8thr", "relay", "q/s", error="crashed"))
    combined = report.combine(rounds)
    assert combined.rate == 200.0
    assert combined.cpu_us == 20.0
    assert combined.errors == 1
    assert combined.error == "crashed"
    assert not combined.failed
    assert report.combine(rounds[3:]).failed


def test_json_round_trip() -> None:
    rows = report.with_ratios(
        cell(direct=(1000.0, None), relay=(500.0, 20.0), obproxy_1w=(250.0, 40.0)), INTERPRETERS
    )
    meta, again = report.rows_from_json(report.to_json(rows, {"commit": "x"}))
    assert meta == {"commit": "x"}
    assert again == rows


def test_plot_writes_a_png_when_matplotlib_is_there(tmp_path: Path) -> None:
    rows = cell(direct=(1000.0, None), relay=(500.0, 20.0), obproxy_1w=(250.0, 40.0))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        # make test does not install it (scripts/install-bench-deps.sh does): no plot, no error.
        assert not report.plot(rows, tmp_path / "plot.png", "test")
        return
    assert report.plot(rows, tmp_path / "plot.png", "test")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SYSBENCH_OUTPUT = """\
sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)

Running the test with following options:
Number of threads: 8

SQL statistics:
    queries performed:
        read:                            241280
        write:                           0
        other:                           0
        total:                           241280
    transactions:                        241280 (48231.08 per sec.)
    queries:                             241280 (48231.08 per sec.)
    ignored errors:                      2      (0.00 per sec.)
    reconnects:                          1      (0.00 per sec.)

General statistics:
    total time:                          5.0019s
    total number of events:              241280

Latency (ms):
         min:                                    0.01
         avg:                                    0.17
         max:                                  259.33
         95th percentile:                        0.39
         sum:                                39939.76
"""


def test_parse_sysbench() -> None:
    result = parse_sysbench(SYSBENCH_OUTPUT)
    assert result.events == 241280
    assert result.queries == 241280
    assert result.seconds == 5.0019
    assert result.p95_ms == 0.39
    assert result.errors == 3


def test_parse_sysbench_refuses_a_failed_run() -> None:
    with pytest.raises(ValueError):
        parse_sysbench("FATAL: unable to connect to MySQL server on host '127.0.0.1'")


def test_procstat_reads_a_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in procstat.descendants(os.getpid())
        assert procstat.descendants(os.getpid())[0] == os.getpid()
        assert procstat.rss_bytes(os.getpid()) > procstat.rss_bytes(os.getpid(), tree=False)
        assert procstat.cpu_seconds(os.getpid()) >= procstat.cpu_seconds(os.getpid(), tree=False)
    finally:
        child.kill()
        child.wait()
    with pytest.raises(OSError):
        procstat.cpu_seconds(2**22 + 1)


def test_summary_tables() -> None:
    rows = cell(
        direct=(1000.0, None),
        relay=(500.0, 20.0),
        haproxy=(800.0, 5.0),
        obproxy_1w=(250.0, 40.0),
    )
    rows.append(
        Row("mariadb", "idle", "10cl", "obproxy-1w", "sessions", rate=10.0, kib_per_session=9.5)
    )
    text = "\n".join(report.summary_markdown(report.with_ratios(rows, INTERPRETERS)))
    assert "| obproxy-1w | 40 (2.00x) |" in text  # CPU per query and x relay
    assert "| obproxy-1w | 8.00x |" in text  # over HAProxy's
    assert "| obproxy-1w | 9.5 |" in text  # idle KiB per session
