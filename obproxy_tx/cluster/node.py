"""
Putting a node's channel together: the peers it dials (C{proxy_peers}), the
port where peers reach it (C{proxy_peer_listen}, L{PeerListener}), and the
router and view of a node that runs in one process.
"""

from __future__ import annotations

from typing import Any, List

from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from obproxy_tx.cluster.local import LocalSessions
from obproxy_tx.cluster.protocol import ChannelProtocol, PeerGuard
from obproxy_tx.cluster.router import (
    InProcessView,
    LocalMember,
    NodeRequests,
    PeerMember,
    Router,
)
from obproxy_tx.config import ConfigError, ProxyConfig

__all__ = ["PeerListener", "in_process_router", "peer_members", "uses_channel"]

_PROOF_TIMEOUT = 10.0
"""Seconds a connecting peer has to prove the secret before it is dropped."""


def uses_channel(config: ProxyConfig) -> bool:
    """
    Whether this node talks to anyone over the channel: several workers, or
    peers (dialled or listened for). Without it, the proxy runs exactly as a
    single process did before the channel existed: C{manager.cluster} is
    C{None}.
    """
    return config.work_thread_num > 1 or bool(config.proxy_peers) or bool(config.proxy_peer_listen)


def peer_members(config: ProxyConfig, node: str, reactor: Any) -> List[PeerMember]:
    """
    @return: one member per C{proxy_peers} address.
    """
    return [PeerMember(address, config, node, reactor) for address in config.proxy_peers]


def in_process_router(manager: Any, peers: List[PeerMember]) -> Router:
    """
    The router of a node that is one process with peers, installed as its
    manager's C{cluster}.

    @param manager: the node's session manager.
    @param peers: the other nodes.
    @return: the router (its peer listener answers with it).
    """
    router = Router(manager.config, [LocalMember(LocalSessions(manager))], peers)
    manager.cluster = InProcessView(router)
    return router


class _PeerFactory(Factory):
    """
    Builds the listening end of a peer connection: nothing is served before
    the proof of the secret, which must come in L{_PROOF_TIMEOUT} seconds.
    """

    def __init__(self, listener: PeerListener) -> None:
        self.listener = listener

    def buildProtocol(self, addr: Any) -> ChannelProtocol:  # noqa: N802
        listener = self.listener
        config = listener.config
        guard = PeerGuard(
            config.proxy_cluster_secret,
            listener.node,
            config.proxy_id,
            config.client_session_id_version,
        )
        protocol = ChannelProtocol(
            handler=NodeRequests(listener.router, None),
            guard=guard,
            on_lost=listener.connections.discard,
        )
        listener.connections.add(protocol)
        listener.reactor.callLater(_PROOF_TIMEOUT, _drop_unproven, protocol)
        return protocol


def _drop_unproven(protocol: ChannelProtocol) -> None:
    guard = protocol.guard
    if guard is not None and not guard.authenticated and protocol.transport is not None:
        PeerListener._log.warn(
            "channel: a peer did not prove the secret in {seconds}s; dropped",
            seconds=_PROOF_TIMEOUT,
        )
        protocol.transport.loseConnection()


class PeerListener(Service):
    """
    Listens on C{proxy_peer_listen} for other proxy nodes.

    It binds in L{privilegedStartService}, like the SQL port, so that an
    address it cannot listen on stops start-up with a L{ConfigError} naming
    C{proxy_peer_listen}.

    @ivar config: the node's configuration.
    @ivar router: answers the peers' requests (with the node's sessions).
    @ivar node: this node's random id.
    @ivar port: the listening port, once listening.
    @ivar connections: the peer connections open now.
    """

    _log = Logger()

    def __init__(self, config: ProxyConfig, reactor: Any, router: Router, node: str) -> None:
        self.setName("peer-listener")
        self.config = config
        self.reactor = reactor
        self.router = router
        self.node = node
        self.port: IListeningPort | None = None
        self.connections: set[ChannelProtocol] = set()

    def privilegedStartService(self) -> None:  # noqa: N802
        """
        Listen (see the class docstring).

        @raise ConfigError: the endpoint cannot be parsed or listened on.
        """
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:  # noqa: N802
        """
        Listen, unless L{privilegedStartService} did.
        """
        super().startService()
        self._listen()

    def _fail(self, problem: str) -> ConfigError:
        key = "proxy_peer_listen"
        return ConfigError(
            problem, origin=self.config.origins.get(key, self.config.source), path=key
        )

    def _listen(self) -> None:
        if self.port is not None:
            return
        from twisted.internet.endpoints import serverFromString

        description = self.config.proxy_peer_listen
        try:
            endpoint = serverFromString(self.reactor, description)
        except Exception as e:  # noqa: BLE001 (endpoint parsers raise anything)
            raise self._fail(f"{description!r} is not a usable server endpoint: {e}") from None
        outcome: List[Any] = []
        endpoint.listen(_PeerFactory(self)).addBoth(outcome.append)
        if not outcome:
            raise self._fail(f"{description!r} does not listen at once; use a tcp or unix endpoint")
        result = outcome[0]
        if isinstance(result, Failure):
            if result.check(CannotListenError):
                socket_error = getattr(result.value, "socketError", None)
                reason = getattr(socket_error, "strerror", None) or str(socket_error)
                raise self._fail(f"cannot listen on {description}: {reason}")
            raise self._fail(f"cannot listen on {description}: {result.getErrorMessage()}")
        self.port = result
        self._log.info("channel: answering peer proxy nodes on {address}", address=result.getHost())

    def stopService(self) -> Any:  # noqa: N802
        """
        Stop listening and hang up on every peer.
        """
        super().stopService()
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        port, self.port = self.port, None
        if port is None:
            return None
        return port.stopListening()
