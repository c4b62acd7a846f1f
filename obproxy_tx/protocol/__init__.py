"""
Thin Twisted adapters over L{obproxy_tx.wire}: the MySQL server and client
protocols (L{obproxy_tx.protocol.server}, L{obproxy_tx.protocol.client}), the
application interface the server hands commands to
(L{obproxy_tx.protocol.interfaces}) and TLS contexts
(L{obproxy_tx.protocol.tls}).
"""

from __future__ import annotations
