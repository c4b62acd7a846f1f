"""
The built-in C{PING PROXY} command: ODP answers it with an OK packet, for
every user, without touching a backend.
"""

from __future__ import annotations

import re

from twisted.plugin import IPlugin
from zope.interface import implementer

from obproxy_tx.admin.interfaces import AdminContext, AdminOK, IAdminCommand, Privilege

_GRAMMAR = re.compile(r"PING\s+PROXY", re.IGNORECASE)


@implementer(IPlugin, IAdminCommand)
class PingProxy:
    """
    C{PING PROXY} -> OK.
    """

    name = "PING PROXY"
    keywords = ("PING PROXY",)
    columns = ()
    privilege = Privilege.EVERYONE
    errors = ()

    def match(self, sql: str) -> bool | None:
        """
        @param sql: the statement.
        @return: C{True} for exactly C{PING PROXY}, else C{None}.
        """
        return True if _GRAMMAR.fullmatch(sql) else None

    def execute(self, context: AdminContext, match: object) -> AdminOK:
        """
        @param context: unused.
        @param match: unused.
        @return: OK.
        """
        return AdminOK()


ping_proxy = PingProxy()
