"""
The proxy's log level: ODP's C{syslog_level} applied before an event is made.

C{twistd} writes every event a C{twisted.logger.Logger} emits, debug ones
included, and a worker process ships each one to its parent as JSON; with
one routine line per connection that was a tenth of the proxy's CPU per
connection. L{Logger} drops an event below the configured level before
C{twisted.logger} builds it, so a filtered line costs one set lookup.

ODP's levels, lowest first, are C{DEBUG}, C{TRACE}, C{WDIAG}, C{EDIAG},
C{INFO}, C{WARN}, C{ERROR}; its default C{WDIAG} writes C{INFO} and above.
twisted.logger has no diagnostic levels, so C{WDIAG} and C{EDIAG} let the
same events through as C{INFO}, and C{TRACE} as C{DEBUG}.

The level is process-wide (as a log file is): L{apply_config} sets it from a
configuration, at start in every process and again when the configuration
changes.

Every event a client or server session logs (through L{Logger}, whose
C{log_source} is then the session) carries the session's C{cs_id}, C{ss_id},
C{user} and client address (C{client}) as event fields, which the JSON log
keeps as keys, and says them at the end of its text
(C{... [cs_id=3 ss_id=7 user=app@sys#c client=127.0.0.1:50312]}) for the
human-readable log. Passwords never enter an event: no session field holds
one.

JSON lines: C{-o log_format=json} (L{observer_for_twistd}) or twistd's own
C{--logger obproxy_tx.logs.json_logger}; each line is twisted.logger's
C{jsonFileLogObserver} record (C{log_format}, C{log_level}, C{log_time}, the
event's fields).
"""

from __future__ import annotations

import sys
from typing import IO, Any, Dict, Mapping

from twisted.logger import ILogObserver, LogLevel, jsonFileLogObserver
from twisted.logger import Logger as _TwistedLogger

__all__ = [
    "SYSLOG_LEVELS",
    "Logger",
    "apply_config",
    "current_level",
    "enabled",
    "json_logger",
    "observer_for_twistd",
    "session_fields",
    "set_level",
]

#: ODP's C{syslog_level} values and the lowest twisted.logger level each lets through.
SYSLOG_LEVELS: Mapping[str, LogLevel] = {
    "DEBUG": LogLevel.debug,
    "TRACE": LogLevel.debug,
    "WDIAG": LogLevel.info,
    "EDIAG": LogLevel.info,
    "INFO": LogLevel.info,
    "WARN": LogLevel.warn,
    "ERROR": LogLevel.error,
}

_ORDER = (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)

# The levels written now; read by every emit, so one global frozenset.
_enabled: frozenset[LogLevel] = frozenset(_ORDER[1:])
_level: LogLevel = LogLevel.info


def set_level(level: LogLevel) -> None:
    """
    Write events of C{level} and above from now on.

    @param level: a twisted.logger level.
    """
    global _enabled, _level
    _level = level
    _enabled = frozenset(_ORDER[_ORDER.index(level) :])


def current_level() -> LogLevel:
    """
    The lowest level written now.
    """
    return _level


def enabled(level: LogLevel) -> bool:
    """
    Whether an event of C{level} would be written (for work done only to log).
    """
    return level in _enabled


def apply_config(config: Any) -> None:
    """
    Set the level from a configuration's C{syslog_level} item.

    @param config: a L{ProxyConfig<obproxy_tx.config.ProxyConfig>}.
    """
    set_level(SYSLOG_LEVELS[str(config.syslog_level).upper()])


class Logger(_TwistedLogger):
    """
    A C{twisted.logger.Logger} that drops events below the configured level
    before making them (see the module docstring). Use it as the original.
    """

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:  # noqa: A002
        """
        Emit the event if its level is written (else nothing at all).
        """
        if level in _enabled:
            fields = session_fields(self.source)
            if fields:
                described = " ".join(f"{name}={value}" for name, value in fields.items())
                for name, value in fields.items():
                    kwargs.setdefault(name, value)
                kwargs["log_session"] = described
                format = f"{format} [{{log_session}}]" if format is not None else None  # noqa: A001
            _TwistedLogger.emit(self, level, format, **kwargs)


def session_fields(source: Any) -> Dict[str, Any] | None:
    """
    The fields that say which session an event is about, when its source is
    a client session (C{cs_id}, C{ss_id} of the server session it uses,
    C{user}, C{client}) or a server session (C{ss_id}, C{server}, C{user},
    and its client session's C{cs_id} and C{client}).

    @param source: an event's C{log_source}.
    @return: the fields, or C{None} for other sources.
    """
    if source is None or isinstance(source, type):
        return None
    fields: Dict[str, Any] = {}
    ss_id = getattr(source, "ss_id", None)
    if ss_id is not None:
        # A server session: its client session is the one its losses are reported to.
        client: Any = getattr(getattr(source, "_on_lost", None), "__self__", None)
        if client is not None and hasattr(client, "cs_id"):
            fields["cs_id"] = client.cs_id
        fields["ss_id"] = ss_id
        server = getattr(source, "server", None)
        if server is not None:
            fields["server"] = getattr(server, "address", server)
        key = getattr(source, "key", None)
        if isinstance(key, tuple) and len(key) == 2:
            fields["user"] = key[1]
        if client is not None and getattr(client, "peer", None):
            fields["client"] = f"{client.peer}:{client.peer_port}"
        return fields
    cs_id = getattr(source, "cs_id", None)
    if cs_id is None or not hasattr(source, "peer"):
        return None
    fields["cs_id"] = cs_id
    server_session = getattr(source, "active", None) or getattr(source, "bound", None)
    if server_session is not None:
        fields["ss_id"] = server_session.ss_id
    login = getattr(source, "login", None)
    if login is not None:
        fields["user"] = login.full_name
    if source.peer:
        fields["client"] = f"{source.peer}:{source.peer_port}"
    return fields


def json_logger(stream: IO[str] | None = None) -> ILogObserver:
    """
    A twistd log observer factory writing JSON lines to standard output:
    C{twistd --logger obproxy_tx.logs.json_logger obproxy ...}.

    @param stream: where to write (standard output by default).
    """
    return jsonFileLogObserver(stream if stream is not None else sys.stdout)


def observer_for_twistd(options: Any, config: Any) -> ILogObserver | None:
    """
    The observer C{-o log_format=json} asks for, writing where twistd would
    write its own log: C{-l FILE} (rotated as twistd rotates it), standard
    output with C{-n} or C{-l -}, else C{twistd.log}.

    @param options: the parsed twistd options (C{logfile}, C{nodaemon}), or
        C{None} outside twistd.
    @param config: the configuration (C{log_format}).
    @return: the observer, or C{None} for the text format, for twistd's own
        C{--logger}, or outside twistd.
    """
    if config.log_format != "json" or options is None:
        return None
    try:
        if options.get("logger"):
            return None  # twistd's own option wins
        path = options.get("logfile")
        nodaemon = options.get("nodaemon")
    except (AttributeError, KeyError):
        return None
    if path == "-" or (not path and nodaemon):
        return jsonFileLogObserver(sys.stdout)
    from twisted.python.logfile import LogFile

    return jsonFileLogObserver(LogFile.fromFullPath(path or "twistd.log"))
