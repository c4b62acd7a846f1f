"""
C{ALTER PROXYCONFIG} end to end: C{twistd -n obproxy -c conf.yaml} in a
subprocess in front of real MariaDB, driven by the real C{mariadb} client as
C{root@sys}; the change shows in C{SHOW PROXYCONFIG}, a restart-only change
waits for the restart, both survive stopping and starting the process again
(the saved file next to C{conf.yaml}), and non-admin users' statements go to
the backend as ODP does. C{SHOW PROXYSTAT} and C{SELECT PROXY_VERSION()} are
checked on the way.

MariaDB's test bed root logs in only through the unix socket, so this module
makes C{'root'@'127.0.0.1'} with its own password and drops it afterwards
(other modules do the same with theirs, one module at a time).
"""

from __future__ import annotations

import signal
import stat
import subprocess
from pathlib import Path
from typing import Iterator, List

import pytest

from obproxy_tx import __version__
from tests.integration.admin_cli import BatchResult, batch, only_table, parse_errors
from tests.integration.test_twistd import (
    free_port,
    spawn,
    stop,
    twistd_command,
    wait_for_port,
)
from tests.proxy_fixtures import mariadb_accounts, verifier
from tests.testbed import Server

pytestmark = pytest.mark.integration

ROOT_PASSWORD = "h3_root_pw"
"""Password of MariaDB's C{'root'@'127.0.0.1'} while this module runs."""


@pytest.fixture(scope="module")
def root_account(mariadb: Server) -> Iterator[Server]:
    """
    C{'root'@'127.0.0.1'} on MariaDB (the proxy's C{root@sys} logs in as
    it), made for this module and dropped after it.
    """
    with mariadb_accounts(mariadb, {"'root'@'127.0.0.1'": ROOT_PASSWORD}):
        yield mariadb


def write_config(directory: Path, server: Server, port: int) -> Path:
    """
    conf.yaml: listen on C{port}, one MariaDB cluster with root@sys and the
    test bed's native user.
    """
    native = server.account("native")
    path = directory / "conf.yaml"
    path.write_text(
        f"""\
listen: "tcp:{port}:interface=127.0.0.1"
clusters:
  - name: mdb
    type: mysql
    servers: ["{server.host}:{server.port}"]
    users:
      - {{name: root, tenant: sys, verifier: "{verifier(ROOT_PASSWORD)}"}}
      - {{name: {native.user}, tenant: sys, verifier: "{verifier(native.password)}"}}
"""
    )
    return path


def as_root(port: int, sql: str) -> BatchResult:
    """Run C{sql} through the proxy as root@sys with the mariadb client."""
    return batch(port, "root@sys", ROOT_PASSWORD, sql)


def value_of(port: int, name: str) -> dict[str, str]:
    """The SHOW PROXYCONFIG row of item C{name}, as the client prints it."""
    result = as_root(port, f"SHOW PROXYCONFIG LIKE '{name}'")
    assert result.returncode == 0, result.output
    table = only_table(result.stdout)
    assert table.columns == (
        "name",
        "value",
        "info",
        "need_reboot",
        "visible_level",
        "range",
        "config_level",
    )
    records = table.records()
    assert len(records) == 1, result.output
    return records[0]


def start_proxy(
    processes: List[subprocess.Popen[str]], config: Path, port: int
) -> subprocess.Popen[str]:
    """
    C{twistd -n obproxy -c CONFIG}, listening once this returns.
    """
    pidfile = config.parent / "twistd.pid"
    process = spawn(
        processes, twistd_command("-n", f"--pidfile={pidfile}", "obproxy", "-c", str(config))
    )
    wait_for_port(process, port)
    return process


def test_alter_proxyconfig_survives_restart(
    processes: List[subprocess.Popen[str]], root_account: Server, tmp_path: Path
) -> None:
    """
    As root@sys through the mariadb client: ALTER a runtime item (applied at
    once) and a restart-only item (saved, pending); a bad value is ERROR 1210;
    after stopping and starting twistd with the same command line both values
    are the running ones.
    """
    port = free_port()
    config = write_config(tmp_path, root_account, port)
    process = start_proxy(processes, config, port)

    before = value_of(port, "client_max_connections")
    assert (before["value"], before["need_reboot"], before["visible_level"]) == (
        "8192",
        "false",
        "USER",
    )
    result = as_root(port, "ALTER PROXYCONFIG SET client_max_connections = 4242")
    assert result.returncode == 0, result.output
    assert value_of(port, "client_max_connections")["value"] == "4242"

    result = as_root(port, "ALTER PROXYCONFIG SET proxy_id = 77")
    assert result.returncode == 0, result.output
    pending = value_of(port, "proxy_id")
    assert pending["value"] == "0"
    assert pending["need_reboot"] == "true"
    assert "'77'" in pending["info"] and "restart" in pending["info"]
    diff = only_table(as_root(port, "SHOW PROXYCONFIG DIFF").stdout)
    assert {"client_max_connections", "proxy_id"} <= set(diff.column("name"))

    result = as_root(port, "ALTER PROXYCONFIG SET client_max_connections = 'lots'")
    errors = parse_errors(result.output)
    assert [(e.code, e.sqlstate) for e in errors] == [(1210, "HY000")], result.output
    assert "client_max_connections" in errors[0].message
    result = as_root(port, "ALTER PROXYCONFIG SET app_name = 'x'")
    assert [(e.code, e.sqlstate) for e in parse_errors(result.output)] == [(1235, "0A000")]

    stats = only_table(as_root(port, "SHOW PROXYSTAT LIKE 'config_changes'").stdout)
    assert stats.columns == ("stat_name", "value", "persist_type")
    assert stats.rows == (("config_changes", "2", "NULL"),)

    output = stop(process, code=-signal.SIGTERM)
    assert "Traceback" not in output
    saved = Path(str(config) + ".altered.yaml")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    process = start_proxy(processes, config, port)
    after = value_of(port, "client_max_connections")
    assert after["value"] == "4242"
    restarted = value_of(port, "proxy_id")
    assert restarted["value"] == "77"
    assert "restart" not in restarted["info"]
    stop(process, code=-signal.SIGTERM)


def test_non_admin_statements_go_to_backend(
    processes: List[subprocess.Popen[str]], root_account: Server, tmp_path: Path
) -> None:
    """
    For a user who is not root@sys, ALTER PROXYCONFIG and SHOW PROXYCONFIG
    reach MariaDB, which answers its own syntax error; SELECT PROXY_VERSION()
    is answered for everyone, and longer SELECTs starting the same way are
    MariaDB's (which has no such function).
    """
    port = free_port()
    config = write_config(tmp_path, root_account, port)
    process = start_proxy(processes, config, port)
    native = root_account.account("native")

    def as_native(sql: str) -> BatchResult:
        return batch(
            port, f"{native.user}@sys", native.password, sql, database=root_account.database
        )

    for sql in ("ALTER PROXYCONFIG SET client_max_connections = 1", "SHOW PROXYCONFIG"):
        errors = parse_errors(as_native(sql).output)
        assert [e.code for e in errors] == [1064], sql
    assert value_of(port, "client_max_connections")["value"] == "8192"

    version = only_table(as_native("SELECT PROXY_VERSION()").stdout)
    assert version.columns == ("PROXY_VERSION()",)
    assert version.rows == ((__version__,),)
    errors = parse_errors(as_native("SELECT PROXY_VERSION() + 1").output)
    assert [e.code for e in errors] == [1305]  # MariaDB: FUNCTION test.PROXY_VERSION does not exist
    stop(process, code=-signal.SIGTERM)
