"""
The MySQL server protocol: a thin Twisted adapter over
L{obproxy_tx.wire.connection.ServerConnection}.

L{MySQLServerFactory} is configured with a L{twisted.cred.portal.Portal} whose
realm returns L{IMySQLSession<obproxy_tx.protocol.interfaces.IMySQLSession>}
avatars. Each L{MySQLServerProtocol}:

  1. greets the client with a random per-connection scramble;
  2. upgrades to TLS on an C{SSLRequest} (TLS can be required:
     C{ER_SECURE_TRANSPORT_REQUIRED});
  3. authenticates through the portal with the credentials of
     L{obproxy_tx.auth.credentials}: C{mysql_native_password},
     C{caching_sha2_password} (fast path; full authentication in clear over TLS
     or RSA-encrypted with a public-key request without TLS) and
     C{mysql_clear_password} (TLS only), switching the client to the plugin
     the user needs (C{AuthSwitchRequest});
  4. hands each command to the session and writes its answer: OK, ERR, result
     sets from Python values, streamed rows (a push producer registered with
     the transport, so a slow client pauses the row source);
  5. enforces a handshake timeout, an idle timeout and a maximum packet size,
     answering each with an ERR packet before closing. A malformed packet gets
     an ERR where the protocol allows one, then only that connection closes;
     nothing raises out of C{dataReceived}.

Prepared statements are served generically: C{COM_STMT_PREPARE} counts the
C{?} placeholders, C{COM_STMT_EXECUTE} substitutes the parameters as SQL
literals and runs the statement through the session's C{query}, and the rows
go back in the binary protocol.
"""

from __future__ import annotations

import datetime
import itertools
from collections import deque
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Sequence

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from obproxy_tx.auth.credentials import (
    CachingSHA2Credentials,
    ClearPasswordCredentials,
    NativePasswordCredentials,
)
from obproxy_tx.protocol.interfaces import (
    OK,
    Column,
    ConnectionInfo,
    IMySQLSession,
    ResultSet,
    ServerError,
)
from obproxy_tx.wire import packets as p
from obproxy_tx.wire import scramble as _scramble
from obproxy_tx.wire import values as _values
from obproxy_tx.wire.connection import (
    ConnectionClosed,
    Phase,
    ServerConnection,
    StatisticsResponse,
)
from obproxy_tx.wire.constants import (
    CACHING_SHA2_PASSWORD,
    MYSQL_CLEAR_PASSWORD,
    MYSQL_NATIVE_PASSWORD,
    Capability,
    ColumnType,
    ServerStatus,
)
from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

__all__ = ["MySQLServerFactory", "MySQLServerProtocol", "SERVER_CAPABILITIES"]

#: What the server offers (C{CLIENT_SSL} is added when TLS is configured).
SERVER_CAPABILITIES = (
    Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_FOUND_ROWS
    | Capability.CLIENT_LONG_FLAG
    | Capability.CLIENT_CONNECT_WITH_DB
    | Capability.CLIENT_NO_SCHEMA
    | Capability.CLIENT_ODBC
    | Capability.CLIENT_IGNORE_SPACE
    | Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_INTERACTIVE
    | Capability.CLIENT_IGNORE_SIGPIPE
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_MULTI_STATEMENTS
    | Capability.CLIENT_MULTI_RESULTS
    | Capability.CLIENT_PS_MULTI_RESULTS
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_CONNECT_ATTRS
    | Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.CLIENT_DEPRECATE_EOF
)

_SUPPORTED_PLUGINS = (MYSQL_NATIVE_PASSWORD, CACHING_SHA2_PASSWORD, MYSQL_CLEAR_PASSWORD)

_FAST_AUTH_SUCCESS = b"\x03"
_PERFORM_FULL_AUTHENTICATION = b"\x04"
_REQUEST_PUBLIC_KEY = b"\x02"

#: Rows written per reactor turn when streaming.
_ROWS_PER_TURN = 256
#: Bytes of a client's pipelined commands held while one of its commands runs;
#: past this the server stops reading it until the command is done, as a MySQL
#: server (reading one command at a time) leaves the rest to TCP.
PIPELINE_HOLD = 1 << 20
#: Result sets with at most this many rows in a list are written in one go.
_SMALL_RESULT = 1000

_IDLE_MESSAGE = (
    "The client was disconnected by the server because of inactivity. "
    "See wait_timeout and interactive_timeout for configuring this behavior."
)


def generate_rsa_key(bits: int = 2048) -> bytes:
    """
    Generate an RSA private key for C{caching_sha2_password} full
    authentication without TLS.

    @param bits: the key size.
    @return: the key in PEM (PKCS#8, unencrypted).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _RSAKey:
    """
    The server's RSA key pair for C{caching_sha2_password} full authentication.
    """

    def __init__(self, private_pem: bytes) -> None:
        self._private_pem = private_pem
        self.public_pem = _scramble.rsa_public_key_pem(private_pem)
        from cryptography.hazmat.primitives import serialization

        key: Any = serialization.load_pem_private_key(private_pem, password=None)
        self.size_bytes = (key.key_size + 7) // 8

    def decrypt_password(self, data: bytes, scramble: bytes) -> bytes | None:
        """
        Recover a password the client encrypted with our public key.

        @param data: the ciphertext.
        @param scramble: the connection's scramble.
        @return: the password, or C{None} if it does not decrypt.
        """
        return _scramble.rsa_decrypt_password(data, scramble, self._private_pem)


def count_placeholders(sql: str) -> int:
    """
    Count the C{?} parameter markers outside quotes and comments.

    @param sql: a statement.
    @return: how many parameters it takes.
    """
    return len(_split_on_placeholders(sql)) - 1


def _split_on_placeholders(sql: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    index = 0
    while index < len(sql):
        char = sql[index]
        if quote:
            current.append(char)
            if char == "\\" and quote != "`" and index + 1 < len(sql):
                current.append(sql[index + 1])
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif char == "?":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def sql_literal(value: object) -> str:
    """
    Render a Python value as a SQL literal.

    @param value: C{None}, a number, text, bytes or a date/time value.
    @return: the literal.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float, Decimal)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "X'" + raw.hex() + "'"
        value = text
    if isinstance(value, datetime.timedelta):
        total = int(value.total_seconds())
        sign = "-" if total < 0 else ""
        total = abs(total)
        value = f"{sign}{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"
    text = str(value)
    escaped = (
        text.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace("\0", "\\0")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\x1a", "\\Z")
    )
    return "'" + escaped + "'"


def _column_definition(column: Column) -> p.ColumnDefinition41:
    return p.ColumnDefinition41(
        catalog=b"def",
        schema=column.schema.encode("utf-8"),
        table=column.table.encode("utf-8"),
        org_table=column.table.encode("utf-8"),
        name=column.name.encode("utf-8"),
        org_name=column.name.encode("utf-8"),
        character_set=column.character_set,
        column_length=column.length,
        column_type=column.type,
        flags=column.flags,
        decimals=column.decimals,
    )


def _text_value(value: object) -> bytes | None:
    return _values.text_value(value)


@implementer(IPushProducer)
class _RowStreamer:
    """
    Writes the rows of one result set, a batch per reactor turn, pausing while
    the transport's buffer is full (it is registered as the transport's push
    producer).
    """

    def __init__(
        self,
        protocol: MySQLServerProtocol,
        rows: Iterator[Sequence[Any]],
        encode: Callable[[Sequence[Any]], Any],
    ) -> None:
        self._protocol = protocol
        self._rows = rows
        self._encode = encode
        self._paused = False
        self._stopped = False
        self._scheduled: IDelayedCall | None = None
        self.done: defer.Deferred[None] = defer.Deferred()
        self.rows_sent = 0

    def start(self) -> None:
        self._protocol.transport.registerProducer(self, True)
        self._schedule()

    def pauseProducing(self) -> None:  # noqa: N802
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:  # noqa: N802
        self._stopped = True
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        self._finish(Failure(ConnectionError("connection lost while streaming rows")))

    def _schedule(self) -> None:
        if self._scheduled is None and not self._stopped and not self.done.called:
            self._scheduled = self._protocol.reactor.callLater(0, self._run)

    def _run(self) -> None:
        self._scheduled = None
        if self._paused or self._stopped:
            return
        chunk = []
        try:
            for row in itertools.islice(self._rows, _ROWS_PER_TURN):
                chunk.append(self._encode(row))
        except BaseException:
            self._finish(Failure())
            return
        if chunk:
            self.rows_sent += len(chunk)
            self._protocol._write_packets(chunk)
        if len(chunk) < _ROWS_PER_TURN:
            self._finish(None)
        else:
            self._schedule()

    def _finish(self, result: Failure | None) -> None:
        if self.done.called:
            return
        transport = self._protocol.transport
        if transport is not None and getattr(transport, "producer", self) is self:
            transport.unregisterProducer()
        if result is None:
            self.done.callback(None)
        else:
            self.done.errback(result)


class _PreparedStatement:
    def __init__(self, statement_id: int, sql: str) -> None:
        self.statement_id = statement_id
        self.parts = _split_on_placeholders(sql)
        self.long_data: dict[int, bytes] = {}
        self.types: Any = None

    @property
    def param_count(self) -> int:
        return len(self.parts) - 1

    def bind(self, values: Sequence[object]) -> str:
        out = [self.parts[0]]
        for index, part in enumerate(self.parts[1:]):
            value = self.long_data.get(index, values[index] if index < len(values) else None)
            out.append(sql_literal(value))
            out.append(part)
        return "".join(out)


class MySQLServerProtocol(Protocol):
    """
    One client connection to a MySQL-protocol server.

    @ivar factory: the L{MySQLServerFactory}.
    @ivar reactor: the reactor used for timers.
    @ivar info: the connection's L{ConnectionInfo} (also the realm's C{mind}).
    @ivar session: the logged-in L{IMySQLSession}, or C{None}.
    @ivar connection: the sans-IO L{ServerConnection}.
    """

    _log = Logger()
    transport: Any = None

    def __init__(self, factory: MySQLServerFactory) -> None:
        self.factory = factory
        self.reactor = factory.reactor
        self.session: IMySQLSession | None = None
        self._logout: Callable[[], None] | None = None
        self.connection = ServerConnection(
            capabilities=factory.capabilities, max_packet_size=factory.max_packet_size
        )
        self.info = ConnectionInfo(connection_id=0)
        self._scramble = b""
        self._events: deque[Any] = deque()
        self._busy = False
        self._processing = False
        self._closing = False
        # Reading stopped: a pipelining client sent more than PIPELINE_HOLD while busy.
        self._reading_paused = False
        self._handshake_timer: IDelayedCall | None = None
        self._idle_timer: IDelayedCall | None = None
        self._auth_plugin = MYSQL_NATIVE_PASSWORD
        self._auth_state = ""
        self._statements: dict[int, _PreparedStatement] = {}
        self._statement_ids = itertools.count(1)
        self._questions = 0

    # -- connection lifecycle -----------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        """
        Greet the client and start the handshake timer.
        """
        peer = self.transport.getPeer()
        self.info = ConnectionInfo(
            connection_id=self.factory.next_connection_id(),
            peer=str(getattr(peer, "host", "localhost")),
        )
        self._scramble = _scramble.generate_scramble()
        handshake = p.HandshakeV10(
            server_version=self.factory.server_version,
            connection_id=self.info.connection_id,
            auth_plugin_data=self._scramble,
            capabilities=self.factory.capabilities,
            character_set=self.factory.character_set,
            status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT,
            auth_plugin_name=self.factory.default_auth_plugin,
        )
        self._write(self.connection.send(handshake))
        if self.factory.handshake_timeout:
            self._handshake_timer = self.reactor.callLater(
                self.factory.handshake_timeout, self._handshake_timed_out
            )

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: N802,B008
        """
        Cancel timers and log the session out.
        """
        self._closing = True
        for timer in (self._handshake_timer, self._idle_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._handshake_timer = self._idle_timer = None
        logout, self._logout = self._logout, None
        self.session = None
        if logout is not None:
            try:
                logout()
            except Exception:
                self._log.failure("session logout failed")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """
        Feed bytes to the connection and handle the events; never raises.
        """
        if self._closing:
            return
        try:
            events = self.connection.receive_data(data)
        except RemoteProtocolError as exc:
            self._protocol_failed(exc)
            return
        except Exception:
            self._log.failure("receive_data failed")
            self._abort()
            return
        self._events.extend(events)
        self._process_events()
        if (
            self._busy
            and not self._reading_paused
            and self.connection.buffered_bytes > PIPELINE_HOLD
            and self.transport is not None
        ):
            self._reading_paused = True
            self.transport.pauseProducing()

    def _process_events(self) -> None:
        """
        Handle queued events while no command is running: first those
        already handed out, then the commands a pipelining client sent before
        the previous answer was complete (the connection keeps them buffered
        until L{ServerConnection.next_events} is asked once it is the
        client's turn again).
        """
        if self._processing:
            # A command answered at once calls back in here: the loop below
            # goes on by itself (no recursion per pipelined command).
            return
        self._processing = True
        try:
            self._serve_events()
        finally:
            self._processing = False

    def _serve_events(self) -> None:
        events = self._events
        while not self._busy and not self._closing:
            if not events:
                try:
                    pipelined = self.connection.next_events()
                except RemoteProtocolError as exc:
                    self._protocol_failed(exc)
                    return
                if not pipelined:
                    return
                events.extend(pipelined)
            event = events.popleft()
            try:
                self._handle(event)
            except RemoteProtocolError as exc:
                self._protocol_failed(exc)
            except Exception:
                self._log.failure("handling {event!r} failed", event=event)
                self._send_error(ServerError(ErrorCode.ER_UNKNOWN_ERROR, "internal error"))
                self._abort()

    def _run(self, deferred: defer.Deferred[Any]) -> None:
        """Mark the protocol busy until C{deferred} fires, then go on with events."""
        self._busy = True

        def done(result: Any) -> None:
            self._busy = False
            if isinstance(result, Failure):
                self._log.failure("command failed", result)
                if not self._closing:
                    self._send_error(ServerError(ErrorCode.ER_UNKNOWN_ERROR, "internal error"))
                    self._abort()
                return
            if not self._closing:
                self._process_events()
                if self._reading_paused and not self._busy and self.transport is not None:
                    self._reading_paused = False
                    self.transport.resumeProducing()

        deferred.addBoth(done)

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self._closing:
            self.transport.write(data)

    def _write_packets(self, packets: Iterable[Any]) -> None:
        self._write(self.connection.send_many(packets))

    def _send_error(self, error: ServerError) -> None:
        try:
            self._write(
                self.connection.send(p.ERRPacket(error.code, error.message, error.sqlstate))
            )
        except LocalProtocolError:
            self._log.warn(
                "could not send ERR {error} in {phase}", error=error, phase=self.connection.phase
            )

    def _protocol_failed(self, exc: RemoteProtocolError) -> None:
        self._log.warn(
            "closing {peer}: {message} ({code})",
            peer=self.info.peer,
            message=exc.message,
            code=exc.error_code,
        )
        try:
            self._write(self.connection.error_packet_for(exc))
        except Exception:
            self._log.failure("error_packet_for failed")
        self._close()

    def _close(self) -> None:
        if not self._closing and self.transport is not None:
            self.transport.loseConnection()
        self._closing = True

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()
        self._closing = True

    # -- timers --------------------------------------------------------------

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        self._log.info("handshake timeout for {peer}", peer=self.info.peer)
        timeout = RemoteProtocolError(
            "Bad handshake: handshake timed out", ErrorCode.ER_HANDSHAKE_ERROR
        )
        self._write(self.connection.error_packet_for(timeout))
        self._close()

    def _idle_timed_out(self) -> None:
        self._idle_timer = None
        self._log.info("idle timeout for {peer}", peer=self.info.peer)
        self._send_error(ServerError(ErrorCode.ER_CLIENT_INTERACTION_TIMEOUT, _IDLE_MESSAGE))
        self._close()

    def _start_idle_timer(self) -> None:
        if self.factory.idle_timeout and not self._closing:
            if self._idle_timer is not None and self._idle_timer.active():
                self._idle_timer.cancel()
            self._idle_timer = self.reactor.callLater(
                self.factory.idle_timeout, self._idle_timed_out
            )

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None

    # -- event dispatch ----------------------------------------------------------

    def _handle(self, event: Any) -> None:
        if isinstance(event, ConnectionClosed):
            self._closing = True
            return
        if isinstance(event, p.SSLRequest):
            self._start_tls()
            return
        if isinstance(event, p.HandshakeResponse41):
            self._handshake_response(event)
            return
        if isinstance(event, p.AuthSwitchResponse):
            self._auth_data(event.data)
            return
        if self.session is None:
            raise RemoteProtocolError(
                f"unexpected {type(event).__name__} before login", ErrorCode.ER_HANDSHAKE_ERROR
            )
        self._stop_idle_timer()
        self._questions += 1
        self._command(event)

    # -- TLS and authentication -----------------------------------------------

    def _start_tls(self) -> None:
        options = self.factory.tls_options
        if options is None:
            raise RemoteProtocolError(
                "SSL is not enabled on this server", ErrorCode.ER_HANDSHAKE_ERROR
            )
        self.transport.startTLS(options)
        self.connection.tls_started()
        self.info.secure = True
        trailing = self.connection.trailing_data
        wrapper = getattr(self.transport, "protocol", None)
        if trailing and wrapper is not None and wrapper is not self:
            wrapper.dataReceived(trailing)

    def _note_tls(self) -> None:
        try:
            handle = self.transport.getHandle()
            self.info.tls_cipher = handle.get_cipher_name()
            self.info.tls_version = handle.get_protocol_version_name()
        except Exception:
            self._log.debug("no TLS details from {transport}", transport=self.transport)

    def _handshake_response(self, response: p.HandshakeResponse41) -> None:
        if self.factory.require_tls and not self.info.secure:
            self._refuse(
                ServerError(
                    ErrorCode.ER_SECURE_TRANSPORT_REQUIRED,
                    "Connections using insecure transport are prohibited while "
                    "--require_secure_transport=ON.",
                )
            )
            return
        if self.info.secure:
            self._note_tls()
        self.info.user = response.username
        self.info.character_set = response.character_set
        self._pending_database = response.database
        client_plugin = response.auth_plugin_name or MYSQL_NATIVE_PASSWORD
        self._begin_auth(client_plugin, response.auth_response)

    def _begin_auth(self, client_plugin: str, auth_response: bytes) -> None:
        wanted = None
        if self.factory.auth_plugin_for is not None:
            wanted = self.factory.auth_plugin_for(self.info.user)
        if wanted is None or wanted not in _SUPPORTED_PLUGINS:
            wanted = (
                client_plugin
                if client_plugin in _SUPPORTED_PLUGINS
                else self.factory.default_auth_plugin
            )
        if wanted == MYSQL_CLEAR_PASSWORD and not self.info.secure:
            self._refuse(
                ServerError(
                    ErrorCode.ER_SECURE_TRANSPORT_REQUIRED,
                    "Authentication with mysql_clear_password requires a secure connection (TLS)",
                )
            )
            return
        self._auth_plugin = wanted
        if wanted != client_plugin:
            request = (
                p.AuthSwitchRequest(wanted, b"")
                if wanted == MYSQL_CLEAR_PASSWORD
                else p.AuthSwitchRequest.for_scramble(wanted, self._scramble)
            )
            self._auth_state = "switched"
            self._write(self.connection.send(request))
            return
        self._check_first_answer(auth_response)

    def _check_first_answer(self, answer: bytes) -> None:
        user = self.info.user
        plugin = self._auth_plugin
        if plugin == MYSQL_NATIVE_PASSWORD:
            self._auth_state = "native"
            self._login(NativePasswordCredentials(user, self._scramble, answer), bool(answer))
        elif plugin == CACHING_SHA2_PASSWORD:
            if not answer or answer == b"\x00":
                self._auth_state = "sha2-empty"
                self._login(ClearPasswordCredentials(user, b"", True, CACHING_SHA2_PASSWORD), False)
            else:
                self._auth_state = "sha2-fast"
                self._login(CachingSHA2Credentials(user, self._scramble, answer), True)
        else:
            self._auth_state = "clear"
            password = answer[:-1] if answer.endswith(b"\x00") else answer
            self._login(
                ClearPasswordCredentials(user, password, self.info.secure, MYSQL_CLEAR_PASSWORD),
                bool(password),
            )

    def _auth_data(self, data: bytes) -> None:
        state = self._auth_state
        if state == "switched":
            self._check_first_answer(data)
            return
        if state != "sha2-full":
            raise RemoteProtocolError(
                "unexpected authentication data", ErrorCode.ER_HANDSHAKE_ERROR
            )
        user = self.info.user
        if self.info.secure:
            password = data[:-1] if data.endswith(b"\x00") else data
            self._login(ClearPasswordCredentials(user, password, True, CACHING_SHA2_PASSWORD), True)
            return
        key = self.factory.rsa_key
        if data == _REQUEST_PUBLIC_KEY and key is not None:
            self._write(self.connection.send(p.AuthMoreData(key.public_pem)))
            return
        if key is not None and len(data) == key.size_bytes:
            decrypted = key.decrypt_password(data, self._scramble)
            if decrypted is None:
                self._access_denied(True)
                return
            self._login(
                ClearPasswordCredentials(user, decrypted, True, CACHING_SHA2_PASSWORD), True
            )
            return
        self._access_denied(True)

    def _login(self, credentials: Any, using_password: bool) -> None:
        if self.factory.portal is None:
            self._access_denied(using_password)
            return
        deferred = self.factory.portal.login(credentials, self.info, IMySQLSession)
        deferred.addCallbacks(
            self._logged_in,
            self._login_failed,
            callbackArgs=(credentials,),
            errbackArgs=(using_password,),
        )
        self._run(deferred)

    def _login_failed(self, failure: Failure, using_password: bool) -> None:
        if not failure.check(UnauthorizedLogin):
            self._log.failure("login failed unexpectedly", failure)
        if self._auth_state == "sha2-fast" and failure.check(UnauthorizedLogin):
            self._auth_state = "sha2-full"
            self._write(self.connection.send(p.AuthMoreData(_PERFORM_FULL_AUTHENTICATION)))
            return
        self._access_denied(using_password)

    def _access_denied(self, using_password: bool) -> None:
        yes = "YES" if using_password else "NO"
        self._refuse(
            ServerError(
                ErrorCode.ER_ACCESS_DENIED_ERROR,
                f"Access denied for user '{self.info.user}'@'{self.info.peer}' "
                f"(using password: {yes})",
            )
        )

    def _refuse(self, error: ServerError) -> None:
        self._log.info(
            "refusing {user}@{peer}: {message}",
            user=self.info.user,
            peer=self.info.peer,
            message=error.message,
        )
        self._send_error(error)
        if self.connection.phase != Phase.COMMAND_IDLE or self.session is None:
            # a refused login, or a refused COM_CHANGE_USER: no session is left
            self._close()

    def _logged_in(self, login: tuple[Any, Any, Callable[[], None]], credentials: Any) -> Any:
        _interface, session, logout = login
        if self._closing:
            logout()
            return None
        self.session = session
        self._logout = logout
        self.info.auth_plugin = self._auth_plugin
        self.info.stage1 = getattr(credentials, "stage1", None)
        database = getattr(self, "_pending_database", None)
        self._pending_database = None
        if database:
            deferred = defer.maybeDeferred(session.init_db, database)
            deferred.addCallbacks(
                lambda _: self._finish_login(database),
                self._database_refused,
            )
            return deferred
        self._finish_login(None)
        return None

    def _database_refused(self, failure: Failure) -> None:
        error = self._as_server_error(failure)
        self._refuse(error)

    def _finish_login(self, database: str | None) -> None:
        if database:
            self.info.database = database
        if self._auth_state == "sha2-fast":
            self._write(self.connection.send(p.AuthMoreData(_FAST_AUTH_SUCCESS)))
        self._auth_state = ""
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
        self._write(self.connection.send(p.OKPacket(status_flags=self._status())))
        self.info.compression = self.connection.compression
        self._log.info(
            "{user}@{peer} logged in with {plugin}",
            user=self.info.user,
            peer=self.info.peer,
            plugin=self._auth_plugin,
        )
        self._start_idle_timer()

    # -- commands --------------------------------------------------------------

    def _status(self, more: bool = False) -> ServerStatus:
        status = ServerStatus.SERVER_STATUS_AUTOCOMMIT
        if more:
            status |= ServerStatus.SERVER_MORE_RESULTS_EXISTS
        return status

    def _as_server_error(self, failure: Failure) -> ServerError:
        if failure.check(ServerError):
            return failure.value  # type: ignore[return-value]
        self._log.failure("session raised", failure)
        return ServerError(ErrorCode.ER_UNKNOWN_ERROR, f"internal error: {failure.value}")

    def _answer(
        self, call: Callable[..., Any], args: tuple[Any, ...], write: Callable[[Any], Any]
    ) -> None:
        deferred = defer.maybeDeferred(call, *args)
        deferred.addCallbacks(write, self._command_failed)
        deferred.addBoth(self._command_done)
        self._run(deferred)

    def _command_failed(self, failure: Failure) -> None:
        if self._closing:
            return
        self._send_error(self._as_server_error(failure))

    def _command_done(self, result: Any) -> Any:
        if not self._closing and self.connection.phase == Phase.COMMAND_IDLE:
            self._start_idle_timer()
        return result

    def _simple_ok(self, _ignored: object = None) -> None:
        self._write(self.connection.send(p.OKPacket(status_flags=self._status())))

    def _command(self, command: Any) -> None:
        session = self.session
        assert session is not None
        if isinstance(command, p.ComQuery):
            sql = command.query.decode("utf-8", "surrogateescape")
            self._answer(session.query, (sql,), lambda result: self._write_results(result, False))
        elif isinstance(command, p.ComInitDB):
            schema = command.schema.decode("utf-8", "surrogateescape")

            def changed(_: object) -> None:
                self.info.database = schema
                self._simple_ok()

            self._answer(session.init_db, (schema,), changed)
        elif isinstance(command, p.ComPing):
            self._simple_ok()
            self._start_idle_timer()
        elif isinstance(command, p.ComQuit):
            self._close()
        elif isinstance(command, p.ComResetConnection):
            self._statements.clear()
            self._answer(session.reset, (), self._simple_ok)
        elif isinstance(command, p.ComSetOption):
            self._write(self.connection.send(p.EOFPacket(status_flags=self._status())))
            self._start_idle_timer()
        elif isinstance(command, p.ComStatistics):
            text = f"Uptime: 1  Threads: 1  Questions: {self._questions}  Slow queries: 0"
            self._write(self.connection.send(StatisticsResponse(text.encode("ascii"))))
            self._start_idle_timer()
        elif isinstance(command, p.ComFieldList):
            self._write(self.connection.send(self.connection.end_of_rows(self._status())))
            self._start_idle_timer()
        elif isinstance(command, p.ComChangeUser):
            self._change_user(command)
        elif isinstance(command, p.ComStmtPrepare):
            self._prepare(command)
        elif isinstance(command, p.ComStmtExecute):
            self._execute(command)
        elif isinstance(command, p.ComStmtSendLongData):
            statement = self._statements.get(command.statement_id)
            if statement is not None:
                old = statement.long_data.get(command.param_id, b"")
                statement.long_data[command.param_id] = old + command.data
            self._start_idle_timer()
        elif isinstance(command, p.ComStmtClose):
            self._statements.pop(command.statement_id, None)
            self._start_idle_timer()
        elif isinstance(command, p.ComStmtReset):
            statement = self._statements.get(command.statement_id)
            if statement is None:
                self._unknown_statement(command.statement_id, "mysqld_stmt_reset")
            else:
                statement.long_data.clear()
                self._simple_ok()
            self._start_idle_timer()
        elif isinstance(command, p.ComProcessKill):
            self._send_error(
                ServerError(
                    ErrorCode.ER_NO_SUCH_THREAD, f"Unknown thread id: {command.connection_id}"
                )
            )
            self._start_idle_timer()
        else:
            name = type(command).__name__
            self._send_error(
                ServerError(ErrorCode.ER_UNKNOWN_COM_ERROR, f"Unknown command ({name})")
            )
            self._start_idle_timer()

    def _unknown_statement(self, statement_id: int, where: str) -> None:
        self._send_error(
            ServerError(
                ErrorCode.ER_UNKNOWN_STMT_HANDLER,
                f"Unknown prepared statement handler ({statement_id}) given to {where}",
            )
        )

    def _change_user(self, command: p.ComChangeUser) -> None:
        logout, self._logout = self._logout, None
        self.session = None
        if logout is not None:
            logout()
        self._statements.clear()
        self.info.user = command.username
        self.info.database = None
        self._pending_database = command.database
        self._begin_auth(command.auth_plugin_name or MYSQL_NATIVE_PASSWORD, command.auth_response)

    def _prepare(self, command: p.ComStmtPrepare) -> None:
        sql = command.query.decode("utf-8", "surrogateescape")
        statement = _PreparedStatement(next(self._statement_ids), sql)
        self._statements[statement.statement_id] = statement
        packets: list[Any] = [
            p.StmtPrepareOK(
                statement_id=statement.statement_id,
                num_columns=0,
                num_params=statement.param_count,
                warnings=0,
            )
        ]
        if statement.param_count:
            parameter = _column_definition(Column("?", ColumnType.MYSQL_TYPE_VAR_STRING))
            packets.extend([parameter] * statement.param_count)
            packets.append(p.EOFPacket(status_flags=self._status()))
        self._write_packets(packets)
        self._start_idle_timer()

    def _execute(self, command: p.ComStmtExecute) -> None:
        statement = self._statements.get(command.statement_id)
        if statement is None:
            self._unknown_statement(command.statement_id, "mysqld_stmt_execute")
            self._start_idle_timer()
            return
        if command.raw_parameters is not None:
            command = command.decode_parameters(
                self.connection.capabilities,
                statement.param_count,
                statement.types,
                long_data=tuple(statement.long_data),
            )
        if command.new_params_bound and command.parameters:
            statement.types = command.parameter_types()
        values = [
            None if param.value is p.LONG_DATA else param.value for param in command.parameters
        ]
        sql = statement.bind(values)
        statement.long_data.clear()
        assert self.session is not None
        self._answer(self.session.query, (sql,), lambda result: self._write_results(result, True))

    # -- results -------------------------------------------------------------------

    def _write_results(self, result: Any, binary: bool) -> defer.Deferred[None] | None:
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        if not results:
            results = [OK()]
        return self._write_next(results, 0, binary)

    def _write_next(
        self, results: list[Any], index: int, binary: bool
    ) -> defer.Deferred[None] | None:
        while index < len(results):
            item = results[index]
            more = index + 1 < len(results)
            index += 1
            if isinstance(item, OK):
                self._write(
                    self.connection.send(
                        p.OKPacket(
                            affected_rows=item.affected_rows,
                            last_insert_id=item.last_insert_id,
                            status_flags=self._status(more),
                            warnings=item.warnings,
                            info=item.info.encode("utf-8"),
                        )
                    )
                )
                continue
            if isinstance(item, ServerError):
                self._send_error(item)
                return None
            if not isinstance(item, ResultSet):
                raise TypeError(f"a session returned {item!r}, not OK or ResultSet")
            waiting = self._write_result_set(item, more, binary)
            if waiting is not None:
                return waiting.addCallback(self._resume_results, results, index, binary)
        return None

    def _resume_results(
        self, _: object, results: list[Any], index: int, binary: bool
    ) -> defer.Deferred[None] | None:
        return self._write_next(results, index, binary)

    def _write_result_set(
        self, result: ResultSet, more: bool, binary: bool
    ) -> defer.Deferred[None] | None:
        definitions = [_column_definition(column) for column in result.columns]
        header: list[Any] = [p.ColumnCount(len(definitions)), *definitions]
        header.append(p.EOFPacket(status_flags=self._status(more)))
        self._write_packets(header)
        if binary:

            def encode(row: Sequence[Any]) -> Any:
                return p.BinaryRow(tuple(_binary_ready(row, result.columns)))

        else:

            def encode(row: Sequence[Any]) -> Any:
                return p.TextRow(tuple(_text_value(value) for value in row))

        def finish(_: object = None) -> None:
            self._write(
                self.connection.send(
                    self.connection.end_of_rows(self._status(more), result.warnings)
                )
            )

        rows = result.rows
        if isinstance(rows, (list, tuple)) and len(rows) <= _SMALL_RESULT:
            self._write_packets(encode(row) for row in rows)
            finish()
            return None
        streamer = _RowStreamer(self, iter(rows), encode)
        streamer.start()
        streamer.done.addCallback(finish)
        return streamer.done


def _binary_ready(row: Sequence[Any], columns: Sequence[Column]) -> Iterator[Any]:
    for value, column in zip(row, columns):
        if value is None:
            yield None
        elif column.type in (
            ColumnType.MYSQL_TYPE_VAR_STRING,
            ColumnType.MYSQL_TYPE_STRING,
            ColumnType.MYSQL_TYPE_VARCHAR,
        ) and not isinstance(value, (bytes, str)):
            yield str(value)
        elif column.type == ColumnType.MYSQL_TYPE_LONGLONG and isinstance(value, bool):
            yield int(value)
        else:
            yield value


class MySQLServerFactory(Factory):
    """
    Builds L{MySQLServerProtocol}s sharing a portal and settings.

    @ivar portal: the L{Portal} logins go through.
    @ivar reactor: provides C{callLater} for the timeouts.
    @ivar server_version: the version string in the greeting.
    @ivar tls_options: TLS options for C{startTLS}, or C{None} (no TLS).
    @ivar require_tls: whether clients must use TLS.
    @ivar default_auth_plugin: the plugin named in the greeting.
    @ivar auth_plugin_for: C{user -> plugin name or None}: the plugin a user needs.
    @ivar rsa_key: the key for C{caching_sha2_password} full authentication
        without TLS, or C{None}.
    @ivar handshake_timeout: seconds a client has to log in (0: no limit).
    @ivar idle_timeout: seconds a logged-in client may stay idle (0: no limit).
    @ivar max_packet_size: the largest payload accepted from clients.
    @ivar capabilities: the capability flags offered.
    @ivar character_set: the collation id announced.
    """

    protocol = MySQLServerProtocol
    _log = Logger()

    def __init__(
        self,
        portal: Portal | None,
        reactor: IReactorTime | None = None,
        *,
        server_version: str = "8.0.36-obproxy_tx",
        tls_options: Any = None,
        require_tls: bool = False,
        default_auth_plugin: str = MYSQL_NATIVE_PASSWORD,
        auth_plugin_for: Callable[[str], str | None] | None = None,
        rsa_private_key: bytes | None = None,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 28800.0,
        max_packet_size: int = 64 * 1024 * 1024,
        character_set: int = 45,
        connection_ids: Callable[[], int] | None = None,
        compression: bool = False,
    ) -> None:
        """
        @param portal: the portal; its realm must provide L{IMySQLSession}.
        @param reactor: the reactor (default: the global one, resolved now).
        @param server_version: the version string in the greeting.
        @param tls_options: from L{obproxy_tx.protocol.tls.server_tls_options}.
        @param require_tls: refuse logins without TLS (C{ER_SECURE_TRANSPORT_REQUIRED}).
        @param default_auth_plugin: the plugin named in the greeting.
        @param auth_plugin_for: the plugin each user needs (e.g.
            L{InMemoryMySQLChecker.plugin_for
            <obproxy_tx.auth.checkers.InMemoryMySQLChecker.plugin_for>}); the
            client is switched to it when it answered with another one.
        @param rsa_private_key: PEM RSA key for caching_sha2 full
            authentication without TLS (default: one generated on first use).
        @param handshake_timeout: seconds to log in.
        @param idle_timeout: seconds of inactivity before the server closes.
        @param max_packet_size: the largest client payload accepted.
        @param character_set: the collation id announced (45 = utf8mb4_general_ci).
        @param connection_ids: a callable giving connection ids.
        @param compression: offer the compressed protocol.
        """
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.portal = portal
        self.reactor: Any = reactor
        self.server_version = server_version
        self.tls_options = tls_options
        self.require_tls = require_tls
        self.default_auth_plugin = default_auth_plugin
        self.auth_plugin_for = auth_plugin_for
        self._rsa_private_key = rsa_private_key
        self._rsa_key: _RSAKey | None = None
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_packet_size = max_packet_size
        self.character_set = character_set
        capabilities = SERVER_CAPABILITIES
        if tls_options is not None:
            capabilities |= Capability.CLIENT_SSL
        if compression:
            capabilities |= Capability.CLIENT_COMPRESS
        self.capabilities = capabilities
        if connection_ids is None:
            counter = itertools.count(1)
            connection_ids = lambda: next(counter)  # noqa: E731
        self._connection_ids: Callable[[], int] = connection_ids

    @property
    def rsa_key(self) -> _RSAKey | None:
        """
        The RSA key pair for caching_sha2 full authentication (generated on
        first use when none was configured).
        """
        if self._rsa_key is None:
            try:
                pem = self._rsa_private_key or generate_rsa_key()
            except ImportError:
                return None
            self._rsa_private_key = pem
            self._rsa_key = _RSAKey(pem)
        return self._rsa_key

    def next_connection_id(self) -> int:
        """
        @return: the id for a new connection.
        """
        return self._connection_ids()

    def buildProtocol(self, addr: Any) -> MySQLServerProtocol:  # noqa: N802
        """
        @param addr: the client's address.
        @return: a new protocol for it.
        """
        return MySQLServerProtocol(self)
