"""
The interface an admin command provides, and the values it exchanges with the
L{obproxy_tx.admin.registry.CommandRegistry}.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence, Tuple

import attr
from zope.interface import Attribute, Interface

from obproxy_tx.wire.constants import ColumnFlag, ColumnType
from obproxy_tx.wire.packets import ColumnDefinition41


class IAdminCommand(Interface):
    """
    One of the proxy's own commands.

    A provider is found as a Twisted plugin in L{obproxy_tx.plugins} (it must
    also provide L{twisted.plugin.IPlugin}) or registered explicitly.

    Two optional attributes (read with defaults, so older providers keep
    working):

      - C{proxy_only} (default C{True}): the keywords are the proxy's own, so
        a statement that starts with them but fails L{match} is answered
        C{5010 Unknown operator, bad internal cmd}. C{False} (MySQL's own
        statements such as C{KILL}): such a statement is ordinary SQL and
        goes to the backend.
      - C{denied} (default C{None}): the L{AdminError} a caller without the
        privilege gets; C{None} sends the statement to the backend as
        ordinary SQL, as ODP does for users who are not admins.
    """

    name = Attribute("A short unique name, e.g. C{'PING PROXY'}.")
    keywords = Attribute(
        "A tuple of upper-case first words (e.g. C{('PING PROXY',)}); a "
        "statement whose upper-cased start matches none of them is never "
        "given to L{match}."
    )
    columns = Attribute(
        "The declared result columns (a tuple of C{str}), empty for commands "
        "that answer with an OK packet."
    )
    privilege = Attribute("Who may run it: one of L{Privilege.EVERYONE}, L{Privilege.ADMIN}.")
    errors = Attribute("A tuple of the error codes (C{int}) it may answer with.")

    def match(sql: str) -> Any | None:  # noqa: N805
        """
        Parse C{sql} with the command's grammar.

        @param sql: the statement text (leading and trailing blanks stripped).
        @return: a match object (given back to L{execute}), or C{None} if the
            statement is not this command.
        """

    def execute(context: AdminContext, match: Any) -> Any:  # noqa: N805
        """
        Run the command.

        @param context: the calling session, the session manager and config.
        @param match: what L{match} returned.
        @return: an L{AdminOK}, L{AdminError} or L{AdminResultSet}, or a
            L{Deferred <twisted.internet.defer.Deferred>} firing with one.
            Raising L{AdminError} is the same as returning it.
        """


class Privilege:
    """
    Who may run a command.

    @cvar EVERYONE: any logged-in user.
    @cvar ADMIN: only C{root@sys} and the local admin C{root@proxysys}.
    """

    EVERYONE = "everyone"
    ADMIN = "admin"


@attr.s(auto_attribs=True, frozen=True)
class AdminContext:
    """
    What a command is given to work with.

    @ivar session: the calling client session.
    @ivar manager: the L{obproxy_tx.session.manager.SessionManager}.
    @ivar config: the proxy configuration.
    @ivar registry: the L{obproxy_tx.admin.registry.CommandRegistry} that
        recognised the command.
    """

    session: Any
    manager: Any
    config: Any
    registry: Any = None


@attr.s(auto_attribs=True, frozen=True)
class AdminOK:
    """
    Success without rows (an OK packet).

    @ivar affected_rows: the affected-row count to report.
    @ivar info: the human-readable info string.
    @ivar close_after: close the client connection once the packet is written.
    """

    affected_rows: int = 0
    info: str = ""
    close_after: bool = False


@attr.s(auto_attribs=True, auto_exc=True)
class AdminError(Exception):
    """
    Failure (an ERR packet); may be returned or raised.

    @ivar code: the MySQL error number.
    @ivar message: the message.
    @ivar sqlstate: the SQLSTATE.
    @ivar close_after: close the client connection once the packet is written
        (ODP's answer to killing your own session).
    """

    code: int
    message: str
    sqlstate: str = "HY000"
    close_after: bool = False


Cell = Any
"""A cell value: C{None} (SQL NULL), C{bytes}, C{str} or anything C{str()}-able."""


_UTF8MB4 = 45
_BINARY = 63


def integer_column(name: str, unsigned: bool = False) -> ColumnDefinition41:
    """
    A C{BIGINT} result column, as ODP declares its numeric columns
    (C{OB_MYSQL_TYPE_LONGLONG}): clients right-align and type its values.

    @param name: the column name.
    @param unsigned: flag it C{UNSIGNED} (ids that may exceed 2**63).
    """
    flags = ColumnFlag.BINARY_FLAG | ColumnFlag.NUM_FLAG
    if unsigned:
        flags |= ColumnFlag.UNSIGNED_FLAG
    return ColumnDefinition41(
        name=name.encode("utf-8"),
        character_set=_BINARY,
        column_length=20 if unsigned else 21,
        column_type=ColumnType.MYSQL_TYPE_LONGLONG,
        flags=flags,
        decimals=0,
    )


def text_column(name: str) -> ColumnDefinition41:
    """
    A C{VARCHAR} result column (utf8mb4), what a plain column name in
    L{AdminResultSet.columns} becomes.

    @param name: the column name.
    """
    return ColumnDefinition41(
        name=name.encode("utf-8"),
        character_set=_UTF8MB4,
        column_length=1024,
        column_type=ColumnType.MYSQL_TYPE_VAR_STRING,
        flags=ColumnFlag(0),
        decimals=0,
    )


def _as_tuple(columns: Iterable[Any]) -> Tuple[Any, ...]:
    """
    A typed converter, so that mypy accepts any iterable of columns.
    """
    return tuple(columns)


@attr.s(auto_attribs=True, frozen=True)
class AdminResultSet:
    """
    A result set.

    @ivar columns: column names, or full column definitions.
    @ivar rows: the rows, each with one cell per column.
    """

    columns: Tuple[Any, ...] = attr.ib(converter=_as_tuple)
    rows: Sequence[Sequence[Cell]] = ()

    def definitions(self) -> Tuple[ColumnDefinition41, ...]:
        """
        @return: a column definition for each column (names become
            C{VAR_STRING} utf8mb4 columns).
        """
        return tuple(
            column if isinstance(column, ColumnDefinition41) else text_column(str(column))
            for column in self.columns
        )
