"""
Tests for L{obproxy_tx.session.sync}: version counters and sync statements.
"""

from __future__ import annotations

import datetime
import decimal

import pytest

from obproxy_tx.session.sync import (
    SessionVarVersions,
    SqlValue,
    SyncPlan,
    VarClass,
    build_set_statement,
    classify_sys_var,
    modified_type,
    plan_sync,
    quote_string,
    sql_literal,
    sys_var_literal,
)


def test_classify_sys_vars() -> None:
    """
    Exactly ODP's four hot variables are hot, last_insert_id has its own class,
    everything else is cold; names are case-insensitive.
    """
    for name in ("autocommit", "ob_log_level", "ob_query_timeout", "OB_LAST_SCHEMA_VERSION"):
        assert classify_sys_var(name) is VarClass.HOT_SYS
    assert classify_sys_var("sql_mode") is VarClass.COLD_SYS
    assert classify_sys_var("Last_Insert_Id") is VarClass.LAST_INSERT_ID


def test_modified_type_labels() -> None:
    """
    SHOW PROXYSESSION VARIABLES labels come from the class; user vars count as cold.
    """
    assert modified_type(VarClass.HOT_SYS) == "hot modified vars"
    assert modified_type(VarClass.COLD_SYS) == "cold modified vars"
    assert modified_type(VarClass.USER) == "cold modified vars"
    assert modified_type(VarClass.LAST_INSERT_ID) == "last insert id modified vars"
    with pytest.raises(ValueError):
        modified_type(VarClass.DB_NAME)


def test_versions_start_at_zero_and_print_in_attribute_order() -> None:
    """
    New sessions are at version 0 everywhere; rows follow SHOW PROXYSESSION
    ATTRIBUTE's order and names.
    """
    assert SessionVarVersions().attribute_rows() == [
        ("hot_sys_var_version", 0),
        ("sys_var_version", 0),
        ("user_var_version", 0),
        ("last_insert_id_version", 0),
        ("db_name_version", 0),
    ]


def test_bumped_counts_each_class_once() -> None:
    """
    Bumping raises each named class by one, even if named twice, and leaves the
    original value unchanged.
    """
    base = SessionVarVersions()
    bumped = base.bumped(VarClass.USER, VarClass.USER, VarClass.DB_NAME)
    assert bumped == SessionVarVersions(user_var_version=1, db_name_version=1)
    assert base == SessionVarVersions()


def test_behind_lists_lagging_classes() -> None:
    """
    A server session is behind in exactly the classes whose counter is lower
    than the client's.
    """
    client = SessionVarVersions().bumped(VarClass.COLD_SYS, VarClass.USER)
    server = SessionVarVersions(user_var_version=1)
    assert server.behind(client) == frozenset({VarClass.COLD_SYS})
    assert client.behind(client) == frozenset()


def test_synced_server_copies_client_after_statement() -> None:
    """
    A server session that was up to date takes the client's versions after
    running a statement that changed state.
    """
    client_before = SessionVarVersions(sys_var_version=2)
    server = client_before
    client_after = client_before.bumped(VarClass.USER, VarClass.LAST_INSERT_ID)
    assert server.after_statement(client_before, client_after) == client_after


def test_stale_server_stays_behind_after_statement() -> None:
    """
    A class the server session lagged in before an unsynced command stays behind
    afterwards, while classes it was current in follow the client.
    """
    client_before = SessionVarVersions(user_var_version=3, sys_var_version=1)
    server = SessionVarVersions(user_var_version=1, sys_var_version=1)
    client_after = client_before.bumped(VarClass.USER, VarClass.COLD_SYS)
    after = server.after_statement(client_before, client_after)
    assert after == SessionVarVersions(user_var_version=1, sys_var_version=2)
    assert after.behind(client_after) == frozenset({VarClass.USER})


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "NULL"),
        (True, "1"),
        (False, "0"),
        (42, "42"),
        (-7, "-7"),
        (18446744073709551615, "18446744073709551615"),
        (1.5, "1.5"),
        (1e20, "1e+20"),
        (decimal.Decimal("1E+2"), "100"),
        (decimal.Decimal("-0.050"), "-0.050"),
        ("", "''"),
        ("plain", "'plain'"),
        ("it's", "'it\\'s'"),
        ('say "hi"', "'say \\\"hi\\\"'"),
        ("back\\slash", "'back\\\\slash'"),
        ("a\0b\nc\rd\x1ae", "'a\\0b\\nc\\rd\\Ze'"),
        ("数据", "'数据'"),
        (b"", "X''"),
        (b"\x00\xffA", "X'00FF41'"),
        (bytearray(b"\x01"), "X'01'"),
        (memoryview(b"\x02"), "X'02'"),
        (datetime.datetime(2024, 7, 19, 1, 2, 3), "'2024-07-19 01:02:03'"),
        (datetime.datetime(2024, 7, 19, 1, 2, 3, 4), "'2024-07-19 01:02:03.000004'"),
        (datetime.date(2024, 7, 19), "'2024-07-19'"),
        (datetime.time(1, 2, 3), "'01:02:03'"),
        (datetime.timedelta(hours=-26, seconds=5), "'-25:59:55'"),
        (datetime.timedelta(seconds=1, microseconds=5), "'00:00:01.000005'"),
    ],
)
def test_sql_literal(value: SqlValue, literal: str) -> None:
    """
    Each supported Python value has one SQL spelling, strings escaped as
    mysql_real_escape_string escapes them.
    """
    assert sql_literal(value) == literal


def test_no_backslash_escapes_quoting() -> None:
    """
    Under NO_BACKSLASH_ESCAPES only the quote is doubled; backslashes stay literal.
    """
    assert quote_string("it's a\\b\n", no_backslash_escapes=True) == "'it''s a\\b\n'"
    assert sql_literal("x'y", no_backslash_escapes=True) == "'x''y'"


@pytest.mark.parametrize(
    "value", [float("inf"), float("nan"), decimal.Decimal("NaN"), decimal.Decimal("-Infinity")]
)
def test_non_finite_numbers_have_no_literal(value: SqlValue) -> None:
    """
    Infinity and NaN cannot be written in SQL and raise ValueError.
    """
    with pytest.raises(ValueError):
        sql_literal(value)


def test_unsupported_type() -> None:
    """
    Values of other types raise TypeError naming the type.
    """
    with pytest.raises(TypeError, match="list"):
        sql_literal([1])  # type: ignore[arg-type]


def test_sys_var_literal_sends_numbers_bare() -> None:
    """
    Numeric text reported by the server is sent unquoted so numeric variables
    accept it; other text is quoted.
    """
    assert sys_var_literal("28800") == "28800"
    assert sys_var_literal("-1.5") == "-1.5"
    assert sys_var_literal("1e3") == "1e3"
    assert sys_var_literal("ON") == "'ON'"
    assert sys_var_literal("") == "''"
    assert sys_var_literal("1; DROP TABLE t") == "'1; DROP TABLE t'"
    assert sys_var_literal("+08:00") == "'+08:00'"
    assert sys_var_literal(5) == "5"


def test_build_set_statement_order_and_form() -> None:
    """
    System variables come first, then user variables, then last_insert_id, in
    one SET statement.
    """
    user_vars: dict[str, SqlValue] = {"a": 1, "b": "x"}
    statement = build_set_statement(
        {"sql_mode": "STRICT_TRANS_TABLES", "wait_timeout": "100"},
        user_vars,
        last_insert_id=7,
    )
    assert statement == (
        "SET @@sql_mode = 'STRICT_TRANS_TABLES', @@wait_timeout = 100, "
        "@a = 1, @b = 'x', @@last_insert_id = 7"
    )


def test_build_set_statement_nothing_to_set() -> None:
    """
    With nothing to set there is no statement.
    """
    assert build_set_statement() is None
    assert build_set_statement({"ob_capability_flag": "654159"}) is None


def test_build_set_statement_skips_read_only_tracked_vars() -> None:
    """
    OceanBase's read-only proxy variables and last_insert_id as a sys var are not
    sent as sys vars.
    """
    statement = build_set_statement(
        [("ob_proxy_user_privilege", "65534"), ("LAST_INSERT_ID", "3"), ("autocommit", "OFF")]
    )
    assert statement == "SET @@autocommit = 'OFF'"


def test_build_set_statement_quotes_odd_user_var_names() -> None:
    """
    User variable names that are not plain identifiers are backquoted, with
    backquotes doubled; names like _min_cluster_version stay bare.
    """
    statement = build_set_statement(
        user_vars={"_min_cluster_version": "4.1.0.1", "my var": None, "a`b": b"\x01"}
    )
    assert statement == ("SET @_min_cluster_version = '4.1.0.1', @`my var` = NULL, @`a``b` = X'01'")


def test_build_set_statement_rejects_bad_names() -> None:
    """
    A system variable name that is not an identifier, or an empty user
    variable name, is refused rather than put in SQL.
    """
    with pytest.raises(ValueError):
        build_set_statement({"a = 1, @@b": 1})
    with pytest.raises(ValueError):
        build_set_statement(user_vars={"": 1})


def test_plan_sync_up_to_date() -> None:
    """
    A server session that is not behind needs nothing.
    """
    versions = SessionVarVersions(user_var_version=2)
    plan = plan_sync(
        versions, versions, database="d", sys_vars={"a": 1}, user_vars={"u": 1}, last_insert_id=1
    )
    assert plan == SyncPlan(frozenset())
    assert plan.is_empty


def test_plan_sync_sends_only_lagging_classes() -> None:
    """
    Only the lagging classes are sent: the database by COM_INIT_DB, and the hot
    sys vars, user vars and last_insert_id that lag, in one SET.
    """
    client = SessionVarVersions().bumped(
        VarClass.DB_NAME, VarClass.HOT_SYS, VarClass.USER, VarClass.LAST_INSERT_ID
    )
    plan = plan_sync(
        client,
        SessionVarVersions(),
        database="test",
        sys_vars={"sql_mode": "", "autocommit": "OFF"},
        user_vars={"u": "it's"},
        last_insert_id=9,
    )
    assert plan.database == "test"
    assert plan.statement == "SET @@autocommit = 'OFF', @u = 'it\\'s', @@last_insert_id = 9"
    assert plan.behind == frozenset(
        {VarClass.DB_NAME, VarClass.HOT_SYS, VarClass.USER, VarClass.LAST_INSERT_ID}
    )
    assert not plan.is_empty


def test_plan_sync_cold_only() -> None:
    """
    When only cold sys vars lag, neither hot vars, user vars nor the database
    are sent.
    """
    client = SessionVarVersions(sys_var_version=1, user_var_version=1, db_name_version=1)
    server = SessionVarVersions(user_var_version=1, db_name_version=1)
    plan = plan_sync(
        client,
        server,
        database="test",
        sys_vars={"sql_mode": "ANSI_QUOTES", "autocommit": "OFF"},
        user_vars={"u": 1},
        last_insert_id=None,
        no_backslash_escapes=True,
    )
    assert plan == SyncPlan(frozenset({VarClass.COLD_SYS}), None, "SET @@sql_mode = 'ANSI_QUOTES'")


def test_plan_sync_cannot_unselect_database() -> None:
    """
    A lagging database with no current database plans no COM_INIT_DB.
    """
    plan = plan_sync(
        SessionVarVersions(db_name_version=1),
        SessionVarVersions(),
        database=None,
        sys_vars={},
        user_vars={},
        last_insert_id=None,
    )
    assert plan.behind == frozenset({VarClass.DB_NAME})
    assert plan.is_empty
