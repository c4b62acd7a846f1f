"""
Tests for L{obproxy_tx.session.statements}: cheap statement classification.
"""

from __future__ import annotations

import decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obproxy_tx.session import statements
from obproxy_tx.session.statements import (
    PIN_LOCK_TABLES,
    PIN_SET_TRANSACTION,
    PIN_TEMPORARY_TABLE,
    PIN_TEXT_PREPARE,
    PIN_XA,
    RouteAddr,
    StatementKind,
    VarAssignment,
    VarScope,
    classify,
)

K = StatementKind


def _sys(sql: bytes) -> list[tuple[str, VarScope, str | None, object]]:
    return [(a.name, a.scope, a.value_sql, a.value) for a in classify(sql).system_var_assignments]


def _user(sql: bytes) -> list[tuple[str, str | None, object]]:
    return [(a.name, a.value_sql, a.value) for a in classify(sql).user_var_assignments]


# -- kinds ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        (b"SELECT 1", K.SELECT),
        (b"select * from t", K.SELECT),
        (b"  \n\tSeLeCt 1", K.SELECT),
        (b"/* leading */ SELECT 1", K.SELECT),
        (b"-- comment\nSELECT 1", K.SELECT),
        (b"# comment\nSELECT 1", K.SELECT),
        (b"/* a */ /* b */ -- c\n  # d\n SELECT 1", K.SELECT),
        (b"(SELECT 1) UNION (SELECT 2)", K.SELECT),
        (b"WITH x AS (SELECT 1) SELECT * FROM x", K.SELECT),
        (b"VALUES ROW(1, 2)", K.SELECT),
        (b"INSERT INTO t VALUES (1)", K.INSERT),
        (b"insert ignore into t values (1)", K.INSERT),
        (b"UPDATE t SET a = 1", K.UPDATE),
        (b"DELETE FROM t", K.DELETE),
        (b"REPLACE INTO t VALUES (1)", K.REPLACE),
        (b"SET @a = 1", K.SET),
        (b"SET PASSWORD = 'x'", K.SET),
        (b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", K.SET_TRANSACTION),
        (b"SET GLOBAL TRANSACTION READ ONLY", K.SET_TRANSACTION),
        (b"USE db", K.USE),
        (b"BEGIN", K.BEGIN),
        (b"begin work", K.BEGIN),
        (b"BEGIN NOT ATOMIC SELECT 1; END", K.OTHER),
        (b"START TRANSACTION", K.BEGIN),
        (b"START TRANSACTION WITH CONSISTENT SNAPSHOT", K.BEGIN),
        (b"START SLAVE", K.OTHER),
        (b"COMMIT", K.COMMIT),
        (b"COMMIT WORK AND NO CHAIN", K.COMMIT),
        (b"ROLLBACK", K.ROLLBACK),
        (b"ROLLBACK WORK", K.ROLLBACK),
        (b"ROLLBACK TO SAVEPOINT s1", K.SAVEPOINT),
        (b"ROLLBACK WORK TO s1", K.SAVEPOINT),
        (b"SAVEPOINT s1", K.SAVEPOINT),
        (b"RELEASE SAVEPOINT s1", K.SAVEPOINT),
        (b"XA START 'x'", K.XA),
        (b"LOCK TABLES t READ", K.LOCK_TABLES),
        (b"LOCK TABLE t WRITE", K.LOCK_TABLES),
        (b"UNLOCK TABLES", K.UNLOCK_TABLES),
        (b"CREATE TEMPORARY TABLE t (a INT)", K.DDL_TEMP_TABLE),
        (b"CREATE OR REPLACE TEMPORARY TABLE t (a INT)", K.DDL_TEMP_TABLE),
        (b"DROP TEMPORARY TABLE IF EXISTS t", K.DDL_TEMP_TABLE),
        (b"CREATE TABLE t (a INT)", K.DDL),
        (b"DROP TABLE t", K.DDL),
        (b"ALTER TABLE t ADD b INT", K.DDL),
        (b"TRUNCATE t", K.DDL),
        (b"RENAME TABLE a TO b", K.DDL),
        (b"GRANT ALL ON *.* TO u", K.DDL),
        (b"PREPARE s FROM 'SELECT 1'", K.PREPARE),
        (b"EXECUTE s USING @a", K.EXECUTE),
        (b"DEALLOCATE PREPARE s", K.DEALLOCATE),
        (b"DROP PREPARE s", K.DEALLOCATE),
        (b"KILL 5", K.KILL),
        (b"SHOW TABLES", K.SHOW),
        (b"CALL p(1)", K.CALL),
        (b"LOAD DATA INFILE '/x' INTO TABLE t", K.LOAD_DATA),
        (b"LOAD XML LOCAL INFILE '/x' INTO TABLE t", K.LOAD_DATA),
        (b"EXPLAIN SELECT 1", K.OTHER),
        (b"FLUSH TABLES", K.OTHER),
        (b"", K.OTHER),
        (b"   ", K.OTHER),
        (b"/* only a comment */", K.OTHER),
        (b";", K.OTHER),
        (b"\xff\xfe garbage", K.OTHER),
    ],
)
def test_kinds(sql: bytes, kind: StatementKind) -> None:
    """
    The first keyword (after whitespace and comments, any case) and the
    second keywords that matter decide the kind.
    """
    assert classify(sql).kind is kind


def test_verb_is_the_first_keyword_upper_cased() -> None:
    """
    C{verb} is the statement's first keyword in upper case, empty without one.
    """
    assert classify(b" /* x */ select 1").verb == "SELECT"
    assert classify(b"start transaction").verb == "START"
    assert classify(b"").verb == ""


def test_begin_read_only_and_read_write() -> None:
    """
    START TRANSACTION READ ONLY / READ WRITE are told apart, with other
    characteristics in any order.
    """
    assert classify(b"START TRANSACTION READ ONLY").read_only is True
    assert classify(b"start transaction with consistent snapshot, read write").read_only is False
    assert classify(b"START TRANSACTION").read_only is None
    assert classify(b"BEGIN").starts_transaction
    assert classify(b"XA BEGIN 'x'").starts_transaction
    assert not classify(b"XA END 'x'").starts_transaction


def test_rollback_to_savepoint_is_not_a_rollback() -> None:
    """
    ROLLBACK TO keeps the transaction open, so it is a SAVEPOINT statement.
    """
    assert classify(b"rollback to s").kind is K.SAVEPOINT
    assert classify(b"rollback /* c */ work to savepoint s").kind is K.SAVEPOINT


# -- user variables ---------------------------------------------------------------


def test_set_user_variables_with_literals() -> None:
    """
    SET @a = ..., @b := ... gives each name (lower-cased, quotes removed) and
    literal values read as Python.
    """
    assert _user(
        b"SET @a = 1, @B := 'x\\'y', @`C D` = NULL, @'q' = -2.50, @\"d\" = 1e3, @e = X'4142'"
    ) == [
        ("a", "1", 1),
        ("b", "'x\\'y'", "x'y"),
        ("c d", "NULL", None),
        ("q", "-2.50", decimal.Decimal("-2.50")),
        ("d", "1e3", 1000.0),
        ("e", "X'4142'", b"AB"),
    ]


def test_set_user_variable_expressions_have_no_value() -> None:
    """
    A value that is not a simple literal is reported without value_sql.
    """
    info = classify(b"SET @a = NOW(), @b = @a + 1, @c = (SELECT 1), @d = TRUE, @e = 0x1F")
    assert [(a.name, a.value_sql, a.is_literal) for a in info.user_var_assignments] == [
        ("a", None, False),
        ("b", None, False),
        ("c", None, False),
        ("d", "TRUE", True),
        ("e", "0x1F", True),
    ]
    assert info.user_var_assignments[3].value == 1
    assert info.user_var_assignments[4].value == b"\x1f"
    assert info.user_vars_assigned == frozenset({"a", "b", "c", "d", "e"})


def test_string_literal_escapes_and_introducers() -> None:
    """
    String values are unescaped as MySQL does (backslash escapes, doubled
    quotes) and character set introducers are allowed.
    """
    assert _user(b"SET @a = 'it''s\\n', @b = _utf8mb4'x', @c = N'y', @d = \"q\"\"q\"") == [
        ("a", "'it''s\\n'", "it's\n"),
        ("b", "_utf8mb4'x'", "x"),
        ("c", "N'y'", "y"),
        ("d", '"q""q"', 'q"q'),
    ]


def test_user_variables_assigned_by_select() -> None:
    """
    SELECT ... INTO @a, @b and @v := expr inside a SELECT assign user
    variables (value known only for a literal).
    """
    assert _user(b"SELECT a, b INTO @x, @Y FROM t") == [("x", None, None), ("y", None, None)]
    assert _user(b"SELECT @v := 5, @w := a + 1, @z:=(1) FROM t") == [
        ("v", "5", 5),
        ("w", None, None),
        ("z", None, None),
    ]
    assert _user(b"SELECT a FROM t INTO @r") == [("r", None, None)]
    assert _user(b"SELECT a FROM t WHERE b = @q") == []


def test_assignment_look_alikes_in_strings_and_comments_are_ignored() -> None:
    """
    := and INTO @v inside quotes or comments assign nothing.
    """
    assert _user(b"SELECT '@a := 1', \"INTO @b\" /* @c := 2 */ -- @d := 3") == []
    assert _user(b"SELECT 1 # INTO @e") == []


# -- system variables --------------------------------------------------------------


def test_system_variable_scopes() -> None:
    """
    Scope keywords stick to the following assignments until the next one, as
    MySQL documents; @@x, @@session.x and @@local.x are session values and
    @@global.x is global.
    """
    assert _sys(
        b"SET SESSION sql_mode = 'STRICT', GLOBAL wait_timeout = 10, foo = ON, "
        b"LOCAL bar = OFF, @@global.x = 1, @@y = 2, @@SESSION.z = -3, @@local.w = 'a', "
        b"PERSIST p = 1, PERSIST_ONLY q = 2"
    ) == [
        ("sql_mode", VarScope.SESSION, "'STRICT'", "STRICT"),
        ("wait_timeout", VarScope.GLOBAL, "10", 10),
        ("foo", VarScope.GLOBAL, "ON", "ON"),
        ("bar", VarScope.SESSION, "OFF", "OFF"),
        ("x", VarScope.GLOBAL, "1", 1),
        ("y", VarScope.SESSION, "2", 2),
        ("z", VarScope.SESSION, "-3", -3),
        ("w", VarScope.SESSION, "'a'", "a"),
        ("p", VarScope.PERSIST, "1", 1),
        ("q", VarScope.PERSIST_ONLY, "2", 2),
    ]


def test_set_autocommit_and_names_are_case_insensitive() -> None:
    """
    SET autocommit / AUTOCOMMIT is the session variable autocommit, name lower-cased.
    """
    assert _sys(b"set AutoCommit=0") == [("autocommit", VarScope.SESSION, "0", 0)]
    assert _sys(b"SET autocommit = ON") == [("autocommit", VarScope.SESSION, "ON", "ON")]
    assert _sys(b"SET @@autocommit := 1") == [("autocommit", VarScope.SESSION, "1", 1)]


def test_system_variable_default_and_expressions_have_no_value() -> None:
    """
    DEFAULT and expressions are assignments whose value the proxy must learn elsewhere.
    """
    assert _sys(b"SET sql_mode = DEFAULT, time_zone = CONCAT('+', '08:00')") == [
        ("sql_mode", VarScope.SESSION, None, None),
        ("time_zone", VarScope.SESSION, None, None),
    ]


def test_set_mixes_user_and_system_variables() -> None:
    """
    One SET may assign both kinds, each reported in its list.
    """
    info = classify(b"SET @x = 1, SESSION sql_mode = '', @y = 'b', `max_join_size` = 100")
    assert [a.name for a in info.user_var_assignments] == ["x", "y"]
    assert [(a.name, a.scope) for a in info.system_var_assignments] == [
        ("sql_mode", VarScope.SESSION),
        ("max_join_size", VarScope.SESSION),
    ]


def test_component_variables() -> None:
    """
    Dotted names (component variables) keep their dots.
    """
    assert _sys(b"SET GLOBAL validate_password.length = 8") == [
        ("validate_password.length", VarScope.GLOBAL, "8", 8)
    ]


def test_set_names() -> None:
    """
    SET NAMES x [COLLATE y] sets the three character_set_* variables (and
    collation_connection with COLLATE); DEFAULT gives no value.
    """
    names = ("character_set_client", "character_set_connection", "character_set_results")
    utf8 = [(n, VarScope.SESSION, "utf8mb4", "utf8mb4") for n in names]
    assert _sys(b"SET NAMES utf8mb4") == utf8
    assert _sys(b"set names 'latin1' collate 'latin1_bin'") == [
        *[(n, VarScope.SESSION, "'latin1'", "latin1") for n in names],
        ("collation_connection", VarScope.SESSION, "'latin1_bin'", "latin1_bin"),
    ]
    assert _sys(b"SET NAMES DEFAULT") == [(n, VarScope.SESSION, None, None) for n in names]
    assert _sys(b"SET NAMES utf8, @@sql_mode = ''")[-1] == ("sql_mode", VarScope.SESSION, "''", "")


def test_set_character_set() -> None:
    """
    SET CHARACTER SET / CHARSET sets client and results to the charset and the
    connection charset to the database's (unknown here).
    """
    expected = [
        ("character_set_client", VarScope.SESSION, "latin1", "latin1"),
        ("character_set_results", VarScope.SESSION, "latin1", "latin1"),
        ("character_set_connection", VarScope.SESSION, None, None),
    ]
    assert _sys(b"SET CHARACTER SET latin1") == expected
    assert _sys(b"SET CHARSET latin1") == expected


def test_set_transaction() -> None:
    """
    SET TRANSACTION without scope applies to the next transaction of that
    server session: a pin. With a scope it sets session/global variables.
    """
    info = classify(b"SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY")
    assert info.kind is K.SET_TRANSACTION
    assert info.pin_reasons == {PIN_SET_TRANSACTION}
    assert info.system_var_assignments == ()
    assert info.read_only is True
    info = classify(b"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    assert info.pin_reasons == frozenset()
    assert _sys(b"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ") == [
        ("transaction_isolation", VarScope.SESSION, "'REPEATABLE-READ'", "REPEATABLE-READ")
    ]
    assert _sys(b"SET GLOBAL TRANSACTION READ WRITE") == [
        ("transaction_read_only", VarScope.GLOBAL, "0", 0)
    ]


def test_set_password_role_statement_assign_nothing() -> None:
    """
    SET PASSWORD, SET ROLE, SET DEFAULT ROLE and SET STATEMENT ... FOR change no
    session variable the proxy tracks.
    """
    for sql in (
        b"SET PASSWORD = PASSWORD('x')",
        b"SET PASSWORD FOR u = 'x'",
        b"SET ROLE ALL",
        b"SET DEFAULT ROLE r TO u",
        b"SET STATEMENT max_statement_time = 1 FOR SELECT 1",
    ):
        info = classify(sql)
        assert info.kind is K.SET
        assert info.system_var_assignments == ()
        assert info.user_var_assignments == ()


def test_executable_comments_are_code() -> None:
    """
    /*!NNNNN ... */ and /*M!...*/ run on the server, so their content counts;
    plain comments do not.
    """
    assert classify(b"/*!40101 SET NAMES utf8 */").kind is K.SET
    assert _sys(b"/*!40101 SET @@session.sql_mode = 'A' */") == [
        ("sql_mode", VarScope.SESSION, "'A'", "A")
    ]
    assert _user(b"/*M!100100 SET @x = 1 */") == [("x", "1", 1)]
    assert classify(b"/* SET NAMES utf8 */ SELECT 1").kind is K.SELECT
    assert classify(b"SELECT '/*!40101 x */' FROM t").kind is K.SELECT


# -- USE -------------------------------------------------------------------------------


def test_use_database() -> None:
    """
    USE db gives the database name, backquotes removed.
    """
    assert classify(b"USE test").database == "test"
    assert classify(b"use `my ``db`").database == "my `db"
    assert classify(b"USE test;").database == "test"
    assert classify(b"SELECT 1").database is None


# -- pins --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (b"SELECT FOUND_ROWS()", "dependent function FOUND_ROWS()"),
        (b"select found_rows ( )", "dependent function FOUND_ROWS()"),
        (b"SELECT ROW_COUNT()", "dependent function ROW_COUNT()"),
        (b"SELECT CONNECTION_ID()", "dependent function CONNECTION_ID()"),
        (b"SELECT 1 FROM t WHERE x = connection_id()", "dependent function CONNECTION_ID()"),
        (b"SELECT GET_LOCK('a', 10)", "user lock GET_LOCK()"),
        (b"DO IS_FREE_LOCK('a')", "user lock IS_FREE_LOCK()"),
        (b"SELECT IS_USED_LOCK('a')", "user lock IS_USED_LOCK()"),
        (b"SELECT RELEASE_LOCK('a')", "user lock RELEASE_LOCK()"),
        (b"SELECT RELEASE_ALL_LOCKS()", "user lock RELEASE_ALL_LOCKS()"),
        (b"SET @l = GET_LOCK('a', 1)", "user lock GET_LOCK()"),
        (b"SHOW WARNINGS", "dependent statement SHOW WARNINGS"),
        (b"show errors limit 1", "dependent statement SHOW ERRORS"),
        (b"SHOW COUNT(*) WARNINGS", "dependent statement SHOW COUNT(*) WARNINGS"),
        (b"SHOW COUNT( * ) ERRORS", "dependent statement SHOW COUNT(*) ERRORS"),
        (b"SELECT @@warning_count", "dependent variable @@warning_count"),
        (b"SELECT @@session.error_count", "dependent variable @@error_count"),
        (b"CREATE TEMPORARY TABLE t (a INT)", PIN_TEMPORARY_TABLE),
        (b"SET TRANSACTION READ ONLY", PIN_SET_TRANSACTION),
        (b"PREPARE s FROM 'SELECT 1'", PIN_TEXT_PREPARE),
        (b"LOCK TABLES t READ", PIN_LOCK_TABLES),
        (b"XA START 'x'", PIN_XA),
        (b"XA COMMIT 'x'", PIN_XA),
        (b"HANDLER t OPEN", statements.PIN_HANDLER),
    ],
)
def test_pin_reasons(sql: bytes, reason: str) -> None:
    """
    Statements that depend on or create per-server-session state name why.
    """
    assert reason in classify(sql).pin_reasons


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT 1",
        b"SELECT * FROM t FOR UPDATE",
        b"SELECT 'FOUND_ROWS()'",
        b'SELECT "GET_LOCK(1)"',
        b"SELECT `found_rows`",
        b"SELECT 1 /* ROW_COUNT() */",
        b"SELECT 1 -- CONNECTION_ID()",
        b"SELECT my_found_rows()",
        b"SELECT found_rows_total FROM t",
        b"SELECT t.get_lock FROM t",
        b"SELECT @get_lock",
        b"DROP TEMPORARY TABLE t",
        b"SHOW VARIABLES LIKE 'warning%'",
        b"SELECT @@warning_counter",
        b"INSERT INTO t (found_rows) VALUES (1)",
        b"SET SESSION TRANSACTION READ ONLY",
    ],
)
def test_not_pinned(sql: bytes) -> None:
    """
    Look-alikes in strings, comments, identifiers or other names, FOR UPDATE
    and scoped SET TRANSACTION are no pins.
    """
    assert classify(sql).pin_reasons == frozenset()


def test_last_insert_id_is_a_preference_not_a_pin() -> None:
    """
    LAST_INSERT_ID() marks a preference for the session that made the id.
    """
    info = classify(b"INSERT INTO t2 VALUES (LAST_INSERT_ID())")
    assert info.uses_last_insert_id
    assert info.pin_reasons == frozenset()
    assert not classify(b"SELECT 'LAST_INSERT_ID()'").uses_last_insert_id


# -- route address --------------------------------------------------------------------


def test_route_addr_string() -> None:
    """
    SET @obproxy_route_addr = 'ip:port' names the target server; it is not
    reported as a user variable.
    """
    info = classify(b"SET @obproxy_route_addr = '127.0.0.1:2881'")
    assert info.route_addr == RouteAddr("127.0.0.1", 2881, "'127.0.0.1:2881'")
    assert info.user_var_assignments == ()
    assert classify(b"set @OBPROXY_ROUTE_ADDR='[::1]:3306'").route_addr == RouteAddr(
        "::1", 3306, "'[::1]:3306'"
    )


def test_route_addr_integer() -> None:
    """
    An integer is ODP's packed (ipv4 << 32) | port; 0 clears the override.
    """
    packed = (0x7F000001 << 32) | 2881
    info = classify(b"SET @obproxy_route_addr = " + str(packed).encode())
    assert info.route_addr == RouteAddr("127.0.0.1", 2881, str(packed))
    cleared = classify(b"SET @obproxy_route_addr = 0").route_addr
    assert cleared is not None and cleared.host is None and cleared.clears
    bad = classify(b"SET @obproxy_route_addr = 'nonsense'").route_addr
    assert bad is not None and bad.host is None and not bad.clears


def test_route_addr_with_other_assignments() -> None:
    """
    Other assignments in the same SET are still reported.
    """
    info = classify(b"SET @a = 1, @obproxy_route_addr = '10.0.0.1:1'")
    assert info.route_addr is not None and info.route_addr.host == "10.0.0.1"
    assert [a.name for a in info.user_var_assignments] == ["a"]


# -- multi-statements ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "multi"),
    [
        (b"SELECT 1; SELECT 2", True),
        (b"SELECT 1;SELECT 2;", True),
        (b"SELECT 1;", False),
        (b"SELECT 1 ;  \n ", False),
        (b"SELECT 1; -- trailing comment", False),
        (b"SELECT 1; /* c */", False),
        (b"SELECT 1; # c", False),
        (b"SELECT ';'", False),
        (b'SELECT ";" ; ', False),
        (b"SELECT `a;b` FROM t", False),
        (b"SELECT 1 /* ; SELECT 2 */", False),
        (b"SELECT 1 -- ; SELECT 2", False),
        (b"SELECT 'it\\'s;' ; SELECT 2", True),
        (b"SELECT 'a''b;'", False),
        (b";;", False),
    ],
)
def test_multi_statement_detection(sql: bytes, multi: bool) -> None:
    """
    Only a ; outside quotes and comments followed by more SQL makes a
    multi-statement.
    """
    assert classify(sql).multi_statement is multi


def test_multi_statement_merges_effects() -> None:
    """
    Kind and details come from the first statement; assignments, pins, the
    database and the route from all of them.
    """
    info = classify(
        b"BEGIN; SET @a = 1; USE d1; SELECT FOUND_ROWS(); SET NAMES utf8; USE `d2`; COMMIT"
    )
    assert info.kind is K.BEGIN
    assert info.kinds == (K.BEGIN, K.SET, K.USE, K.SELECT, K.SET, K.USE, K.COMMIT)
    assert info.multi_statement
    assert [a.name for a in info.user_var_assignments] == ["a"]
    assert len(info.system_var_assignments) == 3
    assert info.database == "d2"
    assert info.pin_reasons == {"dependent function FOUND_ROWS()"}


# -- internal commands -------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        b"SHOW PROXYSESSION",
        b"show proxysession attribute 5",
        b"SHOW PROXYCONFIG LIKE 'x'",
        b"SHOW PROCESSLIST",
        b"show full processlist",
        b"KILL 42",
        b"KILL PROXYSESSION 1 2",
        b"PING PROXY",
        b"SELECT PROXY_VERSION()",
        b"select proxy_status ( )",
        b"SELECT @obproxy_route_addr",
        b"ALTER PROXYCONFIG SET a = 1",
        b"  /* c */ SHOW PROXYSTAT",
    ],
)
def test_internal_candidates(sql: bytes) -> None:
    """
    The proxy's own commands are flagged for the admin layer (issue 4).
    """
    assert classify(sql).is_internal_candidate


@pytest.mark.parametrize(
    "sql",
    [b"SHOW TABLES", b"SELECT 1", b"SELECT proxy_versions FROM t", b"PING", b"ALTER TABLE t"],
)
def test_not_internal(sql: bytes) -> None:
    """
    Ordinary statements are not internal candidates.
    """
    assert not classify(sql).is_internal_candidate


def test_kill_details() -> None:
    """
    KILL [CONNECTION|QUERY] id gives the id and whether only the query dies.
    """
    assert (classify(b"KILL 7").kill_id, classify(b"KILL 7").kill_query) == (7, False)
    assert (classify(b"kill connection 8").kill_id, classify(b"kill connection 8").kill_query) == (
        8,
        False,
    )
    assert (classify(b"KILL QUERY 9").kill_id, classify(b"KILL QUERY 9").kill_query) == (9, True)
    assert classify(b"KILL PROXYSESSION 3").kill_id is None


def test_compatibility_properties() -> None:
    """
    needs_last_session, kill and connection_id_only give the facts the proxy
    core's own classifier had.
    """
    assert classify(b"SELECT FOUND_ROWS()").needs_last_session
    assert classify(b"SHOW WARNINGS").needs_last_session
    assert classify(b"SELECT @@warning_count").needs_last_session
    assert not classify(b"SELECT GET_LOCK('a', 1)").needs_last_session
    assert not classify(b"SELECT 1").needs_last_session
    assert classify(b"KILL QUERY 9").kill == (True, 9)
    assert classify(b"KILL 9").kill == (False, 9)
    assert classify(b"KILL PROXYSESSION 9").kill is None
    assert classify(b"SELECT 1").kill is None
    assert classify(b"select connection_id ( ) ;").connection_id_only
    assert classify(b"/* c */ SELECT CONNECTION_ID()").connection_id_only
    assert not classify(b"SELECT CONNECTION_ID(), 1").connection_id_only
    assert not classify(b"SELECT CONNECTION_ID(); SELECT 1").connection_id_only


# -- other details ------------------------------------------------------------------------


def test_load_data_local() -> None:
    """
    LOAD DATA LOCAL INFILE is told from server-side LOAD DATA INFILE.
    """
    assert classify(b"LOAD DATA LOCAL INFILE 'f' INTO TABLE t").local_infile
    assert classify(b"load data low_priority local infile 'f' into table t").local_infile
    assert classify(b"LOAD DATA CONCURRENT LOCAL INFILE 'f' INTO TABLE t").local_infile
    assert not classify(b"LOAD DATA INFILE 'f' INTO TABLE t").local_infile


def test_text_prepared_statement_names() -> None:
    """
    PREPARE, EXECUTE and DEALLOCATE/DROP PREPARE report the statement name.
    """
    assert classify(b"PREPARE stmt1 FROM 'SELECT ?'").ps_name == "stmt1"
    assert classify(b"EXECUTE `stmt1` USING @a").ps_name == "stmt1"
    assert classify(b"DEALLOCATE PREPARE stmt1").ps_name == "stmt1"
    assert classify(b"DROP PREPARE stmt1").ps_name == "stmt1"


def test_xa_action() -> None:
    """
    The XA verb is reported.
    """
    assert classify(b"xa end 'x'").xa_action == "END"
    assert classify(b"XA RECOVER").xa_action == "RECOVER"


def test_plain_statements_share_one_result() -> None:
    """
    Statements without anything to report give a shared, equal value.
    """
    assert classify(b"SELECT a FROM t WHERE id = 1") is classify(b"SELECT b FROM u")
    assert classify(b"COMMIT") == classify(b"commit")


def test_var_assignment_is_literal() -> None:
    """
    is_literal tells whether the value is known.
    """
    assert VarAssignment("a", VarScope.USER, "1", 1).is_literal
    assert not VarAssignment("a", VarScope.USER).is_literal


def test_accepts_bytes_like() -> None:
    """
    bytearray and memoryview work as well as bytes.
    """
    assert classify(bytearray(b"SELECT 1")).kind is K.SELECT  # type: ignore[arg-type]
    assert classify(memoryview(b"USE x")).database == "x"  # type: ignore[arg-type]


def test_unterminated_quotes_and_comments() -> None:
    """
    Unterminated strings, identifiers and comments swallow the rest of the text.
    """
    assert not classify(b"SELECT 'abc; SELECT 2").multi_statement
    assert classify(b"SELECT `x; FOUND_ROWS()").pin_reasons == frozenset()
    assert classify(b"SELECT 1 /* ; FOUND_ROWS()").pin_reasons == frozenset()
    assert _user(b"SET @a = 'unterminated") == [("a", "'unterminated", "unterminated")]
    assert classify(b"/* never closed").kind is K.OTHER


# -- robustness ------------------------------------------------------------------------------

_SQL_PIECES = st.sampled_from(
    [
        b"SELECT",
        b"SET",
        b"@a",
        b"@@session.x",
        b"@`q",
        b"@'",
        b":=",
        b"=",
        b"'",
        b'"',
        b"`",
        b"\\",
        b"/*",
        b"*/",
        b"/*!",
        b"/*M!123",
        b"--",
        b"-- ",
        b"#",
        b"\n",
        b";",
        b",",
        b"(",
        b")",
        b" ",
        b"NAMES",
        b"CHARACTER",
        b"TRANSACTION",
        b"GLOBAL",
        b"INTO",
        b"FOUND_ROWS(",
        b"GET_LOCK",
        b"USE",
        b"KILL",
        b"SHOW",
        b"COUNT(*)",
        b"WARNINGS",
        b"START",
        b"ROLLBACK",
        b"TO",
        b"X'4",
        b"0x",
        b"b'01",
        b"0b1",
        b"1e",
        b"-",
        b"1.5",
        b"obproxy_route_addr",
        b"'1.2.3.4:99999'",
        b"18446744073709551616",
        b"_utf8",
        b"COLLATE",
        b"DEFAULT",
        b"\xff",
        b"\x00",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_SQL_PIECES, max_size=24).map(b"".join))
def test_never_raises_on_sql_like_input(sql: bytes) -> None:
    """
    The analysis itself (without the safety net in classify) never raises on
    SQL-like fragments in any order.
    """
    info = statements._classify(sql)
    assert info.kinds


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_never_raises_on_arbitrary_bytes(sql: bytes) -> None:
    """
    Arbitrary bytes give some classification, never an exception.
    """
    info = statements._classify(sql)
    assert isinstance(info.kind, StatementKind)
