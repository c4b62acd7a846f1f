"""
The built-in C{SHOW PROXYSESSION} commands, with ODP's grammar and columns
(C{ob_show_session_handler.cpp}; C{../shared/docs/odp-reference.md} §4-§5):

  - C{SHOW PROXYSESSION}: one row per client session the caller may see;
  - C{SHOW PROXYSESSION ATTRIBUTE [id] [LIKE 'p']}: a session's attributes,
    then one block per server session (C{last used ss}, C{curr used ss},
    C{ss pool [i]}, and the C{&& lii ss} variants);
  - C{SHOW PROXYSESSION VARIABLES [ALL] [id] [LIKE 'p']}: its changed (or all)
    system variables, then its user variables;
  - C{SHOW PROXYSESSION STAT [id] [LIKE 'p']}: its counters.

Everyone may run them. C{id} is a C{cs_id} or a backend connection id
(L{access.resolve_session}); no id means the caller's own session. Unlike
ODP, a session the caller may not see (L{access.may_see}) is answered like
one that does not exist, C{1094 Unknown thread id}, so the id forms reveal
nothing the list hides. A statement that starts with C{SHOW PROXYSESSION}
but fits none of the forms is C{5010 bad internal cmd} (the registry's
answer for commands that are the proxy's own).

With several workers or proxy nodes (C{manager.cluster}), C{SHOW PROXYSESSION}
lists every worker's and node's sessions, and an id naming no session of this
process by C{cs_id} is looked for on the others, which compute the rows of
their session themselves (L{obproxy_tx.cluster}).

The small column helpers L{integer_column} and L{text_column} build the column
definitions that make clients show numbers as numbers (right-aligned by the
C{mariadb} CLI, typed by drivers).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import attrs
from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface import implementer

from obproxy_tx.admin import access
from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminError,
    AdminResultSet,
    IAdminCommand,
    Privilege,
    integer_column,
    text_column,
)
from obproxy_tx.admin.registry import like
from obproxy_tx.admin.sysvars import sys_variable_flag
from obproxy_tx.config import ClusterType
from obproxy_tx.session.sync import (
    VarClass,
    classify_sys_var,
    modified_type,
    sql_literal,
    sys_var_literal,
)
from obproxy_tx.wire.connection import RowData
from obproxy_tx.wire.errors import ErrorCode
from obproxy_tx.wire.packets import ColumnDefinition41, ERRPacket, decode_text_values

__all__ = [
    "SessionQuery",
    "attribute_rows",
    "integer_column",
    "result_set",
    "show_proxysession",
    "show_proxysession_attribute",
    "show_proxysession_stat",
    "show_proxysession_variables",
    "text_column",
    "variable_literal",
]


# -- column definitions ---------------------------------------------------------------


def result_set(
    columns: Sequence[ColumnDefinition41], rows: Sequence[Sequence[Any]]
) -> AdminResultSet:
    """
    An L{AdminResultSet} with typed columns.

    @param columns: the column definitions (see L{integer_column}, L{text_column}).
    @param rows: the rows.
    """
    return AdminResultSet(columns, rows)


def _names(columns: Sequence[ColumnDefinition41]) -> Tuple[str, ...]:
    return tuple(column.name.decode("utf-8") for column in columns)


# -- grammar ----------------------------------------------------------------------------

_ID = r"(?P<id>[-+]?\d{1,17})"
"""ODP's integers: at most 17 digits (C{ob_proxy_parser.l})."""
_LIKE = r"LIKE\s*(?P<like>'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\")"
_PREFIX = r"SHOW\s+PROXYSESSION"
_LIST_RE = re.compile(_PREFIX, re.IGNORECASE)
_ATTRIBUTE_RE = re.compile(
    rf"{_PREFIX}\s+ATTRIBUTE(?:\s+{_ID})?(?:\s+{_LIKE})?", re.IGNORECASE | re.DOTALL
)
_VARIABLES_RE = re.compile(
    rf"{_PREFIX}\s+VARIABLES(?:\s+(?P<all>ALL))?(?:\s+{_ID})?(?:\s+{_LIKE})?",
    re.IGNORECASE | re.DOTALL,
)
_STAT_RE = re.compile(rf"{_PREFIX}\s+STAT(?:\s+{_ID})?(?:\s+{_LIKE})?", re.IGNORECASE | re.DOTALL)

_OWN_SESSION = -1
"""The id ODP takes for "my own session" (also what a statement without one means)."""


@attrs.frozen
class SessionQuery:
    """
    A parsed C{SHOW PROXYSESSION ...} statement.

    @ivar session_id: the id given, or C{None} for the caller's own session.
    @ivar pattern: the C{LIKE} pattern (quotes removed), or C{None}.
    @ivar all: C{VARIABLES ALL}.
    """

    session_id: int | None = None
    pattern: str | None = None
    all: bool = False

    def wanted(self, name: str) -> bool:
        """
        @param name: a row's name (attribute, variable or stat name).
        @return: whether the C{LIKE} pattern, if any, keeps it.
        """
        return self.pattern is None or like(self.pattern, name)


def _unquote(literal: str) -> str:
    """
    The text of a quoted string literal. A doubled or backslash-escaped quote
    is the quote; other backslashes stay, for L{like} to read as escapes
    (MySQL keeps C{\\%} and C{\\_} too).
    """
    quote, body = literal[0], literal[1:-1]
    return body.replace(quote * 2, quote).replace("\\" + quote, quote)


def _parse(pattern: re.Pattern[str], sql: str) -> SessionQuery | None:
    found = pattern.fullmatch(sql)
    if found is None:
        return None
    groups = found.groupdict()
    number = groups.get("id")
    literal = groups.get("like")
    return SessionQuery(
        session_id=None if number is None else int(number),
        pattern=None if literal is None else _unquote(literal),
        all=groups.get("all") is not None,
    )


# -- the facts shown ------------------------------------------------------------------


def _tid() -> int:
    """ODP's C{tid}: the thread serving the session (ours: the reactor's)."""
    return threading.get_native_id()


def _cluster(context: AdminContext) -> Any:
    """
    @return: the channel to other workers and nodes, or C{None}.
    """
    return getattr(context.manager, "cluster", None)


def _login_parts(session: Any) -> Tuple[str, str, str]:
    """@return: (cluster, tenant, user) of a session's login ("" before login)."""
    login = session.login
    if login is None:
        return "", "", ""
    return login.cluster, login.tenant, login.user


def _server_address(ss: Any) -> Tuple[str, int]:
    """@return: a server session's server ip (or endpoint) and port."""
    server = ss.server
    if server.host is None:
        return server.address, 0
    return server.host, server.port or 0


#: The rows of a server session block after its versions, which are about
#: OceanBase's checksum protocol and extra OK packets. The proxy speaks plain
#: MySQL to its servers, so all are 0.
_SS_PROTOCOL_ROWS = (
    "is_checksum_supported",
    "is_safe_read_weak_supported",
    "is_checksum_switch_supported",
    "checksum_switch",
    "enable_extra_ok_packet_for_stats",
)


def _server_session_rows(ss: Any, info: str) -> List[Tuple[str, Any, str]]:
    ip, port = _server_address(ss)
    rows: List[Tuple[str, Any, str]] = [
        ("server_ip", ip, info),
        ("server_port", port, info),
        ("server_sessid", ss.backend_id, info),
        ("ss_id", ss.ss_id, info),
        ("state", ss.machine.state.name, info),
        ("transact_count", ss.transact_count, info),
        # ODP's server_trans_stat; ours: 1 while a transaction is open there.
        ("server_trans_stat", 1 if ss.conn.in_transaction else 0, info),
    ]
    rows.extend((name, value, info) for name, value in ss.versions.attribute_rows())
    rows.extend((name, 0, info) for name in _SS_PROTOCOL_ROWS)
    return rows


def _server_session_blocks(session: Any) -> Iterable[Tuple[Any, str]]:
    """
    The server sessions of C{session} with their labels, in ODP's order: the
    last used (bound) one, the one serving the current request, then the pool.
    The first one that is also the C{last_insert_id} session gets C{&& lii}.
    """
    lii = session.lii_session
    active = session.active
    blocks: List[Tuple[Any, str, str]] = []
    bound = session.bound
    if bound is not None and bound is not active:
        blocks.append((bound, "last used ss", "last used && lii ss"))
    if active is not None:
        blocks.append((active, "curr used ss", "curr used && lii ss"))
    shown = {id(ss) for ss, _, _ in blocks}
    index = 0
    for ss in session.pool:
        if id(ss) in shown:
            continue
        blocks.append((ss, f"ss pool [{index}]", f"ss pool && lii ss [{index}]"))
        index += 1
    lii_shown = lii is None
    for ss, plain, with_lii in blocks:
        if not lii_shown and ss is lii:
            lii_shown = True
            yield ss, with_lii
        else:
            yield ss, plain


def attribute_rows(session: Any, config: Any = None) -> List[Tuple[str, Any, str]]:
    """
    Every C{SHOW PROXYSESSION ATTRIBUTE} row of a session, unfiltered, in
    ODP's order: C{cs common}, C{cs stat}, C{cs var version}, our C{cs pin}
    row (only while the session is pinned, saying why), then one block per
    server session (L{_server_session_blocks}).

    @param session: the client session.
    @param config: the proxy configuration (for C{idc_name}), or C{None}.
    @return: C{(attribute_name, value, info)} rows.
    """
    cluster, tenant, user = _login_parts(session)
    read_state = session.machine.state.name
    common = "cs common"
    rows: List[Tuple[str, Any, str]] = [
        ("proxy_sessid", session.proxy_sessid, common),
        ("cs_id", session.cs_id, common),
        ("cluster", cluster, common),
        ("tenant", tenant, common),
        ("user", user, common),
        ("host_ip", session.peer, common),
        ("host_port", session.peer_port, common),
        ("db", session.state.database or "NULL", common),
        ("total_trans_cnt", session.trans_count, common),
        ("svr_session_cnt", session.server_session_count, common),
        # ODP's `active` is true while the session is attached to its state
        # machine, which is the whole of MCS_ACTIVE_READER.
        ("active", "true" if read_state == "MCS_ACTIVE_READER" else "false", common),
        ("read_state", read_state, common),
        ("tid", _tid(), common),
        ("pid", os.getpid(), common),
        ("idc_name", str(getattr(config, "proxy_idc_name", "") or ""), common),
        # ODP's session-report timestamps; nothing reports sessions here.
        ("modified_time", 0, "cs stat"),
        ("reported_time", 0, "cs stat"),
    ]
    rows.extend(
        (name, value, "cs var version") for name, value in session.state.versions.attribute_rows()
    )
    reasons = session.pin_reasons
    if reasons:
        rows.append(("pin_reasons", ", ".join(sorted(reasons)), "cs pin"))
    for ss, info in _server_session_blocks(session):
        rows.extend(_server_session_rows(ss, info))
    return rows


# -- variables --------------------------------------------------------------------------

_TOO_LONG = "---value length is large then 128bytes---"
"""ODP's text for a value whose literal does not fit its 128-byte buffer."""
_MAX_VALUE_BYTES = 128


def variable_literal(value: Any, system: bool = True) -> str:
    """
    A variable's value as C{SHOW PROXYSESSION VARIABLES} shows it: an SQL
    literal (strings quoted; a system variable's numeric text bare, as the
    server types it), or ODP's warning text when longer than 128 bytes.

    @param value: the value (system variables: as the server reported it).
    @param system: a system variable (else a user variable).
    """
    try:
        text = sys_var_literal(value) if system else sql_literal(value)
    except (TypeError, ValueError):
        text = sql_literal(str(value))
    if len(text.encode("utf-8", "surrogateescape")) > _MAX_VALUE_BYTES:
        return _TOO_LONG
    return text


def _is_oceanbase(session: Any) -> bool:
    cluster = session.cluster
    return cluster is None or cluster.type is ClusterType.OCEANBASE


def _sys_row(session: Any, name: str, value: Any, info: str) -> Tuple[str, str, str, str, str]:
    return (
        name,
        variable_literal(value),
        info,
        modified_type(classify_sys_var(name)),
        sys_variable_flag(name, _is_oceanbase(session)),
    )


def _changed_sys_vars(session: Any) -> List[Tuple[str, Any]]:
    """
    The session's changed system variables, plus C{last_insert_id} when the
    proxy knows it (ODP counts it a system variable of its own class).
    """
    changed = list(session.state.sys_vars.items())
    last_insert_id = getattr(session.state, "last_insert_id", None)
    if last_insert_id is not None and not any(n.lower() == "last_insert_id" for n, _ in changed):
        changed.append(("last_insert_id", last_insert_id))
    return changed


def _user_rows(session: Any) -> List[Tuple[str, str, str, str, str]]:
    cold = modified_type(VarClass.USER)
    return [
        (name, variable_literal(value, system=False), "user var", cold, "")
        for name, value in session.state.user_vars.items()
    ]


def _server_variables(events: List[Any]) -> List[Tuple[str, Any]]:
    """
    The C{(name, value)} rows of a C{SHOW SESSION VARIABLES} answer.

    @raise AdminError: the server answered with an error.
    """
    for event in events:
        if isinstance(event, ERRPacket):
            raise AdminError(event.error_code, event.message, event.sqlstate)
    columns = sum(1 for event in events if isinstance(event, ColumnDefinition41))
    if columns < 2:
        return []
    found = []
    for event in events:
        if event.__class__ is RowData:
            values = decode_text_values(event.payload, columns)
            if values[0] is None:
                continue
            raw = values[1]
            name = values[0].decode("utf-8", "replace")
            found.append((name, None if raw is None else raw.decode("utf-8", "surrogateescape")))
    return found


def _side_query_failed(failure: Any) -> None:
    """Turn a failed side query into the error the caller sees."""
    error = failure.value
    if isinstance(error, AdminError):
        raise error
    packet = getattr(error, "packet", None)
    if isinstance(packet, ERRPacket):
        raise AdminError(packet.error_code, packet.message, packet.sqlstate)
    raise AdminError(
        ErrorCode.ER_UNKNOWN_ERROR,
        f"cannot read the session's variables from its server: {failure.getErrorMessage()}",
    )


# -- the commands -----------------------------------------------------------------------


class _ShowProxySession:
    """
    What the C{SHOW PROXYSESSION} commands share.
    """

    privilege = Privilege.EVERYONE
    proxy_only = True
    errors: Tuple[int, ...] = (ErrorCode.ER_NO_SUCH_THREAD,)
    keywords: Tuple[str, ...] = ("SHOW PROXYSESSION",)
    _grammar: re.Pattern[str] = _LIST_RE
    _columns: Tuple[ColumnDefinition41, ...] = ()

    @property
    def columns(self) -> Tuple[str, ...]:
        """
        The result column names.
        """
        return _names(self._columns)

    def match(self, sql: str) -> SessionQuery | None:
        """
        @param sql: the statement (blanks and a trailing C{;} stripped).
        @return: the parsed statement, or C{None} if it is not this form.
        """
        return _parse(self._grammar, sql)

    def match_args(self, match: SessionQuery) -> Dict[str, Any]:
        """
        @return: C{match} for the channel (L{obproxy_tx.cluster}).
        """
        return attrs.asdict(match)

    def match_from_args(self, args: Dict[str, Any]) -> SessionQuery:
        """
        @return: the match L{match_args} gave.
        """
        return SessionQuery(**args)


class _OneSession(_ShowProxySession):
    """
    What the forms about one session (C{ATTRIBUTE}, C{VARIABLES}, C{STAT})
    share: finding the session, here or on another worker or node.
    """

    name: str

    def execute(self, context: AdminContext, match: SessionQuery) -> Any:
        """
        @param context: the caller and the session manager.
        @param match: the parsed statement.
        @return: the rows (or a Deferred firing with them).
        @raise AdminError: 1094 for an id that names no session, or one the
            caller may not see.
        """
        caller = context.session
        number = match.session_id
        if number is None or number == _OWN_SESSION:
            return self.on_target(context, caller, match)
        cluster = _cluster(context)
        if cluster is None:
            target = access.resolve_session(context.manager, number)
        else:
            target = access.resolve_cs_id(context.manager, number)
            if target is None:
                asked = cluster.on_session(
                    access.RemoteCaller.of(caller), self.name, number, self.match_args(match)
                )
                return asked.addCallback(
                    lambda outcome: outcome.resolve(
                        lambda: self.on_target(context, caller, match), number, self._columns
                    )
                )
        if target is None:
            raise access.unknown_thread(number)
        return self.on_target(context, target, match)

    def on_target(self, context: AdminContext, target: Any, match: SessionQuery) -> Any:
        """
        The rows about C{target} for the caller (here, or in the process that
        holds C{target} for a caller on another worker or node).

        @raise AdminError: 1094 when the caller may not see C{target}.
        """
        if not access.may_see(context.session, target):
            raise access.unknown_thread(match.session_id if match.session_id is not None else -1)
        return self.rows(context, target, match)

    def rows(self, context: AdminContext, target: Any, match: SessionQuery) -> Any:
        """
        @return: the answer about C{target}, whom the caller may see.
        """
        raise NotImplementedError


@implementer(IPlugin, IAdminCommand)
class ShowProxySession(_ShowProxySession):
    """
    C{SHOW PROXYSESSION}: the client sessions the caller may see, by C{Id}.
    """

    name = "SHOW PROXYSESSION"
    errors = ()
    _columns = (
        integer_column("proxy_sessid", unsigned=True),
        integer_column("Id", unsigned=True),
        text_column("Cluster"),
        text_column("Tenant"),
        text_column("User"),
        text_column("Host"),
        text_column("db"),
        integer_column("trans_count"),
        integer_column("svr_session_count"),
        text_column("state"),
        integer_column("tid"),
        integer_column("pid"),
        integer_column("using_ssl"),
    )

    def execute(self, context: AdminContext, match: SessionQuery) -> Any:
        """
        @param context: the caller and the session manager.
        @param match: the parsed statement.
        @return: one row per visible session (a Deferred firing with them
            when other workers or nodes are asked too).
        """
        cluster = _cluster(context)
        if cluster is None:
            return result_set(self._columns, self.list_rows(context, match))
        asked = cluster.list_rows(
            access.RemoteCaller.of(context.session), self.name, self.match_args(match), "cluster"
        )
        return asked.addCallback(
            lambda rows: result_set(self._columns, sorted(rows, key=lambda row: row[1]))
        )

    def list_rows(self, context: AdminContext, match: SessionQuery) -> List[Tuple[Any, ...]]:
        """
        @param context: the caller (perhaps on another worker or node) and
            the session manager.
        @param match: the parsed statement.
        @return: one row per session of this process the caller may see,
            by C{Id}.
        """
        caller = context.session
        tid, pid = _tid(), os.getpid()
        rows = []
        for session in sorted(context.manager.client_sessions.values(), key=lambda s: s.cs_id):
            if session.login is None or not access.may_see(caller, session):
                continue
            cluster, tenant, user = _login_parts(session)
            rows.append(
                (
                    session.proxy_sessid,
                    session.cs_id,
                    cluster,
                    tenant,
                    user,
                    f"{session.peer}:{session.peer_port}",
                    session.state.database,
                    session.trans_count,
                    session.server_session_count,
                    session.machine.state.name,
                    tid,
                    pid,
                    1 if session.using_ssl else 0,
                )
            )
        return rows


@implementer(IPlugin, IAdminCommand)
class ShowProxySessionAttribute(_OneSession):
    """
    C{SHOW PROXYSESSION ATTRIBUTE [id] [LIKE 'p']}: see L{attribute_rows}.
    """

    name = "SHOW PROXYSESSION ATTRIBUTE"
    keywords = ("SHOW PROXYSESSION ATTRIBUTE",)
    _grammar = _ATTRIBUTE_RE
    _columns = (text_column("attribute_name"), text_column("value"), text_column("info"))

    def rows(self, context: AdminContext, target: Any, match: SessionQuery) -> AdminResultSet:
        """
        @param context: the caller and the session manager.
        @param target: the session.
        @param match: the parsed statement.
        @return: the rows whose name matches the pattern.
        """
        rows = [row for row in attribute_rows(target, context.config) if match.wanted(row[0])]
        return result_set(self._columns, rows)


@implementer(IPlugin, IAdminCommand)
class ShowProxySessionVariables(_OneSession):
    """
    C{SHOW PROXYSESSION VARIABLES [ALL] [id] [LIKE 'p']}.

    Without C{ALL}: the session's changed system variables (info
    C{changed sys var}), then its user variables (C{user var}). With C{ALL}:
    every system variable (C{sys var}): the changed ones first, then the
    others as C{SHOW SESSION VARIABLES} lists them, read on a side connection
    logged in as the session's user (a fresh session has the defaults, which
    is what an unchanged variable holds); then the user variables.
    """

    name = "SHOW PROXYSESSION VARIABLES"
    keywords = ("SHOW PROXYSESSION VARIABLES",)
    _grammar = _VARIABLES_RE
    _columns = (
        text_column("variable_name"),
        text_column("value"),
        text_column("info"),
        text_column("modified_type"),
        text_column("sys_variable_flag"),
    )

    def rows(
        self, context: AdminContext, target: Any, match: SessionQuery
    ) -> AdminResultSet | defer.Deferred[AdminResultSet]:
        """
        @param context: the caller and the session manager.
        @param target: the session.
        @param match: the parsed statement.
        @return: the rows whose name matches the pattern (a Deferred for C{ALL}).
        @raise AdminError: for C{ALL}, the server's error if it cannot be asked.
        """
        changed = _changed_sys_vars(target)
        if not match.all:
            rows = [_sys_row(target, n, v, "changed sys var") for n, v in changed]
            return self._result(match, rows + _user_rows(target))

        def overlay(events: List[Any]) -> AdminResultSet:
            known = {name.lower() for name, _ in changed}
            rows = [_sys_row(target, n, v, "sys var") for n, v in changed]
            rows.extend(
                _sys_row(target, name, value, "sys var")
                for name, value in _server_variables(events)
                if name.lower() not in known
            )
            return self._result(match, rows + _user_rows(target))

        asked = target.side_query(b"SHOW SESSION VARIABLES")
        return asked.addCallbacks(overlay, _side_query_failed)

    def _result(self, match: SessionQuery, rows: Sequence[Tuple[str, ...]]) -> AdminResultSet:
        return result_set(self._columns, [row for row in rows if match.wanted(row[0])])


@implementer(IPlugin, IAdminCommand)
class ShowProxySessionStat(_OneSession):
    """
    C{SHOW PROXYSESSION STAT [id] [LIKE 'p']}: the session's counters.
    """

    name = "SHOW PROXYSESSION STAT"
    keywords = ("SHOW PROXYSESSION STAT",)
    _grammar = _STAT_RE
    _columns = (text_column("stat_name"), integer_column("value"))

    def rows(self, context: AdminContext, target: Any, match: SessionQuery) -> AdminResultSet:
        """
        @param context: the caller and the session manager.
        @param target: the session.
        @param match: the parsed statement.
        @return: the counters whose name matches the pattern.
        """
        rows = [(name, value) for name, value in target.stats.rows() if match.wanted(name)]
        return result_set(self._columns, rows)


show_proxysession = ShowProxySession()
show_proxysession_attribute = ShowProxySessionAttribute()
show_proxysession_variables = ShowProxySessionVariables()
show_proxysession_stat = ShowProxySessionStat()
