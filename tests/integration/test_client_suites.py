"""
MariaDB's own test suite passes through the proxy as it passes directly.

Each run of C{mariadb-test-run} (see L{tests.testbed.suites}) happens twice: straight against a
fresh MariaDB and through the proxy (running in this process on the test reactor, the suite in a
worker thread).  Every test
that passes directly must pass through the proxy, except those listed with their reason in the
suite's allow-list.  Both counts are printed; a difference shows each test's diff or traceback.
(Connector/Python's own tests: C{test_connector_suite.py}.)
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any, Generator, Iterator, Mapping

import pytest
import pytest_twisted  # type: ignore[import-untyped]

from tests.conftest import servers_required
from tests.proxy_fixtures import in_thread, start_proxy_for, stop_proxy_later
from tests.testbed import suites

pytestmark = pytest.mark.integration

#: L{suites.MTR_ALLOWED} and the tests that look the proxy's client-session id (which
#: C{CONNECTION_ID()} now answers everywhere) up in the backend's own process list.
MTR_ALLOWED = {
    **suites.MTR_ALLOWED,
    "main.user_var": (
        "reads information_schema.processlist WHERE id=connection_id(): CONNECTION_ID() is the "
        "proxy's cs_id, the backend's table has the backend's ids (docs/proxy.md, KILL)"
    ),
}


def _compare(
    name: str, direct: suites.SuiteResult, proxied: suites.SuiteResult, allowed: Mapping[str, str]
) -> None:
    """
    Print both runs' counts and fail, with each lost test's output, if a test that passed
    directly did not pass through the proxy (unless allowed).
    """
    print(f"\n{name}: direct {direct.summary()}; through the proxy {proxied.summary()}")
    lost = sorted(direct.passed - proxied.passed)
    for test in lost:
        if test in allowed:
            print(f"  allowed to fail through the proxy: {test}: {allowed[test]}")
    unexpected = [t for t in lost if t not in allowed]
    if not direct.passed:
        pytest.fail(f"{name}: nothing passed directly\n{direct.output[-4000:]}")
    if unexpected:
        details = "\n\n".join(
            f"=== {test}\n{proxied.failed.get(test, '(not run through the proxy)')[-3000:]}"
            for test in unexpected
        )
        pytest.fail(
            f"{name}: {len(unexpected)} test(s) pass directly but not through the proxy: "
            f"{', '.join(unexpected)}\n\n{details}",
            pytrace=False,
        )


def _require_mtr() -> None:
    problem = suites.mtr_available()
    if problem is not None:
        if servers_required():
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


@pytest.fixture
def short_dir() -> Iterator[str]:
    """
    A scratch directory with a short path (unix socket paths are limited to 107 bytes).
    """
    path = tempfile.mkdtemp(prefix="suite-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("label", "tests", "extra"),
    [
        ("text protocol", suites.MTR_TESTS, ()),
        ("--ps-protocol", suites.MTR_PS_TESTS, ("--ps-protocol",)),
    ],
)
@pytest_twisted.inlineCallbacks
def test_mariadb_test_suite(
    label: str, tests: tuple[str, ...], extra: tuple[str, ...], short_dir: str
) -> Generator[Any, Any, None]:
    """MariaDB's own mysqltest cases that pass against a fresh server pass through the proxy."""
    _require_mtr()
    server = yield in_thread(suites.start_mtr_server, f"{short_dir}/direct")
    try:
        direct = yield in_thread(
            suites.run_mtr, server, "127.0.0.1", server.port, server.socket, tests, extra
        )
    finally:
        yield in_thread(suites.stop_mtr_server, server)

    server = yield in_thread(suites.start_mtr_server, f"{short_dir}/proxy")
    proxy = start_proxy_for(
        [f"127.0.0.1:{server.port}"],
        "mysql",
        [("root", "")],
        name="mtr",
        # Users the tests create log in through the proxy too: learned from mysql.global_priv.
        # No shared pool: tests such as main.lock count the server's sessions
        # (information_schema.processlist) and wait for their disconnects to show there,
        # which pooled connections never do.
        extra=(
            "metadata_user: root\nmetadata_password: ''\nenable_session_pool_for_no_sharding: false"
        ),
        cluster_extra="    learn_users: true",
        unix_socket=f"{short_dir}/proxy.sock",
    )
    try:
        proxied = yield in_thread(
            suites.run_mtr, server, "127.0.0.1", proxy.port, f"{short_dir}/proxy.sock", tests, extra
        )
    finally:
        yield stop_proxy_later(proxy)
        yield in_thread(suites.stop_mtr_server, server)
    _compare(f"mariadb-test-run ({label})", direct, proxied, MTR_ALLOWED)
