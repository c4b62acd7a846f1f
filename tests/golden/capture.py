"""
Record golden packets from the real test bed servers into C{tests/golden/<server>/*.hex}.

Run from the repository root (servers are started, or reused if running, and stopped again if
this script started them)::

    python -m tests.golden.capture            # both servers
    python -m tests.golden.capture mariadb    # one

It talks raw sockets through L{tests.testbed.wireclient} (no obproxy_tx code, no driver), so the
files show exactly what each server sends.  Files (each holds the whole exchange, client packets
included, see L{tests.golden} for the format):

  - C{handshake}: the initial handshake (HandshakeV10); C{handshake_tls} from a server with TLS
    (seekdb only: the C{mariadb} server always has TLS);
  - C{login}: handshake response and the OK; C{ok_after_login}: that OK alone;
  - C{auth_switch}: a login claiming C{caching_sha2_password}: AuthSwitchRequest, answer, OK;
  - C{change_user}: COM_CHANGE_USER with its auth switch (if any) and OK;
  - C{ok_session_track_autocommit}, C{ok_session_track_schema}, C{ok_session_track_user_var}:
    OK packets with session-state information (CLIENT_SESSION_TRACK on) for
    C{SET autocommit=0}, C{USE test}, C{SET @golden=1};
  - C{ok_insert}: OK with affected rows, last insert id and info text;
  - C{err_1045} (wrong password), C{err_1064} (syntax error), C{err_1146} (no such table);
  - C{resultset_text}: a text-protocol result set over many column types (column count, column
    definitions, EOF, rows, EOF); C{column_definition}: its first column definition alone;
    C{eof}: its final EOF alone; C{resultset_text_deprecate_eof}: the same with
    CLIENT_DEPRECATE_EOF (MariaDB only: seekdb does not offer it);
  - C{multi_result}: two result sets and an OK from one multi-statement COM_QUERY;
  - C{stmt_prepare_ok}: COM_STMT_PREPARE answer (StmtPrepareOK, parameter and column
    definitions, EOFs); C{resultset_binary}: COM_STMT_EXECUTE of it (binary rows);
    C{stmt_close} is not recorded (no answer);
  - C{local_infile}: LOAD DATA LOCAL INFILE: the 0xFB request, file content, empty packet, OK;
  - C{ping}: COM_PING and OK; C{statistics}: COM_STATISTICS and its string answer.

Scrambles, connection ids and timestamps differ on every run; everything else should be
stable for a given server version.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

from tests import testbed
from tests.golden import GOLDEN_DIR
from tests.testbed import Server
from tests.testbed import wireclient as wc

Packet = Tuple[str, int, bytes]

TYPES_TABLE = "golden_types"
INFILE_TABLE = "golden_infile"

TYPES_DDL = f"""CREATE TABLE {TYPES_TABLE} (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, dc DECIMAL(10,3),
  vc VARCHAR(20), c CHAR(5), t TEXT, b BLOB, vb VARBINARY(8),
  dt DATE, dtm DATETIME(6), ts TIMESTAMP NULL, tm TIME(3), y YEAR, bt BIT(8),
  e ENUM('a','b')
) DEFAULT CHARSET=utf8mb4"""

TYPES_ROWS = f"""INSERT INTO {TYPES_TABLE} VALUES
(1, -1, -300, -70000, -2000000000, -9000000000000000000, 18446744073709551615,
 1.5, -2.25, 1234567.891, 'h\u00e9llo', 'ab', 'text', x'00ff', x'deadbeef',
 '2024-01-02', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05', '-12:34:56.789', 2024,
 b'10100101', 'b'),
(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL)"""

TYPES_SELECT = f"SELECT * FROM {TYPES_TABLE} ORDER BY id"
PREPARE_SQL = f"SELECT * FROM {TYPES_TABLE} WHERE id > ? ORDER BY id"
INFILE_CONTENT = b"1,alpha\n2,beta\n3,gamma\n"

COM_QUERY = 0x03
COM_STATISTICS = 0x09
COM_PING = 0x0E
COM_CHANGE_USER = 0x11
COM_STMT_PREPARE = 0x16
COM_STMT_EXECUTE = 0x17
COM_STMT_CLOSE = 0x19
MYSQL_TYPE_LONGLONG = 0x08


class Recorder:
    """
    Writes C{.hex} files for one server.
    """

    def __init__(self, server: Server, folder: str) -> None:
        self.server = server
        self.directory = GOLDEN_DIR / folder
        self.directory.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.written: List[str] = []

    def write(
        self,
        name: str,
        what: str,
        packets: Sequence[Packet],
        client: wc.WireClient,
    ) -> None:
        """
        Write C{<name>.hex} holding C{packets}.
        """
        handshake = client.handshake
        lines = [
            "# Golden packets recorded from a real server by tests/golden/capture.py"
            " (do not edit).",
            f"# server: {self.folder}",
            f"# version: {self.server.version}",
            f"# handshake_version: {handshake.server_version if handshake else ''}",
            f"# what: {what}",
            f"# server_capabilities: {handshake.capabilities if handshake else 0:#010x}",
            f"# client_capabilities: {client.capabilities:#010x}",
            "# format: direction (< server to client, > client to server), sequence id,"
            " payload hex",
        ]
        for direction, seq, payload in packets:
            lines.append(f"{direction} {seq} {payload.hex()}".rstrip())
        (self.directory / f"{name}.hex").write_text("\n".join(lines) + "\n")
        self.written.append(name)


def _connect(server: Server) -> wc.WireClient:
    return wc.connect(server.host, server.port, timeout=30)


def _login(server: Server, capabilities: int = wc.DEFAULT_CAPABILITIES) -> wc.WireClient:
    client = _connect(server)
    client.login(server.user, server.password, server.database, capabilities)
    return client


def _is_eof(payload: bytes) -> bool:
    return payload[:1] == b"\xfe" and len(payload) < 9


def _read_result_raw(client: wc.WireClient) -> int:
    """
    Read one complete answer to a query (OK, ERR or a result set); return its status flags.
    """
    deprecate_eof = bool(client.capabilities & wc.CLIENT_DEPRECATE_EOF)
    first = client.read_packet()
    if first[:1] == b"\xff":
        return 0
    if first[:1] == b"\x00":
        return wc.WireClient._ok_status(first)
    if first[:1] == b"\xfb":
        raise wc.WireError("unexpected LOCAL INFILE request")
    count, _ = wc.lenenc_int(first, 0)
    assert count is not None
    for _ in range(count):
        client.read_packet()
    if not deprecate_eof:
        eof = client.read_packet()
        assert _is_eof(eof), eof.hex()
    while True:
        row = client.read_packet()
        if row[:1] == b"\xff":
            return 0
        if row[:1] == b"\xfe" and len(row) < 0xFFFFFF:
            if deprecate_eof:
                return wc.WireClient._ok_status(row)
            return int(struct.unpack_from("<H", row, 3)[0])


def _query_exchange(client: wc.WireClient, sql: str) -> List[Packet]:
    """
    Run C{sql} and return every packet of the exchange (all results of a multi-statement).
    """
    mark = len(client.transcript)
    client.command(bytes([COM_QUERY]) + sql.encode())
    while _read_result_raw(client) & 0x0008:  # SERVER_MORE_RESULTS_EXISTS
        pass
    return client.transcript[mark:]


def _setup_tables(server: Server) -> None:
    client = _login(server)
    try:
        for sql in (
            f"DROP TABLE IF EXISTS {TYPES_TABLE}",
            TYPES_DDL,
            TYPES_ROWS,
            f"DROP TABLE IF EXISTS {INFILE_TABLE}",
            f"CREATE TABLE {INFILE_TABLE} (id INT PRIMARY KEY, name VARCHAR(20))",
            "DROP TABLE IF EXISTS golden_auto",
            "CREATE TABLE golden_auto (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
        ):
            client.query(sql)
    finally:
        client.close()


def capture(server: Server, folder: str, tls_server: Server | None = None) -> List[str]:
    """
    Record every golden file for C{server} into C{tests/golden/<folder>/}; return their names.
    """
    rec = Recorder(server, folder)
    _setup_tables(server)
    base_caps = wc.DEFAULT_CAPABILITIES

    # Connection phase.
    client = _connect(server)
    client.login(server.user, server.password, None, base_caps)
    rec.write("handshake", "initial handshake", client.transcript[:1], client)
    rec.write("login", "handshake response and OK", client.transcript[1:], client)
    rec.write("ok_after_login", "OK after a successful login", client.transcript[-1:], client)
    mark = len(client.transcript)
    client.command(bytes([COM_PING]))
    client.read_packet()
    rec.write("ping", "COM_PING and its OK", client.transcript[mark:], client)
    mark = len(client.transcript)
    client.command(bytes([COM_STATISTICS]))
    client.read_packet()
    rec.write("statistics", "COM_STATISTICS and its string", client.transcript[mark:], client)
    # COM_CHANGE_USER to the same user, answered against the handshake scramble.
    assert client.handshake is not None
    mark = len(client.transcript)
    auth = wc.native_password(server.password.encode(), client.handshake.scramble)
    body = bytes([COM_CHANGE_USER]) + server.user.encode() + b"\x00"
    body += bytes([len(auth)]) + auth + server.database.encode() + b"\x00"
    body += struct.pack("<H", wc.UTF8MB4_GENERAL_CI) + b"mysql_native_password\x00"
    client.command(body)
    client.finish_auth(server.password)
    rec.write(
        "change_user", "COM_CHANGE_USER (same user), auth switch if any, OK",
        client.transcript[mark:], client,
    )  # fmt: skip
    client.close()

    client = _connect(server)
    client.login(server.user, server.password, None, base_caps, auth_plugin="caching_sha2_password")
    rec.write(
        "auth_switch",
        "login claiming caching_sha2_password with an empty auth response: switch and OK",
        client.transcript[1:],
        client,
    )
    client.close()

    if tls_server is not None:
        client = _connect(tls_server)
        client.handshake = wc.parse_handshake(client.read_packet())
        rec.write(
            "handshake_tls", "initial handshake of a server with TLS", client.transcript, client
        )
        client.close()

    client = _connect(server)
    try:
        client.login(server.user, "wrong password", None, base_caps)
    except wc.WireError as exc:
        assert exc.code == 1045, exc
    else:
        raise AssertionError("wrong password accepted")
    rec.write(
        "err_1045", "handshake response with a wrong password, ERR", client.transcript[1:], client
    )
    client.close()

    # Session tracking.
    client = _login(server, base_caps | wc.CLIENT_SESSION_TRACK)
    for name, sql in (
        ("ok_session_track_autocommit", "SET autocommit=0"),
        ("ok_session_track_schema", f"USE {server.database}"),
        ("ok_session_track_user_var", "SET @golden=1"),
    ):
        rec.write(name, f"{sql} with CLIENT_SESSION_TRACK", _query_exchange(client, sql), client)
    client.close()

    # Command phase, classic EOF.
    client = _login(server, base_caps)
    sql = "INSERT INTO golden_auto (v) VALUES (1), (2), (3)"
    rec.write("ok_insert", sql, _query_exchange(client, sql), client)
    rec.write("err_1064", "SELEC 1", _query_exchange(client, "SELEC 1"), client)
    sql = "SELECT * FROM no_such_table"
    rec.write("err_1146", sql, _query_exchange(client, sql), client)
    packets = _query_exchange(client, TYPES_SELECT)
    rec.write("resultset_text", TYPES_SELECT, packets, client)
    rec.write(
        "column_definition", f"first column definition of: {TYPES_SELECT}", packets[2:3], client
    )
    rec.write("eof", f"final EOF of: {TYPES_SELECT}", packets[-1:], client)

    # Prepared statement, binary rows.
    mark = len(client.transcript)
    client.command(bytes([COM_STMT_PREPARE]) + PREPARE_SQL.encode())
    ok = client.read_packet()
    if ok[:1] != b"\x00":
        raise wc.error_from_payload(ok)
    statement_id, num_columns, num_params = struct.unpack_from("<IHH", ok, 1)
    for _ in range(num_params):
        client.read_packet()
    if num_params:
        client.read_packet()
    for _ in range(num_columns):
        client.read_packet()
    if num_columns:
        client.read_packet()
    rec.write(
        "stmt_prepare_ok", f"COM_STMT_PREPARE {PREPARE_SQL}", client.transcript[mark:], client
    )
    mark = len(client.transcript)
    execute = struct.pack("<BIBI", COM_STMT_EXECUTE, statement_id, 0, 1)
    execute += b"\x00" * ((num_params + 7) // 8) + b"\x01"
    execute += struct.pack("<BB", MYSQL_TYPE_LONGLONG, 0) + struct.pack("<q", 0)
    client.command(execute)
    _read_result_raw(client)
    rec.write(
        "resultset_binary",
        "COM_STMT_EXECUTE of the prepared statement with id > 0 (LONGLONG parameter)",
        client.transcript[mark:],
        client,
    )
    client.command(struct.pack("<BI", COM_STMT_CLOSE, statement_id))
    client.close()

    # Multi-statement.
    client = _login(server, base_caps | wc.CLIENT_MULTI_STATEMENTS)
    sql = "SELECT 1 AS one; SELECT 'two' AS two; DO 3"
    rec.write("multi_result", sql, _query_exchange(client, sql), client)
    client.close()

    # LOAD DATA LOCAL INFILE.
    client = _login(server, base_caps | wc.CLIENT_LOCAL_FILES)
    sql = (
        f"LOAD DATA LOCAL INFILE 'golden.csv' INTO TABLE {INFILE_TABLE} "
        "FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n'"
    )
    mark = len(client.transcript)
    client.command(bytes([COM_QUERY]) + sql.encode())
    request = client.read_packet()
    if request[:1] != b"\xfb":
        raise wc.WireError(f"expected a LOCAL INFILE request, got {request[:16].hex()}")
    client.write_packet(INFILE_CONTENT)
    client.write_packet(b"")
    reply = client.read_packet()
    if reply[:1] != b"\x00":
        raise wc.error_from_payload(reply)
    rec.write("local_infile", sql, client.transcript[mark:], client)
    client.close()

    # DEPRECATE_EOF, where offered.
    client = _connect(server)
    client.login(server.user, server.password, server.database, base_caps | wc.CLIENT_DEPRECATE_EOF)
    if client.capabilities & wc.CLIENT_DEPRECATE_EOF:
        packets = _query_exchange(client, TYPES_SELECT)
        rec.write(
            "resultset_text_deprecate_eof",
            f"{TYPES_SELECT} with CLIENT_DEPRECATE_EOF",
            packets,
            client,
        )
    client.close()
    return rec.written


def main(argv: Sequence[str] | None = None) -> int:
    """
    Command line: record the golden files; return the exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.golden.capture", description=__doc__)
    parser.add_argument("servers", nargs="*", help="mariadb and/or seekdb (default: both)")
    args = parser.parse_args(argv)
    servers = args.servers or ["mariadb", "seekdb"]
    unknown = set(servers) - {"mariadb", "seekdb"}
    if unknown:
        parser.error(f"unknown servers: {sorted(unknown)}")
    started: List[str] = []

    def get(kind: str) -> Server:
        server = testbed.start(kind)
        if server.started_here:
            started.append(kind)
        return server

    jobs: List[Tuple[str, Callable[[], List[str]]]] = []
    if "mariadb" in servers:
        jobs.append(("mariadb", lambda: capture(get("mariadb"), "mariadb")))
    if "seekdb" in servers:
        jobs.append(("seekdb", lambda: capture(get("seekdb"), "seekdb", get("seekdb_tls"))))
    try:
        for folder, job in jobs:
            names = job()
            print(f"{folder}: wrote {len(names)} files to {Path('tests/golden') / folder}")
    finally:
        for kind in started:
            testbed.stop(kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
