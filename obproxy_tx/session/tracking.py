"""
What the proxy knows about one client session's server-side state, and the
cheap statement classification it learns it from.

A client session may run on several server sessions over its life (forced
routes, failover, several servers), so the proxy keeps the state a server
session would otherwise hold alone: the current database, the system
variables the client changed, its user variables and C{last_insert_id}, each
class with ODP's version counter (L{obproxy_tx.session.sync.SessionVarVersions}).
It is learned from two sources, as ODP does:

  - the session-track data of OK packets (the proxy always asks its server
    sessions for C{CLIENT_SESSION_TRACK}): schema changes and the system
    variables the server reports;
  - the statements themselves (L{classify}): C{SET @v = ...},
    C{SELECT ... INTO @v}, C{SET sql_mode = ...} on a server that does not
    report it. For those the proxy reads the new values back from the server
    session that ran the statement (one C{SELECT @v, @@session.x}), after the
    client already got its answer.

L{classify} is C{obproxy_tx.session.statements.classify} (no full parse)
with its answer translated into the few facts the relay needs
(L{StatementInfo}); a small regular-expression classifier of our own
(L{_fallback_classify}) stands in when that module is missing.

The same object records why a client session is pinned to its server
session (L{SessionState.pin_reasons}) and releases the pins whose reason ends
(L{SessionState.apply_pins}): user locks when the session cannot hold one any
more (C{GET_LOCK} calls counted per literal name, conservatively: a count is
only ever too high), temporary tables when the last one is dropped,
C{LOCK TABLES} at C{UNLOCK TABLES}, C{SET TRANSACTION} when the next
transaction ends, text C{PREPARE} at the C{DEALLOCATE} of the last statement,
XA at C{XA COMMIT}/C{XA ROLLBACK}. Releases only follow statements that
succeeded; a statement whose effect cannot be read (a lock name that is an
expression, C{GET_LOCK} evaluated once per row) keeps the pin for good (until
C{RELEASE_ALL_LOCKS()} or a reset).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import AbstractSet, Any, Callable, Iterable, Optional

import attrs

from obproxy_tx.session.sync import (
    SessionVarVersions,
    SqlValue,
    SyncPlan,
    VarClass,
    classify_sys_var,
    is_sys_var_name,
    plan_sync,
)

__all__ = [
    "SessionState",
    "StatementInfo",
    "StatementKind",
    "classify",
    "parse_route_addr",
    "PIN_USER_LOCK",
    "PinEffects",
    "pin_effects",
]

#: The pin reason of held user locks.
PIN_USER_LOCK = "user lock GET_LOCK()"
_PIN_TEMPORARY_TABLE = "temporary table"
_PIN_LOCK_TABLES = "LOCK TABLES"
_PIN_SET_TRANSACTION = "SET TRANSACTION"
_PIN_TEXT_PREPARE = "text PREPARE"
_PIN_XA = "XA transaction"


class StatementKind(Enum):
    """
    What kind of statement a query is, as far as the proxy cares.
    """

    SELECT = "SELECT"
    SET = "SET"
    USE = "USE"
    BEGIN = "BEGIN"
    COMMIT = "COMMIT"
    ROLLBACK = "ROLLBACK"
    SET_TRANSACTION = "SET_TRANSACTION"
    KILL = "KILL"
    SHOW = "SHOW"
    OTHER = "OTHER"


@attrs.frozen
class StatementInfo:
    """
    The facts about one statement the proxy routes and tracks by.

    @ivar kind: the statement kind.
    @ivar user_var_assignments: names of user variables it assigns (without C{@}).
    @ivar system_var_assignments: C{(name, scope)} of system variables it sets.
    @ivar database: the target of C{USE db}.
    @ivar pin_reasons: why the session must stay on its server session after it.
    @ivar needs_last_session: it must run where the previous statement ran
        (dependent functions: C{FOUND_ROWS()}, C{ROW_COUNT()}, C{SHOW WARNINGS}, ...).
    @ivar route_addr: the value of C{SET @obproxy_route_addr = ...} (text), or C{None}.
    @ivar multi_statement: the text holds more than one statement.
    @ivar kill: C{(query_only, id)} for C{KILL [QUERY|CONNECTION] id}.
    @ivar connection_id_only: the statement is exactly C{SELECT CONNECTION_ID()}.
    @ivar user_var_values: user variables assigned simple literals, with their
        values (no read-back needed); C{user_var_assignments} holds the others.
    @ivar pin_effects: what the statement does to pins that can end (locks,
        temporary tables, ...), or C{None} when it touches none of them.
    @ivar kinds: the kind of each statement of the text (H8's names, upper-case).
    @ivar ps_name: the name of a text C{PREPARE}/C{DEALLOCATE}.
    @ivar xa_action: the verb after C{XA}.
    """

    kind: StatementKind = StatementKind.OTHER
    user_var_assignments: frozenset[str] = frozenset()
    system_var_assignments: tuple[tuple[str, str], ...] = ()
    database: str | None = None
    pin_reasons: frozenset[str] = frozenset()
    needs_last_session: bool = False
    route_addr: str | None = None
    multi_statement: bool = False
    kill: tuple[bool, int] | None = None
    connection_id_only: bool = False
    user_var_values: tuple[tuple[str, SqlValue], ...] = ()
    pin_effects: PinEffects | None = None
    kinds: tuple[str, ...] = ()
    ps_name: str | None = None
    xa_action: str | None = None


#: One user-lock function call: (function, literal name as written or
#: C{None} when the name is an expression).
LockCall = tuple[str, Optional[bytes]]
#: A table as written: (database or C{None}, table name).
TableName = tuple[Optional[str], str]


@attrs.frozen
class PinEffects:
    """
    What one query text does to the pins that can end, read from its tokens
    (quotes and comments respected; executable comments count as code).

    @ivar lock_calls: C{GET_LOCK}/C{RELEASE_LOCK}/C{RELEASE_ALL_LOCKS} calls
        in text order.
    @ivar locks_uncounted: a C{GET_LOCK} may run any number of times (it is
        in a statement with a C{FROM}, or not a C{SELECT}/C{DO}/C{SET}).
    @ivar temp_tables_created: names of C{CREATE TEMPORARY TABLE}.
    @ivar tables_dropped: names of C{DROP [TEMPORARY] TABLE} (a plain C{DROP
        TABLE t} drops the temporary C{t} first when there is one).
    @ivar unlock_tables: C{UNLOCK TABLES}.
    @ivar changes_database: a C{USE} in a multi-statement text (names that
        are not qualified cannot be placed then).
    """

    lock_calls: tuple[LockCall, ...] = ()
    locks_uncounted: bool = False
    temp_tables_created: tuple[TableName, ...] = ()
    tables_dropped: tuple[TableName, ...] = ()
    unlock_tables: bool = False
    changes_database: bool = False


_TOKEN = re.compile(
    rb"""
    (?P<ws>\s+)
   |(?P<comment>/\*(?![!]|M!).*?\*/|(?:--(?=[\s])|\#)[^\n]*)
   |(?P<exec>/\*M?!\d*|\*/)
   |(?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
   |(?P<ident>`(?:[^`]|``)*`)
   |(?P<word>[A-Za-z0-9_$]+)
   |(?P<punct>.)
    """,
    re.X | re.S,
)
_LOCK_FUNCTIONS = frozenset({b"GET_LOCK", b"RELEASE_LOCK", b"RELEASE_ALL_LOCKS"})
_DML_KINDS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})
_COUNTED_VERBS = frozenset({b"SELECT", b"DO", b"SET"})


def _statements(sql: bytes) -> list[list[tuple[str, bytes]]]:
    """
    The tokens (kind, text) of each statement of C{sql}, without blanks and
    comments.
    """
    statements: list[list[tuple[str, bytes]]] = [[]]
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "punct"
        if kind in ("ws", "comment", "exec"):
            continue
        text = match.group()
        if kind == "punct" and text == b";":
            statements.append([])
            continue
        statements[-1].append((kind, text))
    return [tokens for tokens in statements if tokens]


def _identifier(token: tuple[str, bytes]) -> str:
    kind, text = token
    if kind == "ident":
        text = text[1:-1].replace(b"``", b"`")
    return text.decode("utf-8", "surrogateescape")


def _table_names(tokens: list[tuple[str, bytes]], start: int) -> list[TableName]:
    """
    C{name[, name...]} from C{tokens[start:]}, each C{[db.]table}.
    """
    names: list[TableName] = []
    index = start
    while index < len(tokens):
        first = tokens[index]
        if first[0] not in ("word", "ident"):
            break
        name: TableName = (None, _identifier(first))
        index += 1
        if index + 1 < len(tokens) and tokens[index] == ("punct", b"."):
            second = tokens[index + 1]
            if second[0] not in ("word", "ident"):
                break
            name = (_identifier(first), _identifier(second))
            index += 2
        names.append(name)
        if index < len(tokens) and tokens[index] == ("punct", b","):
            index += 1
            continue
        break
    return names


def _skip_words(tokens: list[tuple[str, bytes]], index: int, *words: bytes) -> int:
    """Skip the optional words C{words} (in order) at C{index}."""
    for word in words:
        if index < len(tokens) and tokens[index][0] == "word" and tokens[index][1].upper() == word:
            index += 1
    return index


def _lock_calls(tokens: list[tuple[str, bytes]]) -> list[LockCall]:
    calls: list[LockCall] = []
    for index, (kind, text) in enumerate(tokens):
        if kind != "word":
            continue
        name = text.upper()
        if name not in _LOCK_FUNCTIONS:
            continue
        if index + 1 >= len(tokens) or tokens[index + 1] != ("punct", b"("):
            continue
        argument: bytes | None = None
        if (
            index + 3 < len(tokens)
            and tokens[index + 2][0] == "str"
            and tokens[index + 3][0] == "punct"
            and tokens[index + 3][1] in (b",", b")")
        ):
            argument = tokens[index + 2][1]
        calls.append((name.decode("ascii"), argument))
    return calls


def pin_effects(sql: bytes) -> PinEffects:
    """
    Read what C{sql} does to the pins that can end (see L{PinEffects}).

    @param sql: the query text.
    @return: the effects.
    """
    lock_calls: list[LockCall] = []
    uncounted = False
    created: list[TableName] = []
    dropped: list[TableName] = []
    unlock = False
    statements = _statements(sql)
    uses = False
    for tokens in statements:
        verb = tokens[0][1].upper() if tokens[0][0] == "word" else b""
        upper_words = {text.upper() for kind, text in tokens if kind == "word"}
        if verb == b"USE":
            uses = True
        if upper_words & _LOCK_FUNCTIONS:
            calls = _lock_calls(tokens)
            if any(function == "GET_LOCK" for function, _ in calls) and (
                verb not in _COUNTED_VERBS or b"FROM" in upper_words
            ):
                uncounted = True
            lock_calls.extend(calls)
        second = tokens[1][1].upper() if len(tokens) > 1 and tokens[1][0] == "word" else b""
        if verb == b"CREATE":
            index = _skip_words(tokens, 1, b"OR", b"REPLACE")
            if _skip_words(tokens, index, b"TEMPORARY") == index + 1:
                index = _skip_words(tokens, index + 1, b"TABLE")
                index = _skip_words(tokens, index, b"IF", b"NOT", b"EXISTS")
                created.extend(_table_names(tokens, index)[:1])
        elif verb == b"DROP":
            index = _skip_words(tokens, 1, b"TEMPORARY")
            if index < len(tokens) and tokens[index][1].upper() in (b"TABLE", b"TABLES"):
                index = _skip_words(tokens, index + 1, b"IF", b"EXISTS")
                dropped.extend(_table_names(tokens, index))
        elif verb == b"UNLOCK" and second in (b"TABLES", b"TABLE"):
            unlock = True
    return PinEffects(
        lock_calls=tuple(lock_calls),
        locks_uncounted=uncounted,
        temp_tables_created=tuple(created),
        tables_dropped=tuple(dropped),
        unlock_tables=unlock,
        changes_database=uses and len(statements) > 1,
    )


_PLAIN = StatementInfo(StatementKind.SELECT)
_OTHER = StatementInfo()

_COMMENTS = re.compile(rb"/\*(?!!).*?\*/|(?:--[ \t]|#)[^\n]*", re.S)
_FIRST_WORD = re.compile(rb"\s*\(?\s*([A-Za-z]+)")
_INTERESTING = re.compile(
    rb"@|found_rows|row_count|connection_id|_lock\b|get_lock|release_|is_free_lock|"
    rb"is_used_lock|temporary|;|show\s+(?:warnings|errors|count)",
    re.I,
)
_DEPENDENT = re.compile(
    rb"found_rows\s*\(|row_count\s*\(|connection_id\s*\(|show\s+(?:warnings|errors|count)",
    re.I,
)
_LOCKS = re.compile(
    rb"\b(get_lock|release_lock|release_all_locks|is_free_lock|is_used_lock)\s*\(", re.I
)
_TEMP_TABLE = re.compile(rb"\bcreate\s+(?:or\s+replace\s+)?temporary\s+table", re.I)
_USER_VAR_ASSIGN = re.compile(rb"@(`(?:[^`]|``)+`|[A-Za-z0-9_.$]+)\s*:=")
_INTO_VARS = re.compile(rb"\binto\s+(@[^;]*?)(?:\s+(?:from|for|lock)\b|;|$)", re.I | re.S)
_VAR_NAME = re.compile(rb"@(`(?:[^`]|``)+`|[A-Za-z0-9_.$]+)")
_CONNECTION_ID_ONLY = re.compile(rb"\s*select\s+connection_id\s*\(\s*\)\s*;?\s*\Z", re.I)
_KILL = re.compile(rb"\s*kill\s+(?:(query|connection)\s+)?(\d+)\s*;?\s*\Z", re.I)
_USE = re.compile(rb"\s*use\s+(`(?:[^`]|``)+`|[^\s;]+)\s*;?\s*\Z", re.I)
_SET_TRANSACTION = re.compile(rb"\s*set\s+(?:(session|local|global)\s+)?transaction\b", re.I)
_ASSIGNMENT = re.compile(
    rb"\s*(?:(global|session|local|persist|persist_only)\s+|@@(global|session|local)\.|@@)?"
    rb"(@?`(?:[^`]|``)+`|@?[A-Za-z0-9_.$]+)\s*(?::=|=)",
    re.I,
)
_NAMES = re.compile(rb"\s*(names|character\s+set|charset)\b", re.I)


def _name(raw: bytes) -> str:
    text = raw.decode("utf-8", "surrogateescape")
    if text.startswith("`") and text.endswith("`"):
        text = text[1:-1].replace("``", "`")
    return text


def _split_top_level(text: bytes) -> list[bytes]:
    """
    Split C{text} at commas that are outside quotes and parentheses.
    """
    parts: list[bytes] = []
    depth = 0
    quote = 0
    start = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == 0x5C and quote != 0x60:  # backslash escape
                i += 2
                continue
            if c == quote:
                quote = 0
        elif c in (0x27, 0x22, 0x60):
            quote = c
        elif c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
        elif c == 0x2C and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _has_second_statement(text: bytes) -> bool:
    quote = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == 0x5C and quote != 0x60:
                i += 2
                continue
            if c == quote:
                quote = 0
        elif c in (0x27, 0x22, 0x60):
            quote = c
        elif c == 0x3B:
            return bool(text[i + 1 :].strip())
        i += 1
    return False


def _classify_set(body: bytes) -> StatementInfo:
    user_vars: set[str] = set()
    sys_vars: list[tuple[str, str]] = []
    route_addr = None
    if _NAMES.match(body):
        return StatementInfo(
            StatementKind.SET,
            system_var_assignments=(
                ("character_set_client", "session"),
                ("character_set_connection", "session"),
                ("character_set_results", "session"),
                ("collation_connection", "session"),
            ),
        )
    scope = "session"
    for part in _split_top_level(body):
        match = _ASSIGNMENT.match(part)
        if match is None:
            continue
        keyword, at_scope, target = match.groups()
        if keyword is not None:
            scope = keyword.decode().lower()
        this_scope = at_scope.decode().lower() if at_scope is not None else scope
        if target.startswith(b"@"):
            name = _name(target[1:])
            if name.lower() == "obproxy_route_addr":
                route_addr = part[match.end() :].strip().decode("utf-8", "replace")
            else:
                user_vars.add(name)
        else:
            sys_vars.append(
                (_name(target).lower(), "session" if this_scope == "local" else this_scope)
            )
    return StatementInfo(
        StatementKind.SET,
        user_var_assignments=frozenset(user_vars),
        system_var_assignments=tuple(sys_vars),
        route_addr=route_addr,
    )


def _fallback_classify(sql: bytes) -> StatementInfo:
    """
    A minimal classifier with the fields of H8's C{StatementInfo}.

    @param sql: the statement text.
    @return: what the proxy needs to know about it.
    """
    if b"/*" in sql or b"--" in sql or b"#" in sql:
        sql = _COMMENTS.sub(b" ", sql)
    first = _FIRST_WORD.match(sql)
    word = first.group(1).lower() if first is not None else b""
    interesting = _INTERESTING.search(sql) is not None
    if not interesting and word in (b"select", b"insert", b"update", b"delete", b"replace"):
        return _PLAIN
    if word == b"set":
        if _SET_TRANSACTION.match(sql):
            return StatementInfo(
                StatementKind.SET_TRANSACTION, pin_reasons=frozenset({"SET TRANSACTION"})
            )
        body = sql[first.end() :] if first is not None else b""
        if not _has_second_statement(sql):
            return _classify_set(body.rstrip().rstrip(b";"))
        info = _classify_set(body)
        return attrs.evolve(info, multi_statement=True)
    if word == b"use":
        match = _USE.match(sql)
        database = _name(match.group(1)) if match else None
        return StatementInfo(StatementKind.USE, database=database)
    if word in (b"begin", b"start"):
        return StatementInfo(StatementKind.BEGIN)
    if word == b"commit":
        return StatementInfo(StatementKind.COMMIT)
    if word == b"rollback":
        return StatementInfo(StatementKind.ROLLBACK)
    if word == b"kill":
        match = _KILL.match(sql)
        kill = None
        if match is not None:
            kill = ((match.group(1) or b"").lower() == b"query", int(match.group(2)))
        return StatementInfo(StatementKind.KILL, kill=kill)
    kind = (
        StatementKind.SHOW
        if word == b"show"
        else (StatementKind.SELECT if word == b"select" else StatementKind.OTHER)
    )
    if not interesting:
        return StatementInfo(kind)
    pins = set()
    if _LOCKS.search(sql):
        pins.add("user lock")
    if _TEMP_TABLE.search(sql):
        pins.add("temporary table")
    user_vars = {_name(m.group(1)) for m in _USER_VAR_ASSIGN.finditer(sql)}
    for into in _INTO_VARS.finditer(sql):
        user_vars.update(_name(m.group(1)) for m in _VAR_NAME.finditer(into.group(1)))
    return StatementInfo(
        kind,
        user_var_assignments=frozenset(user_vars),
        pin_reasons=frozenset(pins),
        needs_last_session=_DEPENDENT.search(sql) is not None,
        multi_statement=_has_second_statement(sql),
        connection_id_only=_CONNECTION_ID_ONLY.match(sql) is not None,
    )


_KINDS = {kind.name: kind for kind in StatementKind}


#: Statement kinds whose effect on pins _from_statements reads from the text.
_EFFECT_KINDS = frozenset(("DDL_TEMP_TABLE", "DDL", "UNLOCK_TABLES"))


def _from_statements(info: Any, sql: bytes = b"") -> StatementInfo:
    """
    Translate H8's C{obproxy_tx.session.statements.StatementInfo} into ours.
    """
    kind = _KINDS.get(info.kind.name, StatementKind.OTHER)
    pins = frozenset(r for r in info.pin_reasons if not r.startswith("dependent "))
    needs_last = len(pins) != len(info.pin_reasons)
    literal: list[tuple[str, SqlValue]] = []
    computed = set()
    for assignment in info.user_var_assignments:
        if assignment.name == "obproxy_route_addr":
            continue
        if assignment.is_literal and kind is StatementKind.SET:
            literal.append((assignment.name, assignment.value))
        else:
            computed.add(assignment.name)
    system = tuple(
        (a.name, "global" if a.scope.name in ("GLOBAL", "PERSIST", "PERSIST_ONLY") else "session")
        for a in info.system_var_assignments
    )
    route = info.route_addr
    route_text = None
    if route is not None:
        if route.host is not None and route.port is not None:
            route_text = f"'{route.host}:{route.port}'"
        elif route.clears:
            route_text = "0"
        else:
            route_text = route.value_sql or "'?'"
    kinds = tuple(k.name for k in info.kinds)
    effects = None
    if (
        any(reason.startswith("user lock ") for reason in pins)
        or "DDL_TEMP_TABLE" in kinds
        or "DDL" in kinds
        or "UNLOCK_TABLES" in kinds
    ):
        effects = pin_effects(sql)
    pins = frozenset(
        reason
        for reason in pins
        if not reason.startswith(("user lock IS_FREE_LOCK", "user lock IS_USED_LOCK"))
    )
    return StatementInfo(
        kind=kind,
        user_var_assignments=frozenset(computed),
        system_var_assignments=system,
        database=info.database,
        pin_reasons=pins,
        needs_last_session=needs_last,
        route_addr=route_text,
        multi_statement=info.multi_statement,
        kill=(info.kill_query, info.kill_id) if info.kill_id is not None else None,
        connection_id_only=info.connection_id_only,
        user_var_values=tuple(literal),
        pin_effects=effects,
        kinds=kinds,
        ps_name=info.ps_name,
        xa_action=info.xa_action,
    )


def _load_classifier() -> Callable[[bytes], StatementInfo]:
    try:
        from obproxy_tx.session import statements
    except ImportError:  # pragma: no cover - the module ships with the package
        return _fallback_classify
    h8_classify = statements.classify
    is_plain = statements.is_plain
    # Translations of the classifier's shared plain results, by identity (the
    # entry holds the result, so its id is not reused while cached): a plain
    # SELECT or INSERT costs one lookup instead of a translation.
    translated: dict[int, tuple[Any, StatementInfo]] = {}

    def classify_with_statements(sql: bytes) -> StatementInfo:
        info = h8_classify(sql)
        known = translated.get(id(info))
        if known is not None and known[0] is info:
            return known[1]
        result = _from_statements(info, sql)
        # Statements whose effects are read from their text are translated each time.
        if (
            result.pin_effects is None
            and not _EFFECT_KINDS.intersection(result.kinds)
            and is_plain(info)
        ):
            if len(translated) > 512:
                translated.clear()
            translated[id(info)] = (info, result)
        return result

    return classify_with_statements


#: Classify one query text (cheaply: no full parse) into a L{StatementInfo}:
#: H8's L{obproxy_tx.session.statements.classify} translated, or the private
#: fallback classifier when that module is missing.
classify: Callable[[bytes], StatementInfo] = _load_classifier()


def parse_route_addr(text: str) -> str | None:
    """
    Read the value of C{SET @obproxy_route_addr = ...}: ODP's integer
    (IPv4 address in the high 32 bits, port in the low 32) or a quoted
    C{'ip:port'}.

    @param text: the assigned expression as written.
    @return: C{"ip:port"}, or C{None} to clear the forced route (0, NULL, '').
    @raise ValueError: neither form.
    """
    value = text.strip().rstrip(";").strip()
    if value[:1] in ("'", '"') and value[-1:] == value[:1]:
        value = value[1:-1].strip()
        if value == "":
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"route address {text!r} is not 'ip:port'")
        return f"{host}:{int(port)}"
    if value.upper() == "NULL":
        return None
    number = int(value, 0)
    if number == 0:
        return None
    ip, port_number = number >> 32, number & 0xFFFFFFFF
    if not 0 < ip < 1 << 32 or not 0 < port_number < 1 << 16:
        raise ValueError(f"route address {text!r} is not (ipv4 << 32) | port")
    return f"{ip >> 24 & 255}.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}:{port_number}"


_NO_TABLES: AbstractSet[tuple[str | None, str]] = frozenset()
_NO_NAMES: AbstractSet[str] = frozenset()


@attrs.define
class SessionState:
    """
    The server-side session state a client session keeps so that any of its
    server sessions can be brought up to date, with ODP's version counters.

    @ivar versions: the client session's version counters.
    @ivar database: the current database, or C{None}.
    @ivar sys_vars: system variables changed in this session (name -> value as text).
    @ivar user_vars: user variables (name without C{@} -> value).
    @ivar last_insert_id: the last C{last_insert_id} a server reported, or C{None}.
    @ivar pin_reasons: why the session must stay on its current server session.
    @ivar user_locks: literal user-lock name (as written) -> how many
        C{GET_LOCK} calls may still hold it (never fewer than the server's count).
    @ivar user_locks_unknown: a lock may be held that no C{RELEASE_LOCK} can be
        matched with (only C{RELEASE_ALL_LOCKS()} or a reset clears it).
    @ivar temp_tables: temporary tables that may exist: (database, name).
    @ivar text_prepared: names of text C{PREPARE}d statements.
    """

    versions: SessionVarVersions = attrs.field(factory=SessionVarVersions)
    database: str | None = None
    sys_vars: dict[str, SqlValue] = attrs.field(factory=dict)
    user_vars: dict[str, SqlValue] = attrs.field(factory=dict)
    last_insert_id: int | None = None
    pin_reasons: set[str] = attrs.field(factory=set)
    user_locks: dict[bytes, int] = attrs.field(factory=dict)
    user_locks_unknown: bool = False
    # Rarely used: one shared empty set until the first name goes in (an empty
    # set is 216 bytes, and the proxy holds one state per client).
    temp_tables: AbstractSet[tuple[str | None, str]] = _NO_TABLES
    text_prepared: AbstractSet[str] = _NO_NAMES

    def apply_pins(
        self,
        info: StatementInfo,
        succeeded: bool,
        database: str | None,
        in_transaction: bool = True,
    ) -> None:
        """
        Take and release pins after a statement ran.

        Pins are taken whether the statement succeeded or not (it may have
        done part of its work); they are released only after success.

        @param info: the statement.
        @param succeeded: the server answered without an error.
        @param database: the current database while it ran.
        @param in_transaction: a transaction is open after it (the default
            keeps C{SET TRANSACTION} pinned).
        """
        reasons = self.pin_reasons
        kinds = info.kinds or (info.kind.name,)
        for reason in info.pin_reasons:
            if not reason.startswith("user lock "):
                reasons.add(reason)
        effects = info.pin_effects
        if effects is not None:
            self._apply_locks(effects, succeeded)
            self._apply_tables(effects, succeeded, database)
            if effects.unlock_tables and succeeded:
                reasons.discard(_PIN_LOCK_TABLES)
        if succeeded:
            if "COMMIT" in kinds or "ROLLBACK" in kinds:
                reasons.discard(_PIN_SET_TRANSACTION)
            elif not in_transaction and _DML_KINDS.issuperset(kinds):
                # An autocommitted DML statement was the "next transaction"
                # (MariaDB and seekdb measured: SELECT 1 or SET @v is not,
                # a failed statement is not).
                reasons.discard(_PIN_SET_TRANSACTION)
            if info.ps_name is not None and "PREPARE" in kinds:
                self.text_prepared = self.text_prepared | {info.ps_name}
            elif info.ps_name is not None and "DEALLOCATE" in kinds:
                self.text_prepared = self.text_prepared - {info.ps_name}
                if not self.text_prepared:
                    reasons.discard(_PIN_TEXT_PREPARE)
            if kinds == ("XA",) and info.xa_action in ("COMMIT", "ROLLBACK"):
                reasons.discard(_PIN_XA)

    def _apply_locks(self, effects: PinEffects, succeeded: bool) -> None:
        locks = self.user_locks
        if effects.locks_uncounted:
            self.user_locks_unknown = True
        for function, name in effects.lock_calls:
            if function == "GET_LOCK":
                if name is None:
                    self.user_locks_unknown = True
                elif not effects.locks_uncounted:
                    locks[name] = locks.get(name, 0) + 1
            elif not succeeded:
                continue
            elif function == "RELEASE_ALL_LOCKS":
                locks.clear()
                self.user_locks_unknown = False
            elif name is not None and name in locks:
                if locks[name] > 1:
                    locks[name] -= 1
                else:
                    del locks[name]
        if locks or self.user_locks_unknown:
            self.pin_reasons.add(PIN_USER_LOCK)
        else:
            self.pin_reasons.discard(PIN_USER_LOCK)

    def _apply_tables(self, effects: PinEffects, succeeded: bool, database: str | None) -> None:
        tables = set(self.temp_tables)
        for db, name in effects.temp_tables_created:
            tables.add((db if db is not None else database, name))
        if succeeded and not effects.changes_database:
            for db, name in effects.tables_dropped:
                tables.discard((db if db is not None else database, name))
        self.temp_tables = tables if tables else _NO_TABLES
        if tables:
            self.pin_reasons.add(_PIN_TEMPORARY_TABLE)
        else:
            self.pin_reasons.discard(_PIN_TEMPORARY_TABLE)

    def transaction_ended(self) -> None:
        """
        The transaction that followed a C{SET TRANSACTION} ended: its one-shot
        characteristics are gone.
        """
        self.pin_reasons.discard(_PIN_SET_TRANSACTION)

    def set_database(self, database: str | None) -> None:
        """
        Record a new current database (bumps C{db_name_version} when it changed).
        """
        if database != self.database:
            self.database = database
            self.versions = self.versions.bumped(VarClass.DB_NAME)

    def set_sys_vars(self, values: Iterable[tuple[str, SqlValue]]) -> None:
        """
        Record system variable values (bumps their classes' versions when changed).
        """
        bumped = []
        for name, value in values:
            if not is_sys_var_name(name):
                # No SET can restore it on another server session (a name the
                # server took but no plain identifier): syncing it would fail
                # the session. Not tracked.
                continue
            lowered = name.lower()
            var_class = classify_sys_var(lowered)
            if var_class is VarClass.LAST_INSERT_ID:
                continue
            if self.sys_vars.get(lowered, _MISSING) != value:
                self.sys_vars[lowered] = value
                bumped.append(var_class)
        if bumped:
            self.versions = self.versions.bumped(*bumped)

    def set_user_vars(self, values: Iterable[tuple[str, SqlValue]]) -> None:
        """
        Record user variable values (bumps C{user_var_version} when changed).
        """
        changed = False
        for name, value in values:
            if name not in self.user_vars or self.user_vars[name] != value:
                self.user_vars[name] = value
                changed = True
        if changed:
            self.versions = self.versions.bumped(VarClass.USER)

    def set_last_insert_id(self, value: int) -> None:
        """
        Record a new C{last_insert_id} (bumps its version when changed).
        """
        if value != self.last_insert_id:
            self.last_insert_id = value
            self.versions = self.versions.bumped(VarClass.LAST_INSERT_ID)

    def plan(self, server_versions: SessionVarVersions) -> SyncPlan:
        """
        What brings a server session with C{server_versions} up to date.
        """
        no_backslash = "NO_BACKSLASH_ESCAPES" in str(self.sys_vars.get("sql_mode", "")).upper()
        return plan_sync(
            self.versions,
            server_versions,
            database=self.database,
            sys_vars=self.sys_vars,
            user_vars=self.user_vars,
            last_insert_id=self.last_insert_id,
            no_backslash_escapes=no_backslash,
        )

    def reset(self, keep_database: bool = True) -> None:
        """
        Forget everything a COM_RESET_CONNECTION / COM_CHANGE_USER resets
        (variables, pins), bumping every version so stale server sessions sync.
        """
        database = self.database if keep_database else None
        self.sys_vars.clear()
        self.user_vars.clear()
        self.last_insert_id = None
        self.pin_reasons.clear()
        self.user_locks.clear()
        self.user_locks_unknown = False
        self.temp_tables = _NO_TABLES
        self.text_prepared = _NO_NAMES
        self.database = database
        self.versions = self.versions.bumped(*VarClass)


_MISSING = object()
