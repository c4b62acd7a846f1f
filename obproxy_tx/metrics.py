"""
Prometheus metrics: the proxy's counters and state over HTTP, in the text
format Prometheus scrapes, made with the C{prometheus_client} library and
served by Twisted (C{twisted.web}, no threads).

With C{enable_prometheus} (on by default, as in ODP) the proxy listens on
C{prometheus_listen_port} (2884) on C{local_bound_ip}; C{GET /metrics} (any
path) answers.

Nothing is counted for the metrics alone: a scrape reads what the proxy keeps
anyway, through a custom collector (L{ProxyCollector}):

  - every counter of C{SHOW PROXYSTAT} (L{ProxyStats
    <obproxy_tx.session.stats.ProxyStats>}), as C{obproxy_<name>_total}, so
    both show the same figures;
  - client sessions by C{MCS_*} state, server sessions by server and
    C{MSS_*} state (those held by clients and those idle in the shared pool);
  - requests relayed to servers by command, the ones answered with an error,
    and their latency histogram (L{RequestStats
    <obproxy_tx.session.stats.RequestStats>}, counted once per answered
    request);
  - the congestion table (L{obproxy_tx.ha.congestion}): per server whether
    it is dead, alive or detect congested, and its failure counts;
  - bytes read from clients and bytes of answers relayed to them.

One registry per L{SessionManager<obproxy_tx.session.manager.SessionManager>}
(L{registry_for}): no global state, so several proxies in one process (tests,
embedding) each have their own figures.

With workers (C{work_thread_num} > 1) the parent process serves the endpoint:
at each scrape it asks every worker for its figures over the worker channel
(the hidden channel command of L{obproxy_tx.plugins.obproxy_metrics}) and
answers them all, each sample labelled C{worker="N"}; nothing is summed, so
C{sum without (worker) (...)} in a query gives the node's figure. A worker that
does not answer in time is left out of that scrape (and
C{obproxy_workers_answering} says how many did).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from obproxy_tx.logs import Logger
from obproxy_tx.session.states import ClientSessionState, ServerSessionState
from obproxy_tx.session.stats import LATENCY_BUCKETS, ProxyStats

__all__ = [
    "CHANNEL_COMMAND",
    "MetricsResource",
    "MetricsService",
    "ProxyCollector",
    "families_from_rows",
    "metric_rows",
    "registry_for",
    "render",
]

_log = Logger()

#: The name of the worker channel's metrics command (L{obproxy_tx.plugins.obproxy_metrics}).
CHANNEL_COMMAND = "(channel) metrics"

#: A metric row: C{[family, kind, help, labels, value]}; C{kind} is C{counter},
#: C{gauge} or C{histogram}, whose value is C{{"buckets": [...], "sum": s}} with
#: a count per bucket of L{LATENCY_BUCKETS} plus C{+Inf}. Rows are plain JSON so
#: a worker's travel over the channel as they are.
Row = List[Any]


def _ivar_docs(cls: type) -> Dict[str, str]:
    # "@ivar name: text" from the class docstring, for the HELP lines.
    found: Dict[str, str] = {}
    for name, text in re.findall(r"@ivar (\w+):(.*?)(?=@ivar|\Z)", cls.__doc__ or "", re.DOTALL):
        found[name] = " ".join(text.split())
    return found


_STAT_HELP = _ivar_docs(ProxyStats)
_MCS_STATES = [state.value for state in ClientSessionState if state.value != "MCS_CLOSED"]
_MSS_STATES = [state.value for state in ServerSessionState if state.value != "MSS_CLOSED"]


def metric_rows(manager: Any) -> List[Row]:
    """
    Everything one session manager shows, as rows (see L{Row}).

    @param manager: a L{SessionManager<obproxy_tx.session.manager.SessionManager>}.
    @return: the rows, families in a fixed order.
    """
    rows: List[Row] = []
    stats = manager.stats
    for name, value in stats.rows():
        rows.append([f"obproxy_{name}", "counter", _STAT_HELP.get(name, name), {}, value])
    sessions = list(manager.client_sessions.values())
    by_state = dict.fromkeys(_MCS_STATES, 0)
    for cs in sessions:
        state = cs.machine.state.value
        by_state[state] = by_state.get(state, 0) + 1
    for state, count in by_state.items():
        rows.append(
            [
                "obproxy_client_sessions",
                "gauge",
                "client sessions open now, by state",
                {"state": state},
                count,
            ]
        )
    servers: Dict[tuple[str, str], int] = {}
    for cs in sessions:
        for ss in cs.server_sessions:
            key = (ss.server.address, ss.machine.state.value)
            servers[key] = servers.get(key, 0) + 1
    pool = manager.session_pool
    for ss in pool:
        key = (ss.server.address, ss.machine.state.value)
        servers[key] = servers.get(key, 0) + 1
    for (address, state), count in sorted(servers.items()):
        rows.append(
            [
                "obproxy_server_sessions",
                "gauge",
                "server sessions open now (held by clients or idle in the shared pool), by "
                "server and state",
                {"server": address, "state": state},
                count,
            ]
        )
    rows.append(
        [
            "obproxy_shared_pool_sessions",
            "gauge",
            "server sessions the shared pool holds now (idle or being reset)",
            {},
            len(pool),
        ]
    )
    rows.append(
        [
            "obproxy_uptime_seconds",
            "gauge",
            "seconds since the session manager was made",
            {},
            max(0.0, time.time() - manager.started_at),
        ]
    )
    for name, entry in sorted(manager.requests.stats.by_command.items()):
        labels = {"command": name}
        rows.append(
            [
                "obproxy_requests",
                "counter",
                "requests relayed to servers and answered, by command",
                labels,
                entry[0],
            ]
        )
        rows.append(
            [
                "obproxy_request_errors",
                "counter",
                "requests relayed to servers answered with an error, by command",
                labels,
                entry[1],
            ]
        )
        rows.append(
            [
                "obproxy_request_duration_seconds",
                "histogram",
                "time from the proxy reading a request to the end of its answer, by command",
                labels,
                {"buckets": list(entry[3:]), "sum": entry[2]},
            ]
        )
    health = getattr(manager, "health", None)
    if health is not None:
        for entry in health.table.entries():
            labels = {"cluster": entry.cluster, "server": entry.server}
            for kind in ("dead", "alive", "detect"):
                rows.append(
                    [
                        "obproxy_server_congested",
                        "gauge",
                        "1 while new server sessions avoid the server for this kind of "
                        "congestion (SHOW PROXYCONGESTION)",
                        {**labels, "kind": kind},
                        int(getattr(entry, f"{kind}_congested")),
                    ]
                )
            rows.append(
                [
                    "obproxy_congestion_connect_failures",
                    "counter",
                    "connect failures of the server (SHOW PROXYCONGESTION's stat_conn_failures)",
                    labels,
                    entry.stat_conn_failures,
                ]
            )
            rows.append(
                [
                    "obproxy_congestion_refusals",
                    "counter",
                    "cannot-serve-now refusals of the server (stat_alive_failures)",
                    labels,
                    entry.stat_alive_failures,
                ]
            )
    return rows


def families_from_rows(
    rows: Iterable[Sequence[Any]], extra: Dict[str, str] | None = None
) -> List[Any]:
    """
    Prometheus metric families from rows (L{metric_rows}), samples of one
    family together whatever the order of the rows.

    @param rows: the rows.
    @param extra: labels added to every sample (C{{"worker": "1"}}).
    @return: the families, in the order they first appear.
    """
    families: Dict[str, Any] = {}
    for family, kind, help_text, labels, value in rows:
        labels = {**labels, **(extra or {})}
        names = sorted(labels)
        found: Any = families.get(family)
        if found is None:
            if kind == "counter":
                found = CounterMetricFamily(family, help_text, labels=names)
            elif kind == "histogram":
                found = HistogramMetricFamily(family, help_text, labels=names)
            else:
                found = GaugeMetricFamily(family, help_text, labels=names)
            families[family] = found
        values = [str(labels[name]) for name in names]
        if kind == "histogram":
            found.add_metric(values, _cumulative(value["buckets"]), value["sum"])
        else:
            found.add_metric(values, value)
    return list(families.values())


def _cumulative(counts: Sequence[float]) -> List[tuple[str, float]]:
    bounds = [*(repr(float(bound)) for bound in LATENCY_BUCKETS), "+Inf"]
    total = 0.0
    buckets = []
    for bound, count in zip(bounds, counts):
        total += count
        buckets.append((bound, total))
    return buckets


class ProxyCollector(Collector):
    """
    A C{prometheus_client} collector reading one session manager at each
    scrape (L{metric_rows}).
    """

    def __init__(self, manager: Any) -> None:
        """
        @param manager: the session manager whose figures are collected.
        """
        self.manager = manager

    def collect(self) -> Iterator[Any]:
        """
        @return: the manager's metric families, as they are now.
        """
        return iter(families_from_rows(metric_rows(self.manager)))


def registry_for(manager: Any) -> CollectorRegistry:
    """
    A registry of its own holding the manager's collector (no process-wide
    default registry: several proxies may share a process).

    @param manager: the session manager.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(manager))
    return registry


class _Families(Collector):
    # Families already made (from the workers' rows), for one scrape.
    def __init__(self, families: List[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        return iter(self.families)


def render(families: List[Any]) -> bytes:
    """
    The text exposition of C{families}.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return bytes(generate_latest(registry))


def _workers_families(answers: Sequence[tuple[bool, Any]]) -> List[Any]:
    rows: List[Row] = []
    answering = 0
    for worker, (ok, worker_rows) in enumerate(answers):
        if not ok:
            continue
        answering += 1
        rows.extend(
            [family, kind, help_text, {**labels, "worker": str(worker)}, value]
            for family, kind, help_text, labels, value in worker_rows
        )
    rows.append(
        [
            "obproxy_workers_answering",
            "gauge",
            "worker processes whose figures this scrape holds",
            {},
            answering,
        ]
    )
    return families_from_rows(rows)


class MetricsResource(Resource):
    """
    The endpoint: any C{GET} answers the metrics in Prometheus' text format.
    """

    isLeaf = True  # noqa: N815 (twisted.web's name)

    def __init__(self, figures: Callable[[], Any]) -> None:
        """
        @param figures: returns the metric families now, or a Deferred
            firing with them (workers are asked over the channel).
        """
        super().__init__()
        self._figures = figures

    def render_GET(self, request: Any) -> Any:  # noqa: N802 (twisted.web's name)
        """
        Answer the metrics (asynchronously when workers are asked).
        """
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        result = defer.maybeDeferred(self._figures)
        answered = []

        def write(families: List[Any]) -> None:
            answered.append(render(families))

        def failed(failure: Any) -> None:
            _log.failure("collecting the metrics", failure)
            request.setResponseCode(500)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            answered.append(b"cannot collect the metrics; see the proxy's log\n")

        result.addCallbacks(write, failed)
        if result.called:
            return answered[0]

        def finish(_: object) -> None:
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(answered[0])
                request.finish()

        result.addCallback(finish)
        return NOT_DONE_YET


def manager_figures(manager: Any) -> Callable[[], List[Any]]:
    """
    The figures of one session manager (the proxy is one process).
    """
    registry = registry_for(manager)

    def figures() -> List[Any]:
        return list(registry.collect())

    return figures


def workers_figures(router: Any, timeout: float, reactor: Any) -> Callable[[], Any]:
    """
    The figures of every worker, asked over the channel at each scrape.

    @param router: the parent's L{Router<obproxy_tx.cluster.router.Router>}.
    @param timeout: seconds a worker has to answer.
    """
    from obproxy_tx.admin.access import RemoteCaller
    from obproxy_tx.cluster.protocol import caller_to_json

    # The scrape is no client session's: no cs_id, no login.
    caller = caller_to_json(RemoteCaller(0, None))

    def figures() -> Any:
        asked = []
        for member in router.workers:
            answer = defer.maybeDeferred(member.list_rows, caller, CHANNEL_COMMAND, {})
            answer.addTimeout(timeout, reactor)
            asked.append(answer)
        return defer.DeferredList(asked, consumeErrors=True).addCallback(_workers_families)

    return figures


class MetricsService(Service):
    """
    Listens on C{prometheus_listen_port} while running (a child of the
    proxy's service: L{obproxy_tx.tap.build_proxy_service}).

    A port that cannot listen is logged and the proxy runs without metrics:
    SQL traffic matters more than its figures.

    @ivar port: the listening port while listening, else C{None}.
    """

    name = "prometheus"

    def __init__(self, config: Any, reactor: Any, figures: Callable[[], Any]) -> None:
        """
        @param config: the configuration (C{prometheus_listen_port},
            C{local_bound_ip}).
        @param reactor: the reactor to listen with.
        @param figures: see L{MetricsResource}.
        """
        self.config = config
        self.reactor = reactor
        self.site = Site(MetricsResource(figures))
        self.site.noisy = False
        self.port: IListeningPort | None = None

    def startService(self) -> None:  # noqa: N802
        """
        Listen (a failure is logged, not raised).
        """
        super().startService()
        config = self.config
        try:
            self.port = self.reactor.listenTCP(
                config.prometheus_listen_port, self.site, interface=config.local_bound_ip
            )
        except Exception as e:
            _log.error(
                "prometheus_listen_port {port}: cannot listen, no metrics: {error}",
                port=config.prometheus_listen_port,
                error=e,
            )
            return
        host = self.port.getHost()
        _log.info(
            "Prometheus metrics on http://{host}:{port}/metrics",
            host=getattr(host, "host", ""),
            port=getattr(host, "port", 0),
        )

    def stopService(self) -> Any:  # noqa: N802
        """
        Stop listening.
        """
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None
