"""
The example transcripts of the ODP session-management pages (C{../shared/spec/*.txt}),
reproduced through the proxy with the real C{mariadb} command-line client, in front of real
seekdb and real MariaDB.

The client logs in as the transcripts' C{root@sys#<cluster>} (on MariaDB a C{root} account
reachable over TCP is created for it: the test bed's own C{root} authenticates by unix socket only).
Sessions that must reconnect after being killed run interactively on a pseudo-terminal
(L{tests.integration.admin_cli.InteractiveCLI}); only there does the client print the
transcripts' C{No connection. Trying to reconnect...} lines.

What is asserted is each transcript's substance: the columns in their order, the states, the
attribute rows in their order and groups, the errors, the reconnect with a new id, and that
C{KILL PROXYSESSION cs ss} closes one server session without the client noticing.  Values that
differ per run (ids, ports, thread ids) are checked against the proxy's own session objects or
the process.

The proxy runs on the test reactor; each scenario runs in a worker thread (the client blocks).
To read the sessions next to the spec's transcripts: C{OBPROXY_SHOW_TRANSCRIPTS=1 pytest -s ...}.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

import attrs
import pytest
import pytest_twisted

from tests.integration.admin_cli import (
    NO_DATABASE,
    RECONNECTING,
    BatchResult,
    CLITimeoutError,
    InteractiveCLI,
    Table,
    batch,
    only_table,
    parse_errors,
    parse_tables,
    reconnected_id,
    strip_echo,
)
from tests.proxy_fixtures import (
    BACKENDS,
    Proxy,
    in_thread,
    mariadb_accounts,
    start_proxy_for,
    stop_proxy,
)

pytestmark = pytest.mark.integration

#: SHOW PROXYSESSION's columns (000, the newest page, with using_ssl).
PROXYSESSION_COLUMNS = (
    "proxy_sessid",
    "Id",
    "Cluster",
    "Tenant",
    "User",
    "Host",
    "db",
    "trans_count",
    "svr_session_count",
    "state",
    "tid",
    "pid",
    "using_ssl",
)
PROCESSLIST_COLUMNS = (
    "Id",
    "Tenant",
    "User",
    "Host",
    "db",
    "trans_count",
    "svr_session_count",
    "state",
    "tid",
    "pid",
)
ATTRIBUTE_COLUMNS = ("attribute_name", "value", "info")
VARIABLES_COLUMNS = ("variable_name", "value", "info", "modified_type", "sys_variable_flag")

_CS_COMMON = (
    "proxy_sessid",
    "cs_id",
    "cluster",
    "tenant",
    "user",
    "host_ip",
    "host_port",
    "db",
    "total_trans_cnt",
    "svr_session_cnt",
    "active",
    "read_state",
    "tid",
    "pid",
    "idc_name",
)
_CS_STAT = ("modified_time", "reported_time")
_VERSIONS = (
    "hot_sys_var_version",
    "sys_var_version",
    "user_var_version",
    "last_insert_id_version",
    "db_name_version",
)
_SS_BLOCK = (
    "server_ip",
    "server_port",
    "server_sessid",
    "ss_id",
    "state",
    "transact_count",
    "server_trans_stat",
    *_VERSIONS,
    "is_checksum_supported",
    "is_safe_read_weak_supported",
    "is_checksum_switch_supported",
    "checksum_switch",
    "enable_extra_ok_packet_for_stats",
)

#: The 39 (attribute_name, info) rows of 000's SHOW PROXYSESSION ATTRIBUTE, in order, for a
#: session with one server session (the one it last used) that is not pinned.
FULL_ATTRIBUTES: Tuple[Tuple[str, str], ...] = (
    *((name, "cs common") for name in _CS_COMMON),
    *((name, "cs stat") for name in _CS_STAT),
    *((name, "cs var version") for name in _VERSIONS),
    *((name, "last used ss") for name in _SS_BLOCK),
)

#: 004's C{SHOW PROXYSESSION ATTRIBUTE 2 like '%id%'}: 8 rows.  That page predates the
#: C{idc_name} row of 000's full list, which C{'%id%'} also matches; the newer page wins
#: (spec README), so C{idc_name} may appear after C{pid} and nothing else may.
ID_ATTRIBUTES: Tuple[Tuple[str, str], ...] = (
    ("proxy_sessid", "cs common"),
    ("cs_id", "cs common"),
    ("tid", "cs common"),
    ("pid", "cs common"),
    ("last_insert_id_version", "cs var version"),
    ("server_sessid", "last used ss"),
    ("ss_id", "last used ss"),
    ("last_insert_id_version", "last used ss"),
)

MCS_STATES = {"MCS_INIT", "MCS_ACTIVE_READER", "MCS_KEEP_ALIVE", "MCS_HALF_CLOSE", "MCS_CLOSED"}

#: How VARIABLES may show autocommit after SET autocommit = 0 (a SQL literal, 004).
AUTOCOMMIT_OFF = ("0", "'OFF'")

#: The password of the C{root}@C{127.0.0.1} account made on MariaDB for these tests.
MARIADB_ROOT_PASSWORD = "root_pw"

#: How long the second connection's C{KILL QUERY} may take to stop C{SLEEP(60)} (issue 4).
KILL_QUERY_BUDGET = 1.0


@pytest.fixture(scope="module")
def mariadb_root(mariadb: Any) -> Iterator[Tuple[str, str]]:
    """
    A C{root} account on the MariaDB test bed reachable over TCP from 127.0.0.1 (the test bed's
    own C{root} accepts only its unix socket), so C{root@sys} means the cluster's root on both
    backends.  Made afresh for this module and dropped after it, since another module
    (test_admin_privileges) makes and drops the same account with its own password.
    """
    with mariadb_accounts(
        mariadb, {"'root'@'127.0.0.1'": MARIADB_ROOT_PASSWORD}, grant="ALL PRIVILEGES ON *.*"
    ):
        yield "root", MARIADB_ROOT_PASSWORD


@attrs.define
class Bed:
    """
    A proxy in front of one backend and how the transcripts' client logs in to it.

    @ivar proxy: the proxy.
    @ivar cluster: its cluster name.
    @ivar login: C{root@sys#<cluster>}, the transcripts' user.
    @ivar password: root's password on the backend.
    @ivar native: the backend's ordinary account, C{(user, password)}.
    @ivar clis: every interactive client started, for failure messages and cleanup.
    """

    proxy: Proxy
    cluster: str
    login: str
    password: str
    native: Tuple[str, str]
    clis: List[InteractiveCLI] = attrs.field(factory=list)

    @property
    def backend(self) -> Any:
        """The test bed server behind the proxy."""
        return self.proxy.backend

    def cli(self, native: bool = False) -> InteractiveCLI:
        """
        An interactive client logged in through the proxy (as root@sys unless C{native}).
        """
        user, password = self.native if native else (self.login, self.password)
        cli = InteractiveCLI(self.proxy.port, user, password)
        self.clis.append(cli)
        return cli

    def batch(self, sql: str, **kwargs: Any) -> BatchResult:
        """
        C{mariadb -t -e sql} through the proxy as root@sys (a session of its own).
        """
        return batch(self.proxy.port, self.login, self.password, sql, **kwargs)

    def client_session(self, cs_id: int) -> Any:
        """
        The proxy's client session C{cs_id}.
        """
        found = self.proxy.manager.find_client_session(cs_id)
        assert found is not None, f"the proxy has no client session {cs_id}"
        return found


@pytest.fixture(params=BACKENDS)
def bed(request: pytest.FixtureRequest) -> Iterator[Bed]:
    """
    A fresh proxy (so that its session list holds only this test's clients) in front of
    seekdb, then MariaDB, with root@sys and the backend's native account configured.
    """
    backend = request.getfixturevalue(request.param)
    if request.param == "mariadb":
        root_user, root_password = request.getfixturevalue("mariadb_root")
    else:
        admin = backend.accounts["admin"]
        root_user, root_password = admin.user, admin.password
    assert root_user == "root"
    native = backend.accounts["native"]
    kind = "oceanbase" if backend.kind.startswith("seekdb") else "mysql"
    cluster = f"cl_{backend.kind}"
    proxy = start_proxy_for(
        [f"{backend.host}:{backend.port}"],
        kind,
        [(root_user, root_password), (native.user, native.password)],
        name=cluster,
        backend=backend,
    )
    started = Bed(
        proxy,
        cluster,
        f"root@sys#{cluster}",
        root_password,
        (native.user, native.password),
    )
    yield started
    for cli in started.clis:
        cli.close()
    stop_proxy(proxy)


def _scenario(bed: Bed, scenario: Callable[[Bed], None]) -> Any:
    """
    Run C{scenario(bed)} in a worker thread; a failed assertion carries the clients' transcripts.
    """

    def body() -> None:
        try:
            scenario(bed)
        except AssertionError as failure:
            transcripts = "\n----\n".join(cli.transcript for cli in bed.clis)
            raise AssertionError(
                f"{failure}\n---- client transcripts ----\n{transcripts}"
            ) from None
        finally:
            for cli in bed.clis:
                cli.close()
            if os.environ.get("OBPROXY_SHOW_TRANSCRIPTS"):
                print("\n----\n".join(cli.transcript for cli in bed.clis))

    return in_thread(body)


# -- checks shared by the scenarios ------------------------------------------------------------


def _no_error(text: str) -> None:
    errors = parse_errors(text)
    assert not errors, f"unexpected error(s) {errors} in {text!r}"


def _table(text: str, columns: Sequence[str]) -> Table:
    _no_error(text)
    table = only_table(text)
    assert table.columns == tuple(columns), table.columns
    return table


def _expect_error(text: str, code: int, sqlstate: str, message: str) -> None:
    errors = [(e.code, e.sqlstate, e.message) for e in parse_errors(text)]
    assert errors == [(code, sqlstate, message)], f"expected ERROR {code} ({sqlstate}): {message}"


def _check_own_row(bed: Bed, record: Dict[str, str], cs_id: int) -> None:
    """
    One SHOW PROXYSESSION row describes the client C{cs_id} as the transcripts show theirs.
    """
    session = bed.client_session(cs_id)
    assert record["Id"] == str(cs_id)
    assert record["Cluster"] == bed.cluster
    assert record["Tenant"] == "sys"
    assert record["User"] == "root"
    assert record["Host"] == f"127.0.0.1:{session.peer_port}"
    assert record["db"] == "NULL"
    assert record["trans_count"].isdigit(), record
    assert record["svr_session_count"] == "1"
    assert record["state"] == "MCS_ACTIVE_READER"
    assert record["tid"] == record["pid"] == str(os.getpid())
    assert record["using_ssl"] == "0"
    assert record["proxy_sessid"].isdigit()
    assert int(record["proxy_sessid"]) == session.proxy_sessid % (1 << 64)


def _show_own_session(bed: Bed, cli: InteractiveCLI, statement: str = "SHOW PROXYSESSION;") -> None:
    out = cli.run(statement)
    table = _table(out, PROXYSESSION_COLUMNS)
    mine = [r for r in table.records() if r["Id"] == str(cli.connection_id)]
    assert len(mine) == 1, table
    _check_own_row(bed, mine[0], cli.connection_id)
    assert table.footer.startswith(f"{len(table.rows)} row"), table.footer


def _lost_then_reconnected(cli: InteractiveCLI, statement: str) -> Tuple[int, str]:
    """
    Run C{statement} on a connection the proxy has closed: the client reports 2013 or 2006 and
    (at once, or on the next try with 2006 as in 000) reconnects, printing the new id.

    @return: the new connection id and the output that holds the statement's result.
    """
    old = cli.connection_id
    first = cli.run(statement)
    errors = parse_errors(first)
    assert errors and errors[0].code in (2013, 2006), first
    assert errors[0].sqlstate == "HY000"
    final = first
    if RECONNECTING not in first:
        # 000: "ERROR 2013 (HY000): Lost connection ..." alone, then on the next statement
        # "ERROR 2006 (HY000): ... gone away" with the reconnect.
        assert errors[0].code == 2013, first
        final = cli.run(statement)
        errors = parse_errors(final)
        assert errors and errors[0].code == 2006, final
        assert "gone away" in errors[0].message
    assert RECONNECTING in final, final
    assert NO_DATABASE in final, final
    new = reconnected_id(final)
    assert new is not None and new != old, final
    assert len(parse_errors(final)) == 1, final  # the statement itself then worked
    cli.connection_id = new
    return new, final


def _attribute_rows(text: str) -> List[Tuple[str, str, str]]:
    """
    The (attribute_name, value, info) rows of an ATTRIBUTE answer (none for C{Empty set}).
    """
    _no_error(text)
    if text.startswith("Empty set"):
        return []
    table = _table(text, ATTRIBUTE_COLUMNS)
    assert table.footer.startswith(f"{len(table.rows)} row"), table.footer
    return [(r[0], r[1], r[2]) for r in table.rows]


def _attribute(rows: Sequence[Tuple[str, str, str]], name: str, info: str) -> str:
    values = [v for n, v, i in rows if n == name and i == info]
    assert len(values) == 1, (name, info, rows)
    return values[0]


def _check_id_attributes(
    bed: Bed, rows: Sequence[Tuple[str, str, str]], cs_id: int
) -> Tuple[int, int]:
    """
    The C{like '%id%'} rows are 004's eight (plus 000's idc_name) with this session's values.

    @return: the server session's C{server_sessid} and C{ss_id}.
    """
    pairs = [(n, i) for n, _, i in rows]
    without_idc = [p for p in pairs if p != ("idc_name", "cs common")]
    assert without_idc == list(ID_ATTRIBUTES), pairs
    if len(pairs) != len(without_idc):
        assert pairs.index(("idc_name", "cs common")) == 4, pairs  # after pid, as in 000
    session = bed.client_session(cs_id)
    bound = session.bound
    assert bound is not None
    assert _attribute(rows, "cs_id", "cs common") == str(cs_id)
    assert int(_attribute(rows, "proxy_sessid", "cs common")) % (1 << 64) == (
        session.proxy_sessid % (1 << 64)
    )
    assert _attribute(rows, "tid", "cs common") == str(os.getpid())
    assert _attribute(rows, "pid", "cs common") == str(os.getpid())
    server_sessid = int(_attribute(rows, "server_sessid", "last used ss"))
    ss_id = int(_attribute(rows, "ss_id", "last used ss"))
    assert server_sessid == bound.backend_id
    assert ss_id == bound.ss_id
    return server_sessid, ss_id


def _backend_has_connection(bed: Bed, backend_id: int) -> bool:
    with bed.proxy.direct() as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (backend_id,)
        )
        return bool(cursor.fetchone()[0])


def _poll(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# -- SHOW PROXYSESSION ------------------------------------------------------------------------


def _show_proxysession(bed: Bed) -> None:
    cli = bed.cli()
    # 000/002: the caller's own row; 004 writes the statement in lower case.
    _show_own_session(bed, cli, "SHOW PROXYSESSION;")
    _show_own_session(bed, cli, "show proxysession;")
    out = cli.run("SELECT CONNECTION_ID();")
    table = _table(out, ["CONNECTION_ID()"])
    assert table.rows == ((str(cli.connection_id),),)
    # 004: a sys tenant user sees every session of the proxy (here also the native user's).
    other = bed.cli(native=True)
    table = _table(cli.run("SHOW PROXYSESSION;"), PROXYSESSION_COLUMNS)
    assert sorted(table.column("Id"), key=int) == sorted(
        [str(cli.connection_id), str(other.connection_id)], key=int
    )
    row = next(r for r in table.records() if r["Id"] == str(other.connection_id))
    assert row["User"] == bed.native[0]
    assert row["Tenant"] == "sys"
    assert row["state"] in MCS_STATES
    # Batch mode (mariadb -t, statements on stdin): a session of its own, in the list too.
    result = bed.batch(
        "SHOW PROXYSESSION;\nSHOW PROXYSESSION ATTRIBUTE like 'cs_id';\n", stdin=True
    )
    assert result.returncode == 0 and not result.stderr, result
    tables = parse_tables(result.stdout)
    assert [t.columns for t in tables] == [PROXYSESSION_COLUMNS, ATTRIBUTE_COLUMNS], tables
    own_id = tables[1].rows[0][1]
    assert len(tables[0].rows) == 3 and own_id in tables[0].column("Id"), tables
    assert own_id not in (str(cli.connection_id), str(other.connection_id))
    # The STAT form: two columns, the session's counters.
    stat = _table(cli.run(f"SHOW PROXYSESSION STAT {cli.connection_id};"), ["stat_name", "value"])
    assert stat.rows and all(re.fullmatch(r"-?\d+", v) for _, v in stat.rows), stat


@pytest_twisted.inlineCallbacks
def test_show_proxysession(bed: Bed) -> Iterator[Any]:
    """
    SHOW PROXYSESSION: the 13 columns of 000 in order; the caller's row has Id = the client's
    connection id, Host 127.0.0.1:<its port>, db NULL, one server session, MCS_ACTIVE_READER,
    tid = pid = this process, using_ssl 0; SELECT CONNECTION_ID() gives the same id.
    """
    yield _scenario(bed, _show_proxysession)


# -- killing one's own session ------------------------------------------------------------------

#: (how the statement names the session, the statement, the statement run after it)
SELF_KILLS = [
    ("cs_id", "KILL PROXYSESSION {id};", "SHOW PROXYSESSION;"),
    ("connection_id", "KILL PROXYSESSION {id};", "SHOW PROXYSESSION;"),
    ("server_sessid", "KILL PROXYSESSION {id};", "SHOW PROXYSESSION;"),
    ("cs_id", "kill {id};", "select 88;"),
    ("connection_id", "kill {id};", "select 88;"),
]


def _kill_self(bed: Bed, named_by: str, kill: str, after: str) -> None:
    cli = bed.cli()
    _show_own_session(bed, cli)
    if named_by == "cs_id":
        number = cli.connection_id
    elif named_by == "connection_id":
        table = _table(cli.run("SELECT CONNECTION_ID();"), ["CONNECTION_ID()"])
        number = int(table.rows[0][0])
    else:
        rows = _attribute_rows(cli.run("SHOW PROXYSESSION ATTRIBUTE like 'server_sessid';"))
        number = int(_attribute(rows, "server_sessid", "last used ss"))
    old = cli.connection_id
    _expect_error(cli.run(kill.format(id=number)), 1317, "70100", "Query execution was interrupted")
    assert _poll(lambda: bed.proxy.manager.find_client_session(old) is None), (
        f"client session {old} still open after killing itself"
    )
    new, final = _lost_then_reconnected(cli, after)
    if after.startswith("SHOW"):
        # The reconnected client sees only its new session: the killed one is gone.
        table = only_table(final)
        assert table.columns == PROXYSESSION_COLUMNS
        assert len(table.rows) == 1, table
        _check_own_row(bed, table.records()[0], new)
    else:
        assert only_table(final).rows == (("88",),), final


@pytest.mark.parametrize(
    ("named_by", "kill", "after"),
    SELF_KILLS,
    ids=[f"{k.split()[0]}{' PROXYSESSION' if 'PROXY' in k else ''}-{n}" for n, k, _ in SELF_KILLS],
)
@pytest_twisted.inlineCallbacks
def test_kill_own_session(bed: Bed, named_by: str, kill: str, after: str) -> Iterator[Any]:
    """
    000/002/004: KILL PROXYSESSION <cs_id | connection_id> and kill <cs_id | connection_id> on
    one's own session answer ERROR 1317 (70100) and close it; the next statement reports 2013
    (then 2006) or 2006, the client reconnects (Connection id: N, Current database: *** NONE ***)
    and SHOW PROXYSESSION shows only the new session.  000's connection_id is the observer's
    session id, so the backend connection id (server_sessid) is tried as well.
    """
    yield _scenario(bed, lambda b: _kill_self(b, named_by, kill, after))


# -- SHOW PROXYSESSION ATTRIBUTE ----------------------------------------------------------------


def _attributes(bed: Bed) -> None:
    cli = bed.cli()
    cs_id = cli.connection_id
    _no_error(cli.run("SELECT 1;"))
    full = _attribute_rows(cli.run("SHOW PROXYSESSION ATTRIBUTE;"))
    assert [(n, i) for n, _, i in full] == list(FULL_ATTRIBUTES), [(n, i) for n, _, i in full]
    session = bed.client_session(cs_id)
    bound = session.bound
    values = {(n, i): v for n, v, i in full}
    expected = {
        ("cs_id", "cs common"): str(cs_id),
        ("cluster", "cs common"): bed.cluster,
        ("tenant", "cs common"): "sys",
        ("user", "cs common"): "root",
        ("host_ip", "cs common"): "127.0.0.1",
        ("host_port", "cs common"): str(session.peer_port),
        ("db", "cs common"): "NULL",
        ("svr_session_cnt", "cs common"): "1",
        ("active", "cs common"): "true",
        ("read_state", "cs common"): "MCS_ACTIVE_READER",
        ("tid", "cs common"): str(os.getpid()),
        ("pid", "cs common"): str(os.getpid()),
        ("server_ip", "last used ss"): bed.backend.host,
        ("server_port", "last used ss"): str(bed.backend.port),
        ("server_sessid", "last used ss"): str(bound.backend_id),
        ("ss_id", "last used ss"): str(bound.ss_id),
        ("state", "last used ss"): "MSS_KA_CLIENT_SLAVE",
    }
    assert {k: values[k] for k in expected} == expected
    for name in (*_VERSIONS, "total_trans_cnt", "transact_count", "server_trans_stat"):
        for (n, _info), value in values.items():
            if n == name:
                assert re.fullmatch(r"-?\d+", value), (name, value)
    # The same with the id given, by cs_id and by the backend connection id (004).
    by_cs = _attribute_rows(cli.run(f"SHOW PROXYSESSION ATTRIBUTE {cs_id};"))
    assert [(n, i) for n, _, i in by_cs] == list(FULL_ATTRIBUTES)
    assert _attribute(by_cs, "ss_id", "last used ss") == str(bound.ss_id)
    # 004: ... ATTRIBUTE 2 like '%id%' and ... ATTRIBUTE 2147549201 like '%id%' agree.
    by_id = _attribute_rows(cli.run(f"SHOW PROXYSESSION ATTRIBUTE {cs_id} like '%id%';"))
    server_sessid, ss_id = _check_id_attributes(bed, by_id, cs_id)
    by_backend = _attribute_rows(
        cli.run(f"SHOW PROXYSESSION ATTRIBUTE {server_sessid} like '%id%';")
    )
    assert by_backend == by_id
    # Another session (sys tenant) reads the same rows by either id.
    other = bed.cli()
    assert _attribute_rows(other.run(f"SHOW PROXYSESSION ATTRIBUTE {cs_id} like '%id%';")) == by_id
    # LIKE: _ matches one character; no match is an empty set, not an error.
    rows = _attribute_rows(cli.run("SHOW PROXYSESSION ATTRIBUTE like 'cs_id';"))
    assert [(n, i) for n, _, i in rows] == [("cs_id", "cs common")]
    rows = _attribute_rows(cli.run("show proxysession attribute like 's__id';"))
    assert [(n, i) for n, _, i in rows] == [("ss_id", "last used ss")]
    out = cli.run("SHOW PROXYSESSION ATTRIBUTE like 'no_such_attribute';")
    _no_error(out)
    assert "Empty set" in out, out
    assert ss_id == bound.ss_id
    # 004's blocks for the other roles: last_insert_id changed on the bound ss ("&& lii ss"),
    # then a second server session (a forced route) puts the first one in the pool.
    table = "test.h4_lii (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
    _no_error(cli.run(f"CREATE TABLE IF NOT EXISTS {table};"))
    _no_error(cli.run("INSERT INTO test.h4_lii (v) VALUES (1);"))
    rows = _attribute_rows(cli.run("SHOW PROXYSESSION ATTRIBUTE;"))
    assert [(n, i) for n, _, i in rows[-17:]] == [(n, "last used && lii ss") for n in _SS_BLOCK]
    assert int(_attribute(rows, "last_insert_id_version", "cs var version")) > 0
    route = f"localhost:{bed.backend.port}"
    _no_error(cli.run(f"SET @obproxy_route_addr = '{route}';"))
    _no_error(cli.run("SELECT 2;"))
    rows = _attribute_rows(cli.run("SHOW PROXYSESSION ATTRIBUTE;"))
    infos = [i for _, _, i in rows]
    assert infos.count("last used ss") == 17, infos
    assert infos.count("ss pool && lii ss [0]") == 17, infos
    assert _attribute(rows, "svr_session_cnt", "cs common") == "2"
    assert _attribute(rows, "state", "ss pool && lii ss [0]") == "MSS_KA_SHARED"
    assert _attribute(rows, "ss_id", "ss pool && lii ss [0]") == str(ss_id)
    assert _attribute(rows, "state", "last used ss") == "MSS_KA_CLIENT_SLAVE"
    # Ours, not ODP's: while pinned (here by a transaction) a row says why, after the cs rows.
    _no_error(cli.run("BEGIN;"))
    _no_error(cli.run("SELECT 3;"))
    rows = _attribute_rows(cli.run("SHOW PROXYSESSION ATTRIBUTE;"))
    pins = [(k, n, v) for k, (n, v, i) in enumerate(rows) if i == "cs pin"]
    assert [(k, n) for k, n, _ in pins] == [(22, "pin_reasons")], rows
    assert "transaction" in pins[0][2]
    _no_error(cli.run("COMMIT;"))
    out = cli.run("SHOW PROXYSESSION ATTRIBUTE like 'pin%';")
    assert out.startswith("Empty set"), out


@pytest_twisted.inlineCallbacks
def test_show_proxysession_attribute(bed: Bed) -> Iterator[Any]:
    """
    000: SHOW PROXYSESSION ATTRIBUTE lists 39 rows in order (cs common, cs stat, cs var version,
    then the `last used ss` block with state MSS_KA_CLIENT_SLAVE); 004: with an id (cs_id or the
    backend's connection id) and like '%id%' the eight id rows.
    """
    yield _scenario(bed, _attributes)


# -- SHOW PROXYSESSION VARIABLES ----------------------------------------------------------------


def _variables(bed: Bed) -> None:
    cli = bed.cli()
    cs_id = cli.connection_id
    # A fresh session may have changed no variable yet (ODP's show its own ob_* ones).
    fresh = cli.run(f"SHOW PROXYSESSION VARIABLES {cs_id};")
    if not fresh.startswith("Empty set"):
        _table(fresh, VARIABLES_COLUMNS)
    before = _versions(cli)
    _no_error(cli.run("SET @x = 1;"))
    _no_error(cli.run("SET @h4_name = 'text';"))
    _no_error(cli.run("SET autocommit = 0;"))
    _no_error(cli.run("SET SESSION wait_timeout = 3601;"))
    _no_error(cli.run("USE test;"))
    _no_error(cli.run("SELECT 1;"))
    after = _versions(cli)
    # 004's attribute table: each kind of change moves its own version; the server session
    # that ran the statements is in step with the client session.
    for name in ("user_var_version", "hot_sys_var_version", "sys_var_version", "db_name_version"):
        assert after["cs var version", name] > before["cs var version", name], (name, after)
    ss_block = {n: v for (i, n), v in after.items() if i == "last used ss"}
    cs_block = {n: v for (i, n), v in after.items() if i == "cs var version"}
    assert ss_block == cs_block, after
    changed = _table(cli.run(f"SHOW PROXYSESSION VARIABLES {cs_id};"), VARIABLES_COLUMNS)
    rows = {r["variable_name"]: r for r in changed.records()}
    assert rows["x"] == {
        "variable_name": "x",
        "value": "1",
        "info": "user var",
        "modified_type": "cold modified vars",
        "sys_variable_flag": "",
    }, rows["x"]
    assert rows["h4_name"]["value"] == "'text'"  # 004: a SQL literal, strings quoted
    assert rows["h4_name"]["info"] == "user var"
    autocommit = rows["autocommit"]
    # The spec shows no autocommit value; the backend reports it as OFF (session tracking).
    assert autocommit["value"] in AUTOCOMMIT_OFF, autocommit
    assert autocommit["info"] == "changed sys var"
    assert autocommit["modified_type"] == "hot modified vars"
    assert "session_scope" in autocommit["sys_variable_flag"], autocommit
    wait = rows["wait_timeout"]
    assert (wait["value"], wait["info"], wait["modified_type"]) == (
        "3601",
        "changed sys var",
        "cold modified vars",
    )
    infos = changed.column("info")
    assert infos == sorted(infos), infos  # changed sys vars, then user vars
    assert set(infos) == {"changed sys var", "user var"}
    # 004: by CONNECTION_ID() the same rows; without an id, one's own session.
    connection_id = _table(cli.run("SELECT CONNECTION_ID();"), ["CONNECTION_ID()"]).rows[0][0]
    by_connection = _table(
        cli.run(f"SHOW PROXYSESSION VARIABLES {connection_id};"), VARIABLES_COLUMNS
    )
    assert by_connection.rows == changed.rows
    own = _table(cli.run("SHOW PROXYSESSION VARIABLES;"), VARIABLES_COLUMNS)
    assert own.rows == changed.rows
    assert _table(cli.run("SHOW PROXYSESSION;"), PROXYSESSION_COLUMNS).records()[0]["db"] == "test"
    # 004: VARIABLES all <id>: every sys var ("sys var"), then the user vars.
    every = _table(cli.run(f"SHOW PROXYSESSION VARIABLES all {cs_id};"), VARIABLES_COLUMNS)
    records = every.records()
    infos = [r["info"] for r in records]
    assert infos.count("sys var") > 50, infos
    assert infos == ["sys var"] * infos.count("sys var") + ["user var"] * 2, infos
    by_name = {r["variable_name"]: r for r in records}
    assert by_name["autocommit"]["modified_type"] == "hot modified vars"
    assert by_name["autocommit"]["value"] in AUTOCOMMIT_OFF, by_name["autocommit"]
    assert by_name["x"]["info"] == "user var"
    for record in records:
        assert record["modified_type"] in (
            "cold modified vars",
            "hot modified vars",
            "last insert id modified vars",
        ), record
        flags = record["sys_variable_flag"]
        if record["info"] == "sys var":
            assert re.fullmatch(r"((&& \w+)( && \w+)*)?", flags), record
    # LIKE, case-insensitive keywords.
    liked = _table(
        cli.run(f"show proxysession variables ALL {cs_id} like 'auto%';"), VARIABLES_COLUMNS
    )
    names = liked.column("variable_name")
    assert "autocommit" in names and "auto_increment_increment" in names, names
    assert all(n.startswith("auto") for n in names), names


def _versions(cli: InteractiveCLI) -> Dict[Tuple[str, str], int]:
    rows = _attribute_rows(cli.run("SHOW PROXYSESSION ATTRIBUTE like '%version';"))
    return {(i, n): int(v) for n, v, i in rows}


@pytest_twisted.inlineCallbacks
def test_show_proxysession_variables(bed: Bed) -> Iterator[Any]:
    """
    004: SHOW PROXYSESSION VARIABLES [all] id: the five columns; SET @x shows up as a cold
    `user var`, SET autocommit as a `hot modified vars` changed sys var, by cs_id, by
    CONNECTION_ID() and without an id alike.
    """
    yield _scenario(bed, _variables)


# -- KILL PROXYSESSION cs ss ---------------------------------------------------------------------


def _kill_server_session(bed: Bed) -> None:
    cli = bed.cli()
    cs_id = cli.connection_id
    _no_error(cli.run("SET @h4_kept = 7;"))
    rows = _attribute_rows(cli.run(f"SHOW PROXYSESSION ATTRIBUTE {cs_id} like '%id%';"))
    server_sessid, ss_id = _check_id_attributes(bed, rows, cs_id)
    admin = bed.cli()  # a second root@sys connection (000: "in the sys tenant")
    # An ss_id the session does not have: 1094 (odp-reference §4.3).
    _expect_error(
        admin.run(f"KILL PROXYSESSION {cs_id} {ss_id + 1000};"),
        1094,
        "HY000",
        f"Unknown thread id: {ss_id + 1000}",
    )
    out = admin.run(f"KILL PROXYSESSION {cs_id} {ss_id};")
    _no_error(out)
    assert out.startswith("Query OK"), out

    def gone() -> bool:
        rows = _attribute_rows(admin.run(f"SHOW PROXYSESSION ATTRIBUTE {cs_id} like 'ss_id';"))
        return all(v != str(ss_id) for _, v, _ in rows)

    assert _poll(gone), f"server session {ss_id} still listed after KILL PROXYSESSION"
    assert _poll(lambda: not _backend_has_connection(bed, server_sessid)), (
        f"backend connection {server_sessid} still open"
    )
    # The client session is alive and its next statement works, with its state intact.
    assert bed.proxy.manager.find_client_session(cs_id) is not None
    out = cli.run("SELECT @h4_kept;")
    assert only_table(out).rows == (("7",),), out
    _no_error(out)
    assert cli.connection_id == cs_id and RECONNECTING not in out
    rows = _attribute_rows(cli.run("SHOW PROXYSESSION ATTRIBUTE like '%id%';"))
    new_sessid, new_ss_id = _check_id_attributes(bed, rows, cs_id)
    assert new_ss_id != ss_id and new_sessid != server_sessid


@pytest_twisted.inlineCallbacks
def test_kill_proxysession_server_session(bed: Bed) -> Iterator[Any]:
    """
    000: KILL PROXYSESSION <cs_id> <ss_id> (ss_id read from ATTRIBUTE) from a second root@sys
    connection answers OK and closes just that server session (gone from ATTRIBUTE and from the
    backend); the client's next statement works without an error, on a new server session.
    """
    yield _scenario(bed, _kill_server_session)


# -- KILL [CONNECTION | QUERY] from another session ----------------------------------------------


def _kill_query(bed: Bed) -> None:
    sleeper = bed.cli()
    killer = bed.cli()
    # An idle target: OK, and nothing happens to it.
    out = killer.run(f"KILL QUERY {sleeper.connection_id};")
    _no_error(out)
    assert out.startswith("Query OK"), out
    _no_error(sleeper.run("SELECT 1;"))
    statement = "SELECT SLEEP(60), 'h4_kill_query';"
    sleeper.send(statement)
    running_at = time.monotonic()

    def running() -> bool:
        with bed.proxy.direct() as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                " WHERE INFO LIKE 'SELECT SLEEP(60), %'"
            )
            return bool(cursor.fetchone()[0])

    assert _poll(running, 5.0), "SELECT SLEEP(60) never reached the backend"
    # odp-reference 5: the server session running the request is the `curr used ss`, MSS_ACTIVE.
    rows = _attribute_rows(killer.run(f"SHOW PROXYSESSION ATTRIBUTE {sleeper.connection_id};"))
    assert [i for _, _, i in rows[22:]] == ["curr used ss"] * len(_SS_BLOCK), rows
    assert _attribute(rows, "state", "curr used ss") == "MSS_ACTIVE"
    started = time.monotonic()
    out = killer.run(f"KILL QUERY {sleeper.connection_id};", timeout=5.0)
    try:
        answer = strip_echo(sleeper.read_until_prompt(timeout=5.0), statement)
    except CLITimeoutError:
        waited = time.monotonic() - running_at
        message = f"SELECT SLEEP(60) still running {waited:.1f}s after KILL QUERY: {out!r}"
        raise AssertionError(message) from None
    elapsed = time.monotonic() - started
    _no_error(out)
    assert elapsed < KILL_QUERY_BUDGET, f"KILL QUERY took {elapsed:.2f}s to stop SLEEP(60)"
    # MariaDB's SLEEP returns 1 when interrupted; OceanBase reports 1317.
    errors = parse_errors(answer)
    if errors:
        assert [(e.code, e.sqlstate) for e in errors] == [(1317, "70100")], answer
    else:
        assert only_table(answer).rows == (("1", "h4_kill_query"),), answer
    # KILL QUERY leaves the connection alone.
    out = sleeper.run("SELECT 2;")
    assert only_table(out).rows == (("2",),) and RECONNECTING not in out, out


@pytest_twisted.inlineCallbacks
def test_kill_query_stops_sleep(bed: Bed) -> Iterator[Any]:
    """
    KILL QUERY <id> from a second connection stops a running SELECT SLEEP(60) within a second
    (issue 4); on an idle session it answers OK; the connection survives either way.
    """
    yield _scenario(bed, _kill_query)


def _kill_other(bed: Bed) -> None:
    victim = bed.cli()
    killer = bed.cli()
    # 004: "Before you execute the kill statement, you must obtain the connection ID by using
    # the show processlist statement" (ODP's columns, odp-reference 4.2).
    listed = _table(killer.run("SHOW PROCESSLIST;"), PROCESSLIST_COLUMNS)
    assert sorted(listed.column("Id"), key=int) == sorted(
        [str(victim.connection_id), str(killer.connection_id)], key=int
    )
    old = victim.connection_id
    out = killer.run(f"KILL {old};")
    _no_error(out)
    assert out.startswith("Query OK"), out
    assert _poll(lambda: bed.proxy.manager.find_client_session(old) is None), (
        f"client session {old} still open after KILL {old} from another session"
    )
    new, final = _lost_then_reconnected(victim, "select 88;")
    assert only_table(final).rows == (("88",),)
    # The killer's session list no longer has the victim's old id but has its new one.
    ids = _table(killer.run("SHOW PROXYSESSION;"), PROXYSESSION_COLUMNS).column("Id")
    assert str(old) not in ids and str(new) in ids, ids
    # Unknown id: 1094 (here in batch mode, where the client exits with status 1).
    result = bed.batch("KILL 999999")
    assert result.returncode == 1, result
    _expect_error(result.stderr, 1094, "HY000", "Unknown thread id: 999999")


@pytest_twisted.inlineCallbacks
def test_kill_other_session(bed: Bed) -> Iterator[Any]:
    """
    004: `kill <id>` closes that client session (OK for the caller, a lost connection and a
    reconnect for the victim); an unknown id answers 1094 Unknown thread id.
    """
    yield _scenario(bed, _kill_other)
