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
session (L{SessionState.pin_reasons}).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Callable, Iterable

import attrs

from obproxy_tx.session.sync import (
    SessionVarVersions,
    SqlValue,
    SyncPlan,
    VarClass,
    classify_sys_var,
    plan_sync,
)

__all__ = [
    "SessionState",
    "StatementInfo",
    "StatementKind",
    "classify",
    "parse_route_addr",
]


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


def _from_statements(info: Any) -> StatementInfo:
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
    )


def _load_classifier() -> Callable[[bytes], StatementInfo]:
    try:
        from obproxy_tx.session import statements
    except ImportError:  # pragma: no cover - the module ships with the package
        return _fallback_classify
    h8_classify = statements.classify

    def classify_with_statements(sql: bytes) -> StatementInfo:
        return _from_statements(h8_classify(sql))

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
    """

    versions: SessionVarVersions = attrs.field(factory=SessionVarVersions)
    database: str | None = None
    sys_vars: dict[str, SqlValue] = attrs.field(factory=dict)
    user_vars: dict[str, SqlValue] = attrs.field(factory=dict)
    last_insert_id: int | None = None
    pin_reasons: set[str] = attrs.field(factory=set)

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
        self.database = database
        self.versions = self.versions.bumped(*VarClass)


_MISSING = object()
