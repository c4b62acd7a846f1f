"""
Tests for L{obproxy_tx.auth.backend_users}: reading verifiers from backend
user tables, MySQL host matching, and the cached, rate-limited directory.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from obproxy_tx.auth.backend_users import (
    BackendUserDirectory,
    BackendUsersError,
    UnsupportedUserError,
    UserVerifier,
    directory_for,
    host_matches,
    load_users,
    parse_global_priv,
    parse_user_row,
)
from obproxy_tx.protocol.interfaces import ServerError
from obproxy_tx.wire.scramble import native_password_verifier, verifier_from_hex

ALICE_HEX = "*D47E3747DBB371D8D9723CBCBBEFE68A709B0E99"
PW_HEX = "*" + native_password_verifier(b"pw").hex().upper()


@attrs.frozen
class Col:
    """A column definition with just a name."""

    name: bytes


@attrs.define
class Result:
    """A query result as MySQLClientProtocol.query gives it."""

    columns: list[Col]
    rows: list[tuple[Any, ...]]

    @property
    def column_names(self) -> list[str]:
        """The column names."""
        return [c.name.decode() for c in self.columns]


def result(names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> Result:
    """Build a result."""
    return Result([Col(n.encode()) for n in names], list(rows))


class FakeConnection:
    """Answers the two user-table queries from canned tables."""

    def __init__(
        self,
        global_priv: list[tuple[str, str, str]] | None = None,
        user_table: tuple[Sequence[str], list[tuple[Any, ...]]] | None = None,
    ) -> None:
        self.global_priv = global_priv
        self.user_table = user_table
        self.queries: list[str] = []
        self.quit_called = False

    def query(self, sql: str) -> defer.Deferred[Any]:
        self.queries.append(sql)
        if "global_priv" in sql:
            if self.global_priv is None:
                return defer.fail(
                    ServerError(1146, "Table 'mysql.global_priv' doesn't exist", "42S02")
                )
            return defer.succeed(result(["User", "Host", "Priv"], self.global_priv))
        if self.user_table is None:
            return defer.fail(ServerError(1142, "SELECT command denied", "42000"))
        return defer.succeed(result(*self.user_table))

    def quit(self) -> defer.Deferred[None]:
        self.quit_called = True
        return defer.succeed(None)


def outcome(deferred: defer.Deferred[Any]) -> Any:
    """What a fired Deferred holds (a Failure if it failed)."""
    results: list[Any] = []

    def keep(value: Any) -> Any:
        results.append(value)
        return value

    deferred.addBoth(keep)
    assert results, "the Deferred has not fired"
    return results[0]


# -- parsing ----------------------------------------------------------------------------

# Rows as MariaDB 10.11 of the test bed has them.
MARIADB_ROWS = [
    (
        "mariadb.sys",
        "localhost",
        '{"access":0,"plugin":"mysql_native_password","authentication_string":"",'
        '"account_locked":true,"password_last_changed":0}',
    ),
    (
        "root",
        "localhost",
        '{"access":18446744073709551615,"plugin":"mysql_native_password",'
        '"authentication_string":"invalid","auth_or":[{},{"plugin":"unix_socket"}]}',
    ),
    (
        "native_user",
        "%",
        '{"access":549755812863,"version_id":101119,"plugin":"mysql_native_password",'
        f'"authentication_string":"{ALICE_HEX}","password_last_changed":1795375353}}',
    ),
    (
        "tls_user",
        "%",
        '{"plugin":"mysql_native_password",'
        f'"authentication_string":"{PW_HEX}","ssl_type":1,"ssl_cipher":""}}',
    ),
    ("nopw_user", "%", '{"plugin":"mysql_native_password","authentication_string":""}'),
    ("ed", "%", '{"plugin":"ed25519","authentication_string":"abc"}'),
    ("arole", "", '{"access":0,"is_role":true}'),
    (
        "either",
        "%",
        '{"plugin":"ed25519","authentication_string":"x",'
        f'"auth_or":[{{}},{{"plugin":"mysql_native_password","authentication_string":"{PW_HEX}"}}]}}',
    ),
]


def test_global_priv_rows() -> None:
    """
    MariaDB's JSON rows give verifiers for native accounts (empty for no
    password) and reasons for locked, unix_socket and ed25519 accounts; roles
    are left out; the first native alternative of auth_or is used.
    """
    parsed = [parse_global_priv(*row) for row in MARIADB_ROWS]
    by_user = {found.user: found for found in parsed if found is not None}
    assert "arole" not in by_user
    assert by_user["native_user"].verifier == verifier_from_hex(ALICE_HEX)
    assert by_user["native_user"].supported
    assert by_user["nopw_user"].verifier == b""
    assert by_user["tls_user"].require_tls
    assert by_user["mariadb.sys"].unsupported_reason == "the account is locked"
    assert not by_user["root"].supported
    assert "unix_socket" in str(by_user["root"].unsupported_reason)
    assert not by_user["ed"].supported
    assert "ed25519" in str(by_user["ed"].unsupported_reason)
    assert by_user["either"].verifier == native_password_verifier(b"pw")


def test_global_priv_garbage() -> None:
    """
    A Priv column that is not JSON reads as a native account without password
    rather than raising.
    """
    found = parse_global_priv("u", "%", "not json")
    assert found is not None and found.verifier == b""
    found = parse_global_priv("u", "%", b"[1, 2]")
    assert found is not None and found.plugin == "mysql_native_password"


def test_user_table_rows() -> None:
    """
    mysql.user rows: seekdb's password column, MySQL's authentication_string,
    old MariaDB's Password; other plugins and locked accounts are unsupported.
    """
    seekdb = parse_user_row(
        {"host": "%", "user": "alice", "password": ALICE_HEX, "plugin": "ob_native_password"}
    )
    assert seekdb is not None and seekdb.verifier == verifier_from_hex(ALICE_HEX)
    mysql = parse_user_row(
        {
            "host": "%",
            "user": "u",
            "plugin": "mysql_native_password",
            "authentication_string": PW_HEX,
        }
    )
    assert mysql is not None and mysql.verifier == native_password_verifier(b"pw")
    old = parse_user_row({"host": "%", "user": "u", "password": PW_HEX, "plugin": ""})
    assert old is not None and old.verifier == native_password_verifier(b"pw")
    sha2 = parse_user_row({"host": "%", "user": "u", "plugin": "caching_sha2_password"})
    assert sha2 is not None and "caching_sha2_password" in str(sha2.unsupported_reason)
    locked = parse_user_row(
        {"host": "%", "user": "u", "password": PW_HEX, "plugin": "", "account_locked": "Y"}
    )
    assert locked is not None and not locked.supported
    assert parse_user_row({"host": "%", "user": "r", "is_role": "Y"}) is None
    bad = parse_user_row({"host": "%", "user": "u", "password": "xyz"})
    assert bad is not None and not bad.supported


def test_load_users_prefers_global_priv() -> None:
    """
    load_users reads mysql.global_priv when it exists.
    """
    connection = FakeConnection(global_priv=MARIADB_ROWS)
    users = outcome(load_users(connection))
    assert [u.user for u in users] == [
        "mariadb.sys",
        "root",
        "native_user",
        "tls_user",
        "nopw_user",
        "ed",
        "either",
    ]
    assert len(connection.queries) == 1


def test_load_users_falls_back_to_mysql_user() -> None:
    """
    Without mysql.global_priv (seekdb, MySQL) load_users reads mysql.user,
    whatever the case of its column names.
    """
    connection = FakeConnection(
        user_table=(
            ["host", "user", "password", "plugin"],
            [
                ("%", "root", "", "ob_native_password"),
                ("%", "alice", ALICE_HEX, "ob_native_password"),
            ],
        )
    )
    users = outcome(load_users(connection))
    assert [(u.user, u.verifier) for u in users] == [
        ("root", b""),
        ("alice", verifier_from_hex(ALICE_HEX)),
    ]
    connection = FakeConnection(
        user_table=(["Host", "User", "Password", "plugin"], [("%", "bob", PW_HEX, "")])
    )
    (bob,) = outcome(load_users(connection))
    assert bob.verifier == native_password_verifier(b"pw")


def test_load_users_denied() -> None:
    """
    When neither table can be read the ServerError comes through.
    """
    failure = outcome(load_users(FakeConnection()))
    assert isinstance(failure, Failure) and failure.check(ServerError)


# -- host matching --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("%", "10.1.2.3", True),
        ("", "10.1.2.3", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.3", "10.1.2.4", False),
        ("10.1.2.%", "10.1.2.99", True),
        ("10.1.2.%", "10.1.3.1", False),
        ("10.1.2._", "10.1.2.7", True),
        ("10.1.2._", "10.1.2.77", False),
        ("192.168.0.0/255.255.255.0", "192.168.0.77", True),
        ("192.168.0.0/255.255.255.0", "192.168.1.77", False),
        ("192.168.0.0/255.255.255.0", "not-an-ip", False),
        ("localhost", "127.0.0.1", True),
        ("localhost", "::1", True),
        ("localhost", "10.0.0.1", False),
        ("DB.Example.COM", "db.example.com", True),
        ("%.example.com", "app.example.com", True),
        ("a.b", "axb", False),
    ],
)
def test_host_matches(pattern: str, host: str, matches: bool) -> None:
    """
    Host patterns match as MySQL matches them (wildcards, netmask, localhost).
    """
    assert host_matches(pattern, host) is matches


def _account(user: str, host: str, password: bytes = b"pw") -> UserVerifier:
    return UserVerifier(user, host, "mysql_native_password", native_password_verifier(password))


def _directory(
    accounts: list[tuple[str, str, str]] | None = None, *, clock: Clock | None = None
) -> tuple[BackendUserDirectory, list[FakeConnection], Clock]:
    clock = clock or Clock()
    tables = {"rows": list(accounts or [])}
    connections: list[FakeConnection] = []

    def connect() -> defer.Deferred[Any]:
        connection = FakeConnection(global_priv=list(tables["rows"]))
        connections.append(connection)
        return defer.succeed(connection)

    directory = BackendUserDirectory(None, "c1", clock, connect=connect)
    directory.tables = tables  # type: ignore[attr-defined]
    return directory, connections, clock


def _priv(password: bytes) -> str:
    hex_verifier = "*" + native_password_verifier(password).hex().upper() if password else ""
    return f'{{"plugin":"mysql_native_password","authentication_string":"{hex_verifier}"}}'


def test_most_specific_host_wins() -> None:
    """
    Of several accounts of one user, the most specific matching host is used
    (even an anonymous one, MySQL's classic surprise); at equal hosts a named
    user beats the anonymous one.
    """
    directory, _connections, _clock = _directory(
        [
            ("u", "%", _priv(b"any")),
            ("u", "10.0.%", _priv(b"ten")),
            ("u", "10.0.0.5", _priv(b"five")),
            ("", "10.0.0.6", _priv(b"anon")),
            ("", "10.0.%", _priv(b"anon2")),
            ("u", "%", _priv(b"dup")),
        ]
    )
    outcome(directory.refresh())

    def password_of(host: str) -> bytes | None:
        found = outcome(directory.lookup("u", host))
        return None if found is None else found.verifier

    assert password_of("10.0.0.5") == native_password_verifier(b"five")
    assert password_of("10.0.1.1") == native_password_verifier(b"ten")
    assert password_of("192.168.0.1") == native_password_verifier(b"any")
    assert password_of("10.0.0.6") == native_password_verifier(b"anon")
    assert password_of("%") == native_password_verifier(b"any")
    found = outcome(directory.lookup("nobody", "10.0.0.6"))
    assert found is not None and found.user == ""


# -- the directory ---------------------------------------------------------------------------


def test_first_lookup_loads_then_uses_the_cache() -> None:
    """
    The first lookup reads the users; known users are then answered from the
    cache without another connection.
    """
    directory, connections, _clock = _directory([("alice", "%", _priv(b"pw"))])
    found = outcome(directory.lookup("alice", "10.0.0.1"))
    assert found.verifier == native_password_verifier(b"pw")
    assert len(connections) == 1 and connections[0].quit_called
    outcome(directory.lookup("alice", "10.0.0.2"))
    assert len(connections) == 1


def test_unknown_user_refreshes_rate_limited() -> None:
    """
    An unknown user triggers a refresh, but not more than once per second:
    a lookup within the second waits for the next allowed refresh, which
    then finds a user created meanwhile.
    """
    directory, connections, clock = _directory([("alice", "%", _priv(b"pw"))])
    outcome(directory.refresh())
    assert len(connections) == 1
    directory.tables["rows"].append(("bob", "%", _priv(b"bob_pw")))  # type: ignore[attr-defined]
    first = directory.lookup("bob", "10.0.0.1")
    second = directory.lookup("bob", "10.0.0.1")
    third = directory.lookup("carol", "10.0.0.1")
    assert not first.called and not second.called and not third.called
    clock.advance(0.5)
    assert not first.called
    clock.advance(0.5)
    assert len(connections) == 2
    assert outcome(first).verifier == native_password_verifier(b"bob_pw")
    assert outcome(second).verifier == native_password_verifier(b"bob_pw")
    assert outcome(third) is None


def test_unknown_user_after_the_interval_refreshes_at_once() -> None:
    """
    When the last refresh is older than the interval, an unknown user is
    looked up with an immediate refresh.
    """
    directory, connections, clock = _directory([])
    outcome(directory.refresh())
    clock.advance(5)
    directory.tables["rows"].append(("new", "%", _priv(b"x")))  # type: ignore[attr-defined]
    found = outcome(directory.lookup("new", "1.2.3.4"))
    assert found is not None and found.user == "new"
    assert len(connections) == 2


def test_concurrent_lookups_share_one_refresh() -> None:
    """
    Lookups arriving while a refresh runs wait for it instead of starting more.
    """
    clock = Clock()
    pending: list[defer.Deferred[Any]] = []

    def connect() -> defer.Deferred[Any]:
        waiting: defer.Deferred[Any] = defer.Deferred()
        pending.append(waiting)
        return waiting

    directory = BackendUserDirectory(None, "c1", clock, connect=connect)
    lookups = [directory.lookup(name, "h") for name in ("a", "b", "a", "c")]
    assert len(pending) == 1
    pending[0].callback(FakeConnection(global_priv=[("a", "%", _priv(b"pw"))]))
    assert [None if outcome(d) is None else outcome(d).user for d in lookups] == [
        "a",
        None,
        "a",
        None,
    ]
    assert directory.refresh_count == 1


def test_unsupported_account_raises() -> None:
    """
    An account the proxy cannot check is reported, not silently refused.
    """
    directory, _connections, _clock = _directory(
        [("ed", "%", '{"plugin":"ed25519","authentication_string":"abc"}')]
    )
    failure = outcome(directory.lookup("ed", "1.2.3.4"))
    assert isinstance(failure, Failure)
    assert failure.check(UnsupportedUserError)
    assert "ed25519" in str(failure.value)


def test_refresh_errors_are_clear() -> None:
    """
    A refused metadata login or unreadable tables fail lookups with a
    BackendUsersError naming the cluster.
    """
    clock = Clock()
    directory = BackendUserDirectory(
        None,
        "c1",
        clock,
        connect=lambda: defer.fail(ServerError(1045, "Access denied for user 'meta'", "28000")),
    )
    failure = outcome(directory.lookup("a", "h"))
    assert failure.check(BackendUsersError)
    assert "'c1'" in str(failure.value) and "1045" in str(failure.value)

    directory = BackendUserDirectory(
        None, "c2", clock, connect=lambda: defer.succeed(FakeConnection())
    )
    failure = outcome(directory.lookup("a", "h"))
    assert failure.check(BackendUsersError)
    assert "cannot read the user tables" in str(failure.value)


def test_no_metadata_user_is_a_clear_error() -> None:
    """
    Without metadata_user the default connector explains what is missing.
    """

    @attrs.frozen
    class Config:
        metadata_user: str = ""
        metadata_password: str = ""
        short_async_task_timeout: float = 1.0

    @attrs.frozen
    class Cluster:
        name: str = "c1"
        servers: tuple[Any, ...] = ()
        learn_users: bool = True

    directory = BackendUserDirectory(Config(), Cluster(), Clock())
    failure = outcome(directory.lookup("a", "h"))
    assert failure.check(BackendUsersError)
    assert "metadata_user" in str(failure.value)
    assert directory_for(Config(), Cluster(learn_users=False), Clock()) is None
    assert isinstance(directory_for(Config(), Cluster(), Clock()), BackendUserDirectory)
