"""
Unit tests of the C{SHOW PROXYBACKENDS} plugin, without a proxy or a backend:
the grammar, recognition through a real L{CommandRegistry}, the counting on
stand-in sessions, and the packets the answer becomes.

Run them from this directory (the plugin's source directory is put on
C{sys.path} by C{pyproject.toml}'s pytest settings)::

    python -m pytest tests
"""

from __future__ import annotations

from typing import Any, List

import attr
import pytest
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from obproxy_tx.admin.interfaces import AdminContext, AdminResultSet, IAdminCommand
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.config import parse_config
from obproxy_tx.plugins import example_proxybackends
from obproxy_tx.wire.constants import Capability, ColumnType

COLUMNS = example_proxybackends.COLUMNS
show_proxy_backends = example_proxybackends.show_proxy_backends

CONFIG = parse_config(
    """
clusters:
  - name: cl_a
    type: mysql
    servers: ["10.0.0.1:3306", "10.0.0.2:3306"]
  - name: cl_b
    type: oceanbase
    servers: ["10.0.1.1:2881"]
"""
)
CL_A, CL_B = CONFIG.clusters


@attr.s(auto_attribs=True)
class FakeServer:
    """Stands in for L{obproxy_tx.config.BackendServer}: only C{address} is read."""

    address: str


@attr.s(auto_attribs=True, eq=False)
class FakeServerSession:
    """Stands in for a server session: only C{server} is read."""

    server: FakeServer


@attr.s(auto_attribs=True, eq=False)
class FakeClientSession:
    """Stands in for a client session: the attributes the command reads."""

    cs_id: int
    cluster: Any
    active: FakeServerSession | None = None
    bound: FakeServerSession | None = None
    pooled: List[FakeServerSession] = attr.Factory(list)

    @property
    def server_sessions(self) -> List[FakeServerSession]:
        """Active, bound, then pooled, as the real session lists them."""
        return [s for s in (self.active, self.bound) if s is not None] + self.pooled


@attr.s(auto_attribs=True)
class FakeManager:
    """Stands in for the session manager: only C{client_sessions} is read."""

    client_sessions: dict


def ss(address: str) -> FakeServerSession:
    """A server session to C{address}."""
    return FakeServerSession(FakeServer(address))


def context(caller: FakeClientSession, *others: FakeClientSession) -> AdminContext:
    """The context of a command run by C{caller} with C{others} connected too."""
    sessions = {s.cs_id: s for s in (caller, *others)}
    return AdminContext(session=caller, manager=FakeManager(sessions), config=CONFIG)


def test_provides_the_interfaces() -> None:
    """
    The module-level instance is what Twisted's plugin system collects: it
    provides L{IPlugin} and L{IAdminCommand} with every attribute declared.
    """
    assert verifyObject(IPlugin, show_proxy_backends)
    assert verifyObject(IAdminCommand, show_proxy_backends)
    assert show_proxy_backends.columns == COLUMNS


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SHOW PROXYBACKENDS", "%"),
        ("show   proxybackends", "%"),
        ("SHOW PROXYBACKENDS LIKE 'cl\\_a'", "cl\\_a"),
        ("Show ProxyBackends\nlike 'it''s'", "it's"),
        ("SHOW PROXYBACKENDS ALL", None),
        ("SHOW PROXYBACKENDSX", None),
        ("SHOW PROXYBACKENDS LIKE cl_a", None),
    ],
)
def test_grammar(sql: str, expected: str | None) -> None:
    """
    L{match} accepts the statement with an optional C{LIKE 'pattern'} and
    returns the pattern; anything else is C{None}.
    """
    assert show_proxy_backends.match(sql) == expected


def test_recognised_by_the_registry() -> None:
    """
    A registry holding the command recognises it whatever the case, blanks
    and trailing C{;}, and turns ordinary SQL away without calling L{match}.
    """
    registry = CommandRegistry([show_proxy_backends])
    found = registry.recognise(b"  show proxybackends like 'cl%' ;")
    assert found is not None
    assert found.command is show_proxy_backends
    assert found.match == "cl%"
    assert registry.recognise(b"SELECT * FROM proxybackends") is None
    assert registry.recognise(b"SHOW PROCESSLIST") is None


def test_configured_servers_without_sessions() -> None:
    """
    With no server sessions every configured server of the caller's cluster
    is still listed, with zero counts; the other cluster is not.
    """
    root = FakeClientSession(1, CL_A)
    result = show_proxy_backends.execute(context(root), "%")
    assert isinstance(result, AdminResultSet)
    assert [tuple(row) for row in result.rows] == [
        ("cl_a", "mysql", "10.0.0.1:3306", 0, 0, 0, 0, 0),
        ("cl_a", "mysql", "10.0.0.2:3306", 0, 0, 0, 0, 0),
    ]


def test_counts_by_role() -> None:
    """
    Active, bound and pooled server sessions are counted per server, with the
    number of client sessions holding them; a server that is not configured
    (reached with C{@obproxy_route_addr}) comes after the configured ones;
    sessions of another cluster are not counted.
    """
    root = FakeClientSession(1, CL_A, active=ss("10.0.0.1:3306"))
    busy = FakeClientSession(
        2,
        CL_A,
        active=ss("10.0.0.2:3306"),
        bound=ss("10.0.0.1:3306"),
        pooled=[ss("10.0.0.2:3306"), ss("127.0.0.1:3306")],
    )
    other = FakeClientSession(3, CL_B, bound=ss("10.0.1.1:2881"))
    result = show_proxy_backends.execute(context(root, busy, other), "%")
    assert [tuple(row) for row in result.rows] == [
        ("cl_a", "mysql", "10.0.0.1:3306", 2, 1, 1, 0, 2),
        ("cl_a", "mysql", "10.0.0.2:3306", 2, 1, 0, 1, 1),
        ("cl_a", "mysql", "127.0.0.1:3306", 1, 0, 0, 1, 1),
    ]


def test_proxysys_sees_every_cluster_and_like_filters() -> None:
    """
    The local admin (no cluster) sees the servers of every cluster; C{LIKE}
    keeps the clusters whose name matches, case-insensitively.
    """
    proxysys = FakeClientSession(1, None)
    other = FakeClientSession(2, CL_B, bound=ss("10.0.1.1:2881"))
    every = show_proxy_backends.execute(context(proxysys, other), "%")
    assert [row[:3] for row in every.rows] == [
        ("cl_a", "mysql", "10.0.0.1:3306"),
        ("cl_a", "mysql", "10.0.0.2:3306"),
        ("cl_b", "oceanbase", "10.0.1.1:2881"),
    ]
    only_b = show_proxy_backends.execute(context(proxysys, other), "CL\\_B")
    assert [tuple(row) for row in only_b.rows] == [
        ("cl_b", "oceanbase", "10.0.1.1:2881", 1, 0, 1, 0, 1)
    ]


def test_counts_are_typed_as_numbers() -> None:
    """
    The result declares full column definitions: the names of L{COLUMNS},
    the first three text, the counts C{BIGINT} (clients read numbers).
    """
    result = show_proxy_backends.execute(context(FakeClientSession(1, CL_A)), "%")
    definitions = result.definitions()
    assert [d.name.decode() for d in definitions] == list(COLUMNS)
    types = [d.column_type for d in definitions]
    assert types == [ColumnType.MYSQL_TYPE_VAR_STRING] * 3 + [ColumnType.MYSQL_TYPE_LONGLONG] * 5


def test_answer_encodes() -> None:
    """
    The answer becomes a result set the registry can put on the wire:
    column count, 8 definitions, EOF, one row per server, EOF.
    """
    registry = CommandRegistry([show_proxy_backends])
    result = show_proxy_backends.execute(context(FakeClientSession(1, CL_A)), "%")
    payloads = registry.answer(result, Capability.CLIENT_PROTOCOL_41)
    assert payloads[0] == bytes([len(COLUMNS)])
    assert len(payloads) == 1 + len(COLUMNS) + 1 + 2 + 1
