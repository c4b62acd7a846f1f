"""
The C{twistd obproxy} plugin: names the entry point only, so that
C{twistd --help} stays cheap; the options and the service live in
L{obproxy_tx.tap}, imported when the subcommand is used.

This directory must have no C{__init__.py}: C{twisted.plugins} is Twisted's
package, extended by every C{twisted/plugins} directory on C{sys.path}.
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

obproxy = ServiceMaker(
    "obproxy_tx",
    "obproxy_tx.tap",
    "An OceanBase (ODP) compatible SQL proxy (obproxy_tx).",
    "obproxy",
)
