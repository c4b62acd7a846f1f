"""
Real clients' own test suites, run against any MySQL-protocol endpoint (a server or the proxy).

Each runner returns a L{SuiteResult}: the set of tests that passed, the failures with their output
(the diff or traceback that shows what went wrong), and the skipped ones.  The integration test
(C{tests/integration/test_client_suites.py}) runs each suite directly and through the proxy and
requires every test that passes directly to pass through the proxy.

Suites (all come from package registries, so CI needs no other network):

  - B{MariaDB's own test suite} (Debian package C{mariadb-test}: C{mariadb-test-run} and
    C{/usr/share/mysql/mysql-test}).  Its tests expect the server C{mariadb-test-run} sets up
    itself (C{root} without a password, the C{mtr} database, C{std_data}, C{secure_file_priv} =
    the var directory), so L{start_mtr_server} starts a fresh one with C{--start-and-exit}
    (InnoDB, SEQUENCE and partitioning on) and L{run_mtr} runs the chosen tests with
    C{--extern host/port/socket}: connections to C{localhost} use the socket, which the proxy
    also listens on.  A fresh server per run keeps a test's leftovers out of the other run.
  - B{MySQL Connector/Python's unit tests}: the sdist (C{pip download --no-binary :all:}, cached)
    holds C{tests/} and C{unittests.py} next to the connector's own pure-Python code (C{lib/}),
    which the tests use; they run with C{--use-external-server} through
    C{tests/testbed/connector_driver.py}, which records every test's outcome.  The version is
    L{CONNECTOR_VERSION}, not necessarily the installed one: the sdists of 8.4.0 (the wheel
    setup.cfg pins) and 9.1.0 have no C{setup.py}, so pip cannot download them as sources.
  - PyMySQL's sdist has only C{tests/test_auth.py}: it hard-codes port 3306 and MySQL 8's
    C{sha256_password}/C{caching_sha2_password} accounts, which neither MariaDB nor seekdb has,
    so it cannot target our backends and is not run.

Downloads are cached under C{$OBPROXY_SUITES_CACHE} (default C{~/.cache/obproxy_tx/suites}).
Nothing downloaded is part of the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Mapping, Sequence

import attrs

from tests.testbed import TestbedError

#: Environment variable naming the download cache of the suites.
CACHE_ENV = "OBPROXY_SUITES_CACHE"

#: Where the Debian package C{mariadb-test} puts the test suite.
MTR_DIR = Path(os.environ.get("OBPROXY_MTR_DIR", "/usr/share/mysql/mysql-test"))

#: MariaDB main-suite tests run with the text protocol: queries, joins, functions and types,
#: user variables, FOUND_ROWS, transactions and locks from several connections, temporary tables,
#: LOAD DATA [LOCAL], warnings, text PREPARE, KILL and COM_CHANGE_USER, the mariadb CLI.  Tests
#: that fail directly on this server (slow-query counters, InnoDB-less result files) are left out;
#: so are C{main.xa} and C{main.status}, which wait 30 s in vain through the proxy for an
#: C{INFORMATION_SCHEMA.PROCESSLIST} row with C{ID = CONNECTION_ID()} (see L{MTR_ALLOWED}).
MTR_TESTS = (
    "main.select",
    "main.join_outer",
    "main.user_var",
    "main.select_found",
    "main.commit",
    "main.lock",
    "main.temp_table",
    "main.loaddata",
    "main.warnings",
    "main.insert",
    "main.update",
    "main.delete",
    "main.having",
    "main.distinct",
    "main.count_distinct",
    "main.default",
    "main.func_str",
    "main.func_math",
    "main.bigint",
    "main.null",
    "main.limit",
    "main.type_datetime",
    "main.type_decimal",
    "main.cte_nonrecursive",
    "main.ps_1general",
    "main.ps_11bugs",
    "main.ps_ddl",
    "main.ps_missed_cmds",
    "main.mysql_protocols",
    "main.mysql",
    "main.kill",
    "main.change_user",
)

#: Tests run again with C{--ps-protocol}: every statement a prepared statement (binary
#: protocol, re-prepare, long data, cursors).
MTR_PS_TESTS = (
    "main.select",
    "main.user_var",
    "main.insert",
    "main.update",
    "main.func_str",
    "main.type_datetime",
    "main.type_decimal",
    "main.ps_1general",
    "main.commit",
)

#: MariaDB tests allowed to fail through the proxy, with the reason (inherent and documented in
#: docs/proxy.md).  Only these may pass directly and fail through the proxy.
MTR_ALLOWED: Mapping[str, str] = {
    "main.xa": (
        "waits for INFORMATION_SCHEMA.PROCESSLIST WHERE ID = CONNECTION_ID(): CONNECTION_ID() is "
        "the proxy's cs_id, the backend's table has the backend's ids (docs/proxy.md, KILL)"
    ),
    "main.status": "same as main.xa: INFORMATION_SCHEMA.PROCESSLIST by the proxy's cs_id",
    "main.change_user": (
        "COM_CHANGE_USER to an account with a pre-4.1 (mysql_old_password) hash: the proxy "
        "verifies clients with SHA1(SHA1(password)) verifiers only"
    ),
}

#: The Connector/Python sdist whose tests run (C{$OBPROXY_CONNECTOR_SDIST_VERSION} overrides).
CONNECTOR_VERSION = os.environ.get("OBPROXY_CONNECTOR_SDIST_VERSION", "26.10.0")

#: Connector/Python test modules run (names as C{unittests.py -t} takes them).
CONNECTOR_MODULES = (
    "cursor",
    "connection",
    "conversion",
    "pep249",
    "aio_cursor",
    "pooling",
)

#: Connector/Python tests allowed to fail through the proxy, with the reason.
CONNECTOR_ALLOWED: Mapping[str, str] = {
    "tests.test_connection.MySQLConnectionTests.test_shutdown": (
        "reads the server's Aborted_clients right after closing a socket; through the proxy the "
        "backend connection is aborted when the proxy sees the close, and the next client's "
        "login (now from the shared pool, at once) can ask before the server counted it"
    ),
}


@attrs.frozen
class SuiteResult:
    """
    The outcome of one run of a suite.

    @ivar passed: the names of the tests that passed.
    @ivar failed: failed test name -> what it printed (diff, error, traceback).
    @ivar skipped: the names of the tests that were skipped.
    @ivar output: the runner's whole output (for a run that went wrong as a whole).
    @ivar seconds: how long the run took.
    """

    passed: FrozenSet[str]
    failed: Mapping[str, str]
    skipped: FrozenSet[str]
    output: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        """
        C{"N passed, M failed, K skipped in S s"}.
        """
        return (
            f"{len(self.passed)} passed, {len(self.failed)} failed, "
            f"{len(self.skipped)} skipped in {self.seconds:.1f} s"
        )


def cache_dir() -> Path:
    """
    Where downloaded suites are kept (C{$OBPROXY_SUITES_CACHE}, default
    C{~/.cache/obproxy_tx/suites}).
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "obproxy_tx" / "suites"


# -- MariaDB's test suite ----------------------------------------------------------------


@attrs.frozen
class MtrServer:
    """
    A MariaDB server started by C{mariadb-test-run --start-and-exit}.

    @ivar port: its TCP port (it listens on every address).
    @ivar socket: its unix socket.
    @ivar vardir: C{mariadb-test-run}'s var directory (also the server's C{secure_file_priv}).
    @ivar pid: the server's process id.
    """

    port: int
    socket: str
    vardir: str
    pid: int


def mtr_available() -> str | None:
    """
    C{None} if C{mariadb-test-run} can run here, else why not.
    """
    if not (MTR_DIR / "mariadb-test-run.pl").is_file():
        return f"{MTR_DIR}/mariadb-test-run.pl not found: install the Debian package mariadb-test"
    if shutil.which("perl") is None:
        return "perl not found"
    return None


def _mtr_command(vardir: str, args: Sequence[str]) -> List[str]:
    return [
        "perl",
        str(MTR_DIR / "mariadb-test-run.pl"),
        f"--vardir={vardir}",
        f"--tmpdir={vardir}/tmp",
        *args,
    ]


def _mtr_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["MTR_BUILD_THREAD"] = "auto"  # free ports
    return env


def start_mtr_server(base: str) -> MtrServer:
    """
    Start a fresh MariaDB set up as C{mariadb-test-run} sets up its own (in C{base}/var).

    @param base: a directory for the var directory; keep the path short (unix sockets).
    @raise TestbedError: if it does not start.
    """
    vardir = os.path.join(base, "var")
    if os.path.exists(vardir):
        shutil.rmtree(vardir)
    args = [
        "--start-and-exit",
        "--mysqld=--innodb=ON",
        "--mysqld=--sequence=ON",
        "--mysqld=--partition=ON",
        "main.1st",
    ]
    done = subprocess.run(
        _mtr_command(vardir, args),
        cwd=MTR_DIR,
        env=_mtr_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    found = re.search(r"mysqld\.1\s+(\d+)\s+(\S+\.sock)", output)
    pid_file = Path(vardir) / "run" / "mysqld.1.pid"
    if not found or not pid_file.is_file():
        raise TestbedError("mariadb-test-run --start-and-exit failed", output[-4000:])
    return MtrServer(
        port=int(found.group(1)),
        socket=found.group(2),
        vardir=vardir,
        pid=int(pid_file.read_text().strip()),
    )


def stop_mtr_server(server: MtrServer, timeout: float = 30.0) -> None:
    """
    Stop a server from L{start_mtr_server} (SIGTERM, then SIGKILL) and wait for it to exit.
    """
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(server.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(server.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


_MTR_LINE = re.compile(r"^(\w[\w.-]*(?: '[^']*')?)\s+\[ (pass|fail|skipped|disabled) \]\s*(.*)$")


def parse_mtr_output(output: str) -> SuiteResult:
    """
    The per-test outcomes of C{mariadb-test-run}'s report; a failure keeps the lines that follow
    its result line (mysqltest's error or the result diff).
    """
    passed: set[str] = set()
    skipped: set[str] = set()
    failed: Dict[str, str] = {}
    current: str | None = None
    details: List[str] = []

    def flush() -> None:
        if current is not None:
            failed[current] = "\n".join(details).strip()

    for line in output.splitlines():
        match = _MTR_LINE.match(line)
        if match:
            flush()
            current, details = None, []
            name, outcome = match.group(1), match.group(2)
            if outcome == "pass":
                passed.add(name)
            elif outcome == "fail":
                current = name
            else:
                skipped.add(name)
            continue
        if current is not None:
            if (
                line.startswith(("Only ", "Completed:", "Failed ", "----------"))
                and len(details) > 3
            ):
                flush()
                current = None
            else:
                details.append(line)
    flush()
    # A test retried after a failure is reported twice; the last word counts.
    passed -= set(failed)
    return SuiteResult(frozenset(passed), failed, frozenset(skipped), output)


def run_mtr(
    server: MtrServer,
    host: str,
    port: int,
    socket: str,
    tests: Iterable[str],
    extra: Sequence[str] = (),
    timeout: float = 600.0,
) -> SuiteResult:
    """
    Run C{tests} of MariaDB's suite with C{--extern} against C{host:port} (and C{socket} for
    connections to C{localhost}), as C{root} without a password, in C{server}'s var directory.

    @param extra: more C{mariadb-test-run} options, e.g. C{--ps-protocol}.
    """
    args = [
        f"--extern=host={host}",
        f"--extern=port={port}",
        f"--extern=socket={socket}",
        "--extern=user=root",
        "--force",
        "--max-test-fail=0",
        "--retry=0",
        "--testcase-timeout=2",
        *extra,
        *tests,
    ]
    started = time.monotonic()
    done = subprocess.run(
        _mtr_command(server.vardir, args),
        cwd=MTR_DIR,
        env=_mtr_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = parse_mtr_output(done.stdout + done.stderr)
    return attrs.evolve(result, seconds=time.monotonic() - started)


# -- MySQL Connector/Python's tests ---------------------------------------------------------


def connector_sdist(version: str | None = None) -> Path:
    """
    The unpacked sdist of mysql-connector-python C{version} (default L{CONNECTOR_VERSION}),
    downloaded with pip into the cache on first use.

    @raise TestbedError: if pip cannot download it.
    """
    if version is None:
        version = CONNECTOR_VERSION
    cache = cache_dir()
    target = cache / f"mysql-connector-python-{version}"
    if (target / "unittests.py").is_file():
        return target
    download = cache / "download"
    download.mkdir(parents=True, exist_ok=True)
    archives = sorted(download.glob(f"mysql[-_]connector[-_]python-{version}.tar.gz"))
    if not archives:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--no-binary",
                ":all:",
                "-d",
                str(download),
                f"mysql-connector-python=={version}",
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        archives = sorted(download.glob(f"mysql[-_]connector[-_]python-{version}.tar.gz"))
        if done.returncode != 0 or not archives:
            raise TestbedError(
                f"pip download of the mysql-connector-python {version} sdist failed",
                (done.stdout + done.stderr)[-4000:],
            )
    staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=cache))
    try:
        with tarfile.open(archives[-1]) as archive:
            archive.extractall(staging)  # noqa: S202 - pip-verified sdist from PyPI
        (top,) = [p for p in staging.iterdir() if p.is_dir()]
        if target.exists():
            shutil.rmtree(target)
        os.replace(top, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_connector(
    host: str,
    port: int,
    user: str,
    password: str,
    modules: Sequence[str] = CONNECTOR_MODULES,
    timeout: float = 600.0,
) -> SuiteResult:
    """
    Run Connector/Python's tests of C{modules} against C{host:port} as C{user}.
    """
    sdist = connector_sdist()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cpy-") as scratch:
        report = os.path.join(scratch, "report.json")
        repo_root = str(Path(__file__).resolve().parent.parent.parent)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the sdist's own "tests" package must win
        done = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("connector_driver.py")),
                str(sdist),
                host,
                str(port),
                user,
                password,
                report,
                *modules,
            ],
            cwd=repo_root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = done.stdout + done.stderr
        if not os.path.exists(report):
            raise TestbedError("the Connector/Python tests did not run", output[-4000:])
        with open(report) as f:
            data = json.load(f)
    return SuiteResult(
        frozenset(data["passed"]),
        data["failed"],
        frozenset(data["skipped"]),
        output,
        time.monotonic() - started,
    )
