"""
When the proxy may send a client's request again, to another server session
(pure: no Twisted, no I/O; the client session asks and acts).

The rule above all: nothing that may have run is ever sent twice. Three
situations, each with its own question:

  - L{refused_before_running}: the server answered the request with an error
    that means "this server cannot serve now, the statement did not run"
    (OceanBase's server-initializing / stopping / tenant-not-here / connect
    errors, which an observer sends instead of running the request; ODP
    retries them). ODP retries such a request on the next server only when it
    is the first statement of a transaction (or an autocommit one), fully
    buffered (not a "large request", C{tunnel_request_size_threshold}), not
    LOAD DATA, not a cursor fetch, and without C{@obproxy_route_addr}; so do
    we (L{RequestFacts}, L{may_retry_refused}). MariaDB's 1053 (server
    shutdown in progress) is different: the server sends it to a statement it
    interrupts, which may have changed a non-transactional table part way, so
    it is retried only for a request that would also be resent when lost.
  - L{may_resend_lost}: the server session was lost after the request went
    out and before any of its answer reached the client. ODP never resends
    here. We do for a request that changes nothing when it runs twice: a
    I{plain read} (L{is_plain_read}) outside a transaction, in autocommit, not
    pinned, not forced to a server; or a bare C{BEGIN}/C{START TRANSACTION}
    there (L{only_starts_transaction}): whatever it opened died with the lost
    session, so the transaction may as well begin on another server (ODP
    holds C{BEGIN} back for the same effect). Everything else gets a clear
    error.
  - L{is_plain_read}: the strict classification behind the previous one. A
    statement is a plain read only when the text shows it can have no effect:
    a single C{SELECT} (or C{SHOW}, C{DESCRIBE}, C{EXPLAIN} without
    C{ANALYZE}) without locking clauses, without C{INTO}, without user
    variable assignment, calling only built-in functions known to change
    nothing. Anything the classifier is unsure of (unknown or qualified
    function names, which may be stored functions that write; executable
    comments; several statements; sequences) is I{not} a plain read.

What the text cannot show: a view whose definition calls a stored function
that writes. A C{SELECT} from such a view would be resent; C{docs/high-
availability.md} says so, and C{retry_lost_reads} turns resending off.
"""

from __future__ import annotations

import re
from typing import FrozenSet

import attrs

__all__ = [
    "CANNOT_SERVE_CODES",
    "SHUTDOWN_CODES",
    "RequestFacts",
    "is_plain_read",
    "may_resend_lost",
    "only_starts_transaction",
    "may_retry_refused",
    "refused_before_running",
]

#: Error codes that mean the server refused the request without running it
#: because it cannot serve now (OceanBase): server initializing (8001), server
#: stopping (8002), tenant not in server (5150), connect error (4124), session
#: entry exists (4661), all retried by ODP at login and on requests
#: (odp-reference.md section 10).
CANNOT_SERVE_CODES: FrozenSet[int] = frozenset({8001, 8002, 5150, 4124, 4661})

#: Error codes that mean the server is going away and interrupted the request,
#: which may have run in part (MariaDB/MySQL 1053, server shutdown in
#: progress): another server may take the request only if running it twice
#: changes nothing.
SHUTDOWN_CODES: FrozenSet[int] = frozenset({1053})


def refused_before_running(error_code: int) -> bool:
    """
    Whether an ERR with C{error_code} as the whole answer to a request means
    the statement did not run and another server may be asked.

    @param error_code: the ERR packet's code.
    """
    return error_code in CANNOT_SERVE_CODES


@attrs.frozen
class RequestFacts:
    """
    What the retry rules need to know about one request.

    @ivar kind: C{"query"} (C{COM_QUERY}), C{"execute"} (C{COM_STMT_EXECUTE}
        without a cursor), C{"fetch"} (C{COM_STMT_FETCH}, or an execute that
        opens a cursor) or C{"other"} (any other command).
    @ivar size: the request's size in bytes (the payload).
    @ivar in_transaction: whether a transaction was open before the request.
    @ivar autocommit: whether the session is in autocommit mode.
    @ivar pinned: whether the session must stay on its server session
        (transaction, user lock, temporary table, cursor, ...).
    @ivar route_forced: whether C{@obproxy_route_addr} (or a dependent
        function such as C{FOUND_ROWS()}) ties the request to a server.
    @ivar load_data: whether it is C{LOAD DATA}.
    @ivar sql: the statement text (C{COM_QUERY}, or the prepared statement's
        text for an execute), or C{None}.
    """

    kind: str
    size: int
    in_transaction: bool
    autocommit: bool
    pinned: bool
    route_forced: bool
    load_data: bool = False
    sql: bytes | None = None


def _movable(facts: RequestFacts, size_threshold: int) -> bool:
    # What both kinds of retry need: the request may go to another server, and
    # the proxy holds all of it.
    return (
        facts.kind in ("query", "execute")
        and not facts.in_transaction
        and not facts.pinned
        and not facts.route_forced
        and not facts.load_data
        and facts.size <= size_threshold
    )


def may_retry_refused(facts: RequestFacts, error_code: int, size_threshold: int) -> bool:
    """
    Whether a request whose whole answer was an ERR with C{error_code} may be
    sent to another server (ODP's rule: not answered usefully, the first
    statement of a transaction or an autocommit one, fully buffered, not LOAD
    DATA or a cursor fetch, no forced route; for a L{SHUTDOWN_CODES} error,
    only what L{may_resend_lost} allows).

    @param facts: the request.
    @param error_code: the code of the ERR that was the whole answer.
    @param size_threshold: C{tunnel_request_size_threshold} in bytes.
    """
    if error_code in SHUTDOWN_CODES:
        return may_resend_lost(facts, size_threshold)
    return refused_before_running(error_code) and _movable(facts, size_threshold)


def may_resend_lost(facts: RequestFacts, size_threshold: int) -> bool:
    """
    Whether a request whose server session was lost before any of its answer
    reached the client may be sent again elsewhere: only a plain read, or a
    bare transaction start, outside a transaction in autocommit: it changes
    nothing that outlives the lost session if it ran already.

    @param facts: the request.
    @param size_threshold: C{tunnel_request_size_threshold} in bytes.
    """
    return (
        _movable(facts, size_threshold)
        and facts.autocommit
        and facts.sql is not None
        and (is_plain_read(facts.sql) or only_starts_transaction(facts.sql))
    )


_TRANSACTION_START = re.compile(
    rb"""\s*(?:
        BEGIN(?:\s+WORK)?
      | START\s+TRANSACTION
        (?:\s+(?:READ\s+ONLY|READ\s+WRITE|WITH\s+CONSISTENT\s+SNAPSHOT)
          (?:\s*,\s*(?:READ\s+ONLY|READ\s+WRITE|WITH\s+CONSISTENT\s+SNAPSHOT))*)?
    )\s*;?\s*\Z""",
    re.I | re.X,
)


def only_starts_transaction(sql: bytes) -> bool:
    """
    Whether the text is a bare C{BEGIN [WORK]} or C{START TRANSACTION [READ
    ONLY | READ WRITE | WITH CONSISTENT SNAPSHOT, ...]} (no comments, nothing
    else), which opens a transaction and changes nothing else.

    @param sql: the statement as the client sent it.
    """
    return _TRANSACTION_START.match(sql) is not None


# -- the classifier --------------------------------------------------------------------------

# Strings, quoted identifiers and comments, so that their contents never count
# as code. An executable comment (/*! ... */, /*M! ... */) is code to the server:
# it is matched separately and makes the text uncertain.
_EXECUTABLE = re.compile(rb"/\*[!M]")
_MASKED = re.compile(
    rb"""
      '(?:[^'\\]|\\.|'')*'
    | "(?:[^"\\]|\\.|"")*"
    | `(?:[^`]|``)*`
    | /\*.*?\*/
    | (?:--[ \t]|\#)[^\n]*
    """,
    re.S | re.X,
)
_WORD = re.compile(rb"[A-Za-z_$][A-Za-z0-9_$]*")
_CALL = re.compile(rb"([A-Za-z_$][A-Za-z0-9_$]*)\s*\(")
_QUALIFIED_CALL = re.compile(rb"[.`]\s*[A-Za-z_$`][A-Za-z0-9_$`]*\s*\(|`\s*\(")
_LEADING = re.compile(rb"[\s(]*([A-Za-z]+)")
# An optimizer hint before or right after the first keyword (/*+ ... */, as in
# SELECT /*+ READ_CONSISTENCY(WEAK) */): a comment to the server, left out of the
# raw checks when it holds no quote (so that it cannot end inside a string).
_HINT = re.compile(rb"\A(\s*(?:[A-Za-z]+\s*)?)/\*\+[^'\"`]*?\*/")

#: Words that make any statement something other than a plain read (writes,
#: locking clauses, INTO, sequences, procedures, handlers, SET).
_NOT_READ_WORDS = frozenset(
    b"""
    INSERT UPDATE DELETE REPLACE MERGE CALL DO SET INTO OUTFILE DUMPFILE LOCK UNLOCK
    SHARE FOR NOWAIT SKIP LOCKED PROCEDURE HANDLER LOAD CREATE DROP ALTER TRUNCATE
    RENAME GRANT REVOKE ANALYZE OPTIMIZE REPAIR CHECK FLUSH RESET PURGE KILL
    NEXTVAL SETVAL LASTVAL PREVIOUS NEXT XA BEGIN COMMIT ROLLBACK SAVEPOINT
    """.split()
)

#: SHOW statements that read the session's own last statement (another server
#: session would answer something else).
_DEPENDENT_SHOW = frozenset(b"WARNINGS ERRORS PROFILE PROFILES COUNT".split())

#: Words followed by "(" that are no function call.
_KEYWORDS_BEFORE_PAREN = frozenset(
    b"""
    SELECT FROM WHERE AND OR NOT XOR IN EXISTS ON USING AS JOIN BY HAVING WHEN THEN ELSE
    CASE OVER PARTITION VALUES ANY ALL SOME UNION EXCEPT INTERSECT IS LIKE BETWEEN DISTINCT
    LIMIT OFFSET WITH RECURSIVE LATERAL ESCAPE REGEXP RLIKE DIV MOD INTERVAL ROW EXPLAIN
    DESC DESCRIBE INDEX KEY
    """.split()
)

#: Built-in functions that change nothing (no locks, no sequences, no session
#: state, no waiting on replication beyond a timeout). A name not here may be
#: a stored function, which may write: not a plain read.
_PURE_FUNCTIONS = frozenset(
    b"""
    COUNT SUM AVG MIN MAX GROUP_CONCAT BIT_AND BIT_OR BIT_XOR STD STDDEV STDDEV_POP
    STDDEV_SAMP VARIANCE VAR_POP VAR_SAMP JSON_ARRAYAGG JSON_OBJECTAGG
    ROW_NUMBER RANK DENSE_RANK PERCENT_RANK CUME_DIST NTILE LAG LEAD FIRST_VALUE
    LAST_VALUE NTH_VALUE
    ABS CEIL CEILING FLOOR ROUND SIGN SQRT POW POWER EXP LN LOG LOG2 LOG10
    PI SIN COS TAN ASIN ACOS ATAN ATAN2 COT DEGREES RADIANS RAND CRC32 CONV BIN OCT
    GREATEST LEAST COALESCE IFNULL NULLIF IF ISNULL NVL NVL2 CAST CONVERT BINARY
    CONCAT CONCAT_WS SUBSTRING SUBSTR MID LEFT RIGHT LENGTH OCTET_LENGTH CHAR_LENGTH
    CHARACTER_LENGTH BIT_LENGTH UPPER UCASE LOWER LCASE TRIM LTRIM RTRIM LPAD RPAD
    REPEAT REVERSE INSTR LOCATE POSITION STRCMP FIELD FIND_IN_SET ELT
    SUBSTRING_INDEX SPACE ASCII ORD CHAR HEX UNHEX FORMAT QUOTE SOUNDEX
    REGEXP_REPLACE REGEXP_INSTR REGEXP_SUBSTR MAKE_SET EXPORT_SET TO_BASE64 FROM_BASE64
    MD5 SHA SHA1 SHA2 COMPRESS UNCOMPRESS UNCOMPRESSED_LENGTH
    NOW SYSDATE CURDATE CURTIME CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP LOCALTIME
    LOCALTIMESTAMP UTC_DATE UTC_TIME UTC_TIMESTAMP UNIX_TIMESTAMP FROM_UNIXTIME DATE
    TIME TIMESTAMP YEAR MONTH DAY DAYOFMONTH DAYOFWEEK DAYOFYEAR WEEKDAY WEEK
    WEEKOFYEAR YEARWEEK HOUR MINUTE SECOND MICROSECOND QUARTER DAYNAME MONTHNAME
    DATE_FORMAT TIME_FORMAT STR_TO_DATE DATE_ADD DATE_SUB ADDDATE SUBDATE ADDTIME
    SUBTIME DATEDIFF TIMEDIFF TIMESTAMPADD TIMESTAMPDIFF TO_DAYS FROM_DAYS TO_SECONDS
    SEC_TO_TIME TIME_TO_SEC LAST_DAY MAKEDATE MAKETIME PERIOD_ADD PERIOD_DIFF
    CONVERT_TZ EXTRACT GET_FORMAT
    JSON_EXTRACT JSON_VALUE JSON_QUERY JSON_UNQUOTE JSON_QUOTE JSON_OBJECT JSON_ARRAY
    JSON_CONTAINS JSON_CONTAINS_PATH JSON_KEYS JSON_LENGTH JSON_TYPE JSON_VALID
    JSON_DEPTH JSON_SEARCH JSON_SET JSON_INSERT JSON_REPLACE JSON_REMOVE JSON_MERGE
    JSON_MERGE_PATCH JSON_MERGE_PRESERVE JSON_ARRAY_APPEND JSON_ARRAY_INSERT
    VERSION DATABASE SCHEMA USER CURRENT_USER SESSION_USER SYSTEM_USER CURRENT_ROLE
    CHARSET COLLATION COERCIBILITY UUID UUID_SHORT SLEEP BENCHMARK INET_ATON
    INET_NTOA INET6_ATON INET6_NTOA IS_IPV4 IS_IPV6 BIT_COUNT
    """.split()
)


def _blank(match: re.Match[bytes]) -> bytes:
    text = match.group()
    if text[:1] == b"`":
        # A quoted identifier stays one (as x...x): a quoted name before "(" is a call.
        return b"`" + b"x" * (len(text) - 2) + b"`"
    return b" " * len(text)


def _masked(sql: bytes) -> bytes | None:
    if _EXECUTABLE.search(sql):
        return None
    return _MASKED.sub(_blank, sql)


def is_plain_read(sql: bytes) -> bool:
    """
    Whether the statement text is a plain read: running it twice changes
    nothing (see the module docstring for what counts). Uncertain means no.

    The word, call and separator checks read the raw text, strings and
    comments included: a string or comment that merely looks like code only
    makes the answer "no", and a quoting mode the masking misreads (the
    server's C{NO_BACKSLASH_ESCAPES}) cannot hide code from them. Only the
    leading keyword is read with comments masked.

    @param sql: the statement as the client sent it.
    """
    masked = _masked(sql)
    if masked is None:
        return False
    raw = sql
    while True:
        hinted = _HINT.match(raw)
        if hinted is None:
            break
        raw = hinted.group(1) + b" " + raw[hinted.end() :]
    raw = raw.strip()
    if raw.endswith(b";"):
        raw = raw[:-1]
    if not raw or b";" in raw or b":=" in raw:
        return False
    leading = _LEADING.match(masked)
    if leading is None:
        return False
    first = leading.group(1).upper()
    words = [word.upper() for word in _WORD.findall(raw)]
    if any(word in _NOT_READ_WORDS for word in words):
        return False
    if first == b"SHOW":
        show = [word.upper() for word in _WORD.findall(masked)]
        return len(show) > 1 and show[1] not in _DEPENDENT_SHOW and b"@" not in raw
    if first in (b"DESC", b"DESCRIBE", b"EXPLAIN"):
        if b"ANALYZE" in words:
            return False
    elif first not in (b"SELECT", b"WITH"):
        return False
    if _QUALIFIED_CALL.search(raw):
        return False
    for match in _CALL.finditer(raw):
        name = match.group(1).upper()
        if name not in _KEYWORDS_BEFORE_PAREN and name not in _PURE_FUNCTIONS:
            return False
    return True
