"""
L{ClientSession}: the proxy's side of one client connection.

A client session is a Twisted protocol driving a sans-IO L{ServerConnection}
(the proxy plays the MySQL server). It greets the client at once with its own
random scramble and its C{cs_id} as connection id, checks the login against a
stored verifier (recovering SHA1(password) so it can log in to any server),
logs in to a first server session, and then serves commands:

  - answered locally: C{COM_PING}, C{COM_QUIT}, C{COM_RESET_CONNECTION},
    C{COM_CHANGE_USER}, C{COM_STMT_CLOSE}, C{SELECT CONNECTION_ID()},
    C{SET @obproxy_route_addr = ...}, and the admin commands of
    L{obproxy_tx.plugins} (C{SHOW PROXYSESSION}, C{KILL}, ...), which
    L{obproxy_tx.admin.registry.CommandRegistry} recognises;
  - relayed to a server session chosen by L{ClientSession._route}: everything
    else. Rows are relayed undecoded (the hot path is L{ClientSession._relay}).

Before a request goes to a server session that is behind, it is synced
(C{COM_INIT_DB}, one C{SET}); a prepared statement that session never saw is
prepared there first. Both answers are swallowed.

See C{docs/proxy.md} for the whole story (pool, stickiness, failover, where
we differ from ODP).
"""

from __future__ import annotations

import collections
import decimal
import re
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from obproxy_tx import __version__
from obproxy_tx.admin import access
from obproxy_tx.admin.interfaces import AdminContext, AdminError, Privilege
from obproxy_tx.admin.registry import BAD_INTERNAL_CMD, Recognised
from obproxy_tx.config import BackendServer, ClusterConfig, ClusterType, LoginMode, parse_server
from obproxy_tx.ha.congestion import means_unavailable
from obproxy_tx.logs import Logger
from obproxy_tx.protocol.server import PIPELINE_HOLD
from obproxy_tx.session.fastwrite import no_delay, write_now
from obproxy_tx.session.limits import ServerBusyError
from obproxy_tx.session.login import LoginName, LoginNameError, SpecialUser, parse_login_name
from obproxy_tx.session.odp_login import default_capability_flag, rewrite_handshake_response
from obproxy_tx.session.pool import ServerSessionPool, login_key
from obproxy_tx.session.prepared import PreparedStatements, param_types_of, with_bound_types
from obproxy_tx.session.read_split import handle_set, sets_consistency
from obproxy_tx.session.read_split import route as route_split
from obproxy_tx.session.retry import RequestFacts, may_resend_lost, may_retry_refused
from obproxy_tx.session.server_session import (
    BackendError,
    BackendLogin,
    ServerSession,
    ServerSessionLostError,
)
from obproxy_tx.session.statements import StatementKind as FullKind
from obproxy_tx.session.statements import classify as classify_fully
from obproxy_tx.session.statements import substitute_connection_id
from obproxy_tx.session.states import ClientSessionMachine
from obproxy_tx.session.stats import SessionStats
from obproxy_tx.session.sync import SessionVarVersions
from obproxy_tx.session.timeouts import Watch, query_timeout, session_seconds
from obproxy_tx.session.tracking import SessionState, StatementKind, classify, parse_route_addr
from obproxy_tx.session.vanished import cancel_abandoned
from obproxy_tx.tls import start_server_tls
from obproxy_tx.wire.connection import (
    LocalInfileData,
    Phase,
    RowData,
    ServerConnection,
)
from obproxy_tx.wire.constants import (
    Capability,
    ColumnFlag,
    ColumnType,
    CursorType,
    ServerStatus,
    SessionTrackType,
)
from obproxy_tx.wire.errors import ErrorCode, ProtocolError, RemoteProtocolError
from obproxy_tx.wire.packets import (
    AuthSwitchRequest,
    AuthSwitchResponse,
    ColumnCount,
    ColumnDefinition41,
    ComChangeUser,
    ComInitDB,
    ComPing,
    ComProcessKill,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComSetOption,
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
    OKPacket,
    SSLRequest,
    StmtPrepareOK,
    TextRow,
    decode_text_values,
)
from obproxy_tx.wire.relay import AnswerRelay
from obproxy_tx.wire.scramble import check_native_password, generate_scramble

if TYPE_CHECKING:
    from obproxy_tx.session.manager import SessionManager

__all__ = ["PROXY_CAPABILITIES", "ClientSession"]

MYSQL_NATIVE_PASSWORD = "mysql_native_password"

#: What the proxy can offer a client when its servers offer it too (TLS is the
#: proxy's own: offered with enable_client_ssl). Left out: compression
#: (not configured end to end yet), query attributes
#: (the execute rewriting assumes their absence), optional result-set metadata,
#: MariaDB's bulk, COM_MULTI, progress and metadata-cache extensions.
PROXY_CAPABILITIES = (
    Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_FOUND_ROWS
    | Capability.CLIENT_LONG_FLAG
    | Capability.CLIENT_CONNECT_WITH_DB
    | Capability.CLIENT_NO_SCHEMA
    | Capability.CLIENT_ODBC
    | Capability.CLIENT_LOCAL_FILES
    | Capability.CLIENT_IGNORE_SPACE
    | Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_INTERACTIVE
    | Capability.CLIENT_IGNORE_SIGPIPE
    | Capability.CLIENT_TRANSACTIONS
    | Capability.CLIENT_RESERVED
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_MULTI_STATEMENTS
    | Capability.CLIENT_MULTI_RESULTS
    | Capability.CLIENT_PS_MULTI_RESULTS
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_CONNECT_ATTRS
    | Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.CLIENT_SESSION_TRACK
    | Capability.CLIENT_DEPRECATE_EOF
    | Capability.MARIADB_CLIENT_EXTENDED_TYPE_INFO
)
_REQUIRED = (
    Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_TRANSACTIONS
)
#: What server sessions always ask for on top of the client's capabilities, and
#: what they never ask for (ints: flag arithmetic on the enum costs per login).
_BACKEND_ADDED = int(_REQUIRED | Capability.CLIENT_SESSION_TRACK | Capability.CLIENT_MULTI_RESULTS)
_BACKEND_KEPT = ~int(
    Capability.CLIENT_SSL
    | Capability.CLIENT_COMPRESS
    | Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM
)
#: Parsed login names by the name a client sent, with the configuration they
#: were parsed under (clients log in under few names); cleared when it is full.
_LOGIN_NAMES: dict[str, tuple[Any, LoginName, ClusterConfig | None]] = {}
_LOGIN_NAMES_KEPT = 1024
# As plain ints for each greeting (IntFlag operations make new members).
_PROXY_CAPS = int(PROXY_CAPABILITIES)
_REQUIRED_CAPS = int(_REQUIRED)
_MULTI_STATEMENTS = int(Capability.CLIENT_MULTI_STATEMENTS)
_CLIENT_SSL = int(Capability.CLIENT_SSL)
_CURSOR_EXISTS = int(ServerStatus.SERVER_STATUS_CURSOR_EXISTS)

#: The status flags a local OK keeps from the bound server session's last answer.
_STATUS_KEPT = ~int(
    ServerStatus.SERVER_MORE_RESULTS_EXISTS
    | ServerStatus.SERVER_SESSION_STATE_CHANGED
    | ServerStatus.SERVER_STATUS_CURSOR_EXISTS
    | ServerStatus.SERVER_STATUS_LAST_ROW_SENT
)

_DEFAULT_CAPABILITIES = (
    PROXY_CAPABILITIES
    & ~Capability.CLIENT_DEPRECATE_EOF
    & ~Capability.MARIADB_CLIENT_EXTENDED_TYPE_INFO
)
#: System variables never synced: the database's character set follows
#: C{USE}; the others are OceanBase's proxy-to-observer bookkeeping.
_NOT_SYNCED = frozenset(
    {
        "character_set_database",
        "collation_database",
        "ob_capability_flag",
        "ob_proxy_global_variables_version",
        "ob_proxy_user_privilege",
    }
)
#: The session variable an observer reports its global variables' version in.
_GLOBAL_VARS_VERSION = "ob_proxy_global_variables_version"
_INT_TYPES = frozenset(
    {
        ColumnType.MYSQL_TYPE_TINY,
        ColumnType.MYSQL_TYPE_SHORT,
        ColumnType.MYSQL_TYPE_LONG,
        ColumnType.MYSQL_TYPE_LONGLONG,
        ColumnType.MYSQL_TYPE_INT24,
        ColumnType.MYSQL_TYPE_YEAR,
    }
)
_FLOAT_TYPES = frozenset({ColumnType.MYSQL_TYPE_FLOAT, ColumnType.MYSQL_TYPE_DOUBLE})
_DECIMAL_TYPES = frozenset({ColumnType.MYSQL_TYPE_DECIMAL, ColumnType.MYSQL_TYPE_NEWDECIMAL})
_BINARY_CHARSET = 63
_SELECT_ROUTE_ADDR = re.compile(rb"\s*select\s+@obproxy_route_addr\s*;?\s*\Z", re.I)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.$]+\Z")


def _user_var_ref(name: str) -> str:
    if _PLAIN_NAME.match(name):
        return "@" + name
    return "@`" + name.replace("`", "``") + "`"


def _value_of(raw: bytes | None, column: ColumnDefinition41) -> Any:
    """
    A user variable's value read back as text, typed by its column.
    """
    if raw is None:
        return None
    kind = column.column_type
    if kind in _INT_TYPES:
        return int(raw)
    if kind in _DECIMAL_TYPES:
        return decimal.Decimal(raw.decode())
    if kind in _FLOAT_TYPES:
        return float(raw)
    if column.character_set == _BINARY_CHARSET:
        return bytes(raw)
    return raw.decode("utf-8", "surrogateescape")


def _check_kill_answer(answer: list[Any]) -> None:
    """
    @raise AdminError: the server refused a C{KILL QUERY} (a statement that
        ended meanwhile, C{1094}, is no refusal: there is nothing left to kill).
    """
    for event in answer:
        if event.__class__ is ERRPacket and event.error_code != ErrorCode.ER_NO_SUCH_THREAD:
            raise AdminError(event.error_code, event.message, event.sqlstate)


def _backend_lost_error(message: str) -> ERRPacket:
    """
    The ERR a client gets when its server session is lost: a server error code
    (C{ER_NET_READ_ERROR}, SQLSTATE 08S01, "communication link failure"), since
    client-library codes such as 2013 are read as malformed by libmariadb.
    """
    return ERRPacket(ErrorCode.ER_NET_READ_ERROR, message, "08S01")


@implementer(IPushProducer)
class _ReadPauser:
    """
    Pauses and resumes reading on a transport for another transport's
    buffer, and nothing else: unlike the transport itself as a producer, it
    does not close the connection when the other side goes away.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def pauseProducing(self) -> None:  # noqa: N802
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802
        self._transport.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802
        pass


class _WritePauser(_ReadPauser):
    """
    A L{_ReadPauser} on the client's transport that also tells the client
    session when the client stopped taking what the proxy writes
    (C{net_write_timeout}): Twisted pauses its producer when the transport's
    buffer is full and resumes it once drained.
    """

    def __init__(self, transport: Any, session: ClientSession) -> None:
        super().__init__(transport)
        self._session = session

    def pauseProducing(self) -> None:  # noqa: N802
        super().pauseProducing()
        self._session._client_write_blocked(True)

    def resumeProducing(self) -> None:  # noqa: N802
        super().resumeProducing()
        self._session._client_write_blocked(False)


class _RequestFailedError(Exception):
    """
    A request cannot go on; C{packet} (if any) is the ERR the client gets.
    """

    def __init__(self, packet: ERRPacket | None, close: bool = False) -> None:
        super().__init__(packet.message if packet is not None else "request failed")
        self.packet = packet
        self.close = close


_PROXYSYS_OK_KINDS = frozenset(
    (
        StatementKind.SET,
        StatementKind.SET_TRANSACTION,
        StatementKind.BEGIN,
        StatementKind.COMMIT,
        StatementKind.ROLLBACK,
    )
)
"""What the local admin may send besides admin commands: answered with a bare OK."""

#: Statements whose loss mid-request leaves the client session usable (with an
#: error for the statement) when outside a transaction: none can open one.
_SURVIVABLE_KINDS = frozenset(
    (
        FullKind.SELECT,
        FullKind.SHOW,
        FullKind.INSERT,
        FullKind.UPDATE,
        FullKind.DELETE,
        FullKind.REPLACE,
    )
)

#: The flags of a COM_STMT_EXECUTE that opens a cursor.
_CURSOR_FLAGS = int(
    CursorType.CURSOR_TYPE_READ_ONLY
    | CursorType.CURSOR_TYPE_FOR_UPDATE
    | CursorType.CURSOR_TYPE_SCROLLABLE
)

_PROXYSYS_COMMANDS = frozenset((ComQuery, ComPing, ComQuit, ComProcessKill))
"""The commands the local admin may send at all (it has no backend)."""


class ClientSession(Protocol):
    """
    One client connection to the proxy.

    @ivar manager: the L{SessionManager} that owns this session.
    @ivar cs_id: the client session id (the handshake's connection id).
    @ivar machine: the C{MCS_*} state.
    @ivar conn: the sans-IO server-side conversation with the client.
    @ivar login: the parsed login name (after the handshake response).
    @ivar cluster: the cluster the client logged in to.
    @ivar state: the tracked session state (database, variables, versions, pins).
    @ivar bound: the last used server session (C{MSS_KA_CLIENT_SLAVE}), or C{None}.
    @ivar active: the server session serving the current request, or C{None}.
    @ivar pool: idle server sessions (C{MSS_KA_SHARED}).
    @ivar route_addr: the forced server (C{SET @obproxy_route_addr}), or C{None}.
    @ivar statements: the client's prepared statements.
    @ivar peer: the client's address.
    @ivar peer_port: the client's port.
    @ivar proxy_sessid: ODP's C{proxy_sessid} (proxy ip, listen port, sequence).
    @ivar connected_at_us: when the client connected, in µs since the epoch.
    @ivar global_vars_version: the observers' global variables version saved
        from the logins (C{ob_proxy_global_variables_version}), sent as
        C{__global_vars_version} by later ODP-mode logins.
    """

    # The proxy holds one per client: its attributes live in slots rather than
    # a per-instance dict (Protocol's own few stay in one). Measured with
    # bench/idle_memory.py.
    __slots__ = (
        "_adopted",
        "_answer",
        "_busy",
        "_client_answer",
        "_closed",
        "_closing",
        "_doomed",
        "_events",
        "_first_login_done",
        "_greeting_caps",
        "_idle_since",
        "_idle_timeout",
        "_idle_timer",
        "_in_transaction",
        "_login_timer",
        "_lost_idle",
        "_multi_statements",
        "_net_read",
        "_net_write",
        "_pauser",
        "_pending_change",
        "_processing",
        "_reading_held",
        "_producer",
        "_proxysys",
        "_query_limit",
        "_query_watch",
        "_raw_query",
        "_relay_ss",
        "_reported_sys_vars",
        "_resent",
        "_request_command",
        "_request_database",
        "_request_failed",
        "_request_info",
        "_response",
        "_reused",
        "_running",
        "_scramble",
        "_stage1",
        "_verifier",
        "_versions_before",
        "active",
        "bound",
        "cluster",
        "conn",
        "connected_at_us",
        "cs_id",
        "global_vars_version",
        "last_command_at",
        "lii_session",
        "login",
        "machine",
        "manager",
        "peer",
        "peer_port",
        "pool",
        "proxy_sessid",
        "read_consistency",
        "route_addr",
        "state",
        "statements",
        "stats",
        "trans_count",
    )

    _log = Logger()
    transport: Any

    def __init__(self, manager: SessionManager, cs_id: int) -> None:
        """
        @param manager: the owning session manager.
        @param cs_id: this session's id.
        """
        self.manager = manager
        self.cs_id = cs_id
        self.machine = ClientSessionMachine(f"client session {cs_id}")
        self.conn: ServerConnection = ServerConnection(_DEFAULT_CAPABILITIES)
        self.login: LoginName | None = None
        self.cluster: ClusterConfig | None = None
        self.state = SessionState()
        self.bound: ServerSession | None = None
        self.active: ServerSession | None = None
        self.pool = ServerSessionPool()
        self.route_addr: str | None = None
        # SET ob_read_consistency (read_split.py): None until the client sets it.
        self.read_consistency: str | None = None
        self.statements = PreparedStatements()
        self.peer = ""
        self.peer_port = 0
        self.proxy_sessid = 0
        self.connected_at_us = 0
        self.global_vars_version = 0
        self._first_login_done = False
        self._client_answer = b""
        self._scramble = generate_scramble()
        self._stage1 = b""
        self._verifier = b""
        self._response: HandshakeResponse41 | None = None
        # Client events not served yet (made when the first one has to wait).
        self._events: collections.deque[Any] | None = None
        # Reading stopped because a pipelining client sent too much while busy.
        self._reading_held = False
        self._busy = False
        self._running: object | None = None
        self._processing = False
        self._closed = False
        self._closing = False
        self._doomed: str | None = None
        # A server session of this client died while idle and none replaced it yet.
        self._lost_idle = False
        self._login_timer: IDelayedCall | None = None
        # wait_timeout: one timer, rescheduled only when it fires or the timeout changes.
        self._idle_timer: IDelayedCall | None = None
        self._idle_timeout = 0.0
        self._idle_since = 0.0
        # Lazy timeouts (obproxy_tx.session.timeouts.Watch and its timer), made
        # when first needed; the query timeout in seconds (0: none).
        self._net_read: Any = None
        self._net_write: Any = None
        self._query_watch: Any = None
        self._query_limit = 0.0
        self._producer: ServerSession | None = None
        self._pauser: _ReadPauser | None = None
        # Relays answers verbatim when it can (made at the first such answer),
        # and the server session last found to speak the client's formats.
        self._answer: AnswerRelay | None = None
        self._relay_ss: ServerSession | None = None
        # The bytes of the read being served when it was one whole command.
        self._raw_query: bytes | None = None
        self._request_info: Any = None
        self._request_command: Any = None
        self._request_failed = False
        self._request_database: str | None = None
        self._versions_before = self.state.versions
        # Variables the server reported in the current answer (made when one is).
        self._reported_sys_vars: set[str] | None = None
        self._in_transaction = False
        # The request last sent again (lost, or refused by a server that cannot serve
        # now) and how often: bounds the retries of one request.
        self._resent: tuple[Any, int] | None = None
        self._multi_statements = True
        self._greeting_caps = _DEFAULT_CAPABILITIES
        self._pending_change: ComChangeUser | None = None
        self.last_command_at = manager.reactor.seconds()
        self.stats = SessionStats()
        self.trans_count = 0
        self.lii_session: ServerSession | None = None
        # A server session just taken from the shared pool that still needs our database.
        self._adopted: ServerSession | None = None
        # Whether the last server session _connect gave was taken from the shared pool.
        self._reused = False
        self._proxysys = False

    def __repr__(self) -> str:
        return f"<ClientSession {self.cs_id} {self.login} {self.machine.state.name}>"

    # -- what admin commands show -------------------------------------------------

    @property
    def server_sessions(self) -> list[ServerSession]:
        """
        Every live server session of this client session (active, bound, pooled).
        """
        sessions = [ss for ss in (self.active, self.bound) if ss is not None]
        sessions.extend(ss for ss in self.pool if ss not in sessions)
        return sessions

    @property
    def server_session_count(self) -> int:
        """
        ODP's C{svr_session_count}: pooled + bound + active server sessions.
        """
        return len(self.server_sessions)

    @property
    def using_ssl(self) -> bool:
        """
        Whether the client connection is encrypted (TLS).
        """
        return ISSLTransport.providedBy(self.transport)

    @property
    def current_query(self) -> str | None:
        """
        The text of the C{COM_QUERY} being served for the client, if any.
        """
        command = self._request_command
        if command is not None and command.__class__ is ComQuery:
            return str(command.query.decode("utf-8", "replace"))
        return None

    @property
    def is_proxysys(self) -> bool:
        """
        Whether this is a session of the proxy's local admin users, which never
        reach a backend.
        """
        return self._proxysys

    @property
    def pin_reasons(self) -> frozenset[str]:
        """
        Why this session must stay on its current server session (empty: free to move).
        """
        reasons = set(self.state.pin_reasons)
        if self._in_transaction:
            reasons.add("transaction")
        for statement in self.statements.by_id.values():
            if statement.cursor_session is not None:
                reasons.add("open cursor")
            if statement.long_data_session is not None:
                reasons.add("long data")
        return frozenset(reasons)

    # -- what admin commands do -----------------------------------------------------

    def kill_connection(self) -> None:
        """
        End this client session now (C{KILL}): the client connection closes,
        its server sessions follow, and a statement still running on a backend
        is killed there too so the server stops working for nobody.
        """
        running = self.active
        if running is not None and running.alive and not self._proxysys:
            killing = self.side_query(b"KILL %d" % running.backend_id, running.server)
            killing.addErrback(self._log_side_failure, "KILL")
        self.manager.stats.client_sessions_killed += 1
        self.close()

    def kill_query(self) -> defer.Deferred[None]:
        """
        Stop the statement this session is running (C{KILL QUERY}): the proxy
        sends C{KILL QUERY <backend id>} to that server on a side connection
        logged in as this session's own user, who may always kill its own
        threads. The client then gets the server's own answer (1317 on MySQL).

        @return: fires once the server accepted the kill (at once when the
            session is idle); fails with L{AdminError} carrying the server's
            refusal.
        """
        running = self.active
        if running is None or not running.alive or self._proxysys:
            return defer.succeed(None)
        self.manager.stats.queries_killed += 1
        killing = self.side_query(b"KILL QUERY %d" % running.backend_id, running.server)
        return killing.addCallback(_check_kill_answer)

    def kill_server_session(self, ss_id: int) -> bool:
        """
        Close one server session of this client (C{KILL PROXYSESSION cs ss}).
        An idle one is replaced transparently on the next request (unless the
        session was pinned to it); one serving a request ends that request
        with an error, as a backend connection lost mid-query does.

        @return: whether C{ss_id} was one of this client's server sessions.
        """
        for ss in self.server_sessions:
            if ss.ss_id == ss_id:
                self.manager.stats.server_sessions_killed += 1
                self._log.info(
                    "client session {cs_id}: server session {ss_id} killed by an admin",
                    cs_id=self.cs_id,
                    ss_id=ss_id,
                )
                ss.close(quit=True)
                if ss is not self.active:
                    # The close completes a reactor turn later, and a request arriving
                    # meanwhile would be sent on the closed session (soak test, issue 8):
                    # take the loss now (an idle session is replaced, a pinned one dooms the
                    # next statement); the connection's own connectionLost is then a no-op.
                    ss.connectionLost(Failure(ConnectionDone("killed by an admin")))
                return True
        return False

    def side_query(
        self, sql: bytes, server: BackendServer | None = None
    ) -> defer.Deferred[list[Any]]:
        """
        Run one statement on a fresh connection logged in as this session's
        user (not one of its server sessions, which may be busy or hold state),
        then quit it.

        @param sql: the statement.
        @param server: where (default: the server of the session's current or
            last used server session, else one of its cluster).
        @return: the answer's events (as L{ServerSession.request} gives them);
            fails with L{AdminError} for a session that has no backend.
        """
        cluster = self.cluster
        if self._proxysys or self.login is None or cluster is None:
            return defer.fail(
                AdminError(
                    ErrorCode.ER_UNKNOWN_ERROR,
                    f"client session {self.cs_id} has no backend to ask",
                )
            )
        if server is None:
            current = self.active or self.bound
            server = current.server if current is not None else self.manager.pick_server(cluster)
        login = self._backend_login()
        return defer.Deferred.fromCoroutine(self._side_query(server, login, sql))

    async def _side_query(self, server: BackendServer, login: BackendLogin, sql: bytes) -> Any:
        ss = await self.manager.connect_server_session(self, server, login, side=True)
        try:
            return await ss.request(ComQuery(sql))
        finally:
            ss.close(quit=True)

    def _log_side_failure(self, failure: Failure, what: str) -> None:
        self._log.warn(
            "client session {cs_id}: {what} on a side connection failed: {error}",
            cs_id=self.cs_id,
            what=what,
            error=failure.getErrorMessage(),
        )

    # -- Twisted -------------------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        """
        Greet the client (once the default cluster's greeting is known).
        """
        self.machine.start()
        # Answers go out as they come: no Nagle delay behind a previous write.
        no_delay(self.transport)
        peer = self.transport.getPeer()
        self.peer = str(getattr(peer, "host", "localhost"))
        self.peer_port = int(getattr(peer, "port", 0) or 0)
        self.connected_at_us = int(time.time() * 1_000_000)
        self.proxy_sessid = self.manager.allocate_proxy_sessid(self.transport.getHost())
        timeout = self.manager.config.client_login_timeout
        if timeout:
            self._login_timer = self.manager.reactor.callLater(timeout, self._login_timed_out)
        self._busy = True
        default = self.manager.config.default_cluster
        known = self.manager.greetings.get(default.name)
        if known is not None:
            # The usual case: no Deferred for what is already known.
            self._send_greeting(known)
            return
        greeting = self.manager.cluster_greeting(default)
        greeting.addCallback(self._send_greeting)
        greeting.addErrback(self._internal_error)

    def _send_greeting(self, learned: HandshakeV10 | None) -> None:
        if self._closed:
            return
        config = self.manager.config
        if learned is not None:
            caps = (int(learned.capabilities) & _PROXY_CAPS) | _REQUIRED_CAPS
            version = config.mysql_version or learned.server_version
            charset = learned.character_set
        else:
            caps = _DEFAULT_CAPABILITIES
            version = config.mysql_version or "5.7.25"
            charset = 45
        if self.manager.tls.client_side is not None:
            # enable_client_ssl: the client may ask for TLS (SSLRequest, _login_event).
            caps = int(caps) | _CLIENT_SSL
        self._greeting_caps = Capability(caps)
        self.conn = ServerConnection(
            self._greeting_caps, max_packet_size=config.max_client_packet_size
        )
        handshake = HandshakeV10(
            server_version=version,
            connection_id=self.cs_id,
            auth_plugin_data=self._scramble,
            capabilities=self._greeting_caps,
            character_set=charset,
            status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT,
            auth_plugin_name=MYSQL_NATIVE_PASSWORD,
        )
        self._write(self.conn.send(handshake))
        self._busy = False
        self._process()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """
        Feed the client's bytes to the conversation and serve the events.
        """
        if self._closed:
            return
        self.manager.stats.client_bytes_received += len(data)
        conn = self.conn
        if conn._phase is Phase.CONNECT:
            self._queue().append(data)
            return
        try:
            events = conn.receive_data(data)
        except RemoteProtocolError as exc:
            self._protocol_failed(exc)
            return
        active = self.active
        if active is not None and events and events[0].__class__ is LocalInfileData:
            # LOAD DATA LOCAL: the file goes to the server as it comes.
            for event in events:
                if event.__class__ is LocalInfileData:
                    active.send(event)
                else:
                    self._queue().append(event)
            return
        if (
            len(events) == 1
            and not self._busy
            and not self._processing
            and not self._closing
            and not self._events
        ):
            # The usual read: one command while idle, served without the queue.
            self._processing = True
            self._raw_query = data
            try:
                self._handle(events[0])
                self._raw_query = None
                if not self._busy:
                    self._serve_queue()
            finally:
                self._raw_query = None
                self._processing = False
            return
        if not events:
            # Part of a packet: the client has net_read_timeout for the rest.
            self._watch_net_read()
        self._queue().extend(events)
        self._process()
        if self._busy and conn.buffered_bytes > PIPELINE_HOLD and not self._closed:
            # A client pipelining past PIPELINE_HOLD while its command runs: stop
            # reading it, as a MySQL server reading one command at a time leaves the
            # rest to TCP; _process reads on once the backlog is served.
            self._reading_held = True
            self.transport.pauseProducing()

    def _queue(self) -> collections.deque[Any]:
        events = self._events
        if events is None:
            events = self._events = collections.deque()
        return events

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: N802,B008
        """
        End every server session of this client at once.
        """
        self._closed = True
        if self._login_timer is not None and self._login_timer.active():
            self._login_timer.cancel()
        self._login_timer = None
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None
        for watch in (self._net_read, self._net_write, self._query_watch):
            if watch is not None:
                watch.cancel()
        # A client that quit (or that the proxy closed) quits its backends too; one that went
        # away without COM_QUIT leaves them as abruptly, so servers count it as aborted.
        if not self._closing:
            # Gone mid-request: a statement that sends nothing yet runs on otherwise.
            cancel_abandoned(self)
        # Only after the client's own COM_QUIT (the conversation is CLOSED; KILL and
        # timeouts leave it idle) do reusable ones go to the shared pool instead.
        self._close_server_sessions(
            quit=self._closing, pool=self._closing and self.conn.phase is Phase.CLOSED
        )
        self.machine.close()
        self.manager.client_session_closed(self)

    # -- plumbing -----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        # At once (see fastwrite), the proxy's own packets too: a buffered write costs
        # two epoll_ctl calls and a reactor turn, and a connection has three of them
        # (greeting, login OK, the OK of a local command) before its first query.
        if data and not self._closed:
            write_now(self.transport, data)

    def _write_relayed(self, data: bytes) -> None:
        # A server's answer goes out at once (see fastwrite).
        if data and not self._closed:
            self.manager.stats.server_bytes_relayed += len(data)
            write_now(self.transport, data)

    def _send(self, packet: Any) -> None:
        self._write(self.conn.send(packet))

    def close(self) -> None:
        """
        Close the client connection (its server sessions follow).
        """
        self._closing = True
        if not self._closed:
            if self._producer is not None:
                # loseConnection waits for a registered producer: over TLS the
                # connection would never close (see server_session._let_go_of_producer).
                self._producer = None
                self.transport.unregisterProducer()
            self.transport.loseConnection()

    def _protocol_failed(self, exc: ProtocolError) -> None:
        self._log.info(
            "client {peer} broke the protocol: {message}", peer=self.peer, message=exc.message
        )
        self._write(self.conn.error_packet_for(exc))
        self.close()

    def _internal_error(self, failure: Failure) -> None:
        self._log.failure("client session {cs_id} failed", failure, cs_id=self.cs_id)
        try:
            self._send(ERRPacket(ErrorCode.ER_UNKNOWN_ERROR, "internal proxy error"))
        except Exception:
            self._log.debug("could not report the internal error")
        self.close()

    def _wait_timeout(self) -> float:
        """
        The client's idle timeout in seconds: its session's C{wait_timeout} as the
        proxy tracked it (set by the client, or reported by the server), else the
        configured C{default_inactivity_timeout}, as ODP does.
        """
        value = self.state.sys_vars.get("wait_timeout")
        if value is not None:
            try:
                seconds = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                seconds = 0.0
            if seconds > 0:
                return seconds
        return float(self.manager.config.default_inactivity_timeout)

    def _watch_idle(self) -> None:
        """
        (Re)arm the idle timer for the current C{wait_timeout}, counted from the
        end of the last request.
        """
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        reactor = self.manager.reactor
        if not self._idle_since:
            self._idle_since = reactor.seconds()
        self._idle_timeout = self._wait_timeout()
        remaining = self._idle_since + self._idle_timeout - reactor.seconds()
        self._idle_timer = reactor.callLater(max(remaining, 0.0), self._idle_timer_fired)

    def follow_wait_timeout(self) -> None:
        """
        Re-arm the idle timer when the session's C{wait_timeout} changed (its
        own variable, or C{default_inactivity_timeout} by C{ALTER PROXYCONFIG}).
        """
        if self._idle_timer is not None and self._wait_timeout() != self._idle_timeout:
            self._watch_idle()
        self._follow_query_timeout()
        # A pending net timer was armed for the old net_read/net_write_timeout.
        watch = self._net_read
        if watch is not None and watch.armed:
            self._rearm(watch, self._net_read_timeout(), self._net_read_fired)
        watch = self._net_write
        if watch is not None and watch.armed:
            self._rearm(watch, self._net_write_timeout(), self._net_write_fired)

    def _idle_timer_fired(self) -> None:
        self._idle_timer = None
        if self._closed:
            return
        now = self.manager.reactor.seconds()
        timeout = self._wait_timeout()
        if self._busy or self._events or now < self._idle_since + timeout:
            # A request is running or came in since: look again later.
            if self._busy or self._events:
                self._idle_since = now
            self._watch_idle()
            return
        # As the server does: close without an answer; the client sees a lost
        # connection on its next command.
        self.manager.stats.client_idle_timeouts += 1
        self._log.info(
            "client session {cs_id}: idle for {timeout}s (wait_timeout), closing",
            cs_id=self.cs_id,
            timeout=timeout,
        )
        self.close()

    def _login_timed_out(self) -> None:
        self._login_timer = None
        if self.login is None or self.conn.phase is not Phase.COMMAND_IDLE:
            self.manager.stats.client_login_timeouts += 1
            self._log.info("client {peer} did not log in in time", peer=self.peer)
            self.transport.abortConnection()

    # -- net read / net write / query timeouts (obproxy_tx.session.timeouts) ----------

    def _arm(self, watch: Any, delay: float, fired: Any) -> None:
        watch.armed = True
        watch.timer = self.manager.reactor.callLater(max(delay, 0.0), fired)

    def _rearm(self, watch: Any, timeout: float, fired: Any) -> None:
        # For a changed timeout: what is left of it since the watched thing last moved.
        watch.cancel()
        self._arm(watch, watch.since + timeout - self.manager.reactor.seconds(), fired)

    def _watch_net_read(self) -> None:
        """
        The client's last read ended in the middle of a packet: from now on
        it has C{net_read_timeout} to send the rest (any bytes restart the clock).
        """
        if self.login is None or self._closed:
            # Before the login the login timeout watches the client.
            return
        watch = self._net_read
        if watch is None:
            watch = self._net_read = Watch()
        now = self.manager.reactor.seconds()
        watch.start("partial", now)
        watch.progress(now)
        if not watch.armed:
            self._arm(watch, self._net_read_timeout(), self._net_read_fired)

    def _net_read_timeout(self) -> float:
        return session_seconds(
            self.state.sys_vars, "net_read_timeout", self.manager.config.net_read_timeout
        )

    def _net_read_fired(self) -> None:
        watch = self._net_read
        if watch is None or self._closed:
            return
        # Still the client's turn with part of a packet held: stalled (when the
        # proxy is busy, buffered bytes are a pipelined command, not a stall).
        stalled = not self._busy and not self._closing and self.conn.has_buffered()
        delay = watch.fired(
            "partial" if stalled else None, self.manager.reactor.seconds(), self._net_read_timeout()
        )
        if delay is None:
            return
        if delay > 0:
            self._arm(watch, delay, self._net_read_fired)
            return
        # Mid-packet the client cannot read an answer: closed without one, as a
        # server does on its own net_read_timeout (1159 in its log).
        self.manager.stats.client_net_read_timeouts += 1
        self._log.info(
            "client session {cs_id}: no rest of a packet for {timeout}s (net_read_timeout), "
            "closing",
            cs_id=self.cs_id,
            timeout=self._net_read_timeout(),
        )
        self._closing = True
        self.transport.abortConnection()

    def _client_write_blocked(self, blocked: bool) -> None:
        """
        The client's transport buffer filled up (C{blocked}) or drained: a
        client that leaves it full for C{net_write_timeout} is closed.
        """
        if self._closed:
            return
        watch = self._net_write
        if watch is None:
            if not blocked:
                return
            watch = self._net_write = Watch()
        now = self.manager.reactor.seconds()
        if not blocked:
            watch.stop()
            return
        watch.start("blocked", now)
        if not watch.armed:
            self._arm(watch, self._net_write_timeout(), self._net_write_fired)

    def _net_write_timeout(self) -> float:
        return session_seconds(
            self.state.sys_vars, "net_write_timeout", self.manager.config.net_write_timeout
        )

    def _net_write_fired(self) -> None:
        watch = self._net_write
        if watch is None or self._closed:
            return
        delay = watch.fired(watch.marker, self.manager.reactor.seconds(), self._net_write_timeout())
        if delay is None:
            return
        if delay > 0:
            self._arm(watch, delay, self._net_write_fired)
            return
        # The client reads nothing, so no answer can reach it: both ends close at
        # once (the server session is mid-answer, useless to anyone).
        self.manager.stats.client_net_write_timeouts += 1
        self._log.info(
            "client session {cs_id}: answer unread for {timeout}s (net_write_timeout), closing",
            cs_id=self.cs_id,
            timeout=self._net_write_timeout(),
        )
        self._closing = True
        self.transport.abortConnection()

    def _follow_query_timeout(self) -> None:
        cluster = self.cluster
        if cluster is None:
            return
        self._query_limit = query_timeout(
            cluster.type is ClusterType.OCEANBASE, self.state.sys_vars, self.manager.config
        )

    def _watch_query(self, ss: ServerSession) -> None:
        """
        A request went to C{ss}: it must be answered within the query timeout.
        """
        watch = self._query_watch
        if watch is None:
            watch = self._query_watch = Watch()
        watch.start((ss.ss_id, ss.transact_count), self.manager.reactor.seconds())
        if not watch.armed:
            self._arm(watch, self._query_limit, self._query_fired)

    def _query_fired(self) -> None:
        watch = self._query_watch
        if watch is None or self._closed:
            return
        active = self.active
        net_write = self._net_write
        now = self.manager.reactor.seconds()
        if active is not None and net_write is not None and net_write.marker is not None:
            # The client is not reading: its own timeout (net_write_timeout)
            # applies, not the server's.
            watch.progress(now)
        current = (active.ss_id, active.transact_count) if active is not None else None
        delay = watch.fired(current, now, self._query_limit)
        if delay is None:
            return
        if delay > 0:
            self._arm(watch, delay, self._query_fired)
            return
        assert active is not None
        self._query_timed_out(active)

    def _query_timed_out(self, ss: ServerSession) -> None:
        """
        C{ss} did not answer the current request in time: the client gets ERR
        1317 (when nothing of the answer went out yet) and its connection
        closes, as ODP disconnects; the backend connection is killed on the
        server (its statement would run on for nobody) and dropped.
        """
        self.manager.stats.query_timeouts += 1
        cluster = self.cluster.name if self.cluster else "?"
        message = (
            f"Query execution was interrupted: server {ss.server.address} of cluster "
            f"'{cluster}' did not answer within {self._query_limit:g}s"
        )
        self._log.warn("client session {cs_id}: {message}", cs_id=self.cs_id, message=message)
        self.active = None
        ss.sink = None
        if ss.passthrough is not None and self._answer is not None:
            ss.passthrough = None
            self._answer.abandon()
        if self.conn.our_turn:
            try:
                self._send(ERRPacket(ErrorCode.ER_QUERY_INTERRUPTED, message, "70100"))
            except ProtocolError:
                self._log.debug("no error packet possible here")
        if ss.alive:
            killing = self.side_query(b"KILL %d" % ss.backend_id, ss.server)
            killing.addErrback(self._log_side_failure, "KILL")
        ss.abort()
        self.close()

    def _process(self) -> None:
        """
        Serve the client's queued events while the session is free: first
        those already handed out by the conversation, then the commands a
        pipelining client sent before the previous answer was complete (the
        conversation keeps them buffered until L{ServerConnection.next_events}
        is asked once it is the client's turn again). Whatever ended the
        previous command (a relayed answer, a local one, a swallowed internal
        request, an error) calls this, so no queued command is left waiting.
        """
        if self._processing:
            # Called back from inside the loop below (a step that ended at
            # once): the loop goes on by itself, in order.
            return
        self._processing = True
        try:
            self._serve_queue()
        finally:
            self._processing = False
        if self._reading_held and self.conn.buffered_bytes <= PIPELINE_HOLD and not self._closed:
            self._reading_held = False
            self.transport.resumeProducing()

    def _serve_queue(self) -> None:
        while not self._busy and not self._closed and not self._closing:
            events = self._events
            if not events:
                if self.conn.phase is Phase.CONNECT:
                    return
                try:
                    pipelined = self.conn.next_events()
                except RemoteProtocolError as exc:
                    self._protocol_failed(exc)
                    return
                if not pipelined:
                    if self.conn.has_buffered():
                        # Part of a packet that came behind a whole command.
                        self._watch_net_read()
                    return
                events = self._queue()
                events.extend(pipelined)
            event = events.popleft()
            if event.__class__ is bytes:
                try:
                    events.extendleft(reversed(self.conn.receive_data(event)))
                except RemoteProtocolError as exc:
                    self._protocol_failed(exc)
                    return
                continue
            self._handle(event)

    def _handle(self, event: Any) -> None:
        try:
            cls = event.__class__
            if cls is ComQuery and self._quick_query(event):
                return
            if cls is ComStmtExecute and self._quick_execute(event):
                return
            if cls is LocalInfileData:
                active = self.active
                if active is not None:
                    active.send(event)
            elif cls is AuthSwitchResponse and self._pending_change is not None:
                self._changed(event.data)
            elif self.login is None:
                self._login_event(event)
            else:
                self._command(event)
        except RemoteProtocolError as exc:
            self._protocol_failed(exc)
        except Exception:
            self._internal_error(Failure())

    def _status(self) -> ServerStatus:
        bound = self.bound
        if bound is None:
            return ServerStatus.SERVER_STATUS_AUTOCOMMIT
        # Plain ints (an IntFlag operation makes a new IntFlag): one call per local OK.
        return ServerStatus(int(bound.conn.status_flags) & _STATUS_KEPT)

    def _ok(self) -> None:
        self._send(OKPacket(status_flags=self._status()))

    def _error(self, code: int, message: str, sqlstate: str = "HY000") -> None:
        self._send(ERRPacket(code, message, sqlstate))

    def _run(self, coroutine: Any) -> None:
        """
        Run an async step: the session is busy (client events queue) until it ends.
        """
        self._busy = True
        token = object()
        self._running = token
        deferred = defer.Deferred.fromCoroutine(coroutine)
        deferred.addErrback(self._request_error)
        deferred.addBoth(self._unbusy, token)

    def _unbusy(self, _: object, token: object) -> None:
        """
        An async step ended: unless it handed over to a relayed request (or
        a later step already took over), serve the next queued command.
        """
        if self._running is not token:
            return
        self._running = None
        if self.active is None:
            self._busy = False
            self._process()

    def _request_error(self, failure: Failure) -> None:
        if self._closed:
            return
        if failure.check(ServerSessionLostError):
            self._log.warn("client session {cs_id}: {error}", cs_id=self.cs_id, error=failure.value)
            if self.conn.our_turn:
                self._send(_backend_lost_error(str(failure.value)))
            self.close()
            return
        if failure.check(_RequestFailedError):
            error: Any = failure.value
            if error.packet is not None and self.conn.our_turn:
                self._send(error.packet)
            if error.close:
                self.close()
            return
        self._internal_error(failure)

    # -- login -----------------------------------------------------------------------

    def _login_event(self, event: Any) -> None:
        cls = event.__class__
        if cls is HandshakeResponse41:
            self._response = event
            plugin = event.auth_plugin_name or MYSQL_NATIVE_PASSWORD
            if plugin != MYSQL_NATIVE_PASSWORD:
                self._send(AuthSwitchRequest.for_scramble(MYSQL_NATIVE_PASSWORD, self._scramble))
                return
            self._run(self._login(event.username, event.auth_response, event.database))
        elif cls is AuthSwitchResponse and self._response is not None:
            response = self._response
            self._run(self._login(response.username, event.data, response.database))
        elif cls is SSLRequest:
            # The greeting offered TLS (enable_client_ssl); the login follows encrypted.
            start_server_tls(self, self.conn, self.manager.tls.client_side)
        else:
            raise RemoteProtocolError(
                f"unexpected {cls.__name__} during login", ErrorCode.ER_HANDSHAKE_ERROR
            )

    def _login(self, raw_user: str, answer: bytes, database: str | None) -> Any:
        """
        The login: over plain text, users who require TLS are refused first
        (L{_refuse_plain_text}) when any may (TLSContexts.checks_users).
        """
        if self.conn.tls or not self.manager.tls.checks_users:
            return self._authenticate(raw_user, answer, database)
        return self._plain_login(raw_user, answer, database)

    async def _plain_login(self, raw_user: str, answer: bytes, database: str | None) -> None:
        try:
            login, cluster = self._parse_login(raw_user)
            await self._refuse_plain_text(login, cluster, answer)
        except _RequestFailedError:
            self.manager.stats.client_login_failures += 1
            raise
        await self._authenticate(raw_user, answer, database)

    async def _refuse_plain_text(
        self, login: LoginName, cluster: ClusterConfig, answer: bytes, close: bool = True
    ) -> None:
        """
        Refuse a user who logs in over TLS only (C{require_ssl}, C{REQUIRE SSL})
        on a plain-text connection, with the server's own answer (1045).
        """
        if self.conn.tls or login.is_proxysys:
            return
        if await self.manager.requires_tls(cluster, login.user, login.tenant, self.peer or "%"):
            self._log.info(
                "client session {cs_id}: {user} from {peer} refused: it logs in over TLS only",
                cs_id=self.cs_id,
                user=login.user_tenant,
                peer=self.peer,
            )
            denied = self._access_denied(login.user, bool(answer), cluster)
            denied.close = close
            raise denied

    def _access_denied(
        self, user: str, using_password: bool, cluster: ClusterConfig | None = None
    ) -> _RequestFailedError:
        cluster = cluster or self.cluster
        self.manager.login_throttle.failed(self.peer)
        sqlstate = (
            "42000" if cluster is not None and cluster.type is ClusterType.OCEANBASE else "28000"
        )
        return _RequestFailedError(
            ERRPacket(
                ErrorCode.ER_ACCESS_DENIED_ERROR,
                f"Access denied for user '{user}'@'{self.peer}' "
                f"(using password: {'YES' if using_password else 'NO'})",
                sqlstate,
            ),
            close=True,
        )

    def _parse_login(self, raw: str) -> tuple[LoginName, ClusterConfig]:
        config = self.manager.config
        known = _LOGIN_NAMES.get(raw)
        if known is not None and known[0] is config:
            login, cluster = known[1], known[2]
        else:
            try:
                login = parse_login_name(
                    raw,
                    default_cluster=config.default_cluster.name,
                    tenant_defaults={c.name: c.default_tenant for c in config.clusters},
                    username_separator=config.username_separator,
                )
            except LoginNameError:
                raise self._access_denied(raw, True) from None
            cluster = config.cluster(login.cluster)
            if len(_LOGIN_NAMES) >= _LOGIN_NAMES_KEPT:
                _LOGIN_NAMES.clear()
            _LOGIN_NAMES[raw] = (config, login, cluster)
        if cluster is None:
            raise _RequestFailedError(
                ERRPacket(
                    ErrorCode.ER_ACCESS_DENIED_ERROR,
                    f"Access denied for user '{raw}'@'{self.peer}': cluster '{login.cluster}' "
                    "is not configured in this proxy",
                    "28000",
                ),
                close=True,
            )
        return login, cluster

    async def _verify(
        self, raw_user: str, answer: bytes
    ) -> tuple[LoginName, ClusterConfig, bytes, bytes]:
        login, cluster = self._parse_login(raw_user)
        if login.is_proxysys:
            return login, cluster, self._verify_proxysys(login, answer), b""
        if cluster.login_mode is LoginMode.ODP_PROXY_SCRAMBLE:
            # ODP's way: the observers check the client's answer themselves
            # (through __proxy_scramble); the proxy holds no verifier.
            return login, cluster, b"", b""
        verifier = await self.manager.lookup_verifier(
            cluster, login.user, login.tenant, self.peer or "%"
        )
        if verifier is None:
            raise self._access_denied(login.user, bool(answer), cluster)
        stage1 = check_native_password(self._scramble, answer, verifier)
        if stage1 is None:
            raise self._access_denied(login.user, bool(answer), cluster)
        return login, cluster, stage1, verifier

    def _verify_proxysys(self, login: LoginName, answer: bytes) -> bytes:
        """
        Check a login of the proxy's local users (C{root@proxysys},
        C{inspector@proxysys}) against their own verifiers, from allowed
        networks only (loopback unless C{proxysys_allowed_networks} says more).
        """
        config = self.manager.config
        special = login.special
        if special is SpecialUser.PROXYSYS_ROOT:
            verifier = config.obproxy_sys_password
        elif special is SpecialUser.PROXYSYS_INSPECTOR:
            verifier = config.inspector_password
        else:
            raise self._access_denied(login.user, bool(answer))
        if not config.proxysys_allowed(self.peer):
            self._log.warn(
                "client session {cs_id}: {user} refused from {peer} (not in "
                "proxysys_allowed_networks)",
                cs_id=self.cs_id,
                user=login.user_tenant,
                peer=self.peer,
            )
            raise self._access_denied(login.user, bool(answer))
        stage1 = check_native_password(self._scramble, answer, verifier)
        if stage1 is None:
            raise self._access_denied(login.user, bool(answer))
        return stage1

    def _local_admin_logged_in(self, login: LoginName) -> None:
        self.login = login
        self.cluster = None
        self._proxysys = True
        if self._login_timer is not None and self._login_timer.active():
            self._login_timer.cancel()
        self._login_timer = None
        self.manager.login_done(self)
        self.manager.stats.client_logins += 1
        self._watch_idle()
        self._send(OKPacket(status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT))
        self._log.info(
            "client session {cs_id}: local admin {user} from {peer} logged in",
            cs_id=self.cs_id,
            user=login.user_tenant,
            peer=self.peer,
        )

    async def _authenticate(self, raw_user: str, answer: bytes, database: str | None) -> None:
        # Its address guessed too many passwords: its turn first (brute_force.py).
        refused = await self.manager.login_throttle.before_login(self.peer)
        if refused is not None or self._closed:
            raise _RequestFailedError(refused, close=True)
        try:
            login, cluster, stage1, verifier = await self._verify(raw_user, answer)
        except _RequestFailedError:
            self.manager.stats.client_login_failures += 1
            raise
        if login.is_proxysys:
            self._local_admin_logged_in(login)
            return
        # A reload may have replaced the cluster while the login was checked
        # (obproxy_tx.session.retire); a removed one keeps its old object and is retired.
        cluster = self.manager.config.cluster(cluster.name) or cluster
        refusal = self.manager.admit(self, login, cluster)
        if refusal is not None:
            raise _RequestFailedError(refusal, close=True)
        self.login, self.cluster = login, cluster
        self._stage1, self._verifier = stage1, verifier
        self._client_answer = answer
        self._multi_statements = bool(int(self.conn.capabilities) & _MULTI_STATEMENTS)
        if database:
            self.state.set_database(database)
        try:
            server = self._login_server(cluster)
            ss = await self._acquire(server, failover=True)
        except _RequestFailedError as failed:
            self.login = None
            failed.close = True
            raise
        self._finish_request(ss, bind=True)
        self._first_login_done = True
        self.manager.stats.client_logins += 1
        if self._login_timer is not None and self._login_timer.active():
            self._login_timer.cancel()
        self._login_timer = None
        self.manager.login_done(self)
        self._in_transaction = False
        self._watch_idle()
        self._follow_query_timeout()
        self._send(OKPacket(status_flags=self._status()))
        # Routine, one per connection: debug, so that a log filtered at info (ODP's
        # syslog_level is WDIAG) does not pay ~40 us per login to format and write it.
        self._log.debug(
            "client session {cs_id}: {user} from {peer} logged in to {server} with "
            "{how} server session {ss_id} (backend connection id {backend_id})",
            cs_id=self.cs_id,
            user=login.full_name,
            peer=self.peer,
            server=ss.server.address,
            how="reused" if self._reused else "new",
            ss_id=ss.ss_id,
            backend_id=ss.backend_id,
        )

    # -- server sessions -------------------------------------------------------------

    def _login_server(self, cluster: ClusterConfig) -> BackendServer:
        """
        The server of the first server session: one where the shared pool has
        a session for this user (a login without a backend login), else the
        next in turn.
        """
        if len(cluster.servers) > 1:
            shared = self.manager.session_pool
            key = login_key(cluster.name, self._backend_login())
            database = self.state.database
            health = self.manager.health
            for server in cluster.servers:
                # A pooled session to a congested server may hang or be dead: not that one.
                if shared.has_idle(server.address, key, database) and not health.avoided(
                    cluster.name, server.address
                ):
                    return server
        return self.manager.pick_server(cluster)

    def _backend_login(self) -> BackendLogin:
        login = self.login
        cluster = self.cluster
        assert login is not None and cluster is not None
        username = login.user_tenant if cluster.type is ClusterType.OCEANBASE else login.user
        response = self._response
        caps = self.conn.capabilities
        return BackendLogin(
            username=username,
            stage1=self._stage1,
            verifier=self._verifier,
            # CLIENT_SSL with enable_server_ssl: pooled sessions are shared only with like ones.
            capabilities=Capability(
                ((int(caps) | _BACKEND_ADDED) & _BACKEND_KEPT)
                | (_CLIENT_SSL if self.manager.tls.server_enabled else 0)
            ),
            character_set=response.character_set if response is not None else 0,
            database=self.state.database,
            connect_attrs=response.connect_attrs if response is not None else None,
            max_packet_size=response.max_packet_size if response is not None else 1 << 30,
            replay=self._odp_login if cluster.login_mode is LoginMode.ODP_PROXY_SCRAMBLE else None,
        )

    def _odp_login(
        self, greeting: HandshakeV10, capabilities: Capability, ss_id: int
    ) -> HandshakeResponse41:
        """
        ODP's replayed login for one observer (C{login_mode: odp_proxy_scramble}):
        the client's answer to our scramble, with ODP's connect attributes
        (odp-reference.md section 7).
        """
        login, cluster, response = self.login, self.cluster, self._response
        assert login is not None and cluster is not None and response is not None
        config = self.manager.config
        database = self.state.database
        template = attrs.evolve(
            response,
            capabilities=capabilities,
            character_set=response.character_set or greeting.character_set,
            username=login.user_tenant,
            auth_response=self._client_answer,
            database=database,
            auth_plugin_name=MYSQL_NATIVE_PASSWORD,
        )
        return rewrite_handshake_response(
            template,
            proxy_scramble=self._scramble,
            server_greeting=greeting,
            proxy_session_id=self.proxy_sessid,
            client_session_id=self.cs_id,
            client_ip=self.peer,
            client_port=self.peer_port,
            client_connect_time_us=self.connected_at_us,
            proxy_version=__version__,
            cluster_name=cluster.name,
            cluster_id=cluster.cluster_id,
            server_session_id=self.cs_id if config.proxy_service_mode == "server" else None,
            global_vars_version=self.global_vars_version if self._first_login_done else 0,
            capability_flag=int(
                default_capability_flag(client_session_id_v2=config.client_session_id_version == 2)
            ),
            database=database or None,
        )

    def _learn_login(self, ss: ServerSession) -> None:
        """
        Save what a server's login OK tells the next logins
        (C{ob_proxy_global_variables_version}).
        """
        ok = ss.login_ok
        if ok is None or not ok.session_state_changes:
            return
        try:
            items = ok.session_state_items()
            for item in items:
                if item.type == SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES:
                    name, value = item.system_variable()
                    if name.decode("ascii", "replace").lower() == _GLOBAL_VARS_VERSION:
                        self.global_vars_version = int(value)
        except (ProtocolError, ValueError):
            self._log.debug("unreadable session state in a login OK")

    async def _connect(self, server: BackendServer, failover: bool) -> ServerSession:
        cluster = self.cluster
        assert cluster is not None
        candidates = [server]
        if failover:
            others = [s for s in cluster.servers if s.address != server.address]
            # Healthy servers first: the next attempt avoids congested ones (obproxy_tx.ha).
            others = self.manager.health.order(cluster.name, others)
            candidates.extend(
                others[: max(0, self.manager.config.connect_observer_max_retries - 1)]
            )
        problems = []
        busy: ServerBusyError | None = None
        login = self._backend_login()
        key = login_key(cluster.name, login)
        for candidate in candidates:
            pooled = self._take_pooled(candidate, login, key)
            if pooled is not None:
                return pooled
            try:
                ss = await self.manager.connect_server_session(self, candidate, login)
            except BackendError as refused:
                if candidate is not candidates[-1] and means_unavailable(refused.packet.error_code):
                    # "Cannot serve now" (shutting down, starting, too many connections):
                    # nothing ran, the next server may take the login, as ODP moves on.
                    problems.append(f"{candidate.address}: {refused}")
                    continue
                raise _RequestFailedError(refused.packet, close=self.login is None) from None
            except ServerBusyError as exc:  # server_max_connections: none free in time
                problems.append(f"{candidate.address}: {exc}")
                busy = exc
                continue
            except Exception as exc:  # connect errors of every kind
                problems.append(f"{candidate.address}: {exc}")
                self.stats.server_connect_failures += 1
                continue
            self.stats.server_connects += 1
            if problems:
                self.stats.failovers += 1
            self._learn_login(ss)
            # A fresh session has the defaults (version 0 of every class) and
            # the database it logged in with.
            if ss.login.database == self.state.database:
                ss.versions = SessionVarVersions(
                    db_name_version=self.state.versions.db_name_version
                )
            self._reused = False
            if self._first_login_done:
                # A login says it in its own line (one log line per login is cheaper).
                self._log.info(
                    "client session {cs_id}: new server session {ss_id} to {server} "
                    "(backend connection id {backend_id})",
                    cs_id=self.cs_id,
                    ss_id=ss.ss_id,
                    server=candidate.address,
                    backend_id=ss.backend_id,
                )
            return ss
        if busy is not None and len(problems) == 1:
            # Only one server was tried and it is full: its own clear error (1040).
            raise _RequestFailedError(busy.packet)
        raise _RequestFailedError(
            ERRPacket(
                ErrorCode.ER_UNKNOWN_ERROR,
                f"Cannot connect to any server of cluster '{cluster.name}' ({'; '.join(problems)})",
                # "client unable to establish SQL connection": drivers class it as operational.
                "08001",
            )
        )

    def _take_pooled(
        self, server: BackendServer, login: BackendLogin, key: Any
    ) -> ServerSession | None:
        """
        A server session to C{server} from the shared pool, logged in as this
        client's backend user and reset (its versions at their defaults), now
        this client's; C{None} when there is none. The client's password was
        checked at its own login, exactly as without the pool.
        """
        if key is None:
            return None
        taken = self.manager.session_pool.take(
            server.address, key, self.state.database, self.server_session_lost
        )
        if taken is None:
            return None
        ss, in_database = taken
        assert self.login is not None
        ss.key = (server.address, self.login.full_name)
        ss.login = login
        self._reused = True
        # In our database already (as ODP's pool, keyed by database, assumes), or
        # _acquire applies ours with COM_INIT_DB before anything else.
        self._adopted = None if in_database else ss
        ss.versions = SessionVarVersions(
            db_name_version=self.state.versions.db_name_version if in_database else 0
        )
        if self._first_login_done:
            # A login says it in its own line.
            self._log.info(
                "client session {cs_id}: reused server session {ss_id} to {server} "
                "(backend connection id {backend_id})",
                cs_id=self.cs_id,
                ss_id=ss.ss_id,
                server=server.address,
                backend_id=ss.backend_id,
            )
        return ss

    async def _adopt_database(self, ss: ServerSession) -> None:
        """
        Put a server session taken from the shared pool into the client's
        database, checked as a login naming it would check it: a database
        that is gone or not the user's refuses with the server's own ERR, and
        the session is closed.
        """
        database = self.state.database
        assert database is not None
        self.stats.sync_requests += 1
        answer = await ss.request(ComInitDB(database.encode("utf-8", "surrogateescape")))
        first = answer[0] if answer else None
        if first.__class__ is ERRPacket:
            ss.close(quit=True)
            raise _RequestFailedError(first, close=self.login is None)
        ss.versions = attrs.evolve(ss.versions, db_name_version=self.state.versions.db_name_version)

    async def _acquire(self, server: BackendServer, failover: bool = False) -> ServerSession:
        """
        Take the server session for C{server}: the bound one, a pooled one,
        or a new one; then bring it up to date. A session that turns out to be
        dead while syncing (the client's request was not sent yet) is replaced
        once, unless the client is pinned to it.
        """
        key = (server.address, self.login.full_name if self.login else "")
        for attempt in (1, 2):
            bound = self.bound
            ss: ServerSession | None = None
            if bound is not None and bound.key == key and bound.alive:
                ss, self.bound = bound, None
            else:
                if bound is not None:
                    self.bound = None
                    bound.machine.pool()
                    self.pool.put(bound)
                ss = self.pool.take(key)
                while ss is not None and not ss.alive:
                    ss = self.pool.take(key)
            if ss is None:
                # A second attempt (the first session died while being synced: nothing of
                # the request went out) may move to another server unless the route is fixed.
                ss = await self._replace_or_connect(
                    server,
                    failover or (attempt == 2 and self.route_addr is None and not self.pin_reasons),
                )
            pinned = bool(self.pin_reasons)
            ss.machine.activate()
            try:
                if ss is self._adopted:
                    self._adopted = None
                    await self._adopt_database(ss)
                await self._sync(ss)
            except ServerSessionLostError:
                if attempt == 2 or pinned:
                    raise _RequestFailedError(
                        self._lost_error(ss, "while syncing the session"), close=True
                    ) from None
                if self.route_addr is None:
                    # Nothing of the request went out: the next server may take it.
                    server = self._other_server(ss.server) or server
                    key = (server.address, key[1])
                continue
            return ss
        raise AssertionError("unreachable")  # pragma: no cover

    async def _replace_or_connect(self, server: BackendServer, failover: bool) -> ServerSession:
        """
        A new server session; when it replaces one that died while idle (killed, server
        restarted) and cannot be had (login refused, server unreachable), the client connection
        closes without an answer, as the dead backend connection would have: a direct client
        sees a lost connection (2013) there, not an error of a login it never made.
        """
        if not self._lost_idle:
            return await self._connect(server, failover)
        try:
            ss = await self._connect(server, failover)
        except _RequestFailedError as failed:
            self._log.info(
                "client session {cs_id}: replacing a server session lost while idle failed "
                "({error}); closing the client connection",
                cs_id=self.cs_id,
                error=failed.packet.message if failed.packet is not None else "?",
            )
            raise _RequestFailedError(None, close=True) from None
        self._lost_idle = False
        return ss

    async def _sync(self, ss: ServerSession) -> None:
        if ss.multi_statements != self._multi_statements:
            option = 0 if self._multi_statements else 1
            await ss.request(ComSetOption(option))  # type: ignore[arg-type]
            ss.multi_statements = self._multi_statements
        plan = self.state.plan(ss.versions)
        if plan.database is not None:
            self.stats.sync_requests += 1
            answer = await ss.request(ComInitDB(plan.database.encode("utf-8", "surrogateescape")))
            self._log_sync_error(ss, answer, "COM_INIT_DB")
        if plan.statement is not None:
            self.stats.sync_requests += 1
            answer = await ss.request(ComQuery(plan.statement.encode("utf-8", "surrogateescape")))
            self._log_sync_error(ss, answer, plan.statement)
        ss.versions = self.state.versions

    def _log_sync_error(self, ss: ServerSession, answer: list[Any], what: str) -> None:
        for event in answer:
            if event.__class__ is ERRPacket:
                self._log.warn(
                    "sync of client session {cs_id} to {server} failed: {what}: {code} {message}",
                    cs_id=self.cs_id,
                    server=ss.server.address,
                    what=what,
                    code=event.error_code,
                    message=event.message,
                )

    def _lost_error(self, ss: ServerSession, when: str) -> ERRPacket:
        cluster = self.cluster.name if self.cluster else "?"
        return _backend_lost_error(
            f"Lost connection to server {ss.server.address} of cluster '{cluster}' {when}"
        )

    def server_session_lost(self, ss: ServerSession, reason: Failure) -> None:
        """
        A server session's connection closed (called by the session manager).

        Idle and not pinned: forgotten; the next request gets a new one and
        the client notices nothing. Idle but pinned (transaction, lock,
        temporary table, cursor): the client's next command gets an error and
        the connection closes. Mid-request: the client gets an error now
        (when the protocol lets it) and the connection closes.
        """
        if self._producer is ss:
            self._producer = None
            if not self._closed:
                self.transport.unregisterProducer()
        for statement in self.statements.by_id.values():
            if statement.cursor_session is ss:
                statement.cursor_session = None
            if statement.long_data_session is ss:
                statement.long_data_session = None
        if self._closed:
            return
        self.stats.server_sessions_lost += 1
        self.manager.stats.server_sessions_lost += 1
        if ss is self.active:
            self.active = None
            if ss.passthrough is not None and self._answer is not None:
                # The client conversation goes back to where the client is.
                ss.passthrough = None
                self._answer.abandon()
            ss.sink = None
            if self._resend_lost(ss):
                return
            self._log.warn(
                "client session {cs_id}: {server} closed mid-request",
                cs_id=self.cs_id,
                server=ss.server.address,
            )
            survivable = self._survives_lost_request(ss)
            if self.conn.our_turn:
                try:
                    if survivable:
                        self.manager.stats.lost_requests_reported += 1
                        self._send(
                            self._lost_error(
                                ss,
                                "during the query; the statement may or may not have run "
                                "there (it is not sent again)",
                            )
                        )
                        # Outside a transaction the session goes on: the next request
                        # gets a new server session, synced as after an idle loss.
                        self._request_info = self._request_command = None
                        self._busy = False
                        if self.manager.drain is not None:
                            # The request ended here: a draining proxy may close the client.
                            self.manager.drain.request_finished(self)
                        self._process()
                        return
                    self._send(self._lost_error(ss, "during the query"))
                except ProtocolError:
                    self._log.debug("no error packet possible here")
            self.close()
            return
        if ss is self.bound:
            self.bound = None
            reasons = self.pin_reasons
            if reasons:
                self._doomed = (
                    f"Lost connection to server {ss.server.address} of cluster "
                    f"'{self.cluster.name if self.cluster else '?'}' while the session was pinned "
                    f"to it ({', '.join(sorted(reasons))}); the transaction or session state "
                    "there is gone"
                )
            self._lost_idle = True
            self._log.info(
                "client session {cs_id}: idle server session {ss_id} to {server} closed",
                cs_id=self.cs_id,
                ss_id=ss.ss_id,
                server=ss.server.address,
            )
        else:
            self.pool.remove(ss)

    # -- sending a request again (the rules: obproxy_tx.session.retry) -------------------

    def _request_facts(self, ss: ServerSession) -> RequestFacts | None:
        """
        What the retry rules need to know about the current request, or C{None}
        when it is neither a C{COM_QUERY} nor a C{COM_STMT_EXECUTE} (other
        commands are never sent again).
        """
        command = self._request_command
        info = self._request_info
        if command.__class__ is ComStmtExecute:
            statement = self._statement_for_server_id(ss, command.statement_id)
            if statement is None:
                return None
            return RequestFacts(
                # An execute that opens a cursor is tied to its server (fetches follow).
                kind="fetch" if int(command.flags) & _CURSOR_FLAGS else "execute",
                size=len(command.raw_parameters or b""),
                in_transaction=self._in_transaction,
                autocommit=ss.conn.autocommit,
                pinned=bool(self.pin_reasons),
                route_forced=self.route_addr is not None,
                sql=bytes(statement.sql),
            )
        if command is None or command.__class__ is not ComQuery or info is None:
            return None
        return RequestFacts(
            kind="query",
            size=len(command.query),
            in_transaction=self._in_transaction,
            autocommit=ss.conn.autocommit,
            pinned=bool(self.pin_reasons),
            route_forced=self.route_addr is not None or info.needs_last_session,
            load_data=classify_fully(command.query).kind is FullKind.LOAD_DATA,
            sql=command.query,
        )

    def _may_send_again(self, command: Any) -> bool:
        # One request goes out at most connect_observer_max_retries times in all.
        resent = self._resent
        count = resent[1] if resent is not None and resent[0] is command else 0
        if count + 1 >= self.manager.config.connect_observer_max_retries:
            return False
        self._resent = (command, count + 1)
        return True

    def _other_server(self, avoid: BackendServer) -> BackendServer | None:
        """
        The next server in turn that is not C{avoid}, or C{None} when the cluster
        has no other: a request is never sent again to the server that lost or
        refused it (one connection killed on a server by an admin is not retried
        there behind the admin's back).
        """
        cluster = self.cluster
        if cluster is None:
            return None
        for _ in range(len(cluster.servers)):
            server = self.manager.pick_server(cluster)
            if server.address != avoid.address:
                return server
        return None

    def _resend_lost(self, ss: ServerSession) -> bool:
        """
        The server session of the current request was lost: send the request
        again elsewhere when it is a plain read or a bare C{BEGIN} outside a
        transaction (L{may_resend_lost}) and nothing of its answer reached the
        client.

        @return: whether it was sent again (the request goes on).
        """
        config = self.manager.config
        facts = self._request_facts(ss)
        if (
            facts is None
            or not config.retry_lost_reads
            or not may_resend_lost(facts, config.tunnel_request_size_threshold)
            # Nothing of the answer went out: the client still waits for its first packet.
            or self.conn.phase is not Phase.RESULT_PENDING
            or self.conn._framer._next_seq != 1
        ):
            return False
        target = self._other_server(ss.server)
        if target is None or not self._may_send_again(self._request_command):
            return False
        self.manager.stats.lost_reads_resent += 1
        self._log.info(
            "client session {cs_id}: {server} closed during a request that changes nothing "
            "if run twice; sending it again to another server",
            cs_id=self.cs_id,
            server=ss.server.address,
        )
        self._run(self._send_again(ss, self._request_command, self._request_info, target))
        return True

    def _retry_refused(self, ss: ServerSession, answer: bytes) -> bool:
        """
        The whole answer to the current request is C{answer}, one ERR packet
        not yet written to the client: when its code means the server cannot
        serve now and did not run the statement, and the request may move
        (L{may_retry_refused}), send it to another server instead.

        @return: whether it was sent again (the ERR is dropped).
        """
        if (
            len(answer) < 7
            or answer[3] != 1
            or answer[4] != 0xFF
            or int.from_bytes(answer[:3], "little") != len(answer) - 4
        ):
            return False
        code = answer[5] | answer[6] << 8
        if self.cluster is not None:
            # A server that cannot serve now counts toward its congestion, as at login.
            self.manager.health.refused(self.cluster.name, ss.server.address, code, "")
        facts = self._request_facts(ss)
        command = self._request_command
        if facts is None or not may_retry_refused(
            facts, code, self.manager.config.tunnel_request_size_threshold
        ):
            return False
        target = self._other_server(ss.server)
        if target is None or not self._may_send_again(command):
            return False
        self.manager.stats.refused_requests_retried += 1
        self._log.info(
            "client session {cs_id}: {server} refused a request with {code} (cannot serve "
            "now); sending it to another server",
            cs_id=self.cs_id,
            server=ss.server.address,
            code=code,
        )
        self.active = None
        ss.sink = None
        ss.passthrough = None
        # The ERR never reaches the client, which still waits for the answer's first packet.
        self.conn._relayed(Phase.RESULT_PENDING, 1, -1, 0)
        ss.close(quit=True)
        self._run(self._send_again(ss, command, self._request_info, target))
        return True

    async def _send_again(
        self, old: ServerSession, command: Any, info: Any, server: BackendServer
    ) -> None:
        """
        Send the current request again, to C{server} (or the next one that can
        be connected): a C{COM_QUERY} as it is; a C{COM_STMT_EXECUTE} for the
        client's statement, prepared there first when that server never saw it.
        """
        statement = None
        if command.__class__ is ComStmtExecute:
            # The command holds the old server's statement id: find the client's statement.
            statement = self._statement_for_server_id(old, command.statement_id)
            if statement is None:
                raise _RequestFailedError(self._lost_error(old, "during the query"), close=True)
        ss = await self._acquire(server, failover=True)
        if statement is not None:
            server_id = await self._ensure_prepared(ss, statement)
            raw = command.raw_parameters or b""
            if statement.statement_id not in ss.typed and statement.param_types is not None:
                raw = with_bound_types(raw, statement.param_count, statement.param_types)
            ss.typed.add(statement.statement_id)
            command = ComStmtExecute(
                server_id, command.flags, command.iteration_count, (), True, raw
            )
        self._start(ss, command, info)

    def _survives_lost_request(self, ss: ServerSession) -> bool:
        """
        Whether the client session may go on after its server session was lost
        mid-request (with an error for this request): an autocommit statement
        outside any transaction that cannot have opened one or changed session
        state the proxy tracks. Otherwise the client is disconnected, as ODP does.
        """
        command = self._request_command
        if command is None or self._in_transaction or self.pin_reasons or not ss.conn.autocommit:
            return False
        if command.__class__ is ComStmtExecute:
            if int(command.flags) & _CURSOR_FLAGS:
                return False
            statement = self._statement_for_server_id(ss, command.statement_id)
            if statement is None:
                return False
            sql = bytes(statement.sql)
        elif command.__class__ is ComQuery:
            sql = command.query
        else:
            return False
        # The full classification (not the routing summary): only on this rare path.
        info = classify_fully(sql)
        return (
            info.kind in _SURVIVABLE_KINDS
            and not info.multi_statement
            and not info.pin_reasons
            and not info.user_var_assignments
            and not info.system_var_assignments
        )

    def _close_server_sessions(self, quit: bool = True, pool: bool = False) -> None:
        """
        Let go of every server session: close them, or with C{pool} hand the
        reusable ones to the shared pool (L{_poolable}).
        """
        sessions = self.server_sessions
        active = self.active
        self.active = self.bound = None
        self.pool.drain()
        if self._producer is not None:
            self._producer = None
            if not self._closed:
                self.transport.unregisterProducer()
        shared = self.manager.session_pool
        key = None
        if (
            pool
            and self.login is not None
            and self.cluster is not None
            and not self.pin_reasons
            and shared.enabled
        ):
            key = login_key(self.cluster.name, self._backend_login())
        database = self.state.database
        db_version = self.state.versions.db_name_version
        # COM_CHANGE_USER names the bare user (OceanBase: the tenant is the connection's).
        user = self.login.user if self.login is not None else None
        method = self.manager.config.session_pool_reset_command
        if method == "auto" and self.cluster is not None:
            method = (
                "change_user" if self.cluster.type is ClusterType.OCEANBASE else "reset_connection"
            )
        for ss in sessions:
            ss.sink = None
            if (
                key is not None
                and ss is not active
                and self._poolable(ss)
                and shared.release(
                    ss, key, database, ss.versions.db_name_version == db_version, user, method
                )
            ):
                continue
            if quit:
                ss.close(quit=True)
            else:
                # Gone without a word: at once, so the server counts the abort before it
                # serves anything the client's other connections send after it.
                ss.abort()

    def _poolable(self, ss: ServerSession) -> bool:
        """
        Whether C{ss} may serve another client once reset: idle, no
        transaction, no cursor, nothing a reset would drop behind the
        client's back. The client session's pins (transaction, locks,
        temporary tables, cursors, XA...) were checked by the caller: a pinned
        client's server sessions are all closed, as before. Multi-statements
        must be as the login set them (whether a reset restores them differs
        between servers).
        """
        conn = ss.conn
        response = ss.login_response
        return (
            ss.alive
            and ss.machine.is_idle
            and not conn.in_transaction
            and not int(conn.status_flags) & _CURSOR_EXISTS
            and response is not None
            and ss.multi_statements == bool(int(response.capabilities) & _MULTI_STATEMENTS)
        )

    def _attach(self, ss: ServerSession) -> None:
        """
        Make C{ss} the producer of the client's transport (a slow client
        pauses the server) and the client's transport the producer of C{ss}'s.
        """
        if self._producer is not ss:
            old = self._producer
            if old is not None:
                self.transport.unregisterProducer()
                if old.alive:
                    old.transport.resumeProducing()
            self.transport.registerProducer(_WritePauser(ss.transport, self), True)
            self._producer = ss
            if ss.transport.producer is None:
                if self._pauser is None:
                    self._pauser = _ReadPauser(self.transport)
                ss.transport.registerProducer(self._pauser, True)

    # -- routing ---------------------------------------------------------------------

    def _server_for(self, address: str) -> BackendServer:
        cluster = self.cluster
        assert cluster is not None
        for server in cluster.servers:
            if server.address == address:
                return server
        return parse_server(address)

    def _route(
        self, needs_last: bool = False, command: Any = None, info: Any = None
    ) -> BackendServer:
        bound = self.bound
        if self._doomed is not None:
            raise _RequestFailedError(_backend_lost_error(self._doomed), close=True)
        if bound is not None and (needs_last or self.pin_reasons):
            return bound.server
        if self.route_addr is not None:
            return self._server_for(self.route_addr)
        cluster = self.cluster
        if cluster is not None and cluster.replicas:
            # Read/write split: weak plain reads to a usable replica, the rest to a primary.
            return route_split(self, command, info)
        if bound is not None:
            return bound.server
        assert self.cluster is not None
        return self.manager.pick_server(self.cluster)

    # -- commands ---------------------------------------------------------------------

    def _command(self, command: Any) -> None:
        cls = command.__class__
        self.last_command_at = self.manager.reactor.seconds()
        self.stats.client_requests += 1
        if self._doomed is not None and cls is not ComQuit:
            self._send(_backend_lost_error(self._doomed))
            self.close()
            return
        if self._proxysys and cls not in _PROXYSYS_COMMANDS:
            self._admin_answer(BAD_INTERNAL_CMD)
            return
        if cls is ComQuery:
            self._query(command)
        elif cls is ComStmtExecute:
            self._execute(command)
        elif cls is ComPing:
            self._ok()
        elif cls is ComQuit:
            self.close()
        elif cls is ComStmtPrepare:
            self._forward(self._with_connection_id(command), None)
        elif cls is ComStmtClose:
            self._stmt_close(command)
        elif cls is ComStmtReset:
            self._stmt_reset(command)
        elif cls is ComStmtSendLongData:
            self._long_data(command)
        elif cls is ComStmtFetch:
            self._fetch(command)
        elif cls is ComResetConnection:
            self._reset_connection()
        elif cls is ComChangeUser:
            self._change_user(command)
        elif cls is ComProcessKill:
            self._query(ComQuery(b"KILL %d" % command.connection_id))
        elif cls is ComSetOption:
            self._forward(command, None)
        else:
            self._forward(command, None)

    def _quick_bound(self) -> ServerSession | None:
        """
        The server session a hot path may send the client's request to: the
        bound one, when it is in sync with the client, idle and relaying
        verbatim, and nothing about the client session (its login, a lost
        backend, a route, replicas, a proxysys login) calls for the general path.
        """
        bound = self.bound
        if (
            bound is None
            or bound is not self._relay_ss
            or bound._lost
            or self.login is None
            or self._proxysys
            or self._doomed is not None
            or self.route_addr is not None
            or self.cluster is None
            or self.cluster.replicas  # the read/write split decides (read_split.route)
            or bound.versions is not self.state.versions
            or bound.conn._phase is not Phase.COMMAND_IDLE
        ):
            return None
        return bound

    def _quick_start(
        self,
        bound: ServerSession,
        command: Any,
        info: Any,
        send: Callable[[Any, bytes], None],
        framed: bytes,
    ) -> None:
        """
        What L{_start} does for a request a hot path serves: make C{bound}
        active, send the request with C{send(command, framed)}, relay the
        answer verbatim.
        """
        state = self.state
        self.bound = None
        bound.machine.activate()
        self.active = bound
        self._busy = True
        self._request_info = info
        self._request_command = command
        self._request_failed = False
        self._request_database = state.database
        self._versions_before = state.versions
        bound.transact_count += 1
        if self._producer is not bound:
            self._attach(bound)
        if self._query_limit:
            self._watch_query(bound)
        send(command, framed)
        if self._relayer().start(bound.conn, self.conn):
            bound.passthrough = self._pass
        else:
            bound.sink = self._relay

    def _quick_query(self, command: ComQuery) -> bool:
        """
        The hot path of a plain C{COM_QUERY}: what L{_command}, L{_query},
        L{_forward} and L{_start} do for a statement that is no admin command,
        needs nothing special, and goes to the bound server session (see
        L{_quick_bound}). Everything is checked before anything changes.

        @return: C{False} when the general path is to serve the command (nothing was done).
        """
        bound = self._quick_bound()
        if bound is None or bound.multi_statements != self._multi_statements:
            return False
        query = command.query
        manager = self.manager
        if manager.registry.recognise(query) is not None:
            return False
        info = classify(query)
        if (
            info.connection_id_only
            or info.needs_last_session
            or info.route_addr is not None
            or (info.kind is StatementKind.SELECT and b"@" in query)
            or (info.system_var_assignments and sets_consistency(info))
        ):
            return False
        self.last_command_at = manager.reactor.seconds()
        stats = self.stats
        stats.client_requests += 1
        stats.client_queries += 1
        stats.server_requests += 1
        # The client's own bytes go on as they came (same payload, sequence id 0);
        # send_query frames the command itself when there are none.
        raw = self._raw_query
        self._quick_start(bound, command, info, bound.send_query, b"" if raw is None else raw)
        return True

    def _quick_execute(self, command: ComStmtExecute) -> bool:
        """
        The hot path of a C{COM_STMT_EXECUTE}: what L{_command}, L{_execute}
        and L{_start} do for an execute, without a cursor or long data, of a
        statement the bound server session (see L{_quick_bound}) has prepared
        (and, when the execute binds no types, already saw typed). The
        client's bytes go on as they came, with the server's statement id in
        place of the client's. Everything is checked before anything changes.

        @return: C{False} when the general path is to serve the command (nothing was done).
        """
        framed = self._raw_query
        if framed is None or int(command.flags) & _CURSOR_FLAGS:
            return False
        bound = self._quick_bound()
        statement = self.statements.get(command.statement_id)
        if (
            bound is None
            or statement is None
            or statement.cursor_session is not None
            or statement.long_data_session is not None
        ):
            return False
        client_id = statement.statement_id
        server_id = bound.statements.get(client_id)
        if server_id is None:
            return False
        raw = command.raw_parameters or b""
        param_count = statement.param_count
        types = param_types_of(raw, param_count) if param_count else None
        if types is None and param_count and client_id not in bound.typed:
            # The server never saw this statement's types: the general path adds them.
            return False
        self.last_command_at = self.manager.reactor.seconds()
        stats = self.stats
        stats.client_requests += 1
        stats.client_ps_executes += 1
        stats.server_requests += 1
        if types is not None:
            statement.param_types = types
            bound.typed.add(client_id)
        if server_id != command.statement_id:
            command = ComStmtExecute(
                server_id, command.flags, command.iteration_count, (), True, raw
            )
            framed = framed[:5] + server_id.to_bytes(4, "little") + framed[9:]
        self._quick_start(bound, command, None, bound.send_execute, framed)
        return True

    def _query(self, command: ComQuery) -> None:
        self.stats.client_queries += 1
        recognised = self.manager.registry.recognise(command.query)
        if recognised is not None and self._admin(recognised):
            return
        if self._proxysys:
            self._proxysys_statement(command)
            return
        query = command.query
        info = classify(query)
        if info.connection_id_only:
            self._answer_value(b"CONNECTION_ID()", self.cs_id)
            return
        if info.route_addr is not None and info.kind is StatementKind.SET:
            self._set_route_addr(info.route_addr)
            return
        if info.system_var_assignments and sets_consistency(info) and handle_set(self, query):
            return
        if info.kind is StatementKind.SELECT and b"@" in query and _SELECT_ROUTE_ADDR.match(query):
            self._answer_value(b"@obproxy_route_addr", self.route_addr or 0)
            return
        if info.needs_last_session:
            # Only texts with a dependent function (CONNECTION_ID() among them) pay for this.
            command = self._with_connection_id(command)
        self._forward(command, info)

    # -- admin commands -------------------------------------------------------------

    def _admin(self, recognised: Recognised) -> bool:
        """
        Serve a statement the registry recognised, if it is ours to serve.

        @return: C{False} when the statement is to go to the backend after
            all: a caller without the command's privilege whose C{denied} is
            C{None} (ODP forwards other users' text), or MySQL's own statement
            (C{proxy_only} false) that the command's grammar did not match.
        """
        command = recognised.command
        role = access.role_of(self)
        if role is access.Role.INSPECTOR and command.name != "PING PROXY":
            allowed = False
        else:
            allowed = command.privilege == Privilege.EVERYONE or role in (
                access.Role.PROXYSYS,
                access.Role.ROOT_SYS,
            )
        if not allowed:
            denied = getattr(command, "denied", None)
            if denied is None and not self.is_proxysys:
                return False
            self._admin_answer(denied or BAD_INTERNAL_CMD)
            return True
        if recognised.match is None:
            if not getattr(command, "proxy_only", True) and not self.is_proxysys:
                return False
            self._admin_answer(BAD_INTERNAL_CMD)
            return True
        self.stats.internal_requests += 1
        self._run(self._admin_run(recognised))
        return True

    async def _admin_run(self, recognised: Recognised) -> None:
        manager = self.manager
        context = AdminContext(self, manager, manager.config, manager.registry)
        try:
            result = await manager.registry.run(context, recognised)
        except Exception:
            self._log.failure(
                "client session {cs_id}: admin command {name} failed",
                cs_id=self.cs_id,
                name=recognised.command.name,
            )
            result = AdminError(
                ErrorCode.ER_UNKNOWN_ERROR,
                f"internal error in proxy command {recognised.command.name}",
            )
        self._admin_answer(result)

    def _admin_answer(self, result: Any) -> None:
        """
        Write an admin command's answer (closing the connection after it when
        the answer says so, as after killing one's own session).
        """
        if self._closed:
            return
        manager = self.manager
        manager.stats.admin_commands += 1
        if isinstance(result, AdminError):
            manager.stats.admin_commands_refused += 1
        try:
            packets = manager.registry.packets(result, self.conn.capabilities, self._status())
        except (TypeError, ValueError) as exc:
            self._log.error(
                "client session {cs_id}: bad admin answer: {error}", cs_id=self.cs_id, error=exc
            )
            packets = [ERRPacket(ErrorCode.ER_UNKNOWN_ERROR, "internal proxy error")]
            result = None
        self._write(self.conn.send_many(packets))
        if getattr(result, "close_after", False):
            self.close()

    def _proxysys_statement(self, command: ComQuery) -> None:
        """
        The local admin never reaches a backend: transaction and C{SET}
        statements get a bare OK (as ODP), anything else that is not an admin
        command 5010.
        """
        info = classify(command.query)
        if info.kind in _PROXYSYS_OK_KINDS:
            self._ok()
            return
        self._admin_answer(BAD_INTERNAL_CMD)

    def _with_connection_id(self, command: Any) -> Any:
        """
        C{command} (a C{COM_QUERY} or C{COM_STMT_PREPARE}) with every C{CONNECTION_ID()} call
        replaced by this client session's id, the one the client saw in the handshake: the
        backend would answer with its own connection id.
        """
        query = substitute_connection_id(command.query, self.cs_id)
        if query is command.query:
            return command
        return attrs.evolve(command, query=query)

    @staticmethod
    def _column(name: bytes, integer: bool) -> ColumnDefinition41:
        return ColumnDefinition41(
            schema=b"",
            table=b"",
            org_table=b"",
            name=name,
            org_name=b"",
            character_set=_BINARY_CHARSET if integer else 45,
            column_length=21 if integer else 1024,
            column_type=ColumnType.MYSQL_TYPE_LONGLONG
            if integer
            else ColumnType.MYSQL_TYPE_VAR_STRING,
            flags=ColumnFlag.BINARY_FLAG if integer else ColumnFlag(0),
            decimals=0,
        )

    def _answer_rows(
        self, columns: list[tuple[bytes, bool]], rows: Sequence[tuple[object, ...]]
    ) -> None:
        """
        Answer with a text result set built here (C{columns}: name, is-integer).
        """
        status = self._status()
        packets: list[Any] = [ColumnCount(len(columns))]
        packets.extend(self._column(name, integer) for name, integer in columns)
        packets.append(EOFPacket(status_flags=status))
        for row in rows:
            packets.append(
                TextRow(
                    tuple(
                        None if value is None else str(value).encode("utf-8", "surrogateescape")
                        for value in row
                    )
                )
            )
        packets.append(self.conn.end_of_rows(status))
        self._write(self.conn.send_many(packets))

    def _answer_value(self, name: bytes, value: object) -> None:
        self._answer_rows([(name, isinstance(value, int))], [(value,)])

    def _set_route_addr(self, text: str) -> None:
        try:
            self.route_addr = parse_route_addr(text)
        except ValueError as exc:
            self._error(ErrorCode.ER_WRONG_ARGUMENTS, str(exc))
            return
        self._ok()

    def _forward(self, command: Any, info: Any, server: BackendServer | None = None) -> None:
        """
        Relay C{command} to a server session (the fast path when the bound
        one is in sync, else an async acquire/sync first).
        """
        bound = self.bound
        needs_last = info is not None and info.needs_last_session
        if (
            server is None
            and bound is not None
            and bound.alive
            and self._doomed is None
            and (
                self.route_addr is None
                or needs_last
                or self.pin_reasons
                or bound.server.address == self.route_addr
            )
            and (bound.versions is self.state.versions or bound.versions == self.state.versions)
            and bound.multi_statements == self._multi_statements
            and not (self.cluster is not None and self.cluster.replicas)
        ):
            self.bound = None
            bound.machine.activate()
            self._start(bound, command, info)
            return
        self._run(self._forward_async(command, info, server, needs_last))

    async def _forward_async(
        self, command: Any, info: Any, server: BackendServer | None, needs_last: bool
    ) -> None:
        target = server if server is not None else self._route(needs_last, command, info)
        ss = await self._acquire(
            target, failover=server is None and self.route_addr is None and self.bound is None
        )
        self._start(ss, command, info)

    def _start(self, ss: ServerSession, command: Any, info: Any) -> None:
        self.active = ss
        self._busy = True
        self._request_info = info
        self._request_command = command
        self._request_failed = False
        self._request_database = self.state.database
        self._versions_before = self.state.versions
        ss.transact_count += 1
        self.stats.server_requests += 1
        self._attach(ss)
        if self._query_limit:
            self._watch_query(ss)
        ss.send(command)
        conn = ss.conn
        if conn.phase is Phase.COMMAND_IDLE:  # no answer (COM_STMT_SEND_LONG_DATA)
            self._finish_request(ss, bind=True)
            self._busy = False
        elif (self._relay_ss is ss or self._relay_compatible(ss)) and self._relayer().start(
            conn, self.conn
        ):
            ss.passthrough = self._pass
        else:
            ss.sink = self._relay

    def _relay_compatible(self, ss: ServerSession) -> bool:
        # Whether ss and the client negotiated the same packet formats (fixed
        # once both are logged in: remembered for the server session).
        if AnswerRelay.compatible(ss.conn, self.conn):
            self._relay_ss = ss
            return True
        return False

    def _relayer(self) -> AnswerRelay:
        relay = self._answer
        if relay is None:
            relay = self._answer = AnswerRelay(self._learn_ok)
        return relay

    def _pass(self, ss: ServerSession, data: bytes) -> None:
        """
        The hot path: the server's answer goes to the client as it comes, verbatim
        (L{AnswerRelay} reads only packet headers and the packets that end results).
        """
        relay = self._answer
        if ss is not self.active or relay is None:
            # The request was given up (the client went away); the session is closing.
            ss.passthrough = None
            return
        try:
            out = relay.feed(data)
        except RemoteProtocolError as exc:
            self._log.warn(
                "server {server} broke the protocol: {message}",
                server=ss.server.address,
                message=exc.message,
            )
            ss.abort()
            return
        answer = (out[0] if len(out) == 1 else b"".join(out)) if out else b""
        if relay.failed:
            self._request_failed = True
        leftover = relay.leftover
        if relay.done:
            ss.passthrough = None
            self._request_done(ss, answer)
            if leftover:
                # The server said more than the answer (an ERR before it closes):
                # the server session deals with it.
                ss.dataReceived(leftover)
            return
        self._write_relayed(answer)
        if leftover is not None:
            # LOCAL INFILE: both conversations carry on from the request, event by event.
            ss.passthrough = None
            ss.sink = self._relay
            ss.dataReceived(leftover)

    def _relay(self, ss: ServerSession, events: list[Any]) -> None:
        """
        The hot path: the server's answer goes to the client as it comes.
        """
        send = self.conn.send
        out = []
        for event in events:
            if event.__class__ is RowData:
                out.append(send(event))
                continue
            cls = event.__class__
            if cls is OKPacket:
                event = self._learn_ok(event)
            elif cls is ERRPacket:
                self._request_failed = True
            elif cls is StmtPrepareOK:
                event = self._prepared(ss, event)
            out.append(send(event))
        answer = (out[0] if len(out) == 1 else b"".join(out)) if out else b""
        if ss.conn.phase is Phase.COMMAND_IDLE:
            self._request_done(ss, answer)
        else:
            self._write_relayed(answer)

    def _learn_ok(self, ok: OKPacket) -> OKPacket:
        state = self.state
        if ok.last_insert_id:
            state.set_last_insert_id(ok.last_insert_id)
        if ok.session_state_changes:
            sys_vars = []
            for item in ok.session_state_items():
                if item.type == SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES:
                    name, value = item.system_variable()
                    text = name.decode("utf-8", "surrogateescape").lower()
                    reported = self._reported_sys_vars
                    if reported is None:
                        reported = self._reported_sys_vars = set()
                    reported.add(text)
                    if text == _GLOBAL_VARS_VERSION and value.isdigit():
                        self.global_vars_version = int(value)
                    if text not in _NOT_SYNCED and not text.startswith("_"):
                        sys_vars.append((text, value.decode("utf-8", "surrogateescape")))
                elif item.type == SessionTrackType.SESSION_TRACK_SCHEMA:
                    schema = item.schema().decode("utf-8", "surrogateescape")
                    state.set_database(schema or None)
            if sys_vars:
                state.set_sys_vars(sys_vars)
                self.follow_wait_timeout()
            if not self.conn.capabilities & Capability.CLIENT_SESSION_TRACK:
                return OKPacket(
                    ok.affected_rows,
                    ok.last_insert_id,
                    ServerStatus(ok.status_flags & ~ServerStatus.SERVER_SESSION_STATE_CHANGED),
                    ok.warnings,
                    ok.info,
                    None,
                    ok.header,
                )
        return ok

    def _prepared(self, ss: ServerSession, ok: StmtPrepareOK) -> StmtPrepareOK:
        command = self._request_command
        statement = self.statements.add(command.query, ok)
        ss.statements[statement.statement_id] = ok.statement_id
        return StmtPrepareOK(
            statement.statement_id, ok.num_columns, ok.num_params, ok.warnings, ok.metadata_follows
        )

    def _request_done(self, ss: ServerSession, answer: bytes) -> None:
        """
        The server's answer is complete: learn from it, bind the server
        session again, write the answer's last bytes, serve what is queued.
        The bytes go out after the bookkeeping, so that whatever the client
        does on seeing them finds the session idle again.
        """
        if self._request_failed and self._retry_refused(ss, answer):
            return
        self.active = None
        ss.sink = None
        command = self._request_command
        info = self._request_info
        self._request_info = self._request_command = None
        # Counted by command, timed, and the slow-query and audit logs (obproxy_tx.audit).
        self.manager.requests.finished(self, ss, command, self._request_failed)
        fetch = None
        if info is not None:
            fetch = self._after_statement(ss, info)
        elif command.__class__ is ComStmtExecute and ss.conn.cursor_exists:
            # The command holds the server's statement id, not the client's.
            statement = self._statement_for_server_id(ss, command.statement_id)
            if statement is not None:
                statement.cursor_session = ss
        elif command.__class__ is ComSetOption:
            self._multi_statements = command.option == 0
            ss.multi_statements = self._multi_statements
        self._finish_request(ss, bind=True)
        self._write_relayed(answer)
        if fetch is not None and ss.alive:
            self._run(self._read_back(ss, *fetch))
            return
        self._busy = False
        if self._events or self.conn.has_buffered():
            self._process()

    def _after_statement(self, ss: ServerSession, info: Any) -> tuple[list[str], list[str]] | None:
        if info.pin_reasons or info.pin_effects is not None or self.state.pin_reasons:
            self.state.apply_pins(
                info,
                not self._request_failed,
                self._request_database,
                ss.conn.in_transaction or not ss.conn.autocommit,
            )
        if info.user_var_values:
            self.state.set_user_vars(info.user_var_values)
        reported = self._reported_sys_vars
        self._reported_sys_vars = None
        if not info.system_var_assignments and not info.user_var_assignments:
            # The usual statement: nothing to read back.
            return None
        sys_names = [
            name
            for name, scope in info.system_var_assignments
            if scope != "global"
            and (reported is None or name not in reported)
            and name not in _NOT_SYNCED
        ]
        user_names = sorted(info.user_var_assignments)
        if not sys_names and not user_names:
            return None
        return sys_names, user_names

    def _finish_request(self, ss: ServerSession, bind: bool) -> None:
        # Per request only the time; the timeout is followed where sys vars change,
        # and the timer recomputes it when it fires (a reset lands there too).
        self._idle_since = self.manager.reactor.seconds()
        was_in_transaction = self._in_transaction
        self._in_transaction = ss.conn.in_transaction
        if was_in_transaction and not self._in_transaction:
            # trans_count counts explicit transactions: the spec's sessions that ran only
            # autocommit statements (the CLI's own startup SELECT included) show 0.
            self.trans_count += 1
            self.stats.transactions += 1
            self.state.transaction_ended()
        current = self.state.versions
        if current is not self._versions_before and (
            current.last_insert_id_version != self._versions_before.last_insert_id_version
        ):
            self.lii_session = ss
        if ss.versions is not current:
            after = ss.versions.after_statement(self._versions_before, current)
            # Keep the very object when in sync: the fast path compares identity.
            ss.versions = current if after == current else after
        self._versions_before = current
        if self.manager.drain is not None:
            self.manager.drain.request_finished(self)
        if ss._lost or ss.conn._phase is Phase.ERROR:  # not ss.alive, inline: per request
            return
        if bind:
            ss.machine.bind()
            self.bound = ss
        else:
            ss.machine.pool()
            self.pool.put(ss)

    async def _read_back(
        self, ss: ServerSession, sys_names: list[str], user_names: list[str]
    ) -> None:
        """
        Read back variables a statement set that the server did not report,
        so other server sessions can be synced.
        """
        refs = [f"@@SESSION.{name}" for name in sys_names] + [_user_var_ref(n) for n in user_names]
        ss.machine.activate()
        self.bound = None
        try:
            # Names come from the client's SQL, read with surrogateescape.
            select = ("SELECT " + ", ".join(refs)).encode("utf-8", "surrogateescape")
            answer = await ss.request(ComQuery(select))
        except ServerSessionLostError:
            return
        finally:
            if ss.alive:
                ss.machine.bind()
                self.bound = ss
        columns = [event for event in answer if event.__class__ is ColumnDefinition41]
        rows = [event for event in answer if event.__class__ is RowData]
        if not rows or len(columns) != len(refs):
            return
        values = decode_text_values(rows[0].payload, len(columns))
        before = self.state.versions
        count = len(sys_names)
        self.state.set_sys_vars(
            (name, raw.decode("utf-8", "surrogateescape") if raw is not None else "")
            for name, raw in zip(sys_names, values[:count])
        )
        self.state.set_user_vars(
            (name, _value_of(raw, column))
            for name, raw, column in zip(user_names, values[count:], columns[count:])
        )
        ss.versions = ss.versions.after_statement(before, self.state.versions)
        self.follow_wait_timeout()

    # -- prepared statements ------------------------------------------------------------

    def _unknown_statement(self, statement_id: int, where: str) -> None:
        self._error(
            ErrorCode.ER_UNKNOWN_STMT_HANDLER,
            f"Unknown prepared statement handler ({statement_id}) given to {where}",
        )

    def _execute(self, command: ComStmtExecute) -> None:
        self.stats.client_ps_executes += 1
        statement = self.statements.get(command.statement_id)
        if statement is None:
            self._unknown_statement(command.statement_id, "mysqld_stmt_execute")
            return
        raw = command.raw_parameters or b""
        types = param_types_of(raw, statement.param_count)
        if types is not None:
            statement.param_types = types
        statement.long_data_session = None
        bound = self.bound
        if (
            bound is not None
            and bound.alive
            and statement.statement_id in bound.statements
            and (
                types is not None
                or statement.statement_id in bound.typed
                or statement.param_count == 0
            )
            and self._doomed is None
            and (
                self.route_addr is None
                or self.pin_reasons
                or bound.server.address == self.route_addr
            )
            and bound.versions == self.state.versions
            and not (self.cluster is not None and self.cluster.replicas)
        ):
            self.bound = None
            bound.machine.activate()
            bound.typed.add(statement.statement_id)
            self._start(
                bound,
                ComStmtExecute(
                    bound.statements[statement.statement_id],
                    command.flags,
                    command.iteration_count,
                    (),
                    True,
                    raw,
                ),
                None,
            )
            return
        self._run(self._execute_async(command, statement))

    async def _ensure_prepared(self, ss: ServerSession, statement: Any) -> int:
        server_id = ss.statements.get(statement.statement_id)
        if server_id is not None:
            return server_id
        answer = await ss.request(ComStmtPrepare(statement.sql))
        first = answer[0] if answer else None
        if first.__class__ is not StmtPrepareOK:
            self._finish_request(ss, bind=True)
            raise _RequestFailedError(first if first.__class__ is ERRPacket else None)
        ss.statements[statement.statement_id] = first.statement_id
        ss.typed.discard(statement.statement_id)
        return int(first.statement_id)

    async def _execute_async(self, command: ComStmtExecute, statement: Any) -> None:
        target = (
            statement.cursor_session.server
            if statement.cursor_session is not None
            else self._route(command=command)
        )
        ss = await self._acquire(target, failover=self.route_addr is None and self.bound is None)
        server_id = await self._ensure_prepared(ss, statement)
        raw = command.raw_parameters or b""
        if statement.statement_id not in ss.typed and statement.param_types is not None:
            raw = with_bound_types(raw, statement.param_count, statement.param_types)
        ss.typed.add(statement.statement_id)
        self._start(
            ss,
            ComStmtExecute(server_id, command.flags, command.iteration_count, (), True, raw),
            None,
        )

    def _stmt_close(self, command: ComStmtClose) -> None:
        statement = self.statements.remove(command.statement_id)
        if statement is None:
            return
        for ss in self.server_sessions:
            server_id = ss.statements.pop(statement.statement_id, None)
            ss.typed.discard(statement.statement_id)
            if server_id is not None and ss.alive and ss is not self.active:
                ss.send(ComStmtClose(server_id))

    def _stmt_reset(self, command: ComStmtReset) -> None:
        statement = self.statements.get(command.statement_id)
        if statement is None:
            self._unknown_statement(command.statement_id, "mysqld_stmt_reset")
            return
        ss: Any = statement.cursor_session or statement.long_data_session or self.bound
        statement.cursor_session = statement.long_data_session = None
        if ss is None or not ss.alive or statement.statement_id not in ss.statements:
            self._ok()
            return
        if ss is self.bound:
            self.bound = None
        else:
            self.pool.remove(ss)
        ss.machine.activate()
        self._start(ss, ComStmtReset(ss.statements[statement.statement_id]), None)

    def _long_data(self, command: ComStmtSendLongData) -> None:
        statement = self.statements.get(command.statement_id)
        if statement is None:
            return  # no reply possible; the execute will fail
        self._run(self._long_data_async(command, statement))

    async def _long_data_async(self, command: ComStmtSendLongData, statement: Any) -> None:
        ss = statement.long_data_session
        target = ss.server if ss is not None else self._route()
        ss = await self._acquire(target)
        server_id = await self._ensure_prepared(ss, statement)
        statement.long_data_session = ss
        self._versions_before = self.state.versions
        ss.send(ComStmtSendLongData(server_id, command.param_id, command.data))
        self._finish_request(ss, bind=True)

    def _statement_for_server_id(self, ss: ServerSession, server_id: int) -> Any:
        """
        The client's prepared statement that C{ss} knows as C{server_id}, or C{None}.
        """
        for client_id, known_as in ss.statements.items():
            if known_as == server_id:
                return self.statements.get(client_id)
        return None

    def _fetch(self, command: ComStmtFetch) -> None:
        statement = self.statements.get(command.statement_id)
        if statement is None:
            self._unknown_statement(command.statement_id, "mysqld_stmt_fetch")
            return
        ss = statement.cursor_session
        if ss is None or not ss.alive or statement.statement_id not in ss.statements:
            self._error(
                ErrorCode.ER_UNKNOWN_STMT_HANDLER,
                f"The statement ({statement.statement_id}) has no open cursor",
            )
            return
        if ss is self.bound:
            self.bound = None
        else:
            self.pool.remove(ss)
        ss.machine.activate()
        self._start(ss, ComStmtFetch(ss.statements[statement.statement_id], command.num_rows), None)

    # -- session-wide commands ---------------------------------------------------------------

    def _reset_connection(self) -> None:
        self._close_server_sessions()
        self.statements.clear()
        self.state.reset(keep_database=True)
        self.read_consistency = None
        self._in_transaction = False
        self._multi_statements = bool(self.conn.capabilities & Capability.CLIENT_MULTI_STATEMENTS)
        self._send(OKPacket(status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT))

    def _change_user(self, command: ComChangeUser) -> None:
        plugin = command.auth_plugin_name or MYSQL_NATIVE_PASSWORD
        self._pending_change = command
        if plugin != MYSQL_NATIVE_PASSWORD:
            self._send(AuthSwitchRequest.for_scramble(MYSQL_NATIVE_PASSWORD, self._scramble))
            return
        self._changed(command.auth_response)

    def _changed(self, answer: bytes) -> None:
        command, self._pending_change = self._pending_change, None
        assert command is not None
        self._run(self._change_user_async(command, answer))

    async def _change_user_async(self, command: ComChangeUser, answer: bytes) -> None:
        # A refused COM_CHANGE_USER keeps the connection (MySQL clusters): guessing
        # passwords with it waits its turn as a login does (brute_force.py).
        blocked = await self.manager.login_throttle.before_login(self.peer)
        if blocked is not None:
            raise _RequestFailedError(blocked)
        try:
            login, cluster, stage1, verifier = await self._verify(command.username, answer)
        except _RequestFailedError as refused:
            # MariaDB/MySQL keep the connection (and the old user) after a
            # refused COM_CHANGE_USER; OceanBase closes it.
            current = self.cluster
            refused.close = current is None or current.type is ClusterType.OCEANBASE
            raise
        # A user who logs in over TLS only is refused here as at login (the old user kept).
        keep = self.cluster is not None and self.cluster.type is not ClusterType.OCEANBASE
        await self._refuse_plain_text(login, cluster, answer, close=not keep)
        refusal = self.manager.admit(self, login, cluster, changing=True)
        if refusal is not None:
            # The new user is at its cap (user_max_connections): refused like a
            # wrong password, the old user kept where the server would keep it.
            current = self.cluster
            raise _RequestFailedError(
                refusal, close=current is None or current.type is ClusterType.OCEANBASE
            )
        self._close_server_sessions()
        self.statements.clear()
        self.state.reset(keep_database=False)
        self._in_transaction = False
        self.route_addr = None
        self.read_consistency = None
        self.login, self.cluster = login, cluster
        self._stage1, self._verifier = stage1, verifier
        self._client_answer = answer
        if self._response is not None:
            # Later logins (and ODP's replayed ones) are the new user's.
            self._response = attrs.evolve(
                self._response,
                username=command.username,
                auth_response=answer,
                database=command.database,
                character_set=command.character_set or self._response.character_set,
                connect_attrs=(
                    command.connect_attrs
                    if command.connect_attrs is not None
                    else self._response.connect_attrs
                ),
            )
        if command.database:
            self.state.set_database(command.database)
        try:
            ss = await self._acquire(self.manager.pick_server(cluster), failover=True)
        except _RequestFailedError as refused:
            # The server refused the new user (ODP mode checks there): the old
            # server sessions are gone, so the connection cannot go on.
            refused.close = True
            raise
        self._finish_request(ss, bind=True)
        self._send(OKPacket(status_flags=self._status()))
