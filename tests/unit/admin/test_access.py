"""
Tests for L{obproxy_tx.admin.access}: roles, id resolution, who sees and who
kills which session.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from obproxy_tx.admin import access
from obproxy_tx.admin.access import Role
from obproxy_tx.session.login import LoginName


@attrs.define
class FakeServerSession:
    backend_id: int


@attrs.define(eq=False)
class FakeSession:
    """
    Just what L{access} reads of a client session.
    """

    cs_id: int
    login: LoginName | None
    server_sessions: list[FakeServerSession] = attrs.field(factory=list)


@attrs.define
class FakeManager:
    client_sessions: dict[int, Any] = attrs.field(factory=dict)

    def find_client_session(self, cs_id: int) -> Any:
        return self.client_sessions.get(cs_id)


def session(cs_id: int, user: str, tenant: str = "sys", cluster: str = "c1") -> FakeSession:
    return FakeSession(cs_id, LoginName(user=user, tenant=tenant, cluster=cluster))


ROOT = session(1, "root")
OPS = session(2, "ops")
ALICE = session(3, "alice", "t1")
ALICE2 = session(4, "alice", "t1")
BOB = session(5, "bob", "t1")
CAROL = session(6, "carol", "t2")
OTHER_ROOT = session(7, "root", "sys", "c2")
PROXYSYS = session(8, "root", "proxysys")
INSPECTOR = session(9, "inspector", "proxysys")


@pytest.mark.parametrize(
    "caller, role",
    [
        (ROOT, Role.ROOT_SYS),
        (OPS, Role.SYS_TENANT),
        (ALICE, Role.USER),
        (PROXYSYS, Role.PROXYSYS),
        (INSPECTOR, Role.INSPECTOR),
        (FakeSession(10, None), Role.USER),
    ],
)
def test_role_of(caller: FakeSession, role: Role) -> None:
    assert access.role_of(caller) is role
    assert access.is_admin(caller) is (role in (Role.ROOT_SYS, Role.PROXYSYS))


@pytest.mark.parametrize(
    "caller, target, visible",
    [
        (ALICE, ALICE, True),
        (ALICE, ALICE2, True),
        (ALICE, BOB, False),
        (ALICE, CAROL, False),
        (ALICE, ROOT, False),
        (OPS, ALICE, True),
        (OPS, CAROL, True),
        (ROOT, CAROL, True),
        (ROOT, OTHER_ROOT, False),
        (ROOT, PROXYSYS, False),
        (PROXYSYS, OTHER_ROOT, True),
        (PROXYSYS, ALICE, True),
        (ALICE, FakeSession(11, None), False),
    ],
)
def test_may_see(caller: FakeSession, target: FakeSession, visible: bool) -> None:
    assert access.may_see(caller, target) is visible


@pytest.mark.parametrize(
    "caller, target, code",
    [
        (ALICE, ALICE2, None),
        (ALICE, BOB, 1095),
        (ALICE, CAROL, 1094),
        (OPS, ALICE, 1095),
        (ROOT, ALICE, None),
        (ROOT, OTHER_ROOT, 1095),
        (ROOT, PROXYSYS, 1094),
        (ALICE, FakeSession(11, None), 1094),
        (PROXYSYS, OTHER_ROOT, None),
        (BOB, ROOT, 1094),
    ],
)
def test_kill_check(caller: FakeSession, target: FakeSession, code: int | None) -> None:
    error = access.kill_check(caller, target, 77)
    if code is None:
        assert error is None
    else:
        assert error is not None
        assert error.code == code
        assert str(77) in error.message


def test_errors_match_odp() -> None:
    def fields(error: Any) -> tuple[Any, ...]:
        return (error.code, error.sqlstate, error.message, error.close_after)

    assert fields(access.unknown_thread(5)) == (1094, "HY000", "Unknown thread id: 5", False)
    assert fields(access.not_owner(5)) == (1095, "HY000", "You are not owner of thread 5", False)
    assert fields(access.interrupted()) == (1317, "70100", "Query execution was interrupted", True)


def test_resolve_session_by_cs_id_and_backend_id() -> None:
    """
    Ids with bit 31 set are backend (observer) connection ids; others are
    cs_ids, falling back to small backend ids (MariaDB's).
    """
    alice = session(12, "alice", "t1")
    alice.server_sessions = [FakeServerSession(3221562906), FakeServerSession(40)]
    bob = session(40, "bob", "t1")
    manager = FakeManager({12: alice, 40: bob})
    assert access.resolve_session(manager, 12) is alice
    assert access.resolve_session(manager, 3221562906) is alice
    # A cs_id wins over an equal backend id, as in ODP.
    assert access.resolve_session(manager, 40) is bob
    del manager.client_sessions[40]
    assert access.resolve_session(manager, 40) is alice
    assert access.resolve_session(manager, 99) is None
    assert access.resolve_session(manager, -1) is None
    assert access.resolve_session(manager, 1 << 31) is None
