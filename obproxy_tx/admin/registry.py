"""
The command registry: which statements are the proxy's own, and how their
answers go on the wire.

Recognition is done in two steps so that ordinary queries pay almost nothing:
the first bytes of the statement are upper-cased and compared with the
keyword prefixes of every command (one C{bytes.startswith} with a tuple);
only on a hit is the command's own grammar (L{IAdminCommand.match}) run.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterable, List, Tuple

import attr
from twisted.internet import defer
from twisted.plugin import getPlugins
from twisted.python.failure import Failure

from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminError,
    AdminOK,
    AdminResultSet,
    IAdminCommand,
)
from obproxy_tx.wire.constants import Capability, ServerStatus
from obproxy_tx.wire.packets import (
    ColumnCount,
    EOFPacket,
    ERRPacket,
    OKPacket,
    TextRow,
)

BAD_INTERNAL_CMD = AdminError(5010, "Unknown operator, bad internal cmd", "21000")
"""ODP's answer to a malformed internal command."""

_BLANKS = re.compile(rb"\s+")


@attr.s(auto_attribs=True, frozen=True)
class Recognised:
    """
    A statement that is one of our commands.

    @ivar command: the command.
    @ivar match: what its L{IAdminCommand.match} returned.
    """

    command: Any
    match: Any


class CommandRegistry:
    """
    The admin commands known to the proxy.

    @ivar _commands: the commands, in registration order.
    @ivar _prefixes: every keyword prefix, upper case, as C{bytes}.
    @ivar _width: how many leading bytes to upper-case for the prefix check.
    @ivar _anchors: the first byte (upper and lower case) of every prefix, and blanks.
    @ivar _quick: matches the start of a statement that may be a command.
    """

    def __init__(self, commands: Iterable[Any] = ()) -> None:
        """
        @param commands: the initial commands (see L{from_plugins}).
        """
        self._commands: List[Any] = []
        self._keyed: List[Tuple[Any, Tuple[bytes, ...]]] = []
        self._prefixes: Tuple[bytes, ...] = ()
        self._width = 0
        self._anchors: frozenset[int] = frozenset()
        self._quick: Callable[[bytes], Any] = lambda sql: None
        for command in commands:
            self.register(command)

    @classmethod
    def from_plugins(cls, extra: Iterable[Any] = ()) -> CommandRegistry:
        """
        Build a registry from every L{IAdminCommand} plugin in
        L{obproxy_tx.plugins} plus C{extra}.

        @param extra: commands registered explicitly.
        @return: the registry.
        """
        import obproxy_tx.plugins

        found = sorted(
            getPlugins(IAdminCommand, obproxy_tx.plugins),
            key=lambda command: str(command.name),
        )
        return cls([*found, *extra])

    @property
    def commands(self) -> Tuple[Any, ...]:
        """
        The registered commands.
        """
        return tuple(self._commands)

    def register(self, command: Any) -> None:
        """
        Add a command.

        @param command: an L{IAdminCommand} provider.
        @raise ValueError: a command with the same name is registered.
        """
        for existing in self._commands:
            if existing.name == command.name:
                raise ValueError(
                    f"admin command {command.name!r} is provided twice: by "
                    f"{type(existing).__module__} and by {type(command).__module__}"
                )
        self._commands.append(command)
        self._keyed.append((command, _normalised(command.keywords)))
        prefixes = {
            prefix for existing in self._commands for prefix in _normalised(existing.keywords)
        }
        self._prefixes = tuple(sorted(prefixes))
        self._width = max((len(prefix) for prefix in prefixes), default=0)
        self._anchors = frozenset(
            byte for prefix in prefixes for byte in (prefix[0], prefix[:1].lower()[0])
        ) | frozenset(b" \t\r\n\f\v")
        # One case-insensitive regex of every prefix (blanks as \s+): ordinary SQL that
        # shares a first letter ("SELECT id ...") fails inside it after a few bytes.
        self._quick = re.compile(
            rb"\s*(?:" + b"|".join(re.escape(p).replace(b"\\ ", rb"\s+") for p in prefixes) + b")",
            re.IGNORECASE,
        ).match

    def recognise(self, sql: bytes) -> Recognised | None:
        """
        Is C{sql} one of our commands?

        A statement that starts with a command's keywords (as whole words)
        but fails its grammar is still recognised, with C{match} C{None}: the
        caller decides between C{5010 bad internal cmd} (the command is
        C{proxy_only}, see L{IAdminCommand}) and forwarding it as
        ordinary SQL.

        @param sql: the statement text.
        @return: the command and its match, or C{None}.
        """
        if not sql or sql[0] not in self._anchors or self._quick(sql) is None:
            return None
        start = sql.lstrip()[: self._width * 2 + 1]
        head = _BLANKS.sub(b" ", start.upper())
        if not head.startswith(self._prefixes):
            return None
        text = sql.decode("utf-8", "replace").strip().rstrip(";").strip()
        # Unmatched, the statement belongs to the command with the longest keywords it
        # starts with: "KILL PROXYSESSION x" is a bad KILL PROXYSESSION, not a KILL.
        unmatched = None
        unmatched_width = -1
        for command, prefixes in self._keyed:
            width = max((len(p) for p in prefixes if _starts_with_words(head, p)), default=-1)
            if width < 0:
                continue
            match = command.match(text)
            if match is not None:
                return Recognised(command, match)
            if width > unmatched_width:
                unmatched, unmatched_width = command, width
        if unmatched is None:
            return None
        return Recognised(unmatched, None)

    def run(self, context: AdminContext, recognised: Recognised) -> defer.Deferred[Any]:
        """
        Execute a recognised command.

        @param context: the calling session, manager and config.
        @param recognised: what L{recognise} returned.
        @return: a Deferred firing with the command's answer (an
            L{AdminError} raised by the command is turned into its answer).
        """
        result = defer.maybeDeferred(recognised.command.execute, context, recognised.match)
        return result.addErrback(_admin_error)

    def answer(self, result: Any, capabilities: Capability, status_flags: int = 0) -> List[bytes]:
        """
        Turn a command's answer into packet payloads.

        @param result: an L{AdminOK}, L{AdminError} (returned or raised) or
            L{AdminResultSet}.
        @param capabilities: the negotiated capabilities.
        @param status_flags: the session's status flags for OK and EOF packets.
        @return: the payloads, in order (sequence ids are the caller's).
        @raise TypeError: C{result} is none of these.
        """
        return [p.encode(capabilities) for p in self.packets(result, capabilities, status_flags)]

    def packets(self, result: Any, capabilities: Capability, status_flags: int = 0) -> List[Any]:
        """
        Turn a command's answer into packets (see L{answer}).

        @raise ValueError: a row has the wrong number of cells.
        """
        status = ServerStatus(status_flags)
        if isinstance(result, AdminOK):
            info = result.info.encode()
            return [OKPacket(affected_rows=result.affected_rows, status_flags=status, info=info)]
        if isinstance(result, AdminError):
            return [ERRPacket(result.code, result.message, result.sqlstate)]
        if isinstance(result, AdminResultSet):
            definitions = result.definitions()
            packets: List[Any] = [ColumnCount(len(definitions))]
            packets.extend(definitions)
            deprecate_eof = bool(capabilities & Capability.CLIENT_DEPRECATE_EOF)
            if not deprecate_eof:
                packets.append(EOFPacket(status_flags=status))
            for row in result.rows:
                if len(row) != len(definitions):
                    raise ValueError(f"row has {len(row)} cells, expected {len(definitions)}")
                packets.append(TextRow(tuple(_cell(v) for v in row)))
            if deprecate_eof:
                packets.append(OKPacket(header=0xFE, status_flags=status))
            else:
                packets.append(EOFPacket(status_flags=status))
            return packets
        raise TypeError(f"not an admin answer: {result!r}")


def _normalised(keywords: Iterable[str]) -> Tuple[bytes, ...]:
    """
    @param keywords: keyword prefixes as a command declares them.
    @return: them upper-cased, blanks collapsed to one space, as C{bytes}.
    """
    return tuple(_BLANKS.sub(b" ", k.upper().encode("ascii")).strip() for k in keywords)


_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


def _starts_with_words(head: bytes, prefix: bytes) -> bool:
    """
    @param head: the upper-cased, blank-collapsed start of a statement.
    @param prefix: a normalised keyword prefix.
    @return: whether C{head} starts with C{prefix} as whole words (C{KILL}
        does not start C{KILLALL}).
    """
    if not head.startswith(prefix):
        return False
    return (
        len(head) == len(prefix)
        or head[len(prefix)] not in _WORD_BYTES
        or prefix[-1] not in _WORD_BYTES
    )


def _admin_error(failure: Failure) -> AdminError:
    """
    @param failure: a command's failure.
    @return: the L{AdminError} it carries.
    @raise Exception: the failure is not an L{AdminError} (re-raised).
    """
    failure.trap(AdminError)
    assert isinstance(failure.value, AdminError)
    return failure.value


def _cell(value: Any) -> bytes | None:
    """
    @param value: a cell.
    @return: its text encoding, or C{None} for SQL NULL.
    """
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"1" if value else b"0"
    return str(value).encode("utf-8")


_LIKE_CACHE: Dict[str, Callable[[str], Any | None]] = {}


def like(pattern: str, value: str) -> bool:
    """
    SQL C{LIKE} as ODP applies it to C{SHOW ... LIKE 'p'}: C{%} matches any
    run of characters, C{_} exactly one, C{\\} escapes the next character,
    everything case-insensitively.

    @param pattern: the pattern.
    @param value: the text tested.
    @return: whether C{value} matches the whole pattern.
    """
    matcher = _LIKE_CACHE.get(pattern)
    if matcher is None:
        parts: List[str] = []
        chars = iter(pattern)
        for char in chars:
            if char == "\\":
                parts.append(re.escape(next(chars, "\\")))
            elif char == "%":
                parts.append(".*")
            elif char == "_":
                parts.append(".")
            else:
                parts.append(re.escape(char))
        matcher = re.compile("".join(parts), re.IGNORECASE | re.DOTALL).fullmatch
        if len(_LIKE_CACHE) < 256:
            _LIKE_CACHE[pattern] = matcher
    return matcher(value) is not None
