"""
Tests for L{obproxy_tx.config}: schema, YAML loading, command-line overrides,
the item registry, and the exact messages of L{ConfigError}.
"""

from __future__ import annotations

import ipaddress
import pathlib
import textwrap

import attrs
import pytest

from obproxy_tx.config import (
    ITEMS,
    BackendServer,
    ClusterType,
    ConfigError,
    ItemKind,
    LoginMode,
    ProxyConfig,
    apply_overrides,
    check_config,
    load_config,
    parse_config,
    parse_server,
    set_item,
)

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

MINIMAL = """\
clusters:
  - name: obcluster
    servers: ["127.0.0.1:2881"]
"""


def _parse(text: str, **kwargs: object) -> ProxyConfig:
    return parse_config(textwrap.dedent(text), source="conf.yaml", **kwargs)  # type: ignore[arg-type]


def _error(text: str, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        _parse(text, **kwargs)
    return str(caught.value)


# --- examples ---------------------------------------------------------------------------


def test_example_conf_with_command_line() -> None:
    """
    examples/conf.yaml with -p and -r gives one oceanbase cluster whose servers
    are the -r list and the user root with an empty password.
    """
    config = load_config(
        EXAMPLES / "conf.yaml", listen_port="2883", rootservice_list="127.0.0.1:40001"
    )
    cluster = config.default_cluster
    assert cluster.name == "obcluster"
    assert cluster.type is ClusterType.OCEANBASE
    assert [server.address for server in cluster.servers] == ["127.0.0.1:40001"]
    root = cluster.find_user("root", "sys")
    assert root is not None
    assert root.verifier == b""
    assert config.listen_endpoint == "tcp:2883:interface=0.0.0.0"
    assert config.client_session_id_version == 2
    assert config.obproxy_sys_password == b""


def test_example_mariadb_needs_metadata_account() -> None:
    """
    examples/mariadb.yaml learns users, so it refuses to start without a
    metadata account and works once -o gives one.
    """
    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLES / "mariadb.yaml")
    message = str(caught.value)
    assert message.startswith(str(EXAMPLES / "mariadb.yaml") + ", line ")
    assert ": clusters[0].learn_users: learn_users needs metadata_user" in message
    config = load_config(
        EXAMPLES / "mariadb.yaml",
        rootservice_list="127.0.0.1:3307",
        options=["metadata_user=meta,metadata_password=pw,with,commas"],
    )
    cluster = config.default_cluster
    assert (cluster.type, cluster.learn_users) == (ClusterType.MYSQL, True)
    assert config.metadata_user == "meta"
    assert config.metadata_password == "pw,with,commas"


# --- schema and defaults -----------------------------------------------------------------


def test_registry_matches_config_attributes() -> None:
    """
    Every config item is an attribute of ProxyConfig with the item's default.
    """
    defaults = ProxyConfig()
    fields = {field.name for field in attrs.fields(ProxyConfig)}
    for name, item in ITEMS.items():
        assert name == item.name
        assert name in fields
        assert defaults.item_value(name) == item.default
    assert fields - set(ITEMS) == {"clusters", "source", "origins", "store_path"}


def test_minimal_file_gets_defaults() -> None:
    """
    A file with just a cluster gets ODP-named defaults.
    """
    config = _parse(MINIMAL)
    assert config.listen_port == 2883
    assert config.proxy_id == 0
    assert config.client_session_id_version == 2
    assert config.client_max_connections == 8192
    assert config.short_async_task_timeout == 5.0
    assert config.default_inactivity_timeout == 180000.0
    cluster = config.default_cluster
    assert (cluster.default_tenant, cluster.login_mode) == ("sys", LoginMode.VERIFIER)
    assert config.cluster("obcluster") is cluster
    assert config.cluster("other") is None


def test_full_cluster_and_users() -> None:
    """
    Cluster fields and users are read; a user's tenant defaults to the
    cluster's default tenant; *HEX and bare hex verifiers both work.
    """
    config = _parse(
        """\
        clusters:
          - name: c1
            type: oceanbase
            servers: ["10.0.0.1:2881", "tcp:host=10.0.0.2:port=2881"]
            default_tenant: t1
            cluster_id: 7
            login_mode: odp_proxy_scramble
            users:
              - name: app
                verifier: "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"
              - {name: app, tenant: sys, verifier: 6bb4837eb74329105ee4568dda7dc67ed2ca2ad9}
          - name: m1
            type: mysql
            servers: "127.0.0.1:3306"
        """
    )
    c1, m1 = config.clusters
    assert c1.cluster_id == 7
    assert c1.login_mode is LoginMode.ODP_PROXY_SCRAMBLE
    app = c1.find_user("app", "t1")
    assert app is not None
    assert app.verifier == bytes.fromhex("6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9")
    assert c1.find_user("app", "sys") is not None
    assert c1.find_user("nobody", "t1") is None
    assert m1.type is ClusterType.MYSQL
    assert [server.address for server in m1.servers] == ["127.0.0.1:3306"]
    assert "verifier" not in repr(app)


def test_scalar_items_from_yaml() -> None:
    """
    Items are typed from YAML: durations with ODP units, networks as a list,
    a bare number for mysql_version, null as empty text.
    """
    config = _parse(
        MINIMAL
        + textwrap.dedent(
            """\
        short_async_task_timeout: 100ms
        observer_query_timeout_delta: 2
        client_login_timeout: 1.5m
        proxysys_allowed_networks: ["10.0.0.0/8"]
        mysql_version: 5.7
        metadata_user:
        enable_full_username: true
        proxy_service_mode: server
        local_bound_ip: "::"
        """
        )
    )
    assert config.short_async_task_timeout == pytest.approx(0.1)
    assert config.observer_query_timeout_delta == 2.0
    assert config.client_login_timeout == 90.0
    assert config.proxysys_allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert config.mysql_version == "5.7"
    assert config.metadata_user == ""
    assert config.enable_full_username is True
    assert config.proxy_service_mode == "server"
    assert config.listen_endpoint == "tcp:2883:interface=\\:\\:"


def test_listen_endpoint_string() -> None:
    """
    A listen endpoint string replaces listen_port, and -p clears it again.
    """
    config = _parse(MINIMAL + "listen: 'unix:/tmp/obproxy.sock'\n")
    assert config.listen_endpoint == "unix:/tmp/obproxy.sock"
    assert apply_overrides(config, listen_port=3000).listen_endpoint == (
        "tcp:3000:interface=0.0.0.0"
    )


# --- error messages ----------------------------------------------------------------------


def test_yaml_syntax_error() -> None:
    """
    Broken YAML names the file and line and says it is invalid YAML.
    """
    message = _error("clusters:\n  - name: [unclosed\n")
    assert message.startswith("conf.yaml, line 3: invalid YAML: ")


def test_duplicate_key() -> None:
    """
    A key given twice is refused with both lines, instead of the last one winning.
    """
    message = _error("proxy_id: 1\nproxy_id: 2\n" + MINIMAL)
    assert message == (
        "conf.yaml, line 2: invalid YAML: duplicate key 'proxy_id' (first on line 1)"
    )


def test_unknown_top_level_key_with_suggestion() -> None:
    """
    A misspelt item name is refused with a did-you-mean.
    """
    assert _error(MINIMAL + "listen_prot: 2883\n") == (
        "conf.yaml, line 4: listen_prot: unknown key 'listen_prot'; did you mean 'listen_port'?"
    )


def test_unknown_top_level_key_without_suggestion() -> None:
    """
    A name nothing like an item is refused as not a config item.
    """
    assert _error(MINIMAL + "frobnicate: 1\n") == (
        "conf.yaml, line 4: frobnicate: unknown key 'frobnicate'; it is not a config item"
    )


@pytest.mark.parametrize(
    ("extra", "hint"),
    [
        ("port: 1\n", "did you mean 'listen_port'?"),
        ("users: []\n", "users belong to a cluster"),
        ("servers: []\n", "servers belong to a cluster"),
        ("rootservice_list: 'a:1'\n", "rootservice_list is a command-line setting"),
    ],
)
def test_unknown_key_hints(extra: str, hint: str) -> None:
    """
    Common misplacements get a hint saying where the setting belongs.
    """
    assert hint in _error(MINIMAL + extra)


def test_unknown_cluster_key_lists_known_keys() -> None:
    """
    An unknown key inside a cluster names its path and suggests the right key.
    """
    assert _error(
        """\
        clusters:
          - name: c
            server: ["1.2.3.4:5"]
        """
    ) == ("conf.yaml, line 3: clusters[0].server: unknown key 'server'; did you mean 'servers'?")
    message = _error(
        """\
        clusters:
          - name: c
            zzz: 1
        """
    )
    assert message == (
        "conf.yaml, line 3: clusters[0].zzz: unknown key 'zzz'; known keys: name, type, "
        "servers, default_tenant, cluster_id, login_mode, users, learn_users, replicas"
    )


def test_user_password_key_hint() -> None:
    """
    A user with a plain password is told that users hold verifiers.
    """
    message = _error(
        """\
        clusters:
          - name: c
            servers: ["1.2.3.4:5"]
            users:
              - name: app
                password: secret
        """
    )
    assert message.startswith(
        "conf.yaml, line 6: clusters[0].users[0].password: unknown key 'password'; "
        "users hold verifiers, not passwords"
    )


def test_wrong_type() -> None:
    """
    A string where an integer belongs is refused, naming both.
    """
    assert _error("proxy_id: abc\n" + MINIMAL) == (
        "conf.yaml, line 1: proxy_id: expected an integer, got a string ('abc')"
    )
    assert _error("listen_port: true\n" + MINIMAL) == (
        "conf.yaml, line 1: listen_port: expected an integer, got a boolean (true)"
    )
    assert _error("enable_client_ssl: 1\n" + MINIMAL) == (
        "conf.yaml, line 1: enable_client_ssl: expected true or false, got an integer (1)"
    )
    assert _error("mysql_version: [1]\n" + MINIMAL) == (
        "conf.yaml, line 1: mysql_version: expected a string, got a list"
    )


def test_out_of_range() -> None:
    """
    A number outside the item's range is refused with the range.
    """
    assert _error("proxy_id: 9000\n" + MINIMAL) == (
        "conf.yaml, line 1: proxy_id: 9000 is out of range [0, 8191]"
    )
    assert _error("client_session_id_version: 3\n" + MINIMAL) == (
        "conf.yaml, line 1: client_session_id_version: 3 is out of range [1, 2]"
    )
    assert _error("short_async_task_timeout: 0s\n" + MINIMAL) == (
        "conf.yaml, line 1: short_async_task_timeout: 0s is out of range [1ms, ]"
    )


def test_bad_duration_and_choice() -> None:
    """
    Durations need a known unit and choices a listed value.
    """
    assert _error("client_login_timeout: 5x\n" + MINIMAL) == (
        "conf.yaml, line 1: client_login_timeout: expected a duration such as '5s', '100ms' "
        "or '1h', got '5x'"
    )
    assert _error("proxy_service_mode: both\n" + MINIMAL) == (
        "conf.yaml, line 1: proxy_service_mode: expected one of client, server, got 'both'"
    )


def test_bad_server_entry_names_its_index() -> None:
    """
    A bad server names the list index and its own line.
    """
    assert _error(
        """\
        clusters:
          - name: obcluster
            servers:
              - "127.0.0.1:2881"
              - "not a server"
        """
    ) == (
        "conf.yaml, line 5: clusters[0].servers[1]: expected 'ip:port' or a Twisted endpoint "
        "string such as 'tcp:host=h:port=p', got 'not a server'"
    )


def test_server_port_and_type_problems() -> None:
    """
    Ports must be 1..65535 and unquoted numbers are refused with a hint to quote.
    """
    assert (
        _error(
            """\
        clusters:
          - name: c
            servers: ["127.0.0.1:70000"]
        """
        )
        == "conf.yaml, line 3: clusters[0].servers[0]: '127.0.0.1:70000' has no valid port "
        "(1..65535)"
    )
    assert _error(
        """\
        clusters:
          - name: c
            servers: [2881]
        """
    ) == (
        "conf.yaml, line 3: clusters[0].servers[0]: expected 'ip:port' or an endpoint string "
        "(quote it), or {address: 'ip:port', role: replica}, got an integer (2881)"
    )


def test_bad_verifier() -> None:
    """
    A verifier that is not *HEX is refused without echoing it.
    """
    message = _error(
        """\
        clusters:
          - name: c
            servers: ["1.2.3.4:5"]
            users:
              - name: app
                verifier: "*12AB"
        """
    )
    assert message == (
        "conf.yaml, line 6: clusters[0].users[0].verifier: expected a password verifier: '*' "
        "and 40 hex digits, as SELECT authentication_string FROM mysql.user shows it (empty "
        "for an empty password); got 5 characters"
    )


def test_user_needs_name_and_verifier() -> None:
    """
    A user without a verifier is refused, naming the user's path.
    """
    assert (
        _error(
            """\
        clusters:
          - name: c
            servers: ["1.2.3.4:5"]
            users:
              - name: app
        """
        )
        == "conf.yaml, line 5: clusters[0].users[0]: a user needs 'verifier'"
    )


def test_bad_cluster_fields() -> None:
    """
    Cluster names, types and login modes are checked.
    """
    assert _error("clusters:\n  - name: 'a#b'\n") == (
        "conf.yaml, line 2: clusters[0].name: expected a cluster name without blanks, '@', "
        "'#' or ':', got a string ('a#b')"
    )
    assert _error("clusters:\n  - {name: c, type: postgres}\n") == (
        "conf.yaml, line 2: clusters[0].type: expected one of oceanbase, mysql, "
        "got a string ('postgres')"
    )
    assert _error("clusters:\n  - {servers: []}\n") == (
        "conf.yaml, line 2: clusters[0]: a cluster needs a 'name'"
    )
    assert _error("clusters: {name: c}\n") == (
        "conf.yaml, line 1: clusters: expected a list of clusters, got a mapping"
    )


def test_empty_and_non_mapping_files() -> None:
    """
    An empty file or one that is not a mapping is refused as a whole.
    """
    assert _error("") == "conf.yaml: the file is empty; it needs at least 'clusters'"
    assert _error("- a\n- b\n") == (
        "conf.yaml, line 1: expected a mapping of config items at the top, got a list"
    )


def test_unreadable_file(tmp_path: pathlib.Path) -> None:
    """
    A missing or non-UTF-8 file is one message naming the file.
    """
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"{missing}: cannot read the file: No such file or directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


# --- whole-configuration checks ------------------------------------------------------------


def test_needs_a_cluster_with_servers() -> None:
    """
    No cluster, or a cluster without servers, is refused with how to fix it.
    """
    assert _error("proxy_id: 1\n") == "conf.yaml: clusters: at least one cluster is needed"
    assert _error("clusters:\n  - name: c\n") == (
        "conf.yaml, line 2: clusters[0].servers: cluster 'c' has no servers; list them here "
        "or give -r 'ip:port;ip:port'"
    )


def test_cluster_without_servers_is_fixed_by_r() -> None:
    """
    -r supplies the servers a file leaves out.
    """
    config = _parse("clusters:\n  - name: c\n", rootservice_list="1.2.3.4:5;[::1]:6")
    assert [server.address for server in config.default_cluster.servers] == [
        "1.2.3.4:5",
        "[::1]:6",
    ]


def test_duplicate_cluster_and_user() -> None:
    """
    Cluster names and (user, tenant) pairs must be unique.
    """
    assert (
        _error(
            """\
        clusters:
          - {name: c, servers: ["1.2.3.4:5"]}
          - {name: c, servers: ["1.2.3.4:6"]}
        """
        )
        == "conf.yaml, line 3: clusters[1].name: duplicate cluster name 'c' (also clusters[0])"
    )
    assert (
        _error(
            """\
        clusters:
          - name: c
            servers: ["1.2.3.4:5"]
            users:
              - {name: a, verifier: ""}
              - {name: a, tenant: sys, verifier: ""}
        """
        )
        == "conf.yaml, line 6: clusters[0].users[1]: duplicate user a@sys (also users[0])"
    )


def test_proxy_scramble_needs_oceanbase() -> None:
    """
    ODP's scramble login is refused for mysql clusters.
    """
    assert _error(
        """\
        clusters:
          - {name: m, type: mysql, servers: ["1.2.3.4:5"], login_mode: odp_proxy_scramble}
        """
    ) == (
        "conf.yaml, line 2: clusters[0].login_mode: odp_proxy_scramble works only with type "
        "oceanbase (observers check __proxy_scramble); use login_mode verifier"
    )


def test_proxy_id_limit_with_v1_names_the_file_line() -> None:
    """
    proxy_id over 255 with cs-id version 1 is refused at proxy_id's own line.
    """
    assert _error("client_session_id_version: 1\nproxy_id: 300\n" + MINIMAL) == (
        "conf.yaml, line 2: proxy_id: 300 does not fit client_session_id_version 1 (at most "
        "255); use client_session_id_version 2 or a smaller proxy_id"
    )


def test_proxy_id_limit_with_v1_names_the_option() -> None:
    """
    When -o set the value, the message names the option instead of the file.
    """
    assert _error("client_session_id_version: 1\n" + MINIMAL, options=["proxy_id=300"]) == (
        "command line -o proxy_id=300: proxy_id: 300 does not fit client_session_id_version 1 "
        "(at most 255); use client_session_id_version 2 or a smaller proxy_id"
    )


def test_prometheus_port_conflict() -> None:
    """
    The exporter cannot share the SQL port.
    """
    assert _error(MINIMAL + "enable_prometheus: true\nprometheus_listen_port: 2883\n") == (
        "conf.yaml, line 5: prometheus_listen_port: port 2883 is also the listen_port"
    )


def test_tls_files(tmp_path: pathlib.Path) -> None:
    """
    Client TLS needs a certificate and key, and named files must exist.
    """
    assert _error(MINIMAL + "enable_client_ssl: true\n") == (
        "conf.yaml, line 4: enable_client_ssl: enable_client_ssl needs client_ssl_cert (a PEM file)"
    )
    missing = tmp_path / "nope.pem"
    assert _error(MINIMAL + f"server_ssl_ca: '{missing}'\n") == (
        f"conf.yaml, line 4: server_ssl_ca: no such file: '{missing}'"
    )
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    config = _parse(
        MINIMAL + f"enable_client_ssl: true\nclient_ssl_cert: '{cert}'\nclient_ssl_key: '{key}'\n"
    )
    assert config.enable_client_ssl


# --- command-line overrides -----------------------------------------------------------------


def test_options_are_coerced() -> None:
    """
    -o pairs are split at commas that start a new name= and typed per item.
    """
    config = _parse(
        MINIMAL,
        options=[
            "proxy_id=7,enable_full_username=on, short_async_task_timeout=250ms",
            "proxysys_allowed_networks=10.0.0.0/8;192.168.0.0/16",
        ],
    )
    assert config.proxy_id == 7
    assert config.enable_full_username is True
    assert config.short_async_task_timeout == pytest.approx(0.25)
    assert [str(network) for network in config.proxysys_allowed_networks] == [
        "10.0.0.0/8",
        "192.168.0.0/16",
    ]


def test_option_errors() -> None:
    """
    Bad -o input names the option: unknown items get a did-you-mean, bad values
    the problem, and pairs without = are refused.
    """
    assert _error(MINIMAL, options=["proxy_idd=3"]) == (
        "command line -o proxy_idd=3: proxy_idd: unknown key 'proxy_idd'; did you mean 'proxy_id'?"
    )
    assert _error(MINIMAL, options=["client_max_connections=lots"]) == (
        "command line -o client_max_connections=lots: client_max_connections: expected an "
        "integer, got 'lots'"
    )
    assert _error(MINIMAL, options=["enable_prometheus=maybe"]) == (
        "command line -o enable_prometheus=maybe: enable_prometheus: expected true or false, "
        "got 'maybe'"
    )
    assert _error(MINIMAL, options=["proxy_id"]) == (
        "command line -o proxy_id: expected name=value, got 'proxy_id'"
    )


def test_sensitive_option_is_not_echoed() -> None:
    """
    A bad verifier given with -o is reported without repeating the secret.
    """
    message = _error(MINIMAL, options=["obproxy_sys_password=hunter2"])
    assert "hunter2" not in message
    assert message.startswith("command line -o obproxy_sys_password=...: obproxy_sys_password:")


def test_rootservice_list_option_and_errors() -> None:
    """
    -o rootservice_list works as -r; bad or empty lists are refused at the
    default cluster's servers.
    """
    config = _parse(MINIMAL, options=["rootservice_list=10.0.0.9:2881"])
    assert config.default_cluster.servers == (parse_server("10.0.0.9:2881"),)
    assert _error(MINIMAL, rootservice_list=" ; ") == (
        "command line -r  ; : clusters[0].servers: expected 'ip:port;ip:port', got nothing"
    )
    assert _error(MINIMAL, rootservice_list="1.2.3.4") == (
        "command line -r 1.2.3.4: clusters[0].servers: expected 'ip:port' or a Twisted "
        "endpoint string such as 'tcp:host=h:port=p', got '1.2.3.4'"
    )


def test_p_option() -> None:
    """
    -p sets listen_port; a bad port names -p.
    """
    assert _parse(MINIMAL, listen_port="3306").listen_port == 3306
    assert _error(MINIMAL, listen_port="99999") == (
        "command line -p 99999: listen_port: 99999 is out of range [0, 65535]"
    )


# --- ALTER PROXYCONFIG --------------------------------------------------------------------------


def test_set_item_returns_new_checked_config() -> None:
    """
    set_item leaves the old configuration alone and checks the new one.
    """
    config = _parse(MINIMAL)
    changed = set_item(config, "client_max_connections", "10", origin="ALTER PROXYCONFIG")
    assert (config.client_max_connections, changed.client_max_connections) == (8192, 10)
    v1 = set_item(config, "client_session_id_version", "1", origin="ALTER PROXYCONFIG")
    with pytest.raises(ConfigError) as caught:
        set_item(v1, "proxy_id", "256", origin="ALTER PROXYCONFIG")
    assert str(caught.value).startswith("ALTER PROXYCONFIG: proxy_id: 256 does not fit")
    assert check_config(v1) is v1


def test_item_metadata_for_show_proxyconfig() -> None:
    """
    Items render values and ranges as SHOW PROXYCONFIG shows them, and keep
    secrets out of sight.
    """
    assert ITEMS["proxy_id"].range == "[0, 8191]"
    assert ITEMS["proxy_id"].need_reboot
    assert not ITEMS["client_max_connections"].need_reboot
    assert ITEMS["proxy_service_mode"].range == "[client, server]"
    assert ITEMS["mysql_version"].range == ""
    assert ITEMS["default_inactivity_timeout"].render(180000.0) == "180000s"
    assert ITEMS["short_async_task_timeout"].render(0.1) == "100ms"
    assert ITEMS["short_async_task_timeout"].render(0.000005) == "5us"
    assert ITEMS["enable_prometheus"].render(False) == "false"
    verifier = bytes.fromhex("6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9")
    assert ITEMS["obproxy_sys_password"].render(verifier) == (
        "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"
    )
    assert ITEMS["obproxy_sys_password"].render(b"") == ""
    assert ITEMS["metadata_password"].render("pw") == "******"
    assert ITEMS["metadata_password"].sensitive
    assert ITEMS["proxysys_allowed_networks"].render(
        ITEMS["proxysys_allowed_networks"].default
    ) == ("127.0.0.0/8;::1/128")
    assert ITEMS["listen_port"].kind is ItemKind.PORT
    for item in ITEMS.values():
        assert item.description


def test_item_from_text_edge_cases() -> None:
    """
    Text coercion handles the awkward values ALTER PROXYCONFIG can receive.
    """
    assert ITEMS["listen"].from_text(" tcp:0 ") == "tcp:0"
    assert ITEMS["listen"].from_text("") == ""
    assert ITEMS["local_bound_ip"].from_text("127.0.0.1") == "127.0.0.1"
    assert ITEMS["username_separator"].from_text("/") == "/"
    with pytest.raises(ConfigError, match="'/tmp/x' is not|expected a Twisted"):
        set_item(ProxyConfig(), "listen", "/tmp/x", origin="x")
    with pytest.raises(ConfigError, match="is not an IP address"):
        set_item(ProxyConfig(), "local_bound_ip", "localhost", origin="x")
    with pytest.raises(ConfigError, match="cannot be a username separator"):
        set_item(ProxyConfig(), "username_separator", "@", origin="x")
    with pytest.raises(ConfigError, match="is not an IP network"):
        set_item(ProxyConfig(), "proxysys_allowed_networks", "nonsense", origin="x")


# --- servers and admin networks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("127.0.0.1:2881", BackendServer("tcp:host=127.0.0.1:port=2881", "127.0.0.1", 2881)),
        ("db.example:3306", BackendServer("tcp:host=db.example:port=3306", "db.example", 3306)),
        ("[::1]:2881", BackendServer("tcp:host=\\:\\:1:port=2881", "::1", 2881)),
        ("tcp:10.0.0.1:2881", BackendServer("tcp:10.0.0.1:2881", "10.0.0.1", 2881)),
        (
            "tls:host=db:port=3306:trustRoots=/ca",
            BackendServer("tls:host=db:port=3306:trustRoots=/ca", "db", 3306),
        ),
        (
            "tcp6:host=\\:\\:1:port=2881",
            BackendServer("tcp6:host=\\:\\:1:port=2881", "::1", 2881),
        ),
        ("unix:path=/tmp/s.sock", BackendServer("unix:path=/tmp/s.sock")),
    ],
)
def test_parse_server(text: str, server: BackendServer) -> None:
    """
    Servers may be ip:port, host:port, [v6]:port or Twisted client endpoint strings.
    """
    assert parse_server(text) == server


def test_server_addresses() -> None:
    """
    The pool-key address is ip:port, with IPv6 in brackets, or the endpoint itself.
    """
    assert parse_server("[::1]:2881").address == "[::1]:2881"
    assert str(parse_server("1.2.3.4:5")) == "1.2.3.4:5"
    assert parse_server("unix:/tmp/s").address == "unix:/tmp/s"


@pytest.mark.parametrize("text", ["tcp:host=h", "unix:", "1.2.3.4", "a b:1", "tcp:h:0"])
def test_parse_server_rejects(text: str) -> None:
    """
    Servers without a host, port or path are refused with a ConfigError.
    """
    with pytest.raises(ConfigError):
        _parse(f"clusters:\n  - name: c\n    servers: ['{text}']\n")


def test_proxysys_allowed_networks() -> None:
    """
    root@proxysys is accepted from loopback by default, including IPv4-mapped
    IPv6, and from nowhere else.
    """
    config = ProxyConfig()
    assert config.proxysys_allowed("127.0.0.1")
    assert config.proxysys_allowed("::1")
    assert config.proxysys_allowed("::ffff:127.0.0.1")
    assert not config.proxysys_allowed("10.1.2.3")
    assert not config.proxysys_allowed("not an ip")


def test_default_cluster_requires_one() -> None:
    """
    An unchecked empty configuration has no default cluster.
    """
    with pytest.raises(LookupError):
        _ = ProxyConfig().default_cluster
    with pytest.raises(KeyError):
        ProxyConfig().item_value("clusters")


def test_client_session_id_layout_from_items() -> None:
    """
    The cs_id layout follows client_session_id_version, proxy_id and work_thread_num.
    """
    config = _parse(MINIMAL, options=["proxy_id=191,client_session_id_version=1,work_thread_num=8"])
    layout = config.client_session_id_layout(upgrade_bit=1)
    assert layout.decode(1607729164).proxy_id == 191
    assert layout.owns(1607729164)
    assert (layout.version, layout.seq_bits) == (1, 19)


def test_overrides_are_checked_together_after_all_are_applied() -> None:
    """A -p that is only valid once a later -o supplies metadata_user is accepted."""
    config = load_config(
        EXAMPLES / "mariadb.yaml",
        listen_port=2883,
        options=["metadata_user=meta,metadata_password=secret"],
    )
    assert config.listen_port == 2883
    assert config.metadata_user == "meta"
