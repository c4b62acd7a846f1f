"""
Who a caller is, which sessions an admin command's id names, and who may see
or kill which session.

The rules are ODP's (C{ob_show_session_handler}, C{ob_kill_op_handler}) with
two deliberate differences, both tighter:

  - Killing another user's session needs C{root@sys} or the local admin
    C{root@proxysys}; ODP lets any C{sys} tenant user, or anyone with
    C{SUPER} on the backend, do it.
  - C{SHOW PROXYSESSION ATTRIBUTE/VARIABLES/STAT id} of a session the caller
    may not see answers C{1094 Unknown thread id} (ODP shows any session by
    id to anyone).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import attrs

from obproxy_tx.admin.interfaces import AdminError
from obproxy_tx.session.login import PROXYSYS_TENANT, LoginName, SpecialUser
from obproxy_tx.wire.errors import ErrorCode

SYS_TENANT = "sys"
"""The tenant whose users see every session of their cluster."""

_OBSERVER_ID_BIT = 1 << 31


class Role(Enum):
    """
    What a logged-in user may do with admin commands.
    """

    PROXYSYS = "root@proxysys"
    """The local admin: everything, on every session."""
    INSPECTOR = "inspector@proxysys"
    """May only C{PING PROXY}."""
    ROOT_SYS = "root@sys"
    """The cluster's root: every command, every session of its cluster."""
    SYS_TENANT = "sys tenant"
    """Another user of the C{sys} tenant: sees every session of its cluster."""
    USER = "user"
    """Anyone else: sees and kills the sessions of its own user only."""


def role_of(session: Any) -> Role:
    """
    @param session: a client session (or anything with a C{login}).
    @return: its role; a session not logged in yet is a plain L{Role.USER}.
    """
    login = session.login
    if login is None:
        return Role.USER
    special = login.special
    if special is SpecialUser.PROXYSYS_ROOT:
        return Role.PROXYSYS
    if special is SpecialUser.PROXYSYS_INSPECTOR:
        return Role.INSPECTOR
    if special is SpecialUser.ROOT_SYS:
        return Role.ROOT_SYS
    if login.tenant == SYS_TENANT:
        return Role.SYS_TENANT
    return Role.USER


@attrs.frozen
class RemoteCaller:
    """
    The caller of an admin command run on another worker or proxy node, as
    the session that holds the target sees it: the caller's own C{cs_id} and
    login, which is all the rules here read. Ids are unique across workers
    and nodes (worker bits, C{proxy_id}), so the C{cs_id} tells whether a
    session is the caller's own.

    @ivar cs_id: the caller's client session id.
    @ivar login: the caller's login, or C{None}.
    """

    cs_id: int
    login: LoginName | None

    @property
    def is_proxysys(self) -> bool:
        """
        Whether the caller is the local admin (C{root@proxysys}) of its node.
        """
        return self.login is not None and self.login.tenant == PROXYSYS_TENANT

    @classmethod
    def of(cls, session: Any) -> RemoteCaller:
        """
        @param session: a local client session (or a L{RemoteCaller}).
        @return: the caller as another worker or node is told about it.
        """
        return cls(session.cs_id, session.login)


def same_session(caller: Any, target: Any) -> bool:
    """
    Whether C{target} is the caller's own session: the same object, or, for
    a L{RemoteCaller}, the session with its C{cs_id}.
    """
    if target is caller:
        return True
    return isinstance(caller, RemoteCaller) and target.cs_id == caller.cs_id


def is_admin(session: Any) -> bool:
    """
    @return: whether C{session} may run commands that change things
        (C{root@sys} or C{root@proxysys}).
    """
    return role_of(session) in (Role.PROXYSYS, Role.ROOT_SYS)


def _server_sessions(session: Any) -> Any:
    return session.server_sessions


def resolve_session(manager: Any, number: int) -> Any | None:
    """
    The client session an admin command's id names, as ODP resolves it: an id
    with bit 31 set is a backend connection id (what C{SELECT CONNECTION_ID()}
    gives on OceanBase), matched against every server session of every client
    session; any other id is a C{cs_id}. Better than ODP, a small id that is
    no C{cs_id} is also tried as a backend id, since MariaDB's ids are small.

    @param manager: the session manager.
    @param number: the id.
    @return: the client session, or C{None}.
    """
    found = resolve_cs_id(manager, number)
    if found is not None:
        return found
    return resolve_backend_id(manager, number)


def resolve_cs_id(manager: Any, number: int) -> Any | None:
    """
    The first half of L{resolve_session}: the client session whose C{cs_id}
    is C{number}. With several workers or nodes a C{cs_id} match anywhere
    wins over a backend id match anywhere, so the halves run apart.

    @return: the client session, or C{None} (always for an id with bit 31
        set, which is a backend's).
    """
    if number < 0 or number & _OBSERVER_ID_BIT:
        return None
    return manager.find_client_session(number)


def resolve_backend_id(manager: Any, number: int) -> Any | None:
    """
    The second half of L{resolve_session}: the client session one of whose
    server sessions has backend connection id C{number}.

    @return: the client session, or C{None}.
    """
    if number < 0:
        return None
    for session in list(manager.client_sessions.values()):
        for ss in _server_sessions(session):
            if ss.backend_id == number:
                return session
    return None


def _same_user(a: Any, b: Any) -> bool:
    return bool(
        a.login is not None
        and b.login is not None
        and a.login.user == b.login.user
        and a.login.tenant == b.login.tenant
        and a.login.cluster == b.login.cluster
    )


def _same_cluster(a: Any, b: Any) -> bool:
    return bool(a.login is not None and b.login is not None and a.login.cluster == b.login.cluster)


def may_see(caller: Any, target: Any) -> bool:
    """
    Whether C{caller} may see C{target} (SHOW PROXYSESSION, SHOW PROCESSLIST,
    the id forms of ATTRIBUTE/VARIABLES/STAT).

    The local admin sees everything; a C{sys} tenant user every session of its
    cluster except the local admin's; anyone else the sessions of the very same
    user (user, tenant and cluster).
    """
    if same_session(caller, target):
        return True
    if target.login is None:
        return False
    role = role_of(caller)
    if role is Role.PROXYSYS:
        return True
    if target.login.tenant == PROXYSYS_TENANT:
        return False
    if role in (Role.ROOT_SYS, Role.SYS_TENANT):
        return _same_cluster(caller, target)
    return _same_user(caller, target)


def kill_check(caller: Any, target: Any, shown_id: int) -> AdminError | None:
    """
    May C{caller} kill C{target} (or its query)? Killing one's own session is
    the caller's business (ODP answers 1317 and closes).

    As ODP: a session of another tenant (or the local admin's) does not exist
    for the caller (1094); one of its own tenant, or of its cluster for a
    C{sys} tenant user, that it may not kill is "not owner" (1095). Only the
    very same user, C{root@sys} (its cluster) and C{root@proxysys} may kill.

    @param shown_id: the id as the statement gave it, for the messages.
    @return: C{None} if allowed, else the error to answer.
    """
    role = role_of(caller)
    if role is Role.PROXYSYS:
        return None
    if target.login is None or target.login.tenant == PROXYSYS_TENANT:
        return unknown_thread(shown_id)
    if _same_user(caller, target):
        return None
    if role is Role.ROOT_SYS and _same_cluster(caller, target):
        return None
    if role in (Role.ROOT_SYS, Role.SYS_TENANT):
        return not_owner(shown_id)
    if _same_cluster(caller, target) and caller.login.tenant == target.login.tenant:
        return not_owner(shown_id)
    return unknown_thread(shown_id)


def unknown_thread(number: int) -> AdminError:
    """
    @return: C{ERROR 1094 (HY000): Unknown thread id: <number>}.
    """
    return AdminError(ErrorCode.ER_NO_SUCH_THREAD, f"Unknown thread id: {number}")


def not_owner(number: int) -> AdminError:
    """
    @return: C{ERROR 1095 (HY000): You are not owner of thread <number>}.
    """
    return AdminError(ErrorCode.ER_KILL_DENIED_ERROR, f"You are not owner of thread {number}")


def interrupted() -> AdminError:
    """
    @return: ODP's answer to killing your own session, C{ERROR 1317 (70100):
        Query execution was interrupted}, after which the connection closes.
    """
    return AdminError(
        ErrorCode.ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100", close_after=True
    )
