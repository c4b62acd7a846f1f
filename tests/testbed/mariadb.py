"""
A throwaway MariaDB server (Debian package C{mariadb-server}) for the test bed.

The server gets a fresh data directory (C{mariadb-install-db}), listens on a free port on
C{127.0.0.1} and on a unix socket in its directory, has TLS with the test bed certificates, and is
set up by an C{--init-file} that creates:

  - database C{test};
  - C{native_user}/C{native_pw} (mysql_native_password, all privileges);
  - C{tls_user}/C{tls_pw} (mysql_native_password, C{REQUIRE SSL});
  - C{nopw_user} with no password (all privileges on C{test.*});
  - C{admin}/C{admin_pw} (all privileges C{WITH GRANT OPTION}).

C{root} authenticates only through the unix socket as the OS user that runs the server.
C{max_allowed_packet} is 128 MiB so that 32 MiB blobs fit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import List

from tests.testbed import (
    Account,
    Server,
    TestbedError,
    free_port,
    log_tail,
    stop_pid,
    wait_ready,
)
from tests.testbed.certs import TLSCerts

KIND = "mariadb"

ACCOUNTS = {
    "native": Account("native_user", "native_pw"),
    "tls": Account("tls_user", "tls_pw", require_tls=True),
    "nopw": Account("nopw_user", ""),
    "admin": Account("admin", "admin_pw"),
}

DATABASE = "test"

#: Seconds to wait for the first successful login.
START_TIMEOUT = float(os.environ.get("OBPROXY_TESTBED_START_TIMEOUT", "90"))

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/libexec")


def find_program(*names: str) -> str:
    """
    The path of the first of C{names} found on C{$PATH} or in the usual sbin directories.

    @raise TestbedError: if none is installed.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return found
    raise TestbedError(
        f"{' / '.join(names)} not found: install the Debian packages mariadb-server and "
        "mariadb-client (make test does)"
    )


def _init_sql() -> str:
    native, tls, nopw, admin = (ACCOUNTS[k] for k in ("native", "tls", "nopw", "admin"))
    return "\n".join(
        [
            f"CREATE DATABASE IF NOT EXISTS {DATABASE};",
            f"CREATE USER '{native.user}'@'%' IDENTIFIED VIA mysql_native_password "
            f"USING PASSWORD('{native.password}');",
            f"GRANT ALL PRIVILEGES ON *.* TO '{native.user}'@'%';",
            f"CREATE USER '{tls.user}'@'%' IDENTIFIED VIA mysql_native_password "
            f"USING PASSWORD('{tls.password}') REQUIRE SSL;",
            f"GRANT ALL PRIVILEGES ON *.* TO '{tls.user}'@'%';",
            f"CREATE USER '{nopw.user}'@'%';",
            f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{nopw.user}'@'%';",
            f"CREATE USER '{admin.user}'@'%' IDENTIFIED VIA mysql_native_password "
            f"USING PASSWORD('{admin.password}');",
            f"GRANT ALL PRIVILEGES ON *.* TO '{admin.user}'@'%' WITH GRANT OPTION;",
            "FLUSH PRIVILEGES;",
            "",
        ]
    )


def launch(base: Path, certs: TLSCerts) -> Server:
    """
    Start a fresh server in C{base} (wiped first) and wait until it accepts logins.

    @raise TestbedError: with the log tail, if it does not come up.
    """
    last_error: TestbedError = TestbedError("not started")
    for _attempt in range(3):  # a port may be taken between free_port() and bind()
        try:
            return _launch_once(base, certs)
        except TestbedError as exc:
            last_error = exc
            if "already in use" not in exc.log_tail and "Bind on TCP/IP" not in exc.log_tail:
                raise
    raise last_error


def install_datadir(base: Path, what: str) -> None:
    """
    Make C{base} afresh with a new data directory C{base/data}
    (C{mariadb-install-db}, root by socket only, no test database).

    @param what: names the server in the error.
    @raise TestbedError: the installer failed; the error carries its log.
    """
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    (base / "tmp").mkdir()
    user_args: List[str] = ["--user=root"] if os.geteuid() == 0 else []
    install_log = base / "install.log"
    # The installer's bootstrap server writes temporary files too: parallel installs
    # collided in a shared /tmp, so each gets its own.
    env = dict(os.environ, TMPDIR=str(base / "tmp"))
    with open(install_log, "wb") as out:
        result = subprocess.run(
            [
                find_program("mariadb-install-db", "mysql_install_db"),
                "--no-defaults",
                *user_args,
                f"--datadir={base / 'data'}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--skip-name-resolve",
                "--force",  # run even where the host name does not resolve
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=base,
            env=env,
            check=False,
        )
    if result.returncode != 0:
        raise TestbedError(
            f"mariadb-install-db failed for {what} with exit status {result.returncode}",
            log_tail([str(install_log)]),
        )


def _launch_once(base: Path, certs: TLSCerts) -> Server:
    mariadbd = find_program("mariadbd", "mysqld")
    data = base / "data"
    install_datadir(base, "the test bed's MariaDB")
    user_args: List[str] = ["--user=root"] if os.geteuid() == 0 else []
    install_log = base / "install.log"
    init_file = base / "init.sql"
    init_file.write_text(_init_sql())
    port = free_port()
    socket_path = base / "mysqld.sock"
    error_log = base / "error.log"
    stdout_log = base / "mariadbd.out"
    args = [
        mariadbd,
        "--no-defaults",
        *user_args,
        f"--datadir={data}",
        f"--socket={socket_path}",
        f"--pid-file={base / 'mysqld.pid'}",
        f"--log-error={error_log}",
        "--bind-address=127.0.0.1",
        f"--port={port}",
        "--skip-name-resolve",
        "--max-connections=2000",
        "--innodb-buffer-pool-size=256M",
        "--innodb-flush-log-at-trx-commit=0",
        "--skip-log-bin",
        "--max-allowed-packet=128M",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        "--local-infile=1",
        f"--ssl-ca={certs.ca}",
        f"--ssl-cert={certs.cert}",
        f"--ssl-key={certs.key}",
        f"--init-file={init_file}",
    ]
    logs = [str(error_log), str(stdout_log), str(install_log)]
    started = time.monotonic()
    with open(stdout_log, "wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=base,
            start_new_session=True,
            close_fds=True,
        )
    server = Server(
        kind=KIND,
        host="127.0.0.1",
        port=port,
        pid=proc.pid,
        version="",
        handshake_version="",
        base_dir=str(base),
        log_files=tuple(logs),
        database=DATABASE,
        accounts=dict(ACCOUNTS),
        unix_socket=str(socket_path),
        tls=certs,
    )
    try:
        return wait_ready(server, proc, started, START_TIMEOUT)
    except BaseException:
        stop_pid(proc.pid, str(base))
        raise
