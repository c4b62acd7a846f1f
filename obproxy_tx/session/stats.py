"""
Counters: one L{SessionStats} per client session (C{SHOW PROXYSESSION STAT})
and one L{ProxyStats} per proxy (C{SHOW PROXYSTAT}).

They are plain attributes bumped with C{+= 1} where things happen, so the
request path pays an attribute increment and nothing more; the readers turn
them into rows.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Any, Dict, List, Tuple

import attrs


def _rows(stats: Any) -> List[Tuple[str, int]]:
    return [(field.name, getattr(stats, field.name)) for field in attrs.fields(type(stats))]


@attrs.define
class SessionStats:
    """
    What one client session did.

    @ivar client_requests: commands received from the client (after login).
    @ivar client_queries: of which C{COM_QUERY}.
    @ivar client_ps_executes: of which C{COM_STMT_EXECUTE}.
    @ivar internal_requests: commands the proxy answered itself (admin
        commands, C{COM_PING}, local answers).
    @ivar server_requests: requests relayed to server sessions.
    @ivar sync_requests: requests the proxy sent to bring a server session
        in line with the client session (C{USE}, C{SET}, re-prepares).
    @ivar server_connects: server sessions opened.
    @ivar server_connect_failures: server sessions that could not be opened.
    @ivar server_sessions_lost: server sessions that died under the session.
    @ivar failovers: logins or requests moved to another server.
    @ivar transactions: completed explicit transactions (not autocommit statements).
    """

    client_requests: int = 0
    client_queries: int = 0
    client_ps_executes: int = 0
    internal_requests: int = 0
    server_requests: int = 0
    sync_requests: int = 0
    server_connects: int = 0
    server_connect_failures: int = 0
    server_sessions_lost: int = 0
    failovers: int = 0
    transactions: int = 0

    def rows(self) -> List[Tuple[str, int]]:
        """
        @return: C{(stat_name, value)} for every counter, in declaration order.
        """
        return _rows(self)


@attrs.define
class ProxyStats:
    """
    What the whole proxy did since it started.

    @ivar client_connections: client connections accepted.
    @ivar client_connections_refused: refused at login by C{client_max_connections}.
    @ivar client_logins: successful logins.
    @ivar client_login_failures: failed logins.
    @ivar client_sessions_killed: client sessions ended by C{KILL}.
    @ivar queries_killed: running queries ended by C{KILL QUERY}.
    @ivar server_connects: server sessions opened.
    @ivar server_connect_failures: server sessions that could not be opened.
    @ivar server_sessions_lost: server sessions that died while in use or idle.
    @ivar server_sessions_killed: server sessions ended by C{KILL PROXYSESSION cs ss}.
    @ivar admin_commands: admin commands answered.
    @ivar admin_commands_refused: admin commands answered with an error.
    @ivar config_changes: successful C{ALTER PROXYCONFIG}.
    @ivar server_sessions_pooled: server sessions of clients that quit kept
        for reuse (reset, then pooled).
    @ivar server_sessions_reused: pooled server sessions taken by a client.
    @ivar server_session_resets_failed: pooled server sessions closed because
        their reset failed or went unanswered.
    @ivar user_cap_refusals: logins refused by a per-user cap
        (C{max_connections}, C{user_max_connections}).
    @ivar server_session_waits: new server sessions that had to wait for
        C{server_max_connections}.
    @ivar server_session_wait_timeouts: of those, the ones that gave up
        after C{server_session_wait_timeout}.
    @ivar server_sessions_closed_for_cap: idle shared-pool sessions closed to
        make room under C{server_max_connections}.
    @ivar client_login_timeouts: clients closed by C{client_login_timeout}.
    @ivar client_idle_timeouts: clients closed by their C{wait_timeout}.
    @ivar client_net_read_timeouts: clients closed for stalling mid-packet
        (C{net_read_timeout}).
    @ivar client_net_write_timeouts: clients closed for not reading their
        answer (C{net_write_timeout}).
    @ivar query_timeouts: requests given up because the server did not answer
        in time (C{ob_query_timeout} + C{observer_query_timeout_delta}, or
        C{query_response_timeout}).
    @ivar lost_reads_resent: plain reads sent again to another server after
        their server session was lost before answering (C{retry_lost_reads}).
    @ivar refused_requests_retried: requests sent to another server after
        their server refused them with a cannot-serve-now error.
    @ivar lost_requests_reported: requests lost mid-request outside a
        transaction that got an error while the client session went on.
    @ivar replica_reads: weak reads sent to a replica (read/write split).
    @ivar replica_reads_on_primary: weak reads sent to a primary because no
        replica was usable.
    @ivar replica_state_changes: replicas taken out of or put back into the
        read/write split by the replica monitor.
    @ivar servers_congested: times a server became congested (dead, alive or
        detect congestion), so new server sessions avoided it.
    @ivar servers_recovered: times a congested server was freed again.
    @ivar logins_held: logins held because their client address had too many
        failed logins (C{login_failure_threshold}).
    @ivar logins_blocked: logins refused at once (ERR 1129) because their
        address's held logins already waited C{client_login_timeout}.
    @ivar pending_logins_refused: connections refused at once (ERR 1040)
        because their address had C{max_pending_logins_per_ip}
        connections not logged in yet.
    @ivar abandoned_queries_killed: statements killed on their server
        (C{KILL QUERY}) because their client vanished while they ran.
    @ivar client_bytes_received: bytes read from client connections (requests,
        logins, everything the clients sent).
    @ivar server_bytes_relayed: bytes of server answers relayed to clients.
    """

    client_connections: int = 0
    client_connections_refused: int = 0
    client_logins: int = 0
    client_login_failures: int = 0
    client_sessions_killed: int = 0
    queries_killed: int = 0
    server_connects: int = 0
    server_connect_failures: int = 0
    server_sessions_lost: int = 0
    server_sessions_killed: int = 0
    admin_commands: int = 0
    admin_commands_refused: int = 0
    config_changes: int = 0
    server_sessions_pooled: int = 0
    server_sessions_reused: int = 0
    server_session_resets_failed: int = 0
    user_cap_refusals: int = 0
    server_session_waits: int = 0
    server_session_wait_timeouts: int = 0
    server_sessions_closed_for_cap: int = 0
    client_login_timeouts: int = 0
    client_idle_timeouts: int = 0
    client_net_read_timeouts: int = 0
    client_net_write_timeouts: int = 0
    query_timeouts: int = 0
    lost_reads_resent: int = 0
    refused_requests_retried: int = 0
    lost_requests_reported: int = 0
    replica_reads: int = 0
    replica_reads_on_primary: int = 0
    replica_state_changes: int = 0
    servers_congested: int = 0
    servers_recovered: int = 0
    logins_held: int = 0
    logins_blocked: int = 0
    pending_logins_refused: int = 0
    abandoned_queries_killed: int = 0
    client_bytes_received: int = 0
    server_bytes_relayed: int = 0

    def rows(self) -> List[Tuple[str, int]]:
        """
        @return: C{(stat_name, value)} for every counter, in declaration order.
        """
        return _rows(self)


#: Upper bounds (seconds) of the request latency histogram's buckets; one more
#: bucket past the last counts everything slower (Prometheus' C{+Inf}).
LATENCY_BUCKETS: Tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def command_name(command_class: type) -> str:
    """
    The name a command class is counted under: C{ComStmtExecute} ->
    C{stmt_execute} (the MySQL protocol's C{COM_STMT_EXECUTE}, lower case).

    @param command_class: a command class of L{obproxy_tx.wire.packets}.
    """
    name = command_class.__name__
    if name.startswith("Com"):
        name = name[3:]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class RequestStats:
    """
    Requests relayed to servers, by command: how many, how many were answered
    with an error, and how long they took (a latency histogram with the
    bounds of L{LATENCY_BUCKETS}).

    One call per finished request (L{add}) does a dict lookup, three
    additions and a bisection; the readers (the Prometheus collector) turn
    the table into figures.

    @ivar by_command: command name -> C{[requests, errors, seconds, bucket
        counts...]} (the last bucket is C{+Inf}; counts are per bucket, not
        cumulative).
    @ivar by_class: the same entries by command class (no name is computed
        per request).
    """

    def __init__(self) -> None:
        self.by_command: Dict[str, List[float]] = {}
        self.by_class: Dict[type, List[float]] = {}

    def add(self, command_class: type, failed: bool, seconds: float) -> None:
        """
        Count one finished request.

        @param command_class: the request's command class.
        @param failed: whether the server answered with an error.
        @param seconds: from the proxy reading the request to its answer's end.
        """
        entry = self.by_class.get(command_class)
        if entry is None:
            entry = self.entry_for(command_class)
        entry[0] += 1
        if failed:
            entry[1] += 1
        entry[2] += seconds
        entry[3 + bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def entry_for(self, command_class: type) -> List[float]:
        """
        The entry of a command class, made when first needed.
        """
        name = command_name(command_class)
        entry = self.by_command.get(name)
        if entry is None:
            entry = self.by_command[name] = [0, 0, 0.0] + [0] * (len(LATENCY_BUCKETS) + 1)
        self.by_class[command_class] = entry
        return entry
