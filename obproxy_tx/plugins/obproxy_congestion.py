"""
C{SHOW PROXYCONGESTION [cluster | ALL [cluster]]}: the congestion entries of the clusters'
servers (L{obproxy_tx.ha.congestion}), with ODP's columns in ODP's order
(C{ob_show_congestion_handler.cpp}; odp-reference.md section 4.2).

Without C{ALL} only congested servers are listed (dead, alive or detect congested), as ODP
does; with it every configured server. A cluster name limits the rows to that cluster (an
unknown one lists nothing, as in ODP). Times are local C{YYYY-MM-DD HH:MM:SS}, or C{0} for
never; C{conn_failure_events} and C{alive_failure_events} count the failures within
C{congestion_fail_window}.

Columns this proxy has no value for keep ODP's type with a fixed value: C{zone_name} and
C{region_name} are empty and C{zone_state} is C{ACTIVE} (no zones on MySQL clusters and no
location cache on OceanBase ones), C{cr_version} and C{ref_count} are 0.

For C{root@sys} and C{root@proxysys} (as C{SHOW PROXYSTAT}). With several worker processes each
keeps its own table (each connects on its own); the node's answer merges them per server: a
server is congested if any worker avoids it, failure counts are summed and times are the
latest.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Sequence, Tuple

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from obproxy_tx.admin.access import RemoteCaller
from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminResultSet,
    IAdminCommand,
    Privilege,
    integer_column,
    text_column,
)
from obproxy_tx.ha.congestion import format_time
from obproxy_tx.plugins.obproxy_config import unquote

__all__ = ["COLUMNS", "CongestionQuery", "ShowProxyCongestion", "show_proxy_congestion"]

_NAME = r"(?P<{}>`[^`]+`|'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|[A-Za-z0-9_.$:-]+)"
_GRAMMAR = re.compile(
    r"SHOW\s+PROXYCONGESTION"
    rf"(?:\s+(?P<all>ALL)(?:\s+{_NAME.format('all_cluster')})?|\s+{_NAME.format('cluster')})?",
    re.IGNORECASE | re.DOTALL,
)

#: ODP's columns, in ODP's order (BIGINT where ODP declares LONGLONG).
COLUMNS = (
    text_column("cluster_name"),
    text_column("zone_name"),
    text_column("region_name"),
    text_column("zone_state"),
    text_column("server_ip"),
    integer_column("cr_version"),
    text_column("server_state"),
    integer_column("alive_congested"),
    text_column("last_alive_congested"),
    integer_column("dead_congested"),
    text_column("last_dead_congested"),
    integer_column("stat_alive_failures"),
    integer_column("stat_conn_failures"),
    text_column("conn_last_fail_time"),
    integer_column("conn_failure_events"),
    text_column("alive_last_fail_time"),
    integer_column("alive_failure_events"),
    integer_column("ref_count"),
    integer_column("detect_congested"),
    text_column("last_detect_congested"),
)

#: The raw fields each worker sends (times as seconds), in the order of L{COLUMNS}.
_FIELDS = (
    "cluster",
    "server",
    "server_state",
    "alive_congested",
    "last_alive_congested",
    "dead_congested",
    "last_dead_congested",
    "stat_alive_failures",
    "stat_conn_failures",
    "conn_last_fail_time",
    "conn_failure_events",
    "alive_last_fail_time",
    "alive_failure_events",
    "detect_congested",
    "last_detect_congested",
)
_FLAGS = frozenset({"alive_congested", "dead_congested", "detect_congested"})
_TIMES = frozenset(
    {
        "last_alive_congested",
        "last_dead_congested",
        "conn_last_fail_time",
        "alive_last_fail_time",
        "last_detect_congested",
    }
)


def _name(text: str | None) -> str | None:
    if text is None:
        return None
    if text[0] in "'\"":
        return unquote(text)
    if text[0] == "`":
        return text[1:-1]
    return text


@attrs.frozen
class CongestionQuery:
    """
    A parsed C{SHOW PROXYCONGESTION}.

    @ivar all: C{ALL}: every server, not only the congested ones.
    @ivar cluster: the cluster named, or C{None} for all clusters.
    """

    all: bool
    cluster: str | None


def _merge(rows: Sequence[Sequence[Any]]) -> List[Dict[str, Any]]:
    """
    Every worker's raw rows as one row per (cluster, server).
    """
    merged: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for raw in rows:
        row = dict(zip(_FIELDS, raw))
        key = (row["cluster"], row["server"])
        known = merged.get(key)
        if known is None:
            merged[key] = row
            continue
        for name in _FIELDS[2:]:
            if name == "server_state":
                if row[name] != "ACTIVE":
                    known[name] = row[name]
            elif name in _FLAGS or name in _TIMES:
                known[name] = max(known[name], row[name])
            else:
                known[name] += row[name]
    return [merged[key] for key in sorted(merged)]


@implementer(IPlugin, IAdminCommand)
class ShowProxyCongestion:
    """
    C{SHOW PROXYCONGESTION [cluster | ALL [cluster]]}.
    """

    name = "SHOW PROXYCONGESTION"
    keywords = ("SHOW PROXYCONGESTION",)
    columns = tuple(column.name.decode() for column in COLUMNS)
    privilege = Privilege.ADMIN
    errors = ()
    proxy_only = True
    denied = None

    def match(self, sql: str) -> CongestionQuery | None:
        """
        @param sql: the statement.
        @return: the parsed statement, or C{None} if it is not this grammar.
        """
        found = _GRAMMAR.fullmatch(sql.strip())
        if found is None:
            return None
        if found.group("all"):
            return CongestionQuery(True, _name(found.group("all_cluster")))
        return CongestionQuery(False, _name(found.group("cluster")))

    def match_args(self, match: CongestionQuery) -> Dict[str, Any]:
        """
        @return: C{match} for the channel (L{obproxy_tx.cluster}).
        """
        return attrs.asdict(match)

    def match_from_args(self, args: Dict[str, Any]) -> CongestionQuery:
        """
        @return: the match L{match_args} gave.
        """
        return CongestionQuery(**args)

    def execute(self, context: AdminContext, match: CongestionQuery) -> Any:
        """
        @param context: the caller's context (its manager's congestion table is read).
        @param match: what L{match} returned.
        @return: the rows (a Deferred firing with them when there are other workers).
        """
        cluster = getattr(context.manager, "cluster", None)
        if cluster is None:
            return self._answer(self.list_rows(context, match), match)
        asked = cluster.list_rows(
            RemoteCaller.of(context.session), self.name, self.match_args(match), "node"
        )
        return asked.addCallback(lambda rows: self._answer(rows, match))

    def list_rows(self, context: AdminContext, match: CongestionQuery) -> List[List[Any]]:
        """
        @param context: the caller's context.
        @param match: what L{match} returned.
        @return: this process's entries as raw rows (times in seconds), every server of the
            cluster asked (the filter on congestion is applied to the merged rows).
        """
        health = getattr(context.manager, "health", None)
        if health is None:
            return []
        rows = []
        for entry in health.snapshot(match.cluster, raw_times=True):
            rows.append(
                [
                    entry["cluster_name"],
                    entry["server_ip"],
                    entry["server_state"],
                    entry["alive_congested"],
                    entry["last_alive_congested"],
                    entry["dead_congested"],
                    entry["last_dead_congested"],
                    entry["stat_alive_failures"],
                    entry["stat_conn_failures"],
                    entry["conn_last_fail_time"],
                    entry["conn_failure_events"],
                    entry["alive_last_fail_time"],
                    entry["alive_failure_events"],
                    entry["detect_congested"],
                    entry["last_detect_congested"],
                ]
            )
        return rows

    def _answer(self, rows: Sequence[Sequence[Any]], match: CongestionQuery) -> AdminResultSet:
        out = []
        for row in _merge(rows):
            congested = row["alive_congested"] or row["dead_congested"] or row["detect_congested"]
            if not (match.all or congested):
                continue
            out.append(
                (
                    row["cluster"],
                    "",
                    "",
                    "ACTIVE",
                    row["server"],
                    0,
                    row["server_state"],
                    row["alive_congested"],
                    format_time(row["last_alive_congested"]),
                    row["dead_congested"],
                    format_time(row["last_dead_congested"]),
                    row["stat_alive_failures"],
                    row["stat_conn_failures"],
                    format_time(row["conn_last_fail_time"]),
                    row["conn_failure_events"],
                    format_time(row["alive_last_fail_time"]),
                    row["alive_failure_events"],
                    0,
                    row["detect_congested"],
                    format_time(row["last_detect_congested"]),
                )
            )
        return AdminResultSet(COLUMNS, out)


show_proxy_congestion = ShowProxyCongestion()
