"""
C{KILL PROXYSESSION cs ss} of an idle server session when the client's next request arrives
before the killed connection's close has completed (found by the soak test, issue 8): the
request must not be sent on the session the kill just closed. Outside a transaction it runs on
a new server session; inside one the client gets an error (the transaction is gone), never a
COMMIT acknowledged for a transaction that is not there.
"""

from __future__ import annotations

from twisted.python.failure import Failure

from obproxy_tx.wire.connection import RowData
from obproxy_tx.wire.packets import ComQuery, ERRPacket, OKPacket
from tests.unit.session.test_retry_session import Harness


def test_request_right_after_a_kill_gets_a_new_server_session() -> None:
    """Idle, not pinned: the next request is answered, on a server session of its own."""
    harness = Harness({})
    harness.login()
    assert any(isinstance(e, RowData) for e in harness.ask(ComQuery(b"SELECT host FROM t")))
    killed = harness.session.bound
    assert killed is not None
    assert harness.session.kill_server_session(killed.ss_id)
    # No flush in between: the killed connection has not reported its close yet.
    answer = harness.ask(ComQuery(b"SELECT host FROM t"))
    assert any(isinstance(e, RowData) for e in answer), answer
    assert not harness.closed
    assert harness.session.bound is not killed
    assert harness.manager.stats.server_sessions_lost == 1


def test_commit_right_after_a_kill_inside_a_transaction_fails() -> None:
    """Pinned by a transaction: the COMMIT gets an error, and nothing is sent anywhere."""
    harness = Harness({})
    harness.login()
    assert isinstance(harness.ask(ComQuery(b"BEGIN"))[-1], OKPacket)
    assert isinstance(harness.ask(ComQuery(b"INSERT INTO ledger VALUES (1)"))[-1], OKPacket)
    killed = harness.session.bound
    assert killed is not None
    assert harness.session.kill_server_session(killed.ss_id)
    answer = harness.ask(ComQuery(b"COMMIT"))
    assert isinstance(answer[-1], ERRPacket), answer
    assert "transaction or session state there is gone" in answer[-1].message
    assert all(q != b"COMMIT" for b in harness.backends for q in b.queries)
    assert harness.closed


def test_the_close_reported_later_changes_nothing_more() -> None:
    """The connection's own close, when it comes, is not counted a second time."""
    harness = Harness({})
    harness.login()
    harness.ask(ComQuery(b"SELECT host FROM t"))
    killed = harness.session.bound
    assert harness.session.kill_server_session(killed.ss_id)
    harness.flush()
    killed.connectionLost(Failure(ConnectionError("late")))
    assert harness.manager.stats.server_sessions_lost == 1
    assert not harness.closed
