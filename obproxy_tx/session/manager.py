"""
L{SessionManager}: the proxy's Twisted service owning every client and server
session.

It allocates the ids (C{cs_id} with ODP's layout, C{ss_id}), answers lookups
by id (C{KILL}, admin commands), learns each cluster's version string and
capabilities from its servers (one probe connection, or the first login), finds
user verifiers (config first, then the backend user directory when
C{obproxy_tx.auth.backend_users} is installed and the cluster learns users),
and connects server sessions.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from obproxy_tx import logs
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.audit import RequestLog
from obproxy_tx.config import ITEMS, BackendServer, ClusterConfig, ProxyConfig
from obproxy_tx.config_diff import diff_clusters
from obproxy_tx.ha.health import Health, drop_sessions_to
from obproxy_tx.ha.replicas import ReplicaMonitor
from obproxy_tx.logs import Logger
from obproxy_tx.session.brute_force import LoginThrottle
from obproxy_tx.session.client_session import ClientSession
from obproxy_tx.session.drain import Drain
from obproxy_tx.session.ids import (
    ClientSessionIdAllocator,
    ServerSessionIdCounter,
    make_proxy_sessid,
)
from obproxy_tx.session.limits import ClientCounts, ServerSlots, admit_client
from obproxy_tx.session.pending import PendingLogins, RefusedConnection, too_many_pending_logins
from obproxy_tx.session.pool import SharedSessionPool
from obproxy_tx.session.retire import ClusterReload
from obproxy_tx.session.server_session import BackendLogin, ServerSession, connect_session
from obproxy_tx.session.stats import ProxyStats
from obproxy_tx.tls import TLSContexts
from obproxy_tx.wire.connection import ClientConnection
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.packets import ERRPacket, HandshakeV10

__all__ = ["SessionManager"]

#: The config items the shared pool follows at once when they change.
_POOL_ITEMS = ("session_pool_", "enable_session_pool_")

#: The timeouts client sessions keep a copy of (the idle timer, the query timeout).
_FOLLOWED_TIMEOUTS = frozenset(
    ("default_inactivity_timeout", "query_response_timeout", "observer_query_timeout_delta")
)


class _GreetingProbe(Protocol):
    """
    Connects, reads the server's greeting, hangs up.
    """

    transport: Any

    def __init__(self) -> None:
        self.conn = ClientConnection(Capability(0))
        self.greeting: defer.Deferred[HandshakeV10 | None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        try:
            events = self.conn.receive_data(data)
        except Exception:
            events = []
        for event in events:
            if event.__class__ is HandshakeV10 and not self.greeting.called:
                self.greeting.callback(event)
                self.transport.abortConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: N802,B008
        if not self.greeting.called:
            self.greeting.callback(None)


class _ListenerFactory(Factory):
    """
    Builds a L{ClientSession} per accepted connection.
    """

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def buildProtocol(self, addr: Any) -> Protocol | None:  # noqa: N802
        return self.manager.new_client_session(addr)


class SessionManager(Service):
    """
    Owns every client and server session of one proxy.

    @ivar config: the proxy configuration.
    @ivar reactor: the reactor used for connections and timers.
    @ivar client_sessions: live client sessions by C{cs_id}.
    @ivar greetings: what each cluster's servers announced (name -> greeting).
    @ivar registry: the admin commands clients may run.
    @ivar stats: the proxy-wide counters (C{SHOW PROXYSTAT}).
    @ivar started_at: when the manager was made, in seconds since the epoch.
    @ivar worker: which worker process this is (0 with one process): the
        worker bits of every C{cs_id} it allocates.
    @ivar cluster: the channel to the other workers and proxy nodes
        (L{obproxy_tx.cluster}), or C{None} when this process is the whole
        proxy; admin commands consult it for sessions they do not hold.
    @ivar session_pool: idle server sessions left by clients that quit, shared
        by later clients of the same backend user.
    @ivar replica_monitor: which replicas may take weak reads (the read/write
        split, L{obproxy_tx.ha.replicas}).
    """

    _log = Logger()

    #: The drain once L{stopService} started it (client sessions look at it
    #: when a request ends); C{None} while running.
    drain: Drain | None = None

    def __init__(
        self,
        config: ProxyConfig,
        reactor: Any = None,
        registry: CommandRegistry | None = None,
        *,
        worker: int = 0,
    ) -> None:
        """
        @param config: the proxy configuration.
        @param reactor: the reactor (default: the global one, resolved lazily).
        @param registry: the admin commands (default: every plugin found in
            L{obproxy_tx.plugins}).
        @param worker: this process's worker number, below C{work_thread_num}.
        """
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.config = config
        self.reactor = reactor
        # syslog_level: a worker process sets its level here, as the single process does.
        logs.apply_config(config)
        self.client_sessions: dict[int, ClientSession] = {}
        self.registry = registry if registry is not None else CommandRegistry.from_plugins()
        self.stats = ProxyStats()
        # Requests answered by servers: by command, timed, slow-query and audit logs.
        self.requests = RequestLog(lambda: self.config, getattr(reactor, "seconds", time.time))
        self.started_at = time.time()
        self.session_pool = SharedSessionPool(reactor, lambda: self.config, self.stats)
        # Which replicas may take weak reads (read/write split; started with the service).
        self.replica_monitor = ReplicaMonitor(reactor, lambda: self.config, self.stats)
        # server_max_connections: every server session holds a slot of its server.
        self.server_slots = ServerSlots(
            reactor, lambda: self.config, self.session_pool.close_idle, self.stats, worker
        )
        self.session_pool.wanted = self.server_slots.wanted
        # Which servers new server sessions avoid (congestion control, active checks).
        self.health = Health(
            reactor,
            lambda: self.config,
            self.stats,
            server_down=lambda address: drop_sessions_to(self, address),
        )
        self.health.known(config.clusters)
        # Clusters changed by a reload: applied, and what they left behind closed.
        self.cluster_reload = ClusterReload(self)
        # TLS to clients and to servers (obproxy_tx.tls); rebuilt by reconfigure.
        self.tls = TLSContexts(config)
        # Admitted client sessions per user (the per-user caps).
        self.client_counts = ClientCounts()
        # Failed logins per client address (password guessing is slowed down).
        self.login_throttle = LoginThrottle(reactor, lambda: self.config, self.stats)
        # Connections not logged in yet per client address (slowloris from one address).
        self.pending_logins = PendingLogins()
        self.greetings: dict[str, HandshakeV10] = {}
        self._probes: dict[str, defer.Deferred[HandshakeV10 | None]] = {}
        self.worker = worker
        self.cluster: Any = None
        self._cs_ids = ClientSessionIdAllocator(config.client_session_id_layout(), worker)
        self._ss_ids = ServerSessionIdCounter()
        # Workers interleave their sequences, so proxy_sessids differ across workers too.
        self._proxy_sessid_seq = itertools.count(1 + worker, max(1, config.work_thread_num))
        self._proxy_sessid_bases: dict[tuple[str, int], int] = {}
        self._next_server: dict[str, Any] = {}
        self._user_directories: dict[str, Any] = {}

    # -- service --------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        """
        Start probing the default cluster's servers so the first client is
        greeted with their version and capabilities.
        """
        super().startService()
        if self.config.clusters:
            self.cluster_greeting(self.config.default_cluster)
        self.replica_monitor.start()
        self.health.checker.start()
        for cluster in self.config.clusters:
            if cluster.learn_users:
                directory = self._user_directory(cluster)
                if directory is not None:
                    directory.refresh().addErrback(
                        lambda failure, name=cluster.name: self._log.warn(
                            "cluster {cluster}: cannot read its users yet: {error}",
                            cluster=name,
                            error=failure.getErrorMessage(),
                        )
                    )

    def stopService(self) -> defer.Deferred[None] | None:  # noqa: N802
        """
        Drain (L{obproxy_tx.session.drain}): close each client session once it
        is idle outside a transaction, the rest at C{graceful_shutdown_timeout};
        the shared pool keeps nothing from now on. Stop accepting first (the
        listener's service stops before this one).

        @return: fires once no client session is left (the same drain when
            called again while it runs; a new one after a restart).
        """
        drain = self.drain
        if drain is None or drain.finished:
            self.session_pool.close()
            self.replica_monitor.stop()
            self.health.checker.stop()
            super().stopService()
            drain = self.drain = Drain(self, self.config.graceful_shutdown_timeout)
            done = drain.start()
            # The slow-query and audit logs take the drained requests too, then close.
            done.addBoth(_passing(self.requests.close))
        else:
            done = drain.when_done()
        return done.addCallback(lambda _: None)

    def reconfigure(self, new_config: ProxyConfig) -> None:
        """
        Run with C{new_config} from now on (C{ALTER PROXYCONFIG}, a C{SIGHUP} reload).

        Only items that take effect without a restart may differ. Everything
        here and in the sessions reads C{self.config} when it needs a value
        (C{client_max_connections} at the next accept, timeouts at the next
        connect, login or idle check), so swapping it is the change; what
        keeps a copy is updated: the user directories of clusters that learn
        users, and idle timers armed with the old C{default_inactivity_timeout}.
        The clusters may change too (servers, replicas, users, clusters added
        or removed): L{obproxy_tx.session.retire} applies that.

        @param new_config: the checked new configuration.
        @raise ValueError: an item that needs a restart differs; nothing was changed.
        """
        old = self.config
        changed = [name for name in ITEMS if new_config.item_value(name) != old.item_value(name)]
        frozen = [name for name in changed if ITEMS[name].need_reboot]
        if frozen:
            raise ValueError(f"{', '.join(frozen)} can only change at restart")
        clusters = (
            None
            if new_config.clusters == old.clusters
            else diff_clusters(old.clusters, new_config.clusters)
        )
        # New TLS files (or items) for new sessions; files that do not load change nothing.
        self.tls.reload(new_config)
        self.config = new_config
        for directory in self._user_directories.values():
            if hasattr(directory, "config"):
                directory.config = new_config
        if any(name.startswith(_POOL_ITEMS) for name in changed):
            self.session_pool.reconfigured()
        if "server_max_connections" in changed:
            self.server_slots.reconfigured()
        if "syslog_level" in changed:
            logs.apply_config(new_config)
        if any(name in _FOLLOWED_TIMEOUTS for name in changed):
            for session in list(self.client_sessions.values()):
                session.follow_wait_timeout()
        if clusters is not None:
            self.cluster_reload.apply(clusters, new_config)
        if changed:
            # Names only: values may be secrets.
            self._log.info("configuration changed: {names}", names=", ".join(changed))

    def listener_factory(self) -> IProtocolFactory:
        """
        The client-facing protocol factory to listen with.
        """
        return _ListenerFactory(self)

    # -- sessions -------------------------------------------------------------------------

    def new_client_session(self, addr: Any) -> Protocol | None:
        """
        Build the protocol for a new client connection.

        Every connection is accepted and greeted: as in ODP,
        C{client_max_connections} and the per-user caps are checked once the
        client logged in (L{admit}), so the local admin still gets in to a
        full proxy and a refused client reads ODP's error as a login answer.
        Except over C{max_pending_logins_per_ip}
        (L{obproxy_tx.session.pending}): that connection is no client session,
        it gets ERR 1040 at once and is closed.
        """
        host = getattr(addr, "host", None)
        host = str(host) if host else None
        if host is not None:
            cap = self.config.max_pending_logins_per_ip
            if not self.pending_logins.admits(host, cap):
                self.stats.pending_logins_refused += 1
                return RefusedConnection(too_many_pending_logins(host, cap))
        try:
            cs_id = self._cs_ids.allocate(self.client_sessions)
        except Exception:
            self._log.failure("no client session id left")
            return None
        session = ClientSession(self, cs_id)
        self.client_sessions[cs_id] = session
        if host is not None:
            self.pending_logins.add(cs_id, host)
        self.stats.client_connections += 1
        return session

    def allocate_proxy_sessid(self, address: Any) -> int:
        """
        A new C{proxy_sessid} (ODP's C{(proxy IPv4 << 32) | (listen port << 16)
        | (seq & 0xFFFF)}, one sequence for the whole proxy) for a client
        session accepted on C{address}.

        @param address: the proxy's own end of the client connection
            (C{transport.getHost()}); not IPv4 (IPv6, UNIX): address 0.
        @return: the C{proxy_sessid}.
        """
        host = str(getattr(address, "host", "") or "")
        port = int(getattr(address, "port", 0) or 0)
        seq = next(self._proxy_sessid_seq)
        # The address part is the same for every client of one listening address:
        # parse it once (an IPv4Address per login is measurable in connection churn).
        base = self._proxy_sessid_bases.get((host, port))
        if base is None:
            try:
                base = make_proxy_sessid(host, port & 0xFFFF, 0)
            except ValueError:
                base = make_proxy_sessid(0, port & 0xFFFF, 0)
            self._proxy_sessid_bases[(host, port)] = base
        return base | (seq & 0xFFFF)

    def admit(
        self, session: ClientSession, login: Any, cluster: ClusterConfig, changing: bool = False
    ) -> ERRPacket | None:
        """
        Check C{client_max_connections} and the per-user caps for a client
        that just proved who it is (L{obproxy_tx.session.limits.admit_client});
        an admitted one is counted for its user until it closes or changes user.

        @param login: its parsed login name.
        @param cluster: the cluster it logged in to.
        @param changing: a C{COM_CHANGE_USER} of a session already admitted:
            only the new user's cap applies (the connection is open already).
        @return: C{None} when admitted, else the ERR to answer.
        """
        if login.is_proxysys:
            self.client_counts.remove(session.cs_id)
            return None
        entry = cluster.find_user(login.user, login.tenant)
        cap = entry.max_connections if entry is not None and entry.max_connections else 0
        if not cap:
            cap = self.config.user_max_connections
        user = (cluster.name, login.tenant, login.user)
        counts = self.client_counts
        user_sessions = counts.of(user)
        if counts.admitted.get(session.cs_id) == user:
            # Changing to the same user: this session is one of them already.
            user_sessions -= 1
        refusal = admit_client(
            open_connections=0 if changing else len(self.client_sessions),
            max_connections=self.config.client_max_connections,
            user_sessions=user_sessions,
            user_cap=cap,
            user=login.user,
        )
        if refusal is None:
            self.client_counts.add(session.cs_id, user)
        elif refusal.message == "Too many sessions":
            self.stats.client_connections_refused += 1
        else:
            self.stats.user_cap_refusals += 1
        return refusal

    def login_done(self, session: ClientSession) -> None:
        """
        A client session logged in: no longer pending
        (C{max_pending_logins_per_ip}).
        """
        self.pending_logins.done(session.cs_id)

    def client_session_closed(self, session: ClientSession) -> None:
        """
        Forget a closed client session.
        """
        self.client_counts.remove(session.cs_id)
        if self.client_sessions.get(session.cs_id) is session:
            self.pending_logins.done(session.cs_id)
            del self.client_sessions[session.cs_id]

    def find_client_session(self, cs_id: int) -> ClientSession | None:
        """
        The live client session with id C{cs_id}, or C{None}.
        """
        return self.client_sessions.get(cs_id)

    @property
    def server_session_count(self) -> int:
        """
        How many server sessions all client sessions and the shared pool hold.
        """
        held = sum(cs.server_session_count for cs in self.client_sessions.values())
        return held + len(self.session_pool)

    # -- clusters -------------------------------------------------------------------------

    def pick_server(self, cluster: ClusterConfig) -> BackendServer:
        """
        The server for a client session's next new server session: the
        cluster's servers in turn, so sessions spread across them, skipping
        congested ones (L{obproxy_tx.ha.congestion}); when all are congested,
        the one that failed longest ago (never refuse without trying).

        @raise LookupError: the cluster has no servers.
        """
        servers = cluster.servers
        if not servers:
            raise LookupError(f"cluster {cluster.name!r} has no servers")
        counter = self._next_server.get(cluster.name)
        if counter is None:
            counter = self._next_server[cluster.name] = itertools.count()
        start = next(counter) % len(servers)
        if len(servers) == 1 or not self.health.table.has_congestion:
            return servers[start]
        return self.health.order(cluster.name, [*servers[start:], *servers[:start]])[0]

    def cluster_greeting(self, cluster: ClusterConfig) -> defer.Deferred[HandshakeV10 | None]:
        """
        What the cluster's servers announce (version, capabilities,
        character set), probed once; C{None} when no server answered.
        """
        known = self.greetings.get(cluster.name)
        if known is not None:
            return defer.succeed(known)
        probing = self._probes.get(cluster.name)
        if probing is None:
            probing = self._probes[cluster.name] = defer.Deferred.fromCoroutine(
                self._probe(cluster)
            )
        result: defer.Deferred[HandshakeV10 | None] = defer.Deferred()

        def done(greeting: HandshakeV10 | None) -> HandshakeV10 | None:
            result.callback(greeting)
            return greeting

        probing.addCallback(done)
        return result

    async def _probe(self, cluster: ClusterConfig) -> HandshakeV10 | None:
        for server in cluster.servers:
            probe = _GreetingProbe()
            try:
                endpoint = clientFromString(self.reactor, server.endpoint)
                connecting = connectProtocol(endpoint, probe)
                connecting.addTimeout(self.config.short_async_task_timeout, self.reactor)
                await connecting
                waiting = probe.greeting
                waiting.addTimeout(self.config.short_async_task_timeout, self.reactor)
                greeting = await waiting
            except Exception as exc:
                self._log.info(
                    "cluster {cluster}: server {server} did not greet: {error}",
                    cluster=cluster.name,
                    server=server.address,
                    error=exc,
                )
                continue
            if greeting is not None:
                self.greetings[cluster.name] = greeting
                self._probes.pop(cluster.name, None)
                return greeting
        self._probes.pop(cluster.name, None)
        return None

    # -- users ----------------------------------------------------------------------------

    async def lookup_verifier(
        self, cluster: ClusterConfig, user: str, tenant: str, host: str = "%"
    ) -> bytes | None:
        """
        The stored SHA1(SHA1(password)) of a user (C{b""}: empty password),
        or C{None} for an unknown user: the config's users first, then the
        backend user directory of clusters that learn users.
        """
        entry = cluster.find_user(user, tenant)
        if entry is not None:
            return entry.verifier
        if not cluster.learn_users:
            return None
        directory = self._user_directory(cluster)
        if directory is None:
            return None
        try:
            found = await directory.lookup(user, host)
        except Exception as exc:
            if type(exc).__name__ == "UnsupportedUserError":
                self._log.warn("{error}", error=exc)
                return None
            self._log.failure(
                "looking up {user} in cluster {cluster}", user=user, cluster=cluster.name
            )
            return None
        if found is None:
            return None
        verifier = getattr(found, "verifier", found)
        return bytes(verifier) if verifier is not None else None

    async def requires_tls(
        self, cluster: ClusterConfig, user: str, tenant: str, host: str = "%"
    ) -> bool:
        """
        Whether a user logs in over TLS only: its entry's C{require_ssl}, or
        for a learned user its account's C{REQUIRE} clause (C{REQUIRE SSL},
        C{X509}, ...). Unknown users and lookup failures say C{False}: the
        password check refuses those.
        """
        entry = cluster.find_user(user, tenant)
        if entry is not None:
            return entry.require_ssl
        if not cluster.learn_users:
            return False
        directory = self._user_directory(cluster)
        if directory is None:
            return False
        try:
            found = await directory.lookup(user, host)
        except Exception:
            return False
        return bool(getattr(found, "require_tls", False))

    def forget_user_directory(self, name: str) -> None:
        """
        Drop cluster C{name}'s backend user directory (a reload changed the
        cluster; the next lookup builds one from the new cluster).
        """
        self._user_directories.pop(name, None)

    def forget_cluster(self, name: str) -> None:
        """
        Drop what was kept about cluster C{name} (a reload removed it): its
        greeting, probe, server turn and user directory.
        """
        self.greetings.pop(name, None)
        self._probes.pop(name, None)
        self._next_server.pop(name, None)
        self._user_directories.pop(name, None)

    def _user_directory(self, cluster: ClusterConfig) -> Any:
        directory = self._user_directories.get(cluster.name)
        if directory is not None:
            return directory
        try:
            from obproxy_tx.auth import backend_users
        except ImportError:
            return None
        make = getattr(backend_users, "directory_for", None)
        try:
            if make is not None:
                directory = make(self.config, cluster, self.reactor)
            else:
                directory = backend_users.BackendUserDirectory(self.config, cluster, self.reactor)
        except Exception:
            self._log.failure(
                "cannot build the backend user directory of {cluster}", cluster=cluster.name
            )
            return None
        self._user_directories[cluster.name] = directory
        return directory

    # -- server sessions ------------------------------------------------------------------

    async def connect_server_session(
        self, client: ClientSession, server: BackendServer, login: BackendLogin, side: bool = False
    ) -> ServerSession:
        """
        Connect and log in a new server session for C{client}.

        @param side: a side connection (e.g. to send C{KILL QUERY}): its
            loss is none of the client session's business.

        @raise obproxy_tx.session.server_session.BackendError: the server refused the login.
        @raise Exception: the connection failed (refused, timed out, lost).
        """
        assert client.login is not None
        # TLS before the login (enable_server_ssl): the context and the name to check.
        tls = self.tls.for_server(server.host, server.address) if self.tls.server_enabled else None
        # server_max_connections: a slot first (at once, or after waiting; may
        # fail with limits.ServerBusyError), held until the connection ends.
        slot = await self.server_slots.acquire(server.address)
        session = ServerSession(
            self._ss_ids.allocate(),
            server,
            client.login.full_name,
            login,
            on_lost=None if side else client.server_session_lost,
        )
        session.slot = slot
        if tls is not None:
            session.tls, session.tls_identity = tls
        # Congestion control hears of every outcome (a congested server's trial is claimed).
        health, cluster_name = self.health, client.cluster.name if client.cluster else ""
        health.trying(cluster_name, server.address)
        connecting = connect_session(self.reactor, server, session)
        connecting.addTimeout(self.config.short_async_task_timeout, self.reactor)
        try:
            await connecting
        except Exception as exc:
            # Never connected: no connectionLost will give the slot back.
            session.slot = None
            slot.release()
            session.machine.close()
            self.stats.server_connect_failures += 1
            health.connect_failed(cluster_name, server.address, _why(exc))
            raise
        logging_in = session.logged_in
        logging_in.addTimeout(self.config.short_async_task_timeout, self.reactor)
        try:
            await logging_in
        except Exception as exc:
            session.abort()
            self.stats.server_connect_failures += 1
            packet = getattr(exc, "packet", None)
            if packet is None:
                health.connect_failed(cluster_name, server.address, _why(exc))
            else:  # an ERR: counted only when it says the server cannot serve now
                health.refused(cluster_name, server.address, packet.error_code, packet.message)
            raise
        health.connected(cluster_name, server.address)
        self.stats.server_connects += 1
        cluster = client.cluster
        if cluster is not None and cluster.name not in self.greetings and session.greeting:
            self.greetings[cluster.name] = session.greeting
        return session


def _passing(call: Any) -> Any:
    # A callback running call() and passing its result (or failure) on.
    def run(result: object) -> object:
        call()
        return result

    return run


def _why(exc: BaseException) -> str:
    # What a connect failure was, for the congestion log line.
    if isinstance(exc, defer.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
