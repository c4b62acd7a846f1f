"""
The proxy's configuration: a YAML file, ODP-style command-line overrides, and a
registry of config items for SHOW PROXYCONFIG / ALTER PROXYCONFIG.

A configuration file looks like C{examples/conf.yaml}::

    listen_port: 2883
    proxy_id: 0
    clusters:
      - name: obcluster
        type: oceanbase
        servers: ["127.0.0.1:2881"]
        users:
          - {name: root, tenant: sys, verifier: ""}

Scalar settings are I{config items} (L{ITEMS}), named as ODP names them where
ODP has the setting (C{listen_port}, C{proxy_id}, C{client_max_connections},
C{mysql_version}, timeouts, ...), so C{-o name=value} takes the names ODP users
know. Clusters, their servers and their users are structured and live under
C{clusters}.

Every mistake a user can make (unreadable file, bad YAML, unknown key, wrong
type, value out of range, inconsistent items) raises one L{ConfigError} whose
message names where the value came from (file and line, or the command-line
option), the key path (C{clusters[0].servers[1]}) and the problem. Nothing
here raises anything else for bad input, so C{twistd} can print the message
and stop without a traceback.

Why C{client_session_id_version} defaults to 2 here while ODP's default is 1:
the issue requires that the id a client sees in the handshake, in SHOW
PROCESSLIST and from C{SELECT CONNECTION_ID()} agree. ODP gets that agreement
only in version 2 (its docs: "cs_id is the same as connection_id"), whose ids
also stay unique across proxies thanks to the 13-bit C{proxy_id}. Version 1
(8-bit C{proxy_id}, more ids per worker) remains available.

The file is read with a subclass of C{yaml.SafeLoader} (the loader of
C{yaml.safe_load}: no Python objects) that also records line numbers and
refuses duplicate keys, which C{safe_load} would silently merge.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, Union

import attrs
import yaml

from obproxy_tx.session.ids import ClientSessionIdLayout
from obproxy_tx.session.login import DEFAULT_TENANT, parse_username_separator

__all__ = [
    "BackendServer",
    "ClusterConfig",
    "ClusterType",
    "ConfigError",
    "ConfigItem",
    "ITEMS",
    "ItemKind",
    "LoginMode",
    "ProxyConfig",
    "UserEntry",
    "apply_overrides",
    "check_config",
    "load_config",
    "parse_config",
    "parse_server",
    "read_item_texts",
    "set_item",
    "with_item_values",
]


class ConfigError(Exception):
    """
    A configuration mistake, with a message fit to show the user as it is.

    @ivar origin: where the bad value came from: C{"conf.yaml, line 7"},
        C{"command line -o proxy_id=300"}, or the file name alone.
    @ivar path: the key path, e.g. C{clusters[0].servers[1]}, or C{""} for the
        whole file.
    @ivar problem: what is wrong, in words.
    """

    def __init__(self, problem: str, *, origin: str, path: str = "") -> None:
        """
        @param problem: what is wrong.
        @param origin: where the value came from.
        @param path: the key path.
        """
        self.origin = origin
        self.path = path
        self.problem = problem
        parts = [origin] + ([path] if path else []) + [problem]
        super().__init__(": ".join(parts))


class _Invalid(ValueError):  # noqa: N818 (private; callers catch it as ValueError)
    """
    A value problem found before its origin and path are known.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


# --------------------------------------------------------------------------------------
# YAML with line numbers


class _Mapping(dict):
    """A YAML mapping that remembers the line of each key."""

    line = 0
    lines: dict[str, int]


class _Sequence(list):
    """A YAML sequence that remembers the line of each item."""

    line = 0
    lines: list[int]


class _Loader(yaml.SafeLoader):
    """C{yaml.SafeLoader} that records lines and refuses duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"keys must be names, not {_describe(key)}", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {mapping.lines[key]})",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _Sequence:
    sequence = _Sequence(loader.construct_object(child, deep=True) for child in node.value)
    sequence.line = node.start_mark.line + 1
    sequence.lines = [child.start_mark.line + 1 for child in node.value]
    return sequence


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


# --------------------------------------------------------------------------------------
# Value kinds


class ItemKind(Enum):
    """
    The type of a config item's value, which decides how text is coerced.
    """

    INT = "int"
    BOOL = "bool"
    STRING = "string"
    DURATION = "duration"
    """Seconds (float); text takes ODP units: C{us}, C{ms}, C{s}, C{m}, C{h}, C{d}."""
    CHOICE = "choice"
    PORT = "port"
    VERIFIER = "verifier"
    """A C{SHA1(SHA1(password))} as C{*HEX} (bytes; empty for an empty password)."""
    PASSWORD = "password"
    NETWORKS = "networks"
    """IP networks, a YAML list or text separated by C{;}."""
    ENDPOINT = "endpoint"
    """A Twisted server endpoint string, or empty."""
    IP = "ip"
    SEPARATOR = "separator"
    ADDRESSES = "addresses"
    """Where to reach other proxy nodes: C{ip:port} or Twisted client endpoint
    strings, a YAML list or text separated by C{;}."""


_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*\Z")
_HEX40_RE = re.compile(r"[0-9A-Fa-f]{40}\Z")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_TEXT_KINDS = (ItemKind.STRING, ItemKind.PASSWORD, ItemKind.VERIFIER, ItemKind.ENDPOINT)
_ENDPOINT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")

Networks = tuple[Union[ipaddress.IPv4Network, ipaddress.IPv6Network], ...]


def _parse_duration_text(text: str) -> float:
    match = _DURATION_RE.match(text)
    if not match:
        raise _Invalid(f"expected a duration such as '5s', '100ms' or '1h', got {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def _render_duration(seconds: float) -> str:
    """
    Spell seconds as ODP does: whole seconds as C{Ns} (C{180000s}), else the
    largest unit that gives a whole number (C{100ms}, C{5us}).
    """
    for unit in ("s", "ms", "us"):
        count = seconds / _DURATION_UNITS[unit]
        if math.isclose(count, round(count), rel_tol=0, abs_tol=1e-6):
            return f"{round(count)}{unit}"
    return f"{seconds}s"


def _parse_verifier_text(text: str) -> bytes:
    if text == "":
        return b""
    body = text[1:] if text.startswith("*") else text
    if not _HEX40_RE.match(body):
        raise _Invalid(
            "expected a password verifier: '*' and 40 hex digits, as "
            "SELECT authentication_string FROM mysql.user shows it (empty for an empty "
            f"password); got {len(text)} characters"
        )
    return bytes.fromhex(body)


def _parse_networks(items: Iterable[object]) -> Networks:
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise _Invalid(f"expected a network such as '127.0.0.0/8', got {_describe(item)}")
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise _Invalid(f"{item!r} is not an IP network such as '10.0.0.0/8'") from None
    return tuple(networks)


def _parse_addresses(items: Iterable[object]) -> tuple[str, ...]:
    addresses = []
    for item in items:
        if not isinstance(item, str):
            raise _Invalid(f"expected an address such as '10.0.0.2:2999', got {_describe(item)}")
        # Checked as a server address is, so that a typo stops start-up rather
        # than the first SHOW PROXYSESSION.
        parse_server(item)
        addresses.append(item.strip())
    return tuple(addresses)


def _check_endpoint(text: str) -> str:
    text = text.strip()
    if text and not _ENDPOINT_RE.match(text):
        raise _Invalid(
            "expected a Twisted server endpoint string such as "
            f"'tcp:2883:interface=127.0.0.1' or 'unix:/run/obproxy.sock', got {text!r}"
        )
    return text


VISIBLE_USER = "USER"
"""Visible level of items operators tune (timeouts, limits, login rules)."""
VISIBLE_SYS = "SYS"
"""Visible level of items about how the proxy is deployed (ports, ids, TLS files)."""
VISIBLE_DBA = "DBA"
"""Visible level of credentials: only C{SHOW PROXYCONFIG ALL} lists them, masked."""


@attrs.frozen
class ConfigItem:
    """
    One scalar config item: what SHOW PROXYCONFIG lists and ALTER PROXYCONFIG
    and C{-o name=value} set.

    @ivar name: the item's name (ODP's where ODP has the item).
    @ivar kind: the value type.
    @ivar default: the default value, in its Python form.
    @ivar description: one sentence for SHOW PROXYCONFIG's C{info} column.
    @ivar need_reboot: whether a change takes effect only after a restart.
    @ivar minimum: the smallest legal value of a number.
    @ivar maximum: the largest legal value of a number.
    @ivar choices: the legal values of a L{ItemKind.CHOICE} item.
    @ivar sensitive: whether the value is a secret or a password hash: SHOW
        PROXYCONFIG masks it and messages never repeat it.
    @ivar visible_level: SHOW PROXYCONFIG's C{visible_level} column (ODP's
        levels): C{USER} for what operators tune, C{SYS} for how the proxy is
        deployed, C{DBA} for credentials, which only C{SHOW PROXYCONFIG ALL}
        lists (masked).
    @ivar alterable: whether ALTER PROXYCONFIG may change it (C{False} for
        items that say where ALTER PROXYCONFIG saves its changes).
    """

    name: str
    kind: ItemKind
    default: Any
    description: str
    need_reboot: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    sensitive: bool = False
    visible_level: str = VISIBLE_USER
    alterable: bool = True

    @property
    def range(self) -> str:
        """
        The legal range as SHOW PROXYCONFIG's C{range} column shows it, e.g.
        C{[0, 8191]}, or C{""} when any value of the type is legal.
        """
        if self.choices:
            return "[" + ", ".join(self.choices) + "]"
        if self.minimum is None and self.maximum is None:
            return ""

        def show(bound: float | None) -> str:
            if bound is None:
                return ""
            if self.kind is ItemKind.DURATION:
                return _render_duration(bound)
            return str(int(bound))

        return f"[{show(self.minimum)}, {show(self.maximum)}]"

    def _check_range(self, value: float) -> None:
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            shown = _render_duration(value) if self.kind is ItemKind.DURATION else value
            raise _Invalid(f"{shown} is out of range {self.range}")

    def from_yaml(self, value: object) -> Any:
        """
        Check and convert a value read from YAML (already typed by YAML).

        @raise ValueError: wrong type or out of range (wrapped into
            L{ConfigError} by the caller).
        """
        kind = self.kind
        if kind in (ItemKind.INT, ItemKind.PORT):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _Invalid(f"expected an integer, got {_describe(value)}")
            self._check_range(value)
            return value
        if kind is ItemKind.BOOL:
            if not isinstance(value, bool):
                raise _Invalid(f"expected true or false, got {_describe(value)}")
            return value
        if kind is ItemKind.DURATION:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise _Invalid(f"expected a duration such as '5s', got {_describe(value)}")
            seconds = _parse_duration_text(value) if isinstance(value, str) else float(value)
            if seconds < 0 or not math.isfinite(seconds):
                raise _Invalid(f"expected a duration such as '5s', got {value!r}")
            self._check_range(seconds)
            return seconds
        if kind is ItemKind.NETWORKS:
            if isinstance(value, list):
                return _parse_networks(value)
            if isinstance(value, str):
                return self.from_text(value)
            raise _Invalid(f"expected a list of networks, got {_describe(value)}")
        if kind is ItemKind.ADDRESSES:
            if isinstance(value, list):
                return _parse_addresses(value)
            if value is None:
                return ()
            if isinstance(value, str):
                return self.from_text(value)
            raise _Invalid(f"expected a list of addresses, got {_describe(value)}")
        if value is None and kind in _TEXT_KINDS:
            value = ""
        if (
            kind is ItemKind.STRING
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            # mysql_version: 5.7 would otherwise be refused for lack of quotes.
            value = str(value)
        if not isinstance(value, str):
            raise _Invalid(f"expected a string, got {_describe(value)}")
        return self.from_text(value)

    def from_text(self, text: str) -> Any:
        """
        Convert text from C{-o name=value} or ALTER PROXYCONFIG.

        @raise ValueError: the text is not a legal value.
        """
        kind = self.kind
        if kind in (ItemKind.INT, ItemKind.PORT):
            stripped = text.strip()
            if not re.fullmatch(r"[-+]?\d+", stripped):
                raise _Invalid(f"expected an integer, got {text!r}")
            number = int(stripped)
            self._check_range(number)
            return number
        if kind is ItemKind.BOOL:
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise _Invalid(f"expected true or false, got {text!r}")
        if kind is ItemKind.DURATION:
            seconds = _parse_duration_text(text)
            self._check_range(seconds)
            return seconds
        if kind is ItemKind.CHOICE:
            if text not in self.choices:
                raise _Invalid(f"expected one of {', '.join(self.choices)}, got {text!r}")
            return text
        if kind is ItemKind.VERIFIER:
            return _parse_verifier_text(text.strip())
        if kind is ItemKind.NETWORKS:
            return _parse_networks(piece for piece in re.split(r"[;,]", text) if piece.strip())
        if kind is ItemKind.ADDRESSES:
            # Not split at commas: "," never starts a new -o pair before "name=".
            return _parse_addresses(piece for piece in text.split(";") if piece.strip())
        if kind is ItemKind.ENDPOINT:
            return _check_endpoint(text)
        if kind is ItemKind.IP:
            try:
                return str(ipaddress.ip_address(text.strip()))
            except ValueError:
                raise _Invalid(f"{text!r} is not an IP address") from None
        if kind is ItemKind.SEPARATOR:
            try:
                parse_username_separator(text)
            except ValueError as e:
                raise _Invalid(str(e)) from None
            return text
        return text

    def render(self, value: Any) -> str:
        """
        The value as SHOW PROXYCONFIG's C{value} column shows it. Passwords
        show as C{******}; verifiers as C{*HEX} (a hash, as mysql.user shows it).
        """
        kind = self.kind
        if kind is ItemKind.BOOL:
            return "true" if value else "false"
        if kind is ItemKind.DURATION:
            return _render_duration(float(value))
        if kind is ItemKind.VERIFIER:
            return "*" + bytes(value).hex().upper() if value else ""
        if kind is ItemKind.PASSWORD:
            return "******" if value else ""
        if kind is ItemKind.NETWORKS:
            return ";".join(str(network) for network in value)
        if kind is ItemKind.ADDRESSES:
            return ";".join(value)
        return str(value)


def _item(name: str, kind: ItemKind, default: Any, description: str, **kwargs: Any) -> ConfigItem:
    return ConfigItem(name, kind, default, description, **kwargs)


_K = ItemKind
_ITEM_LIST = [
    _item(
        "listen_port",
        _K.PORT,
        2883,
        "SQL port the proxy listens on (-p); ODP's code default is 6688, its docs use 2883; "
        "0 picks a free port",
        need_reboot=True,
        minimum=0,
        maximum=65535,
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "local_bound_ip",
        _K.IP,
        "0.0.0.0",
        "address the SQL port binds to",
        need_reboot=True,
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "listen",
        _K.ENDPOINT,
        "",
        "Twisted server endpoint string for the SQL port (e.g. tcp:2883:interface=127.0.0.1); "
        "when set it replaces listen_port and local_bound_ip",
        need_reboot=True,
        visible_level=VISIBLE_SYS,
    ),
    # -- logging (obproxy_tx/logs.py) --
    _item(
        "syslog_level",
        _K.CHOICE,
        "WDIAG",
        "lowest level of log events written, ODP's names from DEBUG, TRACE, WDIAG, EDIAG, "
        "INFO, WARN to ERROR: DEBUG and TRACE write debug events too; WDIAG, EDIAG and INFO "
        "write info and above (there are no diagnostic levels here); events below it are "
        "dropped before they are made",
        choices=("DEBUG", "TRACE", "WDIAG", "EDIAG", "INFO", "WARN", "ERROR"),
    ),
    # -- metrics, log format, slow-query and audit logs (obproxy_tx/metrics.py, audit.py) --
    _item(
        "enable_prometheus",
        _K.BOOL,
        True,
        "serve Prometheus metrics over HTTP on prometheus_listen_port (path /metrics)",
        need_reboot=True,
    ),
    _item(
        "prometheus_listen_port",
        _K.PORT,
        2884,
        "port of the Prometheus metrics endpoint (on local_bound_ip); 0 picks a free port",
        need_reboot=True,
        minimum=0,
        maximum=65535,
    ),
    _item(
        "log_format",
        _K.CHOICE,
        "text",
        "format of the twistd log: text (human-readable lines) or json (one JSON object a "
        "line, twisted.logger's jsonFileLogObserver); twistd's own --logger wins when given",
        need_reboot=True,
        choices=("text", "json"),
    ),
    _item(
        "slow_query_log_file",
        _K.STRING,
        "",
        "file receiving one JSON line per request slower than slow_query_time_threshold; "
        "empty: no slow-query log",
    ),
    _item(
        "slow_query_time_threshold",
        _K.DURATION,
        0.5,
        "a request taking at least this long (from the proxy reading it to the last byte of "
        "the answer) goes to slow_query_log_file",
    ),
    _item(
        "audit_log_file",
        _K.STRING,
        "",
        "file receiving one JSON line per request relayed to a server (who ran what, where, "
        "how long); empty: no audit log",
    ),
    _item(
        "query_log_rotate_size",
        _K.INT,
        256 * 1024 * 1024,
        "the slow-query and audit logs are rotated when they reach this many bytes (file.1, "
        "file.2, ...)",
        minimum=1024,
    ),
    _item(
        "query_log_max_files",
        _K.INT,
        10,
        "how many rotated slow-query and audit log files are kept; 0 keeps them all",
        minimum=0,
    ),
    _item(
        "proxy_id",
        _K.INT,
        0,
        "this proxy's id, part of every cs_id; at most 255 with client_session_id_version 1",
        need_reboot=True,
        minimum=0,
        maximum=8191,
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "client_session_id_version",
        _K.INT,
        2,
        "cs_id layout: 2 (13-bit proxy_id, the id clients see everywhere agrees) or 1 "
        "(ODP's default: 8-bit proxy_id)",
        need_reboot=True,
        minimum=1,
        maximum=2,
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "work_thread_num",
        _K.INT,
        1,
        "number of worker processes sharing the SQL port (more than 1: a parent process owns "
        "the port and starts them); sizes the worker bits of cs_id",
        need_reboot=True,
        minimum=1,
        maximum=128,
        visible_level=VISIBLE_SYS,
    ),
    # Graceful drain (obproxy_tx.session.drain). ODP's graceful exit waits
    # hot_upgrade_exit_timeout (30s, in microseconds); the name here says what it does,
    # since this proxy drains on every stop and has no hot upgrade.
    _item(
        "graceful_shutdown_timeout",
        _K.DURATION,
        30.0,
        "when the proxy stops, how long running statements and open transactions may "
        "finish (the listener is closed, idle clients are closed at once); 0: close at once",
        minimum=0,
        maximum=86400.0,
    ),
    _item(
        "proxy_service_mode",
        _K.CHOICE,
        "client",
        "client: server session ids are the backends' own; server: they are the cs_id",
        need_reboot=True,
        choices=("client", "server"),
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "client_max_connections",
        _K.INT,
        8192,
        "most client connections at once; 0 means no limit",
        minimum=0,
        maximum=2**31 - 1,
    ),
    _item(
        "mysql_version",
        _K.STRING,
        "",
        "server version announced in the proxy's handshake; empty: the version learned from "
        "the cluster's servers",
    ),
    _item(
        "client_login_timeout",
        _K.DURATION,
        10.0,
        "how long a client may take from the handshake to a completed login",
        minimum=0.001,
    ),
    _item(
        "short_async_task_timeout",
        _K.DURATION,
        5.0,
        "timeout for connecting to a backend server",
        minimum=0.001,
    ),
    _item(
        "observer_query_timeout_delta",
        _K.DURATION,
        20.0,
        "added to the session's query timeout when waiting for a server's answer",
        minimum=0,
    ),
    _item(
        "default_inactivity_timeout",
        _K.DURATION,
        180000.0,
        "idle timeout used when a session's own wait_timeout is unknown",
        minimum=0.001,
    ),
    _item(
        "connect_observer_max_retries",
        _K.INT,
        3,
        "attempts to connect and log in to a backend before giving up",
        minimum=1,
        maximum=5,
    ),
    # -- congestion and health checks (obproxy_tx/ha/congestion.py, obproxy_tx/ha/health.py) --
    _item(
        "enable_congestion",
        _K.BOOL,
        True,
        "new server sessions avoid servers that failed congestion_failure_threshold times "
        "within congestion_fail_window, or failed the active check",
    ),
    _item(
        "congestion_failure_threshold",
        _K.INT,
        5,
        "connect failures (or refusals such as 1053, 1040, 8001) within "
        "congestion_fail_window that mark a server dead (or alive-congested); 0: never",
        minimum=0,
    ),
    _item(
        "congestion_fail_window",
        _K.DURATION,
        120.0,
        "the window in which congestion_failure_threshold failures are counted",
        minimum=0.001,
    ),
    _item(
        "congestion_retry_interval",
        _K.DURATION,
        20.0,
        "how long after its last failure a congested server gets one trial connection",
        minimum=0.001,
    ),
    _item(
        "min_keep_congestion_interval",
        _K.DURATION,
        20.0,
        "how long a congested server stays avoided at least, even if it answers sooner",
        minimum=0,
    ),
    _item(
        "server_detect_mode",
        _K.INT,
        0,
        "active health checks of the clusters' servers: 0 off, 1 servers in use or failing, "
        "2 every server (a connection and its greeting; a login and COM_PING as metadata_user "
        "when it is set)",
        minimum=0,
        maximum=2,
    ),
    _item(
        "server_detect_refresh_interval",
        _K.DURATION,
        1.0,
        "how often the active health check runs",
        minimum=0.01,
    ),
    _item(
        "server_detect_fail_threshold",
        _K.INT,
        3,
        "failed active checks in a row that take a server out until a check succeeds",
        minimum=1,
    ),
    _item(
        "detect_server_timeout",
        _K.DURATION,
        2.0,
        "how long one active check may take before it counts as failed",
        minimum=0.001,
    ),
    # -- safe retries (obproxy_tx/session/retry.py) --
    _item(
        "tunnel_request_size_threshold",
        _K.INT,
        8192,
        "requests larger than this many bytes are never sent to another server when their "
        "server cannot serve them or is lost (ODP's large request)",
        minimum=0,
        maximum=2**31 - 1,
    ),
    _item(
        "retry_lost_reads",
        _K.BOOL,
        True,
        "send a plain read (SELECT/SHOW without locking, INTO, assignment or unknown "
        "functions) outside a transaction again to another server when its server session is "
        "lost before any of its answer reached the client (ODP never does)",
    ),
    # -- limits and timeouts (obproxy_tx/session/limits.py) --
    _item(
        "user_max_connections",
        _K.INT,
        0,
        "most client sessions of one user (user, tenant and cluster) at once, unless the "
        "user's entry sets its own max_connections; 0 means no limit (over it: ERR 1203)",
        minimum=0,
        maximum=2**31 - 1,
    ),
    _item(
        "server_max_connections",
        _K.INT,
        0,
        "most server sessions to one backend server at once, counting those connecting, in "
        "use, bound to a client and pooled; at the cap a new one waits "
        "(server_session_wait_timeout); 0 means no limit",
        minimum=0,
        maximum=2**31 - 1,
    ),
    _item(
        "server_session_wait_timeout",
        _K.DURATION,
        10.0,
        "how long a request waits for a server session when its server is at "
        "server_max_connections before it fails with ERR 1040",
        minimum=0.001,
    ),
    _item(
        "net_read_timeout",
        _K.DURATION,
        30.0,
        "how long a client may stall in the middle of sending a packet before its connection "
        "closes, when its session's own net_read_timeout is unknown",
        minimum=0.001,
    ),
    _item(
        "net_write_timeout",
        _K.DURATION,
        60.0,
        "how long a client may leave an answer unread (the proxy cannot write to it) before "
        "its connection closes, when its session's own net_write_timeout is unknown",
        minimum=0.001,
    ),
    _item(
        "query_response_timeout",
        _K.DURATION,
        0.0,
        "MySQL clusters: how long a server may take to answer a request before the client "
        "gets ERR 1317 and its connection closes; 0 means no limit (OceanBase clusters use "
        "the session's ob_query_timeout plus observer_query_timeout_delta)",
        minimum=0,
    ),
    _item(
        "enable_session_pool_for_no_sharding",
        _K.BOOL,
        True,
        "keep the server sessions of clients that quit in a pool shared by later clients of "
        "the same backend user, reset before reuse (ODP's global session pool; ODP also needs "
        "is_pool_mode and defaults to false)",
    ),
    _item(
        "session_pool_default_max_conn",
        _K.INT,
        20,
        "most pooled idle server sessions per server and backend login; 0: no pool",
        minimum=0,
        maximum=100000,
    ),
    _item(
        "session_pool_max_total_conn",
        _K.INT,
        100,
        "most pooled idle server sessions in all; 0: no pool",
        minimum=0,
        maximum=1000000,
    ),
    _item(
        "session_pool_default_idle_timeout",
        _K.DURATION,
        1800.0,
        "how long a pooled server session may wait for a client before it is closed; 0: no pool",
        minimum=0,
        maximum=86400,
    ),
    _item(
        "session_pool_reset_command",
        _K.CHOICE,
        "auto",
        "how a pooled server session is reset before another client uses it: "
        "reset_connection (COM_RESET_CONNECTION), change_user (COM_CHANGE_USER to the same "
        "user, which also checks the account again), or auto: reset_connection for MySQL "
        "clusters, change_user for OceanBase ones (seekdb's COM_RESET_CONNECTION costs it more "
        "than a login)",
        choices=("auto", "reset_connection", "change_user"),
    ),
    # -- hostile clients (obproxy_tx/session/brute_force.py) --
    _item(
        "max_client_packet_size",
        _K.INT,
        1 << 30,
        "largest packet (payload bytes) a client may send; a packet announcing more is "
        "answered with ERR 1153 as soon as its header arrives and the connection closes "
        "(nothing is buffered for the announced size); default: the protocol's maximum, "
        "set it to the backends' max_allowed_packet to refuse what they would refuse anyway",
        minimum=1024,
        maximum=1 << 30,
    ),
    _item(
        "max_pending_logins_per_ip",
        _K.INT,
        256,
        "most connections of one client address that have not logged in yet (a slowloris "
        "holding client_max_connections); one more is answered with ERR 1040 at once and "
        "closed, counting towards nothing; 0 means no limit",
        minimum=0,
        maximum=2**31 - 1,
    ),
    _item(
        "login_failure_threshold",
        _K.INT,
        5,
        "failed logins from one client address (within login_failure_window) before every "
        "later login from that address is held (login_failure_delay); 0 turns it off",
        minimum=0,
        maximum=2**31 - 1,
    ),
    _item(
        "login_failure_delay",
        _K.DURATION,
        1.0,
        "how long a login from a throttled address is held, per failure over "
        "login_failure_threshold; held logins of one address take turns; one that would wait "
        "longer than client_login_timeout is refused with ERR 1129",
        minimum=0,
        maximum=3600.0,
    ),
    _item(
        "login_failure_max_delay",
        _K.DURATION,
        10.0,
        "the longest one held login's step lasts (login_failure_delay grows with the failures)",
        minimum=0,
        maximum=3600.0,
    ),
    _item(
        "login_failure_window",
        _K.DURATION,
        60.0,
        "a client address's failed logins are forgotten this long after its last one",
        minimum=0.001,
        maximum=86400.0,
    ),
    # -- read/write split (obproxy_tx/session/read_split.py, obproxy_tx/ha/replicas.py) --
    _item(
        "default_read_consistency",
        _K.CHOICE,
        "strong",
        "read consistency of a session whose user names none (ob_read_consistency): weak sends "
        "plain reads outside transactions to a healthy replica of the cluster, strong keeps "
        "everything on the primary servers",
        choices=("strong", "weak"),
    ),
    _item(
        "max_replica_lag",
        _K.DURATION,
        5.0,
        "a replica further behind its primary than this (Seconds_Behind_Master) gets no weak "
        "reads until it catches up; 0: no limit (only a stopped or broken replication takes "
        "it out)",
        minimum=0,
    ),
    _item(
        "replica_check_interval",
        _K.DURATION,
        1.0,
        "how often each replica's SHOW SLAVE STATUS is read through metadata_user",
        minimum=0.01,
    ),
    _item(
        "username_separator",
        _K.SEPARATOR,
        ":;-;.",
        "candidate separators of cluster<S>tenant<S>user login names, joined by ';'",
    ),
    _item(
        "enable_full_username",
        _K.BOOL,
        False,
        "refuse logins that do not name both tenant and cluster",
    ),
    _item(
        "obproxy_sys_password",
        _K.VERIFIER,
        b"",
        "verifier (*HEX) of the local admin root@proxysys; empty: empty password",
        sensitive=True,
        visible_level=VISIBLE_DBA,
    ),
    _item(
        "inspector_password",
        _K.VERIFIER,
        b"",
        "verifier (*HEX) of inspector@proxysys, which may only PING PROXY",
        sensitive=True,
        visible_level=VISIBLE_DBA,
    ),
    _item(
        "proxysys_allowed_networks",
        _K.NETWORKS,
        (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        "client networks root@proxysys and inspector@proxysys may log in from",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "skip_proxyro_check",
        _K.BOOL,
        False,
        "let clients log in as proxyro@sys, the metadata account",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "metadata_user",
        _K.STRING,
        "",
        "account the proxy uses to read user verifiers from a backend (learn_users)",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "metadata_password",
        _K.PASSWORD,
        "",
        "password of metadata_user",
        sensitive=True,
        visible_level=VISIBLE_DBA,
    ),
    # -- TLS (obproxy_tx/tls.py): no restart needed; new sessions take new files at once,
    # open ones keep theirs (ALTER PROXYCONFIG, SIGHUP) --
    _item(
        "enable_client_ssl",
        _K.BOOL,
        False,
        "offer TLS (1.2 or newer) to clients (needs client_ssl_cert and client_ssl_key)",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "client_ssl_cert",
        _K.STRING,
        "",
        "PEM certificate the proxy shows clients, its chain after it",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "client_ssl_key",
        _K.STRING,
        "",
        "PEM private key of client_ssl_cert",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "enable_server_ssl",
        _K.BOOL,
        False,
        "use TLS (1.2 or newer) to backend servers, before every login; a server that does "
        "not offer it is not used",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "server_ssl_ca",
        _K.STRING,
        "",
        "PEM CA certificates that backend certificates must chain to; empty: system trust",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "server_ssl_cert",
        _K.STRING,
        "",
        "PEM client certificate the proxy shows backend servers (with enable_server_ssl); "
        "empty: none",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "server_ssl_key",
        _K.STRING,
        "",
        "PEM private key of server_ssl_cert (empty: in the server_ssl_cert file)",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "server_ssl_identity",
        _K.STRING,
        "",
        "the DNS name or IP address every backend certificate must name; empty: the host of "
        "each server's own address",
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "enable_client_compression",
        _K.BOOL,
        False,
        "offer the MySQL compressed protocol to clients",
    ),
    _item(
        "proxy_peers",
        _K.ADDRESSES,
        (),
        "the other proxy nodes' channel addresses (their proxy_peer_listen), ip:port or Twisted "
        "client endpoint strings separated by ';': SHOW PROXYSESSION, SHOW PROCESSLIST and KILL "
        "then reach their sessions; this node's own address may be listed",
        need_reboot=True,
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "proxy_peer_listen",
        _K.ENDPOINT,
        "",
        "Twisted server endpoint string where this node answers other proxy nodes (e.g. "
        "tcp:2999:interface=10.0.0.5); empty: no other node can reach this one",
        need_reboot=True,
        visible_level=VISIBLE_SYS,
    ),
    _item(
        "proxy_cluster_secret",
        _K.PASSWORD,
        "",
        "secret shared by the proxy nodes, which each proves to the other before the channel "
        "serves it (it can kill sessions); required with proxy_peers or proxy_peer_listen",
        need_reboot=True,
        sensitive=True,
        visible_level=VISIBLE_DBA,
    ),
    _item(
        "altered_config_file",
        _K.STRING,
        "",
        "YAML file where ALTER PROXYCONFIG saves the items it changes, read again at start "
        "(after the -c file, before -o); relative to the -c file's directory; empty: "
        "<-c file>.altered.yaml, or nowhere without -c",
        need_reboot=True,
        visible_level=VISIBLE_SYS,
        # Saving where to save in the file it names would be circular.
        alterable=False,
    ),
]

ITEMS: Mapping[str, ConfigItem] = {item.name: item for item in _ITEM_LIST}
"""Every config item by name, in SHOW PROXYCONFIG order."""

_ROOTSERVICE_LIST = "rootservice_list"

_HINTS = {
    "port": "did you mean 'listen_port'?",
    "users": "users belong to a cluster: put them under clusters[N].users",
    "servers": "servers belong to a cluster: put them under clusters[N].servers (or use -r)",
    "cluster": "did you mean 'clusters' (a list)?",
    "password": "users hold verifiers, not passwords: write verifier: '*<40 hex digits>' as "
    "SELECT authentication_string FROM mysql.user shows it ('' for an empty password)",
    "user": "did you mean 'name'?",
    _ROOTSERVICE_LIST: "rootservice_list is a command-line setting (-r or -o); in the file, "
    "list servers under clusters[N].servers",
}


def _unknown_key(key: str, known: Iterable[str], *, list_known: bool) -> str:
    known = list(known)
    problem = f"unknown key {key!r}"
    if key in _HINTS:
        return f"{problem}; {_HINTS[key]}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"{problem}; did you mean {close[0]!r}?"
    if list_known:
        return f"{problem}; known keys: {', '.join(known)}"
    return f"{problem}; it is not a config item"


# --------------------------------------------------------------------------------------
# Clusters, servers, users


class ClusterType(Enum):
    """
    What kind of servers a cluster has.
    """

    OCEANBASE = "oceanbase"
    MYSQL = "mysql"


class LoginMode(Enum):
    """
    How the proxy logs in to a cluster's servers for a client.
    """

    VERIFIER = "verifier"
    """Check the client against a stored verifier, log in with the recovered SHA1(password)."""
    ODP_PROXY_SCRAMBLE = "odp_proxy_scramble"
    """Replay the client's login with ODP's connect attributes (OceanBase 4.x observers)."""


@attrs.frozen
class BackendServer:
    """
    One backend server.

    @ivar endpoint: a Twisted client endpoint string to connect with.
    @ivar host: the host, for TCP servers.
    @ivar port: the port, for TCP servers.
    """

    endpoint: str
    host: str | None = None
    port: int | None = None

    @property
    def address(self) -> str:
        """
        C{ip:port} (C{[v6]:port}) for TCP servers, the endpoint otherwise: the
        server part of the server session pool key.
        """
        if self.host is None or self.port is None:
            return self.endpoint
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.address


_CLIENT_ENDPOINT_TYPES = {"tcp", "tcp6", "tls", "ssl", "unix"}


def _split_endpoint(text: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _Invalid(f"{whole!r} has no valid port (1..65535)")
    return int(text)


def parse_server(text: str) -> BackendServer:
    """
    Parse a server given as C{ip:port}, C{host:port}, C{[ipv6]:port}, or a
    Twisted client endpoint string (C{tcp:host=h:port=p}, C{tls:...},
    C{unix:path=...}).

    @raise ValueError: the text is none of these; the message says why
        (configuration loading turns it into a L{ConfigError} naming the key).
    """
    whole = text
    text = text.strip()
    kind = text.split(":", 1)[0].lower()
    if kind in _CLIENT_ENDPOINT_TYPES and ":" in text:
        args = _split_endpoint(text)[1:]
        if kind == "unix":
            if not any(arg for arg in args):
                raise _Invalid(f"{whole!r} names no socket path")
            return BackendServer(text)
        positional = [arg for arg in args if "=" not in arg]
        keywords = dict(arg.split("=", 1) for arg in args if "=" in arg)
        host = keywords.get("host", positional[0] if positional else None)
        port_text = keywords.get("port", positional[1] if len(positional) > 1 else None)
        if not host or port_text is None:
            raise _Invalid(f"{whole!r} needs a host and a port")
        return BackendServer(text, host, _port(port_text, whole))
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\w+)|([^:\s\[\]]+):(\w+)", text)
    if not match:
        raise _Invalid(
            f"expected 'ip:port' or a Twisted endpoint string such as 'tcp:host=h:port=p', "
            f"got {whole!r}"
        )
    host = match.group(1) or match.group(3)
    port = _port(match.group(2) or match.group(4), whole)
    escaped = host.replace(":", "\\:")
    return BackendServer(f"tcp:host={escaped}:port={port}", host, port)


@attrs.frozen
class UserEntry:
    """
    A user the proxy can authenticate itself.

    @ivar name: the user name.
    @ivar tenant: the tenant.
    @ivar verifier: C{SHA1(SHA1(password))}, 20 bytes, or empty for an empty password.
    @ivar max_connections: most client sessions of this user at once (0: the
        C{user_max_connections} item applies).
    @ivar read_consistency: C{"weak"} or C{"strong"}, the user's sessions' read consistency
        until they set C{ob_read_consistency}; C{None}: C{default_read_consistency}.
    @ivar require_ssl: the user logs in over TLS only (as C{REQUIRE SSL}); over plain
        text it is refused as a wrong password is.
    """

    name: str
    tenant: str
    verifier: bytes = attrs.field(repr=False)
    max_connections: int = 0
    read_consistency: str | None = None
    require_ssl: bool = False


@attrs.frozen
class ClusterConfig:
    """
    One cluster: its servers, its users and how to log in to it.

    @ivar name: the name clients use after C{#}.
    @ivar type: oceanbase or mysql.
    @ivar servers: the servers, in order.
    @ivar default_tenant: the tenant of a login that names none.
    @ivar cluster_id: the cluster id, when clients may name it after C{:}.
    @ivar login_mode: how the proxy logs in to the servers.
    @ivar users: users with their verifiers.
    @ivar learn_users: read unknown users' verifiers from the servers through
        the metadata account.
    @ivar replicas: read-only copies of the servers (replication replicas):
        weak reads may go there, nothing else does.
    """

    name: str
    type: ClusterType = ClusterType.OCEANBASE
    servers: tuple[BackendServer, ...] = ()
    default_tenant: str = DEFAULT_TENANT
    cluster_id: int | None = None
    login_mode: LoginMode = LoginMode.VERIFIER
    users: tuple[UserEntry, ...] = ()
    learn_users: bool = False
    replicas: tuple[BackendServer, ...] = ()

    def find_user(self, name: str, tenant: str) -> UserEntry | None:
        """
        The configured user C{name} of C{tenant}, or L{None}.
        """
        for user in self.users:
            if user.name == name and user.tenant == tenant:
                return user
        return None


# --------------------------------------------------------------------------------------
# The whole configuration


def _item_field(name: str) -> Any:
    return attrs.field(default=ITEMS[name].default)


@attrs.frozen
class ProxyConfig:
    """
    The whole configuration: clusters plus one attribute per L{ConfigItem}
    (same name). Build it with L{load_config} or L{parse_config}; change it with
    L{set_item} or L{apply_overrides}, which check the result.

    @ivar clusters: the clusters; the first is the default cluster.
    @ivar source: the file the configuration came from.
    @ivar origins: for each key path, where its value came from (used in
        error messages about combinations of values).
    @ivar store_path: the absolute path of the file where ALTER PROXYCONFIG
        saves changed items (see L{obproxy_tx.config_store}), or C{""} when
        there is none (no C{-c} file and no C{altered_config_file}).
    """

    clusters: tuple[ClusterConfig, ...] = ()
    listen_port: int = _item_field("listen_port")
    local_bound_ip: str = _item_field("local_bound_ip")
    listen: str = _item_field("listen")
    syslog_level: str = _item_field("syslog_level")
    enable_prometheus: bool = _item_field("enable_prometheus")
    prometheus_listen_port: int = _item_field("prometheus_listen_port")
    log_format: str = _item_field("log_format")
    slow_query_log_file: str = _item_field("slow_query_log_file")
    slow_query_time_threshold: float = _item_field("slow_query_time_threshold")
    audit_log_file: str = _item_field("audit_log_file")
    query_log_rotate_size: int = _item_field("query_log_rotate_size")
    query_log_max_files: int = _item_field("query_log_max_files")
    proxy_id: int = _item_field("proxy_id")
    client_session_id_version: int = _item_field("client_session_id_version")
    work_thread_num: int = _item_field("work_thread_num")
    graceful_shutdown_timeout: float = _item_field("graceful_shutdown_timeout")
    proxy_service_mode: str = _item_field("proxy_service_mode")
    client_max_connections: int = _item_field("client_max_connections")
    mysql_version: str = _item_field("mysql_version")
    client_login_timeout: float = _item_field("client_login_timeout")
    short_async_task_timeout: float = _item_field("short_async_task_timeout")
    observer_query_timeout_delta: float = _item_field("observer_query_timeout_delta")
    default_inactivity_timeout: float = _item_field("default_inactivity_timeout")
    connect_observer_max_retries: int = _item_field("connect_observer_max_retries")
    enable_congestion: bool = _item_field("enable_congestion")
    congestion_failure_threshold: int = _item_field("congestion_failure_threshold")
    congestion_fail_window: float = _item_field("congestion_fail_window")
    congestion_retry_interval: float = _item_field("congestion_retry_interval")
    min_keep_congestion_interval: float = _item_field("min_keep_congestion_interval")
    server_detect_mode: int = _item_field("server_detect_mode")
    server_detect_refresh_interval: float = _item_field("server_detect_refresh_interval")
    server_detect_fail_threshold: int = _item_field("server_detect_fail_threshold")
    detect_server_timeout: float = _item_field("detect_server_timeout")
    tunnel_request_size_threshold: int = _item_field("tunnel_request_size_threshold")
    retry_lost_reads: bool = _item_field("retry_lost_reads")
    user_max_connections: int = _item_field("user_max_connections")
    server_max_connections: int = _item_field("server_max_connections")
    server_session_wait_timeout: float = _item_field("server_session_wait_timeout")
    max_client_packet_size: int = _item_field("max_client_packet_size")
    max_pending_logins_per_ip: int = _item_field("max_pending_logins_per_ip")
    login_failure_threshold: int = _item_field("login_failure_threshold")
    login_failure_delay: float = _item_field("login_failure_delay")
    login_failure_max_delay: float = _item_field("login_failure_max_delay")
    login_failure_window: float = _item_field("login_failure_window")
    net_read_timeout: float = _item_field("net_read_timeout")
    net_write_timeout: float = _item_field("net_write_timeout")
    query_response_timeout: float = _item_field("query_response_timeout")
    enable_session_pool_for_no_sharding: bool = _item_field("enable_session_pool_for_no_sharding")
    session_pool_default_max_conn: int = _item_field("session_pool_default_max_conn")
    session_pool_max_total_conn: int = _item_field("session_pool_max_total_conn")
    session_pool_default_idle_timeout: float = _item_field("session_pool_default_idle_timeout")
    session_pool_reset_command: str = _item_field("session_pool_reset_command")
    default_read_consistency: str = _item_field("default_read_consistency")
    max_replica_lag: float = _item_field("max_replica_lag")
    replica_check_interval: float = _item_field("replica_check_interval")
    username_separator: str = _item_field("username_separator")
    enable_full_username: bool = _item_field("enable_full_username")
    obproxy_sys_password: bytes = attrs.field(default=b"", repr=False)
    inspector_password: bytes = attrs.field(default=b"", repr=False)
    proxysys_allowed_networks: Networks = _item_field("proxysys_allowed_networks")
    skip_proxyro_check: bool = _item_field("skip_proxyro_check")
    metadata_user: str = _item_field("metadata_user")
    metadata_password: str = attrs.field(default="", repr=False)
    enable_client_ssl: bool = _item_field("enable_client_ssl")
    client_ssl_cert: str = _item_field("client_ssl_cert")
    client_ssl_key: str = _item_field("client_ssl_key")
    enable_server_ssl: bool = _item_field("enable_server_ssl")
    server_ssl_ca: str = _item_field("server_ssl_ca")
    server_ssl_cert: str = _item_field("server_ssl_cert")
    server_ssl_key: str = _item_field("server_ssl_key")
    server_ssl_identity: str = _item_field("server_ssl_identity")
    enable_client_compression: bool = _item_field("enable_client_compression")
    proxy_peers: tuple[str, ...] = _item_field("proxy_peers")
    proxy_peer_listen: str = _item_field("proxy_peer_listen")
    proxy_cluster_secret: str = attrs.field(default="", repr=False)
    altered_config_file: str = _item_field("altered_config_file")
    source: str = attrs.field(default="<defaults>", eq=False)
    store_path: str = attrs.field(default="", eq=False)
    origins: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def default_cluster(self) -> ClusterConfig:
        """
        The first configured cluster, used when a login names none.

        @raise LookupError: no cluster is configured (L{check_config} refuses that).
        """
        if not self.clusters:
            raise LookupError("no cluster is configured")
        return self.clusters[0]

    def cluster(self, name: str) -> ClusterConfig | None:
        """
        The cluster called C{name}, or L{None}.
        """
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        return None

    @property
    def listen_endpoint(self) -> str:
        """
        The Twisted server endpoint string of the SQL port: C{listen} if set,
        else C{tcp:<listen_port>:interface=<local_bound_ip>}.
        """
        if self.listen:
            return self.listen
        interface = self.local_bound_ip.replace(":", "\\:")
        return f"tcp:{self.listen_port}:interface={interface}"

    def item_value(self, name: str) -> Any:
        """
        The current value of config item C{name}.

        @raise KeyError: there is no such item.
        """
        if name not in ITEMS:
            raise KeyError(name)
        return getattr(self, name)

    def client_session_id_layout(self, upgrade_bit: int = 0) -> ClientSessionIdLayout:
        """
        The C{cs_id} layout these items describe (C{client_session_id_version},
        C{proxy_id}, C{work_thread_num}).

        @param upgrade_bit: the hot-upgrade generation bit.
        """
        return ClientSessionIdLayout(
            self.client_session_id_version,
            proxy_id=self.proxy_id,
            upgrade_bit=upgrade_bit,
            worker_count=self.work_thread_num,
        )

    def proxysys_allowed(self, client_ip: str) -> bool:
        """
        Whether C{root@proxysys} may log in from C{client_ip}
        (C{proxysys_allowed_networks}).
        """
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.proxysys_allowed_networks)


# --------------------------------------------------------------------------------------
# Reading YAML into a ProxyConfig


@attrs.define
class _Reader:
    """Walks the loaded YAML, turning problems into ConfigErrors with lines."""

    source: str
    origins: dict[str, str] = attrs.field(factory=dict)

    def where(self, line: int | None) -> str:
        return f"{self.source}, line {line}" if line else self.source

    def fail(self, problem: str, path: str, line: int | None) -> ConfigError:
        return ConfigError(problem, origin=self.where(line), path=path)

    def mapping(
        self, value: object, path: str, line: int | None, known: Sequence[str], what: str
    ) -> _Mapping:
        if not isinstance(value, _Mapping):
            raise self.fail(f"expected {what} (a mapping), got {_describe(value)}", path, line)
        for key in value:
            if key not in known:
                raise self.fail(
                    _unknown_key(key, known, list_known=True), _join(path, key), value.lines[key]
                )
        return value

    def note(self, path: str, line: int | None) -> None:
        self.origins[path] = self.where(line)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


_CLUSTER_KEYS = (
    "name",
    "type",
    "servers",
    "default_tenant",
    "cluster_id",
    "login_mode",
    "users",
    "learn_users",
    "replicas",
)
_USER_KEYS = ("name", "tenant", "verifier", "max_connections", "read_consistency", "require_ssl")
_SERVER_KEYS = ("address", "role")
#: The roles a server may have: primaries take everything, replicas only weak reads.
SERVER_ROLES = ("primary", "replica")
_READ_CONSISTENCIES = ("strong", "weak")
_NAME_RE = re.compile(r"[^\s@#:]+\Z")


def _read_name(reader: _Reader, value: object, path: str, line: int, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise reader.fail(
            f"expected a {what} name without blanks, '@', '#' or ':', got {_describe(value)}",
            path,
            line,
        )
    return value


def _read_enum(reader: _Reader, value: object, enum: type[Enum], path: str, line: int) -> Any:
    choices = [member.value for member in enum]
    if value not in choices:
        raise reader.fail(
            f"expected one of {', '.join(choices)}, got {_describe(value)}", path, line
        )
    return enum(value)


def _read_servers(
    reader: _Reader, value: object, path: str, line: int
) -> tuple[BackendServer, ...]:
    """
    The servers of a list of plain C{ip:port} (endpoint) strings (C{replicas}).
    """
    return tuple(server for server, _ in _read_server_roles(reader, value, path, line, False))


def _read_server_roles(
    reader: _Reader, value: object, path: str, line: int, roles: bool = True
) -> list[tuple[BackendServer, str]]:
    """
    The servers of a C{servers} list with their roles: entries are strings (primaries) or,
    with C{roles}, mappings C{{address: ..., role: primary|replica}}.
    """
    if isinstance(value, str):
        value_list: list[object] = [value]
        lines = [line]
    elif isinstance(value, _Sequence):
        value_list, lines = list(value), value.lines
    else:
        raise reader.fail(
            f"expected a list of 'ip:port' strings, got {_describe(value)}", path, line
        )
    servers: list[tuple[BackendServer, str]] = []
    for index, (item, item_line) in enumerate(zip(value_list, lines)):
        item_path = _join(path, index)
        role = "primary"
        address_path, address_line = item_path, item_line
        if roles and isinstance(item, _Mapping):
            entry = reader.mapping(item, item_path, item_line, _SERVER_KEYS, "a server")
            if "address" not in entry:
                raise reader.fail(
                    "a server written as a mapping needs 'address' ('ip:port')",
                    item_path,
                    entry.line,
                )
            if "role" in entry:
                role = entry["role"]
                if role not in SERVER_ROLES:
                    raise reader.fail(
                        f"expected a role of {' or '.join(SERVER_ROLES)}, got {_describe(role)}",
                        _join(item_path, "role"),
                        entry.lines["role"],
                    )
            address_path = _join(item_path, "address")
            address_line = entry.lines["address"]
            item = entry["address"]
        if not isinstance(item, str):
            expected = "'ip:port' or an endpoint string (quote it)"
            if roles:
                expected += ", or {address: 'ip:port', role: replica}"
            raise reader.fail(
                f"expected {expected}, got {_describe(item)}", address_path, address_line
            )
        try:
            servers.append((parse_server(item), role))
        except _Invalid as e:
            raise reader.fail(e.problem, address_path, address_line) from None
        reader.note(item_path, item_line)
    return servers


def _read_users(
    reader: _Reader, value: object, path: str, line: int, default_tenant: str
) -> tuple[UserEntry, ...]:
    if not isinstance(value, _Sequence):
        raise reader.fail(f"expected a list of users, got {_describe(value)}", path, line)
    users = []
    for index, item in enumerate(value):
        user_path = _join(path, index)
        entry = reader.mapping(item, user_path, value.lines[index], _USER_KEYS, "a user")
        reader.note(user_path, entry.line)
        for key in ("name", "verifier"):
            if key not in entry:
                raise reader.fail(f"a user needs {key!r}", user_path, entry.line)
        name = entry["name"]
        if not isinstance(name, str) or name == "" or any(c in name for c in "@#"):
            raise reader.fail(
                f"expected a user name without '@' or '#', got {_describe(name)}",
                _join(user_path, "name"),
                entry.lines["name"],
            )
        tenant = default_tenant
        if "tenant" in entry:
            tenant = _read_name(
                reader, entry["tenant"], _join(user_path, "tenant"), entry.lines["tenant"], "tenant"
            )
        raw_verifier = entry["verifier"]
        verifier_path = _join(user_path, "verifier")
        if raw_verifier is None:
            raw_verifier = ""
        if not isinstance(raw_verifier, str):
            raise reader.fail(
                f"expected a verifier string '*<40 hex digits>', got {_describe(raw_verifier)}",
                verifier_path,
                entry.lines["verifier"],
            )
        try:
            verifier = _parse_verifier_text(raw_verifier.strip())
        except _Invalid as e:
            raise reader.fail(e.problem, verifier_path, entry.lines["verifier"]) from None
        max_connections = 0
        if "max_connections" in entry:
            max_connections = entry["max_connections"]
            if (
                isinstance(max_connections, bool)
                or not isinstance(max_connections, int)
                or max_connections < 0
            ):
                raise reader.fail(
                    f"expected a number of connections (0: no own limit), "
                    f"got {_describe(max_connections)}",
                    _join(user_path, "max_connections"),
                    entry.lines["max_connections"],
                )
        consistency = None
        if entry.get("read_consistency") is not None:
            consistency = entry["read_consistency"]
            if not isinstance(consistency, str) or consistency.lower() not in _READ_CONSISTENCIES:
                raise reader.fail(
                    f"expected weak or strong, got {_describe(consistency)}",
                    _join(user_path, "read_consistency"),
                    entry.lines["read_consistency"],
                )
            consistency = consistency.lower()
        require_ssl = entry.get("require_ssl", False)
        if not isinstance(require_ssl, bool):
            raise reader.fail(
                f"expected true or false, got {_describe(require_ssl)}",
                _join(user_path, "require_ssl"),
                entry.lines["require_ssl"],
            )
        users.append(UserEntry(name, tenant, verifier, max_connections, consistency, require_ssl))
    return tuple(users)


def _read_cluster(reader: _Reader, value: object, path: str, line: int) -> ClusterConfig:
    entry = reader.mapping(value, path, line, _CLUSTER_KEYS, "a cluster")
    reader.note(path, entry.line)
    if "name" not in entry:
        raise reader.fail("a cluster needs a 'name'", path, entry.line)
    for key, key_line in entry.lines.items():
        reader.note(_join(path, key), key_line)
    lines = entry.lines
    name = _read_name(reader, entry["name"], _join(path, "name"), lines["name"], "cluster")
    kwargs: dict[str, Any] = {"name": name}
    if "type" in entry:
        kwargs["type"] = _read_enum(
            reader, entry["type"], ClusterType, _join(path, "type"), lines["type"]
        )
    if "login_mode" in entry:
        kwargs["login_mode"] = _read_enum(
            reader, entry["login_mode"], LoginMode, _join(path, "login_mode"), lines["login_mode"]
        )
    replicas: list[BackendServer] = []
    if "servers" in entry and entry["servers"] is not None:
        listed = _read_server_roles(
            reader, entry["servers"], _join(path, "servers"), lines["servers"]
        )
        kwargs["servers"] = tuple(server for server, role in listed if role == "primary")
        replicas.extend(server for server, role in listed if role == "replica")
    if "replicas" in entry and entry["replicas"] is not None:
        replicas.extend(
            _read_servers(reader, entry["replicas"], _join(path, "replicas"), lines["replicas"])
        )
    if replicas:
        kwargs["replicas"] = tuple(replicas)
    default_tenant = DEFAULT_TENANT
    if "default_tenant" in entry:
        default_tenant = _read_name(
            reader,
            entry["default_tenant"],
            _join(path, "default_tenant"),
            lines["default_tenant"],
            "tenant",
        )
        kwargs["default_tenant"] = default_tenant
    if "cluster_id" in entry and entry["cluster_id"] is not None:
        cluster_id = entry["cluster_id"]
        if isinstance(cluster_id, bool) or not isinstance(cluster_id, int) or cluster_id < 0:
            raise reader.fail(
                f"expected a non-negative integer, got {_describe(cluster_id)}",
                _join(path, "cluster_id"),
                lines["cluster_id"],
            )
        kwargs["cluster_id"] = cluster_id
    if "learn_users" in entry:
        if not isinstance(entry["learn_users"], bool):
            raise reader.fail(
                f"expected true or false, got {_describe(entry['learn_users'])}",
                _join(path, "learn_users"),
                lines["learn_users"],
            )
        kwargs["learn_users"] = entry["learn_users"]
    if "users" in entry and entry["users"] is not None:
        kwargs["users"] = _read_users(
            reader, entry["users"], _join(path, "users"), lines["users"], default_tenant
        )
    return ClusterConfig(**kwargs)


def _read_document(reader: _Reader, document: object) -> ProxyConfig:
    if document is None:
        raise reader.fail("the file is empty; it needs at least 'clusters'", "", None)
    if not isinstance(document, _Mapping):
        raise reader.fail(
            f"expected a mapping of config items at the top, got {_describe(document)}", "", 1
        )
    values: dict[str, Any] = {}
    for key, value in document.items():
        line = document.lines[key]
        if key == "clusters":
            reader.note(key, line)
            if not isinstance(value, _Sequence):
                raise reader.fail(f"expected a list of clusters, got {_describe(value)}", key, line)
            values["clusters"] = tuple(
                _read_cluster(reader, item, _join(key, index), value.lines[index])
                for index, item in enumerate(value)
            )
            continue
        item = ITEMS.get(key)
        if item is None:
            known = ["clusters", *ITEMS]
            raise reader.fail(_unknown_key(key, known, list_known=False), key, line)
        try:
            values[key] = item.from_yaml(value)
        except _Invalid as e:
            raise reader.fail(e.problem, key, line) from None
        reader.note(key, line)
    return ProxyConfig(**values, source=reader.source, origins=reader.origins)


def read_item_texts(text: str, source: str) -> dict[str, tuple[Any, str]]:
    """
    Read a YAML mapping of config items only (no C{clusters}), as
    L{obproxy_tx.config_store} saves them: each value is text as C{-o} and
    ALTER PROXYCONFIG take it, or a YAML scalar typed as in the main file.

    @param text: the YAML text.
    @param source: the file name, for messages and origins.
    @return: C{{name: (value, origin)}} in file order, values converted to
        their Python form; an empty document gives C{{}}.
    @raise ConfigError: bad YAML, not a mapping, an unknown item, a bad value
        (messages never repeat a sensitive item's value).
    """
    reader = _Reader(source)
    document = _load_yaml(reader, text)
    if document is None:
        return {}
    if not isinstance(document, _Mapping):
        raise reader.fail(f"expected a mapping of config items, got {_describe(document)}", "", 1)
    values: dict[str, tuple[Any, str]] = {}
    for key, value in document.items():
        line = document.lines[key]
        item = ITEMS.get(key)
        if item is None:
            raise reader.fail(_unknown_key(key, ITEMS, list_known=False), key, line)
        try:
            converted = item.from_text(value) if isinstance(value, str) else item.from_yaml(value)
        except _Invalid as e:
            raise reader.fail(e.problem, key, line) from None
        values[key] = (converted, reader.where(line))
    return values


def with_item_values(config: ProxyConfig, values: Mapping[str, tuple[Any, str]]) -> ProxyConfig:
    """
    Set already converted item values (as L{read_item_texts} returns them)
    without checking how they combine.

    @param config: the configuration.
    @param values: C{{name: (value, origin)}}.
    @return: the new configuration.
    """
    if not values:
        return config
    origins = {**config.origins, **{name: origin for name, (_, origin) in values.items()}}
    changes = {name: value for name, (value, _) in values.items()}
    return attrs.evolve(config, **changes, origins=origins)


def _load_yaml(reader: _Reader, text: str) -> Any:
    """
    @return: the YAML document in C{text} (mappings remember their lines).
    @raise ConfigError: the text is not YAML, naming the line and the problem.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(part for part in (e.context, e.problem) if part)
        raise reader.fail(f"invalid YAML: {problem}", "", line) from None
    except yaml.YAMLError as e:
        raise reader.fail(f"invalid YAML: {e}", "", None) from None


def _parse_unchecked(text: str, source: str) -> ProxyConfig:
    reader = _Reader(source)
    document = _load_yaml(reader, text)
    return _read_document(reader, document)


# --------------------------------------------------------------------------------------
# Whole-configuration checks


def _origin_of(config: ProxyConfig, path: str) -> str:
    """
    Where the value at C{path} came from, or its nearest recorded ancestor
    (a key left out of a cluster is reported at the cluster's line).
    """
    probe = path
    while probe:
        if probe in config.origins:
            return config.origins[probe]
        shorter = re.sub(r"(\.[^.\[]*|\[\d+\])\Z", "", probe)
        if shorter == probe:
            break
        probe = shorter
    return config.source


def _fail_at(config: ProxyConfig, problem: str, path: str) -> ConfigError:
    return ConfigError(problem, origin=_origin_of(config, path), path=path)


def check_config(config: ProxyConfig) -> ProxyConfig:
    """
    Check what single values cannot show: clusters and servers present, unique
    names, combinations of items, TLS files present.

    @return: C{config} itself, so calls chain.
    @raise ConfigError: the first problem found, naming the key and where its
        value came from.
    """
    if not config.clusters:
        raise _fail_at(config, "at least one cluster is needed", "clusters")
    seen: dict[str, int] = {}
    for index, cluster in enumerate(config.clusters):
        path = f"clusters[{index}]"
        if cluster.name in seen:
            raise _fail_at(
                config,
                f"duplicate cluster name {cluster.name!r} (also clusters[{seen[cluster.name]}])",
                f"{path}.name",
            )
        seen[cluster.name] = index
        if not cluster.servers:
            raise _fail_at(
                config,
                f"cluster {cluster.name!r} has no servers; list them here or give "
                "-r 'ip:port;ip:port'"
                + (
                    " (it has only replicas: writes need a server with role primary)"
                    if cluster.replicas
                    else ""
                ),
                f"{path}.servers",
            )
        primaries = {server.address for server in cluster.servers}
        for replica in cluster.replicas:
            if replica.address in primaries:
                raise _fail_at(
                    config,
                    f"{replica.address} is listed both as a primary and as a replica",
                    f"{path}.servers",
                )
        if cluster.replicas and not config.metadata_user:
            raise _fail_at(
                config,
                "replicas are watched with SHOW SLAVE STATUS as metadata_user: set "
                "metadata_user and metadata_password (an account with SLAVE MONITOR or "
                "REPLICATION CLIENT)",
                f"{path}.servers",
            )
        if cluster.login_mode is LoginMode.ODP_PROXY_SCRAMBLE and (
            cluster.type is not ClusterType.OCEANBASE
        ):
            raise _fail_at(
                config,
                "odp_proxy_scramble works only with type oceanbase (observers check "
                "__proxy_scramble); use login_mode verifier",
                f"{path}.login_mode",
            )
        if cluster.learn_users and not config.metadata_user:
            raise _fail_at(
                config,
                "learn_users needs metadata_user and metadata_password (in the file or as "
                "-o metadata_user=NAME,metadata_password=PW)",
                f"{path}.learn_users",
            )
        users: dict[tuple[str, str], int] = {}
        for user_index, user in enumerate(cluster.users):
            key = (user.name, user.tenant)
            if key in users:
                raise _fail_at(
                    config,
                    f"duplicate user {user.name}@{user.tenant} (also users[{users[key]}])",
                    f"{path}.users[{user_index}]",
                )
            users[key] = user_index
    if 0 < config.server_max_connections < config.work_thread_num:
        raise _fail_at(
            config,
            f"server_max_connections {config.server_max_connections} is split among the "
            f"{config.work_thread_num} worker processes (work_thread_num), each needing one at "
            "least: use 0 (no cap) or at least work_thread_num",
            "server_max_connections",
        )
    if config.client_session_id_version == 1 and config.proxy_id > 255:
        raise _fail_at(
            config,
            f"{config.proxy_id} does not fit client_session_id_version 1 (at most 255); "
            "use client_session_id_version 2 or a smaller proxy_id",
            "proxy_id",
        )
    if (config.proxy_peers or config.proxy_peer_listen) and not config.proxy_cluster_secret:
        raise _fail_at(
            config,
            "the channel between proxy nodes can kill sessions, so it needs a shared secret: "
            "set proxy_cluster_secret (the same on every node)",
            "proxy_peers" if config.proxy_peers else "proxy_peer_listen",
        )
    if (
        config.enable_prometheus
        and not config.listen
        and config.listen_port != 0
        and config.prometheus_listen_port == config.listen_port
    ):
        raise _fail_at(
            config, f"port {config.listen_port} is also the listen_port", "prometheus_listen_port"
        )
    if config.enable_client_ssl:
        for name in ("client_ssl_cert", "client_ssl_key"):
            if not getattr(config, name):
                raise _fail_at(
                    config, f"enable_client_ssl needs {name} (a PEM file)", "enable_client_ssl"
                )
    if config.server_ssl_key and not config.server_ssl_cert:
        raise _fail_at(
            config, "server_ssl_key is the key of server_ssl_cert: set that too", "server_ssl_key"
        )
    for name in (
        "client_ssl_cert",
        "client_ssl_key",
        "server_ssl_ca",
        "server_ssl_cert",
        "server_ssl_key",
    ):
        path_value = getattr(config, name)
        if path_value and not os.path.isfile(path_value):
            raise _fail_at(config, f"no such file: {path_value!r}", name)
    return config


# --------------------------------------------------------------------------------------
# Public entry points


def set_item(config: ProxyConfig, name: str, text: str, *, origin: str) -> ProxyConfig:
    """
    Set config item C{name} from text, as C{-o name=value} and ALTER
    PROXYCONFIG do, and check the result.

    @param config: the current configuration.
    @param name: the item's name.
    @param text: the new value as text.
    @param origin: where the change comes from, for messages (e.g.
        C{"ALTER PROXYCONFIG"}).
    @return: the new configuration; C{config} itself is unchanged.
    @raise ConfigError: unknown item (with a did-you-mean), bad value, or a
        combination L{check_config} refuses.
    """
    return check_config(_set_item_unchecked(config, name, text, origin=origin))


def _set_item_unchecked(config: ProxyConfig, name: str, text: str, *, origin: str) -> ProxyConfig:
    """
    Set config item C{name} from text, checking the value alone but not how it
    combines with the other items (several overrides are checked together once).
    """
    item = ITEMS.get(name)
    if item is None:
        raise ConfigError(_unknown_key(name, ITEMS, list_known=False), origin=origin, path=name)
    try:
        value = item.from_text(text)
    except _Invalid as e:
        raise ConfigError(e.problem, origin=origin, path=name) from None
    origins = {**config.origins, name: origin}
    return attrs.evolve(config, **{name: value}, origins=origins)


def _split_options(text: str) -> list[str]:
    """
    Split C{-o} text into C{name=value} pairs at commas that start a new
    C{name=}, so values may contain other commas.
    """
    return [piece for piece in re.split(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)", text) if piece]


def _with_rootservice_list(config: ProxyConfig, text: str, origin: str) -> ProxyConfig:
    path = "clusters[0].servers"
    if not config.clusters:
        raise ConfigError(
            "there is no cluster whose servers it could set; add one under 'clusters'",
            origin=origin,
        )
    pieces = [piece.strip() for piece in text.split(";") if piece.strip()]
    if not pieces:
        raise ConfigError("expected 'ip:port;ip:port', got nothing", origin=origin, path=path)
    servers = []
    for piece in pieces:
        try:
            servers.append(parse_server(piece))
        except _Invalid as e:
            raise ConfigError(e.problem, origin=origin, path=path) from None
    first = attrs.evolve(config.clusters[0], servers=tuple(servers))
    origins = {key: value for key, value in config.origins.items() if not key.startswith(path)}
    origins[path] = origin
    return attrs.evolve(config, clusters=(first, *config.clusters[1:]), origins=origins)


def _apply_overrides_unchecked(
    config: ProxyConfig,
    *,
    listen_port: str | int | None = None,
    rootservice_list: str | None = None,
    options: Sequence[str] = (),
) -> ProxyConfig:
    """
    Apply the command-line overrides (see L{apply_overrides}) without checking
    how the result combines.
    """
    if listen_port is not None:
        origin = f"command line -p {listen_port}"
        config = _set_item_unchecked(config, "listen_port", str(listen_port), origin=origin)
        config = attrs.evolve(config, listen="")
    if rootservice_list is not None:
        config = _with_rootservice_list(
            config, rootservice_list, f"command line -r {rootservice_list}"
        )
    for option in options:
        for pair in _split_options(option):
            name, equals, value = pair.partition("=")
            name = name.strip()
            if not equals or not name:
                raise ConfigError(
                    f"expected name=value, got {pair!r}", origin=f"command line -o {option}"
                )
            origin = f"command line -o {name}={value}"
            if ITEMS.get(name) is not None and ITEMS[name].sensitive:
                origin = f"command line -o {name}=..."
            if name == _ROOTSERVICE_LIST:
                config = _with_rootservice_list(config, value, origin)
            else:
                config = _set_item_unchecked(config, name, value, origin=origin)
    return config


def _settle(
    config: ProxyConfig,
    *,
    listen_port: str | int | None,
    rootservice_list: str | None,
    options: Sequence[str],
    saved: bool,
    config_file: str | None,
) -> ProxyConfig:
    """
    Finish a configuration read from a file (or built in): the items ALTER
    PROXYCONFIG saved, then the command line, then the whole-configuration
    check. This is ODP's precedence: command line over saved over file.
    """
    if saved:
        # config_store builds on this module; importing it here, when it is
        # used, keeps the import graph one-way at module level.
        from obproxy_tx import config_store

        # Where the saved items live may itself come from -o
        # altered_config_file, so look at the overridden value first.
        probe = _apply_overrides_unchecked(
            config, listen_port=listen_port, rootservice_list=rootservice_list, options=options
        )
        path = config_store.store_path_for(config_file, probe.altered_config_file)
        if path:
            config = config_store.apply_saved(config, path)
        config = attrs.evolve(config, store_path=path)
    config = _apply_overrides_unchecked(
        config, listen_port=listen_port, rootservice_list=rootservice_list, options=options
    )
    # Checked once, after every override: -o metadata_user=... may be what makes
    # an earlier -p (or the file's learn_users) valid.
    return check_config(config)


def apply_overrides(
    config: ProxyConfig,
    *,
    listen_port: str | int | None = None,
    rootservice_list: str | None = None,
    options: Sequence[str] = (),
    saved: bool = False,
) -> ProxyConfig:
    """
    Apply ODP-style command-line overrides, then check the result as a whole.

    @param listen_port: C{-p PORT}: sets C{listen_port} and clears C{listen},
        since the command line wins over an endpoint string in the file.
    @param rootservice_list: C{-r "ip:port;ip:port"}: replaces the servers of
        the default (first) cluster.
    @param options: each C{-o} argument, C{name=value[,name=value]}; values
        are coerced to the item's type. A comma followed by C{name=} starts the
        next pair, so other commas may appear in values. The name
        C{rootservice_list} works as C{-r} does.
    @param saved: first apply the items ALTER PROXYCONFIG saved in the file
        C{altered_config_file} names (relative to the working directory), if
        it names one (what C{twistd obproxy} without C{-c} does).
    @return: the new configuration.
    @raise ConfigError: naming the option, the item and the problem.
    """
    return _settle(
        config,
        listen_port=listen_port,
        rootservice_list=rootservice_list,
        options=options,
        saved=saved,
        config_file=None,
    )


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    listen_port: str | int | None = None,
    rootservice_list: str | None = None,
    options: Sequence[str] = (),
    saved: bool = True,
) -> ProxyConfig:
    """
    Parse YAML text, apply the saved items of C{altered_config_file} if the
    text or an override names one, apply command-line overrides (see
    L{apply_overrides}) and check the result.

    @param source: the name messages use for the text, normally its file name.
    @param saved: whether to apply saved items at all.
    @raise ConfigError: any problem, naming file, line, key and problem.
    """
    config = _parse_unchecked(text, source)
    return _settle(
        config,
        listen_port=listen_port,
        rootservice_list=rootservice_list,
        options=options,
        saved=saved,
        config_file=None,
    )


def load_config(
    path: str | os.PathLike[str],
    *,
    listen_port: str | int | None = None,
    rootservice_list: str | None = None,
    options: Sequence[str] = (),
    saved: bool = True,
) -> ProxyConfig:
    """
    Read a configuration file, apply the items ALTER PROXYCONFIG saved (in
    C{altered_config_file}, by default C{<path>.altered.yaml}), apply
    command-line overrides and check the result.

    @param path: the YAML file.
    @param saved: whether to apply saved items at all.
    @raise ConfigError: the file or the saved items cannot be read, or any
        problem in them or in the overrides.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror}", origin=source) from None
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", origin=source) from None
    config = _parse_unchecked(text, source)
    return _settle(
        config,
        listen_port=listen_port,
        rootservice_list=rootservice_list,
        options=options,
        saved=saved,
        config_file=source,
    )
