"""
The proxy's hot path keeps the general path's meaning: a plain COM_QUERY goes
to the bound server session as the client's own bytes and its answer comes
back verbatim, whole or in pieces, one read or many; the classifier's caches
give what a fresh classification gives; the state machines' shortcuts still
tell their observers.
"""

from __future__ import annotations

from typing import Any

from obproxy_tx.session import statements
from obproxy_tx.session.states import (
    ServerSessionInput,
    ServerSessionMachine,
    ServerSessionState,
)
from obproxy_tx.session.tracking import StatementKind, _from_statements, classify
from obproxy_tx.wire.connection import Phase, RowData
from obproxy_tx.wire.packets import ComQuery, OKPacket
from tests.unit.session.test_client_session import CLIENT_CAPS, Harness


def test_plain_statements_share_one_translation() -> None:
    """Plain SELECTs differing in literals give one cached result equal to a fresh one."""
    first = classify(b"SELECT c FROM t WHERE id=1")
    second = classify(b"select c from t where id=2")
    assert first is second
    assert first == _from_statements(statements.classify(b"SELECT c FROM t WHERE id=3"))
    assert first.kind is StatementKind.SELECT and not first.pin_reasons


def test_statements_whose_text_matters_are_not_cached() -> None:
    """DDL's pin effects depend on the text: each text is translated anew."""
    created = classify(b"CREATE TEMPORARY TABLE tmp (a INT)")
    dropped = classify(b"DROP TEMPORARY TABLE tmp")
    assert created.pin_effects is not None and dropped.pin_effects is not None
    assert created.pin_effects != dropped.pin_effects


def test_fast_classifier_sends_special_texts_to_the_full_analysis() -> None:
    """Quotes, comments, variables and semicolons are not for the fast path; kinds stay right."""
    for sql in (
        b"SELECT 'a;b' FROM t",
        b"SELECT /* hint */ 1",
        b"SELECT 1 -- x",
        b"SELECT @a",
        b"SELECT 1; SELECT 2",
        b'SELECT "x"',
        b"SELECT `c` FROM t",
        b"SELECT 1 # x",
    ):
        assert statements._fast(sql) is None, sql
        assert classify(sql).kind is StatementKind.SELECT, sql
    assert statements._fast(b"SELECT a - b / c FROM t") is not None
    assert statements._fast(b"Select 1") is statements._fast(b"SELECT 2")


def test_machine_shortcuts_tell_observers() -> None:
    """activate/bind move without the table only when nobody observes the machine."""
    machine = ServerSessionMachine("ss")
    machine.activate()
    machine.bind()
    assert machine.state is ServerSessionState.MSS_KA_CLIENT_SLAVE
    seen: list[Any] = []
    machine.add_observer(lambda old, what, new: seen.append((old, what, new)))
    machine.activate()
    machine.bind()
    assert seen == [
        (
            ServerSessionState.MSS_KA_CLIENT_SLAVE,
            ServerSessionInput.ACTIVATE,
            ServerSessionState.MSS_ACTIVE,
        ),
        (
            ServerSessionState.MSS_ACTIVE,
            ServerSessionInput.BIND,
            ServerSessionState.MSS_KA_CLIENT_SLAVE,
        ),
    ]


def _logged_in() -> Harness:
    harness = Harness()
    harness.login()
    harness.events.clear()
    return harness


def test_plain_query_takes_the_verbatim_relay_and_binds_again() -> None:
    """The backend gets the client's query; the answer comes back; the session is idle again."""
    harness = _logged_in()
    session = harness.session
    bound = session.bound
    harness.send(ComQuery(b"SELECT rows FROM t"))
    assert harness.backends[-1].commands[-1] == ComQuery(b"SELECT rows FROM t")
    assert [e.payload for e in harness.events if isinstance(e, RowData)] == [
        b"\x010",
        b"\x011",
        b"\x012",
    ]
    assert session.bound is bound and session.active is None and not session._busy
    assert bound.passthrough is None and bound.sink is None
    assert bound.conn.phase is Phase.COMMAND_IDLE and session.conn.phase is Phase.COMMAND_IDLE
    assert session._relay_ss is bound
    assert session.stats.client_queries == 1 and session.stats.server_requests == 1


def test_query_split_across_reads_and_answer_byte_by_byte() -> None:
    """A command arriving in pieces and an answer arriving a byte at a time give the same."""
    harness = _logged_in()
    session = harness.session
    data = harness.client.send(ComQuery(b"SELECT rows"))
    for index in range(len(data)):
        session.dataReceived(data[index : index + 1])
    backend = harness.backends[-1]
    pump = harness.pumps[-1]
    # Hand the proxy's bytes to the backend by hand, and keep its answer back.
    sent = b"".join(pump.clientIO.stream)
    pump.clientIO.stream = []
    assert sent == data  # the client's own bytes
    backend.dataReceived(sent)
    answer = b"".join(pump.serverIO.stream)
    pump.serverIO.stream = []
    assert backend.commands[-1] == ComQuery(b"SELECT rows")
    proxy_side = session.active
    assert proxy_side is not None and proxy_side.passthrough is not None
    for index in range(len(answer)):
        proxy_side.dataReceived(answer[index : index + 1])
    harness.flush()
    assert [e.payload for e in harness.events if isinstance(e, RowData)] == [
        b"\x010",
        b"\x011",
        b"\x012",
    ]
    assert session.bound is proxy_side and session.active is None


def test_pipelined_queries_are_answered_in_order() -> None:
    """Two queries in one read: the second waits for the first answer, then goes the same way."""
    harness = _logged_in()
    first = harness.client.send(ComQuery(b"DO 1"))
    # The harness's client conversation would refuse a second command before the
    # answer: the second one is framed by hand (sequence id 0, COM_QUERY).
    second = b"\x05\x00\x00\x00\x03DO 2"
    harness.session.dataReceived(first + second)
    for _ in range(5):
        for pump in harness.pumps:
            pump.flush()
        harness.reactor.advance(0)
    backend = harness.backends[-1]
    assert backend.commands[-2:] == [ComQuery(b"DO 1"), ComQuery(b"DO 2")]
    out = b"".join(harness.transport.stream)
    answers = []
    while out:
        length = int.from_bytes(out[:3], "little")
        answers.append((out[3], OKPacket.decode(out[4 : 4 + length], CLIENT_CAPS)))
        out = out[4 + length :]
    assert [seq for seq, _ in answers] == [1, 1]
    assert all(ok.affected_rows == 1 for _, ok in answers)
    assert harness.session.stats.client_queries == 2
    assert harness.session.active is None and not harness.session._busy


def _prepared_client(server_ids_from: int) -> tuple[Any, Any, Any, list[Any], int]:
    """
    A logged-in raw client of L{fuzz.proxy.ProxyHarness} with one prepared
    statement, whose backend numbers its statements from C{server_ids_from};
    the backend's received commands are recorded.
    """
    from fuzz.proxy import ProxyHarness
    from obproxy_tx.wire.packets import ComStmtPrepare

    harness = ProxyHarness()
    client = harness.raw_client()
    backend = harness.backends[-1][0]
    backend.statements = server_ids_from
    received: list[Any] = []
    answer = backend._answer

    def record(packet: Any) -> None:
        received.append(packet)
        answer(packet)

    backend._answer = record  # type: ignore[method-assign]
    client.session.dataReceived(client.conn.send(ComStmtPrepare(b"SELECT 1")))
    harness.flush()
    (prepared,) = client.read()
    return harness, client, backend, received, prepared.statement_id


def test_execute_goes_on_as_the_clients_bytes_with_the_servers_statement_id() -> None:
    """
    An execute of a statement the bound server session prepared takes the hot
    path: the server gets the client's bytes with its own statement id, the
    answer comes back verbatim and the session is bound again.
    """
    from obproxy_tx.wire.constants import CursorType
    from obproxy_tx.wire.packets import ComStmtExecute

    harness, client, backend, received, client_id = _prepared_client(server_ids_from=40)
    session = client.session
    bound = session.bound
    server_id = bound.statements[client_id]
    assert server_id != client_id
    session._execute = None  # the general path would fail: the hot path must serve it
    data = client.conn.send(ComStmtExecute(client_id, CursorType(0), 1, (), True, b""))
    session.dataReceived(data)
    pump = harness.pumps[-1]
    sent = b"".join(pump.clientIO.stream)
    assert sent == data[:5] + server_id.to_bytes(4, "little") + data[9:]
    harness.flush()
    assert received[-1].statement_id == server_id
    (ok,) = client.read()
    assert ok.info == b"executed"
    assert session.bound is bound and session.active is None and not session._busy
    assert session.stats.client_ps_executes == 1
    assert bound.conn.phase is Phase.COMMAND_IDLE and session.conn.phase is Phase.COMMAND_IDLE


def test_execute_with_a_cursor_takes_the_general_path() -> None:
    """A cursor (or a statement the session does not hold) is not for the hot path."""
    from obproxy_tx.wire.constants import CursorType
    from obproxy_tx.wire.packets import ComStmtExecute

    harness, client, backend, received, client_id = _prepared_client(server_ids_from=0)
    session = client.session
    general: list[Any] = []
    execute = session._execute

    def counted(command: Any) -> None:
        general.append(command)
        execute(command)

    session._execute = counted
    session.dataReceived(
        client.conn.send(
            ComStmtExecute(client_id, CursorType.CURSOR_TYPE_READ_ONLY, 1, (), True, b"")
        )
    )
    harness.flush()
    assert len(general) == 1
    assert received[-1].__class__ is ComStmtExecute
    assert int(received[-1].flags) == int(CursorType.CURSOR_TYPE_READ_ONLY)
    (ok,) = client.read()
    assert ok.info == b"executed"
