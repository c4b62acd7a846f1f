"""
Which timeout applies to a client session, and whether a watched side made
progress: the pure decisions behind the client session's timers.

The timers themselves are lazy: one per kind, armed once and, when it fires,
re-armed for what is left rather than re-scheduled on every packet or request
(a C{callLater} per request would cost more than the request's own Python on
the hot path). When a timer fires, L{Watch} tells whether the watched thing
(a partly received packet, an unread answer, a request) is still the same one,
stuck for the whole timeout, or has moved on.

Timeouts, as ODP takes them (C{odp-reference.md} section 10):

  - net read: the session's C{net_read_timeout} (seconds) when the proxy
    knows it (set by the client or reported by the server), else the
    C{net_read_timeout} item: a client stalled in the middle of a packet.
  - net write: likewise with C{net_write_timeout}: a client that does not read
    what the proxy has to write to it.
  - query: on OceanBase clusters the session's C{ob_query_timeout}
    (microseconds; 10 s when unknown, the observer's default) plus
    C{observer_query_timeout_delta}; on MySQL clusters the
    C{query_response_timeout} item (0: none).
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import attrs

__all__ = [
    "OB_DEFAULT_QUERY_TIMEOUT_US",
    "Watch",
    "query_timeout",
    "session_seconds",
]

#: The observer's default C{ob_query_timeout}: 10 s, in microseconds.
OB_DEFAULT_QUERY_TIMEOUT_US = 10_000_000


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def session_seconds(sys_vars: Mapping[str, Any], name: str, default: float) -> float:
    """
    A timeout in seconds: the session's own variable C{name} when known and
    positive, else C{default} (the config item of the same name).
    """
    value = _number(sys_vars.get(name))
    return value if value > 0 else float(default)


def query_timeout(oceanbase: bool, sys_vars: Mapping[str, Any], config: Any) -> float:
    """
    How long a server may take to answer a request, in seconds (0: no limit).

    @param oceanbase: whether the cluster is an OceanBase one.
    @param sys_vars: the session's tracked system variables.
    @param config: the proxy configuration.
    """
    if oceanbase:
        micros = _number(sys_vars.get("ob_query_timeout"))
        if micros <= 0:
            micros = OB_DEFAULT_QUERY_TIMEOUT_US
        return micros / 1e6 + float(config.observer_query_timeout_delta)
    return float(config.query_response_timeout)


@attrs.define
class Watch:
    """
    One lazy timeout: what was being watched and since when.

    L{start} is called whenever the watched thing may have changed (cheap: it
    only notes a new marker and time); the caller arms a timer when L{armed}
    is false. When the timer fires, L{fired} says what to do.

    @ivar marker: what was watched when it last changed (C{None}: nothing).
    @ivar since: when it last changed (reactor seconds).
    @ivar armed: whether the caller's timer is pending.
    @ivar timer: the caller's timer (kept here so it can be cancelled).
    """

    marker: Hashable = None
    since: float = 0.0
    armed: bool = False
    timer: Any = attrs.field(default=None, repr=False, eq=False)

    def progress(self, now: float) -> None:
        """
        The watched thing moved (bytes came or went): the clock starts again.
        """
        self.since = now

    def cancel(self) -> None:
        """
        Cancel the caller's timer, if pending.
        """
        timer, self.timer = self.timer, None
        self.armed = False
        if timer is not None and timer.active():
            timer.cancel()

    def start(self, marker: Hashable, now: float) -> None:
        """
        The watched thing is now C{marker} (same marker: no change, the
        clock keeps running).
        """
        if marker != self.marker:
            self.marker = marker
            self.since = now

    def stop(self) -> None:
        """
        Nothing to watch any more.
        """
        self.marker = None

    def fired(self, current: Hashable, now: float, timeout: float) -> float | None:
        """
        The timer fired; C{current} is what is watched now (C{None}: nothing).

        @return: C{0.0} when the same thing stayed stuck for C{timeout} (act
            now), else the delay to re-arm the timer with, or C{None} when
            there is nothing to watch (leave the timer unarmed).
        """
        self.armed = False
        if current is None or timeout <= 0:
            self.marker = None
            return None
        if current != self.marker:
            self.marker = current
            self.since = now
        left = self.since + timeout - now
        if left <= 0:
            return 0.0
        return left
