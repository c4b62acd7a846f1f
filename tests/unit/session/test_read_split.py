"""
The read/write split's decisions (L{obproxy_tx.session.read_split}): the C{SET
ob_read_consistency} forms, the hint, which statements are weak reads, and where a client
session's request goes (with stand-ins for the client session).
"""

from __future__ import annotations

from typing import Any, List

import attrs
import pytest

from obproxy_tx.config import (
    ClusterConfig,
    ClusterType,
    UserEntry,
    parse_server,
)
from obproxy_tx.ha.replicas import ReplicaTable, Verdict
from obproxy_tx.session.login import parse_login_name
from obproxy_tx.session.read_split import (
    STRONG,
    WEAK,
    ConsistencyChange,
    handle_set,
    is_weak_read,
    parse_consistency_set,
    route,
    session_consistency,
    sets_consistency,
    statement_consistency,
)
from obproxy_tx.session.stats import ProxyStats
from obproxy_tx.session.tracking import classify
from obproxy_tx.wire.constants import CursorType, ServerStatus
from obproxy_tx.wire.packets import ComQuery, ComStmtExecute, ComStmtPrepare


@pytest.mark.parametrize(
    ("sql", "change"),
    [
        (b"SET ob_read_consistency = WEAK", ConsistencyChange(WEAK, "WEAK")),
        (b"set ob_read_consistency='weak';", ConsistencyChange(WEAK, "weak")),
        (b"SET SESSION ob_read_consistency = STRONG", ConsistencyChange(STRONG, "STRONG")),
        (b'SET @@session.ob_read_consistency = "strong"', ConsistencyChange(STRONG, "strong")),
        (b"SET @@ob_read_consistency = 2", ConsistencyChange(WEAK, "2")),
        (b"SET LOCAL ob_read_consistency := 3", ConsistencyChange(STRONG, "3")),
        (b"SET ob_read_consistency = FROZEN", ConsistencyChange(None, "FROZEN")),
        (b"SET ob_read_consistency = 'often'", ConsistencyChange(None, "often", valid=False)),
        (b"SET GLOBAL ob_read_consistency = WEAK", None),
        (b"SET ob_read_consistency = WEAK, autocommit = 1", None),
        (b"SET ob_query_timeout = 10", None),
    ],
)
def test_parse_consistency_set(sql: bytes, change: ConsistencyChange | None) -> None:
    """
    Only a statement that does nothing but set the session's value is the proxy's.
    """
    assert parse_consistency_set(sql) == change


def test_sets_consistency() -> None:
    """
    Any C{SET} naming the variable is noticed (the fast paths step aside for it).
    """
    assert sets_consistency(classify(b"SET ob_read_consistency = WEAK"))
    assert sets_consistency(classify(b"SET autocommit = 1, ob_read_consistency = WEAK"))
    assert not sets_consistency(classify(b"SET autocommit = 1"))
    assert not sets_consistency(classify(b"SELECT 1"))


def test_hint_overrides_the_session() -> None:
    """
    A C{READ_CONSISTENCY} hint decides for its statement; anything it does not know is strong.
    """
    assert statement_consistency(b"SELECT 1", WEAK) == WEAK
    assert statement_consistency(b"SELECT /*+ READ_CONSISTENCY(WEAK) */ 1", STRONG) == WEAK
    assert statement_consistency(b"select /*+ read_consistency(strong) */ 1", WEAK) == STRONG
    assert (
        statement_consistency(b"SELECT /*+ QUERY_TIMEOUT(5) READ_CONSISTENCY(weak) */ 1", STRONG)
        == WEAK
    )
    assert statement_consistency(b"SELECT /*+ READ_CONSISTENCY(FROZEN) */ 1", WEAK) == STRONG
    assert statement_consistency(b"SELECT /* READ_CONSISTENCY(WEAK) */ 1", STRONG) == STRONG


@pytest.mark.parametrize(
    ("sql", "weak"),
    [
        (b"SELECT @@server_id", True),
        (b"SELECT k, c FROM sbtest1 WHERE id = 7", True),
        (b"WITH x AS (SELECT 1) SELECT * FROM x", True),
        (b"SELECT * FROM t FOR UPDATE", False),
        (b"SELECT * FROM t LOCK IN SHARE MODE", False),
        (b"SELECT * FROM t INTO OUTFILE '/tmp/x'", False),
        (b"SELECT @a := 1", False),
        (b"SELECT 1 INTO @a", False),
        (b"SELECT GET_LOCK('a', 1)", False),
        (b"SELECT FOUND_ROWS()", False),
        (b"SELECT LAST_INSERT_ID()", False),
        (b"SELECT NEXTVAL(s)", False),
        (b"SELECT 1; SELECT 2", False),
        (b"INSERT INTO t VALUES (1)", False),
        (b"UPDATE t SET a = 1", False),
        (b"SHOW TABLES", False),
        (b"BEGIN", False),
        (b"CALL p()", False),
        (b"SELECT my_function(1)", False),
    ],
)
def test_weak_reads(sql: bytes, weak: bool) -> None:
    """
    Only single plain reads are weak reads, and only with weak consistency.
    """
    info = classify(sql)
    assert is_weak_read(sql, info, WEAK) is weak
    assert is_weak_read(sql, info, STRONG) is False


# -- routing a client session -------------------------------------------------------------

PRIMARY = parse_server("127.0.0.1:3306")
OTHER_PRIMARY = parse_server("127.0.0.1:3316")
REPLICA = parse_server("127.0.0.1:3307")


@attrs.define
class _Conn:
    status_flags: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT


@attrs.define
class _ServerSession:
    server: Any
    conn: _Conn = attrs.field(factory=_Conn)
    alive: bool = True


@attrs.define
class _Statement:
    sql: bytes


@attrs.define
class _Statements:
    by_id: dict[int, _Statement] = attrs.field(factory=dict)

    def get(self, statement_id: int) -> _Statement | None:
        return self.by_id.get(statement_id)


@attrs.define
class _State:
    sys_vars: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class _Config:
    default_read_consistency: str = STRONG


class _Monitor:
    def __init__(self) -> None:
        self.table = ReplicaTable()

    def choose(self, cluster: Any, prefer: str | None = None) -> Any:
        return self.table.choose(cluster.replicas, prefer)


@attrs.define
class _Manager:
    config: _Config = attrs.field(factory=_Config)
    replica_monitor: _Monitor = attrs.field(factory=_Monitor)
    stats: ProxyStats = attrs.field(factory=ProxyStats)
    picked: List[Any] = attrs.field(factory=list)

    def pick_server(self, cluster: Any) -> Any:
        server = cluster.servers[len(self.picked) % len(cluster.servers)]
        self.picked.append(server)
        return server


@attrs.define
class _Client:
    """What L{route} and L{handle_set} read and do on a client session."""

    cluster: ClusterConfig
    manager: _Manager = attrs.field(factory=_Manager)
    login: Any = attrs.field(factory=lambda: parse_login_name("app", default_cluster="c"))
    bound: Any = None
    pool: List[Any] = attrs.field(factory=list)
    pin_reasons: frozenset[str] = frozenset()
    read_consistency: str | None = None
    state: _State = attrs.field(factory=_State)
    statements: _Statements = attrs.field(factory=_Statements)
    answers: List[Any] = attrs.field(factory=list)
    stats: Any = attrs.field(factory=lambda: type("S", (), {"internal_requests": 0})())

    def _ok(self) -> None:
        self.answers.append("OK")

    def _error(self, code: int, message: str, sqlstate: str = "HY000") -> None:
        self.answers.append((code, message, sqlstate))


def _client(weak_user: bool = False, cluster_type: ClusterType = ClusterType.MYSQL) -> _Client:
    users = (UserEntry("app", "sys", b"", read_consistency=WEAK if weak_user else None),)
    cluster = ClusterConfig(
        "c", cluster_type, servers=(PRIMARY, OTHER_PRIMARY), users=users, replicas=(REPLICA,)
    )
    client = _Client(cluster)
    client.manager.replica_monitor.table.record(REPLICA.address, Verdict(True), 0.0)
    return client


def _query(sql: bytes) -> tuple[ComQuery, Any]:
    return ComQuery(sql), classify(sql)


def test_session_consistency_order() -> None:
    """
    What the session set, else the user entry's, else C{default_read_consistency}.
    """
    client = _client()
    assert session_consistency(client) == STRONG
    client.manager.config.default_read_consistency = WEAK
    assert session_consistency(client) == WEAK
    client.read_consistency = STRONG
    assert session_consistency(client) == STRONG
    assert session_consistency(_client(weak_user=True)) == WEAK


def test_route_weak_reads_to_the_replica_and_the_rest_to_a_primary() -> None:
    """
    A weak plain read goes to the usable replica; writes, strong reads and anything in a
    transaction, with autocommit off or pinned go to a primary: the bound one when it is a
    primary, else the next in turn (never the bound replica).
    """
    client = _client(weak_user=True)
    assert route(client, *_query(b"SELECT 1")) is REPLICA
    assert client.manager.stats.replica_reads == 1
    client.bound = _ServerSession(REPLICA)
    assert route(client, *_query(b"INSERT INTO t VALUES (1)")) is PRIMARY
    assert route(client, *_query(b"SELECT /*+ READ_CONSISTENCY(STRONG) */ 1")) is OTHER_PRIMARY
    client.bound = _ServerSession(OTHER_PRIMARY)
    assert route(client, *_query(b"UPDATE t SET a = 1")) is OTHER_PRIMARY
    assert route(client, ComStmtPrepare(b"SELECT ?"), None) is OTHER_PRIMARY
    assert route(client, None, None) is OTHER_PRIMARY
    client.bound = _ServerSession(OTHER_PRIMARY, _Conn(ServerStatus(0)))
    assert route(client, *_query(b"SELECT 1")) is OTHER_PRIMARY  # autocommit off
    client.bound = _ServerSession(OTHER_PRIMARY)
    client.pin_reasons = frozenset({"transaction"})
    assert route(client, *_query(b"SELECT 1")) is OTHER_PRIMARY
    client.pin_reasons = frozenset()
    assert route(client, *_query(b"SELECT 1")) is REPLICA


def test_route_without_a_usable_replica_uses_a_primary() -> None:
    """
    With the replica out, a weak read goes to a primary and is counted as such.
    """
    client = _client(weak_user=True)
    client.manager.replica_monitor.table.record(REPLICA.address, Verdict(False, "lag"), 1.0)
    assert route(client, *_query(b"SELECT 1")) is PRIMARY
    assert client.manager.stats.replica_reads_on_primary == 1
    assert client.manager.stats.replica_reads == 0


def test_route_prepared_statements_by_their_text() -> None:
    """
    An execute goes by its statement's text; one that opens a cursor stays on a primary.
    """
    client = _client(weak_user=True)
    client.statements.by_id[1] = _Statement(b"SELECT c FROM t WHERE id = ?")
    client.statements.by_id[2] = _Statement(b"DELETE FROM t WHERE id = ?")
    assert route(client, ComStmtExecute(1), None) is REPLICA
    assert route(client, ComStmtExecute(2), None) is PRIMARY
    cursor = ComStmtExecute(1, flags=CursorType.CURSOR_TYPE_READ_ONLY)
    assert route(client, cursor, None) is OTHER_PRIMARY
    assert route(client, ComStmtExecute(9), None) is PRIMARY


def test_handle_set_on_mysql_clusters() -> None:
    """
    MySQL clusters: the proxy answers C{SET ob_read_consistency} itself (OK, or ERR 1231 for
    a value it cannot honour) and the session follows it; a mixed C{SET} is the server's.
    """
    client = _client()
    assert handle_set(client, b"SET ob_read_consistency = WEAK") is True
    assert client.answers == ["OK"]
    assert client.read_consistency == WEAK
    assert handle_set(client, b"SET ob_read_consistency = 'sometimes'") is True
    assert handle_set(client, b"SET ob_read_consistency = FROZEN") is True
    assert [answer[0] for answer in client.answers[1:]] == [1231, 1231]
    assert "can't be set to the value of 'sometimes'" in client.answers[1][1]
    assert client.read_consistency == WEAK
    assert handle_set(client, b"SET ob_read_consistency = WEAK, autocommit = 1") is False


def test_handle_set_on_oceanbase_clusters() -> None:
    """
    OceanBase clusters: the statement goes on to the server (C{False}), the session follows a
    good value; C{FROZEN} routes as strong; a bad value is left to the server to refuse.
    """
    client = _client(cluster_type=ClusterType.OCEANBASE)
    assert handle_set(client, b"SET ob_read_consistency = WEAK") is False
    assert client.read_consistency == WEAK
    assert handle_set(client, b"SET ob_read_consistency = FROZEN") is False
    assert client.read_consistency == STRONG
    assert handle_set(client, b"SET ob_read_consistency = 'x'") is False
    assert client.read_consistency == STRONG
    assert client.answers == []


def test_route_prefers_servers_the_session_already_has() -> None:
    """
    A pooled server session's server comes before the turn: a write after a weak read goes
    back to the primary the client already has, and a weak read to its pooled replica while
    that one is usable (a dead pooled session does not count).
    """
    second_replica = parse_server("127.0.0.1:3317")
    client = _client(weak_user=True)
    client.cluster = ClusterConfig(
        "c",
        ClusterType.MYSQL,
        servers=(PRIMARY, OTHER_PRIMARY),
        users=client.cluster.users,
        replicas=(REPLICA, second_replica),
    )
    table = client.manager.replica_monitor.table
    table.record(second_replica.address, Verdict(True), 0.0)
    client.bound = _ServerSession(REPLICA)
    client.pool = [_ServerSession(OTHER_PRIMARY, alive=False)]
    assert route(client, *_query(b"DELETE FROM t")) is PRIMARY
    assert client.manager.picked == [PRIMARY]
    client.pool = [_ServerSession(OTHER_PRIMARY)]
    assert route(client, *_query(b"DELETE FROM t")) is OTHER_PRIMARY
    assert client.manager.picked == [PRIMARY]
    client.bound = _ServerSession(PRIMARY)
    client.pool = [_ServerSession(second_replica)]
    assert {route(client, *_query(b"SELECT 1")) for _ in range(3)} == {second_replica}
    table.record(second_replica.address, Verdict(False, "lag"), 1.0)
    assert route(client, *_query(b"SELECT 1")) is REPLICA
    client.pool = [_ServerSession(REPLICA, alive=False)]
    assert route(client, *_query(b"SELECT 1")) is REPLICA  # in turn: the only usable one
