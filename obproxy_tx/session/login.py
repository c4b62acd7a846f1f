"""
Login user names as ODP parses them.

A client logs in to the proxy with one of two spellings
(C{src/obproxy/proxy/mysqllib/ob_proxy_auth_parser.cpp}):

  - the standard form C{user@tenant#cluster[:cluster_id]}, where C{@tenant} and
    C{#cluster} may each be left out;
  - the separator form C{cluster<S>tenant<S>user[<S>cluster_id]}, tried only
    when the name has neither C{@} nor C{#}. C{S} is the first character of the
    C{username_separator} config item (default C{:;-;.}, meaning C{:}, C{-} and
    C{.}) that appears at least twice in the name.

A missing tenant defaults to C{sys} (or the cluster's configured default
tenant); a missing cluster to the first configured cluster. The canonical
L{LoginName.full_name} C{user@tenant#cluster[:cluster_id]} keys the server
session pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import attrs

__all__ = [
    "DEFAULT_TENANT",
    "DEFAULT_USERNAME_SEPARATOR",
    "PROXYSYS_TENANT",
    "LoginName",
    "LoginNameError",
    "SpecialUser",
    "parse_login_name",
    "parse_username_separator",
]

DEFAULT_TENANT = "sys"
"""The tenant of a login name that names none."""

PROXYSYS_TENANT = "proxysys"
"""The pseudo-tenant of the proxy's own local users (C{root@proxysys})."""

DEFAULT_USERNAME_SEPARATOR = ":;-;."
"""ODP's default C{username_separator}: the candidates C{:}, C{-} and C{.}."""

_USER_TENANT = "@"
_TENANT_CLUSTER = "#"
_CLUSTER_ID = ":"


class LoginNameError(ValueError):
    """
    A login user name cannot be parsed (empty user, bad cluster id, ...). The
    login is refused as ODP refuses it.
    """


class SpecialUser(Enum):
    """
    Users ODP treats specially (C{ob_mysql_sm.cpp}, C{check_user_identity}).
    The value is the C{user@tenant} that identifies them.
    """

    PROXYSYS_ROOT = "root@proxysys"
    """The proxy's local admin: own verifier, never reaches a backend."""
    PROXYSYS_INSPECTOR = "inspector@proxysys"
    """May only run C{PING PROXY}."""
    ROOT_SYS = "root@sys"
    """The cluster's root: may run every admin command."""
    PROXYRO_SYS = "proxyro@sys"
    """ODP's own metadata account; refused from clients unless configured."""


def parse_username_separator(config_value: str) -> tuple[str, ...]:
    """
    Split the C{username_separator} config item into its candidate characters.

    @param config_value: e.g. C{":;-;."}: single characters joined by C{;}.
    @return: e.g. C{(":", "-", ".")}, in order of preference.
    @raise ValueError: a candidate is not exactly one character, or is one of
        C{@}, C{#} or C{;}.
    """
    if config_value == "":
        return ()
    candidates = tuple(config_value.split(";"))
    for candidate in candidates:
        if len(candidate) != 1:
            raise ValueError(
                f"each separator must be one character, separated by ';' (got {candidate!r})"
            )
        if candidate in (_USER_TENANT, _TENANT_CLUSTER) or candidate.isspace():
            raise ValueError(f"{candidate!r} cannot be a username separator")
    return candidates


@attrs.frozen
class LoginName:
    """
    A parsed, completed login name.

    @ivar user: the user name proper.
    @ivar tenant: the tenant (given or defaulted).
    @ivar cluster: the cluster (given or defaulted).
    @ivar cluster_id: the cluster id after C{:}, if any.
    @ivar tenant_given: whether the client named the tenant (C{enable_full_username}
        refuses names without it).
    @ivar cluster_given: whether the client named the cluster.
    @ivar separator: the separator character of the separator form, or L{None}
        for the standard form.
    """

    user: str
    tenant: str = DEFAULT_TENANT
    cluster: str = ""
    cluster_id: int | None = None
    tenant_given: bool = True
    cluster_given: bool = True
    separator: str | None = None

    @property
    def user_tenant(self) -> str:
        """
        C{user@tenant}: what an OceanBase observer is sent as the user name.
        """
        return f"{self.user}{_USER_TENANT}{self.tenant}"

    @property
    def full_name(self) -> str:
        """
        The canonical C{user@tenant#cluster[:cluster_id]}, ODP's server session
        pool key together with the server address.
        """
        name = f"{self.user_tenant}{_TENANT_CLUSTER}{self.cluster}"
        if self.cluster_id is not None:
            name += f"{_CLUSTER_ID}{self.cluster_id}"
        return name

    @property
    def special(self) -> SpecialUser | None:
        """
        Which special user this is, whatever cluster was named, or L{None}.
        """
        try:
            return SpecialUser(self.user_tenant)
        except ValueError:
            return None

    @property
    def is_proxysys(self) -> bool:
        """
        Whether the name is one of the proxy's local users (tenant C{proxysys}).
        """
        return self.tenant == PROXYSYS_TENANT

    @property
    def is_full(self) -> bool:
        """
        Whether the client named both tenant and cluster.
        """
        return self.tenant_given and self.cluster_given

    def __str__(self) -> str:
        return self.full_name


def _find_separator(name: str, candidates: tuple[str, ...]) -> str | None:
    if _USER_TENANT in name or _TENANT_CLUSTER in name:
        return None
    for candidate in candidates:
        if name.count(candidate) >= 2:
            return candidate
    return None


def _split_once(text: str, separator: str) -> tuple[str, str | None]:
    head, found, tail = text.partition(separator)
    return (head, tail) if found else (text, None)


def _cluster_id(text: str, raw: str) -> int | None:
    if text == "":
        return None
    if not text.isascii() or not text.isdigit():
        raise LoginNameError(f"cluster id {text!r} in user name {raw!r} is not a number")
    return int(text)


def parse_login_name(
    raw: str,
    *,
    default_cluster: str,
    default_tenant: str = DEFAULT_TENANT,
    tenant_defaults: Mapping[str, str] | None = None,
    username_separator: str | tuple[str, ...] = DEFAULT_USERNAME_SEPARATOR,
) -> LoginName:
    """
    Parse the user name a client logged in with.

    @param raw: the user name from the handshake response.
    @param default_cluster: the cluster of a name that names none (the first
        configured cluster).
    @param default_tenant: the tenant of a name that names none.
    @param tenant_defaults: per-cluster default tenants, looked up by the
        resolved cluster name before falling back to C{default_tenant}.
    @param username_separator: the C{username_separator} config item, or its
        already parsed candidate characters.
    @return: the completed name.
    @raise LoginNameError: the user part is empty, C{#cluster} comes before
        C{@tenant}, or the cluster id is not a number.
    """
    if isinstance(username_separator, str):
        candidates = parse_username_separator(username_separator)
    else:
        candidates = username_separator
    separator = _find_separator(raw, candidates)
    tenant = cluster = id_text = ""
    if separator is None:
        at = raw.find(_USER_TENANT)
        hash_ = raw.find(_TENANT_CLUSTER)
        if at >= 0 and 0 <= hash_ < at:
            raise LoginNameError(f"in user name {raw!r}, '#cluster' must come after '@tenant'")
        if hash_ >= 0:
            before, cluster = raw[:hash_], raw[hash_ + 1 :]
        else:
            before = raw
        user, tenant_part = _split_once(before, _USER_TENANT)
        tenant = tenant_part or ""
        cluster, id_part = _split_once(cluster, _CLUSTER_ID)
        id_text = id_part or ""
    else:
        cluster, rest = _split_once(raw, separator)
        tenant, rest = _split_once(rest or "", separator)
        user = rest or ""
        for id_separator in (separator, _CLUSTER_ID):
            if id_separator in user:
                user, id_text = user.split(id_separator, 1)
                break
    if user == "":
        raise LoginNameError(f"user name {raw!r} has an empty user part")
    cluster_id = _cluster_id(id_text, raw)
    tenant_given, cluster_given = tenant != "", cluster != ""
    if not cluster_given:
        cluster = default_cluster
    if not tenant_given:
        tenant = (tenant_defaults or {}).get(cluster, default_tenant)
    if cluster == "" or tenant == "":
        raise LoginNameError(f"user name {raw!r} leaves tenant or cluster empty")
    return LoginName(
        user=user,
        tenant=tenant,
        cluster=cluster,
        cluster_id=cluster_id,
        tenant_given=tenant_given,
        cluster_given=cluster_given,
        separator=separator,
    )
