"""
Running the proxy: the C{twistd obproxy} command line and the service tree
behind it.

From a shell (the plugin is C{twisted/plugins/obproxy_plugin.py})::

    twistd -n obproxy -c examples/conf.yaml -p 2883 -r "127.0.0.1:2881"

takes ODP's command-line habits: C{-p PORT} (listen port),
C{-r "ip:port;ip:port"} (servers of the default cluster),
C{-o name=value[,name=value]} (any config item, repeatable) and
C{-n APP_NAME}.

From Python, inside another Twisted application::

    from obproxy_tx.config import load_config
    from obproxy_tx.tap import build_proxy_service

    proxy = build_proxy_service(load_config("conf.yaml"), reactor)
    proxy.setServiceParent(application)

The service tree is a L{ProxyService} (a L{MultiService}) holding the
L{SessionManager<obproxy_tx.session.manager.SessionManager>} and then a
L{StreamServerEndpointService} listening on the config's
L{listen_endpoint<obproxy_tx.config.ProxyConfig.listen_endpoint>} with the
manager's client-facing factory. Children start in that order and stop in the
reverse one: the port closes before the sessions do.

With C{work_thread_num} > 1 the process is a parent: a
L{WorkerSupervisor<obproxy_tx.cluster.supervisor.WorkerSupervisor>} takes the
manager's place, the parent listens on the SQL port but never accepts, and
the worker processes it starts accept from that socket. With C{proxy_peers}
or C{proxy_peer_listen}, the node talks to other proxy nodes (a
L{PeerListener<obproxy_tx.cluster.node.PeerListener>} is added). See
L{obproxy_tx.cluster}.

Every mistake a user can make (unreadable file, bad YAML, unknown key, wrong
type, a bad C{-p}/C{-r}/C{-o} value, a listen endpoint string Twisted cannot
parse) is found while the options are parsed and becomes one
L{usage.UsageError} naming the file or option, the key and the problem, which
C{twistd} prints without a traceback. An address the proxy cannot listen on
(in use, not local, not permitted) stops start-up with one message naming the
key it came from; see L{ProxyService}.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import textwrap
from typing import Any, Callable

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from obproxy_tx import __version__, logs, tls
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.config import (
    ITEMS,
    ClusterConfig,
    ClusterType,
    ConfigError,
    ConfigItem,
    ProxyConfig,
    UserEntry,
)
from obproxy_tx.reactor import install_default
from obproxy_tx.reload import ConfigSource, ReloadOutcome, reload_config
from obproxy_tx.session.login import DEFAULT_TENANT

__all__ = [
    "Options",
    "ProxyService",
    "build_proxy_service",
    "default_config",
    "describe_items",
    "listen_endpoint",
    "makeService",
    "with_backlog",
]

_DEFAULTS_SOURCE = "built-in defaults (no -c FILE)"


def default_config() -> ProxyConfig:
    """
    The configuration used when no C{-c FILE} is given: one OceanBase cluster
    C{obcluster} whose servers C{-r} must supply, and the user C{root@sys} with
    an empty password, as a fresh seekdb or OceanBase starts. Every other item
    keeps its default. Not checked (it has no servers yet).
    """
    root = UserEntry("root", DEFAULT_TENANT, b"")
    cluster = ClusterConfig("obcluster", ClusterType.OCEANBASE, users=(root,))
    return ProxyConfig(clusters=(cluster,), source=_DEFAULTS_SOURCE)


ManagerFactory = Callable[..., Any]
"""
How a session manager is made: C{factory(config, reactor=reactor)} returns a
service with a C{listener_factory()} method (the real one is
L{obproxy_tx.session.manager.SessionManager}).
"""


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _listen_key(config: ProxyConfig) -> str:
    """
    The config item the listen address comes from: C{listen} when set, else
    C{listen_port} (with C{local_bound_ip}).
    """
    return "listen" if config.listen else "listen_port"


def _listen_error(config: ProxyConfig, problem: str) -> ConfigError:
    key = _listen_key(config)
    return ConfigError(problem, origin=config.origins.get(key, config.source), path=key)


#: The listen backlog of the SQL port when the endpoint string names none. Twisted's
#: default, 50, overflowed when 128 clients connected at once (the kernel dropped SYNs
#: and their logins waited for a retransmission); the kernel caps it at somaxconn.
LISTEN_BACKLOG = 4096

_BACKLOG_KINDS = ("tcp:", "tcp6:", "unix:")


def with_backlog(description: str, backlog: int = LISTEN_BACKLOG) -> str:
    """
    The endpoint string with C{backlog=} added when it is a C{tcp}, C{tcp6}
    or C{unix} one that does not set its own.

    @param description: a Twisted server endpoint string.
    @param backlog: the listen backlog to add.
    """
    if description.lower().startswith(_BACKLOG_KINDS) and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


def listen_endpoint(config: ProxyConfig, reactor: Any) -> IStreamServerEndpoint:
    """
    Parse the config's listen endpoint string into an endpoint, with a listen
    backlog of L{LISTEN_BACKLOG} unless the string sets one.

    @param config: the configuration.
    @param reactor: the reactor the endpoint will listen with.
    @return: the server endpoint (nothing listens yet).
    @raise ConfigError: Twisted cannot parse the string, naming the item it
        came from (C{listen} or C{listen_port}).
    """
    description = config.listen_endpoint
    try:
        return serverFromString(reactor, with_backlog(description))
    except Exception as e:  # noqa: BLE001 (endpoint parsers, plugins included, raise anything)
        reason = str(e) or type(e).__name__
        raise _listen_error(
            config, f"{description!r} is not a usable server endpoint: {reason}"
        ) from None


def _socket_reason(error: CannotListenError) -> str:
    socket_error = error.socketError
    reason = getattr(socket_error, "strerror", None) or str(socket_error)
    return str(reason)


def _listen_address(error: CannotListenError) -> str:
    interface = error.interface or "0.0.0.0"
    if ":" in interface:
        interface = f"[{interface}]"
    return f"{interface}:{error.port}"


def _describe_address(address: object) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return str(name if name is not None else address)


@implementer(IStreamServerEndpoint)
class _ObservedEndpoint:
    """
    An endpoint wrapper that tells L{ProxyService} which port it listens on.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, listening: Callable[[Any], Any]) -> None:
        self._endpoint = endpoint
        self._listening = listening

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:  # noqa: N803
        """
        Listen with the wrapped endpoint and report the outcome.
        """
        return self._endpoint.listen(protocolFactory).addBoth(self._listening)


class ProxyService(MultiService):
    """
    The whole proxy as one service: the session manager, then the SQL listener.

    An address the proxy cannot listen on stops start-up: C{startService} or
    C{privilegedStartService} raises L{ConfigError} naming the item the
    address came from (C{listen_port} or C{listen}, with the file line or the
    command-line option) and the operating system's reason, after stopping
    whatever had started. Under C{twistd} (see L{makeService}) it raises
    C{SystemExit} with that message instead, which C{twistd} passes to Python
    to print and exit with status 1: the one way out of C{twistd}'s start-up
    without a traceback.

    Stopping drains: the listener stops first (children stop in reverse
    order), then the session manager lets running statements and open
    transactions finish (L{obproxy_tx.session.drain}); C{twistd} waits for
    that before it exits.

    @ivar config: the configuration the proxy runs with.
    @ivar manager: the session manager, or with several workers the
        L{WorkerSupervisor<obproxy_tx.cluster.supervisor.WorkerSupervisor>}.
    @ivar listener: the L{StreamServerEndpointService} of the SQL port.
    @ivar app_name: the application name given with C{-n}, if any.
    @ivar port: the listening port once listening, else L{None}.
    @ivar config_source: where the configuration was read from, when
        C{SIGHUP} reloads it (L{obproxy_tx.reload}); C{None}: no reload.
    """

    _log = Logger()

    def __init__(
        self,
        config: ProxyConfig,
        manager: Any,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        *,
        app_name: str | None = None,
        exit_on_listen_failure: bool = False,
        config_source: ConfigSource | None = None,
        reactor: Any = None,
    ) -> None:
        """
        @param config: the configuration.
        @param manager: the session manager service.
        @param endpoint: where to listen.
        @param factory: the client-facing protocol factory.
        @param app_name: the C{-n} application name.
        @param exit_on_listen_failure: raise C{SystemExit} rather than
            L{ConfigError} when the proxy cannot listen (the C{twistd} way).
        @param config_source: where the configuration came from: given, the
            service reloads it on C{SIGHUP} while running.
        @param reactor: the reactor a C{SIGHUP} is handed to (the global one
            by default).
        """
        super().__init__()
        self.setName("obproxy")
        self.config = config
        self.manager = manager
        self.app_name = app_name
        self.config_source = config_source
        self._reactor = reactor
        self._previous_sighup: Any = None
        self._hurry_installed = False
        self.port: IListeningPort | None = None
        self._exit_on_listen_failure = exit_on_listen_failure
        self._waiting: list[Deferred[IListeningPort]] = []
        self.listener = StreamServerEndpointService(
            _ObservedEndpoint(endpoint, self._listen_result), factory
        )
        # strports.service does the same: a listen() that fails at once (TCP
        # binds synchronously) raises out of privilegedStartService instead of
        # being logged while start-up carries on without a port.
        self.listener._raiseSynchronously = True
        if manager.name is None:
            manager.setName("session-manager")
        self.listener.setName("sql-listener")
        manager.setServiceParent(self)
        self.listener.setServiceParent(self)

    #: The log observer twistd should use (C{-o log_format=json}), set by
    #: L{makeService}; given to the application when the service joins it.
    log_observer: Any = None

    def setServiceParent(self, parent: Any) -> Any:  # noqa: N802
        """
        Join C{parent}; when it is twistd's application and a JSON log was
        asked for, make that the application's log observer (twistd's own
        way for an application to choose its log).
        """
        if self.log_observer is not None and hasattr(parent, "setComponent"):
            from twisted.logger import ILogObserver

            parent.setComponent(ILogObserver, self.log_observer)
        return super().setServiceParent(parent)

    def when_listening(self) -> Deferred[IListeningPort]:
        """
        A L{Deferred} that fires with the listening port (for its address when
        the config says port 0), or fails with the listen error.
        """
        if self.port is not None:
            return succeed(self.port)
        waiting: Deferred[IListeningPort] = Deferred()
        self._waiting.append(waiting)
        return waiting

    def _listen_result(self, result: Any) -> Any:
        waiting, self._waiting = self._waiting, []
        if isinstance(result, Failure):
            for d in waiting:
                d.errback(result)
            return result
        self.port = result
        address = _describe_address(result.getHost())
        self._log.info(
            "obproxy_tx {version}{app} listening on {address} ({endpoint}); "
            "default cluster {cluster}: {servers}",
            version=__version__,
            app=f" ({self.app_name})" if self.app_name else "",
            address=address,
            endpoint=self.config.listen_endpoint,
            cluster=self.config.default_cluster.name,
            servers=", ".join(str(server) for server in self.config.default_cluster.servers),
        )
        for d in waiting:
            d.callback(result)
        return result

    def privilegedStartService(self) -> None:
        """
        Listen on the SQL port (before C{twistd} sheds privileges).

        @raise ConfigError: the port cannot listen (see the class docstring).
        """
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            self._listen_failed(e)
        except ConfigError as e:
            # The peer listener names its own item.
            self._config_failed(e)

    def startService(self) -> None:
        """
        Start the session manager, then listen unless already listening.

        @raise ConfigError: the port cannot listen; the manager is stopped again.
        """
        try:
            super().startService()
        except CannotListenError as e:
            self.stopService()
            self._listen_failed(e)
        except ConfigError as e:
            self.stopService()
            self._config_failed(e)
        self._catch_sighup()

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, then stop the session manager, which drains: the
        returned L{Deferred} fires once its last client session closed.
        """
        self.port = None
        self._release_sighup()
        result: Deferred[None] = super().stopService()
        self._catch_second_stop()
        return result

    def hurry(self) -> None:
        """
        Stop draining and close every session now (a second C{SIGTERM} or
        C{SIGINT} while stopping); with workers, each worker is told so.
        """
        drain = getattr(self.manager, "drain", None)
        if drain is not None:
            drain.hurry()
        hurry = getattr(self.manager, "hurry", None)
        if hurry is not None:
            hurry()

    def _catch_second_stop(self) -> None:
        # Only under twistd (a config source): an embedding application owns its signals.
        if self.config_source is None or self._hurry_installed:
            return
        reactor = self._reactor if self._reactor is not None else _default_reactor()

        def second(signum: int, frame: Any) -> None:
            reactor.callFromThread(self.hurry)

        try:
            for name in ("SIGTERM", "SIGINT"):
                number = getattr(signal, name, None)
                if number is not None:
                    signal.signal(number, second)
        except ValueError:  # not the main thread
            return
        self._hurry_installed = True

    def reload(self) -> ReloadOutcome | None:
        """
        Read the configuration again from L{config_source} and apply it
        (what C{SIGHUP} does; see L{obproxy_tx.reload}).

        @return: what happened, or C{None} without a source or a manager
            that can change its configuration.
        """
        source = self.config_source
        if source is None or not hasattr(self.manager, "reconfigure"):
            return None
        outcome = reload_config(self.manager, source)
        if outcome.error is None:
            self.config = outcome.config
        return outcome

    def _catch_sighup(self) -> None:
        if self.config_source is None or not hasattr(signal, "SIGHUP"):
            return
        try:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        except ValueError:  # not the main thread: whoever embeds us owns the signals
            self._previous_sighup = None

    def _release_sighup(self) -> None:
        previous, self._previous_sighup = self._previous_sighup, None
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGHUP, previous)

    def _sighup(self, signum: int, frame: Any) -> None:
        # In the signal handler only hand over to the reactor, as Twisted does for SIGTERM.
        reactor = self._reactor if self._reactor is not None else _default_reactor()
        reactor.callFromThread(self.reload)

    def _listen_failed(self, error: CannotListenError) -> None:
        key = _listen_key(self.config)
        if (
            key == "listen_port"
            and getattr(error.socketError, "errno", None) == errno.EADDRNOTAVAIL
        ):
            key = "local_bound_ip"  # the port is fine; the address is not this host's
        problem = ConfigError(
            f"cannot listen on {_listen_address(error)}: {_socket_reason(error)}",
            origin=self.config.origins.get(key, self.config.source),
            path=key,
        )
        self._config_failed(problem)

    def _config_failed(self, problem: ConfigError) -> None:
        if self._exit_on_listen_failure:
            raise SystemExit(str(problem)) from None
        raise problem from None


def build_proxy_service(
    config: ProxyConfig,
    reactor: Any = None,
    *,
    app_name: str | None = None,
    manager_factory: ManagerFactory | None = None,
    exit_on_listen_failure: bool = False,
    config_source: ConfigSource | None = None,
) -> ProxyService:
    """
    Build the proxy's service tree from a configuration, for C{twistd} or for
    embedding in another Twisted application.

    @param config: a checked configuration (L{load_config}, L{parse_config}).
    @param reactor: the reactor to listen and connect with; the global one by
        default.
    @param app_name: an application name to show in the log.
    @param manager_factory: makes the session manager; the real
        L{SessionManager<obproxy_tx.session.manager.SessionManager>} by default
        (a parameter for tests).
    @param exit_on_listen_failure: see L{ProxyService}.
    @param config_source: where C{config} was read from: C{SIGHUP} reloads
        it (in every worker too); C{None}: no reload.
    @return: the service, not yet started.
    @raise ConfigError: the listen endpoint string cannot be parsed.
    """
    if reactor is None:
        reactor = _default_reactor()
    endpoint = listen_endpoint(config, reactor)
    check_channel(config, reactor)
    # TLS files that do not load: one line naming the item, not a traceback at the first client.
    tls.check_files(config)
    # syslog_level, before anything logs (the parent of workers has no session manager).
    logs.apply_config(config)
    from obproxy_tx.cluster import node as cluster_node

    if config.work_thread_num > 1:
        _check_shareable(config, endpoint)
        from obproxy_tx.cluster.router import new_node_id
        from obproxy_tx.cluster.supervisor import WorkerSupervisor

        node = new_node_id()
        peers = cluster_node.peer_members(config, node, reactor)
        manager: Any = WorkerSupervisor(config, reactor, peers, config_source=config_source)
        router = manager.router
    else:
        if manager_factory is None:
            from obproxy_tx.session.manager import SessionManager

            manager_factory = SessionManager
        manager = manager_factory(config, reactor=reactor)
        router = None
        if cluster_node.uses_channel(config):
            from obproxy_tx.cluster.router import new_node_id

            node = new_node_id()
            peers = cluster_node.peer_members(config, node, reactor)
            router = cluster_node.in_process_router(manager, peers)
    service = ProxyService(
        config,
        manager,
        endpoint,
        manager.listener_factory(),
        app_name=app_name,
        exit_on_listen_failure=exit_on_listen_failure,
        config_source=config_source,
        reactor=reactor,
    )
    if config.proxy_peer_listen and router is not None:
        cluster_node.PeerListener(config, reactor, router, node).setServiceParent(service)
    if config.enable_prometheus:
        _metrics_service(config, reactor, manager).setServiceParent(service)
    return service


def _metrics_service(config: ProxyConfig, reactor: Any, manager: Any) -> Any:
    """
    The Prometheus endpoint (L{obproxy_tx.metrics}): this process's manager's
    figures, or with workers every worker's, asked over the channel.
    """
    from obproxy_tx import metrics

    if config.work_thread_num > 1:
        from obproxy_tx.cluster.router import call_timeout

        figures = metrics.workers_figures(manager.router, call_timeout(config), reactor)
    else:
        figures = metrics.manager_figures(manager)
    return metrics.MetricsService(config, reactor, figures)


def check_channel(config: ProxyConfig, reactor: Any) -> None:
    """
    Check what the channel between proxy nodes needs: a parsable
    C{proxy_peer_listen}.

    @raise ConfigError: naming the item.
    """
    description = config.proxy_peer_listen
    if not description:
        return
    try:
        serverFromString(reactor, description)
    except Exception as e:  # noqa: BLE001 (endpoint parsers, plugins included, raise anything)
        reason = str(e) or type(e).__name__
        raise ConfigError(
            f"{description!r} is not a usable server endpoint: {reason}",
            origin=config.origins.get("proxy_peer_listen", config.source),
            path="proxy_peer_listen",
        ) from None


def _check_shareable(config: ProxyConfig, endpoint: IStreamServerEndpoint) -> None:
    """
    Worker processes share the parent's listening socket, which works for
    plain TCP and UNIX sockets; an endpoint that wraps its connections (TLS)
    would be bypassed by the workers.

    @raise ConfigError: the listen endpoint is not shareable.
    """
    from twisted.internet import endpoints

    shareable = (
        endpoints.TCP4ServerEndpoint,
        endpoints.TCP6ServerEndpoint,
        endpoints.UNIXServerEndpoint,
        endpoints.AdoptedStreamServerEndpoint,
    )
    if not isinstance(endpoint, shareable):
        raise ConfigError(
            f"work_thread_num {config.work_thread_num} needs a tcp or unix listen endpoint, "
            f"whose socket the worker processes share; {config.listen_endpoint!r} is not one "
            "(client TLS is the proxy's own: enable_client_ssl)",
            origin=config.origins.get("work_thread_num", config.source),
            path="work_thread_num",
        )


def _format_default(item: ConfigItem) -> str:
    shown = item.render(item.default)
    return shown if shown != "" else '""'


def describe_items(width: int = 80) -> str:
    """
    Every config item, briefly: name, default and description, for
    C{twistd obproxy --help}.

    @param width: the line width to wrap to.
    """
    lines = [
        "Config items (in the YAML file, or on the command line as -o name=value;",
        "docs/configuration.md has the full reference):",
    ]
    indent = " " * 6
    for item in ITEMS.values():
        head = f"  {item.name} = {_format_default(item)}"
        if item.need_reboot:
            head += "  (restart)"
        lines.append(head)
        lines.extend(
            textwrap.wrap(
                item.description, width=width, initial_indent=indent, subsequent_indent=indent
            )
        )
    return "\n".join(lines)


class Options(usage.Options):
    """
    The options of C{twistd obproxy}, ODP's command-line flags included.

    After parsing, L{proxy_config} holds the checked configuration.

    @ivar proxy_config: the configuration: the file (or L{default_config})
        with C{-p}, C{-r}, C{-n} and every C{-o} applied.
    @ivar reactor: the reactor the proxy will run on (the global one unless
        given).
    """

    synopsis = "[-c FILE] [-p PORT] [-r 'IP:PORT;IP:PORT'] [-o NAME=VALUE[,NAME=VALUE]] [-n NAME]"

    longdesc = (
        "Run obproxy_tx, an OceanBase (ODP) compatible SQL proxy. The configuration "
        "comes from the YAML file given with -c (examples/conf.yaml is a commented "
        "one); without -c, one OceanBase cluster 'obcluster' with the user root@sys "
        "and an empty password is assumed and -r must name its servers. Items changed "
        "with ALTER PROXYCONFIG are saved (altered_config_file, by default FILE.altered.yaml) "
        "and applied after the file; -p, -r and -o then override both, as ODP's flags do; "
        "-o takes every config item listed by --help. Put twistd's own options (-n, "
        "--pidfile, -l) before 'obproxy'."
    )

    optParameters = [
        ["config", "c", None, "YAML configuration file (see examples/conf.yaml)."],
        [
            "listen-port",
            "p",
            None,
            "Port to listen on (config item listen_port; replaces 'listen'); 0 picks a free port.",
        ],
        [
            "rootservice-list",
            "r",
            None,
            "Servers of the default (first) cluster: 'ip:port;ip:port' (ODP's rootservice_list).",
        ],
        [
            "app-name",
            "n",
            None,
            "Application name (ODP's app_name), shown in the log.",
        ],
    ]

    compData = usage.Completions(optActions={"config": usage.CompleteFiles("*.yaml")})

    def __init__(self, reactor: Any = None) -> None:
        """
        @param reactor: the reactor to check the listen endpoint with and to
            run on; the global one (resolved after twistd installs it) if
            L{None}.
        """
        super().__init__()
        self["options"] = []
        self.reactor = reactor
        self.proxy_config: ProxyConfig | None = None
        self._config_failed = False

    def opt_options(self, value: str) -> None:
        """Set config items: NAME=VALUE[,NAME=VALUE...]; repeatable (items below)."""
        self["options"].append(value)

    opt_o = opt_options

    def opt_help(self) -> None:
        """Display this help, with every config item, and exit."""
        print(str(self))
        print(describe_items())
        sys.exit(0)

    def getUsage(self, width: int | None = None) -> str:
        """
        The usage text; after a configuration problem only a pointer to
        C{--help}, so that the problem itself is what the user reads.
        """
        if self._config_failed:
            return "obproxy --help lists every option and config item."
        return str(super().getUsage(width))

    def postOptions(self) -> None:
        """
        Load and check the configuration and its listen endpoint.

        @raise usage.UsageError: any configuration problem, with
            L{ConfigError}'s one-line message (file or option, key, problem).
        """
        try:
            config = self._load()
            if self.reactor is None:
                # twistd obproxy runs on the proxy's reactor unless --reactor chose one.
                self.reactor = install_default()
            endpoint = listen_endpoint(config, self.reactor)
            check_channel(config, self.reactor)
            tls.check_files(config)
            if config.work_thread_num > 1:
                _check_shareable(config, endpoint)
        except ConfigError as e:
            self._config_failed = True
            raise usage.UsageError(str(e)) from None
        try:
            # Two plugins with one command name: say which, in one line, before starting.
            CommandRegistry.from_plugins()
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        self.proxy_config = config

    def config_source(self) -> ConfigSource:
        """
        Where the configuration comes from: the C{-c} file (or the built-in
        defaults) and the command line, read at start and again on C{SIGHUP}.
        """
        options = list(self["options"])
        app_name = self["app-name"]
        if app_name is not None and "app_name" in ITEMS:
            options.insert(0, f"app_name={app_name}")
        return ConfigSource.of(
            self["config"], self["listen-port"], self["rootservice-list"], options
        )

    def _load(self) -> ProxyConfig:
        # Both read the items ALTER PROXYCONFIG saved (obproxy_tx.config_store)
        # between the file and the command line: command line > saved > file.
        return self.config_source().load()


def _twistd_daemonizes(options: usage.Options) -> bool:
    """
    Whether the C{twistd} that parsed C{options} will daemonize: then a
    start-up error must be an exception, which C{twistd} reports to the
    waiting parent process, rather than C{SystemExit}.
    """
    parent = getattr(options, "parent", None)
    if parent is None:
        return False
    try:
        return not parent["nodaemon"]
    except KeyError:  # twist, or twistd on Windows: never daemonizes
        return False


def makeService(options: Options, *, manager_factory: ManagerFactory | None = None) -> ProxyService:
    """
    Build the proxy's service from parsed L{Options} (the twistd entry point).

    @param options: parsed options.
    @param manager_factory: see L{build_proxy_service} (for tests).
    @return: the service; C{twistd} starts it.
    """
    config = options.proxy_config
    if config is None:
        raise usage.UsageError("options were not parsed")
    service = build_proxy_service(
        config,
        options.reactor,
        app_name=options["app-name"],
        manager_factory=manager_factory,
        exit_on_listen_failure=not _twistd_daemonizes(options),
        config_source=options.config_source(),
    )
    # -o log_format=json: JSON lines where twistd would write its log.
    service.log_observer = logs.observer_for_twistd(getattr(options, "parent", None), config)
    return service
