"""
Tests for L{obproxy_tx.session.statements.substitute_connection_id}: the proxy
puts its client-session id in place of C{CONNECTION_ID()} calls.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obproxy_tx.session.statements import substitute_connection_id


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (b"SELECT CONNECTION_ID()", b"SELECT 42 AS `CONNECTION_ID()`"),
        (b"select connection_id(), 1", b"select 42 AS `connection_id()`, 1"),
        (
            b"SELECT CONNECTION_ID(), @@version_comment",
            b"SELECT 42 AS `CONNECTION_ID()`, @@version_comment",
        ),
        (b"SELECT 1, CONNECTION_ID ( ) FROM t", b"SELECT 1, 42 AS `CONNECTION_ID ( )` FROM t"),
        (b"SELECT CONNECTION_ID() AS id", b"SELECT 42 AS id"),
        (b"SELECT CONNECTION_ID() id", b"SELECT 42 id"),
        (b"SELECT CONNECTION_ID() + 0", b"SELECT 42 + 0"),
        (b"SELECT IF(1, CONNECTION_ID(), 0)", b"SELECT IF(1, 42, 0)"),
        (b"SELECT * FROM t WHERE id = CONNECTION_ID()", b"SELECT * FROM t WHERE id = 42"),
        (b"SELECT a FROM t ORDER BY a, CONNECTION_ID()", b"SELECT a FROM t ORDER BY a, 42"),
        (b"INSERT INTO t VALUES (CONNECTION_ID())", b"INSERT INTO t VALUES (42)"),
        (b"KILL QUERY CONNECTION_ID()", b"KILL QUERY 42"),
        (
            b"SELECT 'CONNECTION_ID()', CONNECTION_ID() /* CONNECTION_ID() */",
            b"SELECT 'CONNECTION_ID()', 42 AS `CONNECTION_ID()` /* CONNECTION_ID() */",
        ),
        (b"SELECT `CONNECTION_ID()` FROM t", b"SELECT `CONNECTION_ID()` FROM t"),
        (b"SELECT MY_CONNECTION_ID()", b"SELECT MY_CONNECTION_ID()"),
        (b"SELECT 1; SELECT CONNECTION_ID()", b"SELECT 1; SELECT 42 AS `CONNECTION_ID()`"),
        (b"SELECT 1", b"SELECT 1"),
    ],
)
def test_substitute_connection_id(sql: bytes, expected: bytes) -> None:
    """Each CONNECTION_ID() call becomes the literal id; whole select items keep their name."""
    assert substitute_connection_id(sql, 42) == expected


def test_text_without_the_call_is_returned_unchanged() -> None:
    """A statement that never calls CONNECTION_ID() comes back as the very same object."""
    sql = b"SELECT * FROM orders WHERE id = 7"
    assert substitute_connection_id(sql, 3) is sql


@given(st.binary(max_size=200))
def test_never_raises(sql: bytes) -> None:
    """Arbitrary bytes never make the substitution raise."""
    substitute_connection_id(sql, 1)
