"""
Slowing down password guessing: failed logins are counted per client address,
and once an address has too many, every later login from it waits its turn.

The rules (the items are C{login_failure_*} in L{obproxy_tx.config}):

  - each failed login from an address counts one failure; failures are
    forgotten C{login_failure_window} seconds after that address's last one;
  - while an address has fewer than C{login_failure_threshold} failures its
    logins are served at once (0 turns the whole mechanism off);
  - from then on each login from that address is held before its password is
    checked, by C{login_failure_delay} times the number of failures over the
    threshold (plus one), at most C{login_failure_max_delay}; held logins of
    one address take turns, so opening many connections at once gains an
    attacker nothing: one answer per step, whatever the parallelism;
  - successful logins are held as well. A success answered at once while
    failures wait would tell a guesser which attempt was right by timing
    alone; a success does not forget the failures either (a guesser who knows
    one account's password would otherwise clear its count between guesses);
  - a login that would wait longer than C{client_login_timeout} is refused at
    once, without checking its password, with MySQL's 1129 (host blocked): the
    queue of one address is bounded and the refusal tells nothing about the
    password.

Why per address and not per user: a guesser trying many user names from one
host is still slowed down. The price is that other clients on the same host
wait too while it is throttled (as with MySQL's C{max_connect_errors}, which
blocks the host); clients from other addresses are never affected.

L{FailureTable} is pure (no reactor, times passed in) and unit-tested alone;
L{LoginThrottle} is the thin Twisted side (reads the live config, sleeps on
the manager's reactor).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Callable

import attrs
from twisted.internet import task

from obproxy_tx.wire.packets import ERRPacket

if TYPE_CHECKING:
    from obproxy_tx.config import ProxyConfig

__all__ = [
    "ER_HOST_IS_BLOCKED",
    "FailureTable",
    "LoginThrottle",
    "ThrottleSettings",
    "host_blocked",
]

#: MySQL's C{ER_HOST_IS_BLOCKED}.
ER_HOST_IS_BLOCKED = 1129

#: Most addresses remembered at once; the oldest are forgotten first, so a
#: guesser spreading over many addresses cannot grow the table without bound.
MAX_ADDRESSES = 65536


def host_blocked(address: str) -> ERRPacket:
    """
    The answer to a login refused because its address has waited too long
    already (MySQL's 1129, worded for the proxy: there is no C{flush-hosts}).

    @param address: the client's address.
    """
    return ERRPacket(
        ER_HOST_IS_BLOCKED,
        f"Host '{address}' is blocked because of many failed logins; try again later",
        "HY000",
    )


@attrs.frozen
class ThrottleSettings:
    """
    The throttle's configuration.

    @ivar threshold: failures before logins are held (0: never held).
    @ivar delay: seconds per failure over the threshold.
    @ivar max_delay: the longest step.
    @ivar window: seconds after an address's last failure when its failures
        are forgotten.
    @ivar max_wait: the longest a login may be held (the login timeout);
        a longer wait is refused at once.
    """

    threshold: int
    delay: float
    max_delay: float
    window: float
    max_wait: float

    @classmethod
    def from_config(cls, config: ProxyConfig) -> ThrottleSettings:
        """
        The settings of C{config}'s C{login_failure_*} items.
        """
        return cls(
            threshold=config.login_failure_threshold,
            delay=config.login_failure_delay,
            max_delay=config.login_failure_max_delay,
            window=config.login_failure_window,
            max_wait=config.client_login_timeout,
        )


@attrs.define
class _Address:
    """
    What is known of one client address.

    @ivar failures: failed logins not yet forgotten.
    @ivar last_failure: when the last one happened.
    @ivar next_turn: when the last held login of this address is let through
        (the next one waits one step after it).
    """

    failures: int = 0
    last_failure: float = 0.0
    next_turn: float = 0.0


class FailureTable:
    """
    Failed logins per client address and the turns of held logins (pure).
    """

    def __init__(self, max_addresses: int = MAX_ADDRESSES) -> None:
        """
        @param max_addresses: most addresses remembered at once.
        """
        self._max = max_addresses
        self._addresses: collections.OrderedDict[str, _Address] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._addresses)

    def _current(self, address: str, now: float, settings: ThrottleSettings) -> _Address | None:
        entry = self._addresses.get(address)
        if entry is not None and now - entry.last_failure > settings.window:
            # Quiet for a whole window: forgotten (a held login still in its turn goes on).
            del self._addresses[address]
            return None
        return entry

    def failures(self, address: str, now: float, settings: ThrottleSettings) -> int:
        """
        How many failures of C{address} count at C{now}.
        """
        entry = self._current(address, now, settings)
        return 0 if entry is None else entry.failures

    def step(self, address: str, now: float, settings: ThrottleSettings) -> float:
        """
        How long each login of C{address} is held at C{now} (0: not throttled).
        """
        if settings.threshold <= 0:
            return 0.0
        over = self.failures(address, now, settings) - settings.threshold
        if over < 0:
            return 0.0
        return min(settings.max_delay, settings.delay * (over + 1))

    def hold(self, address: str, now: float, settings: ThrottleSettings) -> float | None:
        """
        A login from C{address} starts at C{now}: how long to hold it before
        its password is checked.

        @return: seconds (0: at once), or C{None} when it would wait longer
            than C{settings.max_wait} (refuse it; it takes no turn).
        """
        step = self.step(address, now, settings)
        if step <= 0:
            return 0.0
        entry = self._addresses[address]
        turn = max(now, entry.next_turn) + step
        if turn - now > settings.max_wait:
            return None
        entry.next_turn = turn
        return turn - now

    def failed(self, address: str, now: float, settings: ThrottleSettings) -> None:
        """
        A login from C{address} failed at C{now}.
        """
        if settings.threshold <= 0:
            return
        entry = self._current(address, now, settings)
        if entry is None:
            entry = self._addresses[address] = _Address()
            while len(self._addresses) > self._max:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
        entry.failures += 1
        entry.last_failure = now


class LoginThrottle:
    """
    The Twisted side: holds logins on the reactor by the L{FailureTable}'s
    rules, with the live configuration.
    """

    def __init__(self, reactor: Any, config: Callable[[], ProxyConfig], stats: Any) -> None:
        """
        @param reactor: the manager's reactor.
        @param config: returns the current configuration.
        @param stats: the proxy's counters (C{logins_held}, C{logins_blocked}).
        """
        self._reactor = reactor
        self._config = config
        self._stats = stats
        self.table = FailureTable()

    async def before_login(self, address: str) -> ERRPacket | None:
        """
        Wait this login's turn, if its address is throttled.

        @return: C{None} to go on and check the password, or the error to
            refuse the login with (at once).
        """
        if not len(self.table):
            # The usual case: no address has failed lately; nothing to build or look up.
            return None
        settings = ThrottleSettings.from_config(self._config())
        wait = self.table.hold(address, self._reactor.seconds(), settings)
        if wait is None:
            self._stats.logins_blocked += 1
            return host_blocked(address)
        if wait > 0:
            self._stats.logins_held += 1
            await task.deferLater(self._reactor, wait, lambda: None)
        return None

    def failed(self, address: str) -> None:
        """
        A login from C{address} was refused (wrong password, unknown user).
        """
        settings = ThrottleSettings.from_config(self._config())
        self.table.failed(address, self._reactor.seconds(), settings)
