"""
The third-party command plugin in C{examples/command_plugin/} works as its
README says: installed from its own directory with pip into a directory of
its own, it is picked up by C{twistd obproxy} started with that directory on
C{PYTHONPATH}, without any change to obproxy_tx, and C{SHOW PROXYBACKENDS}
answers real clients (PyMySQL and the C{mariadb} CLI) in front of real
MariaDB. The same proxy started without it forwards the statement to
MariaDB, which answers its own syntax error.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import pymysql
import pytest

from tests.integration.test_twistd import free_port, twistd_command, wait_for_port
from tests.proxy_fixtures import mariadb_accounts, verifier
from tests.testbed import Server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "command_plugin"
MODULE = Path("obproxy_tx") / "plugins" / "example_proxybackends.py"
COLUMNS = [
    "cluster_name",
    "cluster_type",
    "server_addr",
    "server_sessions",
    "active",
    "bound",
    "pooled",
    "client_sessions",
]
ROOT_PASSWORD = "h5_plugin_root_pw"
PROXYSYS_PASSWORD = "h5_plugin_proxysys_pw"
BAD_INTERNAL_CMD = (5010, "Unknown operator, bad internal cmd")


# --------------------------------------------------------------------------------------
# Installing the example


def pip_install_command(source: Path, target: Path) -> List[str]:
    """
    C{pip install} of C{source} into C{target}, as the example's README says.

    Without build isolation when this interpreter can build a wheel itself
    (setuptools with C{wheel}, or setuptools 70.1+, which has C{bdist_wheel}
    built in), so that no index is needed; with isolation otherwise (pip
    fetches setuptools from its configured index).
    """
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check"]
    command += ["--no-input", "--target", str(target)]
    if _can_build_offline():
        command.append("--no-build-isolation")
    return [*command, str(source)]


def _can_build_offline() -> bool:
    if importlib.util.find_spec("setuptools") is None:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)


@pytest.fixture(scope="module")
def plugin_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    The example installed with pip into a fresh directory (from a copy of
    its source, so that the build leaves nothing in the checkout).
    """
    base = tmp_path_factory.mktemp("command_plugin")
    source = base / "source"
    shutil.copytree(
        EXAMPLE,
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*"),
    )
    target = base / "target"
    done = subprocess.run(
        pip_install_command(source, target),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def test_installs_one_module_without_init(plugin_target: Path) -> None:
    """
    pip puts exactly the command module under C{obproxy_tx/plugins/}, with
    no C{__init__.py} anywhere in that tree: a package file there would
    shadow the real obproxy_tx (or its plugins package).
    """
    installed = sorted(
        str(path.relative_to(plugin_target))
        for path in (plugin_target / "obproxy_tx").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    assert installed == [str(MODULE)]
    assert (plugin_target / MODULE).read_text() == (EXAMPLE / MODULE).read_text()


def _python(code: str, pythonpath: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=pythonpath[0],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


DISCOVER = (
    "from obproxy_tx.admin.registry import CommandRegistry; "
    "print(sorted(c.name for c in CommandRegistry.from_plugins().commands))"
)


def test_discovered_only_with_the_target_on_the_path(plugin_target: Path) -> None:
    """
    The registry built from plugins lists C{SHOW PROXYBACKENDS} when the
    install directory is on C{PYTHONPATH} (after the checkout or before
    it), and not without it.
    """
    for path in ([ROOT, plugin_target], [plugin_target, ROOT]):
        done = _python(DISCOVER, path)
        assert done.returncode == 0, done.stderr
        assert "'SHOW PROXYBACKENDS'" in done.stdout, done.stdout
        assert "'PING PROXY'" in done.stdout, done.stdout
    without = _python(DISCOVER, [ROOT])
    assert without.returncode == 0, without.stderr
    assert "PROXYBACKENDS" not in without.stdout
    assert "'PING PROXY'" in without.stdout


def test_the_examples_own_tests_pass(plugin_target: Path, tmp_path: Path) -> None:
    """
    The plugin's own unit tests (C{examples/command_plugin/tests}) pass,
    run the way its README says, against the checkout's obproxy_tx.
    """
    source = tmp_path / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", ".*"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout


# --------------------------------------------------------------------------------------
# The proxy with and without it


@pytest.fixture(scope="module")
def root_account(mariadb: Server) -> Iterator[Server]:
    """
    C{'root'@'127.0.0.1'} on MariaDB for C{root@sys} through the proxy (the
    test bed's own root logs in only through the unix socket), dropped after
    the module.
    """
    with mariadb_accounts(mariadb, {"'root'@'127.0.0.1'": ROOT_PASSWORD}):
        yield mariadb


def write_config(path: Path, backend: Server) -> Path:
    """
    A configuration with two C{mysql} clusters: C{cl_main} (MariaDB, users
    C{root@sys} and C{native_user@sys}) and C{cl_spare} (a server that is
    never used), plus C{root@proxysys}'s password.
    """
    native = backend.account("native")
    path.write_text(
        f"""
obproxy_sys_password: '{verifier(PROXYSYS_PASSWORD)}'
clusters:
  - name: cl_main
    type: mysql
    servers: ['{backend.host}:{backend.port}']
    users:
      - {{name: root, tenant: sys, verifier: '{verifier(ROOT_PASSWORD)}'}}
      - {{name: {native.user}, tenant: sys, verifier: '{verifier(native.password)}'}}
  - name: cl_spare
    type: mysql
    servers: ['127.0.0.1:1']
""",
        encoding="utf-8",
    )
    return path


class RunningProxy:
    """
    C{twistd -n obproxy} in a subprocess, its output collected.
    """

    def __init__(self, config: Path, pythonpath: Sequence[Path], pidfile: Path) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            twistd_command(
                "-n",
                f"--pidfile={pidfile}",
                "obproxy",
                "-c",
                str(config),
                "-p",
                str(self.port),
                "-o",
                "local_bound_ip=127.0.0.1",
            ),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for_port(self.process, self.port)

    def connect(self, user: str, password: str) -> Any:
        """A PyMySQL connection through the proxy."""
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            autocommit=True,
            connect_timeout=10,
            read_timeout=30,
        )

    def stop(self) -> str:
        """Stop twistd; its output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=30)
        return output


def query(connection: Any, sql: str) -> Tuple[List[str], List[Tuple[Any, ...]]]:
    """The column names and rows of C{sql}."""
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [d[0] for d in cursor.description or ()], list(cursor.fetchall())


def error(connection: Any, sql: str) -> Tuple[int, str] | None:
    """The (code, message) C{sql} fails with, or C{None}."""
    try:
        query(connection, sql)
    except pymysql.err.MySQLError as failure:
        return failure.args[0], failure.args[1]
    return None


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[List[RunningProxy]]:
    """Proxies a test starts, stopped at its end."""
    started: List[RunningProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def test_show_proxybackends_through_twistd(
    root_account: Server,
    plugin_target: Path,
    proxies: List[RunningProxy],
    tmp_path: Path,
) -> None:
    """
    With the plugin on C{PYTHONPATH}: root@sys sees its cluster's server
    with the server sessions counted by state (its own and another client's
    bound, then a third client's running C{SELECT SLEEP} as active);
    root@proxysys sees both clusters; a user who is not an admin has the
    statement forwarded (MariaDB's 1064); a malformed one is 5010.
    """
    backend = root_account
    native = backend.account("native")
    address = f"{backend.host}:{backend.port}"
    proxy = RunningProxy(
        write_config(tmp_path / "conf.yaml", backend),
        [ROOT, plugin_target],
        tmp_path / "twistd.pid",
    )
    proxies.append(proxy)
    root = proxy.connect("root@sys", ROOT_PASSWORD)
    other = proxy.connect(native.user, native.password)
    sleeper = proxy.connect(native.user, native.password)
    admin = proxy.connect("root@proxysys", PROXYSYS_PASSWORD)
    try:
        for connection in (root, other, sleeper):
            query(connection, "SELECT 1")
        names, rows = query(root, "SHOW PROXYBACKENDS")
        assert names == COLUMNS
        assert rows == [("cl_main", "mysql", address, 3, 0, 3, 0, 3)]

        # One client busy on the backend: its server session is active.
        thread = threading.Thread(target=query, args=(sleeper, "SELECT SLEEP(2)"))
        thread.start()
        try:
            busy = _wait_for(lambda: query(root, "SHOW PROXYBACKENDS")[1], 1, column=4)
        finally:
            thread.join()
        assert busy == [("cl_main", "mysql", address, 3, 1, 2, 0, 3)]

        _, every = query(admin, "SHOW PROXYBACKENDS")
        assert every == [
            ("cl_main", "mysql", address, 3, 0, 3, 0, 3),
            ("cl_spare", "mysql", "127.0.0.1:1", 0, 0, 0, 0, 0),
        ]
        assert query(admin, "show proxybackends like 'CL\\_SP%'")[1] == every[1:]

        refused = error(other, "SHOW PROXYBACKENDS")
        assert refused is not None and refused[0] == 1064, refused
        assert "near 'PROXYBACKENDS'" in refused[1], refused
        assert error(root, "SHOW PROXYBACKENDS EVERYTHING") == BAD_INTERNAL_CMD
    finally:
        for connection in (root, other, sleeper, admin):
            connection.close()
    output = proxy.stop()
    assert "Traceback" not in output, output


def _wait_for(read: Any, value: int, column: int, timeout: float = 5.0) -> List[Tuple[Any, ...]]:
    """
    Poll C{read()} until its first row's C{column} is C{value}; its rows.
    """
    deadline = time.monotonic() + timeout
    rows = read()
    while rows[0][column] != value and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = read()
    return list(rows)


def test_mariadb_cli_shows_the_table(
    root_account: Server, plugin_target: Path, proxies: List[RunningProxy], tmp_path: Path
) -> None:
    """
    The mariadb CLI, logged in as root@sys, prints the columns and the row
    as the example's README shows them.
    """
    if shutil.which("mariadb") is None:
        pytest.skip("the mariadb command-line client is not installed")
    backend = root_account
    proxy = RunningProxy(
        write_config(tmp_path / "conf.yaml", backend),
        [ROOT, plugin_target],
        tmp_path / "twistd.pid",
    )
    proxies.append(proxy)
    done = subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            "-h127.0.0.1",
            f"-P{proxy.port}",
            "-uroot@sys",
            f"-p{ROOT_PASSWORD}",
            "--table",
            "-e",
            "SELECT 1; SHOW PROXYBACKENDS",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if "cluster_name" in line)
    assert [cell.strip() for cell in header.strip("|").split("|")] == COLUMNS
    row = lines[lines.index(header) + 2]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == ["cl_main", "mysql", f"{backend.host}:{backend.port}", "1", "0", "1", "0", "1"]
    # The counts are numbers: right-aligned in their cells.
    assert row.split("|")[4].startswith(" ") and row.split("|")[4].endswith("1 "), row


def test_without_the_plugin_the_statement_is_forwarded(
    root_account: Server, proxies: List[RunningProxy], tmp_path: Path
) -> None:
    """
    The same configuration without the plugin on C{PYTHONPATH}: root@sys's
    SHOW PROXYBACKENDS goes to MariaDB, which answers 1064, and root@proxysys
    (who never reaches a backend) gets 5010 for it as for any statement that
    is not an admin command.
    """
    proxy = RunningProxy(
        write_config(tmp_path / "conf.yaml", root_account),
        [ROOT],
        tmp_path / "twistd.pid",
    )
    proxies.append(proxy)
    answers: Dict[str, Any] = {}
    root = proxy.connect("root@sys", ROOT_PASSWORD)
    admin = proxy.connect("root@proxysys", PROXYSYS_PASSWORD)
    try:
        answers["root"] = error(root, "SHOW PROXYBACKENDS")
        answers["proxysys"] = error(admin, "SHOW PROXYBACKENDS")
        answers["ping"] = error(admin, "PING PROXY")
    finally:
        root.close()
        admin.close()
    assert answers["root"] is not None and answers["root"][0] == 1064, answers
    assert "near 'PROXYBACKENDS'" in answers["root"][1], answers
    assert answers["proxysys"] == BAD_INTERNAL_CMD
    assert answers["ping"] is None
