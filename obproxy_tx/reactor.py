"""
The reactor C{twistd obproxy} runs on: Twisted's epoll reactor with a
leaner dispatch of read events.

Twisted's epoll reactor calls every ready socket through
C{log.callWithLogger}, which builds a logging context (a dict, a context
stack push and pop, the protocol's C{logPrefix}) for the legacy
C{twisted.python.log} API. That is about a microsecond per event on CPython,
and a relayed query is two events (the client's request, the server's
answer): more than a tenth of what the proxy spends on a point select.
The proxy logs with C{twisted.logger}, which never reads that context.

L{ProxyReactor} serves the usual event, "readable" (with or without a
hang-up or error, which the read finds out) and not "writable", by calling
the socket's C{doRead} directly, with Twisted's own handling of what it
returns (a reason to disconnect) and of what it raises (logged, with the
legacy context, and the connection dropped): what Twisted's C{_doReadOrWrite}
does for such an event. Every other event (a writable socket, a hang-up
without data) goes through Twisted's own path.
Timers, threads, signals and process handling are the epoll reactor's.

C{twistd obproxy} installs it unless C{twistd --reactor} chose another
(L{install_default}); an application that embeds the proxy keeps its own
reactor.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

from twisted.python import log

__all__ = ["install_default"]

try:
    from select import EPOLLIN, EPOLLOUT

    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # pragma: no cover - not Linux: the platform's default reactor
    EPollReactor = None  # type: ignore[assignment,misc]


if EPollReactor is not None:

    class ProxyReactor(EPollReactor):
        """
        Twisted's epoll reactor, with read events dispatched without the
        legacy logging context (see the module docstring).
        """

        def doPoll(self, timeout: float | None) -> None:  # noqa: N802
            """
            Poll for events and dispatch them.

            @param timeout: the longest wait in seconds, L{None} for no limit.
            """
            try:
                events = self._poller.poll(
                    -1 if timeout is None else timeout, len(self._selectables)
                )
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
            selectables = self._selectables
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is None:
                    continue
                if not event & EPOLLIN or event & EPOLLOUT:
                    log.callWithLogger(selectable, self._doReadOrWrite, selectable, fd, event)
                    continue
                # What _doReadOrWrite does for a read event (a hang-up or error with it
                # included: the read finds out), less the logging context.
                try:
                    if selectable.fileno() == -1:
                        log.callWithLogger(selectable, self._doReadOrWrite, selectable, fd, event)
                        continue
                    why = selectable.doRead()
                except BaseException:
                    why = sys.exc_info()[1]
                    log.callWithLogger(selectable, log.err)
                if why:
                    self._disconnectSelectable(selectable, why, True)

        doIteration = doPoll  # noqa: N815 (Twisted's name)


def install_default() -> Any:
    """
    Install L{ProxyReactor} as the global reactor, unless a reactor is
    installed already (C{twistd --reactor}, or an application's own), or
    epoll is not available.

    @return: the global reactor.
    """
    if EPollReactor is not None and "twisted.internet.reactor" not in sys.modules:
        from twisted.internet.main import installReactor

        installReactor(ProxyReactor())
    from twisted.internet import reactor

    return reactor
