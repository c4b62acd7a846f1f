"""
Helpers for tests of code built on obproxy_tx.

L{ConnectionPair} joins a L{ServerConnection} and a L{ClientConnection} with a
fake link, h11 style: whatever one side sends is fed to the other, and the
events the other side produced are returned, so a test can walk a whole
conversation and check that both state machines agree at every step.
"""

from __future__ import annotations

from typing import Any

from obproxy_tx.wire.connection import ClientConnection, Event, Phase, Role, ServerConnection
from obproxy_tx.wire.constants import Capability

__all__ = ["ConnectionPair"]


class ConnectionPair:
    """
    A server and a client connection joined by a fake link.

    @ivar server: the L{ServerConnection}.
    @ivar client: the L{ClientConnection}.
    @ivar chunk_size: when not C{None}, bytes are delivered to the receiving side
        in chunks of this size (C{1}: one byte at a time).
    @ivar wire: every byte sent so far, per sending role (C{wire[Role.SERVER]}).
    """

    def __init__(
        self,
        server_capabilities: Capability | None = None,
        client_capabilities: Capability | None = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        """
        @param server_capabilities: what the server offers (default: a typical
            modern server's set).
        @param client_capabilities: what the client wants (default: the same).
        @param chunk_size: delivery chunk size, see L{chunk_size}.
        @param kwargs: passed to both connection constructors.
        """
        raise NotImplementedError

    def side(self, role: Role) -> ServerConnection | ClientConnection:
        """
        @param role: which side.
        @return: that side's connection.
        """
        raise NotImplementedError

    def send(self, role: Role, *events: Event) -> list[Event]:
        """
        Have side C{role} send C{events}, deliver the bytes to the other side,
        check that both sides are in the same phase, and return the events the
        other side received.

        @param role: the sending side.
        @param events: what to send.
        @return: the events the receiving side produced.
        @raise AssertionError: the two sides disagree on the phase afterwards.
        """
        raise NotImplementedError

    def handshake(self, **response_fields: Any) -> list[Event]:
        """
        Run the plain (no TLS, no auth switch) login: greeting, response, OK.
        Both sides end in L{Phase.COMMAND_IDLE}.

        @param response_fields: overrides for the C{HandshakeResponse41} fields.
        @return: every event received on either side, in order.
        """
        raise NotImplementedError

    def phase(self) -> Phase:
        """
        @return: the common phase of both sides.
        @raise AssertionError: they disagree.
        """
        raise NotImplementedError
