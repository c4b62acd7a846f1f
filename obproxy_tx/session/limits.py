"""
Limits on client and server sessions, and the errors the proxy answers when
one is reached.

Client sessions (checked at login, as ODP checks C{client_max_connections}
in C{ObMysqlSM::check_connection_throttle}, once the user is known):

  - C{client_max_connections}: more client connections open than the item
    allows (this one included) gets ODP's C{OB_ERR_TOO_MANY_SESSIONS}: ERR
    1203 "Too many sessions", SQLSTATE 42000, and the connection closes. The
    local admin (C{root@proxysys}) is let in regardless, as in ODP, so a full
    proxy can still be inspected.
  - per user: a user entry's C{max_connections}, else C{user_max_connections}
    (0: no cap), counted per full login name (user, tenant, cluster); over it,
    MySQL's own answer: ERR 1203 "User ... already has more than
    'max_user_connections' active connections".

Server sessions, per backend server (C{server_max_connections}, 0: no cap):
every server session is counted from the moment its connect starts until its
connection ends, whatever it does meanwhile (connecting, logging in, serving,
bound to a client, idle in a client's pool or in the shared pool), so the cap
is never exceeded. A connect over the cap first closes an idle session of that
server in the shared pool (whose slot then goes to the waiter), else waits in
a first-come queue for a slot; after C{server_session_wait_timeout} it fails
with L{ServerBusyError}, which the client sees as ERR 1040.

L{SlotTable} and L{admit_client} are pure (no reactor, no I/O) and unit-tested
alone; L{ServerSlots} is the thin Twisted side (Deferreds and timers).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, Dict, Hashable

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from obproxy_tx.wire.errors import ErrorCode
from obproxy_tx.wire.packets import ERRPacket

__all__ = [
    "ClientCounts",
    "ServerBusyError",
    "ServerSlots",
    "Slot",
    "SlotTable",
    "admit_client",
    "too_many_sessions",
    "too_many_user_sessions",
]


def too_many_sessions() -> ERRPacket:
    """
    ODP's answer over C{client_max_connections} (C{OB_ERR_TOO_MANY_SESSIONS},
    mapped to MySQL's 1203 with SQLSTATE 42000 and the text "Too many sessions").
    """
    return ERRPacket(ErrorCode.ER_TOO_MANY_USER_CONNECTIONS, "Too many sessions", "42000")


def too_many_user_sessions(user: str) -> ERRPacket:
    """
    MySQL's answer over C{max_user_connections}, for a per-user cap.

    @param user: the user as the client named it.
    """
    return ERRPacket(
        ErrorCode.ER_TOO_MANY_USER_CONNECTIONS,
        f"User {user} already has more than 'max_user_connections' active connections",
        "42000",
    )


@attrs.define
class ClientCounts:
    """
    How many client sessions are admitted, per user key.

    @ivar per_user: admitted sessions per user key.
    @ivar admitted: the user key of each admitted session, by session id.
    """

    per_user: Dict[Hashable, int] = attrs.field(factory=dict)
    admitted: Dict[int, Hashable] = attrs.field(factory=dict)

    def add(self, session_id: int, user: Hashable) -> None:
        """
        Count session C{session_id} of C{user} (once).
        """
        if session_id in self.admitted:
            self.remove(session_id)
        self.admitted[session_id] = user
        self.per_user[user] = self.per_user.get(user, 0) + 1

    def remove(self, session_id: int) -> None:
        """
        Forget session C{session_id} (nothing if it was not counted).
        """
        user = self.admitted.pop(session_id, None)
        if user is None:
            return
        left = self.per_user.get(user, 0) - 1
        if left > 0:
            self.per_user[user] = left
        else:
            self.per_user.pop(user, None)

    def of(self, user: Hashable) -> int:
        """
        How many sessions of C{user} are admitted.
        """
        return self.per_user.get(user, 0)


def admit_client(
    *,
    open_connections: int,
    max_connections: int,
    user_sessions: int,
    user_cap: int,
    user: str,
    exempt: bool = False,
) -> ERRPacket | None:
    """
    Whether a client that just proved who it is may have a session.

    @param open_connections: client connections open now, this one included
        (ODP counts every open client connection, logged in or not).
    @param max_connections: C{client_max_connections} (0: no cap).
    @param user_sessions: sessions of the same user admitted already.
    @param user_cap: that user's cap (0: no cap).
    @param user: the user as the client named it (for the message).
    @param exempt: the local admin, which no cap applies to.
    @return: C{None} to admit, else the ERR to answer before closing.
    """
    if exempt:
        return None
    if max_connections > 0 and open_connections > max_connections:
        return too_many_sessions()
    if user_cap > 0 and user_sessions >= user_cap:
        return too_many_user_sessions(user)
    return None


class ServerBusyError(Exception):
    """
    No server session to a server could be had within
    C{server_session_wait_timeout}: the server is at C{server_max_connections}.
    Not the server's fault: nothing to hold against its health.

    @ivar packet: the ERR the client gets (1040, SQLSTATE 08004).
    """

    def __init__(self, address: str, cap: int, waited: float) -> None:
        message = (
            f"Too many connections to server {address}: it has its "
            f"server_max_connections ({cap}) server sessions and none was free within "
            f"{waited:g}s (server_session_wait_timeout)"
        )
        super().__init__(message)
        self.address = address
        self.packet = ERRPacket(ErrorCode.ER_CON_COUNT_ERROR, message, "08004")


@attrs.define(eq=False)
class Slot:
    """
    The right to hold one server session to C{address}, given back once with
    L{release} (a second call does nothing).
    """

    address: str
    _table: SlotTable | None = attrs.field(default=None, repr=False)

    def release(self) -> None:
        """
        Give the slot back (the session's connection ended, or its connect failed).
        """
        table, self._table = self._table, None
        if table is not None:
            table.release(self)

    @property
    def held(self) -> bool:
        """
        Whether the slot was not given back yet.
        """
        return self._table is not None


class SlotTable:
    """
    Per server address: the slots held and the waiters queued (pure: the
    caller gives the caps; waking a waiter is calling its callback).

    A waiter is any hashable token with a callable C{grant}: L{release} hands
    the freed slot to the oldest waiter of the address, if the cap (which may
    have changed since) leaves room.
    """

    def __init__(self, cap: Callable[[str], int]) -> None:
        """
        @param cap: the cap of an address now (0: none).
        """
        self._cap = cap
        self.held: Dict[str, int] = {}
        self.waiting: Dict[str, Deque[Callable[[Slot], None]]] = {}

    def count(self, address: str) -> int:
        """
        How many slots of C{address} are held.
        """
        return self.held.get(address, 0)

    def _room(self, address: str) -> bool:
        cap = self._cap(address)
        return cap <= 0 or self.held.get(address, 0) < cap

    def _take(self, address: str) -> Slot:
        self.held[address] = self.held.get(address, 0) + 1
        return Slot(address, self)

    def try_acquire(self, address: str) -> Slot | None:
        """
        A slot at once when there is room and nobody waits before us, else C{None}.
        """
        if self.waiting.get(address) or not self._room(address):
            return None
        return self._take(address)

    def enqueue(self, address: str, grant: Callable[[Slot], None]) -> None:
        """
        Wait for a slot of C{address}: C{grant(slot)} is called when one frees.
        """
        self.waiting.setdefault(address, collections.deque()).append(grant)

    def cancel(self, address: str, grant: Callable[[Slot], None]) -> bool:
        """
        Stop waiting (timed out, or the client went away).

        @return: whether C{grant} was still waiting.
        """
        queue = self.waiting.get(address)
        if not queue:
            return False
        try:
            queue.remove(grant)
        except ValueError:
            return False
        if not queue:
            del self.waiting[address]
        return True

    def release(self, slot: Slot) -> None:
        """
        A slot is given back: the oldest waiter gets one if the cap allows.
        """
        address = slot.address
        left = self.held.get(address, 0) - 1
        if left > 0:
            self.held[address] = left
        else:
            self.held.pop(address, None)
        self.wake(address)

    def wake(self, address: str) -> None:
        """
        Grant slots to waiters of C{address} while there is room (after a
        release, or a cap raised by C{ALTER PROXYCONFIG}).
        """
        queue = self.waiting.get(address)
        while queue and self._room(address):
            grant = queue.popleft()
            if not queue:
                del self.waiting[address]
            grant(self._take(address))
            queue = self.waiting.get(address)

    def wake_all(self) -> None:
        """
        L{wake} every address with waiters.
        """
        for address in list(self.waiting):
            self.wake(address)


def worker_share(total: int, workers: int, worker: int) -> int:
    """
    Worker C{worker}'s part of a cap of C{total} shared by C{workers} worker
    processes: the parts differ by one at most and add up to C{total}
    (0: no cap). C{check_config} keeps C{total} at least C{workers}, so
    every part is one at least.
    """
    if total <= 0 or workers <= 1:
        return total
    return total // workers + (1 if worker < total % workers else 0)


class ServerSlots:
    """
    The Twisted side of L{SlotTable}: L{acquire} gives a Deferred slot, asks
    the shared pool to close an idle session of the server when at the cap,
    and fails with L{ServerBusyError} after C{server_session_wait_timeout}.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: Callable[[], Any],
        close_idle: Callable[[str], bool],
        stats: Any = None,
        worker: int = 0,
    ) -> None:
        """
        @param reactor: for the wait timers.
        @param config: returns the current configuration.
        @param close_idle: closes one idle shared-pool session to an address;
            whether there was one.
        @param stats: the proxy-wide counters.
        @param worker: this process's worker number: with C{work_thread_num}
            workers each holds its share of the cap (L{worker_share}), so the
            proxy as a whole never exceeds it.
        """
        self._reactor = reactor
        self._config = config
        self._worker = worker
        self._close_idle = close_idle
        self.stats = stats
        self.table = SlotTable(self._cap)

    def _cap(self, address: str) -> int:
        config = self._config()
        return worker_share(
            int(config.server_max_connections), int(config.work_thread_num), self._worker
        )

    def count(self, address: str) -> int:
        """
        Server sessions to C{address} counted now.
        """
        return self.table.count(address)

    def acquire(self, address: str) -> defer.Deferred[Slot]:
        """
        A slot for a new server session to C{address}.

        @return: fires with the slot (at once when there is room), or fails
            with L{ServerBusyError} after C{server_session_wait_timeout};
            cancelling it stops waiting.
        """
        slot = self.table.try_acquire(address)
        if slot is not None:
            return defer.succeed(slot)
        config = self._config()
        cap = self._cap(address)
        wait = float(config.server_session_wait_timeout)
        if self.stats is not None:
            self.stats.server_session_waits += 1
        timer: list[IDelayedCall] = []

        def grant(slot: Slot) -> None:
            if timer and timer[0].active():
                timer[0].cancel()
            if result.called:
                slot.release()
                return
            result.callback(slot)

        def cancelled(_: defer.Deferred[Slot]) -> None:
            if timer and timer[0].active():
                timer[0].cancel()
            self.table.cancel(address, grant)

        def timed_out() -> None:
            if self.table.cancel(address, grant):
                if self.stats is not None:
                    self.stats.server_session_wait_timeouts += 1
                self._log.warn(
                    "server {server}: no server session free within {wait}s "
                    "(server_max_connections={cap})",
                    server=address,
                    wait=wait,
                    cap=cap,
                )
                result.errback(ServerBusyError(address, cap, wait))

        result: defer.Deferred[Slot] = defer.Deferred(cancelled)
        self.table.enqueue(address, grant)
        timer.append(self._reactor.callLater(wait, timed_out))
        # A session idle in the shared pool gives up its place for one in use:
        # its slot comes back when its connection has ended.
        if self._close_idle(address) and self.stats is not None:
            self.stats.server_sessions_closed_for_cap += 1
        return result

    def wanted(self, address: str) -> bool:
        """
        Whether a new server session to C{address} waits for a slot.
        """
        return bool(self.table.waiting.get(address))

    def reconfigured(self) -> None:
        """
        Follow a changed C{server_max_connections}: a raised cap lets waiters in.
        """
        self.table.wake_all()
