"""
A throwaway OceanBase seekdb server for the test bed.

The server binary comes from the PyPI wheel C{pylibseekdb} (it ships C{seekdb} next to the Python
module): the wheel is fetched with C{pip download} into a cache directory
(C{$OBPROXY_SEEKDB_CACHE}, default C{~/.cache/obproxy_tx/seekdb}) and only the binary and
C{libaio.so.1} are unpacked.  The cache is reused by later runs and by other clones.
C{$OBPROXY_SEEKDB_REQUIREMENT} overrides the requirement given to pip (default C{pylibseekdb}).

The server runs with small settings (C{datafile_size=256M}, C{log_disk_size=2G},
C{memory_budget=3G}, C{syslog_level=WARN}) in C{--nodaemon} mode.  The memory budget is a cap, not
a reservation (RSS is 200-300 MB idle); 1G would be enough to start, but then a 17 MiB blob in a
text-protocol INSERT fails with C{11049 Exceed query memory limit}.  C{max_allowed_packet} is
raised to 128 MiB.  It listens on C{0.0.0.0} only (it has no option to bind one address); tests
connect to C{127.0.0.1}.

Two kinds are started from here:

  - C{seekdb}: no TLS (C{CLIENT_SSL} is not advertised, as in a default deployment);
  - C{seekdb_tls}: TLS from the first start: the test bed certificates are put into C{<base>/wallet}
    and C{ssl_client_authentication=TRUE} is passed as a start parameter, so C{CLIENT_SSL} is
    advertised (TLS stays optional for clients).  Beware: PyMySQL and the C{mariadb} CLI then use
    TLS on their own, and seekdb 1.4's TLS layer drops the connection on requests larger than about
    8 KB and stalls on responses of about 1 MB: use this kind for small TLS exchanges only.

Accounts: C{root} with an empty password (role C{"admin"}), C{alice}/C{alice_pw} (role
C{"native"}, all privileges), and database C{test}.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Iterator

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

KIND = "seekdb"
KIND_TLS = "seekdb_tls"

ACCOUNTS = {
    "native": Account("alice", "alice_pw"),
    "admin": Account("root", ""),
}

DATABASE = "test"

#: Seconds to wait for the first successful login (bootstrap takes 3-5 s).
START_TIMEOUT = float(os.environ.get("OBPROXY_TESTBED_START_TIMEOUT", "120"))

#: Environment variable naming the cache directory for the wheel and the unpacked binary.
CACHE_ENV = "OBPROXY_SEEKDB_CACHE"

#: Environment variable overriding the pip requirement for the wheel.
REQUIREMENT_ENV = "OBPROXY_SEEKDB_REQUIREMENT"

#: Parameters for a small instance (see the backends notes): about 0.4 GB of disk, 200-300 MB RSS.
PARAMETERS = (
    "datafile_size=256M",
    "log_disk_size=2G",
    "memory_budget=3G",
    "syslog_level=WARN",
)


def cache_dir() -> Path:
    """
    Where the wheel and the unpacked binary are kept.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "obproxy_tx" / "seekdb"


def _find_wheel(directory: Path) -> Path | None:
    wheels = sorted(directory.glob("pylibseekdb-*.whl"))
    return wheels[-1] if wheels else None


def ensure_binary() -> Path:
    """
    Return the path of the C{seekdb} binary, downloading and unpacking the wheel if needed.

    C{libaio.so.1} is unpacked next to it; run it with that directory in C{LD_LIBRARY_PATH}.

    @raise TestbedError: if pip cannot download the wheel or it holds no binary.
    """
    cache = cache_dir()
    binary = cache / "bin" / "seekdb"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with _cache_lock(cache):
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
        download = cache / "download"
        wheel = _find_wheel(download)
        if wheel is None:
            download.mkdir(parents=True, exist_ok=True)
            requirement = os.environ.get(REQUIREMENT_ENV, "pylibseekdb")
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--python-version",
                "3.11",
                "--abi",
                "cp311",
                "--platform",
                "manylinux_2_28_x86_64",
                "--only-binary=:all:",
                "-d",
                str(download),
                requirement,
            ]
            result = subprocess.run(
                cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
            )
            wheel = _find_wheel(download)
            if result.returncode != 0 or wheel is None:
                raise TestbedError(
                    f"pip download of {requirement} failed (exit status {result.returncode})",
                    (result.stdout + result.stderr)[-4000:],
                )
        staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=cache))
        try:
            with zipfile.ZipFile(wheel) as zf:
                names = set(zf.namelist())
                if "pylibseekdb/seekdb" not in names:
                    raise TestbedError(f"{wheel.name} has no pylibseekdb/seekdb binary")
                for name in ("pylibseekdb/seekdb", "pylibseekdb/libaio.so.1"):
                    if name in names:
                        target = staging / os.path.basename(name)
                        with zf.open(name) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
            (staging / "seekdb").chmod(0o755)
            (staging / "VERSION").write_text(wheel.name + "\n")
            old = cache / "bin"
            if old.exists():
                shutil.rmtree(old)
            os.replace(staging, old)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return binary


@contextlib.contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    """
    Hold an exclusive lock on C{<cache>/.lock} (several clones may share one cache).
    """
    with open(cache / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def launch(base: Path, certs: TLSCerts, tls: bool = False) -> Server:
    """
    Start a fresh server in C{base} (wiped first) with users and database set up.

    @param tls: whether the server advertises TLS (with the test bed certificates).

    @raise TestbedError: with the log tail, if it does not come up.
    """
    binary = ensure_binary()
    last_error: TestbedError = TestbedError("not started")
    for _attempt in range(3):  # a port may be taken between free_port() and bind()
        try:
            return _launch_once(binary, base, certs, tls)
        except TestbedError as exc:
            last_error = exc
            if "already in use" not in exc.log_tail and "-4016" not in exc.log_tail:
                raise
    raise last_error


def _launch_once(binary: Path, base: Path, certs: TLSCerts, tls: bool) -> Server:
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    parameters = list(PARAMETERS)
    if tls:
        wallet = base / "wallet"
        wallet.mkdir()
        shutil.copyfile(certs.ca, wallet / "ca.pem")
        shutil.copyfile(certs.cert, wallet / "server-cert.pem")
        shutil.copyfile(certs.key, wallet / "server-key.pem")
        parameters.append("ssl_client_authentication=TRUE")
    port = free_port(also_wildcard=True)
    stdout_log = base / "seekdb.out"
    args = [str(binary), "--nodaemon", "--port", str(port), "--base-dir", str(base)]
    for parameter in parameters:
        args += ["--parameter", parameter]
    env = dict(os.environ)
    libdir = str(binary.parent)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["TELEMETRY_ENABLED"] = "false"
    logs = (str(stdout_log), str(base / "log" / "seekdb.log"))
    started = time.monotonic()
    with open(stdout_log, "wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=base,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    server = Server(
        kind=KIND_TLS if tls else KIND,
        host="127.0.0.1",
        port=port,
        pid=proc.pid,
        version="",
        handshake_version="",
        base_dir=str(base),
        log_files=logs,
        database=DATABASE,
        accounts=dict(ACCOUNTS),
        unix_socket=str(base / "run" / "sql.sock"),
        tls=certs if tls else None,
    )
    try:
        server = wait_ready(server, proc, started, START_TIMEOUT)
        _set_up(server)
    except BaseException:
        stop_pid(proc.pid, str(base))
        raise
    return server


def _set_up(server: Server) -> None:
    from tests.testbed import wireclient

    admin = server.accounts["admin"]
    native = server.accounts["native"]
    statements = [
        f"CREATE USER IF NOT EXISTS '{native.user}' IDENTIFIED BY '{native.password}'",
        f"GRANT ALL PRIVILEGES ON *.* TO '{native.user}'",
        f"CREATE DATABASE IF NOT EXISTS {server.database}",
        # for new sessions: 32 MiB blobs in one packet (the default is 16M)
        "SET GLOBAL max_allowed_packet = 134217728",
    ]
    try:
        wireclient.run_sql(server.host, server.port, admin.user, admin.password, statements)
    except (OSError, wireclient.WireError) as exc:
        raise TestbedError(f"seekdb set-up failed: {exc}", log_tail(server.log_files)) from exc
