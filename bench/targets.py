"""
What the benchmark measures: the ways a client can reach the backend, each started as its own
process so that its CPU time and memory can be read from C{/proc}.

  - C{direct}: straight to the database (the physical limit; no proxy process);
  - C{relay}: L{bench.relay}, a bare Twisted TCP relay (the floor for any Python proxy);
  - C{relay-lean}: the same on the reactor C{twistd obproxy} runs on (L{obproxy_tx.reactor});
  - C{haproxy}: HAProxy in TCP mode with one thread (a C L4 proxy with one event loop);
  - C{obproxy-1w}: C{twistd obproxy} with one worker;
  - C{obproxy-Nw}: the same with C{-o work_thread_num=N} (one worker per core);
  - C{relay-pypy}, C{obproxy-pypy-1w}, C{obproxy-pypy-Nw}: the Python ones under PyPy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import attrs

from bench import procstat

#: The repository root (the directory holding C{bench/} and C{obproxy_tx/}).
ROOT = Path(__file__).resolve().parent.parent

#: Runs C{twistd} with the interpreter it is given (the C{twistd} on C{PATH} may be another one's).
RUN_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"

#: How long a target may take to listen.
START_TIMEOUT = 30.0


class TargetError(Exception):
    """
    A target could not be started; the message says why (with its log's tail).
    """


@attrs.frozen
class Target:
    """
    One way of reaching the backend.

    @ivar name: the name in tables and on the command line (C{obproxy-pypy-2w}, ...).
    @ivar kind: C{"direct"}, C{"relay"}, C{"haproxy"} or C{"obproxy"}.
    @ivar interpreter: C{"cpython"} or C{"pypy"} for the Python targets, C{""} otherwise.
    @ivar python: the interpreter's executable for the Python targets.
    @ivar workers: C{work_thread_num} for obproxy_tx.
    @ivar tree: the checkout obproxy_tx runs from (C{""}: this one); C{bench.compare} runs two
        commits side by side this way.
    """

    name: str
    kind: str
    interpreter: str = ""
    python: str | None = None
    workers: int = 1
    tree: str = ""

    @property
    def is_proxy(self) -> bool:
        """
        Whether a process of ours sits between client and database (so has CPU time to read).
        """
        return self.kind != "direct"


def standard_targets(pypy: str | None, workers: int) -> List[Target]:
    """
    The benchmark's targets in the order they run: direct, relay, HAProxy, obproxy_tx with one
    worker and with C{workers}, then the Python ones again under C{pypy} if it is given.
    """
    targets = [
        Target("direct", "direct"),
        Target("relay", "relay", "cpython", sys.executable),
        Target("relay-lean", "relay", "cpython", sys.executable),
        Target("haproxy", "haproxy"),
        Target("obproxy-1w", "obproxy", "cpython", sys.executable, 1),
    ]
    if workers > 1:
        targets.append(Target(f"obproxy-{workers}w", "obproxy", "cpython", sys.executable, workers))
    if pypy:
        targets.append(Target("relay-pypy", "relay", "pypy", pypy))
        targets.append(Target("obproxy-pypy-1w", "obproxy", "pypy", pypy, 1))
        if workers > 1:
            targets.append(Target(f"obproxy-pypy-{workers}w", "obproxy", "pypy", pypy, workers))
    return targets


@attrs.frozen
class Backend:
    """
    The database behind every target (from a L{tests.testbed.Server}).

    @ivar kind: C{"mariadb"} or C{"seekdb"}.
    @ivar host: its address.
    @ivar port: its port.
    @ivar pid: its process id (for the database's own CPU per query).
    @ivar user: the login used by every client.
    @ivar password: its password.
    @ivar database: the database the workloads use.
    @ivar admin_user: an account allowed to change global settings.
    @ivar admin_password: its password.
    """

    kind: str
    host: str
    port: int
    pid: int
    user: str
    password: str
    database: str
    admin_user: str
    admin_password: str

    @property
    def cluster_type(self) -> str:
        """
        obproxy_tx's cluster type for this backend.
        """
        return "oceanbase" if self.kind.startswith("seekdb") else "mysql"


def free_port() -> int:
    """
    A loopback TCP port that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def verifier(password: str) -> str:
    """
    MySQL's stored form of C{password}: C{*} and SHA1(SHA1(password)) in hex, C{""} for none.
    """
    if not password:
        return ""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def proxy_config(backend: Backend) -> str:
    """
    The obproxy_tx configuration (YAML) for C{backend}: one cluster, the benchmark's user, no
    connection limit (the idle-sessions workload holds thousands of clients).
    """
    return f"""\
listen_port: 2883
local_bound_ip: 127.0.0.1
client_max_connections: 0
clusters:
  - name: bench_{backend.kind}
    type: {backend.cluster_type}
    servers: ['{backend.host}:{backend.port}']
    users:
      - {{name: '{backend.user}', tenant: sys, verifier: '{verifier(backend.password)}'}}
"""


def haproxy_config(port: int, backend: Backend, max_clients: int = 4096) -> str:
    """
    HAProxy in TCP mode on C{port} in front of C{backend}: one thread (one event loop, as one
    obproxy_tx worker has), long timeouts (idle sessions must stay), no health checks, room for
    C{max_clients} clients (it needs two descriptors for each, and refuses to start without).
    """
    return f"""\
global
    maxconn {max_clients}
    nbthread 1

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

listen bench
    bind 127.0.0.1:{port}
    server db {backend.host}:{backend.port}
"""


@attrs.define
class Running:
    """
    A started target.

    @ivar target: what it is.
    @ivar host: where clients connect.
    @ivar port: where clients connect.
    @ivar process: the process (C{None} for C{direct}).
    @ivar log: the file its output goes to.
    """

    target: Target
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def pid(self) -> int | None:
        """
        The proxy's process id (C{None} for C{direct}).
        """
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        """
        Whether the target still runs (C{direct} always does, as far as we know).
        """
        return self.process is None or self.process.poll() is None

    def cpu_seconds(self) -> float | None:
        """
        CPU seconds of the proxy and its workers so far (C{None} for C{direct}).
        """
        return procstat.cpu_seconds(self.pid) if self.pid is not None else None

    def rss_bytes(self) -> int | None:
        """
        RSS of the proxy and its workers (C{None} for C{direct}).
        """
        return procstat.rss_bytes(self.pid) if self.pid is not None else None

    def process_count(self) -> int:
        """
        How many processes the target runs (its workers included).
        """
        return len(procstat.descendants(self.pid)) if self.pid is not None else 0

    def log_tail(self, lines: int = 20) -> str:
        """
        The last lines of the target's log.
        """
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """
        Stop the process (SIGTERM; after 10 s, or for workers left over, SIGKILL to its process
        group) and wait for it.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        # Workers the parent left behind: the target runs in a process group of its own.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _python_env(tree: str = "") -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree or str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command(
    target: Target, backend: Backend, port: int, workdir: Path, max_clients: int = 4096
) -> List[str]:
    """
    The command line that runs C{target} on C{port} in front of C{backend} (files it needs are
    written to C{workdir}) for up to C{max_clients} clients at once.
    """
    if target.kind == "relay":
        assert target.python is not None
        return [
            target.python,
            str(ROOT / "bench" / "relay.py"),
            str(port),
            f"{backend.host}:{backend.port}",
            *(["--lean-reactor"] if target.name == "relay-lean" else []),
        ]
    if target.kind == "haproxy":
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        config = workdir / f"haproxy-{backend.kind}.cfg"
        config.write_text(haproxy_config(port, backend, max_clients))
        return [haproxy, "-db", "-f", str(config)]
    if target.kind == "obproxy":
        assert target.python is not None
        config = workdir / f"obproxy-{backend.kind}.yaml"
        config.write_text(proxy_config(backend))
        args = [
            target.python,
            "-c",
            RUN_TWISTD,
            "-n",
            "--pidfile=",
            "--logfile",
            str(workdir / f"{target.name}-{backend.kind}.twistd.log"),
        ]
        args += ["obproxy", "-c", str(config), "-p", str(port)]
        if target.workers > 1:
            args += ["-o", f"work_thread_num={target.workers}"]
        return args
    raise ValueError(f"no command for target kind {target.kind!r}")


def start(target: Target, backend: Backend, workdir: Path, max_clients: int = 4096) -> Running:
    """
    Start C{target} in front of C{backend} for up to C{max_clients} clients at once and wait
    until it accepts connections.

    @raise TargetError: if it exits or does not listen within L{START_TIMEOUT} seconds, or (for
        several workers) starts no worker processes.
    """
    if target.kind == "direct":
        return Running(target, backend.host, backend.port)
    workdir.mkdir(parents=True, exist_ok=True)
    last: TargetError | None = None
    for _ in range(3):  # a port picked free may be taken before the target binds it
        port = free_port()
        log = workdir / f"{target.name}-{backend.kind}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                command(target, backend, port, workdir, max_clients),
                cwd=target.tree or ROOT,
                env=_python_env(target.tree),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = Running(target, "127.0.0.1", port, process, log)
        try:
            _wait_listening(running)
        except TargetError as exc:
            running.stop()
            last = exc
            continue
        if target.workers > 1:
            _check_workers(running)
        return running
    assert last is not None
    raise last


def _wait_listening(running: Running) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not running.alive():
            raise TargetError(
                f"{running.target.name} exited during start-up:\n{running.log_tail()}"
            )
        try:
            with socket.create_connection((running.host, running.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TargetError(
        f"{running.target.name} did not listen within {START_TIMEOUT:.0f} s:\n{running.log_tail()}"
    )


def _check_workers(running: Running, wait: float = 3.0) -> None:
    """
    Fail unless C{running} has started worker processes: before workers exist, C{work_thread_num}
    only sizes the worker bits of cs_id and one process serves everything.
    """
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if running.process_count() > 1:
            return
        time.sleep(0.2)
    running.stop()
    raise TargetError(
        f"{running.target.name}: work_thread_num={running.target.workers} started no worker "
        "processes (workers are not implemented at this commit)"
    )


def start_all(
    targets: Sequence[Target], backend: Backend, workdir: Path, max_clients: int = 4096
) -> tuple[Dict[str, Running], Mapping[str, str]]:
    """
    Start every target in front of C{backend}, for up to C{max_clients} clients at once.

    @return: the running targets by name, and the reason for each target that could not start.
    """
    running: Dict[str, Running] = {}
    skipped: Dict[str, str] = {}
    for target in targets:
        try:
            running[target.name] = start(target, backend, workdir, max_clients)
        except (TargetError, OSError) as exc:
            skipped[target.name] = str(exc).strip()
    return running, skipped


def stop_all(running: Mapping[str, Running]) -> None:
    """
    Stop every started target.
    """
    for each in running.values():
        each.stop()
