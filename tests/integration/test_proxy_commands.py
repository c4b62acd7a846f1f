"""
Through the proxy, against both real backends: the less common commands are relayed as the
backend answers them directly — COM_STATISTICS, COM_RESET_CONNECTION (also across a forced
switch to a second server session), COM_CHANGE_USER, COM_INIT_DB, COM_FIELD_LIST and a
server-side cursor (COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY, then COM_STMT_FETCH).

Our own client runs on the test reactor next to the proxy, so no threads are needed.
"""

from __future__ import annotations

from typing import Any, Generator, Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from obproxy_tx.protocol.client import MySQLClientProtocol, ServerError, connect
from obproxy_tx.wire.constants import ServerStatus
from tests.proxy_fixtures import BACKENDS, Proxy, start_proxy, stop_proxy

pytestmark = pytest.mark.integration

_CURSOR = ServerStatus.SERVER_STATUS_CURSOR_EXISTS
_LAST = ServerStatus.SERVER_STATUS_LAST_ROW_SENT


def _through(proxy: Proxy, user: str = "", password: str = "") -> Any:
    """Log in through the proxy (the native account unless told)."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.port)
    return connect(
        reactor,
        endpoint,
        user or proxy.user,
        password or proxy.password,
        proxy.backend.database,
    )


def _direct(proxy: Proxy, user: str = "", password: str = "") -> Any:
    """Log in straight to the backend (the native account unless told)."""
    server = proxy.backend
    endpoint = TCP4ClientEndpoint(reactor, server.host, server.port)
    return connect(
        reactor, endpoint, user or proxy.user, password or proxy.password, server.database
    )


@pytest_twisted.inlineCallbacks
def _code_of(deferred: Any) -> Generator[Any, Any, Any]:
    """The error code the command failed with, or C{None} when it succeeded."""
    try:
        yield deferred
    except ServerError as error:
        return error.code
    return None


@pytest.fixture(params=BACKENDS)
def proxy(request: pytest.FixtureRequest) -> Iterator[Proxy]:
    """A proxy in front of seekdb, then MariaDB."""
    started = start_proxy(request.getfixturevalue(request.param))
    yield started
    stop_proxy(started)


@pytest_twisted.inlineCallbacks
def test_statistics(proxy: Proxy) -> Generator[Any, Any, Any]:
    """
    COM_STATISTICS through the proxy answers the backend's own non-empty line: MariaDB's
    "Uptime: ..." status, seekdb's fixed "Active threads not support" (as directly).
    """
    texts: dict[str, str] = {}
    for login in (_direct, _through):
        client = yield login(proxy)
        try:
            texts[login.__name__] = yield client.statistics()
        finally:
            yield client.quit()
    assert texts["_direct"]
    assert texts["_through"].split(":")[0] == texts["_direct"].split(":")[0]
    if proxy.backend.kind == "mariadb":
        assert texts["_through"].startswith("Uptime: "), texts
        assert int(texts["_through"].split()[1]) >= 0


@pytest_twisted.inlineCallbacks
def test_reset_connection_clears_user_variables(proxy: Proxy) -> Generator[Any, Any, Any]:
    """
    After COM_RESET_CONNECTION a user variable set before is NULL, also once a forced switch
    to a second server session (the same server under another name) replays session state.
    """
    server = proxy.backend
    client = yield _through(proxy)
    try:
        yield client.query("SET @h15_var = 42")
        before = yield client.query("SELECT @h15_var")
        yield client.reset_connection()
        after = yield client.query("SELECT @h15_var")
        yield client.query(f"SET @obproxy_route_addr = 'localhost:{server.port}'")
        switched = yield client.query("SELECT @h15_var")
        count = proxy.only_client_session().server_session_count
        yield client.query(f"SET @obproxy_route_addr = '{server.host}:{server.port}'")
        back = yield client.query("SELECT @h15_var")
    finally:
        yield client.quit()
    assert before.rows == [(42,)]
    assert after.rows == [(None,)]
    assert switched.rows == [(None,)]
    assert back.rows == [(None,)]
    assert count == 2


@pytest_twisted.inlineCallbacks
def test_change_user(proxy: Proxy) -> Generator[Any, Any, Any]:
    """
    COM_CHANGE_USER to another account of the backend changes CURRENT_USER(), as it does
    directly; a wrong password fails with 1045.
    """
    admin = proxy.backend.accounts["admin"]
    users: dict[str, Any] = {}
    for login in (_direct, _through):
        client = yield login(proxy)
        try:
            first = yield client.query("SELECT CURRENT_USER()")
            yield client.change_user(admin.user, admin.password, proxy.backend.database)
            second = yield client.query("SELECT CURRENT_USER(), DATABASE()")
        finally:
            yield client.quit()
        users[login.__name__] = (first.rows[0][0], second.rows[0])
        client = yield login(proxy)
        try:
            code = yield _code_of(client.change_user(admin.user, "wrong-" + admin.password))
        finally:
            yield client.quit()
        assert code == 1045, login.__name__
    direct_first, direct_second = users["_direct"]
    through_first, through_second = users["_through"]
    assert direct_first.split("@")[0] == proxy.user
    assert direct_second[0].split("@")[0] == admin.user
    assert through_first.split("@")[0] == proxy.user
    assert through_second == direct_second


@pytest_twisted.inlineCallbacks
def test_init_db(proxy: Proxy) -> Generator[Any, Any, Any]:
    """COM_INIT_DB changes DATABASE() through the proxy; an unknown schema fails with 1049."""
    for login in (_direct, _through):
        client = yield login(proxy)
        try:
            yield client.init_db("mysql")
            result = yield client.query("SELECT DATABASE()")
            code = yield _code_of(client.init_db("h15_no_such_schema"))
            still = yield client.query("SELECT DATABASE()")
        finally:
            yield client.quit()
        assert result.rows == [("mysql",)], login.__name__
        assert code == 1049, login.__name__
        assert still.rows == [("mysql",)], login.__name__


@pytest_twisted.inlineCallbacks
def test_field_list(proxy: Proxy) -> Generator[Any, Any, Any]:
    """
    COM_FIELD_LIST through the proxy returns the table's column definitions as the backend
    does directly (then the terminator); an unknown table fails the same way.
    """
    setup = yield _direct(proxy)
    try:
        yield setup.query("DROP TABLE IF EXISTS h15_fields")
        yield setup.query(
            "CREATE TABLE h15_fields (id INT PRIMARY KEY, name VARCHAR(20), n DOUBLE)"
        )
    finally:
        yield setup.quit()
    seen: dict[str, Any] = {}
    for login in (_direct, _through):
        client = yield login(proxy)
        try:
            columns = yield client.field_list("h15_fields")
            some = yield client.field_list("h15_fields", "na%")
            code = yield _code_of(client.field_list("h15_no_such_table"))
            alive = yield client.query("SELECT 1")
        finally:
            yield client.quit()
        seen[login.__name__] = (
            [(c.name, c.org_name, c.table, c.column_type) for c in columns],
            [c.name for c in some],
            code,
            alive.rows,
        )
    assert seen["_through"] == seen["_direct"]
    assert [name for name, *_ in seen["_direct"][0]] == [b"id", b"name", b"n"]
    assert seen["_direct"][2] == 1146
    assert seen["_direct"][3] == [(1,)]


@pytest_twisted.inlineCallbacks
def _cursor_run(client: MySQLClientProtocol) -> Generator[Any, Any, Any]:
    """Execute with a read-only cursor, then fetch in batches of 4: what came back."""
    statement = yield client.prepare("SELECT id FROM h15_cursor WHERE id > ? ORDER BY id")
    opened = yield statement.execute(0, cursor=True)
    out: dict[str, Any] = {
        "open_rows": opened.rows,
        "open_cursor": bool(opened.status_flags & _CURSOR),
        "columns": [c.name for c in opened.columns],
        "batches": [],
    }
    if out["open_cursor"]:
        for _ in range(5):
            batch = yield statement.fetch(4)
            out["batches"].append(
                ([row[0] for row in batch.rows], bool(batch.status_flags & _LAST))
            )
            if batch.status_flags & _LAST:
                break
    after = yield client.query("SELECT 'still usable'")
    out["after"] = after.rows
    yield statement.close()
    return out


@pytest_twisted.inlineCallbacks
def test_server_side_cursor(proxy: Proxy) -> Generator[Any, Any, Any]:
    """
    COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY then COM_STMT_FETCH in batches of 4 gives,
    through the proxy, what the backend gives directly (both open a cursor: no rows at
    execute, then 4 + 4 + 2 rows, the last batch marked LAST_ROW_SENT).
    """
    setup = yield _direct(proxy)
    try:
        yield setup.query("DROP TABLE IF EXISTS h15_cursor")
        yield setup.query("CREATE TABLE h15_cursor (id INT PRIMARY KEY)")
        yield setup.query(
            "INSERT INTO h15_cursor VALUES " + ", ".join(f"({i})" for i in range(1, 11))
        )
    finally:
        yield setup.quit()
    seen: dict[str, Any] = {}
    for login in (_direct, _through):
        client = yield login(proxy)
        try:
            seen[login.__name__] = yield _cursor_run(client)
        finally:
            yield client.quit()
    assert seen["_through"] == seen["_direct"]
    assert seen["_direct"]["after"] == [("still usable",)]
    assert seen["_direct"]["open_cursor"]
    assert seen["_direct"]["open_rows"] == []
    assert seen["_direct"]["batches"] == [
        ([1, 2, 3, 4], False),
        ([5, 6, 7, 8], False),
        ([9, 10], True),
    ]
