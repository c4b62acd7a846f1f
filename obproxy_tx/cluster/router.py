"""
Finding sessions across workers and proxy nodes: the L{Router}, the members
it asks, and the views the admin commands see as C{manager.cluster}.

A node's router knows its workers (in the parent process when there are
several, else the one process itself) and its peer nodes. It answers the
channel's requests for a scope (L{SCOPE_NODE}: its workers;
L{SCOPE_CLUSTER}: and its peers), and finds the session an id names as one
process would, extended:

  1. a C{cs_id} names its node (C{proxy_id} bits) and worker (worker bits),
     so that worker of that node is asked for it, and only it;
  2. otherwise, or when it has no such session, every worker and then every
     peer is asked for a session with that backend id, in that order; the
     first that has one answers.

So a C{cs_id} match anywhere wins over a backend id match anywhere, as
C{cs_id}s win over backend ids in one process.
"""

from __future__ import annotations

import hmac
import os
from typing import Any, Callable, Dict, List, Sequence

from twisted.internet import defer
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from obproxy_tx.admin.access import RemoteCaller
from obproxy_tx.cluster.protocol import (
    MODE_ANY,
    MODE_BACKEND,
    MODE_CS,
    OUTCOME_NOT_FOUND,
    PROTOCOL_VERSION,
    SCOPE_CLUSTER,
    SCOPE_NODE,
    SCOPE_WORKER,
    ApplyConfig,
    ChannelProtocol,
    ChannelRefusedError,
    ListRows,
    OnSession,
    Outcome,
    PeerHello,
    PeerProve,
    caller_to_json,
    proof,
)
from obproxy_tx.config import ProxyConfig, parse_server
from obproxy_tx.session.ids import ClientSessionIdLayout
from obproxy_tx.wire.errors import ErrorCode

__all__ = [
    "InProcessView",
    "NodeRequests",
    "PeerError",
    "LinkMember",
    "LocalMember",
    "PeerMember",
    "Router",
    "WorkerView",
    "call_timeout",
    "new_node_id",
]

_log = Logger()


def new_node_id() -> str:
    """
    A random id for this node, so that a node finding itself among its peers
    (every node may share one peer list) knows it is talking to itself.
    """
    return os.urandom(8).hex()


def call_timeout(config: ProxyConfig) -> float:
    """
    How long a request to another process may take: long enough for the
    slowest command (C{KILL QUERY} and C{VARIABLES ALL} open a side
    connection to a backend and log in there).
    """
    return 3 * config.short_async_task_timeout + 5.0


class LocalMember:
    """
    A member served in this very process (the only worker of a node that
    runs in one process).

    @ivar sessions: the L{LocalSessions<obproxy_tx.cluster.local.LocalSessions>}.
    """

    def __init__(self, sessions: Any, name: str = "this process") -> None:
        self.sessions = sessions
        self.name = name

    def list_rows(self, caller: Any, command: str, args: Any) -> defer.Deferred[Any]:
        """@return: the rows of C{command} over this process's sessions."""
        return defer.maybeDeferred(self.sessions.list_rows, caller, command, args, SCOPE_WORKER)

    def on_session(
        self, caller: Any, command: str, number: int, mode: str, args: Any
    ) -> defer.Deferred[Outcome]:
        """@return: the L{Outcome} of C{command} on the session C{number} names here."""
        return defer.maybeDeferred(
            self.sessions.on_session, caller, command, number, mode, args, SCOPE_WORKER
        )

    def apply_config(self, name: str, text: str) -> defer.Deferred[List[str]]:
        """@return: the problems applying the item here."""
        return defer.maybeDeferred(self.sessions.apply_config, name, text)


class LinkMember:
    """
    A member reached over a channel connection: a worker process (asked with
    L{SCOPE_WORKER}) or a peer node (asked with L{SCOPE_NODE}).

    @ivar name: for messages ("worker 1", "peer 10.0.0.2:2999").
    @ivar scope: the scope it is asked with.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], defer.Deferred[ChannelProtocol]],
        scope: str,
        reactor: Any,
        timeout: float,
    ) -> None:
        """
        @param connect: gives the connection (fails when there is none).
        """
        self.name = name
        self.scope = scope
        self._connect = connect
        self._reactor = reactor
        self._timeout = timeout

    async def _call(self, amp_command: Any, **arguments: Any) -> Any:
        protocol = await self._connect()
        asked = protocol.callRemote(amp_command, **arguments)
        asked.addTimeout(self._timeout, self._reactor)
        return await asked

    def list_rows(self, caller: Any, command: str, args: Any) -> defer.Deferred[Any]:
        """@return: the member's rows of C{command}."""

        async def ask() -> Any:
            answer = await self._call(
                ListRows, caller=caller, command=command, args=args, scope=self.scope
            )
            return answer["rows"]

        return defer.Deferred.fromCoroutine(ask())

    def on_session(
        self, caller: Any, command: str, number: int, mode: str, args: Any
    ) -> defer.Deferred[Outcome]:
        """@return: the L{Outcome} of C{command} on the session C{number} names there."""

        async def ask() -> Outcome:
            answer = await self._call(
                OnSession,
                caller=caller,
                command=command,
                number=number,
                mode=mode,
                args=args,
                scope=self.scope,
            )
            return Outcome.from_json(answer["outcome"])

        return defer.Deferred.fromCoroutine(ask())

    def apply_config(self, name: str, text: str) -> defer.Deferred[List[str]]:
        """@return: the problems applying the item there."""

        async def ask() -> List[str]:
            answer = await self._call(ApplyConfig, name=name, text=text)
            return [str(problem) for problem in answer["problems"]]

        return defer.Deferred.fromCoroutine(ask())


class PeerError(Exception):
    """
    A peer node cannot be used: unreachable, or it failed the proof.
    """


class PeerMember(LinkMember):
    """
    Another proxy node, dialled when first needed and kept connected.

    @ivar address: the peer as C{proxy_peers} lists it.
    @ivar proxy_id: its C{proxy_id}, once it said hello.
    @ivar is_self: the address turned out to be this very node.
    """

    def __init__(
        self,
        address: str,
        config: ProxyConfig,
        node: str,
        reactor: Any,
    ) -> None:
        """
        @param address: C{ip:port} or a Twisted client endpoint string.
        @param config: this node's configuration (secret, proxy_id, timeouts).
        @param node: this node's id.
        """
        super().__init__(
            f"peer {address}", self._connected, SCOPE_NODE, reactor, call_timeout(config)
        )
        self.address = address
        self.proxy_id: int | None = None
        self.is_self = False
        self._server = parse_server(address)
        self._config = config
        self._node = node
        self._protocol: ChannelProtocol | None = None
        self._connecting: defer.Deferred[ChannelProtocol] | None = None
        self._last_problem = ""

    def _connected(self) -> defer.Deferred[ChannelProtocol]:
        if self.is_self:
            return defer.fail(PeerError("it is this node"))
        if self._protocol is not None:
            return defer.succeed(self._protocol)
        if self._connecting is None:
            self._connecting = defer.Deferred.fromCoroutine(self._dial())
        # Every waiter gets its own Deferred; the dial itself is shared.
        result: defer.Deferred[ChannelProtocol] = defer.Deferred()
        self._connecting.addBoth(_relay, result)
        return result

    def connect(self) -> defer.Deferred[ChannelProtocol]:
        """
        @return: fires with the proven connection (dialling if needed).
        """
        return self._connected()

    async def _dial(self) -> ChannelProtocol:
        config = self._config
        try:
            endpoint = clientFromString(self._reactor, self._server.endpoint)
            protocol = ChannelProtocol(on_lost=self._lost)
            connecting = connectProtocol(endpoint, protocol)
            connecting.addTimeout(config.short_async_task_timeout, self._reactor)
            try:
                await connecting
            except Exception as e:
                raise PeerError(f"cannot connect: {_reason(e)}") from None
            try:
                proxy_id = await self._prove(protocol)
            except Exception:
                if protocol.transport is not None:
                    protocol.transport.loseConnection()
                raise
        except PeerError as e:
            self._problem(str(e))
            raise
        finally:
            self._connecting = None
        if self.proxy_id is None or self._last_problem:
            _log.info(
                "peer {address}: connected (proxy_id {proxy_id})",
                address=self.address,
                proxy_id=proxy_id,
            )
        self._last_problem = ""
        self.proxy_id = proxy_id
        self._protocol = protocol
        return protocol

    def _problem(self, problem: str) -> None:
        """
        Log why the peer cannot be used, once per reason: it is asked again
        at every command that needs it.
        """
        if self.is_self or problem == self._last_problem:
            return
        self._last_problem = problem
        _log.error("peer {address}: {problem}", address=self.address, problem=problem)

    async def _prove(self, protocol: ChannelProtocol) -> int:
        """
        Prove the secret to the peer and check its proof.

        @return: the peer's C{proxy_id}.
        @raise PeerError: why the peer cannot be used.
        """
        config = self._config
        nonce = os.urandom(16)
        try:
            hello = protocol.callRemote(
                PeerHello,
                protocol=PROTOCOL_VERSION,
                nonce=nonce,
                node=self._node,
                proxy_id=config.proxy_id,
                id_version=config.client_session_id_version,
            )
            hello.addTimeout(config.short_async_task_timeout, self._reactor)
            answer = await hello
        except Exception as e:
            raise PeerError(f"it refused the hello: {_reason(e)}") from None
        expected = proof(config.proxy_cluster_secret, b"server", nonce, answer["nonce"])
        if not _same(expected, answer["proof"]):
            raise PeerError(
                "its proof is wrong: it does not know this node's proxy_cluster_secret, "
                "so it is not used"
            )
        if answer["node"] == self._node:
            if not self.is_self:
                _log.info("peer {address} is this node itself: skipped", address=self.address)
            self.is_self = True
            raise PeerError("it is this node")
        if answer["id_version"] != config.client_session_id_version:
            raise PeerError(
                f"it uses client_session_id_version {answer['id_version']}, this node "
                f"{config.client_session_id_version}: set the same on every node"
            )
        if answer["proxy_id"] == config.proxy_id:
            raise PeerError(
                f"it has this node's proxy_id {config.proxy_id}, so cs_ids would name both "
                "nodes' sessions: give every node its own proxy_id"
            )
        proving = protocol.callRemote(
            PeerProve,
            proof=proof(config.proxy_cluster_secret, b"client", nonce, answer["nonce"]),
        )
        proving.addTimeout(config.short_async_task_timeout, self._reactor)
        try:
            await proving
        except Exception as e:
            raise PeerError(f"it refused this node: {_reason(e)}") from None
        return int(answer["proxy_id"])

    def _lost(self, protocol: ChannelProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    def disconnect(self) -> None:
        """
        Close the connection, if any (the node is stopping).
        """
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.loseConnection()


def _relay(result: Any, waiting: defer.Deferred[Any]) -> Any:
    if isinstance(result, Failure):
        waiting.errback(result)
        return None
    waiting.callback(result)
    return result


def _same(a: bytes, b: Any) -> bool:
    return isinstance(b, bytes) and hmac.compare_digest(a, b)


def _reason(error: Exception) -> str:
    if isinstance(error, ChannelRefusedError):
        return str(error)
    description = getattr(error, "description", None)
    if isinstance(description, bytes):
        return description.decode("utf-8", "replace")
    if description:
        return str(description)
    return str(error) or type(error).__name__


class Router:
    """
    A node's view of its workers and peers (see the module docstring).

    @ivar config: the node's configuration.
    @ivar workers: one member per worker, by worker number.
    @ivar peers: the peer nodes.
    """

    _log = Logger()

    def __init__(
        self,
        config: ProxyConfig,
        workers: Sequence[Any],
        peers: Sequence[PeerMember] = (),
        on_config: Callable[[str, str], Any] | None = None,
    ) -> None:
        """
        @param workers: the members serving each worker's sessions.
        @param peers: the other nodes.
        @param on_config: called with each C{ALTER PROXYCONFIG} item applied
            (the parent keeps its copy current for workers it restarts).
        """
        self.config = config
        self.workers = list(workers)
        self.peers = list(peers)
        self._layout: ClientSessionIdLayout = config.client_session_id_layout()
        self._on_config = on_config

    def _members(self, scope: str) -> List[Any]:
        members = list(self.workers)
        if scope == SCOPE_CLUSTER:
            members.extend(peer for peer in self.peers if not peer.is_self)
        return members

    def list_rows(self, caller: Any, command: str, args: Any, scope: str) -> defer.Deferred[Any]:
        """
        Every member's rows of listing command C{command}, concatenated (the
        command sorts them). A member that cannot answer is left out and
        logged: the others' sessions are still worth showing.
        """
        members = self._members(scope)

        def failed(failure: Failure, member: Any) -> List[Any]:
            if failure.check(PeerError):
                return []  # the member logged why, once
            self._log.warn(
                "{command}: {member} did not answer: {error}",
                command=command,
                member=member.name,
                error=failure.getErrorMessage(),
            )
            return []

        asked = [
            member.list_rows(caller, command, args).addErrback(failed, member) for member in members
        ]
        gathered = defer.gatherResults(asked)
        return gathered.addCallback(lambda parts: [row for part in parts for row in part])

    def on_session(
        self, caller: Any, command: str, number: int, mode: str, args: Any, scope: str
    ) -> defer.Deferred[Outcome]:
        """
        Run C{command} where the session C{number} names is (see the module
        docstring for the order).
        """
        return defer.Deferred.fromCoroutine(
            self._on_session(caller, command, number, mode, args, scope)
        )

    async def _on_session(
        self, caller: Any, command: str, number: int, mode: str, args: Any, scope: str
    ) -> Outcome:
        unreachable: List[str] = []
        if mode in (MODE_ANY, MODE_CS):
            owner = await self._owner(number, scope)
            if owner is not None:
                outcome = await self._ask(
                    owner, unreachable, caller, command, number, MODE_CS, args
                )
                if outcome is not None and outcome.kind != OUTCOME_NOT_FOUND:
                    return outcome
        if mode in (MODE_ANY, MODE_BACKEND):
            for member in self._members(scope):
                outcome = await self._ask(
                    member, unreachable, caller, command, number, MODE_BACKEND, args
                )
                if outcome is not None and outcome.kind != OUTCOME_NOT_FOUND:
                    return outcome
        peers = [name for name in unreachable if name.startswith("peer ")]
        if peers:
            # A session there may have the id: say so rather than "unknown".
            return Outcome(
                "error",
                int(ErrorCode.ER_UNKNOWN_ERROR),
                f"Unknown thread id: {number} here; not asked: {'; '.join(peers)}",
            )
        return Outcome.not_found()

    async def _ask(
        self,
        member: Any,
        unreachable: List[str],
        caller: Any,
        command: str,
        number: int,
        mode: str,
        args: Any,
    ) -> Outcome | None:
        try:
            return await member.on_session(caller, command, number, mode, args)
        except Exception as e:
            # A worker that is down lost its sessions with it; a peer that is
            # down may still hold the session, so the caller is told.
            if not isinstance(e, PeerError):
                self._log.warn(
                    "{command} {number}: {member} did not answer: {error}",
                    command=command,
                    number=number,
                    member=member.name,
                    error=_reason(e),
                )
            unreachable.append(f"{member.name} ({_reason(e)})")
            return None

    async def _owner(self, number: int, scope: str) -> Any:
        """
        The member whose C{cs_id}s look like C{number}, or C{None}.
        """
        if not 0 < number < (1 << 31):
            return None
        layout = self._layout
        parts = layout.decode(number)
        if parts.proxy_id == layout.proxy_id:
            if parts.upgrade_bit == layout.upgrade_bit and parts.worker < len(self.workers):
                return self.workers[parts.worker]
            return None
        if scope != SCOPE_CLUSTER:
            return None
        unknown = [peer for peer in self.peers if peer.proxy_id is None and not peer.is_self]
        if unknown:
            # Their proxy_ids are learnt from their hello: dial them now.
            await defer.DeferredList([peer.connect() for peer in unknown], consumeErrors=True)
        for peer in self.peers:
            if peer.proxy_id == parts.proxy_id and not peer.is_self:
                return peer
        return None

    def apply_config(self, name: str, text: str, exclude: int | None) -> defer.Deferred[List[str]]:
        """
        Apply an C{ALTER PROXYCONFIG} item to every worker but C{exclude}
        (the one that ran it); peers keep their own configuration.

        @return: fires with the problems, one line per worker that failed.
        """
        if self._on_config is not None:
            try:
                self._on_config(name, text)
            except Exception as e:  # noqa: BLE001 (reported to the caller)
                self._log.failure("applying {name} in the parent", name=name)
                problems = [f"parent: {e}"]
            else:
                problems = []
        else:
            problems = []

        def failed(failure: Failure, member: Any) -> List[str]:
            return [f"{member.name}: {failure.getErrorMessage()}"]

        asked = [
            member.apply_config(name, text).addErrback(failed, member)
            for index, member in enumerate(self.workers)
            if index != exclude
        ]
        gathered = defer.gatherResults(asked)
        return gathered.addCallback(lambda parts: problems + [p for part in parts for p in part])

    def close(self) -> None:
        """
        Hang up on every peer.
        """
        for peer in self.peers:
            peer.disconnect()


class _View:
    """
    What admin commands see as C{manager.cluster}: the sessions of every
    worker and node, for one caller at a time.
    """

    def list_rows(
        self, caller: RemoteCaller, command: str, args: Dict[str, Any], scope: str
    ) -> defer.Deferred[Any]:
        """
        @param caller: the caller (L{RemoteCaller.of} its session).
        @param command: the listing command's name.
        @param args: its C{match_args}.
        @param scope: L{SCOPE_CLUSTER} (sessions) or L{SCOPE_NODE} (counters).
        @return: fires with every row, unsorted.
        """
        raise NotImplementedError

    def on_session(
        self, caller: RemoteCaller, command: str, number: int, args: Dict[str, Any]
    ) -> defer.Deferred[Outcome]:
        """
        @return: fires with the L{Outcome} of C{command} on the session
            C{number} names, wherever it is.
        """
        raise NotImplementedError

    def apply_config(self, name: str, text: str) -> defer.Deferred[List[str]]:
        """
        @return: fires with the problems applying the item to the node's
            other workers.
        """
        raise NotImplementedError


class InProcessView(_View):
    """
    The view of a node that runs in one process with peers: its router, here.
    """

    def __init__(self, router: Router, worker: int = 0) -> None:
        self.router = router
        self.worker = worker

    def list_rows(
        self, caller: RemoteCaller, command: str, args: Dict[str, Any], scope: str
    ) -> defer.Deferred[Any]:
        """See L{_View.list_rows}."""
        return self.router.list_rows(caller_to_json(caller), command, args, scope)

    def on_session(
        self, caller: RemoteCaller, command: str, number: int, args: Dict[str, Any]
    ) -> defer.Deferred[Outcome]:
        """See L{_View.on_session}."""
        return self.router.on_session(
            caller_to_json(caller), command, number, MODE_ANY, args, SCOPE_CLUSTER
        )

    def apply_config(self, name: str, text: str) -> defer.Deferred[List[str]]:
        """See L{_View.apply_config}."""
        return self.router.apply_config(name, text, exclude=self.worker)


class WorkerView(_View):
    """
    The view of a worker process: its parent's router, over the worker's
    link to the parent.

    @ivar member: the link, as a member asked with the cluster's scope.
    """

    def __init__(self, protocol: ChannelProtocol, reactor: Any, timeout: float) -> None:
        """
        @param protocol: the worker's end of its link to the parent.
        @param timeout: how long a request may take.
        """

        def connect() -> defer.Deferred[ChannelProtocol]:
            return defer.succeed(protocol)

        self._scoped = {
            scope: LinkMember("parent", connect, scope, reactor, timeout)
            for scope in (SCOPE_CLUSTER, SCOPE_NODE)
        }

    def list_rows(
        self, caller: RemoteCaller, command: str, args: Dict[str, Any], scope: str
    ) -> defer.Deferred[Any]:
        """See L{_View.list_rows}."""
        member = self._scoped.get(scope, self._scoped[SCOPE_NODE])
        return member.list_rows(caller_to_json(caller), command, args)

    def on_session(
        self, caller: RemoteCaller, command: str, number: int, args: Dict[str, Any]
    ) -> defer.Deferred[Outcome]:
        """See L{_View.on_session}."""
        member = self._scoped[SCOPE_CLUSTER]
        return member.on_session(caller_to_json(caller), command, number, MODE_ANY, args)

    def apply_config(self, name: str, text: str) -> defer.Deferred[List[str]]:
        """See L{_View.apply_config}."""
        return self._scoped[SCOPE_NODE].apply_config(name, text)


class NodeRequests:
    """
    How a node's router answers requests arriving over a channel connection:
    from one of its workers (any scope; C{ALTER PROXYCONFIG} goes to the
    other workers), or from a peer node (the node's own sessions only, and no
    configuration changes: each node keeps its own).
    """

    def __init__(self, router: Router, origin: int | None) -> None:
        """
        @param origin: the worker the requests come from, or C{None} for a peer.
        """
        self.router = router
        self.origin = origin

    def _scope(self, scope: str) -> str:
        if self.origin is None or scope not in (SCOPE_NODE, SCOPE_CLUSTER):
            return SCOPE_NODE
        return scope

    def list_rows(self, caller: Any, command: str, args: Any, scope: str) -> defer.Deferred[Any]:
        """See L{Router.list_rows}."""
        return self.router.list_rows(caller, command, args, self._scope(scope))

    def on_session(
        self, caller: Any, command: str, number: int, mode: str, args: Any, scope: str
    ) -> defer.Deferred[Outcome]:
        """See L{Router.on_session}."""
        return self.router.on_session(caller, command, number, mode, args, self._scope(scope))

    def apply_config(self, name: str, text: str) -> defer.Deferred[List[str]]:
        """
        See L{Router.apply_config}.

        @raise ChannelRefusedError: from a peer.
        """
        if self.origin is None:
            raise ChannelRefusedError("a peer node cannot change this node's configuration")
        return self.router.apply_config(name, text, exclude=self.origin)
