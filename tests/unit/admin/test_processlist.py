"""
Tests for L{obproxy_tx.plugins.obproxy_processlist}: C{SHOW PROCESSLIST} with
ODP's columns and C{SHOW FULL PROCESSLIST} with MySQL's, over real, unconnected
client sessions: column order and types, visibility, ordering, the caller's
own row, busy and idle sessions, and which statements are ours.
"""

from __future__ import annotations

import os
import threading

import pytest
from zope.interface.verify import verifyObject

from obproxy_tx.admin.interfaces import IAdminCommand
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.plugins.obproxy_processlist import ProcessListQuery, show_processlist
from obproxy_tx.wire.packets import ComQuery
from tests.unit.admin.test_proxysession import (
    Manager,
    activate,
    bind,
    integer_columns,
    names,
    run,
    server_session,
)


@pytest.fixture
def manager() -> Manager:
    return Manager()


def test_command_is_a_discovered_plugin() -> None:
    """
    The command is found by the registry; everyone may run it; statements it
    does not match are MySQL's (forwarded), not 5010.
    """
    registry = CommandRegistry.from_plugins()
    assert show_processlist in registry.commands
    assert verifyObject(IAdminCommand, show_processlist)
    assert show_processlist.privilege == "everyone"
    assert show_processlist.proxy_only is False
    assert show_processlist.columns == (
        "Id",
        "Tenant",
        "User",
        "Host",
        "db",
        "trans_count",
        "svr_session_count",
        "state",
        "tid",
        "pid",
    )


def test_odp_columns_and_rows(manager: Manager) -> None:
    """
    C{SHOW PROCESSLIST}: ODP's 10 columns, numeric ones BIGINT; a row per
    visible session ordered by Id, db NULL without a database.
    """
    caller = manager.client(524297, peer_port=38270)
    other = manager.client(5, peer_port=38027, tenant="sys", user="app")
    other.state.database = "test"
    other.trans_count = 3
    bind(other, server_session(1, 100))
    result = run(show_processlist, manager.context(caller), "SHOW PROCESSLIST")
    assert names(result) == list(show_processlist.columns)
    assert integer_columns(result) == ["Id", "trans_count", "svr_session_count", "tid", "pid"]
    tid, pid = threading.get_native_id(), os.getpid()
    assert result.rows == [
        (5, "sys", "app", "127.0.0.1:38027", "test", 3, 1, "MCS_ACTIVE_READER", tid, pid),
        (524297, "sys", "root", "127.0.0.1:38270", None, 0, 0, "MCS_ACTIVE_READER", tid, pid),
    ]


def test_rows_are_what_the_caller_may_see(manager: Manager) -> None:
    """
    An ordinary user sees its own user's sessions only; a C{sys} tenant user
    every session of its cluster; sessions still logging in are left out.
    """
    me = manager.client(3, user="app", tenant="t1")
    manager.client(4, user="app", tenant="t1")
    manager.client(5, user="app", tenant="t2")
    manager.client(6, user="root", tenant="sys", cluster="other")
    manager.client(7, logged_in=False)
    admin = manager.client(8, user="root", tenant="sys")
    for sql in ("SHOW PROCESSLIST", "SHOW FULL PROCESSLIST"):
        assert [row[0] for row in run(show_processlist, manager.context(me), sql).rows] == [3, 4]
        seen = run(show_processlist, manager.context(admin), sql).rows
        assert [row[0] for row in seen] == [3, 4, 5, 8]


def test_full_processlist_as_mysql(manager: Manager) -> None:
    """
    C{SHOW FULL PROCESSLIST}: MySQL's columns; the caller's own row is a
    Query showing its own statement; a session running a statement is a
    Query with the statement's full text; an idle one is a Sleep with no
    Info; Time counts from the last command.
    """
    caller = manager.client(10)
    busy = manager.client(11, user="root")
    idle = manager.client(12, user="root")
    text = "SELECT SLEEP(60) /* " + "x" * 200 + " */"
    activate(busy, server_session(1, 101))
    busy._request_command = ComQuery(text.encode())
    clock = manager.reactor
    idle.last_command_at = clock.seconds()
    clock.advance(7.9)
    busy.last_command_at = clock.seconds()
    clock.advance(2)
    caller.last_command_at = clock.seconds()
    result = run(show_processlist, manager.context(caller), "show full processlist")
    assert names(result) == ["Id", "User", "Host", "db", "Command", "Time", "State", "Info"]
    assert integer_columns(result) == ["Id", "Time"]
    rows = {row[0]: row for row in result.rows}
    assert rows[10][4:] == ("Query", 0, "MCS_ACTIVE_READER", "show full processlist")
    assert rows[11][4:] == ("Query", 2, "MCS_ACTIVE_READER", text)
    assert rows[12][4:] == ("Sleep", 9, "MCS_ACTIVE_READER", None)
    assert rows[12][1:4] == ("root", "127.0.0.1:40000", None)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (b"SHOW PROCESSLIST", ProcessListQuery(False, "SHOW PROCESSLIST")),
        (b"show processlist;", ProcessListQuery(False, "show processlist")),
        (b"  Show\tFull \n ProcessList ", ProcessListQuery(True, "Show\tFull \n ProcessList")),
    ],
)
def test_grammar(sql: bytes, expected: ProcessListQuery) -> None:
    """
    Both forms, case-insensitive, any blanks, with or without C{;}.
    """
    recognised = CommandRegistry([show_processlist]).recognise(sql)
    assert recognised is not None and recognised.command is show_processlist
    assert recognised.match == expected


@pytest.mark.parametrize(
    "sql",
    [b"SHOW PROCESSLIST 5", b"SHOW FULL PROCESSLIST LIMIT 1", b"SHOW PROCESSLISTS", b"SHOW TABLES"],
)
def test_other_statements_are_not_ours(sql: bytes) -> None:
    """
    Anything else is not matched (and, C{proxy_only} being false, goes to
    the backend).
    """
    assert show_processlist.match(sql.decode()) is None
    recognised = CommandRegistry([show_processlist]).recognise(sql)
    assert recognised is None or recognised.match is None
