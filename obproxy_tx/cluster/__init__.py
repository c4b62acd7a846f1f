"""
Worker processes and proxy nodes: one session view across them.

A proxy node runs as one process (C{work_thread_num: 1}, the default) or as a
parent with C{work_thread_num} worker processes that share its listening
socket (L{obproxy_tx.cluster.supervisor}, L{obproxy_tx.cluster.worker}).
Nodes on other hosts are joined by listing them in C{proxy_peers} and
listening for them on C{proxy_peer_listen}, with a shared
C{proxy_cluster_secret} that each side proves before anything is served.

The admin commands keep their meaning across workers and nodes: C{SHOW
PROXYSESSION} and C{SHOW PROCESSLIST} list every worker's and node's
sessions, C{KILL}, C{KILL QUERY} and C{KILL PROXYSESSION} and the id forms of
C{SHOW PROXYSESSION ATTRIBUTE/VARIABLES/STAT} reach the session wherever it
is, C{SHOW PROXYSTAT} sums the node's workers, and C{ALTER PROXYCONFIG}
reaches every worker of the node. They do so through C{manager.cluster}
(L{obproxy_tx.cluster.router}), over a Twisted AMP channel
(L{obproxy_tx.cluster.protocol}); the process that holds a session runs the
command on it (L{obproxy_tx.cluster.local}), with the caller's identity, so
the privilege rules and error codes are the same as in one process.

A C{cs_id} names its node (C{proxy_id}) and worker (the worker bits of
L{ClientSessionIdLayout<obproxy_tx.session.ids.ClientSessionIdLayout>}), so a
command about one session goes straight to the process that holds it.

Without workers and peers nothing here runs: C{manager.cluster} is C{None}
and the commands work on the one process's sessions as they always did.
"""
