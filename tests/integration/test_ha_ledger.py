"""
The issue's "done when" test for failover: three MariaDB instances behind the proxy, 32 clients
running sysbench-like traffic, one backend SIGKILLed and restarted mid-run, and a ledger table
that tells whether any acknowledged commit was lost or anything ran twice.

The instances (L{tests.testbed.instances}) are independent servers (no replication): each client
session lives on one of them, so every ledger row exists on exactly one server unless something
was sent twice. The clients run in their own process (L{tests.integration.ledger_load}); the proxy
runs here, on the test reactor, so its counters can be read.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater

from tests.integration.ha_cluster import NAMES, ROWS, direct, ha_instances, ledger_ids
from tests.proxy_fixtures import Proxy, start_proxy_for, stop_proxy
from tests.testbed import REPO_ROOT, Server
from tests.testbed.instances import kill_instance, restart_instance

pytestmark = pytest.mark.integration

__all__ = ["ha_instances"]  # the fixture, imported for pytest

#: The one killed and restarted.
VICTIM = "ledger2"
THREADS = 32
#: Seconds of traffic; the kill comes KILL_AT seconds in.
SECONDS = 14.0
KILL_AT = 4.0


@pytest.fixture
def instances(ha_instances: Dict[str, Server]) -> Dict[str, Server]:
    """The three instances, their ledgers emptied."""
    for server in ha_instances.values():
        with direct(server) as connection, connection.cursor() as cursor:
            cursor.execute("DELETE FROM ledger")
    return ha_instances


@pytest.fixture
def proxy(instances: Dict[str, Server]) -> Iterator[Proxy]:
    """A proxy in front of the three instances."""
    native = instances[NAMES[0]].accounts["native"]
    started = start_proxy_for(
        [f"{server.host}:{server.port}" for server in instances.values()],
        "mysql",
        [(native.user, native.password)],
        name="cl_ledger",
        extra="short_async_task_timeout: 2s",
        backend=instances[NAMES[0]],
    )
    yield started
    stop_proxy(started)


def _run_load(port: int, server: Server) -> Dict[str, Any]:
    native = server.accounts["native"]
    command = [
        sys.executable,
        "-m",
        "tests.integration.ledger_load",
        f"--port={port}",
        f"--user={native.user}",
        f"--password={native.password}",
        f"--database={server.database}",
        f"--threads={THREADS}",
        f"--seconds={SECONDS}",
        f"--rows={ROWS}",
    ]
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 150,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _kill_and_restart() -> Dict[str, float]:
    began = time.time()
    kill_instance(VICTIM, signal.SIGKILL)
    dead = time.time()
    restart_instance(VICTIM)
    return {"at": began, "kill": dead - began, "restart": time.time() - dead}


@pytest_twisted.inlineCallbacks
def test_ledger_survives_a_backend_killed_mid_run(
    instances: Dict[str, Server], proxy: Proxy
) -> Iterator[Any]:
    """
    A backend SIGKILLed and restarted under 32 clients: reads outside transactions never fail,
    autocommit writes in flight fail only with the proxy's clear error, clients inside
    transactions get a clean error and are disconnected, every acknowledged commit is present
    exactly once across the three servers, and nothing of a failed transaction is.
    """
    load = threads.deferToThread(_run_load, proxy.port, instances[NAMES[0]])
    yield deferLater(reactor, KILL_AT, lambda: None)
    timing = yield threads.deferToThread(_kill_and_restart)
    result = yield load
    # Seconds since the clients started, as their operations and errors are timed.
    killed_at = timing["at"] - result["wall_start"]
    stats = proxy.manager.stats
    ids: collections.Counter[int] = collections.Counter()
    for server in instances.values():
        ids.update(ledger_ids(server))

    errors = result["errors"]
    by_kind = collections.Counter(error["kind"] for error in errors)
    ops = collections.Counter(kind for kind, _ in result["ops"])
    print(
        f"\nledger run: {THREADS} threads, {SECONDS:.0f} s, kill at {killed_at:.1f} s "
        f"(process gone in {timing['kill']:.2f} s, restarted in {timing['restart']:.1f} s)\n"
        f"  completed: {dict(ops)}\n"
        f"  errors: {dict(by_kind)}\n"
        f"  acked commits: {len(result['acked'])}, failed transactions: "
        f"{len(result['failed'])}, in doubt: {len(result['unknown'])}\n"
        f"  proxy: server sessions lost {stats.server_sessions_lost}, reads resent "
        f"{stats.lost_reads_resent}, refused requests retried "
        f"{stats.refused_requests_retried}, lost writes reported "
        f"{stats.lost_requests_reported}, connect failures {stats.server_connect_failures}"
    )
    if errors:
        first = min(error["at"] for error in errors) - killed_at
        last = max(error["at"] for error in errors) - killed_at
        print(f"  errors from {first:+.3f} s to {last:+.3f} s after the kill")
    for error in errors[:20]:
        print(f"  {error}")

    assert result["alive_threads"] == 0
    # The kill happened while traffic ran, and hit it.
    assert stats.server_sessions_lost > 0
    assert min(at for _, at in result["ops"]) < killed_at < max(at for _, at in result["ops"])
    # Reads outside transactions: zero errors (lost ones were sent again).
    assert by_kind["read"] == 0, [e for e in errors if e["kind"] == "read"]
    assert stats.lost_reads_resent > 0
    assert by_kind["connect"] == 0, [e for e in errors if e["kind"] == "connect"]
    # Autocommit writes in flight: only the proxy's clear error, and the session goes on.
    for error in errors:
        if error["kind"] == "write":
            assert error["code"] == 1158, error
            assert "may or may not have run" in error["message"], error
            assert error["disconnected"] is False, error
    # Inside transactions: a clean error (the proxy's, naming the lost server), then EOF.
    for error in errors:
        if error["kind"].startswith("transaction"):
            assert error["code"] == 1158, error
            assert "Lost connection to server" in error["message"], error
            assert error["disconnected"] is True, error
    # The ledger: acknowledged exactly once, failed never, in doubt at most once (and a
    # transaction all or nothing); nothing anywhere twice.
    assert all(count == 1 for count in ids.values()), [i for i, c in ids.items() if c > 1]
    for group in result["acked"]:
        assert all(ids[i] == 1 for i in group), group
    for group in result["failed"]:
        assert all(ids[i] == 0 for i in group), group
    for group in result["unknown"]:
        assert len({ids[i] for i in group}) == 1, group
    # Work went on after the restart.
    assert max(at for _, at in result["ops"]) > killed_at + timing["kill"] + timing["restart"]
    assert ops["read"] > 0 and ops["slow read"] > 0
    assert ops["write"] > 0 and ops["transaction"] > 0
