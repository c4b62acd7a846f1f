"""
The replica monitor of the read/write split: which replicas may take weak reads (issue 6).

Every C{replica_check_interval} the monitor reads each replica's C{SHOW SLAVE STATUS} (MySQL
8's C{SHOW REPLICA STATUS} names are understood too) through the C{metadata_user} account over
one kept connection per replica. A replica is usable while

  - both replication threads run (C{Slave_IO_Running} and C{Slave_SQL_Running} are C{Yes}), and
  - C{Seconds_Behind_Master} is known and at most C{max_replica_lag} (0: no limit).

A replica that is not replicating (empty status), does not answer within
C{short_async_task_timeout}, refuses the metadata login, or whose monitor connection is lost
(a crash is seen at once that way) is out until a later check finds it usable again. A replica
is out until its first check. On OceanBase clusters, which have no C{SHOW SLAVE STATUS}, a
replica that answers C{SELECT 1} is usable.

The decisions are pure (L{parse_status}, L{judge}, L{ReplicaTable}); L{ReplicaMonitor} is the
thin Twisted poller that feeds them.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Mapping, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger

__all__ = [
    "ReplicaHealth",
    "ReplicaMonitor",
    "ReplicaTable",
    "ReplicationStatus",
    "Verdict",
    "judge",
    "parse_status",
]

# SHOW SLAVE STATUS names, with SHOW REPLICA STATUS's after them.
_IO = ("Slave_IO_Running", "Replica_IO_Running")
_SQL = ("Slave_SQL_Running", "Replica_SQL_Running")
_LAG = ("Seconds_Behind_Master", "Seconds_Behind_Source")
_ERRORS = ("Last_IO_Error", "Last_SQL_Error", "Last_Error")


@attrs.frozen
class ReplicationStatus:
    """
    One reading of a replica's replication.

    @ivar io_running: the IO thread runs (C{Yes}; C{Connecting} is not running).
    @ivar sql_running: the SQL thread runs.
    @ivar lag: C{Seconds_Behind_Master}, or C{None} when the server does not know it.
    @ivar error: the last IO or SQL error, or C{""}.
    """

    io_running: bool
    sql_running: bool
    lag: float | None
    error: str = ""


@attrs.frozen
class Verdict:
    """
    Whether a replica may take weak reads, and why not.

    @ivar usable: it may.
    @ivar reason: why it may not (C{""} when usable).
    @ivar lag: the lag seen, if any.
    """

    usable: bool
    reason: str = ""
    lag: float | None = None


def _first(row: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if name in row:
            return row[name]
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def parse_status(row: Mapping[str, Any] | None) -> ReplicationStatus | None:
    """
    A C{SHOW SLAVE STATUS} (or C{SHOW REPLICA STATUS}) row, by column name; C{None} for no row
    (the server is not a replica).
    """
    if not row:
        return None
    lag_text = _text(_first(row, _LAG)).strip()
    try:
        lag: float | None = float(lag_text) if lag_text else None
    except ValueError:
        lag = None
    errors = [_text(row.get(name)).strip() for name in _ERRORS]
    return ReplicationStatus(
        io_running=_text(_first(row, _IO)).strip().lower() == "yes",
        sql_running=_text(_first(row, _SQL)).strip().lower() == "yes",
        lag=lag,
        error=next((error for error in errors if error), ""),
    )


def judge(status: ReplicationStatus | None, max_lag: float) -> Verdict:
    """
    Whether a replica with this replication status may take weak reads.

    @param status: the reading (C{None}: the server replicates from nothing).
    @param max_lag: C{max_replica_lag} in seconds; 0: no limit.
    """
    if status is None:
        return Verdict(False, "not replicating (SHOW SLAVE STATUS is empty)")
    stopped = [
        name
        for name, running in (("IO", status.io_running), ("SQL", status.sql_running))
        if not running
    ]
    if stopped:
        reason = f"replication {' and '.join(stopped)} thread{'s' if len(stopped) > 1 else ''}"
        reason += " not running"
        if status.error:
            reason += f": {status.error}"
        return Verdict(False, reason, status.lag)
    if status.lag is None:
        return Verdict(False, "replication lag unknown (Seconds_Behind_Master is NULL)")
    if max_lag and status.lag > max_lag:
        return Verdict(
            False,
            f"{status.lag:g} s behind its primary (max_replica_lag {max_lag:g} s)",
            status.lag,
        )
    return Verdict(True, "", status.lag)


@attrs.define
class ReplicaHealth:
    """
    What the monitor knows about one replica.

    @ivar address: the replica's C{ip:port}.
    @ivar usable: it may take weak reads.
    @ivar reason: why not (C{""} when usable).
    @ivar lag: the last lag seen (seconds), if any.
    @ivar checked_at: when it was last judged (reactor seconds), or C{None}.
    @ivar changed_at: when C{usable} last changed, or C{None}.
    @ivar checks: how many times it was judged.
    """

    address: str
    usable: bool = False
    reason: str = "not checked yet"
    lag: float | None = None
    checked_at: float | None = None
    changed_at: float | None = None
    checks: int = 0


class ReplicaTable:
    """
    The replicas' health, by address, and the choice of a replica for a weak read.
    """

    def __init__(self) -> None:
        self._health: dict[str, ReplicaHealth] = {}
        self._turns: dict[tuple[str, ...], Iterator[int]] = {}

    def health(self, address: str) -> ReplicaHealth:
        """
        What is known about the replica at C{address} (out and unchecked if nothing).
        """
        known = self._health.get(address)
        if known is None:
            known = self._health[address] = ReplicaHealth(address)
        return known

    def __iter__(self) -> Iterator[ReplicaHealth]:
        return iter(list(self._health.values()))

    def forget(self, address: str) -> None:
        """
        Drop what is known about the replica at C{address} (a reload removed it).
        """
        self._health.pop(address, None)

    def record(self, address: str, verdict: Verdict, now: float) -> bool:
        """
        Keep a verdict on a replica.

        @return: whether it changed the replica's usability.
        """
        health = self.health(address)
        changed = health.checks == 0 or health.usable != verdict.usable
        flipped = health.usable != verdict.usable
        health.usable = verdict.usable
        health.reason = verdict.reason
        health.lag = verdict.lag
        health.checked_at = now
        health.checks += 1
        if changed:
            health.changed_at = now
        return flipped

    def usable(self, address: str) -> bool:
        """
        Whether the replica at C{address} may take weak reads now.
        """
        known = self._health.get(address)
        return known is not None and known.usable

    def choose(self, replicas: Sequence[Any], prefer: str | None = None) -> Any:
        """
        A usable replica among C{replicas} (L{BackendServer<obproxy_tx.config.BackendServer>}s):
        C{prefer} (the one a client used last) while usable, else the next usable one in turn;
        C{None} when none is usable.
        """
        usable = [server for server in replicas if self.usable(server.address)]
        if not usable:
            return None
        if prefer is not None:
            for server in usable:
                if server.address == prefer:
                    return server
        if len(usable) == 1:
            return usable[0]
        key = tuple(server.address for server in replicas)
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = itertools.count()
        return usable[next(turn) % len(usable)]


#: Opens a logged-in metadata connection to a server: (server) -> Deferred of a connection
#: with C{query(sql)}, C{closed} and C{transport}.
Connector = Callable[[Any], "defer.Deferred[Any]"]


class ReplicaMonitor:
    """
    Polls every replica of every cluster and keeps L{table} up to date.

    @ivar table: the replicas' health.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: Callable[[], Any],
        stats: Any = None,
        connect: Connector | None = None,
    ) -> None:
        """
        @param reactor: the reactor (timers, connections).
        @param config: returns the current L{ProxyConfig<obproxy_tx.config.ProxyConfig>}
            (items are read at each check, so C{ALTER PROXYCONFIG} applies at once).
        @param stats: the proxy's L{ProxyStats<obproxy_tx.session.stats.ProxyStats>}, or
            C{None}.
        @param connect: opens a metadata connection (default: L{obproxy_tx.protocol.client}
            as C{metadata_user}).
        """
        self.reactor = reactor
        self._config = config
        self._stats = stats
        self._connect = connect or self._connect_metadata
        self.table = ReplicaTable()
        self._timers: dict[str, Any] = {}
        self._connections: dict[str, Any] = {}
        self._running = False

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """
        Check every replica now, then every C{replica_check_interval}.
        """
        if self._running:
            return
        self._running = True
        for cluster in self._config().clusters:
            for server in cluster.replicas:
                self.table.health(server.address)
                self._schedule(cluster, server, 0)

    def stop(self) -> None:
        """
        Stop checking and close the monitor connections.
        """
        self._running = False
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        for connection in list(self._connections.values()):
            self._close(connection)
        self._connections.clear()

    def choose(self, cluster: Any, prefer: str | None = None) -> Any:
        """
        A usable replica of C{cluster}, or C{None} (see L{ReplicaTable.choose}).
        """
        return self.table.choose(cluster.replicas, prefer)

    def reconfigured(self) -> None:
        """
        The clusters changed (a reload): replicas new to the configuration are
        checked at once; removed ones are no longer checked, their monitor
        connections close and their entries go.
        """
        listed = self._listed()
        for address in [a for a in self._timers if a not in listed]:
            timer = self._timers.pop(address)
            if timer.active():
                timer.cancel()
        for address in [a for a in self._connections if a not in listed]:
            self._close(self._connections.pop(address))
        known = set()
        for health in self.table:
            if health.address in listed:
                known.add(health.address)
            else:
                self.table.forget(health.address)
        for address, (cluster, server) in listed.items():
            if address not in known:
                self.table.health(address)
                self._schedule(cluster, server, 0)

    def _listed(self) -> dict[str, tuple[Any, Any]]:
        # Every replica of the current configuration: address -> (cluster, server).
        listed: dict[str, tuple[Any, Any]] = {}
        for cluster in self._config().clusters:
            for server in cluster.replicas:
                listed.setdefault(server.address, (cluster, server))
        return listed

    # -- checks -----------------------------------------------------------------------

    def _schedule(self, cluster: Any, server: Any, delay: float) -> None:
        if not self._running:
            return
        old = self._timers.get(server.address)
        if old is not None and old.active():
            old.cancel()
        self._timers[server.address] = self.reactor.callLater(
            delay, self._check_now, cluster, server
        )

    def _check_now(self, cluster: Any, server: Any) -> None:
        self._timers.pop(server.address, None)
        # The cluster as configured now (a reload may have replaced or removed it).
        current = self._listed().get(server.address)
        if current is None:
            return
        cluster, server = current
        checking = defer.ensureDeferred(self.check(cluster, server))
        checking.addErrback(
            lambda failure: self._log.failure(
                "checking replica {replica}", failure, replica=server.address
            )
        )
        checking.addBoth(
            lambda _: self._schedule(cluster, server, self._config().replica_check_interval)
        )

    async def check(self, cluster: Any, server: Any) -> Verdict:
        """
        Judge one replica now and record the verdict.
        """
        config = self._config()
        timeout = config.short_async_task_timeout
        try:
            connection = self._connections.get(server.address)
            if connection is None:
                connecting = self._connect(server)
                connecting.addTimeout(timeout, self.reactor)
                connection = await connecting
                self._connections[server.address] = connection
                connection.closed.addCallback(lambda _: self._lost(cluster, server, connection))
            mysql = getattr(cluster.type, "value", cluster.type) == "mysql"
            asking = connection.query("SHOW SLAVE STATUS" if mysql else "SELECT 1")
            asking.addTimeout(timeout, self.reactor)
            result = await asking
        except Exception as exc:
            broken = self._connections.pop(server.address, None)
            if broken is not None:
                self._close(broken)
            verdict = Verdict(False, f"no answer from the replica: {_describe(exc)}")
        else:
            if mysql:
                row = dict(zip(result.column_names, result.rows[0])) if result.rows else None
                verdict = judge(parse_status(row), config.max_replica_lag)
            else:
                verdict = Verdict(True)
        self._record(cluster, server, verdict)
        return verdict

    def _lost(self, cluster: Any, server: Any, connection: Any) -> None:
        if self._connections.get(server.address) is not connection:
            return  # replaced, or closed by a failed check that recorded why
        del self._connections[server.address]
        if not self._running:
            return
        self._record(cluster, server, Verdict(False, "monitor connection to the replica lost"))
        # Look again at once: a restart is seen as soon as the replica answers again.
        self._schedule(cluster, server, 0)

    def _record(self, cluster: Any, server: Any, verdict: Verdict) -> None:
        table = self.table
        if server.address not in self._listed():
            return  # removed by a reload while it was checked: no entry again
        first = table.health(server.address).checks == 0
        if table.record(server.address, verdict, self.reactor.seconds()) or first:
            if self._stats is not None and not first:
                self._stats.replica_state_changes += 1
            if verdict.usable:
                self._log.info(
                    "cluster {cluster}: replica {replica} takes weak reads (lag {lag} s)",
                    cluster=cluster.name,
                    replica=server.address,
                    lag="?" if verdict.lag is None else f"{verdict.lag:g}",
                )
            else:
                self._log.warn(
                    "cluster {cluster}: replica {replica} takes no weak reads: {reason}",
                    cluster=cluster.name,
                    replica=server.address,
                    reason=verdict.reason,
                )

    @staticmethod
    def _close(connection: Any) -> None:
        transport = getattr(connection, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def _connect_metadata(self, server: Any) -> defer.Deferred[Any]:
        from obproxy_tx.protocol.client import connect
        from obproxy_tx.tls import metadata_tls

        config = self._config()
        endpoint = clientFromString(self.reactor, server.endpoint)
        return connect(
            self.reactor,
            endpoint,
            config.metadata_user,
            config.metadata_password,
            timeout=config.short_async_task_timeout,
            # enable_server_ssl: the metadata login over TLS too.
            tls=metadata_tls(config, server),
        )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, defer.TimeoutError) or type(exc).__name__ == "TimeoutError":
        return "timed out"
    return text
