"""
The retry rules (L{obproxy_tx.session.retry}): which statements are plain reads, and when
a refused or lost request may go to another server.
"""

from __future__ import annotations

import attrs
import pytest

from obproxy_tx.session.retry import (
    CANNOT_SERVE_CODES,
    RequestFacts,
    is_plain_read,
    may_resend_lost,
    may_retry_refused,
    only_starts_transaction,
    refused_before_running,
)

PLAIN_READS = [
    b"SELECT 1",
    b"select c from sbtest1 where id=5",
    b"SELECT c FROM sbtest1 WHERE id = 5;",
    b"  SELECT COUNT(*), MAX(id) FROM t WHERE a IN (1, 2) GROUP BY b HAVING COUNT(*) > 1",
    b"SELECT * FROM t USE INDEX (i) JOIN u USING (id) WHERE EXISTS (SELECT 1 FROM v)",
    b"(SELECT 1) UNION (SELECT 2)",
    b"WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    b"/* a comment */ SELECT NOW(), CONCAT('a', 'b'), @@version, @v",
    b"/*+ READ_CONSISTENCY(WEAK) */ SELECT id FROM t",
    b"SHOW TABLES",
    b"SHOW VARIABLES LIKE 'wait%'",
    b"DESCRIBE t",
    b"EXPLAIN SELECT * FROM t",
    b"SELECT SLEEP(1)",
]

NOT_PLAIN_READS = [
    # writes and session changes
    b"INSERT INTO t VALUES (1)",
    b"UPDATE t SET a = 1",
    b"DELETE FROM t",
    b"REPLACE INTO t VALUES (1)",
    b"SET @a = 1",
    b"CALL p()",
    b"DO GET_LOCK('a', 1)",
    b"BEGIN",
    b"COMMIT",
    b"LOAD DATA LOCAL INFILE 'x' INTO TABLE t",
    b"CREATE TABLE t (a INT)",
    # locking reads, INTO, assignment
    b"SELECT * FROM t WHERE id = 1 FOR UPDATE",
    b"SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE",
    b"SELECT * FROM t FOR SHARE",
    b"SELECT a INTO @x FROM t",
    b"SELECT a FROM t INTO OUTFILE '/tmp/x'",
    b"SELECT @a := 1",
    # functions that change something, or may (stored functions), or depend on the session
    b"SELECT GET_LOCK('a', 1)",
    b"SELECT RELEASE_LOCK('a')",
    b"SELECT NEXTVAL(s)",
    b"SELECT NEXT VALUE FOR s",
    b"SELECT LAST_INSERT_ID(5)",
    b"SELECT FOUND_ROWS()",
    b"SELECT CONNECTION_ID()",
    b"SELECT my_function(1)",
    b"SELECT db.f(1)",
    b"SELECT `f`(1)",
    b"SELECT * FROM t WHERE a = stored_fn(2)",
    # several statements, executable comments, uncertain text
    b"SELECT 1; DELETE FROM t",
    b"SELECT 1; SELECT 2",
    b"/*!50000 SELECT 1 */",
    b"SELECT 1 /*!50000 , GET_LOCK('a', 1) */",
    b"SELECT 'a\\', f(1), '\\'",
    b"SELECT 1 -- ; DELETE FROM t\n",
    # dependent SHOW, analysis that runs the statement
    b"SHOW WARNINGS",
    b"SHOW /* x */ ERRORS",
    b"SHOW COUNT(*) WARNINGS",
    b"SHOW PROFILES",
    b"ANALYZE SELECT 1",
    b"EXPLAIN ANALYZE SELECT 1",
    b"EXPLAIN UPDATE t SET a = 1",
    # not statements at all
    b"",
    b"   ",
    b";",
    b"/* only a comment */",
    b"VALUES (1)",
]


@pytest.mark.parametrize("sql", PLAIN_READS)
def test_plain_reads(sql: bytes) -> None:
    """Statements that change nothing when they run twice are plain reads."""
    assert is_plain_read(sql)


@pytest.mark.parametrize("sql", NOT_PLAIN_READS)
def test_not_plain_reads(sql: bytes) -> None:
    """Writes, locking reads, unknown functions and anything uncertain are not."""
    assert not is_plain_read(sql)


def test_strings_that_look_like_writes_make_it_no() -> None:
    """
    The check errs towards "no": a string holding a write keyword is enough (the raw text is
    read, so that no quoting mode can hide code from the classifier).
    """
    assert not is_plain_read(b"SELECT * FROM t WHERE name = 'update'")
    assert is_plain_read(b"SELECT * FROM t WHERE name = 'alice'")


READ = RequestFacts(
    kind="query",
    size=40,
    in_transaction=False,
    autocommit=True,
    pinned=False,
    route_forced=False,
    sql=b"SELECT c FROM t WHERE id = 1",
)
WRITE = attrs.evolve(READ, sql=b"INSERT INTO t VALUES (1)")


def test_cannot_serve_codes() -> None:
    """ODP's retried OceanBase codes mean "did not run"; others (MariaDB's shutdown) do not."""
    for code in (8001, 8002, 5150, 4124, 4661):
        assert refused_before_running(code)
        assert code in CANNOT_SERVE_CODES
    for code in (1053, 1062, 1213, 1205, 1064, 1146, 2013, 1158):
        assert not refused_before_running(code)


def test_refused_write_is_retried_outside_a_transaction() -> None:
    """A write refused before it ran moves on, as ODP moves the first statement of a transaction."""
    assert may_retry_refused(WRITE, 8002, 8192)
    assert may_retry_refused(READ, 8001, 8192)
    assert not may_retry_refused(WRITE, 1062, 8192)


def test_shutdown_interrupts_so_only_plain_reads_move() -> None:
    """
    MariaDB's 1053 interrupts a statement that may have changed a non-transactional table part
    way: a plain read (or a bare BEGIN) moves, a write does not.
    """
    assert may_retry_refused(READ, 1053, 8192)
    assert may_retry_refused(attrs.evolve(READ, sql=b"BEGIN"), 1053, 8192)
    assert not may_retry_refused(WRITE, 1053, 8192)
    assert not may_retry_refused(attrs.evolve(READ, in_transaction=True), 1053, 8192)


@pytest.mark.parametrize(
    "change",
    [
        {"in_transaction": True},
        {"pinned": True},
        {"route_forced": True},
        {"load_data": True},
        {"kind": "fetch"},
        {"kind": "other"},
        {"size": 8193},
    ],
)
def test_refused_request_stays_when(change: dict[str, object]) -> None:
    """Inside a transaction, pinned, forced, LOAD DATA, a cursor fetch or large: no retry."""
    assert not may_retry_refused(attrs.evolve(WRITE, **change), 8002, 8192)
    assert not may_resend_lost(attrs.evolve(READ, **change), 8192)


def test_lost_request_is_resent_only_when_a_plain_read() -> None:
    """A lost plain read in autocommit is resent; a write, or a read without autocommit, is not."""
    assert may_resend_lost(READ, 8192)
    assert not may_resend_lost(WRITE, 8192)
    assert not may_resend_lost(attrs.evolve(READ, autocommit=False), 8192)
    assert not may_resend_lost(attrs.evolve(READ, sql=None), 8192)
    assert may_resend_lost(attrs.evolve(READ, kind="execute"), 8192)


def test_hints_are_comments_but_cannot_hide_code() -> None:
    """An optimizer hint is left out; a "hint" that spans strings hides nothing."""
    assert is_plain_read(b"SELECT /*+ READ_CONSISTENCY(WEAK) */ id FROM t")
    assert not is_plain_read(b"SELECT '/*+', f(1), '*/'")


@pytest.mark.parametrize(
    "sql",
    [
        b"BEGIN",
        b"begin work;",
        b"START TRANSACTION",
        b"START TRANSACTION READ ONLY",
        b"start transaction with consistent snapshot, read write",
    ],
)
def test_transaction_starts(sql: bytes) -> None:
    """A bare transaction start opens nothing that outlives a lost session: resent."""
    assert only_starts_transaction(sql)
    assert may_resend_lost(attrs.evolve(READ, sql=sql), 8192)


@pytest.mark.parametrize(
    "sql",
    [
        b"BEGIN; INSERT INTO t VALUES (1)",
        b"BEGIN NOT ATOMIC SELECT 1; END",
        b"/* x */ BEGIN",
        b"COMMIT",
    ],
)
def test_not_only_transaction_starts(sql: bytes) -> None:
    """Anything more than a bare transaction start is not resent."""
    assert not only_starts_transaction(sql)
    assert not may_resend_lost(attrs.evolve(READ, sql=sql), 8192)
