"""
The seam between the server protocol and an application, and the values that
cross it.

After a client logs in, the L{twisted.cred} realm returns an avatar providing
L{IMySQLSession}; the server protocol hands it each command and writes what it
returns:

  - L{OK} for a statement without a result set;
  - L{ResultSet} for rows, built from Python values (L{ResultSet.from_rows})
    and possibly a lazy iterable that the server streams with backpressure;
  - a list of those for a multi-statement query (multi-results);
  - or raises L{ServerError} (or returns a failed Deferred) for an ERR packet.

Every method may return its value directly or a
L{Deferred<twisted.internet.defer.Deferred>} of it.

L{ServerError} is also what the client raises when a server answers with ERR.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence, Union

import attrs
from zope.interface import Attribute, Interface

from obproxy_tx.wire.constants import ColumnFlag, ColumnType
from obproxy_tx.wire.errors import ErrorCode, sqlstate_for


class ServerError(Exception):
    """
    A MySQL error: an ERR packet sent (server side) or received (client side).

    @ivar code: the MySQL error number.
    @ivar sqlstate: the five-character SQLSTATE.
    @ivar message: the error message.
    """

    def __init__(self, code: int, message: str, sqlstate: str | None = None) -> None:
        super().__init__(code, message)
        self.code = int(code)
        self.message = message
        self.sqlstate = sqlstate if sqlstate is not None else sqlstate_for(code)

    def __str__(self) -> str:
        return f"({self.code}, {self.sqlstate!r}) {self.message}"

    @classmethod
    def parse_error(cls, sql: str) -> ServerError:
        """
        Build MySQL's syntax error (1064) for a statement we do not understand.

        @param sql: the statement.
        @return: the error.
        """
        near = sql[:80]
        return cls(
            ErrorCode.ER_PARSE_ERROR,
            "You have an error in your SQL syntax; check the manual that corresponds "
            f"to your MySQL server version for the right syntax to use near '{near}' at line 1",
        )


@attrs.frozen
class OK:
    """
    The result of a statement without rows.

    @ivar affected_rows: rows changed.
    @ivar last_insert_id: the last AUTO_INCREMENT value.
    @ivar warnings: the warning count.
    @ivar info: the human-readable info string.
    """

    affected_rows: int = 0
    last_insert_id: int = 0
    warnings: int = 0
    info: str = ""


@attrs.frozen
class Column:
    """
    One column of a L{ResultSet}.

    @ivar name: the column name.
    @ivar type: its MySQL type.
    @ivar flags: column flags.
    @ivar character_set: the collation id (63 = binary).
    @ivar length: the display length.
    @ivar decimals: decimals shown.
    @ivar table: the table name reported.
    @ivar schema: the schema name reported.
    """

    name: str
    type: ColumnType = ColumnType.MYSQL_TYPE_VAR_STRING
    flags: ColumnFlag = ColumnFlag(0)
    character_set: int = 45
    length: int = 1024
    decimals: int = 0
    table: str = ""
    schema: str = ""


_INT_TYPES = (
    ColumnType.MYSQL_TYPE_LONGLONG,
    ColumnType.MYSQL_TYPE_LONG,
    ColumnType.MYSQL_TYPE_TINY,
    ColumnType.MYSQL_TYPE_SHORT,
    ColumnType.MYSQL_TYPE_INT24,
)


def infer_column(name: str, values: Iterable[object]) -> Column:
    """
    Guess a L{Column} for Python values (the first non-C{None} value decides).

    @param name: the column name.
    @param values: sample values of the column.
    @return: a column description.
    """
    import datetime
    from decimal import Decimal

    for value in values:
        if value is None:
            continue
        if isinstance(value, (bool, int)):
            return Column(
                name,
                ColumnType.MYSQL_TYPE_LONGLONG,
                ColumnFlag.NUM_FLAG | ColumnFlag.BINARY_FLAG,
                63,
                20,
            )
        if isinstance(value, float):
            return Column(
                name,
                ColumnType.MYSQL_TYPE_DOUBLE,
                ColumnFlag.NUM_FLAG | ColumnFlag.BINARY_FLAG,
                63,
                22,
                31,
            )
        if isinstance(value, Decimal):
            return Column(name, ColumnType.MYSQL_TYPE_NEWDECIMAL, ColumnFlag.NUM_FLAG, 63, 65, 30)
        if isinstance(value, datetime.datetime):
            return Column(name, ColumnType.MYSQL_TYPE_DATETIME, ColumnFlag.BINARY_FLAG, 63, 26, 6)
        if isinstance(value, datetime.date):
            return Column(name, ColumnType.MYSQL_TYPE_DATE, ColumnFlag.BINARY_FLAG, 63, 10)
        if isinstance(value, datetime.timedelta):
            return Column(name, ColumnType.MYSQL_TYPE_TIME, ColumnFlag.BINARY_FLAG, 63, 17, 6)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return Column(
                name,
                ColumnType.MYSQL_TYPE_BLOB,
                ColumnFlag.BLOB_FLAG | ColumnFlag.BINARY_FLAG,
                63,
                0xFFFFFFFF,
            )
        return Column(name)
    return Column(name)


@attrs.frozen
class ResultSet:
    """
    Rows with their columns.

    @ivar columns: the column descriptions.
    @ivar rows: the rows, each a sequence of Python values (C{None}, C{int},
        C{float}, C{Decimal}, C{str}, C{bytes}, dates and times). May be any
        iterable, including a lazy generator: the server pulls rows only while
        the client keeps up.
    @ivar warnings: the warning count reported at the end.
    """

    columns: Sequence[Column]
    rows: Iterable[Sequence[Any]]
    warnings: int = 0

    @classmethod
    def from_rows(
        cls, names: Sequence[str], rows: Iterable[Sequence[Any]], warnings: int = 0
    ) -> ResultSet:
        """
        Build a result set from column names and rows of Python values; column
        types are inferred from the rows (which are therefore materialised).

        @param names: column names.
        @param rows: rows of Python values.
        @param warnings: the warning count.
        @return: the result set.
        """
        materialised = [tuple(row) for row in rows]
        columns = [
            infer_column(name, (row[index] for row in materialised if index < len(row)))
            for index, name in enumerate(names)
        ]
        return cls(columns, materialised, warnings)


#: What an L{IMySQLSession} query returns.
QueryResult = Union[OK, ResultSet, Sequence[Union[OK, ResultSet]]]


@attrs.define
class ConnectionInfo:
    """
    Facts about one client connection, passed to the realm as the C{mind} and
    kept current by the server protocol.

    @ivar connection_id: the id sent in the handshake (C{CONNECTION_ID()}).
    @ivar user: the authenticated user name.
    @ivar database: the current default schema, or C{None}.
    @ivar peer: the client's address as a string (C{"host"}).
    @ivar secure: whether the connection uses TLS.
    @ivar character_set: the collation id the client asked for.
    @ivar auth_plugin: the plugin the client authenticated with.
    @ivar stage1: C{SHA1(password)} recovered by native-password authentication
        (lets a proxy log in to backends), else C{None}.
    @ivar tls_cipher: the negotiated TLS cipher, when known.
    @ivar tls_version: the negotiated TLS protocol version, when known.
    @ivar compression: the compressed protocol in use after login (C{"zlib"}
        or C{"zstd"}), or C{None}.
    """

    connection_id: int
    user: str = ""
    database: str | None = None
    peer: str = ""
    secure: bool = False
    character_set: int = 45
    auth_plugin: str = ""
    stage1: bytes | None = None
    tls_cipher: str | None = None
    tls_version: str | None = None
    compression: str | None = None


class IMySQLSession(Interface):
    """
    The per-connection application object (the avatar the realm returns) that
    the server protocol hands commands to. Each method may return its result
    directly or as a Deferred, and reports errors by raising (or failing with)
    L{ServerError}.
    """

    info = Attribute("The L{ConnectionInfo} of this session's connection.")

    def query(sql: str) -> Any:  # noqa: N805
        """
        Run a C{COM_QUERY} statement (also used for executed prepared statements,
        with the parameters already substituted as SQL literals).

        @param sql: the statement text.
        @return: an L{OK}, a L{ResultSet}, a list of them (multi-results), or a
            Deferred of one of these.
        """

    def init_db(schema: str) -> Any:  # noqa: N805
        """
        Change the default schema (C{COM_INIT_DB}, C{USE}).

        @param schema: the schema name.
        @return: C{None} or a Deferred; raise L{ServerError} to refuse.
        """

    def reset() -> Any:  # noqa: N805
        """
        Reset session state (C{COM_RESET_CONNECTION}, C{COM_CHANGE_USER}).

        @return: C{None} or a Deferred.
        """

    def close() -> None:  # noqa: N805
        """
        The connection is gone; release what the session holds.
        """
