"""
C{SHOW PROXYCONFIG} and C{ALTER PROXYCONFIG SET}, as ODP has them
(C{ob_show_config_handler.cpp}, C{ob_alter_config_handler.cpp}; odp-reference
§4.2), over the config items of L{obproxy_tx.config.ITEMS}.

C{SHOW PROXYCONFIG [ALL | DIFF [USER]] [LIKE 'p']} answers ODP's columns
C{name, value, info, need_reboot, visible_level, range, config_level}:

  - plain: every item whose C{visible_level} is C{USER} or C{SYS}; C{ALL}
    adds the credentials (level C{DBA});
  - C{DIFF}: the items whose running value (or the value saved for the next
    start) differs from the default;
    C{DIFF USER}: of those, the C{USER} level ones;
  - sensitive items show C{******} (or nothing when empty), never the value.

C{ALTER PROXYCONFIG SET name = value} (value: a name, a quoted string, an
integer, or nothing) checks the value with L{obproxy_tx.config.set_item},
saves it (L{obproxy_tx.config_store}) and applies it to the running proxy
through C{SessionManager.reconfigure}; if applying fails the saved file is
put back as it was. Items that need a restart are saved only: the running
proxy keeps its value (SHOW PROXYCONFIG's C{info} says a restart is pending)
and the OK packet's info says so. As ODP: C{app_name} is refused (it is
C{-n} at start), and a plain-text password given for a verifier item
(C{obproxy_sys_password}, C{inspector_password}) is stored as its verifier.

Errors:

  - C{1210 (HY000) Incorrect arguments to ALTER PROXYCONFIG: ...}: unknown
    item, bad value, or a combination the configuration refuses; the message
    names the item and the problem;
  - C{1235 (0A000) Not supported feature or function}: C{app_name} (ODP's
    own answer), and items ALTER may not change (C{altered_config_file});
  - C{1026 (HY000) Error writing file '<path>' (<reason>)}: the change
    could not be saved; nothing changed;
  - C{1105 (HY000)}: applying the change failed; it was rolled back.

Both commands are for C{root@sys} and C{root@proxysys} only; other users'
statements go to the backend as ODP does.

With several worker processes (C{manager.cluster}), the worker that runs the
ALTER checks, saves and applies the item as above, then has every other
worker apply it too (and the parent, for workers it restarts later); a
worker that fails to is named in the OK packet's info and logged. Peer nodes
keep their own configuration.
"""

from __future__ import annotations

import re
from typing import Any, List, Sequence

import attr
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from obproxy_tx import config_store
from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminError,
    AdminOK,
    AdminResultSet,
    IAdminCommand,
    Privilege,
)
from obproxy_tx.admin.registry import like
from obproxy_tx.config import (
    ITEMS,
    VISIBLE_USER,
    ConfigError,
    ConfigItem,
    ItemKind,
    ProxyConfig,
    set_item,
    with_item_values,
)
from obproxy_tx.wire.errors import ErrorCode
from obproxy_tx.wire.scramble import native_password_verifier, verifier_to_hex

_log = Logger()

COLUMNS = (
    "name",
    "value",
    "info",
    "need_reboot",
    "visible_level",
    "range",
    "config_level",
)
"""ODP's columns (C{CONFIG_COLUMN_ARRAY} in C{ob_show_config_handler.cpp})."""

CONFIG_LEVEL = "LEVEL_GLOBAL"
"""Every item applies to the whole proxy (ODP's C{OB_CONFIG_MULTI_LEVEL_GLOBAL})."""

MASK = "******"
"""What a sensitive item shows instead of its value."""

ORIGIN = "ALTER PROXYCONFIG"
"""The origin L{set_item} puts in messages and in the config's origins."""

_LISTED = frozenset({"USER", "SYS"})
"""The visible levels plain SHOW PROXYCONFIG lists; ALL lists every level."""

_QUOTED = r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\""
_LIKE = rf"(?:\s+LIKE\s+(?P<like>{_QUOTED}))?"
_FLAGS = re.IGNORECASE | re.DOTALL

_SHOW = re.compile(
    rf"SHOW\s+PROXYCONFIG(?:\s+(?P<all>ALL)|\s+(?P<diff>DIFF)(?:\s+(?P<user>USER))?)?{_LIKE}",
    _FLAGS,
)
_ALTER = re.compile(
    r"ALTER\s+PROXYCONFIG\s+SET\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"
    rf"(?:(?P<quoted>{_QUOTED})|(?P<bare>[^\s'\"`;]+))?",
    _FLAGS,
)

_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


def unquote(literal: str, *, keep_like_escapes: bool = False) -> str:
    """
    The value of a MySQL string literal.

    @param literal: the literal with its quotes (C{'...'} or C{"..."}).
    @param keep_like_escapes: keep C{\\%}, C{\\_} and C{\\\\} as written, as
        MySQL does for C{LIKE} patterns, so L{like} still sees the escapes.
    @return: the text: doubled quotes and backslash escapes resolved.
    """
    quote, body = literal[0], literal[1:-1]
    out: List[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            following = body[index + 1]
            if keep_like_escapes and following in "%_\\":
                out.append(char + following)
            elif not keep_like_escapes and following in "%_":
                out.append(char + following)  # MySQL keeps \% and \_ outside LIKE too
            else:
                out.append(_ESCAPES.get(following, following))
            index += 2
            continue
        if char == quote and body[index + 1 : index + 2] == quote:
            out.append(quote)
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def shown_value(item: ConfigItem, value: Any) -> str:
    """
    The C{value} cell of an item: its text, or L{MASK} for a sensitive
    item that is set (empty when it is not).
    """
    if item.sensitive:
        return MASK if value else ""
    return item.render(value)


def _running(context: AdminContext) -> ProxyConfig:
    """
    The configuration the proxy runs with now: the manager's (an earlier
    ALTER may have replaced it since the context was made).
    """
    manager = context.manager
    config = getattr(manager, "config", None) if manager is not None else None
    return config if config is not None else context.config


def _pending(config: ProxyConfig) -> dict[str, Any]:
    """
    Restart-only items saved with a value other than the running one: what
    a restart would change. An unreadable file shows nothing pending (SHOW
    is no place to fail over it; ALTER reports it).
    """
    if not config.store_path:
        return {}
    try:
        saved = config_store.read_saved(config.store_path)
    except ConfigError:
        return {}
    return {
        name: value
        for name, (value, _) in saved.items()
        if ITEMS[name].need_reboot and value != config.item_value(name)
    }


@attr.s(auto_attribs=True, frozen=True)
class ShowMatch:
    """
    A parsed C{SHOW PROXYCONFIG}.

    @ivar mode: C{""} (plain), C{"all"}, C{"diff"} or C{"diff user"}.
    @ivar pattern: the C{LIKE} pattern, or C{None}.
    """

    mode: str
    pattern: str | None


@implementer(IPlugin, IAdminCommand)
class ShowProxyConfig:
    """
    C{SHOW PROXYCONFIG [ALL | DIFF [USER]] [LIKE 'p']}.
    """

    name = "SHOW PROXYCONFIG"
    keywords = ("SHOW PROXYCONFIG",)
    columns = COLUMNS
    privilege = Privilege.ADMIN
    errors = ()
    proxy_only = True
    denied = None

    def match(self, sql: str) -> ShowMatch | None:
        """
        @param sql: the statement.
        @return: the mode and pattern, or C{None} if it is not this grammar.
        """
        found = _SHOW.fullmatch(sql.strip())
        if found is None:
            return None
        if found.group("all"):
            mode = "all"
        elif found.group("diff"):
            mode = "diff user" if found.group("user") else "diff"
        else:
            mode = ""
        literal = found.group("like")
        pattern = unquote(literal, keep_like_escapes=True) if literal else None
        return ShowMatch(mode, pattern)

    def execute(self, context: AdminContext, match: ShowMatch) -> AdminResultSet:
        """
        @param context: the caller's context (the manager's config is read).
        @param match: what L{match} returned.
        @return: one row per selected item, in L{ITEMS} order.
        """
        config = _running(context)
        pending = _pending(config)
        rows: List[Sequence[Any]] = []
        for item in ITEMS.values():
            if match.pattern is not None and not like(match.pattern, item.name):
                continue
            value = config.item_value(item.name)
            if match.mode == "" and item.visible_level not in _LISTED:
                continue
            # A saved restart-only change counts as a difference too: it is
            # what the proxy will run with (ODP shows the new value at once).
            if (
                match.mode.startswith("diff")
                and value == item.default
                and pending.get(item.name, item.default) == item.default
            ):
                continue
            if match.mode == "diff user" and item.visible_level != VISIBLE_USER:
                continue
            info = item.description
            if item.name in pending:
                info += (
                    f" (saved by ALTER PROXYCONFIG: {shown_value(item, pending[item.name])!r}, "
                    "takes effect at restart)"
                )
            rows.append(
                (
                    item.name,
                    shown_value(item, value),
                    info,
                    "true" if item.need_reboot else "false",
                    item.visible_level,
                    item.range,
                    CONFIG_LEVEL,
                )
            )
        return AdminResultSet(self.columns, rows)


@attr.s(auto_attribs=True, frozen=True)
class AlterMatch:
    """
    A parsed C{ALTER PROXYCONFIG SET name = value}.

    @ivar name: the item's name, lower case.
    @ivar text: the value as text (C{""} when none was given).
    """

    name: str
    text: str


def wrong_arguments(problem: str) -> AdminError:
    """
    @param problem: what is wrong (names the item).
    @return: C{1210 (HY000) Incorrect arguments to ALTER PROXYCONFIG: ...}.
    """
    return AdminError(
        ErrorCode.ER_WRONG_ARGUMENTS, f"Incorrect arguments to ALTER PROXYCONFIG: {problem}"
    )


def not_supported(detail: str = "") -> AdminError:
    """
    @param detail: why, appended after a colon (ODP's own answer has none).
    @return: ODP's C{OB_NOT_SUPPORTED} answer, C{1235 (0A000) Not supported
        feature or function}, as to C{ALTER PROXYCONFIG SET app_name = ...}
        (a fresh exception each time: a raised one would carry a traceback).
    """
    message = "Not supported feature or function"
    return AdminError(
        ErrorCode.ER_NOT_SUPPORTED_YET, f"{message}: {detail}" if detail else message, "0A000"
    )


ER_ERROR_ON_WRITE = 1026
"""MySQL's C{ER_ERROR_ON_WRITE}: C{Error writing file '%s' (errno: %d)}."""


def _value_text(item: ConfigItem, text: str) -> str:
    """
    The text to check and save: for a verifier item, a plain-text password
    becomes its verifier (as ODP hashes password items before saving); a
    verifier (C{*} and 40 hex digits) or nothing is taken as it is.
    """
    if item.kind is not ItemKind.VERIFIER or text == "":
        return text
    try:
        item.from_text(text)
    except ValueError:
        return verifier_to_hex(native_password_verifier(text.encode("utf-8")))
    return text


@implementer(IPlugin, IAdminCommand)
class AlterProxyConfig:
    """
    C{ALTER PROXYCONFIG SET name = value}.
    """

    name = "ALTER PROXYCONFIG"
    keywords = ("ALTER PROXYCONFIG",)
    columns = ()
    privilege = Privilege.ADMIN
    errors = (
        int(ErrorCode.ER_WRONG_ARGUMENTS),
        int(ErrorCode.ER_NOT_SUPPORTED_YET),
        ER_ERROR_ON_WRITE,
        int(ErrorCode.ER_UNKNOWN_ERROR),
    )
    proxy_only = True
    denied = None

    def match(self, sql: str) -> AlterMatch | None:
        """
        @param sql: the statement.
        @return: the item and value text, or C{None} if it is not this grammar.
        """
        found = _ALTER.fullmatch(sql.strip())
        if found is None:
            return None
        quoted, bare = found.group("quoted"), found.group("bare")
        text = unquote(quoted) if quoted is not None else (bare or "")
        return AlterMatch(found.group("name").lower(), text)

    def execute(self, context: AdminContext, match: AlterMatch) -> Any:
        """
        Check, save, apply; roll back what was done if a later step fails.

        @param context: the caller's context (its manager is reconfigured).
        @param match: what L{match} returned.
        @return: OK (with a note for restart-only items or an unsaved
            change), or the error; a Deferred firing with it when other
            workers apply the change too.
        """
        if match.name == "app_name":
            return not_supported()
        item = ITEMS.get(match.name)
        if item is not None and not item.alterable:
            return not_supported(f"{item.name} is set in the -c file or with -o")
        manager = context.manager
        running = _running(context)
        text = _value_text(item, match.text) if item is not None else match.text
        path = running.store_path
        try:
            # What the proxy would run with after a restart: the running
            # configuration plus every saved restart-only change, plus this one.
            # Checking this view catches combinations such as proxy_id 300
            # with a saved client_session_id_version 1.
            after_restart = with_item_values(
                running, {name: (value, ORIGIN) for name, value in _pending(running).items()}
            )
            set_item(after_restart, match.name, text, origin=ORIGIN)
            applied = running
            if item is not None and not item.need_reboot:
                applied = set_item(running, match.name, text, origin=ORIGIN)
        except ConfigError as e:
            return wrong_arguments(_strip(str(e)))
        assert item is not None  # set_item refused unknown names above
        if not path and item.need_reboot:
            return wrong_arguments(
                f"{item.name} takes effect at restart and this proxy has nowhere to save it "
                "(no -c file and no altered_config_file)"
            )
        previous: str | None = None
        if path:
            try:
                previous = config_store.save_item(path, item.name, text)
            except config_store.StoreError as e:
                _log.warn(
                    "ALTER PROXYCONFIG SET {name}: cannot save to {path}: {reason}",
                    name=item.name,
                    path=e.path,
                    reason=e.reason,
                )
                return AdminError(ER_ERROR_ON_WRITE, f"Error writing file '{e.path}' ({e.reason})")
        if applied is not running:
            try:
                _apply(manager, applied)
            except Exception as e:
                _log.failure("ALTER PROXYCONFIG SET {name}: applying failed", name=item.name)
                return self._roll_back(manager, running, path, previous, item, e)
        stats = getattr(manager, "stats", None)
        if stats is not None and hasattr(stats, "config_changes"):
            stats.config_changes += 1
        _log.info(
            "ALTER PROXYCONFIG SET {name}: {how}",
            name=item.name,
            how="saved, takes effect at restart" if item.need_reboot else "applied",
        )
        note = self._note(running, item, saved=bool(path))
        cluster = getattr(manager, "cluster", None)
        if cluster is None or applied is running:
            return AdminOK(info=note)
        spreading = cluster.apply_config(item.name, text)
        return spreading.addBoth(self._spread, item, note)

    @staticmethod
    def _spread(problems: Any, item: ConfigItem, note: str) -> AdminOK:
        """
        The answer once the other workers applied the item too: still OK
        (this worker saved and applied it), with the workers that failed.
        """
        if isinstance(problems, Failure):
            problems = [problems.getErrorMessage()]
        if not problems:
            return AdminOK(info=note)
        for problem in problems:
            _log.error("ALTER PROXYCONFIG SET {name}: {problem}", name=item.name, problem=problem)
        failed = f"not applied on: {'; '.join(problems)}"
        return AdminOK(info=f"{note}; {failed}" if note else failed)

    @staticmethod
    def _note(running: ProxyConfig, item: ConfigItem, *, saved: bool) -> str:
        """
        The OK packet's info: empty for an ordinary change (as ODP), else
        what the user should know.
        """
        notes = []
        if item.need_reboot:
            notes.append(f"{item.name} is saved and takes effect at restart (need_reboot)")
        if not saved:
            notes.append(
                f"{item.name} is applied to this run only: not saved (no -c file and no "
                "altered_config_file)"
            )
        if saved and running.origins.get(item.name, "").startswith("command line"):
            notes.append(
                f"the command line also sets {item.name} and wins over the saved value at restart"
            )
        return "; ".join(notes)

    @staticmethod
    def _roll_back(
        manager: Any,
        running: ProxyConfig,
        path: str,
        previous: str | None,
        item: ConfigItem,
        error: Exception,
    ) -> AdminError:
        """
        Undo a saved change whose application failed: the file as it was,
        the running configuration as it was.
        """
        problems = []
        if path:
            try:
                config_store.remove_or_restore(path, previous)
            except config_store.StoreError as e:
                problems.append(f"restoring {e.path} failed too: {e.reason}")
        try:
            _apply(manager, running)
        except Exception as e:  # noqa: BLE001 (reported to the caller, logged below)
            problems.append(f"restoring the running configuration failed too: {e}")
        for problem in problems:
            _log.error("ALTER PROXYCONFIG SET {name}: {problem}", name=item.name, problem=problem)
        message = f"ALTER PROXYCONFIG SET {item.name} could not be applied ({error}); rolled back"
        if problems:
            message += "; " + "; ".join(problems)
        return AdminError(ErrorCode.ER_UNKNOWN_ERROR, message)


def _strip(message: str) -> str:
    """
    @param message: a L{ConfigError} message.
    @return: it without the leading C{"ALTER PROXYCONFIG: "} origin.
    """
    prefix = f"{ORIGIN}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _apply(manager: Any, config: ProxyConfig) -> None:
    """
    Make C{config} the running configuration: C{manager.reconfigure(config)}
    when the manager has it (it also updates what depends on the items),
    else a plain assignment.
    """
    reconfigure = getattr(manager, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(config)
    else:
        manager.config = config


show_proxy_config = ShowProxyConfig()
alter_proxy_config = AlterProxyConfig()
