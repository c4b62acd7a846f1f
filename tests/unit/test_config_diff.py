"""
L{obproxy_tx.config_diff}: what a reload changes in the clusters, and what
happens to a server session to a retired server.
"""

from __future__ import annotations

import attrs
import pytest

from obproxy_tx.config import ClusterConfig, parse_config, parse_server
from obproxy_tx.config_diff import SessionStep, diff_clusters, server_session_step

V1 = "*" + "11" * 20
V2 = "*" + "22" * 20

BASE = f"""
clusters:
  - name: main
    type: mysql
    servers: ["10.0.0.1:3306", "10.0.0.2:3306"]
    users:
      - {{name: app, tenant: sys, verifier: "{V1}"}}
      - {{name: old, tenant: sys, verifier: "{V1}"}}
  - name: other
    type: mysql
    servers: ["10.0.1.1:3306"]
"""


def clusters(text: str = BASE) -> tuple[ClusterConfig, ...]:
    return parse_config(text).clusters


def test_same_clusters_are_no_change() -> None:
    changes = diff_clusters(clusters(), clusters())
    assert changes.empty
    assert changes.retired == () and changes.gone == ()
    assert changes.describe() == "no change"


def test_servers_added_and_removed() -> None:
    old = clusters()
    main = attrs.evolve(
        old[0], servers=(parse_server("10.0.0.2:3306"), parse_server("10.0.0.3:3306"))
    )
    changes = diff_clusters(old, (main, old[1]))
    assert not changes.empty
    assert changes.added == () and changes.removed == ()
    delta = changes.delta("main")
    assert delta is not None
    assert delta.servers_added == ("10.0.0.3:3306",)
    assert delta.servers_removed == ("10.0.0.1:3306",)
    assert changes.retired == (("main", "10.0.0.1:3306"),)
    assert changes.gone == ("10.0.0.1:3306",)
    assert changes.delta("other") is None
    assert "servers added: 10.0.0.3:3306" in changes.describe()


def test_a_primary_becoming_a_replica_is_retired_but_not_gone() -> None:
    old = clusters()
    main = attrs.evolve(
        old[0],
        servers=(parse_server("10.0.0.1:3306"),),
        replicas=(parse_server("10.0.0.2:3306"),),
    )
    changes = diff_clusters(old, (main, old[1]))
    delta = changes.delta("main")
    assert delta is not None
    assert delta.servers_removed == ("10.0.0.2:3306",)
    assert delta.replicas_added == ("10.0.0.2:3306",)
    # No primary traffic for main there any more, but the address is still listed.
    assert changes.retired == (("main", "10.0.0.2:3306"),)
    assert changes.gone == ()


def test_a_replica_promoted_and_one_removed() -> None:
    text = (
        BASE.replace(
            'servers: ["10.0.0.1:3306", "10.0.0.2:3306"]',
            'servers: ["10.0.0.1:3306"]\n    replicas: ["10.0.0.2:3306", "10.0.0.9:3306"]',
        )
        + 'metadata_user: monitor\nmetadata_password: "x"\n'
    )
    old = clusters(text)
    main = attrs.evolve(
        old[0],
        servers=(parse_server("10.0.0.1:3306"), parse_server("10.0.0.2:3306")),
        replicas=(),
    )
    changes = diff_clusters(old, (main, old[1]))
    delta = changes.delta("main")
    assert delta is not None
    assert delta.servers_added == ("10.0.0.2:3306",)
    assert delta.replicas_removed == ("10.0.0.2:3306", "10.0.0.9:3306")
    assert changes.retired == ()
    assert changes.gone == ("10.0.0.9:3306",)


def test_users_added_removed_and_changed() -> None:
    text = BASE.replace(
        f'- {{name: old, tenant: sys, verifier: "{V1}"}}',
        f'- {{name: new, tenant: sys, verifier: "{V1}"}}',
    ).replace(
        f'{{name: app, tenant: sys, verifier: "{V1}"}}',
        f'{{name: app, tenant: sys, verifier: "{V2}"}}',
    )
    changes = diff_clusters(clusters(), clusters(text))
    delta = changes.delta("main")
    assert delta is not None
    assert delta.users_added == (("sys", "new"),)
    assert delta.users_removed == (("sys", "old"),)
    assert delta.users_changed == (("sys", "app"),)
    assert delta.servers_added == delta.servers_removed == ()
    assert changes.retired == () and changes.gone == ()
    # Names in the log line, never verifiers.
    assert V2[1:] not in changes.describe() and "app@sys" in changes.describe()


def test_clusters_added_and_removed() -> None:
    old = clusters()
    third = ClusterConfig("third", servers=(parse_server("10.0.2.1:2881"),))
    changes = diff_clusters(old, (old[0], third))
    assert changes.added == ("third",)
    assert changes.removed == ("other",)
    assert changes.retired == (("other", "10.0.1.1:3306"),)
    assert changes.gone == ("10.0.1.1:3306",)
    assert not changes.new_default


def test_the_default_cluster_changing_is_a_change() -> None:
    old = clusters()
    changes = diff_clusters(old, (old[1], old[0]))
    assert changes.new_default
    assert not changes.empty
    assert changes.retired == ()


def test_other_settings_changed() -> None:
    old = clusters()
    main = attrs.evolve(old[0], learn_users=True, default_tenant="t1")
    delta = diff_clusters(old, (main, old[1])).delta("main")
    assert delta is not None
    assert delta.settings == ("default_tenant", "learn_users")


def test_a_server_shared_by_two_clusters_is_not_gone_while_one_lists_it() -> None:
    old = clusters()
    other = attrs.evolve(old[1], servers=(parse_server("10.0.0.1:3306"),))
    main = attrs.evolve(old[0], servers=(parse_server("10.0.0.2:3306"),))
    changes = diff_clusters(old, (main, other))
    assert set(changes.retired) == {("main", "10.0.0.1:3306"), ("other", "10.0.1.1:3306")}
    assert changes.gone == ("10.0.1.1:3306",)


@pytest.mark.parametrize(
    ("serving", "bound", "pinned", "past_deadline", "step"),
    [
        (False, False, False, False, SessionStep.CLOSE),  # pooled in the client session
        (False, True, False, False, SessionStep.CLOSE),  # bound, nothing held
        (False, True, True, False, SessionStep.KEEP),  # transaction, lock, ... there
        (False, False, True, False, SessionStep.CLOSE),  # pinned to another one
        (True, True, False, False, SessionStep.KEEP),  # a request runs there
        (True, False, False, False, SessionStep.KEEP),
        (True, True, True, True, SessionStep.CLOSE),  # graceful_shutdown_timeout passed
        (False, True, True, True, SessionStep.CLOSE),
    ],
)
def test_server_session_step(
    serving: bool, bound: bool, pinned: bool, past_deadline: bool, step: SessionStep
) -> None:
    assert (
        server_session_step(
            serving=serving, bound=bound, pinned=pinned, past_deadline=past_deadline
        )
        is step
    )
