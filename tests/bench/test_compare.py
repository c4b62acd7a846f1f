"""
L{bench.compare}: two commits side by side with the relay. Only the arithmetic, the cells
chosen, the table and the extraction of a commit are checked; no figure is asserted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import compare
from bench.report import Row
from bench.workloads import Churn, Sysbench


def _row(target: str, rate: float | None, cpu: float | None, variant: str = "8thr") -> Row:
    return Row("mariadb", "churn", variant, target, "conn/s", rate=rate, cpu_us=cpu)


def test_summarize_takes_medians_and_ratios_to_the_relay_of_the_cell() -> None:
    """
    Each figure is the median of its rounds; CPU and rate are divided by the relay's in
    the same cell only.
    """
    rows = compare.summarize(
        [
            [_row("relay", 100, 200), _row("relay", 120, 180), _row("relay", 110, 190)],
            [_row("before", 50, 300), _row("before", 60, 280), _row("before", 70, 500)],
            [_row("after", 80, 250), _row("after", 90, 240), _row("after", 85, 230)],
            [_row("relay", 10, 100, "16thr")],
            [_row("after", 5, 50, "16thr")],
        ]
    )
    found = {(row.variant, row.target): row for row in rows}
    assert found[("8thr", "before")].cpu_us == 300
    assert found[("8thr", "before")].cpu_x_relay == pytest.approx(300 / 190)
    assert found[("8thr", "after")].cpu_x_relay == pytest.approx(240 / 190)
    assert found[("8thr", "after")].x_relay == pytest.approx(85 / 110)
    assert found[("8thr", "relay")].cpu_x_relay == pytest.approx(1.0)
    assert found[("16thr", "after")].cpu_x_relay == pytest.approx(0.5)


def test_a_failed_relay_gives_no_ratio() -> None:
    """
    Without a relay figure in the cell there is nothing to divide by.
    """
    rows = compare.summarize([[_row("relay", None, None)], [_row("after", 80, 250)]])
    assert rows[1].cpu_x_relay is None
    assert rows[1].x_relay is None


def test_cells_follow_the_options() -> None:
    """
    Churn once, point selects per mode and thread count, in the order asked.
    """
    args = compare.parse_args(
        ["--before", "HEAD", "--workloads", "point_select,churn", "--modes", "ps",
         "--threads", "1,8", "--time", "3"]
    )  # fmt: skip
    chosen = compare.cells(args)
    assert [type(cell) for cell in chosen] == [Sysbench, Sysbench, Churn]
    assert [(cell.mode, cell.threads) for cell in chosen[:2]] == [("ps", 1), ("ps", 8)]
    assert chosen[2].seconds == 3
    with pytest.raises(SystemExit):
        compare.cells(compare.parse_args(["--before", "HEAD", "--workloads", "stream"]))


def test_table_names_the_commits() -> None:
    """
    Each proxy line says which commit it ran.
    """
    rows = compare.summarize([[_row("relay", 100, 200)], [_row("before", 50, 300)]])
    text = compare.table(rows, {"before": "abc1234", "after": "this checkout"})
    lines = text.splitlines()
    assert lines[0].startswith("| backend | workload | cell | target |")
    assert "| before (abc1234) |" in lines[3]
    assert "| 1.50x |" in lines[3]


def _git(repository: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repository), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_extract_writes_the_commit_tree(tmp_path: Path) -> None:
    """
    A revision's tree is extracted as it was in that commit, and its short id returned.
    """
    repository = tmp_path / "repo"
    (repository / "obproxy_tx").mkdir(parents=True)
    _git(repository, "init", "-q")
    for content in ("first", "second"):
        (repository / "obproxy_tx" / "tap.py").write_text(content)
        _git(repository, "add", "obproxy_tx/tap.py")
        _git(repository, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", content)
    first = _git(repository, "rev-parse", "--short", "HEAD~1")
    assert compare.extract("HEAD~1", tmp_path / "tree", repository) == first
    assert (tmp_path / "tree" / "obproxy_tx" / "tap.py").read_text() == "first"
    with pytest.raises(SystemExit, match="unknown revision"):
        compare.extract("no-such-revision-anywhere", tmp_path / "other", repository)
