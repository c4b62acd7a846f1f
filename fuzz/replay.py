"""
Replay a recorded MySQL exchange through a sans-IO proxy.

A recording is a sequence of records, each C{direction (1 byte: 0 client to
server, 1 server to client) | length (4 bytes, little-endian) | bytes}: what
one side's C{dataReceived} got. A fuzz input is a mode byte followed by a
recording; a record cut short or a direction byte out of range is read as
far as it goes (mutated inputs are any bytes).

The proxy in the middle is the one obproxy_tx builds on: C{front}, a
L{ServerConnection} the client talks to; C{back}, a L{ClientConnection}
talking to the server. Each side's bytes go to the conversation that receives
them; every packet it hands out is sent on by the other conversation
(C{RawPacket}, as a proxy relays a payload); with the relay mode bit, answers
to queries and executes go through L{AnswerRelay} when the proxy would use it.

The oracle: receiving may raise L{RemoteProtocolError} (hostile bytes end
the replay); anything else is a bug, and so is the other conversation
refusing to send on a packet its twin just accepted in the same phase.
"""

from __future__ import annotations

import struct
from typing import Iterator, List, Tuple

from obproxy_tx.wire.connection import (
    ClientConnection,
    ConnectionClosed,
    Phase,
    ServerConnection,
)
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.errors import RemoteProtocolError
from obproxy_tx.wire.packets import RawPacket
from obproxy_tx.wire.relay import AnswerRelay

__all__ = ["CLIENT", "SERVER", "MODE_RELAY", "Proxy", "encode_records", "parse_records", "replay"]

#: Record directions.
CLIENT = 0
SERVER = 1
#: Mode bit: answers go through L{AnswerRelay} where the proxy would use it.
MODE_RELAY = 1
_RECORD = struct.Struct("<BI")
#: The proxy's limit on one packet (small: hostile sizes are refused at once).
MAX_PACKET = 1 << 20

Record = Tuple[int, bytes]


def encode_records(records: List[Record]) -> bytes:
    """
    Serialise records.

    @param records: C{(direction, bytes)} pairs.
    @return: the recording.
    """
    return b"".join(_RECORD.pack(direction, len(data)) + data for direction, data in records)


def parse_records(data: bytes) -> Iterator[Record]:
    """
    Read records from (possibly mutated) bytes.

    @param data: a recording.
    @return: C{(direction, bytes)} pairs; the direction is taken modulo 2, a
        length past the end is cut to what is there.
    """
    position = 0
    while position + _RECORD.size <= len(data):
        direction, length = _RECORD.unpack_from(data, position)
        position += _RECORD.size
        chunk = data[position : position + length]
        position += length
        if chunk:
            yield direction & 1, chunk


class InconsistentProxyError(AssertionError):
    """One conversation accepted a packet its twin refuses to send on."""


class Proxy:
    """
    The sans-IO proxy of the replay.

    @ivar front: the conversation with the client.
    @ivar back: the conversation with the server.
    """

    def __init__(self, relay: bool) -> None:
        caps = ~Capability(0)
        self.front = ServerConnection(caps, max_packet_size=MAX_PACKET)
        self.back = ClientConnection(caps, max_packet_size=MAX_PACKET)
        self._use_relay = relay
        self._relay = AnswerRelay(lambda ok: ok)
        self._relaying = False

    def from_client(self, data: bytes) -> bool:
        """
        Bytes the client sent. Returns whether the replay goes on.
        """
        events = self.front.receive_data(data)
        if not all(self._forward(self.back, event) for event in events):
            return False
        if self.front.phase is Phase.SSL_REQUESTED:
            return False  # the rest is TLS: not replayed
        command = self.back.command
        if (
            self._use_relay
            and command is not None
            and not self._relaying
            and AnswerRelay.possible(self.back, self.front)
        ):
            self._relaying = self._relay.start(self.back, self.front)
        return True

    def from_server(self, data: bytes) -> bool:
        """
        Bytes the server sent. Returns whether the replay goes on.
        """
        if self._relaying:
            self._relay.feed(data)
            if not self._relay.done and self._relay.leftover is None:
                return True
            self._relaying = False
            leftover = self._relay.leftover
            if not leftover:
                return True
            data = leftover
        events = self.back.receive_data(data)
        return all(self._forward(self.front, event) for event in events)

    def _forward(self, conversation: ServerConnection | ClientConnection, event: object) -> bool:
        if isinstance(event, ConnectionClosed):
            return False
        # The twin accepted the packet in the phase both are in: sending it
        # on must work.
        receiver = self.back if conversation is self.front else self.front
        phase = conversation.phase
        try:
            payload = event.encode(receiver.capabilities)  # type: ignore[attr-defined]
            conversation.send(RawPacket(bytes(payload)))
        except Exception as exc:
            raise InconsistentProxyError(
                f"{type(receiver).__name__} accepted {event!r} in {phase.name}, "
                f"{type(conversation).__name__} refused to send it on: {exc!r}"
            ) from exc
        return True


def replay(data: bytes) -> Proxy:
    """
    Replay a fuzz input (mode byte + recording).

    @param data: the input.
    @return: the proxy, where the replay ended.
    @raise InconsistentProxyError: see the module docstring.
    """
    proxy = Proxy(relay=bool(data[:1] and data[0] & MODE_RELAY))
    try:
        for direction, chunk in parse_records(data[1:]):
            going_on = proxy.from_client(chunk) if direction == CLIENT else proxy.from_server(chunk)
            if not going_on:
                break
    except RemoteProtocolError as exc:
        # Hostile bytes: refused with a MySQL error the proxy can report.
        assert exc.error_code > 0 and len(exc.sqlstate) == 5, exc
    return proxy
