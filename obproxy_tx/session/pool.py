"""
Pools of idle server sessions.

L{ServerSessionPool}: the per-client-session pool. As in ODP
(C{ObServerSessionPool}, one per client session by default), idle server
sessions are keyed by (server address, full login name). The client session's
last used server session is not in here: it is bound to the client session
(C{MSS_KA_CLIENT_SLAVE}); the others wait here (C{MSS_KA_SHARED}).

L{SharedSessionPool}: the proxy-wide pool of idle, logged-in server sessions
that client sessions leave behind when they quit, reset and shared by later
client sessions of the same backend user (ODP's global pool, which ODP keeps
for sharding; here for every cluster, so that connect / query / quit does not
cost a backend login each time). See C{docs/proxy.md}.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Tuple

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from obproxy_tx.session.server_session import BackendLogin, ServerSession
from obproxy_tx.session.sync import SessionVarVersions
from obproxy_tx.wire.connection import Phase
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.errors import ErrorCode, ProtocolError
from obproxy_tx.wire.packets import (
    AuthSwitchRequest,
    AuthSwitchResponse,
    ComChangeUser,
    ComResetConnection,
    ERRPacket,
    OKPacket,
)
from obproxy_tx.wire.scramble import native_password_response_from_stage1

__all__ = [
    "LoginKey",
    "PoolKey",
    "ServerSessionPool",
    "SharedKey",
    "SharedSessionPool",
    "login_key",
]

MYSQL_NATIVE_PASSWORD = "mysql_native_password"

#: The errors a server without COM_RESET_CONNECTION answers it with.
_RESET_UNSUPPORTED = frozenset(
    (ErrorCode.ER_UNKNOWN_COM_ERROR, ErrorCode.ER_NOT_SUPPORTED_YET, ErrorCode.ER_UNKNOWN_ERROR)
)

#: (server address, full login name).
PoolKey = Tuple[str, str]


class ServerSessionPool:
    """
    Idle server sessions of one client session, by L{PoolKey}.
    """

    def __init__(self) -> None:
        self._idle: dict[PoolKey, list[Any]] = {}

    def put(self, session: Any) -> None:
        """
        Add an idle server session (its C{key} attribute is its L{PoolKey}).
        """
        self._idle.setdefault(session.key, []).append(session)

    def take(self, key: PoolKey) -> Any:
        """
        Remove and return an idle session for C{key} (the most recently
        pooled), or C{None}.
        """
        sessions = self._idle.get(key)
        if not sessions:
            return None
        session = sessions.pop()
        if not sessions:
            del self._idle[key]
        return session

    def remove(self, session: Any) -> bool:
        """
        Remove C{session} if it is pooled; return whether it was.
        """
        sessions = self._idle.get(session.key)
        if not sessions or session not in sessions:
            return False
        sessions.remove(session)
        if not sessions:
            del self._idle[session.key]
        return True

    def drain(self) -> list[Any]:
        """
        Remove and return every pooled session.
        """
        sessions = [session for group in self._idle.values() for session in group]
        self._idle.clear()
        return sessions

    def __iter__(self) -> Iterator[Any]:
        for group in list(self._idle.values()):
            yield from group

    def __len__(self) -> int:
        return sum(len(group) for group in self._idle.values())


#: What the login of a server session established, apart from its server:
#: (cluster, backend user name, capabilities without C{CLIENT_CONNECT_WITH_DB},
#: collation id, max packet size, whether connect attributes were sent).
LoginKey = Tuple[str, str, int, int, int, bool]

#: (server address, L{LoginKey}): server sessions under one key are
#: interchangeable once reset.
SharedKey = Tuple[str, LoginKey]


# A plain int: IntFlag operations make new members (twice per connection here).
_NOT_CONNECT_WITH_DB = ~int(Capability.CLIENT_CONNECT_WITH_DB)


def login_key(cluster: str, login: BackendLogin) -> LoginKey | None:
    """
    The L{LoginKey} of server sessions logged in with C{login}, or C{None}
    when such sessions may never be shared: ODP's replayed login
    (C{odp_proxy_scramble}), where the observer and not the proxy checks each
    client's password, and the login carries that client's own ids.

    The database is not part of the key: the taker applies its own. The
    connect attributes are not either (C{_pid} differs for every client
    process): the server goes on showing those of the session's first login.
    TLS and compression would be, through the capabilities.
    """
    if login.replay is not None:
        return None
    return (
        cluster,
        login.username,
        int(login.capabilities) & _NOT_CONNECT_WITH_DB,
        login.character_set,
        login.max_packet_size,
        login.connect_attrs is not None,
    )


def _set_on_lost(
    ss: ServerSession, on_lost: Callable[[ServerSession, Failure], None] | None
) -> None:
    # Who hears of the connection's end changes hands with the session: the
    # pool while it holds it, then the client session that takes it.
    ss._on_lost = on_lost


class _Pooled:
    """
    A server session the shared pool holds, being reset or idle.

    @ivar session: the server session.
    @ivar key: its L{SharedKey}.
    @ivar database: its current database, if L{known}.
    @ivar known: whether its current database is known (the client session
        that used it last had synced it).
    @ivar resetting: its reset has not been answered yet.
    @ivar changing_user: the reset is a C{COM_CHANGE_USER}.
    @ivar since: when it became idle (reactor seconds).
    @ivar deadline: when its reset has taken too long, or it has been idle
        long enough (reactor seconds).
    """

    __slots__ = (
        "changing_user",
        "database",
        "deadline",
        "key",
        "known",
        "resetting",
        "session",
        "since",
    )

    def __init__(
        self, session: ServerSession, key: SharedKey, database: str | None, known: bool
    ) -> None:
        self.session = session
        self.key = key
        self.database = database
        self.known = known
        self.resetting = True
        self.changing_user = False
        self.since = 0.0
        self.deadline = 0.0


class SharedSessionPool:
    """
    The proxy-wide pool of idle, logged-in server sessions shared by the
    client sessions of one backend user.

    A client session that quits hands its reusable server sessions to
    L{release}. Each is reset at once, with C{COM_RESET_CONNECTION} or with
    C{COM_CHANGE_USER} to the same user (C{session_pool_reset_command}; by
    default the first on MySQL clusters, the second on OceanBase ones, where
    seekdb spends about four times the CPU of a login on a
    C{COM_RESET_CONNECTION} and less than one on a C{COM_CHANGE_USER}); a
    server that does not know the one gets the other from then on. The
    answer is swallowed; the session then waits in C{MSS_KA_SHARED} until
    L{take} gives it to another client session, or
    C{session_pool_default_idle_timeout} or its server closes it. A reset
    that fails or goes unanswered for C{short_async_task_timeout} closes the
    session instead. At most
    C{session_pool_default_max_conn} sessions per L{SharedKey} and
    C{session_pool_max_total_conn} in all are held (being reset or idle);
    beyond that a released session is closed. One timer serves every
    deadline.

    @ivar stats: the proxy-wide counters, or C{None}.
    @ivar wanted: tells whether a new server session to an address waits for
        a slot (C{server_max_connections}); a session released to such an
        address is closed instead of kept, so the waiter gets its slot.
    """

    _log = Logger()

    def __init__(self, reactor: Any, config: Callable[[], Any], stats: Any = None) -> None:
        """
        @param reactor: the reactor (its clock runs the deadlines).
        @param config: returns the current proxy configuration (which
            C{ALTER PROXYCONFIG} replaces).
        @param stats: the L{obproxy_tx.session.stats.ProxyStats} to count in.
        """
        self._reactor = reactor
        self._config = config
        self.stats = stats
        self._held: dict[int, _Pooled] = {}
        self._idle: dict[SharedKey, list[_Pooled]] = {}
        self._per_key: dict[SharedKey, int] = {}
        self._timer: IDelayedCall | None = None
        self._closed = False
        # Per server that refused one reset command: the other one.
        self._reset_command: dict[str, str] = {}
        # Whether a new server session to an address waits for a slot (set by
        # the session manager; see obproxy_tx.session.limits).
        self.wanted: Callable[[str], bool] | None = None

    def __len__(self) -> int:
        """
        How many server sessions the pool holds (being reset or idle).
        """
        return len(self._held)

    def __iter__(self) -> Iterator[ServerSession]:
        """
        The idle server sessions.
        """
        for entries in list(self._idle.values()):
            for entry in entries:
                yield entry.session

    @property
    def idle_count(self) -> int:
        """
        How many server sessions wait idle (C{MSS_KA_SHARED}).
        """
        return sum(len(entries) for entries in self._idle.values())

    @property
    def enabled(self) -> bool:
        """
        Whether released server sessions are kept at all.
        """
        config = self._config()
        return bool(
            not self._closed
            and config.enable_session_pool_for_no_sharding
            and config.session_pool_default_max_conn > 0
            and config.session_pool_max_total_conn > 0
            and config.session_pool_default_idle_timeout > 0
        )

    # -- in -------------------------------------------------------------------------------

    def release(
        self,
        ss: ServerSession,
        key: LoginKey | None,
        database: str | None,
        known: bool,
        user: str | None = None,
        method: str = "",
    ) -> bool:
        """
        Keep C{ss}, an idle server session whose client session is gone, for
        another client session of the same backend user: reset it now, pool
        it once the reset succeeded.

        The caller decides that the session holds nothing that must not be
        dropped silently (no transaction, no pin); here only what the pool
        needs is checked: a shareable login, a live idle session, room.

        @param key: the L{login_key} of its login (C{None}: not shareable).
        @param database: its current database (C{COM_RESET_CONNECTION} keeps it).
        @param known: whether C{database} is sure (else it is unknown).
        @param user: the user name C{COM_CHANGE_USER} gives (default: the
            login's). OceanBase wants the bare user there: the tenant is the
            connection's, and seekdb refuses C{user@tenant} with 1045.
        @param method: C{change_user} or C{reset_connection} (default: as
            C{session_pool_reset_command} says, C{auto} meaning
            C{reset_connection}).
        @return: C{True} when the pool took it; C{False}: the caller closes it.
        """
        if key is None or not ss.alive or not ss.machine.is_idle or not self.enabled:
            return False
        if ss.conn.phase is not Phase.COMMAND_IDLE:
            return False
        wanted = self.wanted
        if wanted is not None and wanted(ss.server.address):
            # A new server session to that server waits for a slot
            # (server_max_connections): closing this one gives it one.
            return False
        config = self._config()
        shared = (ss.server.address, key)
        count = self._per_key.get(shared, 0)
        if (
            count >= config.session_pool_default_max_conn
            or len(self._held) >= config.session_pool_max_total_conn
        ):
            return False
        entry = _Pooled(ss, shared, database, known)
        method = self._reset_command.get(
            ss.server.address, method or config.session_pool_reset_command
        )
        if method == "change_user":
            entry.changing_user = True
            # COM_CHANGE_USER sets the database: the known one, else none.
            entry.database = database if known else None
            entry.known = True
            command: Any = self._change_user(ss, entry.database, user)
        else:
            command = ComResetConnection()
        try:
            ss.send(command)
        except ProtocolError:
            return False
        ss.sink = self._reset_answer
        ss.statements.clear()
        ss.typed.clear()
        transport = ss.transport
        if transport.producer is not None:
            # The gone client's transport paused and resumed this one.
            transport.unregisterProducer()
        transport.resumeProducing()
        _set_on_lost(ss, self._lost)
        ss.machine.activate()
        self._per_key[shared] = count + 1
        self._held[id(ss)] = entry
        entry.deadline = self._reactor.seconds() + config.short_async_task_timeout
        self._arm(entry.deadline)
        if self.stats is not None:
            self.stats.server_sessions_pooled += 1
        return True

    @staticmethod
    def _change_user(ss: ServerSession, database: str | None, user: str | None) -> ComChangeUser:
        login = ss.login
        greeting = ss.greeting
        return ComChangeUser(
            username=user or login.username,
            auth_response=native_password_response_from_stage1(
                login.stage1, login.verifier, greeting.auth_plugin_data if greeting else b""
            ),
            database=database,
            character_set=login.character_set or (greeting.character_set if greeting else 0),
            auth_plugin_name=MYSQL_NATIVE_PASSWORD,
            connect_attrs=login.connect_attrs,
        )

    def _reset_answer(self, ss: ServerSession, events: list[Any]) -> None:
        """
        The server's answer to the reset (the session's sink meanwhile).
        """
        entry = self._held.get(id(ss))
        if entry is None or not entry.resetting:
            ss.sink = None
            ss.abort()
            return
        for event in events:
            cls = event.__class__
            if cls is OKPacket:
                continue
            if cls is ERRPacket:
                if event.error_code in _RESET_UNSUPPORTED:
                    # Unknown to this server: the other command from now on.
                    self._reset_command[ss.server.address] = (
                        "reset_connection" if entry.changing_user else "change_user"
                    )
                self._reset_failed(entry, f"{event.error_code} {event.message}")
                return
            if cls is AuthSwitchRequest and entry.changing_user:
                # MariaDB and seekdb ask for an answer to a new scramble on COM_CHANGE_USER.
                if event.plugin_name != MYSQL_NATIVE_PASSWORD:
                    self._reset_failed(entry, f"asked to switch to {event.plugin_name}")
                    return
                login = ss.login
                answer = native_password_response_from_stage1(
                    login.stage1, login.verifier, event.scramble
                )
                try:
                    ss.send(AuthSwitchResponse(answer))
                except ProtocolError as exc:
                    self._reset_failed(entry, str(exc))
                    return
                continue
            self._reset_failed(entry, f"unexpected {cls.__name__}")
            return
        if ss.conn.phase is not Phase.COMMAND_IDLE:
            return
        ss.sink = None
        # As fresh as a new login: every class of session state at its default.
        ss.versions = SessionVarVersions()
        ss.machine.pool()
        entry.resetting = False
        entry.since = now = self._reactor.seconds()
        entry.deadline = now + self._config().session_pool_default_idle_timeout
        self._idle.setdefault(entry.key, []).append(entry)
        self._arm(entry.deadline)

    def _reset_failed(self, entry: _Pooled, why: str) -> None:
        ss = entry.session
        self._forget(entry)
        self._log.info(
            "server session {ss_id} to {server}: reset for reuse failed ({why}); closing it",
            ss_id=ss.ss_id,
            server=ss.server.address,
            why=why,
        )
        if self.stats is not None:
            self.stats.server_session_resets_failed += 1
        ss.sink = None
        ss.close(quit=True)

    # -- out ------------------------------------------------------------------------------

    @staticmethod
    def _pick(entries: list[_Pooled] | None, database: str | None) -> tuple[int, bool]:
        """
        Which of C{entries} to take for a client in C{database}: the most
        recently pooled one already there, else (when the client has a
        database to apply) the most recently pooled one; a client without a
        database can use only one known to have none.

        @return: its index (-1: none fits) and whether it is in C{database}.
        """
        if not entries:
            return -1, False
        fallback = -1
        index = len(entries) - 1
        while index >= 0:
            entry = entries[index]
            if entry.session.alive:
                if entry.known and entry.database == database:
                    return index, True
                if fallback < 0 and database is not None:
                    fallback = index
            index -= 1
        return fallback, False

    def take(
        self,
        address: str,
        key: LoginKey | None,
        database: str | None,
        on_lost: Callable[[ServerSession, Failure], None],
    ) -> tuple[ServerSession, bool] | None:
        """
        An idle server session to C{address} logged in the way C{key} says,
        now the caller's (still C{MSS_KA_SHARED}, its versions at their
        defaults), or C{None}.

        @param database: the caller's current database. A session already in
            it is preferred; one in another database will do when the caller
            has one to apply (C{COM_INIT_DB}); a caller without a database
            gets only a session known to have none, since nothing else would
            leave another client's database.
        @param on_lost: the taker's handler of the session's end.
        @return: the session and whether it is in C{database} already.
        """
        if key is None or not self._idle:
            return None
        shared = (address, key)
        entries = self._idle.get(shared)
        index, in_database = self._pick(entries, database)
        if index < 0:
            return None
        assert entries is not None
        entry = entries.pop(index)
        if not entries:
            del self._idle[shared]
        del self._held[id(entry.session)]
        self._count_down(shared)
        ss = entry.session
        _set_on_lost(ss, on_lost)
        if self.stats is not None:
            self.stats.server_sessions_reused += 1
        return ss, in_database

    def has_idle(self, address: str, key: LoginKey | None, database: str | None) -> bool:
        """
        Whether L{take} would find a session now.
        """
        if key is None or not self._idle:
            return False
        return self._pick(self._idle.get((address, key)), database)[0] >= 0

    def close_idle(self, address: str) -> bool:
        """
        Close the longest idle session to C{address} (to make room under
        C{server_max_connections}); its slot comes back when its connection ends.

        @return: whether there was one.
        """
        oldest: _Pooled | None = None
        for (server, _), entries in self._idle.items():
            if server != address or not entries:
                continue
            if oldest is None or entries[0].since < oldest.since:
                oldest = entries[0]
        if oldest is None:
            return False
        self._forget(oldest)
        oldest.session.close(quit=True)
        return True

    # -- housekeeping ---------------------------------------------------------------------

    def _count_down(self, shared: SharedKey) -> None:
        left = self._per_key[shared] - 1
        if left:
            self._per_key[shared] = left
        else:
            del self._per_key[shared]

    def _forget(self, entry: _Pooled) -> None:
        """
        Drop C{entry} from the pool (it must be held).
        """
        del self._held[id(entry.session)]
        if not entry.resetting:
            entries = self._idle[entry.key]
            entries.remove(entry)
            if not entries:
                del self._idle[entry.key]
        self._count_down(entry.key)

    def _lost(self, ss: ServerSession, reason: Failure) -> None:
        """
        A held session's connection ended (its server closed it, or we did).
        """
        entry = self._held.get(id(ss))
        if entry is not None and entry.session is ss:
            self._forget(entry)

    def _arm(self, deadline: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.getTime() <= deadline:
                return
            timer.cancel()
        self._timer = self._reactor.callLater(
            max(0.0, deadline - self._reactor.seconds()), self._expire
        )

    def _expire(self) -> None:
        """
        Close the sessions idle for C{session_pool_default_idle_timeout} and
        those whose reset went unanswered for C{short_async_task_timeout}.
        """
        self._timer = None
        now = self._reactor.seconds()
        next_deadline: float | None = None
        for entry in list(self._held.values()):
            if entry.deadline <= now:
                if entry.resetting:
                    self._reset_failed(entry, "no answer in time")
                else:
                    self._forget(entry)
                    entry.session.close(quit=True)
            elif next_deadline is None or entry.deadline < next_deadline:
                next_deadline = entry.deadline
        if next_deadline is not None:
            self._arm(next_deadline)

    def reconfigured(self) -> None:
        """
        Follow changed pool items (C{ALTER PROXYCONFIG}): new idle deadlines,
        new bounds (the longest idle sessions beyond them close), or no pool.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.enabled:
            self.drain()
            return
        config = self._config()
        timeout = config.session_pool_default_idle_timeout
        for entries in list(self._idle.values()):
            for entry in entries[: max(0, len(entries) - config.session_pool_default_max_conn)]:
                self._forget(entry)
                entry.session.close(quit=True)
        while len(self._held) > config.session_pool_max_total_conn and self._idle:
            oldest = min((group[0] for group in self._idle.values()), key=lambda e: e.since)
            self._forget(oldest)
            oldest.session.close(quit=True)
        for entries in self._idle.values():
            for entry in entries:
                entry.deadline = entry.since + timeout
        self._expire()

    def drain(self) -> None:
        """
        Close every session the pool holds.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for entry in list(self._held.values()):
            self._forget(entry)
            entry.session.sink = None
            entry.session.close(quit=True)

    def close(self) -> None:
        """
        Close every session and keep none from now on (the proxy is stopping).
        """
        self._closed = True
        self.drain()
