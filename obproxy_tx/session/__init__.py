"""
Client and server sessions of the proxy.

The pure, reactor-free foundations live here: L{obproxy_tx.session.ids} (ODP's
session identifiers), L{obproxy_tx.session.login} (login user names),
L{obproxy_tx.session.states} (the MCS_*/MSS_* state machines) and
L{obproxy_tx.session.sync} (session-variable version counters and the sync
statements). This package module imports nothing on purpose: import the
submodule you need.
"""
