"""
A small MySQL-protocol server built on obproxy_tx: real clients (the mariadb
and mysql command-line clients, PyMySQL, mysql-connector-python) can log in to
it and query it.

It answers C{SELECT 1} and other literal selects, C{SELECT @@version_comment}
and other system variables, C{SELECT DATABASE()}, C{CONNECTION_ID()},
C{USER()}, C{VERSION()}, the C{SET ...} statements clients send when they
connect, C{SHOW DATABASES}, C{SHOW TABLES}, C{SHOW VARIABLES [LIKE ...]},
C{SHOW WARNINGS}, C{USE}, an in-memory table (C{SELECT * FROM fruits},
C{INSERT INTO fruits VALUES (...)}) and a lazily generated one streamed with
backpressure (C{SELECT * FROM seq_1_to_1000000}), and C{FLUSH PRIVILEGES}
(which empties the C{caching_sha2_password} cache, so the next login of a
caching_sha2 user needs full authentication); anything else gets MySQL's 1064
syntax error.

Users: C{root} (no password), C{demo}/C{demo_pw} (mysql_native_password) and
C{sha2}/C{sha2_pw} (caching_sha2_password)::

    python examples/server.py --port 3307
    python examples/server.py --port 3307 --tls-cert server.pem --tls-key server.key
    python examples/server.py --port 3307 --compress   # also offer CLIENT_COMPRESS
    mariadb -h127.0.0.1 -P3307 -udemo -pdemo_pw -e 'SELECT * FROM fruits'
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from typing import Any, Iterator, Sequence

from twisted.cred.portal import Portal
from twisted.internet.interfaces import IReactorCore, IReactorTCP
from twisted.logger import Logger
from zope.interface import implementer

from obproxy_tx.auth import InMemoryMySQLChecker, MySQLRealm
from obproxy_tx.protocol.interfaces import (
    OK,
    Column,
    ConnectionInfo,
    IMySQLSession,
    QueryResult,
    ResultSet,
    ServerError,
)
from obproxy_tx.wire.constants import (
    CACHING_SHA2_PASSWORD,
    MYSQL_NATIVE_PASSWORD,
    ColumnFlag,
    ColumnType,
)
from obproxy_tx.wire.errors import ErrorCode

SERVER_VERSION = "8.0.36-obproxy_tx-example"
VERSION_COMMENT = "obproxy_tx example server"

#: Session variables answered by C{SELECT @@name} and C{SHOW VARIABLES}.
DEFAULT_VARIABLES: dict[str, Any] = {
    "auto_increment_increment": 1,
    "autocommit": 1,
    "character_set_client": "utf8mb4",
    "character_set_connection": "utf8mb4",
    "character_set_database": "utf8mb4",
    "character_set_results": "utf8mb4",
    "character_set_server": "utf8mb4",
    "collation_connection": "utf8mb4_general_ci",
    "collation_server": "utf8mb4_general_ci",
    "init_connect": "",
    "interactive_timeout": 28800,
    "license": "Apache-2.0",
    "lower_case_table_names": 0,
    "max_allowed_packet": 67108864,
    "net_buffer_length": 16384,
    "net_write_timeout": 60,
    "performance_schema": 0,
    "sql_mode": "STRICT_TRANS_TABLES",
    "system_time_zone": "UTC",
    "time_zone": "SYSTEM",
    "transaction_isolation": "REPEATABLE-READ",
    "tx_isolation": "REPEATABLE-READ",
    "version": SERVER_VERSION,
    "version_comment": VERSION_COMMENT,
    "wait_timeout": 28800,
    "warning_count": 0,
}

_FRUIT_COLUMNS = (
    Column(
        "id",
        ColumnType.MYSQL_TYPE_LONG,
        ColumnFlag.NOT_NULL_FLAG | ColumnFlag.PRI_KEY_FLAG | ColumnFlag.NUM_FLAG,
        63,
        11,
        table="fruits",
        schema="demo",
    ),
    Column("name", ColumnType.MYSQL_TYPE_VAR_STRING, ColumnFlag(0), 45, 80, table="fruits"),
    Column(
        "price",
        ColumnType.MYSQL_TYPE_DOUBLE,
        ColumnFlag.NUM_FLAG,
        63,
        22,
        31,
        table="fruits",
        schema="demo",
    ),
)


class DemoDatabase:
    """
    The example server's data, shared by every session.

    @ivar fruits: the rows of C{demo.fruits} as C{(id, name, price)}.
    @ivar schemas: schema name to its table names.
    """

    def __init__(self, checker: InMemoryMySQLChecker | None = None) -> None:
        """
        @param checker: the users, so that C{FLUSH PRIVILEGES} can empty the
            C{caching_sha2_password} cache as MySQL does.
        """
        self.checker = checker
        self.fruits: list[tuple[int, str, float | None]] = [
            (1, "apple", 1.25),
            (2, "banana", 0.5),
            (3, "cherry", 4.0),
        ]
        self.schemas: dict[str, list[str]] = {
            "demo": ["fruits"],
            "information_schema": [],
        }
        self._next_connection_id = 1

    def next_connection_id(self) -> int:
        """
        @return: a fresh connection id.
        """
        value = self._next_connection_id
        self._next_connection_id += 1
        return value


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<null>NULL\b)
    | (?P<bool>TRUE\b|FALSE\b)
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)

_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "b": "\b"}


def parse_literal(text: str) -> Any:
    """
    Parse one SQL literal: a quoted string, a number, C{NULL}, C{TRUE}/C{FALSE}.

    @param text: the literal.
    @return: its Python value.
    @raise ValueError: if C{text} is not a literal.
    """
    match = _TOKEN.fullmatch(text)
    if match is None:
        raise ValueError(text)
    if match.group("string") is not None:
        body = match.group("string")
        quote = body[0]
        body = body[1:-1].replace(quote * 2, quote)
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)
    if match.group("number") is not None:
        number = match.group("number")
        return float(number) if any(c in number for c in ".eE") else int(number)
    if match.group("null") is not None:
        return None
    return 1 if match.group("bool").upper() == "TRUE" else 0


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """
    Split on a separator outside quotes and parentheses.

    @param text: the text.
    @param separator: a one-character separator.
    @return: the stripped parts.
    """
    parts: list[str] = []
    depth = 0
    quote = ""
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            current.append(char)
            if char == "\\" and index + 1 < len(text):
                current.append(text[index + 1])
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif char == "(":
            depth += 1
            current.append(char)
        elif char == ")":
            depth -= 1
            current.append(char)
        elif char == separator and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current).strip())
    return parts


_ALIAS = re.compile(r"^(?P<expr>.+?)\s+(?:AS\s+)?(?P<alias>`[^`]+`|'[^']+'|\w+)$", re.I | re.S)
_SEQ_TABLE = re.compile(r"^seq_(\d+)_to_(\d+)$", re.I)


@implementer(IMySQLSession)
class DemoSession:
    """
    One client's session on the example server.

    @ivar info: the connection facts.
    @ivar variables: this session's variables.
    """

    _log = Logger()

    def __init__(self, database: DemoDatabase, info: ConnectionInfo) -> None:
        """
        @param database: the shared data.
        @param info: this connection's facts (kept current by the protocol).
        """
        self._db = database
        self.info = info
        self.variables = dict(DEFAULT_VARIABLES)
        self.user_variables: dict[str, Any] = {}

    def close(self) -> None:
        """
        Nothing to release.
        """

    def reset(self) -> None:
        """
        Forget session variables.
        """
        self.variables = dict(DEFAULT_VARIABLES)
        self.user_variables = {}

    def init_db(self, schema: str) -> None:
        """
        Switch the default schema.

        @param schema: the schema.
        @raise ServerError: 1049 for an unknown schema.
        """
        if schema.lower() not in self._db.schemas:
            raise ServerError(ErrorCode.ER_BAD_DB_ERROR, f"Unknown database '{schema}'")
        self.info.database = schema.lower()

    def query(self, sql: str) -> QueryResult:
        """
        Answer one statement (several, separated by C{;}, give multi-results).

        @param sql: the statement text.
        @return: an L{OK}, a L{ResultSet} or a list of them.
        @raise ServerError: for anything not understood.
        """
        statements = [s for s in split_top_level(sql, ";") if s]
        if not statements:
            raise ServerError(ErrorCode.ER_EMPTY_QUERY, "Query was empty")
        if len(statements) == 1:
            return self._one(statements[0])
        return [self._one(statement) for statement in statements]

    def _one(self, sql: str) -> OK | ResultSet:
        sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S).strip()
        words = sql.split(None, 1)
        if not words:
            raise ServerError(ErrorCode.ER_EMPTY_QUERY, "Query was empty")
        verb = words[0].upper()
        rest = words[1] if len(words) > 1 else ""
        if verb == "SELECT":
            return self._select(rest, sql)
        if verb == "SET":
            return self._set(rest)
        if verb == "SHOW":
            return self._show(rest, sql)
        if verb == "USE":
            self.init_db(rest.strip("` "))
            return OK()
        if verb == "INSERT":
            return self._insert(rest, sql)
        if verb in ("BEGIN", "COMMIT", "ROLLBACK", "START", "DO"):
            return OK()
        if verb == "FLUSH" and rest.upper().split() == ["PRIVILEGES"]:
            if self._db.checker is not None:
                self._db.checker.forget_sha2_cache()
            return OK()
        raise ServerError.parse_error(sql)

    # -- SET ---------------------------------------------------------------

    def _set(self, rest: str) -> OK:
        if re.match(r"^(NAMES|CHARACTER\s+SET|CHARSET)\b", rest, re.I):
            return OK()
        for assignment in split_top_level(rest):
            match = re.match(
                r"^(?:(?:SESSION|GLOBAL|LOCAL)\s+|@@(?:SESSION\.|GLOBAL\.|LOCAL\.)?|(@))?"
                r"`?(\w+)`?\s*:?=\s*(.+)$",
                assignment,
                re.I | re.S,
            )
            if match is None:
                raise ServerError.parse_error("SET " + rest)
            user_var, name, value_text = match.group(1), match.group(2), match.group(3)
            try:
                value = parse_literal(value_text)
            except ValueError:
                value = value_text.strip().strip("`")
            if user_var:
                self.user_variables[name.lower()] = value
            else:
                if isinstance(value, str) and value.upper() in ("ON", "OFF"):
                    value = 1 if value.upper() == "ON" else 0
                self.variables[name.lower()] = value
        return OK()

    # -- SELECT --------------------------------------------------------------

    def _select(self, rest: str, sql: str) -> ResultSet:
        body = re.sub(r"\s+LIMIT\s+\d+(\s*,\s*\d+)?\s*$", "", rest, flags=re.I)
        limit_match = re.search(r"\s+LIMIT\s+(\d+)\s*$", rest, re.I)
        limit = int(limit_match.group(1)) if limit_match else None
        from_match = re.match(r"^(?P<items>.+?)\s+FROM\s+(?P<table>[\w.`]+)\s*$", body, re.I | re.S)
        if from_match is not None:
            return self._select_table(from_match.group("items"), from_match.group("table"), limit)
        names: list[str] = []
        values: list[Any] = []
        for item in split_top_level(body):
            expression, name = item, item
            alias = _ALIAS.match(item)
            if alias is not None and not re.fullmatch(r"@@[\w.]+", item):
                try:
                    value = self._evaluate(alias.group("expr"))
                except ValueError:
                    value = None
                    alias = None
                if alias is not None:
                    names.append(alias.group("alias").strip("`'"))
                    values.append(value)
                    continue
            try:
                values.append(self._evaluate(expression))
            except ValueError:
                raise ServerError.parse_error(sql) from None
            names.append(name)
        rows = [tuple(values)] if limit is None or limit > 0 else []
        return ResultSet.from_rows(names, rows)

    def _evaluate(self, expression: str) -> Any:
        expression = expression.strip()
        variable = re.fullmatch(r"@@(?:session\.|global\.|local\.)?`?(\w+)`?", expression, re.I)
        if variable is not None:
            name = variable.group(1).lower()
            if name not in self.variables:
                raise ServerError(
                    ErrorCode.ER_UNKNOWN_SYSTEM_VARIABLE, f"Unknown system variable '{name}'"
                )
            return self.variables[name]
        user_variable = re.fullmatch(r"@`?(\w+)`?", expression)
        if user_variable is not None:
            return self.user_variables.get(user_variable.group(1).lower())
        function = re.fullmatch(r"(\w+)\s*\(\s*\)", expression)
        if function is not None:
            name = function.group(1).upper()
            peer = self.info.peer or "localhost"
            answers: dict[str, Any] = {
                "DATABASE": self.info.database,
                "SCHEMA": self.info.database,
                "CONNECTION_ID": self.info.connection_id,
                "USER": f"{self.info.user}@{peer}",
                "CURRENT_USER": f"{self.info.user}@%",
                "VERSION": SERVER_VERSION,
            }
            if name in answers:
                return answers[name]
            raise ValueError(expression)
        return parse_literal(expression)

    def _select_table(self, items: str, table: str, limit: int | None) -> ResultSet:
        name = table.replace("`", "")
        schema, _, bare = name.rpartition(".")
        sequence = _SEQ_TABLE.match(bare)
        if sequence is not None:
            start, stop = int(sequence.group(1)), int(sequence.group(2))
            if limit is not None:
                stop = min(stop, start + limit - 1)
            return ResultSet(
                [Column("seq", ColumnType.MYSQL_TYPE_LONGLONG, ColumnFlag.NUM_FLAG, 63, 20)],
                _counting(start, stop),
            )
        schema = schema or (self.info.database or "demo")
        if bare.lower() != "fruits" or schema.lower() != "demo":
            raise ServerError(1146, f"Table '{schema}.{bare}' doesn't exist", "42S02")
        rows: Sequence[tuple[Any, ...]] = list(self._db.fruits)
        if limit is not None:
            rows = rows[:limit]
        wanted = [item.strip("` ").lower() for item in split_top_level(items)]
        if wanted == ["*"]:
            return ResultSet(_FRUIT_COLUMNS, rows)
        if wanted == ["count(*)"]:
            return ResultSet.from_rows(["COUNT(*)"], [(len(rows),)])
        indexes = []
        for column_name in wanted:
            found = [i for i, c in enumerate(_FRUIT_COLUMNS) if c.name == column_name]
            if not found:
                raise ServerError(1054, f"Unknown column '{column_name}' in 'field list'", "42S22")
            indexes.append(found[0])
        return ResultSet(
            [_FRUIT_COLUMNS[i] for i in indexes],
            [tuple(row[i] for i in indexes) for row in rows],
        )

    # -- INSERT --------------------------------------------------------------

    def _insert(self, rest: str, sql: str) -> OK:
        match = re.match(
            r"^INTO\s+(?:`?demo`?\.)?`?fruits`?\s*(?:\((?P<cols>[^)]*)\))?\s*VALUES\s*(?P<rows>.+)$",
            rest,
            re.I | re.S,
        )
        if match is None:
            raise ServerError.parse_error(sql)
        columns = (
            [c.strip("` ").lower() for c in match.group("cols").split(",")]
            if match.group("cols")
            else ["id", "name", "price"]
        )
        added = 0
        last_id = 0
        for group in split_top_level(match.group("rows")):
            if not (group.startswith("(") and group.endswith(")")):
                raise ServerError.parse_error(sql)
            try:
                values = [parse_literal(v) for v in split_top_level(group[1:-1])]
            except ValueError:
                raise ServerError.parse_error(sql) from None
            if len(values) != len(columns):
                raise ServerError(1136, "Column count doesn't match value count at row 1", "21S01")
            row = dict(zip(columns, values))
            new_id = row.get("id") or max((f[0] for f in self._db.fruits), default=0) + 1
            self._db.fruits.append((int(new_id), str(row.get("name", "")), row.get("price")))
            added += 1
            last_id = int(new_id)
        return OK(affected_rows=added, last_insert_id=last_id)

    # -- SHOW ----------------------------------------------------------------

    def _show(self, rest: str, sql: str) -> ResultSet:
        words = rest.upper().split()
        if words[:1] == ["DATABASES"] or words[:1] == ["SCHEMAS"]:
            return ResultSet.from_rows(["Database"], [(s,) for s in sorted(self._db.schemas)])
        if words[:1] == ["TABLES"] or words[:2] == ["FULL", "TABLES"]:
            from_match = re.search(r"\b(?:FROM|IN)\s+`?(\w+)`?", rest, re.I)
            schema = from_match.group(1) if from_match else self.info.database
            if schema is None:
                raise ServerError(ErrorCode.ER_NO_DB_ERROR, "No database selected")
            tables = self._db.schemas.get(schema.lower(), [])
            return ResultSet.from_rows([f"Tables_in_{schema}"], [(t,) for t in tables])
        if "VARIABLES" in words[:2]:
            like = re.search(r"\bLIKE\s+('(?:[^']|'')*')", rest, re.I)
            pattern = parse_literal(like.group(1)) if like else "%"
            glob = pattern.replace("%", "*").replace("_", "?")
            rows = [
                (name, str(value))
                for name, value in sorted(self.variables.items())
                if fnmatch.fnmatch(name, glob.lower())
            ]
            return ResultSet.from_rows(["Variable_name", "Value"], rows)
        if words[:1] in (["WARNINGS"], ["ERRORS"]):
            return ResultSet(
                [
                    Column("Level", length=21),
                    Column("Code", ColumnType.MYSQL_TYPE_LONG, ColumnFlag.NUM_FLAG, 63, 4),
                    Column("Message", length=512),
                ],
                [],
            )
        if words[:1] == ["COLLATION"] or words[:2] == ["CHARACTER", "SET"]:
            return ResultSet.from_rows(["Collation"], [("utf8mb4_general_ci",)])
        if "STATUS" in words[:2]:
            like = re.search(r"\bLIKE\s+('(?:[^']|'')*')", rest, re.I)
            pattern = parse_literal(like.group(1)) if like else "%"
            glob = pattern.replace("%", "*").replace("_", "?").lower()
            status = {
                "Compression": "ON" if self.info.compression else "OFF",
                "Ssl_cipher": self.info.tls_cipher or "",
                "Ssl_version": self.info.tls_version or "",
                "Uptime": "1",
            }
            rows = [(k, v) for k, v in status.items() if fnmatch.fnmatch(k.lower(), glob)]
            return ResultSet.from_rows(["Variable_name", "Value"], rows)
        raise ServerError.parse_error(sql)


def _counting(start: int, stop: int) -> Iterator[tuple[int]]:
    for value in range(start, stop + 1):
        yield (value,)


def make_checker() -> InMemoryMySQLChecker:
    """
    The example server's users: C{root} (no password), C{demo}/C{demo_pw}
    (mysql_native_password) and C{sha2}/C{sha2_pw} (caching_sha2_password).

    @return: the checker.
    """
    checker = InMemoryMySQLChecker()
    checker.add_user("root", "", plugin=MYSQL_NATIVE_PASSWORD)
    checker.add_user("demo", "demo_pw", plugin=MYSQL_NATIVE_PASSWORD)
    checker.add_user("sha2", "sha2_pw", plugin=CACHING_SHA2_PASSWORD)
    return checker


def make_factory(
    reactor: Any,
    checker: InMemoryMySQLChecker | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    require_tls: bool = False,
    compression: bool = False,
) -> Any:
    """
    Build the example server's factory.

    @param reactor: the reactor (for timeouts).
    @param checker: the users (default L{make_checker}).
    @param tls_cert: a PEM certificate file to offer TLS with.
    @param tls_key: its key.
    @param require_tls: refuse clients that do not use TLS.
    @param compression: offer the compressed protocol (C{CLIENT_COMPRESS}, zlib).
    @return: a L{MySQLServerFactory}.
    """
    from obproxy_tx.protocol.server import MySQLServerFactory
    from obproxy_tx.protocol.tls import server_tls_options

    checker = checker if checker is not None else make_checker()
    database = DemoDatabase(checker)
    portal = Portal(MySQLRealm(lambda user, info: DemoSession(database, info)), [checker])
    tls = server_tls_options(tls_cert, tls_key) if tls_cert and tls_key else None
    return MySQLServerFactory(
        portal,
        reactor=reactor,
        server_version=SERVER_VERSION,
        tls_options=tls,
        require_tls=require_tls,
        auth_plugin_for=checker.plugin_for,
        connection_ids=database.next_connection_id,
        compression=compression,
    )


def main(argv: Sequence[str] | None = None, reactor: Any = None) -> None:
    """
    Run the example server until interrupted.

    @param argv: command-line arguments (default C{sys.argv[1:]}).
    @param reactor: the reactor (default: the global one).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3307)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--require-tls", action="store_true")
    parser.add_argument(
        "--compress", action="store_true", help="offer the compressed protocol (zlib)"
    )
    args = parser.parse_args(argv)
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    factory = make_factory(
        reactor, None, args.tls_cert, args.tls_key, args.require_tls, args.compress
    )
    tcp: IReactorTCP = reactor
    port = tcp.listenTCP(args.port, factory, interface=args.host)
    address: Any = port.getHost()
    print(f"listening on {address.host}:{address.port}", flush=True)
    core: IReactorCore = reactor
    core.run()


if __name__ == "__main__":
    main()
