"""
Tests for L{obproxy_tx.plugins.obproxy_proxysession}: the C{SHOW PROXYSESSION}
forms against real, unconnected L{ClientSession} and L{ServerSession} objects
(so a renamed session attribute breaks these tests, not a user's command):
columns and their types, ODP's 39 ATTRIBUTE rows and server session labels,
LIKE, ids given as C{cs_id} or backend connection id, who sees what, the
VARIABLES literals, and the grammar.

The module also holds the session-building helpers L{Manager}, L{server_session},
L{bind}, L{activate} and L{put_in_pool}, which C{test_processlist} uses too.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import pytest
from twisted.internet import defer
from zope.interface.verify import verifyObject

from obproxy_tx.admin.interfaces import AdminContext, AdminError, AdminResultSet, IAdminCommand
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.admin.sysvars import flags_of, sys_variable_flag
from obproxy_tx.config import BackendServer, ClusterConfig, ClusterType
from obproxy_tx.plugins import obproxy_proxysession as ps
from obproxy_tx.session.client_session import ClientSession
from obproxy_tx.session.login import LoginName
from obproxy_tx.session.server_session import BackendError, BackendLogin, ServerSession
from obproxy_tx.wire.connection import RowData
from obproxy_tx.wire.constants import Capability, ColumnFlag, ColumnType, ServerStatus
from obproxy_tx.wire.packets import (
    ColumnCount,
    ColumnDefinition41,
    EOFPacket,
    ERRPacket,
    TextRow,
)

# -- building sessions ----------------------------------------------------------------


class Manager:
    """
    The part of L{obproxy_tx.session.manager.SessionManager} commands use,
    holding real client sessions.
    """

    def __init__(self) -> None:
        from twisted.internet.task import Clock

        self.reactor = Clock()
        self.client_sessions: Dict[int, ClientSession] = {}
        self.config: Any = None

    def find_client_session(self, cs_id: int) -> ClientSession | None:
        return self.client_sessions.get(cs_id)

    def client(
        self,
        cs_id: int,
        user: str = "root",
        tenant: str = "sys",
        cluster: str = "c1",
        kind: ClusterType = ClusterType.OCEANBASE,
        peer_port: int = 40000,
        logged_in: bool = True,
    ) -> ClientSession:
        """
        A started client session from 127.0.0.1, logged in as
        C{user@tenant#cluster} unless C{logged_in} is false.
        """
        session = ClientSession(self, cs_id)  # type: ignore[arg-type]
        session.machine.start()
        session.peer, session.peer_port = "127.0.0.1", peer_port
        session.proxy_sessid = (0x7F000001 << 32) | (2883 << 16) | cs_id
        if logged_in:
            session.login = LoginName(user=user, tenant=tenant, cluster=cluster)
            session.cluster = ClusterConfig(name=cluster, type=kind)
        self.client_sessions[cs_id] = session
        return session

    def context(self, caller: ClientSession) -> AdminContext:
        """
        What the registry gives a command C{caller} runs.
        """
        return AdminContext(session=caller, manager=self, config=self.config)


def server_session(ss_id: int, backend_id: int, port: int = 2881) -> ServerSession:
    """
    An unconnected server session to C{127.0.0.1:port}.
    """
    server = BackendServer(f"tcp:127.0.0.1:{port}", "127.0.0.1", port)
    ss = ServerSession(
        ss_id, server, "root@sys#c1", BackendLogin("root", b"", b"", Capability(0), 45)
    )
    ss.backend_id = backend_id
    return ss


def bind(client: ClientSession, ss: ServerSession) -> ServerSession:
    """
    Make C{ss} the client's last used server session (C{MSS_KA_CLIENT_SLAVE}).
    """
    ss.machine.activate()
    ss.machine.bind()
    client.bound = ss
    return ss


def activate(client: ClientSession, ss: ServerSession) -> ServerSession:
    """
    Make C{ss} the server session serving the client's current request.
    """
    ss.machine.activate()
    client.active = ss
    return ss


def put_in_pool(client: ClientSession, ss: ServerSession) -> ServerSession:
    """
    Put C{ss} in the client's pool (C{MSS_KA_SHARED}).
    """
    ss.machine.activate()
    ss.machine.pool()
    client.pool.put(ss)
    return ss


def run(command: Any, context: AdminContext, sql: str) -> AdminResultSet:
    """
    Match C{sql} with C{command} and run it; the answer must be a result set
    that is ready at once.
    """
    match = command.match(sql)
    assert match is not None, sql
    result = defer.maybeDeferred(command.execute, context, match)
    answers: List[Any] = []
    result.addBoth(answers.append)
    assert answers, "the command did not answer at once"
    answer = answers[0]
    if hasattr(answer, "raiseException"):
        answer.raiseException()
    assert isinstance(answer, AdminResultSet)
    return answer


def names(result: AdminResultSet) -> List[str]:
    return [column.name.decode() for column in result.definitions()]


def integer_columns(result: AdminResultSet) -> List[str]:
    return [
        column.name.decode()
        for column in result.definitions()
        if column.column_type is ColumnType.MYSQL_TYPE_LONGLONG
    ]


# -- the spec's ATTRIBUTE rows (../shared/spec/000_*.txt, 39 rows) ----------------------

CS_COMMON = [
    "proxy_sessid",
    "cs_id",
    "cluster",
    "tenant",
    "user",
    "host_ip",
    "host_port",
    "db",
    "total_trans_cnt",
    "svr_session_cnt",
    "active",
    "read_state",
    "tid",
    "pid",
    "idc_name",
]
CS_STAT = ["modified_time", "reported_time"]
VERSIONS = [
    "hot_sys_var_version",
    "sys_var_version",
    "user_var_version",
    "last_insert_id_version",
    "db_name_version",
]
SS_BLOCK = [
    "server_ip",
    "server_port",
    "server_sessid",
    "ss_id",
    "state",
    "transact_count",
    "server_trans_stat",
    *VERSIONS,
    "is_checksum_supported",
    "is_safe_read_weak_supported",
    "is_checksum_switch_supported",
    "checksum_switch",
    "enable_extra_ok_packet_for_stats",
]


@pytest.fixture
def manager() -> Manager:
    return Manager()


def test_commands_provide_the_interface_and_are_discovered() -> None:
    """
    The four commands are plugins the registry finds, each with the columns
    ODP declares, and everyone may run them.
    """
    registry = CommandRegistry.from_plugins()
    found = {command.name: command for command in registry.commands}
    expected = {
        "SHOW PROXYSESSION": ps.show_proxysession,
        "SHOW PROXYSESSION ATTRIBUTE": ps.show_proxysession_attribute,
        "SHOW PROXYSESSION VARIABLES": ps.show_proxysession_variables,
        "SHOW PROXYSESSION STAT": ps.show_proxysession_stat,
    }
    for name, command in expected.items():
        assert found[name] is command
        assert verifyObject(IAdminCommand, command)
        assert command.privilege == "everyone"
        assert command.proxy_only is True
    assert ps.show_proxysession_attribute.columns == ("attribute_name", "value", "info")
    assert ps.show_proxysession_variables.columns == (
        "variable_name",
        "value",
        "info",
        "modified_type",
        "sys_variable_flag",
    )
    assert ps.show_proxysession_stat.columns == ("stat_name", "value")


# -- SHOW PROXYSESSION ------------------------------------------------------------------


def test_list_columns_in_odp_order_with_integer_types(manager: Manager) -> None:
    """
    The list has ODP's 13 columns in order; the numeric ones are BIGINT
    columns (so the CLI right-aligns them as in the spec transcripts).
    """
    caller = manager.client(7)
    result = run(ps.show_proxysession, manager.context(caller), "SHOW PROXYSESSION")
    assert names(result) == [
        "proxy_sessid",
        "Id",
        "Cluster",
        "Tenant",
        "User",
        "Host",
        "db",
        "trans_count",
        "svr_session_count",
        "state",
        "tid",
        "pid",
        "using_ssl",
    ]
    assert integer_columns(result) == [
        "proxy_sessid",
        "Id",
        "trans_count",
        "svr_session_count",
        "tid",
        "pid",
        "using_ssl",
    ]
    proxy_sessid = result.definitions()[0]
    assert proxy_sessid.flags & ColumnFlag.UNSIGNED_FLAG
    assert result.definitions()[2].column_type is ColumnType.MYSQL_TYPE_VAR_STRING


def test_list_rows(manager: Manager) -> None:
    """
    A row per visible session, ordered by Id: Host is ip:port, db is NULL
    without a database, state the MCS_* name, and the counters.
    """
    caller = manager.client(9, peer_port=50260)
    other = manager.client(3, user="u1", tenant="t1", peer_port=50261)
    other.state.database = "test"
    other.trans_count = 4
    bind(other, server_session(1, 100))
    put_in_pool(other, server_session(2, 101))
    result = run(ps.show_proxysession, manager.context(caller), "show proxysession")
    assert [row[1] for row in result.rows] == [3, 9]
    first, second = result.rows
    assert first[0] == other.proxy_sessid
    assert first[2:10] == ("c1", "t1", "u1", "127.0.0.1:50261", "test", 4, 2, "MCS_ACTIVE_READER")
    assert second[2:10] == ("c1", "sys", "root", "127.0.0.1:50260", None, 0, 0, "MCS_ACTIVE_READER")
    assert second[10] > 0 and second[11] > 0
    assert second[12] == 0


def test_list_shows_only_what_the_caller_may_see(manager: Manager) -> None:
    """
    An ordinary user sees only the sessions of its own user; a sys tenant
    user those of its cluster; sessions still logging in are never listed.
    """
    me = manager.client(5, user="app", tenant="t1")
    manager.client(6, user="app", tenant="t1")
    manager.client(7, user="other", tenant="t1")
    manager.client(8, user="app", tenant="t2")
    manager.client(9, user="root", tenant="sys", cluster="c2")
    manager.client(10, logged_in=False)
    sys_user = manager.client(11, user="viewer", tenant="sys")

    mine = run(ps.show_proxysession, manager.context(me), "SHOW PROXYSESSION")
    assert [row[1] for row in mine.rows] == [5, 6]
    seen = run(ps.show_proxysession, manager.context(sys_user), "SHOW PROXYSESSION")
    assert [row[1] for row in seen.rows] == [5, 6, 7, 8, 11]


# -- ATTRIBUTE ----------------------------------------------------------------------------


def test_attribute_of_an_idle_session_is_the_spec_39_rows(manager: Manager) -> None:
    """
    An idle session with one last used server session answers exactly the
    39 rows of the spec's example, in order, with its groups.
    """
    caller = manager.client(64940, peer_port=63882)
    ss = bind(caller, server_session(16, 3221579563))
    ss.transact_count = 2
    result = run(
        ps.show_proxysession_attribute, manager.context(caller), "SHOW PROXYSESSION ATTRIBUTE"
    )
    assert names(result) == ["attribute_name", "value", "info"]
    assert integer_columns(result) == []
    assert [row[0] for row in result.rows] == CS_COMMON + CS_STAT + VERSIONS + SS_BLOCK
    assert len(result.rows) == 39
    infos = [row[2] for row in result.rows]
    assert (
        infos
        == ["cs common"] * 15 + ["cs stat"] * 2 + ["cs var version"] * 5 + ["last used ss"] * 17
    )
    values = {(row[0], row[2]): row[1] for row in result.rows}
    assert values["cs_id", "cs common"] == 64940
    assert values["cluster", "cs common"] == "c1"
    assert values["host_ip", "cs common"] == "127.0.0.1"
    assert values["host_port", "cs common"] == 63882
    assert values["db", "cs common"] == "NULL"
    assert values["active", "cs common"] == "true"
    assert values["read_state", "cs common"] == "MCS_ACTIVE_READER"
    assert values["svr_session_cnt", "cs common"] == 1
    assert values["server_ip", "last used ss"] == "127.0.0.1"
    assert values["server_port", "last used ss"] == 2881
    assert values["server_sessid", "last used ss"] == 3221579563
    assert values["ss_id", "last used ss"] == 16
    assert values["state", "last used ss"] == "MSS_KA_CLIENT_SLAVE"
    assert values["transact_count", "last used ss"] == 2


def test_attribute_blocks_label_every_server_session(manager: Manager) -> None:
    """
    Blocks come as ODP writes them: last used, current, then the pool with
    0-based indexes; the last_insert_id session's label says so.
    """
    caller = manager.client(2)
    bind(caller, server_session(4, 104))
    activate(caller, server_session(5, 105))
    put_in_pool(caller, server_session(6, 106, port=2882))
    lii = put_in_pool(caller, server_session(7, 107, port=2883))
    caller.lii_session = lii
    result = run(
        ps.show_proxysession_attribute, manager.context(caller), "SHOW PROXYSESSION ATTRIBUTE"
    )
    labels = [row[2] for row in result.rows if row[0] == "ss_id"]
    assert labels == ["last used ss", "curr used ss", "ss pool [0]", "ss pool && lii ss [1]"]
    ids = [row[1] for row in result.rows if row[0] == "ss_id"]
    assert ids == [4, 5, 6, 7]
    states = [row[1] for row in result.rows if row[0] == "state" and row[2] != "cs common"]
    assert states == ["MSS_KA_CLIENT_SLAVE", "MSS_ACTIVE", "MSS_KA_SHARED", "MSS_KA_SHARED"]
    assert len(result.rows) == 22 + 4 * 17


@pytest.mark.parametrize(
    ("which", "label"),
    [("bound", "last used && lii ss"), ("active", "curr used && lii ss")],
)
def test_attribute_lii_label_on_bound_or_current(manager: Manager, which: str, label: str) -> None:
    """
    The last_insert_id session may be the last used or the current one.
    """
    caller = manager.client(2)
    bound = bind(caller, server_session(4, 104))
    active = activate(caller, server_session(5, 105))
    caller.lii_session = bound if which == "bound" else active
    result = run(
        ps.show_proxysession_attribute, manager.context(caller), "SHOW PROXYSESSION ATTRIBUTE"
    )
    labels = [row[2] for row in result.rows if row[0] == "ss_id"]
    assert label in labels
    assert sum("lii" in info for info in labels) == 1


def test_attribute_pin_reasons_row_only_while_pinned(manager: Manager) -> None:
    """
    Our addition: a C{cs pin} row after the version rows says why the
    session is pinned, and is absent when it is not.
    """
    caller = manager.client(2)
    bind(caller, server_session(4, 104))
    context = manager.context(caller)
    sql = "SHOW PROXYSESSION ATTRIBUTE"
    assert "pin_reasons" not in [
        row[0] for row in run(ps.show_proxysession_attribute, context, sql).rows
    ]
    caller.state.pin_reasons.update({"user lock", "temporary table"})
    rows = run(ps.show_proxysession_attribute, context, sql).rows
    assert rows[22] == ("pin_reasons", "temporary table, user lock", "cs pin")
    assert len(rows) == 40


def test_attribute_like_as_in_the_spec(manager: Manager) -> None:
    """
    C{LIKE '%id%'} keeps the 8 rows of the spec's example (004) in order,
    plus C{idc_name}, which that older page's ODP did not have yet and the
    newer page's 39 rows (000, which wins) do; matched case-insensitively.
    C{_} matches one character.
    """
    caller = manager.client(2)
    bind(caller, server_session(4, 2147549201))
    context = manager.context(caller)
    expected = [
        ("proxy_sessid", "cs common"),
        ("cs_id", "cs common"),
        ("tid", "cs common"),
        ("pid", "cs common"),
        ("idc_name", "cs common"),
        ("last_insert_id_version", "cs var version"),
        ("server_sessid", "last used ss"),
        ("ss_id", "last used ss"),
        ("last_insert_id_version", "last used ss"),
    ]
    for sql in (
        "SHOW PROXYSESSION ATTRIBUTE 2 like '%id%'",
        "show proxysession attribute LIKE '%ID%'",
        "SHOW PROXYSESSION ATTRIBUTE 2147549201 like '%id%'",
    ):
        result = run(ps.show_proxysession_attribute, context, sql)
        assert [(row[0], row[2]) for row in result.rows] == expected, sql
    underscore = run(
        ps.show_proxysession_attribute, context, "SHOW PROXYSESSION ATTRIBUTE LIKE '_s_id'"
    )
    assert [row[0] for row in underscore.rows] == ["cs_id", "ss_id"]


def test_id_resolves_cs_id_and_backend_id(manager: Manager) -> None:
    """
    An id is a cs_id, or (bit 31 set, or no such cs_id) the backend
    connection id of one of a session's server sessions.
    """
    caller = manager.client(1)
    target = manager.client(56932, user="root")
    bind(target, server_session(16, 3221562906))
    put_in_pool(target, server_session(17, 42))
    context = manager.context(caller)
    for number in (56932, 3221562906, 42):
        result = run(
            ps.show_proxysession_attribute, context, f"SHOW PROXYSESSION ATTRIBUTE {number}"
        )
        assert result.rows[1] == ("cs_id", 56932, "cs common"), number
    own = run(ps.show_proxysession_attribute, context, "SHOW PROXYSESSION ATTRIBUTE -1")
    assert own.rows[1] == ("cs_id", 1, "cs common")


def test_unknown_or_invisible_id_is_1094(manager: Manager) -> None:
    """
    An id that names nothing, and one of a session the caller may not see,
    get the same answer, so the id forms reveal nothing the list hides.
    """
    caller = manager.client(1, user="app", tenant="t1")
    hidden = manager.client(2, user="other", tenant="t1")
    bind(hidden, server_session(3, 2147549203))
    context = manager.context(caller)
    for command, form in (
        (ps.show_proxysession_attribute, "ATTRIBUTE"),
        (ps.show_proxysession_variables, "VARIABLES"),
        (ps.show_proxysession_variables, "VARIABLES ALL"),
        (ps.show_proxysession_stat, "STAT"),
    ):
        for number in (2, 2147549203, 999):
            with pytest.raises(AdminError) as caught:
                run(command, context, f"SHOW PROXYSESSION {form} {number}")
            assert (caught.value.code, caught.value.sqlstate) == (1094, "HY000")
            assert caught.value.message == f"Unknown thread id: {number}"


# -- VARIABLES ----------------------------------------------------------------------------


def variables_session(manager: Manager) -> ClientSession:
    session = manager.client(3)
    session.state.sys_vars.update(
        {
            "ob_proxy_global_variables_version": "1461742173142100",
            "ob_capability_flag": "654159",
            "ob_enable_transmission_checksum": "1",
            "autocommit": "0",
            "sql_mode": "STRICT_TRANS_TABLES",
        }
    )
    session.state.user_vars.update(
        {"_min_cluster_version": "4.1.0.1", "n": 5, "quote": "it's", "big": "x" * 200}
    )
    return session


def test_variables_changed_then_user(manager: Manager) -> None:
    """
    The changed system variables (SQL literals, their class, their flags),
    then C{last_insert_id} in its own class, then the user variables, as in
    the spec's example.
    """
    session = variables_session(manager)
    session.state.last_insert_id = 12
    result = run(
        ps.show_proxysession_variables, manager.context(session), "SHOW PROXYSESSION VARIABLES"
    )
    assert result.rows == [
        (
            "ob_proxy_global_variables_version",
            "1461742173142100",
            "changed sys var",
            "cold modified vars",
            " && invisible && session_scope && readonly",
        ),
        (
            "ob_capability_flag",
            "654159",
            "changed sys var",
            "cold modified vars",
            " && invisible && session_scope && readonly",
        ),
        (
            "ob_enable_transmission_checksum",
            "1",
            "changed sys var",
            "cold modified vars",
            " && global_scope && session_scope",
        ),
        (
            "autocommit",
            "0",
            "changed sys var",
            "hot modified vars",
            " && global_scope && session_scope",
        ),
        (
            "sql_mode",
            "'STRICT_TRANS_TABLES'",
            "changed sys var",
            "cold modified vars",
            " && global_scope && session_scope",
        ),
        (
            "last_insert_id",
            "12",
            "changed sys var",
            "last insert id modified vars",
            " && session_scope",
        ),
        ("_min_cluster_version", "'4.1.0.1'", "user var", "cold modified vars", ""),
        ("n", "5", "user var", "cold modified vars", ""),
        ("quote", "'it\\'s'", "user var", "cold modified vars", ""),
        ("big", "---value length is large then 128bytes---", "user var", "cold modified vars", ""),
    ]


def test_variables_like_and_flags_per_backend_kind(manager: Manager) -> None:
    """
    LIKE filters by name; a MariaDB cluster's variables get MariaDB's flags.
    """
    session = variables_session(manager)
    context = manager.context(session)
    result = run(
        ps.show_proxysession_variables, context, "SHOW PROXYSESSION VARIABLES 3 LIKE 'OB\\_%'"
    )
    assert [row[0] for row in result.rows] == [
        "ob_proxy_global_variables_version",
        "ob_capability_flag",
        "ob_enable_transmission_checksum",
    ]
    assert sys_variable_flag("innodb_log_file_size") != sys_variable_flag(
        "innodb_log_file_size", oceanbase=False
    )
    mariadb = manager.client(4, kind=ClusterType.MYSQL)
    mariadb.state.sys_vars["innodb_log_file_size"] = "100663296"
    rows = run(
        ps.show_proxysession_variables, manager.context(mariadb), "SHOW PROXYSESSION VARIABLES"
    ).rows
    assert rows == [
        (
            "innodb_log_file_size",
            "100663296",
            "changed sys var",
            "cold modified vars",
            sys_variable_flag("innodb_log_file_size", oceanbase=False),
        )
    ]


def test_value_literals() -> None:
    """
    Values are SQL literals: numeric text of system variables bare, other
    strings quoted and escaped, NULL, and ODP's text past 128 bytes.
    """
    assert ps.variable_literal("10") == "10"
    assert ps.variable_literal("utf8mb4") == "'utf8mb4'"
    assert ps.variable_literal("") == "''"
    assert ps.variable_literal(None) == "NULL"
    assert ps.variable_literal("10", system=False) == "'10'"
    assert ps.variable_literal(b"\x00\xff", system=False) == "X'00FF'"
    assert ps.variable_literal("a" * 126) == "'" + "a" * 126 + "'"
    assert ps.variable_literal("a" * 127) == "---value length is large then 128bytes---"
    assert ps.variable_literal("é" * 63, system=False) == "'" + "é" * 63 + "'"
    assert (
        ps.variable_literal("é" * 64, system=False) == "---value length is large then 128bytes---"
    )


def column(name: bytes) -> ColumnDefinition41:
    return ColumnDefinition41(
        name=name, character_set=45, column_type=ColumnType.MYSQL_TYPE_VAR_STRING
    )


def show_variables_answer(rows: Sequence[tuple[bytes, bytes | None]]) -> List[Any]:
    """
    The events a server session's request gives for C{SHOW SESSION VARIABLES}.
    """
    events: List[Any] = [column(b"Variable_name"), column(b"Value")]
    events.extend(RowData(TextRow(row).encode()) for row in rows)
    events.append(EOFPacket(status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT))
    return events


def test_variables_all_overlays_the_servers_list(manager: Manager) -> None:
    """
    C{ALL} asks the session's server (as the session's user) for every
    variable: the changed ones come first with their current values, then
    the others; all are C{sys var}; then the user variables.
    """
    session = manager.client(3)
    session.state.sys_vars.update({"autocommit": "0", "ob_capability_flag": "654159"})
    session.state.user_vars["u"] = "x"
    asked: List[bytes] = []

    def side_query(sql: bytes) -> defer.Deferred[List[Any]]:
        asked.append(sql)
        return defer.succeed(
            show_variables_answer(
                [
                    (b"auto_increment_increment", b"1"),
                    (b"autocommit", b"ON"),
                    (b"time_zone", b"+08:00"),
                    (b"version_comment", None),
                ]
            )
        )

    session.side_query = side_query  # type: ignore[method-assign]
    result = run(
        ps.show_proxysession_variables, manager.context(session), "SHOW PROXYSESSION VARIABLES ALL"
    )
    assert asked == [b"SHOW SESSION VARIABLES"]
    assert [(row[0], row[1], row[2], row[3]) for row in result.rows] == [
        ("autocommit", "0", "sys var", "hot modified vars"),
        ("ob_capability_flag", "654159", "sys var", "cold modified vars"),
        ("auto_increment_increment", "1", "sys var", "cold modified vars"),
        ("time_zone", "'+08:00'", "sys var", "cold modified vars"),
        ("version_comment", "NULL", "sys var", "cold modified vars"),
        ("u", "'x'", "user var", "cold modified vars"),
    ]
    assert result.rows[4][4] == " && global_scope && readonly"
    liked = run(
        ps.show_proxysession_variables,
        manager.context(session),
        "SHOW PROXYSESSION VARIABLES ALL LIKE 'auto%'",
    )
    assert [row[0] for row in liked.rows] == ["autocommit", "auto_increment_increment"]


def test_variables_all_reports_the_servers_refusal(manager: Manager) -> None:
    """
    When the server cannot be asked, the caller gets an error, not a
    partial list: the server's own error, or 1105 saying why.
    """
    session = manager.client(3)
    context = manager.context(session)
    refusal = ERRPacket(1227, "Access denied; you need the PROCESS privilege", "42000")
    answers: List[Any] = [
        defer.succeed([refusal]),
        defer.fail(BackendError(ERRPacket(1045, "Access denied for user", "28000"))),
        defer.fail(ConnectionRefusedError("no server")),
    ]
    session.side_query = lambda sql: answers.pop(0)  # type: ignore[method-assign]
    codes = []
    for _ in range(3):
        with pytest.raises(AdminError) as caught:
            run(ps.show_proxysession_variables, context, "SHOW PROXYSESSION VARIABLES ALL")
        codes.append(caught.value.code)
    assert codes == [1227, 1045, 1105]


def test_flags_table() -> None:
    """
    The flag table answers as ODP prints, in ODP's order.
    """
    assert (
        sys_variable_flag("ob_proxy_user_privilege") == " && invisible && session_scope && readonly"
    )
    assert sys_variable_flag("auto_increment_increment") == " && global_scope && session_scope"
    assert (
        sys_variable_flag("character_set_client") == " && global_scope && session_scope && nullable"
    )
    assert sys_variable_flag("version_comment", oceanbase=False) == " && global_scope && readonly"
    assert sys_variable_flag("SQL_MODE") == sys_variable_flag("sql_mode")
    assert flags_of("no_such_variable_anywhere") == flags_of("wait_timeout")


# -- STAT ---------------------------------------------------------------------------------


def test_stat_rows_and_like(manager: Manager) -> None:
    """
    STAT lists the session's counters, the value column typed BIGINT.
    """
    caller = manager.client(1)
    caller.stats.client_queries = 3
    result = run(ps.show_proxysession_stat, manager.context(caller), "SHOW PROXYSESSION STAT")
    assert names(result) == ["stat_name", "value"]
    assert integer_columns(result) == ["value"]
    assert result.rows == caller.stats.rows()
    liked = run(
        ps.show_proxysession_stat,
        manager.context(caller),
        "show proxysession stat 1 like 'client_q%'",
    )
    assert liked.rows == [("client_queries", 3)]


# -- grammar ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "command", "expected"),
    [
        ("SHOW PROXYSESSION", ps.show_proxysession, ps.SessionQuery()),
        ("show\n  proxysession", ps.show_proxysession, ps.SessionQuery()),
        ("SHOW PROXYSESSION ATTRIBUTE", ps.show_proxysession_attribute, ps.SessionQuery()),
        (
            "Show ProxySession Attribute 64940",
            ps.show_proxysession_attribute,
            ps.SessionQuery(64940),
        ),
        (
            "SHOW PROXYSESSION ATTRIBUTE 2 like'%id%'",
            ps.show_proxysession_attribute,
            ps.SessionQuery(2, "%id%"),
        ),
        (
            "SHOW PROXYSESSION ATTRIBUTE LIKE \"it''s\"",
            ps.show_proxysession_attribute,
            ps.SessionQuery(None, "it''s"),
        ),
        (
            "SHOW PROXYSESSION ATTRIBUTE LIKE 'it''s'",
            ps.show_proxysession_attribute,
            ps.SessionQuery(None, "it's"),
        ),
        (
            "SHOW PROXYSESSION VARIABLES all 3",
            ps.show_proxysession_variables,
            ps.SessionQuery(3, all=True),
        ),
        (
            "SHOW PROXYSESSION VARIABLES 2147549231 LIKE 'a\\_b'",
            ps.show_proxysession_variables,
            ps.SessionQuery(2147549231, "a\\_b"),
        ),
        ("SHOW PROXYSESSION STAT LIKE '%'", ps.show_proxysession_stat, ps.SessionQuery(None, "%")),
    ],
)
def test_grammar(sql: str, command: Any, expected: ps.SessionQuery) -> None:
    """
    Case-insensitive, blanks anywhere between words, optional id and LIKE.
    """
    assert command.match(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW PROXYSESSION FOO",
        "SHOW PROXYSESSION ATTRIBUTE abc",
        "SHOW PROXYSESSION ATTRIBUTE 1 2",
        "SHOW PROXYSESSION ATTRIBUTE 123456789012345678",
        "SHOW PROXYSESSION ATTRIBUTE LIKE",
        "SHOW PROXYSESSION ATTRIBUTE LIKE '%id%' 2",
        "SHOW PROXYSESSION VARIABLES ALL ALL",
        "SHOW PROXYSESSION VARIABLES 3 ALL",
        "SHOW PROXYSESSION STAT 1 LIKE 'x' y",
        "SHOW PROXYSESSION READ_STALE",
    ],
)
def test_malformed_statements_match_nothing(sql: str) -> None:
    """
    A statement that starts like ours but fits no form matches none of the
    commands, and the registry recognises it with no match (its answer is
    then 5010, as the commands are the proxy's own).
    """
    commands = (
        ps.show_proxysession,
        ps.show_proxysession_attribute,
        ps.show_proxysession_variables,
        ps.show_proxysession_stat,
    )
    assert all(command.match(sql) is None for command in commands)
    recognised = CommandRegistry(commands).recognise(sql.encode())
    assert recognised is not None and recognised.match is None
    assert recognised.command.proxy_only is True


def test_registry_strips_the_semicolon_and_encodes_typed_columns(manager: Manager) -> None:
    """
    Through the registry: a trailing C{;} is fine, and the answer's column
    definitions carry the integer types.
    """
    registry = CommandRegistry(
        (ps.show_proxysession, ps.show_proxysession_attribute, ps.show_proxysession_stat)
    )
    caller = manager.client(7)
    recognised = registry.recognise(b"  show   proxysession ;")
    assert recognised is not None and recognised.command is ps.show_proxysession
    answers: List[Any] = []
    registry.run(manager.context(caller), recognised).addCallback(answers.append)
    caps = Capability.CLIENT_PROTOCOL_41
    payloads = registry.answer(answers[0], caps)
    assert ColumnCount.decode(payloads[0], caps).count == 13
    ids = ColumnDefinition41.decode(payloads[2], caps)
    assert ids.name == b"Id" and ids.column_type is ColumnType.MYSQL_TYPE_LONGLONG
    row = TextRow.decode(payloads[15], caps, 13)
    assert row.values[1] == b"7"
