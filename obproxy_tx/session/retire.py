"""
Clusters changed while running (a C{SIGHUP} reload): how the session manager
applies L{ClusterChanges<obproxy_tx.config_diff.ClusterChanges>}.

L{ClusterReload.apply} runs once the new configuration is the manager's:

  - every client session's C{cluster} becomes the new
    L{ClusterConfig<obproxy_tx.config.ClusterConfig>} of the same name, so its
    next server session is picked among the new servers (added servers are
    used at once, removed ones no more), and read/write split routing sees the
    new roles; logged-in sessions keep their login (a user removed or whose
    password changed goes on until it quits: new logins use the new entries);
  - per-cluster caches made from the old objects are dropped: the backend
    user directories (rebuilt from the new cluster on their next lookup), and
    for removed clusters their greetings and server turns;
  - congestion entries of servers no longer primaries of a cluster are
    dropped and new servers get theirs (C{SHOW PROXYCONGESTION ALL} lists the
    configured servers); the replica monitor checks new replicas at once and
    forgets removed ones;
  - a L{Retirement} closes what the old configuration left behind: server
    sessions to retired servers once they hold nothing (the client session
    gets a new one elsewhere on its next request, as after an idle server
    session was lost; one serving a request or holding a transaction, lock,
    temporary table or cursor finishes first), the shared pool's sessions to
    addresses no cluster lists, and the client sessions of removed clusters,
    each closed as a drain closes it (L{obproxy_tx.session.drain}: at once
    when idle outside a transaction, else once its request or transaction
    ends) with C{ERR 1053} naming the cluster. At C{graceful_shutdown_timeout}
    after the reload the rest is closed (a statement still running is stopped
    with C{KILL QUERY} first).

The decisions are pure (L{obproxy_tx.config_diff.server_session_step},
L{obproxy_tx.session.drain.decide}); this module looks at the sessions and acts.
"""

from __future__ import annotations

from typing import Any, Set, Tuple

from twisted.python.failure import Failure

from obproxy_tx.config import ProxyConfig
from obproxy_tx.config_diff import ClusterChanges, SessionStep, server_session_step
from obproxy_tx.logs import Logger
from obproxy_tx.session.drain import (
    ER_SERVER_SHUTDOWN,
    DrainStep,
    decide,
    view_of,
    write_last_error,
)
from obproxy_tx.tls import users_may_require_tls
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.packets import ERRPacket

__all__ = ["TICK", "ClusterReload", "Retirement", "cluster_removed_error"]

TICK = 0.1
"""Seconds between two looks at what is left to close. Only the client
sessions of removed clusters and the server sessions to retired servers are
acted on; a reload is rare and the retirement ends once they are gone."""

_log = Logger(namespace="obproxy_tx.session.retire")


def cluster_removed_error(cluster: str, capabilities: int = Capability.CLIENT_PROTOCOL_41) -> bytes:
    """
    The framed ERR (sequence id 0, outside any command, as a server's shutdown
    message) a client session of a removed cluster reads on its next command.

    @param cluster: the cluster's name.
    @param capabilities: the capabilities agreed with the client.
    """
    payload = ERRPacket(
        ER_SERVER_SHUTDOWN,
        f"Cluster '{cluster}' was removed from the proxy's configuration",
        "08S01",
    ).encode(Capability(capabilities))
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


class Retirement:
    """
    Closes what one reload retired (see the module docstring), until nothing
    is left.

    @ivar pairs: C{(cluster, address)} of servers no longer primaries of their cluster.
    @ivar clusters: names of the removed clusters.
    @ivar gone: addresses no cluster lists any more.
    @ivar past_deadline: C{graceful_shutdown_timeout} passed.
    @ivar finished: nothing is left (or a later reload listed everything again).
    @ivar closed_servers: server sessions it closed.
    @ivar closed_clients: client sessions it closed.
    """

    def __init__(
        self,
        manager: Any,
        changes: ClusterChanges,
        timeout: float,
        settle: float,
        *,
        tick: float = TICK,
        on_finish: Any = None,
    ) -> None:
        """
        @param manager: the session manager.
        @param changes: what the reload changed.
        @param timeout: seconds until the rest is closed (C{graceful_shutdown_timeout}).
        @param settle: it runs at least this long, so server sessions being
            connected to a retired server at the reload (and logins to a
            removed cluster under way) are found once they exist.
        @param tick: see L{TICK}.
        @param on_finish: called with no argument once it finished.
        """
        self.manager = manager
        self.reactor = manager.reactor
        self.pairs: Set[Tuple[str, str]] = set(changes.retired)
        self.clusters: Set[str] = set(changes.removed)
        self.gone: Set[str] = set(changes.gone)
        self.timeout = max(0.0, float(timeout))
        self.settle = max(0.0, float(settle))
        self.past_deadline = False
        self.finished = False
        self.closed_servers = 0
        self.closed_clients = 0
        self._tick = tick
        self._on_finish = on_finish
        self._started_at = 0.0
        self._call: Any = None
        self._deadline_call: Any = None
        # Objects already closed (their connections end on their own).
        self._closing: Set[Any] = set()
        self._killed: Set[Any] = set()

    @property
    def empty(self) -> bool:
        """
        Whether there is nothing to retire.
        """
        return not (self.pairs or self.clusters or self.gone)

    def start(self) -> None:
        """
        Look at once, then every tick; arm the deadline.
        """
        self._started_at = self.reactor.seconds()
        self._deadline_call = self.reactor.callLater(self.timeout, self._deadline)
        self._look()

    def restore(self, config: ProxyConfig) -> None:
        """
        A later reload: what it lists again is not retired any more.
        """
        listed: Set[str] = set()
        for cluster in config.clusters:
            listed.update(server.address for server in cluster.servers)
            listed.update(server.address for server in cluster.replicas)
            self.pairs.difference_update(
                {(cluster.name, server.address) for server in cluster.servers}
            )
            self.clusters.discard(cluster.name)
        self.gone.difference_update(listed)
        if self.empty:
            self._finish()

    def stop(self) -> None:
        """
        Stop looking (the manager stops; its drain closes every session).
        """
        self._finish()

    # -- inside -----------------------------------------------------------------------

    def _deadline(self) -> None:
        self._deadline_call = None
        if self.finished:
            return
        self.past_deadline = True
        self._look()

    def _look(self) -> None:
        self._call = None
        if self.finished:
            return
        left = self._close_clients() + self._close_server_sessions() + self._close_pooled()
        settled = self.reactor.seconds() - self._started_at >= self.settle
        if not left and settled:
            self._finish()
            return
        self._call = self.reactor.callLater(self._tick, self._look)

    def _close_clients(self) -> int:
        if not self.clusters:
            return 0
        left = 0
        for session in list(self.manager.client_sessions.values()):
            cluster = session.cluster
            if cluster is None or cluster.name not in self.clusters:
                continue
            left += 1
            if session in self._closing:
                continue
            if decide(view_of(session), self.past_deadline) is DrainStep.CLOSE:
                self._close_client(session, cluster.name)
        return left

    def _close_client(self, session: Any, cluster: str) -> None:
        self._closing.add(session)
        self.closed_clients += 1
        active = session.active
        if active is not None and getattr(active, "alive", False) and active.backend_id:
            # Past the deadline with a statement running: stop it there too.
            self._kill(session, active)
        write_last_error(session, lambda capabilities: cluster_removed_error(cluster, capabilities))
        _log.info(
            "client session {cs_id}: closed, its cluster {cluster} was removed",
            cs_id=session.cs_id,
            cluster=cluster,
        )
        session.close()

    def _close_server_sessions(self) -> int:
        if not self.pairs:
            return 0
        left = 0
        for session in list(self.manager.client_sessions.values()):
            cluster = session.cluster
            if cluster is None or session in self._closing:
                continue
            name = cluster.name
            for ss in session.server_sessions:
                if (name, ss.server.address) not in self.pairs or not ss.alive:
                    continue
                left += 1
                if ss in self._closing:
                    continue
                serving = ss is session.active
                step = server_session_step(
                    serving=serving,
                    bound=ss is session.bound,
                    pinned=bool(session.pin_reasons),
                    past_deadline=self.past_deadline,
                )
                if step is SessionStep.CLOSE:
                    if serving and ss.backend_id:
                        self._kill(session, ss)
                    self._closing.add(ss)
                    self.closed_servers += 1
                    _log.info(
                        "client session {cs_id}: server session {ss_id} to {server} closed, "
                        "the server was removed from cluster {cluster}",
                        cs_id=session.cs_id,
                        ss_id=ss.ss_id,
                        server=ss.server.address,
                        cluster=name,
                    )
                    ss.close(quit=True)
        return left

    def _close_pooled(self) -> int:
        if not self.gone:
            return 0
        pool = self.manager.session_pool
        for address in self.gone:
            while pool.close_idle(address):
                self.closed_servers += 1
        # Sessions being reset when released are pooled (then closed here) or closed.
        return sum(1 for ss in pool if ss.server.address in self.gone)

    def _kill(self, session: Any, ss: Any) -> None:
        if ss in self._killed:
            return
        self._killed.add(ss)
        killing = session.side_query(b"KILL QUERY %d" % ss.backend_id, ss.server)
        killing.addErrback(self._kill_failed, session)

    @staticmethod
    def _kill_failed(failure: Failure, session: Any) -> None:
        _log.info(
            "client session {cs_id}: KILL QUERY at the reload deadline failed: {error}",
            cs_id=session.cs_id,
            error=failure.getErrorMessage(),
        )

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for call in (self._call, self._deadline_call):
            if call is not None and call.active():
                call.cancel()
        self._call = self._deadline_call = None
        self._closing.clear()
        self._killed.clear()
        health = self.manager.health
        for cluster, address in self.pairs:
            # Outcomes of connects under way at the reload may have made entries again.
            health.forget(cluster, address)
        if self.closed_servers or self.closed_clients:
            _log.info(
                "reload: retired {servers} server session(s) and {clients} client "
                "session(s) of removed servers and clusters",
                servers=self.closed_servers,
                clients=self.closed_clients,
            )
        if self._on_finish is not None:
            self._on_finish()


class ClusterReload:
    """
    Applies cluster changes to a session manager (see the module docstring).

    @ivar retirements: the retirements still running.
    """

    def __init__(self, manager: Any) -> None:
        """
        @param manager: the L{SessionManager<obproxy_tx.session.manager.SessionManager>}.
        """
        self.manager = manager
        self.retirements: list[Retirement] = []

    def apply(self, changes: ClusterChanges, config: ProxyConfig) -> Retirement | None:
        """
        Apply C{changes}; C{config} is already the manager's configuration.

        @return: the retirement started, or C{None} when nothing was retired.
        """
        manager = self.manager
        by_name = {cluster.name: cluster for cluster in config.clusters}
        for session in list(manager.client_sessions.values()):
            cluster = session.cluster
            if cluster is not None:
                current = by_name.get(cluster.name)
                if current is not None and current is not cluster:
                    session.cluster = current
        for name in changes.removed:
            manager.forget_cluster(name)
        for delta in changes.changed:
            # The directory reads users through the old cluster's servers and settings.
            manager.forget_user_directory(delta.name)
            if "type" in delta.settings:
                manager.greetings.pop(delta.name, None)
        # A user entry added by the reload may require TLS: plain-text logins check again.
        manager.tls.checks_users = users_may_require_tls(config.clusters)
        health = manager.health
        for cluster, address in changes.retired:
            health.forget(cluster, address)
        health.known(config.clusters)
        manager.replica_monitor.reconfigured()
        for running in self.retirements:
            running.restore(config)
        self.retirements = [r for r in self.retirements if not r.finished]
        _log.info("reload: clusters changed: {changes}", changes=changes.describe())
        # Connects under way end within two short_async_task_timeouts (connect,
        # login); a login to a removed cluster under way ends by client_login_timeout.
        settle = 2 * config.short_async_task_timeout
        if changes.removed:
            settle = max(settle, config.client_login_timeout)
        retirement = Retirement(
            manager,
            changes,
            config.graceful_shutdown_timeout,
            settle,
            on_finish=self._follow_pool,
        )
        if not retirement.empty:
            self.retirements.append(retirement)
            retirement.start()
        self._follow_pool()
        return None if retirement.finished or retirement.empty else retirement

    def retiring(self, address: str) -> bool:
        """
        Whether no cluster lists C{address} any more while a retirement runs:
        the shared pool keeps no session released to it.
        """
        return any(address in r.gone for r in self.retirements if not r.finished)

    def stop(self) -> None:
        """
        Stop every retirement (the manager stops).
        """
        for retirement in self.retirements:
            retirement.stop()
        self.retirements = []

    def _follow_pool(self) -> None:
        # The shared pool asks `wanted` before keeping a released session (a
        # True closes it). Only while addresses are retiring does it ask us too,
        # so releases pay nothing for reloads otherwise.
        self.retirements = [r for r in self.retirements if not r.finished]
        pool, slots = self.manager.session_pool, self.manager.server_slots.wanted
        if any(r.gone for r in self.retirements):
            retiring = self.retiring
            pool.wanted = lambda address: retiring(address) or slots(address)
        else:
            pool.wanted = slots
