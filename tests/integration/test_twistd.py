"""
The proxy as users start it: C{twistd obproxy} and C{examples/embedded_proxy.py}
run as subprocesses from the checkout (C{PYTHONPATH=.}), the way the README and
C{docs/running.md} show.

Tests without a backend check the command line itself: help, one-line
configuration errors, start/listen/stop, a taken port. They run twice: with
the real session manager, and with a stand-in manager injected before
C{twistd} runs (C{STAND_IN}), so that the process behaviour is checked apart
from the proxy core. Tests with the C{seekdb} fixture log in with PyMySQL
through the proxy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List, Sequence, Tuple

import pymysql  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests.testbed import Server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONF = ROOT / "examples" / "conf.yaml"
EMBEDDED = ROOT / "examples" / "embedded_proxy.py"
START_TIMEOUT = 30.0

RUN_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
"""Run twistd with this interpreter (the C{twistd} on C{PATH} may be another one's)."""

STAND_IN = """
import sys, types
from twisted.application.service import Service
from twisted.internet.protocol import Factory, Protocol

class SessionManager(Service):
    def __init__(self, config, reactor=None):
        self.config = config
    def listener_factory(self):
        return Factory.forProtocol(Protocol)

module = types.ModuleType("obproxy_tx.session.manager")
module.SessionManager = SessionManager
sys.modules["obproxy_tx.session.manager"] = module
"""
"""A session manager stand-in, installed in the twistd process before it imports the real one."""


MANAGERS = [pytest.param(True, id="stand-in"), pytest.param(False, id="real")]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def twistd_command(*args: str, stand_in: bool = False) -> List[str]:
    """
    The command running C{twistd ARGS} with this interpreter, optionally with
    the stand-in session manager.
    """
    code = (STAND_IN if stand_in else "") + RUN_TWISTD
    args_list = list(args)
    if "obproxy" in args_list and not any("prometheus" in arg for arg in args_list):
        # The Prometheus endpoint is on by default on port 2884: proxies started
        # side by side (and by other test runs) would contend for it.
        at = args_list.index("obproxy") + 1
        args_list[at:at] = ["-o", "enable_prometheus=false"]
    return [sys.executable, "-c", code, *args_list]


def run(command: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """
    Run a command in the checkout to completion, stdout and stderr together.
    """
    return subprocess.run(
        list(command),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(process: subprocess.Popen[str], port: int) -> None:
    """
    Wait until something accepts on 127.0.0.1:C{port}, failing early if the
    process exits.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"exited with {process.returncode} before listening:\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            time.sleep(0.1)
            continue
        # twistd binds the port before its reactor runs and installs the SIGTERM handler,
        # so a signal sent in between would kill it outright: wait for the handler too.
        while time.monotonic() < deadline and not _catches_sigterm(process.pid):
            if process.poll() is not None:
                break
            time.sleep(0.05)
        return
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT}s")


def _catches_sigterm(pid: int) -> bool:
    """
    Whether process C{pid} has a handler for SIGTERM (its C{SigCgt} mask in
    C{/proc/<pid>/status}); C{True} where that cannot be read.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        return True
    return True


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM, code: int = 0) -> str:
    """
    Signal the process, wait for it and return its output; it must exit with
    C{code}. twistd shuts down cleanly, then ends itself with the same signal
    (so its exit status is C{-sig}); C{react} exits 0.
    """
    process.send_signal(sig)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == code, output
    return output


def spawn(processes: List[subprocess.Popen[str]], command: Sequence[str]) -> subprocess.Popen[str]:
    """
    Start a process in the checkout, stdout and stderr together, and remember it.
    """
    process = subprocess.Popen(
        list(command),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    processes.append(process)
    return process


def login(port: int, user: str = "root", password: str = "") -> Any:
    """
    Log in through the proxy with PyMySQL (no TLS).
    """
    return pymysql.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        password=password,
        connect_timeout=10,
        read_timeout=30,
        ssl_disabled=True,
    )


# --------------------------------------------------------------------------------------
# The command line


def test_twistd_help_lists_obproxy() -> None:
    """
    C{twistd --help} lists the obproxy subcommand.
    """
    result = run(twistd_command("--help"))
    assert result.returncode == 0, result.stdout
    assert "obproxy" in result.stdout
    assert "SQL proxy" in result.stdout


def test_twistd_obproxy_help() -> None:
    """
    C{twistd obproxy --help} documents every option and config item and exits 0.
    """
    result = run(twistd_command("obproxy", "--help"))
    assert result.returncode == 0, result.stdout
    for flag in ("--config", "--listen-port", "--rootservice-list", "--options", "--app-name"):
        assert flag in result.stdout
    for item in ("listen_port", "proxy_id", "client_max_connections", "mysql_version"):
        assert f"  {item} = " in result.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("proxy_id: abc\n", "{path}, line 1: proxy_id: expected an integer, got a string ('abc')"),
        ("proxy_idd: 1\n", "{path}, line 1: proxy_idd: unknown key 'proxy_idd'; did you mean"),
        ("clusters: [\n", "{path}, line 2: invalid YAML"),
    ],
)
def test_config_error_is_one_line(tmp_path: Path, content: str, expected: str) -> None:
    """
    A bad file makes twistd exit non-zero with the problem on one line naming
    file, key and problem, under a one-line pointer to --help, and no traceback.
    """
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    result = run(twistd_command("-n", "--pidfile=", "obproxy", "-c", str(path)))
    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    lines = result.stdout.strip().splitlines()
    assert len(lines) <= 3, result.stdout
    assert expected.format(path=path) in lines[-1]


def test_rootservice_list_error_is_one_line() -> None:
    """
    A malformed -r names the option, the servers key and the problem.
    """
    result = run(twistd_command("-n", "--pidfile=", "obproxy", "-c", str(EXAMPLE_CONF), "-r", "x"))
    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    assert "command line -r x: clusters[0].servers: expected 'ip:port'" in result.stdout


def start_example(
    processes: List[subprocess.Popen[str]],
    *twistd_options: str,
    extra: Sequence[str] = (),
    stand_in: bool = False,
) -> Tuple[subprocess.Popen[str], int]:
    """
    Start C{twistd -n OPTIONS obproxy -c examples/conf.yaml -p PORT -r
    127.0.0.1:1 -o local_bound_ip=127.0.0.1 EXTRA} on a free port and wait
    until it listens.

    @return: the process and its port.
    """
    port = free_port()
    process = spawn(
        processes,
        twistd_command(
            "-n",
            *twistd_options,
            "obproxy",
            "-c",
            str(EXAMPLE_CONF),
            "-p",
            str(port),
            "-r",
            "127.0.0.1:1",
            "-o",
            "local_bound_ip=127.0.0.1",
            *extra,
            stand_in=stand_in,
        ),
    )
    wait_for_port(process, port)
    return process, port


@pytest.mark.parametrize("stand_in", MANAGERS)
def test_starts_listens_and_stops(
    processes: List[subprocess.Popen[str]], stand_in: bool, tmp_path: Path
) -> None:
    """
    C{twistd -n obproxy -c examples/conf.yaml -p PORT -r ...} listens on PORT,
    logs where, and exits 0 on SIGTERM.
    """
    process, port = start_example(
        processes, f"--pidfile={tmp_path / 'twistd.pid'}", extra=("-n", "ci"), stand_in=stand_in
    )
    assert (tmp_path / "twistd.pid").exists()
    output = stop(process, code=-signal.SIGTERM)
    assert "Server Shut Down." in output
    assert f"listening on 127.0.0.1:{port}" in output
    assert "(ci)" in output
    # Without --reactor, the proxy's own (obproxy_tx.reactor).
    assert "reactor class: obproxy_tx.reactor.ProxyReactor." in output
    assert "Traceback" not in output
    assert not (tmp_path / "twistd.pid").exists()


def test_chosen_reactor_is_kept(processes: List[subprocess.Popen[str]]) -> None:
    """
    C{twistd --reactor=poll obproxy ...} runs on the reactor asked for.
    """
    process, _ = start_example(processes, "--pidfile=", "--reactor=poll")
    output = stop(process, code=-signal.SIGTERM)
    assert "reactor class: twisted.internet.pollreactor.PollReactor." in output


@pytest.mark.parametrize("stand_in", MANAGERS)
def test_taken_port_is_one_line(stand_in: bool) -> None:
    """
    When the listen port is taken, twistd exits 1 with one line naming the
    option, the item and the reason, and no traceback.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = run(
            twistd_command(
                "-n",
                "--pidfile=",
                "obproxy",
                "-c",
                str(EXAMPLE_CONF),
                "-p",
                str(port),
                "-o",
                "local_bound_ip=127.0.0.1",
                stand_in=stand_in,
            )
        )
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    message = (
        f"command line -p {port}: listen_port: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    )
    [line] = [line for line in result.stdout.splitlines() if "cannot listen" in line]
    assert line.endswith(message)


# --------------------------------------------------------------------------------------
# Through a real backend


def _check_login(port: int) -> None:
    connection = login(port)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 + 1")
            assert cursor.fetchone() == (2,)
    finally:
        connection.close()


def test_twistd_proxies_to_seekdb(
    processes: List[subprocess.Popen[str]], seekdb: Server, tmp_path: Path
) -> None:
    """
    The README's command, C{twistd -n obproxy -c examples/conf.yaml -p PORT -r
    127.0.0.1:<seekdb>}, serves a PyMySQL login as root with an empty password
    and a query.
    """
    port = free_port()
    process = spawn(
        processes,
        twistd_command(
            "-n",
            f"--pidfile={tmp_path / 'twistd.pid'}",
            "obproxy",
            "-c",
            str(EXAMPLE_CONF),
            "-p",
            str(port),
            "-r",
            f"{seekdb.host}:{seekdb.port}",
        ),
    )
    wait_for_port(process, port)
    _check_login(port)
    output = stop(process, code=-signal.SIGTERM)
    assert "Traceback" not in output


def test_embedded_example_proxies_to_seekdb(
    processes: List[subprocess.Popen[str]], seekdb: Server
) -> None:
    """
    examples/embedded_proxy.py builds the proxy inside its own service tree,
    prints its port, serves a PyMySQL login and query, and exits 0 on SIGINT.
    """
    process = spawn(
        processes,
        [sys.executable, str(EMBEDDED), "-r", f"{seekdb.host}:{seekdb.port}", "-p", "0"],
    )
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    line = ""
    while time.monotonic() < deadline and not line.startswith("listening on "):
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            pytest.fail(f"embedded_proxy.py exited with {process.returncode}")
    assert line.startswith("listening on "), line
    port = int(line.split()[-1])
    _check_login(port)
    stop(process, signal.SIGINT)


@pytest.mark.parametrize(
    "port_flag",
    [
        pytest.param(
            "-p",
            id="documented-p",
        ),
        pytest.param("-o", id="listen_port-in-o"),
    ],
)
def test_twistd_mariadb_example_learns_new_user(
    processes: List[subprocess.Popen[str]], mariadb: Server, tmp_path: Path, port_flag: str
) -> None:
    """
    C{twistd -n obproxy -c examples/mariadb.yaml -p PORT -r <mariadb> -o
    metadata_user=...,metadata_password=...} (the command the example's header
    shows) lets an account created on MariaDB after the proxy started log in
    through the proxy at once, and refuses its wrong password with 1045.
    """
    admin = mariadb.account("admin")
    port = free_port()
    metadata = f"metadata_user={admin.user},metadata_password={admin.password}"
    if port_flag == "-p":
        port_args = ["-p", str(port), "-o", metadata]
    else:
        port_args = ["-o", f"{metadata},listen_port={port}"]
    process = spawn(
        processes,
        twistd_command(
            "-n",
            f"--pidfile={tmp_path / 'twistd.pid'}",
            "obproxy",
            "-c",
            str(ROOT / "examples" / "mariadb.yaml"),
            "-r",
            f"{mariadb.host}:{mariadb.port}",
            *port_args,
        ),
    )
    wait_for_port(process, port)
    user, password = f"h7_{os.getpid()}", "fresh_pw"
    direct = pymysql.connect(
        host=mariadb.host,
        port=mariadb.port,
        user=admin.user,
        password=admin.password,
        connect_timeout=10,
        ssl_disabled=True,
    )
    try:
        with direct.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cursor.execute(
                f"CREATE USER '{user}'@'%' IDENTIFIED VIA mysql_native_password "
                f"USING PASSWORD('{password}')"
            )
        connection = login(port, user, password)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT CURRENT_USER()")
                assert cursor.fetchone() == (f"{user}@%",)
        finally:
            connection.close()
        with pytest.raises(pymysql.err.OperationalError) as info:
            login(port, user, "wrong")
        assert info.value.args[0] == 1045
    finally:
        with direct.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        direct.close()
    output = stop(process, code=-signal.SIGTERM)
    assert "Traceback" not in output
