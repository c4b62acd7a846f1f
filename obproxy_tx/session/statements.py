"""
Cheap statement analysis for routing and session-state tracking, without a
full SQL parse.

L{classify} looks at a C{COM_QUERY} text once and tells the proxy core what
it needs before sending it anywhere:

  - the statement's L{StatementKind} (the first keyword, with the few
    second keywords that matter: C{START TRANSACTION}, C{ROLLBACK TO},
    C{CREATE TEMPORARY TABLE}, C{LOAD DATA LOCAL}, ...);
  - the variables it assigns: user variables (C{SET @a = 1},
    C{SELECT ... INTO @v}, C{@v := expr}) and system variables with their
    scope (C{SET [GLOBAL|SESSION|LOCAL] x = v}, C{SET @@session.x = v},
    C{SET NAMES}, C{SET CHARACTER SET}), with the value when it is a simple
    literal. Some servers (seekdb) report C{SET @v} in the OK packet without
    the name, so the statement is the only place to learn it;
  - the database of C{USE db};
  - why it must stay on the current server session (ODP's dependent
    functions, user locks, temporary tables, C{SET TRANSACTION}, text
    C{PREPARE}, C{LOCK TABLES}, XA; odp-reference.md section 9), and whether
    it uses C{LAST_INSERT_ID()} (a preference for the session that made the
    id, not a pin);
  - ODP's C{SET @obproxy_route_addr = <addr>} route override;
  - whether the text holds more than one statement;
  - whether it may be one of the proxy's own commands (C{SHOW PROXY...},
    C{KILL}, C{PING PROXY}, C{SELECT PROXY_VERSION()}, ...).

Quotes (C{'...'}, C{"..."}, C{`...`}), comments (C{/* */}, C{-- }, C{#}) are
respected everywhere; MySQL's executable comments (C{/*!40101 ... */},
MariaDB's C{/*M!...*/}) count as code, as the server runs them. Strings are
read with backslash escapes (the default C{sql_mode}); under
C{NO_BACKSLASH_ESCAPES} a string ending in a backslash may be misread, which
only makes the analysis more conservative (more pins), never unsafe.

L{classify} never raises: any byte string gives a L{StatementInfo} (the
worst case is L{StatementKind.OTHER} with nothing learned). Typical OLTP
statements cost one to a few microseconds (statements without variables,
functions or quotes return a shared instance).
"""

from __future__ import annotations

import decimal
import re
from enum import Enum
from typing import Iterator, List, Tuple, Union

import attrs

__all__ = [
    "PIN_LOCK_TABLES",
    "PIN_SET_TRANSACTION",
    "PIN_TEMPORARY_TABLE",
    "PIN_TEXT_PREPARE",
    "PIN_XA",
    "RouteAddr",
    "StatementInfo",
    "StatementKind",
    "VarAssignment",
    "VarScope",
    "classify",
    "substitute_connection_id",
]

#: Pin reason of C{CREATE TEMPORARY TABLE}.
PIN_TEMPORARY_TABLE = "temporary table"
#: Pin reason of C{SET TRANSACTION} (without a scope: it applies to the next
#: transaction of this server session only).
PIN_SET_TRANSACTION = "SET TRANSACTION"
#: Pin reason of a text C{PREPARE} (the statement lives on one server session).
PIN_TEXT_PREPARE = "text PREPARE"
#: Pin reason of C{LOCK TABLES}.
PIN_LOCK_TABLES = "LOCK TABLES"
#: Pin reason of any C{XA} statement.
PIN_XA = "XA transaction"
#: Pin reason of C{HANDLER ... OPEN} (an open table handler).
PIN_HANDLER = "HANDLER"

_DEPENDENT_FUNCTIONS = ("FOUND_ROWS", "ROW_COUNT", "CONNECTION_ID", "SYS_CONTEXT")
_LOCK_FUNCTIONS = (
    "GET_LOCK",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
)
_DEPENDENT_VARIABLES = ("WARNING_COUNT", "ERROR_COUNT")


class StatementKind(Enum):
    """
    What a statement is, as far as routing and state tracking care.
    """

    #: C{SELECT}, C{WITH ...}, C{(SELECT ...)}, C{VALUES}, C{TABLE}.
    SELECT = "SELECT"
    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    REPLACE = "REPLACE"
    #: C{SET} of variables (also C{SET NAMES}, C{SET PASSWORD}, C{SET ROLE}).
    SET = "SET"
    #: C{SET [GLOBAL|SESSION] TRANSACTION ...}.
    SET_TRANSACTION = "SET TRANSACTION"
    USE = "USE"
    #: C{BEGIN [WORK]}, C{START TRANSACTION [READ ONLY|READ WRITE|WITH CONSISTENT SNAPSHOT]}.
    BEGIN = "BEGIN"
    COMMIT = "COMMIT"
    #: C{ROLLBACK [WORK]} (not C{ROLLBACK TO}: that is L{SAVEPOINT}).
    ROLLBACK = "ROLLBACK"
    #: C{SAVEPOINT x}, C{ROLLBACK [WORK] TO [SAVEPOINT] x}, C{RELEASE SAVEPOINT x}.
    SAVEPOINT = "SAVEPOINT"
    #: C{XA START|BEGIN|END|PREPARE|COMMIT|ROLLBACK|RECOVER}.
    XA = "XA"
    LOCK_TABLES = "LOCK TABLES"
    UNLOCK_TABLES = "UNLOCK TABLES"
    #: C{CREATE TEMPORARY TABLE} / C{DROP TEMPORARY TABLE}.
    DDL_TEMP_TABLE = "DDL TEMPORARY TABLE"
    #: Text protocol C{PREPARE name FROM ...}.
    PREPARE = "PREPARE"
    #: Text protocol C{EXECUTE name [USING ...]}.
    EXECUTE = "EXECUTE"
    #: C{DEALLOCATE PREPARE name} / C{DROP PREPARE name}.
    DEALLOCATE = "DEALLOCATE"
    #: C{KILL [CONNECTION|QUERY] id} (and ODP's C{KILL PROXYSESSION ...}).
    KILL = "KILL"
    SHOW = "SHOW"
    CALL = "CALL"
    #: C{LOAD DATA [LOCAL] INFILE}, C{LOAD XML}.
    LOAD_DATA = "LOAD DATA"
    #: Other C{CREATE}, C{ALTER}, C{DROP}, C{TRUNCATE}, C{RENAME}, C{GRANT}, C{REVOKE}.
    DDL = "DDL"
    #: Anything else (also empty text and text that is only comments).
    OTHER = "OTHER"


class VarScope(Enum):
    """
    Whose variable an assignment changes.
    """

    #: A user variable (C{@name}).
    USER = "USER"
    #: The session value of a system variable (C{SESSION}, C{LOCAL}, C{@@}, none).
    SESSION = "SESSION"
    GLOBAL = "GLOBAL"
    PERSIST = "PERSIST"
    PERSIST_ONLY = "PERSIST_ONLY"


SimpleValue = Union[None, int, float, decimal.Decimal, str, bytes]
"""The Python values a simple literal is read as."""


@attrs.frozen
class VarAssignment:
    """
    One variable a statement assigns.

    @ivar name: the variable's name, lower-cased (MySQL's user and system
        variable names are case-insensitive), without C{@}/C{@@} and scope.
    @ivar scope: whose variable it is.
    @ivar value_sql: the assigned value as written, when it is a simple
        literal (a number, a string, C{NULL}, C{TRUE}/C{FALSE}, a hex or bit
        literal, or for system variables a bare word such as C{ON}), else
        C{None}: the value is an expression the proxy does not evaluate.
    @ivar value: the literal read as Python (C{int}, C{Decimal}, C{float},
        C{str}, C{bytes}, or C{None} for C{NULL}); C{None} also when
        C{value_sql} is C{None}.
    """

    name: str
    scope: VarScope
    value_sql: str | None = None
    value: SimpleValue = None

    @property
    def is_literal(self) -> bool:
        """
        Whether the value is known (a simple literal).
        """
        return self.value_sql is not None


@attrs.frozen
class RouteAddr:
    """
    The target of ODP's C{SET @obproxy_route_addr = <value>}.

    A string C{'ip:port'} names the server directly. An integer is ODP's
    packed form M{(ipv4 << 32) | port}. Zero, C{NULL} or an empty string
    clear the override.

    @ivar host: the server's address, or C{None} to clear the override or
        when the value could not be read.
    @ivar port: the server's SQL port, or C{None}.
    @ivar value_sql: the value as written.
    """

    host: str | None
    port: int | None
    value_sql: str

    @property
    def clears(self) -> bool:
        """
        Whether the statement removes the override (C{0}, C{NULL} or C{''}).
        """
        return self.host is None and self.value_sql.strip().upper() in ("0", "NULL", "''", '""')


@attrs.frozen
class StatementInfo:
    """
    What L{classify} learned about one C{COM_QUERY} text.

    For a multi-statement text the C{kind}, C{verb} and statement details
    (C{read_only}, C{kill_id}, ...) are those of the first statement;
    assignments, pins, the database and the route come from all of them, in
    order (C{kinds} lists every statement's kind).

    @ivar kind: the (first) statement's kind.
    @ivar verb: its first keyword, upper-cased (C{""} when there is none).
    @ivar user_var_assignments: user variables assigned, in order.
    @ivar system_var_assignments: system variables assigned, in order.
    @ivar database: the database of C{USE db}, else C{None}.
    @ivar pin_reasons: why the client must stay on its current server
        session, e.g. C{"dependent function FOUND_ROWS()"},
        C{"user lock GET_LOCK()"}, C{"dependent statement SHOW WARNINGS"},
        L{PIN_TEMPORARY_TABLE}, L{PIN_SET_TRANSACTION}, L{PIN_TEXT_PREPARE},
        L{PIN_LOCK_TABLES}, L{PIN_XA}. C{SELECT ... FOR UPDATE} is not a pin:
        the open transaction is.
    @ivar uses_last_insert_id: C{LAST_INSERT_ID()} appears: prefer the
        server session that made the last id (not a pin).
    @ivar route_addr: from C{SET @obproxy_route_addr = ...}, else C{None}.
    @ivar multi_statement: a C{;} outside quotes and comments is followed by
        more SQL.
    @ivar is_internal_candidate: it may be one of the proxy's own commands
        (C{SHOW PROXY...}, C{SHOW [FULL] PROCESSLIST}, C{KILL ...},
        C{PING PROXY}, C{SELECT PROXY_VERSION()}/C{PROXY_STATUS()},
        C{SELECT @obproxy_route_addr}, C{ALTER PROXY...}).
    @ivar read_only: C{True}/C{False} for C{START TRANSACTION READ ONLY/READ
        WRITE} and C{SET TRANSACTION READ ONLY/READ WRITE}, else C{None}.
    @ivar local_infile: C{LOAD DATA LOCAL INFILE} (the client will send a file).
    @ivar kill_id: the id of C{KILL [CONNECTION|QUERY] id}, else C{None}.
    @ivar kill_query: C{KILL QUERY} (only the running statement).
    @ivar ps_name: the statement name of a text C{PREPARE}/C{EXECUTE}/C{DEALLOCATE}.
    @ivar xa_action: the verb after C{XA} (C{"START"}, C{"END"}, ...), else C{None}.
    @ivar kinds: the kind of every statement of the text, in order.
    @ivar connection_id_only: the text is exactly C{SELECT CONNECTION_ID()}
        (which the proxy may answer with the id the client saw).
    """

    kind: StatementKind
    verb: str = ""
    user_var_assignments: Tuple[VarAssignment, ...] = ()
    system_var_assignments: Tuple[VarAssignment, ...] = ()
    database: str | None = None
    pin_reasons: frozenset[str] = frozenset()
    uses_last_insert_id: bool = False
    route_addr: RouteAddr | None = None
    multi_statement: bool = False
    is_internal_candidate: bool = False
    read_only: bool | None = None
    local_infile: bool = False
    kill_id: int | None = None
    kill_query: bool = False
    ps_name: str | None = None
    xa_action: str | None = None
    kinds: Tuple[StatementKind, ...] = ()
    connection_id_only: bool = False

    @property
    def needs_last_session(self) -> bool:
        """
        It depends on the previous statement (a dependent function, variable
        or C{SHOW WARNINGS}-like statement), so it must run where that ran.
        """
        return any(reason.startswith("dependent ") for reason in self.pin_reasons)

    @property
    def kill(self) -> Tuple[bool, int] | None:
        """
        C{(query_only, id)} for C{KILL [CONNECTION|QUERY] id}, else C{None}.
        """
        if self.kind is not StatementKind.KILL or self.kill_id is None:
            return None
        return (self.kill_query, self.kill_id)

    @property
    def user_vars_assigned(self) -> frozenset[str]:
        """
        The names of the user variables assigned.
        """
        return frozenset(assignment.name for assignment in self.user_var_assignments)

    @property
    def starts_transaction(self) -> bool:
        """
        C{BEGIN}/C{START TRANSACTION} or C{XA START}/C{XA BEGIN}.
        """
        return self.kind is StatementKind.BEGIN or (
            self.kind is StatementKind.XA and self.xa_action in ("START", "BEGIN")
        )


# --------------------------------------------------------------------------
# Lexical helpers
# --------------------------------------------------------------------------

# Leading whitespace and comments (not executable ones, which were unwrapped).
_LEADING = re.compile(rb"(?:\s+|/\*.*?(?:\*/|\Z)|(?:--(?=\s|\Z)|#)[^\n]*)*", re.S)
_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_$]*")
# Anything that needs masking before scanning the text.
_SPECIAL = re.compile(rb"['\"`#]|/\*|--")
# Quoted strings, quoted identifiers and comments: the regions to mask.
_SQ = rb"'[^'\\]*(?:(?:\\.|'')[^'\\]*)*(?:'|\Z)"
_DQ = rb'"[^"\\]*(?:(?:\\.|"")[^"\\]*)*(?:"|\Z)'
_BQ = rb"`[^`]*(?:``[^`]*)*(?:`|\Z)"
_MASKED = re.compile(
    _SQ + b"|" + _DQ + b"|" + _BQ + rb"|/\*.*?(?:\*/|\Z)|(?:--(?=\s|\Z)|\#)[^\n]*", re.S
)
_EXECUTABLE_COMMENT = re.compile(rb"/\*M?!\d*")
# Function calls that matter, on upper-cased masked text.
_FUNCTIONS = re.compile(
    rb"(?<![A-Z0-9_$.@])("
    + b"|".join(
        name.encode() for name in (*_DEPENDENT_FUNCTIONS, *_LOCK_FUNCTIONS, "LAST_INSERT_ID")
    )
    + rb")\s*\("
)
_DEPENDENT_VARS = re.compile(
    rb"@@(?:SESSION\.|LOCAL\.)?(" + b"|".join(v.encode() for v in _DEPENDENT_VARIABLES) + rb")\b"
)
_INTO_VAR = re.compile(rb"\bINTO\s+@")

# Tokens of the original text (for SET and other small parses).
_TOKEN = re.compile(
    rb"(?P<skip>\s+|/\*.*?(?:\*/|\Z)|(?:--(?=\s|\Z)|\#)[^\n]*)"
    rb"|(?P<str>" + _SQ + b"|" + _DQ + rb")"
    rb"|(?P<hex>[Xx]'[0-9A-Fa-f]*'|0x[0-9A-Fa-f]+(?![A-Za-z0-9_$]))"
    rb"|(?P<bit>[Bb]'[01]*'|0b[01]+(?![A-Za-z0-9_$]))"
    rb"|(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_$]))"
    rb"|(?P<sysvar>@@(?:" + _BQ + rb"|[A-Za-z0-9_$]+)(?:\.(?:" + _BQ + rb"|[A-Za-z0-9_$]+))*)"
    rb"|(?P<uvar>@(?:" + _BQ + b"|" + _SQ + b"|" + _DQ + rb"|[A-Za-z0-9_$.]+))"
    rb"|(?P<qid>" + _BQ + rb")"
    rb"|(?P<word>[A-Za-z0-9_$\x80-\xff]+)"
    rb"|(?P<assign>:=)"
    rb"|(?P<op>.)",
    re.S,
)
# Needles that every function of _FUNCTIONS contains: a cheap pre-check.
_FUNCTION_NEEDLES = (
    b"ROWS",
    b"ROW_COUNT",
    b"CONNECTION_ID",
    b"LAST_INSERT_ID",
    b"LOCK",
    b"SYS_CONTEXT",
)


def _may_call(upper: bytes) -> bool:
    # A loop is faster than any() over a generator here.
    for needle in _FUNCTION_NEEDLES:  # noqa: SIM110
        if needle in upper:
            return True
    return False


class _Token:
    """One token of the original text (a plain slotted class: tokens are hot)."""

    __slots__ = ("end", "kind", "start", "text")

    def __init__(self, kind: str, text: bytes, start: int, end: int) -> None:
        self.kind = kind
        self.text = text
        self.start = start
        self.end = end

    @property
    def upper(self) -> str:
        return self.text.decode("latin-1").upper()


def _tokens(sql: bytes, start: int, end: int) -> Iterator[_Token]:
    for match in _TOKEN.finditer(sql, start, end):
        kind = match.lastgroup
        if kind is None or kind == "skip":
            continue
        yield _Token(kind, match.group(), match.start(), match.end())


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


_STRING_ESCAPES = {
    b"0": b"\0",
    b"b": b"\b",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"Z": b"\x1a",
    b"%": b"\\%",
    b"_": b"\\_",
}
_ESCAPE_RE = re.compile(rb"\\(.)|''|\"\"", re.S)


def _unquote_string(token: bytes) -> bytes:
    quote = token[:1]
    body = token[1:-1] if len(token) > 1 and token.endswith(quote) else token[1:]

    def replace(match: re.Match[bytes]) -> bytes:
        escaped = match.group(1)
        if escaped is None:
            return match.group()[:1]
        return _STRING_ESCAPES.get(escaped, escaped)

    return _ESCAPE_RE.sub(replace, body)


def _unquote_identifier(token: bytes) -> str:
    if token.startswith(b"`"):
        body = token[1:-1] if len(token) > 1 and token.endswith(b"`") else token[1:]
        return _text(body.replace(b"``", b"`"))
    return _text(token)


def _user_var_name(token: bytes) -> str:
    # token is "@name", "@`name`", "@'name'" or '@"name"'.
    body = token[1:]
    if body[:1] in (b"'", b'"'):
        return _text(_unquote_string(body)).lower()
    return _unquote_identifier(body).lower()


def _unwrap_executable_comments(sql: bytes) -> bytes:
    # /*!40101 SET NAMES utf8 */ runs its content: blank the markers, keep the
    # length (positions stay comparable). The closing */ is the first one
    # after the opener, as the server reads it.
    out: bytearray | None = None
    for match in _MASKED.finditer(sql):
        opener = _EXECUTABLE_COMMENT.match(sql, match.start(), match.end())
        if opener is None:
            continue
        if out is None:
            out = bytearray(sql)
        out[opener.start() : opener.end()] = b" " * (opener.end() - opener.start())
        if match.end() - opener.end() >= 2 and sql[match.end() - 2 : match.end()] == b"*/":
            out[match.end() - 2 : match.end()] = b"  "
    return sql if out is None else bytes(out)


def _blank(match: re.Match[bytes]) -> bytes:
    return b" " * (match.end() - match.start())


def _mask(sql: bytes) -> bytes:
    return _MASKED.sub(_blank, sql)


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------

_INTRODUCER = re.compile(r"_[A-Z0-9]+\Z|N\Z")
_BARE_WORD_VALUES: dict[str, SimpleValue] = {"NULL": None, "TRUE": 1, "FALSE": 0}


def _number(text: bytes) -> Union[int, float, decimal.Decimal]:
    if b"e" in text or b"E" in text:
        return float(text)
    if b"." in text:
        return decimal.Decimal(text.decode("ascii"))
    return int(text)


def _literal(tokens: List[_Token], sql: bytes, system: bool) -> Tuple[str | None, SimpleValue]:
    """
    Read the value tokens of an assignment: (value_sql, value), or (None,
    None) when it is not a simple literal.
    """
    if not tokens:
        return None, None
    source = _text(sql[tokens[0].start : tokens[-1].end])
    negative = False
    if len(tokens) == 2 and tokens[0].kind == "op" and tokens[0].text in (b"-", b"+"):
        negative = tokens[0].text == b"-"
        tokens = tokens[1:]
        if tokens[0].kind != "num":
            return None, None
    if len(tokens) == 2 and tokens[0].kind == "word" and tokens[1].kind == "str":
        if not _INTRODUCER.match(tokens[0].upper):
            return None, None
        tokens = tokens[1:]
    if len(tokens) != 1:
        return None, None
    token = tokens[0]
    kind = token.kind
    try:
        if kind == "num":
            number = _number(token.text)
            return source, -number if negative else number
        if kind == "str":
            return source, _text(_unquote_string(token.text))
        if kind in ("hex", "bit"):
            text = token.text
            digits = text[2:-1] if text.endswith(b"'") else text[2:]
            if kind == "hex":
                return source, bytes.fromhex((b"0" * (len(digits) % 2) + digits).decode("ascii"))
            value = int(digits, 2) if digits else 0
            return source, value.to_bytes((len(digits) + 7) // 8, "big")
    except (ValueError, ArithmeticError):
        return None, None
    if kind == "word":
        word = token.upper
        if word in _BARE_WORD_VALUES:
            return source, _BARE_WORD_VALUES[word]
        if system and word != "DEFAULT":
            return source, _text(token.text)
    if kind == "qid" and system:
        return source, _unquote_identifier(token.text)
    return None, None


def _route_addr(value_sql: str | None, value: SimpleValue, raw: str) -> RouteAddr:
    if value_sql is None:
        return RouteAddr(None, None, raw)
    if isinstance(value, int):
        if value <= 0:
            return RouteAddr(None, None, raw)
        ip, port = value >> 32, value & 0xFFFFFFFF
        if not 0 < ip <= 0xFFFFFFFF or not 0 < port <= 0xFFFF:
            return RouteAddr(None, None, raw)
        host = ".".join(str((ip >> shift) & 0xFF) for shift in (24, 16, 8, 0))
        return RouteAddr(host, port, raw)
    if isinstance(value, str):
        host, sep, port_text = value.strip().rpartition(":")
        if sep and host and port_text.isdigit() and 0 < int(port_text) <= 0xFFFF:
            return RouteAddr(host.strip("[]"), int(port_text), raw)
    return RouteAddr(None, None, raw)


# --------------------------------------------------------------------------
# Statement analysis
# --------------------------------------------------------------------------


@attrs.define
class _Facts:
    """Mutable facts of one statement while it is analysed."""

    kind: StatementKind = StatementKind.OTHER
    verb: str = ""
    user_vars: List[VarAssignment] = attrs.field(factory=list)
    sys_vars: List[VarAssignment] = attrs.field(factory=list)
    database: str | None = None
    pins: set[str] = attrs.field(factory=set)
    uses_last_insert_id: bool = False
    route_addr: RouteAddr | None = None
    internal: bool = False
    read_only: bool | None = None
    local_infile: bool = False
    kill_id: int | None = None
    kill_query: bool = False
    ps_name: str | None = None
    xa_action: str | None = None
    connection_id_only: bool = False


_SCOPE_WORDS = {
    "GLOBAL": VarScope.GLOBAL,
    "SESSION": VarScope.SESSION,
    "LOCAL": VarScope.SESSION,
    "PERSIST": VarScope.PERSIST,
    "PERSIST_ONLY": VarScope.PERSIST_ONLY,
}
_SIMPLE_KINDS = {
    "SELECT": StatementKind.SELECT,
    "WITH": StatementKind.SELECT,
    "VALUES": StatementKind.SELECT,
    "TABLE": StatementKind.SELECT,
    "INSERT": StatementKind.INSERT,
    "UPDATE": StatementKind.UPDATE,
    "DELETE": StatementKind.DELETE,
    "REPLACE": StatementKind.REPLACE,
    "COMMIT": StatementKind.COMMIT,
    "SAVEPOINT": StatementKind.SAVEPOINT,
    "CALL": StatementKind.CALL,
    "TRUNCATE": StatementKind.DDL,
    "RENAME": StatementKind.DDL,
    "GRANT": StatementKind.DDL,
    "REVOKE": StatementKind.DDL,
    "EXECUTE": StatementKind.EXECUTE,
    "DEALLOCATE": StatementKind.DEALLOCATE,
}


def _words(sql: bytes, start: int, end: int, count: int) -> List[_Token]:
    words: List[_Token] = []
    for token in _tokens(sql, start, end):
        words.append(token)
        if len(words) >= count:
            break
    return words


def _upper_words(sql: bytes, start: int, end: int, count: int) -> List[str]:
    return [token.upper if token.kind == "word" else "" for token in _words(sql, start, end, count)]


def _identifier(token: _Token) -> str | None:
    if token.kind == "word":
        return _text(token.text)
    if token.kind == "qid":
        return _unquote_identifier(token.text)
    if token.kind == "str":
        return _text(_unquote_string(token.text))
    return None


def _split_items(tokens: List[_Token]) -> List[List[_Token]]:
    items: List[List[_Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "op":
            if token.text == b"(":
                depth += 1
            elif token.text == b")":
                depth = max(depth - 1, 0)
            elif token.text == b"," and depth == 0:
                items.append([])
                continue
        items[-1].append(token)
    return [item for item in items if item]


def _is_equals(token: _Token) -> bool:
    return token.kind == "assign" or (token.kind == "op" and token.text == b"=")


def _sysvar_target(token: _Token) -> Tuple[str, VarScope]:
    # "@@x", "@@session.x", "@@global.x", "@@local.x", "@@`x`": without a
    # scope prefix it is the session value.
    parts = token.text[2:].split(b".")
    scope = VarScope.SESSION
    if len(parts) > 1:
        found = _SCOPE_WORDS.get(parts[0].decode("latin-1").upper())
        if found is not None:
            scope = found
            parts = parts[1:]
    name = ".".join(_unquote_identifier(part) for part in parts)
    return name.lower(), scope


def _parse_set(facts: _Facts, sql: bytes, start: int, end: int) -> None:
    tokens = list(_tokens(sql, start, end))
    if not tokens:
        return
    head = tokens[0].upper if tokens[0].kind == "word" else ""
    second = tokens[1].upper if len(tokens) > 1 and tokens[1].kind == "word" else ""
    if head in ("PASSWORD", "ROLE", "STATEMENT") or (head == "DEFAULT" and second == "ROLE"):
        # SET PASSWORD / ROLE / DEFAULT ROLE / MariaDB's SET STATEMENT ... FOR:
        # nothing of the session's variables to learn.
        return
    if head == "TRANSACTION" or (head in _SCOPE_WORDS and second == "TRANSACTION"):
        scope = _SCOPE_WORDS.get(head) if head != "TRANSACTION" else None
        _parse_set_transaction(facts, tokens[1 if scope is None else 2 :], scope)
        return
    scope = VarScope.SESSION
    for item in _split_items(tokens):
        first = item[0]
        word = first.upper if first.kind == "word" else ""
        if word in _SCOPE_WORDS and len(item) > 1 and not _is_equals(item[1]):
            scope = _SCOPE_WORDS[word]
            item = item[1:]
            first = item[0]
            word = first.upper if first.kind == "word" else ""
        if word == "NAMES" and (len(item) == 1 or not _is_equals(item[1])):
            _set_names(facts, item[1:], sql)
            continue
        if word in ("CHARSET", "CHARACTER") and (len(item) == 1 or not _is_equals(item[1])):
            rest = item[1:]
            if word == "CHARACTER" and rest and rest[0].upper == "SET":
                rest = rest[1:]
            _set_character_set(facts, rest, sql)
            continue
        # find the '=' / ':='
        equals = next((index for index, token in enumerate(item) if _is_equals(token)), -1)
        if equals <= 0:
            continue
        target = item[:equals]
        value_tokens = item[equals + 1 :]
        if len(target) == 1 and target[0].kind == "uvar":
            name = _user_var_name(target[0].text)
            value_sql, value = _literal(value_tokens, sql, system=False)
            if name == "obproxy_route_addr":
                raw = (
                    _text(sql[value_tokens[0].start : value_tokens[-1].end]) if value_tokens else ""
                )
                facts.route_addr = _route_addr(value_sql, value, raw)
                continue
            facts.user_vars.append(VarAssignment(name, VarScope.USER, value_sql, value))
            continue
        if len(target) == 1 and target[0].kind == "sysvar":
            name, item_scope = _sysvar_target(target[0])
        else:
            # name, `name`, or component.name
            pieces = [
                _identifier(token)
                for token in target
                if not (token.kind == "op" and token.text == b".")
            ]
            if not pieces or any(piece is None for piece in pieces):
                continue
            name = ".".join(piece for piece in pieces if piece is not None).lower()
            item_scope = scope
        value_sql, value = _literal(value_tokens, sql, system=True)
        facts.sys_vars.append(VarAssignment(name, item_scope, value_sql, value))


def _charset_value(tokens: List[_Token], sql: bytes) -> Tuple[str | None, SimpleValue]:
    if len(tokens) != 1:
        return None, None
    token = tokens[0]
    if token.kind == "word" and token.upper == "DEFAULT":
        return None, None
    name = _identifier(token)
    if name is None:
        return None, None
    return _text(token.text), name


def _set_names(facts: _Facts, tokens: List[_Token], sql: bytes) -> None:
    collate: List[_Token] = []
    for index, token in enumerate(tokens):
        if token.kind == "word" and token.upper == "COLLATE":
            tokens, collate = tokens[:index], tokens[index + 1 :]
            break
    value_sql, value = _charset_value(tokens, sql)
    for name in ("character_set_client", "character_set_connection", "character_set_results"):
        facts.sys_vars.append(VarAssignment(name, VarScope.SESSION, value_sql, value))
    if collate:
        value_sql, value = _charset_value(collate, sql)
        facts.sys_vars.append(
            VarAssignment("collation_connection", VarScope.SESSION, value_sql, value)
        )


def _set_character_set(facts: _Facts, tokens: List[_Token], sql: bytes) -> None:
    value_sql, value = _charset_value(tokens, sql)
    facts.sys_vars.append(VarAssignment("character_set_client", VarScope.SESSION, value_sql, value))
    facts.sys_vars.append(
        VarAssignment("character_set_results", VarScope.SESSION, value_sql, value)
    )
    # character_set_connection takes @@character_set_database: not known here.
    facts.sys_vars.append(VarAssignment("character_set_connection", VarScope.SESSION))


_ISOLATION_LEVELS = {
    ("READ", "UNCOMMITTED"): "READ-UNCOMMITTED",
    ("READ", "COMMITTED"): "READ-COMMITTED",
    ("REPEATABLE", "READ"): "REPEATABLE-READ",
    ("SERIALIZABLE",): "SERIALIZABLE",
}


def _parse_set_transaction(facts: _Facts, tokens: List[_Token], scope: VarScope | None) -> None:
    facts.kind = StatementKind.SET_TRANSACTION
    if scope is None:
        facts.pins.add(PIN_SET_TRANSACTION)
    for item in _split_items(tokens):
        words = tuple(token.upper for token in item)
        if words[:2] == ("ISOLATION", "LEVEL"):
            level = _ISOLATION_LEVELS.get(words[2:])
            if scope is not None and level is not None:
                quoted = "'" + level + "'"
                facts.sys_vars.append(VarAssignment("transaction_isolation", scope, quoted, level))
        elif words[:1] == ("READ",) and len(words) == 2 and words[1] in ("ONLY", "WRITE"):
            flag = 1 if words[1] == "ONLY" else 0
            facts.read_only = bool(flag)
            if scope is not None:
                facts.sys_vars.append(
                    VarAssignment("transaction_read_only", scope, str(flag), flag)
                )


def _parse_begin(facts: _Facts, tokens: List[_Token]) -> None:
    # tokens: what follows START TRANSACTION.
    facts.kind = StatementKind.BEGIN
    for item in _split_items(tokens):
        words = tuple(token.upper for token in item)
        if words == ("READ", "ONLY"):
            facts.read_only = True
        elif words == ("READ", "WRITE"):
            facts.read_only = False


def _into_vars(facts: _Facts, sql: bytes, upper: bytes) -> None:
    for match in _INTO_VAR.finditer(upper):
        position = match.end() - 1
        expect_var = True
        for token in _tokens(sql, position, len(sql)):
            if expect_var and token.kind == "uvar":
                facts.user_vars.append(VarAssignment(_user_var_name(token.text), VarScope.USER))
                expect_var = False
            elif not expect_var and token.kind == "op" and token.text == b",":
                expect_var = True
            else:
                break


def _walrus_vars(facts: _Facts, sql: bytes, start: int, end: int) -> None:
    tokens = list(_tokens(sql, start, end))
    for index, token in enumerate(tokens[1:], 1):
        if token.kind == "assign" and tokens[index - 1].kind == "uvar":
            name = _user_var_name(tokens[index - 1].text)
            value_tokens: List[_Token] = []
            depth = 0
            for follower in tokens[index + 1 :]:
                if follower.kind == "op" and follower.text in (b",", b")") and depth == 0:
                    break
                if (
                    follower.kind == "word"
                    and depth == 0
                    and follower.upper
                    in (
                        "FROM",
                        "AS",
                        "INTO",
                        "WHERE",
                        "UNION",
                        "ORDER",
                        "GROUP",
                        "LIMIT",
                        "HAVING",
                        "FOR",
                    )
                ):
                    break
                if follower.kind == "op" and follower.text == b"(":
                    depth += 1
                elif follower.kind == "op" and follower.text == b")":
                    depth -= 1
                value_tokens.append(follower)
            value_sql, value = _literal(value_tokens, sql, system=False)
            facts.user_vars.append(VarAssignment(name, VarScope.USER, value_sql, value))


def _scan_body(facts: _Facts, sql: bytes, masked: bytes, start: int, end: int) -> None:
    """Functions, dependent variables, := and INTO @v anywhere in the statement."""
    segment = masked[start:end]
    upper: bytes | None = None
    if b"(" in segment:
        upper = segment.upper()
        matches = _FUNCTIONS.finditer(upper) if _may_call(upper) else ()
        for match in matches:
            name = match.group(1).decode("ascii")
            if name == "LAST_INSERT_ID":
                facts.uses_last_insert_id = True
            elif name in _LOCK_FUNCTIONS:
                facts.pins.add(f"user lock {name}()")
            else:
                facts.pins.add(f"dependent function {name}()")
    if b"@" in segment:
        if upper is None:
            upper = segment.upper()
        if b"@@" in segment:
            for match in _DEPENDENT_VARS.finditer(upper):
                facts.pins.add(f"dependent variable @@{match.group(1).decode('ascii').lower()}")
        if b":=" in segment and facts.kind is not StatementKind.SET:
            _walrus_vars(facts, sql, start, end)
        if b"INTO" in upper:
            _into_vars(facts, sql[start:end], upper)


_CONNECTION_ID_ONLY = re.compile(rb"\s*CONNECTION_ID\s*\(\s*\)\s*\Z")
_INTERNAL_SELECT = re.compile(
    rb"\s*(?:PROXY_VERSION\s*\(\s*\)|PROXY_STATUS\s*\(\s*\)|@OBPROXY_ROUTE_ADDR\b)"
)


def _analyse(facts: _Facts, sql: bytes, masked: bytes, start: int, end: int) -> None:
    """Fill C{facts} for the one statement in C{sql[start:end]}."""
    match = _WORD.match(sql, start, end)
    if match is None:
        if sql[start : start + 1] == b"(":
            facts.kind = StatementKind.SELECT
            _scan_body(facts, sql, masked, start, end)
        return
    verb = match.group().upper().decode("ascii")
    facts.verb = verb
    rest = match.end()
    simple = _SIMPLE_KINDS.get(verb)
    if simple is not None:
        facts.kind = simple
        if verb == "SELECT":
            selected = masked[rest:end].upper()
            if _INTERNAL_SELECT.match(selected):
                facts.internal = True
            elif _CONNECTION_ID_ONLY.match(selected):
                facts.connection_id_only = True
        elif verb in ("EXECUTE", "DEALLOCATE"):
            names = _words(sql, rest, end, 2)
            if verb == "DEALLOCATE" and names and names[0].upper == "PREPARE":
                names = names[1:]
            if names:
                facts.ps_name = _identifier(names[0])
        _scan_body(facts, sql, masked, rest, end)
        return
    if verb == "SET":
        facts.kind = StatementKind.SET
        _parse_set(facts, sql, rest, end)
        if facts.kind is StatementKind.SET:
            _scan_body(facts, sql, masked, rest, end)
        return
    if verb == "USE":
        facts.kind = StatementKind.USE
        names = _words(sql, rest, end, 1)
        if names:
            facts.database = _identifier(names[0])
        return
    if verb == "BEGIN":
        words = _upper_words(sql, rest, end, 1)
        if not words or words[0] == "WORK":
            facts.kind = StatementKind.BEGIN
        return
    if verb == "START":
        tokens = list(_tokens(sql, rest, end))
        if tokens and tokens[0].kind == "word" and tokens[0].upper == "TRANSACTION":
            _parse_begin(facts, tokens[1:])
        return
    if verb == "ROLLBACK":
        words = _upper_words(sql, rest, end, 2)
        if words[:1] == ["WORK"]:
            words = words[1:]
        facts.kind = StatementKind.SAVEPOINT if words[:1] == ["TO"] else StatementKind.ROLLBACK
        return
    if verb == "RELEASE":
        if _upper_words(sql, rest, end, 1) == ["SAVEPOINT"]:
            facts.kind = StatementKind.SAVEPOINT
        return
    if verb == "XA":
        facts.kind = StatementKind.XA
        facts.pins.add(PIN_XA)
        words = _upper_words(sql, rest, end, 1)
        facts.xa_action = words[0] if words and words[0] else None
        return
    if verb == "LOCK":
        if _upper_words(sql, rest, end, 1)[:1] in (["TABLES"], ["TABLE"]):
            facts.kind = StatementKind.LOCK_TABLES
            facts.pins.add(PIN_LOCK_TABLES)
        return
    if verb == "UNLOCK":
        if _upper_words(sql, rest, end, 1)[:1] in (["TABLES"], ["TABLE"]):
            facts.kind = StatementKind.UNLOCK_TABLES
        return
    if verb in ("CREATE", "DROP", "ALTER"):
        words = _upper_words(sql, rest, end, 3)
        if verb == "CREATE" and words[:2] == ["OR", "REPLACE"]:
            words = words[2:]
        if words[:1] == ["TEMPORARY"] and verb != "ALTER":
            facts.kind = StatementKind.DDL_TEMP_TABLE
            if verb == "CREATE":
                facts.pins.add(PIN_TEMPORARY_TABLE)
            return
        if verb == "DROP" and words[:1] == ["PREPARE"]:
            facts.kind = StatementKind.DEALLOCATE
            names = _words(sql, rest, end, 2)[1:]
            if names:
                facts.ps_name = _identifier(names[0])
            return
        if verb == "ALTER" and words and words[0].startswith("PROXY"):
            facts.internal = True
            facts.kind = StatementKind.OTHER
            return
        facts.kind = StatementKind.DDL
        return
    if verb == "PREPARE":
        facts.kind = StatementKind.PREPARE
        facts.pins.add(PIN_TEXT_PREPARE)
        names = _words(sql, rest, end, 1)
        if names:
            facts.ps_name = _identifier(names[0])
        return
    if verb == "KILL":
        facts.kind = StatementKind.KILL
        facts.internal = True
        targets = _words(sql, rest, end, 2)
        if targets and targets[0].kind == "word" and targets[0].upper in ("QUERY", "CONNECTION"):
            facts.kill_query = targets[0].upper == "QUERY"
            targets = targets[1:]
        if targets and targets[0].kind == "num" and targets[0].text.isdigit():
            facts.kill_id = int(targets[0].text)
        return
    if verb == "SHOW":
        facts.kind = StatementKind.SHOW
        words = _upper_words(sql, rest, end, 3)
        first = words[0] if words else ""
        if (
            first.startswith("PROXY")
            or first == "PROCESSLIST"
            or words[:2]
            == [
                "FULL",
                "PROCESSLIST",
            ]
        ):
            facts.internal = True
        elif first in ("WARNINGS", "ERRORS", "TRACE"):
            facts.pins.add(f"dependent statement SHOW {first}")
        elif first == "COUNT":
            tail = masked[rest:end].upper().split()
            if tail and tail[-1] in (b"WARNINGS", b"ERRORS"):
                facts.pins.add(f"dependent statement SHOW COUNT(*) {tail[-1].decode()}")
        return
    if verb == "LOAD":
        words = _upper_words(sql, rest, end, 4)
        if words[:1] in (["DATA"], ["XML"]):
            facts.kind = StatementKind.LOAD_DATA
            facts.local_infile = "LOCAL" in words[1:4]
        return
    if verb == "PING":
        if _upper_words(sql, rest, end, 1) == ["PROXY"]:
            facts.internal = True
        return
    if verb == "HANDLER":
        words = _upper_words(sql, rest, end, 4)
        if "OPEN" in words[1:]:
            facts.pins.add(PIN_HANDLER)
        return
    if verb == "DO":
        _scan_body(facts, sql, masked, rest, end)
        return


def _statement_bounds(masked: bytes) -> List[Tuple[int, int]]:
    """The [start, end) of each non-empty statement of a masked text."""
    if b";" not in masked:
        return [(0, len(masked))]
    bounds: List[Tuple[int, int]] = []
    start = 0
    while True:
        semicolon = masked.find(b";", start)
        end = len(masked) if semicolon < 0 else semicolon
        if masked[start:end].strip():
            bounds.append((start, end))
        if semicolon < 0:
            return bounds or [(0, len(masked))]
        start = semicolon + 1


def _freeze(facts: List[_Facts], multi: bool) -> StatementInfo:
    first = facts[0]
    if len(facts) == 1:
        merged = first
    else:
        merged = _Facts(kind=first.kind, verb=first.verb)
        for part in facts:
            merged.user_vars.extend(part.user_vars)
            merged.sys_vars.extend(part.sys_vars)
            merged.pins |= part.pins
            merged.uses_last_insert_id |= part.uses_last_insert_id
            if part.database is not None:
                merged.database = part.database
            if part.route_addr is not None:
                merged.route_addr = part.route_addr
    return StatementInfo(
        kind=first.kind,
        verb=first.verb,
        user_var_assignments=tuple(merged.user_vars),
        system_var_assignments=tuple(merged.sys_vars),
        database=merged.database,
        pin_reasons=frozenset(merged.pins),
        uses_last_insert_id=merged.uses_last_insert_id,
        route_addr=merged.route_addr,
        multi_statement=multi,
        is_internal_candidate=first.internal,
        read_only=first.read_only,
        local_infile=first.local_infile,
        kill_id=first.kill_id,
        kill_query=first.kill_query,
        ps_name=first.ps_name,
        xa_action=first.xa_action,
        kinds=tuple(part.kind for part in facts),
        connection_id_only=first.connection_id_only and not multi,
    )


# Shared results for the statements that need nothing but their kind.
_PLAIN: dict[Tuple[StatementKind, str], StatementInfo] = {}


def _plain(kind: StatementKind, verb: str) -> StatementInfo:
    key = (kind, verb)
    info = _PLAIN.get(key)
    if info is None:
        if len(_PLAIN) > 256:
            _PLAIN.clear()
            _FAST_INFO.clear()
        info = _PLAIN[key] = StatementInfo(kind=kind, verb=verb, kinds=(kind,))
    return info


def is_plain(info: StatementInfo) -> bool:
    """
    Whether C{info} is one of the shared results of statements that need
    nothing but their kind and verb: the same object for every such text, so
    what is derived from it alone can be cached by identity.
    """
    return _PLAIN.get((info.kind, info.verb)) is info


_FAST_VERBS = {
    b"SELECT": StatementKind.SELECT,
    b"INSERT": StatementKind.INSERT,
    b"UPDATE": StatementKind.UPDATE,
    b"DELETE": StatementKind.DELETE,
    b"REPLACE": StatementKind.REPLACE,
    b"COMMIT": StatementKind.COMMIT,
}


# The plain result of each fast verb, by the verb as written (cleared with _PLAIN).
_FAST_INFO: dict[bytes, StatementInfo] = {}
# Variables, semicolons, quotes and comments send a text to the full analysis.
_FAST_REJECTS = b"@;'\"`#"
_MAYBE_SPECIAL = re.compile(rb"[@;'\"`#/-]").search


def _fast(sql: bytes) -> StatementInfo | None:
    """
    The common case: plain DML without quotes, comments, variables or
    semicolons, and no function that matters.
    """
    match = _WORD.match(sql)
    if match is None:
        return None
    verb = match.group()
    info = _FAST_INFO.get(verb)
    if info is None:
        upper = verb.upper()
        kind = _FAST_VERBS.get(upper)
        if kind is None:
            return None
        info = _plain(kind, upper.decode("ascii"))
        if len(_FAST_INFO) < 256:
            _FAST_INFO[verb] = info
    # One C scan for any byte that might start something special; only texts with
    # one (a minus sign, a slash) pay for the exact test.
    if _MAYBE_SPECIAL(sql) is not None and (
        len(sql.translate(None, _FAST_REJECTS)) != len(sql) or b"/*" in sql or b"--" in sql
    ):
        return None
    if b"(" in sql:
        upper = sql.upper()
        if b"PROXY_" in upper or (_may_call(upper) and _FUNCTIONS.search(upper)):
            return None
    return info


def classify(sql: bytes) -> StatementInfo:
    """
    Analyse one C{COM_QUERY} text (see the module docstring).

    @param sql: the statement text as the client sent it.
    @return: what it is and what it does to the session; never raises.
    """
    try:
        return _classify(sql if sql.__class__ is bytes else bytes(sql))
    except Exception:  # pragma: no cover - a bug must not break a relay
        return _plain(StatementKind.OTHER, "")


def _classify(sql: bytes) -> StatementInfo:
    fast = _fast(sql)
    if fast is not None:
        return fast
    if b"/*" in sql and _EXECUTABLE_COMMENT.search(sql):
        sql = _unwrap_executable_comments(sql)
    masked = _mask(sql) if _SPECIAL.search(sql) else sql
    bounds = _statement_bounds(masked)
    parts: List[_Facts] = []
    for start, end in bounds:
        start = _LEADING.match(sql, start, end).end()  # type: ignore[union-attr]
        facts = _Facts()
        _analyse(facts, sql, masked, start, end)
        parts.append(facts)
    multi = len(parts) > 1
    first = parts[0]
    if (
        not multi
        and not first.user_vars
        and not first.sys_vars
        and not first.pins
        and first.database is None
        and first.route_addr is None
        and not first.uses_last_insert_id
        and not first.internal
        and first.read_only is None
        and not first.local_infile
        and first.kill_id is None
        and first.ps_name is None
        and first.xa_action is None
    ):
        return _plain(first.kind, first.verb)
    return _freeze(parts, multi)


# --------------------------------------------------------------------------
# CONNECTION_ID()
# --------------------------------------------------------------------------

_CONNECTION_ID_CALL = re.compile(rb"(?<![A-Z0-9_$.@])CONNECTION_ID\s*\(\s*\)")
# Words that open a clause: after the last one at the top level, a comma
# separates select-list items only if that word is SELECT.
_CLAUSE_WORDS = frozenset(
    (
        b"SELECT", b"FROM", b"WHERE", b"GROUP", b"HAVING", b"ORDER", b"LIMIT", b"WINDOW",
        b"UNION", b"EXCEPT", b"INTERSECT", b"VALUES", b"VALUE", b"SET", b"ON", b"USING",
        b"INTO", b"RETURNING", b"CALL", b"DO", b"KILL", b"BY", b"WHEN", b"THEN", b"ELSE",
    )
)  # fmt: skip
_CLAUSE_SCAN = re.compile(rb"[()]|[A-Z_][A-Z0-9_$]*|;")
# What may follow a select-list item that has no alias.
_ITEM_END = re.compile(
    rb"\s*(?:\Z|[,;]|(?:FROM|INTO|WHERE|GROUP|HAVING|ORDER|LIMIT|UNION|WINDOW|FOR|LOCK)\b)"
)


def _select_item_without_alias(masked_upper: bytes, start: int, end: int) -> bool:
    """
    Whether the call at C{start:end} is a whole top-level select-list item
    with no alias, so that its column is named after the call's text.
    """
    depth = 0
    last_clause = b""
    previous = b""
    for match in _CLAUSE_SCAN.finditer(masked_upper, 0, start):
        token = match.group()
        if token == b"(":
            depth += 1
        elif token == b")":
            depth -= 1
        elif token == b";":
            depth, last_clause = 0, b""
        elif depth == 0 and token in _CLAUSE_WORDS:
            last_clause = token
        previous = token
    if depth != 0 or last_clause != b"SELECT":
        return False
    before = masked_upper[:start].rstrip()
    if not (before.endswith(b",") or previous in (b"SELECT", b"DISTINCT", b"ALL")):
        return False
    return _ITEM_END.match(masked_upper, end) is not None


def substitute_connection_id(sql: bytes, connection_id: int) -> bytes:
    """
    Replace every C{CONNECTION_ID()} call in C{sql} (outside strings, quoted
    identifiers and comments) by the literal C{connection_id}.

    The proxy's client sees its client-session id in the handshake and in
    C{SHOW PROCESSLIST}; backends that cannot adopt that id (MariaDB, seekdb)
    would answer C{CONNECTION_ID()} with their own, so the call is replaced
    before the statement is sent. A call that is a whole top-level select-list
    item keeps its column name (C{AS `CONNECTION_ID()`}, as the client wrote it).

    @param sql: the statement text.
    @param connection_id: the id to substitute.
    @return: the rewritten text, or C{sql} itself when it calls no C{CONNECTION_ID()}.
    """
    upper = sql.upper()
    if b"CONNECTION_ID" not in upper:
        return sql
    masked_upper = _mask(upper) if _SPECIAL.search(upper) else upper
    literal = str(int(connection_id)).encode("ascii")
    pieces: List[bytes] = []
    last = 0
    for match in _CONNECTION_ID_CALL.finditer(masked_upper):
        start, end = match.span()
        pieces.append(sql[last:start])
        pieces.append(literal)
        if _select_item_without_alias(masked_upper, start, end):
            pieces.append(b" AS `" + sql[start:end].replace(b"`", b"``") + b"`")
        last = end
    if not pieces:
        return sql
    pieces.append(sql[last:])
    return b"".join(pieces)
