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
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.logger import Logger as _TwistedLogger
from twisted.logger import LogLevel

__all__ = ["SYSLOG_LEVELS", "Logger", "apply_config", "current_level", "enabled", "set_level"]

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
            _TwistedLogger.emit(self, level, format, **kwargs)
