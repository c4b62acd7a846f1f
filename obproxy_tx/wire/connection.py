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
import sys
from typing import Any, Callable, Iterable, Union

import attrs

from obproxy_tx.wire.constants import MAX_PACKET_CHUNK, Capability, CursorType, ServerStatus
from obproxy_tx.wire.errors import (
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    is_client_error,
    sqlstate_for,
)
from obproxy_tx.wire.framing import PacketFramer
from obproxy_tx.wire.packets import (
    AuthMoreData,
    AuthSwitchRequest,
    AuthSwitchResponse,
    BinaryRow,
    ColumnCount,
    ColumnDefinition41,
    ComChangeUser,
    ComFieldList,
    ComInitDB,
    ComPing,
    ComProcessKill,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    ComStmtSendLongData,
    EOFPacket,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    LocalInfileRequest,
    OKPacket,
    RawPacket,
    SSLRequest,
    StmtPrepareOK,
    TextRow,
    UnknownCommand,
    decode_command,
)

__all__ = [
    "ClientConnection",
    "ConnectionClosed",
    "Event",
    "LocalInfileData",
    "LocalProtocolError",
    "Phase",
    "PreparedStatementInfo",
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

    __hash__ = object.__hash__

    #: The MySQL server: sends the greeting, answers commands.
    SERVER = "server"
    #: The MySQL client: answers the greeting, sends commands.
    CLIENT = "client"


class Phase(enum.Enum):
    """
    Where the conversation is. Both ends of a connection are always in the same phase.

    The comment on each member says whose turn it is to send.
    """

    # Members are singletons: identity hashing keeps the phase-keyed tables
    # cheap (Enum's own __hash__ is a Python-level call).
    __hash__ = object.__hash__

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

    def encode(self, capabilities: Capability) -> bytes:
        """
        Return the payload (rows are relayed verbatim).

        @param capabilities: unused; present for the packet interface.
        @return: L{payload}.
        """
        return self.payload

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

    def encode(self, capabilities: Capability) -> bytes:
        """
        Return the payload.

        @param capabilities: unused; present for the packet interface.
        @return: the file bytes.
        """
        return self.data

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> LocalInfileData:
        """
        Wrap a received payload.

        @param payload: the packet payload.
        @param capabilities: unused; present for the packet interface.
        @return: the chunk.
        """
        return cls(payload)


@attrs.frozen
class StatisticsResponse:
    """
    The answer to COM_STATISTICS: a human-readable string, not an OK packet.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_statistics.html}

    @ivar text: the string, e.g. C{b"Uptime: 5"} and more counters, two spaces apart.
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


@attrs.frozen
class PreparedStatementInfo:
    """
    What a connection remembers about a statement prepared through it.

    @ivar statement_id: the id from C{StmtPrepareOK}.
    @ivar param_count: how many parameters the statement takes.
    @ivar column_count: how many columns its result has.
    @ivar param_types: the C{(type, unsigned)} pairs bound by the last
        C{COM_STMT_EXECUTE} that sent them (C{None} before any), needed to
        decode an execute that does not repeat them.
    @ivar long_data: indexes of the parameters sent with
        C{COM_STMT_SEND_LONG_DATA} since the last execute or reset.
    """

    statement_id: int
    param_count: int
    column_count: int
    param_types: Any = None
    long_data: frozenset[int] = frozenset()


# --------------------------------------------------------------------------
# The tables.
#
# Rule 1: every rule about which packet may follow which lives in _TRANSITIONS
# and in _Connection._decide (for the data-dependent ones).
# Rule 2: every rule about what a received payload *is* lives in the _read_*
# functions registered in _READERS. Nothing else looks at first bytes.
# --------------------------------------------------------------------------


@attrs.frozen
class _Decision:
    """
    A transition whose target phase depends on data (see L{_Connection._decide}).

    @ivar name: what it decides, for diagrams.
    @ivar targets: every phase it can lead to.
    """

    name: str
    targets: tuple[Phase, ...]


_END_OF_RESULT = _Decision(
    "SERVER_MORE_RESULTS_EXISTS?", (Phase.RESULT_PENDING, Phase.COMMAND_IDLE)
)
_AFTER_COLUMN_COUNT = _Decision(
    "metadata follows? DEPRECATE_EOF?",
    (Phase.RESULT_COLUMNS, Phase.RESULT_COLUMNS_EOF, Phase.RESULT_ROWS),
)
_AFTER_COLUMN = _Decision(
    "columns left? DEPRECATE_EOF?",
    (Phase.RESULT_COLUMNS, Phase.RESULT_COLUMNS_EOF, Phase.RESULT_ROWS),
)
#: The C{COM_STMT_EXECUTE} flags that ask for a cursor.
_CURSOR_FLAGS = (
    CursorType.CURSOR_TYPE_READ_ONLY
    | CursorType.CURSOR_TYPE_FOR_UPDATE
    | CursorType.CURSOR_TYPE_SCROLLABLE
)
_AFTER_COLUMNS_EOF = _Decision("cursor opened?", (Phase.RESULT_ROWS, Phase.COMMAND_IDLE))
_AFTER_PREPARE_OK = _Decision(
    "params? columns?", (Phase.PREPARE_PARAMS, Phase.PREPARE_COLUMNS, Phase.COMMAND_IDLE)
)
_AFTER_PARAM = _Decision(
    "params left? DEPRECATE_EOF? columns?",
    (
        Phase.PREPARE_PARAMS,
        Phase.PREPARE_PARAMS_EOF,
        Phase.PREPARE_COLUMNS,
        Phase.COMMAND_IDLE,
    ),
)
_AFTER_PARAMS_EOF = _Decision("columns?", (Phase.PREPARE_COLUMNS, Phase.COMMAND_IDLE))
_AFTER_PREPARE_COLUMN = _Decision(
    "columns left? DEPRECATE_EOF?",
    (Phase.PREPARE_COLUMNS, Phase.PREPARE_COLUMNS_EOF, Phase.COMMAND_IDLE),
)
_AFTER_INFILE_DATA = _Decision("empty packet?", (Phase.LOCAL_INFILE, Phase.LOCAL_INFILE_DONE))

_Target = Union[Phase, _Decision]

_S = Role.SERVER
_C = Role.CLIENT
_ROWS: dict[type, _Target] = {
    RowData: Phase.RESULT_ROWS,
    TextRow: Phase.RESULT_ROWS,
    BinaryRow: Phase.RESULT_ROWS,
}

#: (sender, phase) -> {event type: next phase or decision}. Not listed: illegal.
_TRANSITIONS: dict[tuple[Role, Phase], dict[type, _Target]] = {
    # Connection phase.
    (_S, Phase.CONNECT): {HandshakeV10: Phase.HANDSHAKE_SENT, ERRPacket: Phase.CLOSED},
    (_C, Phase.HANDSHAKE_SENT): {
        SSLRequest: Phase.SSL_REQUESTED,
        HandshakeResponse41: Phase.AUTHENTICATING,
    },
    (_C, Phase.TLS_ESTABLISHED): {HandshakeResponse41: Phase.AUTHENTICATING},
    (_S, Phase.AUTHENTICATING): {
        AuthSwitchRequest: Phase.AUTH_SWITCH_SENT,
        AuthMoreData: Phase.AUTH_MORE_DATA,
        OKPacket: Phase.COMMAND_IDLE,
        ERRPacket: Phase.CLOSED,
    },
    (_C, Phase.AUTH_SWITCH_SENT): {AuthSwitchResponse: Phase.AUTHENTICATING},
    (_S, Phase.AUTH_MORE_DATA): {
        AuthMoreData: Phase.AUTH_MORE_DATA,
        OKPacket: Phase.COMMAND_IDLE,
        ERRPacket: Phase.CLOSED,
    },
    (_C, Phase.AUTH_MORE_DATA): {AuthSwitchResponse: Phase.AUTHENTICATING},
    # Command phase.
    (_C, Phase.COMMAND_IDLE): {
        ComQuery: Phase.RESULT_PENDING,
        ComStmtExecute: Phase.RESULT_PENDING,
        ComStmtFetch: Phase.RESULT_ROWS,
        ComStmtPrepare: Phase.PREPARE_SENT,
        ComFieldList: Phase.FIELD_LIST,
        ComStatistics: Phase.STATISTICS,
        ComChangeUser: Phase.CHANGE_USER,
        ComInitDB: Phase.SIMPLE_REPLY,
        ComPing: Phase.SIMPLE_REPLY,
        ComProcessKill: Phase.SIMPLE_REPLY,
        ComResetConnection: Phase.SIMPLE_REPLY,
        ComSetOption: Phase.SIMPLE_REPLY,
        ComStmtReset: Phase.SIMPLE_REPLY,
        UnknownCommand: Phase.SIMPLE_REPLY,
        ComStmtClose: Phase.COMMAND_IDLE,
        ComStmtSendLongData: Phase.COMMAND_IDLE,
        ComQuit: Phase.CLOSED,
    },
    # An idle server only speaks to say why it is about to close (e.g. 4031).
    (_S, Phase.COMMAND_IDLE): {ERRPacket: Phase.CLOSED},
    (_S, Phase.SIMPLE_REPLY): {
        OKPacket: Phase.COMMAND_IDLE,
        ERRPacket: Phase.COMMAND_IDLE,
        EOFPacket: Phase.COMMAND_IDLE,
    },
    (_S, Phase.RESULT_PENDING): {
        OKPacket: _END_OF_RESULT,
        ERRPacket: Phase.COMMAND_IDLE,
        LocalInfileRequest: Phase.LOCAL_INFILE,
        ColumnCount: _AFTER_COLUMN_COUNT,
    },
    (_S, Phase.RESULT_COLUMNS): {ColumnDefinition41: _AFTER_COLUMN},
    (_S, Phase.RESULT_COLUMNS_EOF): {EOFPacket: _AFTER_COLUMNS_EOF},
    (_S, Phase.RESULT_ROWS): {
        **_ROWS,
        EOFPacket: _END_OF_RESULT,
        OKPacket: _END_OF_RESULT,
        ERRPacket: Phase.COMMAND_IDLE,
    },
    (_C, Phase.LOCAL_INFILE): {LocalInfileData: _AFTER_INFILE_DATA},
    (_S, Phase.LOCAL_INFILE_DONE): {OKPacket: _END_OF_RESULT, ERRPacket: Phase.COMMAND_IDLE},
    (_S, Phase.PREPARE_SENT): {StmtPrepareOK: _AFTER_PREPARE_OK, ERRPacket: Phase.COMMAND_IDLE},
    (_S, Phase.PREPARE_PARAMS): {ColumnDefinition41: _AFTER_PARAM},
    (_S, Phase.PREPARE_PARAMS_EOF): {EOFPacket: _AFTER_PARAMS_EOF},
    (_S, Phase.PREPARE_COLUMNS): {ColumnDefinition41: _AFTER_PREPARE_COLUMN},
    (_S, Phase.PREPARE_COLUMNS_EOF): {EOFPacket: Phase.COMMAND_IDLE},
    (_S, Phase.FIELD_LIST): {
        ColumnDefinition41: Phase.FIELD_LIST,
        EOFPacket: Phase.COMMAND_IDLE,
        OKPacket: Phase.COMMAND_IDLE,
        ERRPacket: Phase.COMMAND_IDLE,
    },
    (_S, Phase.STATISTICS): {StatisticsResponse: Phase.COMMAND_IDLE, ERRPacket: Phase.COMMAND_IDLE},
    (_S, Phase.CHANGE_USER): {
        AuthSwitchRequest: Phase.CHANGE_USER_SWITCH_SENT,
        AuthMoreData: Phase.CHANGE_USER_MORE_DATA,
        OKPacket: Phase.COMMAND_IDLE,
        ERRPacket: Phase.COMMAND_IDLE,
    },
    (_C, Phase.CHANGE_USER_SWITCH_SENT): {AuthSwitchResponse: Phase.CHANGE_USER},
    (_S, Phase.CHANGE_USER_MORE_DATA): {
        AuthMoreData: Phase.CHANGE_USER_MORE_DATA,
        OKPacket: Phase.COMMAND_IDLE,
        ERRPacket: Phase.COMMAND_IDLE,
    },
    (_C, Phase.CHANGE_USER_MORE_DATA): {AuthSwitchResponse: Phase.CHANGE_USER},
}

#: Phases in which each role may send something (derived from L{_TRANSITIONS}).
_TURNS: dict[Role, frozenset[Phase]] = {
    role: frozenset(phase for (sender, phase) in _TRANSITIONS if sender is role) for role in Role
}

_LOGIN_PHASES = frozenset((Phase.AUTHENTICATING, Phase.AUTH_MORE_DATA))
_CHANGE_USER_PHASES = frozenset((Phase.CHANGE_USER, Phase.CHANGE_USER_MORE_DATA))
#: Phases where the server sends a "rows are over" terminator (EOF or, under
#: CLIENT_DEPRECATE_EOF, an OK with header 0xFE).
_TERMINATOR_PHASES = frozenset((Phase.RESULT_ROWS, Phase.FIELD_LIST, Phase.SIMPLE_REPLY))
#: Commands with no reply at all.
_NO_REPLY = (ComStmtClose, ComStmtSendLongData, ComQuit)


_STATUS_FLAGS: dict[int, ServerStatus] = {}
# One shared empty set (an empty frozenset is 216 bytes, and not a singleton).
_NO_LONG_DATA: frozenset[int] = frozenset()
_QUERY_ATTRIBUTES = int(Capability.CLIENT_QUERY_ATTRIBUTES)
# Flag arithmetic on the enums is a Python-level call; the properties use ints.
_IN_TRANS = int(ServerStatus.SERVER_STATUS_IN_TRANS)
_AUTOCOMMIT = int(ServerStatus.SERVER_STATUS_AUTOCOMMIT)
_CURSOR_EXISTS = int(ServerStatus.SERVER_STATUS_CURSOR_EXISTS)
_DEPRECATE_EOF = int(Capability.CLIENT_DEPRECATE_EOF)
_ZSTD_COMPRESSION = int(Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM)
_COMPRESS = int(Capability.CLIENT_COMPRESS)
_COM_QUERY = 0x03
_COM_STMT_EXECUTE = 0x17
_CURSOR_TYPES: dict[int, CursorType] = {}


def _status_flags(value: int) -> ServerStatus:
    """
    C{ServerStatus(value)}, from a small cache: building a flag enum member
    is a Python-level call, and servers use few combinations.
    """
    flags = _STATUS_FLAGS.get(value)
    if flags is None:
        flags = ServerStatus(value)
        if len(_STATUS_FLAGS) < 1024:
            _STATUS_FLAGS[value] = flags
    return flags


class _RuleBrokenError(Exception):
    """
    A rule was broken; the caller turns it into a Local or Remote protocol error.
    """

    def __init__(self, message: str, error_code: int = ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER):
        super().__init__(message)
        self.message = message
        self.error_code = error_code


def _first(payload: bytes) -> int:
    if not payload:
        raise RemoteProtocolError("malformed packet: empty payload", ErrorCode.ER_MALFORMED_PACKET)
    return payload[0]


def _read_terminator(conn: _Connection, payload: bytes) -> Event:
    # 0xFE ends rows / field lists / COM_SET_OPTION: a 5-byte EOF, or an OK
    # whose header is 0xFE (at least 7 bytes) under CLIENT_DEPRECATE_EOF.
    # Deciding by length accepts both whatever was negotiated.
    if len(payload) < 7:
        return EOFPacket.decode(payload, conn.capabilities)
    return OKPacket.decode(payload, conn.capabilities)


def _read_greeting(conn: _Connection, payload: bytes) -> Event:
    if _first(payload) == 0xFF:
        return ERRPacket.decode(payload, Capability(0))
    return HandshakeV10.decode(payload, conn.capabilities)


def _read_handshake_response(conn: _Connection, payload: bytes) -> Event:
    # An SSLRequest is the first 32 bytes of a HandshakeResponse41 and nothing
    # more; a real response has at least the username's NUL after them.
    if len(payload) == 32:
        return SSLRequest.decode(payload, conn.capabilities)
    return HandshakeResponse41.decode(payload, conn.capabilities)


def _read_handshake_response_tls(conn: _Connection, payload: bytes) -> Event:
    return HandshakeResponse41.decode(payload, conn.capabilities)


def _read_auth_from_server(conn: _Connection, payload: bytes) -> Event:
    first = _first(payload)
    if first == 0x00:
        return OKPacket.decode(payload, conn.capabilities)
    if first == 0xFF:
        return ERRPacket.decode(payload, conn.capabilities)
    if first == 0xFE:
        return AuthSwitchRequest.decode(payload, conn.capabilities)
    if first == 0x01:
        return AuthMoreData.decode(payload, conn.capabilities)
    raise RemoteProtocolError(
        f"malformed packet: unexpected first byte 0x{first:02x} during authentication",
        ErrorCode.ER_MALFORMED_PACKET,
    )


def _read_auth_from_client(conn: _Connection, payload: bytes) -> Event:
    return AuthSwitchResponse.decode(payload, conn.capabilities)


def _read_command(conn: _Connection, payload: bytes) -> Event:
    # COM_STMT_EXECUTE comes back with its parameters undecoded; see
    # _Connection.decode_execute.
    return decode_command(payload, conn.capabilities)


def _read_idle_server(conn: _Connection, payload: bytes) -> Event:
    if _first(payload) == 0xFF:
        return ERRPacket.decode(payload, conn.capabilities)
    raise RemoteProtocolError(
        "the server sent a packet while no command was pending", ErrorCode.CR_COMMANDS_OUT_OF_SYNC
    )


def _read_simple_reply(conn: _Connection, payload: bytes) -> Event:
    first = _first(payload)
    if first == 0x00:
        return OKPacket.decode(payload, conn.capabilities)
    if first == 0xFF:
        return ERRPacket.decode(payload, conn.capabilities)
    if first == 0xFE:
        return _read_terminator(conn, payload)
    raise RemoteProtocolError(
        f"malformed packet: expected OK, ERR or EOF, got first byte 0x{first:02x}",
        ErrorCode.ER_MALFORMED_PACKET,
    )


def _read_result(conn: _Connection, payload: bytes) -> Event:
    first = _first(payload)
    if first == 0x00:
        return OKPacket.decode(payload, conn.capabilities)
    if first == 0xFF:
        return ERRPacket.decode(payload, conn.capabilities)
    if first == 0xFB:
        return LocalInfileRequest.decode(payload, conn.capabilities)
    return ColumnCount.decode(payload, conn.capabilities)


def _read_column(conn: _Connection, payload: bytes) -> Event:
    return ColumnDefinition41.decode(payload, conn.capabilities)


def _read_eof(conn: _Connection, payload: bytes) -> Event:
    return EOFPacket.decode(payload, conn.capabilities)


def _read_row(conn: _Connection, payload: bytes) -> Event:
    # Text rows start with a length-encoded string (never 0xFF; 0xFE only for
    # a value of 16 MiB or more, so the payload is at least 0xFFFFFF long);
    # binary rows start with 0x00. So: 0xFF is ERR, a short 0xFE is the end.
    first = _first(payload)
    if first == 0xFF:
        return ERRPacket.decode(payload, conn.capabilities)
    if first == 0xFE and len(payload) < MAX_PACKET_CHUNK:
        return _read_terminator(conn, payload)
    return RowData(payload)


def _read_infile_data(conn: _Connection, payload: bytes) -> Event:
    return LocalInfileData(payload)


def _read_ok_or_err(conn: _Connection, payload: bytes) -> Event:
    if _first(payload) == 0xFF:
        return ERRPacket.decode(payload, conn.capabilities)
    return OKPacket.decode(payload, conn.capabilities)


def _read_prepare_reply(conn: _Connection, payload: bytes) -> Event:
    if _first(payload) == 0xFF:
        return ERRPacket.decode(payload, conn.capabilities)
    return StmtPrepareOK.decode(payload, conn.capabilities)


def _read_field_list(conn: _Connection, payload: bytes) -> Event:
    first = _first(payload)
    if first == 0xFF:
        return ERRPacket.decode(payload, conn.capabilities)
    if first == 0xFE:
        return _read_terminator(conn, payload)
    return ColumnDefinition41.decode(payload, conn.capabilities)


def _read_statistics(conn: _Connection, payload: bytes) -> Event:
    if payload[:1] == b"\xff":
        return ERRPacket.decode(payload, conn.capabilities)
    return StatisticsResponse(payload)


_Reader = Callable[["_Connection", bytes], Event]

#: (sender, phase) -> how a payload sent by C{sender} in that phase is read.
#: The only place where first bytes are interpreted.
_READERS: dict[tuple[Role, Phase], _Reader] = {
    (_S, Phase.CONNECT): _read_greeting,
    (_C, Phase.HANDSHAKE_SENT): _read_handshake_response,
    (_C, Phase.TLS_ESTABLISHED): _read_handshake_response_tls,
    (_S, Phase.AUTHENTICATING): _read_auth_from_server,
    (_S, Phase.AUTH_MORE_DATA): _read_auth_from_server,
    (_C, Phase.AUTH_SWITCH_SENT): _read_auth_from_client,
    (_C, Phase.AUTH_MORE_DATA): _read_auth_from_client,
    (_C, Phase.COMMAND_IDLE): _read_command,
    (_S, Phase.COMMAND_IDLE): _read_idle_server,
    (_S, Phase.SIMPLE_REPLY): _read_simple_reply,
    (_S, Phase.RESULT_PENDING): _read_result,
    (_S, Phase.RESULT_COLUMNS): _read_column,
    (_S, Phase.RESULT_COLUMNS_EOF): _read_eof,
    (_S, Phase.RESULT_ROWS): _read_row,
    (_C, Phase.LOCAL_INFILE): _read_infile_data,
    (_S, Phase.LOCAL_INFILE_DONE): _read_ok_or_err,
    (_S, Phase.PREPARE_SENT): _read_prepare_reply,
    (_S, Phase.PREPARE_PARAMS): _read_column,
    (_S, Phase.PREPARE_PARAMS_EOF): _read_eof,
    (_S, Phase.PREPARE_COLUMNS): _read_column,
    (_S, Phase.PREPARE_COLUMNS_EOF): _read_eof,
    (_S, Phase.FIELD_LIST): _read_field_list,
    (_S, Phase.STATISTICS): _read_statistics,
    (_S, Phase.CHANGE_USER): _read_auth_from_server,
    (_S, Phase.CHANGE_USER_MORE_DATA): _read_auth_from_server,
    (_C, Phase.CHANGE_USER_SWITCH_SENT): _read_auth_from_client,
    (_C, Phase.CHANGE_USER_MORE_DATA): _read_auth_from_client,
}


class _Connection:
    """
    What both roles share. Use L{ServerConnection} or L{ClientConnection}.

    @ivar role: L{Role.SERVER} or L{Role.CLIENT}.
    @ivar capabilities: before the handshake, what this side offers (server) or
        wants (client); once the handshake response has passed, the negotiated
        set (what both sides have). Packets are encoded and decoded with it.
    @ivar server_capabilities: what the server's greeting offered (C{None}
        before the greeting passed).
    @ivar client_capabilities: what the client's C{SSLRequest} /
        C{HandshakeResponse41} asked for (C{None} before).
    @ivar greeting: the C{HandshakeV10} sent or received (C{None} before).
    @ivar status_flags: the status flags of the last OK or EOF packet seen in
        either direction (initially those of the greeting).
    @ivar warnings: the warning count of the last OK or EOF packet.
    @ivar max_packet_size: the largest payload accepted from the peer; a larger
        one raises L{RemoteProtocolError} with C{ER_NET_PACKET_TOO_LARGE}.
    @ivar columns_remaining: in L{Phase.RESULT_COLUMNS}, L{Phase.PREPARE_PARAMS}
        and L{Phase.PREPARE_COLUMNS}, how many definitions are still due.
    @ivar column_count: the column count of the current result set (0 outside one).
    @ivar columns: the C{ColumnDefinition41}s of the current result set, as
        sent or received (what C{BinaryRow.decode} and C{BinaryRow.encode} need).
    @ivar command: the command being answered (C{None} when idle).
    @ivar statements: statement id -> L{PreparedStatementInfo} for statements
        prepared through this connection (forgotten on COM_STMT_CLOSE,
        COM_RESET_CONNECTION and COM_CHANGE_USER).
    @ivar compression: C{None}, C{"zlib"} or C{"zstd"}: the compressed protocol in use.
    @ivar compression_level: the level used when compression is switched on.
    @ivar trailing_data: bytes received after an C{SSLRequest} that belong to the
        TLS handshake; the server adapter must hand them to its TLS layer (usually empty).
    @ivar tls: whether L{tls_started} was called (the conversation is encrypted).
    """

    # A proxy holds two of these per client: slots keep them small.
    __slots__ = (
        "_compression_pending",
        "_deprecate_eof",
        "_eof_received",
        "_execute_columns",
        "_execute_long_data",
        "_framer",
        "_omitted_eof",
        "_phase",
        "_phase_before_error",
        "_prepared",
        "capabilities",
        "client_capabilities",
        "column_count",
        "columns",
        "columns_remaining",
        "command",
        "compression",
        "compression_level",
        "greeting",
        "max_packet_size",
        "server_capabilities",
        "statements",
        "status_flags",
        "tls",
        "trailing_data",
        "warnings",
    )

    role: Role
    # Fixed by the role (class attributes of the two subclasses): the peer, the
    # phases in which the peer sends, the phase in which this side sends rows.
    _peer: Role
    _peer_turn: frozenset[Phase]
    _row_phase: Phase | None

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
        self.capabilities = Capability(capabilities)
        self.server_capabilities: Capability | None = None
        self.client_capabilities: Capability | None = None
        self.greeting: Any = None
        self.max_packet_size = max_packet_size
        self.compression_level = compression_level
        self.compression: str | None = None
        self.status_flags = _status_flags(0)
        self.warnings = 0
        self.columns_remaining = 0
        self.column_count = 0
        self.columns: list[Any] = []
        self.command: Any = None
        self.statements: dict[int, PreparedStatementInfo] = {}
        self.trailing_data = b""
        self._phase = Phase.CONNECT
        self._phase_before_error: Phase | None = None
        self._framer: Any = PacketFramer(max_packet_size)
        self._deprecate_eof = False
        self._eof_received = False
        # Server side, CLIENT_DEPRECATE_EOF: an EOF the result-set code sends
        # here is the one the protocol omits; swallow it.
        self._omitted_eof = False
        self._compression_pending = False
        self._prepared: Any = None
        self._execute_long_data: frozenset[int] = _NO_LONG_DATA
        self._execute_columns: dict[int, list[Any]] = {}
        self.tls = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} phase={self._phase.name}>"

    # --- facts ------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """The current L{Phase}."""
        return self._phase

    @property
    def deprecate_eof(self) -> bool:
        """
        Whether C{CLIENT_DEPRECATE_EOF} was negotiated (no EOF after column
        definitions; rows end with an OK whose header is 0xFE).
        """
        return self._deprecate_eof

    @property
    def in_transaction(self) -> bool:
        """Whether the last status flags had C{SERVER_STATUS_IN_TRANS}."""
        return bool(int(self.status_flags) & _IN_TRANS)

    @property
    def autocommit(self) -> bool:
        """Whether the last status flags had C{SERVER_STATUS_AUTOCOMMIT}."""
        return bool(int(self.status_flags) & _AUTOCOMMIT)

    @property
    def more_results(self) -> bool:
        """
        Whether the last OK/EOF had C{SERVER_MORE_RESULTS_EXISTS} (another result
        of the same command follows; the phase is then L{Phase.RESULT_PENDING}).
        """
        return bool(self.status_flags & ServerStatus.SERVER_MORE_RESULTS_EXISTS)

    @property
    def cursor_exists(self) -> bool:
        """Whether the last status flags had C{SERVER_STATUS_CURSOR_EXISTS}."""
        return bool(int(self.status_flags) & _CURSOR_EXISTS)

    @property
    def our_turn(self) -> bool:
        """Whether the current phase lets this side send something."""
        return self._phase in _TURNS[self.role]

    def has_buffered(self) -> bool:
        """
        Whether received bytes wait that were not handed out yet (a pipelining
        peer's next packets; see L{next_events}).
        """
        return bool(self._framer.buffered)

    @property
    def buffered_bytes(self) -> int:
        """
        How many received bytes wait that were not handed out yet: what an
        adapter checks to stop reading a peer that pipelines more than it
        should hold (the connection itself never stops taking bytes).
        """
        buffered: int = self._framer.buffered
        return buffered

    # --- bytes in ---------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """
        Feed bytes read from the peer; return the events they complete.

        Any chunking gives the same events (one byte at a time included);
        incomplete packets are buffered. C{b""} means the peer closed: the
        result is C{[ConnectionClosed(previous_phase)]} and the phase becomes
        L{Phase.CLOSED}.

        Packets that arrive while it is not the peer's turn (a pipelining
        client that sends its next command before the answer to the previous
        one is out) stay buffered; L{next_events} returns them once our
        answer brought the conversation back to the peer's turn.

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
        if not data:
            if self._eof_received:
                return []
            self._eof_received = True
            previous = self._phase
            if previous is not Phase.ERROR:
                self._phase = Phase.CLOSED
            return [ConnectionClosed(previous)]
        phase = self._phase
        if phase is Phase.ERROR:
            raise LocalProtocolError("the connection is in the ERROR phase")
        if phase is Phase.SSL_REQUESTED:
            raise LocalProtocolError(
                "data received during the TLS handshake: feed it to the TLS layer, "
                "then call tls_started()"
            )
        if self._eof_received:
            raise LocalProtocolError("data received after the end of the stream")
        framer = self._framer
        if (
            phase is Phase.COMMAND_IDLE
            and data.__class__ is bytes
            and len(data) > 4
            and (data[4] == _COM_QUERY or (data[4] == _COM_STMT_EXECUTE and len(data) >= 14))
            and self.role is Role.SERVER
            and framer.__class__ is PacketFramer
            and not int(self.capabilities) & _QUERY_ATTRIBUTES
        ):
            # The commonest reads of all: one whole COM_QUERY or COM_STMT_EXECUTE.
            payload = framer.receive_single(data)
            if payload is not None:
                if payload[0] == _COM_QUERY:
                    return [self._query_received(payload)]
                return [self._execute_received(payload)]
        framer.feed(data)
        return self.next_events()

    def next_events(self) -> list[Event]:
        """
        Return the events of packets already received but not handed out yet:
        those a pipelining peer sent while it was not its turn. Call it after
        a L{send} that gave the turn back to the peer (it is cheap when
        nothing is buffered). L{receive_data} calls it itself.

        @return: the events, in order (possibly none).
        @raise RemoteProtocolError: as L{receive_data}.
        """
        framer = self._framer
        if (
            framer.__class__ is PacketFramer
            and not framer._pieces_len
            and framer._offset == len(framer._buffer)
        ):
            return []  # nothing buffered: the usual case once a command is answered
        events: list[Event] = []
        append = events.append
        next_packet = framer.next_packet
        peer_turn = self._peer_turn
        # Only a client receives rows; the membership test below is skipped
        # for them (hashing an Enum member is a Python-level call).
        rows = Phase.RESULT_ROWS if self.role is Role.CLIENT else None
        # An idle server may send an ERR before closing, numbered as it likes.
        lenient = Phase.COMMAND_IDLE if self.role is Role.CLIENT else None
        # A server reads the commonest command, COM_QUERY, without the tables.
        queries = (
            Phase.COMMAND_IDLE
            if self.role is Role.SERVER and not int(self.capabilities) & _QUERY_ATTRIBUTES
            else None
        )
        try:
            while True:
                phase = self._phase
                if phase is not rows and phase not in peer_turn:
                    break
                packet = self._next_packet_any_sequence() if phase is lenient else next_packet()
                if packet is None:
                    break
                payload = packet.payload
                # The hot path: a result row is handed out undecoded.
                if phase is rows and payload and payload[0] < 0xFE:
                    append(RowData(payload))
                    continue
                if phase is queries and payload:
                    first = payload[0]
                    if first == _COM_QUERY:
                        append(self._query_received(payload))
                        continue
                    if first == _COM_STMT_EXECUTE and len(payload) >= 10:
                        append(self._execute_received(payload))
                        continue
                append(self._receive_packet(payload))
                if self._phase is Phase.SSL_REQUESTED:
                    self.trailing_data = self._framer.take_buffered()
                    break
                if self._compression_pending:
                    self._switch_compression()
        except RemoteProtocolError:
            self._fail()
            raise
        except _RuleBrokenError as violation:
            self._fail()
            raise RemoteProtocolError(violation.message, violation.error_code) from violation
        except LocalProtocolError as exc:
            self._fail()
            raise RemoteProtocolError(exc.message, exc.error_code, exc.sqlstate) from exc
        return events

    def _query_received(self, payload: bytes) -> ComQuery:
        # What _receive_packet does for a COM_QUERY (without query
        # attributes) received in COMMAND_IDLE, without the table lookups.
        event = ComQuery(payload[1:])
        self._omitted_eof = False
        self.command = event
        self.column_count = 0
        self.columns = []
        self._phase = Phase.RESULT_PENDING
        return event

    def _execute_received(self, payload: bytes) -> ComStmtExecute:
        # What _receive_packet does for a COM_STMT_EXECUTE (header decoded,
        # parameters left raw) received in COMMAND_IDLE, without the tables.
        flags = _CURSOR_TYPES.get(payload[5])
        if flags is None:
            flags = _CURSOR_TYPES[payload[5]] = CursorType(payload[5])
        event = ComStmtExecute(
            int.from_bytes(payload[1:5], "little"),
            flags,
            int.from_bytes(payload[6:10], "little"),
            (),
            True,
            payload[10:],
        )
        self._omitted_eof = False
        self._execute_command(event)
        self._phase = Phase.RESULT_PENDING
        return event

    def _next_packet_any_sequence(self) -> Any:
        framer = self._framer
        if framer.__class__ is not PacketFramer:
            # The compressed layer checks its own sequence ids.
            return framer.next_packet()
        checking = framer.check_sequence
        framer.check_sequence = False
        try:
            return framer.next_packet()
        finally:
            framer.check_sequence = checking

    def _receive_packet(self, payload: bytes) -> Event:
        phase = self._phase
        reader = _READERS.get((self._peer, phase))
        if reader is None:  # pragma: no cover - _TURNS and _READERS agree
            raise _RuleBrokenError(f"no packet may be received in phase {phase.name}")
        event = reader(self, payload)
        self._omitted_eof = False
        self._transition(self._peer, event, event.__class__)
        if self._phase is Phase.COMMAND_IDLE:
            # Whatever comes next is a new command: sequence ids start again.
            self._framer.reset_sequence()
        return event

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
        replaces it (and an C{OKPacket(header=0xFE)} without it to an EOF).
        See also L{end_of_rows}.

        @param event: the packet or event to send.
        @return: the framed bytes (compressed when the compressed protocol is on).
        @raise LocalProtocolError: C{event} is not allowed in this phase for this
            role; the phase becomes L{Phase.ERROR}.
        """
        cls = event.__class__
        # The hot path: relaying a row.
        if cls is RowData and self._phase is self._row_phase and not self._omitted_eof:
            row: bytes = self._framer.frame(event.payload)
            return row
        if (
            cls is ComQuery
            and self._phase is Phase.COMMAND_IDLE
            and self.role is Role.CLIENT
            and not int(self.capabilities) & _QUERY_ATTRIBUTES
            and not self._omitted_eof
        ):
            # A client sends the commonest command without the tables (what
            # _payload and _transition would do for it).
            self.command = event
            self.column_count = 0
            self.columns = []
            self._phase = Phase.RESULT_PENDING
            query: bytes = self._framer.frame(b"\x03" + event.query)
            return query
        if (
            cls is ComStmtExecute
            and event.raw_parameters is not None
            and self._phase is Phase.COMMAND_IDLE
            and self.role is Role.CLIENT
            and not int(self.capabilities) & _QUERY_ATTRIBUTES
            and not self._omitted_eof
        ):
            # An execute relayed with its parameters undecoded, without the tables.
            self._command(event, cls)
            self._phase = Phase.RESULT_PENDING
            execute: bytes = self._framer.frame(event.encode(self.capabilities))
            return execute
        payload = self._checked_payload(event, cls)
        if payload is None:
            return b""
        data: bytes = self._framer.frame(payload)
        if self._phase is Phase.COMMAND_IDLE:
            # Whatever comes next is a new command: sequence ids start again.
            self._framer.reset_sequence()
        if self._compression_pending:
            self._switch_compression()
        return data

    def _takes_framed(self, framed: bytes, payload_length: int) -> bool:
        # Whether a command the caller framed itself (sequence id 0, one chunk, a
        # payload of payload_length bytes) is what send() would write here: a client
        # idle, in step, without query attributes or compression.
        return (
            self._phase is Phase.COMMAND_IDLE
            and self.role is Role.CLIENT
            and not self._omitted_eof
            and not int(self.capabilities) & _QUERY_ATTRIBUTES
            and self._framer.__class__ is PacketFramer
            and self._framer._next_seq == 0
            and len(framed) == payload_length + 4
            and len(framed) < MAX_PACKET_CHUNK
        )

    def send_execute(self, event: ComStmtExecute, framed: bytes) -> bytes:
        """
        L{send} a C{ComStmtExecute} with undecoded parameters whose framed
        bytes the caller has already (a proxy relaying its client's execute
        with the statement id replaced: sequence id 0 and the same encoding).

        @param event: the command (C{raw_parameters} set).
        @param framed: its bytes as C{send(event)} would return them; checked
            by length, command byte, statement id and sequence id.
        @return: the bytes to write (C{framed}, or C{send(event)} when this
            conversation would frame it differently).
        """
        raw = event.raw_parameters
        if (
            raw is not None
            and self._takes_framed(framed, len(raw) + 10)
            and framed[3] == 0
            and framed[4] == _COM_STMT_EXECUTE
            and int.from_bytes(framed[5:9], "little") == event.statement_id
        ):
            self._execute_command(event)
            self._phase = Phase.RESULT_PENDING
            self._framer._next_seq = 1
            return framed
        return self.send(event)

    def send_query(self, event: ComQuery, framed: bytes) -> bytes:
        """
        L{send} a C{ComQuery} whose framed bytes the caller has already (a
        proxy relaying its client's command: the same payload with sequence
        id 0 frames to the same bytes).

        @param event: the command.
        @param framed: its bytes as C{send(event)} would return them
            (header with sequence id 0, C{0x03}, the query); checked by length.
        @return: the bytes to write (C{framed}, or C{send(event)} when this
            conversation would frame it differently).
        """
        if self._takes_framed(framed, len(event.query) + 1):
            self.command = event
            self.column_count = 0
            self.columns = []
            self._phase = Phase.RESULT_PENDING
            self._framer._next_seq = 1
            return framed
        return self.send(event)

    def _checked_payload(self, event: Event, cls: type) -> bytes | None:
        """
        Check and apply the transition for sending C{event}; return its payload
        (C{None}: nothing to send), turning violations into L{LocalProtocolError}.
        """
        try:
            return self._payload(event, cls)
        except _RuleBrokenError as violation:
            self._fail()
            raise LocalProtocolError(violation.message, violation.error_code) from violation
        except RemoteProtocolError as exc:
            # A relayed payload we cannot read: sending it would be our fault.
            self._fail()
            raise LocalProtocolError(exc.message, exc.error_code, exc.sqlstate) from exc
        except LocalProtocolError:
            self._fail()
            raise

    def _payload(self, event: Event, cls: type) -> bytes | None:
        phase = self._phase
        if phase is Phase.ERROR:
            raise _RuleBrokenError(
                "the connection is in the ERROR phase", ErrorCode.CR_UNKNOWN_ERROR
            )
        payload: bytes | None = None
        if cls is RawPacket:
            payload = event.payload
            reader = _READERS.get((self.role, phase))
            if reader is None:
                raise _RuleBrokenError(
                    f"{self.role.value} may not send anything in phase {phase.name}",
                    ErrorCode.CR_COMMANDS_OUT_OF_SYNC,
                )
            event = reader(self, payload)
            cls = event.__class__
        if self._omitted_eof:
            self._omitted_eof = False
            if cls is EOFPacket and payload is None:
                if not (
                    event.status_flags & ServerStatus.SERVER_STATUS_CURSOR_EXISTS
                    and isinstance(self.command, ComStmtExecute)
                    and self.command.flags & _CURSOR_FLAGS
                ):
                    return None
                # A cursor was opened: the client must see that status.
                event = OKPacket(
                    status_flags=event.status_flags, warnings=event.warnings, header=0xFE
                )
                cls = OKPacket
        if self.role is Role.SERVER and payload is None and phase in _TERMINATOR_PHASES:
            if cls is EOFPacket and self._deprecate_eof:
                event = OKPacket(
                    status_flags=event.status_flags, warnings=event.warnings, header=0xFE
                )
                cls = OKPacket
            elif cls is OKPacket and event.header == 0xFE and not self._deprecate_eof:
                event = EOFPacket(warnings=event.warnings, status_flags=event.status_flags)
                cls = EOFPacket
        # Only ERRs we build ourselves: a relayed payload is the backend's business.
        if (
            cls is ERRPacket
            and payload is None
            and self.role is Role.SERVER
            and is_client_error(event.error_code)
        ):
            raise _RuleBrokenError(
                f"a server may not send client error code {event.error_code} "
                "(libmariadb reads it as a malformed packet); use a server error code",
                ErrorCode.ER_UNKNOWN_ERROR,
            )
        self._transition(self.role, event, cls)
        if payload is None:
            if cls is BinaryRow:
                payload = event.encode(self.capabilities, self.columns)
            else:
                payload = event.encode(self.capabilities)
        return payload

    def send_many(self, events: Iterable[Event]) -> bytes:
        """
        L{send} each event in turn; return all the bytes joined.

        Under the compressed protocol the packets of one command's answer are
        compressed together (much better than one compressed packet per row).

        @param events: e.g. a whole result set: C{ColumnCount}, definitions,
            EOF, rows, terminator.
        @return: the concatenated framed bytes.
        @raise LocalProtocolError: as L{send}.
        """
        framer = self._framer
        if self.compression is None:
            send = self.send
            return b"".join([send(event) for event in events])
        out: list[bytes] = []
        batch: list[bytes] = []
        for event in events:
            payload = self._checked_payload(event, event.__class__)
            if payload is None:
                continue
            batch.append(payload)
            if self._phase is Phase.COMMAND_IDLE:
                out.append(framer.frame_many(batch))
                batch = []
                framer.reset_sequence()
        if batch:
            out.append(framer.frame_many(batch))
        return b"".join(out)

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
        if status_flags is None:
            status_flags = self.status_flags & ~ServerStatus.SERVER_MORE_RESULTS_EXISTS
        if self._deprecate_eof:
            return OKPacket(status_flags=status_flags, warnings=warnings, header=0xFE)
        return EOFPacket(warnings=warnings, status_flags=status_flags)

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
        if self.role is not Role.SERVER:
            return b""
        phase = self._phase_before_error if self._phase is Phase.ERROR else self._phase
        if phase is None or phase in (Phase.SSL_REQUESTED, Phase.CLOSED, Phase.ERROR):
            return b""
        code, sqlstate = exc.error_code, exc.sqlstate
        if is_client_error(code):
            # Client-library codes must not reach a client in an ERR packet.
            code, sqlstate = (
                ErrorCode.ER_MALFORMED_PACKET,
                sqlstate_for(ErrorCode.ER_MALFORMED_PACKET),
            )
        packet = ERRPacket(code, exc.message, sqlstate)
        caps = self.capabilities
        if phase in (Phase.CONNECT, Phase.HANDSHAKE_SENT):
            caps |= Capability.CLIENT_PROTOCOL_41
        error: bytes = self._framer.frame(packet.encode(caps))
        return error

    def tls_started(self) -> None:
        """
        Tell the connection that the TLS handshake after an C{SSLRequest} has
        been set up by the adapter (C{transport.startTLS} called); the
        conversation continues in L{Phase.TLS_ESTABLISHED}.

        @raise LocalProtocolError: not in L{Phase.SSL_REQUESTED}.
        """
        if self._phase is not Phase.SSL_REQUESTED:
            raise LocalProtocolError(
                f"tls_started() in phase {self._phase.name}, not SSL_REQUESTED"
            )
        self._phase = Phase.TLS_ESTABLISHED
        self.tls = True

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
        if self.compression is not None:
            return
        if self._phase is not Phase.COMMAND_IDLE or self.client_capabilities is None:
            raise LocalProtocolError("compression can only start after the handshake")
        if self._compression_algorithm() is None:
            raise LocalProtocolError("compression was not negotiated")
        self._switch_compression()

    def _relayed(self, phase: Phase, next_seq: int, status_flags: int, warnings: int) -> None:
        """
        Take the state an L{obproxy_tx.wire.relay.AnswerRelay} left the
        conversation in, as if every packet it relayed had passed here.

        @param phase: the phase now.
        @param next_seq: the sequence id of the next packet.
        @param status_flags: the last OK/EOF's status flags (negative: none seen).
        @param warnings: the last OK/EOF's warning count.
        """
        self._phase = phase
        # The relay only runs on plain framers (no compression).
        self._framer._next_seq = next_seq
        self._omitted_eof = False
        if status_flags >= 0:
            self.status_flags = _status_flags(status_flags)
            self.warnings = warnings
        if phase is Phase.COMMAND_IDLE:
            self.command = None

    # --- the machine ------------------------------------------------------

    def _fail(self) -> None:
        if self._phase is not Phase.ERROR:
            self._phase_before_error = self._phase
            self._phase = Phase.ERROR

    def _transition(self, sender: Role, event: Event, cls: type) -> None:
        phase = self._phase
        allowed = _TRANSITIONS.get((sender, phase))
        target = allowed.get(cls) if allowed is not None else None
        if target is None:
            code = (
                ErrorCode.CR_COMMANDS_OUT_OF_SYNC
                if sender is Role.SERVER
                else ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER
            )
            raise _RuleBrokenError(
                f"{cls.__name__} may not be sent by the {sender.value} in phase {phase.name}",
                code,
            )
        self._apply(sender, event, cls, phase)
        if target.__class__ is _Decision:
            target = self._decide(target, event)
        self._phase = target  # type: ignore[assignment]
        if target is Phase.COMMAND_IDLE:
            self.command = None

    def _apply(self, sender: Role, event: Event, cls: type, phase: Phase) -> None:
        """
        Record the facts an event carries (side effects of a transition).
        """
        if cls is OKPacket or cls is EOFPacket:
            self.status_flags = _status_flags(event.status_flags)
            self.warnings = event.warnings
            if cls is OKPacket:
                if phase in _LOGIN_PHASES:
                    self._logged_in()
                elif phase in _CHANGE_USER_PHASES or isinstance(self.command, ComResetConnection):
                    self.statements.clear()
                    self._execute_columns.clear()
        elif cls is ColumnCount:
            self.column_count = self.columns_remaining = event.count
            self.columns = []
            if isinstance(self.command, ComStmtExecute):
                # COM_STMT_FETCH on a cursor needs these columns later.
                self._execute_columns[self.command.statement_id] = self.columns
        elif cls is ColumnDefinition41:
            self.columns_remaining -= 1
            if phase is not Phase.FIELD_LIST:
                self.columns.append(event)
        elif cls is StmtPrepareOK:
            self._prepared = event
            self.columns = []
            self.statements[event.statement_id] = PreparedStatementInfo(
                event.statement_id, event.num_params, event.num_columns
            )
        elif phase is Phase.COMMAND_IDLE and sender is Role.CLIENT:
            self._command(event, cls)
        elif cls is HandshakeV10:
            self.greeting = event
            self.server_capabilities = Capability(event.capabilities)
            self.status_flags = ServerStatus(event.status_flags)
            if self.role is Role.SERVER:
                self.capabilities = Capability(event.capabilities)
        elif cls is SSLRequest or cls is HandshakeResponse41:
            self._client_hello(event, cls)

    def _execute_command(self, event: ComStmtExecute) -> None:
        # What _command does for an execute with undecoded parameters (the hot
        # paths: received, or relayed as the client's bytes): a long-data set is used up.
        self.command = event
        self.column_count = 0
        self.columns = []
        info = self.statements.get(event.statement_id)
        if info is not None:
            long_data = info.long_data
            self._execute_long_data = long_data
            if long_data:
                self.statements[info.statement_id] = attrs.evolve(info, long_data=_NO_LONG_DATA)

    def _command(self, event: Event, cls: type) -> None:
        self.command = event
        self.column_count = 0
        self.columns = []
        if cls is ComStmtFetch:
            self.columns = self._execute_columns.get(event.statement_id, [])
            self.column_count = len(self.columns)
        elif cls is ComStmtClose:
            self.statements.pop(event.statement_id, None)
            self._execute_columns.pop(event.statement_id, None)
            return
        info = self.statements.get(getattr(event, "statement_id", -1))
        if info is None:
            return
        if cls is ComStmtSendLongData:
            info = attrs.evolve(info, long_data=info.long_data | {event.param_id})
        elif cls is ComStmtReset:
            if not info.long_data:
                return
            info = attrs.evolve(info, long_data=_NO_LONG_DATA)
        elif cls is ComStmtExecute:
            long_data = info.long_data
            self._execute_long_data = long_data
            if event.raw_parameters is None and event.new_params_bound and event.parameters:
                info = attrs.evolve(
                    info, long_data=_NO_LONG_DATA, param_types=event.parameter_types()
                )
            elif long_data:
                info = attrs.evolve(info, long_data=_NO_LONG_DATA)
            else:
                return  # the usual execute: nothing changes (no copy per execute)
        self.statements[info.statement_id] = info

    def decode_execute(self, command: Any) -> Any:
        """
        Decode the parameters of a received C{ComStmtExecute} (which
        L{receive_data} hands out with C{raw_parameters} undecoded), using what
        this connection recorded about the statement: its parameter count
        (from the C{StmtPrepareOK} sent), the types bound by an earlier
        execution, and which parameters came as C{COM_STMT_SEND_LONG_DATA}.

        Remembers the bound types for the next execution. Errors here are
        the client's fault but not fatal for the connection: answer them
        with an ERR packet.

        @param command: the received C{ComStmtExecute}.
        @return: a copy with C{parameters} decoded.
        @raise RemoteProtocolError: the statement id is unknown
            (C{ER_UNKNOWN_STMT_HANDLER}) or the parameters are malformed.
        """
        info = self.statements.get(command.statement_id)
        if info is None:
            raise RemoteProtocolError(
                f"unknown prepared statement handler ({command.statement_id}) given to EXECUTE",
                ErrorCode.ER_UNKNOWN_STMT_HANDLER,
            )
        long_data = self._execute_long_data if command is self.command else info.long_data
        decoded = command.decode_parameters(
            self.capabilities, info.param_count, info.param_types, long_data
        )
        if decoded.new_params_bound and decoded.parameters:
            self.statements[info.statement_id] = attrs.evolve(
                info, param_types=decoded.parameter_types()
            )
        return decoded

    def _client_hello(self, event: Event, cls: type) -> None:
        asked = Capability(event.capabilities)
        offered = self.server_capabilities
        if cls is SSLRequest and not asked & Capability.CLIENT_SSL:
            raise _RuleBrokenError("an SSLRequest without CLIENT_SSL", ErrorCode.ER_HANDSHAKE_ERROR)
        if cls is SSLRequest and offered is not None and not offered & Capability.CLIENT_SSL:
            raise _RuleBrokenError(
                "an SSLRequest to a server that does not offer CLIENT_SSL",
                ErrorCode.ER_HANDSHAKE_ERROR,
            )
        self.client_capabilities = asked
        # Plain ints: IntFlag operations make new members (two logins per connection).
        negotiated = int(asked) & int(offered) if offered is not None else int(asked)
        self.capabilities = Capability(negotiated)
        self._deprecate_eof = bool(negotiated & _DEPRECATE_EOF)

    def _logged_in(self) -> None:
        if self._compression_algorithm() is not None:
            self._compression_pending = True

    def _compression_algorithm(self) -> str | None:
        if self.client_capabilities is None:
            return None
        caps = int(self.capabilities)
        if caps & _ZSTD_COMPRESSION:
            return "zstd"
        if caps & _COMPRESS:
            return "zlib"
        return None

    def _switch_compression(self) -> None:
        self._compression_pending = False
        algorithm = self._compression_algorithm()
        if algorithm is None:  # pragma: no cover - checked by callers
            return
        from obproxy_tx.wire.compression import CompressedFramer

        self._framer = CompressedFramer.upgrade(
            self._framer, algorithm=algorithm, level=self.compression_level
        )
        self.compression = algorithm

    def _decide(self, decision: _Decision, event: Event) -> Phase:
        """
        Resolve a data-dependent transition (after L{_apply} recorded the facts).
        """
        if decision is _END_OF_RESULT:
            if event.status_flags & ServerStatus.SERVER_MORE_RESULTS_EXISTS:
                self.column_count = 0
                self.columns = []
                return Phase.RESULT_PENDING
            return Phase.COMMAND_IDLE
        if decision is _AFTER_COLUMN_COUNT:
            if event.count == 0:
                raise _RuleBrokenError(
                    "a result set with no columns", ErrorCode.ER_MALFORMED_PACKET
                )
            if not event.metadata_follows:
                self.columns_remaining = 0
                return self._after_metadata(Phase.RESULT_COLUMNS_EOF, Phase.RESULT_ROWS)
            return Phase.RESULT_COLUMNS
        if decision is _AFTER_COLUMN:
            if self.columns_remaining > 0:
                return Phase.RESULT_COLUMNS
            return self._after_metadata(Phase.RESULT_COLUMNS_EOF, Phase.RESULT_ROWS)
        if decision is _AFTER_COLUMNS_EOF:
            # Only an execute that asked for a cursor gets one: MariaDB also sets the flag on
            # the result sets a compound statement's SELECTs send while its own (SQL) cursor is
            # open, and those rows follow at once.
            command = self.command
            if (
                event.status_flags & ServerStatus.SERVER_STATUS_CURSOR_EXISTS
                and isinstance(command, ComStmtExecute)
                and command.flags & _CURSOR_FLAGS
            ):
                return Phase.COMMAND_IDLE
            return Phase.RESULT_ROWS
        if decision is _AFTER_INFILE_DATA:
            return Phase.LOCAL_INFILE_DONE if not event.data else Phase.LOCAL_INFILE
        prepared = self._prepared
        metadata = getattr(prepared, "metadata_follows", True)
        if decision is _AFTER_PREPARE_OK:
            if metadata and prepared.num_params:
                self.columns_remaining = prepared.num_params
                return Phase.PREPARE_PARAMS
            return self._prepare_columns(metadata)
        if decision is _AFTER_PARAM:
            if self.columns_remaining > 0:
                return Phase.PREPARE_PARAMS
            if not self._deprecate_eof:
                return Phase.PREPARE_PARAMS_EOF
            self._omitted_eof = self.role is Role.SERVER
            return self._prepare_columns(metadata)
        if decision is _AFTER_PARAMS_EOF:
            return self._prepare_columns(metadata)
        if decision is _AFTER_PREPARE_COLUMN:
            if self.columns_remaining > 0:
                return Phase.PREPARE_COLUMNS
            return self._after_metadata(Phase.PREPARE_COLUMNS_EOF, Phase.COMMAND_IDLE)
        raise AssertionError(decision)  # pragma: no cover

    def _after_metadata(self, eof_phase: Phase, next_phase: Phase) -> Phase:
        if not self._deprecate_eof:
            return eof_phase
        self._omitted_eof = self.role is Role.SERVER
        return next_phase

    def _prepare_columns(self, metadata: bool) -> Phase:
        prepared = self._prepared
        if metadata and prepared.num_columns:
            self.columns_remaining = prepared.num_columns
            return Phase.PREPARE_COLUMNS
        return Phase.COMMAND_IDLE


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

    A received C{ComStmtExecute} is decoded with the parameter count (and
    types) recorded in L{statements} when the statement was prepared through
    this connection; for an unknown statement id only its header is decoded
    (no parameters), and the application answers with an ERR.
    """

    __slots__ = ()
    role = Role.SERVER
    _peer = Role.CLIENT
    _peer_turn = _TURNS[Role.CLIENT]
    _row_phase = Phase.RESULT_ROWS


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

    __slots__ = ()
    role = Role.CLIENT
    _peer = Role.SERVER
    _peer_turn = _TURNS[Role.SERVER]
    # A client never sends rows.
    _row_phase = None


def _phase_node(phase: Phase) -> str:
    return phase.name


def render_diagram(output: str = "dot") -> str:
    """
    Render the transition table as a diagram source.

    @param output: C{"dot"} (Graphviz) or C{"mermaid"} (a C{stateDiagram-v2}).
    @return: the diagram text; edges are labelled C{"server: OKPacket"} etc.,
        and data-dependent transitions carry their condition.
    @raise ValueError: unknown C{output}.
    """
    edges: dict[tuple[str, str], list[str]] = {}
    for (sender, phase), allowed in _TRANSITIONS.items():
        for cls, target in allowed.items():
            if isinstance(target, _Decision):
                targets = target.targets
                label = f"{sender.value}: {cls.__name__} [{target.name}]"
            else:
                targets = (target,)
                label = f"{sender.value}: {cls.__name__}"
            for each in targets:
                edges.setdefault((phase.name, each.name), []).append(label)
    lines: list[str]
    if output == "dot":
        lines = [
            "digraph mysql_connection {",
            "  rankdir=TB;",
            '  node [shape=box, style=rounded, fontname="Helvetica"];',
            '  edge [fontname="Helvetica", fontsize=9];',
        ]
        for phase in Phase:
            lines.append(f"  {phase.name};")
        for (source, destination), labels in edges.items():
            label = "\\n".join(labels).replace('"', '\\"')
            lines.append(f'  {source} -> {destination} [label="{label}"];')
        lines.append('  ERROR [style="rounded,dashed"];')
        lines.append("}")
        return "\n".join(lines) + "\n"
    if output == "mermaid":
        lines = ["stateDiagram-v2", "  [*] --> CONNECT"]
        for (source, destination), labels in edges.items():
            label = "<br>".join(labels).replace(":", "#58;")
            lines.append(f"  {source} --> {destination}: {label}")
        lines.append("  CLOSED --> [*]")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown diagram output {output!r}: use 'dot' or 'mermaid'")


def _main(argv: list[str]) -> int:
    """
    C{python -m obproxy_tx.wire.connection [--diagram | --mermaid]}.
    """
    if argv[1:] in ([], ["--diagram"], ["--dot"]):
        sys.stdout.write(render_diagram("dot"))
        return 0
    if argv[1:] == ["--mermaid"]:
        sys.stdout.write(render_diagram("mermaid"))
        return 0
    sys.stderr.write("usage: python -m obproxy_tx.wire.connection [--diagram | --mermaid]\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv))
