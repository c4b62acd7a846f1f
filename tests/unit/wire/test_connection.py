"""
Tests for L{obproxy_tx.wire.connection}: whole conversations through a
L{ConnectionPair}, illegal moves on both sides, and the hot row path.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from obproxy_tx.testing import DEFAULT_CAPABILITIES, ConnectionPair
from obproxy_tx.wire import connection as connection_module
from obproxy_tx.wire.compression import zstd_available
from obproxy_tx.wire.connection import (
    ClientConnection,
    ConnectionClosed,
    LocalInfileData,
    Phase,
    Role,
    RowData,
    ServerConnection,
    StatisticsResponse,
    render_diagram,
)
from obproxy_tx.wire.constants import (
    Capability,
    ColumnType,
    CursorType,
    ServerStatus,
    SetOption,
)
from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from obproxy_tx.wire.packets import (
    AuthMoreData,
    AuthSwitchRequest,
    AuthSwitchResponse,
    BinaryRow,
    BoundParameter,
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
    LocalInfileRequest,
    OKPacket,
    RawPacket,
    SSLRequest,
    StmtPrepareOK,
    TextRow,
    UnknownCommand,
)

S = Role.SERVER
C = Role.CLIENT
AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT
MORE = ServerStatus.SERVER_MORE_RESULTS_EXISTS
DEPRECATE = DEFAULT_CAPABILITIES | Capability.CLIENT_DEPRECATE_EOF


def logged_in(capabilities: Capability = DEFAULT_CAPABILITIES, **kwargs: Any) -> ConnectionPair:
    pair = ConnectionPair(capabilities, capabilities, **kwargs)
    pair.handshake()
    return pair


def column(name: bytes, column_type: ColumnType = ColumnType.MYSQL_TYPE_VAR_STRING) -> Any:
    return ColumnDefinition41(name=name, column_type=column_type)


def headers(wire: bytes) -> list[tuple[int, int]]:
    """(length, seq) of every chunk in C{wire}."""
    result = []
    position = 0
    while position < len(wire):
        (header,) = struct.unpack_from("<I", wire, position)
        length = header & 0xFFFFFF
        result.append((length, header >> 24))
        position += 4 + length
    return result


# --- the connection phase -------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_plain_handshake(chunk_size: int | None) -> None:
    """A greeting, a response and an OK bring both sides to COMMAND_IDLE, in any chunking."""
    pair = ConnectionPair(chunk_size=chunk_size)
    assert pair.phase() is Phase.CONNECT
    events = pair.send(S, pair.greeting())
    assert [type(e).__name__ for e in events] == ["HandshakeV10"]
    assert pair.phase() is Phase.HANDSHAKE_SENT
    assert pair.client.server_capabilities == DEFAULT_CAPABILITIES
    response = HandshakeResponse41(
        DEFAULT_CAPABILITIES, 1 << 24, 255, "root", b"x" * 20, auth_plugin_name="x"
    )
    events = pair.send(C, response)
    assert [type(e) for e in events] == [HandshakeResponse41]
    assert pair.phase() is Phase.AUTHENTICATING
    events = pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert [type(e) for e in events] == [OKPacket]
    assert pair.phase() is Phase.COMMAND_IDLE
    assert pair.server.capabilities == pair.client.capabilities == DEFAULT_CAPABILITIES
    assert pair.client.autocommit and pair.server.autocommit
    assert not pair.client.in_transaction
    assert [seq for _, seq in headers(bytes(pair.wire[S]))] == [0, 2]
    assert [seq for _, seq in headers(bytes(pair.wire[C]))] == [1]


def test_negotiated_capabilities_are_the_intersection() -> None:
    """The negotiated set is what the server offered and the client asked for."""
    pair = ConnectionPair(
        DEFAULT_CAPABILITIES | Capability.CLIENT_DEPRECATE_EOF,
        DEFAULT_CAPABILITIES & ~Capability.CLIENT_SESSION_TRACK,
    )
    pair.handshake(capabilities=DEFAULT_CAPABILITIES & ~Capability.CLIENT_SESSION_TRACK)
    assert not pair.server.capabilities & Capability.CLIENT_SESSION_TRACK
    assert not pair.server.deprecate_eof and not pair.client.deprecate_eof
    assert pair.server.client_capabilities == pair.client.client_capabilities


def test_greeting_refused_with_err() -> None:
    """A server may answer the connection with an ERR instead of a greeting; both sides close."""
    pair = ConnectionPair()
    events = pair.send(S, ERRPacket(ErrorCode.ER_CON_COUNT_ERROR, "Too many connections", "08004"))
    assert events[0].error_code == ErrorCode.ER_CON_COUNT_ERROR
    assert pair.phase() is Phase.CLOSED


def test_login_refused() -> None:
    """An ERR during authentication closes the conversation."""
    pair = ConnectionPair()
    pair.send(S, pair.greeting())
    pair.send(C, HandshakeResponse41(DEFAULT_CAPABILITIES, 1 << 24, 255, "bob", b"bad"))
    events = pair.send(S, ERRPacket(1045, "Access denied", "28000"))
    assert events == [ERRPacket(1045, "Access denied", "28000")]
    assert pair.phase() is Phase.CLOSED
    with pytest.raises(LocalProtocolError):
        pair.client.send(ComPing())


def test_ssl_request_then_tls() -> None:
    """An SSLRequest stops parsing until both sides report TLS up, then the response follows."""
    caps = DEFAULT_CAPABILITIES | Capability.CLIENT_SSL
    pair = ConnectionPair(caps, caps)
    pair.send(S, pair.greeting())
    ssl = SSLRequest(caps, 1 << 24, 255)
    data = pair.client.send(ssl)
    assert pair.client.phase is Phase.SSL_REQUESTED
    client_hello = b"\x16\x03\x01\x02\x00rest-of-client-hello"
    events = pair.server.receive_data(data + client_hello)
    assert events == [ssl]
    assert pair.server.phase is Phase.SSL_REQUESTED
    assert pair.server.trailing_data == client_hello
    with pytest.raises(LocalProtocolError):
        pair.server.receive_data(b"\x16\x03")
    pair.start_tls()
    assert pair.phase() is Phase.TLS_ESTABLISHED
    with pytest.raises(LocalProtocolError):
        pair.client.send(ssl)
    pair = ConnectionPair(caps, caps)
    pair.send(S, pair.greeting())
    pair.send(C, ssl)
    pair.start_tls()
    pair.send(C, HandshakeResponse41(caps, 1 << 24, 255, "root", b"pw\x00"))
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert [seq for _, seq in headers(bytes(pair.wire[C]))] == [1, 2]
    assert [seq for _, seq in headers(bytes(pair.wire[S]))] == [0, 3]


def test_ssl_request_to_server_without_ssl() -> None:
    """A client may not send an SSLRequest to a server that did not offer CLIENT_SSL."""
    pair = ConnectionPair()
    pair.send(S, pair.greeting())
    with pytest.raises(LocalProtocolError):
        pair.client.send(SSLRequest(DEFAULT_CAPABILITIES | Capability.CLIENT_SSL, 1 << 24, 255))
    assert pair.client.phase is Phase.ERROR


def test_ssl_request_without_ssl_flag() -> None:
    """An SSLRequest whose capabilities lack CLIENT_SSL is refused with ER_HANDSHAKE_ERROR."""
    caps = DEFAULT_CAPABILITIES | Capability.CLIENT_SSL
    pair = ConnectionPair(caps, caps)
    pair.send(S, pair.greeting())
    payload = SSLRequest(DEFAULT_CAPABILITIES, 1 << 24, 255).encode(DEFAULT_CAPABILITIES)
    with pytest.raises(RemoteProtocolError) as caught:
        pair.server.receive_data(struct.pack("<I", len(payload) | 1 << 24) + payload)
    assert caught.value.error_code == ErrorCode.ER_HANDSHAKE_ERROR


def test_tls_flag() -> None:
    """tls tells whether the conversation went through tls_started()."""
    caps = DEFAULT_CAPABILITIES | Capability.CLIENT_SSL
    pair = ConnectionPair(caps, caps)
    pair.send(S, pair.greeting())
    assert not pair.server.tls
    pair.send(C, SSLRequest(caps, 1 << 24, 255))
    pair.start_tls()
    assert pair.server.tls and pair.client.tls


def test_tls_started_outside_ssl_requested() -> None:
    """tls_started() is only legal after an SSLRequest."""
    with pytest.raises(LocalProtocolError):
        ServerConnection(DEFAULT_CAPABILITIES).tls_started()


def test_auth_switch() -> None:
    """The server can switch plugins; the client's answer comes back as AuthSwitchResponse."""
    pair = ConnectionPair()
    pair.send(S, pair.greeting())
    pair.send(C, HandshakeResponse41(DEFAULT_CAPABILITIES, 1 << 24, 255, "root", b"\x01" * 32))
    switch = AuthSwitchRequest("mysql_native_password", b"n" * 20)
    assert pair.send(S, switch) == [switch]
    assert pair.phase() is Phase.AUTH_SWITCH_SENT
    assert pair.send(C, AuthSwitchResponse(b"r" * 20)) == [AuthSwitchResponse(b"r" * 20)]
    assert pair.phase() is Phase.AUTHENTICATING
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_caching_sha2_fast_auth() -> None:
    """caching_sha2 fast auth: AuthMoreData 0x03 then OK, with no client packet in between."""
    pair = ConnectionPair()
    pair.send(S, pair.greeting(auth_plugin_name="caching_sha2_password"))
    pair.send(C, HandshakeResponse41(DEFAULT_CAPABILITIES, 1 << 24, 255, "root", b"\x01" * 32))
    assert pair.send(S, AuthMoreData(b"\x03")) == [AuthMoreData(b"\x03")]
    assert pair.phase() is Phase.AUTH_MORE_DATA
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_caching_sha2_full_auth_with_public_key() -> None:
    """Full auth without TLS: 0x04, public-key request, key, encrypted password, OK."""
    pair = ConnectionPair()
    pair.send(S, pair.greeting(auth_plugin_name="caching_sha2_password"))
    pair.send(C, HandshakeResponse41(DEFAULT_CAPABILITIES, 1 << 24, 255, "root", b"\x01" * 32))
    pair.send(S, AuthMoreData(b"\x04"))
    assert pair.send(C, AuthSwitchResponse(b"\x02")) == [AuthSwitchResponse(b"\x02")]
    assert pair.phase() is Phase.AUTHENTICATING
    key = b"-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n"
    assert pair.send(S, AuthMoreData(key)) == [AuthMoreData(key)]
    pair.send(C, AuthSwitchResponse(b"\xaa" * 256))
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert [seq for _, seq in headers(bytes(pair.wire[S]))] == [0, 2, 4, 6]


# --- commands ------------------------------------------------------------


def test_query_ok_tracks_status_flags() -> None:
    """An OK answer ends the command and its status flags become the connection's facts."""
    pair = logged_in()
    assert pair.send(C, ComQuery(b"BEGIN")) == [ComQuery(b"BEGIN")]
    assert pair.phase() is Phase.RESULT_PENDING
    ok = OKPacket(status_flags=AUTOCOMMIT | ServerStatus.SERVER_STATUS_IN_TRANS)
    assert pair.send(S, ok) == [ok]
    assert pair.phase() is Phase.COMMAND_IDLE
    assert pair.client.in_transaction and pair.server.in_transaction
    assert pair.client.status_flags == ok.status_flags
    pair.send(C, ComQuery(b"COMMIT"))
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT, warnings=2))
    assert not pair.client.in_transaction and pair.client.warnings == 2


def test_query_err() -> None:
    """An ERR answer ends the command."""
    pair = logged_in()
    pair.send(C, ComQuery(b"SELEC"))
    events = pair.send(S, ERRPacket(1064, "syntax", "42000"))
    assert events == [ERRPacket(1064, "syntax", "42000")]
    assert pair.phase() is Phase.COMMAND_IDLE


def test_sequence_resets_per_command() -> None:
    """Every command starts at sequence id 0 and its reply continues from 1."""
    pair = logged_in()
    mark = len(pair.wire[C]), len(pair.wire[S])
    for _ in range(3):
        pair.send(C, ComQuery(b"SELECT 1"))
        pair.send(S, ColumnCount(1), column(b"1"), EOFPacket(), TextRow((b"1",)), EOFPacket())
    assert [seq for _, seq in headers(bytes(pair.wire[C][mark[0] :]))] == [0, 0, 0]
    assert [seq for _, seq in headers(bytes(pair.wire[S][mark[1] :]))] == [1, 2, 3, 4, 5] * 3


@pytest.mark.parametrize("chunk_size", [None, 1, 5])
def test_text_result_set(chunk_size: int | None) -> None:
    """A text result set arrives as ColumnCount, definitions, EOF, raw RowData, EOF."""
    pair = logged_in(chunk_size=chunk_size)
    pair.send(C, ComQuery(b"SELECT a, b FROM t"))
    events = pair.send(S, ColumnCount(2), column(b"a"), column(b"b"))
    assert [type(e) for e in events] == [ColumnCount, ColumnDefinition41, ColumnDefinition41]
    assert pair.phase() is Phase.RESULT_COLUMNS_EOF
    assert pair.client.column_count == 2 and len(pair.client.columns) == 2
    pair.send(S, EOFPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.RESULT_ROWS
    rows = pair.send(S, TextRow((b"1", None)), TextRow((b"", b"x" * 300)))
    assert rows == [RowData(b"\x011\xfb"), RowData(b"\x00\xfc\x2c\x01" + b"x" * 300)]
    assert TextRow.decode(rows[1].payload, pair.client.capabilities, 2).values == (b"", b"x" * 300)
    end = pair.send(S, pair.server.end_of_rows())
    assert end == [EOFPacket(0, AUTOCOMMIT)]
    assert pair.phase() is Phase.COMMAND_IDLE


def test_deprecate_eof_result_set() -> None:
    """Under CLIENT_DEPRECATE_EOF the column EOF is dropped and rows end with an OK (0xFE)."""
    pair = logged_in(DEPRECATE)
    assert pair.server.deprecate_eof and pair.client.deprecate_eof
    pair.send(C, ComQuery(b"SELECT 1"))
    events = pair.send(S, ColumnCount(1), column(b"1"))
    assert pair.phase() is Phase.RESULT_ROWS
    # Result-set code written for the old protocol still works: the EOF is swallowed.
    assert pair.server.send(EOFPacket()) == b""
    events = pair.send(S, TextRow((b"1",)), EOFPacket(status_flags=AUTOCOMMIT, warnings=1))
    assert events[0] == RowData(b"\x011")
    assert events[1] == OKPacket(status_flags=AUTOCOMMIT, warnings=1, header=0xFE)
    assert pair.phase() is Phase.COMMAND_IDLE
    pair.send(C, ComQuery(b"SELECT 1"))
    pair.send(S, ColumnCount(1), column(b"1"))
    end = pair.server.end_of_rows(AUTOCOMMIT)
    assert end == OKPacket(status_flags=AUTOCOMMIT, header=0xFE)
    assert pair.send(S, end) == [end]
    assert pair.phase() is Phase.COMMAND_IDLE


def test_ok_terminator_without_deprecate_eof_becomes_eof() -> None:
    """A server sending the 0xFE OK to a client without DEPRECATE_EOF sends an EOF instead."""
    pair = logged_in()
    pair.send(C, ComQuery(b"SELECT 1"))
    pair.send(S, ColumnCount(1), column(b"1"), EOFPacket())
    events = pair.send(S, OKPacket(status_flags=AUTOCOMMIT, header=0xFE))
    assert events == [EOFPacket(0, AUTOCOMMIT)]


def test_deprecate_eof_ok_terminator_with_session_state() -> None:
    """A long 0xFE OK (with session-track data) still ends the rows under DEPRECATE_EOF."""
    pair = logged_in(DEPRECATE)
    pair.send(C, ComQuery(b"SELECT 1"))
    pair.send(S, ColumnCount(1), column(b"1"), TextRow((b"1",)))
    ok = OKPacket(
        status_flags=AUTOCOMMIT | ServerStatus.SERVER_SESSION_STATE_CHANGED,
        info=b"x" * 20,
        session_state_changes=b"\x01\x05\x04test",
        header=0xFE,
    )
    assert pair.send(S, ok) == [ok]
    assert pair.phase() is Phase.COMMAND_IDLE


@pytest.mark.parametrize("capabilities", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_multi_results(capabilities: Capability) -> None:
    """SERVER_MORE_RESULTS_EXISTS keeps the command open for the next result, in both EOF modes."""
    pair = logged_in(capabilities)
    pair.send(C, ComQuery(b"CALL p()"))
    pair.send(S, OKPacket(affected_rows=1, status_flags=AUTOCOMMIT | MORE))
    assert pair.phase() is Phase.RESULT_PENDING
    assert pair.client.more_results
    pair.send(S, ColumnCount(1), column(b"a"), EOFPacket(), TextRow((b"1",)))
    pair.send(S, pair.server.end_of_rows(AUTOCOMMIT | MORE))
    assert pair.phase() is Phase.RESULT_PENDING
    assert pair.client.column_count == 0
    pair.send(S, ColumnCount(1), column(b"b"), EOFPacket())
    pair.send(S, pair.server.end_of_rows(AUTOCOMMIT | MORE))
    assert pair.phase() is Phase.RESULT_PENDING
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert not pair.client.more_results


def test_multi_results_err_ends_command() -> None:
    """An ERR after a result with SERVER_MORE_RESULTS_EXISTS ends the command."""
    pair = logged_in()
    pair.send(C, ComQuery(b"SELECT 1; SELEC"))
    pair.send(S, ColumnCount(1), column(b"1"), EOFPacket(), EOFPacket(status_flags=MORE))
    pair.send(S, ERRPacket(1064, "syntax"))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_err_in_the_middle_of_rows() -> None:
    """An ERR after some rows ends the result (e.g. a killed query)."""
    pair = logged_in()
    pair.send(C, ComQuery(b"SELECT SLEEP(10)"))
    pair.send(S, ColumnCount(1), column(b"x"), EOFPacket(), TextRow((b"0",)))
    events = pair.send(S, ERRPacket(1317, "Query execution was interrupted", "70100"))
    assert events[0].error_code == 1317
    assert pair.phase() is Phase.COMMAND_IDLE


def test_local_infile() -> None:
    """LOCAL INFILE: request, file chunks, the empty end chunk, then the OK."""
    pair = logged_in()
    pair.send(C, ComQuery(b"LOAD DATA LOCAL INFILE 'f' INTO TABLE t"))
    assert pair.send(S, LocalInfileRequest(b"f")) == [LocalInfileRequest(b"f")]
    assert pair.phase() is Phase.LOCAL_INFILE
    events = pair.send(C, LocalInfileData(b"1\n2\n"), LocalInfileData(b"3\n"))
    assert events == [LocalInfileData(b"1\n2\n"), LocalInfileData(b"3\n")]
    assert pair.phase() is Phase.LOCAL_INFILE
    assert pair.send(C, LocalInfileData(b"")) == [LocalInfileData(b"")]
    assert pair.phase() is Phase.LOCAL_INFILE_DONE
    pair.send(S, OKPacket(affected_rows=3, status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert [seq for _, seq in headers(bytes(pair.wire[C]))][-4:] == [0, 2, 3, 4]


def test_local_infile_refused_by_client() -> None:
    """A client refusing the file sends only the empty chunk; the server answers ERR."""
    pair = logged_in()
    pair.send(C, ComQuery(b"LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t"))
    pair.send(S, LocalInfileRequest(b"/etc/passwd"))
    pair.send(C, LocalInfileData(b""))
    pair.send(S, ERRPacket(1148, "The used command is not allowed with this MariaDB version"))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_local_infile_in_multi_statement() -> None:
    """The OK after LOCAL INFILE data may announce more results."""
    pair = logged_in()
    pair.send(C, ComQuery(b"LOAD DATA LOCAL INFILE 'f' INTO TABLE t; SELECT 1"))
    pair.send(S, LocalInfileRequest(b"f"))
    pair.send(C, LocalInfileData(b""))
    pair.send(S, OKPacket(status_flags=MORE))
    assert pair.phase() is Phase.RESULT_PENDING


@pytest.mark.parametrize("capabilities", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_prepare_with_params_and_columns(capabilities: Capability) -> None:
    """COM_STMT_PREPARE: prepare-OK, parameter definitions, EOF, column definitions, EOF."""
    pair = logged_in(capabilities)
    pair.send(C, ComStmtPrepare(b"SELECT a, b FROM t WHERE c = ?"))
    assert pair.phase() is Phase.PREPARE_SENT
    events = pair.send(S, StmtPrepareOK(1, num_columns=2, num_params=1))
    assert events == [StmtPrepareOK(1, num_columns=2, num_params=1)]
    assert pair.phase() is Phase.PREPARE_PARAMS
    pair.send(S, column(b"?"))
    # Written for the old protocol: the EOFs are dropped under DEPRECATE_EOF.
    pair.send(S, EOFPacket())
    assert pair.phase() is Phase.PREPARE_COLUMNS
    pair.send(S, column(b"a"), column(b"b"))
    expected = Phase.COMMAND_IDLE if pair.client.deprecate_eof else Phase.PREPARE_COLUMNS_EOF
    assert pair.phase() is expected
    pair.send(S, EOFPacket())
    assert pair.phase() is Phase.COMMAND_IDLE
    info = pair.server.statements[1]
    assert (info.param_count, info.column_count) == (1, 2)
    assert pair.client.statements[1] == info


def test_prepare_without_params_or_columns() -> None:
    """A statement with neither parameters nor columns is answered by the prepare-OK alone."""
    pair = logged_in()
    pair.send(C, ComStmtPrepare(b"DO 1"))
    pair.send(S, StmtPrepareOK(5, num_columns=0, num_params=0))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_prepare_columns_only() -> None:
    """Without parameters the column definitions follow the prepare-OK directly."""
    pair = logged_in()
    pair.send(C, ComStmtPrepare(b"SELECT 1"))
    pair.send(S, StmtPrepareOK(5, num_columns=1, num_params=0))
    assert pair.phase() is Phase.PREPARE_COLUMNS
    pair.send(S, column(b"1"), EOFPacket())
    assert pair.phase() is Phase.COMMAND_IDLE


def test_prepare_params_only() -> None:
    """Without columns the parameter EOF ends the prepare answer."""
    pair = logged_in()
    pair.send(C, ComStmtPrepare(b"DO ?"))
    pair.send(S, StmtPrepareOK(5, num_columns=0, num_params=1), column(b"?"))
    assert pair.phase() is Phase.PREPARE_PARAMS_EOF
    pair.send(S, EOFPacket())
    assert pair.phase() is Phase.COMMAND_IDLE


def test_prepare_err() -> None:
    """A failed prepare is an ERR."""
    pair = logged_in()
    pair.send(C, ComStmtPrepare(b"SELEC ?"))
    pair.send(S, ERRPacket(1064, "syntax"))
    assert pair.phase() is Phase.COMMAND_IDLE


def prepared(pair: ConnectionPair, statement_id: int = 1, params: int = 1) -> None:
    pair.send(C, ComStmtPrepare(b"SELECT a FROM t WHERE b = ?"))
    pair.send(S, StmtPrepareOK(statement_id, num_columns=1, num_params=params))
    pair.send(S, *[column(b"?")] * params)
    if params:
        pair.send(S, EOFPacket())
    pair.send(S, column(b"a", ColumnType.MYSQL_TYPE_LONGLONG), EOFPacket())
    assert pair.phase() is Phase.COMMAND_IDLE


@pytest.mark.parametrize("capabilities", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_execute_binary_rows(capabilities: Capability) -> None:
    """COM_STMT_EXECUTE gives a binary result set whose rows arrive as raw RowData."""
    pair = logged_in(capabilities)
    prepared(pair)
    execute = ComStmtExecute(1, parameters=(BoundParameter(ColumnType.MYSQL_TYPE_LONGLONG, 42),))
    events = pair.send(C, execute)
    assert pair.phase() is Phase.RESULT_PENDING
    received = events[0]
    assert received.statement_id == 1 and received.raw_parameters is not None
    decoded = pair.server.decode_execute(received)
    assert decoded.parameters[0].value == 42
    assert pair.server.statements[1].param_types == ((ColumnType.MYSQL_TYPE_LONGLONG, False),)
    long_column = column(b"a", ColumnType.MYSQL_TYPE_LONGLONG)
    pair.send(S, ColumnCount(1), long_column, EOFPacket())
    rows = pair.send(S, BinaryRow((7,)), BinaryRow((None,)))
    assert [type(r) for r in rows] == [RowData, RowData]
    values = BinaryRow.decode(rows[0].payload, pair.client.capabilities, pair.client.columns)
    assert values.values == (7,)
    pair.send(S, pair.server.end_of_rows(AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_execute_without_rebinding_uses_previous_types() -> None:
    """An execute that does not rebind is decoded with the types of the previous one."""
    pair = logged_in()
    prepared(pair)
    param = BoundParameter(ColumnType.MYSQL_TYPE_LONGLONG, 1)
    first = pair.send(C, ComStmtExecute(1, parameters=(param,)))[0]
    pair.server.decode_execute(first)
    pair.send(S, OKPacket())
    again = ComStmtExecute(1, parameters=(BoundParameter(ColumnType.MYSQL_TYPE_LONGLONG, 2),))
    again = ComStmtExecute(1, parameters=again.parameters, new_params_bound=False)
    second = pair.send(C, again)[0]
    assert pair.server.decode_execute(second).parameters[0].value == 2


def test_execute_unknown_statement() -> None:
    """decode_execute of an unknown statement raises ER_UNKNOWN_STMT_HANDLER, not fatally."""
    pair = logged_in()
    event = pair.send(C, ComStmtExecute(99))[0]
    with pytest.raises(RemoteProtocolError) as caught:
        pair.server.decode_execute(event)
    assert caught.value.error_code == ErrorCode.ER_UNKNOWN_STMT_HANDLER
    pair.send(S, ERRPacket(ErrorCode.ER_UNKNOWN_STMT_HANDLER, "Unknown prepared statement"))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_send_long_data_has_no_reply_and_is_tracked() -> None:
    """COM_STMT_SEND_LONG_DATA gets no answer; its parameter is long data at the next execute."""
    pair = logged_in()
    prepared(pair)
    pair.send(C, ComStmtSendLongData(1, 0, b"blob"))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert pair.server.statements[1].long_data == frozenset({0})
    pair.send(C, ComStmtSendLongData(1, 0, b"more"))
    assert [seq for _, seq in headers(bytes(pair.wire[C]))][-2:] == [0, 0]
    execute = pair.send(
        C, ComStmtExecute(1, parameters=(BoundParameter(ColumnType.MYSQL_TYPE_BLOB, None),))
    )[0]
    assert pair.server.statements[1].long_data == frozenset()
    pair.server.decode_execute(execute)
    pair.send(S, OKPacket())


def test_stmt_reset_and_close() -> None:
    """COM_STMT_RESET is answered by OK and forgets long data; COM_STMT_CLOSE has no answer."""
    pair = logged_in()
    prepared(pair)
    pair.send(C, ComStmtSendLongData(1, 0, b"blob"))
    pair.send(C, ComStmtReset(1))
    assert pair.phase() is Phase.SIMPLE_REPLY
    pair.send(S, OKPacket())
    assert pair.server.statements[1].long_data == frozenset()
    assert pair.send(C, ComStmtClose(1)) == [ComStmtClose(1)]
    assert pair.phase() is Phase.COMMAND_IDLE
    assert 1 not in pair.server.statements and 1 not in pair.client.statements


@pytest.mark.parametrize("capabilities", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_cursor_then_fetch(capabilities: Capability) -> None:
    """A cursor-opening execute ends after the metadata; COM_STMT_FETCH then streams rows."""
    pair = logged_in(capabilities)
    prepared(pair, params=0)
    pair.send(C, ComStmtExecute(1, flags=CursorType.CURSOR_TYPE_READ_ONLY))
    pair.send(S, ColumnCount(1), column(b"a", ColumnType.MYSQL_TYPE_LONGLONG))
    cursor = AUTOCOMMIT | ServerStatus.SERVER_STATUS_CURSOR_EXISTS
    events = pair.send(S, EOFPacket(status_flags=cursor))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert pair.client.cursor_exists
    assert events[-1].status_flags & ServerStatus.SERVER_STATUS_CURSOR_EXISTS
    pair.send(C, ComStmtFetch(1, 2))
    assert pair.phase() is Phase.RESULT_ROWS
    rows = pair.send(S, BinaryRow((1,)), BinaryRow((2,)))
    assert len(rows) == 2
    pair.send(S, pair.server.end_of_rows(cursor))
    assert pair.phase() is Phase.COMMAND_IDLE
    pair.send(C, ComStmtFetch(1, 2))
    pair.send(S, BinaryRow((3,)))
    pair.send(S, pair.server.end_of_rows(AUTOCOMMIT | ServerStatus.SERVER_STATUS_LAST_ROW_SENT))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert not pair.client.cursor_exists


def test_fetch_err() -> None:
    """COM_STMT_FETCH of an unknown cursor is answered by ERR."""
    pair = logged_in()
    pair.send(C, ComStmtFetch(9, 1))
    pair.send(S, ERRPacket(1243, "Unknown prepared statement handler"))
    assert pair.phase() is Phase.COMMAND_IDLE


@pytest.mark.parametrize("capabilities", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_field_list(capabilities: Capability) -> None:
    """COM_FIELD_LIST is answered by definitions and an EOF (OK 0xFE under DEPRECATE_EOF)."""
    pair = logged_in(capabilities)
    pair.send(C, ComFieldList(b"t"))
    assert pair.phase() is Phase.FIELD_LIST
    events = pair.send(S, column(b"a"), column(b"b"), EOFPacket(status_flags=AUTOCOMMIT))
    assert [type(e) for e in events[:2]] == [ColumnDefinition41] * 2
    expected = OKPacket if pair.client.deprecate_eof else EOFPacket
    assert type(events[2]) is expected
    assert pair.phase() is Phase.COMMAND_IDLE
    pair.send(C, ComFieldList(b"nope"))
    pair.send(S, ERRPacket(1146, "Table 'nope' doesn't exist", "42S02"))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_statistics() -> None:
    """COM_STATISTICS is answered by a raw string, not an OK."""
    pair = logged_in()
    pair.send(C, ComStatistics())
    assert pair.phase() is Phase.STATISTICS
    text = b"Uptime: 5  Threads: 1  Questions: 2  Slow queries: 0  Opens: 0"
    assert pair.send(S, StatisticsResponse(text)) == [StatisticsResponse(text)]
    assert pair.phase() is Phase.COMMAND_IDLE


def test_change_user_with_auth_switch() -> None:
    """COM_CHANGE_USER runs auth-switch rounds, then OK; prepared statements are forgotten."""
    pair = logged_in()
    prepared(pair)
    pair.send(C, ComChangeUser("bob", b"x" * 20, "db", 255, "mysql_native_password"))
    assert pair.phase() is Phase.CHANGE_USER
    pair.send(S, AuthSwitchRequest("caching_sha2_password", b"n" * 20))
    assert pair.phase() is Phase.CHANGE_USER_SWITCH_SENT
    pair.send(C, AuthSwitchResponse(b"y" * 32))
    assert pair.phase() is Phase.CHANGE_USER
    pair.send(S, AuthMoreData(b"\x03"))
    assert pair.phase() is Phase.CHANGE_USER_MORE_DATA
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert pair.server.statements == {} and pair.client.statements == {}


def test_change_user_full_auth_round() -> None:
    """During COM_CHANGE_USER the client may answer AuthMoreData (full auth)."""
    pair = logged_in()
    pair.send(C, ComChangeUser("bob", b"x" * 32, None, 255, "caching_sha2_password"))
    pair.send(S, AuthMoreData(b"\x04"))
    pair.send(C, AuthSwitchResponse(b"secret\x00"))
    assert pair.phase() is Phase.CHANGE_USER
    pair.send(S, OKPacket())
    assert pair.phase() is Phase.COMMAND_IDLE


def test_change_user_refused_keeps_connection() -> None:
    """A refused COM_CHANGE_USER returns to COMMAND_IDLE (the server may then close)."""
    pair = logged_in()
    pair.send(C, ComChangeUser("bob", b"bad", None, 255, None))
    pair.send(S, ERRPacket(1045, "Access denied", "28000"))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_reset_connection_forgets_statements() -> None:
    """COM_RESET_CONNECTION is answered by OK and forgets prepared statements."""
    pair = logged_in()
    prepared(pair)
    pair.send(C, ComResetConnection())
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE
    assert pair.server.statements == {} and pair.client.statements == {}


@pytest.mark.parametrize("capabilities", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_set_option_eof_reply(capabilities: Capability) -> None:
    """COM_SET_OPTION is answered by an EOF (an OK 0xFE under DEPRECATE_EOF)."""
    pair = logged_in(capabilities)
    pair.send(C, ComSetOption(SetOption.MYSQL_OPTION_MULTI_STATEMENTS_OFF))
    events = pair.send(S, EOFPacket(status_flags=AUTOCOMMIT))
    assert type(events[0]) is (OKPacket if pair.client.deprecate_eof else EOFPacket)
    assert pair.phase() is Phase.COMMAND_IDLE


@pytest.mark.parametrize(
    "command", [ComPing(), ComInitDB(b"test"), ComProcessKill(12), UnknownCommand(0x07, b"\x01")]
)
def test_simple_commands(command: Any) -> None:
    """Commands answered by a single OK or ERR."""
    pair = logged_in()
    assert pair.send(C, command) == [command]
    assert pair.phase() is Phase.SIMPLE_REPLY
    pair.send(S, OKPacket(status_flags=AUTOCOMMIT))
    assert pair.phase() is Phase.COMMAND_IDLE
    pair.send(C, command)
    pair.send(S, ERRPacket(1047, "Unknown command", "08S01"))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_quit_and_close() -> None:
    """COM_QUIT closes the conversation; the end of the stream is then reported once."""
    pair = logged_in()
    assert pair.send(C, ComQuit()) == [ComQuit()]
    assert pair.phase() is Phase.CLOSED
    assert pair.client.receive_data(b"") == [ConnectionClosed(Phase.CLOSED)]
    assert pair.client.receive_data(b"") == []
    with pytest.raises(LocalProtocolError):
        pair.client.receive_data(b"late")


def test_peer_vanishes_mid_result() -> None:
    """ConnectionClosed says in which phase the peer vanished."""
    pair = logged_in()
    pair.send(C, ComQuery(b"SELECT 1"))
    pair.send(S, ColumnCount(1), column(b"1"), EOFPacket(), TextRow((b"1",)))
    assert pair.client.receive_data(b"") == [ConnectionClosed(Phase.RESULT_ROWS)]
    assert pair.client.phase is Phase.CLOSED


def test_idle_server_err_before_closing() -> None:
    """An idle server may send an ERR (e.g. 4031 idle timeout) before it closes."""
    pair = logged_in()
    err = ERRPacket(ErrorCode.ER_CLIENT_INTERACTION_TIMEOUT, "timeout", "HY000")
    data = pair.server.send(err)
    assert headers(data)[0][1] == 0
    # Some servers number it after the last exchange: any sequence id is accepted.
    bogus = data[:3] + b"\x05" + data[4:]
    assert pair.client.receive_data(bogus) == [err]
    assert pair.client.phase is Phase.CLOSED


def test_omitted_eof_does_not_leak_into_the_next_command() -> None:
    """After a DEPRECATE_EOF prepare, the next command's EOF reply is not swallowed."""
    pair = logged_in(DEPRECATE)
    pair.send(C, ComStmtPrepare(b"SELECT 1"))
    pair.send(S, StmtPrepareOK(1, 1, 0), column(b"1"))
    assert pair.phase() is Phase.COMMAND_IDLE
    pair.send(C, ComSetOption(SetOption.MYSQL_OPTION_MULTI_STATEMENTS_ON))
    assert pair.send(S, EOFPacket()) == [OKPacket(header=0xFE)]
    assert pair.phase() is Phase.COMMAND_IDLE


def test_client_cannot_send_rows() -> None:
    """A client sending a row is refused even in RESULT_ROWS."""
    pair = at(Phase.RESULT_ROWS)
    with pytest.raises(LocalProtocolError):
        pair.client.send(RowData(b"\x011"))


def conversation(chunk_size: int | None) -> list[Any]:
    """Run one conversation over every command type; return all events received."""
    caps = DEFAULT_CAPABILITIES | Capability.CLIENT_SSL
    pair = ConnectionPair(caps, caps, chunk_size=chunk_size)
    events = pair.send(S, pair.greeting(auth_plugin_name="caching_sha2_password"))
    events += pair.send(C, SSLRequest(caps, 1 << 24, 255))
    pair.start_tls()
    script: list[tuple[Role, Any]] = [
        (C, HandshakeResponse41(caps, 1 << 24, 255, "u", b"s" * 32, "db", "caching_sha2_password")),
        (S, AuthMoreData(b"\x04")),
        (C, AuthSwitchResponse(b"password\x00")),
        (S, OKPacket(status_flags=AUTOCOMMIT)),
        (C, ComQuery(b"SELECT 1; DO 1")),
        (S, ColumnCount(1)),
        (S, column(b"1")),
        (S, EOFPacket()),
        (S, TextRow((b"1",))),
        (S, EOFPacket(status_flags=MORE)),
        (S, OKPacket()),
        (C, ComQuery(b"LOAD DATA LOCAL INFILE 'x' INTO TABLE t")),
        (S, LocalInfileRequest(b"x")),
        (C, LocalInfileData(b"a\n")),
        (C, LocalInfileData(b"")),
        (S, OKPacket(affected_rows=1)),
        (C, ComStmtPrepare(b"SELECT ?")),
        (S, StmtPrepareOK(1, 1, 1)),
        (S, column(b"?")),
        (S, EOFPacket()),
        (S, column(b"c", ColumnType.MYSQL_TYPE_LONGLONG)),
        (S, EOFPacket()),
        (C, ComStmtSendLongData(1, 0, b"long")),
        (C, ComStmtExecute(1, parameters=(BoundParameter(ColumnType.MYSQL_TYPE_BLOB, None),))),
        (S, ColumnCount(1)),
        (S, column(b"c", ColumnType.MYSQL_TYPE_LONGLONG)),
        (S, EOFPacket()),
        (S, BinaryRow((5,))),
        (S, EOFPacket()),
        (C, ComStmtReset(1)),
        (S, OKPacket()),
        (C, ComStmtClose(1)),
        (C, ComFieldList(b"t")),
        (S, column(b"a")),
        (S, EOFPacket()),
        (C, ComStatistics()),
        (S, StatisticsResponse(b"Uptime: 1")),
        (C, ComChangeUser("v", b"x" * 20, None, 255, "mysql_native_password")),
        (S, AuthSwitchRequest("mysql_native_password", b"n" * 20)),
        (C, AuthSwitchResponse(b"y" * 20)),
        (S, OKPacket()),
        (C, ComResetConnection()),
        (S, OKPacket()),
        (C, ComSetOption(SetOption.MYSQL_OPTION_MULTI_STATEMENTS_OFF)),
        (S, EOFPacket()),
        (C, ComPing()),
        (S, OKPacket()),
        (C, ComProcessKill(3)),
        (S, ERRPacket(1094, "Unknown thread id: 3")),
        (C, ComInitDB(b"db")),
        (S, OKPacket()),
        (C, ComQuit()),
    ]
    for role, event in script:
        events += pair.send(role, event)
    assert pair.phase() is Phase.CLOSED
    return events


def test_whole_conversation_byte_at_a_time() -> None:
    """Every command type in one conversation gives the same events in any chunking."""
    whole = conversation(None)
    assert len(whole) == 54
    assert conversation(1) == whole
    assert conversation(7) == whole


# --- pipelining ------------------------------------------------------------


def test_pipelined_commands_without_reply() -> None:
    """COM_STMT_CLOSE followed by the next command in the same read gives both commands."""
    pair = logged_in()
    prepared(pair)
    data = pair.client.send(ComStmtClose(1)) + pair.client.send(ComQuery(b"SELECT 1"))
    events = pair.server.receive_data(data)
    assert events == [ComStmtClose(1), ComQuery(b"SELECT 1")]
    assert pair.server.phase is Phase.RESULT_PENDING


def test_pipelined_prepare_and_execute() -> None:
    """A command sent before the previous answer stays buffered until it is the client's turn."""
    pair = logged_in()
    data = pair.client.send(ComStmtPrepare(b"SELECT 1"))
    # The client library pipelines; its own state machine would refuse, so fake the bytes.
    execute = ComStmtExecute(1).encode(pair.client.capabilities)
    data += struct.pack("<I", len(execute)) + execute
    assert pair.server.receive_data(data) == [ComStmtPrepare(b"SELECT 1")]
    answer = pair.server.send_many([StmtPrepareOK(1, 1, 0), column(b"1"), EOFPacket()])
    assert pair.server.phase is Phase.COMMAND_IDLE
    events = pair.server.next_events()
    assert [type(e) for e in events] == [ComStmtExecute]
    assert pair.server.phase is Phase.RESULT_PENDING
    assert pair.client.receive_data(answer)[0] == StmtPrepareOK(1, 1, 0)


# --- relaying ----------------------------------------------------------------


def test_relay_result_set_raw() -> None:
    """A proxy relays a server's answer packet by packet as RawPacket/RowData; both legs agree."""
    backend = logged_in(DEPRECATE)
    front = logged_in(DEPRECATE)
    query = front.send(C, ComQuery(b"SELECT 1; SELECT 2"))[0]
    backend.send(C, query)
    answer = backend.server.send_many(
        [
            ColumnCount(1),
            column(b"1"),
            TextRow((b"1",)),
            backend.server.end_of_rows(AUTOCOMMIT | MORE),
            ColumnCount(1),
            column(b"2"),
            TextRow((b"2",)),
            TextRow((None,)),
            backend.server.end_of_rows(AUTOCOMMIT),
        ]
    )
    relayed = bytearray()
    for event in backend.client.receive_data(answer):
        if type(event) is RowData:
            relayed += front.server.send(event)
        else:
            relayed += front.server.send(RawPacket(event.encode(backend.client.capabilities)))
    assert front.server.phase is Phase.COMMAND_IDLE
    assert bytes(relayed) == answer
    events = front.client.receive_data(bytes(relayed))
    assert [type(e).__name__ for e in events] == [
        "ColumnCount",
        "ColumnDefinition41",
        "RowData",
        "OKPacket",
        "ColumnCount",
        "ColumnDefinition41",
        "RowData",
        "RowData",
        "OKPacket",
    ]
    assert front.phase() is Phase.COMMAND_IDLE


def test_raw_packet_eof_ends_rows() -> None:
    """A RawPacket carrying an EOF is read by the phase and ends the rows."""
    pair = logged_in()
    pair.send(C, ComQuery(b"SELECT 1"))
    pair.send(S, ColumnCount(1), column(b"1"), RawPacket(b"\xfe\x00\x00\x02\x00"))
    assert pair.phase() is Phase.RESULT_ROWS
    pair.send(S, RawPacket(b"\x011"), RawPacket(b"\xfe\x00\x00\x02\x00"))
    assert pair.phase() is Phase.COMMAND_IDLE


def test_raw_command_from_client() -> None:
    """A client relaying a raw command payload gets the command's transition."""
    pair = logged_in()
    events = pair.send(C, RawPacket(b"\x16SELECT ?"))
    assert events == [ComStmtPrepare(b"SELECT ?")]
    assert pair.phase() is Phase.PREPARE_SENT


def test_unreadable_raw_packet_is_a_local_error() -> None:
    """Relaying a payload that is malformed for the phase is our fault: LocalProtocolError."""
    pair = logged_in()
    pair.send(C, ComQuery(b"SELECT 1"))
    pair.send(S, ColumnCount(1))
    with pytest.raises(LocalProtocolError):
        pair.server.send(RawPacket(b"\x00"))
    assert pair.server.phase is Phase.ERROR


# --- big payloads ----------------------------------------------------------


def test_row_of_more_than_16_mib() -> None:
    """A row longer than 0xFFFFFF bytes is split, joined again, and stays a row."""
    pair = logged_in(chunk_size=1 << 20)
    pair.send(C, ComQuery(b"SELECT blob"))
    pair.send(S, ColumnCount(1), column(b"blob"), EOFPacket())
    value = b"b" * (0xFFFFFF + 100)
    rows = pair.send(S, TextRow((value,)))
    assert len(rows) == 1 and type(rows[0]) is RowData
    assert rows[0].payload[0] == 0xFE  # an 8-byte length prefix, not an EOF
    assert TextRow.decode(rows[0].payload, pair.client.capabilities, 1).values == (value,)
    assert pair.phase() is Phase.RESULT_ROWS
    pair.send(S, EOFPacket())
    assert pair.phase() is Phase.COMMAND_IDLE


def test_query_of_exactly_16_mib() -> None:
    """A 0xFFFFFF-byte command ends with an empty chunk; the reply continues the sequence."""
    pair = logged_in()
    query = ComQuery(b"S" * (0xFFFFFF - 1))
    events = pair.send(C, query)
    assert events == [query]
    pair.send(S, OKPacket())
    chunks = headers(bytes(pair.wire[C]))[-2:]
    assert chunks == [(0xFFFFFF, 0), (0, 1)]
    assert headers(bytes(pair.wire[S]))[-1][1] == 2


def test_packet_too_large() -> None:
    """A payload above max_packet_size raises ER_NET_PACKET_TOO_LARGE."""
    pair = logged_in(max_packet_size=100)
    data = pair.client.send(ComQuery(b"x" * 200))
    with pytest.raises(RemoteProtocolError) as caught:
        pair.server.receive_data(data)
    assert caught.value.error_code == ErrorCode.ER_NET_PACKET_TOO_LARGE
    assert pair.server.phase is Phase.ERROR


# --- illegal moves ---------------------------------------------------------


def at(phase: Phase, capabilities: Capability = DEFAULT_CAPABILITIES) -> ConnectionPair:
    """A pair walked to C{phase}."""
    pair = ConnectionPair(capabilities, capabilities)
    if phase is Phase.CONNECT:
        return pair
    pair.send(S, pair.greeting())
    if phase is Phase.HANDSHAKE_SENT:
        return pair
    pair.send(C, HandshakeResponse41(capabilities, 1 << 24, 255, "root", b"x"))
    if phase is Phase.AUTHENTICATING:
        return pair
    pair.send(S, OKPacket())
    steps: dict[Phase, list[tuple[Role, Any]]] = {
        Phase.COMMAND_IDLE: [],
        Phase.RESULT_PENDING: [(C, ComQuery(b"q"))],
        Phase.RESULT_COLUMNS: [(C, ComQuery(b"q")), (S, ColumnCount(2))],
        Phase.RESULT_COLUMNS_EOF: [(C, ComQuery(b"q")), (S, ColumnCount(1)), (S, column(b"a"))],
        Phase.RESULT_ROWS: [(C, ComStmtFetch(1, 1))],
        Phase.LOCAL_INFILE: [(C, ComQuery(b"q")), (S, LocalInfileRequest(b"f"))],
        Phase.PREPARE_SENT: [(C, ComStmtPrepare(b"q"))],
        Phase.SIMPLE_REPLY: [(C, ComPing())],
        Phase.STATISTICS: [(C, ComStatistics())],
        Phase.FIELD_LIST: [(C, ComFieldList(b"t"))],
    }
    for role, event in steps[phase]:
        pair.send(role, event)
    assert pair.phase() is phase
    return pair


ILLEGAL_SENDS = [
    (Phase.CONNECT, C, ComQuery(b"q")),
    (Phase.CONNECT, S, OKPacket()),
    (Phase.HANDSHAKE_SENT, S, OKPacket()),
    (Phase.HANDSHAKE_SENT, C, ComPing()),
    (Phase.AUTHENTICATING, C, ComPing()),
    (Phase.AUTHENTICATING, S, ColumnCount(1)),
    (Phase.COMMAND_IDLE, S, OKPacket()),
    (Phase.COMMAND_IDLE, S, RowData(b"\x011")),
    (Phase.COMMAND_IDLE, C, AuthSwitchResponse(b"x")),
    (Phase.COMMAND_IDLE, C, LocalInfileData(b"x")),
    (Phase.RESULT_PENDING, C, ComQuery(b"again")),
    (Phase.RESULT_PENDING, S, TextRow((b"1",))),
    (Phase.RESULT_PENDING, S, EOFPacket()),
    (Phase.RESULT_COLUMNS, S, TextRow((b"1",))),
    (Phase.RESULT_COLUMNS, S, EOFPacket()),
    (Phase.RESULT_COLUMNS_EOF, S, TextRow((b"1",))),
    (Phase.RESULT_ROWS, C, ComQuit()),
    (Phase.RESULT_ROWS, S, ColumnCount(1)),
    (Phase.LOCAL_INFILE, S, OKPacket()),
    (Phase.LOCAL_INFILE, C, ComQuery(b"q")),
    (Phase.PREPARE_SENT, S, OKPacket()),
    (Phase.PREPARE_SENT, S, ColumnCount(1)),
    (Phase.SIMPLE_REPLY, S, ColumnCount(1)),
    (Phase.SIMPLE_REPLY, C, ComPing()),
    (Phase.STATISTICS, S, OKPacket()),
    (Phase.FIELD_LIST, S, TextRow((b"1",))),
]


@pytest.mark.parametrize(("phase", "role", "event"), ILLEGAL_SENDS)
def test_illegal_send(phase: Phase, role: Role, event: Any) -> None:
    """Sending what the phase does not allow raises LocalProtocolError and moves to ERROR."""
    pair = at(phase)
    side = pair.side(role)
    with pytest.raises(LocalProtocolError):
        side.send(event)
    assert side.phase is Phase.ERROR
    with pytest.raises(LocalProtocolError):
        side.send(ComPing())
    with pytest.raises(LocalProtocolError):
        side.receive_data(b"\x01\x00\x00\x00\x0e")


ILLEGAL_RECEIVES = [
    # (phase, receiving role, payload, expected error code)
    (Phase.CONNECT, C, b"\x0a8.0\x00garbage", ErrorCode.ER_MALFORMED_PACKET),
    (Phase.HANDSHAKE_SENT, S, b"\x00" * 10, ErrorCode.ER_MALFORMED_PACKET),
    (Phase.AUTHENTICATING, C, b"\x42oops", ErrorCode.ER_MALFORMED_PACKET),
    (Phase.COMMAND_IDLE, C, b"\x00\x00\x00\x02\x00\x00\x00", ErrorCode.CR_COMMANDS_OUT_OF_SYNC),
    (Phase.COMMAND_IDLE, S, b"", ErrorCode.ER_MALFORMED_PACKET),
    (Phase.RESULT_COLUMNS, C, b"\x00\x00\x00\x02\x00\x00\x00", ErrorCode.ER_MALFORMED_PACKET),
    (Phase.RESULT_COLUMNS_EOF, C, b"\x011", ErrorCode.ER_MALFORMED_PACKET),
    (Phase.PREPARE_SENT, C, b"\x01", ErrorCode.ER_MALFORMED_PACKET),
    (Phase.SIMPLE_REPLY, C, b"\x03def", ErrorCode.ER_MALFORMED_PACKET),
    (Phase.RESULT_PENDING, C, b"\x00", ErrorCode.ER_MALFORMED_PACKET),
]


@pytest.mark.parametrize(("phase", "role", "payload", "code"), ILLEGAL_RECEIVES)
def test_illegal_receive(phase: Phase, role: Role, payload: bytes, code: int) -> None:
    """A packet the phase cannot accept raises RemoteProtocolError with a code; phase ERROR."""
    pair = at(phase)
    side = pair.side(role)
    seq = 0 if phase is Phase.COMMAND_IDLE else side._framer.next_seq
    with pytest.raises(RemoteProtocolError) as caught:
        side.receive_data(struct.pack("<I", len(payload) | seq << 24) + payload)
    assert caught.value.error_code == code
    assert len(caught.value.sqlstate) == 5
    assert side.phase is Phase.ERROR
    with pytest.raises(LocalProtocolError):
        side.receive_data(b"x")


def test_bad_sequence_id() -> None:
    """A packet with the wrong sequence id raises ER_NET_PACKETS_OUT_OF_ORDER."""
    pair = logged_in()
    data = bytearray(pair.client.send(ComQuery(b"SELECT 1")))
    data[3] = 5
    with pytest.raises(RemoteProtocolError) as caught:
        pair.server.receive_data(bytes(data))
    assert caught.value.error_code == ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER
    assert caught.value.sqlstate == "08S01"


def test_error_packet_for_is_readable_by_the_client() -> None:
    """After a client's malformed command the server's ERR bytes decode on the client side."""
    pair = logged_in()
    pair.client.send(ComSetOption(SetOption.MYSQL_OPTION_MULTI_STATEMENTS_ON))
    with pytest.raises(RemoteProtocolError) as caught:
        pair.server.receive_data(b"\x01\x00\x00\x00\x1b")
    assert caught.value.error_code == ErrorCode.ER_MALFORMED_PACKET
    data = pair.server.error_packet_for(caught.value)
    err = ERRPacket.decode(data[4:], pair.server.capabilities)
    assert err.error_code == ErrorCode.ER_MALFORMED_PACKET
    assert pair.client.receive_data(data) == [err]
    assert pair.client.phase is Phase.COMMAND_IDLE


def test_error_packet_for_before_login() -> None:
    """A malformed handshake response gets an ERR with the next sequence id."""
    pair = at(Phase.HANDSHAKE_SENT)
    with pytest.raises(RemoteProtocolError) as caught:
        pair.server.receive_data(b"\x02\x00\x00\x01\x00\x00")
    data = pair.server.error_packet_for(caught.value)
    assert headers(data) == [(len(data) - 4, 2)]
    assert data[4] == 0xFF


def test_error_packet_for_client_is_empty() -> None:
    """A client never sends ERR packets."""
    pair = at(Phase.RESULT_COLUMNS_EOF)
    with pytest.raises(RemoteProtocolError) as caught:
        pair.client.receive_data(b"\x02\x00\x00\x04\x011")
    assert pair.client.error_packet_for(caught.value) == b""


def test_error_packet_for_during_tls() -> None:
    """Nothing can be sent while TLS is being set up."""
    caps = DEFAULT_CAPABILITIES | Capability.CLIENT_SSL
    pair = ConnectionPair(caps, caps)
    pair.send(S, pair.greeting())
    pair.send(C, SSLRequest(caps, 1 << 24, 255))
    exc = RemoteProtocolError("x")
    assert pair.server.error_packet_for(exc) == b""


# --- compression -----------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_compression_switches_on_after_login(chunk_size: int | None) -> None:
    """With CLIENT_COMPRESS on both sides, everything after the login OK is compressed."""
    caps = DEFAULT_CAPABILITIES | Capability.CLIENT_COMPRESS
    pair = ConnectionPair(caps, caps, chunk_size=chunk_size)
    pair.handshake()
    assert pair.server.compression == pair.client.compression == "zlib"
    pair.server.enable_compression()  # already on: nothing happens
    mark = len(pair.wire[C])
    pair.send(C, ComQuery(b"SELECT " + b"1, " * 100 + b"1"))
    assert pair.wire[C][mark + 7 : mark + 8] != b"\x03"  # a compressed header, not the command
    pair.send(S, ColumnCount(1), column(b"x"), EOFPacket())
    rows = pair.send(S, *[TextRow((b"value %d" % i,)) for i in range(100)])
    assert len(rows) == 100 and all(type(r) is RowData for r in rows)
    pair.send(S, EOFPacket())
    assert pair.phase() is Phase.COMMAND_IDLE
    pair.send(C, ComPing())
    pair.send(S, OKPacket())
    assert pair.phase() is Phase.COMMAND_IDLE


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_compressed_send_many_batches_a_result(chunk_size: int | None) -> None:
    """send_many compresses a whole answer together; the client reads it all and goes idle."""
    caps = DEFAULT_CAPABILITIES | Capability.CLIENT_COMPRESS
    pair = ConnectionPair(caps, caps, chunk_size=chunk_size)
    pair.handshake()
    pair.send(C, ComQuery(b"SELECT x"))
    rows = [TextRow((b"row number %d" % i,)) for i in range(500)]
    data = pair.server.send_many([ColumnCount(1), column(b"x"), EOFPacket(), *rows, EOFPacket()])
    assert len(data) < 500 * 10
    events = pair.deliver(C, data)
    assert len(events) == 504 and pair.phase() is Phase.COMMAND_IDLE
    pair.send(C, ComPing())
    pair.send(S, OKPacket())
    assert pair.phase() is Phase.COMMAND_IDLE


@pytest.mark.skipif(not zstd_available(), reason="no zstd module installed")
def test_zstd_compression() -> None:
    """CLIENT_ZSTD_COMPRESSION_ALGORITHM selects zstd."""
    caps = DEFAULT_CAPABILITIES | Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM
    pair = ConnectionPair(caps, caps)
    pair.handshake(zstd_compression_level=3)
    assert pair.client.compression == pair.server.compression == "zstd"
    pair.send(C, ComQuery(b"SELECT 1" * 20))
    pair.send(S, OKPacket())
    assert pair.phase() is Phase.COMMAND_IDLE


def test_enable_compression_requires_negotiation() -> None:
    """enable_compression() refuses when CLIENT_COMPRESS was not negotiated or before login."""
    pair = ConnectionPair()
    with pytest.raises(LocalProtocolError):
        pair.server.enable_compression()
    pair.handshake()
    with pytest.raises(LocalProtocolError):
        pair.client.enable_compression()


# --- facts, values and tables ---------------------------------------------


def test_row_data_value_semantics() -> None:
    """RowData compares, hashes and prints by its payload."""
    assert RowData(b"a") == RowData(b"a")
    assert RowData(b"a") != RowData(b"b")
    assert RowData(b"a") != b"a"
    assert hash(RowData(b"a")) == hash(RowData(b"a"))
    assert repr(RowData(b"a")) == "RowData(payload=b'a')"


def test_our_turn() -> None:
    """our_turn tells who may speak."""
    pair = logged_in()
    assert pair.client.our_turn
    pair.send(C, ComPing())
    assert pair.server.our_turn and not pair.client.our_turn
    assert repr(pair.server) == "<ServerConnection phase=SIMPLE_REPLY>"


def test_tables_agree() -> None:
    """Every (sender, phase) with transitions has a reader, and vice versa."""
    assert set(connection_module._TRANSITIONS) == set(connection_module._READERS)


def test_every_phase_is_reachable_in_the_diagram() -> None:
    """The rendered diagrams mention every phase except ERROR's edges, in both formats."""
    dot = render_diagram("dot")
    mermaid = render_diagram("mermaid")
    assert dot.startswith("digraph")
    assert mermaid.startswith("stateDiagram-v2")
    for phase in Phase:
        assert phase.name in dot
        if phase is not Phase.ERROR:
            assert phase.name in mermaid
    assert "RESULT_ROWS -> COMMAND_IDLE" in dot
    with pytest.raises(ValueError):
        render_diagram("svg")


def test_main_prints_diagrams(capsys: pytest.CaptureFixture[str]) -> None:
    """python -m obproxy_tx.wire.connection --diagram / --mermaid print the diagrams."""
    assert connection_module._main(["x", "--diagram"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
    assert connection_module._main(["x", "--mermaid"]) == 0
    assert capsys.readouterr().out.startswith("stateDiagram-v2")
    assert connection_module._main(["x", "--bogus"]) == 2


def test_client_connection_role() -> None:
    """Each class plays its role."""
    assert ServerConnection(DEFAULT_CAPABILITIES).role is Role.SERVER
    assert ClientConnection(DEFAULT_CAPABILITIES).role is Role.CLIENT


def test_server_may_not_send_client_error_codes() -> None:
    """
    A server sending an ERR with a client-library code (2000-2999) raises
    LocalProtocolError: libmariadb would report such a packet as malformed.
    """
    pair = ConnectionPair()
    pair.handshake()
    pair.send(Role.CLIENT, ComQuery(b"SELECT 1"))
    with pytest.raises(LocalProtocolError):
        pair.server.send(ERRPacket(ErrorCode.CR_SERVER_LOST, "lost"))


def test_error_packet_for_replaces_client_error_codes() -> None:
    """error_packet_for turns a client-range code into ER_MALFORMED_PACKET, keeping the message."""
    pair = ConnectionPair()
    pair.handshake()
    data = pair.server.error_packet_for(
        RemoteProtocolError("out of sync", ErrorCode.CR_COMMANDS_OUT_OF_SYNC)
    )
    err = ERRPacket.decode(data[4:], pair.server.capabilities)
    assert (err.error_code, err.message) == (ErrorCode.ER_MALFORMED_PACKET, "out of sync")
