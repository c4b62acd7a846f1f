"""
The worker channel's metrics command: how the parent of several workers
gathers each worker's Prometheus figures (L{obproxy_tx.metrics}).

It is an admin command only in that the channel runs admin commands' row
listings in other processes (C{ListRows}); no SQL statement reaches it: it
has no keywords and matches nothing.
"""

from __future__ import annotations

from typing import Any, Dict, List

from twisted.plugin import IPlugin
from zope.interface import implementer

from obproxy_tx.admin.interfaces import AdminContext, IAdminCommand, Privilege
from obproxy_tx.metrics import CHANNEL_COMMAND, metric_rows


@implementer(IPlugin, IAdminCommand)
class ChannelMetrics:
    """
    Lists this process's metric rows (L{obproxy_tx.metrics.metric_rows}) for
    the parent's Prometheus endpoint.
    """

    name = CHANNEL_COMMAND
    keywords = ()
    columns = ("family", "kind", "help", "labels", "value")
    privilege = Privilege.ADMIN
    errors = ()
    proxy_only = True
    denied = None

    def match(self, sql: str) -> None:
        """
        @return: C{None}: no statement is this command.
        """
        return None

    def match_args(self, match: Any) -> Dict[str, Any]:
        """
        @return: nothing: the command takes no arguments.
        """
        return {}

    def match_from_args(self, args: Dict[str, Any]) -> None:
        """
        @return: C{None} (no arguments).
        """
        return None

    def execute(self, context: AdminContext, match: Any) -> Any:
        """
        Never run from SQL (L{match} matches nothing).

        @raise NotImplementedError: always.
        """
        raise NotImplementedError("the metrics command runs over the worker channel only")

    def list_rows(self, context: AdminContext, match: Any) -> List[List[Any]]:
        """
        @param context: the context (its manager's figures are read).
        @param match: unused.
        @return: the metric rows of this process.
        """
        return metric_rows(context.manager)


channel_metrics = ChannelMetrics()
