"""
Session-wide pytest fixtures: real servers from the test bed (L{tests.testbed}).

Fixtures (all session-scoped):

  - C{mariadb}: a L{tests.testbed.Server} for MariaDB 10.11 (TLS on; accounts C{native},
    C{tls}, C{nopw}, C{admin});
  - C{seekdb}: a L{tests.testbed.Server} for OceanBase seekdb without TLS (accounts C{native} =
    alice/alice_pw, C{admin} = root with no password);
  - C{seekdb_tls}: a second seekdb that advertises TLS (small exchanges only, see
    L{tests.testbed.seekdb});
  - C{tls_certs}: the test bed's L{tests.testbed.TLSCerts} (CA, server and client certificates).

Servers start lazily: right after collection, every server that a selected test asks for is
started in a background thread (in parallel, while other tests run); a fixture waits for its own.
A server that is already running (C{python -m tests.testbed all start}) is reused and left running;
servers started by this session are stopped when it ends.

Tests that use a server fixture are marked C{integration} automatically (C{-m "not integration"}
runs only the rest).  If a server cannot start, its tests are skipped with the reason, except on CI
(C{CI=true}) or with C{OBPROXY_REQUIRE_SERVERS=1}, where they fail with the server's log tail.  In
that mode a skipped integration test is also turned into a failure: on CI nothing that needs a real
server may quietly not run.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, Generator, Iterable, List, Set

import pytest

from tests import testbed
from tests.testbed import Server, TLSCerts

#: Fixture name -> test bed server kind.
SERVER_FIXTURES = {"mariadb": "mariadb", "seekdb": "seekdb", "seekdb_tls": "seekdb_tls"}


def servers_required() -> bool:
    """
    Whether a server that cannot start must fail the run (CI, or C{OBPROXY_REQUIRE_SERVERS=1}).
    """
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return ci or os.environ.get("OBPROXY_REQUIRE_SERVERS", "").strip() == "1"


class _Servers:
    """
    Starts test bed servers in background threads, once each, and stops the ones it started.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=len(testbed.KINDS), thread_name_prefix="testbed"
        )
        self._futures: Dict[str, Future[Server]] = {}

    def prestart(self, kinds: Iterable[str]) -> None:
        """
        Begin starting each of C{kinds} that is not yet starting.
        """
        kinds = list(kinds)
        if not kinds:
            return
        with self._lock:
            pending = [k for k in kinds if k not in self._futures]
            if not pending:
                return
            testbed.certificates()  # once, before the threads race for it
            for kind in pending:
                self._futures[kind] = self._pool.submit(testbed.start, kind)

    def get(self, kind: str) -> Server:
        """
        Wait for the server of C{kind} (starting it if nobody asked yet).

        @raise testbed.TestbedError: if it could not start.
        """
        self.prestart([kind])
        return self._futures[kind].result()

    def stop_started(self) -> None:
        """
        Stop every server this session started (servers found running are left alone).
        """
        with self._lock:
            futures = dict(self._futures)
        for kind, future in futures.items():
            try:
                server = future.result()
            except Exception:  # noqa: S112 - a server that failed to start has nothing to stop
                continue
            if server.started_here:
                testbed.stop(kind)
        self._pool.shutdown(wait=True)


_SERVERS: _Servers | None = None


def _servers() -> _Servers:
    global _SERVERS
    if _SERVERS is None:
        _SERVERS = _Servers()
    return _SERVERS


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """
    Mark tests that use a server as C{integration} (before C{-m} deselects anything).
    """
    for item in items:
        if _kinds_used(item):
            item.add_marker(pytest.mark.integration)


def _kinds_used(item: pytest.Item) -> Set[str]:
    names = set(getattr(item, "fixturenames", ()))
    return {kind for name, kind in SERVER_FIXTURES.items() if name in names}


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """
    Start the wanted servers in the background before the first test runs.
    """
    if session.config.option.collectonly:
        return
    wanted: Set[str] = set()
    for item in session.items:  # what is left after -k / -m deselection
        wanted |= _kinds_used(item)
    _servers().prestart(k for k in testbed.KINDS if k in wanted)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """
    Stop the servers this session started.
    """
    global _SERVERS
    if _SERVERS is not None:
        _SERVERS.stop_started()
        _SERVERS = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """
    Where servers are required, report a skipped integration test as a failure.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and servers_required()
        and item.get_closest_marker("integration") is not None
    ):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"integration test skipped where real servers are required (CI): {reason}"


def _server(kind: str) -> Server:
    try:
        return _servers().get(kind)
    except Exception as exc:
        message = f"test bed server {kind!r} could not start: {exc}"
        if servers_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def tls_certs() -> TLSCerts:
    """
    The test bed's CA, server certificate (SAN 127.0.0.1, localhost) and client certificate.
    """
    return testbed.certificates()


@pytest.fixture(scope="session")
def mariadb() -> Server:
    """
    A running MariaDB 10.11 (see L{tests.testbed.mariadb}).
    """
    return _server("mariadb")


@pytest.fixture(scope="session")
def seekdb() -> Server:
    """
    A running OceanBase seekdb without TLS (see L{tests.testbed.seekdb}).
    """
    return _server("seekdb")


@pytest.fixture(scope="session")
def seekdb_tls() -> Server:
    """
    A running OceanBase seekdb that advertises TLS (small exchanges only).
    """
    return _server("seekdb_tls")
