"""
obproxy_tx: a Twisted MySQL wire-protocol framework, and on it an SQL proxy
compatible with OceanBase Database Proxy (ODP).

Layers: L{obproxy_tx.wire} is the sans-IO codec (no Twisted), L{obproxy_tx.protocol}
holds the thin Twisted adapters, L{obproxy_tx.auth} the twisted.cred integration.
"""

__version__ = "0.1.0"
