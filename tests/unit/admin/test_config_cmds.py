"""
Tests for L{obproxy_tx.plugins.obproxy_config}: C{SHOW PROXYCONFIG} (grammar,
plain/ALL/DIFF/DIFF USER, LIKE, secrets masked) and C{ALTER PROXYCONFIG SET}
(grammar, validation errors, restart-only items, saving, rollback), run
directly against a session-manager stand-in, and through the registry.
"""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest

from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminError,
    AdminOK,
    AdminResultSet,
    Privilege,
)
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.config import ITEMS, ProxyConfig, load_config, parse_config
from obproxy_tx.config_store import DEFAULT_SUFFIX
from obproxy_tx.plugins.obproxy_config import (
    COLUMNS,
    MASK,
    AlterMatch,
    AlterProxyConfig,
    ShowMatch,
    ShowProxyConfig,
    unquote,
)
from obproxy_tx.session.stats import ProxyStats
from obproxy_tx.wire.scramble import native_password_verifier, verifier_to_hex

SHOW = ShowProxyConfig()
ALTER = AlterProxyConfig()

CLUSTERS = """\
clusters:
  - name: c1
    type: mysql
    servers: ["127.0.0.1:3306"]
"""


class StandInManager:
    """
    What the commands use of a session manager: C{config}, C{stats},
    optionally C{reconfigure}.
    """

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.stats = ProxyStats()


class ReconfiguringManager(StandInManager):
    """
    A manager with C{reconfigure} that records its calls and fails the
    first C{failures} of them.
    """

    def __init__(self, config: ProxyConfig, failures: int = 0) -> None:
        super().__init__(config)
        self.calls: List[ProxyConfig] = []
        self.failures = failures

    def reconfigure(self, new: ProxyConfig) -> None:
        self.calls.append(new)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("cannot apply")
        self.config = new


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """
    A config file in C{tmp_path}: C{extra} items, then one MariaDB cluster.
    """
    path = tmp_path / "conf.yaml"
    path.write_text(textwrap.dedent(extra) + CLUSTERS)
    return path


def show(manager: Any, sql: str) -> AdminResultSet:
    match = SHOW.match(sql)
    assert match is not None, sql
    result = SHOW.execute(AdminContext(None, manager, manager.config), match)
    assert isinstance(result, AdminResultSet)
    return result


def alter(manager: Any, sql: str) -> AdminOK | AdminError:
    match = ALTER.match(sql)
    assert match is not None, sql
    result = ALTER.execute(AdminContext(None, manager, manager.config), match)
    assert isinstance(result, (AdminOK, AdminError))
    return result


def names(result: AdminResultSet) -> List[str]:
    return [row[0] for row in result.rows]


def rows_by_name(result: AdminResultSet) -> Dict[str, Sequence[Any]]:
    return {row[0]: row for row in result.rows}


# --------------------------------------------------------------------------------------
# Declarations and discovery


def test_declarations() -> None:
    """
    Both are admin-only proxy commands whose refusal forwards the text to the
    backend (denied None), as ODP does for non-admin users.
    """
    for command in (SHOW, ALTER):
        assert command.privilege == Privilege.ADMIN
        assert command.proxy_only is True
        assert command.denied is None
    assert tuple(SHOW.columns) == (
        "name",
        "value",
        "info",
        "need_reboot",
        "visible_level",
        "range",
        "config_level",
    )
    assert ALTER.columns == ()


def test_discovered_and_recognised() -> None:
    """
    The plugins are found; a malformed statement is recognised by its
    keywords only (match None), so the session answers 5010.
    """
    registry = CommandRegistry.from_plugins()
    found = {command.name for command in registry.commands}
    assert {"SHOW PROXYCONFIG", "ALTER PROXYCONFIG"} <= found
    recognised = registry.recognise(b"  show   proxyconfig diff user like 'client%';")
    assert recognised is not None
    assert recognised.command.name == "SHOW PROXYCONFIG"
    assert recognised.match == ShowMatch("diff user", "client%")
    malformed = registry.recognise(b"ALTER PROXYCONFIG SET")
    assert malformed is not None
    assert malformed.command.name == "ALTER PROXYCONFIG"
    assert malformed.match is None


# --------------------------------------------------------------------------------------
# SHOW PROXYCONFIG grammar


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SHOW PROXYCONFIG", ShowMatch("", None)),
        ("show proxyconfig", ShowMatch("", None)),
        ("SHOW\n\tPROXYCONFIG  ALL", ShowMatch("all", None)),
        ("show proxyconfig diff", ShowMatch("diff", None)),
        ("SHOW PROXYCONFIG DIFF USER", ShowMatch("diff user", None)),
        ("SHOW PROXYCONFIG LIKE 'client%'", ShowMatch("", "client%")),
        ('SHOW PROXYCONFIG ALL LIKE "%password"', ShowMatch("all", "%password")),
        ("SHOW PROXYCONFIG DIFF USER LIKE 'x'", ShowMatch("diff user", "x")),
        (r"SHOW PROXYCONFIG LIKE 'proxy\_id'", ShowMatch("", r"proxy\_id")),
        ("SHOW PROXYCONFIG LIKE 'it''s'", ShowMatch("", "it's")),
    ],
)
def test_show_grammar(sql: str, expected: ShowMatch) -> None:
    """
    ODP's grammar, case-insensitive, any blanks; LIKE with either quote.
    """
    assert SHOW.match(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW PROXYCONFIG FOO",
        "SHOW PROXYCONFIG ALL DIFF",
        "SHOW PROXYCONFIG USER",
        "SHOW PROXYCONFIG ALL USER",
        "SHOW PROXYCONFIG LIKE",
        "SHOW PROXYCONFIG LIKE client%",
        "SHOW PROXYCONFIG LIKE 'a' 'b'",
        "SHOW PROXYCONFIGS",
    ],
)
def test_show_grammar_refuses(sql: str) -> None:
    """
    Anything else is not this command (the session answers 5010).
    """
    assert SHOW.match(sql) is None


# --------------------------------------------------------------------------------------
# SHOW PROXYCONFIG output


def test_plain_show_lists_visible_items_in_order() -> None:
    """
    Plain SHOW lists every USER and SYS item in ITEMS order and leaves the
    credentials (DBA) to ALL; ALL lists every item.
    """
    manager = StandInManager(parse_config(CLUSTERS))
    plain = show(manager, "SHOW PROXYCONFIG")
    assert plain.columns == tuple(COLUMNS)
    expected = [item.name for item in ITEMS.values() if item.visible_level in ("USER", "SYS")]
    assert names(plain) == expected
    assert "obproxy_sys_password" not in names(plain)
    assert "client_max_connections" in names(plain)
    everything = show(manager, "SHOW PROXYCONFIG ALL")
    assert names(everything) == list(ITEMS)
    assert {row[4] for row in everything.rows} == {"USER", "SYS", "DBA"}


def test_row_cells() -> None:
    """
    A row holds ODP's cells: value as text, info, need_reboot true/false,
    visible level, range, LEVEL_GLOBAL.
    """
    manager = StandInManager(parse_config("client_max_connections: 64\n" + CLUSTERS))
    rows = rows_by_name(show(manager, "SHOW PROXYCONFIG"))
    assert rows["client_max_connections"] == (
        "client_max_connections",
        "64",
        ITEMS["client_max_connections"].description,
        "false",
        "USER",
        "[0, 2147483647]",
        "LEVEL_GLOBAL",
    )
    assert rows["listen_port"][3] == "true"
    assert rows["listen_port"][4] == "SYS"
    assert rows["default_inactivity_timeout"][1] == "180000s"
    assert rows["proxy_service_mode"][5] == "[client, server]"


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("client_max%", ["client_max_connections"]),
        ("CLIENT_MAX_CONNECTIONS", ["client_max_connections"]),
        ("%_ssl_c%", ["client_ssl_cert", "server_ssl_ca", "server_ssl_cert"]),
        (r"proxy\_id", ["proxy_id"]),
        ("proxy_id", ["proxy_id"]),
        ("nothing%", []),
    ],
)
def test_like(pattern: str, expected: List[str]) -> None:
    """
    LIKE keeps the names matching the pattern (% any run, _ one character,
    backslash escapes, case-insensitive).
    """
    manager = StandInManager(parse_config(CLUSTERS))
    assert names(show(manager, f"SHOW PROXYCONFIG LIKE '{pattern}'")) == expected


def test_diff_and_diff_user() -> None:
    """
    DIFF lists the items whose value differs from the default, any level;
    DIFF USER only the USER ones.
    """
    text = "client_max_connections: 10\nproxy_id: 3\nmysql_version: '8.0.1'\n" + CLUSTERS
    manager = StandInManager(parse_config(text))
    assert names(show(manager, "SHOW PROXYCONFIG DIFF")) == [
        "proxy_id",
        "client_max_connections",
        "mysql_version",
    ]
    assert names(show(manager, "SHOW PROXYCONFIG DIFF USER")) == [
        "client_max_connections",
        "mysql_version",
    ]
    assert names(show(manager, "SHOW PROXYCONFIG DIFF LIKE 'proxy%'")) == ["proxy_id"]
    defaults = StandInManager(parse_config(CLUSTERS))
    assert names(show(defaults, "SHOW PROXYCONFIG DIFF")) == []


def test_secrets_are_masked() -> None:
    """
    Sensitive items show ****** when set, nothing when empty, in every mode;
    neither the secret nor its verifier appears in any cell.
    """
    verifier = verifier_to_hex(native_password_verifier(b"s3cret"))
    text = (
        f"obproxy_sys_password: '{verifier}'\nmetadata_user: meta\n"
        "metadata_password: 'pl41n-secret'\n" + CLUSTERS
    )
    manager = StandInManager(parse_config(text))
    for sql in ("SHOW PROXYCONFIG ALL", "SHOW PROXYCONFIG DIFF"):
        result = show(manager, sql)
        rows = rows_by_name(result)
        assert rows["obproxy_sys_password"][1] == MASK
        assert rows["metadata_password"][1] == MASK
        cells = " ".join(str(cell) for row in result.rows for cell in row)
        assert "pl41n-secret" not in cells
        assert verifier[1:] not in cells
    assert rows_by_name(show(manager, "SHOW PROXYCONFIG ALL"))["inspector_password"][1] == ""


# --------------------------------------------------------------------------------------
# ALTER PROXYCONFIG grammar


@pytest.mark.parametrize(
    "sql, name, text",
    [
        ("ALTER PROXYCONFIG SET client_max_connections = 100", "client_max_connections", "100"),
        ("alter proxyconfig set client_max_connections=100", "client_max_connections", "100"),
        ("ALTER PROXYCONFIG SET Client_Max_Connections = -1", "client_max_connections", "-1"),
        ("ALTER PROXYCONFIG SET mysql_version = '5.7.25'", "mysql_version", "5.7.25"),
        ('ALTER PROXYCONFIG SET mysql_version = "8.0 beta"', "mysql_version", "8.0 beta"),
        ("ALTER PROXYCONFIG SET proxy_service_mode = server", "proxy_service_mode", "server"),
        (
            "ALTER PROXYCONFIG SET default_inactivity_timeout = 10m",
            "default_inactivity_timeout",
            "10m",
        ),
        ("ALTER PROXYCONFIG SET mysql_version = ''", "mysql_version", ""),
        ("ALTER PROXYCONFIG SET mysql_version =", "mysql_version", ""),
        ("ALTER PROXYCONFIG SET mysql_version = 'it''s \\'x\\''", "mysql_version", "it's 'x'"),
        ("ALTER  PROXYCONFIG\nSET  app_name = foo", "app_name", "foo"),
    ],
)
def test_alter_grammar(sql: str, name: str, text: str) -> None:
    """
    C{SET name = value}: a name, a quoted string, an integer, or nothing.
    """
    assert ALTER.match(sql) == AlterMatch(name, text)


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER PROXYCONFIG SET",
        "ALTER PROXYCONFIG SET = 1",
        "ALTER PROXYCONFIG SET client_max_connections 1",
        "ALTER PROXYCONFIG SET client_max_connections = 1 2",
        "ALTER PROXYCONFIG SET a = 'unterminated",
        "ALTER PROXYCONFIG client_max_connections = 1",
        "ALTER PROXYCONFIG SET a.b = 1",
    ],
)
def test_alter_grammar_refuses(sql: str) -> None:
    """
    Malformed statements are not this command (the session answers 5010).
    """
    assert ALTER.match(sql) is None


def test_unquote() -> None:
    """
    MySQL string literal escapes; LIKE patterns keep their escapes.
    """
    assert unquote("'a\\nb'") == "a\nb"
    assert unquote('"say ""hi"""') == 'say "hi"'
    assert unquote("'50\\%'") == "50\\%"
    assert unquote("'a\\\\_b'", keep_like_escapes=True) == "a\\\\_b"


# --------------------------------------------------------------------------------------
# ALTER PROXYCONFIG: runtime items


def test_alter_runtime_item_applies_saves_and_survives_reload(tmp_path: Path) -> None:
    """
    A runtime item is applied to the running proxy (through reconfigure),
    saved next to the config file with mode 0600, and a reload keeps it.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    result = alter(manager, "ALTER PROXYCONFIG SET client_max_connections = 100")
    assert result == AdminOK()
    assert manager.config.client_max_connections == 100
    assert [config.client_max_connections for config in manager.calls] == [100]
    assert manager.stats.config_changes == 1
    saved = Path(str(path) + DEFAULT_SUFFIX)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert "client_max_connections: '100'" in saved.read_text()
    assert load_config(path).client_max_connections == 100
    rows = rows_by_name(show(manager, "SHOW PROXYCONFIG DIFF"))
    assert rows["client_max_connections"][1] == "100"


def test_alter_without_reconfigure_assigns_config(tmp_path: Path) -> None:
    """
    Until the manager has reconfigure, the new configuration is assigned.
    """
    manager = StandInManager(load_config(write_config(tmp_path)))
    assert alter(manager, "ALTER PROXYCONFIG SET default_inactivity_timeout = '10m'") == AdminOK()
    assert manager.config.default_inactivity_timeout == 600.0


def test_alter_twice_keeps_both_saved(tmp_path: Path) -> None:
    """
    Each ALTER adds to the saved items; a second one of the same item
    replaces the first.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    for sql in (
        "ALTER PROXYCONFIG SET client_max_connections = 100",
        "ALTER PROXYCONFIG SET mysql_version = '5.7.99-proxy'",
        "ALTER PROXYCONFIG SET client_max_connections = 200",
    ):
        assert alter(manager, sql) == AdminOK()
    reloaded = load_config(path)
    assert (reloaded.client_max_connections, reloaded.mysql_version) == (200, "5.7.99-proxy")


@pytest.mark.parametrize(
    "sql, words",
    [
        (
            "ALTER PROXYCONFIG SET client_max_connections = 'many'",
            ["client_max_connections", "expected an integer", "'many'"],
        ),
        ("ALTER PROXYCONFIG SET client_max_connections = -1", ["client_max_connections", "range"]),
        ("ALTER PROXYCONFIG SET connect_observer_max_retries = 9", ["[1, 5]"]),
        ("ALTER PROXYCONFIG SET proxy_service_mode = proxy", ["client, server"]),
        ("ALTER PROXYCONFIG SET enable_full_username = maybe", ["true or false"]),
        ("ALTER PROXYCONFIG SET client_max_conections = 1", ["did you mean"]),
        ("ALTER PROXYCONFIG SET no_such_item = 1", ["no_such_item", "not a config item"]),
        ("ALTER PROXYCONFIG SET learn_users = true", ["learn_users", "not a config item"]),
        ("ALTER PROXYCONFIG SET server_ssl_ca = '/no/such/ca.pem'", ["no such file"]),
    ],
)  # fmt: skip
def test_alter_validation_errors(tmp_path: Path, sql: str, words: List[str]) -> None:
    """
    A bad value, an unknown item or a refused combination is ERR 1210 (HY000)
    naming the item and the problem; nothing is applied or saved.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    before = manager.config
    result = alter(manager, sql)
    assert isinstance(result, AdminError)
    assert (result.code, result.sqlstate) == (1210, "HY000")
    assert result.message.startswith("Incorrect arguments to ALTER PROXYCONFIG: ")
    for word in words:
        assert word in result.message
    assert manager.config is before
    assert manager.calls == []
    assert not Path(str(path) + DEFAULT_SUFFIX).exists()


def test_app_name_refused_as_odp() -> None:
    """
    ODP refuses app_name (it is set with -n at start): OB_NOT_SUPPORTED,
    1235 (0A000) Not supported feature or function.
    """
    manager = StandInManager(parse_config(CLUSTERS))
    result = alter(manager, "ALTER PROXYCONFIG SET app_name = 'shop'")
    assert isinstance(result, AdminError)
    assert (result.code, result.message, result.sqlstate) == (
        1235,
        "Not supported feature or function",
        "0A000",
    )


def test_altered_config_file_not_alterable(tmp_path: Path) -> None:
    """
    Where ALTER saves cannot itself be saved by ALTER.
    """
    manager = StandInManager(load_config(write_config(tmp_path)))
    result = alter(manager, "ALTER PROXYCONFIG SET altered_config_file = '/tmp/x.yaml'")
    assert isinstance(result, AdminError)
    assert (result.code, result.sqlstate) == (1235, "0A000")
    assert "altered_config_file" in result.message


# --------------------------------------------------------------------------------------
# ALTER PROXYCONFIG: restart-only items


def test_need_reboot_item_is_saved_not_applied(tmp_path: Path) -> None:
    """
    A restart-only item is saved, the running value stays (reconfigure is not
    called), the OK info says so, SHOW marks it pending and DIFF lists it,
    and a restart picks it up.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    result = alter(manager, "ALTER PROXYCONFIG SET proxy_id = 42")
    assert isinstance(result, AdminOK)
    assert "proxy_id" in result.info
    assert "restart" in result.info
    assert manager.config.proxy_id == 0
    assert manager.calls == []
    row = rows_by_name(show(manager, "SHOW PROXYCONFIG LIKE 'proxy_id'"))["proxy_id"]
    assert row[1] == "0"
    assert "'42'" in row[2]
    assert "restart" in row[2]
    assert names(show(manager, "SHOW PROXYCONFIG DIFF")) == ["proxy_id"]
    assert load_config(path).proxy_id == 42


def test_need_reboot_combination_checked_with_saved_values(tmp_path: Path) -> None:
    """
    A change is checked against what a restart would run with: a saved
    client_session_id_version 1 refuses a later proxy_id above 255.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    assert isinstance(
        alter(manager, "ALTER PROXYCONFIG SET client_session_id_version = 1"), AdminOK
    )
    result = alter(manager, "ALTER PROXYCONFIG SET proxy_id = 300")
    assert isinstance(result, AdminError)
    assert result.code == 1210
    assert "255" in result.message
    assert load_config(path).proxy_id == 0


# --------------------------------------------------------------------------------------
# ALTER PROXYCONFIG: passwords


def test_plain_password_stored_as_verifier(tmp_path: Path) -> None:
    """
    As ODP hashes password items before saving: a plain password for a
    verifier item is stored as its verifier, applied at once, never shown.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    assert alter(manager, "ALTER PROXYCONFIG SET obproxy_sys_password = 'n3w-admin'") == AdminOK()
    verifier = native_password_verifier(b"n3w-admin")
    assert manager.config.obproxy_sys_password == verifier
    text = Path(str(path) + DEFAULT_SUFFIX).read_text()
    assert "n3w-admin" not in text
    assert verifier_to_hex(verifier) in text
    assert load_config(path).obproxy_sys_password == verifier
    rows = rows_by_name(show(manager, "SHOW PROXYCONFIG ALL LIKE '%password'"))
    assert rows["obproxy_sys_password"][1] == MASK


def test_verifier_taken_as_is_and_empty_clears(tmp_path: Path) -> None:
    """
    A *HEX verifier is stored as given; an empty value clears the password.
    """
    manager = ReconfiguringManager(load_config(write_config(tmp_path)))
    verifier = verifier_to_hex(native_password_verifier(b"x"))
    assert alter(manager, f"ALTER PROXYCONFIG SET inspector_password = '{verifier}'") == AdminOK()
    assert manager.config.inspector_password == native_password_verifier(b"x")
    assert alter(manager, "ALTER PROXYCONFIG SET inspector_password = ''") == AdminOK()
    assert manager.config.inspector_password == b""


# --------------------------------------------------------------------------------------
# ALTER PROXYCONFIG: failures and rollback


def test_saving_fails_nothing_changes(tmp_path: Path) -> None:
    """
    When the file cannot be written (its directory is gone), the answer is
    1026 naming the file and nothing is applied.
    """
    store = tmp_path / "gone" / "saved.yaml"
    path = write_config(tmp_path, f"altered_config_file: '{store}'\n")
    manager = ReconfiguringManager(load_config(path))
    before = manager.config
    result = alter(manager, "ALTER PROXYCONFIG SET client_max_connections = 100")
    assert isinstance(result, AdminError)
    assert (result.code, result.sqlstate) == (1026, "HY000")
    assert str(store) in result.message
    assert manager.config is before
    assert manager.calls == []
    assert manager.stats.config_changes == 0


def test_saving_fails_when_the_file_cannot_be_replaced(tmp_path: Path) -> None:
    """
    A save that fails at the rename (the saved-items path is a directory,
    which not even root can replace with a file) is refused the same way.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    (tmp_path / (path.name + ".altered.yaml")).mkdir()
    result = alter(manager, "ALTER PROXYCONFIG SET client_max_connections = 100")
    assert isinstance(result, AdminError)
    assert result.code == 1026
    assert manager.config.client_max_connections == 8192


def test_applying_fails_rolls_back_new_file(tmp_path: Path) -> None:
    """
    When reconfigure fails, the saved file is removed again (there was none)
    and the old configuration is put back: 1105 says it was rolled back.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path), failures=1)
    before = manager.config
    result = alter(manager, "ALTER PROXYCONFIG SET client_max_connections = 100")
    assert isinstance(result, AdminError)
    assert result.code == 1105
    assert "rolled back" in result.message
    assert "cannot apply" in result.message
    assert [config.client_max_connections for config in manager.calls] == [100, 8192]
    assert manager.config is before
    assert not Path(str(path) + DEFAULT_SUFFIX).exists()
    assert load_config(path).client_max_connections == 8192


def test_applying_fails_restores_previous_file(tmp_path: Path) -> None:
    """
    With earlier saved items, a failed application restores the file
    byte for byte.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    assert alter(manager, "ALTER PROXYCONFIG SET mysql_version = '5.7.1'") == AdminOK()
    saved = Path(str(path) + DEFAULT_SUFFIX)
    previous = saved.read_bytes()
    manager.failures = 1
    result = alter(manager, "ALTER PROXYCONFIG SET client_max_connections = 5")
    assert isinstance(result, AdminError)
    assert result.code == 1105
    assert saved.read_bytes() == previous
    assert manager.config.client_max_connections == 8192
    assert manager.config.mysql_version == "5.7.1"


def test_corrupt_saved_file_refuses_change(tmp_path: Path) -> None:
    """
    A saved file that no longer parses is not overwritten blindly.
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    saved = Path(str(path) + DEFAULT_SUFFIX)
    saved.write_text("client_max_connections: [unclosed\n")
    result = alter(manager, "ALTER PROXYCONFIG SET mysql_version = '1'")
    assert isinstance(result, AdminError)
    assert result.code == 1026
    assert saved.read_text() == "client_max_connections: [unclosed\n"
    assert manager.calls == []


# --------------------------------------------------------------------------------------
# ALTER PROXYCONFIG: nowhere to save, command line


def test_no_store_runtime_item_applied_for_this_run() -> None:
    """
    Without a -c file and altered_config_file, a runtime item is applied and
    the info says it is not saved.
    """
    manager = ReconfiguringManager(parse_config(CLUSTERS))
    assert manager.config.store_path == ""
    result = alter(manager, "ALTER PROXYCONFIG SET client_max_connections = 7")
    assert isinstance(result, AdminOK)
    assert "not saved" in result.info
    assert manager.config.client_max_connections == 7


def test_no_store_need_reboot_item_refused() -> None:
    """
    ... and a restart-only item, which could never take effect, is refused.
    """
    manager = ReconfiguringManager(parse_config(CLUSTERS))
    result = alter(manager, "ALTER PROXYCONFIG SET proxy_id = 7")
    assert isinstance(result, AdminError)
    assert result.code == 1210
    assert "nowhere to save" in result.message


def test_command_line_wins_at_restart_and_info_says_so(tmp_path: Path) -> None:
    """
    An item the command line sets is applied and saved, the info warns that
    the command line wins at restart, and it does (command line > saved).
    """
    path = write_config(tmp_path)
    options = ["client_max_connections=50"]
    manager = ReconfiguringManager(load_config(path, options=options))
    result = alter(manager, "ALTER PROXYCONFIG SET client_max_connections = 60")
    assert isinstance(result, AdminOK)
    assert "command line" in result.info
    assert manager.config.client_max_connections == 60
    assert load_config(path, options=options).client_max_connections == 50
    assert load_config(path).client_max_connections == 60


def test_running_config_read_from_manager(tmp_path: Path) -> None:
    """
    The manager's configuration is the running one, even when the context
    carries an older one (an earlier ALTER replaced it).
    """
    path = write_config(tmp_path)
    manager = ReconfiguringManager(load_config(path))
    stale = manager.config
    assert alter(manager, "ALTER PROXYCONFIG SET client_max_connections = 11") == AdminOK()
    match = SHOW.match("SHOW PROXYCONFIG LIKE 'client_max_connections'")
    assert match is not None
    result = SHOW.execute(AdminContext(None, manager, stale), match)
    assert result.rows[0][1] == "11"
