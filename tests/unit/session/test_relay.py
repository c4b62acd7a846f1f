"""
Pure pieces of the proxy core: the statement classifier, route addresses,
session-state tracking, execute rewriting for re-prepared statements, and the pool.
"""

from __future__ import annotations

import attrs
import pytest

from obproxy_tx.session.pool import ServerSessionPool
from obproxy_tx.session.prepared import (
    PreparedStatements,
    param_types_of,
    with_bound_types,
)
from obproxy_tx.session.sync import SessionVarVersions, VarClass
from obproxy_tx.session.tracking import (
    SessionState,
    StatementKind,
    _fallback_classify,
    classify,
    parse_route_addr,
)
from obproxy_tx.wire.packets import StmtPrepareOK


def test_plain_select_is_cheap_and_free() -> None:
    """A plain SELECT has no pins, assignments or dependent functions."""
    info = classify(b"SELECT a, b FROM t WHERE id = 3")
    assert info.kind is StatementKind.SELECT
    assert not info.pin_reasons and not info.needs_last_session
    assert not info.user_var_assignments


def test_set_statement_assignments() -> None:
    """SET lists user and system variable assignments with their scope."""
    info = classify(b"SET @a = 1, @`odd name` = 'x,y', SESSION sql_mode = 'A,B', @@global.x = 2")
    assert info.kind is StatementKind.SET
    assert dict(info.user_var_values) == {"a": 1, "odd name": "x,y"}
    assert ("sql_mode", "session") in info.system_var_assignments
    assert ("x", "global") in info.system_var_assignments


def test_set_names_reports_charset_variables() -> None:
    """SET NAMES changes the connection character set variables."""
    names = {name for name, _ in classify(b"SET NAMES utf8mb4").system_var_assignments}
    assert {"character_set_client", "character_set_results"} <= names


def test_route_addr_assignment_and_forms() -> None:
    """SET @obproxy_route_addr is recognised; ints and 'ip:port' both parse; 0 clears."""
    info = classify(b"set @obproxy_route_addr = '10.0.0.1:2881'")
    assert info.route_addr == "'10.0.0.1:2881'"
    assert parse_route_addr(info.route_addr) == "10.0.0.1:2881"
    number = (0x7F000001 << 32) | 2881
    assert parse_route_addr(str(number)) == "127.0.0.1:2881"
    assert parse_route_addr("0") is None
    with pytest.raises(ValueError):
        parse_route_addr("'nonsense'")


@pytest.mark.parametrize(
    "sql, reason",
    [
        (b"SELECT GET_LOCK('x', 1)", "user lock"),
        (b"CREATE TEMPORARY TABLE t (a INT)", "temporary table"),
        (b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET TRANSACTION"),
    ],
)
def test_pin_reasons(sql: bytes, reason: str) -> None:
    """Locks, temporary tables and SET TRANSACTION pin the session, each with its reason."""
    assert any(pin.startswith(reason) for pin in classify(sql).pin_reasons)
    assert any(pin.startswith(reason) for pin in _fallback_classify(sql).pin_reasons)


def test_dependent_functions_need_the_last_session() -> None:
    """FOUND_ROWS(), ROW_COUNT(), CONNECTION_ID() and SHOW WARNINGS run where the last one ran."""
    for sql in (b"SELECT FOUND_ROWS()", b"select row_count()", b"SHOW WARNINGS"):
        assert classify(sql).needs_last_session, sql
    assert classify(b"SELECT CONNECTION_ID()").connection_id_only
    assert not classify(b"SELECT CONNECTION_ID() + 1").connection_id_only


def test_select_into_and_walrus_assign_user_variables() -> None:
    """SELECT ... INTO @v and @v := assign user variables."""
    assert classify(b"SELECT 1, 2 INTO @x, @y").user_var_assignments == {"x", "y"}
    assert classify(b"SELECT @n := @n + 1 FROM t").user_var_assignments == {"n"}


def test_kill_forms() -> None:
    """KILL, KILL CONNECTION and KILL QUERY carry the id and whether only the query dies."""
    assert classify(b"KILL 12").kill == (False, 12)
    assert classify(b"kill connection 7;").kill == (False, 7)
    assert classify(b"KILL QUERY 9").kill == (True, 9)


def test_comments_do_not_hide_statements() -> None:
    """A leading comment does not change the classification."""
    assert classify(b"/* app */ SET @a = 1").user_var_values == (("a", 1),)
    assert _fallback_classify(b"/* app */ SET @a = 1").user_var_assignments == {"a"}


def test_computed_user_variables_are_read_back() -> None:
    """A user variable set from an expression is listed for a read-back."""
    info = classify(b"SET @t = NOW(), @n = 3")
    assert info.user_var_assignments == {"t"}
    assert info.user_var_values == (("n", 3),)


def test_session_state_versions_move_only_on_change() -> None:
    """Recording the same value twice bumps a class's version once."""
    state = SessionState()
    state.set_sys_vars([("sql_mode", "A")])
    state.set_sys_vars([("sql_mode", "A")])
    state.set_user_vars([("u", 1)])
    state.set_database("db")
    state.set_last_insert_id(5)
    assert state.versions == SessionVarVersions(
        hot_sys_var_version=0,
        sys_var_version=1,
        user_var_version=1,
        last_insert_id_version=1,
        db_name_version=1,
    )
    state.set_sys_vars([("autocommit", "OFF")])
    assert state.versions.version(VarClass.HOT_SYS) == 1


def test_session_state_plan_for_a_fresh_server_session() -> None:
    """A fresh server session in the right database gets one SET with everything else."""
    state = SessionState()
    state.set_database("db")
    state.set_user_vars([("u", "it's")])
    state.set_sys_vars([("time_zone", "+03:00")])
    fresh = SessionVarVersions(db_name_version=state.versions.db_name_version)
    plan = state.plan(fresh)
    assert plan.database is None
    assert plan.statement == "SET @@time_zone = '+03:00', @u = 'it\\'s'"


def test_reset_bumps_everything() -> None:
    """A reset forgets variables and leaves every server session behind."""
    state = SessionState()
    state.set_user_vars([("u", 1)])
    before = state.versions
    state.reset()
    assert state.user_vars == {}
    assert state.versions.behind(before) == frozenset()
    assert before.behind(state.versions) == frozenset(VarClass)


def test_prepared_ids_are_the_proxys() -> None:
    """Client statement ids count from 1 whatever ids the server gave."""
    statements = PreparedStatements()
    first = statements.add(b"SELECT ?", StmtPrepareOK(77, 1, 1))
    second = statements.add(b"SELECT 2", StmtPrepareOK(78, 1, 0))
    assert (first.statement_id, second.statement_id) == (1, 2)
    assert statements.remove(1) is first
    assert statements.get(1) is None


def test_execute_types_are_put_back_for_a_new_server_session() -> None:
    """An execute that does not rebind types gets the last bound types inserted."""
    bound = b"\x00" + b"\x01" + b"\x08\x00" + b"\x2a" + b"\x00" * 7
    types = param_types_of(bound, 1)
    assert types == b"\x08\x00"
    unbound = b"\x00" + b"\x00" + b"\x2b" + b"\x00" * 7
    assert param_types_of(unbound, 1) is None
    assert with_bound_types(unbound, 1, types) == b"\x00\x01\x08\x00\x2b" + b"\x00" * 7
    assert with_bound_types(bound, 1, types) == bound


@attrs.define(eq=False)
class _FakeSession:
    key: tuple[str, str]


def test_pool_is_keyed_by_address_and_user() -> None:
    """Sessions come back only for their own (address, full user name) key."""
    pool = ServerSessionPool()
    one = _FakeSession(("a:1", "u@sys#c"))
    two = _FakeSession(("b:1", "u@sys#c"))
    pool.put(one)
    pool.put(two)
    assert len(pool) == 2
    assert pool.take(("a:1", "v@sys#c")) is None
    assert pool.take(("a:1", "u@sys#c")) is one
    assert pool.remove(two)
    assert not pool.remove(two)
    assert len(pool) == 0
