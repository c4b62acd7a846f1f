"""
L{AnswerRelay}: a proxy's fast path for the server's answer to one command.

A proxy holds two conversations: a L{ClientConnection} towards the server and a
L{ServerConnection} towards its client. When both negotiated the same packet
formats, the server's answer to a relayed C{COM_QUERY} or C{COM_STMT_EXECUTE}
reaches the client packet for packet with the same sequence ids, so its bytes
can go through verbatim. L{AnswerRelay} walks only the packet headers of what
the server sends and the few packets that decide where the answer goes:

  - the first packet of each result: an OK or ERR (decoded), a column count
    (its integer read), or a C{LOCAL INFILE} request, where the relay hands the
    rest of the answer back to the two connections (their phase and sequence
    ids set as if they had seen every packet);
  - column definitions and rows are counted, never decoded or copied: a row
    larger than one read goes through piece by piece;
  - the EOF or OK that ends rows: its status flags (more results? transaction?).

OK packets are decoded only when the proxy must learn from them (a
C{last_insert_id}, session-state changes) or rewrite them for a client
without C{CLIENT_SESSION_TRACK}: C{learn_ok} gets the decoded packet and
returns the one the client is to see.

When the answer is complete, both connections are back in
L{Phase.COMMAND_IDLE} with the status flags of the last OK or EOF, exactly as
if every packet had been received by one and sent by the other.

Sans-IO like the rest of this package: C{feed} takes the bytes the server sent
and returns the bytes to write to the client.
"""

from __future__ import annotations

import struct
from typing import Callable

from obproxy_tx.wire.connection import ClientConnection, Phase, ServerConnection, _status_flags
from obproxy_tx.wire.constants import MAX_PACKET_CHUNK, Capability, CursorType, ServerStatus
from obproxy_tx.wire.errors import ErrorCode, RemoteProtocolError
from obproxy_tx.wire.framing import PacketFramer, frame_payload
from obproxy_tx.wire.packets import ComQuery, ComStmtExecute, OKPacket

__all__ = ["AnswerRelay"]

_HEADER = struct.Struct("<I")

# Where in an answer the relay is (plain ints: compared once per packet).
_PENDING = 0  # the first packet of a result is due
_COLUMNS = 1  # column definitions are due
_COLUMNS_EOF = 2  # the EOF after the definitions is due
_ROWS = 3  # rows, then EOF/OK/ERR
_IDLE = Phase.COMMAND_IDLE
_PHASES = {
    _PENDING: Phase.RESULT_PENDING,
    _COLUMNS: Phase.RESULT_COLUMNS,
    _COLUMNS_EOF: Phase.RESULT_COLUMNS_EOF,
    _ROWS: Phase.RESULT_ROWS,
}

#: Capabilities that change how an answer's packets look: they must be the
#: same on both sides for the bytes to be relayed as they are.
_SAME_FORMAT = int(
    Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_DEPRECATE_EOF
    | Capability.MARIADB_CLIENT_EXTENDED_TYPE_INFO
    | Capability.CLIENT_OPTIONAL_RESULTSET_METADATA
    | Capability.MARIADB_CLIENT_CACHE_METADATA
)
#: Capabilities under which the relay does not know the answer's shape.
_UNKNOWN_SHAPE = int(
    Capability.CLIENT_OPTIONAL_RESULTSET_METADATA | Capability.MARIADB_CLIENT_CACHE_METADATA
)
_PROTOCOL_41 = int(Capability.CLIENT_PROTOCOL_41)
_SESSION_TRACK = int(Capability.CLIENT_SESSION_TRACK)
_MORE_RESULTS = int(ServerStatus.SERVER_MORE_RESULTS_EXISTS)
_STATE_CHANGED = int(ServerStatus.SERVER_SESSION_STATE_CHANGED)
_CURSOR_FLAGS = int(
    CursorType.CURSOR_TYPE_READ_ONLY
    | CursorType.CURSOR_TYPE_FOR_UPDATE
    | CursorType.CURSOR_TYPE_SCROLLABLE
)
#: How many bytes a length-encoded integer takes, by its first byte (0xFB and
#: 0xFF are not integers: 0 marks them).
_LENENC_SIZE = bytes([1] * 0xFB + [0, 3, 4, 9, 0])


def _malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed packet: {message}", ErrorCode.ER_MALFORMED_PACKET)


class AnswerRelay:
    """
    Relays the server's answer to one command to the client verbatim (see the
    module docstring). Reusable: L{start} begins the next answer.

    @ivar done: the answer is complete; both connections are idle again.
    @ivar failed: the answer carried an ERR.
    @ivar leftover: bytes received after the point where the relay stopped:
        after a complete answer (C{done}; the server sent more than the answer),
        or from a C{LOCAL INFILE} request on (not C{done}: the connections are
        in L{Phase.RESULT_PENDING} with the request's sequence id, so feed
        these bytes to the server connection's C{receive_data} and go on with
        the events). C{None} when nothing was left over.
    """

    __slots__ = (
        "_client",
        "_columns",
        "_continued",
        "_deprecate_eof",
        "_hold",
        "_learn_ok",
        "_max_hold",
        "_rewrite_ok",
        "_seq",
        "_server",
        "_server_caps",
        "_client_caps",
        "_skip",
        "_state",
        "_status",
        "_warnings",
        "done",
        "failed",
        "leftover",
    )

    def __init__(self, learn_ok: Callable[[OKPacket], OKPacket]) -> None:
        """
        @param learn_ok: called with each OK packet the proxy must see (one
            with a C{last_insert_id} or session-state changes, or any OK when
            the client lacks C{CLIENT_SESSION_TRACK}); returns the OK the
            client gets (the same object: relayed as the server sent it,
            unless the client's capabilities need it encoded again).
        """
        self._learn_ok = learn_ok
        self._server: ClientConnection | None = None
        self._client: ServerConnection | None = None
        self.done = True
        self.failed = False
        self.leftover: bytes | None = None
        self._reset(0)

    def _reset(self, seq: int) -> None:
        self._state = _PENDING
        self._seq = seq
        self._skip = 0
        self._hold = b""
        self._columns = 0
        self._continued = False
        self._status = -1
        self._warnings = 0

    @staticmethod
    def compatible(server: ClientConnection, client: ServerConnection) -> bool:
        """
        Whether the two conversations carry answers in the same packets: the
        same formats negotiated, no compression. Fixed once both are logged
        in, so a caller may remember it for the pair.

        @param server: the conversation with the server.
        @param client: the conversation with the client.
        """
        if (
            server._framer.__class__ is not PacketFramer
            or client._framer.__class__ is not PacketFramer
        ):
            return False
        server_caps = int(server.capabilities)
        client_caps = int(client.capabilities)
        return (
            not (server_caps ^ client_caps) & _SAME_FORMAT
            and not server_caps & _UNKNOWN_SHAPE
            and bool(server_caps & _PROTOCOL_41)
        )

    @classmethod
    def possible(cls, server: ClientConnection, client: ServerConnection) -> bool:
        """
        Whether the answer to the command that just went from C{client} to
        C{server} can be relayed verbatim: L{compatible} conversations, and
        L{start} would take it.

        @param server: the conversation with the server (the command sent).
        @param client: the conversation with the client (the command received).
        """
        return cls.compatible(server, client) and cls._ready(server, client)

    @staticmethod
    def _ready(server: ClientConnection, client: ServerConnection) -> bool:
        # A COM_QUERY or a COM_STMT_EXECUTE without a cursor just went out, both
        # conversations wait for the answer's first packet at the same sequence
        # id, and nothing of it was received ahead.
        command = server.command
        cls = command.__class__
        if cls is not ComQuery and (
            cls is not ComStmtExecute or int(command.flags) & _CURSOR_FLAGS
        ):
            return False
        server_framer = server._framer
        return (
            server._phase is Phase.RESULT_PENDING
            and client._phase is Phase.RESULT_PENDING
            and not server_framer._pieces_len
            and server_framer._offset == len(server_framer._buffer)
            and server_framer._next_seq == client._framer._next_seq
        )

    def start(self, server: ClientConnection, client: ServerConnection) -> bool:
        """
        Begin relaying the answer to the command just sent, if it can be
        (see L{possible}; the caller checked that the two are L{compatible}).

        @param server: the conversation with the server.
        @param client: the conversation with the client.
        @return: whether the relay took the answer; if not, nothing changed.
        """
        if not self._ready(server, client):
            return False
        if server is not self._server or client is not self._client:
            # Fixed for a pair of conversations: set when the pair changes.
            self._server = server
            self._client = client
            self._server_caps = server.capabilities
            self._client_caps = client.capabilities
            self._deprecate_eof = server._deprecate_eof
            self._rewrite_ok = not int(client.capabilities) & _SESSION_TRACK
            self._max_hold = server.max_packet_size
        self.done = False
        self.failed = False
        self.leftover = None
        self._reset(server._framer._next_seq)
        return True

    def feed(self, data: bytes) -> list[bytes]:
        """
        Take bytes the server sent; return the bytes to write to the client.

        @param data: bytes from the server, in any chunking.
        @return: framed bytes for the client, in order (possibly none).
        @raise RemoteProtocolError: the server broke the protocol (bad
            sequence id, malformed or unexpected packet). The server
            connection is then in L{Phase.ERROR}; call L{abandon}.
        """
        if self._hold:
            data = self._hold + data
            self._hold = b""
        end = len(data)
        pos = self._skip
        if pos >= end:
            # Inside one large packet (a big row): it all goes through.
            self._skip = pos - end
            return [data]
        self._skip = 0
        out: list[bytes] = []
        run = 0  # where the bytes not yet put in out begin
        # The loop runs once per packet: state in locals, written back after it.
        seq = self._seq
        state = self._state
        continued = self._continued
        columns = self._columns
        unpack = _HEADER.unpack_from
        try:
            while pos < end:
                if state == _ROWS and not continued:
                    # The rows of a result, the bulk of a large answer: a tight loop
                    # over plain rows; anything else goes through the general one.
                    while end - pos > 4:
                        header = unpack(data, pos)[0]
                        if header >> 24 != seq or data[pos + 4] >= 0xFE:
                            break
                        length = header & 0xFFFFFF
                        if length == MAX_PACKET_CHUNK or not length:
                            break
                        pos += 4 + length
                        seq = (seq + 1) & 0xFF
                    if pos >= end:
                        break
                if end - pos < 4:
                    break  # a header cut in two
                header = unpack(data, pos)[0]
                if header >> 24 != seq:
                    raise RemoteProtocolError(
                        f"packets out of order: got sequence id {header >> 24}, expected {seq}",
                        ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER,
                    )
                length = header & 0xFFFFFF
                body = pos + 4
                following = body + length
                if continued:
                    # A continuation chunk of a large packet: its first byte is data.
                    continued = length == MAX_PACKET_CHUNK
                elif not length:
                    raise _malformed("empty payload")
                elif body == end:
                    break  # the first payload byte tells what the packet is
                elif state == _ROWS:
                    first = data[body]
                    if first < 0xFE or (first == 0xFE and length == MAX_PACKET_CHUNK):
                        if length == MAX_PACKET_CHUNK:
                            continued = True
                    else:
                        # The end of the rows (EOF, or OK under DEPRECATE_EOF) or an ERR.
                        if following > end:
                            self._check_hold(length)
                            break
                        seq = (seq + 1) & 0xFF
                        pos = following
                        if first == 0xFF:
                            self._error()
                            break
                        if length < 7:
                            if length != 5:
                                raise _malformed(f"EOF packet of {length} bytes")
                            self._warnings = data[body + 1] | data[body + 2] << 8
                            self._status = data[body + 3] | data[body + 4] << 8
                        else:
                            replaced = self._ok(data, body, following, (seq - 1) & 0xFF)
                            if replaced is not None:
                                out.append(data[run : body - 4])
                                out.append(replaced)
                                run = following
                        if not self._status & _MORE_RESULTS:
                            self._finish()
                            break
                        state = _PENDING
                        continue
                elif state == _COLUMNS:
                    columns -= 1
                    if length == MAX_PACKET_CHUNK:
                        continued = True
                    if not columns:
                        state = _ROWS if self._deprecate_eof else _COLUMNS_EOF
                else:
                    # The first packet of a result, or the EOF after the columns: small
                    # packets read whole.
                    if following > end:
                        self._check_hold(length)
                        break
                    first = data[body]
                    if state == _COLUMNS_EOF:
                        if first != 0xFE or length != 5:
                            raise _malformed("expected the EOF after the column definitions")
                        self._warnings = data[body + 1] | data[body + 2] << 8
                        self._status = data[body + 3] | data[body + 4] << 8
                        state = _ROWS
                    elif first == 0x00:
                        replaced = self._ok(data, body, following, seq)
                        if replaced is not None:
                            out.append(data[run:pos])
                            out.append(replaced)
                            run = following
                        seq = (seq + 1) & 0xFF
                        pos = following
                        if not self._status & _MORE_RESULTS:
                            self._finish()
                            break
                        continue
                    elif first == 0xFF:
                        seq = (seq + 1) & 0xFF
                        pos = following
                        self._error()
                        break
                    elif first == 0xFB:
                        # LOCAL INFILE: the connections take over from this packet.
                        self._seq = seq
                        self._state = state
                        self._hand_over(data[pos:])
                        if run < pos:
                            out.append(data[run:pos])
                        return out
                    else:
                        size = _LENENC_SIZE[first]
                        if size == 0 or size > length:
                            raise _malformed("bad column count")
                        if size == 1:
                            columns = first
                        else:
                            columns = int.from_bytes(data[body + 1 : body + size], "little")
                        if columns == 0 or size != length:
                            raise _malformed("bad column count")
                        state = _COLUMNS
                seq = (seq + 1) & 0xFF
                pos = following
        except RemoteProtocolError:
            self._server._fail()  # type: ignore[union-attr]
            raise
        self._seq = seq
        self._state = state
        self._continued = continued
        self._columns = columns
        if self.done:
            if pos < end:
                self.leftover = data[pos:]
            end = pos
        elif pos > end:
            self._skip = pos - end
        elif pos < end:
            self._hold = data[pos:]
            end = pos
        if run == 0 and end == len(data):
            out.append(data)
        elif run < end:
            out.append(data[run:end])
        return out

    def _check_hold(self, length: int) -> None:
        # A packet the relay must see whole is held until it is complete.
        if length > self._max_hold:
            raise RemoteProtocolError(
                f"got a packet bigger than the maximum of {self._max_hold} bytes",
                ErrorCode.ER_NET_PACKET_TOO_LARGE,
            )

    def _ok(self, data: bytes, body: int, following: int, seq: int) -> bytes | None:
        """
        Read an OK packet's status; decode it when the proxy must see it.

        @return: the framed packet to send instead, or C{None} to relay it as it is.
        """
        if following - body < 7:
            raise _malformed("OK packet too short")
        position = body + 1
        size = _LENENC_SIZE[data[position]]
        position += size
        if size == 0 or position >= following:
            raise _malformed("bad affected rows in an OK packet")
        size = _LENENC_SIZE[data[position]]
        last_insert_id = data[position]
        position += size
        if size == 0 or position + 4 > following:
            raise _malformed("bad last insert id in an OK packet")
        status = data[position] | data[position + 1] << 8
        self._status = status
        self._warnings = data[position + 2] | data[position + 3] << 8
        rewrite = self._rewrite_ok and position + 4 < following
        if not (last_insert_id or status & _STATE_CHANGED or rewrite):
            return None
        ok = OKPacket.decode(data[body:following], self._server_caps)
        seen = self._learn_ok(ok)
        if seen is ok and not rewrite:
            return None
        return frame_payload(seen.encode(self._client_caps), seq)[0]

    def _error(self) -> None:
        # An ERR ends the whole answer; the status flags stay as they were.
        self.failed = True
        self._finish()

    def _finish(self) -> None:
        # What _Connection._relayed(COMMAND_IDLE, 0, ...) does, inline: once per answer.
        status = self._status
        flags = _status_flags(status) if status >= 0 else None
        warnings = self._warnings
        for conn in (self._server, self._client):
            conn._phase = _IDLE  # type: ignore[union-attr]
            conn._framer._next_seq = 0  # type: ignore[union-attr]
            conn._omitted_eof = False  # type: ignore[union-attr]
            conn.command = None  # type: ignore[union-attr]
            if flags is not None:
                conn.status_flags = flags  # type: ignore[union-attr]
                conn.warnings = warnings  # type: ignore[union-attr]
        self.done = True

    def _hand_over(self, rest: bytes) -> None:
        phase = _PHASES[self._state]
        for conn in (self._server, self._client):
            conn._relayed(phase, self._seq, self._status, self._warnings)  # type: ignore[union-attr]
        self.leftover = rest

    def abandon(self) -> None:
        """
        Stop relaying in the middle of an answer (the server connection was
        lost or broke the protocol): the client connection is left where the
        client is, so that an ERR can still be sent when the protocol allows
        one there (not inside a packet: then the client connection is closed).
        """
        client = self._client
        if self.done or client is None:
            return
        self.done = True
        if self._skip or self._continued:
            client._relayed(Phase.CLOSED, 0, -1, 0)
            return
        client.columns_remaining = self._columns
        client._relayed(_PHASES[self._state], self._seq, self._status, self._warnings)
