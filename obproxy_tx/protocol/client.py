"""
The MySQL client protocol: a thin Twisted adapter over
L{obproxy_tx.wire.connection.ClientConnection}, and L{connect}.

    >>> conn = await connect(reactor, endpoint, "demo", "demo_pw", database="demo")
    >>> result = await conn.query("SELECT * FROM fruits")
    >>> result.column_names, result.rows
    (['id', 'name', 'price'], [(1, 'apple', 1.25), ...])

L{connect} logs in with C{mysql_native_password}, C{caching_sha2_password}
(fast path; full authentication in clear over TLS, or RSA-encrypted with the
server's public key, requested when not given) or C{mysql_clear_password}
(only over TLS), follows auth switches, and starts TLS (hostname verified
through C{service_identity}) when given TLS options.

The connection object (L{MySQLClientProtocol}) runs one command at a time and
queues the rest: L{query<MySQLClientProtocol.query>} collects rows or streams
them to a callback (returning a Deferred from the callback pauses the socket
until it fires: backpressure instead of buffering a whole result), prepared
statements (L{prepare<MySQLClientProtocol.prepare>}), C{ping}, C{change_user},
C{reset_connection}, C{init_db}, C{quit}, and LOAD DATA LOCAL INFILE through a
file reader the caller provides. A server's ERR packet becomes a
L{ServerError}.
"""

from __future__ import annotations

import datetime
from collections import deque
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from obproxy_tx.protocol.interfaces import ServerError
from obproxy_tx.wire import packets as p
from obproxy_tx.wire import scramble as _scramble
from obproxy_tx.wire.connection import (
    ClientConnection,
    ConnectionClosed,
    LocalInfileData,
    Phase,
    RowData,
    StatisticsResponse,
)
from obproxy_tx.wire.constants import (
    CACHING_SHA2_PASSWORD,
    MYSQL_CLEAR_PASSWORD,
    MYSQL_NATIVE_PASSWORD,
    Capability,
    ColumnType,
    CursorType,
    ServerStatus,
)
from obproxy_tx.wire.errors import ErrorCode, ProtocolError, RemoteProtocolError

__all__ = [
    "CLIENT_CAPABILITIES",
    "MySQLClientProtocol",
    "PreparedStatement",
    "QueryResult",
    "ServerError",
    "connect",
]

#: What the client asks for (intersected with what the server offers).
CLIENT_CAPABILITIES = (
    Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_LONG_FLAG
    | Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_MULTI_STATEMENTS
    | Capability.CLIENT_MULTI_RESULTS
    | Capability.CLIENT_PS_MULTI_RESULTS
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.CLIENT_CONNECT_ATTRS
    | Capability.CLIENT_DEPRECATE_EOF
)

_BINARY_CHARSET = 63
_INFILE_CHUNK = 1 << 20

#: Reads the file named in a LOAD DATA LOCAL INFILE request: returns its bytes,
#: an iterable of byte chunks, or a Deferred of either.
LocalInfileReader = Callable[[str], Any]


@attrs.define
class QueryResult:
    """
    One result of a command.

    @ivar columns: the column definitions (empty for an OK result).
    @ivar rows: the rows as tuples of Python values (empty when streamed).
    @ivar affected_rows: from the OK packet.
    @ivar last_insert_id: from the OK packet.
    @ivar warnings: the warning count.
    @ivar status_flags: the server status flags at the end of the result.
    @ivar info: the OK packet's info string.
    @ivar row_count: rows received (also when streamed to a callback).
    """

    columns: list[Any] = attrs.field(factory=list)
    rows: list[tuple[Any, ...]] = attrs.field(factory=list)
    affected_rows: int = 0
    last_insert_id: int = 0
    warnings: int = 0
    status_flags: ServerStatus = ServerStatus(0)
    info: bytes = b""
    row_count: int = 0

    @property
    def column_names(self) -> list[str]:
        """
        The column names, decoded.
        """
        return [c.name.decode("utf-8", "replace") for c in self.columns]


def _convert_text(value: bytes | None, column: Any) -> Any:
    if value is None:
        return None
    kind = column.column_type
    try:
        if kind in (
            ColumnType.MYSQL_TYPE_TINY,
            ColumnType.MYSQL_TYPE_SHORT,
            ColumnType.MYSQL_TYPE_LONG,
            ColumnType.MYSQL_TYPE_LONGLONG,
            ColumnType.MYSQL_TYPE_INT24,
            ColumnType.MYSQL_TYPE_YEAR,
        ):
            return int(value)
        if kind in (ColumnType.MYSQL_TYPE_FLOAT, ColumnType.MYSQL_TYPE_DOUBLE):
            return float(value)
        if kind in (ColumnType.MYSQL_TYPE_DECIMAL, ColumnType.MYSQL_TYPE_NEWDECIMAL):
            return Decimal(value.decode("ascii"))
        if kind in (ColumnType.MYSQL_TYPE_DATETIME, ColumnType.MYSQL_TYPE_TIMESTAMP):
            return datetime.datetime.fromisoformat(value.decode("ascii"))
        if kind == ColumnType.MYSQL_TYPE_DATE:
            return datetime.date.fromisoformat(value.decode("ascii"))
        if kind == ColumnType.MYSQL_TYPE_TIME:
            return _parse_time(value.decode("ascii"))
    except ValueError:
        return value.decode("ascii", "replace")
    if kind == ColumnType.MYSQL_TYPE_BIT or column.character_set == _BINARY_CHARSET:
        return value
    return value.decode("utf-8", "surrogateescape")


def _parse_time(text: str) -> datetime.timedelta:
    sign = -1 if text.startswith("-") else 1
    hours, minutes, seconds = text.lstrip("-").split(":")
    return sign * datetime.timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds))


def _convert_binary(value: Any, column: Any) -> Any:
    if (
        isinstance(value, (bytes, bytearray))
        and column.character_set != _BINARY_CHARSET
        and column.column_type != ColumnType.MYSQL_TYPE_BIT
    ):
        return bytes(value).decode("utf-8", "surrogateescape")
    return value


class _Command:
    """
    A command in flight: handles its response events.
    """

    def __init__(self, packet: Any, kind: str) -> None:
        self.packet = packet
        self.kind = kind
        self.deferred: defer.Deferred[Any] = defer.Deferred()


class _ResultCommand(_Command):
    """COM_QUERY / COM_STMT_EXECUTE: collects (or streams) results."""

    def __init__(
        self,
        packet: Any,
        on_row: Callable[[tuple[Any, ...]], Any] | None,
        binary: bool,
        columns: Sequence[Any] | None = None,
        decode: bool = True,
    ) -> None:
        super().__init__(packet, "execute" if binary else "query")
        self.on_row = on_row
        self.binary = binary
        self.decode = decode
        self.results: list[QueryResult] = []
        self.current: QueryResult | None = None
        self.column_count = 0
        self.state = "pending"
        #: an execute that asked for a read-only cursor: its result ends after the columns
        self.cursor = False


class _FieldListCommand(_Command):
    """COM_FIELD_LIST: collects column definitions until the terminator."""

    def __init__(self, packet: Any) -> None:
        super().__init__(packet, "field_list")
        self.columns: list[Any] = []


class _PrepareCommand(_Command):
    def __init__(self, packet: Any, sql: str) -> None:
        super().__init__(packet, "prepare")
        self.sql = sql
        self.ok: Any = None
        self.params: list[Any] = []
        self.columns: list[Any] = []
        self.remaining = 0


class PreparedStatement:
    """
    A server-side prepared statement.

    @ivar statement_id: the server's id.
    @ivar sql: the statement text.
    @ivar params: the parameter definitions.
    @ivar columns: the result column definitions announced at prepare time.
    @ivar cursor_columns: the columns of the last execute that opened a cursor (L{fetch} decodes
        rows with them).
    """

    def __init__(
        self,
        connection: MySQLClientProtocol,
        statement_id: int,
        sql: str,
        params: list[Any],
        columns: list[Any],
    ) -> None:
        self._connection = connection
        self.statement_id = statement_id
        self.sql = sql
        self.params = params
        self.columns = columns
        self.cursor_columns: list[Any] | None = None

    def execute(
        self,
        *values: Any,
        on_row: Callable[[tuple[Any, ...]], Any] | None = None,
        cursor: bool = False,
    ) -> defer.Deferred[QueryResult]:
        """
        Execute with parameter values.

        @param values: one Python value per C{?}.
        @param on_row: stream rows to this callback (see
            L{MySQLClientProtocol.query}).
        @param cursor: ask for a read-only server-side cursor
            (C{CURSOR_TYPE_READ_ONLY}): when the server opens one, the result
            has the columns but no rows and C{SERVER_STATUS_CURSOR_EXISTS} in
            its status; read the rows with L{fetch}.
        @return: a Deferred of the first result.
        """
        return self._connection._execute(self, values, on_row, cursor)

    def fetch(self, num_rows: int) -> defer.Deferred[QueryResult]:
        """
        Read up to C{num_rows} rows from the statement's open cursor (C{COM_STMT_FETCH}).

        @param num_rows: the most rows to read.
        @return: a Deferred of a L{QueryResult} with those rows; its status has
            C{SERVER_STATUS_LAST_ROW_SENT} once the cursor is exhausted.
        """
        return self._connection._fetch(self, num_rows)

    def close(self) -> defer.Deferred[None]:
        """
        Deallocate the statement (C{COM_STMT_CLOSE}; the server does not answer).

        @return: a Deferred firing once the command is written.
        """
        return self._connection._close_statement(self)


class MySQLClientProtocol(Protocol):
    """
    A connection to a MySQL server: log in, then run commands one at a time.

    @ivar ready: fires with this protocol once logged in (or fails with
        L{ServerError}).
    @ivar server_version: from the greeting.
    @ivar connection_id: from the greeting.
    @ivar server_capabilities: what the server offered.
    @ivar connection: the sans-IO L{ClientConnection}.
    @ivar closed: fires when the TCP connection is gone.
    """

    _log = Logger()
    transport: Any = None

    def __init__(
        self,
        reactor: Any,
        user: str,
        password: str | bytes = "",
        database: str | None = None,
        *,
        tls: Any = None,
        require_tls: bool | None = None,
        local_infile: LocalInfileReader | None = None,
        server_public_key: bytes | None = None,
        connect_attrs: dict[str, str] | None = None,
        character_set: int = 45,
        max_packet_size: int = 1 << 30,
        multi_statements: bool = True,
        compression: bool | str = False,
        compression_level: int = 6,
    ) -> None:
        """
        @param reactor: the reactor.
        @param user: the user name.
        @param password: the password.
        @param database: the default schema.
        @param tls: client TLS options (see
            L{obproxy_tx.protocol.tls.client_tls_options}), or C{None}.
        @param require_tls: fail when the server does not offer TLS (default:
            whenever C{tls} is given).
        @param local_infile: reads files for LOAD DATA LOCAL INFILE; C{None}
            refuses such requests.
        @param server_public_key: the server's RSA public key (PEM) for
            caching_sha2 full authentication without TLS; fetched when needed.
        @param connect_attrs: connection attributes to send.
        @param character_set: the collation id for the connection.
        @param max_packet_size: the largest payload accepted from the server.
        @param multi_statements: ask for C{CLIENT_MULTI_STATEMENTS}.
        @param compression: ask for the compressed protocol: C{True} or
            C{"zlib"} for C{CLIENT_COMPRESS}; C{"zstd"} for
            C{CLIENT_ZSTD_COMPRESSION_ALGORITHM} when the server offers it,
            else zlib. It is used only when the server offers it too (see
            L{compression<MySQLClientProtocol.compression>}).
        @param compression_level: the zlib or zstd level.
        @raise ValueError: C{compression} names an unknown algorithm.
        """
        self.reactor = reactor
        self.user = user
        self._password = password.encode("utf-8") if isinstance(password, str) else password
        self.database = database
        self._tls = tls
        self._require_tls = tls is not None if require_tls is None else require_tls
        self._local_infile = local_infile
        self._server_public_key = server_public_key
        self._connect_attrs = (
            connect_attrs
            if connect_attrs is not None
            else {"_client_name": "obproxy_tx", "_client_version": "0"}
        )
        self._character_set = character_set
        wanted = CLIENT_CAPABILITIES
        if local_infile is not None:
            wanted |= Capability.CLIENT_LOCAL_FILES
        if database:
            wanted |= Capability.CLIENT_CONNECT_WITH_DB
        if tls is not None:
            wanted |= Capability.CLIENT_SSL
        if not multi_statements:
            wanted &= ~Capability.CLIENT_MULTI_STATEMENTS
        if compression not in (False, True, "zlib", "zstd"):
            raise ValueError(f"unknown compression algorithm {compression!r}")
        if compression:
            wanted |= Capability.CLIENT_COMPRESS
        if compression == "zstd":
            wanted |= Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM
        self._wanted = wanted
        self._compression_level = compression_level
        self.connection = ClientConnection(
            capabilities=wanted,
            max_packet_size=max_packet_size,
            compression_level=compression_level,
        )
        self.ready: defer.Deferred[MySQLClientProtocol] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.server_version = ""
        self.connection_id = 0
        self.server_capabilities = Capability(0)
        self.secure = False
        self._scramble = b""
        self._auth_plugin = MYSQL_NATIVE_PASSWORD
        self._auth_state = ""
        self._auth_deferred: defer.Deferred[Any] = self.ready
        self._events: deque[Any] = deque()
        self._paused = False
        self._queue: deque[_Command] = deque()
        self._current: _Command | None = None
        self._logged_in = False
        self._lost = False
        # The server broke the protocol: the connection is being closed.
        self._failed = False

    @property
    def compression(self) -> str | None:
        """
        The compressed protocol in use: C{None}, C{"zlib"} or C{"zstd"}
        (switched on right after the login's OK when both sides offered it).
        """
        return self.connection.compression

    @property
    def capabilities(self) -> Capability:
        """
        The capabilities negotiated at login (what we asked for and the
        server offered).
        """
        return self.connection.capabilities

    # -- transport events -------------------------------------------------------

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: N802,B008
        """
        Fail whatever is pending.
        """
        self._lost = True
        error = ServerError(ErrorCode.CR_SERVER_LOST, "Lost connection to MySQL server", "HY000")
        if not self.ready.called:
            self.ready.errback(Failure(error))
        current, self._current = self._current, None
        pending = ([current] if current is not None else []) + list(self._queue)
        self._queue.clear()
        for command in pending:
            if command.kind == "quit":
                command.deferred.callback(None)
            elif not command.deferred.called:
                command.deferred.errback(Failure(error))
        if not self.closed.called:
            self.closed.callback(None)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """
        Feed the connection; handle events unless a consumer paused us.
        """
        if self._failed:
            # The server broke the protocol and the connection is closing:
            # what it sends meanwhile means nothing (and the conversation,
            # in its ERROR phase, refuses it).
            return
        try:
            events = self.connection.receive_data(data)
        except RemoteProtocolError as exc:
            self._fail_connection(ServerError(exc.error_code, exc.message, exc.sqlstate))
            return
        except Exception:
            self._log.failure("receive_data failed")
            self._fail_connection(ServerError(ErrorCode.CR_UNKNOWN_ERROR, "client error"))
            return
        self._events.extend(events)
        self._process()

    def _fail_connection(self, error: ServerError) -> None:
        self._failed = True
        if not self.ready.called:
            self.ready.errback(Failure(error))
        elif self._current is not None and not self._current.deferred.called:
            command, self._current = self._current, None
            command.deferred.errback(Failure(error))
        if self.transport is not None:
            self.transport.loseConnection()

    def _process(self) -> None:
        while self._events and not self._paused:
            event = self._events.popleft()
            try:
                self._handle(event)
            except Exception:
                self._log.failure("handling {event!r} failed", event=event)
                self._fail_connection(ServerError(ErrorCode.CR_UNKNOWN_ERROR, "client error"))
                return

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None:
            self.transport.write(data)

    def _handle(self, event: Any) -> None:
        if isinstance(event, ConnectionClosed):
            return
        if isinstance(event, p.HandshakeV10):
            self._greeting(event)
        elif isinstance(event, p.AuthSwitchRequest):
            self._auth_switch(event)
        elif isinstance(event, p.AuthMoreData):
            self._auth_more_data(event.data)
        elif not self._logged_in or self._auth_state:
            self._auth_result(event)
        else:
            self._command_event(event)

    # -- login ------------------------------------------------------------------

    def _greeting(self, greeting: p.HandshakeV10) -> None:
        self.server_version = greeting.server_version
        self.connection_id = greeting.connection_id
        self.server_capabilities = greeting.capabilities
        self._scramble = greeting.auth_plugin_data[:20]
        capabilities = self._wanted & greeting.capabilities
        if (
            self._tls is not None
            and not greeting.capabilities & Capability.CLIENT_SSL
            and self._require_tls
        ):
            self._fail_connection(
                ServerError(
                    ErrorCode.CR_SSL_CONNECTION_ERROR,
                    "SSL connection error: server does not support SSL",
                )
            )
            return
        if self._tls is not None and capabilities & Capability.CLIENT_SSL:
            self._write(
                self.connection.send(p.SSLRequest(capabilities, 1 << 24, self._character_set))
            )
            self.transport.startTLS(self._tls)
            self.connection.tls_started()
            self.secure = True
        plugin = greeting.auth_plugin_name or MYSQL_NATIVE_PASSWORD
        if plugin not in (MYSQL_NATIVE_PASSWORD, CACHING_SHA2_PASSWORD) and not (
            plugin == MYSQL_CLEAR_PASSWORD and self.secure
        ):
            plugin = MYSQL_NATIVE_PASSWORD
        self._auth_plugin = plugin
        self._auth_state = "login"
        response = p.HandshakeResponse41(
            capabilities=capabilities,
            max_packet_size=1 << 24,
            character_set=self._character_set,
            username=self.user,
            auth_response=self._scramble_response(plugin, self._scramble),
            database=self.database if capabilities & Capability.CLIENT_CONNECT_WITH_DB else None,
            auth_plugin_name=plugin,
            connect_attrs=self._connect_attrs
            if capabilities & Capability.CLIENT_CONNECT_ATTRS
            else None,
            zstd_compression_level=self._compression_level
            if capabilities & Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM
            else None,
        )
        self._write(self.connection.send(response))

    def _scramble_response(self, plugin: str, scramble: bytes) -> bytes:
        if plugin == MYSQL_NATIVE_PASSWORD:
            if not self._password:
                return b""
            return _scramble.native_password_response(self._password, scramble)
        if plugin == CACHING_SHA2_PASSWORD:
            if not self._password:
                return b""
            return _scramble.caching_sha2_scramble(self._password, scramble)
        if plugin == MYSQL_CLEAR_PASSWORD:
            return self._password + b"\x00"
        raise ServerError(
            ErrorCode.CR_AUTH_PLUGIN_CANNOT_LOAD,
            f"Authentication plugin '{plugin}' cannot be loaded",
        )

    def _auth_switch(self, request: p.AuthSwitchRequest) -> None:
        plugin = request.plugin_name
        if plugin == MYSQL_CLEAR_PASSWORD and not self.secure:
            self._auth_failed(
                ServerError(
                    ErrorCode.CR_AUTH_PLUGIN_CANNOT_LOAD,
                    "refusing to send the password in clear without TLS (mysql_clear_password)",
                )
            )
            return
        data = request.plugin_data
        if data.endswith(b"\x00"):
            data = data[:-1]
        if plugin != MYSQL_CLEAR_PASSWORD and data:
            self._scramble = data[:20]
        self._auth_plugin = plugin
        try:
            answer = self._scramble_response(plugin, self._scramble)
        except ServerError as error:
            self._auth_failed(error)
            return
        self._write(self.connection.send(p.AuthSwitchResponse(answer)))

    def _auth_more_data(self, data: bytes) -> None:
        if self._auth_plugin != CACHING_SHA2_PASSWORD:
            self._auth_failed(ServerError(ErrorCode.CR_MALFORMED_PACKET, "unexpected AuthMoreData"))
            return
        if data == b"\x03":
            return
        if data == b"\x04":
            if self.secure:
                answer = self._password + b"\x00"
            elif self._server_public_key is not None:
                answer = _rsa_encrypt(self._password, self._scramble, self._server_public_key)
            else:
                answer = b"\x02"
            self._write(self.connection.send(p.AuthSwitchResponse(answer)))
            return
        if data.startswith(b"-----BEGIN"):
            self._server_public_key = data
            answer = _rsa_encrypt(self._password, self._scramble, data)
            self._write(self.connection.send(p.AuthSwitchResponse(answer)))
            return
        self._auth_failed(ServerError(ErrorCode.CR_MALFORMED_PACKET, "unexpected AuthMoreData"))

    def _auth_result(self, event: Any) -> None:
        if isinstance(event, p.OKPacket):
            self._auth_state = ""
            if not self._logged_in:
                self._logged_in = True
                self.ready.callback(self)
            else:
                self._finish_command(QueryResult(status_flags=event.status_flags))
        elif isinstance(event, p.ERRPacket):
            self._auth_failed(ServerError(event.error_code, event.message, event.sqlstate))
        else:
            self._fail_connection(
                ServerError(ErrorCode.CR_MALFORMED_PACKET, f"unexpected {type(event).__name__}")
            )

    def _auth_failed(self, error: ServerError) -> None:
        self._auth_state = ""
        if not self._logged_in:
            self.ready.errback(Failure(error))
            if self.transport is not None:
                self.transport.loseConnection()
            return
        self._finish_command(Failure(error))

    # -- commands -----------------------------------------------------------------

    def _submit(self, command: _Command) -> defer.Deferred[Any]:
        if self._lost or self._failed:
            return defer.fail(
                ServerError(ErrorCode.CR_SERVER_GONE_ERROR, "MySQL server has gone away")
            )
        self._queue.append(command)
        self._next_command()
        return command.deferred

    def _next_command(self) -> None:
        while self._current is None and self._queue and not self._lost and not self._failed:
            command = self._queue.popleft()
            self._current = command
            phase = self.connection.phase
            try:
                self._write(self.connection.send(command.packet))
            except ProtocolError as exc:
                # The conversation cannot take the command: it ended (the server
                # said why and is closing) or broke, and refuses anything more
                # (the phase is ERROR now): close. Callers get a ServerError.
                self._current = None
                self._failed = True
                command.deferred.errback(Failure(_unsendable(exc, phase)))
                if self.transport is not None:
                    self.transport.loseConnection()
                continue
            except Exception as exc:
                self._current = None
                command.deferred.errback(Failure(exc))
                continue
            if command.kind in ("stmt_close", "long_data"):
                self._current = None
                command.deferred.callback(None)
            elif command.kind == "quit":
                if self.transport is not None:
                    self.transport.loseConnection()
            elif command.kind == "change_user":
                self._auth_state = "change_user"

    def _finish_command(self, result: Any) -> None:
        command, self._current = self._current, None
        if command is not None and not command.deferred.called:
            if isinstance(result, Failure):
                command.deferred.errback(result)
            else:
                command.deferred.callback(result)
        self._next_command()

    def _command_event(self, event: Any) -> None:
        command = self._current
        if command is None:
            if isinstance(event, p.ERRPacket):
                # e.g. the server's idle timeout just before it closes
                self._log.info("server said: {message}", message=event.message)
                return
            raise RemoteProtocolError(f"unexpected {type(event).__name__} while idle")
        if isinstance(command, _ResultCommand):
            self._result_event(command, event)
        elif isinstance(command, _PrepareCommand):
            self._prepare_event(command, event)
        elif isinstance(command, _FieldListCommand) and isinstance(event, p.ColumnDefinition41):
            command.columns.append(event)
        elif isinstance(command, _FieldListCommand) and isinstance(
            event, (p.OKPacket, p.EOFPacket)
        ):
            self._finish_command(command.columns)
        elif isinstance(event, p.ERRPacket):
            self._finish_command(
                Failure(ServerError(event.error_code, event.message, event.sqlstate))
            )
        elif isinstance(event, StatisticsResponse):
            self._finish_command(event.text.decode("utf-8", "replace"))
        elif isinstance(event, (p.OKPacket, p.EOFPacket)):
            self._finish_command(QueryResult(status_flags=event.status_flags))
        else:
            raise RemoteProtocolError(f"unexpected {type(event).__name__}")

    def _result_event(self, command: _ResultCommand, event: Any) -> None:
        if isinstance(event, RowData):
            assert command.current is not None
            self._row(command, command.current, event.payload)
            return
        if isinstance(event, p.ERRPacket):
            self._finish_command(
                Failure(ServerError(event.error_code, event.message, event.sqlstate))
            )
            return
        if isinstance(event, p.ColumnCount):
            command.current = QueryResult()
            command.column_count = event.count
            command.state = "columns" if event.count else "rows"
            return
        if isinstance(event, p.ColumnDefinition41):
            assert command.current is not None
            command.current.columns.append(event)
            if len(command.current.columns) >= command.column_count:
                command.state = "rows" if self.connection.deprecate_eof else "columns_eof"
            return
        if isinstance(event, p.EOFPacket) and command.state == "columns_eof":
            command.state = "rows"
            if not (
                command.cursor and event.status_flags & ServerStatus.SERVER_STATUS_CURSOR_EXISTS
            ):
                return
            # A cursor was opened: no rows follow now, this EOF ends the result.
        if isinstance(event, p.LocalInfileRequest):
            self._send_local_infile(event.filename.decode("utf-8", "surrogateescape"))
            return
        if isinstance(event, (p.OKPacket, p.EOFPacket)):
            result = command.current if command.current is not None else QueryResult()
            command.current = None
            command.state = "pending"
            result.status_flags = event.status_flags
            result.warnings = event.warnings
            if isinstance(event, p.OKPacket):
                result.affected_rows = event.affected_rows
                result.last_insert_id = event.last_insert_id
                result.info = event.info
            command.results.append(result)
            if not event.status_flags & ServerStatus.SERVER_MORE_RESULTS_EXISTS:
                self._finish_command(command.results)
            return
        raise RemoteProtocolError(f"unexpected {type(event).__name__} in a result")

    def _row(self, command: _ResultCommand, result: QueryResult, payload: bytes) -> None:
        caps = self.connection.capabilities
        columns = result.columns
        if command.binary:
            decoded = p.BinaryRow.decode(payload, caps, columns).values
            row = tuple(
                _convert_binary(value, column) if command.decode else value
                for value, column in zip(decoded, columns)
            )
        else:
            values = p.TextRow.decode(payload, caps, len(columns)).values
            row = tuple(
                _convert_text(value, column) if command.decode else value
                for value, column in zip(values, columns)
            )
        result.row_count += 1
        if command.on_row is None:
            result.rows.append(row)
            return
        outcome = command.on_row(row)
        if isinstance(outcome, defer.Deferred) and not outcome.called:
            self._pause_for(outcome)

    def _pause_for(self, waiting: defer.Deferred[Any]) -> None:
        """Stop reading until a slow consumer's Deferred fires."""
        self._paused = True
        if self.transport is not None:
            self.transport.pauseProducing()

        def resume(result: Any) -> Any:
            self._paused = False
            if self.transport is not None and not self._lost:
                self.transport.resumeProducing()
            self._process()
            return result if not isinstance(result, Failure) else None

        waiting.addBoth(resume)

    def _send_local_infile(self, filename: str) -> None:
        if self._local_infile is None:
            self._write(self.connection.send(LocalInfileData(b"")))
            return
        self._paused = True
        deferred = defer.maybeDeferred(self._local_infile, filename)

        def send(content: Any) -> None:
            chunks: Iterable[bytes]
            if isinstance(content, (bytes, bytearray, memoryview)):
                raw = bytes(content)
                chunks = (raw[i : i + _INFILE_CHUNK] for i in range(0, len(raw), _INFILE_CHUNK))
            else:
                chunks = content
            for chunk in chunks:
                if chunk:
                    self._write(self.connection.send(LocalInfileData(bytes(chunk))))
            self._write(self.connection.send(LocalInfileData(b"")))

        def failed(failure: Failure) -> None:
            self._log.failure(
                "reading {filename} for LOAD DATA LOCAL failed", failure, filename=filename
            )
            self._write(self.connection.send(LocalInfileData(b"")))

        def resume(_: object) -> None:
            self._paused = False
            self._process()

        deferred.addCallbacks(send, failed).addBoth(resume)

    def _prepare_event(self, command: _PrepareCommand, event: Any) -> None:
        if isinstance(event, p.ERRPacket):
            self._finish_command(
                Failure(ServerError(event.error_code, event.message, event.sqlstate))
            )
            return
        if isinstance(event, p.StmtPrepareOK):
            command.ok = event
            eof = 0 if self.connection.deprecate_eof else 1
            command.remaining = (event.num_params + eof if event.num_params else 0) + (
                event.num_columns + eof if event.num_columns else 0
            )
        elif isinstance(event, p.ColumnDefinition41):
            if len(command.params) < command.ok.num_params:
                command.params.append(event)
            else:
                command.columns.append(event)
            command.remaining -= 1
        elif isinstance(event, p.EOFPacket):
            command.remaining -= 1
        else:
            raise RemoteProtocolError(f"unexpected {type(event).__name__} after COM_STMT_PREPARE")
        if command.remaining <= 0:
            statement = PreparedStatement(
                self, command.ok.statement_id, command.sql, command.params, command.columns
            )
            self._finish_command(statement)

    # -- public API ---------------------------------------------------------------

    def query(
        self,
        sql: str | bytes,
        on_row: Callable[[tuple[Any, ...]], Any] | None = None,
        decode: bool = True,
    ) -> defer.Deferred[QueryResult]:
        """
        Run a statement (C{COM_QUERY}).

        @param sql: the statement.
        @param on_row: called with each row as it arrives instead of
            collecting rows; if it returns a Deferred that has not fired, the
            socket is paused until it does.
        @param decode: convert values to Python types (else raw C{bytes}).
        @return: a Deferred of the first L{QueryResult}; fails with
            L{ServerError}.
        """
        return self.query_multi(sql, on_row, decode).addCallback(lambda results: results[0])

    def query_multi(
        self,
        sql: str | bytes,
        on_row: Callable[[tuple[Any, ...]], Any] | None = None,
        decode: bool = True,
    ) -> defer.Deferred[list[QueryResult]]:
        """
        Run a statement that may return several results (multi-statements,
        stored procedures).

        @param sql: the statement(s).
        @param on_row: as for L{query}.
        @param decode: as for L{query}.
        @return: a Deferred of every L{QueryResult}, in order.
        """
        raw = sql.encode("utf-8") if isinstance(sql, str) else sql
        command = _ResultCommand(p.ComQuery(raw), on_row, binary=False, decode=decode)
        return self._submit(command)

    def prepare(self, sql: str) -> defer.Deferred[PreparedStatement]:
        """
        Prepare a statement (C{COM_STMT_PREPARE}).

        @param sql: the statement with C{?} placeholders.
        @return: a Deferred of a L{PreparedStatement}.
        """
        return self._submit(_PrepareCommand(p.ComStmtPrepare(sql.encode("utf-8")), sql))

    def _execute(
        self,
        statement: PreparedStatement,
        values: Sequence[Any],
        on_row: Callable[[tuple[Any, ...]], Any] | None,
        cursor: bool = False,
    ) -> defer.Deferred[QueryResult]:
        if len(values) != len(statement.params):
            return defer.fail(
                ServerError(
                    ErrorCode.ER_WRONG_ARGUMENTS,
                    f"statement takes {len(statement.params)} parameter(s), got {len(values)}",
                )
            )
        packet = p.ComStmtExecute(
            statement_id=statement.statement_id,
            flags=CursorType.CURSOR_TYPE_READ_ONLY if cursor else CursorType.CURSOR_TYPE_NO_CURSOR,
            iteration_count=1,
            parameters=tuple(p.BoundParameter.for_value(value) for value in values),
            new_params_bound=True,
        )
        command = _ResultCommand(packet, on_row, binary=True)
        command.cursor = cursor

        def first(results: list[QueryResult]) -> QueryResult:
            if results[0].columns:
                statement.cursor_columns = results[0].columns
            return results[0]

        return self._submit(command).addCallback(first)

    def _fetch(self, statement: PreparedStatement, num_rows: int) -> defer.Deferred[QueryResult]:
        command = _ResultCommand(
            p.ComStmtFetch(statement.statement_id, num_rows), None, binary=True
        )
        command.current = QueryResult(columns=list(statement.cursor_columns or statement.columns))
        command.state = "rows"
        return self._submit(command).addCallback(lambda results: results[0])

    def _close_statement(self, statement: PreparedStatement) -> defer.Deferred[None]:
        return self._submit(_Command(p.ComStmtClose(statement.statement_id), "stmt_close"))

    def ping(self) -> defer.Deferred[QueryResult]:
        """
        C{COM_PING}.

        @return: a Deferred firing when the server answers.
        """
        return self._submit(_Command(p.ComPing(), "simple"))

    def init_db(self, schema: str) -> defer.Deferred[QueryResult]:
        """
        Change the default schema (C{COM_INIT_DB}).

        @param schema: the schema.
        @return: a Deferred firing when the server agreed.
        """
        return self._submit(_Command(p.ComInitDB(schema.encode("utf-8")), "simple"))

    def reset_connection(self) -> defer.Deferred[QueryResult]:
        """
        C{COM_RESET_CONNECTION}: reset session state, keep the login.

        @return: a Deferred firing when done.
        """
        return self._submit(_Command(p.ComResetConnection(), "simple"))

    def field_list(self, table: str, wildcard: str = "") -> defer.Deferred[list[Any]]:
        """
        C{COM_FIELD_LIST}: the column definitions of a table (deprecated by the
        server vendors, still sent by old command-line clients).

        @param table: the table, in the current schema.
        @param wildcard: a C{LIKE} pattern for the column names (empty: all).
        @return: a Deferred of the L{ColumnDefinition41<obproxy_tx.wire.packets.ColumnDefinition41>}
            list; fails with L{ServerError} (e.g. 1146 for an unknown table).
        """
        packet = p.ComFieldList(table.encode("utf-8"), wildcard.encode("utf-8"))
        return self._submit(_FieldListCommand(packet))

    def statistics(self) -> defer.Deferred[str]:
        """
        C{COM_STATISTICS}.

        @return: a Deferred of the server's status line.
        """
        return self._submit(_Command(p.ComStatistics(), "simple"))

    def change_user(
        self, user: str, password: str | bytes = "", database: str | None = None
    ) -> defer.Deferred[QueryResult]:
        """
        C{COM_CHANGE_USER}: log in again as another user on this connection.

        @param user: the user name.
        @param password: the password.
        @param database: the new default schema.
        @return: a Deferred firing when the server accepted the login (fails
            with L{ServerError} 1045 otherwise; the connection stays usable
            when the server keeps it).
        """
        self.user = user
        self._password = password.encode("utf-8") if isinstance(password, str) else password
        self._auth_plugin = MYSQL_NATIVE_PASSWORD
        packet = p.ComChangeUser(
            username=user,
            auth_response=self._scramble_response(MYSQL_NATIVE_PASSWORD, self._scramble),
            database=database,
            character_set=self._character_set,
            auth_plugin_name=MYSQL_NATIVE_PASSWORD,
            connect_attrs=self._connect_attrs
            if self.connection.capabilities & Capability.CLIENT_CONNECT_ATTRS
            else None,
        )
        return self._submit(_Command(packet, "change_user"))

    def quit(self) -> defer.Deferred[None]:
        """
        C{COM_QUIT}, then close.

        @return: a Deferred firing when the connection is closed.
        """
        if self._lost:
            return defer.succeed(None)
        if self._failed:
            return self.closed  # already being closed: nothing to send
        self._submit(_Command(p.ComQuit(), "quit"))
        return self.closed


def _unsendable(exc: ProtocolError, phase: Phase) -> ServerError:
    """
    The error for a command the conversation refused to send.

    @param exc: what the conversation raised.
    @param phase: its phase when the command was given to it.
    @return: C{CR_SERVER_GONE_ERROR} when the conversation was over, else
        C{exc}'s code and message.
    """
    if phase in (Phase.CLOSED, Phase.ERROR):
        return ServerError(ErrorCode.CR_SERVER_GONE_ERROR, "MySQL server has gone away")
    return ServerError(exc.error_code, exc.message, exc.sqlstate)


def _rsa_encrypt(password: bytes, scramble: bytes, public_key_pem: bytes) -> bytes:
    return _scramble.rsa_encrypt_password(password, scramble, public_key_pem)


def connect(
    reactor: Any,
    endpoint: IStreamClientEndpoint,
    user: str,
    password: str | bytes = "",
    database: str | None = None,
    *,
    tls: Any = None,
    require_tls: bool | None = None,
    local_infile: LocalInfileReader | None = None,
    server_public_key: bytes | None = None,
    connect_attrs: dict[str, str] | None = None,
    character_set: int = 45,
    max_packet_size: int = 1 << 30,
    timeout: float | None = 30.0,
    compression: bool | str = False,
) -> defer.Deferred[MySQLClientProtocol]:
    """
    Connect and log in.

    @param reactor: the reactor (for the timeout).
    @param endpoint: where to connect (e.g. C{TCP4ClientEndpoint(reactor, host, port)}).
    @param user: the user name.
    @param password: the password.
    @param database: the default schema.
    @param tls: client TLS options from
        L{client_tls_options<obproxy_tx.protocol.tls.client_tls_options>}
        (hostname verification through service_identity), or C{None}.
    @param require_tls: fail if the server does not offer TLS (default: when C{tls} is given).
    @param local_infile: reads files for LOAD DATA LOCAL INFILE.
    @param server_public_key: the server's RSA public key (PEM).
    @param connect_attrs: connection attributes.
    @param character_set: the collation id.
    @param max_packet_size: the largest payload accepted from the server.
    @param timeout: seconds to connect and log in, or C{None}.
    @param compression: ask for the compressed protocol (C{True}/C{"zlib"},
        or C{"zstd"} falling back to zlib); see L{MySQLClientProtocol}.
    @return: a Deferred of the logged-in L{MySQLClientProtocol}; fails with
        L{ServerError} (e.g. 1045) or a connection error.
    """
    protocol = MySQLClientProtocol(
        reactor,
        user,
        password,
        database,
        tls=tls,
        require_tls=require_tls,
        local_infile=local_infile,
        server_public_key=server_public_key,
        connect_attrs=connect_attrs,
        character_set=character_set,
        max_packet_size=max_packet_size,
        compression=compression,
    )
    connecting = connectProtocol(endpoint, protocol)
    deferred: defer.Deferred[MySQLClientProtocol] = connecting.addCallback(lambda _: protocol.ready)
    if timeout is not None:

        def cancelled(failure: Failure) -> Failure:
            if protocol.transport is not None:
                protocol.transport.abortConnection()
            return failure

        deferred.addTimeout(timeout, reactor)
        deferred.addErrback(cancelled)
    return deferred
