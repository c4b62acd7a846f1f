"""
Session state sync between one client session and its server sessions.

ODP keeps version counters per class of session state, on the client session
(cs) and on every server session (ss)
(C{src/obproxy/proxy/mysqllib/ob_proxy_session_info.h}, C{ObSessionVarVersion}):

  - when a statement changes state (learned from the OK packet's session-track
    data or from the statement itself), the cs counter of that class goes up
    (L{SessionVarVersions.bumped});
  - the ss that ran the statement already holds the new state, so it takes the
    cs versions (L{SessionVarVersions.after_statement});
  - before a request goes to an ss that is behind (L{SessionVarVersions.behind}),
    the proxy sends C{COM_INIT_DB} and then one C{SET} statement
    (L{plan_sync}, L{build_set_statement}) and swallows the answers; then the ss
    takes the cs versions.

Classes: I{hot} system variables (exactly C{autocommit}, C{ob_log_level},
C{ob_query_timeout}, C{ob_last_schema_version}), I{cold} system variables
(every other one), user variables, C{last_insert_id} and the current database
(C{ob_session_field_mgr.cpp}, C{hot_var_names}).
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Union

import attrs

__all__ = [
    "HOT_SYS_VARS",
    "NEVER_SYNCED_SYS_VARS",
    "SessionVarVersions",
    "SqlValue",
    "SyncPlan",
    "VarClass",
    "build_set_statement",
    "classify_sys_var",
    "is_sys_var_name",
    "modified_type",
    "plan_sync",
    "quote_string",
    "sql_literal",
    "sys_var_literal",
]


class VarClass(Enum):
    """
    A class of session state with its own version counter. The value is the
    counter's name as SHOW PROXYSESSION ATTRIBUTE prints it.
    """

    HOT_SYS = "hot_sys_var_version"
    COLD_SYS = "sys_var_version"
    USER = "user_var_version"
    LAST_INSERT_ID = "last_insert_id_version"
    DB_NAME = "db_name_version"


HOT_SYS_VARS = frozenset(
    {"autocommit", "ob_log_level", "ob_query_timeout", "ob_last_schema_version"}
)
"""The system variables ODP calls hot; all others are cold."""

NEVER_SYNCED_SYS_VARS = frozenset(
    {
        "ob_proxy_global_variables_version",
        "ob_proxy_user_privilege",
        "ob_capability_flag",
        "ob_proxy_set_trx_executed",
        "last_insert_id",
    }
)
"""
Session-tracked variables that no SET statement may carry: OceanBase's
read-only proxy bookkeeping, and C{last_insert_id}, which has its own class.
"""

_MODIFIED_TYPES = {
    VarClass.HOT_SYS: "hot modified vars",
    VarClass.COLD_SYS: "cold modified vars",
    VarClass.USER: "cold modified vars",
    VarClass.LAST_INSERT_ID: "last insert id modified vars",
}


def classify_sys_var(name: str) -> VarClass:
    """
    The version class of system variable C{name} (case-insensitive).

    @return: L{VarClass.LAST_INSERT_ID}, L{VarClass.HOT_SYS} or L{VarClass.COLD_SYS}.
    """
    lowered = name.lower()
    if lowered == "last_insert_id":
        return VarClass.LAST_INSERT_ID
    return VarClass.HOT_SYS if lowered in HOT_SYS_VARS else VarClass.COLD_SYS


def modified_type(var_class: VarClass) -> str:
    """
    The C{modified_type} column of SHOW PROXYSESSION VARIABLES for a class:
    C{hot modified vars}, C{cold modified vars} (user variables too) or
    C{last insert id modified vars}.

    @raise ValueError: for L{VarClass.DB_NAME}, which is not a variable.
    """
    try:
        return _MODIFIED_TYPES[var_class]
    except KeyError:
        raise ValueError(f"{var_class.name} has no modified_type") from None


# Each class's counter field, looked up without Enum's .value descriptor (once per request).
_FIELDS: dict[VarClass, str] = {var_class: var_class.value for var_class in VarClass}
_NONE_BEHIND: frozenset[VarClass] = frozenset()


@attrs.frozen
class SessionVarVersions:
    """
    The version counters of one session (client or server), a value: every
    change makes a new one.

    @ivar hot_sys_var_version: hot system variables.
    @ivar sys_var_version: cold system variables.
    @ivar user_var_version: user variables.
    @ivar last_insert_id_version: C{last_insert_id}.
    @ivar db_name_version: the current database.
    """

    hot_sys_var_version: int = 0
    sys_var_version: int = 0
    user_var_version: int = 0
    last_insert_id_version: int = 0
    db_name_version: int = 0

    def version(self, var_class: VarClass) -> int:
        """
        The counter of C{var_class}.
        """
        value: int = getattr(self, _FIELDS[var_class])
        return value

    def bumped(self, *classes: VarClass) -> SessionVarVersions:
        """
        These versions with each named class's counter one higher (a class
        named twice goes up once). The client session does this when a
        statement changed state of those classes.
        """
        changes = {var_class.value: self.version(var_class) + 1 for var_class in set(classes)}
        return attrs.evolve(self, **changes)

    def behind(self, client: SessionVarVersions) -> frozenset[VarClass]:
        """
        Called on a server session's versions: which classes lag behind the
        client session's, so must be synced before the next request.
        """
        if self == client:
            # The usual case (nothing changed since the last request): no walk.
            return _NONE_BEHIND
        return frozenset(
            var_class
            for var_class, field in _FIELDS.items()
            if getattr(self, field) < getattr(client, field)
        )

    def after_statement(
        self, client_before: SessionVarVersions, client_after: SessionVarVersions
    ) -> SessionVarVersions:
        """
        Called on the versions of the server session that ran a statement:
        its versions afterwards.

        A class the server session was up to date in before the statement
        follows the client session (the server ran the change itself), which
        is ODP's "ss copies cs versions". A class it was behind in stays
        behind: a command sent without syncing (C{COM_STMT_CLOSE}) must not
        make a stale session look current. For a synced server session this is
        exactly a copy of C{client_after}.

        @param client_before: the client versions when the statement was sent.
        @param client_after: the client versions after learning its effects.
        """
        changes = {
            var_class.value: client_after.version(var_class)
            for var_class in VarClass
            if self.version(var_class) >= client_before.version(var_class)
        }
        return attrs.evolve(self, **changes)

    def attribute_rows(self) -> list[tuple[str, int]]:
        """
        C{(name, value)} rows in SHOW PROXYSESSION ATTRIBUTE order.
        """
        return [(var_class.value, self.version(var_class)) for var_class in VarClass]


SqlValue = Union[
    None,
    bool,
    int,
    float,
    decimal.Decimal,
    str,
    bytes,
    bytearray,
    memoryview,
    datetime.date,
    datetime.time,
    datetime.timedelta,
]
"""The Python values L{sql_literal} can spell."""

_BACKSLASH_ESCAPES = {
    "\0": "\\0",
    "\n": "\\n",
    "\r": "\\r",
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\x1a": "\\Z",
}
_BACKSLASH_ESCAPE_RE = re.compile("[\0\n\r\\\\'\"\x1a]")
_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\Z")
_SYS_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PLAIN_USER_VAR_RE = re.compile(r"[A-Za-z0-9_.$]+\Z")


def quote_string(text: str, *, no_backslash_escapes: bool = False) -> str:
    """
    Quote C{text} as an SQL string literal.

    @param no_backslash_escapes: the session's C{sql_mode} has
        C{NO_BACKSLASH_ESCAPES}, so a backslash is an ordinary character and
        only C{'} needs doubling; otherwise NUL, newline, carriage return,
        backslash, both quotes and Ctrl-Z are backslash-escaped as
        C{mysql_real_escape_string} does.
    """
    if no_backslash_escapes:
        return "'" + text.replace("'", "''") + "'"
    return "'" + _BACKSLASH_ESCAPE_RE.sub(lambda m: _BACKSLASH_ESCAPES[m.group()], text) + "'"


def _timedelta_literal(value: datetime.timedelta) -> str:
    sign = "-" if value < datetime.timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.days * 86400 + value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
    if value.microseconds:
        text += f".{value.microseconds:06d}"
    return text


def sql_literal(value: SqlValue, *, no_backslash_escapes: bool = False) -> str:
    """
    Spell a Python value as an SQL literal.

    C{None} is C{NULL}; C{bool} is C{1}/C{0}; C{int}, C{float} and C{Decimal}
    are bare numbers (C{Decimal} in positional notation so it stays DECIMAL);
    C{str} is a quoted string (L{quote_string}); bytes are a hex literal
    C{X'...'}; dates, times and durations are quoted in MySQL's format.

    @raise ValueError: a float or Decimal that is infinite or NaN.
    @raise TypeError: any other type.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no SQL literal")
        return repr(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} has no SQL literal")
        return format(value, "f")
    if isinstance(value, str):
        return quote_string(value, no_backslash_escapes=no_backslash_escapes)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "X'" + bytes(value).hex().upper() + "'"
    if isinstance(value, datetime.datetime):
        return "'" + value.isoformat(sep=" ") + "'"
    if isinstance(value, (datetime.date, datetime.time)):
        return "'" + value.isoformat() + "'"
    if isinstance(value, datetime.timedelta):
        return "'" + _timedelta_literal(value) + "'"
    raise TypeError(f"cannot spell {type(value).__name__} as an SQL literal")


def sys_var_literal(value: SqlValue, *, no_backslash_escapes: bool = False) -> str:
    """
    Spell a system variable's value for C{SET @@name = value}.

    Servers report every value as text in session-track data, but numeric
    variables refuse quoted values (C{SET @@wait_timeout = '10'} fails), so a
    string that is a plain decimal number is sent bare. Everything else is
    as L{sql_literal}.
    """
    if isinstance(value, str) and _NUMBER_RE.match(value):
        return value
    return sql_literal(value, no_backslash_escapes=no_backslash_escapes)


def is_sys_var_name(name: str) -> bool:
    """
    Whether C{name} can be written as a system variable in the C{SET}
    statements of a sync (a plain identifier).

    @param name: the variable's name.
    """
    return _SYS_VAR_NAME_RE.match(name) is not None


def _sys_var_target(name: str) -> str:
    if not _SYS_VAR_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a system variable name")
    return "@@" + name


def _user_var_target(name: str) -> str:
    if name == "":
        raise ValueError("a user variable needs a name")
    if _PLAIN_USER_VAR_RE.match(name):
        return "@" + name
    return "@`" + name.replace("`", "``") + "`"


def build_set_statement(
    sys_vars: Mapping[str, SqlValue] | Iterable[tuple[str, SqlValue]] = (),
    user_vars: Mapping[str, SqlValue] | Iterable[tuple[str, SqlValue]] = (),
    last_insert_id: int | None = None,
    *,
    no_backslash_escapes: bool = False,
) -> str | None:
    """
    Build the one statement that brings a server session's variables up to date:
    C{SET @@a = v, @@b = v, @c = v, @@last_insert_id = n}, in that order
    (system variables, user variables, then C{last_insert_id}), as ODP does.

    System variables in L{NEVER_SYNCED_SYS_VARS} are left out. User variable
    names that are not plain are backquoted.

    @param sys_vars: system variable names and values (values as the server
        reported them, see L{sys_var_literal}).
    @param user_vars: user variable names (without C{@}) and values.
    @param last_insert_id: the value to restore, or L{None} to leave it.
    @param no_backslash_escapes: quote strings for C{NO_BACKSLASH_ESCAPES}.
    @return: the statement, or L{None} when there is nothing to set.
    @raise ValueError: a system variable name that is not an identifier, an
        empty user variable name, or a value without a literal.
    @raise TypeError: a value of an unsupported type.
    """
    assignments = []
    sys_items = sys_vars.items() if isinstance(sys_vars, Mapping) else sys_vars
    for name, value in sys_items:
        if name.lower() in NEVER_SYNCED_SYS_VARS:
            continue
        literal = sys_var_literal(value, no_backslash_escapes=no_backslash_escapes)
        assignments.append(f"{_sys_var_target(name)} = {literal}")
    user_items = user_vars.items() if isinstance(user_vars, Mapping) else user_vars
    for name, value in user_items:
        literal = sql_literal(value, no_backslash_escapes=no_backslash_escapes)
        assignments.append(f"{_user_var_target(name)} = {literal}")
    if last_insert_id is not None:
        assignments.append(f"@@last_insert_id = {int(last_insert_id)}")
    if not assignments:
        return None
    return "SET " + ", ".join(assignments)


@attrs.frozen
class SyncPlan:
    """
    What to send to a server session before a request, in order.

    @ivar behind: the classes the server session lags in.
    @ivar database: the C{COM_INIT_DB} target, or L{None} for no C{COM_INIT_DB}.
    @ivar statement: the C{SET} statement (L{build_set_statement}), or L{None}.
    """

    behind: frozenset[VarClass]
    database: str | None = None
    statement: str | None = None

    @property
    def is_empty(self) -> bool:
        """
        Whether nothing needs sending.
        """
        return self.database is None and self.statement is None


def plan_sync(
    client: SessionVarVersions,
    server: SessionVarVersions,
    *,
    database: str | None,
    sys_vars: Mapping[str, SqlValue],
    user_vars: Mapping[str, SqlValue],
    last_insert_id: int | None,
    no_backslash_escapes: bool = False,
) -> SyncPlan:
    """
    Decide what brings server session versions C{server} up to the client's.

    Only the classes the server lags in are sent: the database as
    C{COM_INIT_DB}, then the lagging system variable classes (hot, cold), all
    user variables if they lag, and C{last_insert_id} if it lags, in one C{SET}.
    A client session with no database cannot un-select one (MySQL has no
    command for it), so then no C{COM_INIT_DB} is planned.

    @param client: the client session's versions.
    @param server: the server session's versions.
    @param database: the client session's current database.
    @param sys_vars: the client session's changed system variables.
    @param user_vars: the client session's user variables.
    @param last_insert_id: the client session's last insert id, if known.
    @param no_backslash_escapes: the session's C{sql_mode} has C{NO_BACKSLASH_ESCAPES}.
    """
    behind = server.behind(client)
    if not behind:
        return SyncPlan(behind)
    target_db = database if VarClass.DB_NAME in behind else None
    statement = build_set_statement(
        [(name, value) for name, value in sys_vars.items() if classify_sys_var(name) in behind],
        user_vars if VarClass.USER in behind else (),
        last_insert_id if VarClass.LAST_INSERT_ID in behind else None,
        no_backslash_escapes=no_backslash_escapes,
    )
    return SyncPlan(behind, target_db, statement)
