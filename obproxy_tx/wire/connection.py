"""
Sans-IO MySQL conversation state machines: L{ServerConnection} and L{ClientConnection}.

A connection object holds no socket. The adapter feeds it the bytes it read
(L{receive_data<_Connection.receive_data>} returns events) and asks it for the
bytes to write (L{send<_Connection.send>} takes a packet, returns bytes). In
between, the connection tracks where the conversation is (a L{Phase}), frames
packets with the right sequence ids (reset at every command), checks the peer's
sequence ids, switches to the compressed protocol after the handshake when both
sides negotiated C{CLIENT_COMPRESS}, and keeps status-flag facts
(L{in_transaction<_Connection.in_transaction>}, L{autocommit<_Connection.autocommit>},
L{more_results<_Connection.more_results>}) as data.

Both sides of one TCP connection walk through the same phases, so a
L{ServerConnection} and the L{ClientConnection} talking to it always agree on
L{Phase}; L{obproxy_tx.testing.ConnectionPair} checks exactly that.

The rules are two tables keyed by (role of the sender, phase):

  - C{_TRANSITIONS[(sender, phase)][event type] -> Phase or _Decision}: which
    events may be sent in a phase and where they lead. A L{_Decision} is a
    transition whose target depends on data (more results? columns left?).
  - C{_READERS[(sender, phase)]}: how the payload of a received packet is
    interpreted in that phase. This is the one place where the MySQL protocol's
    ambiguous first bytes (C{0x00} OK / binary row / prepare-OK, C{0x01} AuthMoreData /
    column count, C{0xFE} EOF / OK-as-EOF / auth switch, C{0xFF} ERR, C{0xFB}
    LOCAL INFILE / NULL) are resolved.

Anything not in the tables is a protocol violation: on L{send<_Connection.send>} it
raises L{LocalProtocolError}, on L{receive_data<_Connection.receive_data>} it
raises L{RemoteProtocolError} (carrying a MySQL error code and SQLSTATE); either
way the phase becomes L{Phase.ERROR} and the connection refuses further use.
L{error_packet_for<_Connection.error_packet_for>} gives the bytes of the ERR
packet to send the peer before closing, when the protocol lets us send one.

Result rows are the hot path: a received row is a L{RowData} event holding the
raw payload, not decoded (decode it with C{TextRow.decode} / C{BinaryRow.decode}
when you need values). A proxy relays it with C{send(row_data)} or
C{send(RawPacket(payload))}, and the phase advances exactly as if it had been
built from values.

Run C{python -m obproxy_tx.wire.connection --diagram} (or C{--mermaid}) to print
the transition table as a Graphviz (or mermaid) diagram.

Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_lifecycle.html}
"""

from __future__ import annotations

import enum
from typing import Any, Iterable

import attrs

from obproxy_tx.wire.constants import Capability, ServerStatus
from obproxy_tx.wire.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "ClientConnection",
    "ConnectionClosed",
    "Event",
    "LocalInfileData",
    "LocalProtocolError",
    "Phase",
    "RemoteProtocolError",
    "Role",
    "RowData",
    "ServerConnection",
    "StatisticsResponse",
    "render_diagram",
]


class Role(enum.Enum):
    """
    Which end of the conversation a connection object plays (or which end sent a packet).
    """

    #: The MySQL server: sends the greeting, answers commands.
    SERVER = "server"
    #: The MySQL client: answers the greeting, sends commands.
    CLIENT = "client"


class Phase(enum.Enum):
    """
    Where the conversation is. Both ends of a connection are always in the same phase.

    The comment on each member says whose turn it is to send.
    """

    #: TCP is up; the server's greeting (L{HandshakeV10}, or an ERR refusing the
    #: connection) has not been sent/received yet. Server's turn.
    CONNECT = "CONNECT"
    #: The greeting is out; the client answers with an C{SSLRequest} or a
    #: C{HandshakeResponse41}. Client's turn.
    HANDSHAKE_SENT = "HANDSHAKE_SENT"
    #: The client sent an C{SSLRequest}; nothing but the TLS handshake may happen
    #: until both adapters called C{tls_started()}. Nobody sends MySQL packets.
    SSL_REQUESTED = "SSL_REQUESTED"
    #: TLS is up after an C{SSLRequest}; the client sends its
    #: C{HandshakeResponse41} (a second C{SSLRequest} is illegal). Client's turn.
    TLS_ESTABLISHED = "TLS_ESTABLISHED"
    #: The server decides about the login (after C{HandshakeResponse41}, after an
    #: C{AuthSwitchResponse}): C{AuthSwitchRequest}, C{AuthMoreData}, OK or ERR. Server's turn.
    AUTHENTICATING = "AUTHENTICATING"
    #: The server sent an C{AuthSwitchRequest}; the client answers with an
    #: C{AuthSwitchResponse}. Client's turn.
    AUTH_SWITCH_SENT = "AUTH_SWITCH_SENT"
    #: The server sent C{AuthMoreData} (e.g. caching_sha2 fast-auth result, or
    #: "perform full authentication", or a public key): either the client answers
    #: (C{AuthSwitchResponse}: password, public-key request) or the server goes on
    #: (more data, OK, ERR). Either side's turn.
    AUTH_MORE_DATA = "AUTH_MORE_DATA"
    #: Logged in and idle: the client may send a command. Client's turn (the
    #: server may only send an ERR just before it closes, e.g. an idle timeout).
    COMMAND_IDLE = "COMMAND_IDLE"
    #: A command whose answer is a single OK / ERR (or EOF for COM_SET_OPTION):
    #: COM_INIT_DB, COM_PING, COM_PROCESS_KILL, COM_RESET_CONNECTION,
    #: COM_STMT_RESET, COM_SET_OPTION, COM_REFRESH and unknown commands. Server's turn.
    SIMPLE_REPLY = "SIMPLE_REPLY"
    #: A (possibly next) result of COM_QUERY or COM_STMT_EXECUTE is due: OK, ERR,
    #: C{LocalInfileRequest} (COM_QUERY only) or a C{ColumnCount}. Server's turn.
    RESULT_PENDING = "RESULT_PENDING"
    #: Column definitions of a result set are being sent
    #: (L{columns_remaining<_Connection.columns_remaining>} of them are still due). Server's turn.
    RESULT_COLUMNS = "RESULT_COLUMNS"
    #: All column definitions are out; the EOF that closes them is due (only
    #: without C{CLIENT_DEPRECATE_EOF}). Server's turn.
    RESULT_COLUMNS_EOF = "RESULT_COLUMNS_EOF"
    #: Rows are flowing (text rows for COM_QUERY, binary rows for COM_STMT_EXECUTE
    #: and COM_STMT_FETCH); an EOF (or, under C{CLIENT_DEPRECATE_EOF}, an OK with
    #: header 0xFE) or an ERR ends them. Server's turn.
    RESULT_ROWS = "RESULT_ROWS"
    #: The server sent a C{LocalInfileRequest}; the client sends the file as
    #: L{LocalInfileData} packets and ends with an empty one. Client's turn.
    LOCAL_INFILE = "LOCAL_INFILE"
    #: The client finished sending the LOCAL INFILE data; the server answers
    #: with OK or ERR (more results may follow the OK). Server's turn.
    LOCAL_INFILE_DONE = "LOCAL_INFILE_DONE"
    #: COM_STMT_PREPARE is out; C{StmtPrepareOK} or ERR is due. Server's turn.
    PREPARE_SENT = "PREPARE_SENT"
    #: Parameter definitions of a prepared statement are being sent. Server's turn.
    PREPARE_PARAMS = "PREPARE_PARAMS"
    #: The EOF closing the parameter definitions is due (only without
    #: C{CLIENT_DEPRECATE_EOF}). Server's turn.
    PREPARE_PARAMS_EOF = "PREPARE_PARAMS_EOF"
    #: Column definitions of a prepared statement are being sent. Server's turn.
    PREPARE_COLUMNS = "PREPARE_COLUMNS"
    #: The EOF closing the prepared statement's column definitions is due (only
    #: without C{CLIENT_DEPRECATE_EOF}). Server's turn.
    PREPARE_COLUMNS_EOF = "PREPARE_COLUMNS_EOF"
    #: COM_FIELD_LIST is out; column definitions follow, ended by EOF (or an OK
    #: with header 0xFE under C{CLIENT_DEPRECATE_EOF}), or an ERR. Server's turn.
    FIELD_LIST = "FIELD_LIST"
    #: COM_STATISTICS is out; a raw string (L{StatisticsResponse}) or ERR is due. Server's turn.
    STATISTICS = "STATISTICS"
    #: COM_CHANGE_USER is out; like L{AUTHENTICATING}, but an ERR returns to
    #: L{COMMAND_IDLE} instead of closing. Server's turn.
    CHANGE_USER = "CHANGE_USER"
    #: COM_CHANGE_USER: the server sent an C{AuthSwitchRequest}. Client's turn.
    CHANGE_USER_SWITCH_SENT = "CHANGE_USER_SWITCH_SENT"
    #: COM_CHANGE_USER: the server sent C{AuthMoreData}. Either side's turn.
    CHANGE_USER_MORE_DATA = "CHANGE_USER_MORE_DATA"
    #: The conversation is over (COM_QUIT, a refused login, or the peer closed).
    CLOSED = "CLOSED"
    #: A protocol violation happened (ours or the peer's); the connection is unusable.
    ERROR = "ERROR"


@attrs.frozen
class ConnectionClosed:
    """
    The peer closed the TCP connection (L{receive_data<_Connection.receive_data>} got C{b""}).

    @ivar previous_phase: the phase the conversation was in when it closed, so
        an adapter can tell a clean close (L{Phase.COMMAND_IDLE}, L{Phase.CLOSED})
        from a peer that vanished mid-request.
    """

    previous_phase: Phase | None = None


class RowData:
    """
    One result-set row, undecoded: the hot path of every result.

    Received in L{Phase.RESULT_ROWS} by a L{ClientConnection}; sendable by a
    L{ServerConnection} in that phase (a proxy relays rows this way). The payload
    is a text row (COM_QUERY) or a binary row (COM_STMT_EXECUTE / COM_STMT_FETCH);
    decode it with C{TextRow.decode} or C{BinaryRow.decode} when values are needed.

    Deliberately a hand-written slotted class rather than an attrs class: it is
    created once per row, and its constructor is the cheapest Python allows.
    Treat it as immutable.

    @ivar payload: the row's packet payload (continuation chunks joined).
    """

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        if other.__class__ is RowData:
            return self.payload == other.payload
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if other.__class__ is RowData:
            return self.payload != other.payload
        return NotImplemented

    def __hash__(self) -> int:
        return hash((RowData, self.payload))

    def __repr__(self) -> str:
        return f"RowData(payload={self.payload!r})"


@attrs.frozen
class LocalInfileData:
    """
    A chunk of the file a client sends after a C{LocalInfileRequest}.

    An empty chunk ends the file (a client that refuses to send the file sends
    only the empty one).

    @ivar data: the file bytes carried by this packet.
    """

    data: bytes


@attrs.frozen
class StatisticsResponse:
    """
    The answer to COM_STATISTICS: a human-readable string, not an OK packet.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_statistics.html}

    @ivar text: the string, e.g. C{b"Uptime: 5  Threads: 1  Questions: 2 ..."}.
    """

    text: bytes

    def encode(self, capabilities: Capability) -> bytes:
        """
        Return the payload.

        @param capabilities: unused; present for the packet interface.
        @return: the raw text.
        """
        return self.text

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> StatisticsResponse:
        """
        Wrap a received payload.

        @param payload: the packet payload.
        @param capabilities: unused; present for the packet interface.
        @return: the response.
        """
        return cls(payload)


#: Anything L{receive_data<_Connection.receive_data>} returns or
#: L{send<_Connection.send>} accepts: the packet classes of
#: L{obproxy_tx.wire.packets} plus the synthetic events of this module.
Event = Any


class _Connection:
    """
    What both roles share. Use L{ServerConnection} or L{ClientConnection}.

    @ivar role: L{Role.SERVER} or L{Role.CLIENT}.
    @ivar phase: the current L{Phase}.
    @ivar capabilities: before the handshake, what this side offers (server) or
        wants (client); once the handshake response has passed, the negotiated
        set (what both sides have). Packets are encoded and decoded with it.
    @ivar server_capabilities: what the server's greeting offered (C{None}
        before the greeting passed).
    @ivar status_flags: the status flags of the last OK or EOF packet seen in
        either direction (initially those of the greeting).
    @ivar warnings: the warning count of the last OK or EOF packet.
    @ivar max_packet_size: the largest payload accepted from the peer; a larger
        one raises L{RemoteProtocolError} with C{ER_NET_PACKET_TOO_LARGE}.
    @ivar columns_remaining: in L{Phase.RESULT_COLUMNS}, L{Phase.PREPARE_PARAMS}
        and L{Phase.PREPARE_COLUMNS}, how many definitions are still due.
    @ivar column_count: the column count of the current result set (0 outside one).
    @ivar command: the command being answered (C{None} when idle).
    @ivar compression: C{None}, C{"zlib"} or C{"zstd"}: the compressed protocol in use.
    @ivar trailing_data: bytes received after an C{SSLRequest} that belong to the
        TLS handshake; the server adapter must hand them to its TLS layer (usually empty).
    """

    role: Role

    def __init__(
        self,
        capabilities: Capability,
        max_packet_size: int = 1 << 30,
        compression_level: int = 6,
    ) -> None:
        """
        @param capabilities: what this side offers (server) or wants (client).
        @param max_packet_size: the largest payload accepted from the peer.
        @param compression_level: the zlib/zstd level used once the compressed
            protocol is switched on.
        """
        raise NotImplementedError

    # --- facts ------------------------------------------------------------

    @property
    def deprecate_eof(self) -> bool:
        """
        Whether C{CLIENT_DEPRECATE_EOF} was negotiated (no EOF after column
        definitions; rows end with an OK whose header is 0xFE).
        """
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        """Whether the last status flags had C{SERVER_STATUS_IN_TRANS}."""
        raise NotImplementedError

    @property
    def autocommit(self) -> bool:
        """Whether the last status flags had C{SERVER_STATUS_AUTOCOMMIT}."""
        raise NotImplementedError

    @property
    def more_results(self) -> bool:
        """
        Whether the last OK/EOF had C{SERVER_MORE_RESULTS_EXISTS} (another result
        of the same command follows; the phase is then L{Phase.RESULT_PENDING}).
        """
        raise NotImplementedError

    @property
    def cursor_exists(self) -> bool:
        """Whether the last status flags had C{SERVER_STATUS_CURSOR_EXISTS}."""
        raise NotImplementedError

    @property
    def our_turn(self) -> bool:
        """Whether the current phase lets this side send something."""
        raise NotImplementedError

    # --- bytes in ---------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """
        Feed bytes read from the peer; return the events they complete.

        Any chunking gives the same events (one byte at a time included);
        incomplete packets are buffered. C{b""} means the peer closed: the
        result is C{[ConnectionClosed(previous_phase)]} and the phase becomes
        L{Phase.CLOSED}.

        Per phase, payloads become: C{HandshakeV10}; C{SSLRequest} (stop here,
        start TLS, then call L{tls_started}; bytes after it are kept in
        L{trailing_data}); C{HandshakeResponse41}; C{AuthSwitchRequest},
        C{AuthMoreData}, C{AuthSwitchResponse}; C{OKPacket} / C{ERRPacket} /
        C{EOFPacket} (an OK with header 0xFE under C{CLIENT_DEPRECATE_EOF}); one
        command packet (C{ComQuery}, C{ComStmtExecute}, ... or C{UnknownCommand}),
        the sequence id being reset for it; C{ColumnCount}; C{ColumnDefinition41};
        L{RowData}; C{LocalInfileRequest}; L{LocalInfileData}; C{StmtPrepareOK};
        L{StatisticsResponse}.

        @param data: bytes from the transport, or C{b""} at end of stream.
        @return: the events, in order.
        @raise RemoteProtocolError: the peer broke the protocol (bad sequence id,
            packet too large, malformed or unexpected packet). The phase is
            then L{Phase.ERROR}; send L{error_packet_for} and close.
        @raise LocalProtocolError: called after the connection entered
            L{Phase.ERROR}, or while TLS is being set up.
        """
        raise NotImplementedError

    # --- bytes out --------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """
        Encode C{event}, frame it with the next sequence id, advance the phase
        and return the bytes to write.

        Accepts every packet class of L{obproxy_tx.wire.packets}, L{RowData},
        L{LocalInfileData}, L{StatisticsResponse}, and C{RawPacket(payload)}: a
        payload relayed undecoded, which is interpreted by the phase exactly
        as a received packet would be (so relaying a peer's EOF as a
        C{RawPacket} ends the rows). Command packets reset the sequence id.

        On a server, an C{EOFPacket} sent where C{CLIENT_DEPRECATE_EOF} omits
        it (after column or parameter definitions) returns C{b""} and advances
        the phase, so result-set code need not know; an C{EOFPacket} ending rows
        under C{CLIENT_DEPRECATE_EOF} is converted to the OK (header 0xFE) that
        replaces it. See also L{end_of_rows}.

        @param event: the packet or event to send.
        @return: the framed bytes (compressed when the compressed protocol is on).
        @raise LocalProtocolError: C{event} is not allowed in this phase for this
            role; the phase becomes L{Phase.ERROR}.
        """
        raise NotImplementedError

    def send_many(self, events: Iterable[Event]) -> bytes:
        """
        L{send} each event in turn; return all the bytes joined.

        @param events: e.g. a whole result set: C{ColumnCount}, definitions,
            EOF, rows, terminator.
        @return: the concatenated framed bytes.
        @raise LocalProtocolError: as L{send}.
        """
        raise NotImplementedError

    def end_of_rows(self, status_flags: ServerStatus | None = None, warnings: int = 0) -> Any:
        """
        Build the packet that ends rows (or a COM_FIELD_LIST) in this
        connection: an C{EOFPacket}, or under C{CLIENT_DEPRECATE_EOF} an
        C{OKPacket(header=0xFE)}.

        @param status_flags: the status flags to report (default: the last
            ones known, without C{SERVER_MORE_RESULTS_EXISTS}).
        @param warnings: the warning count.
        @return: the packet; pass it to L{send}.
        """
        raise NotImplementedError

    def error_packet_for(self, exc: ProtocolError) -> bytes:
        """
        Return the framed bytes of the ERR packet telling the peer about
        C{exc}, or C{b""} when this role/phase may not send one (a client never
        sends ERR; nothing is sent during the TLS handshake or after close).

        Use it after L{receive_data} raised L{RemoteProtocolError} (the phase is
        then L{Phase.ERROR}), write the bytes, then close the transport.

        @param exc: the error carrying C{error_code}, C{sqlstate} and C{message}.
        @return: bytes to write (possibly empty).
        """
        raise NotImplementedError

    def tls_started(self) -> None:
        """
        Tell the connection that the TLS handshake after an C{SSLRequest} has
        been set up by the adapter (C{transport.startTLS} called); the
        conversation continues in L{Phase.TLS_ESTABLISHED}.

        @raise LocalProtocolError: not in L{Phase.SSL_REQUESTED}.
        """
        raise NotImplementedError

    def enable_compression(self) -> None:
        """
        Switch on the compressed protocol now.

        Normally unnecessary: the connection switches by itself right after the
        handshake's OK when both sides negotiated C{CLIENT_COMPRESS} (zlib) or
        C{CLIENT_ZSTD_COMPRESSION_ALGORITHM} (zstd). Calling it when compression
        is already on does nothing.

        @raise LocalProtocolError: compression was not negotiated, or the
            handshake is not finished.
        """
        raise NotImplementedError


class ServerConnection(_Connection):
    """
    The conversation seen from the MySQL server (us) towards one client.

    Flow: C{send(HandshakeV10(...))}; C{receive_data} gives C{SSLRequest}
    (adapter starts TLS, then L{tls_started}) and C{HandshakeResponse41}; then
    C{AuthSwitchResponse} events answer our C{AuthSwitchRequest} / C{AuthMoreData};
    C{send(OKPacket(...))} ends the login (L{Phase.COMMAND_IDLE}; C{ERRPacket}
    closes). In L{Phase.COMMAND_IDLE}, C{receive_data} gives one command event
    and we send its answer: OK/ERR; or C{ColumnCount}, definitions, EOF (dropped
    under DEPRECATE_EOF), rows (C{TextRow}/C{BinaryRow}/L{RowData}/C{RawPacket}),
    L{end_of_rows}; or C{LocalInfileRequest} then L{LocalInfileData} events then
    OK/ERR; or C{StmtPrepareOK}, param defs, EOF, column defs, EOF. COM_QUIT,
    COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA get no answer.

    @ivar statements: statement id -> (parameter count, parameter types or
        C{None}) of statements prepared through this connection, used to decode
        C{ComStmtExecute}.
    """

    role = Role.SERVER


class ClientConnection(_Connection):
    """
    The conversation seen from the MySQL client (us) towards one server.

    Flow: C{receive_data} gives C{HandshakeV10} (or an ERR refusing us); send
    C{SSLRequest} (then start TLS and call L{tls_started}) and/or
    C{HandshakeResponse41}; receive C{AuthSwitchRequest} / C{AuthMoreData} and
    answer with C{AuthSwitchResponse}; C{OKPacket} ends the login. Then send
    commands and receive their answers: C{OKPacket} / C{ERRPacket} /
    C{LocalInfileRequest} (answer with L{LocalInfileData} packets and an empty
    one) / C{ColumnCount}, C{ColumnDefinition41}s, (C{EOFPacket}), L{RowData}
    per row, and the terminator (C{EOFPacket} or C{OKPacket}); L{phase} tells
    whether another result follows (L{Phase.RESULT_PENDING}) or the command is
    done (L{Phase.COMMAND_IDLE}).
    """

    role = Role.CLIENT


def render_diagram(output: str = "dot") -> str:
    """
    Render the transition table as a diagram source.

    @param output: C{"dot"} (Graphviz) or C{"mermaid"} (a C{stateDiagram-v2}).
    @return: the diagram text; edges are labelled C{"server: OKPacket"} etc.,
        and data-dependent transitions carry their condition.
    """
    raise NotImplementedError
