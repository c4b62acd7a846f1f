"""
The test bed: throwaway real MySQL-protocol servers for integration tests.

Two kinds of server are started on free loopback ports, each in its own directory under the test bed
directory (C{<repo>/.testbed/}, or C{$OBPROXY_TESTBED_DIR}):

  - C{mariadb}: MariaDB 10.11 from the Debian package C{mariadb-server}
    (see L{tests.testbed.mariadb});
  - C{seekdb}: OceanBase seekdb, the server binary shipped in the PyPI wheel C{pylibseekdb}
    (see L{tests.testbed.seekdb}), without TLS;
  - C{seekdb_tls}: a second seekdb that advertises TLS (see the limits in L{tests.testbed.seekdb}).

A started server is described by a L{Server} and recorded in C{<testbed>/<kind>/state.json}; its
process is stopped by pid (L{stop}).  L{start} reuses a server that is already running and answering
(for fast development loops: C{python -m tests.testbed all start} once, then run pytest as often as
you like), otherwise it wipes the server's directory and starts a fresh one.  L{Server.started_here}
tells the caller whether it owns the process and so should stop it.

Certificates for TLS live in C{<testbed>/certs} (L{tests.testbed.certs}).  Nothing here imports
C{obproxy_tx}: the test bed must work while the code under test is broken.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Sequence

import attrs

from tests.testbed.certs import TLSCerts, ensure_certs

__all__ = [
    "KINDS",
    "Account",
    "Server",
    "TLSCerts",
    "TestbedError",
    "certificates",
    "free_port",
    "start",
    "status",
    "stop",
    "testbed_dir",
]

#: Environment variable that moves the test bed directory.
TESTBED_DIR_ENV = "OBPROXY_TESTBED_DIR"

#: The server kinds this test bed knows.
KINDS = ("mariadb", "seekdb", "seekdb_tls")

#: The repository root (the directory holding C{tests/}).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class TestbedError(Exception):
    """
    A server could not be started (or stopped).

    @ivar log_tail: the last lines of the server's logs, for the failure message.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, log_tail: str = "") -> None:
        full = message if not log_tail else f"{message}\n--- server log (tail) ---\n{log_tail}"
        super().__init__(full)
        self.log_tail = log_tail


@attrs.frozen
class Account:
    """
    A login on a test bed server.

    @ivar user: the user name to send.
    @ivar password: the clear-text password (C{""} for none).
    @ivar plugin: the server-side auth plugin of the account.
    @ivar require_tls: whether the server refuses this account without TLS.
    """

    user: str
    password: str
    plugin: str = "mysql_native_password"
    require_tls: bool = False


@attrs.frozen
class Server:
    """
    A running test bed server.

    @ivar kind: C{"mariadb"}, C{"seekdb"} or C{"seekdb_tls"}.
    @ivar host: the address to connect to (always C{127.0.0.1}).
    @ivar port: the TCP port of the MySQL protocol.
    @ivar pid: the server's process id.
    @ivar version: what C{SELECT VERSION()} answers.
    @ivar handshake_version: the version string of the initial handshake packet.
    @ivar base_dir: the server's own directory (data, logs, sockets).
    @ivar log_files: the server's log files, most useful first.
    @ivar database: a database that exists and that every account may use (C{test}).
    @ivar accounts: logins by role: C{"native"} (mysql_native_password, all privileges) on every
        kind, C{"admin"} (may create users), and on MariaDB also C{"tls"} (REQUIRE SSL) and
        C{"nopw"} (no password).
    @ivar unix_socket: the server's unix socket, if it has one.
    @ivar tls: the certificates the server presents, or C{None} if it has no TLS.
    @ivar started_here: C{True} if this process started the server (and so should stop it);
        C{False} if it was already running.
    """

    kind: str
    host: str
    port: int
    pid: int
    version: str
    handshake_version: str
    base_dir: str
    log_files: Sequence[str]
    database: str
    accounts: Mapping[str, Account]
    unix_socket: str | None = None
    tls: TLSCerts | None = None
    started_here: bool = attrs.field(default=False, eq=False)

    @property
    def user(self) -> str:
        """
        The user name of the C{"native"} account.
        """
        return self.accounts["native"].user

    @property
    def password(self) -> str:
        """
        The password of the C{"native"} account.
        """
        return self.accounts["native"].password

    @property
    def address(self) -> tuple[str, int]:
        """
        C{(host, port)}.
        """
        return (self.host, self.port)

    def account(self, role: str) -> Account:
        """
        The account for C{role} (see L{accounts}).

        @raise KeyError: if this server has no such account.
        """
        return self.accounts[role]

    def to_json(self) -> dict[str, object]:
        """
        A JSON-able dict (without L{started_here}).
        """
        data = attrs.asdict(self, recurse=True)
        del data["started_here"]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Server:
        """
        The inverse of L{to_json}.
        """
        fields = dict(data)
        accounts = fields.pop("accounts")
        tls = fields.pop("tls")
        log_files = fields.pop("log_files")
        assert isinstance(accounts, dict)
        assert isinstance(log_files, list)
        return cls(
            accounts={k: Account(**v) for k, v in accounts.items()},
            tls=TLSCerts(**tls) if isinstance(tls, dict) else None,
            log_files=tuple(log_files),
            **fields,  # type: ignore[arg-type]
        )

    def env(self) -> Dict[str, str]:
        """
        Environment variables describing this server (see C{python -m tests.testbed env}).
        """
        prefix = f"OBPROXY_{self.kind.upper()}"
        env = {
            f"{prefix}_HOST": self.host,
            f"{prefix}_PORT": str(self.port),
            f"{prefix}_DATABASE": self.database,
            f"{prefix}_USER": self.user,
            f"{prefix}_PASSWORD": self.password,
            f"{prefix}_VERSION": self.version,
        }
        for role, account in sorted(self.accounts.items()):
            env[f"{prefix}_{role.upper()}_USER"] = account.user
            env[f"{prefix}_{role.upper()}_PASSWORD"] = account.password
        if self.tls is not None:
            env[f"{prefix}_SSL_CA"] = self.tls.ca
        if self.unix_socket:
            env[f"{prefix}_SOCKET"] = self.unix_socket
        return env


# -- paths, ports, processes -------------------------------------------------------------------


def testbed_dir() -> Path:
    """
    The test bed directory: C{$OBPROXY_TESTBED_DIR} or C{<repo>/.testbed}.
    """
    configured = os.environ.get(TESTBED_DIR_ENV)
    path = Path(configured) if configured else REPO_ROOT / ".testbed"
    return path.resolve()


def certificates() -> TLSCerts:
    """
    The test bed's TLS certificates, made on first use (under C{<testbed>/certs}).
    """
    with _locked("certs"):
        return ensure_certs(testbed_dir() / "certs")


def free_port(host: str = "127.0.0.1", also_wildcard: bool = False) -> int:
    """
    A TCP port that is free right now on C{host} (and on C{0.0.0.0} if C{also_wildcard}).

    There is a window between this check and the server's bind; callers retry on a bind failure.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if not also_wildcard:
            return port
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("0.0.0.0", port))
        except OSError:
            continue
        return port
    raise TestbedError("no free TCP port found")


def pid_alive(pid: int) -> bool:
    """
    Whether process C{pid} exists and is not a zombie (a zombie child of ours is reaped).
    """
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_matches(pid: int, marker: str) -> bool:
    """
    Whether process C{pid} is alive and its command line contains C{marker} (guards against a
    recycled pid).
    """
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ")
    except OSError:
        return True  # no /proc: trust the pid file
    return marker.encode() in cmdline


def stop_pid(pid: int, marker: str, timeout: float = 30.0) -> bool:
    """
    Stop process C{pid} with SIGTERM (SIGKILL after C{timeout} seconds) if it is ours.

    @param marker: a string its command line must contain (its base directory).
    @return: whether a process was stopped.
    """
    if not pid_matches(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def log_tail(paths: Sequence[str], lines: int = 40) -> str:
    """
    The last C{lines} lines of each existing file in C{paths}, labelled.
    """
    parts: List[str] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        parts.append(f"==> {path} <==\n{tail}")
    return "\n".join(parts)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """
    Hold an exclusive lock on C{<testbed>/<name>.lock} (so parallel pytest runs sharing one test bed
    start each server once).
    """
    root = testbed_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def wait_ready(
    server: Server, proc: subprocess.Popen[bytes], started: float, timeout: float
) -> Server:
    """
    Poll until the admin account can log in; return C{server} with its version filled in.

    @raise TestbedError: if the process exits or C{timeout} seconds pass.
    """
    from tests.testbed import wireclient

    admin = server.accounts["admin"]
    last = ""
    while time.monotonic() - started < timeout:
        if proc.poll() is not None or not pid_alive(proc.pid):
            raise TestbedError(
                f"{server.kind} exited with status {proc.returncode} during start-up",
                log_tail(server.log_files),
            )
        try:
            client = wireclient.connect(server.host, server.port, timeout=5)
            try:
                client.login(admin.user, admin.password)
                (row,) = client.query("SELECT VERSION()")
                assert client.handshake is not None
                version = (row[0] or b"").decode()
                handshake_version = client.handshake.server_version
            finally:
                client.close()
        except (OSError, wireclient.WireError) as exc:
            last = str(exc)
            time.sleep(0.1)
            continue
        return attrs.evolve(server, version=version, handshake_version=handshake_version)
    raise TestbedError(
        f"{server.kind} did not accept a login within {timeout:.0f} s (last error: {last})",
        log_tail(server.log_files),
    )


# -- state and life cycle ----------------------------------------------------------------------


def _state_path(kind: str) -> Path:
    return testbed_dir() / kind / "state.json"


def _read_state(kind: str) -> Server | None:
    try:
        data = json.loads(_state_path(kind).read_text())
        return Server.from_json(data)
    except (OSError, ValueError, TypeError, KeyError, AssertionError):
        return None


def _write_state(server: Server) -> None:
    path = _state_path(server.kind)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(server.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _answers(server: Server) -> bool:
    from tests.testbed import wireclient

    admin = server.accounts["admin"]
    try:
        wireclient.run_sql(
            server.host, server.port, admin.user, admin.password, ["SELECT 1"], timeout=5
        )
    except (OSError, wireclient.WireError):
        return False
    return True


def _launcher(kind: str) -> Callable[[Path, TLSCerts], Server]:
    if kind == "mariadb":
        from tests.testbed import mariadb

        return mariadb.launch
    if kind in ("seekdb", "seekdb_tls"):
        from tests.testbed import seekdb

        return functools.partial(seekdb.launch, tls=kind == "seekdb_tls")
    raise ValueError(f"unknown server kind {kind!r}; expected one of {KINDS}")


def status(kind: str) -> Server | None:
    """
    The recorded server of C{kind} if its process is alive, else C{None}.
    """
    server = _read_state(kind)
    if server is None or not pid_matches(server.pid, server.base_dir):
        return None
    return server


def start(kind: str, reuse: bool = True) -> Server:
    """
    Start a server of C{kind} (or reuse the running one) and return it.

    @param reuse: if C{True}, a recorded server that is alive and answers a login is returned with
        C{started_here=False}; otherwise any old server of this kind is stopped first.
    @raise TestbedError: if the server cannot be started; the message has its log tail.
    """
    launch = _launcher(kind)
    with _locked(kind):
        old = status(kind)
        if old is not None:
            if reuse and _answers(old):
                return attrs.evolve(old, started_here=False)
            stop_pid(old.pid, old.base_dir)
        base = testbed_dir() / kind
        server = launch(base, certificates())
        _write_state(server)
        return attrs.evolve(server, started_here=True)


def stop(kind: str) -> bool:
    """
    Stop the recorded server of C{kind}.

    @return: whether a running server was stopped.
    """
    _launcher(kind)
    with _locked(kind):
        server = _read_state(kind)
        if server is None:
            return False
        stopped = stop_pid(server.pid, server.base_dir)
        with contextlib.suppress(OSError):
            _state_path(kind).unlink()
        return stopped
