"""
The read/write split: which requests may go to a replica, and where (issue 6).

A cluster may list replicas besides its (primary) servers
(L{ClusterConfig.replicas<obproxy_tx.config.ClusterConfig.replicas>}). A request goes to a
replica only when all of these hold; everything else goes to a primary:

  - the session reads with weak consistency: C{SET ob_read_consistency = WEAK} (OceanBase's
    variable, which the proxy tracks; on MySQL clusters the proxy answers the C{SET} itself,
    since MySQL and MariaDB have no such variable), else the user entry's C{read_consistency},
    else the C{default_read_consistency} item; a C{/*+ READ_CONSISTENCY(WEAK) */} (or
    C{STRONG}) hint in the statement overrides the session for that statement;
  - the statement is a plain read: one C{SELECT} (or C{WITH ... SELECT}) that
    L{is_plain_read<obproxy_tx.session.retry.is_plain_read>} finds free of locking clauses,
    C{INTO}, assignments, sequences, lock functions and functions it does not know; it needs no
    earlier statement's session (C{FOUND_ROWS()}, ...) and pins nothing; a prepared statement's
    execute counts by its text, unless it opens a cursor;
  - the session is outside any transaction with autocommit on, and not pinned (temporary table,
    lock, forced route, ...): a read in a transaction must see the transaction's own writes;
  - a replica is usable: the replica monitor (L{obproxy_tx.ha.replicas}) last saw its
    replication running and within C{max_replica_lag}. With none usable the read goes to a
    primary.

The decision functions are pure (L{parse_consistency_set}, L{statement_consistency},
L{is_weak_read}); L{route} applies them to a client session.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs

from obproxy_tx.session.retry import is_plain_read
from obproxy_tx.session.tracking import StatementKind, classify
from obproxy_tx.wire.constants import ServerStatus
from obproxy_tx.wire.packets import ComStmtExecute

if TYPE_CHECKING:
    from obproxy_tx.config import BackendServer

__all__ = [
    "STRONG",
    "VARIABLE",
    "WEAK",
    "ConsistencyChange",
    "handle_set",
    "is_weak_read",
    "parse_consistency_set",
    "route",
    "session_consistency",
    "sets_consistency",
    "statement_consistency",
]

#: Weak consistency: plain reads outside transactions may go to a replica.
WEAK = "weak"
#: Strong consistency: everything goes to a primary.
STRONG = "strong"
#: OceanBase's session variable for the read consistency.
VARIABLE = "ob_read_consistency"

# OceanBase's values of ob_read_consistency: FROZEN (1), WEAK (2), STRONG (3). FROZEN reads
# the last major freeze, which a MySQL replica has no notion of: the proxy refuses it on MySQL
# clusters and routes it as strong on OceanBase ones.
_VALUES = {b"WEAK": WEAK, b"2": WEAK, b"STRONG": STRONG, b"3": STRONG, b"FROZEN": None, b"1": None}

_SET = re.compile(
    rb"\s*SET\s+(?:(?:SESSION|LOCAL)\s+|@@(?:SESSION\.|LOCAL\.)?)?`?ob_read_consistency`?\s*"
    rb"(?::=|=)\s*(?:'([^'\\]*)'|\"([^\"\\]*)\"|([A-Za-z0-9_]+))\s*;?\s*\Z",
    re.IGNORECASE,
)
_HINT = re.compile(rb"/\*\+[^*]*?\bREAD_CONSISTENCY\s*\(\s*([A-Za-z0-9_]+)\s*\)", re.IGNORECASE)
_WITH = re.compile(rb"[\s(]*WITH\b", re.IGNORECASE)


@attrs.frozen
class ConsistencyChange:
    """
    A statement that only sets the session's C{ob_read_consistency}.

    @ivar value: L{WEAK} or L{STRONG}; C{None} for C{FROZEN}, which the proxy does not route by.
    @ivar text: the value as written (for error messages).
    @ivar valid: whether the value is one of OceanBase's.
    """

    value: str | None
    text: str
    valid: bool = True


def sets_consistency(info: Any) -> bool:
    """
    Whether a classified statement assigns C{ob_read_consistency} (alone or with others).

    @param info: a L{StatementInfo<obproxy_tx.session.tracking.StatementInfo>}.
    """
    return any(name == VARIABLE for name, _scope in info.system_var_assignments)


def parse_consistency_set(query: bytes) -> ConsistencyChange | None:
    """
    The change of C{SET [SESSION] ob_read_consistency = value} when that is the whole
    statement, else C{None} (other assignments with it, C{GLOBAL}, comments: the statement is
    the server's to answer).
    """
    match = _SET.match(query)
    if match is None:
        return None
    raw = next(group for group in match.groups() if group is not None)
    text = raw.decode("utf-8", "replace")
    key = raw.strip().upper()
    if key not in _VALUES:
        return ConsistencyChange(None, text, valid=False)
    return ConsistencyChange(_VALUES[key], text)


def statement_consistency(query: bytes, session: str) -> str:
    """
    The read consistency of one statement: its C{READ_CONSISTENCY(...)} hint, else the
    session's.

    @param session: the session's consistency, L{WEAK} or L{STRONG}.
    """
    if b"/*+" not in query:
        return session
    match = _HINT.search(query)
    if match is None:
        return session
    return _VALUES.get(match.group(1).upper()) or STRONG


def is_weak_read(query: bytes, info: Any, session: str) -> bool:
    """
    Whether a statement may go to a replica, as far as its text and the session's consistency
    tell (the caller checks transactions and pins).

    @param query: the statement text.
    @param info: its L{StatementInfo<obproxy_tx.session.tracking.StatementInfo>}.
    @param session: the session's consistency, L{WEAK} or L{STRONG}.
    """
    if statement_consistency(query, session) != WEAK:
        return False
    if info.kind is not StatementKind.SELECT and not (
        info.kind is StatementKind.OTHER and _WITH.match(query)
    ):
        return False
    if (
        info.multi_statement
        or info.needs_last_session
        or info.pin_reasons
        or info.user_var_assignments
        or info.user_var_values
        or info.route_addr is not None
        or info.pin_effects is not None
        or info.connection_id_only
    ):
        return False
    return is_plain_read(query)


def session_consistency(client: Any) -> str:
    """
    A client session's read consistency: what it set, else its user entry's, else the
    C{default_read_consistency} item.
    """
    explicit = client.read_consistency
    if explicit is not None:
        return str(explicit)
    login, cluster = client.login, client.cluster
    if login is not None and cluster is not None:
        entry = cluster.find_user(login.user, login.tenant)
        if entry is not None and entry.read_consistency is not None:
            return str(entry.read_consistency)
    return str(client.manager.config.default_read_consistency)


def _autocommit(client: Any) -> bool:
    bound = client.bound
    if bound is not None:
        return bool(bound.conn.status_flags & ServerStatus.SERVER_STATUS_AUTOCOMMIT)
    value = client.state.sys_vars.get("autocommit")
    if value is None:
        return True
    return str(value).strip().upper() not in ("0", "OFF", "FALSE")


def _wants_replica(client: Any, command: Any, info: Any) -> bool:
    if command is None or client.pin_reasons or not _autocommit(client):
        return False
    if command.__class__ is ComStmtExecute:
        statement = client.statements.get(command.statement_id)
        if statement is None or command.flags & 0x0F:  # a cursor stays where it was opened
            return False
        query = statement.sql
        info = classify(query)
    else:
        query = getattr(command, "query", None)
        if query is None or info is None:
            return False
    return is_weak_read(query, info, session_consistency(client))


def _held(client: Any) -> list[str]:
    """
    The servers of the client session's live server sessions, the bound one first: going back
    to one of them costs no new connection (and keeps its prepared statements).
    """
    held = []
    bound = client.bound
    if bound is not None:
        held.append(bound.server.address)
    for ss in client.pool:
        if ss.alive:
            held.append(ss.server.address)
    return held


def route(client: Any, command: Any, info: Any) -> BackendServer:
    """
    Where a client session's request goes in a cluster with replicas (after pins, dependent
    statements and forced routes, which the caller handles): a usable replica for a weak read,
    else a primary. Among usable replicas and among primaries, one the client session already
    has a server session to comes first (the bound one, then pooled ones); else replicas are
    taken in turn and primaries by the manager's turn (L{SessionManager.pick_server}).

    @param client: the L{ClientSession<obproxy_tx.session.client_session.ClientSession>}.
    @param command: the request (C{None}: not known, so a primary).
    @param info: the C{COM_QUERY}'s statement info, or C{None}.
    """
    cluster = client.cluster
    manager = client.manager
    held = _held(client)
    if _wants_replica(client, command, info):
        monitor = manager.replica_monitor
        replica = None
        for address in held:
            replica = _listed(cluster.replicas, address)
            if replica is not None and monitor.table.usable(address):
                break
        else:
            replica = monitor.choose(cluster)
        if replica is not None:
            manager.stats.replica_reads += 1
            return replica
        manager.stats.replica_reads_on_primary += 1
    for address in held:
        primary = _listed(cluster.servers, address)
        if primary is not None:
            return primary
    return manager.pick_server(cluster)


def _listed(servers: Any, address: str) -> BackendServer | None:
    for server in servers:
        if server.address == address:
            return server
    return None


#: MySQL's ER_WRONG_VALUE_FOR_VAR, as a server answers a bad value for a variable.
_ER_WRONG_VALUE_FOR_VAR = 1231


def handle_set(client: Any, query: bytes) -> bool:
    """
    Serve C{SET [SESSION] ob_read_consistency = value} for a client session.

    The session's consistency follows the value. On MySQL clusters the proxy answers the
    statement itself (OK, or ERR 1231 for a value other than C{WEAK}/C{STRONG}), since the
    server has no such variable; on OceanBase clusters the statement goes on to the server,
    which keeps the variable as well (and refuses a bad value itself).

    @return: whether the statement was answered here; C{False}: forward it.
    """
    change = parse_consistency_set(query)
    if change is None:
        return False  # with other assignments or GLOBAL: the server's to answer
    cluster = client.cluster
    mysql = cluster is not None and getattr(cluster.type, "value", cluster.type) == "mysql"
    if not change.valid or (mysql and change.value is None):
        if not mysql:
            return False
        client.stats.internal_requests += 1
        client._error(
            _ER_WRONG_VALUE_FOR_VAR,
            f"Variable '{VARIABLE}' can't be set to the value of '{change.text}'",
            "42000",
        )
        return True
    # FROZEN (OceanBase only) reads a frozen version: never a replica's.
    client.read_consistency = change.value or STRONG
    if not mysql:
        return False
    client.stats.internal_requests += 1
    client._ok()
    return True
