"""
A realm turning an authenticated MySQL user into an application session.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

from twisted.cred.portal import IRealm
from zope.interface import implementer

from obproxy_tx.protocol.interfaces import ConnectionInfo, IMySQLSession

#: Builds a session: C{(avatar_id, connection_info) -> IMySQLSession provider}.
SessionFactory = Callable[[str, ConnectionInfo], IMySQLSession]


@implementer(IRealm)
class MySQLRealm:
    """
    Give every login a fresh session from a factory.

    The server protocol logs in with its L{ConnectionInfo} as the C{mind}; the
    logout callable calls the session's C{close()}.
    """

    def __init__(self, session_factory: SessionFactory) -> None:
        """
        @param session_factory: called with the avatar id and the connection
            info; returns an L{IMySQLSession} provider.
        """
        self._session_factory = session_factory

    def requestAvatar(  # noqa: N802
        self,
        avatarId: Any,  # noqa: N803
        mind: Any,
        *interfaces: Any,
    ) -> Tuple[Any, IMySQLSession, Callable[[], None]]:
        """
        Build a session for C{avatarId}.

        @param avatarId: the user name the checker returned.
        @param mind: the L{ConnectionInfo} of the connection.
        @param interfaces: must include L{IMySQLSession}.
        @return: C{(IMySQLSession, session, logout)}.
        @raise NotImplementedError: when L{IMySQLSession} is not asked for.
        """
        if IMySQLSession not in interfaces:
            raise NotImplementedError("MySQLRealm only provides IMySQLSession")
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else str(avatarId)
        session = self._session_factory(name, mind)
        return IMySQLSession, session, session.close
