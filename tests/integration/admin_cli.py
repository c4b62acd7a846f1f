"""
Drive the real C{mariadb} command-line client, as the ODP documentation's transcripts do.

Two ways:

  - L{InteractiveCLI}: an interactive session on a pseudo-terminal.  Only an interactive client
    prints what the transcripts show after a killed session (C{ERROR 2006 (HY000): ... gone away},
    C{No connection. Trying to reconnect...}, C{Connection id:    N},
    C{Current database: *** NONE ***}): in batch mode the client neither reconnects nor prints
    those lines.  L{InteractiveCLI.run} sends one statement and reads until the next prompt.
  - L{batch}: C{mariadb -t -e ...} (or the statements on stdin) for table output in one go.

Plus parsers for what the client prints: L{parse_tables} (the C{+---+} boxes), L{parse_errors}
(C{ERROR n (state): message} lines) and L{reconnected_id} (the id after a reconnect).

Everything here blocks; tests whose proxy runs on the test reactor call it from a worker thread
(L{tests.proxy_fixtures.in_thread}).  Only the standard library is used (C{pty}, C{os},
C{select}), so no C{pexpect}.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from typing import Dict, List, Sequence, Tuple

import attrs

from tests.testbed.mariadb import find_program

#: The prompt our sessions use: unlikely in any output, so "the next prompt" is unambiguous.
PROMPT = "obproxy-h4-cli> "

#: Terminal width given to the client: wide enough that editline never wraps an echoed statement
#: or a table line (wrapping would insert line breaks into what we parse).
_COLUMNS = 4000

#: ANSI escape sequences (a C{TERM=dumb} editline should emit none, but be safe) and the bell the
#: client rings after an error.
_NOISE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\x07")

_ERROR = re.compile(r"^ERROR (\d+) \(([0-9A-Z]{5})\)(?: at line \d+)?: (.*)$", re.MULTILINE)
_BANNER_ID = re.compile(r"Your \S+ connection id is (\d+)")
_RECONNECT_ID = re.compile(r"^Connection id:\s+(\d+)\s*$", re.MULTILINE)

#: What the client prints when it reconnects (interactive mode only).
RECONNECTING = "No connection. Trying to reconnect..."
NO_DATABASE = "Current database: *** NONE ***"


class CLITimeoutError(Exception):
    """
    The client did not print its prompt (or exit) in time.

    @ivar output: everything read so far.
    """

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}; output so far: {output[-3000:]!r}")
        self.output = output


def _command(
    host: str,
    port: int,
    user: str,
    database: str | None,
    extra: Sequence[str],
) -> List[str]:
    cmd = [
        find_program("mariadb", "mysql"),
        "--no-defaults",
        f"--host={host}",
        f"--port={port}",
        f"--user={user}",
        "--protocol=TCP",
        # The transcripts show using_ssl 0; the proxy offers no TLS unless configured, but say
        # so rather than depend on the client's default.
        "--skip-ssl",
        "--connect-timeout=10",
    ]
    cmd += list(extra)
    if database:
        cmd.append(database)
    return cmd


def _environment(password: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["MYSQL_PWD"] = password  # off the command line
    env["TERM"] = "dumb"  # editline: no cursor movement, no colours
    env["MYSQL_HISTFILE"] = "/dev/null"
    env.pop("MYSQL_HOST", None)
    env.pop("MYSQL_TCP_PORT", None)
    return env


def clean(data: bytes) -> str:
    """
    The text a terminal would show for C{data}: CR-LF as LF, escape sequences and bells removed.
    """
    text = _NOISE.sub(b"", data).decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "")


class InteractiveCLI:
    """
    One interactive C{mariadb} session on a pseudo-terminal.

    Started with C{--reconnect} (the interactive default, stated so the transcripts' reconnect
    messages are certain), C{-A} (no table-name completion: the transcripts' C{obclient -A}),
    a distinctive prompt and a very wide terminal.

    @ivar banner: what the client printed before its first prompt.
    @ivar connection_id: the connection id the banner announced (the proxy's handshake id).
    @ivar transcript: everything sent and received, for failure messages.
    """

    def __init__(
        self,
        port: int,
        user: str,
        password: str,
        *,
        host: str = "127.0.0.1",
        database: str | None = None,
        timeout: float = 10.0,
        extra: Sequence[str] = (),
    ) -> None:
        """
        Start the client and wait for its first prompt.

        @param timeout: the default seconds to wait for a prompt.
        @param extra: more command-line options.
        @raise CLITimeoutError: if no prompt came (e.g. the login failed: the output says why).
        """
        self.timeout = timeout
        self.transcript = ""
        options = ["--reconnect", "-A", f"--prompt={PROMPT}", *extra]
        cmd = _command(host, port, user, database, options)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, _COLUMNS, 0, 0))
        # No echo from the terminal itself: a statement typed before editline takes the terminal
        # would otherwise be echoed twice (by the line discipline, then by editline).
        attributes = termios.tcgetattr(slave)
        attributes[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attributes)
        try:
            self._process = subprocess.Popen(
                cmd,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=_environment(password),
                start_new_session=True,  # the pty becomes its controlling terminal
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._fd: int | None = master
        self._pending = b""
        try:
            self.banner = self.read_until_prompt()
        except BaseException:
            self.close()
            raise
        found = _BANNER_ID.search(self.banner)
        if found is None:
            self.close()
            raise CLITimeoutError("the client printed no connection id", self.banner)
        self.connection_id = int(found.group(1))

    def _read_some(self, deadline: float) -> bool:
        """
        Read what is available before C{deadline}; C{False} at end of file.
        """
        assert self._fd is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        ready, _, _ = select.select([self._fd], [], [], min(remaining, 0.5))
        if not ready:
            return True
        try:
            data = os.read(self._fd, 65536)
        except OSError:  # EIO: the client exited and the pty's other side is closed
            return False
        if not data:
            return False
        self._pending += data
        return True

    def read_until_prompt(self, timeout: float | None = None) -> str:
        """
        Read until the client prints its prompt (it then waits for input).

        @return: the text before the prompt (L{clean}ed).
        @raise CLITimeoutError: if the prompt does not come within C{timeout} seconds (default: the
            session's), or the client exits.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        marker = PROMPT.encode()
        while True:
            # The prompt is the last thing printed before the client blocks on input, so it must
            # end the data read so far (a prompt-like text inside a result would not).
            index = self._pending.find(marker)
            if index >= 0 and not self._pending[index + len(marker) :].strip(b"\x07"):
                text = clean(self._pending[:index])
                self._pending = b""
                self.transcript += text + PROMPT
                return text
            if time.monotonic() >= deadline:
                raise CLITimeoutError("no prompt", clean(self._pending))
            if not self._read_some(deadline):
                raise CLITimeoutError(
                    f"the client exited (status {self._process.poll()})", clean(self._pending)
                )

    def send(self, statement: str) -> None:
        """
        Type C{statement} and Enter, without waiting for the answer (see L{read_until_prompt}).
        """
        assert self._fd is not None
        line = statement.rstrip()
        self.transcript += line + "\n"  # the terminal does not echo it (see __init__)
        os.write(self._fd, line.encode() + b"\n")

    def run(self, statement: str, timeout: float | None = None) -> str:
        """
        Type C{statement}, wait for the next prompt and return what the client printed.

        @return: the output, without the echoed statement and without the prompt.
        """
        self.send(statement)
        text = self.read_until_prompt(timeout)
        return strip_echo(text, statement)

    def close(self) -> None:
        """
        Quit the client (C{quit}, then signals if it lingers) and close the terminal.
        """
        if self._fd is None:
            return
        try:
            if self._process.poll() is None:
                with contextlib.suppress(OSError):  # the client may be gone already
                    os.write(self._fd, b"quit\n")
                try:
                    self._process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self._process.send_signal(signal.SIGKILL)
                    self._process.wait(timeout=5)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InteractiveCLI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def strip_echo(text: str, statement: str) -> str:
    """
    C{text} without the terminal's echo of C{statement} (its first line or lines).
    """
    echoed = statement.rstrip() + "\n"
    while text.startswith(echoed):
        text = text[len(echoed) :]
    return text


@attrs.frozen
class BatchResult:
    """
    What a batch run of the client printed.

    @ivar returncode: its exit status.
    @ivar stdout: its standard output (tables with C{-t}).
    @ivar stderr: its standard error (C{ERROR ...} lines).
    """

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Standard output, then standard error."""
        return self.stdout + self.stderr


def batch(
    port: int,
    user: str,
    password: str,
    sql: str,
    *,
    host: str = "127.0.0.1",
    database: str | None = None,
    table: bool = True,
    stdin: bool = False,
    force: bool = False,
    timeout: float = 30.0,
) -> BatchResult:
    """
    Run C{sql} with the client in batch mode.

    @param table: C{-t}: print results as boxed tables (as the transcripts show them).
    @param stdin: feed C{sql} on standard input instead of C{-e}.
    @param force: C{--force}: go on after a failing statement.
    """
    extra = ["-t"] if table else ["--batch"]
    if force:
        extra.append("--force")
    if not stdin:
        extra += ["-e", sql]
    cmd = _command(host, port, user, database, extra)
    proc = subprocess.run(
        cmd,
        input=sql if stdin else None,
        stdin=None if stdin else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(password),
        check=False,
    )
    return BatchResult(proc.returncode, proc.stdout, proc.stderr)


@attrs.frozen
class Table:
    """
    One boxed result table as the client prints it.

    @ivar columns: the header's column names.
    @ivar rows: the cells, as printed (C{NULL} is the text C{"NULL"}); cells are stripped of the
        padding, so a value's own leading or trailing blanks are lost.
    @ivar footer: the C{N row(s) in set ...} line after it, if any.
    """

    columns: Tuple[str, ...]
    rows: Tuple[Tuple[str, ...], ...]
    footer: str = ""

    def records(self) -> List[Dict[str, str]]:
        """
        The rows as C{{column: cell}} (a repeated column name keeps the last cell).
        """
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> List[str]:
        """
        The cells of the column C{name}.
        """
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


def _cells(line: str, bounds: Sequence[int]) -> Tuple[str, ...]:
    return tuple(line[a + 1 : b].strip() for a, b in zip(bounds, bounds[1:]))


def parse_tables(text: str) -> List[Table]:
    """
    Every C{+---+} table in C{text}, in order.

    Cells are cut at the C{+} positions of the border above them, so a C{|} inside a value does
    not split it.
    """
    tables: List[Table] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not (line.startswith("+-") and line.endswith("+") and set(line) <= {"+", "-"}):
            i += 1
            continue
        bounds = [k for k, ch in enumerate(line) if ch == "+"]
        # +---+ / | header | / +---+ / rows... / +---+
        if i + 2 >= len(lines) or not lines[i + 1].startswith("|"):
            i += 1
            continue
        columns = _cells(lines[i + 1], bounds)
        j = i + 3
        rows: List[Tuple[str, ...]] = []
        while j < len(lines) and lines[j].startswith("|"):
            rows.append(_cells(lines[j], bounds))
            j += 1
        footer = ""
        if j + 1 < len(lines) and re.match(r"^\d+ rows? in set", lines[j + 1]):
            footer = lines[j + 1].strip()
        tables.append(Table(columns, tuple(rows), footer))
        i = j + 1
    return tables


def only_table(text: str) -> Table:
    """
    The one table in C{text}.

    @raise AssertionError: if there is not exactly one.
    """
    tables = parse_tables(text)
    assert len(tables) == 1, f"expected one table in {text!r}"
    return tables[0]


@attrs.frozen
class ErrorLine:
    """
    An C{ERROR code (sqlstate): message} line the client printed.
    """

    code: int
    sqlstate: str
    message: str


def parse_errors(text: str) -> List[ErrorLine]:
    """
    Every C{ERROR ...} line in C{text}, in order.
    """
    return [ErrorLine(int(m.group(1)), m.group(2), m.group(3)) for m in _ERROR.finditer(text)]


def reconnected_id(text: str) -> int | None:
    """
    The id in the C{Connection id:    N} line the client prints after reconnecting, if any.
    """
    found = _RECONNECT_ID.search(text)
    return int(found.group(1)) if found else None
