"""
The per-client-session pool of idle server sessions.

As in ODP (C{ObServerSessionPool}, one per client session by default), idle
server sessions are keyed by (server address, full login name). The client
session's last used server session is not in here: it is bound to the client
session (C{MSS_KA_CLIENT_SLAVE}); the others wait here (C{MSS_KA_SHARED}).
"""

from __future__ import annotations

from typing import Any, Iterator

__all__ = ["PoolKey", "ServerSessionPool"]

#: (server address, full login name).
PoolKey = tuple[str, str]


class ServerSessionPool:
    """
    Idle server sessions of one client session, by L{PoolKey}.
    """

    def __init__(self) -> None:
        self._idle: dict[PoolKey, list[Any]] = {}

    def put(self, session: Any) -> None:
        """
        Add an idle server session (its C{key} attribute is its L{PoolKey}).
        """
        self._idle.setdefault(session.key, []).append(session)

    def take(self, key: PoolKey) -> Any:
        """
        Remove and return an idle session for C{key} (the most recently
        pooled), or C{None}.
        """
        sessions = self._idle.get(key)
        if not sessions:
            return None
        session = sessions.pop()
        if not sessions:
            del self._idle[key]
        return session

    def remove(self, session: Any) -> bool:
        """
        Remove C{session} if it is pooled; return whether it was.
        """
        sessions = self._idle.get(session.key)
        if not sessions or session not in sessions:
            return False
        sessions.remove(session)
        if not sessions:
            del self._idle[session.key]
        return True

    def drain(self) -> list[Any]:
        """
        Remove and return every pooled session.
        """
        sessions = [session for group in self._idle.values() for session in group]
        self._idle.clear()
        return sessions

    def __iter__(self) -> Iterator[Any]:
        for group in list(self._idle.values()):
            yield from group

    def __len__(self) -> int:
        return sum(len(group) for group in self._idle.values())
