"""
MySQL Connector/Python's own unit tests pass through the proxy as they pass directly.

The tests of L{suites.CONNECTOR_MODULES} from the connector's sdist run straight against MariaDB
and through the proxy; every test that passes directly must pass through the proxy (see
L{tests.integration.test_client_suites._compare}).
"""

from __future__ import annotations

from typing import Any, Generator

import pytest
import pytest_twisted  # type: ignore[import-untyped]

from tests.conftest import servers_required
from tests.integration.test_client_suites import _compare
from tests.proxy_fixtures import in_thread, start_proxy, stop_proxy_later
from tests.testbed import suites

pytestmark = pytest.mark.integration


@pytest_twisted.inlineCallbacks
def test_connector_python_suite(mariadb: Any) -> Generator[Any, Any, None]:
    """MySQL Connector/Python's unit tests that pass against MariaDB pass through the proxy."""
    native = mariadb.accounts["native"]
    try:
        yield in_thread(suites.connector_sdist)
    except Exception as exc:
        if servers_required():
            raise
        pytest.skip(f"Connector/Python sdist unavailable: {exc}")
    direct = yield in_thread(
        suites.run_connector, mariadb.host, mariadb.port, native.user, native.password
    )
    proxy = start_proxy(mariadb)
    try:
        proxied = yield in_thread(
            suites.run_connector, "127.0.0.1", proxy.port, native.user, native.password
        )
    finally:
        yield stop_proxy_later(proxy)
    _compare("Connector/Python", direct, proxied, suites.CONNECTOR_ALLOWED)
