"""
The channel's wire protocol: Twisted AMP commands spoken between a worker
process and its parent (over a socket pair) and between proxy nodes (over
TCP, after both sides proved they know C{proxy_cluster_secret}).

Every request names a I{scope}, which says how far the receiver looks:

  - L{SCOPE_WORKER}: the receiving process's own sessions;
  - L{SCOPE_NODE}: the sessions of every worker of the receiving node;
  - L{SCOPE_CLUSTER}: those and every peer node's (only a node's own workers
    may ask this; a peer's request is always answered with the node's view,
    so requests never travel in circles).

The commands:

  - L{ListRows}: the rows a listing command (C{SHOW PROXYSESSION}, C{SHOW
    PROCESSLIST}, C{SHOW PROXYSTAT}) computes over the sessions in scope, for a
    caller given by its C{cs_id} and login (the receiver applies the same
    visibility rules, L{obproxy_tx.admin.access});
  - L{OnSession}: find the session an id names and run a command on it there
    (C{KILL}, C{SHOW PROXYSESSION ATTRIBUTE id}, ...); the answer is an
    L{Outcome};
  - L{ApplyConfig}: C{ALTER PROXYCONFIG} reached another worker, which applies
    the checked item to its running configuration;
  - L{PeerHello}, L{PeerProve}: the mutual proof of the shared secret that a
    peer connection must complete before anything else is answered.

Values that may be large (rows) travel as JSON split over several AMP keys,
since one AMP value holds at most 64 KiB (L{JSONArgument}).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any, Callable, Dict, List, Sequence, Tuple

import attrs
from twisted.internet import defer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from obproxy_tx.admin.access import RemoteCaller, unknown_thread
from obproxy_tx.admin.interfaces import AdminError, AdminOK, AdminResultSet
from obproxy_tx.session.login import LoginName
from obproxy_tx.wire.errors import ErrorCode

__all__ = [
    "ApplyConfig",
    "ChannelError",
    "ChannelProtocol",
    "ChannelRefusedError",
    "JSONArgument",
    "ListRows",
    "MODE_ANY",
    "MODE_BACKEND",
    "MODE_CS",
    "OnSession",
    "Outcome",
    "PROTOCOL_VERSION",
    "PeerGuard",
    "PeerHello",
    "PeerProve",
    "SCOPE_CLUSTER",
    "SCOPE_NODE",
    "SCOPE_WORKER",
    "caller_from_json",
    "caller_to_json",
    "proof",
]

PROTOCOL_VERSION = 1
"""Bumped when the commands change incompatibly; peers must agree."""

SCOPE_WORKER = "worker"
SCOPE_NODE = "node"
SCOPE_CLUSTER = "cluster"

MODE_ANY = "any"
"""Find the session as one process does: by C{cs_id}, then by backend id."""
MODE_CS = "cs"
"""Find the session by C{cs_id} only."""
MODE_BACKEND = "backend"
"""Find the session by one of its server sessions' backend ids only."""

_CHUNK = 60000
"""Bytes of JSON per AMP value (AMP's limit is 65535)."""

_PRE_AUTH_LIMIT = 16384
"""Bytes a peer may send before it has proved the secret; more is an attack."""


class ChannelError(Exception):
    """
    The receiver could not serve a request (unknown command, bad arguments).
    """


class ChannelRefusedError(Exception):
    """
    A peer did not prove the shared secret, or asked before doing so.
    """


class JSONArgument(amp.Argument):
    """
    Any JSON value, split over as many AMP keys as it needs: C{name} holds
    the number of pieces and C{name.0}, C{name.1}, ... the pieces.
    """

    def toBox(  # noqa: N802 (AMP's name)
        self, name: bytes, strings: Dict[bytes, bytes], objects: Dict[str, Any], proto: Any
    ) -> None:
        """
        Put the JSON text of C{objects[name]} into C{strings}.
        """
        value = objects.pop(name.decode("ascii"))
        data = json.dumps(value, separators=(",", ":"), default=_json_default).encode("utf-8")
        pieces = [data[start : start + _CHUNK] for start in range(0, len(data), _CHUNK)]
        strings[name] = str(len(pieces)).encode("ascii")
        for index, piece in enumerate(pieces):
            strings[name + b".%d" % index] = piece

    def fromBox(  # noqa: N802 (AMP's name)
        self, name: bytes, strings: Dict[bytes, bytes], objects: Dict[str, Any], proto: Any
    ) -> None:
        """
        Read the value back from the pieces in C{strings}.
        """
        count = int(strings.pop(name))
        data = b"".join(strings.pop(name + b".%d" % index) for index in range(count))
        objects[name.decode("ascii")] = json.loads(data.decode("utf-8"))


def _json_default(value: Any) -> Any:
    """
    Cells that are not JSON types: bytes as text (as the client would see
    them), anything else as its C{str}.
    """
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


_CALLER = (b"caller", JSONArgument())
_COMMAND = (b"command", amp.Unicode())
_ARGS = (b"args", JSONArgument())
_SCOPE = (b"scope", amp.Unicode())
_NO_RESPONSE: List[Tuple[bytes, amp.Argument]] = []
_ERRORS = {ChannelError: b"CHANNEL_ERROR", ChannelRefusedError: b"CHANNEL_REFUSED"}


class ListRows(amp.Command):
    """
    The rows the listing command C{command} computes over the sessions in
    C{scope}, as C{caller} may see them.
    """

    arguments = [_CALLER, _COMMAND, _ARGS, _SCOPE]
    response = [(b"rows", JSONArgument())]
    errors = _ERRORS


class OnSession(amp.Command):
    """
    Find the session C{number} names (as C{mode} says) within C{scope} and
    run C{command} on it for C{caller}; the answer is an L{Outcome}.
    """

    arguments = [
        _CALLER,
        _COMMAND,
        (b"number", amp.Integer()),
        (b"mode", amp.Unicode()),
        _ARGS,
        _SCOPE,
    ]
    response = [(b"outcome", JSONArgument())]
    errors = _ERRORS


class ApplyConfig(amp.Command):
    """
    Apply a checked C{ALTER PROXYCONFIG SET name = text} to the running
    configuration; the answer lists what went wrong where (empty: nothing).
    """

    arguments = [(b"name", amp.Unicode()), (b"text", amp.Unicode())]
    response = [(b"problems", JSONArgument())]
    errors = _ERRORS


class PeerHello(amp.Command):
    """
    A peer's first request: its nonce and who it is. The answer carries the
    receiver's nonce, who it is, and its proof of the secret over both nonces.
    """

    arguments = [
        (b"protocol", amp.Integer()),
        (b"nonce", amp.String()),
        (b"node", amp.Unicode()),
        (b"proxy_id", amp.Integer()),
        (b"id_version", amp.Integer()),
    ]
    response = [
        (b"nonce", amp.String()),
        (b"proof", amp.String()),
        (b"node", amp.Unicode()),
        (b"proxy_id", amp.Integer()),
        (b"id_version", amp.Integer()),
    ]
    errors = _ERRORS


class PeerProve(amp.Command):
    """
    The peer's proof of the secret over both nonces; after it the connection
    is served.
    """

    arguments = [(b"proof", amp.String())]
    response = _NO_RESPONSE
    errors = _ERRORS


def proof(secret: str, role: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """
    HMAC-SHA256 of both nonces under the shared secret, labelled with the
    prover's role so that neither side's proof can be replayed as the other's.

    @param role: C{b"client"} (the side that connected) or C{b"server"}.
    """
    message = b"obproxy_tx peer " + role + b"\0" + client_nonce + server_nonce
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def caller_to_json(caller: RemoteCaller) -> Dict[str, Any]:
    """
    @return: the caller as L{ListRows} and L{OnSession} carry it.
    """
    login = caller.login
    shown = None
    if login is not None:
        shown = {
            "user": login.user,
            "tenant": login.tenant,
            "cluster": login.cluster,
            "cluster_id": login.cluster_id,
        }
    return {"cs_id": caller.cs_id, "login": shown}


def caller_from_json(value: Any) -> RemoteCaller:
    """
    @return: the caller L{caller_to_json} described.
    @raise ChannelError: the value is not such a description.
    """
    try:
        login = value["login"]
        name = None
        if login is not None:
            name = LoginName(
                user=str(login["user"]),
                tenant=str(login["tenant"]),
                cluster=str(login["cluster"]),
                cluster_id=login["cluster_id"],
            )
        return RemoteCaller(int(value["cs_id"]), name)
    except (KeyError, TypeError, ValueError) as e:
        raise ChannelError(f"malformed caller: {e!r}") from None


OUTCOME_NOT_FOUND = "not_found"
OUTCOME_SELF = "self"
OUTCOME_OK = "ok"
OUTCOME_ERROR = "error"
OUTCOME_ROWS = "rows"


@attrs.frozen
class Outcome:
    """
    What running a command on a session elsewhere gave.

    @ivar kind: C{not_found} (no session there has the id), C{self} (the
        id named the caller's own session: the caller runs the command on
        itself), C{ok}, C{error} or C{rows}.
    @ivar code: the error code (C{error}).
    @ivar message: the error message (C{error}) or OK info (C{ok}).
    @ivar sqlstate: the error's SQLSTATE.
    @ivar affected_rows: the OK packet's affected rows.
    @ivar rows: the result rows (C{rows}).
    """

    kind: str
    code: int = 0
    message: str = ""
    sqlstate: str = "HY000"
    affected_rows: int = 0
    rows: Sequence[Sequence[Any]] = ()

    @classmethod
    def not_found(cls) -> Outcome:
        """@return: no session there has the id."""
        return cls(OUTCOME_NOT_FOUND)

    @classmethod
    def self_(cls) -> Outcome:
        """@return: the id named the caller's own session."""
        return cls(OUTCOME_SELF)

    @classmethod
    def from_answer(cls, answer: Any) -> Outcome:
        """
        @param answer: a command's answer (L{AdminOK}, L{AdminError} or
            L{AdminResultSet}).
        @raise TypeError: it is none of these.
        """
        if isinstance(answer, AdminOK):
            return cls(OUTCOME_OK, message=answer.info, affected_rows=answer.affected_rows)
        if isinstance(answer, AdminError):
            return cls(OUTCOME_ERROR, answer.code, answer.message, answer.sqlstate)
        if isinstance(answer, AdminResultSet):
            return cls(OUTCOME_ROWS, rows=[list(row) for row in answer.rows])
        raise TypeError(f"not an admin answer: {answer!r}")

    def to_json(self) -> Dict[str, Any]:
        """@return: the outcome as L{OnSession} answers it."""
        return {
            "kind": self.kind,
            "code": self.code,
            "message": self.message,
            "sqlstate": self.sqlstate,
            "affected_rows": self.affected_rows,
            "rows": [list(row) for row in self.rows],
        }

    @classmethod
    def from_json(cls, value: Any) -> Outcome:
        """
        @raise ChannelError: the value is not an outcome.
        """
        try:
            return cls(
                str(value["kind"]),
                int(value["code"]),
                str(value["message"]),
                str(value["sqlstate"]),
                int(value["affected_rows"]),
                [list(row) for row in value["rows"]],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ChannelError(f"malformed outcome: {e!r}") from None

    def answer(self, columns: Sequence[Any] = ()) -> Any:
        """
        @param columns: the command's result columns, for C{rows}.
        @return: the command's answer.
        @raise ValueError: a C{not_found} or C{self} outcome, which the
            command resolves (see L{resolve}).
        """
        if self.kind == OUTCOME_OK:
            return AdminOK(affected_rows=self.affected_rows, info=self.message)
        if self.kind == OUTCOME_ERROR:
            return AdminError(self.code, self.message, self.sqlstate)
        if self.kind == OUTCOME_ROWS:
            return AdminResultSet(columns, [tuple(row) for row in self.rows])
        raise ValueError(f"outcome {self.kind!r} has no answer of its own")

    def resolve(self, on_self: Callable[[], Any], number: int, columns: Sequence[Any] = ()) -> Any:
        """
        The command's answer for the caller: its own session's (C{self}),
        C{1094 Unknown thread id} (C{not_found}), or what the session's
        holder answered.

        @param on_self: runs the command on the caller's own session.
        @param number: the id the statement named, for the 1094 message.
        @param columns: see L{answer}.
        @raise AdminError: 1094.
        """
        if self.kind == OUTCOME_SELF:
            return on_self()
        if self.kind == OUTCOME_NOT_FOUND:
            raise unknown_thread(number)
        return self.answer(columns)


def internal_error(what: str, failure: Failure) -> Outcome:
    """
    An unexpected failure while serving a command for another process: the
    caller gets C{1105} with the reason (the traceback is logged here).
    """
    _log.failure("{what} failed", failure, what=what)
    return Outcome(
        OUTCOME_ERROR,
        int(ErrorCode.ER_UNKNOWN_ERROR),
        f"{what} failed: {failure.getErrorMessage()}",
    )


_log = Logger()


@attrs.define
class PeerGuard:
    """
    The server side of the proof of the shared secret, for one incoming peer
    connection: nothing but L{PeerHello} and L{PeerProve} is answered until
    the peer proved the secret.

    @ivar secret: C{proxy_cluster_secret}.
    @ivar node: this node's random id (a node that dials itself sees it).
    @ivar proxy_id: this node's C{proxy_id}.
    @ivar id_version: this node's C{client_session_id_version}.
    @ivar authenticated: whether the peer proved the secret.
    @ivar peer_node: the peer's node id, once it said hello.
    """

    secret: str = attrs.field(repr=False)
    node: str
    proxy_id: int
    id_version: int
    authenticated: bool = False
    peer_node: str = ""
    _client_nonce: bytes = b""
    _server_nonce: bytes = b""

    def hello(
        self, protocol: int, nonce: bytes, node: str, proxy_id: int, id_version: int
    ) -> Dict[str, Any]:
        """
        Answer L{PeerHello}.

        @raise ChannelRefusedError: a protocol this node does not speak, or a
            second hello.
        """
        if protocol != PROTOCOL_VERSION:
            raise ChannelRefusedError(f"protocol {protocol} is not {PROTOCOL_VERSION}")
        if self._server_nonce or len(nonce) < 16:
            raise ChannelRefusedError("bad hello")
        self._client_nonce = nonce
        self._server_nonce = os.urandom(16)
        self.peer_node = node
        return {
            "nonce": self._server_nonce,
            "proof": proof(self.secret, b"server", nonce, self._server_nonce),
            "node": self.node,
            "proxy_id": self.proxy_id,
            "id_version": self.id_version,
        }

    def prove(self, peer_proof: bytes) -> Dict[str, Any]:
        """
        Answer L{PeerProve}.

        @raise ChannelRefusedError: no hello came first, or the proof is wrong.
        """
        if not self._server_nonce or self.authenticated:
            raise ChannelRefusedError("prove comes once, after hello")
        expected = proof(self.secret, b"client", self._client_nonce, self._server_nonce)
        if not hmac.compare_digest(expected, peer_proof):
            raise ChannelRefusedError("wrong proof: the peer does not know proxy_cluster_secret")
        self.authenticated = True
        return {}


class ChannelProtocol(amp.AMP):
    """
    One end of a channel connection.

    Requests are answered by C{handler}, which provides C{list_rows(caller,
    command, args, scope)}, C{on_session(caller, command, number, mode, args,
    scope)} and C{apply_config(name, text)} (each may return a Deferred); a
    connection without a handler (the dialling end of a peer connection)
    refuses every request. With a L{PeerGuard} (the listening end of a peer
    connection) nothing is answered before the peer proved the secret, and a
    peer that fails to is disconnected.

    @ivar handler: what answers requests, or C{None}.
    @ivar guard: the proof of the secret still to be made, or C{None}.
    @ivar lost: fires (with C{None}) when the connection is gone.
    """

    _log = Logger()

    def __init__(
        self,
        handler: Any = None,
        guard: PeerGuard | None = None,
        on_lost: Callable[[ChannelProtocol], Any] | None = None,
    ) -> None:
        """
        @param handler: what answers requests.
        @param guard: required proof of the secret (peer listeners).
        @param on_lost: called with this protocol once the connection is gone.
        """
        super().__init__()
        self.handler = handler
        self.guard = guard
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._on_lost = on_lost
        self._received = 0
        self._close_after_answer = False

    def sendBox(self, box: Any) -> None:  # noqa: N802
        """
        Send a box; after the answer to a refused request, hang up (so the
        refused peer still learns why).
        """
        super().sendBox(box)
        if self._close_after_answer and self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """
        Count what an unproven peer sends: more than a hello and a proof is
        not a peer.
        """
        if self.guard is not None and not self.guard.authenticated:
            self._received += len(data)
            if self._received > _PRE_AUTH_LIMIT:
                self._log.warn(
                    "channel: {peer} sent {count} bytes without proving the secret; dropped",
                    peer=_describe_peer(self.transport),
                    count=self._received,
                )
                transport: Any = self.transport
                transport.abortConnection()
                return
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """
        Fail outstanding requests (AMP does), then tell whoever watches.
        """
        super().connectionLost(reason)
        if self._on_lost is not None:
            self._on_lost(self)
        if not self.lost.called:
            self.lost.callback(None)

    def locateResponder(self, name: bytes) -> Any:  # noqa: N802
        """
        The responder for a command, or one that refuses it: everything but
        the proof before the proof, everything on a dialling connection.
        """
        guard = self.guard
        if (
            guard is not None
            and not guard.authenticated
            and name
            not in (
                PeerHello.commandName,
                PeerProve.commandName,
            )
        ):
            return self._refuser(name, "prove proxy_cluster_secret first")
        if guard is None and name in (PeerHello.commandName, PeerProve.commandName):
            return self._refuser(name, "this end does not take peers")
        if self.handler is None and guard is None:
            return self._refuser(name, "this end serves no requests")
        return super().locateResponder(name)

    def _refuser(self, name: bytes, why: str) -> Callable[[Any], Any]:
        def refuse(box: Any) -> Any:
            self._log.warn(
                "channel: refused {command} from {peer}: {why}",
                command=name.decode("ascii", "replace"),
                peer=_describe_peer(self.transport),
                why=why,
            )
            self._close_after_answer = True
            return defer.fail(amp.RemoteAmpError(b"CHANNEL_REFUSED", why))

        return refuse

    @PeerHello.responder
    def _hello(
        self, protocol: int, nonce: bytes, node: str, proxy_id: int, id_version: int
    ) -> Dict[str, Any]:
        assert self.guard is not None
        try:
            return self.guard.hello(protocol, nonce, node, proxy_id, id_version)
        except ChannelRefusedError as e:
            self._refused(str(e))
            raise

    @PeerProve.responder
    def _prove(self, proof: bytes) -> Dict[str, Any]:
        assert self.guard is not None
        try:
            return self.guard.prove(proof)
        except ChannelRefusedError as e:
            self._refused(str(e))
            raise

    def _refused(self, why: str) -> None:
        self._log.warn(
            "channel: refused peer {peer}: {why}", peer=_describe_peer(self.transport), why=why
        )
        # After the error answer is written: the peer learns why, then goes.
        self._close_after_answer = True

    @ListRows.responder
    def _list_rows(
        self, caller: Any, command: str, args: Any, scope: str
    ) -> defer.Deferred[Dict[str, Any]]:
        result = defer.maybeDeferred(self.handler.list_rows, caller, command, args, scope)
        return result.addCallback(lambda rows: {"rows": rows})

    @OnSession.responder
    def _on_session(
        self, caller: Any, command: str, number: int, mode: str, args: Any, scope: str
    ) -> defer.Deferred[Dict[str, Any]]:
        result = defer.maybeDeferred(
            self.handler.on_session, caller, command, number, mode, args, scope
        )
        return result.addCallback(lambda outcome: {"outcome": outcome.to_json()})

    @ApplyConfig.responder
    def _apply_config(self, name: str, text: str) -> defer.Deferred[Dict[str, Any]]:
        result = defer.maybeDeferred(self.handler.apply_config, name, text)
        return result.addCallback(lambda problems: {"problems": list(problems)})


def _describe_peer(transport: Any) -> str:
    if transport is None:
        return "?"
    peer = transport.getPeer()
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is not None and port is not None:
        return f"{host}:{port}"
    return str(getattr(peer, "name", None) or peer)
