"""
Configuration reload: C{SIGHUP} reads the configuration again and applies it
without dropping a session.

The configuration is read as at start (L{ConfigSource}): the C{-c} file (or
the built-in defaults), then the items C{ALTER PROXYCONFIG} saved, then the
command line (C{-p}, C{-r}, C{-o}), which still wins. What may change while
running is applied through C{reconfigure} (the session manager's, or with
workers the supervisor's, which forwards the signal so that every worker
reloads the same way), the clusters with their servers, replicas and users
included (L{obproxy_tx.session.retire}); what only takes effect at restart
(items marked so) keeps its running value and is named in the log. A file
that cannot be read or checked is logged with its L{ConfigError} and changes
nothing.

L{reloadable} is the pure part: from the running and the newly read
configuration, the one to run with and what waits for a restart.
"""

from __future__ import annotations

import os
from typing import Any, Tuple

import attrs

from obproxy_tx.config import (
    ITEMS,
    ConfigError,
    ProxyConfig,
    apply_overrides,
    check_config,
    load_config,
)
from obproxy_tx.logs import Logger

__all__ = ["ConfigSource", "ReloadOutcome", "reload_config", "reloadable"]

_log = Logger(namespace="obproxy_tx.reload")

_CLUSTERS = "clusters"
"""How the clusters are named among the changes."""


@attrs.frozen
class ConfigSource:
    """
    Where the running configuration came from, to read it again the same way
    (picklable: worker processes get it in their spec).

    @ivar path: the C{-c} file, absolute; C{None}: the built-in defaults.
    @ivar listen_port: C{-p}, if given.
    @ivar rootservice_list: C{-r}, if given.
    @ivar options: every C{-o} (C{-n} first, as C{app_name=...}).
    """

    path: str | None = None
    listen_port: str | None = None
    rootservice_list: str | None = None
    options: Tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        path: str | None,
        listen_port: str | None = None,
        rootservice_list: str | None = None,
        options: Tuple[str, ...] | list[str] = (),
    ) -> ConfigSource:
        """
        A source for a C{-c} path as given (made absolute, so a daemon that
        changed its directory reads the same file).
        """
        return cls(
            os.path.abspath(path) if path is not None else None,
            listen_port,
            rootservice_list,
            tuple(options),
        )

    def load(self) -> ProxyConfig:
        """
        Read the configuration: file (or defaults), saved items, command line.

        @raise ConfigError: any problem, as at start.
        """
        overrides: dict[str, Any] = {
            "listen_port": self.listen_port,
            "rootservice_list": self.rootservice_list,
            "options": list(self.options),
        }
        if self.path is None:
            from obproxy_tx.tap import default_config

            return apply_overrides(default_config(), **overrides, saved=True)
        return load_config(self.path, **overrides)


@attrs.frozen
class ReloadOutcome:
    """
    What a reload did.

    @ivar config: the configuration now running (the old one when nothing
        was applied).
    @ivar changed: the items whose value changed.
    @ivar held: what changed in the file but waits for a restart
        (restart-only items, C{clusters}).
    @ivar error: why nothing was applied, or C{None}.
    """

    config: ProxyConfig
    changed: Tuple[str, ...] = ()
    held: Tuple[str, ...] = ()
    error: str | None = None


def reloadable(running: ProxyConfig, read: ProxyConfig) -> tuple[ProxyConfig, tuple[str, ...]]:
    """
    The configuration to run with after reading C{read}: C{read}, except
    that restart-only items keep their running values. The clusters are
    C{read}'s: the session manager applies their changes while running.

    @return: that configuration, and the names held back for the restart.
    @raise ConfigError: the combination does not pass L{check_config}.
    """
    held = [
        name
        for name, item in ITEMS.items()
        if item.need_reboot and read.item_value(name) != running.item_value(name)
    ]
    keep: dict[str, Any] = {name: running.item_value(name) for name in held}
    config = attrs.evolve(read, **keep) if keep else read
    return check_config(config), tuple(held)


def reload_config(target: Any, source: ConfigSource) -> ReloadOutcome:
    """
    Read the configuration again and apply it to C{target} (a session
    manager, or a worker supervisor) with its C{reconfigure}; log the outcome.

    @param target: has C{config} and C{reconfigure(config)}.
    @param source: where the configuration comes from.
    @return: what happened (nothing is raised: a signal handler calls this).
    """
    running: ProxyConfig = target.config
    try:
        read = source.load()
        config, held = reloadable(running, read)
    except ConfigError as e:
        _log.error("SIGHUP: configuration not reloaded, nothing changed: {error}", error=e)
        return ReloadOutcome(running, error=str(e))
    changed = tuple(name for name in ITEMS if config.item_value(name) != running.item_value(name))
    if config.clusters != running.clusters:
        changed += (_CLUSTERS,)
    try:
        target.reconfigure(config)
    except (ConfigError, ValueError) as e:
        _log.error("SIGHUP: configuration not reloaded, nothing changed: {error}", error=e)
        return ReloadOutcome(running, error=str(e))
    # Names only: values may be secrets.
    _log.info(
        "SIGHUP: configuration reloaded from {source}; changed: {changed}",
        source=source.path or "built-in defaults",
        changed=", ".join(changed) or "nothing",
    )
    if held:
        _log.warn(
            "SIGHUP: changes to {held} take effect at the next restart",
            held=", ".join(held),
        )
    return ReloadOutcome(config, changed, held)
