"""
Regenerate the tables of C{docs/configuration.md} from the code.

The item reference comes from L{obproxy_tx.config.ITEMS} (name, type, default,
range, restart, SHOW PROXYCONFIG visible level, description) and the cluster
and user keys from the fields of L{ClusterConfig<obproxy_tx.config.ClusterConfig>} and
L{UserEntry<obproxy_tx.config.UserEntry>}, so the page cannot drift from what
the proxy accepts. Only the text between the C{<!-- BEGIN GENERATED: x -->} and
C{<!-- END GENERATED: x -->} markers is replaced; the rest of the page is
written by hand.

Usage, from the checkout root::

    python docs/gen_config_reference.py           # rewrite docs/configuration.md
    python docs/gen_config_reference.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import attrs

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from obproxy_tx.config import (  # noqa: E402 (after the sys.path fix for running as a script)
    ITEMS,
    ClusterConfig,
    ClusterType,
    ConfigItem,
    ItemKind,
    LoginMode,
    UserEntry,
)

PAGE = ROOT / "docs" / "configuration.md"

#: ODP's own default where it differs from ours (odp-reference §11), for ODP users.
ODP_DEFAULTS: Dict[str, str] = {
    "listen_port": "6688 (its docs and OBD use 2883)",
    "client_session_id_version": "1",
    "work_thread_num": "128 (threads)",
    "mysql_version": "5.6.25",
    "enable_prometheus": "true",
    "obproxy_sys_password": "SHA1(password) as hex",
    "inspector_password": "SHA1(password) as hex",
}

#: Items ODP has under the same name (odp-reference §11).
ODP_NAMES = frozenset(
    {
        "listen_port",
        "local_bound_ip",
        "proxy_id",
        "client_session_id_version",
        "work_thread_num",
        "proxy_service_mode",
        "client_max_connections",
        "mysql_version",
        "short_async_task_timeout",
        "observer_query_timeout_delta",
        "default_inactivity_timeout",
        "connect_observer_max_retries",
        "enable_prometheus",
        "prometheus_listen_port",
        "username_separator",
        "enable_full_username",
        "obproxy_sys_password",
        "inspector_password",
        "skip_proxyro_check",
        "enable_client_ssl",
        "enable_server_ssl",
    }
)

_KIND_NAMES = {
    ItemKind.INT: "integer",
    ItemKind.BOOL: "boolean",
    ItemKind.STRING: "string",
    ItemKind.DURATION: "duration",
    ItemKind.CHOICE: "choice",
    ItemKind.PORT: "port",
    ItemKind.VERIFIER: "verifier",
    ItemKind.PASSWORD: "password",
    ItemKind.NETWORKS: "networks",
    ItemKind.ENDPOINT: "endpoint",
    ItemKind.IP: "IP address",
    ItemKind.SEPARATOR: "separators",
    ItemKind.ADDRESSES: "addresses",
}

#: What each cluster key means; must name every field of ClusterConfig.
CLUSTER_KEYS: Dict[str, str] = {
    "name": "**Required.** The name clients use after `#` (`root@sys#obcluster`). No blanks, "
    "`@`, `#` or `:`. The first cluster is the default one.",
    "type": "`"
    + "` or `".join(t.value for t in ClusterType)
    + "`: OceanBase observers (`user@tenant` logins) or MySQL-protocol servers such as MariaDB.",
    "servers": "List of `ip:port`, `host:port`, `[ipv6]:port` or Twisted client endpoint strings "
    "(`tcp:host=h:port=p`, `tls:...`, `unix:path=...`). `-r` replaces the first cluster's list. "
    "An entry may also be a mapping `{address: 'ip:port', role: primary|replica}`: a replica is "
    "listed in `replicas` instead.",
    "default_tenant": "Tenant of a login that names none (`root` means `root@<default_tenant>`).",
    "cluster_id": "Cluster id clients may give after `:` (`root@sys#obcluster:7`).",
    "login_mode": "`"
    + "` or `".join(m.value for m in LoginMode)
    + "`: check the client against a stored verifier and log in to servers with the recovered "
    "SHA1(password), or replay the client's login with ODP's connect attributes "
    "(OceanBase 4.x observers only).",
    "users": "List of users the proxy can check itself (keys below).",
    "learn_users": "Read unknown users' verifiers from the servers (`mysql.user`, "
    "`mysql.global_priv`) through `metadata_user`, and read again when an unknown user logs in.",
    "replicas": "Replication replicas of the servers (same forms as `servers`): only weak reads "
    "go there, while `SHOW SLAVE STATUS` read as `metadata_user` says they replicate within "
    "`max_replica_lag` (see [high-availability.md](high-availability.md)). `-r` keeps them.",
}

#: What each user key means; must name every field of UserEntry.
USER_KEYS: Dict[str, str] = {
    "name": "**Required.** The user name, without `@` or `#`.",
    "tenant": "The tenant (default: the cluster's `default_tenant`).",
    "verifier": "**Required.** `SHA1(SHA1(password))` as `*` and 40 hex digits, as "
    '`SELECT authentication_string FROM mysql.user` shows it; `""` for an empty password.',
    "max_connections": "Most client sessions of this user at once; 0: `user_max_connections` "
    "applies.",
    "read_consistency": "`weak` or `strong`: the read consistency of this user's sessions until "
    "they `SET ob_read_consistency`; none: `default_read_consistency`.",
    "require_ssl": "`true`: this user logs in over TLS only (as `REQUIRE SSL`); over plain "
    "text the login is refused with 1045, as MariaDB refuses it. Users learned from the "
    "servers (`learn_users`) follow their account's `REQUIRE` clause.",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    if text == "":
        return '`""`'
    return f"`{text}`"


def _default(item: ConfigItem) -> str:
    return _code(item.render(item.default))


def items_table() -> str:
    """
    The reference table of every config item, in SHOW PROXYCONFIG order.
    """
    rows = [
        "| Item | Type | Default | Range | Restart | Level | Description |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in ITEMS.values():
        description = item.description.replace("<", "&lt;")  # plain text, not code
        if not description.endswith("."):
            description += "."
        notes: List[str] = []
        if item.name in ODP_NAMES:
            notes.append("ODP item")
        if item.name in ODP_DEFAULTS:
            notes.append(f"ODP's default: {ODP_DEFAULTS[item.name]}")
        if item.sensitive:
            notes.append("secret: SHOW PROXYCONFIG and messages hide it")
        if not item.alterable:
            notes.append("ALTER PROXYCONFIG cannot change it")
        if notes:
            description += " *(" + "; ".join(notes) + ")*"
        rows.append(
            "| "
            + " | ".join(
                _cell(part)
                for part in (
                    f"`{item.name}`",
                    _KIND_NAMES[item.kind],
                    _default(item),
                    _code(item.range) if item.range else "",
                    "yes" if item.need_reboot else "",
                    item.visible_level,
                    description,
                )
            )
            + " |"
        )
    return "\n".join(rows)


def _field_table(cls: type, descriptions: Dict[str, str]) -> str:
    fields = [field.name for field in attrs.fields(cls)]
    if set(fields) != set(descriptions):
        raise SystemExit(
            f"{cls.__name__} has fields {sorted(fields)}; the descriptions here name "
            f"{sorted(descriptions)}: update {Path(__file__).name}"
        )
    rows = ["| Key | Default | Meaning |", "|---|---|---|"]
    for field in attrs.fields(cls):
        default: Any = field.default
        if default is attrs.NOTHING:
            shown = ""
        elif hasattr(default, "value"):
            shown = _code(str(default.value))
        elif default == ():
            shown = "`[]`"
        elif default is None:
            shown = "none"
        elif isinstance(default, bool):
            shown = _code(str(default).lower())
        else:
            shown = _code(str(default))
        rows.append(f"| `{field.name}` | {shown} | {_cell(descriptions[field.name])} |")
    return "\n".join(rows)


GENERATORS: Dict[str, Callable[[], str]] = {
    "items": items_table,
    "cluster keys": lambda: _field_table(ClusterConfig, CLUSTER_KEYS),
    "user keys": lambda: _field_table(UserEntry, USER_KEYS),
}


def render(page: str) -> str:
    """
    The page with every generated region replaced by fresh output.

    @raise SystemExit: a region's markers are missing.
    """
    for name, generate in GENERATORS.items():
        pattern = re.compile(
            rf"(<!-- BEGIN GENERATED: {re.escape(name)} -->\n).*?(<!-- END GENERATED: "
            rf"{re.escape(name)} -->)",
            re.DOTALL,
        )
        if not pattern.search(page):
            raise SystemExit(f"{PAGE}: no '<!-- BEGIN GENERATED: {name} -->' region")
        body = generate()

        def replace(match: re.Match[str], body: str = body) -> str:
            return f"{match.group(1)}{body}\n{match.group(2)}"

        page = pattern.sub(replace, page)
    return page


def main(argv: Sequence[str] | None = None) -> int:
    """
    Rewrite the page, or with C{--check} report whether it is current.
    """
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    current = PAGE.read_text(encoding="utf-8")
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(f"{PAGE} is out of date: run python docs/gen_config_reference.py")
            return 1
        return 0
    if fresh != current:
        PAGE.write_text(fresh, encoding="utf-8")
        print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
