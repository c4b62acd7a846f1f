"""
A client that goes away in the middle of a request (its connection closes
without C{COM_QUIT}, while a statement of it is still being served).

Its server sessions are aborted at once (L{ClientSession.connectionLost}), and
for most statements that is enough: a server streaming a result fails its next
write and stops, a server reading a C{LOAD DATA LOCAL} file gets the end of
the stream and rolls the statement back. But a statement that sends nothing
for a while (C{SLEEP()}, a long scan or sort before its first row, a lock
wait) goes on running on the server for nobody until it ends on its own:
MariaDB and MySQL notice a closed connection only when they next read or
write it. So the proxy also sends C{KILL QUERY <backend id>} on a side
connection logged in as the client's own user (who may always kill its own
threads), as C{KILL} through the proxy does. When the statement already
stopped, the server answers 1094 (unknown thread), which is expected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from obproxy_tx.wire.errors import ErrorCode
from obproxy_tx.wire.packets import ERRPacket

if TYPE_CHECKING:
    from obproxy_tx.session.client_session import ClientSession

__all__ = ["cancel_abandoned"]

_log = Logger()


def cancel_abandoned(session: ClientSession) -> bool:
    """
    The client of C{session} vanished: kill the statement its server session
    is running, if any (call it before the server sessions are let go).

    @return: whether a C{KILL QUERY} was sent.
    """
    running = session.active
    if running is None or not running.alive or session.is_proxysys or session.login is None:
        return False
    session.manager.stats.abandoned_queries_killed += 1
    killing = session.side_query(b"KILL QUERY %d" % running.backend_id, running.server)
    killing.addCallbacks(
        _killed, _not_killed, callbackArgs=(session.cs_id,), errbackArgs=(session.cs_id,)
    )
    return True


def _killed(answer: list[Any], cs_id: int) -> None:
    for event in answer:
        if event.__class__ is ERRPacket and event.error_code != ErrorCode.ER_NO_SUCH_THREAD:
            _log.info(
                "client session {cs_id}: KILL QUERY of the vanished client's statement refused: "
                "{code} {message}",
                cs_id=cs_id,
                code=event.error_code,
                message=event.message,
            )


def _not_killed(failure: Any, cs_id: int) -> None:
    _log.info(
        "client session {cs_id}: KILL QUERY of the vanished client's statement failed: {error}",
        cs_id=cs_id,
        error=failure.getErrorMessage(),
    )
