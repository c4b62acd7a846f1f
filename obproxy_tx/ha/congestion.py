"""
Congestion control: which backend servers new server sessions should avoid (issue 6, ODP's
congestion entries, odp-reference.md sections 9 and 10).

Pure: no Twisted, no I/O. The caller passes the time (C{reactor.seconds()}) and reports what it
saw; L{CongestionTable} decides. One L{CongestionEntry} per (cluster, server), with ODP's fields:

  - I{dead congested}: C{congestion_failure_threshold} connect failures (refused, timed out,
    lost during the login) within C{congestion_fail_window} seconds. A dead server gets no new
    server sessions, except one trial connection each C{congestion_retry_interval} after its
    last failure.
  - I{alive congested}: the server answers but refuses to serve (ERR codes in
    L{UNAVAILABLE_CODES}: OceanBase's initializing / stopping / tenant-not-here, MariaDB's
    shutdown in progress or too many connections) that many times within the window; avoided
    the same way.
  - I{detect congested}: the active checker (L{obproxy_tx.ha.health}) failed
    C{server_detect_fail_threshold} times in a row; avoided until a check succeeds.

Recovery (ODP's C{check_and_set_alive}): a successful login to a dead-congested server frees it
if it has been dead for at least C{min_keep_congestion_interval}; before that it becomes alive
congested instead (still avoided, freed by the next success after that interval). A successful
active check frees every kind of congestion at once: the server greeted us, so it is up.

L{CongestionTable.order} puts a cluster's servers in the order new sessions should try them:
usable ones first, then the congested ones whose trial is due, then the rest by how long ago they
last failed, so a request is never refused without trying a server when all are congested.
"""

from __future__ import annotations

import collections
import time
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Sequence,
    Set,
    Tuple,
    TypeVar,
)

import attrs

__all__ = [
    "UNAVAILABLE_CODES",
    "CongestionConfig",
    "CongestionEntry",
    "CongestionTable",
    "follow_config",
    "format_time",
    "means_unavailable",
]

#: ERR codes that mean "this server cannot serve now" (counted as alive failures):
#: OceanBase 8001 server initializing, 8002 server stopping, 5150 tenant not in server,
#: 4124 connect error, 4661 session entry exists (the codes ODP moves to the next server on);
#: MariaDB/MySQL 1053 server shutdown in progress, 1040 too many connections (ER_CON_COUNT_ERROR),
#: 1203 too many connections of this user (ER_TOO_MANY_USER_CONNECTIONS, a proxy in front),
#: and the client-library connect errors 2002/2003 (can't connect) and 2013 (lost during the
#: handshake) when another proxy relays them as ERR packets.
UNAVAILABLE_CODES: FrozenSet[int] = frozenset(
    {8001, 8002, 5150, 4124, 4661, 1053, 1040, 1203, 2002, 2003, 2013}
)


def means_unavailable(error_code: int) -> bool:
    """
    Whether an ERR with C{error_code} in answer to a login or request says the server cannot
    serve now (rather than something about the client's request or credentials).
    """
    return error_code in UNAVAILABLE_CODES


@attrs.frozen
class CongestionConfig:
    """
    The config items congestion control follows (ODP's names and defaults).

    @ivar enabled: C{enable_congestion}: when off, nothing is ever avoided (failures are still
        counted for SHOW PROXYCONGESTION).
    @ivar failure_threshold: C{congestion_failure_threshold}: failures within the window that
        congest a server; C{0} or less: never congested by failures.
    @ivar fail_window: C{congestion_fail_window} in seconds.
    @ivar retry_interval: C{congestion_retry_interval} in seconds: how long after its last
        failure a congested server gets one trial connection.
    @ivar min_keep_interval: C{min_keep_congestion_interval} in seconds: how long a server
        stays congested at least, however soon it answers again.
    @ivar detect_fail_threshold: C{server_detect_fail_threshold}: failed active checks in a
        row that mark a server detect-congested.
    """

    enabled: bool = True
    failure_threshold: int = 5
    fail_window: float = 120.0
    retry_interval: float = 20.0
    min_keep_interval: float = 20.0
    detect_fail_threshold: int = 3

    @classmethod
    def from_proxy_config(cls, config: Any) -> CongestionConfig:
        """
        The values of a L{obproxy_tx.config.ProxyConfig}.
        """
        return cls(
            enabled=bool(config.enable_congestion),
            failure_threshold=int(config.congestion_failure_threshold),
            fail_window=float(config.congestion_fail_window),
            retry_interval=float(config.congestion_retry_interval),
            min_keep_interval=float(config.min_keep_congestion_interval),
            detect_fail_threshold=int(config.server_detect_fail_threshold),
        )


def follow_config(proxy_config: Callable[[], Any]) -> Callable[[], CongestionConfig]:
    """
    A settings source for L{CongestionTable} that reads C{proxy_config()} (a
    L{obproxy_tx.config.ProxyConfig}) and converts it again only when it was replaced.
    """
    cache: List[Any] = [None, CongestionConfig()]

    def current() -> CongestionConfig:
        config = proxy_config()
        if config is not cache[0]:
            cache[0] = config
            cache[1] = CongestionConfig.from_proxy_config(config)
        result: CongestionConfig = cache[1]
        return result

    return current


@attrs.define
class CongestionEntry:
    """
    What the proxy knows about one server of one cluster; the fields are SHOW PROXYCONGESTION's
    columns (times in seconds as the caller's clock gives them, C{0} for never).

    @ivar cluster: the cluster's name.
    @ivar server: the server's C{host:port}.
    @ivar server_state: C{ACTIVE}, C{DETECT_ALIVE} or C{DETECT_DEAD} (ODP's names; the last
        two once the active checker spoke).
    @ivar dead_congested: connect failures reached the threshold.
    @ivar alive_congested: refusals reached the threshold, or a dead server answered again
        sooner than C{min_keep_congestion_interval}.
    @ivar detect_congested: active checks failed C{server_detect_fail_threshold} times in a row.
    @ivar stat_conn_failures: connect failures ever.
    @ivar stat_alive_failures: refusals ever.
    @ivar detect_failures: failed active checks in a row.
    @ivar next_trial: when a congested server may get its next trial connection.
    """

    cluster: str
    server: str
    server_state: str = "ACTIVE"
    alive_congested: bool = False
    last_alive_congested: float = 0.0
    dead_congested: bool = False
    last_dead_congested: float = 0.0
    detect_congested: bool = False
    last_detect_congested: float = 0.0
    stat_alive_failures: int = 0
    stat_conn_failures: int = 0
    conn_last_fail_time: float = 0.0
    alive_last_fail_time: float = 0.0
    detect_failures: int = 0
    next_trial: float = 0.0
    conn_events: Deque[float] = attrs.field(factory=collections.deque)
    alive_events: Deque[float] = attrs.field(factory=collections.deque)

    @property
    def congested(self) -> bool:
        """
        Whether the server is congested in any way (ODP's C{is_congested}).
        """
        return self.dead_congested or self.alive_congested or self.detect_congested

    @property
    def last_fail_time(self) -> float:
        """
        The latest failure of any kind (C{0}: never failed).
        """
        return max(self.conn_last_fail_time, self.alive_last_fail_time, self.last_detect_congested)

    def failure_events(self, window: float, now: float) -> Tuple[int, int]:
        """
        C{(conn_failure_events, alive_failure_events)}: failures within the last C{window}
        seconds before C{now}.
        """
        _expire(self.conn_events, now - window)
        _expire(self.alive_events, now - window)
        return len(self.conn_events), len(self.alive_events)


def _expire(events: Deque[float], oldest: float) -> None:
    while events and events[0] <= oldest:
        events.popleft()


#: How many failure times an entry keeps per kind: the threshold never needs more (ODP bounds
#: its history the same way).
_MAX_EVENTS = 1024

_S = TypeVar("_S")
_R = TypeVar("_R")


def _tracks(
    report: Callable[[CongestionTable, str, str, float], _R],
) -> Callable[[CongestionTable, str, str, float], _R]:
    """
    Keep L{CongestionTable.has_congestion} current after a report about one server.
    """

    def tracked(table: CongestionTable, cluster: str, server: str, now: float) -> _R:
        result = report(table, cluster, server, now)
        entry = table._entries.get((cluster, server))
        if entry is not None and entry.congested:
            table._congested.add((cluster, server))
        else:
            table._congested.discard((cluster, server))
        return result

    tracked.__name__ = report.__name__
    tracked.__doc__ = report.__doc__
    return tracked


class CongestionTable:
    """
    The congestion entries of every cluster's servers, and the decisions made from them.
    """

    def __init__(self, config: Callable[[], CongestionConfig]) -> None:
        """
        @param config: the current settings (read at each decision, so that ALTER PROXYCONFIG
            takes effect at once).
        """
        self._config = config
        self._entries: Dict[Tuple[str, str], CongestionEntry] = {}
        self._congested: Set[Tuple[str, str]] = set()

    @property
    def has_congestion(self) -> bool:
        """
        Whether any server is congested (while none is, the decisions have nothing to do).
        """
        return bool(self._congested)

    # -- lookups ----------------------------------------------------------------------------

    def entry(self, cluster: str, server: str) -> CongestionEntry:
        """
        The entry of C{server} in C{cluster}, made on first use.
        """
        key = (cluster, server)
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = CongestionEntry(cluster, server)
        return found

    def entries(self, cluster: str | None = None) -> List[CongestionEntry]:
        """
        Every entry (of C{cluster} when given), by cluster then server.
        """
        return [
            e for key, e in sorted(self._entries.items()) if cluster is None or key[0] == cluster
        ]

    def known(self, cluster: str, servers: Iterable[str]) -> None:
        """
        Make entries for C{servers} (so SHOW PROXYCONGESTION ALL lists every configured server,
        as ODP lists every server of its server list).
        """
        for server in servers:
            self.entry(cluster, server)

    def forget(self, cluster: str, server: str) -> None:
        """
        Drop the entry of C{server} in C{cluster} (a reload removed the server from the
        cluster: SHOW PROXYCONGESTION lists the configured servers only).
        """
        key = (cluster, server)
        self._entries.pop(key, None)
        self._congested.discard(key)

    # -- reports ----------------------------------------------------------------------------

    @_tracks
    def connect_failed(self, cluster: str, server: str, now: float) -> bool:
        """
        A connection to C{server} failed (refused, timed out, lost before the login ended).

        @return: whether this made the server dead-congested.
        """
        config = self._config()
        entry = self.entry(cluster, server)
        entry.stat_conn_failures += 1
        entry.conn_last_fail_time = now
        _record(entry.conn_events, now, now - config.fail_window)
        # A failed trial pushes the next one a whole interval away.
        entry.next_trial = now + config.retry_interval
        if entry.dead_congested or config.failure_threshold <= 0:
            return False
        if len(entry.conn_events) >= config.failure_threshold:
            entry.dead_congested = True
            entry.last_dead_congested = now
            return True
        return False

    @_tracks
    def alive_failed(self, cluster: str, server: str, now: float) -> bool:
        """
        C{server} answered but refused to serve (L{means_unavailable}).

        @return: whether this made the server alive-congested.
        """
        config = self._config()
        entry = self.entry(cluster, server)
        entry.stat_alive_failures += 1
        entry.alive_last_fail_time = now
        _record(entry.alive_events, now, now - config.fail_window)
        entry.next_trial = now + config.retry_interval
        if entry.alive_congested or config.failure_threshold <= 0:
            return False
        if len(entry.alive_events) >= config.failure_threshold:
            entry.alive_congested = True
            entry.last_alive_congested = now
            return True
        return False

    @_tracks
    def succeeded(self, cluster: str, server: str, now: float) -> bool:
        """
        A server session to C{server} logged in (ODP's C{check_and_set_alive}).

        @return: whether the server is now free of congestion it had before.
        """
        entry = self._entries.get((cluster, server))
        if entry is None or not (entry.dead_congested or entry.alive_congested):
            return False
        keep = self._config().min_keep_interval
        if entry.dead_congested:
            entry.dead_congested = False
            if now - entry.last_dead_congested >= keep:
                entry.alive_congested = False
                return not entry.detect_congested
            # Answering again too soon after dying: alive-congested for the rest of the time,
            # counted as an alive failure now (ODP does the same), so the next trial waits.
            entry.stat_alive_failures += 1
            entry.alive_last_fail_time = now
            entry.next_trial = now + self._config().retry_interval
            if not entry.alive_congested:
                entry.alive_congested = True
                entry.last_alive_congested = now
            return False
        if now - entry.last_alive_congested >= keep:
            entry.alive_congested = False
            return not entry.detect_congested
        return False

    @_tracks
    def detect_failed(self, cluster: str, server: str, now: float) -> bool:
        """
        An active check of C{server} failed.

        @return: whether this made the server detect-congested.
        """
        entry = self.entry(cluster, server)
        entry.detect_failures += 1
        if entry.detect_congested:
            return False
        if entry.detect_failures >= max(1, self._config().detect_fail_threshold):
            entry.detect_failures = 0
            entry.detect_congested = True
            entry.last_detect_congested = now
            entry.server_state = "DETECT_DEAD"
            return True
        return False

    @_tracks
    def detect_succeeded(self, cluster: str, server: str, now: float) -> bool:
        """
        An active check of C{server} succeeded: the server is up, whatever passive failures
        said (ODP's C{DETECT_ALIVE}).

        @return: whether the server was congested before.
        """
        entry = self.entry(cluster, server)
        was = entry.congested
        entry.detect_failures = 0
        entry.server_state = "DETECT_ALIVE"
        entry.detect_congested = False
        entry.dead_congested = False
        entry.alive_congested = False
        entry.conn_events.clear()
        entry.alive_events.clear()
        entry.next_trial = 0.0
        return was

    # -- decisions --------------------------------------------------------------------------

    def avoided(self, cluster: str, server: str, now: float) -> bool:
        """
        Whether new server sessions should avoid C{server} right now (congested, and not due
        for a trial); never when congestion control is off.
        """
        if not self._config().enabled:
            return False
        entry = self._entries.get((cluster, server))
        return entry is not None and self._avoided(entry, now)

    @staticmethod
    def _avoided(entry: CongestionEntry, now: float) -> bool:
        # Congested and not due for a trial (a detect-congested one waits for the checker).
        if not entry.congested:
            return False
        return entry.detect_congested or now < entry.next_trial

    def order(
        self, cluster: str, servers: Sequence[_S], now: float, address: Callable[[_S], str]
    ) -> List[_S]:
        """
        C{servers} in the order new server sessions should try them: the usable ones (in the
        given order), then the congested ones by their last failure, oldest first (the least
        recently failed is the likeliest to be back). A congested server due for a trial counts
        as usable; whoever tries it calls L{claim} first, so that one connection probes it, not
        every client at once.

        @param address: a server's C{host:port}.
        """
        if not self._congested or not self._config().enabled:
            return list(servers)
        usable: List[_S] = []
        congested: List[Tuple[float, int, _S]] = []
        for index, server in enumerate(servers):
            entry = self._entries.get((cluster, address(server)))
            if entry is None or not self._avoided(entry, now):
                usable.append(server)
            else:
                congested.append((entry.last_fail_time, index, server))
        congested.sort(key=lambda item: (item[0], item[1]))
        return usable + [server for _, _, server in congested]

    def claim(self, cluster: str, server: str, now: float) -> None:
        """
        A connection to C{server} is about to be tried: when it is congested, its next trial is
        a C{congestion_retry_interval} away (the connection's outcome decides the rest).
        """
        entry = self._entries.get((cluster, server))
        if entry is not None and entry.congested:
            entry.next_trial = max(entry.next_trial, now + self._config().retry_interval)

    def all_avoided(self, cluster: str, servers: Iterable[str], now: float) -> bool:
        """
        Whether every one of C{servers} is avoided right now.
        """
        return all(self.avoided(cluster, s, now) for s in servers)


def _record(events: Deque[float], now: float, oldest: float) -> None:
    _expire(events, oldest)
    events.append(now)
    while len(events) > _MAX_EVENTS:
        events.popleft()


def format_time(seconds: float) -> str:
    """
    A time as SHOW PROXYCONGESTION shows it: C{YYYY-MM-DD HH:MM:SS} in local time, or C{"0"}
    for never (as ODP prints an unset time).
    """
    if not seconds:
        return "0"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
