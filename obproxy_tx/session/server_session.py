"""
L{ServerSession}: one proxy connection to one backend server, on behalf of
one client session.

A server session is a Twisted protocol driving a sans-IO
L{ClientConnection}: it reads the server's greeting, logs in for its client
(answering the server's own scramble from the SHA1(password) the client
session recovered, see C{docs/proxy.md}), and then carries commands.

Two ways to log in: the I{verifier} way above (the default), or ODP's
I{replayed} login (C{login_mode: odp_proxy_scramble}): L{BackendLogin.replay}
builds the login from the server's greeting with
L{obproxy_tx.session.odp_login.rewrite_handshake_response}, carrying the
client's own answer to the proxy's scramble and C{__proxy_scramble}.

Two modes after login:

  - I{relaying}: L{sink} is set (by the client session) and every event the
    server sends goes straight to it; this is the hot path (rows stay
    undecoded L{RowData});
  - I{internal}: L{request} sends a packet of the proxy's own (a sync
    statement, a re-prepare, a read-back of variables), collects the answer
    and fires a Deferred with its events; the client never sees them.

Its C{MSS_*} state lives in L{machine}; the client session moves it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.python.failure import Failure

from obproxy_tx.config import BackendServer
from obproxy_tx.logs import Logger
from obproxy_tx.session.fastwrite import no_delay, write_now
from obproxy_tx.session.states import ServerSessionMachine
from obproxy_tx.session.sync import SessionVarVersions
from obproxy_tx.tls import ServerTLSError, describe_failure
from obproxy_tx.wire.connection import ClientConnection, Phase
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.errors import ErrorCode, ProtocolError, RemoteProtocolError
from obproxy_tx.wire.packets import (
    AuthSwitchRequest,
    AuthSwitchResponse,
    ComQuit,
    ComStmtClose,
    ComStmtSendLongData,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
    SSLRequest,
)
from obproxy_tx.wire.scramble import native_password_response_from_stage1

__all__ = [
    "BackendError",
    "BackendLogin",
    "ReplayBuilder",
    "ServerSession",
    "ServerSessionLostError",
    "connect_session",
]

MYSQL_NATIVE_PASSWORD = "mysql_native_password"


class BackendError(Exception):
    """
    The server refused something with an ERR packet the client should see.

    @ivar packet: the server's ERR packet.
    """

    def __init__(self, packet: ERRPacket) -> None:
        """
        @param packet: the server's ERR packet.
        """
        super().__init__(f"{packet.error_code} ({packet.sqlstate}): {packet.message}")
        self.packet = packet


class ServerSessionLostError(Exception):
    """
    The connection to the server closed while the proxy waited for it.
    """


#: Builds a replayed login from the server's greeting, the capabilities the
#: server session asks for and its C{ss_id} (see L{BackendLogin.replay}).
ReplayBuilder = Callable[[HandshakeV10, Capability, int], HandshakeResponse41]


class BackendLogin:
    """
    What a server session needs to log in for its client.

    @ivar username: the user name to send (C{user@tenant} for OceanBase,
        C{user} for MySQL clusters).
    @ivar stage1: SHA1(password) recovered from the client (C{b""}: empty password).
    @ivar verifier: SHA1(stage1).
    @ivar capabilities: what to ask the server for.
    @ivar character_set: the client's collation id.
    @ivar database: the database to start in, or C{None}.
    @ivar connect_attrs: connection attributes to send, or C{None}.
    @ivar max_packet_size: the largest packet the client accepts.
    @ivar replay: for ODP's replayed login, builds the login packet from the
        server's greeting, the capabilities to ask for and the C{ss_id}
        (C{stage1} and C{verifier} are then unused and an auth switch cannot
        be answered); C{None}: the verifier way.
    """

    __slots__ = (
        "capabilities",
        "character_set",
        "connect_attrs",
        "database",
        "max_packet_size",
        "replay",
        "stage1",
        "username",
        "verifier",
    )

    def __init__(
        self,
        username: str,
        stage1: bytes,
        verifier: bytes,
        capabilities: Capability,
        character_set: int,
        database: str | None = None,
        connect_attrs: dict[str, str] | None = None,
        max_packet_size: int = 1 << 30,
        replay: ReplayBuilder | None = None,
    ) -> None:
        """
        See the class's instance variables.
        """
        self.username = username
        self.stage1 = stage1
        self.verifier = verifier
        self.capabilities = capabilities
        self.character_set = character_set
        self.database = database
        self.connect_attrs = connect_attrs
        self.max_packet_size = max_packet_size
        self.replay = replay


class ServerSession(Protocol):
    """
    One connection to a backend server for one client session.

    @ivar ss_id: the proxy-wide server session id (ODP's C{ss_id}).
    @ivar server: the backend server.
    @ivar key: the pool key: (server address, full login name).
    @ivar conn: the sans-IO client-side conversation.
    @ivar machine: the C{MSS_*} state.
    @ivar greeting: the server's handshake (C{None} before it arrived).
    @ivar backend_id: the connection id the server gave this session.
    @ivar transact_count: requests relayed on this session (ODP's C{transact_count}).
    @ivar versions: how up to date this session is with its client session.
    @ivar statements: client statement id -> this server's statement id.
    @ivar typed: client statement ids whose parameter types this server saw.
    @ivar sink: while relaying, where the server's events go.
    @ivar passthrough: while relaying an answer verbatim
        (L{obproxy_tx.wire.relay.AnswerRelay}), where the server's bytes go,
        undecoded; it takes precedence over L{sink}.
    @ivar logged_in: fires with this session once logged in, or fails with
        L{BackendError} / L{ServerSessionLostError}.
    @ivar multi_statements: whether multi-statements are on for this session.
    @ivar login_response: the login packet sent to the server.
    @ivar login_ok: the server's OK to the login (its session-track data).
    """

    # The proxy holds one per client (and more in pools): attributes in slots
    # rather than a per-instance dict.
    __slots__ = (
        "_collected",
        "_internal",
        "_lost",
        "_on_lost",
        "backend_id",
        "conn",
        "greeting",
        "key",
        "logged_in",
        "login",
        "login_ok",
        "login_response",
        "machine",
        "multi_statements",
        "passthrough",
        "server",
        "sink",
        "slot",
        "ss_id",
        "statements",
        "tls",
        "tls_identity",
        "transact_count",
        "typed",
        "versions",
    )

    _log = Logger()
    transport: Any

    def __init__(
        self,
        ss_id: int,
        server: BackendServer,
        full_name: str,
        login: BackendLogin,
        on_lost: Callable[[ServerSession, Failure], None] | None = None,
    ) -> None:
        """
        @param ss_id: the server session id.
        @param server: the server connected to.
        @param full_name: the client's full login name (the pool key's user part).
        @param login: how to log in.
        @param on_lost: called once when the connection is gone.
        """
        self.ss_id = ss_id
        self.server = server
        self.key = (server.address, full_name)
        self.login = login
        self.conn = ClientConnection(login.capabilities)
        self.machine = ServerSessionMachine(f"server session {ss_id}")
        self.greeting: HandshakeV10 | None = None
        self.backend_id = 0
        self.transact_count = 0
        self.versions = SessionVarVersions()
        self.statements: dict[int, int] = {}
        self.typed: set[int] = set()
        self.sink: Callable[[ServerSession, list[Any]], None] | None = None
        self.passthrough: Callable[[ServerSession, bytes], None] | None = None
        self.logged_in: defer.Deferred[ServerSession] = defer.Deferred()
        self.multi_statements = bool(login.capabilities & Capability.CLIENT_MULTI_STATEMENTS)
        self.login_response: HandshakeResponse41 | None = None
        self.login_ok: OKPacket | None = None
        self._on_lost = on_lost
        self._internal: defer.Deferred[list[Any]] | None = None
        self._collected: list[Any] = []
        self._lost = False
        # Its place under server_max_connections (obproxy_tx.session.limits),
        # given back when the connection ends.
        self.slot: Any = None
        # enable_server_ssl: the client-role TLS options (obproxy_tx.tls) and the name the
        # server's certificate must carry, set before connecting; None: plain text.
        self.tls: Any = None
        self.tls_identity: str | None = None

    def __repr__(self) -> str:
        return (
            f"<ServerSession {self.ss_id} {self.server.address} backend_id={self.backend_id} "
            f"{self.machine.state.name}>"
        )

    @property
    def alive(self) -> bool:
        """
        Whether the connection is still up and usable.
        """
        return not self._lost and self.conn.phase is not Phase.ERROR

    # -- Twisted ---------------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        """
        Commands go out as they are made: no Nagle delay behind a previous one.
        """
        no_delay(self.transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """
        Feed the server's bytes to the conversation; hand the events to the
        relaying client session, or handle them here (login, internal requests).
        """
        passthrough = self.passthrough
        if passthrough is not None:
            passthrough(self, data)
            return
        if self.conn.phase is Phase.ERROR:
            # Broken (the server broke the protocol, or a packet could not be
            # sent): the connection is being aborted; what still arrives
            # means nothing, and the conversation would refuse it.
            return
        try:
            events = self.conn.receive_data(data)
        except RemoteProtocolError as exc:
            self._log.warn(
                "server {server} broke the protocol: {message}",
                server=self.server.address,
                message=exc.message,
            )
            self.abort()
            return
        if not events:
            return
        sink = self.sink
        if sink is not None:
            sink(self, events)
        else:
            self._own_events(events)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: N802,B008
        """
        Close the state machine, fail whatever waits, tell the client session.
        """
        if self._lost:
            return
        self._lost = True
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()
        self.machine.close()
        lost = Failure(ServerSessionLostError(f"connection to {self.server.address} lost"))
        if not self.logged_in.called:
            if self.conn.tls:
                # The TLS handshake failed (untrusted certificate, wrong name): say so.
                why = describe_failure(reason, self.server.address, self.tls_identity)
                if why is not None:
                    lost = Failure(ServerTLSError(why))
            self.logged_in.errback(lost)
        waiting, self._internal = self._internal, None
        if waiting is not None:
            waiting.errback(lost)
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost(self, reason)

    # -- login -------------------------------------------------------------------

    def _own_events(self, events: list[Any]) -> None:
        if self._internal is not None:
            # The phase is the one after the whole batch: the answer is
            # complete when the conversation is idle again.
            self._collected.extend(events)
            if self.conn.phase is Phase.COMMAND_IDLE:
                waiting, self._internal = self._internal, None
                collected, self._collected = self._collected, []
                waiting.callback(collected)
            return
        for event in events:
            cls = event.__class__
            if cls is HandshakeV10:
                self._greeted(event)
            elif cls is AuthSwitchRequest:
                self._auth_switch(event)
            elif cls is OKPacket and not self.logged_in.called:
                self.login_ok = event
                self.logged_in.callback(self)
            elif cls is ERRPacket:
                if not self.logged_in.called:
                    self.logged_in.errback(BackendError(event))
                else:
                    self._log.info(
                        "server {server} said {code} {message} while idle",
                        server=self.server.address,
                        code=event.error_code,
                        message=event.message,
                    )
                self.abort()
            else:
                self._log.warn(
                    "unexpected {event!r} from {server}", event=event, server=self.server.address
                )
                self.abort()

    def _greeted(self, greeting: HandshakeV10) -> None:
        self.greeting = greeting
        self.backend_id = greeting.connection_id
        login = self.login
        wanted = login.capabilities | Capability.CLIENT_SESSION_TRACK
        if login.database:
            wanted |= Capability.CLIENT_CONNECT_WITH_DB
        else:
            wanted &= ~Capability.CLIENT_CONNECT_WITH_DB
        if login.connect_attrs is None:
            wanted &= ~Capability.CLIENT_CONNECT_ATTRS
        wanted &= greeting.capabilities
        if self.tls is not None:
            if not self._start_tls(greeting, wanted):
                return
            wanted |= Capability.CLIENT_SSL
        else:
            wanted &= ~Capability.CLIENT_SSL
        if login.replay is not None:
            try:
                response = login.replay(greeting, Capability(wanted), self.ss_id)
            except Exception as exc:
                self._log.failure("building the replayed login for {server}", server=self.server)
                self.logged_in.errback(
                    BackendError(
                        ERRPacket(
                            ErrorCode.ER_HANDSHAKE_ERROR,
                            f"Cannot log in to server {self.server.address}: {exc}",
                            "08S01",
                        )
                    )
                )
                self.abort()
                return
            self._send_login(response)
            return
        response = HandshakeResponse41(
            capabilities=Capability(wanted),
            max_packet_size=login.max_packet_size,
            character_set=login.character_set or greeting.character_set,
            username=login.username,
            auth_response=native_password_response_from_stage1(
                login.stage1, login.verifier, greeting.auth_plugin_data
            ),
            database=login.database,
            auth_plugin_name=MYSQL_NATIVE_PASSWORD,
            connect_attrs=login.connect_attrs,
        )
        self._send_login(response)

    def _start_tls(self, greeting: HandshakeV10, wanted: int) -> bool:
        """
        Ask for TLS (an C{SSLRequest}) and start it; the login follows encrypted.

        @return: whether TLS started; if not (the server does not offer it), the
            login failed with L{ServerTLSError}: never plain text instead.
        """
        if not greeting.capabilities & Capability.CLIENT_SSL:
            self.logged_in.errback(
                ServerTLSError(
                    f"SSL connection error: server {self.server.address} does not offer TLS "
                    "(enable_server_ssl is on)"
                )
            )
            self.abort()
            return False
        request = SSLRequest(
            Capability(wanted | Capability.CLIENT_SSL),
            self.login.max_packet_size,
            self.login.character_set or greeting.character_set,
        )
        self.transport.write(self.conn.send(request))
        self.transport.startTLS(self.tls)
        self.conn.tls_started()
        return True

    def _send_login(self, response: HandshakeResponse41) -> None:
        self.login_response = response
        self.multi_statements = bool(response.capabilities & Capability.CLIENT_MULTI_STATEMENTS)
        self.transport.write(self.conn.send(response))

    def _auth_switch(self, request: AuthSwitchRequest) -> None:
        if self.login.replay is not None:
            # The client answered the proxy's scramble only: a replayed
            # login cannot answer another scramble or plugin.
            self.logged_in.errback(
                BackendError(
                    ERRPacket(
                        ErrorCode.ER_NOT_SUPPORTED_AUTH_MODE,
                        f"Server {self.server.address} asks to switch to "
                        f"{request.plugin_name}, which a replayed (odp_proxy_scramble) login "
                        "cannot answer",
                        "08004",
                    )
                )
            )
            self.abort()
            return
        if request.plugin_name != MYSQL_NATIVE_PASSWORD:
            self.logged_in.errback(
                BackendError(
                    ERRPacket(
                        ErrorCode.ER_NOT_SUPPORTED_AUTH_MODE,
                        f"Server {self.server.address} asks for authentication plugin "
                        f"{request.plugin_name}; the proxy logs in with mysql_native_password only",
                        "08004",
                    )
                )
            )
            self.abort()
            return
        answer = native_password_response_from_stage1(
            self.login.stage1, self.login.verifier, request.scramble
        )
        self.transport.write(self.conn.send(AuthSwitchResponse(answer)))

    # -- commands ----------------------------------------------------------------

    def send(self, packet: Any) -> None:
        """
        Send a command (or LOCAL INFILE data) for the relaying client session.
        """
        write_now(self.transport, self.conn.send(packet))

    def send_query(self, command: Any, framed: bytes) -> None:
        """
        Send a C{COM_QUERY} whose framed bytes the client sent (see
        L{ClientConnection.send_query}).
        """
        write_now(self.transport, self.conn.send_query(command, framed))

    def send_execute(self, command: Any, framed: bytes) -> None:
        """
        Send a C{COM_STMT_EXECUTE} whose framed bytes the client sent, with
        this server's statement id (see L{ClientConnection.send_execute}).
        """
        write_now(self.transport, self.conn.send_execute(command, framed))

    def request(self, packet: Any) -> defer.Deferred[list[Any]]:
        """
        Send an internal command and collect its whole answer.

        @param packet: the command.
        @return: fires with the answer's events (C{[]} for commands without
            one), or fails with L{ServerSessionLostError}.
        """
        if not self.alive:
            return defer.fail(ServerSessionLostError(f"connection to {self.server.address} lost"))
        self.transport.write(self.conn.send(packet))
        if packet.__class__ in (ComStmtClose, ComStmtSendLongData):
            return defer.succeed([])
        waiting: defer.Deferred[list[Any]] = defer.Deferred()
        self._internal = waiting
        self._collected = []
        return waiting

    def abort(self) -> None:
        """
        Drop the connection now.
        """
        transport = self.transport
        if transport is not None and not self._lost:
            transport.abortConnection()

    def close(self, quit: bool = False) -> None:
        """
        Close the connection.

        @param quit: say C{COM_QUIT} first when the session is idle, so the server sees a
            normal disconnect; without it the server counts an aborted client
            (C{Aborted_clients}), as for a client that went away without a word.
        """
        transport = self.transport
        if transport is not None and not self._lost:
            if quit and self.conn.phase is Phase.COMMAND_IDLE:
                with contextlib.suppress(ProtocolError):
                    transport.write(self.conn.send(ComQuit()))
            _let_go_of_producer(transport)
            transport.loseConnection()


def _let_go_of_producer(transport: Any) -> None:
    """
    Unregister the producer of C{transport} (a client's transport, paused
    and resumed with this connection's buffer) before closing it: Twisted's
    C{loseConnection} waits for a registered producer. A TLS transport does
    not close at all while one is registered, and a TCP one whose producer
    is paused resumes it instead of closing once its buffer has drained; the
    connection, and its slot under C{server_max_connections}, would stay.
    """
    if (
        getattr(transport, "producer", None) is not None
        or getattr(transport, "_producer", None) is not None
    ):
        transport.unregisterProducer()


class _OneSession(Factory):
    """
    Builds the one server session it was made for.

    Twisted's C{connectProtocol} does the same by defining a factory I{class}
    per call, which the connection keeps alive: about 2 KiB per server
    session (measured with C{bench/idle_memory.py --trace}). Not noisy: a
    "Starting factory" line per backend connection is no news.
    """

    noisy = False

    def __init__(self, session: ServerSession) -> None:
        self.session = session

    def buildProtocol(self, addr: Any) -> ServerSession:  # noqa: N802
        return self.session


class _DirectSession(ClientFactory):
    """
    Connects one server session with C{reactor.connectTCP}: the session is the
    transport's protocol, without the endpoint's wrapping protocol (one call
    less per read from the server) and its factories and Deferreds (about
    0.5 KiB per server session).
    """

    noisy = False

    def __init__(self, session: ServerSession) -> None:
        self.session = session
        self.connector: Any = None
        self.connected: defer.Deferred[ServerSession] | None = defer.Deferred(self._cancel)

    def _cancel(self, connecting: defer.Deferred[ServerSession]) -> None:
        if self.connector is not None:
            self.connector.stopConnecting()

    def buildProtocol(self, addr: Any) -> ServerSession:  # noqa: N802
        connected, self.connected = self.connected, None
        if connected is not None and not connected.called:
            connected.callback(self.session)
        return self.session

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        connected, self.connected = self.connected, None
        if connected is not None and not connected.called:
            connected.errback(reason)


#: How long connectTCP itself waits (the caller's own timeout is shorter).
_CONNECT_TIMEOUT = 120


def connect_session(
    reactor: Any, server: BackendServer, session: ServerSession
) -> defer.Deferred[ServerSession]:
    """
    Connect C{session} to C{server}: straight with C{reactor.connectTCP} when
    the server is a plain C{tcp:host=IPv4:port=N} endpoint, else through its
    Twisted client endpoint (C{connectProtocol}, without its per-call class).

    @param reactor: the reactor.
    @param server: the server.
    @param session: the server session to connect.
    @return: fires with the session once connected, or fails with the
        connection error; cancelling it stops the attempt.
    """
    host, port = server.host, server.port
    if (
        host is not None
        and port is not None
        and isIPAddress(host)
        and server.endpoint == f"tcp:host={host}:port={port}"
    ):
        factory = _DirectSession(session)
        connected = factory.connected
        assert connected is not None
        factory.connector = reactor.connectTCP(host, port, factory, timeout=_CONNECT_TIMEOUT)
        return connected
    endpoint = clientFromString(reactor, server.endpoint)
    return endpoint.connect(_OneSession(session))
