"""
C{SHOW PROXYSTAT [REFRESH] [LIKE 'p']} and C{SELECT PROXY_VERSION()}.

C{SHOW PROXYSTAT} answers ODP's columns C{stat_name, value, persist_type}
(C{ob_show_stat_handler.cpp}; C{value} is a BIGINT column there too): the
proxy-wide counters of C{SessionManager.stats} in their declared order, then
figures derived when asked:

  - C{current_client_connections}: client sessions open now;
  - C{current_server_connections}: server sessions they hold now;
  - C{uptime_seconds}: whole seconds since the session manager was made.

C{persist_type} is C{NULL} for every row: ODP marks some totals
C{PERSISTENT} because it saves them across restarts; this proxy saves none.
C{REFRESH} asks ODP to fold per-thread counters first; ours are always
current, so it changes nothing (it calls C{stats.refresh()} should the
counters ever grow one).

C{SHOW PROXYSTAT} is for C{root@sys} and C{root@proxysys}; other users'
statements go to the backend, as ODP does. With several worker processes
(C{manager.cluster}) the figures are the whole node's: each counter and
count summed over the workers, C{uptime_seconds} the oldest worker's. Peer
nodes keep their own.

C{SELECT PROXY_VERSION()} answers one row with one column named
C{PROXY_VERSION()}: L{obproxy_tx.__version__}, for every user. Any other
statement that merely starts the same way (C{SELECT PROXY_VERSION() + 1},
C{... FROM t}) is ordinary SQL and goes to the backend.
"""

from __future__ import annotations

import re
import time
from typing import Any, Dict, List, Sequence, Tuple

import attr
from twisted.plugin import IPlugin
from zope.interface import implementer

from obproxy_tx import __version__
from obproxy_tx.admin.access import RemoteCaller
from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminResultSet,
    IAdminCommand,
    Privilege,
    integer_column,
    text_column,
)
from obproxy_tx.admin.registry import like
from obproxy_tx.plugins.obproxy_config import unquote

_QUOTED = r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\""
_FLAGS = re.IGNORECASE | re.DOTALL

_SHOW_STAT = re.compile(
    rf"SHOW\s+PROXYSTAT(?P<refresh>\s+REFRESH)?(?:\s+LIKE\s+(?P<like>{_QUOTED}))?", _FLAGS
)
_PROXY_VERSION = re.compile(r"SELECT\s+PROXY_VERSION\s*\(\s*\)", _FLAGS)

PERSIST_NULL = "NULL"
"""ODP's C{persist_type} of a counter that is not saved across restarts."""

STAT_COLUMNS = (
    text_column("stat_name"),
    # ODP declares value as OB_MYSQL_TYPE_LONGLONG; clients then read numbers.
    integer_column("value"),
    text_column("persist_type"),
)


def derived_rows(manager: Any, now: float | None = None) -> List[Tuple[str, int]]:
    """
    Figures computed from the manager's state rather than counted.

    @param manager: the session manager.
    @param now: the current time in seconds since the epoch (default: now).
    @return: C{(stat_name, value)} rows.
    """
    sessions = getattr(manager, "client_sessions", {}) or {}
    servers = getattr(manager, "server_session_count", None)
    if servers is None:
        servers = sum(getattr(cs, "server_session_count", 0) for cs in sessions.values())
    rows = [
        ("current_client_connections", len(sessions)),
        ("current_server_connections", int(servers)),
    ]
    started_at = getattr(manager, "started_at", None)
    if started_at is not None:
        current = time.time() if now is None else now
        rows.append(("uptime_seconds", max(0, int(current - started_at))))
    return rows


_OLDEST = frozenset({"uptime_seconds"})
"""Figures that are the largest over the workers rather than their sum."""


def _summed(rows: Sequence[Sequence[Any]]) -> List[Tuple[str, int]]:
    """
    Every worker's C{(name, value)} rows as the node's: values summed by
    name (the largest for L{_OLDEST}), in the order names first appear.
    """
    totals: Dict[str, int] = {}
    for name, value in rows:
        if name in totals:
            totals[name] = (
                max(totals[name], int(value)) if name in _OLDEST else totals[name] + int(value)
            )
        else:
            totals[name] = int(value)
    return list(totals.items())


@attr.s(auto_attribs=True, frozen=True)
class StatMatch:
    """
    A parsed C{SHOW PROXYSTAT}.

    @ivar refresh: whether C{REFRESH} was given.
    @ivar pattern: the C{LIKE} pattern, or C{None}.
    """

    refresh: bool
    pattern: str | None


@implementer(IPlugin, IAdminCommand)
class ShowProxyStat:
    """
    C{SHOW PROXYSTAT [REFRESH] [LIKE 'p']}.
    """

    name = "SHOW PROXYSTAT"
    keywords = ("SHOW PROXYSTAT",)
    columns = ("stat_name", "value", "persist_type")
    privilege = Privilege.ADMIN
    errors = ()
    proxy_only = True
    denied = None

    def match(self, sql: str) -> StatMatch | None:
        """
        @param sql: the statement.
        @return: the parsed statement, or C{None} if it is not this grammar.
        """
        found = _SHOW_STAT.fullmatch(sql.strip())
        if found is None:
            return None
        literal = found.group("like")
        pattern = unquote(literal, keep_like_escapes=True) if literal else None
        return StatMatch(bool(found.group("refresh")), pattern)

    def match_args(self, match: StatMatch) -> Dict[str, Any]:
        """
        @return: C{match} for the channel (L{obproxy_tx.cluster}).
        """
        return attr.asdict(match)

    def match_from_args(self, args: Dict[str, Any]) -> StatMatch:
        """
        @return: the match L{match_args} gave.
        """
        return StatMatch(**args)

    def execute(self, context: AdminContext, match: StatMatch) -> Any:
        """
        @param context: the caller's context (its manager's counters are read).
        @param match: what L{match} returned.
        @return: the counters, then the derived figures, filtered by C{LIKE}
            (a Deferred firing with them when there are other workers).
        """
        cluster = getattr(context.manager, "cluster", None)
        if cluster is None:
            return self._answer(self.list_rows(context, match), match)
        asked = cluster.list_rows(
            RemoteCaller.of(context.session), self.name, self.match_args(match), "node"
        )
        return asked.addCallback(lambda rows: self._answer(_summed(rows), match))

    def list_rows(self, context: AdminContext, match: StatMatch) -> List[Tuple[str, int]]:
        """
        @param context: the caller's context (its manager's counters are read).
        @param match: what L{match} returned.
        @return: this process's counters, then its derived figures, unfiltered.
        """
        manager = context.manager
        stats = getattr(manager, "stats", None)
        if match.refresh and stats is not None:
            refresh = getattr(stats, "refresh", None)
            if refresh is not None:
                refresh()
        counted: Sequence[Tuple[str, Any]] = stats.rows() if stats is not None else ()
        return [(name, int(value)) for name, value in [*counted, *derived_rows(manager)]]

    def _answer(self, rows: Sequence[Sequence[Any]], match: StatMatch) -> AdminResultSet:
        return AdminResultSet(
            STAT_COLUMNS,
            [
                (name, value, PERSIST_NULL)
                for name, value in rows
                if match.pattern is None or like(match.pattern, name)
            ],
        )


@implementer(IPlugin, IAdminCommand)
class SelectProxyVersion:
    """
    C{SELECT PROXY_VERSION()}.
    """

    name = "SELECT PROXY_VERSION()"
    keywords = ("SELECT PROXY_VERSION",)
    columns = ("PROXY_VERSION()",)
    privilege = Privilege.EVERYONE
    errors = ()
    # MySQL's SELECT: any other statement starting this way is the backend's.
    proxy_only = False
    denied = None

    def match(self, sql: str) -> bool | None:
        """
        @param sql: the statement.
        @return: C{True} for exactly C{SELECT PROXY_VERSION()}, else C{None}.
        """
        return True if _PROXY_VERSION.fullmatch(sql.strip()) else None

    def execute(self, context: AdminContext, match: object) -> AdminResultSet:
        """
        @param context: unused.
        @param match: unused.
        @return: one row: the proxy's version.
        """
        return AdminResultSet(self.columns, [(__version__,)])


show_proxy_stat = ShowProxyStat()
select_proxy_version = SelectProxyVersion()
