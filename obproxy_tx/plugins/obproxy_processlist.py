"""
The built-in C{SHOW PROCESSLIST} and C{SHOW FULL PROCESSLIST} commands: the
proxy's client sessions, not the backends' connections (a client must be able
to find the ids C{KILL} takes, which are the proxy's).

  - C{SHOW PROCESSLIST} has ODP's columns (C{ob_show_session_handler.cpp},
    C{LIST_COLUMN_ARRAY}): Id, Tenant, User, Host, db, trans_count,
    svr_session_count, state, tid, pid. C{COM_PROCESS_INFO} arrives here as
    this text.
  - C{SHOW FULL PROCESSLIST} is not ODP's (ODP sends it to the observer); it
    has MySQL's columns, Id, User, Host, db, Command, Time, State, Info, so
    that tools written for MySQL find what they expect, with the full text of
    each statement being served.

Everyone may run them; the rows are the sessions the caller may see
(L{access.may_see}: its own user's, all of its cluster's for the C{sys}
tenant, all for the local admin). Other statements that start with these
words are MySQL's business and go to the backend (C{proxy_only} false).

With several workers or proxy nodes (C{manager.cluster}), every worker's and
node's sessions are listed; each computes the rows of its own sessions
(L{obproxy_tx.cluster}).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Dict, List, Tuple

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from obproxy_tx.admin import access
from obproxy_tx.admin.interfaces import (
    AdminContext,
    IAdminCommand,
    Privilege,
    integer_column,
    text_column,
)
from obproxy_tx.plugins.obproxy_proxysession import result_set

__all__ = ["ProcessListQuery", "ShowProcessList", "show_processlist"]

_GRAMMAR = re.compile(r"SHOW\s+(?P<full>FULL\s+)?PROCESSLIST", re.IGNORECASE)

#: ODP's SHOW PROCESSLIST columns.
_ODP_COLUMNS = (
    integer_column("Id", unsigned=True),
    text_column("Tenant"),
    text_column("User"),
    text_column("Host"),
    text_column("db"),
    integer_column("trans_count"),
    integer_column("svr_session_count"),
    text_column("state"),
    integer_column("tid"),
    integer_column("pid"),
)

#: MySQL's SHOW FULL PROCESSLIST columns.
_FULL_COLUMNS = (
    integer_column("Id", unsigned=True),
    text_column("User"),
    text_column("Host"),
    text_column("db"),
    text_column("Command"),
    integer_column("Time"),
    text_column("State"),
    text_column("Info"),
)


@attrs.frozen
class ProcessListQuery:
    """
    A parsed C{SHOW [FULL] PROCESSLIST}.

    @ivar full: the C{FULL} form (MySQL's columns).
    @ivar text: the statement as the client sent it (the caller's own Info).
    """

    full: bool
    text: str


def _visible(context: AdminContext) -> list[Any]:
    """The sessions the caller may see, by C{cs_id}."""
    caller = context.session
    return [
        session
        for session in sorted(context.manager.client_sessions.values(), key=lambda s: s.cs_id)
        if (access.same_session(caller, session) or session.login is not None)
        and access.may_see(caller, session)
    ]


@implementer(IPlugin, IAdminCommand)
class ShowProcessList:
    """
    C{SHOW PROCESSLIST} (ODP's columns) and C{SHOW FULL PROCESSLIST}
    (MySQL's columns).
    """

    name = "SHOW PROCESSLIST"
    keywords = ("SHOW PROCESSLIST", "SHOW FULL PROCESSLIST")
    columns = tuple(column.name.decode() for column in _ODP_COLUMNS)
    privilege = Privilege.EVERYONE
    proxy_only = False
    errors = ()

    def match(self, sql: str) -> ProcessListQuery | None:
        """
        @param sql: the statement (blanks and a trailing C{;} stripped).
        @return: the parsed statement, or C{None} if it is not exactly one of
            the two forms (then it goes to the backend).
        """
        found = _GRAMMAR.fullmatch(sql)
        if found is None:
            return None
        return ProcessListQuery(full=found.group("full") is not None, text=sql)

    def match_args(self, match: ProcessListQuery) -> Dict[str, Any]:
        """
        @return: C{match} for the channel (L{obproxy_tx.cluster}).
        """
        return attrs.asdict(match)

    def match_from_args(self, args: Dict[str, Any]) -> ProcessListQuery:
        """
        @return: the match L{match_args} gave.
        """
        return ProcessListQuery(**args)

    def execute(self, context: AdminContext, match: ProcessListQuery) -> Any:
        """
        @param context: the caller and the session manager.
        @param match: the parsed statement.
        @return: one row per visible client session (a Deferred firing with
            them when other workers or nodes are asked too).
        """
        columns = _FULL_COLUMNS if match.full else _ODP_COLUMNS
        cluster = getattr(context.manager, "cluster", None)
        if cluster is None:
            return result_set(columns, self.list_rows(context, match))
        asked = cluster.list_rows(
            access.RemoteCaller.of(context.session), self.name, self.match_args(match), "cluster"
        )
        return asked.addCallback(
            lambda rows: result_set(columns, sorted(rows, key=lambda row: row[0]))
        )

    def list_rows(self, context: AdminContext, match: ProcessListQuery) -> List[Tuple[Any, ...]]:
        """
        @param context: the caller (perhaps on another worker or node) and
            the session manager.
        @param match: the parsed statement.
        @return: one row per session of this process the caller may see, by
            C{Id}.
        """
        if match.full:
            return self._full(context, match)
        tid, pid = threading.get_native_id(), os.getpid()
        rows = []
        for session in _visible(context):
            login = session.login
            rows.append(
                (
                    session.cs_id,
                    login.tenant if login is not None else "",
                    login.user if login is not None else "",
                    f"{session.peer}:{session.peer_port}",
                    session.state.database,
                    session.trans_count,
                    session.server_session_count,
                    session.machine.state.name,
                    tid,
                    pid,
                )
            )
        return rows

    def _full(self, context: AdminContext, match: ProcessListQuery) -> List[Tuple[Any, ...]]:
        caller = context.session
        now = context.manager.reactor.seconds()
        rows: list[Tuple[Any, ...]] = []
        for session in _visible(context):
            login = session.login
            mine = access.same_session(caller, session)
            busy = mine or session.active is not None
            info = session.current_query
            if mine:
                # The caller is running this very statement, which the session
                # may not count as its current query (it is answered locally).
                info = info or match.text
            rows.append(
                (
                    session.cs_id,
                    login.user if login is not None else "",
                    f"{session.peer}:{session.peer_port}",
                    session.state.database,
                    "Query" if busy else "Sleep",
                    max(0, int(now - session.last_command_at)),
                    session.machine.state.name,
                    info,
                )
            )
        return rows


show_processlist = ShowProcessList()
