"""
Client and server sessions of the proxy.

The proxy itself: L{obproxy_tx.session.manager} (the C{SessionManager}
service), L{obproxy_tx.session.client_session} (one per client connection),
L{obproxy_tx.session.server_session} (one per backend connection),
L{obproxy_tx.session.pool} (idle server sessions per client session),
L{obproxy_tx.session.prepared} (virtual prepared statements) and
L{obproxy_tx.session.tracking} (tracked session state and the statement facts
routing uses). C{docs/proxy.md} tells how they work together.

The pure, reactor-free foundations live here too: L{obproxy_tx.session.ids}
(ODP's session identifiers), L{obproxy_tx.session.login} (login user names),
L{obproxy_tx.session.states} (the MCS_*/MSS_* state machines) and
L{obproxy_tx.session.sync} (session-variable version counters and the sync
statements). This package module imports nothing on purpose: import the
submodule you need.
"""
