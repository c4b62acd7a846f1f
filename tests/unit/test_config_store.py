"""
Tests for L{obproxy_tx.config_store}: where ALTER PROXYCONFIG saves items,
the atomic 0600 write, reading them back (with errors naming file and line),
the precedence file < saved < command line in L{obproxy_tx.config.load_config},
and a restart through C{twistd obproxy}'s options and
L{obproxy_tx.tap.makeService} keeping an ALTERed value.
"""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactor
from twisted.python import usage

from obproxy_tx import config_store, tap
from obproxy_tx.admin.interfaces import AdminContext, AdminOK
from obproxy_tx.config import ConfigError, apply_overrides, load_config, parse_config
from obproxy_tx.config_store import DEFAULT_SUFFIX, StoreError
from obproxy_tx.plugins.obproxy_config import alter_proxy_config
from obproxy_tx.session.manager import SessionManager

CLUSTERS = """\
clusters:
  - name: c1
    type: mysql
    servers: ["127.0.0.1:3306"]
"""


def write_config(directory: Path, extra: str = "") -> Path:
    """
    A config file: C{extra} items, then one cluster.
    """
    path = directory / "conf.yaml"
    path.write_text(textwrap.dedent(extra) + CLUSTERS)
    return path


def saved_path(config_file: Path) -> Path:
    return Path(str(config_file) + DEFAULT_SUFFIX)


# --------------------------------------------------------------------------------------
# Where


def test_store_path_default_next_to_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    By default the file is <config>.altered.yaml, absolute.
    """
    monkeypatch.chdir(tmp_path)
    assert config_store.store_path_for("conf.yaml", "") == str(tmp_path / "conf.yaml.altered.yaml")


def test_store_path_from_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    altered_config_file: absolute as given; relative to the config file's
    directory; without a config file relative to the working directory.
    """
    config_file = str(tmp_path / "etc" / "conf.yaml")
    assert config_store.store_path_for(config_file, "/var/x.yaml") == "/var/x.yaml"
    assert config_store.store_path_for(config_file, "../state/x.yaml") == str(
        tmp_path / "state" / "x.yaml"
    )
    monkeypatch.chdir(tmp_path)
    assert config_store.store_path_for(None, "x.yaml") == str(tmp_path / "x.yaml")


def test_no_store_without_config_file_or_item() -> None:
    """
    Without either there is nowhere to save.
    """
    assert config_store.store_path_for(None, "") == ""
    assert parse_config(CLUSTERS).store_path == ""
    assert apply_overrides(parse_config(CLUSTERS), saved=True).store_path == ""


def test_loaded_config_knows_its_store(tmp_path: Path) -> None:
    """
    load_config records the absolute store path in the configuration.
    """
    path = write_config(tmp_path)
    assert load_config(path).store_path == str(saved_path(path))
    other = tmp_path / "state.yaml"
    assert load_config(path, options=[f"altered_config_file={other}"]).store_path == str(other)


# --------------------------------------------------------------------------------------
# Writing


def test_write_is_0600_and_replaces(tmp_path: Path) -> None:
    """
    The file is written with mode 0600, also over an existing file with
    wider permissions, and no temporary file is left behind.
    """
    path = tmp_path / "saved.yaml"
    path.write_text("old")
    path.chmod(0o644)
    config_store.write_text(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.yaml"]


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    If the rename fails (disk full, ...), the old file is intact and the
    temporary file is removed; StoreError names the file and the reason.
    """
    path = tmp_path / "saved.yaml"
    path.write_text("old\n")

    def refuse(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StoreError) as info:
        config_store.write_text(str(path), "new\n")
    assert info.value.path == str(path)
    assert "No space left" in info.value.reason
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.yaml"]


def test_write_into_missing_directory(tmp_path: Path) -> None:
    """
    A directory that does not exist is a StoreError, not a crash.
    """
    with pytest.raises(StoreError):
        config_store.write_text(str(tmp_path / "nope" / "saved.yaml"), "x")


def test_save_item_keeps_others_and_restores(tmp_path: Path) -> None:
    """
    save_item adds or replaces one item, keeps the others (the latest change
    last), returns the previous text; remove_or_restore undoes it.
    """
    path = str(tmp_path / "saved.yaml")
    assert config_store.save_item(path, "client_max_connections", "10") is None
    first = Path(path).read_text()
    assert config_store.save_item(path, "mysql_version", "5.7.1") == first
    second = Path(path).read_text()
    assert config_store.save_item(path, "client_max_connections", "20") == second
    values = config_store.read_saved(path)
    assert list(values) == ["mysql_version", "client_max_connections"]
    assert values["client_max_connections"][0] == 20
    config_store.remove_or_restore(path, second)
    assert Path(path).read_text() == second
    config_store.remove_or_restore(path, None)
    assert not Path(path).exists()
    config_store.remove_or_restore(path, None)  # already gone: fine


def test_render_round_trips_awkward_text(tmp_path: Path) -> None:
    """
    Values that YAML would read as other types, or that need quoting, come
    back as the same text.
    """
    path = str(tmp_path / "saved.yaml")
    for name, text in [
        ("mysql_version", "8.0"),
        ("metadata_user", "yes"),
        ("metadata_password", "a: 'b' # c"),
        ("username_separator", ":;-;."),
    ]:
        config_store.save_item(path, name, text)
    values = config_store.read_saved(path)
    assert values["mysql_version"][0] == "8.0"
    assert values["metadata_user"][0] == "yes"
    assert values["metadata_password"][0] == "a: 'b' # c"
    assert values["username_separator"][0] == ":;-;."


# --------------------------------------------------------------------------------------
# Reading


def test_missing_file_is_nothing_saved(tmp_path: Path) -> None:
    assert config_store.read_saved(str(tmp_path / "none.yaml")) == {}


def test_hand_edited_scalars_accepted(tmp_path: Path) -> None:
    """
    Typed YAML values (an edited file) are read as the main file reads them.
    """
    path = tmp_path / "saved.yaml"
    path.write_text("client_max_connections: 12\nenable_full_username: true\n")
    values = config_store.read_saved(str(path))
    assert values["client_max_connections"][0] == 12
    assert values["enable_full_username"][0] is True
    assert values["enable_full_username"][1] == f"{path}, line 2"


@pytest.mark.parametrize(
    "text, words",
    [
        ("client_max_connections: [1\n", ["invalid YAML"]),
        ("- a\n", ["expected a mapping"]),
        ("\nclient_max_conections: '1'\n", ["line 2", "client_max_conections", "did you mean"]),
        ("client_max_connections: 'lots'\n", ["line 1", "client_max_connections", "integer"]),
        ("altered_config_file: '/x'\n", ["altered_config_file", "cannot be saved"]),
        ("proxy_id: 1\nproxy_id: 2\n", ["duplicate key"]),
    ],
)
def test_bad_saved_file(tmp_path: Path, text: str, words: list[str]) -> None:
    """
    A bad saved file stops loading with one message naming file, line, item
    and problem.
    """
    path = write_config(tmp_path)
    saved_path(path).write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(saved_path(path)) in message
    for word in words:
        assert word in message


def test_unreadable_saved_file(tmp_path: Path) -> None:
    """
    A saved-items path that cannot be read (here a directory, which even
    root cannot read as a file) is a config error naming the problem.
    """
    path = write_config(tmp_path)
    saved_path(path).mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "cannot read the saved config items" in str(info.value)


def test_sensitive_value_not_echoed_from_saved_file(tmp_path: Path) -> None:
    """
    A bad verifier in the saved file is reported without its text.
    """
    path = write_config(tmp_path)
    saved_path(path).write_text("obproxy_sys_password: 'hunter2hunter2'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "hunter2" not in str(info.value)
    assert "obproxy_sys_password" in str(info.value)


# --------------------------------------------------------------------------------------
# Precedence


def test_precedence_file_saved_command_line(tmp_path: Path) -> None:
    """
    ODP's order: the saved value beats the file, the command line beats both;
    error messages name where a value came from.
    """
    path = write_config(tmp_path, "client_max_connections: 10\nmysql_version: '5.6.1'\n")
    assert load_config(path).client_max_connections == 10
    config_store.save_item(str(saved_path(path)), "client_max_connections", "20")
    loaded = load_config(path)
    assert (loaded.client_max_connections, loaded.mysql_version) == (20, "5.6.1")
    assert loaded.origins["client_max_connections"] == f"{saved_path(path)}, line 4"
    assert load_config(path, options=["client_max_connections=30"]).client_max_connections == 30
    assert load_config(path, saved=False).client_max_connections == 10


def test_saved_combination_checked_with_command_line(tmp_path: Path) -> None:
    """
    The whole configuration is checked once, after the command line: a saved
    client_session_id_version 1 with a file proxy_id 300 fails naming the
    item, unless -o fixes it.
    """
    path = write_config(tmp_path, "proxy_id: 300\n")
    config_store.save_item(str(saved_path(path)), "client_session_id_version", "1")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "255" in str(info.value)
    assert load_config(path, options=["proxy_id=3"]).client_session_id_version == 1


def test_parse_config_reads_named_store(tmp_path: Path) -> None:
    """
    Text with altered_config_file (embedding with parse_config) reads it.
    """
    store = tmp_path / "state.yaml"
    config_store.save_item(str(store), "client_max_connections", "77")
    config = parse_config(f"altered_config_file: '{store}'\n" + CLUSTERS)
    assert config.client_max_connections == 77
    assert config.store_path == str(store)


# --------------------------------------------------------------------------------------
# twistd obproxy: restart keeps the value


def parse(*argv: str) -> tap.Options:
    options = tap.Options(reactor=MemoryReactor())
    options.parseOptions(list(argv))
    return options


def test_restart_through_make_service_keeps_altered_value(tmp_path: Path) -> None:
    """
    ALTER on a proxy built by makeService (the real SessionManager), then a
    new makeService from the same command line runs with the ALTERed values:
    the runtime item and the restart-only one.
    """
    path = write_config(tmp_path)
    service = tap.makeService(parse("-c", str(path)))
    manager = service.manager
    assert isinstance(manager, SessionManager)
    context = AdminContext(None, manager, manager.config)
    for sql in (
        "ALTER PROXYCONFIG SET client_max_connections = 123",
        "ALTER PROXYCONFIG SET proxy_id = 9",
    ):
        match = alter_proxy_config.match(sql)
        assert match is not None
        assert isinstance(alter_proxy_config.execute(context, match), AdminOK)
    assert manager.config.client_max_connections == 123
    assert manager.config.proxy_id == 0
    restarted = tap.makeService(parse("-c", str(path)))
    assert restarted.config.client_max_connections == 123
    assert restarted.manager.config.proxy_id == 9
    again = tap.makeService(parse("-c", str(path), "-o", "client_max_connections=5"))
    assert again.config.client_max_connections == 5


def test_no_config_file_with_altered_config_file(tmp_path: Path) -> None:
    """
    Without -c, -o altered_config_file names the store and it is read.
    """
    store = tmp_path / "state.yaml"
    config_store.save_item(str(store), "mysql_version", "9.9.9")
    options = parse("-r", "127.0.0.1:3306", "-o", f"altered_config_file={store}")
    assert options.proxy_config is not None
    assert options.proxy_config.mysql_version == "9.9.9"
    assert options.proxy_config.store_path == str(store)


def test_bad_saved_file_is_usage_error(tmp_path: Path) -> None:
    """
    twistd reports a bad saved file as one line naming it.
    """
    path = write_config(tmp_path)
    saved_path(path).write_text("proxy_id: 'x'\n")
    with pytest.raises(usage.UsageError) as info:
        parse("-c", str(path))
    assert str(saved_path(path)) in str(info.value)
    assert "proxy_id" in str(info.value)
