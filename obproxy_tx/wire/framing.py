"""
MySQL packet framing: a 3-byte little-endian payload length and a 1-byte
sequence id in front of every payload.

Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html}

A payload of C{0xFFFFFF} bytes or more is sent as several chunks of exactly
C{0xFFFFFF} bytes followed by one shorter chunk (possibly empty), each chunk with
the next sequence id. L{PacketFramer} joins the chunks again, so its callers only
ever see whole logical packets (L{Packet}).

The sequence id is one counter shared by both directions of a conversation: a
command is sent with 0, the first reply chunk carries 1, and so on, wrapping
at 256. L{PacketFramer.reset_sequence} starts the count again at 0 for a new command.

This module is sans-IO: it never touches a socket, it only turns bytes into
packets and payloads into bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from obproxy_tx.wire.constants import MAX_PACKET_CHUNK
from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

#: Packs and unpacks a packet header as one little-endian 32-bit word:
#: C{length | seq << 24}.
_HEADER = struct.Struct("<I")
_HEADER_SIZE = 4

#: The default limit on one logical packet's payload (1 GiB, MySQL's maximum
#: C{max_allowed_packet}).
DEFAULT_MAX_PACKET_SIZE = 1 << 30


class Packet:
    """
    One logical packet: its continuation chunks are already joined.

    A hand-written slotted class rather than an attrs one: one is made per
    received packet, so its constructor must be the cheapest Python allows.
    Treat it as immutable.

    @ivar seq: the sequence id of the packet's first chunk.
    @ivar payload: the whole payload, without any header.
    """

    __slots__ = ("payload", "seq")

    def __init__(self, seq: int, payload: bytes) -> None:
        self.seq = seq
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        if other.__class__ is Packet:
            return self.seq == other.seq and self.payload == other.payload
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((Packet, self.seq, self.payload))

    def __repr__(self) -> str:
        return f"Packet(seq={self.seq!r}, payload={self.payload!r})"


def frame_payload(payload: bytes, seq: int) -> tuple[bytes, int]:
    """
    Frame C{payload} starting at sequence id C{seq}, splitting it into
    C{0xFFFFFF}-byte chunks when it is that long or longer.

    A payload of exactly M{k * 0xFFFFFF} bytes ends with an empty chunk, so the
    reader can tell it is complete.

    @param payload: the payload to frame.
    @param seq: the sequence id of the first chunk (0..255).
    @return: the framed bytes and the sequence id following the last chunk.
    """
    length = len(payload)
    if length < MAX_PACKET_CHUNK:
        return _HEADER.pack(length | (seq << 24)) + payload, (seq + 1) & 0xFF
    view = memoryview(payload)
    pieces: list[bytes | memoryview] = []
    full_header = MAX_PACKET_CHUNK
    for start in range(0, length - MAX_PACKET_CHUNK + 1, MAX_PACKET_CHUNK):
        pieces.append(_HEADER.pack(full_header | (seq << 24)))
        pieces.append(view[start : start + MAX_PACKET_CHUNK])
        seq = (seq + 1) & 0xFF
    rest = length % MAX_PACKET_CHUNK
    pieces.append(_HEADER.pack(rest | (seq << 24)))
    if rest:
        pieces.append(view[length - rest :])
    return b"".join(pieces), (seq + 1) & 0xFF


class PacketFramer:
    """
    Splits a byte stream into L{Packet}s and frames payloads into bytes, for one
    connection. Sans-IO: feed it whatever the transport delivered, in any
    chunking (one byte at a time included), and it returns the same packets.

    Sequence ids are checked strictly: every received chunk must carry the
    expected id (L{next_seq}), otherwise L{RemoteProtocolError} with
    C{ER_NET_PACKETS_OUT_OF_ORDER} is raised. The counter is shared by both
    directions, as in the MySQL protocol: receiving a chunk with id I{n} makes
    the next expected or sent id I{n + 1}.

    Two ways to receive:

      - L{receive_data} returns every complete packet at once;
      - L{feed} plus repeated L{next_packet} hands them out one at a time, so a
        caller can L{reset_sequence} between two pipelined commands (each of
        which starts at sequence id 0).

    @ivar max_packet_size: the largest logical payload accepted from the peer;
        a longer one raises L{RemoteProtocolError} with
        C{ER_NET_PACKET_TOO_LARGE} as soon as its header shows it.
    """

    __slots__ = (
        "max_packet_size",
        "_buffer",
        "_offset",
        "_pieces",
        "_pieces_len",
        "_need",
        "_parts",
        "_parts_len",
        "_first_seq",
        "_next_seq",
        "check_sequence",
    )

    def __init__(
        self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE, check_sequence: bool = True
    ) -> None:
        """
        @param max_packet_size: see L{max_packet_size}.
        @param check_sequence: whether received sequence ids are checked. Only
            the compressed protocol turns this off: there the compressed layer
            carries the checked sequence id and the inner ids are not reliable.
        """
        self.max_packet_size = max_packet_size
        self.check_sequence = check_sequence
        # Joined bytes being parsed, and the offset of the first unparsed byte.
        self._buffer = b""
        self._offset = 0
        # Bytes received after _buffer, not joined yet (joined only when a
        # whole chunk can be available, so feeding stays linear-time).
        self._pieces: list[bytes] = []
        self._pieces_len = 0
        # Bytes needed after _offset before another chunk can be parsed.
        self._need = _HEADER_SIZE
        # Continuation chunks of a logical packet not complete yet.
        self._parts: list[bytes] = []
        self._parts_len = 0
        self._first_seq = 0
        self._next_seq = 0

    @property
    def next_seq(self) -> int:
        """
        The sequence id the next chunk, received or sent, must carry.
        """
        return self._next_seq

    @property
    def buffered(self) -> int:
        """
        How many received bytes are held that do not form a whole packet yet.
        """
        return len(self._buffer) - self._offset + self._pieces_len + self._parts_len

    def reset_sequence(self) -> None:
        """
        Start a new command: the next chunk, received or sent, has sequence id 0.
        """
        self._next_seq = 0

    def set_sequence(self, seq: int) -> None:
        """
        Set the sequence id of the next chunk, received or sent.

        @param seq: 0..255.
        @raise LocalProtocolError: if C{seq} is not a byte.
        """
        if not 0 <= seq <= 0xFF:
            raise LocalProtocolError(f"sequence id out of range: {seq}")
        self._next_seq = seq

    def frame(self, payload: bytes) -> bytes:
        """
        Frame one logical packet with the next sequence ids.

        @param payload: the packet's payload; split into C{0xFFFFFF}-byte chunks
            when needed (a payload of exactly M{k * 0xFFFFFF} bytes ends with an
            empty chunk).
        @return: the bytes to write to the transport.
        """
        data, self._next_seq = frame_payload(payload, self._next_seq)
        return data

    def frame_many(self, payloads: Sequence[bytes]) -> bytes:
        """
        Frame several logical packets in a row (e.g. a whole result set).

        @param payloads: the packets' payloads, in order.
        @return: the bytes to write.
        """
        return b"".join([self.frame(payload) for payload in payloads])

    def feed(self, data: bytes) -> None:
        """
        Buffer received bytes without parsing them; see L{next_packet}.

        @param data: bytes from the transport, in any chunking.
        """
        if data:
            if type(data) is not bytes:
                data = bytes(data)
            self._pieces.append(data)
            self._pieces_len += len(data)

    def next_packet(self) -> Packet | None:
        """
        Return the next complete logical packet from the buffered bytes.

        @return: the packet, or C{None} if more bytes are needed.
        @raise RemoteProtocolError: on a wrong sequence id
            (C{ER_NET_PACKETS_OUT_OF_ORDER}) or an oversized payload
            (C{ER_NET_PACKET_TOO_LARGE}).
        """
        while True:
            buffer = self._buffer
            offset = self._offset
            available = len(buffer) - offset
            if available < self._need:
                if available + self._pieces_len < self._need:
                    return None
                # Enough bytes have arrived for progress: join them once.
                if available:
                    self._pieces.insert(0, buffer[offset:] if offset else buffer)
                buffer = self._buffer = b"".join(self._pieces)
                offset = self._offset = 0
                available = len(buffer)
                self._pieces = []
                self._pieces_len = 0
            header = _HEADER.unpack_from(buffer, offset)[0]
            length = header & 0xFFFFFF
            seq = header >> 24
            if self.check_sequence and seq != self._next_seq:
                raise RemoteProtocolError(
                    f"packets out of order: got sequence id {seq}, expected {self._next_seq}",
                    ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER,
                )
            if self._parts_len + length > self.max_packet_size:
                # The chunk's header was received, so an ERR about it answers
                # with the following sequence id, as a server does.
                self._next_seq = (seq + 1) & 0xFF
                raise RemoteProtocolError(
                    f"got a packet bigger than the maximum of {self.max_packet_size} bytes",
                    ErrorCode.ER_NET_PACKET_TOO_LARGE,
                )
            end = offset + _HEADER_SIZE + length
            if end > len(buffer):
                self._need = _HEADER_SIZE + length
                if self._pieces_len + available < self._need:
                    return None
                continue
            chunk = buffer[offset + _HEADER_SIZE : end]
            if end == len(buffer):
                self._buffer = b""
                self._offset = 0
            else:
                self._offset = end
            self._need = _HEADER_SIZE
            self._next_seq = (seq + 1) & 0xFF
            if length == MAX_PACKET_CHUNK:
                if not self._parts:
                    self._first_seq = seq
                self._parts.append(chunk)
                self._parts_len += length
                continue
            if self._parts:
                self._parts.append(chunk)
                payload = b"".join(self._parts)
                first = self._first_seq
                self._parts = []
                self._parts_len = 0
                return Packet(first, payload)
            return Packet(seq, chunk)

    def receive_single(self, data: bytes) -> bytes | None:
        """
        Take C{data} when it is exactly one whole packet of one chunk, nothing
        is buffered and its sequence id is the expected one: the usual shape
        of a client's command. Then return its payload; otherwise take nothing
        and return C{None} (use L{feed}).

        @param data: bytes from the transport.
        @return: the payload, or C{None}.
        """
        if self._pieces_len or self._offset != len(self._buffer) or self._parts:
            return None
        header = _HEADER.unpack_from(data)[0]
        length = header & 0xFFFFFF
        if (
            length + _HEADER_SIZE != len(data)
            or length >= MAX_PACKET_CHUNK
            or length > self.max_packet_size
            or (self.check_sequence and header >> 24 != self._next_seq)
        ):
            return None
        self._next_seq = ((header >> 24) + 1) & 0xFF
        return data[_HEADER_SIZE:]

    def receive_data(self, data: bytes) -> list[Packet]:
        """
        Feed received bytes and return every logical packet now complete.

        @param data: bytes from the transport, in any chunking.
        @return: the complete packets, in order (possibly none).
        @raise RemoteProtocolError: on a wrong sequence id
            (C{ER_NET_PACKETS_OUT_OF_ORDER}) or an oversized payload
            (C{ER_NET_PACKET_TOO_LARGE}).
        """
        self.feed(data)
        packets: list[Packet] = []
        while True:
            packet = self.next_packet()
            if packet is None:
                return packets
            packets.append(packet)

    def take_buffered(self) -> bytes:
        """
        Remove and return the received bytes not parsed yet (the framing layer
        is being replaced, e.g. by the compressed protocol, or the stream is
        handed to TLS).

        @return: the unparsed bytes.
        @raise LocalProtocolError: if a multi-chunk packet is half received.
        """
        if self._parts:
            raise LocalProtocolError("cannot hand over the stream inside a multi-chunk packet")
        rest = self._buffer[self._offset :] + b"".join(self._pieces)
        self._buffer = b""
        self._offset = 0
        self._pieces = []
        self._pieces_len = 0
        self._need = _HEADER_SIZE
        return rest
