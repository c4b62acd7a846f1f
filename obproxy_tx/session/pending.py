"""
A cap on the connections of one client address that have not logged in yet
(C{max_pending_logins_per_ip}, 0: no cap).

Why: every accepted connection counts towards C{client_max_connections} (as
in ODP), and one that never finishes its handshake (slowloris) is only closed
at C{client_login_timeout}. Without this cap, one address opening
C{client_max_connections} such connections would make every other client's
login fail with ERR 1203 until they time out. With it, that address holds at
most the cap of them; its connections over the cap are answered at once with
MySQL's ERR 1040 "Too many connections", before any greeting (as a MySQL
server answers over its C{max_connections}), and closed. They are never client
sessions: nothing else counts them (only C{pending_logins_refused}).

A connection is pending from its accept until its login succeeded (the OK
was decided) or it closed, whichever comes first. Connections without an
address (a UNIX socket) are not counted.

L{PendingLogins} is pure (no reactor, no I/O) and unit-tested alone;
L{RefusedConnection} is the thin Twisted side.
"""

from __future__ import annotations

from typing import Any, Dict

import attrs
from twisted.internet.protocol import Protocol

from obproxy_tx.wire.errors import ErrorCode
from obproxy_tx.wire.framing import frame_payload
from obproxy_tx.wire.packets import NO_CAPABILITIES, ERRPacket

__all__ = ["PendingLogins", "RefusedConnection", "too_many_pending_logins"]


def too_many_pending_logins(address: str, cap: int) -> ERRPacket:
    """
    The answer to a connection over C{max_pending_logins_per_ip}:
    MySQL's C{ER_CON_COUNT_ERROR} (1040, SQLSTATE 08004), naming the cap.

    @param address: the client's address.
    @param cap: the cap in force.
    """
    return ERRPacket(
        ErrorCode.ER_CON_COUNT_ERROR,
        f"Too many connections: {address} already has {cap} connections that have not "
        f"logged in yet (max_pending_logins_per_ip)",
        "08004",
    )


@attrs.define
class PendingLogins:
    """
    The connections not logged in yet, per client address.

    @ivar per_address: how many are pending, by address.
    @ivar sessions: the address of each pending connection, by client session id.
    """

    per_address: Dict[str, int] = attrs.field(factory=dict)
    sessions: Dict[int, str] = attrs.field(factory=dict)

    def of(self, address: str) -> int:
        """
        How many connections of C{address} are pending.
        """
        return self.per_address.get(address, 0)

    def admits(self, address: str, cap: int) -> bool:
        """
        Whether one more connection of C{address} may be accepted.

        @param cap: C{max_pending_logins_per_ip} (0: no cap).
        """
        return cap <= 0 or self.per_address.get(address, 0) < cap

    def add(self, session_id: int, address: str) -> None:
        """
        Count the connection of client session C{session_id} as pending (once).
        """
        if session_id in self.sessions:
            self.done(session_id)
        self.sessions[session_id] = address
        self.per_address[address] = self.per_address.get(address, 0) + 1

    def done(self, session_id: int) -> None:
        """
        The connection logged in or closed: it is no longer pending (nothing
        if it was not counted, or was already done).
        """
        address = self.sessions.pop(session_id, None)
        if address is None:
            return
        left = self.per_address.get(address, 0) - 1
        if left > 0:
            self.per_address[address] = left
        else:
            self.per_address.pop(address, None)


class RefusedConnection(Protocol):
    """
    Answers one ERR as the first packet (sequence id 0, before any greeting,
    so without the SQLSTATE marker, which needs capabilities not yet agreed:
    what a MySQL server sends over its C{max_connections}) and closes.
    """

    transport: Any

    def __init__(self, packet: ERRPacket) -> None:
        """
        @param packet: the error to answer.
        """
        self.packet = packet

    def connectionMade(self) -> None:  # noqa: N802
        """
        Send the error and close once it is written.
        """
        framed, _ = frame_payload(self.packet.encode(NO_CAPABILITIES), 0)
        self.transport.write(framed)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """
        Whatever the client sends meanwhile is ignored.
        """
