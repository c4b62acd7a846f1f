"""
The ClientSession (C{MCS_*}) and ServerSession (C{MSS_*}) state machines.

The states and their names are ODP's (C{ObClientReadState} in
C{src/obproxy/proxy/mysql/ob_mysql_client_session.h}, C{ObMSSState} in
C{ob_mysql_server_session.h}); users read them in the C{state} column of SHOW
PROXYSESSION / SHOW PROCESSLIST and the C{read_state} / C{state} rows of SHOW
PROXYSESSION ATTRIBUTE, so they print exactly as ODP prints them. ODP has no
closed state for server sessions; ours is C{MSS_CLOSED}.

Why an C{Enum} plus an explicit transition table and not automat
================================================================

The house style (docs/style.md) puts session orchestration in automat
C{TypeMachineBuilder} machines. These two machines are different: their whole
point is the I{observable} state, which the admin commands must read out as a
name. automat deliberately hides the current state (only behaviours see it, and
there is no public accessor), so the name would have to be mirrored in the core
by hand on every transition, which is exactly the drift the issue forbids ("the
states shown to users are the real current ones"). Here the state is the
single attribute L{ClientSessionMachine.state}, changed only through
L{_TableMachine.fire}, which looks the move up in one declared table
(L{CLIENT_SESSION_TRANSITIONS}, L{SERVER_SESSION_TRANSITIONS}) and raises
L{IllegalTransition} before changing anything when the move is not declared,
which is the guarantee automat's C{NoTransition} gives. The same tables can be
drawn for the docs, as the wire-level C{Phase} tables are. Orchestration with
Deferreds and timers (connecting, retrying) may still be an automat machine
that I{drives} these inputs.

Client session states (ODP semantics)
=====================================

  - C{MCS_INIT}: from accept until the session starts (the proxy's handshake
    goes out at once, so this is brief).
  - C{MCS_ACTIVE_READER}: the session is reading and serving requests. The
    handshake, the login and every command run in this state, and an idle but
    connected client stays in it, as ODP shows.
  - C{MCS_KEEP_ALIVE}: detached and idle, waiting for the next request. ODP
    never enters it on its MySQL path; it is declared for completeness.
  - C{MCS_HALF_CLOSED}: write side shut, draining reads. ODP never enters it
    either.
  - C{MCS_CLOSED}: closed; all its server sessions are closed too.

Server session states
=====================

  - C{MSS_INIT}: connected to the server, not yet taken for a request.
  - C{MSS_ACTIVE}: in use for a request (including its login and sync statements).
  - C{MSS_KA_CLIENT_SLAVE}: idle, bound to its client session as the "last used
    ss"; at most one per client session.
  - C{MSS_KA_SHARED}: idle in the client session's pool.
  - C{MSS_CLOSED}: closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Callable, Generic, TypeVar

__all__ = [
    "CLIENT_SESSION_TRANSITIONS",
    "SERVER_SESSION_TRANSITIONS",
    "ClientSessionInput",
    "ClientSessionMachine",
    "ClientSessionState",
    "IllegalTransition",
    "ServerSessionInput",
    "ServerSessionMachine",
    "ServerSessionState",
]


class ClientSessionState(Enum):
    """
    ODP's client session read states; the value is the name users see.
    """

    # Members are singletons: identity hashing keeps the transition tables cheap
    # (Enum's own __hash__ is a Python-level call, paid twice per move).
    __hash__ = object.__hash__

    MCS_INIT = "MCS_INIT"
    MCS_ACTIVE_READER = "MCS_ACTIVE_READER"
    MCS_KEEP_ALIVE = "MCS_KEEP_ALIVE"
    MCS_HALF_CLOSED = "MCS_HALF_CLOSED"
    MCS_CLOSED = "MCS_CLOSED"

    def __str__(self) -> str:
        return self.value


class ClientSessionInput(Enum):
    """
    What can happen to a client session.
    """

    # Members are singletons: identity hashing keeps the transition tables cheap
    # (Enum's own __hash__ is a Python-level call, paid twice per move).
    __hash__ = object.__hash__

    START = "start"
    """The session starts serving its connection (ODP: C{new_transaction} at accept)."""
    RELEASE = "release"
    """The session detaches and waits idle for a request (ODP: C{release})."""
    RESUME = "resume"
    """A request arrives for a detached session."""
    HALF_CLOSE = "half_close"
    """The write side is shut down; reads drain until end of stream."""
    CLOSE = "close"
    """The connection is closed; closing a closed session changes nothing."""


class ServerSessionState(Enum):
    """
    ODP's server session states plus C{MSS_CLOSED}; the value is the name users see.
    """

    # Members are singletons: identity hashing keeps the transition tables cheap
    # (Enum's own __hash__ is a Python-level call, paid twice per move).
    __hash__ = object.__hash__

    MSS_INIT = "MSS_INIT"
    MSS_ACTIVE = "MSS_ACTIVE"
    MSS_KA_CLIENT_SLAVE = "MSS_KA_CLIENT_SLAVE"
    MSS_KA_SHARED = "MSS_KA_SHARED"
    MSS_CLOSED = "MSS_CLOSED"

    def __str__(self) -> str:
        return self.value


class ServerSessionInput(Enum):
    """
    What can happen to a server session.
    """

    # Members are singletons: identity hashing keeps the transition tables cheap
    # (Enum's own __hash__ is a Python-level call, paid twice per move).
    __hash__ = object.__hash__

    ACTIVATE = "activate"
    """Taken for a request: freshly connected, bound, or from the pool."""
    BIND = "bind"
    """The request finished; the session becomes its client's last used ss."""
    POOL = "pool"
    """Put in the client session's pool (another ss was bound instead)."""
    CLOSE = "close"
    """The connection is closed; closing a closed session changes nothing."""


_MCS = ClientSessionState
_CI = ClientSessionInput
_MSS = ServerSessionState
_SI = ServerSessionInput
_ACTIVE = ServerSessionState.MSS_ACTIVE
_BOUND = ServerSessionState.MSS_KA_CLIENT_SLAVE

CLIENT_SESSION_TRANSITIONS: Mapping[
    ClientSessionState, Mapping[ClientSessionInput, ClientSessionState]
] = {
    _MCS.MCS_INIT: {
        _CI.START: _MCS.MCS_ACTIVE_READER,
        _CI.HALF_CLOSE: _MCS.MCS_HALF_CLOSED,
        _CI.CLOSE: _MCS.MCS_CLOSED,
    },
    _MCS.MCS_ACTIVE_READER: {
        _CI.RELEASE: _MCS.MCS_KEEP_ALIVE,
        _CI.HALF_CLOSE: _MCS.MCS_HALF_CLOSED,
        _CI.CLOSE: _MCS.MCS_CLOSED,
    },
    _MCS.MCS_KEEP_ALIVE: {
        _CI.RESUME: _MCS.MCS_ACTIVE_READER,
        _CI.HALF_CLOSE: _MCS.MCS_HALF_CLOSED,
        _CI.CLOSE: _MCS.MCS_CLOSED,
    },
    _MCS.MCS_HALF_CLOSED: {
        _CI.CLOSE: _MCS.MCS_CLOSED,
    },
    _MCS.MCS_CLOSED: {
        _CI.CLOSE: _MCS.MCS_CLOSED,
    },
}
"""Every legal client session move: C{{state: {input: next state}}}."""

SERVER_SESSION_TRANSITIONS: Mapping[
    ServerSessionState, Mapping[ServerSessionInput, ServerSessionState]
] = {
    _MSS.MSS_INIT: {
        _SI.ACTIVATE: _MSS.MSS_ACTIVE,
        _SI.CLOSE: _MSS.MSS_CLOSED,
    },
    _MSS.MSS_ACTIVE: {
        _SI.BIND: _MSS.MSS_KA_CLIENT_SLAVE,
        _SI.POOL: _MSS.MSS_KA_SHARED,
        _SI.CLOSE: _MSS.MSS_CLOSED,
    },
    _MSS.MSS_KA_CLIENT_SLAVE: {
        _SI.ACTIVATE: _MSS.MSS_ACTIVE,
        _SI.POOL: _MSS.MSS_KA_SHARED,
        _SI.CLOSE: _MSS.MSS_CLOSED,
    },
    _MSS.MSS_KA_SHARED: {
        _SI.ACTIVATE: _MSS.MSS_ACTIVE,
        _SI.CLOSE: _MSS.MSS_CLOSED,
    },
    _MSS.MSS_CLOSED: {
        _SI.CLOSE: _MSS.MSS_CLOSED,
    },
}
"""Every legal server session move: C{{state: {input: next state}}}."""


class IllegalTransition(Exception):  # noqa: N818 (named like automat's NoTransition)
    """
    An input that the current state does not accept. Raised before anything
    changes, so the session keeps its state. It means a bug in the proxy.

    @ivar machine: a label for the machine, e.g. C{"client session 5"}.
    @ivar state: the state the machine was (and still is) in.
    @ivar input: the refused input.
    @ivar allowed: the inputs the state accepts.
    """

    def __init__(self, machine: str, state: Enum, input: Enum, allowed: frozenset[Enum]) -> None:
        """
        @param machine: a label for the machine.
        @param state: the current state.
        @param input: the refused input.
        @param allowed: the inputs the state accepts.
        """
        names = ", ".join(sorted(member.name for member in allowed)) or "nothing"
        super().__init__(f"{machine}: cannot {input.name} in state {state.name} (allowed: {names})")
        self.machine = machine
        self.state = state
        self.input = input
        self.allowed = allowed


S = TypeVar("S", bound=Enum)
I = TypeVar("I", bound=Enum)  # noqa: E741


class _TableMachine(Generic[S, I]):
    """
    A state held in one attribute and moved only through a declared table.
    """

    __slots__ = ("_observers", "_state", "_table", "label")

    def __init__(self, table: Mapping[S, Mapping[I, S]], initial: S, label: str) -> None:
        self._table = table
        self._state = initial
        # Made by the first add_observer: most machines have none.
        self._observers: list[Callable[[S, I, S], None]] | None = None
        self.label = label

    @property
    def state(self) -> S:
        """
        The current state.
        """
        return self._state

    def allowed(self) -> frozenset[I]:
        """
        The inputs the current state accepts.
        """
        return frozenset(self._table[self._state])

    def can(self, input: I) -> bool:
        """
        Whether C{input} is legal now.
        """
        return input in self._table[self._state]

    def fire(self, input: I) -> S:
        """
        Apply C{input}: move to the state the table declares.

        Observers are called after the move, in registration order, with
        C{(old state, input, new state)}.

        @return: the new state.
        @raise IllegalTransition: the current state does not accept C{input};
            the state is unchanged and no observer is called.
        """
        moves = self._table[self._state]
        try:
            target = moves[input]
        except KeyError:
            raise IllegalTransition(self.label, self._state, input, frozenset(moves)) from None
        previous, self._state = self._state, target
        if self._observers is not None:
            for observer in list(self._observers):
                observer(previous, input, target)
        return target

    def add_observer(self, observer: Callable[[S, I, S], None]) -> None:
        """
        Call C{observer(old, input, new)} after every transition (also the
        C{CLOSE} self-loop of a closed session).
        """
        if self._observers is None:
            self._observers = []
        self._observers.append(observer)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label!r} {self._state.name}>"


class ClientSessionMachine(_TableMachine[ClientSessionState, ClientSessionInput]):
    """
    The state of one client session, starting at C{MCS_INIT}.
    """

    __slots__ = ()

    def __init__(self, label: str = "client session") -> None:
        """
        @param label: names the session in L{IllegalTransition} messages,
            e.g. C{"client session 5"}.
        """
        super().__init__(CLIENT_SESSION_TRANSITIONS, ClientSessionState.MCS_INIT, label)

    @property
    def is_closed(self) -> bool:
        """
        Whether the session reached C{MCS_CLOSED}.
        """
        return self.state is ClientSessionState.MCS_CLOSED

    def start(self) -> ClientSessionState:
        """
        Fire L{ClientSessionInput.START}.
        """
        return self.fire(ClientSessionInput.START)

    def release(self) -> ClientSessionState:
        """
        Fire L{ClientSessionInput.RELEASE}.
        """
        return self.fire(ClientSessionInput.RELEASE)

    def resume(self) -> ClientSessionState:
        """
        Fire L{ClientSessionInput.RESUME}.
        """
        return self.fire(ClientSessionInput.RESUME)

    def half_close(self) -> ClientSessionState:
        """
        Fire L{ClientSessionInput.HALF_CLOSE}.
        """
        return self.fire(ClientSessionInput.HALF_CLOSE)

    def close(self) -> ClientSessionState:
        """
        Fire L{ClientSessionInput.CLOSE}.
        """
        return self.fire(ClientSessionInput.CLOSE)


class ServerSessionMachine(_TableMachine[ServerSessionState, ServerSessionInput]):
    """
    The state of one server session, starting at C{MSS_INIT} (connected).
    """

    __slots__ = ()

    def __init__(self, label: str = "server session") -> None:
        """
        @param label: names the session in L{IllegalTransition} messages,
            e.g. C{"server session 16"}.
        """
        super().__init__(SERVER_SESSION_TRANSITIONS, ServerSessionState.MSS_INIT, label)

    @property
    def is_closed(self) -> bool:
        """
        Whether the session reached C{MSS_CLOSED}.
        """
        return self.state is ServerSessionState.MSS_CLOSED

    @property
    def is_idle(self) -> bool:
        """
        Whether the session is idle and may be taken for a request: bound
        (C{MSS_KA_CLIENT_SLAVE}) or pooled (C{MSS_KA_SHARED}).
        """
        return self.state in (
            ServerSessionState.MSS_KA_CLIENT_SLAVE,
            ServerSessionState.MSS_KA_SHARED,
        )

    def activate(self) -> ServerSessionState:
        """
        Fire L{ServerSessionInput.ACTIVATE}.
        """
        # Once per request from the bound state: that move without the table.
        if self._state is _BOUND and self._observers is None:
            self._state = _ACTIVE
            return _ACTIVE
        return self.fire(ServerSessionInput.ACTIVATE)

    def bind(self) -> ServerSessionState:
        """
        Fire L{ServerSessionInput.BIND}.
        """
        # Once per request: the move back without the table.
        if self._state is _ACTIVE and self._observers is None:
            self._state = _BOUND
            return _BOUND
        return self.fire(ServerSessionInput.BIND)

    def pool(self) -> ServerSessionState:
        """
        Fire L{ServerSessionInput.POOL}.
        """
        return self.fire(ServerSessionInput.POOL)

    def close(self) -> ServerSessionState:
        """
        Fire L{ServerSessionInput.CLOSE}.
        """
        return self.fire(ServerSessionInput.CLOSE)
