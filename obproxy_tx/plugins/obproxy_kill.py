"""
The kill commands, as ODP answers them (C{ob_kill_op_handler.cpp}, the
odp-reference notes §3.5 and §4.3-§4.5):

  - C{KILL id}, C{KILL CONNECTION id}, C{KILL QUERY id}: MySQL's own
    statements, answered by the proxy for everyone because the ids a client
    sees are the proxy's; MariaDB's C{HARD}/C{SOFT} are accepted and mean
    nothing more here. Other forms (MariaDB's C{KILL USER x}, C{KILL QUERY ID
    5} whose id is the backend's query id, expressions) are not ours: they go
    to the backend as ordinary SQL.
  - C{KILL PROXYSESSION id} and C{KILL PROXYSESSION id ss_id}: the proxy's
    own, for admins only; anyone else gets ODP's
    C{5010 Unknown operator, bad internal cmd}, as does a malformed one.

An C{id} is a C{cs_id} or a backend connection id (what
C{SELECT CONNECTION_ID()} returned on the backend), resolved by
L{obproxy_tx.admin.access.resolve_session}. Killing your own session answers
C{1317 Query execution was interrupted} and then closes the connection.

With several workers or proxy nodes (C{manager.cluster}), an id that names
none of this process's sessions by C{cs_id} is looked for on the others
(L{obproxy_tx.cluster}), and the kill runs there, with the same checks and
answers (L{Kill.on_target}).
"""

from __future__ import annotations

import re
from typing import Any, Dict

import attr
from twisted.internet import defer
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from obproxy_tx.admin import access
from obproxy_tx.admin.interfaces import AdminContext, AdminError, AdminOK, IAdminCommand, Privilege
from obproxy_tx.admin.registry import BAD_INTERNAL_CMD
from obproxy_tx.wire.errors import ErrorCode

_log = Logger()

_MAX_DIGITS = 17
"""ODP's lexer reads integers as C{[-+]?[0-9]{1,17}}; longer ones overflow."""

_MAX_ID = 2**64 - 1
"""The largest thread id MySQL's C{KILL} takes (an unsigned 64-bit integer)."""

# Between tokens: blanks or comments (/* */, "-- " and "#" to the end of the
# line). A KILL left unmatched goes to the backend, where its id would name
# some other backend thread, so MySQL's ordinary comments must not make us
# miss one. Executable comments (/*! */, MariaDB's /*M! */) carry SQL, so a
# statement with one is not ours.
# The block comment is spelled so that it can only end at its first */: with
# .*? a run of comments could be split in exponentially many ways, and a long
# statement that fails to match would hold the reactor.
_GAP = (
    r"(?:\s|/\*(?!!|M!)[^*]*\*+(?:[^/*][^*]*\*+)*/"
    r"|(?:--(?:[ \t\r\f\v][^\n]*)?|\#[^\n]*)(?:\n|\Z))"
)
# Tokens need a gap between them, except before a sign: MySQL reads KILL-5.
_SEP = rf"(?:{_GAP}+|{_GAP}*(?=[-+]))"
_FLAGS = re.IGNORECASE | re.ASCII | re.DOTALL

# MariaDB's HARD/SOFT only say how hard to kill; the id is still a connection id, so those
# forms are ours too: forwarded, their id would name some other backend thread.
_KILL = re.compile(
    rf"KILL(?:{_GAP}+(?:HARD|SOFT))?(?:{_GAP}+(?P<kind>CONNECTION|QUERY))?{_SEP}"
    rf"(?P<id>[-+]?[0-9]+){_GAP}*",
    _FLAGS,
)

# KILL PROXYSESSION is one token in ODP's lexer (kill{space}+proxysession), so
# only blanks may separate the two words. Integers longer than ODP's lexer
# takes fail the grammar, as in ODP (err_type OBPROXY_T_ERR_INVALID_NUM).
_KILL_PROXYSESSION = re.compile(
    rf"KILL\s+PROXYSESSION{_SEP}(?P<id>[-+]?[0-9]{{1,{_MAX_DIGITS}}})"
    rf"(?:{_SEP}(?P<ss_id>[-+]?[0-9]{{1,{_MAX_DIGITS}}}))?{_GAP}*",
    _FLAGS,
)


def _number(text: str) -> int | None:
    """
    @param text: an integer as the statement gave it (sign and digits).
    @return: its value if it is a thread id at all (no longer than ODP's
        lexer reads, within C{0 .. 2**64-1}), else C{None}.
    """
    if len(text.lstrip("+-")) > _MAX_DIGITS:
        # Not converted: int() of a huge digit string is slow (or refused).
        return None
    value = int(text)
    return value if 0 <= value <= _MAX_ID else None


def _shown(text: str) -> str:
    """
    @param text: an integer as the statement gave it (sign and digits).
    @return: it as MySQL prints a number (no C{+}, no leading zeros),
        computed on the text so that any length is cheap.
    """
    digits = text.lstrip("+-").lstrip("0") or "0"
    negative = text.startswith("-") and digits != "0"
    return f"-{digits}" if negative else digits


@attr.s(auto_attribs=True, frozen=True)
class KillMatch:
    """
    A parsed C{KILL [CONNECTION | QUERY] id}.

    @ivar query: C{KILL QUERY} (only the running statement), else the
        connection.
    @ivar number: the id, or C{None} when it can name no thread (negative,
        over C{2**64-1} or longer than 17 digits): simply an unknown thread.
    @ivar shown: the id as the error messages show it.
    """

    query: bool
    number: int | None
    shown: str


@attr.s(auto_attribs=True, frozen=True)
class KillProxySessionMatch:
    """
    A parsed C{KILL PROXYSESSION id [ss_id]}.

    @ivar number: the client session's id (a C{cs_id} or backend connection
        id).
    @ivar ss_id: the server session to close, or C{None} for the whole
        client session.
    """

    number: int
    ss_id: int | None = None


def _cluster(context: AdminContext) -> Any:
    """
    @return: the channel to other workers and nodes, or C{None}.
    """
    return getattr(context.manager, "cluster", None)


def _args(match: Any) -> Dict[str, Any]:
    return attr.asdict(match)


def _elsewhere(command: Any, context: AdminContext, match: Any) -> Any:
    """
    Run C{command} where the session C{match.number} names lives, when this
    process has no session with that C{cs_id}; else here.

    @return: the answer, or a Deferred firing with it.
    """
    cluster = _cluster(context)
    if cluster is None:
        return command.on_target(context, _resolve(context, match.number), match)
    target = access.resolve_cs_id(context.manager, match.number)
    if target is not None:
        return command.on_target(context, target, match)
    caller = context.session
    asked = cluster.on_session(
        access.RemoteCaller.of(caller), command.name, match.number, _args(match)
    )
    return asked.addCallback(
        lambda outcome: outcome.resolve(
            lambda: command.on_target(context, caller, match), match.number
        )
    )


def _resolve(context: AdminContext, number: int) -> Any:
    """
    @param context: the caller's context.
    @param number: the id the statement named.
    @return: the client session it names.
    @raise AdminError: 1094, no such session.
    """
    target = access.resolve_session(context.manager, number)
    if target is None:
        raise access.unknown_thread(number)
    return target


def _check(context: AdminContext, target: Any, number: int) -> None:
    """
    @param context: the caller's context.
    @param target: another client session.
    @param number: the id as the statement gave it, for the messages.
    @raise AdminError: 1094 (the caller may not see the target) or 1095
        (may see but not kill it).
    """
    refused = access.kill_check(context.session, target, number)
    if refused is not None:
        raise refused


def _killed(caller: Any, target: Any, what: str) -> None:
    """
    Log a kill of another session: who killed whom matters after the fact.
    """
    _log.info(
        "client session {caller} ({user}) killed {what} of client session {target} ({owner})",
        caller=getattr(caller, "cs_id", None),
        user=getattr(caller, "login", None),
        what=what,
        target=getattr(target, "cs_id", None),
        owner=getattr(target, "login", None),
    )


def _query_killed(result: object) -> AdminOK:
    """
    @return: OK once the backend took the C{KILL QUERY}.
    """
    return AdminOK()


def _query_not_killed(failure: Failure, number: int) -> AdminError:
    """
    The C{KILL QUERY} did not get through: an L{AdminError} (for instance the
    backend's own answer) is passed on; anything else is logged and answered
    with a generic error so that the caller is not left waiting.

    @param failure: why.
    @param number: the id as the statement gave it.
    @return: the error to answer.
    """
    if failure.check(AdminError):
        assert isinstance(failure.value, AdminError)
        return failure.value
    _log.failure("KILL QUERY {number} failed", failure, number=number)
    return AdminError(
        ErrorCode.ER_UNKNOWN_ERROR,
        f"KILL QUERY {number} could not reach the backend: {failure.getErrorMessage()}",
    )


@implementer(IPlugin, IAdminCommand)
class Kill:
    """
    C{KILL id}, C{KILL CONNECTION id}, C{KILL QUERY id} (also what
    C{COM_PROCESS_KILL} becomes).

    Run by everyone; whether the target may be killed is
    L{obproxy_tx.admin.access.kill_check}'s call. Not C{proxy_only}: other
    C{KILL} forms are MySQL's or MariaDB's and go to the backend.
    """

    name = "KILL"
    keywords = ("KILL",)
    columns = ()
    privilege = Privilege.EVERYONE
    errors = (
        ErrorCode.ER_NO_SUCH_THREAD,
        ErrorCode.ER_KILL_DENIED_ERROR,
        ErrorCode.ER_QUERY_INTERRUPTED,
        ErrorCode.ER_UNKNOWN_ERROR,
    )
    proxy_only = False
    denied = None

    def match(self, sql: str) -> KillMatch | None:
        """
        @param sql: the statement.
        @return: the parsed statement, or C{None} if it is not one of our
            three forms.
        """
        found = _KILL.fullmatch(sql)
        if found is None:
            return None
        text = found.group("id")
        kind = found.group("kind")
        return KillMatch(
            query=kind is not None and kind.upper() == "QUERY",
            number=_number(text),
            shown=_shown(text),
        )

    def match_args(self, match: KillMatch) -> Dict[str, Any]:
        """
        @return: C{match} for the channel (L{obproxy_tx.cluster}).
        """
        return _args(match)

    def match_from_args(self, args: Dict[str, Any]) -> KillMatch:
        """
        @return: the match L{match_args} gave.
        """
        return KillMatch(**args)

    def execute(self, context: AdminContext, match: KillMatch) -> Any:
        """
        Kill the session (or its running query) the id names.

        @param context: the caller's context.
        @param match: what L{match} returned.
        @return: OK, an L{AdminError}, or for C{KILL QUERY} of a busy session
            (or a session of another worker or node) a Deferred firing with
            one once the kill is done.
        @raise AdminError: 1094 unknown id, 1095 not the caller's to kill,
            1317 (then the connection closes) when the caller killed itself.
        """
        if match.number is None:
            raise AdminError(ErrorCode.ER_NO_SUCH_THREAD, f"Unknown thread id: {match.shown}")
        return _elsewhere(self, context, match)

    def on_target(self, context: AdminContext, target: Any, match: KillMatch) -> Any:
        """
        Kill C{target} (or its query) for the caller: here, or in the process
        that holds C{target} for a caller on another worker or node.

        @return: see L{execute}.
        @raise AdminError: see L{execute}.
        """
        assert match.number is not None
        caller = context.session
        if access.same_session(caller, target):
            # The caller's only query is this KILL, so there is nothing to
            # stop; killing the connection is ODP's 1317 and a close.
            if match.query:
                return AdminOK()
            raise access.interrupted()
        _check(context, target, match.number)
        if match.query:
            _killed(caller, target, "the query")
            result = defer.maybeDeferred(target.kill_query)
            result.addCallbacks(_query_killed, _query_not_killed, errbackArgs=(match.number,))
            return result
        _killed(caller, target, "the connection")
        target.kill_connection()
        return AdminOK()


@implementer(IPlugin, IAdminCommand)
class KillProxySession:
    """
    C{KILL PROXYSESSION id}: the same as C{KILL id}; C{KILL PROXYSESSION id
    ss_id}: close just that server session of the client session (the
    client's next statement gets another one, transparently).

    Admins only; others get C{5010} as from ODP, where the statement is a
    parse error for them.
    """

    name = "KILL PROXYSESSION"
    keywords = ("KILL PROXYSESSION",)
    columns = ()
    privilege = Privilege.ADMIN
    errors = (
        ErrorCode.ER_NO_SUCH_THREAD,
        ErrorCode.ER_KILL_DENIED_ERROR,
        ErrorCode.ER_QUERY_INTERRUPTED,
        BAD_INTERNAL_CMD.code,
    )
    proxy_only = True
    denied = BAD_INTERNAL_CMD

    def match(self, sql: str) -> KillProxySessionMatch | None:
        """
        @param sql: the statement.
        @return: the parsed statement, or C{None} (a malformed one, ids that
            are negative or longer than 17 digits included).
        """
        found = _KILL_PROXYSESSION.fullmatch(sql)
        if found is None:
            return None
        number = _number(found.group("id"))
        if number is None:
            return None
        ss_text = found.group("ss_id")
        if ss_text is None:
            return KillProxySessionMatch(number)
        ss_id = _number(ss_text)
        if ss_id is None:
            return None
        return KillProxySessionMatch(number, ss_id)

    def match_args(self, match: KillProxySessionMatch) -> Dict[str, Any]:
        """
        @return: C{match} for the channel (L{obproxy_tx.cluster}).
        """
        return _args(match)

    def match_from_args(self, args: Dict[str, Any]) -> KillProxySessionMatch:
        """
        @return: the match L{match_args} gave.
        """
        return KillProxySessionMatch(**args)

    def execute(self, context: AdminContext, match: KillProxySessionMatch) -> Any:
        """
        Kill the client session, or one of its server sessions.

        @param context: the caller's context.
        @param match: what L{match} returned.
        @return: OK (a Deferred firing with the answer for a session of
            another worker or node).
        @raise AdminError: 1094 unknown id or server session, 1095 not the
            caller's to kill, 1317 (then the connection closes) when the
            caller killed its own client session.
        """
        return _elsewhere(self, context, match)

    def on_target(
        self, context: AdminContext, target: Any, match: KillProxySessionMatch
    ) -> AdminOK:
        """
        Kill C{target} or one of its server sessions for the caller (here,
        or for a caller on another worker or node).

        @return: OK.
        @raise AdminError: see L{execute}.
        """
        caller = context.session
        own = access.same_session(caller, target)
        if match.ss_id is None:
            if own:
                raise access.interrupted()
            _check(context, target, match.number)
            _killed(caller, target, "the connection")
            target.kill_connection()
            return AdminOK()
        # One's own server sessions are one's own to close: the next
        # statement just opens another.
        if not own:
            _check(context, target, match.number)
        if not target.kill_server_session(match.ss_id):
            raise access.unknown_thread(match.ss_id)
        _killed(caller, target, f"server session {match.ss_id}")
        return AdminOK()


kill = Kill()
kill_proxysession = KillProxySession()
