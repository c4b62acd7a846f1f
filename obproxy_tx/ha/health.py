"""
The active health checker (ODP's server detection, C{server_detect_mode}) and the glue between
server sessions and the congestion table (issue 6).

Every C{server_detect_refresh_interval} the checker probes the clusters' servers: with
C{server_detect_mode} 2 every server, with 1 only the servers that served server sessions since
the last round or are failing (as ODP's "accurate" mode probes only servers with requests), with
0 none. A probe connects and reads the greeting (ODP's detection checks only that the server
greets); when C{metadata_user} is configured it also logs in and sends C{COM_PING}, so a server
that greets but cannot run a session (out of connections, stuck storage) fails too. A probe
taking longer than C{detect_server_timeout} fails. C{server_detect_fail_threshold} failures in
a row take the server out (detect-congested); one success puts it back and clears its passive
congestion as well (L{obproxy_tx.ha.congestion}).

L{Health} is what the session manager holds: the table, the checker, and the report functions
the connect path calls (L{Health.connect_failed}, L{Health.refused}, L{Health.connected}), each
logging the server's change of state once.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Set, Tuple

from twisted.internet import defer
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from obproxy_tx.ha.congestion import (
    CongestionTable,
    follow_config,
    format_time,
    means_unavailable,
)
from obproxy_tx.logs import Logger
from obproxy_tx.tls import metadata_tls
from obproxy_tx.wire.connection import ClientConnection
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.packets import HandshakeV10

__all__ = ["Health", "HealthChecker", "drop_sessions_to", "probe_server"]

_log = Logger()


def _address(server: Any) -> str:
    return str(server.address)


def _listed(config: Any, cluster: str, address: str) -> bool:
    # Whether the configuration lists address as a server of cluster.
    for candidate in config.clusters:
        if candidate.name == cluster:
            return any(_address(server) == address for server in candidate.servers)
    return False


class _Greeting(Protocol):
    """
    Reads the server's first packet: a greeting, or an ERR (too many connections, host
    blocked); then hangs up.
    """

    transport: Any

    def __init__(self) -> None:
        self.conn = ClientConnection(Capability(0))
        self.result: defer.Deferred[bool] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        try:
            events = self.conn.receive_data(data)
        except Exception:
            events = [None]  # garbage is no greeting
        if events and not self.result.called:
            self.result.callback(events[0].__class__ is HandshakeV10)
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: N802,B008
        if not self.result.called:
            self.result.callback(False)


async def probe_server(reactor: Any, server: Any, config: Any) -> Tuple[bool, str]:
    """
    Probe one server once.

    @param server: a L{obproxy_tx.config.BackendServer}.
    @param config: the proxy configuration (C{detect_server_timeout}, C{metadata_user}).
    @return: C{(alive, why)}: C{why} says what failed.
    """
    timeout = config.detect_server_timeout
    endpoint = clientFromString(reactor, server.endpoint)
    try:
        if config.metadata_user:
            from obproxy_tx.protocol.client import connect

            logging_in = connect(
                reactor,
                endpoint,
                config.metadata_user,
                config.metadata_password,
                timeout=timeout,
                # enable_server_ssl: the metadata login over TLS too.
                tls=metadata_tls(config, server),
            )
            connection = await logging_in
            try:
                pinging = connection.ping()
                pinging.addTimeout(timeout, reactor)
                await pinging
            finally:
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abortConnection()
            return True, ""
        greeting = _Greeting()
        connecting = connectProtocol(endpoint, greeting)
        connecting.addTimeout(timeout, reactor)
        await connecting
        waiting = greeting.result
        waiting.addTimeout(timeout, reactor, onTimeoutCancel=_abort(greeting))
        if await waiting:
            return True, ""
        return False, "no greeting (an error packet or a closed connection)"
    except defer.TimeoutError:
        return False, f"no answer within {timeout:g} s"
    except Exception as exc:
        return False, str(exc) or type(exc).__name__


def _abort(greeting: _Greeting) -> Callable[[Any, float], Any]:
    def cancelled(result: Any, timeout: float) -> Any:
        transport = getattr(greeting, "transport", None)
        if transport is not None:
            transport.abortConnection()
        raise defer.TimeoutError(timeout, "greeting")

    return cancelled


class HealthChecker:
    """
    Probes servers every C{server_detect_refresh_interval} (see the module's docstring).
    """

    def __init__(
        self,
        reactor: Any,
        config: Callable[[], Any],
        health: Health,
        probe: Callable[[Any, Any, Any], Any] = probe_server,
    ) -> None:
        """
        @param config: the current proxy configuration (read each round).
        @param probe: C{probe(reactor, server, config)}, a coroutine returning C{(alive, why)}.
        """
        self.reactor = reactor
        self._config = config
        self._health = health
        self._probe = probe
        self._call: Any = None
        self._running: Set[Tuple[str, str]] = set()
        self.rounds = 0

    def start(self) -> None:
        """
        Begin the rounds (the first one at once).
        """
        if self._call is None:
            self._call = self.reactor.callLater(0, self._round)

    def stop(self) -> None:
        """
        Stop scheduling rounds (probes under way finish on their own).
        """
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _round(self) -> None:
        config = self._config()
        self._call = self.reactor.callLater(config.server_detect_refresh_interval, self._round)
        mode = config.server_detect_mode
        if not mode:
            return
        self.rounds += 1
        used = self._health.take_used()
        table = self._health.table
        for cluster in config.clusters:
            for server in cluster.servers:
                key = (cluster.name, _address(server))
                if key in self._running:
                    continue
                if mode == 1 and key not in used:
                    entry = table.entry(*key)
                    if not (entry.congested or entry.detect_failures):
                        continue
                self._running.add(key)
                checking = defer.Deferred.fromCoroutine(self._check(cluster.name, server, config))
                checking.addErrback(
                    lambda f: _log.failure("health check failed unexpectedly", failure=f)
                )

    async def _check(self, cluster: str, server: Any, config: Any) -> None:
        key = (cluster, _address(server))
        try:
            alive, why = await self._probe(self.reactor, server, config)
        finally:
            self._running.discard(key)
        if not _listed(self._config(), cluster, key[1]):
            return  # a reload removed the server while it was probed: no entry again
        if alive:
            self._health.detect_succeeded(cluster, key[1])
        else:
            self._health.detect_failed(cluster, key[1], why)


class Health:
    """
    The congestion table plus the reports of the connect path and the active checker; logs
    each server's changes of state.

    @ivar table: the congestion entries (SHOW PROXYCONGESTION).
    @ivar checker: the active checker.
    """

    def __init__(
        self,
        reactor: Any,
        config: Callable[[], Any],
        stats: Any = None,
        server_down: Callable[[str], Any] | None = None,
    ) -> None:
        """
        @param config: the current proxy configuration.
        @param stats: the proxy's counters (C{servers_congested}, C{servers_recovered}), or
            C{None}.
        @param server_down: called with a server's address when the active checker finds it
            down (L{drop_sessions_to}), or C{None}.
        """
        self.reactor = reactor
        self._config = config
        self._stats = stats
        self._server_down = server_down
        self.table = CongestionTable(follow_config(config))
        self.checker = HealthChecker(reactor, config, self)
        self._used: Set[Tuple[str, str]] = set()

    def _now(self) -> float:
        return float(self.reactor.seconds())

    def known(self, clusters: Iterable[Any]) -> None:
        """
        Make entries for every configured server.
        """
        for cluster in clusters:
            self.table.known(cluster.name, [_address(s) for s in cluster.servers])

    def forget(self, cluster: str, address: str) -> None:
        """
        Drop the entry of a server a reload removed from C{cluster}.
        """
        self.table.forget(cluster, address)
        self._used.discard((cluster, address))

    def take_used(self) -> Set[Tuple[str, str]]:
        """
        The servers that got server sessions since the last call.
        """
        used, self._used = self._used, set()
        return used

    # -- decisions --------------------------------------------------------------------------

    def order(self, cluster: str, servers: List[Any]) -> List[Any]:
        """
        C{servers} in the order to try them (usable first; see L{CongestionTable.order}).
        """
        return self.table.order(cluster, servers, self._now(), _address)

    def avoided(self, cluster: str, address: str) -> bool:
        """
        Whether new server sessions should avoid C{address} now (L{CongestionTable.avoided}).
        """
        return self.table.avoided(cluster, address, self._now())

    def trying(self, cluster: str, address: str) -> None:
        """
        A connection to C{address} is about to be made (claims a congested server's trial).
        """
        self.table.claim(cluster, address, self._now())

    # -- reports ----------------------------------------------------------------------------

    def connected(self, cluster: str, address: str) -> None:
        """
        A server session to C{address} logged in.
        """
        self._used.add((cluster, address))
        if self.table.succeeded(cluster, address, self._now()):
            self._recovered(cluster, address, "a login succeeded")

    def connect_failed(self, cluster: str, address: str, why: str) -> None:
        """
        Connecting or logging in to C{address} failed (refused, timed out, lost).
        """
        if self.table.connect_failed(cluster, address, self._now()):
            config = self._config()
            self._congested(
                cluster,
                address,
                f"dead: {config.congestion_failure_threshold} connect failures within "
                f"{config.congestion_fail_window:g} s, the last: {why}",
            )

    def refused(self, cluster: str, address: str, error_code: int, message: str) -> bool:
        """
        C{address} answered with an ERR; counted when the code says it cannot serve now.

        @return: whether the code means so (L{means_unavailable}).
        """
        if not means_unavailable(error_code):
            return False
        if self.table.alive_failed(cluster, address, self._now()):
            config = self._config()
            self._congested(
                cluster,
                address,
                f"alive but refusing: {config.congestion_failure_threshold} refusals within "
                f"{config.congestion_fail_window:g} s, the last: {error_code} {message}",
            )
        return True

    def detect_failed(self, cluster: str, address: str, why: str) -> None:
        """
        An active check of C{address} failed.
        """
        if self.table.detect_failed(cluster, address, self._now()):
            self._congested(
                cluster,
                address,
                f"{self._config().server_detect_fail_threshold} active checks failed in a row, "
                f"the last: {why}",
            )
            if self._server_down is not None:
                self._server_down(address)
        else:
            _log.debug(
                "cluster {cluster}: health check of {server} failed: {why}",
                cluster=cluster,
                server=address,
                why=why,
            )

    def detect_succeeded(self, cluster: str, address: str) -> None:
        """
        An active check of C{address} succeeded.
        """
        if self.table.detect_succeeded(cluster, address, self._now()):
            self._recovered(cluster, address, "an active check succeeded")

    def _congested(self, cluster: str, address: str, why: str) -> None:
        if self._stats is not None:
            self._stats.servers_congested += 1
        _log.warn(
            "cluster {cluster}: server {server} is avoided ({why})",
            cluster=cluster,
            server=address,
            why=why,
        )

    def _recovered(self, cluster: str, address: str, why: str) -> None:
        if self._stats is not None:
            self._stats.servers_recovered += 1
        _log.info(
            "cluster {cluster}: server {server} is back ({why})",
            cluster=cluster,
            server=address,
            why=why,
        )

    def snapshot(self, cluster: str | None = None, raw_times: bool = False) -> List[Dict[str, Any]]:
        """
        The entries as SHOW PROXYCONGESTION rows: dicts by column name, in ODP's order, plus
        C{congested}.

        @param cluster: only this cluster's servers.
        @param raw_times: times as seconds (C{0}: never) instead of their text.
        """
        show: Callable[[float], Any] = (lambda t: t) if raw_times else format_time
        window = self._config().congestion_fail_window
        now = self._now()
        rows = []
        for e in self.table.entries(cluster):
            conn_events, alive_events = e.failure_events(window, now)
            rows.append(
                {
                    "cluster_name": e.cluster,
                    "zone_name": "",
                    "region_name": "",
                    "zone_state": "ACTIVE",
                    "server_ip": e.server,
                    "cr_version": 0,
                    "server_state": e.server_state,
                    "alive_congested": int(e.alive_congested),
                    "last_alive_congested": show(e.last_alive_congested),
                    "dead_congested": int(e.dead_congested),
                    "last_dead_congested": show(e.last_dead_congested),
                    "stat_alive_failures": e.stat_alive_failures,
                    "stat_conn_failures": e.stat_conn_failures,
                    "conn_last_fail_time": show(e.conn_last_fail_time),
                    "conn_failure_events": conn_events,
                    "alive_last_fail_time": show(e.alive_last_fail_time),
                    "alive_failure_events": alive_events,
                    "ref_count": 0,
                    "detect_congested": int(e.detect_congested),
                    "last_detect_congested": show(e.last_detect_congested),
                    "congested": e.congested,
                }
            )
        return rows


def drop_sessions_to(manager: Any, address: str) -> int:
    """
    Abort every server session to C{address} (the active checker found the server down, as
    ODP closes its connections to a server detected dead): the shared pool's idle ones, and
    the client sessions' own. A client session then sees its server session lost: replaced
    transparently when idle outside a transaction, a clear error otherwise (the server hangs
    or is gone, so its answer would never come anyway).

    @param manager: the L{obproxy_tx.session.manager.SessionManager}.
    @return: how many were aborted.
    """
    dropped = 0
    while manager.session_pool.close_idle(address):
        dropped += 1
    for client in list(manager.client_sessions.values()):
        for ss in client.server_sessions:
            if ss.server.address == address:
                ss.abort()
                dropped += 1
    if dropped:
        _log.info(
            "server {server} is down: aborted {count} server sessions to it",
            server=address,
            count=dropped,
        )
    return dropped
