"""
Every code example in the docs (the Sphinx pages in C{docs/} and the README section the quick
start includes) is run or checked here, by its language:

  - C{python}: a complete program is run (C{docs/embedding.md}); a fragment quoted from an
    example file must match that file line by line (the example files are run by their own
    tests); a C{.tac} file is executed and must build the service; other fragments must compile.
  - C{yaml}: a configuration, loaded by the proxy's own parser (L{parse_config}).
  - C{toml}: parsed, and equal to the file it shows.
  - C{sql}: each statement is recognised by the admin command registry with its grammar.
  - C{sh}: each command line: C{twistd ... obproxy ...} is parsed by twistd's own option parser
    with the obproxy subcommand (the configuration files it names replaced by real ones);
    C{python -c} runs; C{python -m M} and C{python FILE} must name a module or file of the
    checkout; C{make T} a target of the Makefile; the MySQL clients, C{pip}, C{kill} and the
    like are not run (they need a server or change the machine), and are listed in
    L{NOT_RUN}.

A block in a language with no rule fails the test, so a new kind of example cannot go
untested by accident.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: Languages that are not code: diagrams, directory trees, sample output.
NOT_CODE = {"text", "", "mermaid"}
#: Programs whose command lines are shown but not run here: they talk to a server, install
#: packages, or act on a process.
NOT_RUN = {"mariadb", "mysql", "pip", "kill", "cd", "eval"}
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
    The code blocks of every page, and of the README's part the quick start includes.
    """
    blocks: List[Block] = []
    for path in sorted(DOCS.rglob("*.md")):
        if "_build" in path.parts:
            continue
        blocks.extend(_blocks_of(str(path.relative_to(DOCS)), path.read_text(encoding="utf-8")))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    start = re.search(r':start-after: "(.*)"', quick)
    end = re.search(r':end-before: "(.*)"', quick)
    assert start and end
    part = readme.split(start.group(1), 1)[1].split(end.group(1), 1)[0]
    blocks.extend(_blocks_of("../README.md", part))
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


@pytest.mark.parametrize("block", _by("python"), ids=str)
def test_python(block: Block, tmp_path: Path) -> None:
    """
    Python examples: run, quoted from a file that is run, or at least compiled.
    """
    code = block.code
    if "task.react(" in code:
        out = _run_python(code, tmp_path)
        assert "greets with protocol version 10" in out
        return
    if "Application(" in code and "load_config(" in code:
        # A .tac file: with a configuration file where it says, it builds the service tree.
        (tmp_path / "conf.yaml").write_bytes((ROOT / "examples" / "conf.yaml").read_bytes())
        tac = code + "\nfrom twisted.application.service import IServiceCollection\n"
        tac += "print(len(list(IServiceCollection(application))))\n"
        assert _run_python(tac, tmp_path).strip() == "1"
        return
    sources = QUOTED.get(block.page)
    quoted = [line for line in code.splitlines() if line.strip() not in ("", "...")]
    if sources is not None:
        text = "\n".join(p.read_text(encoding="utf-8") for p in sources)
        # A fragment quoted from an example: every line (less its trailing comment and the
        # elisions) is in the example file, which its own tests run.
        missing = []
        for line in quoted:
            line = re.split(r"\s+#", line)[0].strip()
            if line.endswith("..."):
                line = line[:-3].rstrip()
            if line and line not in text:
                missing.append(line)
        if not missing:
            return
        # Not a quotation: it must at least be valid Python.
    # __future__ imports stay at the top; the rest may use await (fragments of coroutines).
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
def test_sql(block: Block) -> None:
    """
    The admin statements shown are recognised, grammar and all, by the command registry.
    """
    from obproxy_tx.admin.registry import CommandRegistry

    registry = CommandRegistry.from_plugins()
    for statement in block.code.split(";"):
        sql = re.sub(r"--[^\n]*", "", statement).strip()
        if sql:
            found = registry.recognise(sql.encode())
            assert found is not None and found.match is not None, sql


def _commands(code: str) -> Iterator[List[str]]:
    for line in code.replace("\\\n", " ").splitlines():
        # Placeholders for the reader's own values.
        line = line.strip().replace("<seekdb port>", "2881")
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        # Environment assignments in front (BENCH_PYPY=1 make bench).
        while words and re.match(r"^[A-Z_]+=", words[0]):
            words.pop(0)
        if words:
            yield words


def _twistd(words: List[str], tmp_path: Path) -> None:
    from twisted.scripts._twistd_unix import ServerOptions

    conf = tmp_path / "conf.yaml"
    conf.write_bytes((ROOT / "examples" / "conf.yaml").read_bytes())
    args = []
    for word in words[1:]:
        # Placeholders and files of the reader's machine: a port, and our files.
        word = word.replace("<seekdb port>", "2881").replace(":PORT", ":2881")
        if word.endswith(".yaml") and not (ROOT / word).exists():
            word = str(conf)
        if word.startswith("proxy_cluster_secret=..."):
            word = "proxy_cluster_secret=a-long-random-string"
        if word.startswith(("--pidfile=", "-l")) or word.startswith("/var/log"):
            continue
        args.append(word)
    if any(word.startswith("listen=systemd:") for word in args):
        # Usable only in a process systemd started with the socket: here, Twisted must know
        # the endpoint type, and the rest of the line must parse.
        from twisted.internet import endpoints

        assert endpoints._SystemdParser.prefix == "systemd"
        args = [a if not a.startswith("listen=systemd:") else "listen=tcp:0" for a in args]
    options = ServerOptions()
    options.parseOptions(args)
    assert options.subCommand == "obproxy", words
    assert options.subOptions.proxy_config is not None


@pytest.mark.parametrize("block", _by("sh"), ids=str)
def test_sh(block: Block, tmp_path: Path) -> None:
    """
    Shell examples: every command line is parsed, run or looked up (see the module docstring).
    """
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for words in _commands(block.code):
        program = words[0]
        if program == "twistd":
            _twistd(words, tmp_path)
        elif program == "make":
            for target in words[1:]:
                if "=" not in target:
                    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), words
        elif program == "python" and words[1] == "-c":
            _run_python(words[2], tmp_path)
        elif program == "python" and words[1] == "-m":
            module = words[2]
            if module != "pytest":
                path = ROOT / module.replace(".", "/")
                assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), words
        elif program == "python":
            assert (ROOT / words[1]).is_file(), words
        else:
            assert program in NOT_RUN, f"{block}: no rule for {program!r}"
