"""
L{LocalSessions}: how one proxy process serves the channel's requests about
its own sessions, for a caller on another worker or node.

The work is the admin commands' own: a command that can be asked across
processes provides, besides C{match} and C{execute}:

  - C{match_args(match)} and C{match_from_args(args)}: its parsed statement
    as JSON and back;
  - C{list_rows(context, match)} (listing commands): the rows of the sessions
    this process holds that C{context.session} may see;
  - C{on_target(context, target, match)} (commands on one session): the
    answer for one of this process's sessions, checks included.

C{context.session} is then a L{RemoteCaller<obproxy_tx.admin.access.RemoteCaller>},
which the access rules treat like the caller's own session object.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from obproxy_tx.admin import access
from obproxy_tx.admin.interfaces import AdminContext, AdminError
from obproxy_tx.cluster.protocol import (
    MODE_ANY,
    MODE_BACKEND,
    MODE_CS,
    ChannelError,
    Outcome,
    caller_from_json,
    internal_error,
)
from obproxy_tx.config import ConfigError, set_item

__all__ = ["LocalSessions", "find_command"]

_APPLIED_ORIGIN = "ALTER PROXYCONFIG"
"""The origin of items applied for another worker (the same as for the worker that ran it)."""


def find_command(registry: Any, name: str) -> Any:
    """
    @param registry: a L{CommandRegistry<obproxy_tx.admin.registry.CommandRegistry>}.
    @param name: a command's C{name}.
    @return: the command.
    @raise ChannelError: no such command (the other process has a plugin
        this one lacks).
    """
    for command in registry.commands:
        if command.name == name:
            return command
    raise ChannelError(f"no admin command {name!r} here")


def json_rows(rows: Any) -> List[List[Any]]:
    """
    @return: C{rows} as lists, ready for JSON.
    """
    return [list(row) for row in rows]


class LocalSessions:
    """
    Serves channel requests from the sessions of one L{SessionManager
    <obproxy_tx.session.manager.SessionManager>} (its scope is always this
    process, whatever a request says).

    @ivar manager: the session manager.
    """

    _log = Logger()

    def __init__(self, manager: Any) -> None:
        """
        @param manager: the session manager whose sessions are served.
        """
        self.manager = manager

    def _context(self, caller: Any) -> AdminContext:
        manager = self.manager
        return AdminContext(caller_from_json(caller), manager, manager.config, manager.registry)

    def list_rows(self, caller: Any, command: str, args: Any, scope: str) -> Any:
        """
        The rows of listing command C{command} over this process's sessions.

        @return: a Deferred firing with the rows as lists.
        @raise ChannelError: unknown command, or one that does not list.
        """
        found = find_command(self.manager.registry, command)
        if not hasattr(found, "list_rows"):
            raise ChannelError(f"{command} lists no rows across processes")
        context = self._context(caller)
        match = found.match_from_args(args)
        return defer.maybeDeferred(found.list_rows, context, match).addCallback(json_rows)

    def find(self, number: int, mode: str) -> Any:
        """
        @param number: the id a statement named.
        @param mode: L{MODE_CS}, L{MODE_BACKEND} or L{MODE_ANY}.
        @return: this process's session the id names, or C{None}.
        """
        if mode == MODE_CS:
            return access.resolve_cs_id(self.manager, number)
        if mode == MODE_BACKEND:
            return access.resolve_backend_id(self.manager, number)
        if mode == MODE_ANY:
            return access.resolve_session(self.manager, number)
        raise ChannelError(f"unknown mode {mode!r}")

    def on_session(
        self, caller: Any, command: str, number: int, mode: str, args: Any, scope: str
    ) -> defer.Deferred[Outcome]:
        """
        Run command C{command} on the session C{number} names, if this
        process holds it.

        @return: a Deferred firing with the L{Outcome}.
        """
        found = find_command(self.manager.registry, command)
        if not hasattr(found, "on_target"):
            raise ChannelError(f"{command} runs on no session across processes")
        context = self._context(caller)
        target = self.find(number, mode)
        if target is None:
            return defer.succeed(Outcome.not_found())
        if access.same_session(context.session, target):
            return defer.succeed(Outcome.self_())
        match = found.match_from_args(args)
        result = defer.maybeDeferred(found.on_target, context, target, match)

        def failed(failure: Failure) -> Outcome:
            if failure.check(AdminError):
                return Outcome.from_answer(failure.value)
            return internal_error(f"{command} for client session {context.session.cs_id}", failure)

        return result.addCallbacks(Outcome.from_answer, failed)

    def apply_config(self, name: str, text: str) -> List[str]:
        """
        Apply C{ALTER PROXYCONFIG SET name = text}, already checked and saved
        by the worker that ran it, to this process's running configuration.

        @return: what went wrong, for that worker to report (empty: nothing).
        """
        manager = self.manager
        where = f"worker {getattr(manager, 'worker', 0)}"
        try:
            changed = set_item(manager.config, name, text, origin=_APPLIED_ORIGIN)
            reconfigure = getattr(manager, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(changed)
            else:
                manager.config = changed
        except (ConfigError, ValueError) as e:
            self._log.error(
                "ALTER PROXYCONFIG SET {name} from another worker: {error}", name=name, error=e
            )
            return [f"{where}: {e}"]
        self._log.info("ALTER PROXYCONFIG SET {name}: applied for another worker", name=name)
        return []
