"""
Tests for L{SessionManager.reconfigure}: what ALTER PROXYCONFIG changes in a
running proxy.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from obproxy_tx.config import ProxyConfig, parse_config, set_item
from obproxy_tx.session.manager import SessionManager

CONFIG = """
clusters:
  - name: c1
    type: mysql
    servers: ["127.0.0.1:3306"]
"""


def make_manager() -> SessionManager:
    return SessionManager(parse_config(CONFIG), Clock())


def test_runtime_item_takes_effect() -> None:
    """
    A runtime item is the running value at once.
    """
    manager = make_manager()
    new = set_item(manager.config, "client_max_connections", "7", origin="test")
    manager.reconfigure(new)
    assert manager.config is new
    assert manager.config.client_max_connections == 7


@pytest.mark.parametrize("name, value", [("listen_port", "3999"), ("proxy_id", "5")])
def test_restart_items_are_refused_and_nothing_changes(name: str, value: str) -> None:
    """
    An item that needs a restart cannot be swapped in: the running config
    stays as it was.
    """
    manager = make_manager()
    before: ProxyConfig = manager.config
    new = set_item(before, name, value, origin="test")
    with pytest.raises(ValueError, match=name):
        manager.reconfigure(new)
    assert manager.config is before
