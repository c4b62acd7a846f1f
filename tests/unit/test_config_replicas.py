"""
The read/write split's configuration: servers with roles, C{replicas}, a user's
C{read_consistency}, and the items C{default_read_consistency}, C{max_replica_lag} and
C{replica_check_interval}.
"""

from __future__ import annotations

import pytest

from obproxy_tx.config import ConfigError, apply_overrides, parse_config, set_item

_HEAD = """
metadata_user: monitor
metadata_password: monitor_pw
clusters:
  - name: c
    type: mysql
"""


def _cluster(body: str, head: str = _HEAD) -> object:
    return parse_config(head + body).clusters[0]


def test_plain_strings_stay_primaries() -> None:
    """
    A list of plain strings is a list of primaries, as before; no replicas.
    """
    cluster = _cluster("    servers: ['127.0.0.1:3306', '127.0.0.1:3307']\n")
    assert [s.address for s in cluster.servers] == ["127.0.0.1:3306", "127.0.0.1:3307"]
    assert cluster.replicas == ()


def test_role_mappings_split_servers_and_replicas() -> None:
    """
    Mappings with C{role: replica} go to C{replicas}; C{role: primary} and plain strings stay
    servers, in the order written; the C{replicas} key adds more.
    """
    cluster = _cluster(
        "    servers:\n"
        "      - 127.0.0.1:1\n"
        "      - {address: '127.0.0.1:2', role: replica}\n"
        "      - {address: '127.0.0.1:3', role: primary}\n"
        "      - {address: '127.0.0.1:4'}\n"
        "    replicas: ['127.0.0.1:5']\n"
    )
    assert [s.address for s in cluster.servers] == ["127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:4"]
    assert [s.address for s in cluster.replicas] == ["127.0.0.1:2", "127.0.0.1:5"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    servers: [{address: '127.0.0.1:2', role: slave}]\n",
            "clusters[0].servers[0].role: expected a role of primary or replica",
        ),
        (
            "    servers: [{addr: '127.0.0.1:2'}]\n",
            "clusters[0].servers[0].addr: unknown key 'addr'; did you mean 'address'?",
        ),
        (
            "    servers: [{role: replica}]\n",
            "clusters[0].servers[0]: a server written as a mapping needs 'address'",
        ),
        (
            "    servers: [{address: 'nonsense', role: replica}]\n",
            "clusters[0].servers[0].address: expected 'ip:port'",
        ),
        (
            "    servers: [{address: '127.0.0.1:2', role: replica}]\n",
            "has only replicas: writes need a server with role primary",
        ),
        (
            "    servers: ['127.0.0.1:2', {address: '127.0.0.1:2', role: replica}]\n",
            "127.0.0.1:2 is listed both as a primary and as a replica",
        ),
        (
            "    servers: ['127.0.0.1:1']\n    replicas: [{address: '127.0.0.1:2'}]\n",
            "clusters[0].replicas[0]: expected 'ip:port' or an endpoint string",
        ),
    ],
)
def test_bad_servers_name_the_problem(body: str, message: str) -> None:
    """
    Each mistake is a L{ConfigError} naming the key and what is wrong.
    """
    with pytest.raises(ConfigError) as caught:
        _cluster(body)
    assert message in str(caught.value)


def test_replicas_need_the_metadata_account() -> None:
    """
    Replicas are watched through C{metadata_user}: without one the configuration is refused.
    """
    with pytest.raises(ConfigError, match="metadata_user"):
        _cluster(
            "    servers: ['127.0.0.1:1', {address: '127.0.0.1:2', role: replica}]\n",
            head="clusters:\n  - name: c\n    type: mysql\n",
        )


def test_rootservice_list_replaces_primaries_and_keeps_replicas() -> None:
    """
    C{-r} replaces the first cluster's primaries; its replicas stay.
    """
    config = parse_config(
        _HEAD + "    servers: ['127.0.0.1:1', {address: '127.0.0.1:2', role: replica}]\n"
    )
    changed = apply_overrides(config, rootservice_list="127.0.0.1:9")
    cluster = changed.clusters[0]
    assert [s.address for s in cluster.servers] == ["127.0.0.1:9"]
    assert [s.address for s in cluster.replicas] == ["127.0.0.1:2"]


def test_user_read_consistency() -> None:
    """
    A user entry may name its read consistency (any case); others have none.
    """
    cluster = _cluster(
        "    servers: ['127.0.0.1:1']\n"
        "    users:\n"
        "      - {name: a, verifier: '', read_consistency: WEAK}\n"
        "      - {name: b, verifier: '', read_consistency: strong}\n"
        "      - {name: c, verifier: ''}\n"
    )
    assert [u.read_consistency for u in cluster.users] == ["weak", "strong", None]
    with pytest.raises(ConfigError, match=r"users\[0\]\.read_consistency: expected weak or strong"):
        _cluster(
            "    servers: ['127.0.0.1:1']\n"
            "    users: [{name: a, verifier: '', read_consistency: frozen}]\n"
        )


def test_items() -> None:
    """
    The items' defaults, and their checks when set as text.
    """
    config = parse_config(_HEAD + "    servers: ['127.0.0.1:1']\n")
    assert config.default_read_consistency == "strong"
    assert config.max_replica_lag == 5.0
    assert config.replica_check_interval == 1.0
    config = set_item(config, "default_read_consistency", "weak", origin="test")
    config = set_item(config, "max_replica_lag", "500ms", origin="test")
    config = set_item(config, "replica_check_interval", "0.2", origin="test")
    assert (
        config.default_read_consistency,
        config.max_replica_lag,
        config.replica_check_interval,
    ) == ("weak", 0.5, 0.2)
    with pytest.raises(ConfigError, match="expected one of strong, weak"):
        set_item(config, "default_read_consistency", "frozen", origin="test")
    with pytest.raises(ConfigError):
        set_item(config, "replica_check_interval", "0", origin="test")
