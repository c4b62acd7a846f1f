"""
Tests for L{obproxy_tx.plugins.obproxy_stat}: C{SHOW PROXYSTAT [REFRESH]
[LIKE 'p']} (counters, derived figures, ODP's columns) and
C{SELECT PROXY_VERSION()}.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

import pytest

from obproxy_tx import __version__
from obproxy_tx.admin.interfaces import AdminContext, AdminResultSet, Privilege
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.plugins.obproxy_stat import (
    SelectProxyVersion,
    ShowProxyStat,
    StatMatch,
    derived_rows,
)
from obproxy_tx.session.stats import ProxyStats
from obproxy_tx.wire.constants import Capability, ColumnType
from obproxy_tx.wire.packets import ColumnDefinition41

STAT = ShowProxyStat()
VERSION = SelectProxyVersion()
CAPS = Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_TRANSACTIONS


class Session:
    """A client session holding C{server_session_count} server sessions."""

    def __init__(self, servers: int) -> None:
        self.server_session_count = servers


class StandInManager:
    """What SHOW PROXYSTAT reads of a session manager."""

    def __init__(self, sessions: Dict[int, Any] | None = None, started_at: float = 0.0) -> None:
        self.stats = ProxyStats()
        self.client_sessions = sessions or {}
        self.started_at = started_at or time.time()

    @property
    def server_session_count(self) -> int:
        return sum(cs.server_session_count for cs in self.client_sessions.values())


def run(manager: Any, sql: str) -> AdminResultSet:
    match = STAT.match(sql)
    assert match is not None, sql
    result = STAT.execute(AdminContext(None, manager, None), match)
    assert isinstance(result, AdminResultSet)
    return result


def table(result: AdminResultSet) -> Dict[str, Any]:
    return {row[0]: row[1] for row in result.rows}


def test_declarations() -> None:
    """
    SHOW PROXYSTAT is an admin-only proxy command forwarded for others;
    SELECT PROXY_VERSION() is everyone's and MySQL's own statement.
    """
    assert (STAT.privilege, STAT.proxy_only, STAT.denied) == (Privilege.ADMIN, True, None)
    assert (VERSION.privilege, VERSION.proxy_only) == (Privilege.EVERYONE, False)
    names = {command.name for command in CommandRegistry.from_plugins().commands}
    assert {"SHOW PROXYSTAT", "SELECT PROXY_VERSION()"} <= names


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SHOW PROXYSTAT", StatMatch(False, None)),
        ("show  proxystat refresh", StatMatch(True, None)),
        ("SHOW PROXYSTAT LIKE 'current%'", StatMatch(False, "current%")),
        ('SHOW PROXYSTAT REFRESH LIKE "%conn%"', StatMatch(True, "%conn%")),
    ],
)
def test_grammar(sql: str, expected: StatMatch) -> None:
    """
    ODP's grammar, case-insensitive.
    """
    assert STAT.match(sql) == expected


@pytest.mark.parametrize(
    "sql",
    ["SHOW PROXYSTAT ALL", "SHOW PROXYSTAT LIKE", "SHOW PROXYSTAT LIKE x", "SHOW PROXYSTATS"],
)
def test_grammar_refuses(sql: str) -> None:
    """
    Anything else is not this command.
    """
    assert STAT.match(sql) is None


def test_counters_then_derived_figures() -> None:
    """
    Every ProxyStats counter in declaration order, then the current client
    and server connection counts and the uptime; persist_type NULL.
    """
    sessions = {1: Session(2), 2: Session(0), 3: Session(1)}
    manager = StandInManager(sessions, started_at=time.time() - 125)
    manager.stats.client_connections = 7
    manager.stats.config_changes = 2
    result = run(manager, "SHOW PROXYSTAT")
    names = [row[0] for row in result.rows]
    counters = [name for name, _ in manager.stats.rows()]
    assert names == [
        *counters,
        "current_client_connections",
        "current_server_connections",
        "uptime_seconds",
    ]
    values = table(result)
    assert values["client_connections"] == 7
    assert values["config_changes"] == 2
    assert values["current_client_connections"] == 3
    assert values["current_server_connections"] == 3
    assert 124 <= values["uptime_seconds"] <= 130
    assert {row[2] for row in result.rows} == {"NULL"}
    assert all(isinstance(row[1], int) for row in result.rows)


def test_columns_as_odp() -> None:
    """
    stat_name, value (a BIGINT column), persist_type; they encode.
    """
    result = run(StandInManager(), "SHOW PROXYSTAT")
    definitions = result.definitions()
    assert [d.name for d in definitions] == [b"stat_name", b"value", b"persist_type"]
    assert definitions[1].column_type is ColumnType.MYSQL_TYPE_LONGLONG
    payloads = CommandRegistry().answer(result, CAPS)
    assert (
        ColumnDefinition41.decode(payloads[2], CAPS).column_type is ColumnType.MYSQL_TYPE_LONGLONG
    )


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("current%", ["current_client_connections", "current_server_connections"]),
        ("client%refused", ["client_connections_refused"]),
        ("UPTIME_SECONDS", ["uptime_seconds"]),
        ("nothing", []),
    ],
)
def test_like(pattern: str, expected: List[str]) -> None:
    """
    LIKE filters counters and derived figures alike.
    """
    result = run(StandInManager(), f"SHOW PROXYSTAT LIKE '{pattern}'")
    assert [row[0] for row in result.rows] == expected


def test_refresh_calls_refresh_when_there_is_one() -> None:
    """
    REFRESH asks the counters to refresh themselves if they can; without
    REFRESH they are read as they are.
    """
    calls: List[str] = []

    class RefreshingStats(ProxyStats):
        def refresh(self) -> None:
            calls.append("refresh")

    manager = StandInManager()
    manager.stats = RefreshingStats()
    run(manager, "SHOW PROXYSTAT")
    assert calls == []
    run(manager, "SHOW PROXYSTAT REFRESH")
    assert calls == ["refresh"]


def test_derived_rows_without_server_session_count() -> None:
    """
    A manager without the server_session_count property is summed over its
    client sessions; without started_at there is no uptime row.
    """

    class Bare:
        client_sessions = {5: Session(4)}

    assert derived_rows(Bare()) == [
        ("current_client_connections", 1),
        ("current_server_connections", 4),
    ]
    manager = StandInManager(started_at=1000.0)
    assert derived_rows(manager, now=1061.9)[-1] == ("uptime_seconds", 61)


# --------------------------------------------------------------------------------------
# SELECT PROXY_VERSION()


@pytest.mark.parametrize(
    "sql",
    ["SELECT PROXY_VERSION()", "select proxy_version()", "SELECT  proxy_version ( )"],
)
def test_proxy_version(sql: str) -> None:
    """
    One row, one column named PROXY_VERSION(): the package version.
    """
    assert VERSION.match(sql) is True
    result = VERSION.execute(AdminContext(None, None, None), True)
    assert isinstance(result, AdminResultSet)
    assert result.columns == ("PROXY_VERSION()",)
    assert list(result.rows) == [(__version__,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT PROXY_VERSION() + 1",
        "SELECT PROXY_VERSION() FROM dual",
        "SELECT PROXY_VERSION(), 1",
        "SELECT PROXY_VERSIONS()",
    ],
)
def test_proxy_version_other_statements_forwarded(sql: str) -> None:
    """
    Other statements starting the same way are recognised by keyword only,
    and the command is not proxy-only: the session forwards them.
    """
    assert VERSION.match(sql) is None
    recognised = CommandRegistry([VERSION]).recognise(sql.encode())
    assert recognised is None or recognised.match is None
