"""
What changes when the clusters of a running proxy are replaced (a C{SIGHUP}
reload, L{obproxy_tx.reload}): the pure comparison of the old and the new
L{ClusterConfig<obproxy_tx.config.ClusterConfig>} tuples.

L{diff_clusters} gives a L{ClusterChanges}: clusters added and removed, and
for each cluster kept its servers (primaries) and replicas added and removed
and its users added, removed and changed. The session manager applies it
(L{obproxy_tx.session.retire}): what it derives from it is here too, so it is
decided in one place and tested without a reactor:

  - L{ClusterChanges.retired}: the C{(cluster, address)} pairs whose
    primary role ended (the server was removed, or became a replica): no new
    server session goes there for that cluster's primary traffic, and the
    existing ones are closed once they hold nothing (L{server_session_step});
    Their congestion entries are dropped too (C{SHOW PROXYCONGESTION} lists
    the configured servers only);
  - L{ClusterChanges.gone}: the addresses no cluster lists any more, in any
    role: the shared pool's sessions to them are closed and their replica
    entries dropped.
"""

from __future__ import annotations

import enum
from typing import Iterable, Sequence, Tuple

import attrs

from obproxy_tx.config import BackendServer, ClusterConfig

__all__ = [
    "ClusterChanges",
    "ClusterDelta",
    "SessionStep",
    "diff_clusters",
    "server_session_step",
]

Pair = Tuple[str, str]
"""A server of a cluster: C{(cluster name, server address)}."""

_SETTINGS = ("type", "default_tenant", "cluster_id", "login_mode", "learn_users")
"""The fields of a cluster other than its servers, replicas and users."""


def _addresses(servers: Iterable[BackendServer]) -> Tuple[str, ...]:
    return tuple(server.address for server in servers)


def _minus(a: Sequence[str], b: Sequence[str]) -> Tuple[str, ...]:
    # In a's order, without duplicates.
    seen = set(b)
    out = []
    for item in a:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return tuple(out)


@attrs.frozen
class ClusterDelta:
    """
    What changed in one cluster that both configurations have.

    @ivar name: the cluster.
    @ivar servers_added: primaries new to it (addresses, in the new order).
    @ivar servers_removed: addresses no longer primaries of it (removed, or now replicas).
    @ivar replicas_added: replicas new to it.
    @ivar replicas_removed: addresses no longer replicas of it (removed, or now primaries).
    @ivar users_added: C{(tenant, user)} of new user entries.
    @ivar users_removed: C{(tenant, user)} of user entries gone.
    @ivar users_changed: C{(tenant, user)} of entries whose verifier or
        other fields changed.
    @ivar settings: the names of its other fields that changed (C{type},
        C{login_mode}, ...).
    """

    name: str
    servers_added: Tuple[str, ...] = ()
    servers_removed: Tuple[str, ...] = ()
    replicas_added: Tuple[str, ...] = ()
    replicas_removed: Tuple[str, ...] = ()
    users_added: Tuple[Pair, ...] = ()
    users_removed: Tuple[Pair, ...] = ()
    users_changed: Tuple[Pair, ...] = ()
    settings: Tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """
        Whether nothing changed in the cluster.
        """
        return not any(
            (
                self.servers_added,
                self.servers_removed,
                self.replicas_added,
                self.replicas_removed,
                self.users_added,
                self.users_removed,
                self.users_changed,
                self.settings,
            )
        )

    def describe(self) -> str:
        """
        The changes in words, for the log (user names, never verifiers).
        """
        parts = []
        for label, values in (
            ("servers added", self.servers_added),
            ("servers removed", self.servers_removed),
            ("replicas added", self.replicas_added),
            ("replicas removed", self.replicas_removed),
            ("users added", [f"{u}@{t}" for t, u in self.users_added]),
            ("users removed", [f"{u}@{t}" for t, u in self.users_removed]),
            ("users changed", [f"{u}@{t}" for t, u in self.users_changed]),
            ("settings changed", self.settings),
        ):
            if values:
                parts.append(f"{label}: {', '.join(values)}")
        return "; ".join(parts)


@attrs.frozen
class ClusterChanges:
    """
    What changed between two cluster tuples.

    @ivar added: names of the clusters only the new configuration has.
    @ivar removed: names of the clusters only the old one had.
    @ivar changed: the clusters both have that differ.
    @ivar retired: see the module docstring.
    @ivar gone: see the module docstring.
    @ivar new_default: whether the default (first) cluster is another one.
    """

    added: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    changed: Tuple[ClusterDelta, ...] = ()
    retired: Tuple[Pair, ...] = ()
    gone: Tuple[str, ...] = ()
    new_default: bool = False

    @property
    def empty(self) -> bool:
        """
        Whether the clusters are the same (nothing to apply).
        """
        return not (self.added or self.removed or self.changed or self.new_default)

    def delta(self, name: str) -> ClusterDelta | None:
        """
        The changes of the kept cluster C{name}, or C{None} when it did not change.
        """
        for delta in self.changed:
            if delta.name == name:
                return delta
        return None

    def describe(self) -> str:
        """
        The changes in words, for the log.
        """
        parts = []
        if self.added:
            parts.append(f"clusters added: {', '.join(self.added)}")
        if self.removed:
            parts.append(f"clusters removed: {', '.join(self.removed)}")
        for delta in self.changed:
            parts.append(f"cluster {delta.name}: {delta.describe()}")
        if self.new_default:
            parts.append("the default cluster changed")
        return "; ".join(parts) or "no change"


def _users(cluster: ClusterConfig) -> dict[Pair, object]:
    return {(user.tenant, user.name): user for user in cluster.users}


def _delta(old: ClusterConfig, new: ClusterConfig) -> ClusterDelta:
    old_servers, new_servers = _addresses(old.servers), _addresses(new.servers)
    old_replicas, new_replicas = _addresses(old.replicas), _addresses(new.replicas)
    old_users, new_users = _users(old), _users(new)
    return ClusterDelta(
        name=new.name,
        servers_added=_minus(new_servers, old_servers),
        servers_removed=_minus(old_servers, new_servers),
        replicas_added=_minus(new_replicas, old_replicas),
        replicas_removed=_minus(old_replicas, new_replicas),
        users_added=tuple(key for key in new_users if key not in old_users),
        users_removed=tuple(key for key in old_users if key not in new_users),
        # UserEntry compares every field, the verifier included.
        users_changed=tuple(
            key for key, user in new_users.items() if key in old_users and old_users[key] != user
        ),
        settings=tuple(name for name in _SETTINGS if getattr(old, name) != getattr(new, name)),
    )


def diff_clusters(old: Sequence[ClusterConfig], new: Sequence[ClusterConfig]) -> ClusterChanges:
    """
    Compare the running clusters with the new ones (clusters are matched by name).

    @param old: the running configuration's clusters.
    @param new: the new configuration's clusters.
    @return: the changes (L{ClusterChanges.empty} when there are none).
    """
    old_by_name = {cluster.name: cluster for cluster in old}
    new_by_name = {cluster.name: cluster for cluster in new}
    added = tuple(name for name in new_by_name if name not in old_by_name)
    removed = tuple(name for name in old_by_name if name not in new_by_name)
    changed = []
    for name, cluster in new_by_name.items():
        before = old_by_name.get(name)
        if before is not None and before != cluster:
            # May be empty (only an order changed): the new tuple is still swapped in.
            changed.append(_delta(before, cluster))
    retired: list[Pair] = []
    for name in removed:
        retired.extend((name, address) for address in _addresses(old_by_name[name].servers))
    for delta in changed:
        retired.extend((delta.name, address) for address in delta.servers_removed)
    listed: set[str] = set()
    for cluster in new:
        listed.update(_addresses(cluster.servers))
        listed.update(_addresses(cluster.replicas))
    gone = []
    for cluster in old:
        for address in (*_addresses(cluster.servers), *_addresses(cluster.replicas)):
            if address not in listed and address not in gone:
                gone.append(address)
    old_default = old[0].name if old else None
    new_default = new[0].name if new else None
    return ClusterChanges(
        added=added,
        removed=removed,
        changed=tuple(changed),
        retired=tuple(retired),
        gone=tuple(gone),
        new_default=old_default != new_default,
    )


class SessionStep(enum.Enum):
    """
    What happens now to a server session to a retired server.
    """

    KEEP = "keep"
    """It serves a request, or its client session is pinned to it: let it finish."""
    CLOSE = "close"
    """It holds nothing that would be lost: close it (its client gets a new one
    elsewhere on its next request, as after an idle server session was lost)."""


def server_session_step(
    *, serving: bool, bound: bool, pinned: bool, past_deadline: bool
) -> SessionStep:
    """
    Whether a client session's server session to a retired server is closed now.

    @param serving: it is the client session's active one (a request runs on it).
    @param bound: it is the client session's bound one (the last used: a
        transaction, lock, temporary table or cursor of the session lives there
        when the session is pinned).
    @param pinned: the client session is pinned to its bound server session
        (transaction, lock, temporary table, open cursor, ...).
    @param past_deadline: C{graceful_shutdown_timeout} has passed since the reload.
    @return: the step.
    """
    if past_deadline:
        return SessionStep.CLOSE
    if serving or (bound and pinned):
        return SessionStep.KEEP
    return SessionStep.CLOSE
