"""
Tests for L{obproxy_tx.admin.registry}: commands are discovered as plugins in
L{obproxy_tx.plugins} (including a third party's directory on C{sys.path}),
recognition ignores ordinary SQL cheaply, and answers encode to packets that
decode back.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

import obproxy_tx.plugins
from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminError,
    AdminOK,
    AdminResultSet,
    IAdminCommand,
)
from obproxy_tx.admin.registry import CommandRegistry, like
from obproxy_tx.plugins.obproxy_ping import PingProxy
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.packets import (
    ColumnCount,
    ColumnDefinition41,
    EOFPacket,
    ERRPacket,
    OKPacket,
    TextRow,
)

CAPS = Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_TRANSACTIONS
CONTEXT = AdminContext(session=None, manager=None, config=None)

THIRD_PARTY = """
import re
from twisted.plugin import IPlugin
from zope.interface import implementer
from obproxy_tx.admin.interfaces import AdminResultSet, IAdminCommand

@implementer(IPlugin, IAdminCommand)
class Hello:
    name = "SHOW HELLO"
    keywords = ("SHOW HELLO",)
    columns = ("greeting",)
    privilege = "everyone"
    errors = ()

    def match(self, sql):
        return re.fullmatch(r"show\\s+hello", sql, re.I)

    def execute(self, context, match):
        return AdminResultSet(self.columns, [("hi",)])

hello = Hello()
"""


def test_discovers_builtin_plugin() -> None:
    """
    The registry built from plugins contains C{PING PROXY}, which provides
    L{IAdminCommand} and L{IPlugin}.
    """
    registry = CommandRegistry.from_plugins()
    pings = [c for c in registry.commands if c.name == "PING PROXY"]
    assert len(pings) == 1
    assert verifyObject(IAdminCommand, pings[0])
    assert verifyObject(IPlugin, pings[0])


def test_explicit_registration_and_duplicates() -> None:
    """
    Commands may be registered explicitly; a second command with the same
    name is refused.
    """
    registry = CommandRegistry([PingProxy()])
    with pytest.raises(ValueError):
        registry.register(PingProxy())


@pytest.mark.parametrize(
    "sql", [b"PING PROXY", b"ping proxy", b"  Ping\t  Proxy ;", b"PiNg\nPROXY"]
)
def test_recognise_case_insensitive(sql: bytes) -> None:
    """
    C{PING PROXY} is recognised whatever its case and blanks.
    """
    recognised = CommandRegistry([PingProxy()]).recognise(sql)
    assert recognised is not None
    assert recognised.command.name == "PING PROXY"


@pytest.mark.parametrize(
    "sql",
    [b"", b"SELECT 1", b"PING", b"PING PROXYX", b"PINGPROXY", b"select 'ping proxy'"],
)
def test_recognise_ignores_ordinary_sql(sql: bytes) -> None:
    """
    Ordinary statements, and near misses of the grammar, are not ours.
    """
    assert CommandRegistry([PingProxy()]).recognise(sql) is None


@pytest.mark.parametrize("sql", [b"PING PROXY 1", b"ping  proxy now"])
def test_recognise_keywords_without_grammar(sql: bytes) -> None:
    """
    A statement that starts with a command's keywords but fails its grammar
    is recognised without a match, so the session can answer 5010 for it.
    """
    recognised = CommandRegistry([PingProxy()]).recognise(sql)
    assert recognised is not None
    assert recognised.command.name == "PING PROXY"
    assert recognised.match is None


def test_recognise_runs_no_grammar_for_ordinary_sql() -> None:
    """
    Ordinary statements are turned away by the keyword check alone: no
    command's grammar runs for them (what keeps the check cheap).
    """
    calls: list[str] = []

    class Spy(PingProxy):
        name = "SPY"
        keywords = ("SELECT PROXY_SPY", "SHOW PROXYSPY")

        def match(self, sql: str) -> bool | None:
            calls.append(sql)
            return None

    registry = CommandRegistry([*CommandRegistry.from_plugins().commands, Spy()])
    for sql in (b"SELECT id FROM users WHERE id = 42", b"show tables", b"INSERT INTO t VALUES (1)"):
        recognised = registry.recognise(sql)
        assert recognised is None or recognised.command.name != "SPY"
    assert calls == []


@pytest.mark.parametrize(
    "pattern, value, expected",
    [
        ("%", "anything", True),
        ("%", "", True),
        ("proxy%", "PROXY_route_policy", True),
        ("%route%", "proxy_route_policy", True),
        ("a_c", "ABC", True),
        ("a_c", "abbc", False),
        ("a.c", "abc", False),
        ("a\\_c", "a_c", True),
        ("a\\_c", "abc", False),
        ("log", "log_level", False),
    ],
)
def test_like(pattern: str, value: str, expected: bool) -> None:
    """
    C{LIKE} matches whole values with C{%} and C{_}, case-insensitively.
    """
    assert like(pattern, value) is expected


def test_answer_ok_and_error() -> None:
    """
    L{AdminOK} becomes an OK packet and L{AdminError} an ERR packet.
    """
    registry = CommandRegistry()
    [ok] = registry.answer(AdminOK(affected_rows=2), CAPS)
    assert OKPacket.decode(ok, CAPS).affected_rows == 2
    [err] = registry.answer(AdminError(1094, "Unknown thread id: 7", "HY000"), CAPS)
    decoded = ERRPacket.decode(err, CAPS)
    assert (decoded.error_code, decoded.message, decoded.sqlstate) == (
        1094,
        "Unknown thread id: 7",
        "HY000",
    )


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_answer_result_set(deprecate_eof: bool) -> None:
    """
    A result set becomes column count, definitions, (EOF,) rows and EOF or
    the OK that replaces it, all decodable.
    """
    caps = CAPS | (Capability.CLIENT_DEPRECATE_EOF if deprecate_eof else Capability(0))
    result = AdminResultSet(("name", "value"), [("a", 1), ("b", None)])
    payloads = CommandRegistry().answer(result, caps)
    assert ColumnCount.decode(payloads[0], caps).count == 2
    names = [ColumnDefinition41.decode(p, caps).name for p in payloads[1:3]]
    assert names == [b"name", b"value"]
    rest = payloads[3:]
    if not deprecate_eof:
        EOFPacket.decode(rest.pop(0), caps)
        EOFPacket.decode(rest[-1], caps)
    else:
        assert OKPacket.decode(rest[-1], caps).header == 0xFE
    rows = [TextRow.decode(p, caps, 2).values for p in rest[:-1]]
    assert rows == [(b"a", b"1"), (b"b", None)]


def test_run_turns_raised_error_into_answer() -> None:
    """
    A command that raises L{AdminError} answers with it.
    """

    class Failing(PingProxy):
        def execute(self, context: AdminContext, match: object) -> AdminOK:
            raise AdminError(5010, "Unknown operator, bad internal cmd", "21000")

    registry = CommandRegistry([Failing()])
    recognised = registry.recognise(b"PING PROXY")
    assert recognised is not None
    results: list[Any] = []
    registry.run(CONTEXT, recognised).addCallback(results.append)
    [error] = results
    assert isinstance(error, AdminError)
    assert (error.code, error.sqlstate) == (5010, "21000")


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[Path]:
    """
    A third party's C{obproxy_tx/plugins/} directory (no C{__init__.py}) on
    C{sys.path}, removed afterwards.
    """
    plugins = tmp_path / "obproxy_tx" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "hello_plugin.py").write_text(THIRD_PARTY)
    sys.path.insert(0, str(tmp_path))
    original = list(obproxy_tx.plugins.__path__)
    from twisted.plugin import pluginPackagePaths

    obproxy_tx.plugins.__path__.extend(
        p for p in pluginPackagePaths(obproxy_tx.plugins.__name__) if p not in original
    )
    try:
        yield plugins
    finally:
        sys.path.remove(str(tmp_path))
        obproxy_tx.plugins.__path__[:] = original
        sys.modules.pop("obproxy_tx.plugins.hello_plugin", None)


def test_third_party_plugin_discovered(third_party: Path) -> None:
    """
    A module in another C{obproxy_tx/plugins/} directory on C{sys.path} is
    discovered and answers, without any change to our code.
    """
    registry = CommandRegistry.from_plugins()
    recognised = registry.recognise(b"show   HELLO")
    assert recognised is not None
    assert verifyObject(IAdminCommand, recognised.command)
    results: list[Any] = []
    registry.run(CONTEXT, recognised).addCallback(results.append)
    [result] = results
    payloads = registry.answer(result, CAPS)
    assert TextRow.decode(payloads[3], CAPS, 1).values == (b"hi",)
