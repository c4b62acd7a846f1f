"""
Helpers for tests of code built on obproxy_tx.

L{ConnectionPair} joins a L{ServerConnection} and a L{ClientConnection} with a
fake link, h11 style: whatever one side sends is fed to the other, and the
events the other side produced are returned, so a test can walk a whole
conversation and check that both state machines agree at every step.
"""

from __future__ import annotations

from typing import Any

from obproxy_tx.wire.connection import (
    ClientConnection,
    Event,
    Phase,
    Role,
    ServerConnection,
)
from obproxy_tx.wire.constants import Capability, ServerStatus
from obproxy_tx.wire.packets import HandshakeResponse41, HandshakeV10, OKPacket

__all__ = ["DEFAULT_CAPABILITIES", "ConnectionPair"]

#: What a modern MySQL 8 server offers and a modern client asks for (without
#: CLIENT_SSL, CLIENT_COMPRESS and CLIENT_DEPRECATE_EOF, which tests add).
DEFAULT_CAPABILITIES = (
    Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_FOUND_ROWS
    | Capability.CLIENT_LONG_FLAG
    | Capability.CLIENT_CONNECT_WITH_DB
    | Capability.CLIENT_LOCAL_FILES
    | Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_MULTI_STATEMENTS
    | Capability.CLIENT_MULTI_RESULTS
    | Capability.CLIENT_PS_MULTI_RESULTS
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_CONNECT_ATTRS
    | Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.CLIENT_SESSION_TRACK
)


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
        @param server_capabilities: what the server offers (default:
            L{DEFAULT_CAPABILITIES}).
        @param client_capabilities: what the client wants (default: the same).
        @param chunk_size: delivery chunk size, see L{chunk_size}.
        @param kwargs: passed to both connection constructors.
        """
        if server_capabilities is None:
            server_capabilities = DEFAULT_CAPABILITIES
        if client_capabilities is None:
            client_capabilities = server_capabilities
        self.server = ServerConnection(server_capabilities, **kwargs)
        self.client = ClientConnection(client_capabilities, **kwargs)
        self.chunk_size = chunk_size
        self.wire: dict[Role, bytearray] = {Role.SERVER: bytearray(), Role.CLIENT: bytearray()}

    def side(self, role: Role) -> ServerConnection | ClientConnection:
        """
        @param role: which side.
        @return: that side's connection.
        """
        return self.server if role is Role.SERVER else self.client

    def deliver(self, role: Role, data: bytes) -> list[Event]:
        """
        Feed C{data} to side C{role} in chunks of L{chunk_size}.

        @param role: the receiving side.
        @param data: the bytes.
        @return: the events it produced.
        """
        receiver = self.side(role)
        if not data:
            return []
        if self.chunk_size is None:
            return receiver.receive_data(data)
        events: list[Event] = []
        step = self.chunk_size
        for start in range(0, len(data), step):
            events.extend(receiver.receive_data(data[start : start + step]))
        return events

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
        sender = self.side(role)
        data = b"".join(sender.send(event) for event in events)
        self.wire[role] += data
        other = Role.CLIENT if role is Role.SERVER else Role.SERVER
        received = self.deliver(other, data)
        self.phase()
        return received

    def start_tls(self) -> None:
        """
        Both sides report the TLS handshake done (after an C{SSLRequest}).
        """
        self.client.tls_started()
        self.server.tls_started()

    def handshake(self, **response_fields: Any) -> list[Event]:
        """
        Run the plain (no TLS, no auth switch) login: greeting, response, OK.
        Both sides end in L{Phase.COMMAND_IDLE}.

        @param response_fields: overrides for the C{HandshakeResponse41} fields.
        @return: every event received on either side, in order.
        """
        events = self.send(Role.SERVER, self.greeting())
        fields: dict[str, Any] = {
            "capabilities": self.client.capabilities
            & self.server.capabilities
            & ~Capability.CLIENT_SSL,
            "max_packet_size": 1 << 24,
            "character_set": 255,
            "username": "root",
            "auth_response": b"\x01" * 20,
            "auth_plugin_name": "mysql_native_password",
        }
        fields.update(response_fields)
        events += self.send(Role.CLIENT, HandshakeResponse41(**fields))
        events += self.send(
            Role.SERVER, OKPacket(status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT)
        )
        return events

    def greeting(self, **fields: Any) -> HandshakeV10:
        """
        Build the server's greeting from its capabilities.

        @param fields: overrides for the C{HandshakeV10} fields.
        @return: the packet (not sent).
        """
        values: dict[str, Any] = {
            "server_version": "8.0.36-obproxy_tx-test",
            "connection_id": 7,
            "auth_plugin_data": b"abcdefghij0123456789",
            "capabilities": self.server.capabilities,
            "character_set": 255,
            "status_flags": ServerStatus.SERVER_STATUS_AUTOCOMMIT,
        }
        values.update(fields)
        return HandshakeV10(**values)

    def phase(self) -> Phase:
        """
        @return: the common phase of both sides.
        @raise AssertionError: they disagree.
        """
        if self.server.phase is not self.client.phase:
            raise AssertionError(
                f"server is in {self.server.phase.name}, client in {self.client.phase.name}"
            )
        return self.server.phase
