"""
Tests for L{obproxy_tx.session.states}: the MCS_* and MSS_* machines.
"""

from __future__ import annotations

import itertools

import pytest

from obproxy_tx.session.states import (
    CLIENT_SESSION_TRANSITIONS,
    SERVER_SESSION_TRANSITIONS,
    ClientSessionInput,
    ClientSessionMachine,
    ClientSessionState,
    IllegalTransition,
    ServerSessionInput,
    ServerSessionMachine,
    ServerSessionState,
)

MCS = ClientSessionState
MSS = ServerSessionState


def test_state_names_print_as_odp() -> None:
    """
    State values and str() are ODP's exact names, as SHOW PROXYSESSION prints them.
    """
    assert [str(state) for state in MCS] == [
        "MCS_INIT",
        "MCS_ACTIVE_READER",
        "MCS_KEEP_ALIVE",
        "MCS_HALF_CLOSED",
        "MCS_CLOSED",
    ]
    assert [state.value for state in MSS] == [
        "MSS_INIT",
        "MSS_ACTIVE",
        "MSS_KA_CLIENT_SLAVE",
        "MSS_KA_SHARED",
        "MSS_CLOSED",
    ]


def test_tables_cover_every_state() -> None:
    """
    Every state has a row in its table and every target is a known state.
    """
    for table, states in (
        (CLIENT_SESSION_TRANSITIONS, set(MCS)),
        (SERVER_SESSION_TRANSITIONS, set(MSS)),
    ):
        assert set(table) == states
        for moves in table.values():
            assert set(moves.values()) <= states


def test_client_session_life() -> None:
    """
    A client session starts in MCS_INIT, serves in MCS_ACTIVE_READER (also when
    idle) and ends in MCS_CLOSED.
    """
    machine = ClientSessionMachine()
    assert machine.state is MCS.MCS_INIT
    assert machine.start() is MCS.MCS_ACTIVE_READER
    assert machine.state is MCS.MCS_ACTIVE_READER
    assert not machine.is_closed
    assert machine.close() is MCS.MCS_CLOSED
    assert machine.is_closed


def test_client_keep_alive_and_half_close() -> None:
    """
    The ODP paths through MCS_KEEP_ALIVE and MCS_HALF_CLOSED are declared.
    """
    machine = ClientSessionMachine()
    machine.start()
    assert machine.release() is MCS.MCS_KEEP_ALIVE
    assert machine.resume() is MCS.MCS_ACTIVE_READER
    assert machine.half_close() is MCS.MCS_HALF_CLOSED
    assert machine.close() is MCS.MCS_CLOSED


def test_closing_twice_is_harmless() -> None:
    """
    Closing a closed session is a declared self-loop, so a kill followed by the
    connection's loss does not raise.
    """
    client = ClientSessionMachine()
    client.close()
    assert client.close() is MCS.MCS_CLOSED
    server = ServerSessionMachine()
    server.close()
    assert server.close() is MSS.MSS_CLOSED


def test_illegal_client_transition_raises_and_keeps_state() -> None:
    """
    An undeclared input raises IllegalTransition naming machine, state, input
    and the allowed inputs, and leaves the state as it was.
    """
    machine = ClientSessionMachine("client session 5")
    machine.start()
    with pytest.raises(IllegalTransition) as caught:
        machine.start()
    error = caught.value
    assert str(error) == (
        "client session 5: cannot START in state MCS_ACTIVE_READER "
        "(allowed: CLOSE, HALF_CLOSE, RELEASE)"
    )
    assert error.state is MCS.MCS_ACTIVE_READER
    assert error.input is ClientSessionInput.START
    assert machine.state is MCS.MCS_ACTIVE_READER


def test_nothing_but_close_after_close() -> None:
    """
    A closed client session accepts only CLOSE.
    """
    machine = ClientSessionMachine()
    machine.close()
    assert machine.allowed() == frozenset({ClientSessionInput.CLOSE})
    for input in (ClientSessionInput.START, ClientSessionInput.RESUME):
        assert not machine.can(input)
        with pytest.raises(IllegalTransition):
            machine.fire(input)


def test_server_session_pool_cycle() -> None:
    """
    A server session goes INIT -> ACTIVE -> KA_CLIENT_SLAVE (bound), to the pool
    (KA_SHARED), back to ACTIVE when reused, and closes.
    """
    machine = ServerSessionMachine()
    assert machine.state is MSS.MSS_INIT
    assert machine.activate() is MSS.MSS_ACTIVE
    assert machine.bind() is MSS.MSS_KA_CLIENT_SLAVE
    assert machine.is_idle
    assert machine.activate() is MSS.MSS_ACTIVE
    assert not machine.is_idle
    assert machine.bind() is MSS.MSS_KA_CLIENT_SLAVE
    assert machine.pool() is MSS.MSS_KA_SHARED
    assert machine.is_idle
    assert machine.activate() is MSS.MSS_ACTIVE
    assert machine.pool() is MSS.MSS_KA_SHARED
    assert machine.close() is MSS.MSS_CLOSED
    assert machine.is_closed


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ((), ServerSessionInput.BIND),
        ((), ServerSessionInput.POOL),
        ((ServerSessionInput.ACTIVATE,), ServerSessionInput.ACTIVATE),
        ((ServerSessionInput.ACTIVATE, ServerSessionInput.POOL), ServerSessionInput.BIND),
        ((ServerSessionInput.ACTIVATE, ServerSessionInput.BIND), ServerSessionInput.BIND),
        ((ServerSessionInput.CLOSE,), ServerSessionInput.ACTIVATE),
    ],
)
def test_illegal_server_transitions(
    path: tuple[ServerSessionInput, ...], refused: ServerSessionInput
) -> None:
    """
    A server session cannot be bound or pooled before it served a request,
    activated twice, bound straight from the pool, or used after closing.
    """
    machine = ServerSessionMachine("server session 16")
    for input in path:
        machine.fire(input)
    before = machine.state
    with pytest.raises(IllegalTransition, match="server session 16: cannot"):
        machine.fire(refused)
    assert machine.state is before


def test_every_undeclared_pair_raises() -> None:
    """
    For every (state, input) pair missing from a table, firing raises; every
    declared pair lands on the declared state.
    """
    for state, input in itertools.product(MSS, ServerSessionInput):
        machine = ServerSessionMachine()
        machine._state = state
        target = SERVER_SESSION_TRANSITIONS[state].get(input)
        if target is None:
            with pytest.raises(IllegalTransition):
                machine.fire(input)
        else:
            assert machine.fire(input) is target
    for cstate, cinput in itertools.product(MCS, ClientSessionInput):
        client = ClientSessionMachine()
        client._state = cstate
        ctarget = CLIENT_SESSION_TRANSITIONS[cstate].get(cinput)
        if ctarget is None:
            with pytest.raises(IllegalTransition):
                client.fire(cinput)
        else:
            assert client.fire(cinput) is ctarget


def test_observers_see_each_transition() -> None:
    """
    Observers get (old, input, new) after each move and nothing for a refused one.
    """
    seen: list[tuple[MSS, ServerSessionInput, MSS]] = []
    machine = ServerSessionMachine()
    machine.add_observer(lambda old, input, new: seen.append((old, input, new)))
    machine.activate()
    with pytest.raises(IllegalTransition):
        machine.activate()
    machine.close()
    assert seen == [
        (MSS.MSS_INIT, ServerSessionInput.ACTIVATE, MSS.MSS_ACTIVE),
        (MSS.MSS_ACTIVE, ServerSessionInput.CLOSE, MSS.MSS_CLOSED),
    ]


def test_repr_shows_label_and_state() -> None:
    """
    The repr names the machine and its current state, for logs.
    """
    assert repr(ClientSessionMachine("cs 7")) == "<ClientSessionMachine 'cs 7' MCS_INIT>"
