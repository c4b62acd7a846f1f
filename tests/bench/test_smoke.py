"""
The benchmark harness end to end, tiny: C{python -m bench.run} against the test bed's MariaDB
with the direct, relay and obproxy_tx targets, a few idle sessions, a 1 MiB streamed result and,
where sysbench is installed, one second of point selects.  It checks that every target was
measured and the files were written; no figure is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import run, workloads
from tests.testbed import Server

TARGETS = ["direct", "relay", "obproxy-1w"]


def test_one_tiny_run(mariadb: Server, tmp_path: Path) -> None:
    with_sysbench = workloads.sysbench_path() is not None
    chosen = ["idle", "stream"] + (["point_select"] if with_sysbench else [])
    status = run.main(
        [
            "--backends=mariadb",
            f"--targets={','.join(TARGETS)}",
            f"--workloads={','.join(chosen)}",
            "--threads=2",
            "--modes=text",
            "--time=1",
            "--warmup=0",
            "--table-size=100",
            "--idle-clients=5",
            "--stream-mib=1",
            f"--out={tmp_path / 'out'}",
            f"--workdir={tmp_path / 'work'}",
            "--keep-servers",
        ]
    )
    assert status == 0
    data = json.loads((tmp_path / "out" / "latest.json").read_text())
    rows = data["rows"]
    assert not [r for r in rows if r["error"] or r["errors"]], rows
    measured = {(r["workload"], r["target"]) for r in rows}
    for workload in chosen:
        # Idle sessions measure a proxy's memory: there is no direct row.
        expected = [t for t in TARGETS if not (workload == "idle" and t == "direct")]
        for target in expected:
            assert (workload, target) in measured, (workload, target)
    by_key = {(r["workload"], r["target"]): r for r in rows}
    assert by_key[("stream", "direct")]["x_direct"] == 1.0
    assert by_key[("stream", "relay")]["cpu_x_relay"] in (1.0, None)  # None: no tick elapsed
    assert by_key[("idle", "obproxy-1w")]["rate"] == 5
    text = (tmp_path / "out" / "latest.md").read_text()
    assert "## mariadb: result streaming" in text
    assert "## mariadb: idle sessions" in text
    if not with_sysbench:
        assert "sysbench is not installed" in text
