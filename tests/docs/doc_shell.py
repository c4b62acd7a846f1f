"""
Running the shell examples of a page as a reader would, against the test bed's real servers.

A L{PageShell} runs a page's command lines in order, in one place: a server a line starts
(C{twistd ... obproxy}, C{examples/server.py}) keeps running for the lines after it (the
C{mariadb} lines that connect to it, the C{kill} that stops it) until the next one starts or the
page ends, as when the reader stops one with Ctrl-C before starting the next. What is the
reader's own (ports, server addresses, paths under C{/etc}, C{/run}, C{/opt}, the peer nodes'
addresses, a password typed at a prompt) is replaced by the test's real one (L{PageShell.fill});
everything else runs as written, through C{bash}.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

from obproxy_tx.wire.scramble import native_password_verifier, verifier_to_hex
from tests.testbed import Server, free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
#: The reader's C{twistd}: this interpreter's, with the Prometheus endpoint off unless the line
#: sets it (its port 2884 is one for the whole machine; tests and other runs would contend).
TWISTD = """#!{python}
import sys
args = sys.argv[1:]
if "obproxy" in args and not any("prometheus" in a for a in args):
    args[args.index("obproxy") + 1 : args.index("obproxy") + 1] = ["-o", "enable_prometheus=false"]
sys.argv = ["twistd", *args]
from twisted.scripts.twistd import run
run()
"""

#: What systemd does for a socket unit: the listening socket as fd 3, C{LISTEN_PID} (this very
#: process: exec keeps the pid), C{LISTEN_FDS} and C{LISTEN_FDNAMES}, then the command line.
SYSTEMD_ACTIVATION = """
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(50)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)  # dup2 onto itself (fd 3 already) keeps close-on-exec
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="obproxy.socket")
os.execvp(sys.argv[2], sys.argv[2:])
"""


def split_line(line: str) -> List[str]:
    """
    The words of a command line, without its comment.
    """
    return shlex.split(line, comments=True)


class PageShell:
    """
    The command lines of one page, run in order with the servers they start.

    @ivar tmp: the page's scratch directory (configuration copies, pid files, sockets).
    @ivar env: the environment of every command (C{eval} lines add to it).
    """

    def __init__(self, tmp: Path, mariadb: Server, seekdb: Server, certs_dir: Path) -> None:
        self.tmp = tmp
        self.mariadb = mariadb
        self.seekdb = seekdb
        self.certs = certs_dir
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(ROOT)
        self.env["PYTHONUNBUFFERED"] = "1"
        # The reader's python is this interpreter; a bare "python" must be it too.
        bin_dir = tmp / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "python").symlink_to(sys.executable)
        (bin_dir / "twistd").write_text(TWISTD.format(python=sys.executable), encoding="utf-8")
        (bin_dir / "twistd").chmod(0o755)
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
        # The reader's directory: the checkout's files, and room for what twistd writes there
        # (twistd.pid, twistd.log: not into the shared checkout).
        self.cwd = tmp / "checkout"
        self.cwd.mkdir()
        for name in ("examples", "tests", "obproxy_tx", "twisted", "Makefile", "fuzz", "bench"):
            if (ROOT / name).exists():
                (self.cwd / name).symlink_to(ROOT / name)
        # The page's own port numbers, each a free one here.
        self.ports = {n: free_port() for n in ("2883", "3307", "2999", "2999b")}
        self.server: subprocess.Popen[str] | None = None
        self.daemon_pidfile: Path | None = None
        self.log: List[str] = []
        #: The example command plugin is installed where the proxy finds it.
        self.plugins_installed = False
        #: The lines of L{NOT_RUNNABLE} met, with why.
        self.not_run: List[Tuple[str, str]] = []

    # -- placeholders -------------------------------------------------------------------

    def fill(self, line: str) -> str:
        """
        The line with the reader's own values replaced by the test's.
        """
        maria = f"127.0.0.1:{self.mariadb.port}"
        seek = f"127.0.0.1:{self.seekdb.port}"
        p = self.ports
        subs = [
            ("<seekdb port>", str(self.seekdb.port)),
            ("127.0.0.1:PORT", seek),
            # Servers behind the proxy: seekdb for OceanBase (port 2881), MariaDB (3306).
            ('"10.0.0.1:2881;10.0.0.2:2881"', f'"{seek}"'),
            ("127.0.0.1:2881", seek),
            ("127.0.0.1:3306", maria),
            ("--port 3306", f"--port {self.mariadb.port}"),
            ("--user u --password pw", "--user native_user --password native_pw"),
            ("--tls-ca ca.pem", f"--tls-ca {self.certs / 'ca.pem'}"),
            ("--tls-cert server.pem", f"--tls-cert {self.certs / 'server-cert.pem'}"),
            ("--tls-key server-key.pem", f"--tls-key {self.certs / 'server-key.pem'}"),
            # The MariaDB account the proxy reads users with.
            (
                "metadata_user=obproxy_meta,metadata_password=secret",
                "metadata_user=admin,metadata_password=admin_pw",
            ),
            # Proxy nodes: this one, and a second that is not running.
            ("tcp:2999:interface=10.0.0.1", f"tcp:{p['2999']}:interface=127.0.0.1"),
            ("10.0.0.1:2999", f"127.0.0.1:{p['2999']}"),
            ("10.0.0.2:2999", f"127.0.0.1:{p['2999b']}"),
            ("proxy_cluster_secret=...", "proxy_cluster_secret=a-long-random-string-for-docs"),
            # Files of the reader's machine.
            ("/run/obproxy.pid", str(self.tmp / "obproxy.pid")),
            ("/var/log/obproxy.log", str(self.tmp / "obproxy.log")),
            ("/etc/obproxy.yaml", str(self.conf())),
            ("/tmp/obproxy.sock", str(self.tmp / "obproxy.sock")),
            # (with the checkout's path: here the checkout is the installed proxy)
            ("PYTHONPATH=/opt/obproxy-plugins", f'PYTHONPATH={self.tmp / "plugins"}:"$PYTHONPATH"'),
            ("/opt/obproxy-plugins", str(self.tmp / "plugins")),
            # Listening where the page's port is (its servers are given with -r).
            ("examples/mariadb.yaml", str(self.conf("mariadb.yaml"))),
            # A TLS login as a user the proxy requires TLS of (tls_user: REQUIRE SSL on MariaDB
            # too); the password the reader types at the prompt of -p.
            ("-h proxy.example.com", "-h localhost"),
            ("-u app -p ", "-u tls_user -ptls_pw "),
            ("/etc/obproxy/proxy-ca.pem", str(self.certs / "ca.pem")),
        ]
        for old, new in subs:
            line = line.replace(old, new)
        line = re.sub(r"(?<![\w./-])conf\.yaml\b", str(self.conf()), line)
        line = re.sub(r"(?<![\d.])2883(?!\d)", str(p["2883"]), line)
        line = re.sub(r"(?<![\d.])3307(?!\d)", str(p["3307"]), line)
        return line

    def conf(self, name: str = "conf.yaml") -> Path:
        """
        The reader's C{conf.yaml} (or another of C{examples/}): the example's, on this page's
        port and with the test bed's seekdb for its servers.
        """
        path = self.tmp / name
        if not path.exists():
            text = (ROOT / "examples" / name).read_text(encoding="utf-8")
            text = text.replace("listen_port: 2883", f"listen_port: {self.ports['2883']}")
            text = text.replace("127.0.0.1:2881", f"127.0.0.1:{self.seekdb.port}")
            path.write_text(text, encoding="utf-8")
        return path

    def fill_config(self, text: str) -> Path:
        """
        A configuration a page shows, as the reader makes it theirs: TLS turned on with the
        files it names (here the test bed's), its servers the test bed's MariaDB, its user
        C{app} the test bed's C{tls_user}. Written to a file, whose path is returned.
        """
        certs = self.certs
        cert, key = certs / "server-cert.pem", certs / "server-key.pem"
        tls_verifier = verifier_to_hex(native_password_verifier(b"tls_pw"))
        subs = [
            ("enable_client_ssl: false", "enable_client_ssl: true"),
            ("# client_ssl_cert: /etc/obproxy/proxy-cert.pem", f"client_ssl_cert: {cert}"),
            ("# client_ssl_key: /etc/obproxy/proxy-key.pem", f"client_ssl_key: {key}"),
            ("# server_ssl_ca: /etc/obproxy/db-ca.pem", f"server_ssl_ca: {certs}/ca.pem"),
            # The name in the test bed's server certificate.
            ("server_ssl_identity: db.internal.example.com", "server_ssl_identity: localhost"),
            ('"10.0.0.11:3306", "10.0.0.12:3306"', f'"127.0.0.1:{self.mariadb.port}"'),
            (
                'name: app, verifier: "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"',
                f'name: tls_user, verifier: "{tls_verifier}"',
            ),
        ]
        for old, new in subs:
            assert old in text, f"the page's configuration changed: {old!r} is not in it"
            text = text.replace(old, new)
        path = self.tmp / "page.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    # -- running ------------------------------------------------------------------------

    def run(self, line: str, stdin: str = "", timeout: float = 120, log: bool = True) -> str:
        """
        Run one (filled) command line through bash; it must succeed. Returns its output.
        """
        result = subprocess.run(
            ["bash", "-c", line],
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        self.log.append(f"$ {line}\n{result.stdout if log else ''}")
        assert result.returncode == 0, f"{line!r} failed ({result.returncode}):\n{result.stdout}"
        return result.stdout

    def eval_line(self, line: str) -> None:
        """
        C{eval "$(...)"}: the variables it exports are in the environment of the next lines.
        """
        out = self.run(f"{line} && env -0", log=False)  # the environment: not for the log
        for item in out.split("\0"):
            name, sep, value = item.partition("=")
            if sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                self.env[name] = value

    def start(self, line: str, listens: str) -> None:
        """
        Start a server in the foreground (C{twistd -n}, C{make run}, C{examples/server.py}) and
        wait until it accepts connections on C{listens} (C{tcp:HOST:PORT} or C{unix:PATH}).
        """
        self.stop()
        if "listen=systemd:" in line:
            port = listens.rsplit(":", 1)[1]
            line = f"python -c {shlex.quote(SYSTEMD_ACTIVATION)} {port} {line}"
        self.log.append(f"$ {line} &")
        # exec: the server is the process started (and signalled), after its assignments.
        assignments, command = re.match(r"((?:[A-Z_]+=\S*\s+)*)(.*)", line, re.S).groups()  # type: ignore[union-attr]
        self.server = subprocess.Popen(
            ["bash", "-c", f"{assignments}exec {command}"],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.wait_listening(listens, self.server)

    def wait_listening(self, listens: str, process: subprocess.Popen[str] | None) -> None:
        """
        Wait until C{listens} accepts a connection (the process, if given, still running).
        """
        deadline = time.monotonic() + START_TIMEOUT
        kind, _, where = listens.partition(":")
        while True:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"{listens}: the server exited:\n{process.communicate()[0]}")
            try:
                if kind == "unix":
                    with socket.socket(socket.AF_UNIX) as s:
                        s.settimeout(1)
                        s.connect(where)
                else:
                    host, _, port = where.rpartition(":")
                    socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"nothing listens on {listens}"
                time.sleep(0.2)

    def stop(self) -> None:
        """
        Stop the running server (SIGTERM, as Ctrl-C or systemd would), which must exit.
        """
        server, self.server = self.server, None
        if server is None:
            return
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                raise AssertionError(f"{server.args!r}: did not stop on SIGTERM") from None
        with contextlib.suppress(ValueError):  # its output already read by a failure
            self.log.append(f"[server output]\n{server.communicate()[0]}")

    def close(self) -> None:
        """
        Stop whatever the page left running (the server, a daemon of its own).
        """
        try:
            self.stop()
        finally:
            pidfile = self.daemon_pidfile
            if pidfile is not None and pidfile.exists():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)

    def mysql_check(self, args: str) -> str:
        """
        Log in with the C{mariadb} client and run C{SELECT 1}: what a reader does first.
        """
        out = self.run(f"mariadb --batch {args} -e 'SELECT 1 AS answer'")
        assert out.split() == ["answer", "1"], out
        return out
