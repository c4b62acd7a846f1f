"""
C{SHOW PROXYBACKENDS [LIKE 'pattern']}: an example third-party admin command.

One row per backend server: the servers each cluster is configured with, in
configuration order, then any other server the proxy holds connections to
(a client can route to one with C{SET @obproxy_route_addr}). For each, how
many server sessions the proxy holds to it and what they are doing (columns
C{cluster_name}, C{cluster_type}, C{server_addr}, C{server_sessions},
C{active}, C{bound}, C{pooled}, C{client_sessions})::

    cl_mariadb  mysql  127.0.0.1:3306  3  1  1  1  2

  - C{active}: running a client's request right now (ODP's C{curr used ss});
  - C{bound}: idle, kept for the client that used it last (C{last used ss},
    state C{MSS_KA_CLIENT_SLAVE});
  - C{pooled}: idle in a client's pool (C{ss pool}, C{MSS_KA_SHARED});
  - C{client_sessions}: how many client sessions hold at least one of them.

C{LIKE} filters on C{cluster_name} (C{%} and C{_}, case-insensitive), as
ODP's C{SHOW PROXYCLUSTER LIKE} does.

Who may run it: C{root@sys} sees the servers of its own cluster, the local
admin C{root@proxysys} those of every cluster. For anybody else the statement
is not ours: it goes to the backend as ordinary SQL (which answers its own
syntax error), exactly as ODP treats its admin commands.

This module is found because it lies in a directory C{obproxy_tx/plugins/}
(without C{__init__.py}) on C{sys.path}; see C{README.md} next to
C{pyproject.toml} and C{docs/command-plugins.md}.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

from twisted.plugin import IPlugin
from zope.interface import implementer

from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminResultSet,
    IAdminCommand,
    Privilege,
    integer_column,
    text_column,
)
from obproxy_tx.admin.registry import like

# The whole statement (the registry has already stripped blanks and a trailing
# ';'). Only this regular expression runs, and only for statements whose first
# bytes are "SHOW PROXYBACKENDS": every other query is turned away by the
# registry's prefix check before any of this code is called.
_GRAMMAR = re.compile(
    r"SHOW\s+PROXYBACKENDS(?:\s+LIKE\s+'(?P<pattern>(?:[^'\\]|\\.|'')*)')?",
    re.IGNORECASE | re.DOTALL,
)

COLUMNS = (
    "cluster_name",
    "cluster_type",
    "server_addr",
    "server_sessions",
    "active",
    "bound",
    "pooled",
    "client_sessions",
)
"""The result columns, in order."""

DEFINITIONS = tuple(
    text_column(name) if index < 3 else integer_column(name) for index, name in enumerate(COLUMNS)
)
"""
Full column definitions: the counts are C{BIGINT}, so clients type them as
numbers (PyMySQL returns C{int}s, the CLI right-aligns them). A result set
given bare names gets C{VARCHAR} columns.
"""


class _Counts:
    """
    Server sessions to one server, by what they are doing.

    @ivar active: running a request.
    @ivar bound: idle, bound to their client.
    @ivar pooled: idle, in their client's pool.
    @ivar clients: the C{cs_id}s holding at least one of them.
    """

    def __init__(self) -> None:
        self.active = 0
        self.bound = 0
        self.pooled = 0
        self.clients: set[int] = set()

    def row(self, cluster: str, kind: str, address: str) -> Tuple[Any, ...]:
        """
        @param cluster: the cluster name.
        @param kind: the cluster type (C{oceanbase}, C{mysql}).
        @param address: the server address.
        @return: the result row for this server.
        """
        total = self.active + self.bound + self.pooled
        return (
            cluster,
            kind,
            address,
            total,
            self.active,
            self.bound,
            self.pooled,
            len(self.clients),
        )


@implementer(IPlugin, IAdminCommand)
class ShowProxyBackends:
    """
    C{SHOW PROXYBACKENDS [LIKE 'pattern']}: the backend servers and the
    server sessions held to each.
    """

    name = "SHOW PROXYBACKENDS"
    keywords = ("SHOW PROXYBACKENDS",)
    columns = COLUMNS
    # Server addresses are infrastructure: root@sys and root@proxysys only.
    privilege = Privilege.ADMIN
    errors = ()
    # "SHOW PROXYBACKENDS <anything else>" is ours but malformed: the proxy
    # answers 5010 (21000) "Unknown operator, bad internal cmd".
    proxy_only = True
    # A caller without the privilege has the statement forwarded to the
    # backend (which answers its own syntax error), as ODP does.
    denied = None

    def match(self, sql: str) -> str | None:
        """
        Parse the statement.

        @param sql: the statement text, blanks and a trailing C{;} stripped.
        @return: the C{LIKE} pattern (C{"%"} when none is given), or C{None}
            when C{sql} is not this command.
        """
        parsed = _GRAMMAR.fullmatch(sql)
        if parsed is None:
            return None
        pattern = parsed.group("pattern")
        # '' inside the quotes is one quote, as in SQL; backslash escapes are
        # left for the LIKE matcher (\_ is a literal underscore there).
        return "%" if pattern is None else pattern.replace("''", "'")

    def execute(self, context: AdminContext, match: str) -> AdminResultSet:
        """
        Count the server sessions of every client session, per server.

        @param context: the calling session, the session manager and the
            configuration.
        @param match: the C{LIKE} pattern from L{match}.
        @return: one row per server.
        """
        # root@proxysys belongs to no cluster and sees them all; root@sys
        # sees its own cluster only.
        own = getattr(context.session, "cluster", None)
        clusters = [c for c in context.config.clusters if own is None or c.name == own.name]
        counts: Dict[Tuple[str, str], _Counts] = {}
        order: List[Tuple[str, str, str]] = []
        for cluster in clusters:
            for server in cluster.servers:
                key = (cluster.name, server.address)
                if key not in counts:
                    counts[key] = _Counts()
                    order.append((cluster.name, cluster.type.value, server.address))
        kinds = {c.name: c.type.value for c in clusters}
        for client in list(context.manager.client_sessions.values()):
            cluster = getattr(client, "cluster", None)
            if cluster is None or cluster.name not in kinds:
                continue  # not logged in yet, root@proxysys, or another cluster
            for ss in client.server_sessions:
                key = (cluster.name, ss.server.address)
                entry = counts.get(key)
                if entry is None:
                    # Not a configured server: routed to by @obproxy_route_addr.
                    entry = counts[key] = _Counts()
                    order.append((cluster.name, kinds[cluster.name], ss.server.address))
                if ss is client.active:
                    entry.active += 1
                elif ss is client.bound:
                    entry.bound += 1
                else:
                    entry.pooled += 1
                entry.clients.add(client.cs_id)
        rows = [
            counts[(cluster, address)].row(cluster, kind, address)
            for cluster, kind, address in order
            if like(match, cluster)
        ]
        return AdminResultSet(DEFINITIONS, rows)


# Twisted's plugin system collects module-level objects that provide IPlugin:
# this instance is what the proxy registers.
show_proxy_backends = ShowProxyBackends()
