"""
Every code example in the docs (the Sphinx pages in C{docs/} and the README) is run or checked
here, by its language:

  - C{python}: a complete program is run (C{docs/embedding.md}); a C{.tac} file is run by
    C{twistd -ny} and a client logs in through it; the fragments of L{RUN_IN_CONTEXT} are run
    with what they take as given, and a C{mariadb} client must get its answers from them (the
    proxy core started by hand in front of seekdb, a protocol-framework session); a fragment
    quoted from an example file must be in that file, line by line and in order (the example
    files are run by their own tests), or the test fails; only the L{SKETCHES} are just
    compiled, each with why.
  - C{yaml}: a configuration, loaded by the proxy's own parser (L{parse_config}); the one a page
    starts a proxy with (TLS on both sides) is run by the page's shell examples.
  - C{toml}: parsed, and equal to the file it shows.
  - C{sql}: each statement is recognised by the admin command registry with its grammar.
  - C{sh}: a page's command lines are run in order, as the reader would, against the test bed's
    real servers (L{tests.docs.doc_shell}): C{twistd ... obproxy} started (foreground, daemon
    with its pid file and log, unix socket, IPv6, a systemd socket handed over as systemd does,
    four workers and proxy-node items) and logged into with the C{mariadb} client, C{make run},
    the C{mariadb}/C{mysql} lines against what the page started (a result shown in a comment
    must come out), C{kill} against the daemon, C{eval "$(...)"} with its variables kept for
    the next lines, C{pip install} of the example plugin into a directory that the next proxy
    uses (its command must answer), the example server and client, C{make testbed-up/down}
    with a test bed of the page's own. Only the lines of L{NOT_RUNNABLE} are not run, each
    with why (their make target or module must exist).

A block in a language with no rule, or a command line with none, fails the test, so a new kind
of example cannot go untested by accident.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, List, NamedTuple

import pytest

from tests.docs.doc_shell import PageShell, split_line
from tests.testbed import Server, free_port
from tests.testbed.certs import TLSCerts

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: Languages that are not code: diagrams, directory trees, sample output.
NOT_CODE = {"text", "", "mermaid"}
#: Example files that doc fragments quote.
QUOTED = {
    "command-plugins.md": sorted((ROOT / "examples" / "command_plugin").rglob("*.py")),
    "protocol-framework.md": [ROOT / "examples" / "server.py"],
    "running.md": [ROOT / "examples" / "embedded_proxy.py"],
}


class Block(NamedTuple):
    """A fenced code block: where it is, its language and its text."""

    page: str
    line: int
    lang: str
    code: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.lang})"


def _blocks_of(page: str, text: str) -> Iterator[Block]:
    for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, re.M | re.S):
        lang = m.group(1).strip()
        if lang.startswith("{"):  # a MyST directive, not an example
            continue
        yield Block(page, text.count("\n", 0, m.start()) + 1, lang, m.group(2))


def all_blocks() -> List[Block]:
    """
    The code blocks of every page and of the README.
    """
    blocks: List[Block] = []
    for path in sorted(DOCS.rglob("*.md")):
        if "_build" in path.parts:
            continue
        blocks.extend(_blocks_of(str(path.relative_to(DOCS)), path.read_text(encoding="utf-8")))
    # The README: the quick start includes part of it, and it is the first page a reader sees.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks.extend(_blocks_of("../README.md", readme))
    return [b for b in blocks if b.lang not in NOT_CODE]


BLOCKS = all_blocks()


def test_every_block_has_a_rule() -> None:
    """
    Only languages this module knows how to run or check appear in the docs.
    """
    known = {"python", "yaml", "toml", "sql", "sh"}
    assert {b.lang for b in BLOCKS} <= known, [str(b) for b in BLOCKS if b.lang not in known]
    assert len(BLOCKS) > 20


def _by(lang: str) -> List[Block]:
    return [b for b in BLOCKS if b.lang == lang]


def _run_python(code: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    return result.stdout


#: Fragments that are run: the page's fragment is put between a head (what it takes as given)
#: and a tail that serves one client with it; the tail prints what the C{mariadb} client, run
#: against it, must answer.
RUN_IN_CONTEXT = {
    # The proxy core started by hand: it must greet and serve a client in front of seekdb.
    "proxy.md": (
        """
import sys
from twisted.internet import endpoints, reactor
from obproxy_tx.config import parse_config
from obproxy_tx.session.manager import SessionManager
config = parse_config(
    f"listen_port: {sys.argv[2]}\\nclusters:\\n  - name: obcluster\\n    type: oceanbase\\n"
    f"    servers: ['127.0.0.1:{sys.argv[1]}']\\n"
    "    users:\\n      - {name: root, tenant: sys, verifier: ''}\\n"
)
""",
        "",
        "-uroot@sys -e 'SELECT 1 AS answer'",
        r"^1\n$",
    ),
    # A session of the protocol framework: it answers SELECT 1 and an INSERT, and refuses
    # the rest with a syntax error.
    "protocol-framework.md": (
        """
import sys
from twisted.cred.portal import Portal
from twisted.internet import endpoints, reactor
from zope.interface import implementer
from obproxy_tx.auth import InMemoryMySQLChecker, MySQLRealm
from obproxy_tx.protocol.interfaces import OK, ConnectionInfo, IMySQLSession, ResultSet
from obproxy_tx.protocol.interfaces import ServerError
from obproxy_tx.protocol.server import MySQLServerFactory
checker = InMemoryMySQLChecker()
checker.add_user("demo", "demo_pw")
""",
        """
reactor.listenTCP(int(sys.argv[2]), MySQLServerFactory(portal, reactor=reactor))
""",
        "-udemo -pdemo_pw -e 'SELECT 1; INSERT INTO t VALUES (1); SELEC 2'",
        r"^1\n.*ERROR 1064 \(42000\) at line 1: .*'SELEC 2'",
    ),
}

#: After a fragment of L{RUN_IN_CONTEXT} (listening on C{sys.argv[2]}): one C{mariadb} client
#: run against it while the reactor serves, whose output is printed.
SERVE_MAIN = """
import subprocess
from twisted.internet import threads

def _client():
    return subprocess.run(
        ["mariadb", "--batch", "--skip-column-names", "-h127.0.0.1", "-P" + sys.argv[2], *ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
    ).stdout

def _done(result):
    print(result if isinstance(result, str) else result.getTraceback(), end="")
    reactor.stop()

reactor.callWhenRunning(lambda: threads.deferToThread(_client).addBoth(_done))
reactor.run()
"""

#: Fragments that are neither run nor quoted from a file (by page and a text of theirs), with
#: why; each must still compile, and the API it shows must exist.
SKETCHES = {
    ("command-plugins.md", "await context.session.side_query("): (
        "an execute of another command than the example's, to show side_query; no example"
        " file has one, and running it takes a whole plugin",
        "obproxy_tx.session.client_session:ClientSession.side_query",
    ),
}


def _normal(line: str) -> str:
    # A line of a quotation: less its trailing comment, its elision and indentation.
    line = re.split(r"\s+#", line)[0].strip()
    if line.endswith("..."):
        line = line[:-3].rstrip()
    return line


def _quoted_from(code: str, source: Path) -> List[str]:
    """
    The lines of C{code} that are not in C{source} in the same order (elisions allowed).
    """
    lines = [_normal(line) for line in source.read_text(encoding="utf-8").splitlines()]
    missing, at = [], 0
    for line in map(_normal, code.splitlines()):
        if not line:
            continue
        try:
            at = lines.index(line, at) + 1
        except ValueError:
            missing.append(line)
    return missing


@pytest.mark.parametrize("block", _by("python"), ids=str)
def test_python(
    block: Block, tmp_path: Path, mariadb: Server, seekdb: Server, tls_certs: TLSCerts
) -> None:
    """
    Python examples: run (a whole program, a .tac file, or a fragment with what it takes as
    given), or quoted line by line and in order from an example file that its tests run. A
    fragment that drifted from its file fails; only the L{SKETCHES} are just compiled.
    """
    code = block.code
    if "task.react(" in code:
        out = _run_python(code, tmp_path)
        assert "greets with protocol version 10" in out
        return
    if "Application(" in code and "load_config(" in code:
        # A .tac file, run by twistd -y as the page says, with its configuration file and
        # servers the test's: a client logs in through it.
        shell = PageShell(tmp_path, mariadb, seekdb, Path(tls_certs.ca).parent)
        tac = tmp_path / "obproxy.tac"
        tac.write_text(shell.fill(code), encoding="utf-8")
        port = shell.ports["2883"]
        try:
            shell.start(f"twistd -ny {tac} --pidfile=", f"tcp:127.0.0.1:{port}")
            shell.mysql_check(f"-h127.0.0.1 -P{port} -uroot@sys")
        finally:
            shell.close()
            print("\n".join(shell.log))
        return
    if block.page in RUN_IN_CONTEXT:
        _run_in_context(block, tmp_path, seekdb)
        return
    sketches = [
        why for (page, text), why in SKETCHES.items() if page == block.page and text in code
    ]
    if sketches:
        sketch = sketches[0]
        module, _, name = sketch[1].partition(":")
        owner, _, attribute = name.partition(".")
        assert hasattr(getattr(__import__(module, fromlist=[owner]), owner), attribute), sketch
        _compile_fragment(block)
        return
    sources = QUOTED.get(block.page)
    assert sources, f"{block}: not run, not quoted from a file, not a listed sketch"
    misses = {source.name: _quoted_from(code, source) for source in sources}
    best = min(misses.items(), key=lambda item: len(item[1]))
    assert not best[1], f"{block} is no longer what {best[0]} says: {best[1]}"


def _run_in_context(block: Block, tmp_path: Path, seekdb: Server) -> None:
    head, tail, args, expected = RUN_IN_CONTEXT[block.page]
    program = "\n".join(
        [
            "from __future__ import annotations",
            head,
            block.code,
            tail,
            f"FRAGMENT = {block.code!r}",
            f"ARGS = {shlex.split(args)!r}",
            SERVE_MAIN,
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", program, str(seekdb.port), str(free_port())],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    ).stdout
    assert re.search(expected, out, re.S), f"{block}:\n{out}"


def _compile_fragment(block: Block) -> None:
    # __future__ imports stay at the top; the rest may use await (fragments of coroutines).
    code = block.code
    future = [line for line in code.splitlines() if line.startswith("from __future__")]
    rest = "\n".join(line for line in code.splitlines() if line not in future)
    body = textwrap.indent(rest, "    ")
    head = "\n".join(future)
    compile(f"{head}\nasync def _example():\n{body}\n", str(block), "exec")


@pytest.mark.parametrize("block", _by("yaml"), ids=str)
def test_yaml(block: Block) -> None:
    """
    Configuration examples are accepted by the proxy's parser.
    """
    from obproxy_tx.config import parse_config

    # The placeholder pages write for a verifier of the reader's own ('*...').
    text = block.code.replace("'*...'", "'*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9'")
    if "clusters:" not in text:
        # A fragment of items (e.g. the proxy-node settings): with a minimal cluster.
        text += 'clusters:\n  - name: c\n    servers: ["127.0.0.1:2881"]\n'
    parse_config(text, source=str(block), saved=False)


@pytest.mark.parametrize("block", _by("toml"), ids=str)
def test_toml(block: Block) -> None:
    """
    The plugin packaging example is the example plugin's pyproject.toml.
    """
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the suite may run on PyPy 3.9
    shown = tomllib.loads(block.code)
    actual = tomllib.loads(
        (ROOT / "examples" / "command_plugin" / "pyproject.toml").read_text(encoding="utf-8")
    )
    # What the page shows is there with the same values (the file may have more keys).
    for table, items in shown.items():
        for key, value in items.items():
            assert actual[table][key] == value, (table, key)


@pytest.mark.parametrize("block", _by("sql"), ids=str)
def test_sql(
    block: Block, tmp_path: Path, mariadb: Server, seekdb: Server, tls_certs: TLSCerts
) -> None:
    """
    The admin statements shown are recognised, grammar and all, by the command registry, and
    run: one C{mariadb} session as C{root@sys} through a C{twistd obproxy} in front of seekdb
    (examples/conf.yaml), where each must succeed (a SHOW of items answers rows).
    """
    from obproxy_tx.admin.registry import CommandRegistry

    registry = CommandRegistry.from_plugins()
    statements = []
    for statement in block.code.split(";"):
        sql = re.sub(r"--[^\n]*", "", statement).strip()
        if sql:
            found = registry.recognise(sql.encode())
            assert found is not None and found.match is not None, sql
            statements.append(sql)
    shell = PageShell(tmp_path, mariadb, seekdb, Path(tls_certs.ca).parent)
    port = shell.ports["2883"]
    try:
        shell.start(f"twistd -n obproxy -c {shell.conf()} -p {port}", f"tcp:127.0.0.1:{port}")
        for sql in statements:
            out = shell.run(
                f"mariadb --batch -h127.0.0.1 -P{port} -uroot@sys -e {shlex.quote(sql)}"
            )
            if sql.upper().startswith("SHOW") and "DIFF" not in sql.upper():
                # The header and a row at least (a DIFF may have none: nothing changed yet).
                assert len(out.splitlines()) >= 2, (sql, out)
    except BaseException:
        print("\n".join(shell.log))
        raise
    finally:
        shell.close()


#: Command lines that are not run, each with why (matched at the start of the line, after its
#: environment assignments). Everything else in an C{sh} block runs.
NOT_RUNNABLE = {
    "make test": "is CI itself: lint and the whole suite, this test included",
    "make bench": "the benchmark: 7 to 24 minutes of sysbench against every target",
    "python -m bench.compare": "benchmarks two commits side by side: minutes per round",
    "make fuzz": "fuzzing for 60 s or an hour; make test runs make fuzz itself",
    "python -m fuzz.capture": "records the committed seed corpus again (rewrites fuzz/corpus)",
    "python -m pytest -q tests/fuzz": "the suite runs tests/fuzz itself (over 2 minutes again)",
    "make soak": "the soak test: 30 minutes of faults; CI runs 45 s of it (tests/soak)",
    "python -m tests.soak": "the soak test: minutes of faults; CI runs 45 s of it (tests/soak)",
}


def _lines(code: str) -> Iterator[str]:
    for line in code.replace("\\\n", " ").splitlines():
        if line.strip() and not line.strip().startswith("#"):
            yield line.strip()


def _command(line: str) -> str:
    """The line without its comment (a C{#} outside quotes, after a space)."""
    quote = ""
    for at, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (at == 0 or line[at - 1].isspace()):
            return line[:at].rstrip()
    return line


def _program(line: str) -> List[str]:
    words = split_line(line)
    # Environment assignments in front (BENCH_PYPY=1 make bench).
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)
    return words


def _not_runnable(words: List[str]) -> str | None:
    text = " ".join(words)
    for prefix, why in NOT_RUNNABLE.items():
        if text == prefix or text.startswith(prefix + " "):
            return why
    return None


def _check_not_run(words: List[str], makefile: str) -> None:
    # What is not run is still looked up: the make target, the module.
    if words[0] == "make":
        for target in words[1:]:
            if "=" not in target:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), words
    elif words[:2] == ["python", "-m"] and words[2] != "pytest":
        path = ROOT / words[2].replace(".", "/")
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), words


def _listens(shell: PageShell, words: List[str]) -> str:
    """Where a proxy started by this (filled) command line listens."""
    for word in words:
        if word.startswith("listen=unix:"):
            return "unix:" + word[len("listen=unix:") :].split(":")[0]
        if word.startswith("listen=tcp6:"):
            return f"tcp:::1:{word.split(':')[1]}"
    if "-p" in words:
        return f"tcp:127.0.0.1:{words[words.index('-p') + 1]}"
    for word in words:
        if word.startswith("PROXY_PORT="):
            return f"tcp:127.0.0.1:{word.split('=')[1]}"
    return f"tcp:127.0.0.1:{shell.ports['2883']}"


def _client_args(listens: str) -> str:
    kind, _, where = listens.partition(":")
    if kind == "unix":
        return f"-S {where}"
    host, _, port = where.rpartition(":")
    return f"-h{host} -P{port}"


#: Items whose values C{-o} lines set, checked with SHOW PROXYCONFIG once the proxy runs
#: (the credentials and endpoint strings are not shown as written).
CHECKED_ITEMS = {"proxy_id", "mysql_version", "client_max_connections", "work_thread_num"}


def _login_check(shell: PageShell, line: str, listens: str) -> None:
    # A reader's first step: log in through the proxy and run a statement on the backend.
    # A MariaDB account the proxy learned, or examples/conf.yaml's seekdb root (no password).
    user = "-unative_user -pnative_pw" if "mariadb.yaml" in line else "-uroot@sys"
    shell.mysql_check(f"{_client_args(listens)} {user}")
    # The items the line sets are the proxy's (as its admin command shows them).
    words = split_line(line)
    items = [w for at, w in enumerate(words[1:], 1) if words[at - 1] == "-o"]
    for item in ",".join(items).split(","):
        name, _, value = item.partition("=")
        if name in CHECKED_ITEMS:
            sql = shlex.quote(f"SHOW PROXYCONFIG LIKE '{name}'")
            out = shell.run(f"mariadb -N --batch {_client_args(listens)} -uroot@sys -e {sql}")
            assert out.split("\t")[:2] == [name, value], (item, out)
    if shell.plugins_installed:
        out = shell.run(f"mariadb --batch {_client_args(listens)} {user} -e 'SHOW PROXYBACKENDS'")
        assert out.startswith("cluster_name\t"), out


def _mysql_client(shell: PageShell, raw: str, line: str) -> None:
    words = split_line(line)
    if not any(w.startswith(("-h", "-P", "-S")) for w in words[1:]):
        # No server named: the reader's defaults file names it (here: the test bed's MariaDB).
        home = shell.tmp / "home"
        home.mkdir(exist_ok=True)
        (home / ".my.cnf").write_text(
            f"[client]\nhost=127.0.0.1\nport={shell.mariadb.port}\n"
            "user=native_user\npassword=native_pw\n",
            encoding="utf-8",
        )
        line = f"HOME={home} {line}"
    if "-e" in words:
        out = shell.run(line)
        assert out.strip(), f"{raw}: no result"
    else:  # an interactive session: the reader types a statement
        out = shell.run(line, stdin="SELECT 1 AS answer;\n")
        assert out.split() == ["answer", "1"], out
    # A result the page shows in the line's comment is what comes out.
    comment = raw.partition("#")[2]
    for shown in re.findall(r"\*[0-9A-F]{40}", comment):
        assert shown in out, (shown, out)


def _pip(shell: PageShell, line: str) -> None:
    # Installing the example plugin: into a directory of the test's, never into this
    # environment (pip builds it in an isolated environment, as the reader's would).
    words = split_line(line)
    if "--target" not in words:
        # "Into the environment": a directory on the proxy's path from now on.
        site = shell.tmp / "site"
        line = line.replace("pip install", f"pip install --no-deps --target {site}", 1)
        shell.env["PYTHONPATH"] += os.pathsep + str(site)
    line = line.replace("pip install", "python -m pip install -q --disable-pip-version-check", 1)
    shell.run(line)
    shell.plugins_installed = True


def _run_line(shell: PageShell, raw: str, makefile: str, config: str | None) -> None:
    words = _program(raw)
    if not words:
        return
    why = _not_runnable(words)
    if why is not None:
        _check_not_run(words, makefile)
        shell.not_run.append((raw, why))
        return
    line = shell.fill(_command(raw))
    words = _program(line)
    program = words[0]
    if program == "twistd" and "-n" in words:
        listens = _listens(shell, words)
        shell.start(line, listens)
        _login_check(shell, line, listens)
    elif program == "twistd":  # daemonized: it returns once the daemon runs
        pidfile = [w for w in words if w.startswith("--pidfile=")]
        shell.daemon_pidfile = Path(pidfile[0].split("=", 1)[1]) if pidfile else None
        shell.stop()  # the one in the foreground: the reader's Ctrl-C
        shell.run(line)
        listens = _listens(shell, words)
        shell.wait_listening(listens, None)
        _login_check(shell, line, listens)
        logfile = words[words.index("-l") + 1] if "-l" in words else None
        assert logfile is None or Path(logfile).stat().st_size > 0, logfile
    elif words[:2] == ["make", "run"]:
        line = f"{line} PYTHON=python PROXY_PORT={shell.ports['2883']}"
        listens = _listens(shell, split_line(line))
        shell.start(line, listens)
        _login_check(shell, line, listens)
    elif program == "python" and words[1:2] == ["examples/server.py"]:
        # Optional arguments in brackets: started without them, then with all of them.
        shell.start(re.sub(r"\s*\[[^]]*\]", "", line), f"tcp:127.0.0.1:{shell.ports['3307']}")
        shell.start(line.replace("[", "").replace("]", ""), f"tcp:127.0.0.1:{shell.ports['3307']}")
    elif program in ("mariadb", "mysql"):
        if shell.server is None and f"{shell.ports['2883']}" in line and config is not None:
            # No proxy started on the page yet: the reader starts one with the configuration
            # the page has just shown.
            port = shell.ports["2883"]
            conf = shell.fill_config(config)
            shell.start(f"twistd -n obproxy -c {conf} -p {port}", f"tcp:127.0.0.1:{port}")
        _mysql_client(shell, raw, line)
    elif program == "kill":
        shell.run(line)
        daemon = shell.daemon_pidfile
        assert daemon is not None, f"{raw}: no daemon started on the page"
        deadline = time.monotonic() + 30
        while daemon.exists():  # twistd removes its pid file when it has stopped
            assert time.monotonic() < deadline, f"{raw}: the daemon did not stop"
            time.sleep(0.1)
    elif program == "eval":
        shell.eval_line(line)
    elif program == "pip":
        _pip(shell, line)
    elif program in ("python", "cd", "make"):
        if words[:2] == ["make", "testbed-up"]:
            # The reader's own test bed, started and stopped here: not this test run's.
            shell.env["OBPROXY_TESTBED_DIR"] = str(shell.tmp / "testbed")
        shell.run(line)
    else:
        raise AssertionError(f"no rule for {program!r}: {raw}")


def _pages() -> List[str]:
    pages: List[str] = []
    for block in _by("sh"):
        if block.page not in pages:
            pages.append(block.page)
    return pages


@pytest.mark.parametrize("page", _pages())
def test_sh(
    page: str, tmp_path: Path, mariadb: Server, seekdb: Server, tls_certs: TLSCerts
) -> None:
    """
    A page's shell examples run in order, as the reader would run them, against real servers
    (see L{tests.docs.doc_shell}); only the lines of L{NOT_RUNNABLE} are not run.
    """
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    shell = PageShell(tmp_path, mariadb, seekdb, Path(tls_certs.ca).parent)
    try:
        config = None  # the last configuration the page showed
        for block in BLOCKS:
            if block.page == page and block.lang == "yaml":
                config = block.code
            if block.page == page and block.lang == "sh":
                for raw in _lines(block.code):
                    try:
                        _run_line(shell, raw, makefile, config)
                    except BaseException:
                        print("\n".join(shell.log))
                        raise
    finally:
        shell.close()
    # What ran, and what not and why (pytest -s shows it).
    print("\n".join(shell.log))
    for raw, why in shell.not_run:
        print(f"not run: {raw}\n    ({why})")
