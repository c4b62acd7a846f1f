"""
Pins that end: user locks, temporary tables, LOCK TABLES, SET TRANSACTION,
text PREPARE and XA are released when their reason ends, conservatively
(L{obproxy_tx.session.tracking.SessionState.apply_pins}).
"""

from __future__ import annotations

import pytest

from obproxy_tx.session.tracking import PIN_USER_LOCK, SessionState, classify, pin_effects


def run(state: SessionState, sql: bytes, ok: bool = True, db: str | None = "test") -> None:
    """Apply one statement's pins to C{state} as the client session does."""
    state.apply_pins(classify(sql), ok, db)


def test_lock_calls_are_read_in_order_with_literal_names() -> None:
    """Lock functions are found with their literal names, in text order; expressions are None."""
    effects = pin_effects(b"SELECT RELEASE_LOCK('a'), get_lock(\"b\", 1), GET_LOCK(CONCAT('c'), 1)")
    assert effects.lock_calls == (
        ("RELEASE_LOCK", b"'a'"),
        ("GET_LOCK", b'"b"'),
        ("GET_LOCK", None),
    )
    assert not effects.locks_uncounted


def test_lock_names_in_strings_and_comments_are_not_calls() -> None:
    """Text inside quotes and comments is not a call; executable comments are code."""
    effects = pin_effects(
        b"SELECT 'RELEASE_LOCK(''a'')' /* RELEASE_ALL_LOCKS() */, 1 -- GET_LOCK('x')"
    )
    assert effects.lock_calls == ()
    effects = pin_effects(b"SELECT /*!50000 GET_LOCK('a', 1) */")
    assert effects.lock_calls == (("GET_LOCK", b"'a'"),)


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT GET_LOCK('a', 0) FROM t",
        b"UPDATE t SET x = GET_LOCK('a', 0)",
        b"SELECT (SELECT GET_LOCK('a', 0) FROM t)",
    ],
)
def test_get_lock_that_may_run_per_row_is_uncounted(sql: bytes) -> None:
    """A GET_LOCK that may run once per row cannot be counted."""
    assert pin_effects(sql).locks_uncounted


def test_get_lock_pins_until_the_matching_release() -> None:
    """Two GET_LOCKs of one name need two RELEASE_LOCKs; another name does not count."""
    state = SessionState()
    run(state, b"SELECT GET_LOCK('a', 1)")
    run(state, b"SELECT GET_LOCK('a', 1), GET_LOCK('b', 1)")
    assert PIN_USER_LOCK in state.pin_reasons
    run(state, b"SELECT RELEASE_LOCK('a')")
    run(state, b"SELECT RELEASE_LOCK('b'), RELEASE_LOCK('zzz')")
    assert PIN_USER_LOCK in state.pin_reasons
    run(state, b"DO RELEASE_LOCK('a')")
    assert PIN_USER_LOCK not in state.pin_reasons
    assert state.user_locks == {}


def test_release_lock_spelled_differently_keeps_the_pin() -> None:
    """Names are compared as written: another spelling may name another lock, so the pin stays."""
    state = SessionState()
    run(state, b"SELECT GET_LOCK('A', 1)")
    run(state, b"SELECT RELEASE_LOCK('a')")
    run(state, b'SELECT RELEASE_LOCK("A")')
    assert PIN_USER_LOCK in state.pin_reasons


def test_failed_release_keeps_the_pin_and_release_all_clears_everything() -> None:
    """A RELEASE_LOCK whose statement failed releases nothing; RELEASE_ALL_LOCKS clears all."""
    state = SessionState()
    run(state, b"SELECT GET_LOCK(@name, 1)")
    run(state, b"SELECT GET_LOCK('a', 1)")
    run(state, b"SELECT RELEASE_LOCK('a')", ok=False)
    assert state.user_locks == {b"'a'": 1} and state.user_locks_unknown
    run(state, b"SELECT RELEASE_LOCK('a')")
    assert PIN_USER_LOCK in state.pin_reasons  # the expression-named lock may be held
    run(state, b"SELECT RELEASE_ALL_LOCKS()")
    assert PIN_USER_LOCK not in state.pin_reasons


def test_is_free_lock_does_not_pin() -> None:
    """IS_FREE_LOCK / IS_USED_LOCK only look: no pin."""
    state = SessionState()
    run(state, b"SELECT IS_FREE_LOCK('a'), IS_USED_LOCK('a')")
    assert not state.pin_reasons


def test_temporary_tables_pin_until_the_last_is_dropped() -> None:
    """Each temporary table pins; dropping the last one (qualified or not) releases."""
    state = SessionState()
    run(state, b"CREATE TEMPORARY TABLE t1 (a INT)")
    run(state, b"CREATE TEMPORARY TABLE IF NOT EXISTS `other`.`t2` (a INT)")
    run(state, b"DROP TEMPORARY TABLE t1")
    assert "temporary table" in state.pin_reasons
    run(state, b"DROP TEMPORARY TABLE other.t2", ok=False)
    assert "temporary table" in state.pin_reasons
    run(state, b"DROP TABLE IF EXISTS other.t2")
    assert "temporary table" not in state.pin_reasons


def test_temporary_table_of_another_database_is_not_dropped_by_its_bare_name() -> None:
    """A bare name means the current database: the same name elsewhere stays pinned."""
    state = SessionState()
    run(state, b"CREATE TEMPORARY TABLE t (a INT)", db="one")
    run(state, b"DROP TEMPORARY TABLE t", db="two")
    assert "temporary table" in state.pin_reasons
    run(state, b"USE one; DROP TEMPORARY TABLE t", db="two")
    assert "temporary table" in state.pin_reasons
    run(state, b"DROP TEMPORARY TABLE t", db="one")
    assert "temporary table" not in state.pin_reasons


def test_lock_tables_until_unlock_tables() -> None:
    """LOCK TABLES pins until UNLOCK TABLES."""
    state = SessionState()
    run(state, b"LOCK TABLES t READ")
    assert state.pin_reasons == {"LOCK TABLES"}
    run(state, b"UNLOCK TABLES")
    assert not state.pin_reasons


def test_set_transaction_until_commit_or_transaction_end() -> None:
    """SET TRANSACTION pins until a COMMIT/ROLLBACK or the end of the next transaction."""
    state = SessionState()
    run(state, b"SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
    run(state, b"BEGIN")
    assert state.pin_reasons == {"SET TRANSACTION"}
    run(state, b"COMMIT")
    assert not state.pin_reasons
    run(state, b"SET TRANSACTION READ ONLY")
    state.transaction_ended()
    assert not state.pin_reasons


def test_text_prepare_and_xa() -> None:
    """Text PREPARE pins until its DEALLOCATE; XA until XA COMMIT/ROLLBACK."""
    state = SessionState()
    run(state, b"PREPARE s1 FROM 'SELECT 1'")
    run(state, b"PREPARE s2 FROM 'SELECT 2'")
    run(state, b"DEALLOCATE PREPARE s1")
    assert state.pin_reasons == {"text PREPARE"}
    run(state, b"DROP PREPARE s2")
    assert not state.pin_reasons
    run(state, b"XA START 'x'")
    run(state, b"XA END 'x'")
    assert state.pin_reasons == {"XA transaction"}
    run(state, b"XA COMMIT 'x' ONE PHASE")
    assert not state.pin_reasons


def test_reset_forgets_every_pin() -> None:
    """COM_RESET_CONNECTION / COM_CHANGE_USER forget locks and temporary tables."""
    state = SessionState()
    run(state, b"SELECT GET_LOCK('a', 1)")
    run(state, b"CREATE TEMPORARY TABLE t (a INT)")
    state.reset()
    assert not state.pin_reasons and not state.user_locks and not state.temp_tables


def test_set_transaction_is_used_up_by_an_autocommitted_dml_statement() -> None:
    """In autocommit mode a successful DML statement is the next transaction; SELECT 1 is not."""
    state = SessionState()
    run(state, b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    state.apply_pins(classify(b"SELECT 1"), True, "test", in_transaction=False)
    state.apply_pins(classify(b"INSERT INTO t VALUES (1)"), False, "test", in_transaction=False)
    state.apply_pins(classify(b"INSERT INTO t VALUES (1)"), True, "test", in_transaction=True)
    assert state.pin_reasons == {"SET TRANSACTION"}
    state.apply_pins(classify(b"INSERT INTO t VALUES (1)"), True, "test", in_transaction=False)
    assert not state.pin_reasons
