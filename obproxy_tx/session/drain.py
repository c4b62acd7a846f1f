"""
Graceful drain: how a stopping proxy lets its clients finish.

When the proxy stops (C{SIGTERM} or C{SIGINT} under C{twistd}, or
L{SessionManager.stopService<obproxy_tx.session.manager.SessionManager.stopService>}
when embedded), its listener closes first (new connections are refused), and
then the session manager drains instead of dropping every client at once:

  - a client session that is idle outside a transaction is closed at once,
    with MariaDB's shutdown message (an unsolicited C{ERR 1053 "Server
    shutdown in progress"} with sequence id 0, which client libraries read on
    their next command) before the connection closes;
  - one running a statement, or with a transaction open, is left alone: as
    soon as a request ends (L{Drain.request_finished}, called where the
    session finishes a request) and it is idle outside a transaction, it is
    closed the same way, so a transaction's C{COMMIT} is answered and only
    then the connection goes;
  - at the deadline (C{graceful_shutdown_timeout} after the start, or at
    once on a second stop signal, L{Drain.hurry}) every
    statement still running is stopped on its server (C{KILL QUERY} on a
    side connection, as C{KILL QUERY} through the proxy does), and every
    remaining session is closed; an open transaction is rolled back by its
    server when the server session quits.

The decision is L{decide}, a pure function of what a session is doing
(L{SessionView}); L{Drain} is the thin Twisted adapter that looks at the
sessions, acts, and tells when none is left.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from obproxy_tx.config import ITEMS
from obproxy_tx.logs import Logger
from obproxy_tx.wire.connection import Phase
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.packets import ERRPacket

_module_log = Logger(namespace="obproxy_tx.session.drain")

__all__ = [
    "ER_SERVER_SHUTDOWN",
    "SHUTDOWN_MESSAGE",
    "Drain",
    "DrainStep",
    "DrainTally",
    "SessionView",
    "decide",
    "shutdown_error",
    "view_of",
]

ER_SERVER_SHUTDOWN = 1053
"""MySQL's and MariaDB's C{ER_SERVER_SHUTDOWN}."""

SHUTDOWN_MESSAGE = "Server shutdown in progress"
"""Its message, as the servers word it."""

_SHUTDOWN_SQLSTATE = "08S01"
"""Its SQLSTATE: a communication link failure (the connection is going)."""

SWEEP_INTERVAL = 0.1
"""Seconds between two looks at whether any client session is left (a count,
so the process exits soon after the last one closed)."""

FULL_SWEEP_EVERY = 10
"""Every this many of those looks, every remaining session is looked at too:
what no request end reports (a session still logging in, one whose server
session died) is found this way. Only sessions still waited for remain, so
this costs little, but it is not done every tick: thousands of sessions in
long transactions would make it a busy loop."""

KILL_WAIT = 2.0
"""Seconds the deadline waits for its C{KILL QUERY}s before closing anyway."""

CLOSE_WAIT = 2.0
"""Seconds closed sessions have to flush their last bytes before their
connections are aborted (a client that stopped reading would hold a close
forever)."""


def _seconds(seconds: float) -> str:
    """A duration as the config item shows it (C{30s}, C{500ms})."""
    return str(ITEMS["graceful_shutdown_timeout"].render(seconds))


class DrainStep(enum.Enum):
    """
    What the drain does with one client session now.
    """

    WAIT = "wait"
    """A statement runs or a transaction is open: let it finish."""
    CLOSE = "close"
    """Nothing to finish: close the session."""


@attrs.frozen
class SessionView:
    """
    What the drain needs to know about a client session.

    @ivar logged_in: the client completed its login.
    @ivar idle: it is the client's turn: no request is being served and none
        is waiting to be.
    @ivar in_transaction: the session's last answer left a transaction open.
    """

    logged_in: bool
    idle: bool
    in_transaction: bool


def decide(view: SessionView, past_deadline: bool) -> DrainStep:
    """
    Whether a client session is closed now or left to finish.

    A session still logging in holds nothing worth waiting for (its client
    would be closed right after the login anyway); a logged-in one is waited
    for while a request runs or a transaction is open, until the deadline.

    @param view: what the session is doing.
    @param past_deadline: C{graceful_shutdown_timeout} has passed.
    @return: the step.
    """
    if past_deadline or not view.logged_in:
        return DrainStep.CLOSE
    if view.idle and not view.in_transaction:
        return DrainStep.CLOSE
    return DrainStep.WAIT


def view_of(session: Any) -> SessionView:
    """
    The L{SessionView} of a L{ClientSession<obproxy_tx.session.client_session.ClientSession>}.

    Idle means the conversation with the client waits for its next command
    (any other phase: a command is being answered, or the login is not
    done), no server session serves a request, and no pipelined command
    waits to be read. In a transaction means the last answer left one open
    and a server session of the client is still alive to finish it.
    """
    conn = session.conn
    logged_in = session.login is not None and conn.phase not in _LOGIN_PHASES
    idle = conn.phase is Phase.COMMAND_IDLE and session.active is None and not conn.has_buffered()
    # A transaction whose server session is gone is over (its server rolled it back):
    # nothing to wait for; the client learns it on its next command, or from the close.
    in_transaction = "transaction" in session.pin_reasons and any(
        ss.alive for ss in session.server_sessions
    )
    return SessionView(logged_in=logged_in, idle=idle, in_transaction=in_transaction)


_LOGIN_PHASES = frozenset(
    (
        Phase.CONNECT,
        Phase.HANDSHAKE_SENT,
        Phase.SSL_REQUESTED,
        Phase.TLS_ESTABLISHED,
        Phase.AUTHENTICATING,
        Phase.AUTH_SWITCH_SENT,
        Phase.AUTH_MORE_DATA,
    )
)


def write_last_error(session: Any, error: Callable[[int], bytes]) -> None:
    """
    Tell a client session why it is about to be closed: write C{error(its
    capabilities)} (a framed ERR) straight to its transport, but only where
    it cannot cut into an answer (the conversation is idle) and not through
    the compressed protocol, whose framing this raw packet lacks.

    @param session: the client session (closed by the caller afterwards).
    @param error: makes the framed ERR for the client's capabilities.
    """
    conn = session.conn
    transport = session.transport
    if (
        transport is None
        or conn.phase is not Phase.COMMAND_IDLE
        or getattr(conn, "compression", None) is not None
    ):
        return
    try:
        transport.write(error(int(conn.capabilities)))
    except Exception:  # noqa: BLE001 (the close that follows matters more)
        _module_log.debug("no last error for client session {cs_id}", cs_id=session.cs_id)


def shutdown_error(capabilities: int = Capability.CLIENT_PROTOCOL_41) -> bytes:
    """
    The framed C{ERR 1053 "Server shutdown in progress"} a server sends a
    client it disconnects at shutdown: sequence id 0, outside any command.
    Client libraries read it on their next command (PyMySQL and
    Connector/Python report it as a lost connection, C{2013}).

    @param capabilities: the capabilities agreed with the client (for the
        SQLSTATE marker).
    @return: the packet with its header.
    """
    payload = ERRPacket(ER_SERVER_SHUTDOWN, SHUTDOWN_MESSAGE, _SHUTDOWN_SQLSTATE).encode(
        Capability(capabilities)
    )
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


@attrs.define
class DrainTally:
    """
    What a drain did, for its log line and for tests.

    @ivar sessions_at_start: client sessions when it started.
    @ivar closed_idle: sessions closed because they were (or became) idle
        outside a transaction before the deadline.
    @ivar closed_at_deadline: sessions still busy or in a transaction at the
        deadline, closed then.
    @ivar statements_killed: C{KILL QUERY}s sent at the deadline.
    @ivar seconds: how long the drain took.
    """

    sessions_at_start: int = 0
    closed_idle: int = 0
    closed_at_deadline: int = 0
    statements_killed: int = 0
    seconds: float = 0.0


class Drain:
    """
    One graceful shutdown of a session manager's client sessions (see the
    module docstring).

    @ivar timeout: seconds until the deadline.
    @ivar tally: what it did so far.
    @ivar past_deadline: whether the deadline was reached.
    @ivar finished: whether every session is gone.
    """

    _log = Logger()

    def __init__(
        self,
        manager: Any,
        timeout: float,
        *,
        view: Callable[[Any], SessionView] = view_of,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        """
        @param manager: the session manager (its C{client_sessions},
            C{reactor}).
        @param timeout: C{graceful_shutdown_timeout}, in seconds.
        @param view: how a session is looked at (L{view_of}).
        @param sweep_interval: see L{SWEEP_INTERVAL}.
        """
        self.manager = manager
        self.reactor = manager.reactor
        self.timeout = max(0.0, float(timeout))
        self.tally = DrainTally()
        self.past_deadline = False
        self.finished = False
        self._view = view
        self._interval = sweep_interval
        self._ticks = 0
        self._started_at = 0.0
        self._waiting: list[defer.Deferred[DrainTally]] = []
        self._sweep_call: IDelayedCall | None = None
        self._deadline_call: IDelayedCall | None = None
        self._abort_call: IDelayedCall | None = None
        # Sessions already being closed (objects, not ids: an id may be given again).
        self._closing: set[Any] = set()
        self._kills: defer.Deferred[Any] | None = None

    # -- what the manager and the sessions call ---------------------------------------

    def start(self) -> defer.Deferred[DrainTally]:
        """
        Start draining: close what is idle, arm the deadline.

        @return: fires with the L{DrainTally} once no client session is left.
        """
        sessions = self.manager.client_sessions
        self._started_at = self.reactor.seconds()
        self.tally.sessions_at_start = len(sessions)
        done = self.when_done()
        if sessions:
            self._log.info(
                "stopping: draining {count} client session(s), up to {timeout} "
                "(graceful_shutdown_timeout)",
                count=len(sessions),
                timeout=_seconds(self.timeout),
            )
        if self.timeout <= 0:
            self._deadline()
        else:
            self._deadline_call = self.reactor.callLater(self.timeout, self._deadline)
            self._sweep()
        return done

    def when_done(self) -> defer.Deferred[DrainTally]:
        """
        @return: fires with the L{DrainTally} once no client session is left
            (at once when that is already so).
        """
        if self.finished:
            return defer.succeed(self.tally)
        waiting: defer.Deferred[DrainTally] = defer.Deferred()
        self._waiting.append(waiting)
        return waiting

    def hurry(self) -> None:
        """
        Reach the deadline now (a second stop signal: the operator will not
        wait): statements are killed and every session is closed.
        """
        if self.finished or self.past_deadline:
            return
        call, self._deadline_call = self._deadline_call, None
        if call is not None and call.active():
            call.cancel()
        self._log.warn("stopping at once: closing every client session now")
        self._deadline()

    def request_finished(self, session: Any) -> None:
        """
        A client session finished a request (or a step of one): look at it
        once the answer is out and anything it pipelined has started.
        """
        if not self.finished:
            self.reactor.callLater(0, self._look, session)

    # -- inside -----------------------------------------------------------------------

    def _look(self, session: Any) -> None:
        if self.finished or session in self._closing:
            return
        if self.manager.client_sessions.get(session.cs_id) is not session:
            return
        if decide(self._view(session), self.past_deadline) is DrainStep.CLOSE:
            self._close(session)

    def _sweep(self) -> None:
        self._sweep_call = None
        if self.finished:
            return
        if self._ticks % FULL_SWEEP_EVERY == 0:
            for session in list(self.manager.client_sessions.values()):
                self._look(session)
        self._ticks += 1
        if self._check_done():
            return
        self._sweep_call = self.reactor.callLater(self._interval, self._sweep)

    def _close(self, session: Any) -> None:
        self._closing.add(session)
        if self.past_deadline:
            self.tally.closed_at_deadline += 1
        else:
            self.tally.closed_idle += 1
        write_last_error(session, shutdown_error)
        session.close()

    def _deadline(self) -> None:
        self._deadline_call = None
        if self.finished:
            return
        self.past_deadline = True
        sessions = list(self.manager.client_sessions.values())
        kills = []
        for session in sessions:
            active = session.active
            if active is None or not getattr(active, "alive", False) or not active.backend_id:
                continue
            # Stop the statement on its server, as KILL QUERY through the proxy does:
            # closing the client alone would leave it running for nobody.
            killing = session.side_query(b"KILL QUERY %d" % active.backend_id, active.server)
            killing.addErrback(self._kill_failed, session)
            kills.append(killing)
        self.tally.statements_killed += len(kills)
        if sessions:
            self._log.warn(
                "graceful_shutdown_timeout ({timeout}) reached: closing {count} client "
                "session(s) still busy or in a transaction ({kills} statement(s) killed)",
                timeout=_seconds(self.timeout),
                count=len(sessions),
                kills=len(kills),
            )
        if kills:
            # The side connections run on their own; the drain (and so the reactor's
            # shutdown) waits for them a little, or they would be cut before being sent.
            waiting: defer.Deferred[Any] = defer.DeferredList(kills, consumeErrors=True)
            waiting.addTimeout(KILL_WAIT, self.reactor)
            self._kills = waiting
            waiting.addBoth(self._kills_settled)
        for session in sessions:
            if session not in self._closing:
                self._close(session)
        if not self._check_done():
            self._abort_call = self.reactor.callLater(CLOSE_WAIT, self._abort_rest)
            if self._sweep_call is None:
                self._sweep_call = self.reactor.callLater(self._interval, self._sweep)

    def _kills_settled(self, _: object) -> None:
        self._kills = None
        self._check_done()

    def _kill_failed(self, failure: Failure, session: Any) -> None:
        self._log.info(
            "client session {cs_id}: KILL QUERY at the drain deadline failed: {error}",
            cs_id=session.cs_id,
            error=failure.getErrorMessage(),
        )

    def _abort_rest(self) -> None:
        self._abort_call = None
        for session in list(self.manager.client_sessions.values()):
            transport = session.transport
            if transport is not None:
                transport.abortConnection()

    def _check_done(self) -> bool:
        if self.manager.client_sessions or self._kills is not None:
            return False
        self._finish()
        return True

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for call in (self._sweep_call, self._deadline_call, self._abort_call):
            if call is not None and call.active():
                call.cancel()
        self._sweep_call = self._deadline_call = self._abort_call = None
        self.tally.seconds = self.reactor.seconds() - self._started_at
        if self.tally.sessions_at_start:
            self._log.info(
                "drained in {seconds:.1f}s: {idle} client session(s) closed once idle, "
                "{forced} at the deadline",
                seconds=self.tally.seconds,
                idle=self.tally.closed_idle,
                forced=self.tally.closed_at_deadline,
            )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.tally)
