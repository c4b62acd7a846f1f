"""
Run real MySQL clients (mysql-connector-python, the C{mariadb} CLI) as subprocesses, for tests.

Why subprocesses: mysql-connector-python's C extension (C{_mysql_connector}) links against the
OpenSSL it vendors (3.2 or newer), while Python's own C{ssl} module on Debian 12 uses the
system's OpenSSL 3.0.  Whichever loads first wins the shared C{libssl.so.3} name; once C{ssl} is
imported (pytest plugins import it early) the C extension fails to load and C{mysql.connector}
silently falls back to pure Python.  A fresh interpreter that imports C{_mysql_connector} first
gets the real C extension, and the test process stays untouched.  The pure-Python connector runs
the same way so both are tested alike.

Both helpers raise L{ClientError} (with the client's output) when the client fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, List, Sequence

import attrs

from tests.testbed.mariadb import find_program


class ClientError(Exception):
    """
    A client subprocess exited with an error.

    @ivar returncode: its exit status.
    @ivar output: what it printed (stdout and stderr).
    @ivar error_code: the MySQL error number the client reported, when known.
    """

    def __init__(self, message: str, returncode: int, output: str, error_code: int = 0) -> None:
        super().__init__(f"{message} (exit status {returncode}): {output.strip()[-2000:]}")
        self.returncode = returncode
        self.output = output
        self.error_code = error_code


@attrs.frozen
class ConnectorResult:
    """
    What a mysql-connector-python run saw.

    @ivar rows: the rows of the last statement, as JSON-able values (C{bytes} become C{str} via
        latin-1; other non-JSON types via C{str()}).
    @ivar connection_class: the class name of the connection (C{CMySQLConnection} for the C
        extension, C{MySQLConnection} for pure Python).
    @ivar cipher: the TLS cipher in use, or C{None} without TLS.
    @ivar server_version: the server version the connector reports.
    """

    rows: List[List[Any]]
    connection_class: str
    cipher: str | None
    server_version: str


_CONNECTOR_SCRIPT = r"""
import json, sys
args = json.loads(sys.argv[1])
use_pure = args.pop("use_pure")
if not use_pure:
    import _mysql_connector  # noqa: F401  (first, before ssl: see tests/testbed/clients.py)
import mysql.connector

statements = args.pop("statements")
try:
    conn = mysql.connector.connect(use_pure=use_pure, **args)
    cur = conn.cursor()
    rows = []
    for sql in statements:
        cur.execute(sql)
        rows = cur.fetchall() if cur.with_rows else []
    cipher = None
    if type(conn).__name__ == "CMySQLConnection":
        cipher = conn._cmysql.get_ssl_cipher()
    else:
        sock = getattr(conn._socket, "sock", None)
        cipher = sock.cipher()[0] if hasattr(sock, "cipher") else None
    version = ".".join(str(p) for p in conn.get_server_version() or ())
    conn.close()
except mysql.connector.Error as exc:
    print(json.dumps({"errno": exc.errno, "msg": str(exc)}))
    sys.exit(3)

def plain(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("latin-1")
    if v is None or isinstance(v, (int, float, str)):
        return v
    return str(v)

print(json.dumps({"rows": [[plain(v) for v in row] for row in rows],
                  "class": type(conn).__name__, "cipher": cipher, "version": version}))
"""


def connector_query(
    host: str,
    port: int,
    user: str,
    password: str,
    statements: Sequence[str],
    use_pure: bool,
    database: str | None = None,
    ssl_ca: str | None = None,
    ssl_disabled: bool = False,
    timeout: float = 60.0,
    **options: Any,
) -> ConnectorResult:
    """
    Connect with mysql-connector-python in a fresh interpreter, run C{statements}, return the
    last one's rows.

    @param use_pure: C{True} for the pure-Python implementation, C{False} for the C extension
        (the run fails if the C extension cannot be loaded: no silent fallback).
    @param ssl_ca: a CA file; TLS is then used and the server certificate and host name verified.
    @param ssl_disabled: refuse TLS even if the server offers it.
    @param options: more keyword arguments for C{mysql.connector.connect} (JSON-able values).
    @raise ClientError: if the client reports an error; C{error_code} is the MySQL errno.
    """
    args: dict[str, Any] = {
        "host": host,
        "port": port,
        "user": user,
        "password": password,
        "use_pure": use_pure,
        "statements": list(statements),
        "connection_timeout": int(timeout),
    }
    if database:
        args["database"] = database
    if ssl_ca:
        args.update(ssl_ca=ssl_ca, ssl_verify_cert=True, ssl_verify_identity=True)
    if ssl_disabled:
        args["ssl_disabled"] = True
    args.update(options)
    proc = subprocess.run(
        [sys.executable, "-c", _CONNECTOR_SCRIPT, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else {}
    except ValueError:
        data = {}
    if proc.returncode != 0 or "rows" not in data:
        raise ClientError(
            "mysql-connector-python failed",
            proc.returncode,
            proc.stdout + proc.stderr,
            int(data.get("errno", 0) or 0),
        )
    return ConnectorResult(
        rows=data["rows"],
        connection_class=data["class"],
        cipher=data["cipher"],
        server_version=data["version"],
    )


def mariadb_cli(
    host: str,
    port: int,
    user: str,
    password: str,
    sql: str,
    database: str | None = None,
    tls: bool | None = None,
    ssl_ca: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> List[List[str]]:
    """
    Run C{sql} with the C{mariadb} command-line client (batch mode, no column names).

    @param tls: C{True} to require TLS (with C{ssl_ca}: verify the certificate and host name),
        C{False} to refuse it, C{None} for the client's default.
    @return: the output rows, split on tabs.
    @raise ClientError: if the client exits non-zero.
    """
    cmd = [
        find_program("mariadb", "mysql"),
        "--no-defaults",
        "--batch",
        "--skip-column-names",
        f"--host={host}",
        f"--port={port}",
        f"--user={user}",
        "--protocol=TCP",
        f"--connect-timeout={int(timeout)}",
    ]
    if tls is True:
        cmd.append("--ssl")
        if ssl_ca:
            cmd += [f"--ssl-ca={ssl_ca}", "--ssl-verify-server-cert"]
    elif tls is False:
        cmd.append("--skip-ssl")
    cmd += list(extra_args)
    cmd += ["-e", sql]
    if database:
        cmd.append(database)
    env = dict(os.environ)
    env["MYSQL_PWD"] = password  # keeps it off the command line
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        code = 0
        if proc.stderr.startswith("ERROR "):
            code = int(proc.stderr.split()[1])
        raise ClientError("mariadb CLI failed", proc.returncode, proc.stdout + proc.stderr, code)
    return [line.split("\t") for line in proc.stdout.splitlines()]
