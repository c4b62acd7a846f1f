"""
Named extra MariaDB instances that tests may kill and restart (high-availability tests).

Each instance lives in C{<testbed>/instances/<name>/} (its data directory, logs, socket) and is
set up like the test bed's C{mariadb} server (same accounts and database, see
L{tests.testbed.mariadb}), with a smaller buffer pool so that three of them fit beside the rest.
Its state (port, pid, command line) is kept in C{state.json} there, so that L{restart_instance}
brings it back on the same port and data directory after L{kill_instance}, even from another
process.

  - L{start_instance}: a running instance of that name (reused if it is alive and answers);
  - L{kill_instance}: send it a signal (C{SIGKILL} by default: a crash; C{SIGSTOP}/C{SIGCONT}: a
    hang and its end; C{SIGTERM}: a clean shutdown) and, for the fatal ones, wait until it is gone;
  - L{restart_instance}: start it again on the same port and data (InnoDB recovers after a kill);
  - L{stop_instance}: stop it (C{SIGTERM}) and forget it; L{stop_all_instances} for every one.

C{python -m tests.testbed.instances stop-all} stops every instance of the test bed directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import attrs

from tests.testbed import (
    Server,
    TestbedError,
    _locked,
    certificates,
    free_port,
    log_tail,
    mariadb,
    pid_alive,
    pid_matches,
    stop_pid,
    testbed_dir,
    wait_ready,
)

__all__ = [
    "instance_dir",
    "instance_status",
    "kill_instance",
    "list_instances",
    "restart_instance",
    "start_instance",
    "stop_all_instances",
    "stop_instance",
]

#: Instance names become directory names: keep them plain.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

#: Seconds to wait for a process to go after a fatal signal.
_DEATH_TIMEOUT = 30.0

#: Signals after which the process is expected to exit.
_FATAL = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGABRT)


def instance_dir(name: str) -> Path:
    """
    The directory of instance C{name}: C{<testbed>/instances/<name>}.

    @raise ValueError: if C{name} is not made of letters, digits, C{_} and C{-}.
    """
    if not _NAME.match(name):
        raise ValueError(f"bad instance name {name!r}: letters, digits, _ and - only")
    return testbed_dir() / "instances" / name


def _state_path(name: str) -> Path:
    return instance_dir(name) / "state.json"


def _read(name: str) -> Dict[str, object] | None:
    try:
        data = json.loads(_state_path(name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _server(state: Dict[str, object]) -> Server:
    server = state["server"]
    assert isinstance(server, dict)
    return Server.from_json(server)


def _write(name: str, server: Server, args: Sequence[str]) -> None:
    path = _state_path(name)
    tmp = path.with_suffix(".tmp")
    data = {"server": server.to_json(), "args": list(args)}
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def instance_status(name: str) -> Server | None:
    """
    The recorded instance C{name} if its process exists (even if stopped by C{SIGSTOP}), else
    C{None}.
    """
    state = _read(name)
    if state is None:
        return None
    server = _server(state)
    if not pid_matches(server.pid, server.base_dir):
        return None
    return server


def list_instances() -> List[str]:
    """
    The names of the instances recorded in the test bed directory (running or not).
    """
    root = testbed_dir() / "instances"
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/state.json"))


def _args(base: Path, port: int, init_file: Path | None) -> List[str]:
    """
    The server's command line; the init file (accounts) only on the first start, since its
    C{CREATE USER}s fail once they exist.
    """
    certs = certificates()
    user_args: List[str] = ["--user=root"] if os.geteuid() == 0 else []
    args = [
        mariadb.find_program("mariadbd", "mysqld"),
        "--no-defaults",
        *user_args,
        f"--datadir={base / 'data'}",
        f"--socket={base / 'mysqld.sock'}",
        f"--pid-file={base / 'mysqld.pid'}",
        f"--log-error={base / 'error.log'}",
        # its own temporary directory: instances started at the same moment must not collide
        f"--tmpdir={base / 'tmp'}",
        "--bind-address=127.0.0.1",
        f"--port={port}",
        "--skip-name-resolve",
        "--max-connections=1000",
        "--innodb-buffer-pool-size=64M",
        "--innodb-log-file-size=48M",
        # 2, not 0: a commit reaches the OS at once, so it survives a SIGKILL of the server
        # (tests count acknowledged commits after a kill); only an OS crash could lose it
        "--innodb-flush-log-at-trx-commit=2",
        "--skip-log-bin",
        "--max-allowed-packet=128M",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        "--local-infile=1",
        f"--ssl-ca={certs.ca}",
        f"--ssl-cert={certs.cert}",
        f"--ssl-key={certs.key}",
    ]
    if init_file is not None:
        args.append(f"--init-file={init_file}")
    return args


def _spawn(name: str, base: Path, args: Sequence[str], port: int) -> Server:
    """
    Run C{args} and wait until the admin account logs in; record and return the server.
    """
    logs = [str(base / "error.log"), str(base / "mariadbd.out"), str(base / "install.log")]
    started = time.monotonic()
    with open(base / "mariadbd.out", "ab") as out:
        proc = subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=base,
            start_new_session=True,  # a signal to the test's process group must not reach it
            close_fds=True,
        )
    server = Server(
        kind=mariadb.KIND,
        host="127.0.0.1",
        port=port,
        pid=proc.pid,
        version="",
        handshake_version="",
        base_dir=str(base),
        log_files=tuple(logs),
        database=mariadb.DATABASE,
        accounts=dict(mariadb.ACCOUNTS),
        unix_socket=str(base / "mysqld.sock"),
        tls=certificates(),
    )
    try:
        server = wait_ready(server, proc, started, mariadb.START_TIMEOUT)
    except BaseException:
        stop_pid(proc.pid, str(base))
        raise
    _write(name, server, args)
    return attrs.evolve(server, started_here=True)


def _fresh(name: str, base: Path) -> Server:

    mariadb.install_datadir(base, f"instance {name!r}")
    init_file = base / "init.sql"
    init_file.write_text(mariadb._init_sql())
    last = TestbedError("not started")
    for _attempt in range(3):  # the free port may be taken before the server binds it
        port = free_port()
        try:
            return _spawn(name, base, _args(base, port, init_file), port)
        except TestbedError as exc:
            last = exc
            if "already in use" not in exc.log_tail and "Bind on TCP/IP" not in exc.log_tail:
                raise
    raise last


def start_instance(name: str, reuse: bool = True) -> Server:
    """
    A running MariaDB instance called C{name}.

    @param reuse: if C{True}, a recorded instance that is alive and answers a login is returned
        as it is (C{started_here=False}); otherwise (or if it does not answer) any old process
        is stopped and the instance is made afresh (new data directory and port).
    @raise TestbedError: with the log tail, if it does not come up.
    """
    base = instance_dir(name)
    with _locked(f"instance-{name}"):
        old = instance_status(name)
        if old is not None:
            if reuse and _answers(old):
                return attrs.evolve(old, started_here=False)
            stop_pid(old.pid, old.base_dir)
        return _fresh(name, base)


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


def kill_instance(name: str, sig: int = signal.SIGKILL) -> None:
    """
    Send C{sig} to instance C{name}'s server process.

    After C{SIGKILL}, C{SIGTERM}, C{SIGINT}, C{SIGQUIT} or C{SIGABRT} this waits until the
    process is gone (its port then refuses connections); other signals (C{SIGSTOP}, C{SIGCONT})
    return at once.  The instance stays recorded for L{restart_instance}.

    @raise TestbedError: if the instance is not running, or does not exit within 30 s.
    """
    server = instance_status(name)
    if server is None:
        raise TestbedError(f"instance {name!r} is not running")
    os.kill(server.pid, sig)
    if sig not in _FATAL:
        return
    if sig != signal.SIGKILL:
        # a stopped process would sit on a SIGTERM forever
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGCONT)
    deadline = time.monotonic() + _DEATH_TIMEOUT
    while pid_alive(server.pid):
        if time.monotonic() > deadline:
            raise TestbedError(
                f"instance {name!r} (pid {server.pid}) still runs {_DEATH_TIMEOUT:.0f} s after "
                f"signal {sig}",
                log_tail(server.log_files),
            )
        time.sleep(0.02)


def restart_instance(name: str) -> Server:
    """
    Start instance C{name} again on its port and data directory, and wait until it answers.

    A process still there (for instance one stopped by C{SIGSTOP}) is stopped first.

    @raise TestbedError: if it was never started here, or does not come back.
    """
    with _locked(f"instance-{name}"):
        state = _read(name)
        if state is None:
            raise TestbedError(f"instance {name!r} was never started (no {_state_path(name)})")
        old = _server(state)
        if pid_matches(old.pid, old.base_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(old.pid, signal.SIGCONT)
            stop_pid(old.pid, old.base_dir)
        args = state["args"]
        assert isinstance(args, list)
        # the accounts exist now: the init file would fail on its CREATE USERs
        args = [str(a) for a in args if not str(a).startswith("--init-file=")]
        return _spawn(name, Path(old.base_dir), args, old.port)


def stop_instance(name: str) -> bool:
    """
    Stop instance C{name} (C{SIGTERM}, then C{SIGKILL} after 30 s) and forget it; its directory
    stays until the next fresh start.

    @return: whether a running process was stopped.
    """
    with _locked(f"instance-{name}"):
        state = _read(name)
        if state is None:
            return False
        server = _server(state)
        if pid_matches(server.pid, server.base_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGCONT)
        stopped = stop_pid(server.pid, server.base_dir)
        with contextlib.suppress(OSError):
            _state_path(name).unlink()
        return stopped


def stop_all_instances() -> List[str]:
    """
    Stop every recorded instance; return the names of those that were running.
    """
    return [name for name in list_instances() if stop_instance(name)]


def main(argv: Sequence[str] | None = None) -> int:
    """
    C{python -m tests.testbed.instances {start NAME | kill NAME [SIG] | restart NAME |
    stop NAME | stop-all | list}}.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(main.__doc__, file=sys.stderr)
        return 2
    action, rest = args[0], args[1:]
    if action == "stop-all":
        for name in stop_all_instances():
            print(f"{name}: stopped")
        return 0
    if action == "list":
        for name in list_instances():
            server = instance_status(name)
            print(f"{name}: " + (f"127.0.0.1:{server.port} pid {server.pid}" if server else "down"))
        return 0
    if not rest:
        print(f"{action}: an instance name is required", file=sys.stderr)
        return 2
    name = rest[0]
    if action == "start":
        server = start_instance(name)
        print(f"{name}: 127.0.0.1:{server.port} pid {server.pid}")
    elif action == "restart":
        server = restart_instance(name)
        print(f"{name}: 127.0.0.1:{server.port} pid {server.pid}")
    elif action == "kill":
        sig = signal.Signals[rest[1]] if len(rest) > 1 else signal.SIGKILL
        kill_instance(name, sig)
    elif action == "stop":
        print(f"{name}: {'stopped' if stop_instance(name) else 'was not running'}")
    else:
        print(f"unknown action {action!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
