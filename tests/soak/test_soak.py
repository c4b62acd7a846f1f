"""
The soak test's short run in CI (issue 8): L{tests.soak.soak} for 45 seconds with a fault every
4 seconds (every kind at least once), in its own process; its figures are printed, and the
checks it makes are asserted here again from its JSON figures.

The ledger judge is tested on its own (each kind of loss is found), and the pausable relay it
stalls a backend with: paused, nothing moves; resumed, the held bytes arrive.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from tests.integration.ha_cluster import ha_instances
from tests.soak.relay import PausableRelay
from tests.soak.soak import FAULTS, FD_BOUND, judge_ledger
from tests.testbed import REPO_ROOT, Server

__all__ = ["ha_instances"]  # the fixture, imported for pytest


@pytest.mark.integration
def test_soak_short_run(ha_instances: Dict[str, Server], tmp_path: Path) -> None:
    """
    45 s of 16 clients with faults: the ledger holds every acknowledged commit once and
    nothing of a failed transaction, every fault kind was injected, the proxy's fds and RSS
    are flat, no statement is left running on a backend, and its log has no traceback.
    """
    figures_file = tmp_path / "soak.json"
    command = [sys.executable, "-m", "tests.soak", "--minutes=0.75", "--threads=16"]
    command += ["--fault-interval=4", "--warmup=4", "--keep", f"--json={figures_file}"]
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    figures: Dict[str, Any] = json.loads(figures_file.read_text(encoding="utf-8"))
    assert figures["failures"] == []
    assert all(figures["faults_injected"].get(kind, 0) > 0 for kind in FAULTS), figures
    ledger = figures["ledger"]
    assert ledger["acked_rows"] > 0
    assert ledger["acked_rows_found"] == ledger["acked_rows"]
    assert ledger["failed_rows_found"] == 0
    assert figures["proxy_fds"]["end"] <= figures["proxy_fds"]["start"] + FD_BOUND
    assert figures["backend_statements_running_at_end"] == 0
    assert figures["log_problems"] == []


@pytest.fixture
def echo() -> Iterator[int]:
    """An echo server on 127.0.0.1 (one connection), its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    listener.close()


def test_relay_pauses_and_resumes(echo: int) -> None:
    """While paused nothing comes back; after resume the held bytes arrive, in order."""
    relay = PausableRelay("127.0.0.1", echo).start()
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
            client.sendall(b"one")
            assert client.recv(10) == b"one"
            relay.pause()
            client.sendall(b"two")
            client.settimeout(0.5)
            with pytest.raises(socket.timeout):
                client.recv(10)
            relay.resume()
            client.settimeout(5)
            assert client.recv(10) == b"two"
    finally:
        relay.stop()
    assert relay.connections == 1


def test_ledger_judge_finds_every_kind_of_loss() -> None:
    """A clean ledger passes; a lost, doubled, leaked, torn or stray row is each reported."""
    acked, failed, unknown = [[1], [2, 3, 4]], [[5, 6]], [[7, 8], [9]]
    clean = collections.Counter([1, 2, 3, 4, 7, 8])
    figures, problems = judge_ledger(clean, acked, failed, unknown)
    assert problems == []
    assert figures["acked_rows"] == figures["acked_rows_found"] == 4
    assert figures["in_doubt_commits_present"] == 1
    cases = {
        "acknowledged commits not present once": [2, 3, 4, 7, 8],
        "more than once": [1, 1, 2, 3, 4],
        "failed transactions present": [1, 2, 3, 4, 6],
        "in-doubt commits partly present": [1, 2, 3, 4, 7],
        "no client wrote": [1, 2, 3, 4, 99],
    }
    for expected, rows in cases.items():
        _, problems = judge_ledger(collections.Counter(rows), acked, failed, unknown)
        assert any(expected in problem for problem in problems), (expected, problems)
