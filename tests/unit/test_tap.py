"""
Tests for L{obproxy_tx.tap}: the C{twistd obproxy} options, the service tree
and the plugin.

The session manager is replaced by a small stand-in (L{StandInManager}) where a
test is about the tree, not about sessions; one test checks the real
L{SessionManager<obproxy_tx.session.manager.SessionManager>} is what the
default path builds.
"""

from __future__ import annotations

import os
import re
import runpy
import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker, Service
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.python import usage

from obproxy_tx import tap
from obproxy_tx.config import ITEMS, ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "conf.yaml"


class StandInManager(Service):
    """
    A session manager stand-in: records start and stop, hands out a plain factory.
    """

    def __init__(self, config: Any, reactor: Any = None) -> None:
        self.config = config
        self.reactor = reactor
        self.events: list[str] = []
        self.factory = Factory.forProtocol(Protocol)

    def listener_factory(self) -> Any:
        """The client-facing factory."""
        return self.factory

    def startService(self) -> None:
        """Record the start."""
        self.events.append("start")
        super().startService()

    def stopService(self) -> Any:
        """Record the stop."""
        self.events.append("stop")
        return super().stopService()


def parse(*argv: str, reactor: Any = None) -> tap.Options:
    """
    Parse C{argv} with a memory reactor.
    """
    options = tap.Options(reactor=reactor if reactor is not None else MemoryReactor())
    options.parseOptions(list(argv))
    return options


def usage_error(*argv: str) -> str:
    """
    Parse C{argv}, expecting a L{usage.UsageError}; return its message.
    """
    with pytest.raises(usage.UsageError) as info:
        parse(*argv)
    return str(info.value)


def write(tmp_path: Path, text: str, name: str = "conf.yaml") -> str:
    """
    Write a config file; return its path.
    """
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------------------
# Options


def test_every_flag_short() -> None:
    """
    -c, -p, -r, -o and -n set the file, listen_port, the default cluster's
    servers, config items and the application name.
    """
    options = parse(
        "-c",
        str(EXAMPLE),
        "-p",
        "3307",
        "-r",
        "127.0.0.1:2881;10.0.0.2:2882",
        "-o",
        "proxy_id=7,mysql_version=8.0.30",
        "-n",
        "myapp",
    )
    config = options.proxy_config
    assert config is not None
    assert config.source == str(EXAMPLE)
    assert config.listen_port == 3307
    assert config.listen_endpoint == "tcp:3307:interface=0.0.0.0"
    assert [s.address for s in config.default_cluster.servers] == [
        "127.0.0.1:2881",
        "10.0.0.2:2882",
    ]
    assert config.proxy_id == 7
    assert config.mysql_version == "8.0.30"
    assert options["app-name"] == "myapp"


def test_every_flag_long() -> None:
    """
    The long spellings --config, --listen-port, --rootservice-list, --options
    and --app-name work as the short ones do.
    """
    options = parse(
        f"--config={EXAMPLE}",
        "--listen-port=0",
        "--rootservice-list=127.0.0.1:1",
        "--options=client_max_connections=5",
        "--app-name=x",
    )
    config = options.proxy_config
    assert config is not None
    assert (config.listen_port, config.client_max_connections) == (0, 5)
    assert [s.address for s in config.default_cluster.servers] == ["127.0.0.1:1"]
    assert options["app-name"] == "x"


def test_options_repeatable_last_wins() -> None:
    """
    -o may be given many times; every pair applies, in order, so a later value
    of the same item wins.
    """
    options = parse(
        "-c", str(EXAMPLE), "-o", "proxy_id=1", "-o", "proxy_id=2,client_login_timeout=3s"
    )
    assert options["options"] == ["proxy_id=1", "proxy_id=2,client_login_timeout=3s"]
    config = options.proxy_config
    assert config is not None
    assert (config.proxy_id, config.client_login_timeout) == (2, 3.0)


def test_listen_port_replaces_listen_endpoint(tmp_path: Path) -> None:
    """
    -p wins over a C{listen} endpoint string in the file, as the command line
    wins over the file.
    """
    path = write(
        tmp_path,
        'listen: "tcp:9999:interface=127.0.0.1"\nclusters: [{name: c, servers: ["h:1"]}]\n',
    )
    assert parse("-c", path).proxy_config.listen_endpoint == "tcp:9999:interface=127.0.0.1"  # type: ignore[union-attr]
    assert parse("-c", path, "-p", "4000").proxy_config.listen_endpoint == (  # type: ignore[union-attr]
        "tcp:4000:interface=0.0.0.0"
    )


def test_no_config_file_uses_defaults_with_r() -> None:
    """
    Without -c the built-in defaults apply: cluster obcluster (oceanbase) with
    root@sys and an empty password, whose servers -r gives.
    """
    config = parse("-r", "127.0.0.1:2881").proxy_config
    assert config is not None
    cluster = config.default_cluster
    assert (cluster.name, cluster.type.value) == ("obcluster", "oceanbase")
    assert [s.address for s in cluster.servers] == ["127.0.0.1:2881"]
    root = cluster.find_user("root", "sys")
    assert root is not None and root.verifier == b""
    assert config.listen_port == ITEMS["listen_port"].default


def test_no_config_file_without_r() -> None:
    """
    Without -c and -r the one message says the default cluster has no servers
    and how to give them.
    """
    assert usage_error() == (
        "built-in defaults (no -c FILE): clusters[0].servers: cluster 'obcluster' has no "
        "servers; list them here or give -r 'ip:port;ip:port'"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("127.0.0.1", "expected 'ip:port' or a Twisted endpoint string"),
        ("127.0.0.1:99999", "'127.0.0.1:99999' has no valid port (1..65535)"),
        (";", "expected 'ip:port;ip:port', got nothing"),
    ],
)
def test_rootservice_list_format_errors(value: str, problem: str) -> None:
    """
    A malformed -r is one message naming the option, the servers key and the
    problem.
    """
    message = usage_error("-c", str(EXAMPLE), "-r", value)
    assert message.startswith(f"command line -r {value}: clusters[0].servers: ")
    assert problem in message


def test_listen_port_not_a_number() -> None:
    """
    A -p that is not a port is refused with the option, item and problem.
    """
    assert usage_error("-c", str(EXAMPLE), "-p", "abc") == (
        "command line -p abc: listen_port: expected an integer, got 'abc'"
    )
    assert usage_error("-c", str(EXAMPLE), "-p", "70000") == (
        "command line -p 70000: listen_port: 70000 is out of range [0, 65535]"
    )


def test_unknown_option_item() -> None:
    """
    -o with an unknown item names it and suggests the close one.
    """
    assert usage_error("-c", str(EXAMPLE), "-o", "proxy_idd=3") == (
        "command line -o proxy_idd=3: proxy_idd: unknown key 'proxy_idd'; did you mean 'proxy_id'?"
    )


def test_option_without_equals() -> None:
    """
    An -o argument that is not name=value is refused as such.
    """
    message = usage_error("-c", str(EXAMPLE), "-o", "proxy_id")
    assert message == "command line -o proxy_id: expected name=value, got 'proxy_id'"


def test_sensitive_option_value_not_echoed() -> None:
    """
    The value of a password item given with -o is not repeated in a message.
    """
    message = usage_error("-c", str(EXAMPLE), "-o", "obproxy_sys_password=hunter2")
    assert "hunter2" not in message
    assert message.startswith("command line -o obproxy_sys_password=...: obproxy_sys_password: ")


def test_config_file_unknown_key(tmp_path: Path) -> None:
    """
    An unknown key in the file is one message naming file, line and key.
    """
    path = write(tmp_path, "clusters: [{name: c, servers: ['h:1']}]\nproxy_idd: 3\n")
    assert usage_error("-c", path) == (
        f"{path}, line 2: proxy_idd: unknown key 'proxy_idd'; did you mean 'proxy_id'?"
    )


def test_config_file_wrong_type(tmp_path: Path) -> None:
    """
    A value of the wrong type in the file names file, line, key and problem.
    """
    path = write(tmp_path, "proxy_id: abc\nclusters: [{name: c, servers: ['h:1']}]\n")
    assert usage_error("-c", path) == (
        f"{path}, line 1: proxy_id: expected an integer, got a string ('abc')"
    )


def test_config_file_missing(tmp_path: Path) -> None:
    """
    A file that cannot be read is named with the reason.
    """
    path = str(tmp_path / "nope.yaml")
    assert usage_error("-c", path) == f"{path}: cannot read the file: No such file or directory"


def test_config_file_bad_yaml(tmp_path: Path) -> None:
    """
    A file that is not YAML is named with the line and YAML's complaint.
    """
    path = write(tmp_path, "clusters: [\n")
    message = usage_error("-c", path)
    assert message.startswith(f"{path}, line ")
    assert "invalid YAML" in message


def test_unparsable_listen_endpoint() -> None:
    """
    A listen endpoint string Twisted cannot parse is refused while the options
    are parsed, naming the item and where it came from.
    """
    assert usage_error("-c", str(EXAMPLE), "-o", "listen=foo:bar") == (
        "command line -o listen=foo:bar: listen: 'foo:bar' is not a usable server endpoint: "
        "Unknown endpoint type: 'foo'"
    )


def test_usage_after_config_error_is_short(tmp_path: Path) -> None:
    """
    After a configuration problem the usage text twistd prints above the
    message is a one-line pointer to --help, not the whole help.
    """
    options = tap.Options(reactor=MemoryReactor())
    with pytest.raises(usage.UsageError):
        options.parseOptions(["-c", str(tmp_path / "nope.yaml")])
    assert options.getUsage() == "obproxy --help lists every option and config item."


def test_help_documents_options_and_items(capsys: pytest.CaptureFixture[str]) -> None:
    """
    --help documents every option and lists every config item, then exits 0.
    """
    with pytest.raises(SystemExit) as info:
        parse("--help")
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--listen-port", "--rootservice-list", "--options", "--app-name"):
        assert flag in out
    for short in ("-c,", "-p,", "-r,", "-o,", "-n,"):
        assert short in out
    for name in ITEMS:
        assert f"  {name} = " in out


def test_describe_items_defaults() -> None:
    """
    The item list shows defaults as SHOW PROXYCONFIG renders them and marks
    items that need a restart.
    """
    text = tap.describe_items()
    assert "  listen_port = 2883  (restart)\n" in text
    assert "  client_login_timeout = 10s\n" in text
    assert '  mysql_version = ""\n' in text


# --------------------------------------------------------------------------------------
# The service tree


def test_make_service_children() -> None:
    """
    makeService returns a MultiService holding the session manager, then a
    StreamServerEndpointService serving the manager's listener factory.
    """
    reactor = MemoryReactor()
    options = parse("-c", str(EXAMPLE), "-p", "3307", "-n", "app", reactor=reactor)
    service = tap.makeService(options, manager_factory=StandInManager)
    children = list(service)
    assert len(children) == 2
    manager, listener = children
    assert isinstance(manager, StandInManager)
    assert manager is service.manager
    assert manager.config is options.proxy_config
    assert manager.reactor is reactor
    assert isinstance(listener, StreamServerEndpointService)
    assert listener is service.listener
    assert listener.factory is manager.factory
    assert service.getServiceNamed("session-manager") is manager
    assert service.getServiceNamed("sql-listener") is listener
    assert service.name == "obproxy"
    assert service.app_name == "app"


def test_start_listens_on_config_endpoint() -> None:
    """
    Starting the service starts the manager and listens on the configured
    port and interface with the manager's factory; when_listening fires with
    the port.
    """
    reactor = MemoryReactor()
    options = parse(
        "-c", str(EXAMPLE), "-p", "3307", "-o", "local_bound_ip=127.0.0.1", reactor=reactor
    )
    service = tap.makeService(options, manager_factory=StandInManager)
    service.privilegedStartService()
    service.startService()
    assert service.manager.events == ["start"]
    [(port, factory, _backlog, interface)] = reactor.tcpServers
    assert (port, interface) == (3307, "127.0.0.1")
    assert factory is service.manager.factory
    fired: list[Any] = []
    service.when_listening().addCallback(fired.append)
    assert fired and IListeningPort.providedBy(fired[0])
    assert service.port is fired[0]


def test_stop_closes_listener_before_manager() -> None:
    """
    Stopping stops listening first, then the session manager.
    """
    reactor = MemoryReactor()
    service = tap.makeService(
        parse("-c", str(EXAMPLE), reactor=reactor), manager_factory=StandInManager
    )
    order: list[str] = []
    manager_stop = service.manager.stopService
    listener_stop = service.listener.stopService

    def stop_manager() -> Any:
        order.append("manager")
        return manager_stop()

    def stop_listener() -> Any:
        order.append("listener")
        return listener_stop()

    service.manager.stopService = stop_manager
    service.listener.stopService = stop_listener  # type: ignore[method-assign]
    service.startService()
    service.stopService()
    assert order == ["listener", "manager"]
    assert service.port is None


def test_build_proxy_service_bad_endpoint() -> None:
    """
    build_proxy_service refuses an endpoint string Twisted cannot parse with a
    ConfigError naming the item.
    """
    config = parse_config(
        "listen: 'tcp:notaport'\nclusters: [{name: c, servers: ['h:1']}]\n", source="x.yaml"
    )
    with pytest.raises(ConfigError) as info:
        tap.build_proxy_service(config, MemoryReactor(), manager_factory=StandInManager)
    assert str(info.value).startswith("x.yaml, line 1: listen: 'tcp:notaport' is not a usable ")


def occupied() -> tuple[socket.socket, int]:
    """
    A socket listening on 127.0.0.1 and its port.
    """
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    return holder, int(holder.getsockname()[1])


def test_occupied_port_raises_config_error() -> None:
    """
    When the port is taken, starting raises one ConfigError naming the
    option, the item and the OS reason, and the manager is stopped again.
    """
    from twisted.internet import reactor

    holder, port = occupied()
    with holder:
        options = parse(
            "-c", str(EXAMPLE), "-p", str(port), "-o", "local_bound_ip=127.0.0.1", reactor=reactor
        )
        assert options.proxy_config is not None
        service = tap.build_proxy_service(
            options.proxy_config, reactor, manager_factory=StandInManager
        )
        with pytest.raises(ConfigError) as info:
            service.startService()
    assert str(info.value) == (
        f"command line -p {port}: listen_port: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    )
    assert service.manager.events == ["start", "stop"]
    assert not service.running


def test_occupied_port_under_twistd_exits(tmp_path: Path) -> None:
    """
    Under twistd (makeService), a port that is taken makes
    privilegedStartService raise SystemExit with the one-line message naming
    the file line and item, which twistd lets Python print.
    """
    from twisted.internet import reactor

    holder, port = occupied()
    path = write(
        tmp_path,
        f"listen_port: {port}\nlocal_bound_ip: 127.0.0.1\n"
        "clusters: [{name: c, servers: ['h:1']}]\n",
    )
    with holder:
        service = tap.makeService(
            parse("-c", path, reactor=reactor), manager_factory=StandInManager
        )
        with pytest.raises(SystemExit) as info:
            service.privilegedStartService()
    assert info.value.code == (
        f"{path}, line 1: listen_port: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert service.manager.events == []


@pytest_twisted.ensureDeferred
async def test_real_listen_and_stop() -> None:
    """
    With the real reactor and port 0 the service listens on a free port,
    accepts a TCP connection, and stops listening when stopped.
    """
    from twisted.internet import reactor

    options = parse(
        "-c", str(EXAMPLE), "-p", "0", "-o", "local_bound_ip=127.0.0.1", reactor=reactor
    )
    service = tap.makeService(options, manager_factory=StandInManager)
    service.startService()
    port = await service.when_listening()
    host = port.getHost()
    assert isinstance(host, IPv4Address)
    number = host.port
    assert number != 0
    with socket.create_connection(("127.0.0.1", number), timeout=5):
        pass
    await service.stopService()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", number), timeout=5).close()


def test_twistd_nodaemon_decides_exit() -> None:
    """
    Parsed by twistd, -n (no daemon) makes a listen failure SystemExit; a
    daemonizing twistd gets an exception it can report to its parent.
    """
    from twisted.scripts.twistd import ServerOptions

    for argv, expected in (
        (["-n", "obproxy", "-c", str(EXAMPLE)], True),
        (["obproxy", "-c", str(EXAMPLE)], False),
    ):
        server_options = ServerOptions()
        server_options.parseOptions(argv)
        sub = server_options.subOptions
        assert isinstance(sub, tap.Options)
        service = tap.makeService(sub, manager_factory=StandInManager)
        assert service._exit_on_listen_failure is expected


def test_make_service_builds_real_session_manager() -> None:
    """
    Without a stand-in, makeService builds the real SessionManager and serves
    its listener factory.
    """
    from obproxy_tx.session.manager import SessionManager

    reactor = MemoryReactor()
    service = tap.makeService(parse("-c", str(EXAMPLE), reactor=reactor))
    assert isinstance(service.manager, SessionManager)
    assert service.listener.factory is not None


# --------------------------------------------------------------------------------------
# The plugin


def test_plugin_discoverable() -> None:
    """
    getPlugins(IServiceMaker) finds the obproxy plugin, whose options and
    makeService are obproxy_tx.tap's.
    """
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "obproxy" in makers
    maker = makers["obproxy"]
    assert maker.options is tap.Options
    assert maker.makeService is tap.makeService
    assert "SQL proxy" in maker.description


def test_no_init_in_twisted_plugins() -> None:
    """
    twisted/plugins in the checkout has no __init__.py (it would hide
    Twisted's own plugins).
    """
    assert (ROOT / "twisted" / "plugins" / "obproxy_plugin.py").is_file()
    assert not os.path.exists(ROOT / "twisted" / "plugins" / "__init__.py")
    assert not os.path.exists(ROOT / "twisted" / "__init__.py")


# --------------------------------------------------------------------------------------
# The documentation


def _generator() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "docs" / "gen_config_reference.py"), run_name="generator")


def test_configuration_reference_is_current() -> None:
    """
    docs/configuration.md's generated tables match ITEMS and the cluster and
    user keys (run python docs/gen_config_reference.py when this fails).
    """
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert _generator()["render"](page) == page
    for name in ITEMS:
        assert f"| `{name}` |" in page


@pytest.mark.parametrize("page", ["configuration.md", "running.md"])
def test_documented_yaml_examples_are_valid(page: str) -> None:
    """
    Every YAML example in the docs is a configuration the proxy accepts.
    """
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert blocks or page == "running.md"
    for block in blocks:
        parse_config(block, source=f"{page} example")


def test_documented_errors_are_real() -> None:
    """
    The file errors docs/configuration.md shows are the messages the proxy gives.
    """
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    cases = {
        "listen_port: 2883\nproxy_id: abc\n": "conf.yaml, line 2: proxy_id: expected an integer",
        "clusters:\n  - name: obcluster\n    servers:\n      - 10.0.0.1:2881\n"
        "      - 10.0.0.2:99999\n": "conf.yaml, line 5: clusters[0].servers[1]: ",
        "listen_port: 2883\nproxy_idd: 3\n": "conf.yaml, line 2: proxy_idd: unknown key",
    }
    for source, start in cases.items():
        if "clusters" not in source:
            source += "clusters: [{name: c, servers: ['h:1']}]\n"
        with pytest.raises(ConfigError) as info:
            parse_config(source, source="conf.yaml")
        assert str(info.value).startswith(start)
        assert str(info.value) in text


def test_running_doc_quotes_the_example() -> None:
    """
    The embedding snippet in docs/running.md is quoted from
    examples/embedded_proxy.py, line by line.
    """
    text = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    example = (ROOT / "examples" / "embedded_proxy.py").read_text(encoding="utf-8")
    snippet = text.split("examples/embedded_proxy.py)")[1].split("```python\n")[1].split("```")[0]
    for line in snippet.splitlines():
        code = line.split("  #")[0].strip()
        if code:
            assert code in example, line


def test_foreign_address_names_local_bound_ip() -> None:
    """
    When local_bound_ip is not an address of this host, the message names
    local_bound_ip and where it was set, not the port.
    """
    from twisted.internet import reactor

    options = parse(
        "-c", str(EXAMPLE), "-p", "0", "-o", "local_bound_ip=192.0.2.77", reactor=reactor
    )
    assert options.proxy_config is not None
    service = tap.build_proxy_service(options.proxy_config, reactor, manager_factory=StandInManager)
    with pytest.raises(ConfigError) as info:
        service.startService()
    assert str(info.value) == (
        "command line -o local_bound_ip=192.0.2.77: local_bound_ip: cannot listen on "
        "192.0.2.77:0: Cannot assign requested address"
    )
